//! Many tasks as one: a group joins them as they end and stops them
//! together.
//!
//! Each task put into a group gets an end hook (see the task's shared
//! state) that, on the thread that records its outcome, queues its id in
//! the group's ready queue and wakes whoever waits there. `join_next` takes
//! the next id from that queue and the outcome from the task's handle,
//! which the group holds. A fail-fast group also keeps each task's stop
//! handle, so that the hook of the first task to fail stops the others
//! at once, whether or not anyone is joining.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::ctx::Ctx;
use crate::error::StartError;
use crate::mailbox::Wait;
use crate::outcome::Outcome;
use crate::sync::lock;
use crate::task::{Status, StopHandle, Task, TaskId};

/// A set of tasks handled as one: joined in the order they end, stopped or
/// killed together, and **stopped when the group is dropped**.
///
/// A group owns the handles of its tasks, which may run anywhere (thread,
/// async, process, command, remote) and have any message and event types;
/// their outcomes have the group's types `T` and `E`, directly
/// ([`insert`](Group::insert)) or through a function the caller gives
/// ([`insert_with`](Group::insert_with)). Dropping the group drops every
/// handle still in it, which stops each task as dropping its handle would
/// (a process or command task still running after its grace period is
/// killed); a task taken out with [`detach`](Group::detach) runs on.
///
/// A [`fail_fast`](Group::fail_fast) group stops every other task the
/// moment one fails (an error, a panic, a kill, a crash, a lost remote
/// task), and [`join_all`](Group::join_all) reports that first failure with
/// what became of each of the others.
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Group};
///
/// let mut group = Group::new();
/// for n in 1..=3u64 {
///     group.spawn(move |_: &Ctx| Ok::<_, String>(n * 10));
/// }
/// let mut sum = 0;
/// while let Some((_id, outcome)) = group.join_next() {
///     sum += outcome.value().unwrap();
/// }
/// assert_eq!(sum, 60);
/// ```
#[must_use = "dropping a group stops every task in it"]
pub struct Group<T, E> {
    ready: Arc<Ready>,
    members: HashMap<TaskId, Box<dyn Member<T, E>>>,
}

/// The part of a group its tasks' end hooks reach.
struct Ready {
    state: Mutex<ReadyState>,
    wake: Condvar,
    fail_fast: bool,
}

#[derive(Default)]
struct ReadyState {
    /// Tasks that ended and were not joined yet, in the order they ended.
    ended: VecDeque<TaskId>,
    /// The first task that failed, in the order their outcomes were
    /// recorded.
    first_failure: Option<TaskId>,
    /// A fail-fast group's running tasks' stop handles.
    stoppers: HashMap<TaskId, StopHandle>,
    /// A thread waits on `wake`.
    waiting: bool,
    #[cfg(feature = "tokio")]
    waker: Option<std::task::Waker>,
}

impl Ready {
    /// A task of the group ended (its end hook).
    fn ended(&self, id: TaskId, failed: bool) {
        let mut state = lock(&self.state);
        state.ended.push_back(id);
        let _ = state.stoppers.remove(&id);
        let mut stop = Vec::new();
        if failed && state.first_failure.is_none() {
            state.first_failure = Some(id);
            if self.fail_fast {
                tracing::debug!(
                    task.id = id.as_u64(),
                    "a task of a fail-fast group failed; stopping the others"
                );
                stop = state.stoppers.values().cloned().collect();
            }
        }
        let waiting = std::mem::take(&mut state.waiting);
        #[cfg(feature = "tokio")]
        let waker = state.waker.take();
        drop(state);
        if waiting {
            self.wake.notify_all();
        }
        #[cfg(feature = "tokio")]
        if let Some(waker) = waker {
            waker.wake();
        }
        for stopper in stop {
            stopper.stop();
        }
    }
}

/// A task the group holds, its outcome turned into the group's types.
trait Member<T, E>: Send {
    fn stop(&self);
    fn kill(&self);
    /// Whether a wait with no timeout on this thread would never end (an
    /// async task on the current-thread runtime this thread drives).
    fn would_hang(&self) -> bool;
    /// The outcome of a task that has ended.
    fn take(self: Box<Self>) -> Outcome<T, E>;
    fn detach(self: Box<Self>);
}

struct Mapped<T2, E2, In, Ev, F> {
    task: Task<T2, E2, In, Ev>,
    map: F,
}

impl<T, E, T2, E2, In, Ev, F> Member<T, E> for Mapped<T2, E2, In, Ev, F>
where
    T2: Send + 'static,
    E2: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    F: FnOnce(Outcome<T2, E2>) -> Outcome<T, E> + Send,
{
    fn stop(&self) {
        self.task.stop();
    }

    fn kill(&self) {
        self.task.kill();
    }

    fn would_hang(&self) -> bool {
        !self.task.is_finished() && self.task.shared().would_hang()
    }

    fn take(self: Box<Self>) -> Outcome<T, E> {
        let Mapped { task, map } = *self;
        map(task.join())
    }

    fn detach(self: Box<Self>) {
        // Started when it was put in the group: nothing can fail here.
        let _ = self.task.detach();
    }
}

/// Why [`Group::join_next_timeout`] returned no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinNextError {
    /// The group holds no task.
    Empty,
    /// No task ended in time.
    Timeout,
}

impl JoinNextError {
    /// Returns `true` if the group holds no task.
    pub fn is_empty(&self) -> bool {
        *self == JoinNextError::Empty
    }

    /// Returns `true` if no task ended in time.
    pub fn is_timeout(&self) -> bool {
        *self == JoinNextError::Timeout
    }
}

impl fmt::Display for JoinNextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinNextError::Empty => "the group holds no task",
            JoinNextError::Timeout => "no task of the group ended in time",
        })
    }
}

impl std::error::Error for JoinNextError {}

/// Every outcome of a group, in the order its tasks ended, and which task
/// failed first: what [`Group::join_all`] returns.
pub struct Joined<T, E> {
    outcomes: Vec<(TaskId, Outcome<T, E>)>,
    first_failure: Option<TaskId>,
}

impl<T, E> Joined<T, E> {
    /// Each task's id and outcome, in the order they ended.
    pub fn outcomes(&self) -> &[(TaskId, Outcome<T, E>)] {
        &self.outcomes
    }

    /// Each task's id and outcome, in the order they ended.
    pub fn into_outcomes(self) -> Vec<(TaskId, Outcome<T, E>)> {
        self.outcomes
    }

    /// The first task to fail (see [`Outcome::is_failure`]) and its
    /// outcome; in a fail-fast group, the one that stopped the others.
    pub fn first_failure(&self) -> Option<(TaskId, &Outcome<T, E>)> {
        let id = self.first_failure?;
        self.outcomes
            .iter()
            .find(|(other, _)| *other == id)
            .map(|(id, outcome)| (*id, outcome))
    }

    /// Returns `true` if no task failed.
    pub fn is_success(&self) -> bool {
        self.first_failure.is_none()
    }

    /// Every task's value, in the order they ended, if every task returned
    /// one.
    ///
    /// # Errors
    ///
    /// The whole report, if any task did not return a value (it failed, or
    /// it was stopped before it began).
    pub fn into_values(self) -> Result<Vec<T>, Self> {
        if self.outcomes.iter().all(|(_, o)| o.is_value()) {
            Ok(self
                .outcomes
                .into_iter()
                .filter_map(|(_, o)| o.value())
                .collect())
        } else {
            Err(self)
        }
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for Joined<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joined")
            .field("outcomes", &self.outcomes)
            .field("first_failure", &self.first_failure)
            .finish()
    }
}

impl<T, E> Default for Group<T, E> {
    fn default() -> Self {
        Group::new()
    }
}

impl<T, E> Group<T, E> {
    /// An empty group: its tasks run to their own ends, each failure
    /// reported in its turn.
    pub fn new() -> Self {
        Group::with_policy(false)
    }

    /// An empty fail-fast group: the first task to fail (an error, a
    /// panic, a kill, a crash, a lost remote task) stops every other task
    /// in the group, and any task put in afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{Ctx, Group, Stopped};
    ///
    /// let mut group = Group::fail_fast();
    /// for n in 0..4u64 {
    ///     group.spawn(move |ctx: &Ctx| {
    ///         if n == 2 {
    ///             return Err(format!("download {n} failed"));
    ///         }
    ///         ctx.sleep(Duration::from_secs(60)).map_err(|Stopped| "stopped".to_string())?;
    ///         Ok(n)
    ///     });
    /// }
    /// let report = group.join_all(); // the others are stopped at once
    /// let (_, first) = report.first_failure().unwrap();
    /// assert_eq!(first.as_error().map(String::as_str), Some("download 2 failed"));
    /// assert_eq!(report.outcomes().len(), 4);
    /// ```
    pub fn fail_fast() -> Self {
        Group::with_policy(true)
    }

    fn with_policy(fail_fast: bool) -> Self {
        Group {
            ready: Arc::new(Ready {
                state: Mutex::new(ReadyState::default()),
                wake: Condvar::new(),
                fail_fast,
            }),
            members: HashMap::new(),
        }
    }

    /// Whether the group is fail-fast.
    pub fn is_fail_fast(&self) -> bool {
        self.ready.fail_fast
    }

    /// How many tasks the group holds: running, or ended and not joined.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Returns `true` if the group holds no task.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Returns `true` if the group holds the task `id`.
    pub fn contains(&self, id: TaskId) -> bool {
        self.members.contains_key(&id)
    }

    /// The first of the group's tasks that failed so far, if one did
    /// (joined or not).
    pub fn first_failure(&self) -> Option<TaskId> {
        lock(&self.ready.state).first_failure
    }

    /// Puts a task in the group and returns its id; the group owns its
    /// handle from now on, so nobody reads the task's events: once its
    /// outbox is full, an emit gives its event back at once instead of
    /// waiting. A task built but not started is started here
    /// (if no thread can be started for it, it ends
    /// [`Cancelled`](Outcome::Cancelled), as `join_next` reports).
    pub fn insert<In, Ev>(&mut self, task: Task<T, E, In, Ev>) -> TaskId
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.insert_with(task, |outcome| outcome)
    }

    /// Puts a task whose outcome has other types in the group: `map` turns
    /// its outcome into the group's when it is joined.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Group, Outcome};
    ///
    /// // A count and a name, joined as one type.
    /// let mut group: Group<String, String> = Group::new();
    /// group.spawn(|_: &Ctx| Ok("seven".to_string()));
    /// let count = sidetask::spawn(|_: &Ctx| Ok::<u64, std::io::Error>(7));
    /// group.insert_with(count, |outcome: Outcome<u64, std::io::Error>| {
    ///     outcome.map(|n| n.to_string()).map_error(|e| e.to_string())
    /// });
    /// let mut values: Vec<String> =
    ///     group.join_all().into_values().unwrap();
    /// values.sort();
    /// assert_eq!(values, ["7", "seven"]);
    /// ```
    pub fn insert_with<T2, E2, In, Ev, F>(&mut self, task: Task<T2, E2, In, Ev>, map: F) -> TaskId
    where
        T2: Send + 'static,
        E2: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
        F: FnOnce(Outcome<T2, E2>) -> Outcome<T, E> + Send + 'static,
        T: 'static,
        E: 'static,
    {
        let id = task.id();
        if task.status() == Status::NotStarted && task.start().is_err() {
            task.stop();
        }
        if self.ready.fail_fast {
            let mut state = lock(&self.ready.state);
            if state.first_failure.is_some() {
                drop(state);
                task.stop();
            } else {
                state.stoppers.insert(id, task.stop_handle());
            }
        }
        let shared = task.shared();
        // Nobody reads its events now: an emit into its full outbox gives
        // the event back instead of waiting for ever (one waiting already,
        // too).
        shared.set_outbox_unread_running();
        let ready = Arc::downgrade(&self.ready);
        let hook = Box::new(move |failed| {
            if let Some(ready) = Weak::upgrade(&ready) {
                ready.ended(id, failed);
            }
        });
        shared
            .set_end_hook(hook)
            .unwrap_or_else(|_| unreachable!("a task's handle is put in one group only"));
        self.members.insert(id, Box::new(Mapped { task, map }));
        id
    }

    /// Spawns a thread task with the default options (as
    /// [`spawn`](crate::spawn)) into the group; returns its id.
    ///
    /// # Panics
    ///
    /// If no thread could be started to run the task.
    pub fn spawn<F, In, Ev>(&mut self, body: F) -> TaskId
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.insert(crate::spawn(body))
    }

    /// Spawns a thread task made by `builder` into the group; returns its
    /// id.
    ///
    /// # Errors
    ///
    /// If no thread could be started to run the task.
    pub fn spawn_with<F, In, Ev>(
        &mut self,
        builder: crate::Builder,
        body: F,
    ) -> Result<TaskId, StartError>
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        Ok(self.insert(builder.spawn(body)?))
    }

    /// Asks every task in the group to stop (see [`Task::stop`]); returns
    /// at once.
    pub fn stop_all(&self) {
        for member in self.members.values() {
            member.stop();
        }
    }

    /// Kills every task in the group where its place allows it (see
    /// [`Task::kill`]); returns at once.
    pub fn kill_all(&self) {
        for member in self.members.values() {
            member.kill();
        }
    }

    /// Takes the task `id` out of the group and lets it run on, owned by
    /// nobody (see [`Task::detach`]); returns `false` if the group does not
    /// hold it.
    pub fn detach(&mut self, id: TaskId) -> bool {
        match self.members.remove(&id) {
            Some(member) => {
                let _ = lock(&self.ready.state).stoppers.remove(&id);
                member.detach();
                true
            }
            None => false,
        }
    }

    /// Waits for the next task to end and returns its id and outcome, in
    /// the order the tasks end; `None` once the group is empty.
    ///
    /// A task that never ends makes this wait forever;
    /// [`join_next_timeout`](Group::join_next_timeout) does not.
    ///
    /// # Panics
    ///
    /// If no task has ended yet and one is an async task that this thread's
    /// current-thread tokio runtime would have to run (this call would
    /// never return): await `join_next_async` there instead.
    #[track_caller]
    pub fn join_next(&mut self) -> Option<(TaskId, Outcome<T, E>)> {
        if lock(&self.ready.state).ended.is_empty() && self.members.values().any(|m| m.would_hang())
        {
            panic!(
                "`Group::join_next` would block a thread that drives a current-thread tokio \
                 runtime, where an async task of the group may be waiting to run, so the call \
                 could never return: use `join_next_async().await` inside the runtime, or call \
                 `join_next` from another thread"
            );
        }
        self.next(Wait::Forever).ok()
    }

    /// Returns the id and outcome of a task that has ended, if one has and
    /// was not joined yet. Never blocks.
    pub fn try_join_next(&mut self) -> Option<(TaskId, Outcome<T, E>)> {
        self.next(Wait::No).ok()
    }

    /// Waits at most `timeout` for the next task to end and returns its id
    /// and outcome.
    ///
    /// # Errors
    ///
    /// [`JoinNextError::Empty`] if the group holds no task,
    /// [`JoinNextError::Timeout`] if none ended in time.
    pub fn join_next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(TaskId, Outcome<T, E>), JoinNextError> {
        self.next(Wait::after(timeout))
    }

    /// Waits for every task in the group to end, and returns every outcome
    /// with the first failure.
    ///
    /// A task that never ends makes this wait forever; stop the group
    /// (or join with [`join_next_timeout`](Group::join_next_timeout)) if
    /// that can happen.
    ///
    /// # Panics
    ///
    /// As [`join_next`](Group::join_next) does.
    #[track_caller]
    pub fn join_all(mut self) -> Joined<T, E> {
        let mut outcomes = Vec::with_capacity(self.members.len());
        while let Some(joined) = self.join_next() {
            outcomes.push(joined);
        }
        Joined {
            outcomes,
            first_failure: self.first_failure(),
        }
    }

    fn next(&mut self, wait: Wait) -> Result<(TaskId, Outcome<T, E>), JoinNextError> {
        loop {
            if self.members.is_empty() {
                return Err(JoinNextError::Empty);
            }
            let id = self.ready_id(wait).ok_or(JoinNextError::Timeout)?;
            if let Some(member) = self.members.remove(&id) {
                return Ok((id, member.take()));
            }
        }
    }

    /// The next ended task's id, waiting as `wait` says.
    fn ready_id(&self, wait: Wait) -> Option<TaskId> {
        let mut state = lock(&self.ready.state);
        loop {
            if let Some(id) = state.ended.pop_front() {
                return Some(id);
            }
            state.waiting = true;
            state = match wait {
                Wait::No => return None,
                Wait::Forever => self
                    .ready
                    .wake
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
                Wait::Until(until) => {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.ready
                        .wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Waits for the next task to end and returns its id and outcome, in
    /// the order the tasks end; `None` once the group is empty. The
    /// awaitable twin of [`join_next`](Group::join_next).
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn join_next_async(&mut self) -> Option<(TaskId, Outcome<T, E>)> {
        loop {
            if self.members.is_empty() {
                return None;
            }
            let id = std::future::poll_fn(|cx| {
                let mut state = lock(&self.ready.state);
                match state.ended.pop_front() {
                    Some(id) => std::task::Poll::Ready(id),
                    None => {
                        state.waker = Some(cx.waker().clone());
                        std::task::Poll::Pending
                    }
                }
            })
            .await;
            if let Some(member) = self.members.remove(&id) {
                return Some((id, member.take()));
            }
        }
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        lock(&self.ready.state).stoppers.clear();
        // Each handle's drop stops its task.
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("len", &self.members.len())
            .field("fail_fast", &self.ready.fail_fast)
            .finish_non_exhaustive()
    }
}
