//! Things that drive a running task from outside until it is done.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::builder::spawn;
use crate::ctx::Ctx;
use crate::outcome::{Outcome, TaskError};
use crate::task::Task;

/// Drives a running task from outside until it is done.
///
/// A controller gets the task's handle and may send it messages, read its
/// events, stop it, and wait. It returns once the task is done, or gives up
/// with [`GiveUp`]; [`run`] then stops the task. The built-ins are
/// [`WaitUntilDone`], [`FeedFrom`] and [`Deadline`]; anything else that
/// drives a task (a queue, a socket, a timer) implements this trait.
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Controller, GiveUp, Stopped, Task};
///
/// /// Sends numbers until the task has seen enough.
/// struct Count(u32);
///
/// impl Controller<u32, Stopped, u32, ()> for Count {
///     fn control(&mut self, task: &Task<u32, Stopped, u32, ()>) -> Result<(), GiveUp> {
///         for n in 0..self.0 {
///             task.send(n).map_err(|_| GiveUp::new("the task ended early"))?;
///         }
///         task.close_inbox();
///         task.wait();
///         Ok(())
///     }
/// }
///
/// let task = sidetask::spawn(|ctx: &Ctx<u32>| Ok::<_, Stopped>(ctx.iter().sum::<u32>()));
/// assert_eq!(sidetask::run(&mut Count(5), task).unwrap(), 10);
/// ```
pub trait Controller<T, E, In, Ev> {
    /// Drives `task` until it is done.
    ///
    /// # Errors
    ///
    /// [`GiveUp`] when the controller cannot go on; the task is then
    /// stopped by [`run`].
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp>;
}

/// A controller's reason for giving up.
#[derive(Debug)]
pub struct GiveUp {
    reason: Box<dyn Error + Send + Sync>,
}

impl GiveUp {
    /// Gives up for `reason` (a message or an error).
    pub fn new(reason: impl Into<Box<dyn Error + Send + Sync>>) -> GiveUp {
        GiveUp {
            reason: reason.into(),
        }
    }

    /// Why the controller gave up.
    pub fn reason(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.reason
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the controller gave up: {}", self.reason)
    }
}

impl Error for GiveUp {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.reason)
    }
}

/// Waits until the task is done: the plainest controller.
#[derive(Debug, Default, Clone, Copy)]
pub struct WaitUntilDone;

impl<T, E, In, Ev> Controller<T, E, In, Ev> for WaitUntilDone {
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        task.wait();
        Ok(())
    }
}

/// Feeds every item of an iterator to the task's inbox (waiting while it is
/// full), then closes the inbox and waits until the task is done.
///
/// If the task ends before taking every item, feeding stops; the items not
/// sent stay in the iterator.
#[derive(Debug, Clone)]
pub struct FeedFrom<I>(pub I);

impl<T, E, In, Ev, I> Controller<T, E, In, Ev> for FeedFrom<I>
where
    I: Iterator<Item = In>,
{
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        for item in self.0.by_ref() {
            if task.send(item).is_err() {
                break;
            }
        }
        task.close_inbox();
        task.wait();
        Ok(())
    }
}

/// Waits until the task is done or the deadline passes; at the deadline it
/// stops the task and waits for it to end, so its outcome says how it took
/// the stop.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl<T, E, In, Ev> Controller<T, E, In, Ev> for Deadline {
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        let left = self.0.saturating_duration_since(Instant::now());
        if !task.wait_timeout(left) {
            task.stop();
            task.wait();
        }
        Ok(())
    }
}

/// Drives `task` with `controller` until it is done, then returns its value,
/// or its error, panic or cancellation, or the controller's giving up, as a
/// [`RunError`].
///
/// If the controller gives up, the task is stopped and waited for.
///
/// # Errors
///
/// A [`RunError`] for every outcome but a value.
pub fn run<T, E, In, Ev, C>(controller: &mut C, task: Task<T, E, In, Ev>) -> Result<T, RunError<E>>
where
    C: Controller<T, E, In, Ev> + ?Sized,
{
    match controller.control(&task) {
        Ok(()) => task.join().into_result().map_err(RunError::task),
        Err(give_up) => {
            task.stop();
            let outcome = task.join();
            Err(RunError {
                kind: RunErrorKind::GaveUp(give_up, outcome_kind(&outcome)),
            })
        }
    }
}

fn outcome_kind<T, E>(outcome: &Outcome<T, E>) -> &'static str {
    match outcome {
        Outcome::Value(_) => "returned a value",
        Outcome::Error(_) => "returned an error",
        Outcome::Panicked(_) => "panicked",
        Outcome::Cancelled => "never began",
        Outcome::Killed(_) => "was killed",
        Outcome::Crashed(_) => "crashed",
        Outcome::Lost(_) => "was lost with its worker",
    }
}

/// Turns a task body into a plain function: each call spawns the task with
/// the call's argument, drives it with a fresh controller from
/// `make_controller`, and returns its value or a [`RunError`] — task.py's
/// `@controller(ctrl)` decorator.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use sidetask::{Ctx, Deadline, Stopped, WaitUntilDone};
///
/// let double = sidetask::controlled(|| WaitUntilDone, |_: &Ctx, n: u32| Ok::<_, Stopped>(n * 2));
/// assert_eq!(double(21).unwrap(), 42);
///
/// // A deadline stops a task that runs too long; its error comes back.
/// let slow = sidetask::controlled(
///     || Deadline(Instant::now() + Duration::from_millis(20)),
///     |ctx: &Ctx, secs: u64| ctx.sleep(Duration::from_secs(secs)),
/// );
/// let err = slow(60).unwrap_err();
/// assert!(err.is_error() || err.is_cancelled());
/// ```
pub fn controlled<A, T, E, In, Ev, F, C, M>(
    make_controller: M,
    body: F,
) -> impl Fn(A) -> Result<T, RunError<E>>
where
    F: Fn(&Ctx<In, Ev>, A) -> Result<T, E> + Send + Sync + 'static,
    M: Fn() -> C,
    C: Controller<T, E, In, Ev>,
    A: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    let body = Arc::new(body);
    move |arg: A| {
        let body = Arc::clone(&body);
        let task = spawn(move |ctx: &Ctx<In, Ev>| body(ctx, arg));
        run(&mut make_controller(), task)
    }
}

/// Why a controlled task gave no value: the task's own error, its panic,
/// its cancellation, its kill, or the controller giving up.
pub struct RunError<E> {
    kind: RunErrorKind<E>,
}

enum RunErrorKind<E> {
    Task(TaskError<E>),
    GaveUp(GiveUp, &'static str),
}

impl<E> RunError<E> {
    fn task(err: TaskError<E>) -> RunError<E> {
        RunError {
            kind: RunErrorKind::Task(err),
        }
    }

    /// Returns `true` if the task returned its own error.
    pub fn is_error(&self) -> bool {
        matches!(&self.kind, RunErrorKind::Task(e) if e.is_error())
    }

    /// Returns `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(&self.kind, RunErrorKind::Task(e) if e.is_panic())
    }

    /// Returns `true` if the task's body never ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(&self.kind, RunErrorKind::Task(e) if e.is_cancelled())
    }

    /// Returns `true` if the task was killed (an async or process task, by
    /// [`Task::kill`] or a stop that escalated).
    pub fn is_killed(&self) -> bool {
        matches!(&self.kind, RunErrorKind::Task(e) if e.is_killed())
    }

    /// Returns `true` if the controller gave up.
    pub fn is_gave_up(&self) -> bool {
        matches!(self.kind, RunErrorKind::GaveUp(..))
    }

    /// The task's failure, unless the controller gave up.
    pub fn task_error(&self) -> Option<&TaskError<E>> {
        match &self.kind {
            RunErrorKind::Task(e) => Some(e),
            RunErrorKind::GaveUp(..) => None,
        }
    }

    /// Takes the task's failure, unless the controller gave up.
    pub fn into_task_error(self) -> Option<TaskError<E>> {
        match self.kind {
            RunErrorKind::Task(e) => Some(e),
            RunErrorKind::GaveUp(..) => None,
        }
    }

    /// The controller's reason, if it gave up.
    pub fn give_up(&self) -> Option<&GiveUp> {
        match &self.kind {
            RunErrorKind::GaveUp(g, _) => Some(g),
            RunErrorKind::Task(_) => None,
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for RunError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RunErrorKind::Task(e) => f.debug_tuple("RunError::Task").field(e).finish(),
            RunErrorKind::GaveUp(g, how) => f
                .debug_struct("RunError::GaveUp")
                .field("reason", g)
                .field("then the task", how)
                .finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RunError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RunErrorKind::Task(e) => e.fmt(f),
            RunErrorKind::GaveUp(g, how) => write!(f, "{g}; the stopped task {how}"),
        }
    }
}

impl<E: Error + 'static> Error for RunError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            RunErrorKind::Task(e) => Some(e),
            RunErrorKind::GaveUp(g, _) => Some(g),
        }
    }
}
