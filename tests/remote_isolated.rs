//! Remote tasks isolated in child processes (`Worker::isolate`), through a
//! Redis of each test's own: the value, messages, events and a closed inbox
//! across both boundaries, a kill that is a real `SIGKILL`, crashes
//! classified with their stderr tail, and a stop that escalates.

#![cfg(feature = "redis")]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::remote::{LocalWorker, join};
use common::{LIMIT, gone, kill_pid, wait_for};
use serde::{Deserialize, Serialize};
use sidetask::remote::{Client, Remote, Worker};
use sidetask::{CrashCause, Ctx, NamedTask, Outcome, Registry, Stopped};

/// Doubles its argument; says which process it ran in.
struct Double;
impl NamedTask for Double {
    const NAME: &'static str = "iso_double";
    type Arg = u64;
    type In = ();
    type Event = ();
    type Value = (u32, u64);
    type Error = Stopped;
    fn run(_: &Ctx, n: u64) -> Result<(u32, u64), Stopped> {
        Ok((std::process::id(), n * 2))
    }
}

/// Echoes each message as an event until its inbox closes or it is
/// stopped; returns how many it echoed.
struct Echo;
impl NamedTask for Echo {
    const NAME: &'static str = "iso_echo";
    type Arg = ();
    type In = u64;
    type Event = u64;
    type Value = u64;
    type Error = Stopped;
    fn run(ctx: &Ctx<u64, u64>, (): ()) -> Result<u64, Stopped> {
        let mut n = 0;
        while let Ok(m) = ctx.recv() {
            ctx.emit(m)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Starts `sleep 600`, emits its own pid and the sleeper's, then sleeps
/// until stopped (and ends the sleeper).
struct Sleeper;
impl NamedTask for Sleeper {
    const NAME: &'static str = "iso_sleeper";
    type Arg = ();
    type In = ();
    type Event = (u32, u32);
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<(), (u32, u32)>, (): ()) -> Result<(), Stopped> {
        let mut sleep = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep runs");
        let slept = ctx
            .emit((std::process::id(), sleep.id()))
            .map_err(Stopped::from)
            .and_then(|()| ctx.sleep(Duration::from_secs(600)));
        let _ = sleep.kill();
        let _ = sleep.wait();
        slept
    }
}

/// Emits its pid, then ignores stops for ten minutes.
struct Stubborn;
impl NamedTask for Stubborn {
    const NAME: &'static str = "iso_stubborn";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<(), Stopped> {
        ctx.emit(std::process::id())?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// How a crashing task ends.
#[derive(Serialize, Deserialize)]
enum How {
    Abort,
    Exit(i32),
}

/// Says on stderr how it is about to end, then ends so.
struct Crasher;
impl NamedTask for Crasher {
    const NAME: &'static str = "iso_crasher";
    type Arg = How;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;
    fn run(_: &Ctx, how: How) -> Result<(), Stopped> {
        let mut stderr = std::io::stderr();
        match how {
            How::Abort => {
                let _ = writeln!(stderr, "crasher: about to abort");
                std::process::abort()
            }
            How::Exit(code) => {
                let _ = writeln!(stderr, "crasher: about to exit with {code}");
                std::process::exit(code)
            }
        }
    }
}

fn registry() -> Registry {
    Registry::new()
        .with::<Double>()
        .and_then(|r| r.with::<Echo>())
        .and_then(|r| r.with::<Sleeper>())
        .and_then(|r| r.with::<Stubborn>())
        .and_then(|r| r.with::<Crasher>())
        .expect("unique names")
}

sidetask::test_support!(registry());

/// A server, a client and an isolating worker of this process, all the
/// test's own; the pids it saw are killed when it ends, whatever the
/// outcome.
/// A server, a client and an isolating worker of the test's own; the
/// processes the test saw are killed, and the worker stopped, before the
/// server goes.
struct Setup {
    pids: Vec<u32>,
    _worker: LocalWorker,
    client: Client,
    _server: RedisServer,
}

impl Setup {
    fn new() -> Setup {
        sidetask::init(registry());
        let server = RedisServer::start();
        let client = Client::open(&server.url()).unwrap();
        let worker = LocalWorker::start(
            Worker::new(&client, registry())
                .isolate(true)
                .concurrency(4),
        );
        Setup {
            pids: Vec::new(),
            _worker: worker,
            client,
            _server: server,
        }
    }

    /// Keeps `pid` to be killed at the end.
    fn saw(&mut self, pid: u32) -> u32 {
        self.pids.push(pid);
        pid
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if !gone(pid) {
                kill_pid(pid);
            }
        }
    }
}

#[test]
fn the_value_comes_back_from_a_child_process() {
    let mut s = Setup::new();
    let task = Remote::<Double>::new(21).spawn_on(&s.client).unwrap();
    let (pid, value) = match join(task) {
        Outcome::Value(v) => v,
        o => panic!("a value: {o:?}"),
    };
    assert_eq!(value, 42);
    s.saw(pid);
    assert_ne!(pid, std::process::id(), "it ran in the worker's process");
    wait_for("the child to exit", || gone(pid));
}

#[test]
fn messages_and_events_cross_in_order() {
    let s = Setup::new();
    // A small inbox: messages wait for the child's acknowledgements, on the
    // handle's side and on the worker's.
    let task = Remote::<Echo>::new(())
        .inbox(4)
        .spawn_on(&s.client)
        .unwrap();
    let n = 200;
    let sent = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            for i in 0..n {
                task.send_timeout(i, LIMIT).unwrap();
            }
            task.close_inbox();
        });
        for i in 0..n {
            assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
        }
        sender.join()
    });
    sent.unwrap();
    assert_eq!(join(task).value(), Some(n));
}

#[test]
fn a_closed_inbox_reaches_the_child_after_its_messages() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(())
        .inbox(8)
        .spawn_on(&s.client)
        .unwrap();
    for i in 0..5 {
        task.send(i).unwrap();
    }
    task.close_inbox();
    for i in 0..5 {
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
    }
    assert_eq!(join(task).value(), Some(5));
}

#[test]
fn a_stop_reaches_a_cooperative_task() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(7).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 7);
    task.stop();
    // Echo returns its count when its recv is woken by the stop.
    assert_eq!(join(task).value(), Some(1));
}

#[test]
fn a_kill_is_a_sigkill_to_the_child_and_what_it_started() {
    let mut s = Setup::new();
    let task = Remote::<Sleeper>::new(()).spawn_on(&s.client).unwrap();
    let (child, sleeper) = match task.recv_timeout(LIMIT) {
        Ok(p) => p,
        Err(e) => panic!("no pids ({e:?}): {:?}", join(task)),
    };
    s.saw(child);
    s.saw(sleeper);
    assert_ne!(child, std::process::id());
    assert!(!gone(child) && !gone(sleeper));
    task.kill();
    let killed = match join(task) {
        Outcome::Killed(k) => k,
        o => panic!("killed: {o:?}"),
    };
    assert_eq!(killed.signal(), Some(9), "{killed:?}");
    wait_for("the child to go", || gone(child));
    wait_for("what it started to go", || gone(sleeper));
}

#[test]
fn a_stop_ignored_past_the_grace_period_ends_killed() {
    let mut s = Setup::new();
    let task = Remote::<Stubborn>::new(())
        .grace_period(Duration::from_millis(200))
        .spawn_on(&s.client)
        .unwrap();
    let child = match task.recv_timeout(LIMIT) {
        Ok(pid) => s.saw(pid),
        Err(e) => panic!("no pid ({e:?}): {:?}", join(task)),
    };
    let asked = Instant::now();
    task.stop();
    let killed = match join(task) {
        Outcome::Killed(k) => k,
        o => panic!("killed: {o:?}"),
    };
    // Told to terminate after the grace period (SIGTERM), or killed after
    // another, whichever came first.
    assert!(matches!(killed.signal(), Some(15 | 9)), "{killed:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    wait_for("the child to go", || gone(child));
}

#[test]
fn an_abort_is_a_crash_with_its_signal_and_stderr() {
    let s = Setup::new();
    let task = Remote::<Crasher>::new(How::Abort)
        .spawn_on(&s.client)
        .unwrap();
    let crash = match join(task) {
        Outcome::Crashed(c) => c,
        o => panic!("a crash: {o:?}"),
    };
    assert_eq!(crash.cause(), &CrashCause::Signal(6), "{crash:?}");
    assert!(
        crash.stderr_text().contains("crasher: about to abort"),
        "{crash:?}"
    );
}

#[test]
fn an_exit_without_a_result_is_a_crash_with_its_code_and_stderr() {
    let s = Setup::new();
    let task = Remote::<Crasher>::new(How::Exit(3))
        .spawn_on(&s.client)
        .unwrap();
    let crash = match join(task) {
        Outcome::Crashed(c) => c,
        o => panic!("a crash: {o:?}"),
    };
    assert_eq!(crash.cause(), &CrashCause::Exited(3), "{crash:?}");
    assert!(
        crash
            .stderr_text()
            .contains("crasher: about to exit with 3"),
        "{crash:?}"
    );
}

#[test]
fn a_closing_worker_gives_back_a_child_that_outlives_its_grace_period() {
    sidetask::init(registry());
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let worker = || LocalWorker::start(Worker::new(&client, registry()).isolate(true));
    let mut pids = Vec::new();
    // With an attempt left, queued again; with none, lost.
    for attempts in [2, 1] {
        let closing = worker();
        let task = Remote::<Stubborn>::new(())
            .attempts(attempts)
            .grace_period(Duration::from_millis(100))
            .spawn_on(&client)
            .unwrap();
        let child = task.recv_timeout(LIMIT).expect("the child's pid");
        pids.push(child);
        drop(closing);
        wait_for("the child to be killed", || gone(child));
        let info = client.inspect().unwrap().task(task.id()).unwrap().unwrap();
        assert_eq!(info.attempts, 1, "{info:?}");
        if attempts == 2 {
            assert_eq!(info.state, "queued", "{info:?}");
            task.kill();
            assert!(join(task).is_cancelled());
        } else {
            match join(task) {
                Outcome::Lost(lost) => assert!(lost.reason().contains("closed"), "{lost:?}"),
                o => panic!("lost: {o:?}"),
            }
        }
    }
    for pid in pids {
        if !gone(pid) {
            kill_pid(pid);
        }
    }
}
