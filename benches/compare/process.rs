//! The process figures: named tasks in child processes against procspawn,
//! `/bin/true` and a raw socketpair; a command against std's spawn; a
//! supervised process task's restart against a hand-written respawn loop.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use sidetask::{Backoff, Ctx, NamedTask, Pool, Process, Registry, Restart, Stopped, Supervisor};

use super::{Unit, alternate, compare, median, report};

/// Returns at once.
pub struct Empty;

impl NamedTask for Empty {
    const NAME: &'static str = "bench_empty";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Answers each message with the same number as an event, on the CPU it
/// is given, if any.
pub struct Pong;

impl NamedTask for Pong {
    const NAME: &'static str = "bench_pong";
    type Arg = Option<usize>;
    type In = u64;
    type Event = u64;
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<u64, u64>, cpu: Option<usize>) -> Result<(), Stopped> {
        pin(cpu);
        while let Ok(n) = ctx.recv() {
            ctx.emit(n)?;
        }
        Ok(())
    }
}

/// On odd attempts, fails at once (exits with code 1); on even ones, says
/// it runs, then waits until stopped.
pub struct FailThenUp;

impl NamedTask for FailThenUp {
    const NAME: &'static str = "bench_fail_then_up";
    type Arg = u32;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), ()>, attempt: u32) -> Result<(), Stopped> {
        if attempt % 2 == 1 {
            std::process::exit(1);
        }
        ctx.emit(())?;
        let _ = ctx.recv();
        Ok(())
    }
}

pub fn registry() -> Registry {
    Registry::new()
        .with::<Empty>()
        .and_then(|r| r.with::<Pong>())
        .and_then(|r| r.with::<FailThenUp>())
        .expect("unique names")
}

/// The baseline's children, as `FailThenUp`: `fail` exits with code 1 at
/// once; `up` says it runs with a byte on stdout, then waits for the end
/// of stdin.
pub fn fail_then_up_child(how: &str) -> ! {
    if how == "fail" {
        std::process::exit(1);
    }
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"u").and_then(|()| stdout.flush());
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    std::process::exit(0)
}

/// Runs the calling thread on `cpu` only (`None`: leaves it be).
fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu);
        sched_setaffinity(None, &set).expect("the CPU exists");
    }
}

/// The baseline's child: answers each 8 bytes on its stdin (a socket) with
/// the same 8 bytes, on the CPU it is given, if any.
pub fn raw_pong_child(cpu: Option<usize>) {
    pin(cpu);
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .expect("stdin");
    let mut socket = UnixStream::from(stdin);
    let mut buf = [0u8; 8];
    while socket.read_exact(&mut buf).is_ok() {
        if socket.write_all(&buf).is_err() {
            break;
        }
    }
}

pub fn process_spawn_join() {
    let ours = || {
        let task = Process::<Empty>::new(()).spawn().unwrap();
        assert!(task.join().is_value());
    };
    let procspawn = || {
        procspawn::spawn((), |()| ()).join().unwrap();
    };
    let bin_true = || {
        assert!(Command::new("/bin/true").status().unwrap().success());
    };
    compare(
        "process_spawn_join",
        "procspawn spawn+join, empty closure",
        20,
        ours,
        procspawn,
    );
    compare(
        "process_spawn_join",
        "Command::new(\"/bin/true\") status",
        20,
        ours,
        bin_true,
    );
}

/// A command's program started and joined (under its launcher: this
/// binary calls `init`), against std's own spawn and wait of it.
pub fn command_spawn_join() {
    let ours = || {
        let task = sidetask::Command::new("/bin/true").spawn().unwrap();
        assert!(task.join().value().unwrap().success());
    };
    let bin_true = || {
        assert!(Command::new("/bin/true").status().unwrap().success());
    };
    compare(
        "command_spawn_join",
        "Command::new(\"/bin/true\") status",
        20,
        ours,
        bin_true,
    );
}

/// Measured twice, with the calling thread on CPU 0: the answering thread
/// on the same CPU (each message a switch between the two), and on CPU 1
/// (each message a wake-up across CPUs). Left to the scheduler, either
/// happens, run by run, to each pair: the figure would compare two draws.
pub fn process_round_trip() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let placements: &[(&str, usize)] = if cpus >= 2 {
        &[("one CPU", 0), ("two CPUs", 1)]
    } else {
        &[("one CPU", 0)]
    };
    let before = sched_getaffinity(None).expect("this thread's CPUs");
    pin(Some(0));
    for &(name, cpu) in placements {
        let task = Process::<Pong>::new(Some(cpu)).spawn().unwrap();
        let (mut ours_sock, theirs) = UnixStream::pair().unwrap();
        let mut child = Command::new("/proc/self/exe")
            .args(["--raw-pong-child", &cpu.to_string()])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .unwrap();
        let mut n = 0u64;
        compare(
            "process_round_trip",
            &format!("8 bytes each way over a raw Unix socketpair, same two processes, {name}"),
            2000,
            || {
                n += 1;
                task.send(n).unwrap();
                assert_eq!(task.recv().unwrap(), n);
            },
            || {
                let mut buf = 7u64.to_le_bytes();
                ours_sock.write_all(&buf).unwrap();
                ours_sock.read_exact(&mut buf).unwrap();
            },
        );
        task.close_inbox();
        assert!(task.join().is_value());
        drop(ours_sock);
        child.wait().unwrap();
    }
    sched_setaffinity(None, &before).expect("this thread's CPUs");
}

pub fn process_pool_1000() {
    const TASKS: usize = 1000;
    let pool = procspawn::Pool::new(2).unwrap();
    let (a, b) = alternate(
        7,
        || {
            let start = Instant::now();
            let run = Pool::new(2)
                .run_process::<Empty, _>((0..TASKS).map(|_| ()))
                .unwrap();
            assert_eq!(run.iter().filter(|f| f.outcome.is_value()).count(), TASKS);
            start.elapsed().as_secs_f64()
        },
        || {
            let start = Instant::now();
            let handles: Vec<_> = (0..TASKS).map(|_| pool.spawn((), |()| ())).collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed().as_secs_f64()
        },
    );
    report(
        "process_pool_1000",
        "procspawn::Pool of 2, 1000 empty closures",
        median(a),
        median(b),
        Unit::Time,
    );
    pool.shutdown();
}

/// A process task's attempt fails (exits with code 1) and its
/// supervisor's next attempt is running (it said so with an event),
/// against a hand-written respawn loop over `std::process::Command`: the
/// same binary as a child that exits with code 1, waited for, spawned
/// again as one that says it runs with a byte, read. Each call: a
/// supervisor (or loop) from its first child to its second one running,
/// then that one stopped and reaped.
pub fn restart_latency() {
    let ours = || {
        let supervised = Supervisor::new()
            .restart(Restart::OnFailure)
            .backoff(Backoff::none())
            .spawn(|attempt| Process::<FailThenUp>::new(attempt.number()).spawn())
            .unwrap();
        supervised.recv().unwrap(); // attempt 2 runs
        supervised.stop();
        assert!(supervised.join().is_value());
    };
    let child = |how: &str| {
        Command::new("/proc/self/exe")
            .args(["--fail-then-up-child", how])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let theirs = || {
        assert!(!child("fail").wait().unwrap().success());
        let mut up = child("up");
        up.stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut [0u8; 1])
            .unwrap();
        drop(up.stdin.take());
        assert!(up.wait().unwrap().success());
    };
    compare(
        "restart_latency",
        "respawn loop over std::process::Command: child fails, spawned again, runs",
        20,
        ours,
        theirs,
    );
    // What the supervisor itself costs: the same two process tasks,
    // respawned by hand.
    let by_hand = || {
        let failing = Process::<FailThenUp>::new(1).spawn().unwrap();
        assert!(failing.join().is_crashed());
        let up = Process::<FailThenUp>::new(2).spawn().unwrap();
        up.recv().unwrap();
        up.stop();
        assert!(up.join().is_value());
    };
    compare(
        "restart_latency",
        "respawn loop over Process: the same two process tasks, by hand",
        20,
        ours,
        by_hand,
    );
}
