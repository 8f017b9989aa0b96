//! The process figures: named tasks in child processes against procspawn,
//! `/bin/true` and a raw socketpair; a command against std's spawn; a
//! supervised process task's restart against a hand-written respawn loop.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Says when its body started and when it is about to fail (nanoseconds
/// of the system clock, shared by every process), then exits with code 1.
pub struct Flap;

impl NamedTask for Flap {
    const NAME: &'static str = "bench_flap";
    /// How long it runs, in milliseconds, before it fails.
    type Arg = u64;
    type In = ();
    type Event = u64;
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u64>, runs: u64) -> Result<(), Stopped> {
        ctx.emit(now_ns())?;
        std::thread::sleep(Duration::from_millis(runs));
        ctx.emit(now_ns())?;
        std::process::exit(1)
    }
}

/// Nanoseconds of the system clock.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock past 1970")
        .as_nanos() as u64
}

pub fn registry() -> Registry {
    Registry::new()
        .with::<Empty>()
        .and_then(|r| r.with::<Pong>())
        .and_then(|r| r.with::<Flap>())
        .expect("unique names")
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

/// The baseline's child, as `Flap`: writes when it started and when it is
/// about to fail (16 bytes) to stdout, then exits with code 1.
pub fn flap_child(runs: u64) -> ! {
    let started = now_ns();
    std::thread::sleep(Duration::from_millis(runs));
    let mut stdout = std::io::stdout();
    let mut out = started.to_le_bytes().to_vec();
    out.extend(now_ns().to_le_bytes());
    let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
    std::process::exit(1)
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

/// Attempts each run between a failure and the next start, in a row.
const FLAPS: usize = 20;

/// The median time from each attempt's last word before it fails (exits
/// with code 1) to the next attempt's body running, over `FLAPS`
/// restarts; each pair `(started, failing)` comes from `next`.
fn median_restart(mut next: impl FnMut() -> (u64, u64)) -> f64 {
    let mut gaps = Vec::with_capacity(FLAPS);
    let (_, mut failing) = next();
    for _ in 0..FLAPS {
        let (started, fails) = next();
        gaps.push(started.saturating_sub(failing) as f64 / 1e9);
        failing = fails;
    }
    median(gaps)
}

/// A supervised process task fails (exits with code 1) and its next
/// attempt's body runs: timed from the failing child's last word to the
/// next one's first (both stamp the system clock), against a hand-written
/// respawn loop over `std::process::Command` (a child of the same binary
/// that stamps the same two times and exits with code 1, waited for and
/// spawned again), and against the same process task respawned by hand
/// (what the supervisor adds). `restart_latency_standby`: the same
/// supervisor keeping the next child started ahead
/// ([`Supervisor::standby`]); `restart_latency_standby_10ms`: the same,
/// each attempt running 10 ms before it fails (the command's child too),
/// time enough for the standby to be ready where an attempt that fails at
/// once leaves it less.
pub fn restart_latency() {
    const ROUNDS: usize = 15;
    let supervised = |standby: bool, runs: u64| {
        let supervised = Supervisor::new()
            .restart(Restart::OnFailure)
            .backoff(Backoff::none())
            .intensity(u32::MAX, Duration::from_secs(3600))
            .standby(standby)
            .spawn(move |_| Process::<Flap>::new(runs).spawn())
            .unwrap();
        let gap = median_restart(|| (supervised.recv().unwrap(), supervised.recv().unwrap()));
        supervised.kill();
        let _ = supervised.join();
        gap
    };
    let ours = || supervised(false, 0);
    let command = |runs: u64| {
        median_restart(|| {
            let mut child = Command::new("/proc/self/exe")
                .args(["--flap-child", &runs.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut buf = [0u8; 16];
            child.stdout.as_mut().unwrap().read_exact(&mut buf).unwrap();
            assert!(!child.wait().unwrap().success());
            let (a, b) = buf.split_at(8);
            (
                u64::from_le_bytes(a.try_into().unwrap()),
                u64::from_le_bytes(b.try_into().unwrap()),
            )
        })
    };
    let by_hand = || {
        median_restart(|| {
            let task = Process::<Flap>::new(0).spawn().unwrap();
            let stamps = (task.recv().unwrap(), task.recv().unwrap());
            assert!(task.join().is_crashed());
            stamps
        })
    };
    let (a, b) = alternate(ROUNDS, ours, || command(0));
    report(
        "restart_latency",
        "respawn loop over std::process::Command: a child fails, the next one runs",
        median(a),
        median(b),
        Unit::Time,
    );
    let (a, b) = alternate(ROUNDS, || supervised(true, 0), || command(0));
    report(
        "restart_latency_standby",
        "respawn loop over std::process::Command: a child fails, the next one runs",
        median(a),
        median(b),
        Unit::Time,
    );
    // Attempts that run 10 ms before they fail: time enough for the next
    // child to be ready.
    let (a, b) = alternate(ROUNDS, || supervised(true, 10), || command(10));
    report(
        "restart_latency_standby_10ms",
        "respawn loop over std::process::Command: a child that ran 10 ms fails, the next one runs",
        median(a),
        median(b),
        Unit::Time,
    );
    let (a, b) = alternate(ROUNDS, ours, by_hand);
    report(
        "restart_latency",
        "respawn loop over Process: the same task's next child runs",
        median(a),
        median(b),
        Unit::Time,
    );
}
