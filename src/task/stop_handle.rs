//! A handle that only stops.

use std::fmt;
use std::sync::Arc;

use super::{Shared, TaskId};
use crate::mailbox::KILL;

/// What a stop handle reaches, without the task's message types.
trait Stoppable: Send + Sync {
    fn id(&self) -> TaskId;
    fn stop(&self);
    fn kill(&self);
    fn is_finished(&self) -> bool;
}

impl<In: Send, Ev: Send, O: ?Sized + Send + Sync> Stoppable for Shared<In, Ev, O> {
    fn id(&self) -> TaskId {
        self.id
    }

    fn stop(&self) {
        self.request_stop("stop");
    }

    fn kill(&self) {
        self.mailbox.set(KILL);
        self.request_stop("kill");
    }

    fn is_finished(&self) -> bool {
        Shared::is_finished(self)
    }
}

/// Stops or kills a task from anywhere, made by
/// [`Task::stop_handle`](crate::Task::stop_handle).
///
/// It is cheap to clone, has no type parameters (so handles of tasks of
/// different types fit in one collection), and neither keeps the task
/// running nor keeps its [`Task`](crate::Task) handle from being dropped.
/// Once the task has ended its calls do nothing.
///
/// A task built but not started yet sees the stop when it starts (its
/// outcome is then [`Outcome::Cancelled`](crate::Outcome::Cancelled)), or
/// when its handle joins it.
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<dyn Stoppable>,
}

impl StopHandle {
    pub(crate) fn new<In, Ev, O>(shared: Arc<Shared<In, Ev, O>>) -> Self
    where
        In: Send + 'static,
        Ev: Send + 'static,
        O: Send + Sync + 'static,
    {
        StopHandle { shared }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.shared.id()
    }

    /// Asks the task to stop, as [`Task::stop`](crate::Task::stop) does, and
    /// returns at once.
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// Asks the task to end at once, as [`Task::kill`](crate::Task::kill)
    /// does, and returns at once.
    pub fn kill(&self) {
        self.shared.kill();
    }

    /// Returns `true` if the task has ended. Never blocks.
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}
