//! The handle, and what it shares with its task.
//!
//! # Glossary
//!
//! - *place*: where a task's body runs (a worker thread, a tokio runtime, a
//!   child process, an external program); each is a module of `backend`,
//!   and the core imports none of them.
//! - *shared state* (`Shared`): the one allocation a task's handle, its
//!   context and its place share: id, name, mailbox, the place's hooks, and
//!   the typed outcome slot as its last field, erased for everyone but the
//!   handle.
//! - *job*: a task's body wrapped to record its outcome, not started yet;
//!   the place's *launch* function starts it.
//! - *stop hook*: what a place runs on the requesting thread when a stop or
//!   kill is asked for (a child's escalation).
//! - *wire* (`wire` module): a place's connection to where the body runs,
//!   serving the handle's or the body's waits on the waiting thread.
//!
//! # Invariants
//!
//! 1. The outcome is stored before the mailbox's `DONE` flag is set, and
//!    taken only after it was seen set: a join never finds the slot empty.
//!    A task run by the thread that holds its handle (`running_here`, a
//!    pool's runner) is the exception: that thread keeps the outcome, and
//!    nobody else can join the task.
//! 2. A job runs at most once: it leaves `pending` under its lock, either to
//!    run or to be cancelled.
//! 3. The core knows no place: a place plugs in through a launch function, a
//!    stop hook and a wire.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

#[cfg(doc)]
use crate::ctx::Ctx;
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, StartError, TryRecvError,
    TrySendError,
};
use crate::mailbox::{DONE, HANDLE_GONE, KILL, PopError, PushError, STOP, Wait};
use crate::outcome::{self, Outcome};
use crate::sync::lock;
use crate::timer::{self, Alarm};

#[cfg(feature = "tokio")]
mod awaitable;
mod id;
mod shared;
mod stop_handle;
pub(crate) mod wire;

use wire::Side;

#[cfg(feature = "tokio")]
pub use awaitable::{Join, SendFuture};
pub use id::TaskId;
pub(crate) use shared::{Shared, Slot};
pub use stop_handle::StopHandle;

/// Where a task is in its life, as seen by [`Task::status`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Built but not started.
    NotStarted,
    /// Started (perhaps still waiting for a thread to pick it up).
    Running,
    /// Asked to stop, still running.
    Stopping,
    /// Ended: its outcome is ready.
    Done,
}

/// A task's body, wrapped to record its outcome, ready to run.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// How a place starts a job; on failure the job comes back.
pub(crate) type Launch = fn(Job) -> Result<(), (Job, io::Error)>;

/// The settings a builder hands over.
pub(crate) struct Settings {
    pub(crate) name: Option<String>,
    pub(crate) inbox: usize,
    pub(crate) outbox: usize,
    pub(crate) timeout: Option<Duration>,
}

impl Settings {
    /// Makes `shared`, an ended task's state that nobody else holds, as
    /// [`shared`](Settings::shared) makes one.
    pub(crate) fn renew<In, Ev, T, E>(&self, shared: &mut Shared<In, Ev, Slot<T, E>>) {
        shared.renew(self.name.as_deref().map(Arc::from), self.inbox, self.outbox);
    }

    /// A task's shared state made with these settings, not started.
    #[inline(always)]
    pub(crate) fn shared<In, Ev, T, E>(&self) -> Shared<In, Ev, Slot<T, E>> {
        Shared::new(
            self.name.as_deref().map(Arc::from),
            self.inbox,
            self.outbox,
            Mutex::new(None),
        )
    }
}

/// A handle on a task: stop it, talk to it, hear from it, collect how it
/// ended.
///
/// **Dropping the handle asks the task to stop** (cooperatively: the task
/// sees [`Ctx::stopped`] and is woken out of `recv`, `recv_timeout`, `sleep`
/// and a blocked `emit`), unless the handle was [`detach`](Task::detach)ed.
/// Drop does not wait for the task to end; [`join`](Task::join) does.
///
/// `T` and `E` are the task's value and error types, `In` the messages it
/// receives and `Ev` the events it emits. The handle is `Send` and `Sync`
/// when they are `Send`, so any number of threads may send to and receive
/// from one task through a shared reference.
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Stopped};
///
/// let task = sidetask::spawn(|ctx: &Ctx<u64, String>| {
///     while let Ok(n) = ctx.recv() {
///         ctx.emit(format!("got {n}")).ok();
///     }
///     Ok::<_, Stopped>("done.")
/// });
/// task.send(7)?;
/// assert_eq!(task.recv()?, "got 7");
/// task.stop();
/// assert_eq!(task.join().value(), Some("done."));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a task's handle asks the task to stop; call `detach` to let it run on"]
pub struct Task<T, E, In = (), Ev = ()> {
    shared: Arc<Shared<In, Ev, Slot<T, E>>>,
    pending: Mutex<Option<Job>>,
    launch: Launch,
    timeout: Option<Duration>,
    detached: bool,
}

impl<T, E, In, Ev> Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// A task not started yet: `launch` starts `job`, which records the
    /// outcome in `shared`.
    pub(crate) fn unstarted(
        shared: Arc<Shared<In, Ev, Slot<T, E>>>,
        job: Job,
        launch: Launch,
        timeout: Option<Duration>,
    ) -> Self {
        outcome::install_hook();
        Task {
            shared,
            pending: Mutex::new(Some(job)),
            launch,
            timeout,
            detached: false,
        }
    }

    /// A task whose body the creating thread runs itself, at once (a pool's
    /// runner, `backend::thread::here`): started, with no job to launch,
    /// its timeout running from now.
    ///
    /// `reuse`: the handle of an ended task; its shared state is made new
    /// in place if nobody else holds it any more (no context, stop handle
    /// or timer), so that tasks run one after another cost no allocation.
    pub(crate) fn running_here(settings: &Settings, reuse: Option<Self>) -> Self {
        outcome::install_hook();
        let task = match reuse {
            Some(mut task) if task.shared.is_finished() => {
                match Arc::get_mut(&mut task.shared) {
                    Some(state) => settings.renew(state),
                    None => task.shared = Arc::new(settings.shared()),
                }
                task.timeout = settings.timeout;
                task
            }
            _ => Task {
                shared: Arc::new(settings.shared()),
                pending: Mutex::new(None),
                launch: |job| Err((job, io::Error::other("started already"))),
                timeout: settings.timeout,
                detached: false,
            },
        };
        task.shared.set_started(true);
        task.schedule_timeout();
        task
    }

    /// A task whose place started it already (an async body); `detached`:
    /// whether dropping the handle leaves the task running (a remote task,
    /// which lives in its store).
    #[cfg(any(feature = "tokio", feature = "redis"))]
    pub(crate) fn started(
        shared: Arc<Shared<In, Ev, Slot<T, E>>>,
        timeout: Option<Duration>,
        detached: bool,
    ) -> Self {
        outcome::install_hook();
        shared.set_started(true);
        let task = Task {
            shared,
            pending: Mutex::new(None),
            launch: |job| Err((job, io::Error::other("started already"))),
            timeout,
            detached,
        };
        task.schedule_timeout();
        task
    }

    /// Starts a task made by [`Builder::build`](crate::Builder::build).
    ///
    /// Messages sent before the start wait in the inbox, in order.
    ///
    /// # Errors
    ///
    /// If the task was started or stopped already
    /// ([`StartError::is_already_started`]), or no thread could be started
    /// for it ([`StartError::io_error`]); the task can be started again
    /// after the latter.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Builder, Ctx, Stopped};
    ///
    /// let task = Builder::new().build(|ctx: &Ctx<u8>| ctx.recv().map_err(Stopped::from));
    /// task.send(42)?; // kept until the task starts
    /// task.start()?;
    /// assert!(task.start().unwrap_err().is_already_started());
    /// assert_eq!(task.join().value(), Some(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self) -> Result<(), StartError> {
        let mut pending = lock(&self.pending);
        let job = pending.take().ok_or_else(StartError::already_started)?;
        self.shared.set_started(true);
        match (self.launch)(job) {
            Ok(()) => {
                drop(pending);
                self.schedule_timeout();
                Ok(())
            }
            Err((job, err)) => {
                self.shared.set_started(false);
                *pending = Some(job);
                Err(StartError::spawn(err))
            }
        }
    }

    fn schedule_timeout(&self) {
        // A timeout too far off to be represented never fires.
        if let Some(at) = self.timeout.and_then(|t| Instant::now().checked_add(t)) {
            let weak: Weak<dyn Alarm> = Arc::downgrade(&self.shared) as Weak<dyn Alarm>;
            timer::schedule(at, weak);
        }
    }

    /// Lets the task run on without a handle: dropping it no longer stops
    /// the task.
    ///
    /// The task can no longer receive messages (its `recv` reports
    /// [`CtxRecvError::Disconnected`](crate::CtxRecvError::Disconnected) once
    /// its inbox is empty) and its events are dropped ([`Ctx::emit`] fails).
    /// A task built but not started yet is started.
    ///
    /// # Errors
    ///
    /// If a task built but not started could not be started; it is then
    /// cancelled.
    pub fn detach(mut self) -> Result<(), StartError> {
        if self.status() == Status::NotStarted {
            match self.start() {
                Ok(()) => {}
                Err(e) if e.is_already_started() => {}
                Err(e) => return Err(e),
            }
        }
        self.detached = true;
        Ok(())
    }
}

impl<T, E, In, Ev> Task<T, E, In, Ev> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.shared.id
    }

    /// The task's name, if the builder gave one.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// Asks the task to stop, and returns at once.
    ///
    /// The task sees it through [`Ctx::stopped`], and its blocking context
    /// calls wake at once. From now on [`send`](Task::send) fails, giving the
    /// message back. A task not started yet never runs: its outcome is
    /// [`Outcome::Cancelled`]. Stopping twice is harmless.
    pub fn stop(&self) {
        self.shared.request_stop("stop");
        self.cancel_if_pending();
    }

    /// If the task was never started, ends it as cancelled.
    fn cancel_if_pending(&self) {
        let job = lock(&self.pending).take();
        if let Some(job) = job {
            self.shared.mailbox.set(STOP);
            // The body never runs; dropping it may run user drops.
            let _ = outcome::catch(move || drop(job));
            self.shared.finish(Outcome::Cancelled);
        }
    }

    /// Asks the task to end at once, where its place allows it: a
    /// [`Process`](crate::Process) task's child or a
    /// [`Command`](crate::Command) task's program, and everything in its
    /// process group, get `SIGKILL` without waiting for the grace period (a
    /// process task's outcome is then [`Outcome::Killed`], unless its
    /// outcome had arrived already); an
    /// async task's body is dropped at its next await and its outcome is
    /// [`Outcome::Killed`] (a body that returns before it reaches one keeps
    /// its own outcome). A thread cannot be killed: on a thread task this
    /// is [`stop`](Task::stop). Returns at once.
    pub fn kill(&self) {
        self.shared.mailbox.set(KILL);
        self.stop();
    }

    /// A handle that can stop or kill this task, and tell whether it has
    /// ended, from anywhere: it is `Clone`, has no type parameters, and does
    /// not keep the task from ending or its handle from being dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::Ctx;
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx| ctx.sleep(Duration::from_secs(60)));
    /// let stopper = task.stop_handle();
    /// std::thread::spawn(move || stopper.stop());
    /// let outcome = task.join(); // woken out of its sleep, or never begun
    /// assert!(outcome.is_error() || outcome.is_cancelled());
    /// ```
    pub fn stop_handle(&self) -> StopHandle
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        StopHandle::new(self.shared.clone())
    }

    /// Returns `true` if the task has ended. Never blocks.
    ///
    /// The answer can be stale by the time it is read: a `false` may have
    /// turned `true` meanwhile (never the other way).
    pub fn is_finished(&self) -> bool {
        self.shared.is_finished()
    }

    /// Where the task is in its life. Never blocks.
    pub fn status(&self) -> Status {
        let mailbox = &self.shared.mailbox;
        if mailbox.is(DONE) {
            Status::Done
        } else if mailbox.is(STOP) {
            Status::Stopping
        } else if self.shared.is_started() {
            Status::Running
        } else {
            Status::NotStarted
        }
    }

    /// Blocks until the task has ended, without taking its outcome.
    ///
    /// A task that was never started is cancelled (its outcome is
    /// [`Outcome::Cancelled`]), so that this call cannot wait forever on a
    /// task nobody will start. A running task that never ends makes it wait
    /// forever; [`wait_timeout`](Task::wait_timeout) does not.
    ///
    /// # Panics
    ///
    /// If the task is an async one not ended yet and this thread runs its
    /// current-thread tokio runtime (or any current-thread runtime: the call
    /// `block_on` or one of its tasks): the task could never run, so the
    /// wait would never end. Await `wait_async` there instead.
    #[track_caller]
    pub fn wait(&self) {
        self.cancel_if_pending();
        if !self.shared.mailbox.is(DONE) {
            self.refuse_to_hang("wait", "`wait_async().await`");
        }
        self.shared.wait_done(Wait::Forever);
    }

    /// Panics if a wait with no timeout on this thread would never end
    /// (see [`Shared::would_hang`]); `call` and `instead` name the blocking
    /// method and its awaitable twin.
    #[track_caller]
    fn refuse_to_hang(&self, call: &str, instead: &str) {
        if self.shared.would_hang() {
            panic!(
                "`Task::{call}` would block a thread that drives a current-thread tokio \
                 runtime, where this async task may be waiting to run, so the call could \
                 never return: use {instead} inside the runtime, or call `{call}` from \
                 another thread"
            );
        }
    }

    /// Blocks until the task has ended or `timeout` passed; returns `true` if
    /// it ended. A task never started is not cancelled by this call.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.wait_done(Wait::after(timeout))
    }

    /// Waits for the task to end and returns how it ended.
    ///
    /// A task that was never started is cancelled: its body never runs and
    /// its outcome is [`Outcome::Cancelled`]. A task that never ends makes
    /// this wait forever; [`join_timeout`](Task::join_timeout) does not.
    ///
    /// A panic in the task never reaches the caller through `join`: it is
    /// [`Outcome::Panicked`]. [`Outcome::unwrap`] resumes it, if that is what
    /// the caller wants.
    ///
    /// # Panics
    ///
    /// If the task is an async one not ended yet and this thread runs its
    /// current-thread tokio runtime (or any current-thread runtime: the call
    /// `block_on` or one of its tasks): the task could never run, so the
    /// join would never return. Use `task.await` or `join_async` there
    /// instead, as tokio's `block_on` refuses to run inside a runtime.
    #[track_caller]
    pub fn join(self) -> Outcome<T, E> {
        self.cancel_if_pending();
        if !self.shared.mailbox.is(DONE) {
            self.refuse_to_hang("join", "`task.await` or `join_async().await`");
        }
        self.wait();
        self.take_outcome()
    }

    /// Returns the outcome if the task has ended, or gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task is still running.
    pub fn try_join(self) -> Result<Outcome<T, E>, Self> {
        if self.is_finished() {
            Ok(self.take_outcome())
        } else {
            Err(self)
        }
    }

    /// Waits at most `timeout` for the task to end; returns the outcome, or
    /// gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task did not end in time: the caller can
    /// then stop it, wait again, or drop it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{Ctx, Stopped};
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx| ctx.sleep(Duration::from_secs(60)));
    /// let task = task.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// task.stop();
    /// // Woken out of its sleep, or cancelled if it had not begun yet.
    /// let outcome = task.join();
    /// assert!(outcome.is_cancelled() || outcome.error() == Some(Stopped));
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<Outcome<T, E>, Self> {
        if self.wait_timeout(timeout) {
            Ok(self.take_outcome())
        } else {
            Err(self)
        }
    }

    /// The task's shared state (a place sets its hooks there; a chain's
    /// stages feed and read each other through it, as trait objects).
    pub(crate) fn shared(&self) -> Arc<Shared<In, Ev, Slot<T, E>>> {
        self.shared.clone()
    }

    pub(crate) fn take_outcome(&self) -> Outcome<T, E> {
        self.shared.take_outcome()
    }

    /// Drops the handle of a started task without stopping the task (as
    /// `detach` does, for callers without its bounds).
    pub(crate) fn release(mut self) {
        self.detached = true;
    }

    /// The events left in the outbox of an ended task, taken without
    /// waiting (a pool's result).
    pub(crate) fn take_left_events(&self) -> Vec<Ev> {
        if self.shared.mailbox.outbox_is_empty() {
            // Every emit came before the end, which this thread saw.
            return Vec::new();
        }
        self.try_iter().collect()
    }

    /// Sends a message into the task's inbox, waiting while it is full.
    ///
    /// On a task built but not started, a full inbox waits until another
    /// thread starts or stops the task; [`try_send`](Task::try_send) and
    /// [`send_timeout`](Task::send_timeout) never wait forever.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] if the task is stopping or has ended
    /// (also while waiting); [`SendError::TooLarge`] if the message is over
    /// the largest its place carries (a process task's
    /// [`max_frame`](crate::Process::max_frame)). The message is given back.
    ///
    /// # Panics
    ///
    /// If the inbox is full, the task is an async one and this thread
    /// drives a current-thread tokio runtime: if the task runs there it
    /// could never make room, so the send would never return. Await
    /// `send_async` there instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Stopped};
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx<i32>| ctx.recv().map_err(Stopped::from));
    /// task.send(1)?;
    /// task.wait();
    /// assert_eq!(task.send(2).unwrap_err().into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn send(&self, mut message: In) -> Result<(), SendError<In>> {
        message = self.shared.admit(message).map_err(SendError::TooLarge)?;
        if self.shared.would_hang() {
            // Only a send that finds the inbox full would wait.
            match self.shared.mailbox.push_in(message, Wait::No) {
                Err(PushError::Full(m)) => {
                    self.refuse_to_hang("send", "`send_async(message).await`");
                    message = m;
                }
                done => return self.sent(done),
            }
        }
        self.sent(self.shared.mailbox.push_in(message, Wait::Forever))
    }

    /// What a send's push tells its caller.
    fn sent(&self, pushed: Result<(), PushError<In>>) -> Result<(), SendError<In>> {
        pushed.map(|()| self.shared.sent()).map_err(|e| match e {
            PushError::Full(m) | PushError::Closed(m) | PushError::Stopped(m) => {
                SendError::Disconnected(m)
            }
        })
    }

    /// Sends a message if the inbox has room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the inbox is full,
    /// [`TrySendError::Disconnected`] if the task is stopping or has ended,
    /// [`TrySendError::TooLarge`] as for [`send`](Task::send); the message
    /// is given back.
    pub fn try_send(&self, message: In) -> Result<(), TrySendError<In>> {
        let message = self.shared.admit(message).map_err(TrySendError::TooLarge)?;
        self.shared
            .mailbox
            .push_in(message, Wait::No)
            .map(|()| self.shared.sent())
            .map_err(|e| match e {
                PushError::Full(m) => TrySendError::Full(m),
                PushError::Closed(m) | PushError::Stopped(m) => TrySendError::Disconnected(m),
            })
    }

    /// Sends a message, waiting at most `timeout` while the inbox is full.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] if the inbox stayed full,
    /// [`SendTimeoutError::Disconnected`] if the task is stopping or has
    /// ended, [`SendTimeoutError::TooLarge`] as for [`send`](Task::send);
    /// the message is given back.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{Builder, Ctx, Stopped};
    ///
    /// let task = Builder::new()
    ///     .inbox_capacity(1)
    ///     .spawn(|ctx: &Ctx<u8>| ctx.sleep(Duration::from_secs(60)))?;
    /// task.send(1)?;
    /// let err = task.send_timeout(2, Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert_eq!(err.into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_timeout(&self, message: In, timeout: Duration) -> Result<(), SendTimeoutError<In>> {
        let message = self
            .shared
            .admit(message)
            .map_err(SendTimeoutError::TooLarge)?;
        let until = Wait::after(timeout);
        self.shared
            .mailbox
            .push_in(message, until)
            .map(|()| self.shared.sent())
            .map_err(|e| match e {
                PushError::Full(m) => SendTimeoutError::Timeout(m),
                PushError::Closed(m) | PushError::Stopped(m) => SendTimeoutError::Disconnected(m),
            })
    }

    /// Waits for the next event from the task.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the task has ended and every event it emitted has
    /// been received.
    ///
    /// # Panics
    ///
    /// If no event waits, the task is an async one not ended yet and this
    /// thread drives a current-thread tokio runtime: if the task runs there
    /// it could never emit, so the receive would never return. Await
    /// `recv_async` there instead.
    #[track_caller]
    pub fn recv(&self) -> Result<Ev, RecvError> {
        if !self.shared.mailbox.has_event() {
            self.refuse_to_hang("recv", "`recv_async().await`");
        }
        self.shared.take_event(Wait::Forever).map_err(|_| RecvError)
    }

    /// Takes the next event if one is waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if none is waiting,
    /// [`TryRecvError::Disconnected`] once the task has ended and every event
    /// has been received.
    pub fn try_recv(&self) -> Result<Ev, TryRecvError> {
        self.shared.take_event(Wait::No).map_err(|e| match e {
            PopError::Disconnected => TryRecvError::Disconnected,
            _ => TryRecvError::Empty,
        })
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none came in time,
    /// [`RecvTimeoutError::Disconnected`] once the task has ended and every
    /// event has been received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Ev, RecvTimeoutError> {
        let until = Wait::after(timeout);
        self.shared.take_event(until).map_err(|e| match e {
            PopError::Disconnected => RecvTimeoutError::Disconnected,
            _ => RecvTimeoutError::Timeout,
        })
    }

    /// A blocking iterator over the task's events; it ends when the task has
    /// ended and every event has been received.
    pub fn iter(&self) -> Events<'_, T, E, In, Ev> {
        Events { task: self }
    }

    /// A non-blocking iterator over the events waiting now.
    pub fn try_iter(&self) -> impl Iterator<Item = Ev> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }

    /// Says no more messages will come: once the task has read what is in
    /// its inbox, its [`Ctx::recv`] reports
    /// [`CtxRecvError::Disconnected`](crate::CtxRecvError::Disconnected),
    /// so a task that reads until its input ends can finish. Later sends
    /// fail, giving the message back. The task is not asked to stop.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Stopped};
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx<u32>| Ok::<_, Stopped>(ctx.iter().sum::<u32>()));
    /// for n in 1..=4 {
    ///     task.send(n)?;
    /// }
    /// task.close_inbox();
    /// assert_eq!(task.join().value(), Some(10));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_inbox(&self) {
        self.shared.close_inbox();
    }

    /// How many of the task's events this handle will never see, because
    /// its place dropped them before the handle read them: a remote task's
    /// events trimmed from Redis (past its `events_kept`) while no handle
    /// read them. Always 0 on the other places, which lose no event.
    pub fn missed_events(&self) -> u64 {
        self.shared
            .wire(Side::Handle)
            .map_or(0, |wire| wire.missed())
    }

    /// Takes back the messages the task never read, once it has ended.
    ///
    /// Returns `None` while the task may still read them. Messages come back
    /// in the order they were sent. Once the task has ended no send succeeds,
    /// so one call takes every message back.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Builder, Ctx, Stopped};
    ///
    /// let task = Builder::new().build(|ctx: &Ctx<&str>| ctx.recv().map_err(Stopped::from));
    /// task.send("first")?;
    /// task.send("second")?;
    /// assert_eq!(task.take_unread(), None); // not ended yet
    /// task.start()?;
    /// task.wait();
    /// assert_eq!(task.take_unread(), Some(vec!["second"]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_unread(&self) -> Option<Vec<In>> {
        if self.is_finished() {
            Some(self.shared.mailbox.drain_in())
        } else {
            None
        }
    }
}

/// A blocking iterator over a task's events, made by [`Task::iter`].
#[derive(Debug)]
pub struct Events<'a, T, E, In, Ev> {
    task: &'a Task<T, E, In, Ev>,
}

impl<T, E, In, Ev> Iterator for Events<'_, T, E, In, Ev> {
    type Item = Ev;

    fn next(&mut self) -> Option<Ev> {
        self.task.recv().ok()
    }
}

impl<'a, T, E, In, Ev> IntoIterator for &'a Task<T, E, In, Ev> {
    type Item = Ev;
    type IntoIter = Events<'a, T, E, In, Ev>;

    fn into_iter(self) -> Events<'a, T, E, In, Ev> {
        self.iter()
    }
}

impl<T, E, In, Ev> Drop for Task<T, E, In, Ev> {
    fn drop(&mut self) {
        if self.shared.mailbox.is(DONE) {
            // Nothing left to stop, and nobody left to emit to this handle.
            return;
        }
        if !self.detached {
            self.shared.request_stop("handle dropped");
            self.cancel_if_pending();
        }
        self.shared.mailbox.set(HANDLE_GONE);
    }
}

impl<T, E, In, Ev> fmt::Debug for Task<T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}
