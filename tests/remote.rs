//! Remote tasks through a Redis of each test's own: outcomes, messages,
//! stop and kill, attach, limits, refusals and expiry.

#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::remote::{LocalWorker, join};
use common::{LIMIT, wait_for};
use serde::{Deserialize, Serialize};
use sidetask::remote::{Client, Remote, Worker};
use sidetask::{CrashCause, Ctx, NamedTask, Outcome, Registry, Stopped};

/// Doubles its argument.
struct Double;
impl NamedTask for Double {
    const NAME: &'static str = "double";
    type Arg = u64;
    type In = ();
    type Event = ();
    type Value = u64;
    type Error = Stopped;
    fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> {
        Ok(n * 2)
    }
}

/// Another version of `Double`: same name, another argument type.
struct DoubleV2;
impl NamedTask for DoubleV2 {
    const NAME: &'static str = "double";
    type Arg = u32;
    type In = ();
    type Event = ();
    type Value = u64;
    type Error = Stopped;
    fn run(_: &Ctx, n: u32) -> Result<u64, Stopped> {
        Ok(u64::from(n) * 2)
    }
}

/// Fails or panics as asked.
struct Fails;
impl NamedTask for Fails {
    const NAME: &'static str = "fails";
    type Arg = bool;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = String;
    fn run(_: &Ctx, panic: bool) -> Result<(), String> {
        if panic {
            panic!("remote boom");
        }
        Err("no luck".into())
    }
}

/// Echoes each message as an event until stopped or closed; returns how
/// many it echoed.
struct Echo;
impl NamedTask for Echo {
    const NAME: &'static str = "echo";
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

/// Waits for a stop without reading, then returns.
#[derive(Serialize, Deserialize)]
struct Idle;
impl NamedTask for Idle {
    const NAME: &'static str = "idle";
    type Arg = ();
    type In = u64;
    type Event = ();
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<u64>, (): ()) -> Result<(), Stopped> {
        ctx.sleep(Duration::from_secs(600))
    }
}

/// Ignores stops for a long while.
struct Stubborn;
impl NamedTask for Stubborn {
    const NAME: &'static str = "stubborn";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;
    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        std::thread::sleep(Duration::from_secs(5));
        Ok(())
    }
}

/// How many times [`Deaf`] ran in this process.
static DEAF_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Emits how many times it ran in this process before, then sleeps,
/// deaf to stops: a second in its first run, three in the others.
struct Deaf;
impl NamedTask for Deaf {
    const NAME: &'static str = "deaf";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = u32;
    type Error = Stopped;
    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<u32, Stopped> {
        let before = DEAF_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = ctx.emit(before);
        std::thread::sleep(Duration::from_secs(if before == 0 { 1 } else { 3 }));
        Ok(before)
    }
}

/// Emits `(its process id, a count)` every 20 ms for `ms` milliseconds,
/// then returns its process id.
struct Slow;
impl NamedTask for Slow {
    const NAME: &'static str = "slow";
    type Arg = u64;
    type In = ();
    type Event = (u32, u64);
    type Value = u32;
    type Error = Stopped;
    fn run(ctx: &Ctx<(), (u32, u64)>, ms: u64) -> Result<u32, Stopped> {
        let pid = std::process::id();
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_millis(ms) {
            ctx.emit((pid, n))?;
            n += 1;
            ctx.sleep(Duration::from_millis(20))?;
        }
        Ok(pid)
    }
}

/// Reads messages until its inbox closes, taking 20 ms over each and
/// emitting it; returns how many it read.
struct Chew;
impl NamedTask for Chew {
    const NAME: &'static str = "chew";
    type Arg = ();
    type In = u64;
    type Event = u64;
    type Value = u64;
    type Error = Stopped;
    fn run(ctx: &Ctx<u64, u64>, (): ()) -> Result<u64, Stopped> {
        let mut n = 0;
        while let Ok(m) = ctx.recv() {
            ctx.sleep(Duration::from_millis(20))?;
            ctx.emit(m)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Emits 0, 1, … up to its argument, one every 5 ms.
struct Ticker;
impl NamedTask for Ticker {
    const NAME: &'static str = "ticker";
    type Arg = u64;
    type In = ();
    type Event = u64;
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<(), u64>, n: u64) -> Result<(), Stopped> {
        for i in 0..n {
            ctx.emit(i)?;
            ctx.sleep(Duration::from_millis(5))?;
        }
        Ok(())
    }
}

/// Does nothing.
struct Nothing;
impl NamedTask for Nothing {
    const NAME: &'static str = "nothing";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;
    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Echoes each message, looking for them with `try_recv` in a busy loop
/// (as a body that computes between looks does); returns how many it
/// echoed once its inbox closes.
struct Poller;
impl NamedTask for Poller {
    const NAME: &'static str = "poller";
    type Arg = ();
    type In = u64;
    type Event = u64;
    type Value = u64;
    type Error = Stopped;
    fn run(ctx: &Ctx<u64, u64>, (): ()) -> Result<u64, Stopped> {
        let mut n = 0;
        loop {
            match ctx.try_recv() {
                Ok(m) => {
                    ctx.emit(m)?;
                    n += 1;
                }
                Err(sidetask::CtxTryRecvError::Empty) => std::thread::yield_now(),
                Err(_) => return Ok(n),
            }
        }
    }
}

fn registry() -> Registry {
    Registry::new()
        .with::<Poller>()
        .unwrap()
        .with::<Nothing>()
        .unwrap()
        .with::<Slow>()
        .unwrap()
        .with::<Chew>()
        .unwrap()
        .with::<Ticker>()
        .unwrap()
        .with::<Double>()
        .unwrap()
        .with::<Fails>()
        .unwrap()
        .with::<Echo>()
        .unwrap()
        .with::<Idle>()
        .unwrap()
        .with::<Stubborn>()
        .unwrap()
        .with::<Deaf>()
        .unwrap()
}

/// A server, a client and a worker of this process, all the test's own
/// (the worker stopped before the server).
struct Setup {
    worker: Option<LocalWorker>,
    client: Client,
    server: RedisServer,
}

impl Setup {
    fn new() -> Setup {
        let mut s = Setup::without_worker();
        s.worker = Some(LocalWorker::start(
            Worker::new(&s.client, registry()).concurrency(4),
        ));
        s
    }

    fn without_worker() -> Setup {
        let server = RedisServer::start();
        let client = Client::open(&server.url()).unwrap();
        Setup {
            worker: None,
            client,
            server,
        }
    }
}

/// The keys matching `pattern`.
fn keys(con: &mut redis::Connection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS").arg(pattern).query(con).unwrap()
}

/// Whether `key` exists with a time to live.
fn lives(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("PTTL").arg(key).query::<i64>(con).unwrap() > 0
}

#[test]
fn value_error_and_panic_come_back() {
    let s = Setup::new();
    let value = Remote::<Double>::new(21).spawn_on(&s.client).unwrap();
    let error = Remote::<Fails>::new(false).spawn_on(&s.client).unwrap();
    let panic = Remote::<Fails>::new(true).spawn_on(&s.client).unwrap();
    assert_eq!(join(value).value(), Some(42));
    assert_eq!(join(error).error().as_deref(), Some("no luck"));
    let p = join(panic).panic().expect("a panic");
    assert_eq!(p.message(), "remote boom");
    assert!(p.location().unwrap().file().ends_with("remote.rs"));
}

#[test]
fn messages_and_events_cross_in_order() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(())
        .inbox(8)
        .spawn_on(&s.client)
        .unwrap();
    let n = 500;
    let sender = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            for i in 0..n {
                task.send(i).unwrap();
            }
            task.close_inbox();
        });
        for i in 0..n {
            assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
        }
        h.join()
    });
    sender.unwrap();
    assert_eq!(join(task).value(), Some(n));
}

#[test]
fn a_close_goes_out_when_every_credit_is_spent() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(())
        .inbox(1)
        .spawn_on(&s.client)
        .unwrap();
    for i in 0..6 {
        task.send(i).unwrap();
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
    }
    // The handle has seen no credit come back for the last messages: the
    // close must not wait for any.
    task.close_inbox();
    assert_eq!(join(task).value(), Some(6));
}

#[test]
fn messages_sent_before_a_worker_claims_are_kept() {
    let mut s = Setup::without_worker();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    for i in 0..3 {
        task.send(i).unwrap();
    }
    task.close_inbox();
    s.worker = Some(LocalWorker::start(Worker::new(&s.client, registry())));
    let got: Vec<u64> = (0..3).map(|_| task.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(join(task).value(), Some(3));
}

#[test]
fn a_queued_task_stopped_is_cancelled_and_gives_its_messages_back() {
    let s = Setup::without_worker();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(1).unwrap();
    task.send(2).unwrap();
    task.stop();
    assert_eq!(task.send(3).unwrap_err().into_inner(), 3);
    wait_for("the cancellation", || task.is_finished());
    assert_eq!(task.take_unread(), Some(vec![1, 2]));
    assert!(join(task).is_cancelled());
}

#[test]
fn stop_reaches_a_running_task() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(7).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 7);
    task.stop();
    // Echo returns its count when its recv is woken by the stop.
    assert_eq!(join(task).value(), Some(1));
}

#[test]
fn a_task_that_ignores_stop_is_killed_after_the_grace_period() {
    let s = Setup::new();
    let task = Remote::<Stubborn>::new(())
        .grace_period(Duration::from_millis(200))
        .spawn_on(&s.client)
        .unwrap();
    wait_for("the claim", || {
        s.client
            .inspect()
            .unwrap()
            .task(task.id())
            .unwrap()
            .is_some_and(|t| t.state == "running")
    });
    let asked = Instant::now();
    task.stop();
    let outcome = join(task);
    assert!(outcome.is_killed(), "{outcome:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn kill_ends_a_running_task_as_killed() {
    let s = Setup::new();
    let task = Remote::<Idle>::new(()).spawn_on(&s.client).unwrap();
    wait_for("the claim", || {
        s.client
            .inspect()
            .unwrap()
            .task(task.id())
            .unwrap()
            .is_some_and(|t| t.state == "running")
    });
    task.kill();
    assert!(join(task).is_killed());
}

#[test]
fn a_full_inbox_says_full_and_loses_nothing() {
    let s = Setup::new();
    let task = Remote::<Idle>::new(())
        .inbox(2)
        .spawn_on(&s.client)
        .unwrap();
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..10 {
        match task.try_send(i) {
            Ok(()) => accepted.push(i),
            Err(e) => {
                assert!(e.is_full(), "{e:?}");
                refused = Some(e.into_inner());
                break;
            }
        }
    }
    let refused = refused.expect("a full inbox");
    assert!(accepted.len() >= 2 && accepted.len() <= 4, "{accepted:?}");
    assert_eq!(refused, accepted.len() as u64);
    task.stop();
    wait_for("the end", || task.is_finished());
    // Idle never reads: every accepted message comes back, in order.
    assert_eq!(task.take_unread(), Some(accepted));
    // Stopped while it ran, or before a worker claimed it.
    let outcome = join(task);
    assert!(outcome.is_error() || outcome.is_cancelled(), "{outcome:?}");
}

#[test]
fn a_new_client_attaches_by_id_and_resumes_without_gap_or_duplicate() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    let id = task.id();
    for i in 0..10 {
        task.send(i).unwrap();
    }
    for i in 0..4 {
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
    }
    drop(task); // detaches: the task runs on
    let other = Client::open(s.client.url()).unwrap();
    let again = other.attach::<Echo>(id).unwrap();
    for i in 4..10 {
        assert_eq!(again.recv_timeout(LIMIT).unwrap(), i);
    }
    again.send(10).unwrap();
    assert_eq!(again.recv_timeout(LIMIT).unwrap(), 10);
    again.close_inbox();
    assert_eq!(join(again).value(), Some(11));
    // An id nobody submitted.
    let err = other
        .attach::<Echo>(sidetask::TaskId::from(12_345u64))
        .unwrap_err();
    assert!(err.is_unknown_task(), "{err}");
    // A task of another type.
    let err = other.attach::<Double>(id).unwrap_err();
    assert!(err.to_string().contains("echo"), "{err}");
}

#[test]
fn oversized_messages_and_arguments_are_refused_before_redis() {
    let s = Setup::new();
    let err = Remote::<Double>::new(1)
        .max_message(0)
        .spawn_on(&s.client)
        .unwrap_err();
    assert!(err.is_invalid(), "{err}");
    let task = Remote::<Echo>::new(())
        .max_message(2)
        .spawn_on(&s.client)
        .unwrap();
    let e = task.send(u64::MAX).unwrap_err();
    assert!(e.is_too_large(), "{e:?}");
    assert_eq!(e.into_inner(), u64::MAX);
    task.send(1).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    task.close_inbox();
    assert_eq!(join(task).value(), Some(1));
}

#[test]
fn a_message_that_does_not_decode_ends_the_task_with_a_clear_error() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(1).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    // Bytes no u64 decodes from (a varint longer than ten bytes), written
    // into the inbox by hand as if sent; the next message's doorbell copy
    // follows it, so the worker reads the stream and meets it first.
    let mut con = s.server.connection();
    let (prefix, id) = (s.client.key_prefix(), task.id().as_u64());
    let sid: String = redis::cmd("XADD")
        .arg(format!("{prefix}in:{id}"))
        .arg("*")
        .arg("m")
        .arg(&[0xffu8; 11][..])
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}t:{id}"))
        .arg("inlast")
        .arg(&sid)
        .query(&mut con)
        .unwrap();
    task.send(2).unwrap();
    assert_protocol_crash(join(task), "did not decode");
}

#[test]
fn a_message_over_the_workers_largest_ends_the_task_with_a_clear_error() {
    let mut s = Setup::without_worker();
    s.worker = Some(LocalWorker::start(
        Worker::new(&s.client, registry()).max_message(4),
    ));
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(1).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    // Ten bytes on the wire: the client allows it, the worker does not.
    task.send(u64::MAX).unwrap();
    assert_protocol_crash(join(task), "over the largest");
}

/// Fails unless `outcome` is a crash of the protocol whose reason says
/// `why`.
fn assert_protocol_crash<T: std::fmt::Debug, E: std::fmt::Debug>(
    outcome: Outcome<T, E>,
    why: &str,
) {
    match outcome {
        Outcome::Crashed(crash) => assert!(
            matches!(crash.cause(), CrashCause::Protocol(said) if said.contains(why)),
            "{crash:?}"
        ),
        o => panic!("a protocol crash: {o:?}"),
    }
}

#[test]
fn a_task_of_another_version_is_left_for_a_worker_that_has_it() {
    let s = Setup::new();
    let task = Remote::<DoubleV2>::new(4).spawn_on(&s.client).unwrap();
    // The worker has `Double` of another version: it refuses, and says so.
    wait_for("the refusal", || {
        s.client
            .inspect()
            .unwrap()
            .task(task.id())
            .unwrap()
            .is_some_and(|t| t.refusal.is_some())
    });
    let info = s
        .client
        .inspect()
        .unwrap()
        .task(task.id())
        .unwrap()
        .unwrap();
    assert_eq!(info.state, "queued");
    assert!(info.refusal.unwrap().contains("another version"));
    // A worker with that version runs it.
    let _v2 = LocalWorker::start(Worker::new(
        &s.client,
        Registry::new().with::<DoubleV2>().unwrap(),
    ));
    assert_eq!(join(task).value(), Some(8));
}

#[test]
fn forged_claims_and_unknown_names_never_run() {
    let s = Setup::new();
    // An id pushed into a queue by hand.
    let mut con = s.server.connection();
    let _: () = redis::cmd("RPUSH")
        .arg(s.client.key_prefix() + "q:double")
        .arg("999")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(s.client.key_prefix() + "bell:double")
        .arg("1")
        .query(&mut con)
        .unwrap();
    wait_for("the refusal", || {
        let refused: Vec<String> = redis::cmd("LRANGE")
            .arg(s.client.key_prefix() + "refused")
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        refused.iter().any(|r| r.contains("999"))
    });
    // A task the worker does not know stays queued while others run.
    struct Unknown;
    impl NamedTask for Unknown {
        const NAME: &'static str = "unknown";
        type Arg = ();
        type In = ();
        type Event = ();
        type Value = ();
        type Error = Stopped;
        fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
            Ok(())
        }
    }
    let unknown = Remote::<Unknown>::new(()).spawn_on(&s.client).unwrap();
    for n in 0..20 {
        assert_eq!(
            join(Remote::<Double>::new(n).spawn_on(&s.client).unwrap()).value(),
            Some(2 * n)
        );
    }
    let info = s
        .client
        .inspect()
        .unwrap()
        .task(unknown.id())
        .unwrap()
        .unwrap();
    assert_eq!(info.state, "queued");
    assert_eq!(info.attempts, 0);
}

#[test]
fn every_key_of_an_ended_task_expires_after_its_time_to_live() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(())
        .keep_result(Duration::from_millis(300))
        .spawn_on(&s.client)
        .unwrap();
    let id = task.id().as_u64().to_string();
    task.send(1).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    let mut con = s.server.connection();
    // Every key is the namespace's, under its version (a later version of
    // what is stored uses other keys).
    let all = keys(&mut con, "*");
    assert!(
        all.iter().any(|k| k.ends_with(&format!(":{id}"))),
        "{all:?}"
    );
    let prefix = s.client.key_prefix();
    assert!(
        all.iter().all(|k| k.starts_with(&prefix)),
        "{prefix}: {all:?}"
    );
    task.close_inbox();
    assert_eq!(join(task).value(), Some(1));
    wait_for("the keys to expire", || {
        !keys(&mut con, "*")
            .iter()
            .any(|k| k.ends_with(&format!(":{id}")))
    });
}

#[test]
fn the_live_workers_are_listed_and_an_ended_one_leaves_nothing() {
    let s = Setup::without_worker();
    let inspect = s.client.inspect().unwrap();
    let mut con = s.server.connection();
    // A name whose description expired long ago, as a worker killed
    // before it could leave would be: gone at the next renewal.
    let set = s.client.key_prefix() + "workers";
    let _: () = redis::cmd("ZADD")
        .arg(&set)
        .arg(1)
        .arg("ghost")
        .query(&mut con)
        .unwrap();
    let worker = LocalWorker::start(Worker::new(&s.client, registry()));
    wait_for("the worker and no other to be listed", || {
        let names: Vec<String> = redis::cmd("ZRANGE")
            .arg(&set)
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        names.len() == 1 && inspect.workers().unwrap().len() == 1
    });
    let name = inspect.workers().unwrap()[0].name.clone();
    let names: Vec<String> = redis::cmd("ZRANGE")
        .arg(&set)
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(names, std::slice::from_ref(&name));
    assert_eq!(keys(&mut con, &format!("*w:{name}")).len(), 2);
    // Ended, it is no longer listed, and its description and doorbell
    // are gone at once, not when they expire.
    drop(worker);
    assert!(inspect.workers().unwrap().is_empty());
    assert_eq!(keys(&mut con, "*w:*"), Vec::<String>::new());
    let names: u64 = redis::cmd("ZCARD").arg(&set).query(&mut con).unwrap();
    assert_eq!(names, 0);
}

#[test]
fn doorbells_deleted_are_made_again_by_their_owners_and_nothing_is_lost() {
    let s = Setup::new();
    let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
    task.send(0).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 0);
    let mut con = s.server.connection();
    let mut bells = keys(&mut con, "*:n:*");
    bells.extend(keys(&mut con, "*:ww:*"));
    assert_eq!(
        bells.len(),
        2,
        "the client's and the worker's doorbells: {bells:?}"
    );
    for bell in &bells {
        assert!(lives(&mut con, bell), "{bell} has no time to live");
    }
    // Deleted, what would have rung them is read from the streams once
    // their owners make them again.
    let _: () = redis::cmd("DEL").arg(&bells).query(&mut con).unwrap();
    for i in 1..4 {
        task.send(i).unwrap();
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), i);
    }
    wait_for("the doorbells to be made again", || {
        bells.iter().all(|bell| lives(&mut con, bell))
    });
    task.send(4).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 4);
    task.close_inbox();
    assert_eq!(join(task).value(), Some(5));
}

/// A worker in a process of its own (this test binary, running the ignored
/// test `worker_process`), killed by pid when dropped.
struct WorkerProcess {
    child: std::process::Child,
}

impl WorkerProcess {
    fn start(url: &str) -> WorkerProcess {
        WorkerProcess::runs(url, 1)
    }

    /// A process that runs `runs` workers one after another, each until a
    /// signal tells it to end.
    fn runs(url: &str, runs: usize) -> WorkerProcess {
        let child = common::this_test_alone("worker_process", "REMOTE_WORKER")
            .env("REMOTE_WORKER_URL", url)
            .env("REMOTE_WORKER_RUNS", runs.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        WorkerProcess { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }
}

impl WorkerProcess {
    /// Waits at most [`LIMIT`] for the process to exit.
    fn exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("the worker process to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        common::kill_pid(self.pid());
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "the worker of the fault tests, in a process of its own"]
fn worker_process() {
    let Ok(url) = std::env::var("REMOTE_WORKER_URL") else {
        return;
    };
    let client = if url.contains(',') {
        open_cluster(&url)
    } else {
        Client::open(&url).unwrap()
    };
    // Runs one worker after another, as many as asked (one by default).
    let runs: usize = std::env::var("REMOTE_WORKER_RUNS").map_or(1, |n| n.parse().unwrap());
    for _ in 0..runs {
        Worker::new(&client, registry())
            .concurrency(2)
            .block(Duration::from_millis(100))
            .run()
            .unwrap();
    }
}

/// The first event of `task`, which names the process that runs it.
fn runner(task: &sidetask::remote::RemoteTask<Slow>) -> u32 {
    task.recv_timeout(LIMIT).expect("a first event").0
}

#[test]
fn a_worker_told_to_terminate_stops_its_tasks_and_leaves() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let mut worker = WorkerProcess::start(&server.url());
    let task = Remote::<Slow>::new(60_000).spawn_on(&client).unwrap();
    assert_eq!(runner(&task), worker.pid());
    worker.signal(rustix::process::Signal::TERM);
    // The task is asked to stop and says how it ended, long before its
    // minute was up; the worker then returns from `run` and exits.
    let asked = Instant::now();
    assert!(matches!(join(task), Outcome::Error(Stopped)));
    assert!(asked.elapsed() < Duration::from_secs(10), "{asked:?}");
    assert!(worker.exit().success());
    assert!(client.inspect().unwrap().workers().unwrap().is_empty());
    // What is submitted now waits for the next worker.
    let next = Remote::<Double>::new(4).spawn_on(&client).unwrap();
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    assert_eq!(join(next).value(), Some(8));
}

#[test]
fn a_second_worker_run_in_one_process_is_told_to_end_as_the_first() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let mut process = WorkerProcess::runs(&server.url(), 2);
    let inspect = client.inspect().unwrap();
    let listed = || -> Vec<String> {
        let workers = inspect.workers().unwrap();
        workers.into_iter().map(|w| w.name).collect()
    };
    wait_for("the first worker", || listed().len() == 1);
    let first = listed();
    process.signal(rustix::process::Signal::TERM);
    wait_for("the second worker", || {
        let now = listed();
        now.len() == 1 && now != first
    });
    // The second run ends as the first did, and the process exits well,
    // not by the signal.
    process.signal(rustix::process::Signal::TERM);
    assert!(process.exit().success());
    assert!(listed().is_empty());
}

#[test]
fn an_attempt_that_lost_its_lease_leaves_the_next_one_on_its_worker_running() {
    let s = Setup::new();
    let task = Remote::<Deaf>::new(())
        .attempts(2)
        .lease(Duration::from_secs(1))
        .spawn_on(&s.client)
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 0);
    // Taken away from its attempt and queued again by hand, as the reaper
    // does once a lease ran out (a new token, so the old attempt's writes
    // are refused): the same worker runs the second attempt while the
    // first body sleeps on. The first body's end (a second in) must not
    // take the second attempt's place in its worker: unrenewed, the second
    // attempt's lease would run out before its three seconds, and with no
    // attempt left the task would be lost.
    let mut con = s.server.connection();
    let p = s.client.key_prefix();
    let _: () = redis::cmd("EVAL")
        .arg(
            "redis.call('HSET', KEYS[1], 'tok', 'taken', 'st', 'q', 'wk', '') \
             redis.call('ZREM', KEYS[2], ARGV[1]) redis.call('LPUSH', KEYS[3], ARGV[1]) \
             redis.call('RPUSH', KEYS[4], 1)",
        )
        .arg(4)
        .arg(format!("{p}t:{}", task.id().as_u64()))
        .arg(format!("{p}running"))
        .arg(format!("{p}q:deaf"))
        .arg(format!("{p}bell:deaf"))
        .arg(task.id().as_u64())
        .query(&mut con)
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    assert_eq!(join(task).value(), Some(1));
}

#[test]
fn a_worker_killed_mid_task_is_replaced_within_its_lease() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let lost_one = WorkerProcess::start(&server.url());
    let task = Remote::<Slow>::new(600)
        .attempts(2)
        .lease(Duration::from_secs(1))
        .spawn_on(&client)
        .unwrap();
    assert_eq!(runner(&task), lost_one.pid());
    lost_one.signal(rustix::process::Signal::KILL);
    let killed = Instant::now();
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    let me = std::process::id();
    // Events of the first attempt may still be in the handle; then the
    // second attempt's come.
    while task
        .recv_timeout(LIMIT)
        .expect("the second attempt's events")
        .0
        != me
    {}
    let requeued = killed.elapsed();
    assert!(
        requeued < Duration::from_secs(3),
        "requeued after {requeued:?}"
    );
    assert_eq!(join(task).value(), Some(me));
}

#[test]
fn a_worker_killed_with_no_attempt_left_loses_the_task() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let lost_one = WorkerProcess::start(&server.url());
    let task = Remote::<Slow>::new(60_000)
        .lease(Duration::from_secs(1))
        .spawn_on(&client)
        .unwrap();
    assert_eq!(runner(&task), lost_one.pid());
    lost_one.signal(rustix::process::Signal::KILL);
    // Another worker's keeper reaps it.
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    let lost = join(task).lost().expect("lost");
    assert_eq!(lost.attempts(), 1);
    assert!(lost.reason().contains("lease"), "{lost}");
}

#[test]
fn a_kill_for_a_task_whose_worker_died_ends_it_killed_not_requeued() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let lost_one = WorkerProcess::start(&server.url());
    let task = Remote::<Slow>::new(60_000)
        .attempts(3)
        .lease(Duration::from_secs(1))
        .spawn_on(&client)
        .unwrap();
    assert_eq!(runner(&task), lost_one.pid());
    lost_one.signal(rustix::process::Signal::KILL);
    task.kill();
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    assert!(join(task).is_killed());
}

#[test]
fn a_worker_paused_past_its_lease_can_no_longer_write() {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let paused = WorkerProcess::start(&server.url());
    let task = Remote::<Slow>::new(1_500)
        .attempts(2)
        .lease(Duration::from_secs(1))
        .spawn_on(&client)
        .unwrap();
    let id = task.id();
    assert_eq!(runner(&task), paused.pid());
    paused.signal(rustix::process::Signal::STOP);
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    let me = std::process::id();
    let mut events = Vec::new();
    while let Ok(event) = task.recv_timeout(LIMIT) {
        events.push(event);
    }
    assert_eq!(join(task).value(), Some(me));
    paused.signal(rustix::process::Signal::CONT);
    // The paused worker wakes, finds its lease gone, and stops its attempt:
    // wait until it says it runs nothing.
    wait_for("the paused worker to give up its attempt", || {
        client
            .inspect()
            .unwrap()
            .workers()
            .unwrap()
            .iter()
            .any(|w| w.pid == Some(paused.pid()) && w.running.is_empty())
    });
    // Exactly one outcome, the second attempt's, and no event of the first
    // attempt after the second one began.
    let info = client.inspect().unwrap().task(id).unwrap().unwrap();
    assert_eq!(info.outcome.as_deref(), Some("value"));
    assert_eq!(info.attempts, 2);
    let first_of_mine = events
        .iter()
        .position(|e| e.0 == me)
        .expect("events of mine");
    assert!(
        events[first_of_mine..].iter().all(|e| e.0 == me),
        "{events:?}"
    );
    let mut con = server.connection();
    let ends: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(format!("{}ev:{}", client.key_prefix(), id.as_u64()))
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let ends = format!("{ends:?}").matches("end").count();
    assert_eq!(ends, 1);
}

#[test]
fn a_redis_restarted_with_its_data_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let client = Client::open(&server.url()).unwrap();
    let _worker = LocalWorker::start(Worker::new(&client, registry()));
    let task = Remote::<Echo>::new(()).spawn_on(&client).unwrap();
    task.send(1).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 1);
    server.restart();
    task.send(2).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 2);
    task.close_inbox();
    assert_eq!(join(task).value(), Some(2));
    // Scripts are loaded again: a new task runs.
    assert_eq!(
        join(Remote::<Double>::new(5).spawn_on(&client).unwrap()).value(),
        Some(10)
    );
}

#[test]
fn a_redis_restored_from_an_older_snapshot_never_gives_an_attempts_token_again() {
    let mut server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let ids = Remote::<Idle>::new(())
        .submit_each(&client, std::iter::empty())
        .unwrap();
    let key = format!("{}t:{}", client.key_prefix(), ids[0].as_u64());
    // The running attempt's token, once one runs.
    let running = |con: &mut redis::Connection| -> Option<String> {
        let (st, tok): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg(&["st", "tok"])
            .query(con)
            .ok()?;
        tok.filter(|_| st.as_deref() == Some("r"))
    };
    // A snapshot while the task is queued, then its first attempt.
    let _: () = redis::cmd("SAVE").query(&mut server.connection()).unwrap();
    let _worker = LocalWorker::start(Worker::new(&client, registry()));
    let mut con = server.connection();
    let mut first = None;
    wait_for("the first attempt", || {
        first = running(&mut con);
        first.is_some()
    });
    // Back to the snapshot: the task is queued again, and claimed again.
    server.restart();
    let mut con = server.connection();
    let mut second = None;
    wait_for("the next attempt", || {
        second = running(&mut con);
        second.is_some()
    });
    assert_ne!(first, second, "the first attempt's token was given again");
}

#[test]
fn a_redis_restarted_without_its_data_resolves_every_handle_as_lost() {
    let mut server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let _worker = LocalWorker::start(Worker::new(&client, registry()));
    let running = Remote::<Idle>::new(()).spawn_on(&client).unwrap();
    struct Unknown;
    impl NamedTask for Unknown {
        const NAME: &'static str = "nobody-runs-this";
        type Arg = ();
        type In = ();
        type Event = ();
        type Value = ();
        type Error = Stopped;
        fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
            Ok(())
        }
    }
    let queued = Remote::<Unknown>::new(()).spawn_on(&client).unwrap();
    wait_for("the claim", || {
        client
            .inspect()
            .unwrap()
            .task(running.id())
            .unwrap()
            .is_some_and(|t| t.state == "running")
    });
    server.restart();
    assert!(join(running).is_lost());
    assert!(join(queued).is_lost());
}

#[test]
#[ignore = "a client in a process of its own, SIGKILLed by the test that starts it"]
fn client_process() {
    use std::io::Write;
    let Ok(url) = std::env::var("REMOTE_CLIENT_URL") else {
        return;
    };
    let client = Client::open(&url).unwrap();
    let task = Remote::<Ticker>::new(400).spawn_on(&client).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ID={}", task.id().as_u64()).unwrap();
    while let Ok(n) = task.recv() {
        writeln!(out, "EV={n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_client_killed_mid_run_is_resumed_by_attach_without_duplicates() {
    use std::io::BufRead;
    let s = Setup::new();
    let mut child = common::this_test_alone("client_process", "REMOTE_CLIENT")
        .env("REMOTE_CLIENT_URL", s.client.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut id = None;
    let mut seen = Vec::new();
    for line in lines.lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ID=") {
            id = Some(n.parse::<u64>().unwrap());
        } else if let Some(n) = line.strip_prefix("EV=") {
            seen.push(n.parse::<u64>().unwrap());
            if seen.len() == 50 {
                common::kill_pid(pid);
                break;
            }
        }
    }
    let _ = child.wait();
    let id = id.expect("the child's task id");
    // The child's doorbell has no owner any more: deleted, the task's next
    // events do not make it again (it would never expire).
    let mut con = s.server.connection();
    let bells = keys(&mut con, "*:n:*");
    assert_eq!(bells.len(), 1, "the killed client's doorbell: {bells:?}");
    let _: () = redis::cmd("DEL").arg(&bells).query(&mut con).unwrap();
    let events = |con: &mut redis::Connection| -> usize {
        redis::cmd("XLEN")
            .arg(format!("{}ev:{id}", s.client.key_prefix()))
            .query(con)
            .unwrap()
    };
    let before = events(&mut con);
    wait_for("three more events", || events(&mut con) >= before + 3);
    assert!(keys(&mut con, "*:n:*").is_empty(), "a ring made a doorbell");
    let again = s
        .client
        .attach::<Ticker>(sidetask::TaskId::from(id))
        .unwrap();
    let rest: Vec<u64> = std::iter::from_fn(|| again.recv_timeout(LIMIT).ok()).collect();
    assert!(join(again).is_value());
    // The killed handle took events up to its cursor; the new one resumes
    // after it: no event twice, none skipped but the one the child may
    // have taken and not yet printed when it was killed.
    let last_seen = *seen.last().unwrap();
    let first_after = rest[0];
    assert!(
        first_after == last_seen + 1 || first_after == last_seen + 2,
        "resumed at {first_after} after {last_seen}"
    );
    assert!(
        rest.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap or a duplicate"
    );
    assert_eq!(*rest.last().unwrap(), 399);
}

#[test]
fn chaos_every_task_has_one_outcome_and_loses_no_message() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let workers = std::sync::Mutex::new(
        (0..3)
            .map(|_| WorkerProcess::start(&server.url()))
            .collect::<Vec<_>>(),
    );
    const TASKS: usize = 24;
    const MESSAGES: u64 = 10;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let task = Remote::<Chew>::new(())
                .attempts(4)
                .lease(Duration::from_millis(600))
                .spawn_on(&client)
                .unwrap();
            for m in 0..MESSAGES {
                task.send(m).unwrap();
            }
            task.close_inbox();
            task
        })
        .collect();
    let done = AtomicBool::new(false);
    let outcomes = std::thread::scope(|scope| {
        // Kill a worker every 300 ms and start another in its place.
        scope.spawn(|| {
            let mut round = 0usize;
            while !done.load(Ordering::SeqCst) && round < 100 {
                std::thread::sleep(Duration::from_millis(300));
                let mut w = workers.lock().unwrap();
                let victim = round % w.len();
                w[victim].signal(rustix::process::Signal::KILL);
                w[victim] = WorkerProcess::start(&server.url());
                round += 1;
            }
        });
        let outcomes: Vec<_> = tasks
            .into_iter()
            .map(|task| {
                while task.recv_timeout(LIMIT * 2).is_ok() {}
                let id = task.id();
                assert!(task.wait_timeout(LIMIT * 2), "{id} did not end");
                let unread = task.take_unread().expect("ended").len() as u64;
                let outcome = join(task);
                (id, outcome, unread)
            })
            .collect();
        done.store(true, Ordering::SeqCst);
        outcomes
    });
    let mut con = server.connection();
    let mut requeued = 0;
    for (id, outcome, unread) in &outcomes {
        assert!(outcome.is_value() || outcome.is_lost(), "{id}: {outcome:?}");
        let info = client.inspect().unwrap().task(*id).unwrap().unwrap();
        assert!((1..=4).contains(&info.attempts), "{id}: {info:?}");
        requeued += usize::from(info.attempts > 1);
        // Sent = read + given back.
        assert_eq!(info.messages_sent, MESSAGES);
        assert_eq!(info.messages_read + unread, MESSAGES, "{id}: {info:?}");
        let ends: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(format!("{}ev:{}", client.key_prefix(), id.as_u64()))
            .arg("-")
            .arg("+")
            .query(&mut con)
            .unwrap();
        assert_eq!(format!("{ends:?}").matches("\"end\"").count(), 1, "{id}");
    }
    let values = outcomes.iter().filter(|(_, o, _)| o.is_value()).count();
    assert!(values > 0, "no task got through");
    assert!(requeued > 0, "no worker was killed during a task");
}

/// A client of the cluster whose node URLs `urls` lists, comma-separated.
#[cfg(feature = "redis-cluster")]
fn open_cluster(urls: &str) -> Client {
    let urls: Vec<&str> = urls.split(',').collect();
    Client::open_cluster(&urls).unwrap()
}

#[cfg(not(feature = "redis-cluster"))]
fn open_cluster(_: &str) -> Client {
    panic!("a cluster's URLs without the redis-cluster feature")
}

#[cfg(feature = "redis-cluster")]
#[test]
fn tasks_messages_and_a_worker_kill_through_a_cluster() {
    let cluster = common::redis::RedisCluster::start();
    let urls = cluster.urls();
    let joined = urls.join(",");
    let client = open_cluster(&joined);
    let here = LocalWorker::start(Worker::new(&client, registry()));
    assert_eq!(
        join(Remote::<Double>::new(4).spawn_on(&client).unwrap()).value(),
        Some(8)
    );
    let echo = Remote::<Echo>::new(()).spawn_on(&client).unwrap();
    for i in 0..20 {
        echo.send(i).unwrap();
    }
    echo.close_inbox();
    let got: Vec<u64> = (0..20).map(|_| echo.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(join(echo).value(), Some(20));
    // Only the process worker runs `slow` at first: stop this one.
    drop(here);
    let lost_one = WorkerProcess::start(&joined);
    let task = Remote::<Slow>::new(400)
        .attempts(2)
        .lease(Duration::from_secs(1))
        .spawn_on(&client)
        .unwrap();
    assert_eq!(runner(&task), lost_one.pid());
    lost_one.signal(rustix::process::Signal::KILL);
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    let me = std::process::id();
    assert_eq!(join(task).value(), Some(me));
}

/// Queues `n` tasks at once, then drains them with one worker of
/// `concurrency`, within `limit`; returns how long the drain took.
fn drain(n: usize, concurrency: usize, limit: Duration) -> Duration {
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let ids = Remote::<Nothing>::new(())
        .keep_result(Duration::from_secs(5))
        .submit_each(&client, std::iter::repeat_n((), n - 1))
        .unwrap();
    assert_eq!(ids.len(), n);
    let queued = |c: &Client| {
        let q = c.inspect().unwrap().queues().unwrap();
        let q = q.iter().find(|q| q.name == "nothing").cloned().unwrap();
        (q.queued, q.running, q.done)
    };
    assert_eq!(queued(&client).0, n);
    let start = Instant::now();
    let worker = LocalWorker::start(Worker::new(&client, registry()).concurrency(concurrency));
    loop {
        // One look reads the running set before the count of ended tasks:
        // a task may end in between.
        let (left, running, done) = queued(&client);
        assert!(done <= n as u64, "{done} ended of {n}");
        if (left, running, done) == (0, 0, n as u64) {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "{done} of {n} done after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    drop(worker);
    took
}

#[test]
fn more_tasks_queued_at_once_than_a_lua_call_can_unpack_are_drained() {
    // 20,000: more than the 7,999 values one Lua call can unpack.
    drain(20_000, 16, Duration::from_secs(120));
}

#[test]
#[ignore = "a million tasks: run by CI as a step of its own"]
fn a_million_tasks_queued_at_once_are_drained() {
    let took = drain(1_000_000, 64, Duration::from_secs(1200));
    println!("drained 1,000,000 tasks in {took:?}");
}

#[cfg(feature = "tokio")]
#[test]
fn a_remote_handle_serves_async_callers_too() {
    let s = Setup::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = runtime.block_on(async {
        let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
        let id = task.id();
        for i in 0..10 {
            task.send_async(i).await.unwrap();
            let echoed = task.recv_timeout_async(LIMIT).await.unwrap();
            assert_eq!(echoed, i);
        }
        task.close_inbox();
        let outcome = tokio::time::timeout(LIMIT, task)
            .await
            .expect("an outcome in time");
        assert_eq!(outcome.value(), Some(10));
        id
    });
    // The async recv moved the durable cursor as the blocking one does: a
    // handle attached now finds no event left, only the outcome.
    let again = s.client.attach::<Echo>(id).unwrap();
    assert!(again.recv_timeout(LIMIT).is_err());
    assert_eq!(join(again).value(), Some(10));
}

#[test]
fn a_handle_behind_the_events_redis_keeps_is_told_how_many_it_missed() {
    let s = Setup::new();
    let task = Remote::<Ticker>::new(100)
        .events_kept(10)
        .spawn_on(&s.client)
        .unwrap();
    let id = task.id();
    drop(task); // nobody reads while it runs
    wait_for("the end", || {
        s.client
            .inspect()
            .unwrap()
            .task(id)
            .unwrap()
            .is_some_and(|t| t.state == "done")
    });
    let again = s.client.attach::<Ticker>(id).unwrap();
    let got: Vec<u64> = std::iter::from_fn(|| again.recv_timeout(LIMIT).ok()).collect();
    // Redis kept the last entries (the end among them): the handle sees
    // the last events, and is told of every one before them.
    let first = *got
        .first()
        .unwrap_or_else(|| panic!("no event; missed {}", again.missed_events()));
    assert!((80..=91).contains(&first), "{got:?}");
    assert_eq!(got, (first..100).collect::<Vec<_>>());
    assert_eq!(again.missed_events(), first);
    assert!(join(again).is_value());
}

#[test]
fn a_client_and_a_worker_reach_redis_through_a_unix_socket() {
    let server = RedisServer::start();
    let client = Client::open(&server.unix_url()).unwrap();
    client.ping().unwrap();
    let _worker = LocalWorker::start(Worker::new(&client, registry()));
    assert_eq!(
        join(Remote::<Double>::new(8).spawn_on(&client).unwrap()).value(),
        Some(16)
    );
}

#[test]
fn an_acl_user_in_the_url_is_used_and_its_password_never_shown() {
    let server =
        RedisServer::start_with(&["--user", "alice", "on", ">s3cret", "~*", "&*", "+@all"]);
    let port = server.port();
    let client = Client::open(&format!("redis://alice:s3cret@127.0.0.1:{port}")).unwrap();
    assert_eq!(client.url(), format!("redis://alice:***@127.0.0.1:{port}"));
    let worker = LocalWorker::start(Worker::new(&client, registry()));
    assert_eq!(
        join(Remote::<Double>::new(2).spawn_on(&client).unwrap()).value(),
        Some(4)
    );
    drop(worker);
    let wrong = Client::open(&format!("redis://alice:nope@127.0.0.1:{port}")).unwrap();
    let err = wrong.ping().unwrap_err().to_string();
    assert!(!err.contains("nope"), "{err}");
    assert!(err.contains("alice:***"), "{err}");
}

#[cfg(feature = "redis-tls")]
#[test]
fn a_rediss_url_reaches_a_tls_server() {
    // A self-signed certificate of the test's own.
    let dir = std::env::temp_dir().join(format!("sidetask-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl made no certificate");
    let tls_port = common::redis::free_port().to_string();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert_s,
        "--tls-key-file",
        &key_s,
        "--tls-ca-cert-file",
        &cert_s,
        "--tls-auth-clients",
        "no",
    ]);
    // `#insecure`: the certificate is the test's own, not a known CA's.
    let client = Client::open(&format!("rediss://127.0.0.1:{tls_port}/#insecure")).unwrap();
    client.ping().unwrap();
    let worker = LocalWorker::start(Worker::new(&client, registry()));
    assert_eq!(
        join(Remote::<Double>::new(3).spawn_on(&client).unwrap()).value(),
        Some(6)
    );
    drop(worker);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spawn_each_submits_many_in_a_few_round_trips_and_keeps_their_order() {
    let s = Setup::new();
    let tasks = Remote::<Double>::new(0)
        .spawn_each(&s.client, 1..1500)
        .unwrap();
    assert_eq!(tasks.len(), 1500);
    let values: Vec<u64> = tasks.into_iter().filter_map(|t| join(t).value()).collect();
    assert_eq!(values, (0..1500).map(|n| 2 * n).collect::<Vec<_>>());
}

#[test]
fn a_group_joins_remote_tasks_as_they_end_and_fail_fast_stops_the_rest() {
    let s = Setup::new();
    let mut group: sidetask::Group<u64, String> = sidetask::Group::new();
    let mut want = Vec::new();
    for n in 0..10 {
        want.push(
            group.insert_with(Remote::<Double>::new(n).spawn_on(&s.client).unwrap(), |o| {
                o.map_error(|e| e.to_string())
            }),
        );
    }
    let mut sum = 0;
    let mut seen = Vec::new();
    while let Ok((id, outcome)) = group.join_next_timeout(LIMIT) {
        seen.push(id);
        sum += outcome.value().unwrap();
    }
    assert_eq!(sum, 90);
    seen.sort();
    want.sort();
    assert_eq!(seen, want);

    // A failing remote task stops the running ones.
    let mut group: sidetask::Group<(), String> = sidetask::Group::fail_fast();
    let idle = group.insert_with(Remote::<Idle>::new(()).spawn_on(&s.client).unwrap(), |o| {
        o.map(|_| ()).map_error(|e| e.to_string())
    });
    let failing = group.insert(Remote::<Fails>::new(false).spawn_on(&s.client).unwrap());
    let joined = common::within(LIMIT, move || group.join_all());
    assert_eq!(joined.first_failure().map(|(id, _)| id), Some(failing));
    let (_, idle_outcome) = joined
        .outcomes()
        .iter()
        .find(|(id, _)| *id == idle)
        .unwrap();
    assert!(
        idle_outcome.is_error() || idle_outcome.is_cancelled(),
        "{idle_outcome:?}"
    );
}

#[test]
fn messages_sent_as_a_worker_claims_are_each_read_once() {
    // An idle worker claims a task the moment it is queued; a message sent
    // right after the submit may ring the worker's doorbell before the
    // claim's answer reached it. Each one must be read, once.
    let s = Setup::new();
    for round in 0..100u64 {
        let task = Remote::<Echo>::new(()).spawn_on(&s.client).unwrap();
        task.send(round).unwrap();
        task.send(round + 1).unwrap();
        task.close_inbox();
        assert_eq!(task.recv_timeout(LIMIT), Ok(round));
        assert_eq!(task.recv_timeout(LIMIT), Ok(round + 1));
        assert_eq!(join(task).value(), Some(2), "round {round}");
    }
}

#[test]
fn a_workers_own_stop_wakes_a_body_waiting_for_a_message_at_once() {
    // The body's thread may be reading the worker's doorbell itself while
    // it waits for a message: a stop made on the worker (here, the task's
    // timeout, once no client watches it) must reach it at once, not after
    // that read's block of 6 s.
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let worker = Worker::new(&client, registry())
        .concurrency(2)
        .block(Duration::from_secs(6))
        .spawn();
    let task = Remote::<Echo>::new(())
        .timeout(Duration::from_millis(500))
        .spawn_on(&client)
        .unwrap();
    let id = task.id();
    task.send(7).unwrap();
    assert_eq!(task.recv_timeout(LIMIT), Ok(7));
    // Detached: the handle's own timer goes with it; the worker's stays.
    drop(task);
    let start = Instant::now();
    let again = client.attach::<Echo>(id).unwrap();
    let outcome = join(again);
    let took = start.elapsed();
    // Echo returns how many it echoed once its `recv` says stopped.
    assert_eq!(outcome.value(), Some(1));
    // The timeout, then at most a keeper's tick (a second) and a write.
    assert!(took < Duration::from_secs(4), "the stop took {took:?}");
    worker.stop();
    let _ = worker.join_timeout(LIMIT);
}

#[test]
fn a_supervised_remote_task_whose_worker_died_is_run_again() {
    // The first attempt runs on a worker process that is SIGKILLed; with no
    // attempt left in Redis the task is lost, and the supervisor submits
    // it again, to the worker that is left.
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let lost_one = WorkerProcess::start(&server.url());
    let submitter = client.clone();
    let supervised = sidetask::Supervisor::new()
        .restart(sidetask::Restart::OnFailure)
        .backoff(sidetask::Backoff::none())
        .spawn(move |_| {
            Remote::<Slow>::new(300)
                .lease(Duration::from_millis(500))
                .spawn_on(&submitter)
        })
        .unwrap();
    let (first, _) = supervised.recv_timeout(LIMIT).unwrap();
    assert_eq!(first, lost_one.pid());
    lost_one.signal(rustix::process::Signal::KILL);
    let _here = LocalWorker::start(Worker::new(&client, registry()));
    let me = std::process::id();
    // The first attempt's events may come first; then the second's.
    while supervised
        .recv_timeout(LIMIT)
        .expect("the second attempt's events")
        .0
        != me
    {}
    assert_eq!(supervised.history()[0].kind(), "lost");
    let outcome = supervised
        .join_timeout(LIMIT)
        .map_err(|_| "no end")
        .unwrap();
    assert_eq!(outcome.value(), Some(me));
}

#[test]
fn a_worker_runs_at_most_its_concurrency_and_takes_the_next_as_a_slot_frees() {
    // Two slots, four echo tasks that each hold their slot until their
    // inbox closes: two run, two stay queued; each one that ends lets one
    // more in, on the thread its end freed.
    let server = RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let _worker = LocalWorker::start(Worker::new(&client, registry()).concurrency(2));
    let tasks: Vec<_> = (0..4u64)
        .map(|i| {
            let task = Remote::<Echo>::new(()).spawn_on(&client).unwrap();
            task.send(i).unwrap();
            task
        })
        .collect();
    let state = |task: &sidetask::remote::RemoteTask<Echo>| {
        client
            .inspect()
            .unwrap()
            .task(task.id())
            .unwrap()
            .map(|t| t.state)
    };
    let mut echoed: Vec<Option<u64>> = vec![None; tasks.len()];
    let take_echoes = |echoed: &mut Vec<Option<u64>>| {
        for (i, task) in tasks.iter().enumerate() {
            if let Ok(n) = task.try_recv() {
                assert_eq!(echoed[i].replace(n), None, "task {i} echoed twice");
            }
        }
        echoed.iter().flatten().count()
    };
    let mut closed = Vec::new();
    for round in 0..3 {
        // Two more echo (the last round, the two left: all four did).
        let want = 2 + round.min(2);
        wait_for("the echoes of the running tasks", || {
            take_echoes(&mut echoed) >= want
        });
        assert_eq!(take_echoes(&mut echoed), want, "more ran than the slots");
        let running: Vec<usize> = (0..tasks.len())
            .filter(|i| echoed[*i].is_some() && !closed.contains(i))
            .collect();
        assert_eq!(running.len(), 2.min(tasks.len() - closed.len()));
        for (i, task) in tasks.iter().enumerate() {
            let expected = if echoed[i].is_none() {
                "queued"
            } else if closed.contains(&i) {
                "done"
            } else {
                "running"
            };
            if expected != "done" {
                assert_eq!(state(task), Some(expected), "task {i}");
            }
        }
        if round == 2 {
            break;
        }
        // One running task ends: the next queued one takes its slot.
        let i = running[0];
        tasks[i].close_inbox();
        closed.push(i);
    }
    for (i, task) in tasks.into_iter().enumerate() {
        task.close_inbox();
        assert_eq!(join(task).value(), Some(1), "task {i}");
        assert_eq!(echoed[i], Some(i as u64));
    }
}

#[test]
fn a_body_and_a_handle_that_only_poll_still_get_what_comes() {
    // Neither side ever blocks on a read: the body looks for messages with
    // `try_recv` in a busy loop, the test for events with `try_recv` in
    // another. Looks that read nothing must not keep the doorbells' readers
    // aside, or nothing would ever be read.
    let s = Setup::new();
    let task = Remote::<Poller>::new(()).spawn_on(&s.client).unwrap();
    for m in 0..20u64 {
        task.send(m).unwrap();
        let deadline = Instant::now() + LIMIT;
        let echoed = loop {
            match task.try_recv() {
                Ok(n) => break n,
                Err(_) => {
                    assert!(Instant::now() < deadline, "message {m} was not echoed");
                    std::thread::yield_now();
                }
            }
        };
        assert_eq!(echoed, m);
    }
    task.close_inbox();
    assert_eq!(join(task).value(), Some(20));
}
