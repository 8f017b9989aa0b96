//! What a pool's runners and its handle share: the input, the slots, the
//! counters, and the spare sender of results.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, Weak};
use std::time::Duration;

use crossbeam_channel::Sender;
use crossbeam_utils::CachePadded;
use crossbeam_utils::atomic::AtomicCell;

use super::{Finished, Progress};
use crate::outcome::{self, Panic};
use crate::sync::lock;
use crate::task::Task;

/// One runner's place: the task it runs now (with its input's index) and
/// its own counters, on a cache line of its own so runners never contend.
pub(super) struct Slot<T, E, In, Ev> {
    pub(super) task: Mutex<Running<T, E, In, Ev>>,
    /// The index of the input running now, or `usize::MAX`: read by the
    /// watchdog and `progress` without the lock, which `with_task` callers
    /// may hold long.
    pub(super) current: AtomicUsize,
    pub(super) finished: AtomicUsize,
    /// What the watchdog saw at its last look: the index held, or
    /// `usize::MAX`.
    pub(super) seen: AtomicUsize,
    /// The runner's results sender while it pulls an input: there a close
    /// takes it, so that a runner held in the iterator's `next` keeps the
    /// results from ending only until the close. Whoever takes it out (the
    /// runner back from `next`, or a close) owns it; it is a pointer, so a
    /// park and a take are one swap each.
    pub(super) parked: AtomicCell<Option<Parked<T, E, Ev>>>,
}

/// The task a runner runs now, with its input's index.
pub(super) type Running<T, E, In, Ev> = Option<(usize, Task<T, E, In, Ev>)>;

pub(super) type Slots<T, E, In, Ev> = Box<[CachePadded<Slot<T, E, In, Ev>>]>;

pub(super) struct Input<It> {
    /// Kept in place (not boxed), beside the lock, so that a pull touches
    /// one cache line fewer.
    pub(super) iter: It,
    /// The index the next input pulled gets.
    pub(super) next: usize,
}

/// Where a task's result goes.
pub(super) type Results<T, E, Ev> = Sender<Finished<T, E, Ev>>;

/// A runner's results sender, boxed once for the runner's life so that it
/// parks in an atomic cell.
pub(super) type Parked<T, E, Ev> = Box<Results<T, E, Ev>>;

/// A pulled input: its index, the input, and the puller's results sender
/// taken back.
pub(super) type Pulled<It, T, E, Ev> = (usize, <It as Iterator>::Item, Parked<T, E, Ev>);

/// The settings each task is built with: inbox and outbox capacities, and
/// the timeout.
pub(super) type TaskSettings = (usize, usize, Option<Duration>);

pub(super) struct PoolShared<It, F, T, E, In, Ev> {
    pub(super) me: Weak<PoolShared<It, F, T, E, In, Ev>>,
    /// The input iterator, held by a runner while it pulls (inside the
    /// iterator's `next`, which may never return).
    pub(super) input: Mutex<Input<It>>,
    /// No input is taken any more: the inputs ended, or the pool was
    /// closed. Read and written without the input lock, so that closing
    /// never waits for the iterator.
    pub(super) closed: AtomicBool,
    /// What runners waiting for the in-order window wait on: a lock of its
    /// own, apart from the input lock, so that delivering and closing never
    /// wait for the iterator.
    pub(super) gate: Mutex<()>,
    /// Runners waiting for the in-order window to move.
    pub(super) advanced: Condvar,
    pub(super) waiting: AtomicUsize,
    pub(super) window: AtomicUsize,
    pub(super) delivered: AtomicUsize,
    pub(super) stopped: AtomicBool,
    pub(super) queued: AtomicUsize,
    /// Runners alive; runner `k` uses slot `k`.
    pub(super) live: AtomicUsize,
    /// A results sender for runners started later; dropped once no input
    /// is taken any more, so that the results end when the last task
    /// pulled has sent its result.
    pub(super) spare: Mutex<Option<Sender<Finished<T, E, Ev>>>>,
    pub(super) input_panic: Mutex<Option<Panic>>,
    pub(super) slots: Slots<T, E, In, Ev>,
    pub(super) body: F,
    pub(super) settings: TaskSettings,
}

impl<It: Iterator, F, T, E, In, Ev> PoolShared<It, F, T, E, In, Ev> {
    /// The shared state of a pool of `slots` slots over `iter`; `results`
    /// becomes the spare sender.
    pub(super) fn new(
        me: Weak<PoolShared<It, F, T, E, In, Ev>>,
        iter: It,
        slots: usize,
        results: Sender<Finished<T, E, Ev>>,
        body: F,
        settings: TaskSettings,
    ) -> PoolShared<It, F, T, E, In, Ev> {
        let shared = PoolShared {
            me,
            input: Mutex::new(Input { iter, next: 0 }),
            closed: AtomicBool::new(false),
            gate: Mutex::new(()),
            advanced: Condvar::new(),
            waiting: AtomicUsize::new(0),
            window: AtomicUsize::new(usize::MAX),
            delivered: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            queued: AtomicUsize::new(usize::MAX),
            live: AtomicUsize::new(0),
            spare: Mutex::new(Some(results)),
            input_panic: Mutex::new(None),
            slots: (0..slots)
                .map(|_| {
                    CachePadded::new(Slot {
                        task: Mutex::new(None),
                        current: AtomicUsize::new(usize::MAX),
                        finished: AtomicUsize::new(0),
                        seen: AtomicUsize::new(usize::MAX),
                        parked: AtomicCell::new(None),
                    })
                })
                .collect(),
            body,
            settings,
        };
        shared.update_queued(&lock(&shared.input));
        shared
    }

    /// Notes how many inputs the iterator says it has left (`counts`
    /// says 0 once the pool is closed, whatever this stored last).
    fn update_queued(&self, input: &Input<It>) {
        let queued = match input.iter.size_hint() {
            (lo, Some(hi)) if lo == hi => lo,
            _ => usize::MAX,
        };
        self.queued.store(queued, Ordering::Relaxed);
    }

    /// The next input, its index and the results sender the runner of
    /// `here` parked there, or `None` when the inputs are used up or the
    /// pool was closed.
    ///
    /// Only the runner inside the iterator's `next` waits for it: the
    /// others wait for the input lock, and closing takes neither. The
    /// parked sender is taken back under the input lock, as soon as `next`
    /// returns: only an input whose `next` was under way at a close can find
    /// it gone, and is then dropped, never run.
    pub(super) fn next_input(&self, here: &Slot<T, E, In, Ev>) -> Option<Pulled<It, T, E, Ev>> {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            let mut input = lock(&self.input);
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            let window = self.window.load(Ordering::SeqCst);
            if window != usize::MAX
                && input.next >= self.delivered.load(Ordering::SeqCst).saturating_add(window)
            {
                let next = input.next;
                drop(input);
                self.wait_window(next, window);
                continue;
            }
            let item = match outcome::catch(|| input.iter.next()) {
                Ok(item) => item,
                Err(panic) => {
                    // The input iterator panicked: no input can follow.
                    *lock(&self.input_panic) = Some(panic);
                    None
                }
            };
            let Some(item) = item else {
                self.closed.store(true, Ordering::SeqCst);
                *lock(&self.spare) = None;
                self.update_queued(&input);
                drop(input);
                self.wake_window_waiters();
                return None;
            };
            let Some(results) = here.parked.take() else {
                // Closed while the iterator's `next` ran.
                drop(input);
                drop(item);
                return None;
            };
            let index = input.next;
            input.next += 1;
            self.update_queued(&input);
            return Some((index, item, results));
        }
    }

    /// Wakes the runners waiting for the window, to see a close.
    fn wake_window_waiters(&self) {
        // Taken so that a runner between its check and its wait cannot
        // miss this.
        drop(lock(&self.gate));
        self.advanced.notify_all();
    }

    /// Waits until the window lets input `next` be pulled, or the pool is
    /// closed.
    fn wait_window(&self, next: usize, window: usize) {
        let mut gate = lock(&self.gate);
        // Counted before the check: `delivered` looks at the count after
        // it moved the window, so one of the two sees the other.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while !self.closed.load(Ordering::SeqCst)
            && next >= self.delivered.load(Ordering::SeqCst).saturating_add(window)
        {
            gate = self
                .advanced
                .wait(gate)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the handle may ask of a pool without its input and body types.
pub(super) trait PoolControl<T, E, In, Ev>: Send + Sync {
    fn slots(&self) -> &[CachePadded<Slot<T, E, In, Ev>>];
    /// Takes no more input; with `stop`, also stops every running task.
    fn close(&self, stop: bool);
    fn counts(&self) -> Progress;
    fn set_window(&self, window: usize);
    fn take_input_panic(&self) -> Option<Panic>;
    /// Every input before `next` has been delivered in order.
    fn delivered(&self, next: usize);
}

impl<It, F, T, E, In, Ev> PoolControl<T, E, In, Ev> for PoolShared<It, F, T, E, In, Ev>
where
    It: Iterator + Send,
    F: Send + Sync,
    T: Send,
    E: Send,
    In: Send,
    Ev: Send,
{
    fn slots(&self) -> &[CachePadded<Slot<T, E, In, Ev>>] {
        &self.slots
    }

    fn close(&self, stop: bool) {
        if stop {
            self.stopped.store(true, Ordering::SeqCst);
        }
        // Never the input lock: a runner may hold it inside the iterator's
        // `next` for ever.
        self.closed.store(true, Ordering::SeqCst);
        self.queued.store(0, Ordering::SeqCst);
        *lock(&self.spare) = None;
        for slot in &self.slots {
            // A runner that parked its sender before the close pulls no
            // more, or drops what it pulled unrun; one that parks it after
            // sees the close before it pulls. (Park and take are swaps on
            // one cell, so one comes first: a park after this take reads
            // what it wrote, and so sees `closed`, stored before it.)
            drop(slot.parked.take());
        }
        self.wake_window_waiters();
        if stop {
            for slot in &self.slots {
                if let Some((_, task)) = &*lock(&slot.task) {
                    task.stop();
                }
            }
        }
    }

    fn counts(&self) -> Progress {
        // Closed, nothing is queued any more: a runner that pulled before the
        // close may have stored its count after the close's 0.
        let queued = if self.closed.load(Ordering::SeqCst) {
            0
        } else {
            self.queued.load(Ordering::Relaxed)
        };
        Progress {
            queued: (queued != usize::MAX).then_some(queued),
            running: self
                .slots
                .iter()
                .filter(|s| s.current.load(Ordering::Relaxed) != usize::MAX)
                .count(),
            finished: self
                .slots
                .iter()
                .map(|s| s.finished.load(Ordering::Relaxed))
                .sum(),
        }
    }

    fn take_input_panic(&self) -> Option<Panic> {
        lock(&self.input_panic).take()
    }

    fn set_window(&self, window: usize) {
        self.window.store(window, Ordering::SeqCst);
    }

    fn delivered(&self, next: usize) {
        self.delivered.store(next, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Take the lock so that a runner between its check and its wait
            // cannot miss this.
            drop(lock(&self.gate));
            self.advanced.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parking a runner's sender and taking it back are one atomic swap
    /// each, not a lock round trip hidden in the cell.
    #[test]
    fn a_parked_sender_is_swapped_lock_free() {
        assert!(AtomicCell::<Option<Parked<u64, (), ()>>>::is_lock_free());
    }
}
