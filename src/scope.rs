//! Scoped tasks: thread tasks whose bodies borrow from the caller's stack.
//!
//! A scoped task is an ordinary thread task whose body's lifetime was
//! widened to `'static` (the one `unsafe` here). That is sound because the
//! scope keeps every task's shared state and does not return, even when its
//! closure panics, until each of them is `DONE`; and every path to `DONE`
//! consumes or drops the body first (the thread place runs the body to its
//! end or drops it uncalled on a cancel, then records the outcome; a
//! handle's cancel drops the job, then records `Cancelled`). A task that
//! could not be started is never registered, and its body is dropped in
//! `spawn`, before the scope ends. Nothing else of a task may borrow: its
//! value, error, messages and events are `'static`, so what the shared
//! state holds after the scope may outlive it harmlessly.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::builder::Builder;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::mailbox::{DONE, Wait};
use crate::outcome::Outcome;
use crate::sync::lock;
use crate::task::{Shared, Slot, Task};

/// Runs `f` with a [`Scope`] in which thread tasks may borrow from the
/// caller's stack, and returns once every task spawned in it has ended.
///
/// A scoped task's handle does not stop its task when dropped (unlike
/// [`Task`]'s): the scope waits for it, as [`std::thread::scope`] waits for
/// its threads. Stop a task through its handle to end it early.
///
/// # Panics
///
/// If `f` panicked (after every task ended), or if a task whose handle was
/// not joined panicked.
///
/// # Examples
///
/// ```
/// use sidetask::Ctx;
///
/// let words = vec!["a", "bb", "ccc"];
/// let mut total = 0;
/// sidetask::scope(|s| {
///     let lengths = s.spawn(|_: &Ctx| Ok::<_, ()>(words.iter().map(|w| w.len()).sum::<usize>()));
///     let longest = s.spawn(|_: &Ctx| Ok::<_, ()>(words.iter().map(|w| w.len()).max()));
///     total = lengths.join().value().unwrap();
///     assert_eq!(longest.join().value(), Some(Some(3)));
/// });
/// assert_eq!(total, 6);
/// assert_eq!(words.len(), 3); // still ours
/// ```
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let scope = Scope {
        tasks: Mutex::new(Vec::new()),
        scope: PhantomData,
        env: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(&scope)));
    let mut panicked = false;
    // A task may spawn into the scope while it runs: take them until none
    // is left; each one spawned was spawned by a task not ended yet.
    loop {
        let Some(task) = lock(&scope.tasks).pop() else {
            break;
        };
        task.wait_done();
        panicked |= task.panicked();
    }
    match result {
        Err(payload) => panic::resume_unwind(payload),
        Ok(_) if panicked => panic!("a scoped task panicked"),
        Ok(result) => result,
    }
}

/// The scope of [`scope`]: spawns thread tasks that may borrow what lives
/// longer than the scope (`'env`).
pub struct Scope<'scope, 'env: 'scope> {
    tasks: Mutex<Vec<Arc<dyn Scoped>>>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// What the scope waits for, without the task's types.
trait Scoped: Send + Sync {
    fn wait_done(&self);
    /// Whether the task panicked and nobody joined it.
    fn panicked(&self) -> bool;
}

impl<In: Send, Ev: Send, T: Send, E: Send> Scoped for Shared<In, Ev, Slot<T, E>> {
    fn wait_done(&self) {
        self.mailbox.wait_for(DONE, Wait::Forever);
    }

    fn panicked(&self) -> bool {
        matches!(*lock(&self.outcome), Some(Outcome::Panicked(_)))
    }
}

type Body<'a, T, E, In, Ev> = Box<dyn FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'a>;

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Spawns a thread task with the default options whose body may borrow
    /// from outside the scope.
    ///
    /// # Panics
    ///
    /// If no thread could be started to run the task;
    /// [`spawn_with`](Scope::spawn_with) returns the error instead.
    pub fn spawn<F, T, E, In, Ev>(&'scope self, body: F) -> ScopedTask<'scope, T, E, In, Ev>
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'scope,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.spawn_with(Builder::new(), body)
            .expect("failed to start a thread for the task")
    }

    /// Spawns a thread task made by `builder` whose body may borrow from
    /// outside the scope.
    ///
    /// # Errors
    ///
    /// If no thread could be started to run the task.
    pub fn spawn_with<F, T, E, In, Ev>(
        &'scope self,
        builder: Builder,
        body: F,
    ) -> Result<ScopedTask<'scope, T, E, In, Ev>, StartError>
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'scope,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        let body: Body<'scope, T, E, In, Ev> = Box::new(body);
        // SAFETY: the body runs on a worker thread and may outlive this
        // call, but not the scope: the task is registered below once
        // started, and `scope` does not return before its `DONE`, which is
        // set only after the body was consumed or dropped (see the module
        // docs). A task that fails to start is not registered; its body is
        // dropped here, on this thread, when `start` returns its error. The
        // two boxes differ only in the lifetime bound.
        #[allow(unsafe_code)]
        let body: Body<'static, T, E, In, Ev> = unsafe {
            std::mem::transmute::<Body<'scope, T, E, In, Ev>, Body<'static, T, E, In, Ev>>(body)
        };
        let task = builder.build(body);
        task.start()?;
        lock(&self.tasks).push(task.shared());
        Ok(ScopedTask {
            task: Some(task),
            scope: PhantomData,
        })
    }
}

impl fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("tasks", &lock(&self.tasks).len())
            .finish()
    }
}

/// A handle on a task of a [`scope`]: every verb of [`Task`] (through
/// `Deref`) but [`detach`](Task::detach), with its own joins.
///
/// **Dropping it does not stop the task**: the scope waits for the task at
/// its end.
pub struct ScopedTask<'scope, T, E, In = (), Ev = ()> {
    task: Option<Task<T, E, In, Ev>>,
    scope: PhantomData<&'scope ()>,
}

impl<T, E, In, Ev> ScopedTask<'_, T, E, In, Ev> {
    fn take(mut self) -> Task<T, E, In, Ev> {
        self.task.take().expect("a scoped task's handle holds it")
    }

    /// Waits for the task to end and returns how it ended (see
    /// [`Task::join`]).
    pub fn join(self) -> Outcome<T, E> {
        self.take().join()
    }

    /// Returns the outcome if the task has ended, or gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task is still running.
    pub fn try_join(self) -> Result<Outcome<T, E>, Self> {
        if self.is_finished() {
            Ok(self.join())
        } else {
            Err(self)
        }
    }

    /// Waits at most `timeout` for the task to end; returns the outcome, or
    /// gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task did not end in time.
    pub fn join_timeout(self, timeout: Duration) -> Result<Outcome<T, E>, Self> {
        if self.wait_timeout(timeout) {
            Ok(self.join())
        } else {
            Err(self)
        }
    }
}

impl<T, E, In, Ev> Deref for ScopedTask<'_, T, E, In, Ev> {
    type Target = Task<T, E, In, Ev>;

    fn deref(&self) -> &Task<T, E, In, Ev> {
        self.task.as_ref().expect("a scoped task's handle holds it")
    }
}

impl<T, E, In, Ev> Drop for ScopedTask<'_, T, E, In, Ev> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // The scope waits for it.
            task.release();
        }
    }
}

impl<T, E, In, Ev> fmt::Debug for ScopedTask<'_, T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTask")
            .field("id", &self.id())
            .field("status", &self.status())
            .finish()
    }
}
