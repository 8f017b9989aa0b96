//! The watchdog: adds runners while every one is held up.
//!
//! A pool starts one runner per core, which is best for tiny tasks (no
//! thread hand-off, no more threads than can run). Tasks that block, or
//! are simply long, would then leave the pool below its parallelism, so a
//! timer looks every [`HELD_UP`]: if every live runner holds the same task
//! as at the last look, it starts as many runners again as are alive, up
//! to the parallelism. Tiny tasks never trigger it, and blocking tasks get
//! their full parallelism within a few looks (one doubling per look). It
//! stops looking once every slot has its runner or no runner can be
//! needed any more (the input is closed).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shared::PoolShared;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::sync::lock;
use crate::timer::{self, Alarm};

/// How often the watchdog looks whether every runner is held up by the task
/// it held at the last look.
const HELD_UP: Duration = Duration::from_micros(500);

impl<It, F, T, E, In, Ev> PoolShared<It, F, T, E, In, Ev>
where
    F: Fn(&Ctx<In, Ev>, It::Item) -> Outcome<T, E> + Send + Sync + 'static,
    It: Iterator + Send + 'static,
    It::Item: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// Schedules the next look, unless no runner can be added any more.
    pub(super) fn watch(&self) {
        if self.live.load(Ordering::SeqCst) < self.slots.len() && lock(&self.spare).is_some() {
            let weak: Weak<dyn Alarm> = self.me.clone() as Weak<dyn Alarm>;
            timer::schedule(Instant::now() + HELD_UP, weak);
        }
    }
}

impl<It, F, T, E, In, Ev> Alarm for PoolShared<It, F, T, E, In, Ev>
where
    F: Fn(&Ctx<In, Ev>, It::Item) -> Outcome<T, E> + Send + Sync + 'static,
    It: Iterator + Send + 'static,
    It::Item: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// One look: adds runners when every one is held up by the same task as
    /// at the last look (blocked, or simply long), as many again as are
    /// alive, up to the parallelism; then schedules the next look.
    fn ring(&self) {
        let live = self.live.load(Ordering::SeqCst).min(self.slots.len());
        // A runner is held up if it holds the same task as at the last look.
        let mut held_up = 0;
        for slot in &self.slots[..live] {
            let now = slot.current.load(Ordering::Relaxed);
            if now != usize::MAX && slot.seen.swap(now, Ordering::Relaxed) == now {
                held_up += 1;
            }
        }
        if live > 0 && held_up == live {
            let add = live.min(self.slots.len() - live);
            for slot in live..live + add {
                if self.start_runner(slot).is_err() {
                    return;
                }
            }
        }
        self.watch();
    }
}
