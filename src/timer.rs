//! One background thread that asks tasks to stop when their timeout passes.
//!
//! Deadlines sit in a heap under a mutex; the thread sleeps on a condition
//! variable until the earliest one. Entries hold weak references, so a task
//! that ended long ago costs nothing but its heap entry until its deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, Weak};
use std::thread;
use std::time::Instant;

use crate::sync::lock;

/// Something the timer calls at a given time (a task's timeout, a step of
/// a stop's escalation, a pool's watchdog).
pub(crate) trait Alarm: Send + Sync {
    /// The time came.
    fn ring(&self);
}

struct Entry {
    at: Instant,
    seq: u64,
    target: Weak<dyn Alarm>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Timer {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64, bool)>,
    wake: Condvar,
}

static TIMER: Timer = Timer {
    heap: Mutex::new((BinaryHeap::new(), 0, false)),
    wake: Condvar::new(),
};

/// Calls `target.ring()` at `at`, unless the target is gone by then.
pub(crate) fn schedule(at: Instant, target: Weak<dyn Alarm>) {
    let mut guard = lock(&TIMER.heap);
    let (heap, seq, running) = &mut *guard;
    *seq += 1;
    let mine = *seq;
    heap.push(Reverse(Entry {
        at,
        seq: mine,
        target,
    }));
    // The thread sleeps until the earliest deadline and looks at the heap
    // again whenever it wakes: it needs waking only for a deadline before
    // every other (a wake-up is a system call, and a context switch on a
    // busy machine).
    let earliest = heap.peek().is_some_and(|Reverse(first)| first.seq == mine);
    if !*running {
        // The timer thread lives for the rest of the process once started;
        // if it cannot be started, deadlines are served by the next attempt.
        *running = thread::Builder::new()
            .name("sidetask-timer".to_owned())
            .spawn(run)
            .is_ok();
    }
    drop(guard);
    if earliest {
        TIMER.wake.notify_one();
    }
}

fn run() {
    let mut guard = lock(&TIMER.heap);
    loop {
        let now = Instant::now();
        match guard.0.peek() {
            Some(Reverse(entry)) if entry.at <= now => {
                let Reverse(entry) = guard.0.pop().expect("peeked");
                drop(guard);
                // The upgraded reference may be the last one: its drop runs
                // user drops, which must not end this thread.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                    if let Some(target) = entry.target.upgrade() {
                        target.ring();
                    }
                }));
                guard = lock(&TIMER.heap);
            }
            Some(Reverse(entry)) => {
                let wait = entry.at - now;
                guard = TIMER
                    .wake
                    .wait_timeout(guard, wait)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0;
            }
            None => {
                guard = TIMER
                    .wake
                    .wait(guard)
                    .unwrap_or_else(|poison| poison.into_inner());
            }
        }
    }
}
