//! `Pool`: bounded parallelism, endless inputs with bounded memory, results by callback, completion order and input order, `recv` and its errors, failures kept per task, progress, talking to running tasks, stopping, closing the input, `wait`'s count, drop, closing and dropping that never wait for a blocked input iterator, a 100,000-input stress test with counts, and nothing an ended task leaves (a kept stop handle, an unread message) reaching the next task on its runner.

mod common;
use common::{LIMIT, wait_for, within};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{
    Ctx, EmitError, Finished, Outcome, Pool, PoolRun, Progress, RecvError, RecvTimeoutError,
    Stopped, TryEmitError, TryRecvError,
};

/// Inside a task body: polls `cond` until it holds, the task is stopped
/// (`Err(Stopped)`) or [`LIMIT`] passed (a panic, so the test sees it).
fn task_wait_for<In, Ev>(ctx: &Ctx<In, Ev>, mut cond: impl FnMut() -> bool) -> Result<(), Stopped> {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "a task waited too long");
        ctx.sleep(Duration::from_millis(1))?;
    }
    Ok(())
}

/// Receives results until every task has finished and been received.
fn drain<T, E, In, Ev>(run: &PoolRun<T, E, In, Ev>) -> Vec<Finished<T, E, Ev>> {
    let mut all = Vec::new();
    loop {
        match run.recv_timeout(LIMIT) {
            Ok(done) => all.push(done),
            Err(RecvTimeoutError::Disconnected) => return all,
            Err(RecvTimeoutError::Timeout) => panic!("no result within {LIMIT:?}"),
        }
    }
}

/// An input iterator that counts how many items were pulled from it and
/// notes when it is dropped.
struct Counting<I> {
    inner: I,
    pulled: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl<I> Counting<I> {
    fn new(inner: I) -> (Counting<I>, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let it = Counting {
            inner,
            pulled: Arc::clone(&pulled),
            dropped: Arc::clone(&dropped),
        };
        (it, pulled, dropped)
    }
}

impl<I: Iterator> Iterator for Counting<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next();
        if item.is_some() {
            self.pulled.fetch_add(1, Ordering::SeqCst);
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<I> Drop for Counting<I> {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped: moved into a pool body, it tells when the
/// pool let go of the body, that is when every runner has ended.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Counts the tasks inside the body now and the most there ever were.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn blocking_tasks_reach_the_parallelism_and_never_exceed_it() {
    const N: usize = 8;
    const INPUTS: usize = 40;
    let gauge = Arc::new(Gauge::default());
    let release = Arc::new(AtomicBool::new(false));
    let run = {
        let (gauge, release) = (Arc::clone(&gauge), Arc::clone(&release));
        Pool::new(N)
            .run(0..INPUTS, move |ctx: &Ctx, i| {
                gauge.enter();
                let waited = task_wait_for(ctx, || release.load(Ordering::SeqCst));
                gauge.leave();
                waited.map(|()| i)
            })
            .unwrap()
    };

    // Every runner blocks, so exactly N run: the pool reaches its parallelism.
    wait_for("N tasks running", || gauge.now.load(Ordering::SeqCst) == N);
    wait_for("the progress to show N running", || {
        run.progress()
            == Progress {
                queued: Some(INPUTS - N),
                running: N,
                finished: 0,
            }
    });
    let mut running = run.running();
    running.sort_unstable();
    assert_eq!(running, (0..N).collect::<Vec<_>>());
    assert_eq!(gauge.max.load(Ordering::SeqCst), N);

    release.store(true, Ordering::SeqCst);
    let all = drain(&run);
    assert_eq!(all.len(), INPUTS);
    for done in &all {
        assert!(done.outcome.is_value(), "{:?}", done.outcome);
    }
    assert_eq!(
        gauge.max.load(Ordering::SeqCst),
        N,
        "more than N ran at once"
    );
    assert_eq!(gauge.now.load(Ordering::SeqCst), 0);
    assert_eq!(
        run.progress(),
        Progress {
            queued: Some(0),
            running: 0,
            finished: INPUTS,
        }
    );
    assert!(run.running().is_empty());
}

#[test]
fn many_short_tasks_never_exceed_the_parallelism() {
    const N: usize = 3;
    const INPUTS: usize = 3_000;
    let gauge = Arc::new(Gauge::default());
    let run = {
        let gauge = Arc::clone(&gauge);
        Pool::new(N)
            .run(0..INPUTS, move |_: &Ctx, i| {
                gauge.enter();
                if i % 100 == 0 {
                    // Now and then a longer one, so that runners get added.
                    thread::sleep(Duration::from_millis(2));
                } else {
                    thread::yield_now();
                }
                gauge.leave();
                Ok::<_, ()>(i)
            })
            .unwrap()
    };
    let all = drain(&run);
    assert_eq!(all.len(), INPUTS);
    let max = gauge.max.load(Ordering::SeqCst);
    assert!((1..=N).contains(&max), "max {max} running at once");
}

#[test]
fn endless_input_stays_bounded_while_nobody_reads() {
    const N: usize = 4;
    const CAPACITY: usize = 8;
    const TAKEN: usize = 20;
    let (inputs, pulled, iter_dropped) = Counting::new(0u64..);
    let run = Pool::new(N)
        .result_capacity(CAPACITY)
        .run(inputs, |_: &Ctx, n| Ok::<_, ()>(n * 2))
        .unwrap();
    assert_eq!(
        run.progress().queued,
        None,
        "an endless input has no length"
    );

    let mut seen = HashSet::new();
    for _ in 0..TAKEN {
        let done = run.recv_timeout(LIMIT).unwrap();
        assert_eq!(done.outcome.value(), Some(done.index as u64 * 2));
        assert!(seen.insert(done.index));
    }

    // Nobody reads now: the runners fill the results and then wait, pulling
    // no more than one input each beyond the results' capacity.
    wait_for("the results to fill up", || {
        pulled.load(Ordering::SeqCst) > TAKEN + CAPACITY
    });
    // Give runners that do not wait time to show it (a negative check needs
    // a window; nothing waits on this sleep).
    thread::sleep(Duration::from_millis(200));
    let bound = TAKEN + CAPACITY + N;
    let at_rest = pulled.load(Ordering::SeqCst);
    assert!(at_rest <= bound, "pulled {at_rest} inputs, bound {bound}");
    assert_eq!(run.progress().queued, None);

    run.stop_all();
    let rest = drain(&run);
    // Every input pulled is delivered exactly once, none is started after.
    assert_eq!(TAKEN + rest.len(), pulled.load(Ordering::SeqCst));
    for done in rest {
        assert!(seen.insert(done.index), "index {} twice", done.index);
        assert_eq!(done.outcome.value(), Some(done.index as u64 * 2));
    }
    drop(run);
    wait_for("the pool to drop its input", || {
        iter_dropped.load(Ordering::SeqCst)
    });
}

#[test]
fn endless_repeat_then_stop_all() {
    let run = Pool::new(3)
        .result_capacity(2)
        .run(std::iter::repeat("x"), |_: &Ctx, s: &str| {
            Ok::<_, ()>(s.len())
        })
        .unwrap();
    let mut indices = HashSet::new();
    for _ in 0..50 {
        let done = run.recv_timeout(LIMIT).unwrap();
        assert_eq!(done.outcome.value(), Some(1));
        assert!(indices.insert(done.index));
    }
    run.stop_all();
    for done in drain(&run) {
        assert!(indices.insert(done.index));
    }
    // Indices are the input positions: no gap, no repeat.
    let most = *indices.iter().max().unwrap();
    assert_eq!(indices.len(), most + 1);
}

#[test]
fn in_order_bounds_how_far_ahead_runners_go_behind_a_slow_task() {
    const N: usize = 4;
    const CAPACITY: usize = 8;
    const WINDOW: usize = N + CAPACITY;
    let (inputs, pulled, _) = Counting::new(0usize..);
    let pulled_when_first_ended = Arc::new(AtomicUsize::new(0));
    let run = {
        let pulled = Arc::clone(&pulled);
        let when = Arc::clone(&pulled_when_first_ended);
        Pool::new(N)
            .result_capacity(CAPACITY)
            .run(inputs, move |ctx: &Ctx, i| {
                if i == 0 {
                    // Hold up input 0 until the others have filled the window,
                    // then a little longer so that an overrun would show.
                    task_wait_for(ctx, || pulled.load(Ordering::SeqCst) >= WINDOW)?;
                    ctx.sleep(Duration::from_millis(100))?;
                    when.store(pulled.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                Ok::<_, Stopped>(i)
            })
            .unwrap()
    };
    within(LIMIT, move || {
        let mut in_order = run.in_order();
        for k in 0..200 {
            let done = in_order.next().expect("an endless pool never ends");
            assert_eq!(done.index, k);
            assert_eq!(done.outcome.value(), Some(k));
        }
        in_order.pool().stop_all();
        // What was pulled before the stop still comes, in order, then the
        // iterator ends.
        let mut next = 200;
        for done in in_order {
            assert_eq!(done.index, next);
            next += 1;
        }
        assert!(next <= 200 + WINDOW, "{} more after the stop", next - 200);
    });
    let when = pulled_when_first_ended.load(Ordering::SeqCst);
    assert!(
        (WINDOW..=WINDOW + 1).contains(&when),
        "{when} inputs pulled while input 0 ran; window {WINDOW}"
    );
}

#[test]
fn results_by_callback() {
    let run = Pool::new(10)
        .run(1..=100u64, |_: &Ctx, n| Ok::<_, ()>(n * n))
        .unwrap();
    let got = within(LIMIT, move || {
        let mut got = Vec::new();
        run.for_each(|done| got.push((done.index, done.outcome.value().unwrap())));
        got
    });
    assert_eq!(got.len(), 100);
    let mut indices: Vec<usize> = got.iter().map(|&(i, _)| i).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..100).collect::<Vec<_>>());
    for (i, square) in got {
        let n = i as u64 + 1;
        assert_eq!(square, n * n);
    }
}

#[test]
fn results_in_completion_order() {
    const INPUTS: usize = 8;
    let release = Arc::new(AtomicBool::new(false));
    let run = {
        let release = Arc::clone(&release);
        Pool::new(4)
            .run(0..INPUTS, move |ctx: &Ctx, i| {
                if i == 0 {
                    task_wait_for(ctx, || release.load(Ordering::SeqCst))?;
                }
                Ok::<_, Stopped>(i * 10)
            })
            .unwrap()
    };
    // Input 0 waits, so all the others come first, through recv.
    let mut first = HashSet::new();
    for _ in 1..INPUTS {
        let done = run.recv_timeout(LIMIT).unwrap();
        assert_ne!(done.index, 0, "the held-up task came first");
        assert_eq!(done.outcome.value(), Some(done.index * 10));
        assert!(first.insert(done.index));
    }
    assert_eq!(first.len(), INPUTS - 1);
    release.store(true, Ordering::SeqCst);
    // Then the last one, through iter, which ends when all are received.
    let rest: Vec<(usize, Option<usize>)> = within(LIMIT, move || {
        run.iter().map(|d| (d.index, d.outcome.value())).collect()
    });
    assert_eq!(rest, vec![(0, Some(0))]);
}

#[test]
fn recv_try_recv_and_their_errors() {
    let release = Arc::new(AtomicBool::new(false));
    let run = {
        let release = Arc::clone(&release);
        Pool::new(2)
            .run(0..3usize, move |ctx: &Ctx, i| {
                task_wait_for(ctx, || release.load(Ordering::SeqCst))?;
                Ok::<_, Stopped>(i)
            })
            .unwrap()
    };
    wait_for("two running", || run.progress().running == 2);
    assert!(matches!(run.try_recv(), Err(TryRecvError::Empty)));
    release.store(true, Ordering::SeqCst);
    let mut got: Vec<usize> = (0..3)
        .map(|_| run.recv_timeout(LIMIT).unwrap().outcome.value().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2]);
    // Every result received: each way to receive says so, and keeps saying
    // so.
    assert!(matches!(
        run.recv_timeout(LIMIT),
        Err(RecvTimeoutError::Disconnected)
    ));
    assert!(matches!(run.recv(), Err(RecvError)));
    assert!(matches!(run.recv(), Err(RecvError)));
    assert!(matches!(run.try_recv(), Err(TryRecvError::Disconnected)));
    assert_eq!(run.iter().count(), 0);
}

#[test]
fn try_recv_takes_every_result_without_waiting() {
    const INPUTS: usize = 50;
    let run = Pool::new(4)
        .run(0..INPUTS, |_: &Ctx, i| Ok::<_, ()>(i))
        .unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + LIMIT;
    loop {
        match run.try_recv() {
            Ok(done) => assert!(seen.insert(done.index), "index {} twice", done.index),
            Err(TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no result within {LIMIT:?}");
                thread::yield_now();
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    assert_eq!(seen.len(), INPUTS);
}

#[test]
fn wait_counts_what_it_drops_failures_included() {
    let run = Pool::new(3)
        .run(0..20usize, |_: &Ctx, i| match i % 5 {
            1 => Err("an error"),
            2 => panic!("a panic"),
            _ => Ok(i),
        })
        .unwrap();
    let dropped = within(LIMIT, move || run.wait());
    assert_eq!(dropped, 20);
}

#[test]
fn results_in_input_order_even_when_early_tasks_are_slower() {
    const INPUTS: usize = 20;
    const SLOW: usize = 3;
    let later_done = Arc::new(AtomicUsize::new(0));
    let finish_order = Arc::new(Mutex::new(Vec::new()));
    let run = {
        let later_done = Arc::clone(&later_done);
        let finish_order = Arc::clone(&finish_order);
        Pool::new(4)
            .run(0..INPUTS, move |ctx: &Ctx, i| {
                if i < SLOW {
                    // The first inputs end only after six later ones ended.
                    task_wait_for(ctx, || later_done.load(Ordering::SeqCst) >= 6)?;
                } else {
                    later_done.fetch_add(1, Ordering::SeqCst);
                }
                finish_order.lock().unwrap().push(i);
                Ok::<_, Stopped>(i + 1000)
            })
            .unwrap()
    };
    let got: Vec<(usize, Option<usize>)> = within(LIMIT, move || {
        run.in_order()
            .map(|d| (d.index, d.outcome.value()))
            .collect()
    });
    let want: Vec<(usize, Option<usize>)> = (0..INPUTS).map(|i| (i, Some(i + 1000))).collect();
    assert_eq!(got, want);
    let finish_order = finish_order.lock().unwrap();
    assert_eq!(finish_order.len(), INPUTS);
    let first_slow = finish_order.iter().position(|&i| i < SLOW).unwrap();
    assert!(first_slow >= 6, "finish order {finish_order:?}");
}

#[test]
fn a_panic_or_an_error_stays_in_its_own_outcome() {
    const INPUTS: usize = 30;
    let run = Pool::new(4)
        .run(0..INPUTS, |_: &Ctx, i| match i % 10 {
            3 => Err(format!("bad {i}")),
            7 => panic!("boom {i}"),
            _ => Ok(i),
        })
        .unwrap();
    let mut all = drain(&run);
    all.sort_by_key(|d| d.index);
    assert_eq!(all.len(), INPUTS);
    for (i, done) in all.into_iter().enumerate() {
        assert_eq!(done.index, i);
        match (i % 10, done.outcome) {
            (3, Outcome::Error(e)) => assert_eq!(e, format!("bad {i}")),
            (7, Outcome::Panicked(p)) => assert_eq!(p.message(), format!("boom {i}")),
            (_, Outcome::Value(v)) => assert_eq!(v, i),
            (_, other) => panic!("input {i}: {other:?}"),
        }
    }
}

#[test]
fn progress_of_an_input_of_unknown_length() {
    const N: usize = 4;
    const INPUTS: usize = 10;
    let release = Arc::new(AtomicBool::new(false));
    let run = {
        let release = Arc::clone(&release);
        Pool::new(N)
            .run((0..INPUTS).filter(|_| true), move |ctx: &Ctx, i| {
                task_wait_for(ctx, || release.load(Ordering::SeqCst))?;
                Ok::<_, Stopped>(i)
            })
            .unwrap()
    };
    wait_for("N running", || run.progress().running == N);
    assert_eq!(
        run.progress(),
        Progress {
            queued: None,
            running: N,
            finished: 0,
        }
    );
    release.store(true, Ordering::SeqCst);
    assert_eq!(drain(&run).len(), INPUTS);
    let end = run.progress();
    assert_eq!((end.running, end.finished), (0, INPUTS));
}

#[test]
fn with_task_sends_reads_and_stops_running_tasks() {
    let run = Pool::new(2)
        .run(0..2usize, |ctx: &Ctx<u32, String>, i| {
            if i == 0 {
                let m = ctx.recv_timeout(LIMIT).map_err(|e| e.to_string())?;
                ctx.emit(format!("task {i} got {m}"))
                    .map_err(|e| e.to_string())?;
                let ack = ctx.recv_timeout(LIMIT).map_err(|e| e.to_string())?;
                Ok(m + ack)
            } else {
                ctx.emit("left unread".to_owned())
                    .map_err(|e| e.to_string())?;
                ctx.sleep(LIMIT).map_err(|e| e.to_string())?;
                Ok(0)
            }
        })
        .unwrap();
    wait_for("both tasks running", || {
        let mut running = run.running();
        running.sort_unstable();
        running == [0, 1]
    });

    assert_eq!(run.with_task(0, |task| task.send(7).is_ok()), Some(true));
    let event = run.with_task(0, |task| task.recv_timeout(LIMIT));
    assert_eq!(event, Some(Ok("task 0 got 7".to_owned())));
    assert_eq!(run.with_task(0, |task| task.send(8).is_ok()), Some(true));
    assert_eq!(run.with_task(1, |task| task.stop()), Some(()));
    assert_eq!(run.with_task(2, |_| ()), None, "input 2 does not exist");

    let mut all = drain(&run);
    all.sort_by_key(|d| d.index);
    let [zero, one] = <[_; 2]>::try_from(all).unwrap();
    assert_eq!(zero.outcome.value(), Some(15));
    assert!(zero.events.is_empty());
    assert_eq!(
        one.outcome.error(),
        Some(Stopped.to_string()),
        "the stopped task saw the stop"
    );
    assert_eq!(one.events, vec!["left unread".to_owned()]);
    assert!(run.running().is_empty());
    assert_eq!(run.with_task(0, |_| ()), None, "input 0 has finished");
}

#[test]
fn stop_all_stops_running_tasks_and_starts_no_new_ones() {
    const N: usize = 3;
    let started = Arc::new(AtomicUsize::new(0));
    let run = {
        let started = Arc::clone(&started);
        Pool::new(N)
            .run(0..10usize, move |ctx: &Ctx, i| {
                started.fetch_add(1, Ordering::SeqCst);
                ctx.sleep(LIMIT)?;
                Ok::<_, Stopped>(i)
            })
            .unwrap()
    };
    wait_for("N running", || {
        run.progress().running == N && started.load(Ordering::SeqCst) == N
    });
    let asked = Instant::now();
    run.stop_all();
    let all = drain(&run);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(all.len(), N);
    for done in all {
        assert!(done.index < N);
        assert_eq!(done.outcome.error(), Some(Stopped));
    }
    // The results ended: every runner is gone, and none started another.
    assert_eq!(started.load(Ordering::SeqCst), N);
    assert_eq!(run.progress().finished, N);
}

#[test]
fn stop_all_racing_with_short_tasks() {
    const ROUNDS: usize = 150;
    for round in 0..ROUNDS {
        let stop_returned = Arc::new(AtomicBool::new(false));
        let late_unstopped = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let run = {
            let stop_returned = Arc::clone(&stop_returned);
            let late_unstopped = Arc::clone(&late_unstopped);
            let started = Arc::clone(&started);
            Pool::new(4)
                .result_capacity(4)
                .run(0usize.., move |ctx: &Ctx, i| {
                    started.fetch_add(1, Ordering::SeqCst);
                    // Once `stop_all` returned, every task still running must
                    // already see the stop.
                    if stop_returned.load(Ordering::SeqCst) && !ctx.stopped() {
                        late_unstopped.fetch_add(1, Ordering::SeqCst);
                    }
                    if i % 3 == 0 {
                        thread::yield_now();
                    }
                    Ok::<_, ()>(i)
                })
                .unwrap()
        };
        let mut indices = HashSet::new();
        let mut cancelled = 0;
        let mut take = |done: Finished<usize, ()>| {
            assert!(indices.insert(done.index), "round {round}: index twice");
            match done.outcome {
                Outcome::Value(v) => assert_eq!(v, done.index),
                // Pulled before the stop, but its body never began.
                Outcome::Cancelled => cancelled += 1,
                other => panic!("round {round}: {other:?}"),
            }
        };
        for _ in 0..round % 20 {
            take(run.recv_timeout(LIMIT).unwrap());
        }
        run.stop_all();
        stop_returned.store(true, Ordering::SeqCst);
        drain(&run).into_iter().for_each(&mut take);
        // Every input pulled comes back once: run, or cancelled before it
        // began.
        assert_eq!(
            indices.len(),
            started.load(Ordering::SeqCst) + cancelled,
            "round {round}: a task is missing"
        );
        let most = indices.iter().max().map_or(0, |&i| i + 1);
        assert_eq!(indices.len(), most, "round {round}: a gap in the indices");
        assert_eq!(late_unstopped.load(Ordering::SeqCst), 0, "round {round}");
    }
}

#[test]
fn close_inbox_lets_running_tasks_finish_and_starts_no_new_ones() {
    const N: usize = 2;
    let started = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let run = {
        let started = Arc::clone(&started);
        let release = Arc::clone(&release);
        Pool::new(N)
            .run(0..6usize, move |ctx: &Ctx, i| {
                started.fetch_add(1, Ordering::SeqCst);
                task_wait_for(ctx, || release.load(Ordering::SeqCst))?;
                Ok::<_, Stopped>(i)
            })
            .unwrap()
    };
    wait_for("N running", || run.progress().running == N);
    run.close_inbox();
    release.store(true, Ordering::SeqCst);
    let mut all = drain(&run);
    all.sort_by_key(|d| d.index);
    let got: Vec<(usize, Option<usize>)> = all
        .into_iter()
        .map(|d| (d.index, d.outcome.value()))
        .collect();
    assert_eq!(got, vec![(0, Some(0)), (1, Some(1))]);
    assert_eq!(started.load(Ordering::SeqCst), N);
    assert_eq!(run.progress().queued, Some(0));
}

#[test]
fn dropping_the_run_stops_its_tasks() {
    const N: usize = 2;
    let started = Arc::new(AtomicUsize::new(0));
    let saw_stop = Arc::new(AtomicUsize::new(0));
    let body_dropped = Arc::new(AtomicBool::new(false));
    let run = {
        let started = Arc::clone(&started);
        let saw_stop = Arc::clone(&saw_stop);
        let guard = DropFlag(Arc::clone(&body_dropped));
        Pool::new(N)
            .run(0..10usize, move |ctx: &Ctx, i| {
                let _guard = &guard;
                started.fetch_add(1, Ordering::SeqCst);
                if ctx.sleep(LIMIT).is_err() {
                    saw_stop.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, ()>(i)
            })
            .unwrap()
    };
    wait_for("N running", || {
        run.progress().running == N && started.load(Ordering::SeqCst) == N
    });
    let dropped_at = Instant::now();
    drop(run);
    wait_for("both tasks to see the stop", || {
        saw_stop.load(Ordering::SeqCst) == N
    });
    assert!(dropped_at.elapsed() < Duration::from_secs(10));
    // The body goes when the last runner does: then no task can start.
    wait_for("the runners to end", || body_dropped.load(Ordering::SeqCst));
    assert_eq!(started.load(Ordering::SeqCst), N);
}

#[test]
fn stress_100_000_inputs_through_100() {
    const INPUTS: usize = 100_000;
    let run = Pool::new(100)
        .run(0..INPUTS as u64, |_: &Ctx, n| Ok::<_, ()>(n * 3 + 1))
        .unwrap();
    let mut seen = vec![false; INPUTS];
    let mut count = 0;
    for done in drain(&run) {
        assert!(!seen[done.index], "index {} twice", done.index);
        seen[done.index] = true;
        assert_eq!(done.outcome.value(), Some(done.index as u64 * 3 + 1));
        count += 1;
    }
    assert_eq!(count, INPUTS);
    assert_eq!(run.progress().finished, INPUTS);
}

#[test]
fn a_long_with_task_call_does_not_hold_up_other_tasks_timeouts() {
    // A pool whose watchdog keeps looking (fewer runners than its
    // parallelism), with input 0 held up until stopped.
    let run = Pool::new(1_000)
        .result_capacity(2)
        .run(0usize.., |ctx: &Ctx<(), u8>, i| {
            if i == 0 {
                ctx.sleep(LIMIT)?;
            }
            Ok::<_, Stopped>(i)
        })
        .unwrap();
    wait_for("input 0 running", || run.running().contains(&0));
    let inside = AtomicBool::new(false);
    let hold = Duration::from_millis(1_500);
    thread::scope(|s| {
        // Waits for an event inside `with_task`, as its docs allow.
        let holder = s.spawn(|| {
            run.with_task(0, |task| {
                inside.store(true, Ordering::SeqCst);
                task.recv_timeout(hold)
            })
        });
        wait_for("the with_task call", || inside.load(Ordering::SeqCst));
        // An unrelated task with a short timeout meanwhile.
        let began = Instant::now();
        let other = sidetask::Builder::new()
            .timeout(Duration::from_millis(50))
            .spawn(|ctx: &Ctx| ctx.sleep(LIMIT))
            .unwrap();
        let outcome = other.join_timeout(LIMIT).expect("the other task ended");
        let took = began.elapsed();
        assert!(outcome.is_error() || outcome.is_cancelled());
        assert_eq!(holder.join().unwrap(), Some(Err(RecvTimeoutError::Timeout)));
        assert!(
            took < Duration::from_millis(1_000),
            "a 50 ms timeout fired after {took:?}, held up by the with_task call"
        );
    });
    run.stop_all();
}

#[test]
fn task_timeout_stops_each_long_task() {
    let began = Instant::now();
    let run = Pool::new(2)
        .task_timeout(Duration::from_millis(50))
        .run(0..4usize, |ctx: &Ctx, i| {
            ctx.sleep(Duration::from_secs(3))?;
            Ok::<_, Stopped>(i)
        })
        .unwrap();
    let all = drain(&run);
    let took = began.elapsed();
    assert_eq!(all.len(), 4);
    for done in all {
        assert_eq!(done.outcome.error(), Some(Stopped), "input {}", done.index);
    }
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_panicking_input_iterator_ends_the_inputs_and_is_reported() {
    let inputs = (0..10u32).map(|n| if n == 5 { panic!("bad input {n}") } else { n });
    let run = Pool::new(2)
        .run(inputs, |_: &Ctx, n| Ok::<_, ()>(n))
        .unwrap();
    let mut got: Vec<u32> = Vec::new();
    while let Ok(done) = run.recv_timeout(Duration::from_secs(30)) {
        got.push(done.outcome.value().unwrap());
    }
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    let panic = run.input_panic().expect("the iterator's panic");
    assert_eq!(panic.message(), "bad input 5");
    assert!(run.input_panic().is_none(), "taken once");
}

/// An input that notes, when dropped, its number and whether a task's body
/// took it.
struct Noted {
    n: usize,
    ran: bool,
    log: Arc<Mutex<Vec<(usize, bool)>>>,
}

impl Drop for Noted {
    fn drop(&mut self) {
        self.log.lock().unwrap().push((self.n, self.ran));
    }
}

/// A pool of two over an input iterator that yields inputs 0, 1 and 2, then
/// blocks in `next` until the returned sender sends or is dropped; the log
/// notes each input as it is dropped, and whether its body ran.
#[allow(clippy::type_complexity)]
fn pool_over_a_blocking_iterator() -> (
    PoolRun<usize, (), (), ()>,
    std::sync::mpsc::Sender<Noted>,
    Arc<Mutex<Vec<(usize, bool)>>>,
) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let first: Vec<Noted> = (0..3)
        .map(|n| Noted {
            n,
            ran: false,
            log: Arc::clone(&log),
        })
        .collect();
    let run = Pool::new(2)
        .run(first.into_iter().chain(rx), |_: &Ctx, mut input: Noted| {
            input.ran = true;
            Ok::<_, ()>(input.n)
        })
        .unwrap();
    (run, tx, log)
}

/// After the pool was closed: an input the blocked iterator yields at last
/// is dropped, never run; the first three ran.
fn late_input_is_dropped_unrun(
    tx: &std::sync::mpsc::Sender<Noted>,
    log: &Arc<Mutex<Vec<(usize, bool)>>>,
) {
    tx.send(Noted {
        n: 99,
        ran: false,
        log: Arc::clone(log),
    })
    .unwrap();
    wait_for("the late input to be dropped", || {
        log.lock().unwrap().iter().any(|&(n, _)| n == 99)
    });
    let mut noted = log.lock().unwrap().clone();
    noted.sort_unstable();
    assert_eq!(noted, vec![(0, true), (1, true), (2, true), (99, false)]);
}

/// Takes the first three results, then waits until a runner is (very
/// likely) inside the blocked iterator's `next`.
fn take_the_first_three(run: &PoolRun<usize, (), (), ()>) -> Vec<usize> {
    let mut got: Vec<usize> = (0..3)
        .map(|_| run.recv_timeout(LIMIT).unwrap().outcome.value().unwrap())
        .collect();
    got.sort_unstable();
    got
}

#[test]
fn stop_all_never_waits_for_a_blocked_input_iterator() {
    let (run, tx, log) = pool_over_a_blocking_iterator();
    assert_eq!(take_the_first_three(&run), [0, 1, 2]);
    let rest = within(LIMIT, move || {
        run.stop_all();
        drain(&run).len()
    });
    assert_eq!(rest, 0, "the results end although the iterator is blocked");
    late_input_is_dropped_unrun(&tx, &log);
}

#[test]
fn close_inbox_never_waits_for_a_blocked_input_iterator() {
    let (run, tx, log) = pool_over_a_blocking_iterator();
    assert_eq!(take_the_first_three(&run), [0, 1, 2]);
    let (rest, progress) = within(LIMIT, move || {
        run.close_inbox();
        (drain(&run).len(), run.progress())
    });
    assert_eq!(rest, 0, "the results end although the iterator is blocked");
    assert_eq!(progress.queued, Some(0));
    late_input_is_dropped_unrun(&tx, &log);
}

#[test]
fn dropping_the_run_never_waits_for_a_blocked_input_iterator() {
    let (run, tx, log) = pool_over_a_blocking_iterator();
    assert_eq!(take_the_first_three(&run), [0, 1, 2]);
    within(LIMIT, move || drop(run));
    late_input_is_dropped_unrun(&tx, &log);
}

#[test]
fn ending_an_in_order_iteration_never_waits_for_a_blocked_input_iterator() {
    // Closed from the iteration's pool: the iteration ends.
    let (run, tx, log) = pool_over_a_blocking_iterator();
    let got = within(LIMIT, move || {
        let mut in_order = run.in_order();
        let got: Vec<usize> = in_order
            .by_ref()
            .take(3)
            .map(|done| done.outcome.value().unwrap())
            .collect();
        in_order.pool().close_inbox();
        assert!(in_order.next().is_none(), "the iteration ends");
        got
    });
    assert_eq!(got, [0, 1, 2]);
    late_input_is_dropped_unrun(&tx, &log);

    // Left early: dropping the iteration drops the pool.
    let (run, tx, log) = pool_over_a_blocking_iterator();
    let got = within(LIMIT, move || {
        run.in_order()
            .take(3)
            .map(|done| done.outcome.value().unwrap())
            .collect::<Vec<usize>>()
    });
    assert_eq!(got, [0, 1, 2]);
    late_input_is_dropped_unrun(&tx, &log);
}

#[test]
fn events_beyond_the_outbox_are_given_back_never_waited_for() {
    const CAPACITY: usize = 4;
    const EMITTED: usize = 10 * CAPACITY;
    const INPUTS: usize = 8;
    let results = within(LIMIT, || {
        let run = Pool::new(2)
            .task_capacities(1, CAPACITY)
            .run(0..INPUTS, |ctx: &Ctx<(), usize>, input| {
                let mut refused = Vec::new();
                for n in 0..EMITTED {
                    let event = input * EMITTED + n;
                    if n % 2 == 0 {
                        match ctx.emit(event) {
                            Ok(()) => {}
                            Err(EmitError::Disconnected(back)) => refused.push(back),
                            Err(e) => panic!("emit: {e}"),
                        }
                    } else {
                        match ctx.try_emit(event) {
                            Ok(()) => {}
                            Err(TryEmitError::Full(back)) => refused.push(back),
                            Err(e) => panic!("try_emit: {e}"),
                        }
                    }
                }
                Ok::<_, ()>(refused)
            })
            .unwrap();
        let mut all = Vec::new();
        run.for_each(|done| all.push(done));
        all
    });
    assert_eq!(results.len(), INPUTS);
    for done in results {
        let refused = done.outcome.value().unwrap();
        let first = done.index * EMITTED;
        // Kept: the first events, up to the capacity; given back: the rest.
        assert_eq!(done.events, (first..first + CAPACITY).collect::<Vec<_>>());
        assert_eq!(
            refused,
            (first + CAPACITY..first + EMITTED).collect::<Vec<_>>()
        );
        assert_eq!(done.events.len() + refused.len(), EMITTED);
    }
}

#[test]
fn closing_while_runners_pull_loses_no_input_stress() {
    const ROUNDS: usize = 200;
    for round in 0..ROUNDS {
        let log = Arc::new(Mutex::new(Vec::new()));
        let yielded = Arc::new(AtomicUsize::new(0));
        let body_dropped = Arc::new(AtomicBool::new(false));
        let inputs = {
            let (log, yielded) = (Arc::clone(&log), Arc::clone(&yielded));
            (0..).map(move |n| {
                if round % 2 == 0 {
                    // Widen the window in which a close meets a pull.
                    thread::yield_now();
                }
                yielded.fetch_add(1, Ordering::SeqCst);
                Noted {
                    n,
                    ran: false,
                    log: Arc::clone(&log),
                }
            })
        };
        let run = {
            let guard = DropFlag(Arc::clone(&body_dropped));
            Pool::new(3)
                .run(inputs, move |_: &Ctx, mut input: Noted| {
                    let _guard = &guard;
                    input.ran = true;
                    Ok::<_, ()>(input.n)
                })
                .unwrap()
        };
        let mut results: Vec<Finished<usize, ()>> = (0..round % 7)
            .map(|_| run.recv_timeout(LIMIT).unwrap())
            .collect();
        if round % 3 == 0 {
            run.stop_all();
        } else {
            run.close_inbox();
        }
        results.extend(drain(&run));
        drop(run);
        wait_for("the runners to end", || body_dropped.load(Ordering::SeqCst));

        // Every input yielded came back once as a result, or was dropped
        // unrun by the runner that pulled it while the pool closed.
        let results_count = results.len();
        let mut indices: Vec<usize> = results.iter().map(|d| d.index).collect();
        indices.sort_unstable();
        assert_eq!(
            indices,
            (0..results_count).collect::<Vec<_>>(),
            "round {round}"
        );
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), yielded.load(Ordering::SeqCst), "round {round}");
        for done in &results {
            let ran = log.iter().find(|&&(n, _)| n == done.index).unwrap().1;
            match &done.outcome {
                Outcome::Value(n) => assert!(*n == done.index && ran, "round {round}"),
                Outcome::Cancelled => assert!(!ran, "round {round}"),
                other => panic!("round {round}: {other:?}"),
            }
        }
        let unrun: Vec<_> = log.iter().filter(|&&(n, _)| n >= results_count).collect();
        assert!(
            unrun.len() <= 1 && unrun.iter().all(|&&(_, ran)| !ran),
            "round {round}: {unrun:?}"
        );
        assert_eq!(log.len(), results_count + unrun.len(), "round {round}");
    }
}

/// A runner reuses an ended task's state for its next task only when
/// nobody holds it any more: a stop handle kept from an ended task stops
/// nothing later, and a message left unread in an ended task's inbox never
/// reaches the next one.
#[test]
fn what_an_ended_task_leaves_never_reaches_the_next_one() {
    const INPUTS: usize = 6;
    let kept = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(AtomicUsize::new(0));
    let run = {
        let release = Arc::clone(&release);
        // One runner: each task follows the last on the same thread.
        Pool::new(1)
            .run(0..INPUTS, move |ctx: &Ctx<u32>, i| {
                task_wait_for(ctx, || release.load(Ordering::SeqCst) > i)?;
                // Ends with its inbox unread, but for a message sent after
                // the task began, if any.
                Ok::<_, Stopped>((i, ctx.try_recv().ok()))
            })
            .unwrap()
    };
    for i in 0..INPUTS {
        wait_for("the task running", || run.running() == [i]);
        let handle = run.with_task(i, |task| {
            // Two messages: the task reads at most one.
            task.send(10 * i as u32).unwrap();
            task.send(10 * i as u32 + 1).unwrap();
            task.stop_handle()
        });
        if i % 2 == 0 {
            // Kept past the task's end (an odd task's state may be reused).
            kept.lock().unwrap().push(handle.unwrap());
        }
        release.store(i + 1, Ordering::SeqCst);
        let done = run.recv_timeout(LIMIT).unwrap();
        assert_eq!(done.index, i);
        assert_eq!(done.outcome.value(), Some((i, Some(10 * i as u32))));
        // Stopping every kept handle stops none of the later tasks.
        for handle in kept.lock().unwrap().iter() {
            handle.stop();
            assert!(handle.is_finished());
        }
    }
    assert!(matches!(
        run.recv_timeout(LIMIT),
        Err(RecvTimeoutError::Disconnected)
    ));
}
