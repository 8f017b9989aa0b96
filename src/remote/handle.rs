//! The client's side: submitting a named task, and the handle's session
//! with it (messages out with credit, events and the end in, stop and
//! kill as durable requests).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::client::Client;
use super::end;
use super::error::RemoteError;
use super::reader::Sink;
use super::scripts;
use super::stream::{Entry, Sid};
use crate::mailbox::{INBOX_CLOSED, KILL, Wait};
use crate::named::{self, NamedTask};
use crate::outcome::{Lost, Outcome};
use crate::sync::lock;
use crate::task::wire::{Served, Side, Wire};
use crate::task::{Settings, Shared, Slot, Task, TaskId};

/// The handle of a remote task running the named task `T`: the same
/// [`Task`] as every other place's.
pub type RemoteTask<T> = Task<
    <T as NamedTask>::Value,
    <T as NamedTask>::Error,
    <T as NamedTask>::In,
    <T as NamedTask>::Event,
>;

/// What a message, an argument or an event may be at most, encoded, unless
/// set: 4 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// A named task to run on a remote worker, with its options; made with
/// [`new`](Remote::new) and started with [`spawn_on`](Remote::spawn_on).
///
/// The options are those that make sense remotely: the handle's capacities
/// and timeout, and how the workers treat the task (grace period, lease,
/// attempts, how long its result is kept).
///
/// # Examples
///
/// ```no_run
/// use sidetask::{Ctx, NamedTask, Stopped};
/// use sidetask::remote::{Client, Remote};
///
/// struct Double;
/// impl NamedTask for Double {
///     const NAME: &'static str = "double";
///     type Arg = u64;
///     type In = ();
///     type Event = ();
///     type Value = u64;
///     type Error = Stopped;
///     fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> {
///         Ok(n * 2)
///     }
/// }
///
/// let client = Client::from_env()?;
/// // A worker that registered `Double` runs it, on another machine perhaps.
/// let task = Remote::<Double>::new(21).attempts(3).spawn_on(&client)?;
/// assert_eq!(task.join().value(), Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a remote task is submitted by `spawn_on`"]
pub struct Remote<T: NamedTask> {
    arg: T::Arg,
    inbox: usize,
    outbox: usize,
    timeout: Option<Duration>,
    grace: Duration,
    lease: Duration,
    attempts: u32,
    keep: Duration,
    max_message: usize,
    events_kept: usize,
    task: PhantomData<fn() -> T>,
}

impl<T: NamedTask> Remote<T> {
    /// A task `T` started with `arg`, with the default options.
    pub fn new(arg: T::Arg) -> Remote<T> {
        Remote {
            arg,
            inbox: crate::DEFAULT_CAPACITY,
            outbox: crate::DEFAULT_CAPACITY,
            timeout: None,
            grace: Duration::from_secs(5),
            lease: Duration::from_secs(10),
            attempts: 1,
            keep: Duration::from_secs(24 * 3600),
            max_message: DEFAULT_MAX_MESSAGE,
            events_kept: scripts::EVENTS_KEPT,
            task: PhantomData,
        }
    }

    /// How many messages may be unread by the task at once (sent to it but
    /// not taken by its `recv`); more wait in the handle, and
    /// [`try_send`](Task::try_send) says `Full` when the handle's own inbox
    /// of this size is full too.
    pub fn inbox(mut self, capacity: usize) -> Self {
        self.inbox = capacity.max(1);
        self
    }

    /// The handle's outbox capacity, as for other places. A remote
    /// handle's reader takes every event Redis holds for it as soon as it
    /// comes; what bounds them is [`events_kept`](Remote::events_kept).
    pub fn outbox(mut self, capacity: usize) -> Self {
        self.outbox = capacity.max(1);
        self
    }

    /// Stops the task when `timeout` has passed since it was submitted.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long the worker waits after a stop before it kills the task
    /// (default 5 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a worker's claim on the task lasts without being renewed
    /// (default 10 s); a worker renews it every third of it. A worker
    /// that vanished is noticed after this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How many workers may try the task, one after another, when a worker
    /// vanishes during it (default 1: the task ends as
    /// [`Outcome::Lost`]).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// How long the ended task's outcome, events and messages stay in
    /// Redis, for a handle to collect (default one day); then every key of
    /// the task expires.
    pub fn keep_result(mut self, keep: Duration) -> Self {
        self.keep = keep.max(Duration::from_millis(1));
        self
    }

    /// The largest argument or message, encoded, that is sent (default
    /// [`DEFAULT_MAX_MESSAGE`]); a larger message is refused by `send`
    /// and given back.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// How many of the task's events Redis keeps for a handle that has not
    /// read them (default 10,000); a handle that falls further behind is
    /// told how many it missed.
    pub fn events_kept(mut self, events: usize) -> Self {
        self.events_kept = events.max(1);
        self
    }

    /// Submits the task to the workers that serve `T`'s name, and returns
    /// its handle.
    ///
    /// The handle has every verb of [`Task`]. Dropping it does not stop the
    /// task: it lives in Redis, and [`Client::attach`] gives a handle on it
    /// again, by its [`id`](Task::id).
    ///
    /// # Errors
    ///
    /// If the argument is over [`max_message`](Remote::max_message) or
    /// Redis cannot be reached.
    pub fn spawn_on(self, client: &Client) -> Result<RemoteTask<T>, RemoteError> {
        let arg = self.encode(&self.arg)?;
        let settings = self.settings();
        loop {
            let id = super::fresh_id();
            let (task, session) = handle::<T>(client, &settings, id, self.max_message, true);
            let (key, args) = self.submission(client, client.id(), &[(id, &arg)]);
            let took: Vec<i64> = client.run(|con| {
                let mut invocation = scripts::SUBMIT.key(&key);
                invocation.arg(&args);
                invocation.invoke(con)
            })?;
            if took == [1] {
                session.confirm();
                tracing::debug!(task.id = id, task.name = T::NAME, "remote task submitted");
                // Messages sent meanwhile go now.
                session.pump();
                return Ok(task);
            }
            // That id was taken (one in 2^53): another one.
            drop(task);
        }
    }
}

impl<T: NamedTask> Remote<T> {
    /// Submits this builder's task, then one more for each of `args`, all
    /// with this builder's options, and returns their ids without handles
    /// (in the order of the arguments): many tasks go in a few round trips.
    /// [`Client::attach`] gives a handle on any of them.
    ///
    /// # Errors
    ///
    /// If an argument is over [`max_message`](Remote::max_message) (then
    /// nothing was submitted), or Redis cannot be reached (then the batches
    /// before the failure were submitted, and their ids are lost to the
    /// caller: [`Client::inspect`] shows them queued).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use sidetask::{Ctx, NamedTask, Stopped};
    /// # struct Double;
    /// # impl NamedTask for Double {
    /// #     const NAME: &'static str = "double";
    /// #     type Arg = u64; type In = (); type Event = (); type Value = u64; type Error = Stopped;
    /// #     fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> { Ok(n * 2) }
    /// # }
    /// use sidetask::remote::{Client, Remote};
    ///
    /// let client = Client::from_env()?;
    /// let ids = Remote::<Double>::new(0).submit_each(&client, 1..10_000)?;
    /// let last = client.attach::<Double>(ids[9_999])?;
    /// assert_eq!(last.join().value(), Some(2 * 9_999));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn submit_each(
        self,
        client: &Client,
        args: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<TaskId>, RemoteError> {
        let encoded = self.encode_all(args)?;
        self.pipelined(client, &encoded, "", TaskId::from)
    }

    /// Submits this builder's task, then one more for each of `args`, all
    /// with this builder's options, in a few round trips, and returns their
    /// handles in the order of the arguments.
    ///
    /// # Errors
    ///
    /// As [`submit_each`](Remote::submit_each).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use sidetask::{Ctx, NamedTask, Stopped};
    /// # struct Double;
    /// # impl NamedTask for Double {
    /// #     const NAME: &'static str = "double";
    /// #     type Arg = u64; type In = (); type Event = (); type Value = u64; type Error = Stopped;
    /// #     fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> { Ok(n * 2) }
    /// # }
    /// use sidetask::remote::{Client, Remote};
    ///
    /// let client = Client::from_env()?;
    /// let tasks = Remote::<Double>::new(0).spawn_each(&client, 1..100)?;
    /// let sum: u64 = tasks.into_iter().filter_map(|t| t.join().value()).sum();
    /// assert_eq!(sum, 2 * (0..100).sum::<u64>());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn_each(
        self,
        client: &Client,
        args: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<RemoteTask<T>>, RemoteError> {
        let encoded = self.encode_all(args)?;
        let settings = self.settings();
        let made = self.pipelined(client, &encoded, client.id(), |id| {
            handle::<T>(client, &settings, id, self.max_message, true)
        })?;
        Ok(made
            .into_iter()
            .map(|(task, session)| {
                session.confirm();
                task
            })
            .collect())
    }

    /// This builder's argument, then each of `args`, encoded.
    fn encode_all(
        &self,
        args: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<Vec<u8>>, RemoteError> {
        let mut encoded = vec![self.encode(&self.arg)?];
        for arg in args {
            encoded.push(self.encode(&arg)?);
        }
        Ok(encoded)
    }

    /// Submits a task for each of the `encoded` arguments, pipelined, each
    /// under a fresh id for which `make` is called first (what it makes is
    /// dropped if the id was taken, and another id tried); returns what
    /// `make` made for the tasks submitted, in order.
    fn pipelined<H>(
        &self,
        client: &Client,
        encoded: &[Vec<u8>],
        doorbell: &str,
        mut make: impl FnMut(u64) -> H,
    ) -> Result<Vec<H>, RemoteError> {
        const BATCH: usize = 1000;
        // The arguments' bytes one call of the script takes, beyond its
        // first task.
        const SUBMIT_BYTES: usize = 1 << 20;
        let mut made = Vec::with_capacity(encoded.len());
        for chunk in encoded.chunks(BATCH) {
            let mut pending: Vec<&Vec<u8>> = chunk.iter().collect();
            while !pending.is_empty() {
                let batch: Vec<(u64, &Vec<u8>, H)> = pending
                    .iter()
                    .map(|arg| {
                        let id = super::fresh_id();
                        (id, *arg, make(id))
                    })
                    .collect();
                // Calls of the script of a few tasks each, pipelined.
                let mut calls = Vec::new();
                let mut call: Vec<(u64, &[u8])> = Vec::new();
                let mut bytes = 0;
                for (id, arg, _) in &batch {
                    if !call.is_empty()
                        && (call.len() == scripts::SUBMIT_BATCH || bytes + arg.len() > SUBMIT_BYTES)
                    {
                        calls.push(self.submission(client, doorbell, &call));
                        call.clear();
                        bytes = 0;
                    }
                    call.push((*id, arg));
                    bytes += arg.len();
                }
                calls.push(self.submission(client, doorbell, &call));
                let took: Vec<Vec<i64>> = client.run(|con| {
                    // Loaded first, so that the pipeline's EVALSHAs find it.
                    scripts::SUBMIT.prepare_invoke().load(con)?;
                    let mut pipe = redis::pipe();
                    for (key, args) in &calls {
                        pipe.cmd("EVALSHA")
                            .arg(scripts::SUBMIT.get_hash())
                            .arg(1)
                            .arg(key)
                            .arg(args);
                    }
                    pipe.query(con)
                })?;
                let took = took.into_iter().flatten();
                // An id already taken (one in 2^53) is tried again.
                pending.clear();
                for ((_, arg, thing), took) in batch.into_iter().zip(took) {
                    if took == 1 {
                        made.push(thing);
                    } else {
                        pending.push(arg);
                    }
                }
            }
        }
        Ok(made)
    }

    fn settings(&self) -> Settings {
        Settings {
            name: Some(T::NAME.to_owned()),
            inbox: self.inbox,
            outbox: self.outbox,
            timeout: self.timeout,
        }
    }

    /// The argument, encoded and checked against the largest message.
    fn encode(&self, arg: &T::Arg) -> Result<Vec<u8>, RemoteError> {
        let arg = postcard::to_stdvec(arg)
            .map_err(|e| RemoteError::invalid(format!("could not encode the argument: {e}")))?;
        if arg.len() > self.max_message {
            return Err(RemoteError::invalid(format!(
                "the argument is {} bytes encoded, over the largest message of {} bytes",
                arg.len(),
                self.max_message
            )));
        }
        Ok(arg)
    }

    /// The key and arguments of the submission of `tasks` (each an id and
    /// its encoded argument, at most [`scripts::SUBMIT_BATCH`]), whose
    /// events ring the doorbell of client `doorbell` (none if empty).
    fn submission(
        &self,
        client: &Client,
        doorbell: &str,
        tasks: &[(u64, &[u8])],
    ) -> (String, Vec<Vec<u8>>) {
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128).to_string();
        let mut args = vec![
            client.key_prefix().into_bytes(),
            T::NAME.as_bytes().to_vec(),
            named::fingerprint::<T>().to_string().into_bytes(),
            self.attempts.to_string().into_bytes(),
            ms(self.lease).into_bytes(),
            ms(self.keep).into_bytes(),
            self.inbox.to_string().into_bytes(),
            ms(self.grace).into_bytes(),
            self.timeout.map_or_else(|| "0".to_owned(), ms).into_bytes(),
            doorbell.as_bytes().to_vec(),
            self.events_kept.to_string().into_bytes(),
        ];
        for (id, arg) in tasks {
            args.push(id.to_string().into_bytes());
            args.push(arg.to_vec());
        }
        (client.key(format_args!("t:{}", tasks[0].0)), args)
    }
}

impl<T: NamedTask> std::fmt::Debug for Remote<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("task", &T::NAME)
            .field("inbox", &self.inbox)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("lease", &self.lease)
            .field("attempts", &self.attempts)
            .field("keep_result", &self.keep)
            .finish_non_exhaustive()
    }
}

/// Attaches a new handle to task `id`, already submitted.
pub(crate) fn attach<T: NamedTask>(
    client: &Client,
    id: TaskId,
) -> Result<RemoteTask<T>, RemoteError> {
    let settings = Settings {
        name: Some(T::NAME.to_owned()),
        inbox: crate::DEFAULT_CAPACITY,
        outbox: crate::DEFAULT_CAPACITY,
        timeout: None,
    };
    let (task, session) = handle::<T>(client, &settings, id.as_u64(), DEFAULT_MAX_MESSAGE, false);
    let mut con = client.connection()?;
    let fields: Vec<Option<String>> = scripts::ATTACH
        .key(&session.tkey)
        .arg(client.key_prefix())
        .arg(id.as_u64().to_string())
        .arg(client.id())
        .invoke(&mut *con)
        .map_err(|e| client.error(e))?;
    let [
        _state,
        name,
        fp,
        cursor,
        _attempts,
        cap,
        sent,
        nread,
        cursor_n,
    ] = &fields[..]
    else {
        return Err(RemoteError::unknown_task(client.url(), id));
    };
    if name.as_deref() != Some(T::NAME) {
        return Err(RemoteError::invalid(format!(
            "task {id} is a `{}` task, not a `{}` one",
            name.as_deref().unwrap_or("?"),
            T::NAME
        )));
    }
    if fp.as_deref() != Some(&named::fingerprint::<T>().to_string()) {
        return Err(RemoteError::invalid(format!(
            "task {id} was submitted by another version of the `{}` task type (its type \
             fingerprint differs)",
            T::NAME
        )));
    }
    let number = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    {
        let mut pump = lock(&session.pump);
        pump.cap = number(cap).max(1);
        pump.sent = number(sent);
        pump.nread = number(nread);
    }
    let cursor = cursor.as_deref().and_then(Sid::parse).unwrap_or(Sid::ZERO);
    {
        let mut seen = lock(&session.state);
        seen.cursor = cursor;
        seen.last_n = number(cursor_n);
        seen.known = true;
        seen.ready = true;
    }
    let sink: Arc<dyn Sink> = session.clone();
    client.reader().catch_up(&id.as_u64().to_string(), &*sink);
    Ok(task)
}

/// A handle on remote task `id` and its session, registered with the
/// client's reader.
fn handle<T: NamedTask>(
    client: &Client,
    settings: &Settings,
    id: u64,
    max_message: usize,
    ready: bool,
) -> (RemoteTask<T>, Arc<Session<T>>) {
    let mut shared: TypedShared<T> = settings.shared();
    shared.id = TaskId::from(id);
    let shared = Arc::new(shared);
    shared.set_message_limit(max_message, |m| {
        postcard::experimental::serialized_size(m).unwrap_or(usize::MAX)
    });
    let session = Arc::new(Session::<T> {
        client: client.clone(),
        id: id.to_string(),
        tkey: client.key(format_args!("t:{id}")),
        shared: Arc::downgrade(&shared),
        state: Mutex::new(Seen {
            cursor: Sid::ZERO,
            last_n: 0,
            over: false,
            known: false,
            ready,
            taken: VecDeque::new(),
            missed: 0,
        }),
        pump: Mutex::new(Pump {
            cap: settings.inbox as u64,
            sent: 0,
            nread: 0,
            asked: false,
            closed: false,
        }),
        unsynced: AtomicBool::new(false),
        task: PhantomData,
    });
    let wire: Arc<dyn Wire<T::Event>> = session.clone();
    shared.set_wire(Side::Handle, Arc::downgrade(&wire));
    let hooked = session.clone();
    shared.set_stop_hook(Box::new(move || hooked.request_stop()));
    let sink: Arc<dyn Sink> = session.clone();
    client.reader().register(&session.id, &sink);
    let task = Task::started(shared, settings.timeout, true);
    (task, session)
}

/// A remote task's shared state, with its outcome's types.
type TypedShared<T> = Shared<
    <T as NamedTask>::In,
    <T as NamedTask>::Event,
    Slot<<T as NamedTask>::Value, <T as NamedTask>::Error>,
>;

/// One handle's session with its remote task.
struct Session<T: NamedTask> {
    client: Client,
    id: String,
    /// The task's hash.
    tkey: String,
    shared: Weak<TypedShared<T>>,
    state: Mutex<Seen>,
    pump: Mutex<Pump>,
    /// A cursor was sent without waiting for the server since the last
    /// sync.
    unsynced: AtomicBool,
    task: PhantomData<fn() -> T>,
}

impl<T: NamedTask> Drop for Session<T> {
    fn drop(&mut self) {
        // A handle attached next, from any process, resumes after the
        // last event this one took.
        if *self.unsynced.get_mut() {
            self.client.sync_durable();
        }
    }
}

/// What the handle has seen of the event stream.
struct Seen {
    cursor: Sid,
    /// The number of the last event seen.
    last_n: u64,
    over: bool,
    /// Whether the task is known to be in Redis (submitted, or found by
    /// an attach): only then does its record's absence mean it was lost.
    known: bool,
    /// Whether entries may be applied: not before an attached handle
    /// learnt the cursor it resumes from.
    ready: bool,
    /// The ids and numbers of the events in the outbox, oldest first.
    taken: VecDeque<(Sid, u64)>,
    /// How many events were trimmed before the handle read them.
    missed: u64,
}

/// The messages on their way.
struct Pump {
    /// How many may be unread by the task at once.
    cap: u64,
    /// How many were sent, and read, as far as the handle knows.
    sent: u64,
    nread: u64,
    /// Whether the handle asked to hear when the task reads more.
    asked: bool,
    /// Whether the closed inbox was said.
    closed: bool,
}

impl<T: NamedTask> Session<T> {
    /// The task is in Redis.
    fn confirm(&self) {
        lock(&self.state).known = true;
    }

    /// Writes what waits in the handle's inbox while the task has room for
    /// it, or says the inbox closed.
    fn pump(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut pump = lock(&self.pump);
        loop {
            let credit = pump
                .cap
                .saturating_sub(pump.sent.saturating_sub(pump.nread));
            // A close needs no credit, only that what came before it went.
            if shared.mailbox.inbox_len() == 0 {
                if shared.mailbox.is(INBOX_CLOSED) && !pump.closed {
                    pump.closed = true;
                    self.call::<i64>(&scripts::CLOSE, &[]);
                }
                return;
            }
            if credit == 0 {
                if pump.asked {
                    return;
                }
                match self.ask_credit() {
                    Some(nread) => {
                        pump.nread = pump.nread.max(nread);
                        pump.asked = true;
                        if pump
                            .cap
                            .saturating_sub(pump.sent.saturating_sub(pump.nread))
                            == 0
                        {
                            return;
                        }
                        continue;
                    }
                    None => return,
                }
            }
            let mut batch = Vec::new();
            while (batch.len() as u64) < credit.min(64) {
                match shared.mailbox.pop_in(Wait::No) {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                if shared.mailbox.is(INBOX_CLOSED) && !pump.closed {
                    pump.closed = true;
                    self.call::<i64>(&scripts::CLOSE, &[]);
                }
                return;
            }
            let encoded: Vec<Vec<u8>> = batch
                .iter()
                .map(|m| postcard::to_stdvec(m).unwrap_or_default())
                .collect();
            match self.send(&encoded) {
                Some(total) if total >= 0 => pump.sent = total as u64,
                _ => {
                    // Stopping, ended, or Redis unreachable: kept for
                    // `take_unread`.
                    shared.mailbox.give_back(batch);
                    return;
                }
            }
        }
    }

    fn send(&self, messages: &[Vec<u8>]) -> Option<i64> {
        let sent = self.client.run(|con| {
            let mut invocation = scripts::SEND.key(&self.tkey);
            invocation.arg(self.client.key_prefix()).arg(&self.id);
            for m in messages {
                invocation.arg(m);
            }
            invocation.invoke::<i64>(con)
        });
        sent.map_err(|e| tracing::warn!(task.id = self.id, error = %e, "could not send messages"))
            .ok()
    }

    /// Asks to hear when the task reads more; returns how many it read.
    fn ask_credit(&self) -> Option<u64> {
        let n: i64 = self
            .client
            .run(|con| scripts::CREDIT.key(&self.tkey).invoke(con))
            .ok()?;
        u64::try_from(n).ok()
    }

    /// Runs `script` on the task's hash with the prefix, the id and `args`.
    fn call<R: redis::FromRedisValue>(&self, script: &redis::Script, args: &[&str]) -> Option<R> {
        let done = self.client.run(|con| {
            let mut invocation = script.key(&self.tkey);
            invocation.arg(self.client.key_prefix()).arg(&self.id);
            for a in args {
                invocation.arg(*a);
            }
            invocation.invoke(con)
        });
        done.map_err(|e| {
            tracing::warn!(task.id = self.id, error = %e, "a request to a remote task failed");
        })
        .ok()
    }

    /// The handle's stop or kill, as durable state in Redis.
    fn request_stop(&self) {
        let kill = self
            .shared
            .upgrade()
            .is_some_and(|shared| shared.mailbox.is(KILL));
        let what = if kill { "kill" } else { "stop" };
        if self.call::<String>(&scripts::STOP, &[what]).as_deref() == Some("gone") {
            self.vanished();
        }
    }

    fn finish(&self, outcome: Outcome<T::Value, T::Error>) {
        if let Some(shared) = self.shared.upgrade() {
            shared.finish(outcome);
        }
    }

    /// The messages the task never read, from Redis, oldest first.
    fn unread(&self) -> Vec<T::In> {
        let Ok(mut con) = self.client.connection() else {
            return Vec::new();
        };
        let read: Option<String> = redis::cmd("HGET")
            .arg(&self.tkey)
            .arg("read")
            .query(&mut *con)
            .unwrap_or(None);
        let from = read.as_deref().and_then(Sid::parse).unwrap_or(Sid::ZERO);
        let key = self.client.key(format_args!("in:{}", self.id));
        let reply: redis::RedisResult<redis::streams::StreamRangeReply> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(from.after())
            .arg("+")
            .query(&mut *con);
        let Ok(reply) = reply else { return Vec::new() };
        reply
            .ids
            .iter()
            .filter_map(|id| super::stream::field(id, "m"))
            .filter_map(|bytes| postcard::from_bytes(&bytes).ok())
            .collect()
    }
}

impl<T: NamedTask> Sink for Session<T> {
    fn cursor(&self) -> Sid {
        lock(&self.state).cursor
    }

    fn deliver(&self, sid: Sid, entry: Option<Entry>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut seen = lock(&self.state);
        if sid <= seen.cursor || seen.over || !seen.ready {
            return;
        }
        seen.cursor = sid;
        match entry {
            None => {}
            Some(Entry::Event { n, bytes }) => {
                if n > seen.last_n + 1 {
                    let missed = n - seen.last_n - 1;
                    seen.missed += missed;
                    tracing::warn!(
                        task.id = self.id,
                        missed,
                        "the handle fell behind the events Redis keeps: some were trimmed"
                    );
                }
                seen.last_n = seen.last_n.max(n);
                match postcard::from_bytes::<T::Event>(&bytes) {
                    Ok(event) => {
                        if shared.mailbox.push_out_over(event).is_ok() {
                            seen.taken.push_back((sid, n));
                        }
                    }
                    Err(e) => tracing::warn!(
                        task.id = self.id,
                        error = %e,
                        "an event of the task did not decode; skipped"
                    ),
                }
            }
            Some(Entry::Credit(nread)) => {
                drop(seen);
                {
                    let mut pump = lock(&self.pump);
                    pump.nread = pump.nread.max(nread);
                    pump.asked = false;
                }
                self.pump();
            }
            Some(Entry::Requeued(attempt)) => {
                tracing::info!(
                    task.id = self.id,
                    attempt,
                    "a worker was lost; the task was queued again"
                );
            }
            Some(Entry::End { kind, data, read }) => {
                seen.over = true;
                drop(seen);
                // Only if the task may have left some unread.
                let sent = lock(&self.pump).sent;
                if read.is_none_or(|read| read < sent) {
                    shared.mailbox.give_back(self.unread());
                }
                self.finish(end::decode(&kind, &data));
            }
        }
    }

    fn is_known(&self) -> bool {
        lock(&self.state).known
    }

    fn vanished(&self) {
        let mut seen = lock(&self.state);
        if seen.over {
            return;
        }
        seen.over = true;
        drop(seen);
        self.finish(Outcome::Lost(Lost::new(
            "the task's record is gone from Redis (was it restarted without persistence, or \
             the result's time-to-live passed?)",
            0,
        )));
    }

    fn is_over(&self) -> bool {
        lock(&self.state).over || self.shared.strong_count() == 0
    }

    fn retry(&self) {
        self.pump();
    }
}

impl<T: NamedTask> Wire<T::Event> for Session<T> {
    fn sent(&self) {
        self.pump();
    }

    fn received(&self) {
        let taken = lock(&self.state).taken.pop_front();
        if let Some((sid, n)) = taken {
            // Before the event is returned: a handle attached after this
            // process died resumes after it.
            let mut cursor = redis::cmd("EVAL");
            cursor
                .arg(scripts::CURSOR)
                .arg(1)
                .arg(&self.tkey)
                .arg(sid.to_string())
                .arg(n);
            self.client.send_durably(&cursor);
            self.unsynced.store(true, Ordering::Relaxed);
        }
    }

    fn mark(&self) -> u64 {
        self.client.reader().mark()
    }

    fn pull(&self, until: Option<Instant>, since: u64) -> Served {
        if self.is_over() {
            return Served::Ended;
        }
        self.client.reader().pull(until, since)
    }

    fn brings_end(&self) -> bool {
        true
    }

    fn hurry(&self) {}

    fn missed(&self) -> u64 {
        lock(&self.state).missed
    }
}
