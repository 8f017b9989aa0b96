//! Spares: what a place starts ahead for a supervised task's next attempt
//! (a process task's child, started and waiting for its task), kept by the
//! supervisor and found by the place through the thread that runs the
//! supervisor's factory.
//!
//! The supervisor owns a [`Standby`] and runs each call of its factory
//! [`around`](Spares::around) its spares; a place that starts something
//! slow for a task spawned inside takes the spare kept before (if it fits)
//! and starts the next one on a thread of its own, so that it gets ready
//! while the attempt runs. When the supervisor ends, its standby waits for
//! a start under way and drops what is kept: a spare child is killed and
//! reaped as it drops.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::sync::lock;

/// One spare at most, of whichever place kept it, and the start under way.
#[derive(Default)]
pub(crate) struct Spares {
    slot: Mutex<Slot>,
    /// Signalled when a start ends.
    started: Condvar,
}

#[derive(Default)]
struct Slot {
    spare: Option<Box<dyn Any + Send>>,
    /// Whether a start is under way.
    starting: bool,
    /// The supervisor ended: nothing is kept any more.
    closed: bool,
}

thread_local! {
    /// The spares of the factory this thread runs.
    static CURRENT: RefCell<Option<Arc<Spares>>> = const { RefCell::new(None) };
}

impl Spares {
    /// Runs `factory` with these spares as the ones places spawning on this
    /// thread use.
    pub(crate) fn around<R>(self: &Arc<Self>, factory: impl FnOnce() -> R) -> R {
        /// Puts back what was current before, however `factory` ends.
        struct Restore(Option<Arc<Spares>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                CURRENT.with(|current| *current.borrow_mut() = before);
            }
        }
        let _restore =
            Restore(CURRENT.with(|current| current.borrow_mut().replace(Arc::clone(self))));
        factory()
    }

    /// The spares of the factory this thread runs, if its supervisor keeps
    /// any.
    pub(crate) fn current() -> Option<Arc<Spares>> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// Takes the spare (waiting for the start under way, if any), if one
    /// of kind `T` is kept; one of another kind is dropped.
    pub(crate) fn take<T: 'static>(&self) -> Option<T> {
        let spare = self.settled().spare.take();
        spare?.downcast::<T>().ok().map(|spare| *spare)
    }

    /// Starts the next spare with `start` on a thread of its own (unless
    /// one is kept or starting, or the supervisor ended), and keeps it.
    pub(crate) fn start_next<T: Send + 'static>(
        self: &Arc<Self>,
        start: impl FnOnce() -> Option<T> + Send + 'static,
    ) {
        {
            let mut slot = lock(&self.slot);
            if slot.closed || slot.starting || slot.spare.is_some() {
                return;
            }
            slot.starting = true;
        }
        /// Says the start ended, however it ends (a start that panicked
        /// keeps nothing, and keeps nobody waiting).
        struct Ended(Arc<Spares>);
        impl Drop for Ended {
            fn drop(&mut self) {
                let mut slot = lock(&self.0.slot);
                if slot.starting {
                    slot.starting = false;
                    drop(slot);
                    self.0.started.notify_all();
                }
            }
        }
        let ended = Ended(Arc::clone(self));
        let run = move || {
            let spares = &ended.0;
            let spare = start();
            let mut slot = lock(&spares.slot);
            slot.starting = false;
            // Dropped outside the lock (a spare child is killed and reaped
            // as it drops) if the supervisor ended meanwhile.
            let unkept = match spare {
                Some(spare) if !slot.closed => slot.spare.replace(Box::new(spare)),
                Some(spare) => Some(Box::new(spare) as Box<dyn Any + Send>),
                None => None,
            };
            drop(slot);
            spares.started.notify_all();
            drop(unkept);
        };
        // A thread that cannot be started drops `run`, and `ended` with it.
        if let Err(e) = thread::Builder::new()
            .name("sidetask-standby".to_owned())
            .spawn(run)
        {
            tracing::debug!(error = %e, "no thread to start a standby on");
        }
    }

    /// Ends the spares: waits for a start under way, then drops what is
    /// kept.
    fn close(&self) {
        lock(&self.slot).closed = true;
        let spare = self.settled().spare.take();
        drop(spare);
    }

    /// The slot once no start is under way (a start begins only while
    /// nothing is kept, so a kept spare is never waited for).
    fn settled(&self) -> MutexGuard<'_, Slot> {
        self.started
            .wait_while(lock(&self.slot), |slot| slot.starting)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A supervisor's spares, closed when it drops (as the supervisor ends),
/// so that nothing started ahead outlives the supervisor.
#[derive(Default)]
pub(crate) struct Standby(Arc<Spares>);

impl Standby {
    pub(crate) fn spares(&self) -> &Arc<Spares> {
        &self.0
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spares_are_current_only_inside_the_factory() {
        let standby = Standby::default();
        let spares = standby.spares();
        assert!(Spares::current().is_none());
        let inside = spares.around(|| Spares::current().is_some_and(|s| Arc::ptr_eq(&s, spares)));
        assert!(inside);
        assert!(Spares::current().is_none());
        let panicked = std::panic::catch_unwind(|| spares.around(|| panic!("in the factory")));
        assert!(panicked.is_err());
        assert!(Spares::current().is_none(), "restored after a panic too");
    }

    /// Counts its drops.
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_spare_started_is_taken_once_and_only_as_its_kind() {
        let standby = Standby::default();
        let spares = standby.spares();
        let (go, gate) = crossbeam_channel::bounded::<()>(0);
        spares.start_next(move || gate.recv().ok().map(|()| 7u32));
        // A second start while one is under way is not made.
        spares.start_next(|| Some(8u32));
        go.send(()).unwrap();
        // Waits for the start under way.
        assert_eq!(spares.take::<u32>(), Some(7));
        assert_eq!(spares.take::<u32>(), None);
        spares.start_next(|| Some(9u32));
        assert_eq!(spares.take::<String>(), None);
        assert_eq!(spares.take::<u32>(), None, "one of another kind is dropped");
    }

    #[test]
    fn a_start_that_panics_keeps_nobody_waiting() {
        let standby = Standby::default();
        let spares = standby.spares();
        spares.start_next::<u32>(|| panic!("the start failed"));
        assert_eq!(spares.take::<u32>(), None);
        spares.start_next(|| Some(5u32));
        assert_eq!(spares.take::<u32>(), Some(5));
    }

    #[test]
    fn closing_waits_for_the_start_under_way_and_drops_every_spare() {
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let standby = Standby::default();
        let spares = Arc::clone(standby.spares());
        let (go, gate) = crossbeam_channel::bounded::<()>(0);
        let counted = Counted(Arc::clone(&drops));
        spares.start_next(move || gate.recv().ok().map(|()| counted));
        let closer = thread::spawn(move || drop(standby));
        // The close waits for the start; once it ended, the spare is gone.
        go.send(()).unwrap();
        closer.join().unwrap();
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Nothing is started or kept after the close.
        let counted = Counted(Arc::clone(&drops));
        spares.start_next(move || Some(counted));
        assert!(spares.take::<Counted>().is_none());
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
