//! The remote figures, against a `redis-server` this bench starts on a free
//! loopback port, each with a hand-written LPUSH/BRPOP baseline on the same
//! server in the same run. `remote_throughput` also runs apalis 1.0 with
//! apalis-redis (`benches/apalis-baseline`, built by the bench) on a fresh
//! server of its own, alternating with the other two sides.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    ("remote_script_floor", remote_script_floor),
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

/// A server, a client, and a worker of `concurrency` in this process, one
/// task already through them.
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
    // Tasks first, until one's value comes back, so that the client's
    // reader is connected (and has made the sweep it makes on connecting)
    // before any clock starts, as the baselines connect first. A task
    // submitted while that sweep runs can come back lost (the sweep's check
    // of its record and its submission race); it is shown, not hidden.
    for attempt in 1.. {
        let outcome = Remote::<Noop>::new(()).spawn_on(&client).unwrap().join();
        if outcome.is_value() {
            break;
        }
        eprintln!("remote: a task before the clock ended {outcome:?}");
        assert!(attempt < 3, "no task before the clock came back");
    }
    (server, client, worker)
}

/// The round trips' baseline: a worker thread that BRPOPs a request and
/// LPUSHes it back ([`list_ping`]), until [`end_list_echo`].
fn list_echo(server: &server::RedisServer) -> thread::JoinHandle<()> {
    let mut echo = server.connection();
    thread::spawn(move || {
        loop {
            let (_, n): (String, u64) = echo.brpop("req", 0.0).unwrap();
            if n == u64::MAX {
                break;
            }
            let _: () = echo.lpush("resp", n).unwrap();
        }
    })
}

/// One round trip through [`list_echo`]: `n` there and back.
fn list_ping(con: &mut redis::Connection, n: u64) -> u64 {
    let _: () = con.lpush("req", n).unwrap();
    let (_, n): (String, u64) = con.brpop("resp", 0.0).unwrap();
    n
}

/// Ends [`list_echo`]'s thread.
fn end_list_echo(con: &mut redis::Connection, echo: thread::JoinHandle<()>) {
    let _: () = con.lpush("req", u64::MAX).unwrap();
    echo.join().unwrap();
}

fn remote_round_trip() {
    let (server, client, worker) = setup(1);
    let task = Remote::<Echo>::new(()).spawn_on(&client).unwrap();
    let baseline = list_echo(&server);
    let mut con = server.connection();
    compare(
        "remote_round_trip",
        "LPUSH/BRPOP ping-pong through a worker thread",
        200,
        || {
            task.send(7).unwrap();
            black_box(task.recv().unwrap());
        },
        || {
            black_box(list_ping(&mut con, 7));
        },
    );
    end_list_echo(&mut con, baseline);
    task.close_inbox();
    // The echo ends when its inbox closes; should the close not reach it
    // (the handle writes it only while it believes the task has room for a
    // message), that is shown and the task killed rather than waited on
    // forever.
    if let Err(task) = task.join_timeout(Duration::from_secs(10)) {
        eprintln!("remote_round_trip: the echo task had not ended 10 s after its inbox closed");
        task.kill();
        let _ = task.join();
    }
    worker.stop();
    let _ = worker.join();
}

/// A message in: the shape of sidetask's send script (read the task's
/// state, append to its inbox, copy the entry to the worker's doorbell if
/// it is there, record the last entry and the count sent). KEYS: the
/// task's hash, its inbox, the doorbell. ARGV: the message.
const FLOOR_SEND: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'st', 'stop', 'inlast', 'wk', 'sent')
if f[1] ~= 'r' or f[2] == '1' then return -1 end
local sid = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
redis.call('XADD', KEYS[3], 'NOMKSTREAM', 'MAXLEN', '~', 10000, '*', 'id', 't', 'sid', sid, 'prev',
  f[3], 'm', ARGV[1])
local sent = tonumber(f[5]) + 1
redis.call('HSET', KEYS[1], 'inlast', sid, 'sent', sent)
return sent
"#;

/// An event out: the shape of sidetask's emit script (check the attempt's
/// token, record how far it read, append the event, copy it to the
/// client's doorbell if it is there). KEYS: the task's hash, its event
/// stream, the doorbell. ARGV: the token, the id read, how many read, the
/// event.
const FLOOR_EMIT: &str = r#"
local f = redis.call('HMGET', KEYS[1], 'st', 'tok', 'nread', 'cw', 'evn', 'maxev', 'last')
if f[1] ~= 'r' or f[2] ~= ARGV[1] then return 0 end
local n = tonumber(f[5]) + 1
local sid = redis.call('XADD', KEYS[2], 'MAXLEN', f[6], '*', 'e', ARGV[4], 'n', n)
redis.call('XADD', KEYS[3], 'NOMKSTREAM', 'MAXLEN', '~', 100000, '*', 'id', 't', 'sid', sid, 'prev',
  f[7], 'e', ARGV[4], 'n', n)
redis.call('HSET', KEYS[1], 'read', ARGV[2], 'nread', ARGV[3], 'evn', n, 'last', sid)
return 1
"#;

/// Blocks for the entries of `key` after `from`; returns the last one's id
/// and its field `field`.
fn read_after(con: &mut redis::Connection, key: &str, from: &str, field: &str) -> (String, u64) {
    let opts = redis::streams::StreamReadOptions::default()
        .block(1000)
        .count(256);
    loop {
        let reply: Option<redis::streams::StreamReadReply> =
            con.xread_options(&[key], &[from], &opts).unwrap();
        if let Some(entry) = reply.and_then(|r| r.keys.into_iter().next()?.ids.pop()) {
            let value = entry.get(field).unwrap();
            return (entry.id, value);
        }
    }
}

/// What `remote_round_trip` would cost with no library code at all: the
/// same two scripts per round trip (shaped as sidetask's send and emit)
/// and the same blocking stream reads, hand-written over plain
/// connections, against the LPUSH/BRPOP ping-pong. It shows how much of
/// the round trip's ratio the design takes (a script per message each
/// way) and how much sidetask adds to it.
fn remote_script_floor() {
    let server = server::RedisServer::start();
    let mut con = server.connection();
    let _: () = redis::cmd("HSET")
        .arg("t")
        .arg(&[
            ("st", "r"),
            ("stop", "0"),
            ("tok", "1"),
            ("inlast", "0-0"),
            ("wk", "w"),
            ("sent", "0"),
            ("nread", "0"),
            ("cw", "0"),
            ("evn", "0"),
            ("maxev", "10000"),
            ("last", "0-0"),
        ])
        .query(&mut con)
        .unwrap();
    // The two doorbells, made by their owners (empty), as sidetask's are.
    for bell in ["ww", "n"] {
        let _: String = con
            .xadd_maxlen(
                bell,
                redis::streams::StreamMaxlen::Equals(0),
                "*",
                &[("made", 1)],
            )
            .unwrap();
    }
    let mut theirs = server.connection();
    let worker = thread::spawn(move || {
        let emit = redis::Script::new(FLOOR_EMIT);
        let (mut from, mut read) = ("0-0".to_owned(), 0u64);
        loop {
            let (last, n) = read_after(&mut theirs, "ww", &from, "m");
            if n == u64::MAX {
                break;
            }
            read += 1;
            let _: i64 = emit
                .key("t")
                .key("ev")
                .key("n")
                .arg(1)
                .arg(&last)
                .arg(read)
                .arg(n)
                .invoke(&mut theirs)
                .unwrap();
            from = last;
        }
    });
    let baseline = list_echo(&server);
    let send = redis::Script::new(FLOOR_SEND);
    let mut list = server.connection();
    let mut from = "0-0".to_owned();
    compare(
        "remote_script_floor",
        "LPUSH/BRPOP ping-pong through a worker thread",
        200,
        || {
            let _: i64 = send
                .key("t")
                .key("in")
                .key("ww")
                .arg(7)
                .invoke(&mut con)
                .unwrap();
            let (last, n) = read_after(&mut con, "n", &from, "e");
            from = last;
            black_box(n);
        },
        || {
            black_box(list_ping(&mut list, 7));
        },
    );
    let _: i64 = send
        .key("t")
        .key("in")
        .key("ww")
        .arg(u64::MAX)
        .invoke(&mut con)
        .unwrap();
    worker.join().unwrap();
    end_list_echo(&mut list, baseline);
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
        let con = server.connection();
        thread::spawn(move || job_worker(con))
    };
    let mut con = server.connection();
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
    const ROUNDS: usize = 5;
    // Built before the clock starts; a baseline that cannot be built or run
    // is reported on its line, and the other two sides still run.
    let mut apalis = apalis_baseline().map(|bin| (bin, Vec::new()));
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..ROUNDS {
        // The order turns each round, so each side goes first in turn;
        // each side starts a fresh server.
        for side in (0..3).map(|i| (i + round) % 3) {
            match side {
                0 => ours.push(throughput_ours(N)),
                1 => theirs.push(throughput_brpop(N)),
                _ => {
                    if let Ok((bin, times)) = &mut apalis {
                        match throughput_apalis(bin, N) {
                            Ok(secs) => times.push(secs),
                            Err(e) => apalis = Err(e),
                        }
                    }
                }
            }
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
    match apalis {
        Ok((_, times)) => {
            let c = median(times);
            println!(
                "remote_throughput_apalis: sidetask={:.0}tasks/s baseline[apalis 1.0 + \
                 apalis-redis, concurrency 8]={:.0}jobs/s ratio={:.3}",
                N as f64 / a,
                N as f64 / c,
                a / c
            );
        }
        Err(e) => println!("remote_throughput_apalis: skipped ({e})"),
    }
}

/// Seconds for `n` no-op tasks through a worker of concurrency 8, submitted
/// all (in pipelined batches, `spawn_each`), then joined all.
fn throughput_ours(n: u64) -> f64 {
    let (_server, client, worker) = setup(8);
    let start = Instant::now();
    let tasks = Remote::<Noop>::new(())
        .spawn_each(&client, std::iter::repeat_n((), n as usize - 1))
        .unwrap();
    for t in tasks {
        let outcome = t.join();
        assert!(outcome.is_value(), "a no-op task ended {outcome:?}");
    }
    let secs = start.elapsed().as_secs_f64();
    worker.stop();
    let _ = worker.join();
    secs
}

/// Seconds for `n` jobs through 8 BRPOP threads over one list, pushed all,
/// then each result popped.
fn throughput_brpop(n: u64) -> f64 {
    let server = server::RedisServer::start();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let con = server.connection();
            thread::spawn(move || job_worker(con))
        })
        .collect();
    let mut con = server.connection();
    let start = Instant::now();
    for id in 1..=n {
        let _: () = con.lpush("jobs", id).unwrap();
    }
    for id in 1..=n {
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
}

/// Builds the apalis baseline (`benches/apalis-baseline`, a project of its
/// own so that apalis never enters this crate's build) and returns its
/// binary, or why it cannot be had.
///
/// It builds into `benches/apalis-baseline/target`, or into
/// `APALIS_BASELINE_TARGET_DIR` when that is set; the first build fetches
/// and compiles apalis and takes a minute or two.
fn apalis_baseline() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/apalis-baseline");
    let target = std::env::var_os("APALIS_BASELINE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    // The cargo that runs this bench, when it does.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "remote_throughput: building the apalis baseline into {}",
        target.display()
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cargo did not start: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --release --manifest-path benches/apalis-baseline/Cargo.toml` \
             failed: {status}"
        ));
    }
    Ok(target.join("release/apalis-baseline"))
}

/// Seconds the apalis baseline took for `n` jobs against a fresh server, as
/// it reports them: from its first push to the last job recorded done.
fn throughput_apalis(bin: &Path, n: u64) -> Result<f64, String> {
    let server = server::RedisServer::start();
    let out = Command::new(bin)
        .arg(server.url())
        .arg(n.to_string())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{} did not start: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("the apalis baseline failed: {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|line| line.starts_with("apalis_baseline "))
        .flat_map(str::split_whitespace)
        .find_map(|field| field.strip_prefix("secs="))
        .and_then(|secs| secs.parse().ok())
        .ok_or_else(|| format!("the apalis baseline printed no time: {stdout:?}"))
}
