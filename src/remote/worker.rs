//! The worker's side: claiming named tasks, running each on the thread
//! place (or, isolated, in a child process through the process place),
//! carrying its messages in and its events and outcome out under its
//! attempt's fencing token, renewing its lease, and reaping the tasks of
//! workers that vanished.
//!
//! # Threads of a worker
//!
//! - the thread that calls `run_until`: asks its `done`, and closes the
//!   worker when it says so;
//! - the leader, one thread of the thread place at a time (see `Leader`):
//!   claims while a slot is free (blocking on the queues' bells when
//!   nothing is queued), runs one of the tasks it claimed itself, and hands
//!   the lead on;
//! - one thread of the thread place per other running attempt;
//! - the inbox reader: one blocking read of the worker's doorbell (copies
//!   of the inbox entries of the running attempts), delivering messages,
//!   stops, kills and closes; it stands aside while a body waiting for a
//!   message reads the doorbell itself, for every attempt;
//! - the keeper: renews the leases, applies the stop and kill requests it
//!   learns of there, kills attempts past their grace period (past a
//!   closing worker's own stop, only children, whose tasks are then given
//!   back), and reaps;
//! - the acknowledger: tells Redis how far each attempt has read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use redis::Commands;
use redis::streams::StreamId;

use super::client::{Client, Conn};
use super::end;
use super::error::RemoteError;
use super::scripts;
use super::stream::{Doorbell, Sid, field, text};
use crate::backend::thread as place;
use crate::named::{Delivered, Full, Inlet, Line, Registry};
use crate::outcome::CrashCause;
use crate::sync::lock;
use crate::task::Job;
use crate::task::wire::Served;

/// How long the acknowledger waits for a read to be acknowledged with an
/// event before it writes the acknowledgement itself.
const ACK_DELAY: Duration = Duration::from_millis(5);

/// How long the leader and the inbox reader block at most, unless set.
const BLOCK: Duration = Duration::from_secs(1);

/// How many doorbell entries one read takes at most.
const COUNT: usize = 256;

/// How often `run_until` asks its `done` at most.
const POLL: Duration = Duration::from_millis(50);

/// The first pause after a failed claim (it doubles up to two seconds).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A worker process's loop: claims the named tasks it knows from Redis and
/// runs them, at most [`concurrency`](Worker::concurrency) at once.
///
/// Only the names in its registry are ever claimed, and a task submitted
/// by another version of a task type (its type fingerprint differs) is left
/// in the queue for a worker that has that version, with the refusal
/// recorded ([`Inspect`](super::Inspect) shows it). Each attempt holds a
/// lease that the worker renews; a worker paused or cut off past its lease
/// can no longer write anything of the task (every write checks the
/// attempt's token), and it stops its own attempt when it cannot renew in
/// time.
///
/// # Examples
///
/// A worker binary is a few lines:
///
/// ```no_run
/// use sidetask::remote::{Client, Worker};
/// # use sidetask::{Ctx, NamedTask, Stopped};
/// # struct Double;
/// # impl NamedTask for Double {
/// #     const NAME: &'static str = "double";
/// #     type Arg = u64; type In = (); type Event = (); type Value = u64; type Error = Stopped;
/// #     fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> { Ok(n * 2) }
/// # }
///
/// fn registry() -> sidetask::Registry {
///     sidetask::Registry::new().with::<Double>().unwrap()
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     sidetask::init(registry());
///     let client = Client::from_env()?;
///     Worker::new(&client, registry()).concurrency(8).run()?;
///     Ok(())
/// }
/// ```
#[must_use = "a worker does nothing until `run`"]
pub struct Worker {
    client: Client,
    registry: Registry,
    name: String,
    concurrency: usize,
    names: Option<Vec<String>>,
    block: Duration,
    max_message: usize,
    isolate: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("names", &self.served())
            .field("isolate", &self.isolate)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for `client`'s namespace that runs the tasks of
    /// `registry`, one at a time until [`concurrency`](Worker::concurrency)
    /// says otherwise.
    pub fn new(client: &Client, registry: Registry) -> Worker {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".to_owned());
        Worker {
            client: client.clone(),
            registry,
            name: format!(
                "{host}:{}:{:x}",
                std::process::id(),
                super::fresh_id() & 0xffff
            ),
            concurrency: 1,
            names: None,
            block: BLOCK,
            max_message: super::DEFAULT_MAX_MESSAGE,
            isolate: false,
        }
    }

    /// How many tasks run at once (default 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Serves only these task names (default: every name of the
    /// registry); a name the registry lacks is ignored.
    pub fn names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The worker's name, as inspection shows it (default
    /// `host:pid:random`). It must be unique among the workers of a
    /// namespace: two workers of one name share a doorbell and a
    /// description, so each sees the other's renewals, and the one that
    /// ends takes both out until the other's next renewal.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a blocking read waits at most (default 1 s): how long the
    /// worker may take to return once `run_until`'s signal came, while it
    /// waits for a task.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(10));
        self
    }

    /// The largest message, encoded, a task is given (default
    /// [`DEFAULT_MAX_MESSAGE`](super::DEFAULT_MAX_MESSAGE)); a larger one,
    /// or one that does not decode, ends the task as a protocol crash.
    pub fn max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// Runs each task in a child process of its own (default: on a thread
    /// of the worker), as a [`Process`](crate::Process) task runs: a kill is
    /// `SIGKILL` to the child and everything it started, and ends the task
    /// as [`Outcome::Killed`](crate::Outcome::Killed) with the signal; a
    /// stop escalates after the task's grace period (the child is told to
    /// terminate, then killed); a child that crashes (a signal such as
    /// `SIGSEGV` or `SIGABRT`, an exit without a result) ends its task as
    /// [`Outcome::Crashed`](crate::Outcome::Crashed), with the cause and
    /// its stderr tail, and the worker goes on.
    ///
    /// The child is this binary, executed again: its `main` must call
    /// [`init`](crate::init) with the registry first thing (a test binary:
    /// [`test_support!`](crate::test_support)). Until `init` was called in
    /// this process, each task ends as a start crash that says so.
    pub fn isolate(mut self, isolate: bool) -> Self {
        self.isolate = isolate;
        self
    }

    fn served(&self) -> Vec<(&'static str, u64)> {
        self.registry
            .names()
            .filter(|n| self.names.as_ref().is_none_or(|v| v.iter().any(|m| m == n)))
            .filter_map(|n| Some((n, self.registry.fingerprint(n)?)))
            .collect()
    }

    /// Runs until the process is told to end: `SIGTERM` (as a service
    /// manager or an orchestrator sends) or `SIGINT` (Ctrl-C). Then it
    /// ends as [`run_until`](Worker::run_until) does and returns `Ok(())`:
    /// it claims no more, asks its running tasks to stop, and waits for
    /// them; a task in a child process ([`isolate`](Worker::isolate)) that
    /// has not ended within its grace period is killed and given back,
    /// queued again for another worker while it has attempts left. A
    /// task whose client asked for a stop or kill, or whose timeout came,
    /// ends as it would have anyway. A second signal meanwhile ends the
    /// process at once, as the signal does by default.
    ///
    /// The signals' handling is installed for the whole process at the
    /// first call and stays: while no `run` waits, a signal does what it
    /// does by default (and one that was ignored, as `nohup` sets
    /// `SIGINT`, is no longer ignored). Under systemd, `KillMode=mixed`
    /// lets the worker stop its children itself; the default,
    /// `control-group`, sends `SIGTERM` to them too, and each task in a
    /// child then ends as crashed by that signal. `run_until` installs no
    /// signal handling, for a worker that is one part of a program.
    ///
    /// # Errors
    ///
    /// If the worker serves no name (its registry is empty, or
    /// [`names`](Worker::names) matched none of it), or the signals could
    /// not be handled. A Redis that cannot be reached is waited for, not
    /// an error.
    pub fn run(self) -> Result<(), RemoteError> {
        self.serves()?;
        let told = told()?;
        told.store(false, Ordering::SeqCst);
        let ended = self.run_until(|| told.load(Ordering::SeqCst));
        // From now on, a signal does what it does by default.
        told.store(true, Ordering::SeqCst);
        ended
    }

    /// The names the worker serves, with their fingerprints; an error if
    /// none.
    fn serves(&self) -> Result<Vec<(&'static str, u64)>, RemoteError> {
        let served = self.served();
        if served.is_empty() {
            return Err(RemoteError::invalid(format!(
                "worker {} serves no task name: its registry holds none of those asked for",
                self.name
            )));
        }
        Ok(served)
    }

    /// Runs until `done()` returns `true` (asked on the calling thread every
    /// 50 ms, or every [`block`](Worker::block) period if shorter; the
    /// worker's other threads claim and run the tasks), then stops claiming,
    /// asks its running tasks to stop, waits for them and returns. A task
    /// in a child process (`isolate(true)`) still running after its grace
    /// period is killed and given back: queued again while it has attempts
    /// left, else it ends as [`Outcome::Lost`](crate::Outcome::Lost). A
    /// thread cannot be killed: this waits for a body that ignores its
    /// stop, and its outcome is what it returns.
    ///
    /// # Errors
    ///
    /// As [`run`](Worker::run).
    pub fn run_until(self, mut done: impl FnMut() -> bool) -> Result<(), RemoteError> {
        let served = self.serves()?;
        let (acks, acked) = crossbeam_channel::bounded(1);
        let hub = Arc::new(Hub {
            client: self.client.clone(),
            name: self.name.clone(),
            registry: self.registry,
            running: Mutex::new(HashMap::new()),
            freed: Condvar::new(),
            concurrency: self.concurrency,
            bell_keys: served
                .iter()
                .map(|(n, _)| self.client.key(format_args!("bell:{n}")))
                .collect(),
            served,
            leader: Mutex::new(Leader::default()),
            led: Condvar::new(),
            acks,
            acks_idle: AtomicBool::new(true),
            takes: AtomicU64::new(0),
            bell: Doorbell::new(
                self.client.key(format_args!("ww:{}", self.name)),
                self.block,
                COUNT,
            ),
            orphans: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
            block: self.block,
            max_message: self.max_message,
            isolate: self.isolate,
            bell_unsure: AtomicBool::new(false),
        });
        let threads = [
            spawn("sidetask-redis-inbox", Arc::downgrade(&hub), read_inboxes),
            spawn("sidetask-redis-keeper", Arc::downgrade(&hub), keep),
            {
                let weak = Arc::downgrade(&hub);
                thread::Builder::new()
                    .name("sidetask-redis-acks".into())
                    .spawn(move || acknowledge(&weak, &acked))
                    .expect("a thread for the worker")
            },
        ];
        tracing::info!(worker = hub.name, names = ?hub.served, "remote worker started");
        // The first leader claims; the user's thread asks `done`.
        lock(&hub.leader).leading = true;
        hub.lead_aside();
        let poll = self.block.min(POLL);
        while !done() {
            thread::sleep(poll);
            // Nobody leads with a slot free only if the lead was lost (its
            // thread panicked, or none could be had): it is taken again.
            if hub.try_lead() {
                hub.lead_aside();
            }
        }
        hub.close();
        // The leader ends at its next look, once its wait is over (a claim,
        // a connection, a wait); what it claimed meanwhile is stopped as it
        // starts, and waited for as the others were.
        hub.wait_for_no_leader(self.block * 4 + Duration::from_secs(15));
        hub.close();
        drop(hub);
        for t in threads {
            let _ = t.join();
        }
        leave(&self.client, &self.name);
        Ok(())
    }

    /// Runs the worker as a task of its own: stopping the task (or dropping
    /// its handle) ends the worker as [`run_until`](Worker::run_until)
    /// does.
    pub fn spawn(self) -> crate::Task<(), RemoteError> {
        crate::spawn(move |ctx: &crate::Ctx| self.run_until(|| ctx.stopped()))
    }
}

fn spawn(name: &str, hub: Weak<Hub>, f: fn(&Weak<Hub>)) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(move || f(&hub))
        .expect("a thread for the worker")
}

/// How long a doorbell entry of a task not registered is kept for its
/// claim's registration.
const ORPHAN_KEPT: Duration = Duration::from_secs(30);

/// What a claim returns: each claimed task's fields, each refusal, and 1
/// if the worker's doorbell had to be made.
type Claimed = (Vec<Vec<redis::Value>>, Vec<(String, String)>, i64);

/// The lead: one thread at a time claims tasks (the leader). It runs one
/// of the tasks it claimed itself and hands the lead on: to a new thread
/// of the thread place while slots stay free, else to the thread of the
/// first task to end. A task claimed when a slot frees thus starts on the
/// thread that freed it, with no thread woken to claim it or to run it.
struct Leader {
    leading: bool,
    /// The connection the leader blocks on for a bell.
    bells: Option<Conn>,
    /// Whether the last wait and claim went through: then the bells say
    /// whether anything is queued (a full claim leaves the bell of a queue
    /// with tasks ringing), and the next claim waits at once.
    waiting: bool,
    /// The pause after the next failed claim.
    backoff: Duration,
}

impl Default for Leader {
    fn default() -> Leader {
        Leader {
            leading: false,
            bells: None,
            waiting: false,
            backoff: FIRST_BACKOFF,
        }
    }
}

/// What a worker's threads share.
struct Hub {
    client: Client,
    name: String,
    registry: Registry,
    running: Mutex<HashMap<String, Arc<Attempt>>>,
    /// Signalled when an attempt leaves `running`.
    freed: Condvar,
    concurrency: usize,
    /// The names claimed, with their type fingerprints.
    served: Vec<(&'static str, u64)>,
    /// Their queues' bells.
    bell_keys: Vec<String>,
    /// Who claims, and what claiming keeps between claims; locked before
    /// `running` where both are.
    leader: Mutex<Leader>,
    /// Signalled when nobody leads any more.
    led: Condvar,
    /// Wakes the acknowledger when it is idle.
    acks: Sender<()>,
    /// The acknowledger waits for a wake-up (rather than looking every
    /// [`ACK_DELAY`]).
    acks_idle: AtomicBool,
    /// How many messages the bodies took, in all.
    takes: AtomicU64,
    /// The worker's doorbell: copies of its tasks' inbox entries, read by
    /// the inbox reader and by a body waiting for a message.
    bell: Doorbell,
    /// Doorbell entries of tasks claimed but not registered yet (a claim
    /// run by Redis right after a bell, whose answer is on its way), by
    /// id, with when they came; locked inside `running`'s lock.
    orphans: Mutex<HashMap<String, Vec<(Instant, StreamId)>>>,
    closing: AtomicBool,
    block: Duration,
    max_message: usize,
    /// Each task in a child process.
    isolate: bool,
    /// A claim or renewal failed: its answer, which would have said that
    /// it made the doorbell, may be lost; the next renewal reads the
    /// running attempts' inboxes.
    bell_unsure: AtomicBool,
}

impl Hub {
    /// Claims up to `k` tasks; returns their jobs.
    fn claim(self: &Arc<Self>, k: usize) -> Result<Vec<Job>, RemoteError> {
        let mut con = self.client.connection()?;
        let claimed: Claimed = self.claim_request(k).invoke(&mut *con).map_err(|e| {
            self.bell_unsure.store(true, Ordering::SeqCst);
            let e = self.client.error(e);
            con.discard_if(&e);
            e
        })?;
        drop(con);
        Ok(self.take(claimed))
    }

    /// Waits for a bell of the served queues at most `block`, and has Redis
    /// claim up to `k` tasks the moment it rings: the claim goes in the same
    /// write as the wait, so it costs no round trip of its own. Returns the
    /// jobs of the tasks claimed.
    fn wait_and_claim(
        self: &Arc<Self>,
        con: &mut redis::Connection,
        k: usize,
    ) -> redis::RedisResult<Vec<Job>> {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(scripts::CLAIM.get_hash());
        // `claim_request` set one key: `running`.
        evalsha
            .arg(1)
            .arg(self.client.key(format_args!("running")))
            .arg(self.client.key_prefix())
            .arg(&self.name)
            .arg(k);
        for (name, fp) in &self.served {
            evalsha.arg(*name).arg(fp.to_string());
        }
        let (_, claimed): (Option<(String, String)>, Claimed) = redis::pipe()
            .cmd("BRPOP")
            .arg(&self.bell_keys)
            .arg(self.block.as_secs_f64())
            .add_command(evalsha)
            .query(con)
            .inspect_err(|_| self.bell_unsure.store(true, Ordering::SeqCst))?;
        Ok(self.take(claimed))
    }

    /// The claim of up to `k` tasks of the served queues.
    fn claim_request(&self, k: usize) -> redis::ScriptInvocation<'static> {
        let mut invocation = scripts::CLAIM.key(self.client.key(format_args!("running")));
        invocation
            .arg(self.client.key_prefix())
            .arg(&self.name)
            .arg(k);
        for (name, fp) in &self.served {
            invocation.arg(*name).arg(fp.to_string());
        }
        invocation
    }

    /// Prepares what a claim returned and reports its refusals; returns
    /// the jobs that run the tasks claimed.
    fn take(self: &Arc<Self>, (claimed, refused, made): Claimed) -> Vec<Job> {
        if made == 1 {
            self.bell_made();
        }
        for (id, why) in refused {
            tracing::warn!(worker = self.name, task.id = id, why, "a task was refused");
        }
        let mut jobs = Vec::with_capacity(claimed.len());
        for fields in claimed {
            let text: Vec<String> = fields
                .iter()
                .map(|v| match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::Int(n) => n.to_string(),
                    redis::Value::SimpleString(s) => s.clone(),
                    _ => String::new(),
                })
                .collect();
            let arg = match &fields.get(3) {
                Some(redis::Value::BulkString(b)) => b.clone(),
                _ => Vec::new(),
            };
            jobs.extend(self.start(&text, arg));
        }
        jobs
    }

    /// Registers a claimed task and returns the job that runs it (`None`:
    /// it could not start, and its end was written): `f` is `{id, token,
    /// name, argument, inbox, grace, timeout, read, stop, kill, attempt,
    /// lease, messages read, last inbox entry}`. A closed inbox is said by
    /// its entry, after the messages sent before it.
    fn start(self: &Arc<Self>, f: &[String], arg: Vec<u8>) -> Option<Job> {
        let [
            id,
            token,
            name,
            _,
            cap,
            grace,
            tmo,
            read,
            stop,
            kill,
            attempt,
            lease,
            nread,
            inlast,
        ] = f
        else {
            tracing::warn!(worker = self.name, "a claim came back malformed");
            return None;
        };
        let ms = |s: &str| Duration::from_millis(s.parse().unwrap_or(0));
        let now = Instant::now();
        let attempt_no: u32 = attempt.parse().unwrap_or(1);
        let entry = self.registry.get(name);
        let prepared = match entry {
            _ if arg.len() > self.max_message => Err(format!(
                "the argument is {} bytes, over the largest message of {} bytes",
                arg.len(),
                self.max_message
            )),
            Some(_) if self.isolate => crate::backend::process::prepare_isolated(
                name,
                self.registry.fingerprint(name).unwrap_or_default(),
                &arg,
                cap.parse().unwrap_or(1).max(1),
                ms(grace),
                self.max_message,
            ),
            Some(entry) => (entry.prepare)(&arg, cap.parse().unwrap_or(1).max(1)),
            None => Err(format!("this worker does not know the task `{name}`")),
        };
        let running = Arc::new(Attempt {
            id: id.clone(),
            token: token.clone(),
            tkey: self.client.key(format_args!("t:{id}")),
            hub: Arc::downgrade(self),
            inlet: Mutex::new(None),
            isolated: self.isolate,
            inbox: Mutex::new(Inbox {
                cursor: Sid::parse(read).unwrap_or(Sid::ZERO),
                read: Sid::parse(read).unwrap_or(Sid::ZERO),
                // The read count carries over from earlier attempts.
                nread: nread.parse().unwrap_or(0),
                acked: nread.parse().unwrap_or(0),
                delivered: VecDeque::new(),
                waiting: VecDeque::new(),
            }),
            ended: AtomicBool::new(false),
            grace: ms(grace),
            lease: ms(lease),
            stop_at: Mutex::new(None),
            deadline: Some(ms(tmo)).filter(|d| !d.is_zero()).map(|d| now + d),
        });
        let prepared = match prepared {
            Ok(p) => p,
            Err(why) => {
                running.end(end::crashed(&CrashCause::Start(why), &[]));
                return None;
            }
        };
        *lock(&running.inlet) = Some(prepared.inlet.clone());
        let orphans = {
            let mut all = lock(&self.running);
            all.insert(id.clone(), running.clone());
            lock(&self.orphans).remove(id).unwrap_or_default()
        };
        // What was sent before this claim (or not read by an earlier
        // attempt) is read from the inbox stream; what is sent from now on
        // rings this worker's doorbell.
        let unread =
            Sid::parse(inlast).unwrap_or(Sid::ZERO) > Sid::parse(read).unwrap_or(Sid::ZERO);
        if unread {
            self.catch_up(&running);
        }
        // Rung between the claim and its registration.
        for (_, entry) in &orphans {
            self.ring(&running, entry);
        }
        if kill == "1" {
            running.kill();
        } else if stop == "1" {
            // Asked to stop before the claim.
            running.stop();
        } else if self.closing.load(Ordering::SeqCst) {
            // Claimed by a wait that outlasted the worker's own end.
            running.stop_by(Stop::Close);
        }
        tracing::debug!(
            worker = self.name,
            task.id = id,
            task.name = name,
            attempt = attempt_no,
            "claimed"
        );
        let line: Arc<dyn Line> = running.clone();
        let run = prepared.run;
        Some(Box::new(move || {
            let ended = run(line);
            running.end(end::from_ended(ended));
            running.leave();
        }))
    }

    /// Takes the lead if nobody has it, a slot is free and the worker is
    /// not closing.
    fn try_lead(&self) -> bool {
        let mut leader = lock(&self.leader);
        if leader.leading
            || self.closing.load(Ordering::SeqCst)
            || lock(&self.running).len() >= self.concurrency
        {
            return false;
        }
        leader.leading = true;
        true
    }

    /// Gives the lead up; `leader` is the lead's lock, held.
    fn give_up_lead(&self, leader: &mut Leader) {
        leader.leading = false;
        self.led.notify_all();
    }

    /// Gives the lead up if no slot is free or the worker is closing;
    /// `leader` is the lead's lock, held.
    fn release_if_full(&self, leader: &mut Leader) -> bool {
        let full = lock(&self.running).len() >= self.concurrency;
        if full || self.closing.load(Ordering::SeqCst) {
            self.give_up_lead(leader);
            return true;
        }
        false
    }

    /// The leader's loop (see [`Leader`]), on a thread that holds the lead.
    fn lead(self: &Arc<Self>) {
        let mut holding = LeadOnUnwind {
            hub: self,
            holds: true,
        };
        loop {
            let free = {
                let mut leader = lock(&self.leader);
                if self.release_if_full(&mut leader) {
                    holding.holds = false;
                    return;
                }
                self.concurrency.saturating_sub(lock(&self.running).len())
            };
            let mut jobs = self.claim_next(free);
            let Some(mine) = jobs.pop() else { continue };
            for job in jobs {
                self.run_aside(job);
            }
            // The lead goes on elsewhere while a slot stays free.
            let released = self.release_if_full(&mut lock(&self.leader));
            holding.holds = false;
            if !released {
                self.lead_aside();
            }
            mine();
            if !self.try_lead() {
                return;
            }
            holding.holds = true;
        }
    }

    /// Hands the lead (held) to a thread of the thread place.
    fn lead_aside(self: &Arc<Self>) {
        let hub = Arc::clone(self);
        let lead: Job = Box::new(move || hub.lead());
        if let Err((lead, e)) = place::execute(lead) {
            tracing::warn!(error = %e, "no thread for the worker's claims; starting one");
            let spawned = thread::Builder::new()
                .name("sidetask-redis-claims".into())
                .spawn(lead);
            if spawned.is_err() {
                // Nobody can claim: the next task to end takes the lead.
                self.give_up_lead(&mut lock(&self.leader));
            }
        }
    }

    /// Runs a claimed task's job on a thread of the thread place; that
    /// thread takes the lead afterwards if nobody has it.
    fn run_aside(self: &Arc<Self>, job: Job) {
        let hub = Arc::clone(self);
        let job: Job = Box::new(move || {
            job();
            if hub.try_lead() {
                hub.lead();
            }
        });
        if let Err((job, e)) = place::execute(job) {
            tracing::warn!(error = %e, "no thread for a remote task; running it on the leader");
            job();
        }
    }

    /// One claim of up to `free` tasks (or a wait for a bell, and the
    /// claim with it), by the leader; the jobs of the tasks claimed.
    fn claim_next(self: &Arc<Self>, free: usize) -> Vec<Job> {
        // Only the leader claims: its state is out of the lock meanwhile
        // (the lead stays taken).
        let mut state = {
            let mut leader = lock(&self.leader);
            let state = std::mem::take(&mut *leader);
            leader.leading = state.leading;
            state
        };
        let jobs = self.claim_with(&mut state, free);
        let mut leader = lock(&self.leader);
        state.leading = leader.leading;
        *leader = state;
        jobs
    }

    fn claim_with(self: &Arc<Self>, state: &mut Leader, free: usize) -> Vec<Job> {
        if !state.waiting {
            match self.claim(free) {
                Ok(jobs) if !jobs.is_empty() => {
                    state.backoff = FIRST_BACKOFF;
                    return jobs;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(worker = self.name, error = %e, "could not claim; retrying");
                    thread::sleep(state.backoff);
                    state.backoff = (state.backoff * 2).min(Duration::from_secs(2));
                    return Vec::new();
                }
            }
        }
        // Nothing to claim: wait for a bell.
        if state.bells.is_none() {
            state.bells = self
                .client
                .blocking(Some(self.block * 2 + Duration::from_secs(5)))
                .ok();
        }
        match state.bells.as_mut() {
            // A single server: the claim follows the wait in one write.
            Some(Conn::Single(con)) => match self.wait_and_claim(con, free) {
                Ok(jobs) => {
                    state.waiting = true;
                    jobs
                }
                Err(_) => {
                    // Broken, or the script is not loaded (a restarted
                    // server): the next claim loads it.
                    state.waiting = false;
                    state.bells = None;
                    Vec::new()
                }
            },
            // A cluster: the wait, then the claim at the top.
            #[cfg(feature = "redis-cluster")]
            Some(con) => {
                let waited: redis::RedisResult<Option<(String, String)>> =
                    con.brpop(&self.bell_keys, self.block.as_secs_f64());
                if waited.is_err() {
                    state.bells = None;
                }
                Vec::new()
            }
            None => {
                thread::sleep(state.backoff);
                Vec::new()
            }
        }
    }

    /// Whether the worker is closing, nobody claims any more and no attempt
    /// runs: its helper threads may end.
    fn finished(&self) -> bool {
        let leader = lock(&self.leader);
        self.closing.load(Ordering::SeqCst) && !leader.leading && lock(&self.running).is_empty()
    }

    /// Waits until nobody leads, at most `bound`.
    fn wait_for_no_leader(&self, bound: Duration) {
        let leader = lock(&self.leader);
        let _ = self
            .led
            .wait_timeout_while(leader, bound, |leader| leader.leading);
    }

    /// The worker's doorbell was missing (not made yet, deleted, or lost
    /// with Redis's data) and has just been made: what rang it meanwhile is
    /// read from the running attempts' inboxes.
    fn bell_made(&self) {
        tracing::debug!(worker = self.name, "the worker's doorbell was made");
        for a in self.attempts() {
            self.catch_up(&a);
        }
    }

    /// Reads `attempt`'s inbox stream after its cursor, on a connection of
    /// the client's.
    fn catch_up(&self, attempt: &Attempt) {
        let key = self.client.key(format_args!("in:{}", attempt.id));
        let from = lock(&attempt.inbox).cursor;
        let read: Result<redis::streams::StreamRangeReply, _> =
            self.client.run(|con| con.xrange(&key, from.after(), "+"));
        match read {
            Ok(reply) => {
                for entry in &reply.ids {
                    if let Some(sid) = Sid::parse(&entry.id) {
                        attempt.apply(sid, entry, self.max_message);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(task.id = attempt.id, error = %e, "could not read a task's inbox")
            }
        }
        // A body whose mark came before looks at its inbox again.
        self.bell.bump();
    }

    /// The running attempt of task `id`; or, if there is none, keeps
    /// `entry` for a claim of it not registered yet (a task that ended
    /// leaves its entry to be forgotten after a while).
    fn attempt_or_orphan(&self, id: &str, entry: &StreamId) -> Option<Arc<Attempt>> {
        let running = lock(&self.running);
        if let Some(a) = running.get(id) {
            return Some(a.clone());
        }
        let mut orphans = lock(&self.orphans);
        let now = Instant::now();
        orphans.retain(|_, v| {
            v.retain(|(at, _)| now.duration_since(*at) < ORPHAN_KEPT);
            !v.is_empty()
        });
        orphans
            .entry(id.to_owned())
            .or_default()
            .push((now, entry.clone()));
        None
    }

    /// Applies a doorbell entry to its task's attempt, or keeps it for a
    /// claim not registered yet.
    fn apply_bell(&self, entry: &StreamId) {
        let Some(id) = text(entry, "id") else {
            return;
        };
        if let Some(a) = self.attempt_or_orphan(&id, entry) {
            self.ring(&a, entry);
        }
    }

    /// Applies a doorbell entry to `a` if it follows what `a` has seen;
    /// otherwise reads `a`'s inbox stream from its cursor.
    fn ring(&self, a: &Attempt, entry: &StreamId) {
        let Some(sid) = text(entry, "sid").and_then(|s| Sid::parse(&s)) else {
            return;
        };
        let prev = text(entry, "prev").and_then(|s| Sid::parse(&s));
        let cursor = lock(&a.inbox).cursor;
        if sid <= cursor {
            return;
        }
        if prev == Some(cursor) {
            a.apply(sid, entry, self.max_message);
        } else {
            self.catch_up(a);
        }
    }

    /// Rings the worker's doorbell with an entry for no task, so that a
    /// body reading it for a message looks at its flags again: a stop or
    /// kill this worker decided on its own (a timeout, a grace period, a
    /// lost lease) reaches a body that waits for a message at once. A
    /// doorbell that had to be made for it is reported as the renewal's
    /// would be ([`bell_made`](Hub::bell_made)).
    fn nudge(&self) {
        let rung = self.client.run(|con| {
            scripts::NUDGE
                .key(&self.bell.key)
                .arg(self.client.key_prefix())
                .invoke::<i64>(con)
        });
        match rung {
            Ok(1) => self.bell_made(),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(worker = self.name, error = %e, "could not ring the worker's doorbell")
            }
        }
    }

    fn attempts(&self) -> Vec<Arc<Attempt>> {
        lock(&self.running).values().cloned().collect()
    }

    /// Stops claiming; asks every running attempt to stop and waits for
    /// them, at most their grace period; the keeper sees to the rest (a
    /// child killed and its task given back, a thread body waited for).
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let attempts = self.attempts();
        let grace = attempts.iter().map(|a| a.grace).max().unwrap_or_default();
        for a in &attempts {
            a.stop_by(Stop::Close);
        }
        self.nudge();
        let deadline = Instant::now() + grace;
        let mut running = lock(&self.running);
        while !running.is_empty() && Instant::now() < deadline {
            running = self
                .freed
                .wait_timeout(running, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// Gives the lead up if its thread panics while it holds it (`holds`), so
/// that another takes it.
struct LeadOnUnwind<'a> {
    hub: &'a Hub,
    holds: bool,
}

impl Drop for LeadOnUnwind<'_> {
    fn drop(&mut self) {
        if self.holds && thread::panicking() {
            self.hub.give_up_lead(&mut lock(&self.hub.leader));
        }
    }
}

/// One claimed attempt at a task, running here.
struct Attempt {
    id: String,
    token: String,
    tkey: String,
    hub: Weak<Hub>,
    inlet: Mutex<Option<Arc<dyn Inlet>>>,
    /// It runs in a child process.
    isolated: bool,
    inbox: Mutex<Inbox>,
    /// Its outcome was written (or can no longer be).
    ended: AtomicBool,
    grace: Duration,
    lease: Duration,
    /// When its first stop turns into a kill, and whose stop that is: past
    /// its closing worker's, a thread body is waited for and a child's
    /// kill gives the task back, where past a stop the client asked for,
    /// or a timeout, the attempt is killed.
    stop_at: Mutex<Option<(Instant, Stop)>>,
    /// When the task's timeout stops it.
    deadline: Option<Instant>,
}

/// Whose stop an attempt's is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client's, or the task's timeout: past the grace period, it is
    /// killed.
    Asked,
    /// Its worker's, closing: past the grace period, a child is killed and
    /// the task given back; a thread body is waited for.
    Close,
}

/// The messages of an attempt.
struct Inbox {
    /// The last message entry seen.
    cursor: Sid,
    /// The last message the body took, and how many it took in all.
    read: Sid,
    nread: u64,
    /// How many Redis has been told of.
    acked: u64,
    /// The ids of the messages in the body's inbox, oldest first.
    delivered: VecDeque<Sid>,
    /// Messages the body's inbox had no room for yet, and a close that
    /// came after them (`None`).
    waiting: VecDeque<(Sid, Option<Vec<u8>>)>,
}

impl Attempt {
    fn inlet(&self) -> Option<Arc<dyn Inlet>> {
        lock(&self.inlet).clone()
    }

    /// Runs `script` on the task's hash with the prefix, id, token and
    /// `args`; `false` if the attempt was fenced off (or Redis failed).
    fn write(&self, script: &redis::Script, args: &[&[u8]]) -> bool {
        let Some(hub) = self.hub.upgrade() else {
            return false;
        };
        let written = hub.client.run(|con| {
            let mut invocation = script.key(&self.tkey);
            invocation
                .arg(hub.client.key_prefix())
                .arg(&self.id)
                .arg(&self.token);
            for a in args {
                invocation.arg(*a);
            }
            invocation.invoke::<i64>(con)
        });
        match written {
            Ok(1) => true,
            Ok(_) => {
                self.fenced();
                false
            }
            Err(e) => {
                tracing::warn!(task.id = self.id, error = %e, "a remote task's write failed");
                false
            }
        }
    }

    /// Another attempt holds the task now (or nobody does): nothing of
    /// this one is written any more, and its body is asked to stop.
    /// Returns whether its body must be woken to see it (see
    /// [`wakes_body`](Attempt::wakes_body)).
    fn fenced(&self) -> bool {
        let first = !self.ended.swap(true, Ordering::SeqCst);
        if first {
            tracing::warn!(task.id = self.id, "the attempt lost its lease; stopping it");
        }
        if let Some(inlet) = self.inlet() {
            inlet.stop();
        }
        self.wakes_body(first)
    }

    /// Whether a change of the attempt's flags (`new`: it changed them)
    /// must wake its body: one waiting for a message reads the worker's
    /// doorbell, which only an entry wakes ([`Hub::nudge`]); an isolated
    /// attempt's body reads its own connection.
    fn wakes_body(&self, new: bool) -> bool {
        new && !self.isolated
    }

    /// Writes the outcome, once (the script refuses it if the attempt was
    /// fenced off meanwhile).
    fn end(&self, (kind, data): (&'static str, Vec<u8>)) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let (read, nread) = {
            let inbox = lock(&self.inbox);
            (inbox.read.to_string(), inbox.nread.to_string())
        };
        let args: [&[u8]; 4] = [kind.as_bytes(), &data, read.as_bytes(), nread.as_bytes()];
        if kind == "killed" && self.isolated && self.stopped_by() == Some(Stop::Close) {
            // Killed by the escalation of its closing worker's stop: given
            // back, unless a stop or kill was asked for meanwhile (then
            // this end is the outcome).
            if self.write(&scripts::GIVE_BACK, &args) {
                tracing::info!(task.id = self.id, "gave the task back as the worker closed");
            }
        } else {
            let _ = self.write(&scripts::FINISH, &args);
        }
        if let Some(inlet) = self.inlet() {
            inlet.done();
        }
    }

    /// The attempt's thread returned: its slot is free.
    fn leave(&self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut running = lock(&hub.running);
            // Only this attempt's entry: after its lease was lost, this
            // worker may have claimed the task again, whose new attempt
            // runs under the same id.
            if running
                .get(&self.id)
                .is_some_and(|a| std::ptr::eq(Arc::as_ptr(a), self))
            {
                running.remove(&self.id);
            }
            drop(running);
            hub.freed.notify_all();
        }
    }

    /// Asks the body to stop, and kills it after the grace period; returns
    /// whether its body must be woken to see it (the first stop).
    fn stop(&self) -> bool {
        self.stop_by(Stop::Asked)
    }

    /// [`stop`](Attempt::stop), saying whose stop it is: the first one's
    /// decides what happens past the grace period (`stop_at`).
    fn stop_by(&self, by: Stop) -> bool {
        if let Some(inlet) = self.inlet() {
            inlet.stop();
        }
        // A child's own escalation tells it to terminate after the grace
        // period and kills it after another: the keeper's kill waits for
        // that.
        let grace = if self.isolated {
            self.grace * 2
        } else {
            self.grace
        };
        let mut at = lock(&self.stop_at);
        let first = at.is_none();
        if first {
            *at = Some((Instant::now() + grace, by));
        }
        self.wakes_body(first)
    }

    /// Whose stop came first, if one came.
    fn stopped_by(&self) -> Option<Stop> {
        lock(&self.stop_at).map(|(_, by)| by)
    }

    /// Ends the task as killed at once. A thread cannot be killed: its
    /// body is asked to stop, and whatever it writes later is refused. A
    /// child process is killed, and its end is the outcome. Returns whether
    /// its body must be woken to see it (it had not ended).
    fn kill(&self) -> bool {
        let first = !self.ended.load(Ordering::SeqCst);
        if !self.isolated {
            // The outcome first: the body, woken by the stop, must not
            // record its own.
            self.end(end::killed(None, &[]));
        }
        if let Some(inlet) = self.inlet() {
            inlet.kill();
        }
        self.wakes_body(first)
    }

    /// A message entry of the inbox.
    fn offer(&self, sid: Sid, bytes: Vec<u8>, max: usize) {
        let Some(inlet) = self.inlet() else { return };
        let bad = {
            let mut inbox = lock(&self.inbox);
            if sid <= inbox.cursor {
                return;
            }
            inbox.cursor = sid;
            if !inbox.waiting.is_empty() {
                inbox.waiting.push_back((sid, Some(bytes)));
                return;
            }
            self.hand(&mut inbox, &*inlet, sid, &bytes, max)
        };
        // Out of the inbox's lock, which the end takes.
        if let Some(why) = bad {
            self.malformed(why);
        }
    }

    /// An inbox entry (or its copy): a message, or a stop, kill or close.
    fn apply(&self, sid: Sid, entry: &redis::streams::StreamId, max: usize) {
        if let Some(bytes) = field(entry, "m") {
            self.offer(sid, bytes, max);
            return;
        }
        let request = text(entry, "c");
        {
            let mut inbox = lock(&self.inbox);
            if sid <= inbox.cursor {
                return;
            }
            inbox.cursor = sid;
            if request.as_deref() == Some("close") && !inbox.waiting.is_empty() {
                inbox.waiting.push_back((sid, None));
                return;
            }
        }
        match request.as_deref() {
            Some("stop") => {
                self.stop();
            }
            Some("kill") => {
                self.kill();
            }
            Some("close") => {
                if let Some(inlet) = self.inlet() {
                    inlet.close();
                }
            }
            _ => {}
        }
    }

    /// Hands a message to the body (or, if its inbox has no room, keeps it
    /// waiting); returns why the message is bad, if it is, for the caller
    /// to say once it let go of the inbox (`malformed`).
    fn hand(
        &self,
        inbox: &mut Inbox,
        inlet: &dyn Inlet,
        sid: Sid,
        bytes: &[u8],
        max: usize,
    ) -> Option<String> {
        if bytes.len() > max {
            return Some(format!(
                "a message of {} bytes is over the largest of {max} bytes",
                bytes.len()
            ));
        }
        match inlet.deliver(bytes) {
            Ok(Delivered::Taken) => inbox.delivered.push_back(sid),
            Ok(Delivered::Full) => inbox.waiting.push_front((sid, Some(bytes.to_vec()))),
            Ok(Delivered::Refused) => {}
            Err(why) => return Some(format!("a message did not decode: {why}")),
        }
        None
    }

    fn malformed(&self, why: String) {
        tracing::warn!(
            task.id = self.id,
            why,
            "a remote task was sent a bad message"
        );
        if let Some(inlet) = self.inlet() {
            inlet.stop();
        }
        self.end(end::crashed(&CrashCause::Protocol(why), &[]));
    }

    /// Tells Redis how far the body read, if it read more.
    fn acknowledge(&self) {
        let (read, nread) = {
            let inbox = lock(&self.inbox);
            if inbox.nread == inbox.acked {
                return;
            }
            (inbox.read, inbox.nread)
        };
        if self.ended.load(Ordering::SeqCst) {
            return;
        }
        if self.write(
            &scripts::ACK,
            &[read.to_string().as_bytes(), nread.to_string().as_bytes()],
        ) {
            let mut inbox = lock(&self.inbox);
            inbox.acked = inbox.acked.max(nread);
        }
    }
}

impl Line for Attempt {
    fn event(&self, bytes: Vec<u8>, wait: bool) -> Result<(), Full> {
        let _ = wait;
        if !self.ended.load(Ordering::SeqCst) {
            // How far the body read goes with the event: an answer to a
            // message acknowledges it at no extra cost.
            let (read, nread) = {
                let inbox = lock(&self.inbox);
                (inbox.read, inbox.nread)
            };
            if self.write(
                &scripts::EMIT,
                &[
                    read.to_string().as_bytes(),
                    nread.to_string().as_bytes(),
                    &bytes,
                ],
            ) {
                let mut inbox = lock(&self.inbox);
                inbox.acked = inbox.acked.max(nread);
            }
        }
        Ok(())
    }

    fn broken(&self, why: String) {
        if let Some(inlet) = self.inlet() {
            inlet.stop();
        }
        self.end(end::crashed(&CrashCause::Protocol(why), &[]));
    }

    fn taken(&self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut bad = None;
        {
            let mut inbox = lock(&self.inbox);
            if let Some(sid) = inbox.delivered.pop_front() {
                inbox.read = sid;
                inbox.nread += 1;
            }
            // Room for one that waited (and the close after the last).
            while let Some((sid, bytes)) = inbox.waiting.pop_front() {
                let Some(inlet) = self.inlet() else { break };
                match bytes {
                    Some(bytes) => {
                        bad = self.hand(&mut inbox, &*inlet, sid, &bytes, hub.max_message);
                        break;
                    }
                    None => inlet.close(),
                }
            }
        }
        // Out of the inbox's lock, which the end takes.
        if let Some(why) = bad {
            self.malformed(why);
        }
        // The acknowledger looks every `ACK_DELAY` while bodies take
        // messages; it is woken only when it has gone idle.
        hub.takes.fetch_add(1, Ordering::SeqCst);
        if hub.acks_idle.swap(false, Ordering::SeqCst) {
            let _ = hub.acks.try_send(());
        }
    }

    fn mark(&self) -> u64 {
        self.hub.upgrade().map_or(0, |hub| hub.bell.mark())
    }

    fn pull(&self, until: Option<Instant>, since: u64) -> Served {
        // A child's messages go through its place's own connection.
        if self.isolated {
            return Served::Busy;
        }
        let Some(hub) = self.hub.upgrade() else {
            return Served::Busy;
        };
        hub.bell
            .pull(&hub.client, until, since, |_, entry| hub.apply_bell(entry))
    }

    fn hurry(&self) {}
}

/// The inbox reader: one blocking read of the worker's doorbell, whose
/// entries are copies of the inbox entries of the tasks it runs. A copy
/// that follows an attempt's cursor is applied; otherwise the attempt's
/// inbox stream is read from its cursor, so that nothing is skipped and
/// nothing is applied twice.
fn read_inboxes(hub: &Weak<Hub>) {
    let mut con: Option<Conn> = None;
    loop {
        let Some(h) = hub.upgrade() else { return };
        if h.finished() {
            return;
        }
        let c = match con.as_mut() {
            Some(c) => c,
            None => match h.client.blocking(Some(h.block + Duration::from_secs(5))) {
                Ok(c) => {
                    // What rang while disconnected is read from the inboxes.
                    for a in h.attempts() {
                        h.catch_up(&a);
                    }
                    con.insert(c)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the worker's inbox reader could not connect");
                    let block = h.block;
                    drop(h);
                    thread::sleep(block.min(Duration::from_millis(500)));
                    continue;
                }
            },
        };
        // A body that waits for a message reads the doorbell itself, for
        // every attempt. The worker's name is its own: whatever its
        // doorbell holds is for it.
        if let Err(e) = h.bell.read_aside(c, &mut |_, entry| h.apply_bell(entry)) {
            tracing::debug!(error = %e, "the worker's inbox reader lost its connection");
            con = None;
        }
    }
}
/// The keeper: renews leases, applies stops and kills, enforces grace
/// periods and timeouts, and reaps.
fn keep(hub: &Weak<Hub>) {
    let mut last_renewal = Instant::now();
    loop {
        let Some(h) = hub.upgrade() else { return };
        let attempts = h.attempts();
        if attempts.is_empty() && h.finished() {
            return;
        }
        let lease = lease_of(&attempts);
        let now = Instant::now();
        // Whether a body must be told of a stop or kill decided here.
        let mut nudge = false;
        for a in &attempts {
            let at = *lock(&a.stop_at);
            if let Some((at, by)) = at
                && now >= at
            {
                // Past its closing worker's stop, a thread body is waited
                // for (it cannot be killed), and reports how it ends; a
                // child is killed, and its end gives the task back.
                if a.isolated || by == Stop::Asked {
                    nudge |= a.kill();
                }
            } else if a.deadline.is_some_and(|d| now >= d) {
                nudge |= a.stop();
            }
        }
        match renew(&h, &attempts) {
            Ok(mut flags) => {
                last_renewal = now;
                let made = flags.pop() == Some(1);
                if made || h.bell_unsure.swap(false, Ordering::SeqCst) {
                    h.bell_made();
                }
                for (a, flag) in attempts.iter().zip(flags) {
                    nudge |= match flag {
                        0 => a.fenced(),
                        2 => a.stop(),
                        3 => a.kill(),
                        _ => false,
                    };
                }
            }
            Err(e) => {
                tracing::warn!(worker = h.name, error = %e, "could not renew the leases");
                h.bell_unsure.store(true, Ordering::SeqCst);
                // Past most of the lease, another worker may take over:
                // this one stops writing and stops its attempts first.
                if now.duration_since(last_renewal) > lease * 4 / 5 {
                    for a in &attempts {
                        nudge |= a.fenced();
                    }
                }
            }
        }
        if nudge {
            h.nudge();
        }
        if let Ok(mut con) = h.client.connection() {
            let reaped: redis::RedisResult<i64> = scripts::REAP
                .key(h.client.key(format_args!("running")))
                .arg(h.client.key_prefix())
                .invoke(&mut *con);
            if let Ok(n) = reaped
                && n > 0
            {
                tracing::info!(worker = h.name, n, "reaped the tasks of vanished workers");
            }
        }
        let tick = (lease / 3).clamp(Duration::from_millis(20), Duration::from_secs(1));
        drop(h);
        thread::sleep(tick);
    }
}

/// The process's one flag for [`Worker::run`]'s signals (`SIGTERM`,
/// `SIGINT`), their handling installed at the first call: `true` while no
/// `run` waits for them, so that a signal does what it does by default;
/// `false` while one runs and no signal came; the first signal sets it
/// (and a second then acts by default).
fn told() -> Result<&'static AtomicBool, RemoteError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static TOLD: AtomicBool = AtomicBool::new(true);
    static HANDLED: OnceLock<Result<(), String>> = OnceLock::new();
    HANDLED
        .get_or_init(|| {
            for signal in [SIGTERM, SIGINT] {
                // The default action first, so that it runs only when the
                // flag was set before this signal.
                signal_hook::flag::register_conditional_default(signal, &TOLD)
                    .and_then(|_| signal_hook::flag::register(signal, &TOLD))
                    .map_err(|e| format!("could not handle signal {signal}: {e}"))?;
            }
            Ok(())
        })
        .clone()
        .map(|()| &TOLD)
        .map_err(RemoteError::invalid)
}

/// Takes the worker `name` out of the live workers, with its description
/// and its doorbell, as it ends (should Redis not answer, they expire).
fn leave(client: &Client, name: &str) {
    let done = client.run(|con| {
        scripts::LEAVE
            .key(client.key(format_args!("w:{name}")))
            .arg(client.key_prefix())
            .arg(name)
            .invoke::<i64>(con)
    });
    if let Err(e) = done {
        tracing::debug!(worker = name, error = %e, "could not say the worker ended");
    }
}

/// The shortest lease of the running attempts (a second if none runs).
fn lease_of(attempts: &[Arc<Attempt>]) -> Duration {
    attempts
        .iter()
        .map(|a| a.lease)
        .min()
        .unwrap_or(Duration::from_secs(1))
}

fn renew(hub: &Hub, attempts: &[Arc<Attempt>]) -> Result<Vec<i64>, RemoteError> {
    let mut con = hub.client.connection()?;
    let running: Vec<&str> = attempts.iter().map(|a| a.id.as_str()).collect();
    let mut invocation = scripts::RENEW.key(hub.client.key(format_args!("running")));
    invocation
        .arg(hub.client.key_prefix())
        .arg(&hub.name)
        .arg(format!(
            "pid={} running={}",
            std::process::id(),
            running.join(",")
        ))
        .arg(3000);
    for a in attempts {
        invocation.arg(&a.id).arg(&a.token);
    }
    invocation.invoke(&mut *con).map_err(|e| {
        let e = hub.client.error(e);
        con.discard_if(&e);
        e
    })
}

/// The acknowledger: tells Redis how far each attempt read, coalescing.
///
/// It looks every [`ACK_DELAY`] while bodies take messages (a body that
/// answers what it reads acknowledges it with the answer, so a look mostly
/// finds nothing to do), and goes idle after a look that found none taken
/// since the one before; a take then wakes it. So a body that reads and
/// answers in a loop costs it no wake-up per message.
fn acknowledge(hub: &Weak<Hub>, wake: &Receiver<()>) {
    loop {
        match wake.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => match hub.upgrade() {
                Some(h) if !h.finished() => continue,
                _ => return,
            },
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let mut seen = None;
        loop {
            thread::sleep(ACK_DELAY);
            let Some(h) = hub.upgrade() else { return };
            let takes = h.takes.load(Ordering::SeqCst);
            for a in h.attempts() {
                a.acknowledge();
            }
            if seen == Some(takes) {
                h.acks_idle.store(true, Ordering::SeqCst);
                // A take between the count's load and the store woke
                // nobody: look again, unless a later take woke this thread
                // (the idle flag was taken back).
                if h.takes.load(Ordering::SeqCst) == takes
                    || !h.acks_idle.swap(false, Ordering::SeqCst)
                {
                    break;
                }
            }
            seen = Some(takes);
        }
    }
}
