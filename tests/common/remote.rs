//! What the remote tests share: a worker of the test's process stopped
//! when dropped, and a join with a deadline.

use std::time::Duration;

use sidetask::remote::{RemoteError, Worker};
use sidetask::{Outcome, Task};

use super::LIMIT;

/// A worker of this process, run as a task; stopped, and waited for, when
/// dropped.
pub struct LocalWorker(Option<Task<(), RemoteError>>);

impl LocalWorker {
    /// Runs `worker`, blocking at most 100 ms at a time so that it stops
    /// promptly.
    pub fn start(worker: Worker) -> LocalWorker {
        LocalWorker(Some(worker.block(Duration::from_millis(100)).spawn()))
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            worker.stop();
            let _ = worker.join_timeout(LIMIT);
        }
    }
}

/// Joins `task`, failing the test if it does not end within [`LIMIT`].
pub fn join<T, E, In, Ev>(task: Task<T, E, In, Ev>) -> Outcome<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    match task.join_timeout(LIMIT) {
        Ok(outcome) => outcome,
        Err(_) => panic!("a remote task did not end within {LIMIT:?}"),
    }
}
