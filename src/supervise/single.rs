//! One supervised task: its handle and the supervisor loop behind it.

use std::fmt;
use std::mem;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::{
    Attempt, AttemptEnd, Limits, OnRestart, Restart, SuperviseError, SupervisedStatus, Supervisor,
    Unread, not_started,
};
use crate::backend::thread as place;
use crate::ctx::Ctx;
use crate::error::{
    CtxRecvError, EmitError, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::mailbox::KILL;
use crate::outcome::{self, Outcome};
use crate::spare::Standby;
use crate::sync::lock;
use crate::task::{Events, StopHandle, Task, TaskId};

/// A handle on a task kept alive by a [`Supervisor`]: one handle across
/// every attempt.
///
/// **Dropping it stops supervision** as [`stop`](Supervised::stop) does:
/// the current attempt is asked to stop (a process or command attempt is
/// killed after its grace period, as its own handle's drop would), and no
/// attempt follows.
///
/// It has the verbs of [`Task`]: messages sent to it reach the current
/// attempt (while none runs, during a backoff, they wait in its own inbox),
/// and the events of every attempt come out of its one
/// [`recv`](Supervised::recv). Messages an attempt never read go to the next
/// attempt first, in order, or come back through
/// [`take_unread`](Supervised::take_unread) at the end ([`Unread`]).
/// [`join`](Supervised::join) gives the last attempt's outcome;
/// [`status`](Supervised::status), [`attempt`](Supervised::attempt) and
/// [`history`](Supervised::history) tell the restarts.
///
/// A message counts as read once the attempt's place knows it was: a
/// process attempt that crashes right after reading a message, before its
/// child told the parent, leaves it unread, and the next attempt gets it
/// again (at least once, never lost).
///
/// [`stop`](Supervised::stop) stops the current attempt and ends
/// supervision: its outcome is that attempt's (or, during a backoff, the
/// last attempt's). [`kill`](Supervised::kill) kills the current attempt.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::{Backoff, Ctx, Restart, Stopped, Supervisor};
///
/// // Each attempt echoes one message, then fails: the next one carries on.
/// let supervised = Supervisor::new()
///     .restart(Restart::Always)
///     .backoff(Backoff::none())
///     .intensity(100, Duration::from_secs(10))
///     .spawn(|attempt| {
///         let n = attempt.number();
///         sidetask::Builder::new().spawn(move |ctx: &Ctx<u32, String>| {
///             let m = ctx.recv().map_err(Stopped::from)?;
///             ctx.emit(format!("attempt {n} got {m}"))?;
///             Err::<(), _>(Stopped)
///         })
///     })?;
/// supervised.send(1)?;
/// supervised.send(2)?;
/// assert_eq!(supervised.recv()?, "attempt 1 got 1");
/// assert_eq!(supervised.recv()?, "attempt 2 got 2");
/// supervised.stop();
/// let outcome = supervised.join();
/// assert!(outcome.is_error() || outcome.is_cancelled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a supervised handle stops its task; keep it to keep the task alive"]
pub struct Supervised<T, E, In = (), Ev = ()> {
    task: Task<T, E, In, Ev>,
    watch: Arc<Watch<T, E, In, Ev>>,
}

/// What the handle, the loop, the pump and the stop hook share.
struct Watch<T, E, In, Ev> {
    state: Mutex<State<T, E, In, Ev>>,
    changed: Condvar,
}

struct State<T, E, In, Ev> {
    status: SupervisedStatus,
    attempt: u32,
    history: Vec<AttemptEnd>,
    /// The attempt the pump sends to, once its carried messages are in.
    current: Option<Arc<Task<T, E, In, Ev>>>,
    /// Counts the attempts published.
    generation: u64,
    /// Supervision is over: the pump keeps what it holds.
    over: bool,
    /// The supervised handle's inbox was closed: so is each attempt's.
    closed: bool,
    /// What the pump gives back: a message no attempt could take.
    held: Vec<In>,
    pump_done: bool,
}

impl<T, E, In, Ev> Watch<T, E, In, Ev> {
    fn lock(&self) -> MutexGuard<'_, State<T, E, In, Ev>> {
        lock(&self.state)
    }

    fn update(&self, f: impl FnOnce(&mut State<T, E, In, Ev>)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

impl<T, E, In, Ev> Watch<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// The stop hook: passes a stop or kill on to the current attempt.
    fn stop_current(&self, kill: bool) {
        let current = {
            let mut st = self.lock();
            if !st.status.is_ended() {
                st.status = SupervisedStatus::Stopping;
            }
            st.current.clone()
        };
        if let Some(task) = current {
            if kill { task.kill() } else { task.stop() }
        }
    }
}

/// What the loop is given.
struct Plan<F> {
    factory: F,
    restart: Restart,
    unread: Unread,
    limits: Limits,
    on_restart: Option<OnRestart>,
    /// The standby, if kept: dropped (its child killed) as the loop ends.
    standby: Option<Standby>,
}

impl Supervisor {
    /// Starts supervising the task that `factory` makes, and returns the
    /// one handle on it across restarts.
    ///
    /// `factory` is called for each attempt, on the supervisor's thread,
    /// with its [`Attempt`]; it returns the attempt's task, or an error
    /// (shown with `Display`), which counts as an attempt that crashed
    /// ([`CrashCause::Start`](crate::CrashCause::Start)) and is restarted
    /// as the policy says; a panic in it is an attempt that panicked.
    ///
    /// # Errors
    ///
    /// [`SuperviseError::is_invalid`]: a setting is out of range (a backoff
    /// floor over its ceiling, a jitter outside `0.0..=1.0`, a zero
    /// intensity window), or children or a strategy were given (they are
    /// for [`spawn_group`](Supervisor::spawn_group));
    /// [`SuperviseError::start_error`]: no thread could be started for the
    /// supervisor.
    pub fn spawn<F, T, E, In, Ev, Er>(
        self,
        factory: F,
    ) -> Result<Supervised<T, E, In, Ev>, SuperviseError>
    where
        F: FnMut(Attempt) -> Result<Task<T, E, In, Ev>, Er> + Send + 'static,
        T: Send + 'static,
        E: Send + fmt::Debug + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
        Er: fmt::Display,
    {
        self.check()?;
        if !self.children.is_empty() || self.strategy.is_some() {
            return Err(SuperviseError::invalid(
                "children and a strategy are for `spawn_group`, not `spawn`".to_owned(),
            ));
        }
        let watch = Arc::new(Watch {
            state: Mutex::new(State {
                status: SupervisedStatus::Running { attempt: 1 },
                attempt: 1,
                history: Vec::new(),
                current: None,
                generation: 0,
                over: false,
                closed: false,
                held: Vec::new(),
                pump_done: false,
            }),
            changed: Condvar::new(),
        });
        let settings = self.settings();
        let plan = Plan {
            factory,
            restart: self.restart,
            unread: self.unread,
            limits: Limits::new(&self),
            standby: self.keeps_standby().then(Standby::default),
            on_restart: self.on_restart,
        };
        let theirs = Arc::clone(&watch);
        let task = place::driver(settings, move |ctx| supervise(ctx, &theirs, plan));
        let hooked: Weak<Watch<T, E, In, Ev>> = Arc::downgrade(&watch);
        let shared = Arc::downgrade(&task.shared());
        task.shared().set_stop_hook(Box::new(move || {
            if let (Some(watch), Some(shared)) = (hooked.upgrade(), shared.upgrade()) {
                watch.stop_current(shared.mailbox.is(KILL));
            }
        }));
        task.start().map_err(SuperviseError::start)?;
        Ok(Supervised { task, watch })
    }
}

/// The supervisor loop: attempt after attempt until the policy, the
/// intensity or the handle says no more.
fn supervise<F, T, E, In, Ev, Er>(
    ctx: &Ctx<In, Ev>,
    watch: &Arc<Watch<T, E, In, Ev>>,
    mut plan: Plan<F>,
) -> Outcome<T, E>
where
    F: FnMut(Attempt) -> Result<Task<T, E, In, Ev>, Er> + Send + 'static,
    T: Send + 'static,
    E: Send + fmt::Debug + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    Er: fmt::Display,
{
    let id = ctx.id().as_u64();
    if let Err(why) = start_pump(ctx, watch) {
        watch.update(|st| st.pump_done = true);
        let outcome = not_started(format!("no thread for the supervisor's pump: {why}"));
        return end(ctx, watch, SupervisedStatus::GaveUp, outcome, Vec::new());
    }
    // Messages for the next attempt (handed on), and those to give back.
    let mut carried: Vec<In> = Vec::new();
    let mut kept: Vec<In> = Vec::new();
    let mut number = 0u32;
    loop {
        number += 1;
        let attempt = Attempt { number, child: 0 };
        let started = Instant::now();
        watch.update(|st| {
            st.attempt = number;
            if !st.status.is_ended() && st.status != SupervisedStatus::Stopping {
                st.status = SupervisedStatus::Running { attempt: number };
            }
        });
        let factory = &mut plan.factory;
        let made = match &plan.standby {
            Some(standby) => standby
                .spares()
                .around(|| outcome::catch(|| factory(attempt))),
            None => outcome::catch(|| factory(attempt)),
        };
        let outcome = match made {
            Ok(Ok(task)) => {
                let (outcome, unread) = run_attempt(ctx, watch, task, mem::take(&mut carried));
                match plan.unread {
                    Unread::HandOn => carried = unread,
                    Unread::GiveBack => kept.extend(unread),
                }
                outcome
            }
            Ok(Err(e)) => not_started(e.to_string()),
            Err(panic) => Outcome::Panicked(panic),
        };
        let stopped = ctx.stopped();
        let ended = AttemptEnd::new(attempt, started, &outcome, stopped);
        tracing::info!(
            supervisor = id,
            attempt = number,
            outcome = ended.kind(),
            stopped,
            "supervised attempt ended: {}",
            ended.description()
        );
        let ran = ended.ran();
        watch.update(|st| st.history.push(ended.clone()));
        let status = if stopped {
            SupervisedStatus::Stopped
        } else if !plan.restart.wants(&outcome) {
            SupervisedStatus::Finished
        } else if let Some(delay) = plan.limits.restart(ran) {
            if let Some(f) = plan.on_restart.as_mut() {
                f(&ended, delay);
            }
            tracing::info!(
                supervisor = id,
                attempt = number + 1,
                after = ended.kind(),
                delay_ms = delay.as_millis() as u64,
                "restarting supervised task"
            );
            let until = Instant::now() + delay;
            watch.update(|st| {
                if st.status != SupervisedStatus::Stopping {
                    st.status = SupervisedStatus::BackingOff {
                        attempt: number + 1,
                        until,
                    };
                }
            });
            let slept = delay.is_zero() || ctx.sleep(delay).is_ok();
            if slept && !ctx.stopped() {
                drop(outcome);
                continue;
            }
            SupervisedStatus::Stopped
        } else {
            tracing::warn!(
                supervisor = id,
                attempt = number,
                outcome = ended.kind(),
                "supervisor gave up: restart intensity reached"
            );
            SupervisedStatus::GaveUp
        };
        kept.append(&mut carried);
        return end(ctx, watch, status, outcome, kept);
    }
}

/// Runs one attempt to its end: hands it the carried messages, publishes
/// it to the pump, forwards its events; returns its outcome and the
/// messages it never read.
fn run_attempt<T, E, In, Ev>(
    ctx: &Ctx<In, Ev>,
    watch: &Arc<Watch<T, E, In, Ev>>,
    task: Task<T, E, In, Ev>,
    carried: Vec<In>,
) -> (Outcome<T, E>, Vec<In>)
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    // A task built but not started is started here.
    if let Err(e) = task.start()
        && !e.is_already_started()
    {
        tracing::warn!(
            task.id = task.id().as_u64(),
            "could not start an attempt: {e}"
        );
        task.stop();
    }
    let task = Arc::new(task);
    let shared = task.shared();
    if !carried.is_empty() {
        shared.mailbox.give_back(carried);
        shared.sent();
    }
    watch.update(|st| {
        if st.closed {
            task.close_inbox();
        }
        st.current = Some(Arc::clone(&task));
        st.generation += 1;
    });
    // A stop that came before the attempt was published reaches it here
    // (the stop hook found none).
    if ctx.stopped() {
        if ctx.mailbox().is(KILL) {
            task.kill();
        } else {
            task.stop();
        }
    }
    // Reading the events until none can come is waiting for the end.
    while let Ok(event) = task.recv() {
        match ctx.emit(event) {
            Ok(()) => {}
            // Stopped while the outbox was full: kept all the same.
            Err(EmitError::Stopped(event)) => {
                let _ = ctx.mailbox().push_out_over(event);
            }
            // Nobody can read it any more.
            Err(EmitError::Disconnected(_)) => {}
        }
    }
    // Not taken before its end (a task never started is cancelled).
    task.wait();
    watch.update(|st| st.current = None);
    let outcome = task.take_outcome();
    let unread = task.take_unread().unwrap_or_default();
    (outcome, unread)
}

/// Ends supervision: stops the pump, gives back every message not read
/// (in the order sent), and returns the outcome to record.
fn end<T, E, In, Ev>(
    ctx: &Ctx<In, Ev>,
    watch: &Arc<Watch<T, E, In, Ev>>,
    status: SupervisedStatus,
    outcome: Outcome<T, E>,
    mut back: Vec<In>,
) -> Outcome<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    watch.update(|st| {
        st.over = true;
        st.status = status;
    });
    // Wakes the pump out of its wait on the inbox.
    ctx.shared().request_stop("supervision ended");
    let mut st = watch.lock();
    while !st.pump_done {
        st = watch
            .changed
            .wait(st)
            .unwrap_or_else(|poison| poison.into_inner());
    }
    back.append(&mut st.held);
    drop(st);
    ctx.mailbox().give_back(back);
    outcome
}

/// Starts the pump that moves messages from the supervised handle's inbox
/// to the current attempt.
fn start_pump<T, E, In, Ev>(
    ctx: &Ctx<In, Ev>,
    watch: &Arc<Watch<T, E, In, Ev>>,
) -> Result<(), std::io::Error>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    let ctx = ctx.share();
    let watch = Arc::clone(watch);
    let job: place::Job = Box::new(move || {
        let _ = outcome::catch(move || pump(&ctx, &watch));
    });
    place::execute(job).map_err(|(_, e)| e)
}

/// Says the pump is done however it ends.
struct PumpDone<'a, T, E, In, Ev>(&'a Watch<T, E, In, Ev>);

impl<T, E, In, Ev> Drop for PumpDone<'_, T, E, In, Ev> {
    fn drop(&mut self) {
        self.0.update(|st| st.pump_done = true);
    }
}

fn pump<T, E, In, Ev>(ctx: &Ctx<In, Ev>, watch: &Watch<T, E, In, Ev>)
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    let _done = PumpDone(watch);
    'next: loop {
        let mut message = match ctx.recv() {
            Ok(m) => m,
            Err(CtxRecvError::Disconnected) => {
                // The inbox was closed and is empty: so is each attempt's.
                let current = {
                    let mut st = watch.lock();
                    st.closed = true;
                    st.current.clone()
                };
                if let Some(task) = current {
                    task.close_inbox();
                }
                return;
            }
            Err(_) => return,
        };
        let mut refused_by = None;
        loop {
            let (task, generation) = {
                let mut st = watch.lock();
                loop {
                    if st.over {
                        st.held.push(message);
                        return;
                    }
                    match &st.current {
                        Some(task) if refused_by != Some(st.generation) => {
                            break (Arc::clone(task), st.generation);
                        }
                        _ => {}
                    }
                    st = watch
                        .changed
                        .wait(st)
                        .unwrap_or_else(|poison| poison.into_inner());
                }
            };
            match task.send(message) {
                Ok(()) => continue 'next,
                // The attempt is ending: the next one takes it.
                Err(SendError::Disconnected(m)) => {
                    message = m;
                    refused_by = Some(generation);
                }
                Err(SendError::TooLarge(m)) => {
                    tracing::warn!(
                        task.id = task.id().as_u64(),
                        "a message over the attempt's largest is kept to be given back"
                    );
                    watch.lock().held.push(m);
                    continue 'next;
                }
            }
        }
    }
}

impl<T, E, In, Ev> Supervised<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// The supervisor's id (not an attempt's: each attempt has its own).
    pub fn id(&self) -> TaskId {
        self.task.id()
    }

    /// The supervisor's name, if given.
    pub fn name(&self) -> Option<&str> {
        self.task.name()
    }

    /// The current attempt's number (the last one's once ended), from 1.
    pub fn attempt(&self) -> u32 {
        self.watch.lock().attempt
    }

    /// Where supervision is. Never blocks.
    pub fn status(&self) -> SupervisedStatus {
        self.watch.lock().status
    }

    /// Each attempt that ended so far, in order.
    pub fn history(&self) -> Vec<AttemptEnd> {
        self.watch.lock().history.clone()
    }

    /// Stops the current attempt and ends supervision; returns at once.
    /// During a backoff, no attempt follows.
    pub fn stop(&self) {
        self.task.stop();
    }

    /// Kills the current attempt (see [`Task::kill`]) and ends supervision;
    /// returns at once.
    pub fn kill(&self) {
        self.task.kill();
    }

    /// A handle that stops or kills supervision from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.task.stop_handle()
    }

    /// Whether supervision has ended (its outcome is ready). Never blocks.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Blocks until supervision has ended.
    pub fn wait(&self) {
        self.task.wait();
    }

    /// Blocks until supervision has ended or `timeout` passed; returns
    /// whether it ended.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.task.wait_timeout(timeout)
    }

    /// Waits for supervision to end and returns the last attempt's outcome
    /// (for an attempt whose factory failed, a
    /// [`CrashCause::Start`](crate::CrashCause::Start) crash).
    pub fn join(self) -> Outcome<T, E> {
        self.task.join()
    }

    /// The last attempt's outcome if supervision has ended, or the handle
    /// back.
    ///
    /// # Errors
    ///
    /// The handle itself, if supervision goes on.
    pub fn try_join(self) -> Result<Outcome<T, E>, Self> {
        let watch = self.watch;
        self.task
            .try_join()
            .map_err(|task| Supervised { task, watch })
    }

    /// Waits at most `timeout` for supervision to end.
    ///
    /// # Errors
    ///
    /// The handle itself, if supervision did not end in time.
    pub fn join_timeout(self, timeout: Duration) -> Result<Outcome<T, E>, Self> {
        let watch = self.watch;
        self.task
            .join_timeout(timeout)
            .map_err(|task| Supervised { task, watch })
    }

    /// Sends a message to the current attempt (or the next, during a
    /// backoff), waiting while the supervised handle's inbox is full.
    ///
    /// # Errors
    ///
    /// [`SendError::Disconnected`] once supervision is stopping or has
    /// ended; the message is given back.
    pub fn send(&self, message: In) -> Result<(), SendError<In>> {
        self.task.send(message)
    }

    /// Sends a message if the supervised handle's inbox has room now.
    ///
    /// # Errors
    ///
    /// As [`Task::try_send`]; the message is given back.
    pub fn try_send(&self, message: In) -> Result<(), TrySendError<In>> {
        self.task.try_send(message)
    }

    /// Sends a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`Task::send_timeout`]; the message is given back.
    pub fn send_timeout(&self, message: In, timeout: Duration) -> Result<(), SendTimeoutError<In>> {
        self.task.send_timeout(message, timeout)
    }

    /// Waits for the next event of any attempt.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once supervision has ended and every event was
    /// received.
    pub fn recv(&self) -> Result<Ev, RecvError> {
        self.task.recv()
    }

    /// Takes the next event if one waits.
    ///
    /// # Errors
    ///
    /// As [`Task::try_recv`].
    pub fn try_recv(&self) -> Result<Ev, TryRecvError> {
        self.task.try_recv()
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    ///
    /// As [`Task::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Ev, RecvTimeoutError> {
        self.task.recv_timeout(timeout)
    }

    /// A blocking iterator over the events of every attempt; it ends when
    /// supervision has ended and every event was received.
    pub fn iter(&self) -> Events<'_, T, E, In, Ev> {
        self.task.iter()
    }

    /// A non-blocking iterator over the events waiting now.
    pub fn try_iter(&self) -> impl Iterator<Item = Ev> + '_ {
        self.task.try_iter()
    }

    /// Says no more messages will come: the current attempt's inbox, and
    /// each next one's, is closed once what was sent has reached it.
    pub fn close_inbox(&self) {
        self.task.close_inbox();
    }

    /// Takes back the messages no attempt read, once supervision has
    /// ended, in the order they were sent: the last attempt's unread ones
    /// (and, with [`Unread::GiveBack`], every attempt's), then those no
    /// attempt was given. `None` while supervision goes on.
    ///
    /// A message refused by an attempt's place as too large
    /// ([`SendError::TooLarge`]) is given back here too.
    pub fn take_unread(&self) -> Option<Vec<In>> {
        self.task.take_unread()
    }

    /// Awaits the end of supervision and the last attempt's outcome
    /// (see [`Task::join_async`]).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn join_async(self) -> crate::task::Join<T, E, In, Ev> {
        self.task.join_async()
    }

    /// Awaits the end of supervision, without taking the outcome.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn wait_async(&self) {
        self.task.wait_async().await;
    }

    /// Sends a message, awaiting room (see [`Task::send_async`]).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn send_async(&self, message: In) -> crate::task::SendFuture<'_, T, E, In, Ev> {
        self.task.send_async(message)
    }

    /// Awaits the next event of any attempt (see [`Task::recv_async`]).
    ///
    /// # Errors
    ///
    /// [`RecvError`] once supervision has ended and every event was
    /// received.
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_async(&self) -> Result<Ev, RecvError> {
        self.task.recv_async().await
    }

    /// The supervisor's own task: every other verb of [`Task`] (with the
    /// `tokio` feature, the awaitable ones) on the same supervision.
    pub fn as_task(&self) -> &Task<T, E, In, Ev> {
        &self.task
    }

    /// The supervisor's own task, to use as any task (await it, put it in
    /// a pool's or a group's hands); supervision goes on.
    pub fn into_task(self) -> Task<T, E, In, Ev> {
        self.task
    }
}

impl<T, E, In, Ev> fmt::Debug for Supervised<T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.watch.lock();
        f.debug_struct("Supervised")
            .field("id", &self.task.id())
            .field("status", &st.status)
            .field("attempt", &st.attempt)
            .finish_non_exhaustive()
    }
}
