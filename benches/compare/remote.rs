//! The remote figures, against a `redis-server` this bench starts on a free
//! loopback port, each with a hand-written LPUSH/BRPOP baseline on the same
//! server in the same run.

use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use redis::Commands;
use sidetask::remote::{Client, Remote, Worker};
use sidetask::{Ctx, NamedTask, Registry, Stopped, Task};

use super::{Figure, compare, median};

#[allow(dead_code)]
#[path = "../../tests/common/redis.rs"]
mod server;

pub const FIGURES: &[Figure] = &[
    ("remote_round_trip", remote_round_trip),
    ("remote_spawn_join", remote_spawn_join),
    ("remote_idle_latency", remote_idle_latency),
    ("remote_throughput", remote_throughput),
    ("remote_requeue", remote_requeue),
];

/// Emits its runner's pid, then waits to be stopped.
struct Hold;
impl NamedTask for Hold {
    const NAME: &'static str = "bench_hold";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<(), Stopped> {
        ctx.emit(std::process::id())?;
        ctx.sleep(Duration::from_secs(600))
    }
}

/// A worker of this bench's tasks, in a process of its own.
pub fn worker_process(url: &str) {
    let client = Client::open(url).unwrap();
    Worker::new(&client, registry())
        .block(Duration::from_millis(100))
        .run()
        .unwrap();
}

/// From `kill -9` of the worker that runs a task (1 s lease) to its next
/// attempt's start on another worker.
fn remote_requeue() {
    let server = server::RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let mut samples = Vec::new();
    for _ in 0..5 {
        let mut lost = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--remote-worker", &server.url()])
            .spawn()
            .unwrap();
        let task = Remote::<Hold>::new(())
            .attempts(2)
            .lease(Duration::from_secs(1))
            .spawn_on(&client)
            .unwrap();
        assert_eq!(task.recv().unwrap(), lost.id());
        // The next attempt runs on a worker of this process, idle until
        // the reaper queues the task again.
        let taker = Worker::new(&client, registry())
            .names(["bench_hold"])
            .block(Duration::from_millis(100))
            .spawn();
        let _ = lost.kill();
        let killed = Instant::now();
        let _ = lost.wait();
        assert_eq!(task.recv().unwrap(), std::process::id());
        samples.push(killed.elapsed().as_secs_f64() * 1e3);
        task.kill();
        let _ = task.join();
        taker.stop();
        let _ = taker.join();
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "remote_requeue: median={:.0}ms max={:.0}ms (kill -9 of the worker -> the next attempt starts, lease 1 s)",
        median(samples.clone()),
        samples[samples.len() - 1]
    );
}

/// Echoes each message.
struct Echo;
impl NamedTask for Echo {
    const NAME: &'static str = "bench_echo";
    type Arg = ();
    type In = u64;
    type Event = u64;
    type Value = ();
    type Error = Stopped;
    fn run(ctx: &Ctx<u64, u64>, (): ()) -> Result<(), Stopped> {
        while let Ok(n) = ctx.recv() {
            ctx.emit(n)?;
        }
        Ok(())
    }
}

/// Returns at once, noting when it began (for the idle latency).
struct Noop;
impl NamedTask for Noop {
    const NAME: &'static str = "bench_noop";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;
    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        BEGAN.store(epoch().elapsed().as_nanos() as u64, Ordering::SeqCst);
        Ok(())
    }
}

static BEGAN: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn registry() -> Registry {
    Registry::new()
        .with::<Echo>()
        .unwrap()
        .with::<Noop>()
        .unwrap()
        .with::<Hold>()
        .unwrap()
}

/// A server, a client, and a worker of `concurrency` in this process.
fn setup(
    concurrency: usize,
) -> (
    server::RedisServer,
    Client,
    Task<(), sidetask::remote::RemoteError>,
) {
    let server = server::RedisServer::start();
    let client = Client::open(&server.url()).unwrap();
    let worker = Worker::new(&client, registry())
        .concurrency(concurrency)
        .spawn();
    (server, client, worker)
}

fn connection(server: &server::RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn remote_round_trip() {
    let (server, client, worker) = setup(1);
    let task = Remote::<Echo>::new(()).spawn_on(&client).unwrap();
    // The baseline: a worker thread that BRPOPs a request and LPUSHes it
    // back.
    let mut echo = connection(&server);
    let baseline = thread::spawn(move || {
        loop {
            let (_, n): (String, u64) = echo.brpop("req", 0.0).unwrap();
            if n == u64::MAX {
                break;
            }
            let _: () = echo.lpush("resp", n).unwrap();
        }
    });
    let mut con = connection(&server);
    compare(
        "remote_round_trip",
        "LPUSH/BRPOP ping-pong through a worker thread",
        200,
        || {
            task.send(7).unwrap();
            black_box(task.recv().unwrap());
        },
        || {
            let _: () = con.lpush("req", 7u64).unwrap();
            let (_, n): (String, u64) = con.brpop("resp", 0.0).unwrap();
            black_box(n);
        },
    );
    let _: () = con.lpush("req", u64::MAX).unwrap();
    baseline.join().unwrap();
    task.close_inbox();
    let _ = task.join();
    worker.stop();
    let _ = worker.join();
}

/// The baseline's worker: BRPOPs a job id and LPUSHes a result to the
/// job's own list, until a job id of 0.
fn job_worker(mut con: redis::Connection) {
    loop {
        let (_, id): (String, u64) = con.brpop("jobs", 0.0).unwrap();
        if id == 0 {
            break;
        }
        let _: () = con.lpush(format!("result:{id}"), 1).unwrap();
    }
}

fn remote_spawn_join() {
    let (server, client, worker) = setup(1);
    let baseline = {
        let con = connection(&server);
        thread::spawn(move || job_worker(con))
    };
    let mut con = connection(&server);
    let mut next = 0u64;
    compare(
        "remote_spawn_join",
        "a job over LPUSH/BRPOP: client -> worker -> client",
        50,
        || {
            let task = Remote::<Noop>::new(()).spawn_on(&client).unwrap();
            assert!(black_box(task.join()).is_value());
        },
        || {
            next += 1;
            let _: () = con.lpush("jobs", next).unwrap();
            let (_, r): (String, u64) = con.brpop(format!("result:{next}"), 0.0).unwrap();
            black_box(r);
        },
    );
    let _: () = con.lpush("jobs", 0).unwrap();
    baseline.join().unwrap();
    worker.stop();
    let _ = worker.join();
}

fn remote_idle_latency() {
    let (_server, client, worker) = setup(1);
    let mut samples = Vec::new();
    for _ in 0..200 {
        // Let the worker go idle in its blocking claim.
        thread::sleep(Duration::from_millis(5));
        let submitted = epoch().elapsed().as_nanos() as u64;
        let task = Remote::<Noop>::new(()).spawn_on(&client).unwrap();
        let _ = task.join();
        samples.push((BEGAN.load(Ordering::SeqCst) - submitted) as f64 / 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "remote_idle_latency: median={:.3}ms p99={:.3}ms (submit to the body's start, worker idle)",
        median(samples.clone()),
        p99
    );
    worker.stop();
    let _ = worker.join();
}

fn remote_throughput() {
    const N: u64 = 7_500;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..3 {
        let run_ours = || {
            let (_server, client, worker) = setup(8);
            let start = Instant::now();
            let tasks: Vec<_> = (0..N)
                .map(|_| Remote::<Noop>::new(()).spawn_on(&client).unwrap())
                .collect();
            for t in tasks {
                assert!(t.join().is_value());
            }
            let secs = start.elapsed().as_secs_f64();
            worker.stop();
            let _ = worker.join();
            secs
        };
        let run_theirs = || {
            let server = server::RedisServer::start();
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let con = connection(&server);
                    thread::spawn(move || job_worker(con))
                })
                .collect();
            let mut con = connection(&server);
            let start = Instant::now();
            for id in 1..=N {
                let _: () = con.lpush("jobs", id).unwrap();
            }
            for id in 1..=N {
                let _: (String, u64) = con.brpop(format!("result:{id}"), 0.0).unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            for _ in 0..8 {
                let _: () = con.lpush("jobs", 0).unwrap();
            }
            for w in workers {
                w.join().unwrap();
            }
            secs
        };
        if round % 2 == 0 {
            ours.push(run_ours());
            theirs.push(run_theirs());
        } else {
            theirs.push(run_theirs());
            ours.push(run_ours());
        }
    }
    let (a, b) = (median(ours), median(theirs));
    println!(
        "remote_throughput: sidetask={:.0}tasks/s baseline[8 BRPOP threads over one list, no \
         lease/fencing]={:.0}jobs/s ratio={:.3}",
        N as f64 / a,
        N as f64 / b,
        a / b
    );
}
