//! The handle.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::backend::process::relay::{Served, take_reading};
use crate::backend::thread::{self as place, Job};
use crate::ctx::Ctx;
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, StartError, TryRecvError,
    TrySendError,
};
use crate::mailbox::{
    DONE, HANDLE_GONE, INBOX_CLOSED, KILL, Mailbox, PopError, PushError, STOP, Wait,
};
use crate::outcome::{self, Outcome};
use crate::sync::lock;
use crate::timer::{self, Deadline};

#[cfg(feature = "tokio")]
mod awaitable;
#[cfg(feature = "tokio")]
pub use awaitable::{Join, SendFuture};

/// A task's id, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl TaskId {
    fn next() -> TaskId {
        // Each thread takes ids in blocks, so that threads spawning many
        // tasks do not contend on one counter.
        const BLOCK: u64 = 1024;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static RANGE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
        }
        RANGE.with(|range| {
            let (mut next, mut end) = range.get();
            if next == end {
                next = NEXT.fetch_add(BLOCK, Ordering::Relaxed);
                end = next + BLOCK;
            }
            range.set((next + 1, end));
            TaskId(next)
        })
    }

    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

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

/// The part of a task that does not depend on its types.
pub(crate) struct Core {
    pub(crate) id: TaskId,
    pub(crate) name: Option<Arc<str>>,
    started: AtomicBool,
}

impl Core {
    /// The core of a task that is running already (a process task's body in
    /// its child).
    pub(crate) fn running(name: Option<Arc<str>>) -> Core {
        Core {
            id: TaskId::next(),
            name,
            started: AtomicBool::new(true),
        }
    }
}

/// What a task's context reaches through, without the value types.
pub(crate) trait Control<In, Ev>: Send + Sync {
    fn core(&self) -> &Core;
    fn mailbox(&self) -> &Mailbox<In, Ev>;

    /// Sets what runs on each stop or kill request, on the requesting
    /// thread, after the flags are set (a process task escalates); it must
    /// return at once. Only the first hook set is kept.
    fn set_stop_hook(&self, hook: StopHook) {
        let _ = hook;
    }

    /// Sets the handle's way to the task's connection (a process task's;
    /// gone when the task ends); only the first one set is kept.
    fn set_port(&self, port: Weak<dyn Port>) {
        let _ = port;
    }
}

/// A handle's way to a process task's connection: the caller's thread
/// writes the messages it sends and reads the events it waits for itself,
/// instead of waking a helper thread for each.
pub(crate) trait Port: Send + Sync {
    /// A message went into the inbox, or the inbox was closed.
    fn pushed(&self);
    /// A caller waits for an event until `until`: reads for it if it can.
    fn pull(&self, until: Option<Instant>) -> Served;
    /// Someone waits without reading (for the end, or asynchronously).
    fn hurry(&self);
}

/// What runs on a stop or kill request.
pub(crate) type StopHook = Box<dyn Fn() + Send + Sync>;

/// A context's direct line to a reader elsewhere (a process child's
/// parent): told of each message the body takes, and given its events
/// instead of the outbox.
pub(crate) trait Direct<Ev>: Send + Sync {
    /// The body has taken a message.
    fn took(&self);
    /// Sends the event on, or gives it back if nobody can ever read it.
    fn emit(&self, event: Ev) -> Result<(), Ev>;
    /// The body waits for a message until `until`: reads for it if it can.
    fn pull(&self, until: Option<Instant>) -> Served;
    /// The body waits without reading (a sleep).
    fn hurry(&self);
}

struct Shared<T, E, In, Ev> {
    core: Core,
    mailbox: Mailbox<In, Ev>,
    outcome: Mutex<Option<Outcome<T, E>>>,
    stop_hook: OnceLock<StopHook>,
    port: OnceLock<Weak<dyn Port>>,
}

impl<T: Send, E: Send, In: Send, Ev: Send> Control<In, Ev> for Shared<T, E, In, Ev> {
    fn core(&self) -> &Core {
        &self.core
    }

    fn mailbox(&self) -> &Mailbox<In, Ev> {
        &self.mailbox
    }

    fn set_stop_hook(&self, hook: StopHook) {
        let _ = self.stop_hook.set(hook);
    }

    fn set_port(&self, port: Weak<dyn Port>) {
        let _ = self.port.set(port);
    }
}

impl<T: Send, E: Send, In: Send, Ev: Send> Deadline for Shared<T, E, In, Ev> {
    fn expire(&self) {
        self.request_stop("timeout");
    }
}

/// Another task's way into this task's inbox (a chain's upstream stage).
pub(crate) trait Feed<In>: Send + Sync {
    /// Puts a message in, waiting for room; gives it back if the task is
    /// stopping, ended or closed.
    fn feed(&self, message: In) -> Result<(), In>;
    /// Says no message will come any more.
    fn close(&self);
    /// Takes back every message left unread.
    fn drain(&self) -> Vec<In>;
}

impl<T: Send, E: Send, In: Send, Ev: Send> Feed<In> for Shared<T, E, In, Ev> {
    fn feed(&self, message: In) -> Result<(), In> {
        self.mailbox
            .push_in(message, Wait::Forever)
            .map_err(|e| match e {
                PushError::Full(m) | PushError::Closed(m) | PushError::Stopped(m) => m,
            })
    }

    fn close(&self) {
        self.mailbox.set(INBOX_CLOSED);
    }

    fn drain(&self) -> Vec<In> {
        self.mailbox.drain_in()
    }
}

/// A way to ask a task to stop, without its types (a chain's failing stage
/// stops the others).
pub(crate) trait Stop: Send + Sync {
    fn stop(&self);
}

impl<T: Send, E: Send, In: Send, Ev: Send> Stop for Shared<T, E, In, Ev> {
    fn stop(&self) {
        self.request_stop("stop");
    }
}

/// A way to read another task's events (a chain's output).
pub(crate) trait Outlet<Ev>: Send + Sync {
    fn take(&self, wait: Wait) -> Result<Ev, PopError>;
}

impl<T: Send, E: Send, In: Send, Ev: Send> Outlet<Ev> for Shared<T, E, In, Ev> {
    fn take(&self, wait: Wait) -> Result<Ev, PopError> {
        self.mailbox.pop_out(wait)
    }
}

impl<T, E, In, Ev> Shared<T, E, In, Ev> {
    /// Tells the port, if any, that a message went in or the inbox closed.
    pub(crate) fn pushed(&self) {
        if let Some(port) = self.port() {
            port.pushed();
        }
    }

    /// The task's connection, while it runs.
    fn port(&self) -> Option<Arc<dyn Port>> {
        self.port.get().and_then(Weak::upgrade)
    }

    /// Tells the port, if any, that someone waits without reading.
    pub(crate) fn hurry(&self) {
        if let Some(port) = self.port() {
            port.hurry();
        }
    }

    /// Takes the next event, reading the connection for it where there is
    /// one and nobody else reads it.
    fn take_event(&self, wait: Wait) -> Result<Ev, PopError> {
        match self.port() {
            Some(port) => take_reading(wait, |w| self.mailbox.pop_out(w), |until| port.pull(until)),
            None => self.mailbox.pop_out(wait),
        }
    }

    fn request_stop(&self, why: &'static str) {
        if self.mailbox.set(STOP) {
            tracing::debug!(
                task.id = self.core.id.0,
                task.name = self.core.name.as_deref(),
                why,
                "stop requested"
            );
        }
        if let Some(hook) = self.stop_hook.get() {
            hook();
        }
    }

    fn finish(&self, outcome: Outcome<T, E>) {
        tracing::debug!(
            task.id = self.core.id.0,
            task.name = self.core.name.as_deref(),
            outcome = outcome_name(&outcome),
            "task ended"
        );
        *lock(&self.outcome) = Some(outcome);
        self.mailbox.set(DONE);
    }
}

fn outcome_name<T, E>(outcome: &Outcome<T, E>) -> &'static str {
    match outcome {
        Outcome::Value(_) => "value",
        Outcome::Error(_) => "error",
        Outcome::Panicked(_) => "panic",
        Outcome::Cancelled => "cancelled",
        Outcome::Killed(_) => "killed",
        Outcome::Crashed(_) => "crashed",
    }
}

/// The settings a builder hands over.
pub(crate) struct Settings {
    pub(crate) name: Option<String>,
    pub(crate) inbox: usize,
    pub(crate) outbox: usize,
    pub(crate) timeout: Option<Duration>,
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
pub struct Task<T, E, In = (), Ev = ()> {
    shared: Arc<Shared<T, E, In, Ev>>,
    pending: Mutex<Option<Job>>,
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
    pub(crate) fn new<F>(settings: Settings, body: F) -> Self
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
    {
        Self::with_outcome(settings, move |ctx: &Ctx<In, Ev>| match body(ctx) {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Error(error),
        })
    }

    /// A task whose body gives its whole outcome (a place that can tell a
    /// kill or a crash from a value).
    pub(crate) fn with_outcome<F>(settings: Settings, body: F) -> Self
    where
        F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E> + Send + 'static,
    {
        outcome::install_hook();
        let shared = Arc::new(Shared {
            core: Core {
                id: TaskId::next(),
                name: settings.name.map(Arc::from),
                started: AtomicBool::new(false),
            },
            mailbox: Mailbox::new(settings.inbox, settings.outbox),
            outcome: Mutex::new(None),
            stop_hook: OnceLock::new(),
            port: OnceLock::new(),
        });
        let control: Arc<dyn Control<In, Ev>> = shared.clone();
        let ctx = Ctx::new(control);
        let theirs = Arc::clone(&shared);
        let job: Job = Box::new(move || run(theirs, ctx, body));
        Task {
            shared,
            pending: Mutex::new(Some(job)),
            timeout: settings.timeout,
            detached: false,
        }
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
        self.shared.core.started.store(true, Ordering::Release);
        match place::execute(job) {
            Ok(()) => {
                drop(pending);
                self.schedule_timeout();
                Ok(())
            }
            Err((job, err)) => {
                self.shared.core.started.store(false, Ordering::Release);
                *pending = Some(job);
                Err(StartError::spawn(err))
            }
        }
    }

    /// Takes the body's job, unstarted, to run it on the calling thread
    /// (a pool's runner); `None` if it was started or cancelled. The task
    /// counts as started, and its timeout runs from now.
    pub(crate) fn take_job(&self) -> Option<Job> {
        let job = lock(&self.pending).take();
        if job.is_some() {
            self.shared.core.started.store(true, Ordering::Release);
            self.schedule_timeout();
        }
        job
    }

    fn schedule_timeout(&self) {
        // A timeout too far off to be represented never fires.
        if let Some(at) = self.timeout.and_then(|t| Instant::now().checked_add(t)) {
            let weak: Weak<dyn Deadline> = Arc::downgrade(&self.shared) as Weak<dyn Deadline>;
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
        self.shared.core.id
    }

    /// The task's name, if the builder gave one.
    pub fn name(&self) -> Option<&str> {
        self.shared.core.name.as_deref()
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

    /// Returns `true` if the task has ended. Never blocks.
    ///
    /// The answer can be stale by the time it is read: a `false` may have
    /// turned `true` meanwhile (never the other way).
    pub fn is_done(&self) -> bool {
        self.shared.mailbox.is(DONE)
    }

    /// Where the task is in its life. Never blocks.
    pub fn status(&self) -> Status {
        let mailbox = &self.shared.mailbox;
        if mailbox.is(DONE) {
            Status::Done
        } else if mailbox.is(STOP) {
            Status::Stopping
        } else if self.shared.core.started.load(Ordering::Acquire) {
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
    pub fn wait(&self) {
        self.cancel_if_pending();
        self.shared.hurry();
        self.shared.mailbox.wait_for(DONE, Wait::Forever);
    }

    /// Blocks until the task has ended or `timeout` passed; returns `true` if
    /// it ended. A task never started is not cancelled by this call.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let until = Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until);
        self.shared.hurry();
        self.shared.mailbox.wait_for(DONE, until)
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
    pub fn join(self) -> Outcome<T, E> {
        self.wait();
        self.take_outcome()
    }

    /// Returns the outcome if the task has ended, or gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task is still running.
    pub fn try_join(self) -> Result<Outcome<T, E>, Self> {
        if self.is_done() {
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

    /// This task's inbox, for another task to feed.
    pub(crate) fn feed(&self) -> Arc<dyn Feed<In>>
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.shared.clone()
    }

    /// A way to stop this task, for another owner.
    pub(crate) fn stopper(&self) -> Arc<dyn Stop>
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.shared.clone()
    }

    /// This task's outbox, for another owner to read.
    pub(crate) fn outlet(&self) -> Arc<dyn Outlet<Ev>>
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.shared.clone()
    }

    pub(crate) fn take_outcome(&self) -> Outcome<T, E> {
        lock(&self.shared.outcome)
            .take()
            .expect("a finished task holds its outcome until joined once")
    }

    /// Sends a message into the task's inbox, waiting while it is full.
    ///
    /// On a task built but not started, a full inbox waits until another
    /// thread starts or stops the task; [`try_send`](Task::try_send) and
    /// [`send_timeout`](Task::send_timeout) never wait forever.
    ///
    /// # Errors
    ///
    /// If the task is stopping or has ended (also while waiting), the message
    /// is given back in the [`SendError`].
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
    pub fn send(&self, message: In) -> Result<(), SendError<In>> {
        self.shared
            .mailbox
            .push_in(message, Wait::Forever)
            .map(|()| self.shared.pushed())
            .map_err(|e| match e {
                PushError::Full(m) | PushError::Closed(m) | PushError::Stopped(m) => SendError(m),
            })
    }

    /// Sends a message if the inbox has room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if the inbox is full,
    /// [`TrySendError::Disconnected`] if the task is stopping or has ended;
    /// the message is given back.
    pub fn try_send(&self, message: In) -> Result<(), TrySendError<In>> {
        self.shared
            .mailbox
            .push_in(message, Wait::No)
            .map(|()| self.shared.pushed())
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
    /// ended; the message is given back.
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
        let until = Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until);
        self.shared
            .mailbox
            .push_in(message, until)
            .map(|()| self.shared.pushed())
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
    pub fn recv(&self) -> Result<Ev, RecvError> {
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
        let until = Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until);
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
        self.shared.mailbox.set(INBOX_CLOSED);
        self.shared.pushed();
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
        if self.is_done() {
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

/// Sets the worker thread's kernel name to the task's while it runs.
struct ThreadName;

impl ThreadName {
    fn set(name: &str) -> ThreadName {
        set_thread_name(name);
        ThreadName
    }
}

impl Drop for ThreadName {
    fn drop(&mut self) {
        set_thread_name("sidetask-worker");
    }
}

fn set_thread_name(name: &str) {
    // The kernel keeps 15 bytes; cut at a character boundary and at a NUL.
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &name[..end];
    let cut = cut.split('\0').next().unwrap_or_default();
    if let Ok(c) = std::ffi::CString::new(cut) {
        let _ = rustix::thread::set_name(&c);
    }
}

/// Runs a task body on the current (worker) thread and records its outcome.
fn run<T, E, In, Ev, F>(shared: Arc<Shared<T, E, In, Ev>>, ctx: Ctx<In, Ev>, body: F)
where
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E>,
{
    let core = &shared.core;
    let span = tracing::debug_span!("task", id = core.id.0, name = core.name.as_deref());
    let _entered = span.enter();
    let outcome = if shared.mailbox.is(STOP) {
        let _ = outcome::catch(move || drop((ctx, body)));
        Outcome::Cancelled
    } else {
        tracing::debug!("task started");
        let _name = core.name.as_deref().map(ThreadName::set);
        match outcome::catch(move || {
            let result = body(&ctx);
            drop(ctx);
            result
        }) {
            Ok(outcome) => outcome,
            Err(panic) => Outcome::Panicked(panic),
        }
    };
    shared.finish(outcome);
    // With the handle gone this is the last reference: dropping it runs the
    // drops of the value, the error and unread messages, which may panic.
    let _ = outcome::catch(move || drop(shared));
}
