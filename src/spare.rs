//! Spares: what a place starts ahead for a supervised task's next attempt
//! (a process task's child, started and waiting for its task), kept by the
//! supervisor and found by the place through the thread that runs the
//! supervisor's factory.
//!
//! The supervisor owns its [`Spares`] and runs each call of its factory
//! [`around`](Spares::around) them; a place that starts something slow for
//! a task spawned inside takes the spare it kept before (if it fits) and
//! keeps a new one for the attempt after. What a spare holds ends with it:
//! dropping the supervisor's spares kills and reaps a spare child.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// One spare at most, of whichever place kept it.
#[derive(Default)]
pub(crate) struct Spares {
    slot: Mutex<Option<Box<dyn Any + Send>>>,
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

    /// Takes the spare, if one of kind `T` is kept (one of another kind is
    /// dropped).
    pub(crate) fn take<T: 'static>(&self) -> Option<T> {
        let spare = lock(&self.slot).take()?;
        spare.downcast::<T>().ok().map(|spare| *spare)
    }

    /// Keeps `spare` for the next attempt, in place of one kept before.
    pub(crate) fn keep<T: Send + 'static>(&self, spare: T) {
        let before = lock(&self.slot).replace(Box::new(spare));
        // Outside the lock: a spare child is killed and reaped as it drops.
        drop(before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spares_are_current_only_inside_the_factory() {
        let spares = Arc::new(Spares::default());
        assert!(Spares::current().is_none());
        let inside = spares.around(|| Spares::current().is_some_and(|s| Arc::ptr_eq(&s, &spares)));
        assert!(inside);
        assert!(Spares::current().is_none());
        let panicked = std::panic::catch_unwind(|| spares.around(|| panic!("in the factory")));
        assert!(panicked.is_err());
        assert!(Spares::current().is_none(), "restored after a panic too");
    }

    #[test]
    fn a_spare_is_taken_once_and_only_as_its_kind() {
        let spares = Spares::default();
        spares.keep(7u32);
        assert_eq!(spares.take::<u32>(), Some(7));
        assert_eq!(spares.take::<u32>(), None);
        spares.keep(7u32);
        assert_eq!(spares.take::<String>(), None);
        assert_eq!(spares.take::<u32>(), None, "one of another kind is dropped");
    }
}
