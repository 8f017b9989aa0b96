//! Worker threads do not leak: after 1,000 blocked tasks are dropped, every thread exits.
//!
//! One test only: this file is its own process, so the threads listed in
//! `/proc/self/task` are this test's and the harness's alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::Ctx;

/// Tasks blocked at once, each on its own worker thread.
const TASKS: usize = 1_000;
/// How long an idle worker waits before it exits.
const IDLE: Duration = Duration::from_millis(200);
/// Bound for each wait; a leak or a hang fails the test instead.
const DEADLINE: Duration = Duration::from_secs(30);

/// The threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists the process's threads")
        .count()
}

/// Polls `cond` until it holds; `false` if [`DEADLINE`] passed first.
fn poll(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= DEADLINE {
            return cond();
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Counts a task body's end, however it ends.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropped_blocked_tasks_leave_no_thread_behind() {
    sidetask::set_idle_timeout(IDLE);
    let before = threads();
    assert_eq!(
        sidetask::worker_threads(),
        0,
        "no worker before the first task"
    );

    let running = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let running = Arc::clone(&running);
            let ended = Ended(Arc::clone(&ended));
            sidetask::spawn(move |ctx: &Ctx<u8>| {
                let _ended = ended;
                running.fetch_add(1, Ordering::SeqCst);
                // Blocks until the handle is dropped.
                ctx.recv().map(|_| ())
            })
        })
        .collect();

    assert!(
        poll(|| running.load(Ordering::SeqCst) == TASKS),
        "only {} of {TASKS} tasks began",
        running.load(Ordering::SeqCst)
    );
    let busy = threads();
    assert!(
        busy >= before + TASKS,
        "{TASKS} blocked tasks share threads: {before} threads before, {busy} now"
    );
    assert_eq!(sidetask::worker_threads(), TASKS);

    drop(tasks);

    assert!(
        poll(|| ended.load(Ordering::SeqCst) == TASKS),
        "only {} of {TASKS} dropped tasks ended",
        ended.load(Ordering::SeqCst)
    );
    assert!(
        poll(|| sidetask::worker_threads() == 0),
        "{} worker threads still alive {DEADLINE:?} after their tasks ended \
         (idle timeout {IDLE:?})",
        sidetask::worker_threads()
    );
    assert!(
        poll(|| threads() <= before),
        "{} threads remain, {before} before the tasks",
        threads()
    );
}
