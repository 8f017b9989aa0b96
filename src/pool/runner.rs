//! The runner loop: pull an input, run its task on this thread, send its
//! result; again until the input ends or nobody collects results.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Finished;
use super::shared::{PoolControl, PoolShared, Results};
use crate::backend::thread as place;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::sync::lock;
use crate::task::Settings;

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
    /// Starts the runner of `slot` on a worker thread, if input can still
    /// be taken.
    pub(super) fn start_runner(&self, slot: usize) -> std::io::Result<()> {
        let (Some(me), Some(results)) = (self.me.upgrade(), lock(&self.spare).clone()) else {
            return Ok(());
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        place::execute(Box::new(move || run(&me, slot, results))).map_err(|(_, err)| {
            self.live.fetch_sub(1, Ordering::SeqCst);
            err
        })
    }
}

/// The runner of `slot`: runs the pool's tasks one after another on this
/// thread.
///
/// While it pulls an input, its results sender is parked in its slot,
/// where a close takes it: a runner held in the iterator's `next` keeps
/// the results from ending only until the pool is closed. An input whose
/// `next` was under way when the close took the sender is dropped, never
/// run.
fn run<It, F, T, E, In, Ev>(
    shared: &Arc<PoolShared<It, F, T, E, In, Ev>>,
    slot: usize,
    results: Results<T, E, Ev>,
) where
    F: Fn(&Ctx<In, Ev>, It::Item) -> Outcome<T, E> + Send + Sync + 'static,
    It: Iterator + Send + 'static,
    It::Item: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    struct Leave<'a>(&'a AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leave = Leave(&shared.live);
    let here = &shared.slots[slot];
    // Boxed once for the runner's life, so that parking it is a pointer's
    // swap.
    let mut results = Box::new(results);
    // The last task's handle, whose shared state the next task reuses.
    let mut ended = None;
    loop {
        here.parked.store(Some(results));
        let Some((index, item, sender)) = shared.next_input(here) else {
            // The inputs ended, or the pool was closed: the sender goes
            // (unless the close took it already).
            drop(here.parked.take());
            return;
        };
        results = sender;
        let (inbox, outbox, timeout) = shared.settings;
        let (task, ctx) = place::here(
            Settings {
                name: None,
                inbox,
                outbox,
                timeout,
            },
            ended.take(),
        );
        // Nobody reads the outbox as events come (its events go in the
        // result), so an emit into a full outbox must not wait.
        ctx.shared().set_outbox_unread();
        *lock(&here.task) = Some((index, task));
        if shared.stopped.load(Ordering::SeqCst) {
            // `stop_all` may have looked at this slot before it was filled.
            if let Some((_, task)) = &*lock(&here.task) {
                task.stop();
            }
        }
        here.current.store(index, Ordering::Relaxed);
        let outcome = place::run_here(&ctx, |ctx: &Ctx<In, Ev>| (shared.body)(ctx, item));
        here.current.store(usize::MAX, Ordering::Relaxed);
        let (_, task) = lock(&here.task).take().expect("the slot holds its task");
        let events = task.take_left_events();
        // The context goes (unless the body kept a copy): the handle is
        // then the last holder of the task's state, which the next task
        // reuses.
        drop(ctx);
        ended = Some(task);
        // This runner alone writes its count.
        let finished = here.finished.load(Ordering::Relaxed);
        here.finished.store(finished + 1, Ordering::Relaxed);
        if results
            .send(Finished {
                index,
                outcome,
                events,
            })
            .is_err()
        {
            // Nobody collects results any more: the pool was dropped.
            shared.close(true);
            return;
        }
    }
}
