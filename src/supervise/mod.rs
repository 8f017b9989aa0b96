//! Keeping tasks alive: a supervisor restarts a task by policy, with
//! backoff and a restart-intensity limit.
//!
//! # Glossary
//!
//! - *factory*: the user's closure that makes each attempt (a task of any
//!   place); a supervisor knows no place.
//! - *attempt*: one task made by the factory, numbered from 1.
//! - *streak*: the restarts in a row since an attempt last ran for at least
//!   the backoff's ceiling; it sets the next delay.
//! - *window*: the intensity's span of time; more restarts than its limit
//!   within it and the supervisor gives up.
//!
//! # How it works
//!
//! A supervised handle ([`Supervised`]) is an ordinary thread task whose
//! body is the supervisor loop (`single`): it makes an attempt, forwards
//! the attempt's events out (reading them is how it learns the attempt
//! ended), and decides on a restart. A second worker, the *pump*, moves
//! the messages sent to the supervised handle into the current attempt, one
//! at a time; while no attempt can take one (backing off, or an attempt
//! ending) it holds that one message. A stop or kill on the supervised
//! handle reaches the current attempt through the handle's stop hook, on
//! the caller's thread.
//!
//! A supervised group ([`SupervisedGroup`], `tree`) is a thread task too:
//! one watcher per running child waits for its end (draining its events)
//! and tells the group's loop over a channel; the loop applies the
//! strategy.
//!
//! # Invariants
//!
//! 1. A message is in one place at a time: the supervised handle's inbox,
//!    the pump, the current attempt's inbox, the carried list between two
//!    attempts, or the list given back at the end, in the order it was
//!    sent.
//! 2. An attempt is published to the pump only after the messages carried
//!    from the one before were put at the front of its inbox.
//! 3. Supervision ends only once the current attempt has ended: nothing it
//!    started is left behind by the supervisor.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::backend::command::Exit;
use crate::outcome::{Crash, CrashCause, Outcome};

mod single;
mod tree;

pub use single::Supervised;
pub use tree::{SupervisedGroup, SupervisedGroupReport};

/// When a supervisor starts a task again, as Erlang/OTP's child restart
/// types say it.
///
/// # Examples
///
/// ```
/// use sidetask::{Outcome, Restart};
///
/// let value: Outcome<u8, &str> = Outcome::Value(1);
/// let error: Outcome<u8, &str> = Outcome::Error("no");
/// assert!(Restart::Always.wants(&value));
/// assert!(!Restart::OnFailure.wants(&value));
/// assert!(Restart::OnFailure.wants(&error));
/// assert!(!Restart::Never.wants(&error));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Whatever the attempt's outcome, even a value (Erlang's
    /// *permanent*): a service that must always run.
    Always,
    /// When the attempt failed: its own error, a panic, a crash, a lost
    /// remote worker, a kill or a cancellation that did not come from the
    /// supervised handle, or a command's unsuccessful exit (Erlang's
    /// *transient*). An attempt that gives a value is the end. The
    /// default.
    #[default]
    OnFailure,
    /// Never (Erlang's *temporary*): supervision only records the attempt.
    Never,
}

impl Restart {
    /// Whether an attempt that ended with `outcome`, without being stopped
    /// through the supervised handle, is started again.
    ///
    /// A [`Command`](crate::Command)'s [`Exit`] that is not a success (a
    /// non-zero code, a signal) counts as a failure, as a daemon's exit
    /// does for supervisord.
    pub fn wants<T: 'static, E>(&self, outcome: &Outcome<T, E>) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => failed(outcome),
            Restart::Never => false,
        }
    }
}

/// How long a supervisor waits before each restart.
///
/// [`exponential`](Backoff::exponential) doubles the delay from a floor up
/// to a ceiling with each restart in a row, and
/// [`jitter`](Backoff::jitter) spreads it (so that many supervised tasks
/// that failed together do not restart together). An attempt that ran for
/// at least the ceiling starts the next streak back at the floor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::Backoff;
///
/// let ms = Duration::from_millis;
/// let backoff = Backoff::exponential(ms(10), ms(50));
/// assert_eq!(backoff.delay(1), ms(10));
/// assert_eq!(backoff.delay(2), ms(20));
/// assert_eq!(backoff.delay(3), ms(40));
/// assert_eq!(backoff.delay(4), ms(50)); // the ceiling
/// assert_eq!(Backoff::none().delay(7), Duration::ZERO);
/// assert_eq!(Backoff::fixed(ms(5)).delay(7), ms(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    jitter: f64,
}

impl Default for Backoff {
    /// Exponential from 50 ms to 5 s, with a jitter of 0.1.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5)).jitter(0.1)
    }
}

impl Backoff {
    /// No wait: restart at once.
    pub fn none() -> Backoff {
        Backoff::fixed(Duration::ZERO)
    }

    /// The same delay before every restart.
    pub fn fixed(delay: Duration) -> Backoff {
        Backoff::exponential(delay, delay)
    }

    /// `floor` before the first restart of a streak, twice as long before
    /// each next one, never more than `ceiling`. A floor over the ceiling
    /// is refused by the supervisor's spawn.
    pub fn exponential(floor: Duration, ceiling: Duration) -> Backoff {
        Backoff {
            floor,
            ceiling,
            jitter: 0.0,
        }
    }

    /// Spreads each delay at random by up to `fraction` of it, either way,
    /// within the floor and the ceiling. A fraction outside `0.0..=1.0` is
    /// refused by the supervisor's spawn.
    pub fn jitter(mut self, fraction: f64) -> Backoff {
        self.jitter = fraction;
        self
    }

    /// The shortest delay.
    pub fn floor(&self) -> Duration {
        self.floor
    }

    /// The longest delay.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// The delay before the `restart`th restart in a row (from 1), without
    /// jitter.
    pub fn delay(&self, restart: u32) -> Duration {
        let doublings = restart.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let nanos = (self.floor.as_nanos()).saturating_mul(u128::from(factor));
        let ceiling = self.ceiling.max(self.floor);
        if nanos >= ceiling.as_nanos() {
            ceiling
        } else {
            Duration::from_nanos(nanos as u64)
        }
    }

    /// The delay with jitter.
    fn jittered(&self, restart: u32) -> Duration {
        let delay = self.delay(restart);
        if self.jitter <= 0.0 || delay.is_zero() {
            return delay;
        }
        // A uniform draw in [-1, 1) from std's randomly keyed hasher.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(restart);
        let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        let spread = delay.as_secs_f64() * self.jitter * (2.0 * unit - 1.0);
        let secs = (delay.as_secs_f64() + spread).clamp(
            self.floor.as_secs_f64(),
            self.ceiling.max(self.floor).as_secs_f64(),
        );
        Duration::from_secs_f64(secs)
    }

    fn check(&self) -> Result<(), SuperviseError> {
        if self.floor > self.ceiling {
            return Err(SuperviseError::invalid(format!(
                "the backoff's floor ({:?}) is over its ceiling ({:?})",
                self.floor, self.ceiling
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(SuperviseError::invalid(format!(
                "the backoff's jitter ({}) is not within 0.0..=1.0",
                self.jitter
            )));
        }
        Ok(())
    }
}

/// Which children a supervised group restarts when one of them ends and
/// its restart policy says so (Erlang/OTP's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// That child alone. The default.
    #[default]
    OneForOne,
    /// Every child: the others are stopped, then all start again in the
    /// order they were added (children that depend on each other).
    OneForAll,
    /// That child and those added after it: they are stopped, then started
    /// again in the order they were added (each depends on those before).
    RestForOne,
}

/// What becomes of the messages an attempt never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unread {
    /// They go to the next attempt, before any sent later. The default.
    #[default]
    HandOn,
    /// They are kept, and handed back by
    /// [`Supervised::take_unread`] once supervision has ended.
    GiveBack,
}

/// The attempt a factory is asked to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    number: u32,
    child: usize,
}

impl Attempt {
    /// Its number: 1 for the first, 2 for the first restart, …
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether it is a restart (not the first attempt).
    pub fn is_restart(&self) -> bool {
        self.number > 1
    }

    /// In a supervised group, the child's index in the order children were
    /// added; 0 for a single supervised task.
    pub fn child(&self) -> usize {
        self.child
    }
}

/// How one attempt ended, as kept in a supervisor's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptEnd {
    number: u32,
    child: usize,
    started: Instant,
    ended: Instant,
    kind: &'static str,
    description: String,
    stopped: bool,
}

impl AttemptEnd {
    fn new<T: 'static, E: fmt::Debug>(
        attempt: Attempt,
        started: Instant,
        outcome: &Outcome<T, E>,
        stopped: bool,
    ) -> AttemptEnd {
        AttemptEnd {
            number: attempt.number,
            child: attempt.child,
            started,
            ended: Instant::now(),
            kind: outcome.kind(),
            description: describe(outcome),
            stopped,
        }
    }

    /// The attempt's number, from 1.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// In a supervised group, the child's index; 0 otherwise.
    pub fn child(&self) -> usize {
        self.child
    }

    /// When the factory was asked for it.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When its end was seen.
    pub fn ended(&self) -> Instant {
        self.ended
    }

    /// How long it ran.
    pub fn ran(&self) -> Duration {
        self.ended.saturating_duration_since(self.started)
    }

    /// Its outcome's case: `"value"`, `"error"`, `"panic"`, `"cancelled"`,
    /// `"killed"`, `"crashed"` or `"lost"` (a factory that failed makes a
    /// `"crashed"` attempt, a factory that panicked a `"panic"` one).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Its outcome in words (the error's `Debug`, the panic's message, the
    /// crash's cause, …).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the supervisor stopped it (through the supervised handle, or
    /// a group's strategy), rather than it ending by itself.
    pub fn was_stopped(&self) -> bool {
        self.stopped
    }
}

impl fmt::Display for AttemptEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {} ended ({}): {}",
            self.number, self.kind, self.description
        )
    }
}

/// Whether an outcome is a failure: anything but a value, or a command's
/// exit that is not a success.
fn failed<T: 'static, E>(outcome: &Outcome<T, E>) -> bool {
    match outcome {
        Outcome::Value(value) => as_exit(value).is_some_and(|exit| !exit.success()),
        _ => true,
    }
}

/// The value as a command's exit, if it is one.
fn as_exit<T: 'static>(value: &T) -> Option<&Exit> {
    (value as &dyn Any).downcast_ref::<Exit>()
}

/// An outcome in words.
fn describe<T: 'static, E: fmt::Debug>(outcome: &Outcome<T, E>) -> String {
    match outcome {
        Outcome::Value(value) => match as_exit(value) {
            Some(exit) => match (exit.code(), exit.signal()) {
                (Some(code), _) => format!("the program exited with code {code}"),
                (None, Some(signal)) => format!("the program was ended by signal {signal}"),
                _ => "the program exited".to_owned(),
            },
            None => "returned a value".to_owned(),
        },
        Outcome::Error(e) => format!("returned an error: {e:?}"),
        Outcome::Panicked(p) => p.to_string(),
        Outcome::Cancelled => "was cancelled before it began".to_owned(),
        Outcome::Killed(k) => k.to_string(),
        Outcome::Crashed(c) => c.to_string(),
        Outcome::Lost(l) => l.to_string(),
    }
}

/// The outcome of an attempt its factory could not make.
fn not_started<T, E>(why: String) -> Outcome<T, E> {
    Outcome::Crashed(Crash::new(CrashCause::Start(why), Vec::new()))
}

/// Where supervision is, as [`Supervised::status`] and
/// [`SupervisedGroup::status`] tell it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SupervisedStatus {
    /// Attempt `attempt` runs (in a group: the group's `attempt`th start
    /// of its children, 1 before any restart).
    Running {
        /// The attempt's number.
        attempt: u32,
    },
    /// Waiting until `until` to start attempt `attempt`.
    BackingOff {
        /// The number of the attempt to come.
        attempt: u32,
        /// When it starts.
        until: Instant,
    },
    /// Asked to stop; the current attempt is ending.
    Stopping,
    /// Ended: the last attempt ended and the policy wants no restart.
    Finished,
    /// Ended: stopped or killed through the handle.
    Stopped,
    /// Ended: more restarts than the intensity allows; the last outcome
    /// and the history tell why.
    GaveUp,
}

impl SupervisedStatus {
    /// Whether supervision has ended.
    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            SupervisedStatus::Finished | SupervisedStatus::Stopped | SupervisedStatus::GaveUp
        )
    }
}

/// Why a supervisor could not be spawned.
pub struct SuperviseError {
    kind: ErrorKind,
}

enum ErrorKind {
    Invalid(String),
    Start(crate::StartError),
}

impl SuperviseError {
    fn invalid(why: String) -> SuperviseError {
        SuperviseError {
            kind: ErrorKind::Invalid(why),
        }
    }

    fn start(err: crate::StartError) -> SuperviseError {
        SuperviseError {
            kind: ErrorKind::Start(err),
        }
    }

    /// Whether a setting was refused (the text says which).
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, ErrorKind::Invalid(_))
    }

    /// The error starting the supervisor's own thread, if that failed.
    pub fn start_error(&self) -> Option<&crate::StartError> {
        match &self.kind {
            ErrorKind::Start(e) => Some(e),
            ErrorKind::Invalid(_) => None,
        }
    }
}

impl fmt::Debug for SuperviseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Invalid(why) => f.debug_tuple("SuperviseError::Invalid").field(why).finish(),
            ErrorKind::Start(e) => f.debug_tuple("SuperviseError::Start").field(e).finish(),
        }
    }
}

impl fmt::Display for SuperviseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Invalid(why) => write!(f, "invalid supervisor setting: {why}"),
            ErrorKind::Start(e) => write!(f, "could not start the supervisor: {e}"),
        }
    }
}

impl std::error::Error for SuperviseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Start(e) => Some(e),
            ErrorKind::Invalid(_) => None,
        }
    }
}

/// Called before each restart with the attempt that ended and the delay
/// before the next one.
type OnRestart = Box<dyn FnMut(&AttemptEnd, Duration) + Send>;

/// Sets how a task (or a group of tasks) is kept alive, then spawns it.
///
/// A supervisor is given a *factory*, a closure that makes each attempt and
/// may run it anywhere: [`spawn`](crate::spawn) or a
/// [`Builder`](crate::Builder) for a thread,
/// [`Process`](crate::Process) for a child process,
/// [`Command`](crate::Command) for a program, or a remote task's
/// `spawn_on`. When an attempt ends, the [`Restart`] policy says whether
/// to make another, after the [`Backoff`]'s delay, unless more than the
/// [`intensity`](Supervisor::intensity)'s restarts happened within its
/// window: then the supervisor gives up.
///
/// [`spawn`](Supervisor::spawn) keeps one task alive behind one handle,
/// [`Supervised`]; [`child`](Supervisor::child) and
/// [`spawn_group`](Supervisor::spawn_group) keep a group alive with a
/// [`Strategy`], behind a [`SupervisedGroup`].
///
/// The names are Erlang/OTP's, where they have one (restart types,
/// strategies, intensity); "backoff" and "jitter" are the usual names for
/// the delay between restarts, which OTP leaves to the child.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::{Backoff, Ctx, Restart, Supervisor, SupervisedStatus};
///
/// // Fails twice, then gives its value.
/// let supervised = Supervisor::new()
///     .restart(Restart::OnFailure)
///     .backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(10)))
///     .intensity(5, Duration::from_secs(10))
///     .spawn(|attempt| {
///         let n = attempt.number();
///         sidetask::Builder::new().spawn(move |_: &Ctx| {
///             if n < 3 { Err(format!("attempt {n} failed")) } else { Ok(n) }
///         })
///     })?;
/// supervised.wait();
/// assert_eq!(supervised.attempt(), 3);
/// assert_eq!(supervised.history().len(), 3);
/// assert_eq!(supervised.status(), SupervisedStatus::Finished);
/// assert_eq!(supervised.join().value(), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a supervisor does nothing until `spawn` or `spawn_group`"]
pub struct Supervisor {
    name: Option<String>,
    restart: Restart,
    backoff: Backoff,
    intensity: (u32, Duration),
    unread: Unread,
    strategy: Option<Strategy>,
    inbox: usize,
    outbox: usize,
    on_restart: Option<OnRestart>,
    standby: bool,
    children: Vec<tree::Child>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .field("backoff", &self.backoff)
            .field("intensity", &self.intensity)
            .field("unread", &self.unread)
            .field("strategy", &self.strategy)
            .field("standby", &self.standby)
            .field("children", &self.children.len())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor with the defaults: [`Restart::OnFailure`],
    /// [`Backoff::default`] (50 ms doubling to 5 s, jitter 0.1), at most 5
    /// restarts within 10 seconds, unread messages handed on, inbox and
    /// outbox of [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY).
    pub fn new() -> Supervisor {
        Supervisor {
            name: None,
            restart: Restart::OnFailure,
            backoff: Backoff::default(),
            intensity: (5, Duration::from_secs(10)),
            unread: Unread::HandOn,
            strategy: None,
            inbox: crate::DEFAULT_CAPACITY,
            outbox: crate::DEFAULT_CAPACITY,
            on_restart: None,
            standby: false,
            children: Vec::new(),
        }
    }

    /// Names the supervisor's own task (its tracing span and thread).
    pub fn name(mut self, name: impl Into<String>) -> Supervisor {
        self.name = Some(name.into());
        self
    }

    /// When to restart.
    pub fn restart(mut self, restart: Restart) -> Supervisor {
        self.restart = restart;
        self
    }

    /// How long to wait before each restart.
    pub fn backoff(mut self, backoff: Backoff) -> Supervisor {
        self.backoff = backoff;
        self
    }

    /// At most `restarts` restarts within any `window`: one more and the
    /// supervisor gives up, with the last attempt's outcome. A group counts
    /// its restarts as a whole (one per child's end that caused one). A
    /// zero window is refused by spawn.
    pub fn intensity(mut self, restarts: u32, window: Duration) -> Supervisor {
        self.intensity = (restarts, window);
        self
    }

    /// What becomes of the messages an attempt never read.
    pub fn unread(mut self, unread: Unread) -> Supervisor {
        self.unread = unread;
        self
    }

    /// How many messages can wait in the supervised handle's inbox (while
    /// no attempt takes them) before a send waits; each attempt has its own
    /// inbox besides, as its factory made it.
    pub fn inbox_capacity(mut self, capacity: usize) -> Supervisor {
        self.inbox = capacity;
        self
    }

    /// How many events can wait in the supervised handle's outbox before
    /// the attempts' events wait.
    pub fn outbox_capacity(mut self, capacity: usize) -> Supervisor {
        self.outbox = capacity;
        self
    }

    /// Calls `f` before each restart, on the supervisor's thread, with the
    /// attempt that ended and the delay before the next one (it should
    /// return quickly: the restart waits for it).
    pub fn on_restart(
        mut self,
        f: impl FnMut(&AttemptEnd, Duration) + Send + 'static,
    ) -> Supervisor {
        self.on_restart = Some(Box::new(f));
        self
    }

    /// Keeps a process task's next child started ahead (a *standby*): each
    /// time the factory spawns a process task, the child started before
    /// takes it, and the one for the attempt after starts meanwhile, on a
    /// thread of its own. A restart then waits for what is left of a
    /// program's start (its loading, its `main` up to
    /// [`init`](crate::init)) once the attempt before ran, nothing if it
    /// ran long enough. It costs one more child process, idle while the
    /// supervisor runs (killed as the supervisor ends, before its `join`
    /// returns). Off by default.
    ///
    /// A standby child is started as the task that took the last one was:
    /// if the next one is started otherwise (another program, environment,
    /// working directory or grace period), it starts anew. What a child
    /// inherits from this process is as it was when the standby started
    /// (this process's own environment and working directory, the program
    /// file). One standby is kept per supervisor (per child, in a group),
    /// for the first process task each call of the factory spawns. Other
    /// places (threads, async tasks, commands, remote tasks) keep nothing
    /// ahead; with [`Restart::Never`], nothing is kept either.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, NamedTask, Process, Restart, Supervisor};
    ///
    /// struct Flaky;
    /// impl NamedTask for Flaky {
    ///     const NAME: &'static str = "standby_doc_flaky";
    ///     type Arg = ();
    ///     type In = ();
    ///     type Event = ();
    ///     type Value = ();
    ///     type Error = String;
    ///     fn run(_: &Ctx, (): ()) -> Result<(), String> {
    ///         std::process::exit(1) // fails at once, as a crash
    ///     }
    /// }
    /// # sidetask::init(sidetask::Registry::new().with::<Flaky>()?);
    ///
    /// let supervised = Supervisor::new()
    ///     .restart(Restart::OnFailure)
    ///     .backoff(sidetask::Backoff::none())
    ///     .intensity(3, std::time::Duration::from_secs(60))
    ///     .standby(true)
    ///     .spawn(|_| Process::<Flaky>::new(()).spawn())?;
    /// // Four attempts (three restarts, each in a child started ahead),
    /// // then the supervisor gives up.
    /// assert!(supervised.join().is_crashed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn standby(mut self, standby: bool) -> Supervisor {
        self.standby = standby;
        self
    }

    /// Which children of a group restart together (groups only).
    pub fn strategy(mut self, strategy: Strategy) -> Supervisor {
        self.strategy = Some(strategy);
        self
    }

    /// Adds a child to a group, made by `factory` at each of its attempts;
    /// children start in the order they are added. Its messages and events
    /// do not pass through the group (its events are read and dropped, so
    /// that it never waits on a full outbox): supervise it alone with
    /// [`spawn`](Supervisor::spawn) to talk to it.
    pub fn child<F, T, E, In, Ev, Er>(mut self, factory: F) -> Supervisor
    where
        F: FnMut(Attempt) -> Result<crate::Task<T, E, In, Ev>, Er> + Send + 'static,
        T: Send + 'static,
        E: Send + fmt::Debug + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
        Er: fmt::Display,
    {
        self.children.push(tree::Child::new(factory));
        self
    }

    fn check(&self) -> Result<(), SuperviseError> {
        self.backoff.check()?;
        if self.intensity.1.is_zero() {
            return Err(SuperviseError::invalid(
                "the intensity's window is zero".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the supervisor keeps a standby (see
    /// [`standby`](Supervisor::standby)).
    fn keeps_standby(&self) -> bool {
        self.standby && self.restart != Restart::Never
    }

    fn settings(&self) -> crate::task::Settings {
        crate::task::Settings {
            name: self.name.clone(),
            inbox: self.inbox,
            outbox: self.outbox,
            timeout: None,
        }
    }
}

/// The restart decisions both loops share: intensity, backoff streak.
struct Limits {
    backoff: Backoff,
    max_restarts: u32,
    window: Duration,
    restarts: VecDeque<Instant>,
    streak: u32,
}

impl Limits {
    fn new(supervisor: &Supervisor) -> Limits {
        Limits {
            backoff: supervisor.backoff,
            max_restarts: supervisor.intensity.0,
            window: supervisor.intensity.1,
            restarts: VecDeque::new(),
            streak: 0,
        }
    }

    /// A restart after an attempt that ran for `ran`: its delay, or `None`
    /// if the intensity is used up (give up).
    fn restart(&mut self, ran: Duration) -> Option<Duration> {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= self.window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.max_restarts as usize {
            return None;
        }
        self.restarts.push_back(now);
        if ran >= self.backoff.ceiling() && !self.backoff.ceiling().is_zero() {
            self.streak = 0;
        }
        self.streak = self.streak.saturating_add(1);
        Some(self.backoff.jittered(self.streak))
    }
}
