//! Side-by-side figures: each runs against its hand-written baseline in the
//! same process, the two alternating round by round, and prints one line:
//!
//! `<figure>: sidetask=<median><unit> baseline[<what>]=<median><unit> ratio=<sidetask/baseline>`
//!
//! Run all with `cargo bench --bench compare --features tokio` (without the
//! feature, the async figures are left out), or some with
//! `cargo bench --bench compare -- <substring>`; `-- --without-init
//! command` measures commands as a binary that never calls `init` starts
//! them (without a launcher). The machines are shared and noisy: absolute
//! times vary from run to run, ratios within one run hold.

use std::hint::black_box;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{Builder, Chain, ChainRun, Ctx, DEFAULT_CAPACITY, Pool, Stopped};

/// Rounds per figure; each round runs one batch of each side.
const ROUNDS: usize = 15;

#[path = "compare/process.rs"]
mod process;
#[cfg(feature = "redis")]
#[path = "compare/remote.rs"]
mod remote;

/// A figure's name and the function that measures and prints it.
type Figure = (&'static str, fn());

fn main() {
    // `--without-init`: as a binary that never calls `init` (commands
    // start without a launcher; process figures cannot run).
    let without_init = std::env::args().any(|a| a == "--without-init");
    // First: in a child process started for a process task (ours, or
    // procspawn's), or as a command's launcher, run it and exit.
    if !without_init {
        sidetask::init(process::registry());
    }
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--raw-pong-child") {
        process::raw_pong_child(args.get(1).and_then(|cpu| cpu.parse().ok()));
        return;
    }
    #[cfg(feature = "redis")]
    if args.first().map(String::as_str) == Some("--remote-worker") {
        remote::worker_process(&args[1]);
        return;
    }
    if args.first().map(String::as_str) == Some("--flap-child") {
        process::flap_child(args.get(1).and_then(|ms| ms.parse().ok()).unwrap_or(0));
    }
    if args.first().map(String::as_str) == Some("--memory-child") {
        memory_child(&args[1], args[2].parse().expect("a task count"));
        return;
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));

    let figures: &[Figure] = &[
        ("spawn_join", spawn_join),
        ("round_trip", round_trip),
        ("inbox_throughput", inbox_throughput),
        ("stop_latency", stop_latency),
        ("idle_memory", idle_memory),
        ("pool_tiny_100k", pool_tiny_100k),
        ("pool_seed_1000", pool_seed_1000),
        ("chain_1000", chain_1000),
        ("chain_stream", chain_stream),
        ("process_spawn_join", process::process_spawn_join),
        ("process_round_trip", process::process_round_trip),
        ("process_pool_1000", process::process_pool_1000),
        ("command_spawn_join", process::command_spawn_join),
        ("restart_latency", process::restart_latency),
    ];
    for (name, figure) in figures {
        if wanted(name) {
            figure();
        }
    }
    #[cfg(feature = "tokio")]
    for (name, figure) in asynk::FIGURES {
        if wanted(name) {
            figure();
        }
    }
    #[cfg(feature = "redis")]
    for (name, figure) in remote::FIGURES {
        if wanted(name) {
            figure();
        }
    }
}

/// Times `batch` calls of each side per round, alternating sides, and prints
/// the medians of the per-call times.
fn compare(figure: &str, what: &str, batch: u32, mut ours: impl FnMut(), mut theirs: impl FnMut()) {
    // Warm both sides first: thread caches, allocator, page faults.
    for _ in 0..batch.min(1000) {
        ours();
        theirs();
    }
    let mut a = Vec::with_capacity(ROUNDS);
    let mut b = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let time = |f: &mut dyn FnMut()| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed().as_secs_f64() / f64::from(batch)
        };
        if round % 2 == 0 {
            a.push(time(&mut ours));
            b.push(time(&mut theirs));
        } else {
            b.push(time(&mut theirs));
            a.push(time(&mut ours));
        }
    }
    report(figure, what, median(a), median(b), Unit::Time);
}

enum Unit {
    Time,
    MiB,
}

fn report(figure: &str, what: &str, ours: f64, theirs: f64, unit: Unit) {
    let show = |v: f64| match unit {
        Unit::Time if v < 1e-6 => format!("{:.3}µs", v * 1e6),
        Unit::Time if v < 1e-3 => format!("{:.2}µs", v * 1e6),
        Unit::Time => format!("{:.2}ms", v * 1e3),
        Unit::MiB => format!("{v:.1}MiB"),
    };
    println!(
        "{figure}: sidetask={} baseline[{what}]={} ratio={:.3}",
        show(ours),
        show(theirs),
        ours / theirs
    );
}

/// Runs `ours` and `theirs` `rounds` times each, alternating which goes
/// first, and returns their measurements.
fn alternate(
    rounds: usize,
    mut ours: impl FnMut() -> f64,
    mut theirs: impl FnMut() -> f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(ours());
            b.push(theirs());
        } else {
            b.push(theirs());
            a.push(ours());
        }
    }
    (a, b)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn spawn_join() {
    compare(
        "spawn_join",
        "std::thread::spawn+join",
        300,
        || {
            let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(black_box(1)));
            let _ = black_box(task.join());
        },
        || {
            let handle = thread::spawn(|| black_box(1));
            black_box(handle.join().ok());
        },
    );
}

fn round_trip() {
    let task = sidetask::spawn(|ctx: &Ctx<u64, u64>| {
        while let Ok(n) = ctx.recv() {
            if ctx.emit(n).is_err() {
                break;
            }
        }
        Ok::<_, ()>(())
    });
    let (to_tx, to_rx) = crossbeam_channel::bounded::<u64>(1);
    let (back_tx, back_rx) = crossbeam_channel::bounded::<u64>(1);
    let echo = thread::spawn(move || {
        while let Ok(n) = to_rx.recv() {
            if back_tx.send(n).is_err() {
                break;
            }
        }
    });
    let mut i = 0u64;
    let mut j = 0u64;
    compare(
        "round_trip",
        "crossbeam bounded(1) ping-pong",
        20_000,
        || {
            i += 1;
            task.send(i).unwrap();
            assert_eq!(task.recv().unwrap(), i);
        },
        || {
            j += 1;
            to_tx.send(j).unwrap();
            assert_eq!(back_rx.recv().unwrap(), j);
        },
    );
    task.stop();
    let _ = task.join();
    drop(to_tx);
    echo.join().unwrap();
}

fn inbox_throughput() {
    const N: u64 = 10_000_000;
    let ours = || {
        let task = Builder::new()
            .spawn(|ctx: &Ctx<u64>| {
                let mut sum = 0u64;
                for _ in 0..N {
                    sum = sum.wrapping_add(ctx.recv()?);
                }
                Ok::<_, Stopped>(sum)
            })
            .unwrap();
        let start = Instant::now();
        for n in 0..N {
            task.send(n).unwrap();
        }
        let sum = task.join().value().unwrap();
        assert_eq!(sum, N * (N - 1) / 2);
        start.elapsed().as_secs_f64()
    };
    let theirs = || {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(DEFAULT_CAPACITY);
        let start = Instant::now();
        let consumer = thread::spawn(move || {
            let mut sum = 0u64;
            for _ in 0..N {
                sum = sum.wrapping_add(rx.recv().unwrap());
            }
            sum
        });
        for n in 0..N {
            tx.send(n).unwrap();
        }
        let sum = consumer.join().unwrap();
        assert_eq!(sum, N * (N - 1) / 2);
        start.elapsed().as_secs_f64()
    };
    let (a, b) = alternate(6, ours, theirs);
    report(
        "inbox_throughput",
        &format!("crossbeam bounded({DEFAULT_CAPACITY}), 10M u64"),
        median(a),
        median(b),
        Unit::Time,
    );
}

fn stop_latency() {
    // Each trial waits until the receiver has parked (it spins briefly
    // first), then times signal → wake → joined. Trials alternate sides.
    let settle = Duration::from_millis(2);
    let ours = || {
        let task = sidetask::spawn(|ctx: &Ctx<u64>| ctx.recv().map_err(Stopped::from));
        thread::sleep(settle);
        let start = Instant::now();
        task.stop();
        let outcome = task.join();
        let t = start.elapsed().as_secs_f64();
        // Cancelled only if the task had not begun within `settle`, on a
        // machine too busy to start it.
        assert!(outcome.is_error() || outcome.is_cancelled(), "{outcome:?}");
        t
    };
    let theirs = || {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(DEFAULT_CAPACITY);
        let handle = thread::spawn(move || rx.recv().is_err());
        thread::sleep(settle);
        let start = Instant::now();
        drop(tx);
        assert!(handle.join().unwrap());
        start.elapsed().as_secs_f64()
    };
    let (a, b) = alternate(200, ours, theirs);
    report(
        "stop_latency",
        "crossbeam recv, drop sender, thread join",
        median(a),
        median(b),
        Unit::Time,
    );
}

fn idle_memory() {
    const TASKS: usize = 10_000;
    let exe = std::env::current_exe().expect("the bench binary");
    let run = |side: &str| -> f64 {
        let out = Command::new(&exe)
            .args(["--memory-child", side, &TASKS.to_string()])
            .output()
            .expect("run the memory child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<f64>()
            .expect("the child prints its growth in MiB")
    };
    let (a, b) = alternate(3, || run("sidetask"), || run("baseline"));
    report(
        "idle_memory",
        "10,000 std threads blocked on crossbeam recv",
        median(a),
        median(b),
        Unit::MiB,
    );
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn memory_child(side: &str, n: usize) {
    let ready = Arc::new(AtomicUsize::new(0));
    let wait_ready = |ready: &AtomicUsize| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Acquire) < n {
            assert!(Instant::now() < deadline, "tasks did not block in time");
            thread::sleep(Duration::from_millis(5));
        }
        // Let the last ones finish spinning and park.
        thread::sleep(Duration::from_millis(300));
    };
    let before = rss_mib();
    let grown = match side {
        "sidetask" => {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let ready = Arc::clone(&ready);
                    sidetask::spawn(move |ctx: &Ctx<u64>| {
                        ready.fetch_add(1, Ordering::Release);
                        ctx.recv().map_err(Stopped::from)
                    })
                })
                .collect();
            wait_ready(&ready);
            let grown = rss_mib() - before;
            for t in &tasks {
                t.stop();
            }
            for t in tasks {
                let _ = t.join();
            }
            grown
        }
        _ => {
            let mut senders = Vec::with_capacity(n);
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                let (tx, rx) = crossbeam_channel::bounded::<u64>(DEFAULT_CAPACITY);
                let ready = Arc::clone(&ready);
                senders.push(tx);
                handles.push(thread::spawn(move || {
                    ready.fetch_add(1, Ordering::Release);
                    rx.recv().ok()
                }));
            }
            wait_ready(&ready);
            let grown = rss_mib() - before;
            drop(senders);
            for h in handles {
                h.join().unwrap();
            }
            grown
        }
    };
    println!("{grown}");
}

/// `size` tiny tasks (each returns its input) with at most `parallelism` at
/// once, results collected; returns the sum so nothing is optimised away.
fn pool_sidetask(size: u64, parallelism: usize) -> u64 {
    let run = Pool::new(parallelism)
        .run(1..=size, |_: &Ctx, n| Ok::<_, ()>(n))
        .unwrap();
    let mut sum = 0;
    run.for_each(|done| sum += done.outcome.value().unwrap());
    assert_eq!(sum, size * (size + 1) / 2);
    sum
}

/// The same with rayon: a scope spawning one closure per input, results on
/// a crossbeam channel.
fn pool_rayon(size: u64) -> u64 {
    let (tx, rx) = crossbeam_channel::unbounded();
    rayon::scope(|s| {
        for n in 1..=size {
            let tx = tx.clone();
            s.spawn(move |_| tx.send(black_box(n)).unwrap());
        }
    });
    drop(tx);
    let sum: u64 = rx.iter().sum();
    assert_eq!(sum, size * (size + 1) / 2);
    sum
}

fn pool_tiny_100k() {
    let time = |f: &dyn Fn() -> u64| {
        let start = Instant::now();
        black_box(f());
        start.elapsed().as_secs_f64()
    };
    let (a, b) = alternate(
        15,
        || time(&|| pool_sidetask(100_000, 100)),
        || time(&|| pool_rayon(100_000)),
    );
    report(
        "pool_tiny_100k",
        "rayon::scope + crossbeam, 100,000 tasks",
        median(a),
        median(b),
        Unit::Time,
    );
}

fn pool_seed_1000() {
    let time = |f: &dyn Fn() -> u64| {
        let start = Instant::now();
        black_box(f());
        start.elapsed().as_secs_f64()
    };
    let (a, b) = alternate(
        101,
        || time(&|| pool_sidetask(1000, 100)),
        || time(&|| pool_rayon(1000)),
    );
    report(
        "pool_seed_1000",
        "rayon::scope + crossbeam, 1000 tasks",
        median(a),
        median(b),
        Unit::Time,
    );
}

/// A sidetask chain of `stages` stages each adding one.
fn sidetask_chain(stages: usize) -> ChainRun<u64, u64, ()> {
    let mut chain = Chain::new(|x: &u64| Ok::<_, ()>(x + 1));
    for _ in 1..stages {
        chain = chain.then(|x: &u64| Ok(x + 1));
    }
    chain.start().unwrap()
}

/// The hand-written pipeline: `stages` threads joined by crossbeam bounded
/// channels of the same capacity, each adding one.
fn crossbeam_chain(
    stages: usize,
) -> (
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
    Vec<thread::JoinHandle<()>>,
) {
    let (first_tx, mut rx) = crossbeam_channel::bounded::<u64>(DEFAULT_CAPACITY);
    let mut handles = Vec::with_capacity(stages);
    for _ in 0..stages {
        let (tx, next_rx) = crossbeam_channel::bounded::<u64>(DEFAULT_CAPACITY);
        let input = rx;
        handles.push(thread::spawn(move || {
            for x in input.iter() {
                if tx.send(x + 1).is_err() {
                    break;
                }
            }
        }));
        rx = next_rx;
    }
    (first_tx, rx, handles)
}

fn chain_1000() {
    let ours = sidetask_chain(1000);
    let (tx, rx, handles) = crossbeam_chain(1000);
    let (a, b) = alternate(
        21,
        || {
            let start = Instant::now();
            ours.send(1).unwrap();
            assert_eq!(ours.recv().unwrap(), 1001);
            start.elapsed().as_secs_f64()
        },
        || {
            let start = Instant::now();
            tx.send(1).unwrap();
            assert_eq!(rx.recv().unwrap(), 1001);
            start.elapsed().as_secs_f64()
        },
    );
    ours.close_inbox();
    assert!(ours.join().into_result().is_ok());
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    report(
        "chain_1000",
        "1000 threads + crossbeam bounded channels, one item",
        median(a),
        median(b),
        Unit::Time,
    );
}

fn chain_stream() {
    const ITEMS: u64 = 100_000;
    let (a, b) = alternate(
        15,
        || {
            let run = sidetask_chain(10);
            let start = Instant::now();
            thread::scope(|s| {
                s.spawn(|| {
                    for n in 0..ITEMS {
                        run.send(n).unwrap();
                    }
                    run.close_inbox();
                });
                let sum: u64 = run.iter().sum();
                assert_eq!(sum, ITEMS * (ITEMS - 1) / 2 + 10 * ITEMS);
            });
            let t = start.elapsed().as_secs_f64();
            assert!(run.join().into_result().is_ok());
            t
        },
        || {
            let (tx, rx, handles) = crossbeam_chain(10);
            let start = Instant::now();
            let feeder = thread::spawn(move || {
                for n in 0..ITEMS {
                    tx.send(n).unwrap();
                }
            });
            let sum: u64 = rx.iter().sum();
            assert_eq!(sum, ITEMS * (ITEMS - 1) / 2 + 10 * ITEMS);
            let t = start.elapsed().as_secs_f64();
            feeder.join().unwrap();
            for h in handles {
                h.join().unwrap();
            }
            t
        },
    );
    report(
        "chain_stream",
        "10 threads + crossbeam bounded channels, 100,000 items",
        median(a),
        median(b),
        Unit::Time,
    );
}

/// The async figures (the `tokio` feature): sidetask's async tasks and
/// awaitable handle against plain tokio, on one two-worker runtime.
#[cfg(feature = "tokio")]
mod asynk {
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use sidetask::{AsyncCtx, Stopped};
    use tokio::runtime::Runtime;
    use tokio_util::sync::CancellationToken;

    use super::{Figure, ROUNDS, Unit, alternate, median, report};

    pub(super) const FIGURES: &[Figure] = &[
        ("async_spawn_join", async_spawn_join),
        ("async_round_trip", async_round_trip),
        ("async_stop", async_stop),
        ("group_join_10k", group_join_10k),
    ];

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// Seconds per call of `batch` calls made by `f`.
    fn per_call(start: Instant, batch: u32) -> f64 {
        start.elapsed().as_secs_f64() / f64::from(batch)
    }

    fn async_spawn_join() {
        const BATCH: u32 = 20_000;
        let rt = runtime();
        async fn ours() -> f64 {
            let start = Instant::now();
            for _ in 0..BATCH {
                let task = sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, ()>(black_box(1)) });
                let _ = black_box(task.await);
            }
            per_call(start, BATCH)
        }
        async fn theirs() -> f64 {
            let start = Instant::now();
            for _ in 0..BATCH {
                let handle = tokio::spawn(async { black_box(1) });
                black_box(handle.await.ok());
            }
            per_call(start, BATCH)
        }
        let (a, b) = rt.block_on(async {
            tokio::spawn(async {
                ours().await;
                theirs().await;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for round in 0..ROUNDS {
                    if round % 2 == 0 {
                        a.push(ours().await);
                        b.push(theirs().await);
                    } else {
                        b.push(theirs().await);
                        a.push(ours().await);
                    }
                }
                (a, b)
            })
            .await
            .expect("the figure runs")
        });
        report(
            "async_spawn_join",
            "tokio::spawn + await",
            median(a),
            median(b),
            Unit::Time,
        );
    }

    fn async_round_trip() {
        const BATCH: u32 = 20_000;
        let rt = runtime();
        let (a, b) = rt.block_on(async {
            tokio::spawn(async {
                let task = sidetask::spawn_async(|ctx: AsyncCtx<u64, u64>| async move {
                    while let Ok(n) = ctx.recv().await {
                        if ctx.emit(n).await.is_err() {
                            break;
                        }
                    }
                    Ok::<_, ()>(())
                });
                let (to_tx, mut to_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let (back_tx, mut back_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let echo = tokio::spawn(async move {
                    while let Some(n) = to_rx.recv().await {
                        if back_tx.send(n).await.is_err() {
                            break;
                        }
                    }
                });
                let mut i = 0u64;
                let mut j = 0u64;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for round in 0..=ROUNDS {
                    let ours = async {
                        let start = Instant::now();
                        for _ in 0..BATCH {
                            i += 1;
                            task.send_async(i).await.unwrap();
                            assert_eq!(task.recv_async().await.unwrap(), i);
                        }
                        per_call(start, BATCH)
                    };
                    let theirs = async {
                        let start = Instant::now();
                        for _ in 0..BATCH {
                            j += 1;
                            to_tx.send(j).await.unwrap();
                            assert_eq!(back_rx.recv().await.unwrap(), j);
                        }
                        per_call(start, BATCH)
                    };
                    let (ours, theirs) = if round % 2 == 0 {
                        let ours = ours.await;
                        (ours, theirs.await)
                    } else {
                        let theirs = theirs.await;
                        (ours.await, theirs)
                    };
                    // Round 0 warms both sides up.
                    if round > 0 {
                        a.push(ours);
                        b.push(theirs);
                    }
                }
                task.stop();
                let _ = task.await;
                drop(to_tx);
                echo.await.unwrap();
                (a, b)
            })
            .await
            .expect("the figure runs")
        });
        report(
            "async_round_trip",
            "two tokio tasks, tokio::sync::mpsc channel(1) ping-pong",
            median(a),
            median(b),
            Unit::Time,
        );
    }

    fn async_stop() {
        const TRIALS: usize = 200;
        // Each trial lets the receiver settle in its wait, then times
        // stop → woken → joined.
        let settle = Duration::from_millis(2);
        let rt = runtime();
        let (a, b) = rt.block_on(async move {
            tokio::spawn(async move {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for trial in 0..TRIALS * 2 {
                    let ours = trial % 4 == 0 || trial % 4 == 3;
                    if ours {
                        let task = sidetask::spawn_async(|ctx: AsyncCtx<u64>| async move {
                            ctx.recv().await.map_err(Stopped::from)
                        });
                        tokio::time::sleep(settle).await;
                        let start = Instant::now();
                        task.stop();
                        let outcome = task.await;
                        a.push(start.elapsed().as_secs_f64());
                        assert!(outcome.is_error());
                    } else {
                        let token = CancellationToken::new();
                        let (_tx, mut rx) = tokio::sync::mpsc::channel::<u64>(32);
                        let cancelled = token.clone();
                        let handle = tokio::spawn(async move {
                            tokio::select! {
                                _ = cancelled.cancelled() => None,
                                n = rx.recv() => n,
                            }
                        });
                        tokio::time::sleep(settle).await;
                        let start = Instant::now();
                        token.cancel();
                        let got = handle.await.unwrap();
                        b.push(start.elapsed().as_secs_f64());
                        assert!(got.is_none());
                    }
                }
                (a, b)
            })
            .await
            .expect("the figure runs")
        });
        report(
            "async_stop",
            "CancellationToken + select! on mpsc recv, await JoinHandle",
            median(a),
            median(b),
            Unit::Time,
        );
    }

    /// 10,000 tiny thread tasks spawned into a group and joined through it
    /// in completion order, against tokio's `JoinSet` of `spawn_blocking`
    /// closures joined with `join_next` (on a runtime made once).
    fn group_join_10k() {
        const N: u64 = 10_000;
        let rt = runtime();
        let ours = || {
            let start = Instant::now();
            let mut group = sidetask::Group::new();
            for n in 0..N {
                group.spawn(move |_: &sidetask::Ctx| Ok::<_, Stopped>(black_box(n)));
            }
            let mut sum = 0;
            while let Some((_, outcome)) = group.join_next() {
                sum += outcome.value().expect("a value");
            }
            assert_eq!(sum, N * (N - 1) / 2);
            start.elapsed().as_secs_f64()
        };
        let theirs = || {
            rt.block_on(async {
                let start = Instant::now();
                let mut set = tokio::task::JoinSet::new();
                for n in 0..N {
                    set.spawn_blocking(move || black_box(n));
                }
                let mut sum = 0;
                while let Some(joined) = set.join_next().await {
                    sum += joined.expect("a value");
                }
                assert_eq!(sum, N * (N - 1) / 2);
                start.elapsed().as_secs_f64()
            })
        };
        // Warm both: worker threads, the blocking pool.
        ours();
        theirs();
        let (a, b) = alternate(ROUNDS, ours, theirs);
        report(
            "group_join_10k",
            "tokio JoinSet of spawn_blocking, 10,000 tasks",
            median(a),
            median(b),
            Unit::Time,
        );
    }
}
