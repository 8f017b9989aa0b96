//! Results in input order: a reorder buffer over the completion order,
//! with a window that keeps runners from going too far ahead.

use std::collections::BTreeMap;

use super::{Finished, PoolRun};

/// A pool's results in input order, made by [`PoolRun::in_order`].
#[derive(Debug)]
pub struct InOrder<T, E, In, Ev> {
    pub(super) run: PoolRun<T, E, In, Ev>,
    /// Results that came before an earlier input's.
    pub(super) waiting: BTreeMap<usize, Finished<T, E, Ev>>,
    /// The index to deliver next.
    pub(super) next: usize,
}

impl<T, E, In, Ev> InOrder<T, E, In, Ev> {
    /// The pool behind this iterator, to stop it or see its progress.
    pub fn pool(&self) -> &PoolRun<T, E, In, Ev> {
        &self.run
    }
}

impl<T, E, In, Ev> Iterator for InOrder<T, E, In, Ev> {
    type Item = Finished<T, E, Ev>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(done) = self.waiting.remove(&self.next) {
                self.next += 1;
                self.run.shared.delivered(self.next);
                return Some(done);
            }
            match self.run.recv() {
                Ok(done) => {
                    self.waiting.insert(done.index, done);
                }
                Err(_) => {
                    // All finished: only gaps left by a stop remain.
                    let (&index, _) = self.waiting.iter().next()?;
                    self.next = index;
                }
            }
        }
    }
}
