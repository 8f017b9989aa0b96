//! How a task ended.

use std::any::Any;
use std::cell::RefCell;
use std::error::Error;
use std::fmt;
use std::panic;
use std::sync::{Arc, Mutex, Once};

/// How a task ended: its value, its own error, a panic, never begun, killed,
/// or its process crashed.
///
/// Returned by [`Task::join`](crate::Task::join). Every way a task can end is
/// its own case, so nothing is lost in translation; more cases may come with
/// other places a task can run (a lost remote worker), which is why the enum
/// is `#[non_exhaustive]`.
///
/// [`into_result`](Outcome::into_result) folds it into a `Result` whose error,
/// [`TaskError`], tells the failure cases apart with `is_*` predicates.
///
/// # Accessors
///
/// The same names mean the same thing on `Outcome` and [`TaskError`], as on
/// `Result`:
///
/// - `is_*` (`is_value`, `is_error`, `is_panic`, `is_cancelled`,
///   `is_killed`, `is_crashed`) borrow and answer `true` or `false`;
/// - the nouns (`value`, `error`, `panic`, `killed`, `crash`) take `self`
///   and give the part or `None`, as [`Result::ok`] and [`Result::err`] do;
/// - `as_*` (`as_error`, `as_panic`, `as_killed`, `as_crash`) borrow the part;
/// - `into_*` take `self` and give `Self` back when it is not that case
///   ([`TaskError::into_error`], [`TaskError::into_panic`]).
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Outcome};
///
/// let task = sidetask::spawn(|_: &Ctx| Err::<u32, _>("no luck"));
/// match task.join() {
///     Outcome::Value(v) => println!("value {v}"),
///     Outcome::Error(e) => assert_eq!(e, "no luck"),
///     Outcome::Panicked(p) => println!("panicked: {p}"),
///     other => println!("{other:?}"),
/// }
/// ```
#[non_exhaustive]
#[derive(Debug)]
#[must_use = "a task's outcome may be an error, a panic or a kill, which should be handled"]
pub enum Outcome<T, E> {
    /// The task returned `Ok(value)`.
    Value(T),
    /// The task returned `Err(error)`.
    Error(E),
    /// The task panicked.
    Panicked(Panic),
    /// The task was stopped, or its handle joined or dropped, before its body
    /// began: the body never ran.
    Cancelled,
    /// The task was killed before it returned: [`Task::kill`](crate::Task::kill)
    /// on a place that can kill (a process, an async task), or a stop that
    /// escalated past its grace period.
    Killed(Killed),
    /// The task's process ended without giving a result: it exited, was
    /// ended by a signal it did not get from us, ran out of memory or CPU
    /// time, or broke the protocol.
    Crashed(Crash),
    /// The task's remote worker vanished (or the store that held the task
    /// lost it) and no attempt is left: nobody knows how it ended.
    Lost(Lost),
}

impl<T, E> Outcome<T, E> {
    /// Returns `true` if the task returned a value.
    pub fn is_value(&self) -> bool {
        matches!(self, Outcome::Value(_))
    }

    /// Returns `true` if the task returned its own error.
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Error(_))
    }

    /// Returns `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Outcome::Panicked(_))
    }

    /// Returns `true` if the task's body never ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Outcome::Cancelled)
    }

    /// Returns `true` if the task was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self, Outcome::Killed(_))
    }

    /// Returns `true` if the task's process crashed.
    pub fn is_crashed(&self) -> bool {
        matches!(self, Outcome::Crashed(_))
    }

    /// Returns `true` if the task was lost with its remote worker.
    pub fn is_lost(&self) -> bool {
        matches!(self, Outcome::Lost(_))
    }

    /// Returns `true` if the task failed: it returned its own error,
    /// panicked, was killed, crashed or was lost; not when it returned a
    /// value or never ran.
    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Value(_) | Outcome::Cancelled)
    }

    /// The task's value, if it returned one.
    pub fn value(self) -> Option<T> {
        match self {
            Outcome::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The task's own error, if it returned one.
    pub fn error(self) -> Option<E> {
        match self {
            Outcome::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The task's panic, if it panicked.
    pub fn panic(self) -> Option<Panic> {
        match self {
            Outcome::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// How the task was killed, if it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Killed, Outcome};
    ///
    /// let outcome: Outcome<(), ()> = Outcome::Cancelled;
    /// assert_eq!(outcome.killed(), None::<Killed>);
    /// ```
    pub fn killed(self) -> Option<Killed> {
        match self {
            Outcome::Killed(k) => Some(k),
            _ => None,
        }
    }

    /// The crash, if the task's process crashed.
    pub fn crash(self) -> Option<Crash> {
        match self {
            Outcome::Crashed(c) => Some(c),
            _ => None,
        }
    }

    /// Why the task was lost, if it was.
    pub fn lost(self) -> Option<Lost> {
        match self {
            Outcome::Lost(l) => Some(l),
            _ => None,
        }
    }

    /// The task's own error, by reference.
    pub fn as_error(&self) -> Option<&E> {
        match self {
            Outcome::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The task's panic, by reference.
    pub fn as_panic(&self) -> Option<&Panic> {
        match self {
            Outcome::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// How the task was killed, by reference.
    pub fn as_killed(&self) -> Option<&Killed> {
        match self {
            Outcome::Killed(k) => Some(k),
            _ => None,
        }
    }

    /// The crash, by reference.
    pub fn as_crash(&self) -> Option<&Crash> {
        match self {
            Outcome::Crashed(c) => Some(c),
            _ => None,
        }
    }

    /// Why the task was lost, by reference.
    pub fn as_lost(&self) -> Option<&Lost> {
        match self {
            Outcome::Lost(l) => Some(l),
            _ => None,
        }
    }

    /// The outcome with its value turned by `f`; every other case as it
    /// is.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::Outcome;
    ///
    /// let outcome: Outcome<u32, String> = Outcome::Value(7);
    /// assert_eq!(outcome.map(|n| n * 6).value(), Some(42));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U, E> {
        match self {
            Outcome::Value(v) => Outcome::Value(f(v)),
            Outcome::Error(e) => Outcome::Error(e),
            Outcome::Panicked(p) => Outcome::Panicked(p),
            Outcome::Cancelled => Outcome::Cancelled,
            Outcome::Killed(k) => Outcome::Killed(k),
            Outcome::Crashed(c) => Outcome::Crashed(c),
            Outcome::Lost(l) => Outcome::Lost(l),
        }
    }

    /// The outcome with the task's own error turned by `f`; every other
    /// case as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::Outcome;
    ///
    /// let outcome: Outcome<u32, std::num::ParseIntError> =
    ///     Outcome::Error("x".parse::<u32>().unwrap_err());
    /// let outcome = outcome.map_error(|e| e.to_string());
    /// assert_eq!(outcome.error().as_deref(), Some("invalid digit found in string"));
    /// ```
    #[doc(alias = "map_err")]
    pub fn map_error<F>(self, f: impl FnOnce(E) -> F) -> Outcome<T, F> {
        match self {
            Outcome::Value(v) => Outcome::Value(v),
            Outcome::Error(e) => Outcome::Error(f(e)),
            Outcome::Panicked(p) => Outcome::Panicked(p),
            Outcome::Cancelled => Outcome::Cancelled,
            Outcome::Killed(k) => Outcome::Killed(k),
            Outcome::Crashed(c) => Outcome::Crashed(c),
            Outcome::Lost(l) => Outcome::Lost(l),
        }
    }

    /// Folds the outcome into a `Result`: the value, or a [`TaskError`] that
    /// tells which failure it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::Ctx;
    ///
    /// let task = sidetask::spawn(|_: &Ctx| -> Result<u32, String> { panic!("boom") });
    /// let err = task.join().into_result().unwrap_err();
    /// assert!(err.is_panic());
    /// assert_eq!(err.panic().unwrap().message(), "boom");
    /// ```
    pub fn into_result(self) -> Result<T, TaskError<E>> {
        match self {
            Outcome::Value(v) => Ok(v),
            Outcome::Error(e) => Err(TaskError::new(Failure::Error(e))),
            Outcome::Panicked(p) => Err(TaskError::new(Failure::Panicked(p))),
            Outcome::Cancelled => Err(TaskError::new(Failure::Cancelled)),
            Outcome::Killed(k) => Err(TaskError::new(Failure::Killed(k))),
            Outcome::Crashed(c) => Err(TaskError::new(Failure::Crashed(c))),
            Outcome::Lost(l) => Err(TaskError::new(Failure::Lost(l))),
        }
    }

    /// Returns the value; on a panic, resumes the task's panic on this
    /// thread; panics on any other outcome.
    ///
    /// This is how a caller asks for a task's panic to reach its own thread:
    /// nothing else does.
    ///
    /// # Panics
    ///
    /// If the outcome is not a value.
    #[track_caller]
    pub fn unwrap(self) -> T
    where
        E: fmt::Debug,
    {
        match self {
            Outcome::Value(v) => v,
            Outcome::Error(e) => panic!("called `Outcome::unwrap()` on an `Error`: {e:?}"),
            Outcome::Panicked(p) => p.resume(),
            Outcome::Cancelled => panic!("called `Outcome::unwrap()` on `Cancelled`"),
            Outcome::Killed(k) => panic!("called `Outcome::unwrap()` on `Killed`: {k}"),
            Outcome::Crashed(c) => panic!("called `Outcome::unwrap()` on `Crashed`: {c}"),
            Outcome::Lost(l) => panic!("called `Outcome::unwrap()` on `Lost`: {l}"),
        }
    }
}

/// A task's panic: its message, where it happened, and its payload.
///
/// The payload can be taken with [`into_payload`](Panic::into_payload) or the
/// panic resumed on the caller's thread with [`resume`](Panic::resume).
pub struct Panic {
    // Boxed, so that an outcome (and a pool's result) stays small: a panic
    // is rare, a value is not.
    inner: Box<PanicParts>,
}

struct PanicParts {
    message: String,
    location: Option<Location>,
    // A `Mutex` makes the `Send`-only payload `Sync` without `unsafe`; it is
    // only ever reached through `self` by value.
    payload: Mutex<Box<dyn Any + Send + 'static>>,
}

/// Where a panic happened in the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    file: String,
    line: u32,
    column: u32,
}

impl Location {
    pub(crate) fn new(file: String, line: u32, column: u32) -> Location {
        Location { file, line, column }
    }

    /// The source file.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, from 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl Panic {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>, location: Option<Location>) -> Panic {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Panic {
            inner: Box::new(PanicParts {
                message,
                location,
                payload: Mutex::new(payload),
            }),
        }
    }

    /// The panic's message (`"Box<dyn Any>"` when the payload was not a
    /// string).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Where the task panicked, when it could be recorded.
    ///
    /// sidetask records it through a panic hook that it installs, chained to
    /// the one already set, when the first task starts. A hook set later by
    /// the program replaces it, and locations are then `None`.
    pub fn location(&self) -> Option<&Location> {
        self.inner.location.as_ref()
    }

    /// The payload the task panicked with.
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.inner
            .payload
            .into_inner()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Resumes the task's panic on the calling thread.
    pub fn resume(self) -> ! {
        panic::resume_unwind(self.into_payload())
    }
}

/// `Panic { message: "boom", location: Some(src/main.rs:3:5) }`: the payload
/// is left out (it is a `dyn Any`), the location is written as a compiler
/// writes it.
impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Writes a location as `file:line:column`.
        struct At<'a>(&'a Location);

        impl fmt::Debug for At<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self.0, f)
            }
        }

        f.debug_struct("Panic")
            .field("message", &self.inner.message)
            .field("location", &self.inner.location.as_ref().map(At))
            .finish()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.location {
            Some(loc) => write!(f, "panicked at {loc}: {}", self.inner.message),
            None => write!(f, "panicked: {}", self.inner.message),
        }
    }
}

/// Why a task did not give a value: its own error, a panic, it never ran, it
/// was killed, or its process crashed.
///
/// Made by [`Outcome::into_result`]. Ask which with the `is_*` predicates,
/// borrow the parts with `as_error`, `as_panic`, `as_killed` and `as_crash`,
/// and take them with `error`, `panic`, `killed` and `crash` (or
/// [`into_error`](TaskError::into_error) and
/// [`into_panic`](TaskError::into_panic), which give `self` back otherwise):
/// the same names as on [`Outcome`].
pub struct TaskError<E> {
    failure: Failure<E>,
}

enum Failure<E> {
    Error(E),
    Panicked(Panic),
    Cancelled,
    Killed(Killed),
    Crashed(Crash),
    Lost(Lost),
}

impl<E> TaskError<E> {
    fn new(failure: Failure<E>) -> TaskError<E> {
        TaskError { failure }
    }

    pub(crate) fn from_error(error: E) -> TaskError<E> {
        TaskError::new(Failure::Error(error))
    }

    pub(crate) fn from_panic(panic: Panic) -> TaskError<E> {
        TaskError::new(Failure::Panicked(panic))
    }

    /// Returns `true` if the task returned its own error.
    pub fn is_error(&self) -> bool {
        matches!(self.failure, Failure::Error(_))
    }

    /// Returns `true` if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.failure, Failure::Panicked(_))
    }

    /// Returns `true` if the task's body never ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.failure, Failure::Cancelled)
    }

    /// Returns `true` if the task was killed.
    pub fn is_killed(&self) -> bool {
        matches!(self.failure, Failure::Killed(_))
    }

    /// Returns `true` if the task's process crashed.
    pub fn is_crashed(&self) -> bool {
        matches!(self.failure, Failure::Crashed(_))
    }

    /// Returns `true` if the task was lost with its remote worker.
    pub fn is_lost(&self) -> bool {
        matches!(self.failure, Failure::Lost(_))
    }

    /// Why the task was lost, by reference.
    pub fn as_lost(&self) -> Option<&Lost> {
        match &self.failure {
            Failure::Lost(l) => Some(l),
            _ => None,
        }
    }

    /// The task's own error, if it returned one.
    pub fn error(self) -> Option<E> {
        match self.failure {
            Failure::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The panic, if the task panicked.
    pub fn panic(self) -> Option<Panic> {
        match self.failure {
            Failure::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// How the task was killed, if it was.
    pub fn killed(self) -> Option<Killed> {
        match self.failure {
            Failure::Killed(k) => Some(k),
            _ => None,
        }
    }

    /// The crash, if the task's process crashed.
    pub fn crash(self) -> Option<Crash> {
        match self.failure {
            Failure::Crashed(c) => Some(c),
            _ => None,
        }
    }

    /// The task's own error, by reference.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::Ctx;
    ///
    /// let task = sidetask::spawn(|_: &Ctx| Err::<(), _>("no luck"));
    /// let err = task.join().into_result().unwrap_err();
    /// assert_eq!(err.as_error(), Some(&"no luck"));
    /// assert_eq!(err.to_string(), "task failed: no luck"); // still whole
    /// ```
    pub fn as_error(&self) -> Option<&E> {
        match &self.failure {
            Failure::Error(e) => Some(e),
            _ => None,
        }
    }

    /// The panic, by reference.
    pub fn as_panic(&self) -> Option<&Panic> {
        match &self.failure {
            Failure::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// How the task was killed, by reference.
    pub fn as_killed(&self) -> Option<&Killed> {
        match &self.failure {
            Failure::Killed(k) => Some(k),
            _ => None,
        }
    }

    /// The crash, by reference.
    pub fn as_crash(&self) -> Option<&Crash> {
        match &self.failure {
            Failure::Crashed(c) => Some(c),
            _ => None,
        }
    }

    /// Takes the task's own error, or gives `self` back.
    pub fn into_error(self) -> Result<E, TaskError<E>> {
        match self.failure {
            Failure::Error(e) => Ok(e),
            failure => Err(TaskError { failure }),
        }
    }

    /// Takes the panic, or gives `self` back.
    pub fn into_panic(self) -> Result<Panic, TaskError<E>> {
        match self.failure {
            Failure::Panicked(p) => Ok(p),
            failure => Err(TaskError { failure }),
        }
    }

    /// Turns it back into the [`Outcome`] it came from.
    pub fn into_outcome<T>(self) -> Outcome<T, E> {
        match self.failure {
            Failure::Error(e) => Outcome::Error(e),
            Failure::Panicked(p) => Outcome::Panicked(p),
            Failure::Cancelled => Outcome::Cancelled,
            Failure::Killed(k) => Outcome::Killed(k),
            Failure::Crashed(c) => Outcome::Crashed(c),
            Failure::Lost(l) => Outcome::Lost(l),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Error(e) => f.debug_tuple("TaskError::Error").field(e).finish(),
            Failure::Panicked(p) => f.debug_tuple("TaskError::Panicked").field(p).finish(),
            Failure::Cancelled => f.write_str("TaskError::Cancelled"),
            Failure::Killed(k) => f.debug_tuple("TaskError::Killed").field(k).finish(),
            Failure::Crashed(c) => f.debug_tuple("TaskError::Crashed").field(c).finish(),
            Failure::Lost(l) => f.debug_tuple("TaskError::Lost").field(l).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Error(e) => write!(f, "task failed: {e}"),
            Failure::Panicked(p) => write!(f, "task {p}"),
            Failure::Cancelled => f.write_str("task was cancelled before it began"),
            Failure::Killed(k) => write!(f, "task {k}"),
            Failure::Crashed(c) => write!(f, "task {c}"),
            Failure::Lost(l) => write!(f, "task {l}"),
        }
    }
}

impl<E: Error + 'static> Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.failure {
            Failure::Error(e) => Some(e),
            Failure::Killed(k) => Some(k),
            Failure::Crashed(c) => Some(c),
            Failure::Lost(l) => Some(l),
            _ => None,
        }
    }
}

/// Why a remote task was lost: its worker vanished with no attempt left,
/// or the store lost the task.
#[derive(Clone, PartialEq, Eq)]
pub struct Lost {
    // Boxed, so that an outcome stays small (see `Panic`).
    inner: Box<LostParts>,
}

#[derive(Clone, PartialEq, Eq)]
struct LostParts {
    reason: String,
    attempts: u32,
}

impl fmt::Debug for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lost")
            .field("reason", &self.inner.reason)
            .field("attempts", &self.inner.attempts)
            .finish()
    }
}

impl Lost {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn new(reason: impl Into<String>, attempts: u32) -> Lost {
        Lost {
            inner: Box::new(LostParts {
                reason: reason.into(),
                attempts,
            }),
        }
    }

    /// What was seen: the worker's lease expired, or the task's record was
    /// gone.
    pub fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "was lost after {} attempt(s): {}",
            self.inner.attempts, self.inner.reason
        )
    }
}

impl Error for Lost {}

/// How a task was killed: by which signal, if its place has signals, and
/// the tail of its stderr, if it had one.
///
/// Its `Debug` shows the stderr tail as text (bad bytes replaced):
/// `Killed { signal: Some(9), stderr: "…" }`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Killed {
    // Boxed, so that an outcome stays small (see `Panic`).
    inner: Box<KilledParts>,
}

#[derive(Clone, Default, PartialEq, Eq)]
struct KilledParts {
    signal: Option<i32>,
    stderr_tail: Vec<u8>,
}

impl Killed {
    pub(crate) fn new(signal: Option<i32>, stderr_tail: Vec<u8>) -> Killed {
        Killed {
            inner: Box::new(KilledParts {
                signal,
                stderr_tail,
            }),
        }
    }

    /// The signal that ended the task's process (`None` for a task that was
    /// not a process, such as an async task aborted at an await).
    pub fn signal(&self) -> Option<i32> {
        self.inner.signal
    }

    /// The last bytes the task's process wrote to stderr (empty when it was
    /// not a process).
    pub fn stderr_tail(&self) -> &[u8] {
        &self.inner.stderr_tail
    }

    /// The stderr tail as text, bad bytes replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.inner.stderr_tail).into_owned()
    }
}

impl fmt::Debug for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Killed")
            .field("signal", &self.inner.signal)
            .field("stderr", &String::from_utf8_lossy(&self.inner.stderr_tail))
            .finish()
    }
}

impl Error for Killed {}

impl Error for Crash {}

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.signal {
            Some(sig) => write!(f, "was killed (signal {sig})"),
            None => f.write_str("was killed"),
        }
    }
}

/// How a task's process ended without a result, with the tail of its
/// stderr.
///
/// Its `Debug` shows the stderr tail as text (bad bytes replaced):
/// `Crash { cause: Exited(3), stderr: "…" }`.
#[derive(Clone, PartialEq, Eq)]
pub struct Crash {
    // Boxed, so that an outcome stays small (see `Panic`).
    inner: Box<CrashParts>,
}

#[derive(Clone, PartialEq, Eq)]
struct CrashParts {
    cause: CrashCause,
    stderr_tail: Vec<u8>,
}

/// Why a task's process ended without a result.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashCause {
    /// It exited with this code before sending its result.
    Exited(i32),
    /// A signal it did not get from us ended it (`SIGSEGV`, `SIGABRT`, …).
    Signal(i32),
    /// It ran out of memory under its memory limit: with a limit set, an
    /// allocation failed and the child aborted or faulted (`SIGABRT`,
    /// `SIGSEGV` or `SIGBUS`). Only evidence counts, never what the child
    /// wrote: a `SIGKILL` sent by someone else (the kernel's OOM killer
    /// among them) is [`Signal(9)`](CrashCause::Signal).
    OutOfMemory,
    /// It used up its CPU-time limit (`SIGXCPU`).
    CpuLimit,
    /// It could not be started, or did not take its task: a pool's new
    /// child (or an isolated remote task's child) that failed to start or
    /// to answer the handshake, an argument over the maximum frame, or no
    /// thread for the task's helper.
    /// ([`Process::spawn`](crate::Process::spawn) reports a child that fails
    /// to start or to answer as its error instead.)
    Start(String),
    /// It broke the protocol: a malformed, oversized or truncated frame (in
    /// either direction: a message over the maximum frame ends the task
    /// too), or a warm child of a pool refused its next task. The text says
    /// which.
    Protocol(String),
}

impl Crash {
    pub(crate) fn new(cause: CrashCause, stderr_tail: Vec<u8>) -> Crash {
        Crash {
            inner: Box::new(CrashParts { cause, stderr_tail }),
        }
    }

    /// Why it crashed.
    pub fn cause(&self) -> &CrashCause {
        &self.inner.cause
    }

    /// The last bytes the process wrote to stderr.
    pub fn stderr_tail(&self) -> &[u8] {
        &self.inner.stderr_tail
    }

    /// The stderr tail as text, bad bytes replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.inner.stderr_tail).into_owned()
    }
}

impl fmt::Debug for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crash")
            .field("cause", &self.inner.cause)
            .field("stderr", &String::from_utf8_lossy(&self.inner.stderr_tail))
            .finish()
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.cause {
            CrashCause::Exited(code) => write!(f, "exited with code {code} before giving a result"),
            CrashCause::Signal(sig) => write!(f, "crashed with signal {sig}"),
            CrashCause::OutOfMemory => f.write_str("ran out of memory"),
            CrashCause::CpuLimit => f.write_str("used up its CPU-time limit"),
            CrashCause::Protocol(what) => write!(f, "broke the protocol: {what}"),
            CrashCause::Start(what) => write!(f, "did not start: {what}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Recording where a task panicked.

thread_local! {
    /// `Some` while this thread runs a task body: the hook fills it.
    static PANIC_SITE: RefCell<Option<Option<Location>>> = const { RefCell::new(None) };
    /// The task whose body this thread runs, while a named one does: the
    /// hook says which task panicked (a worker thread's own name is the
    /// pool's, not the task's).
    static RUNNING: RefCell<Option<(Arc<str>, u64)>> = const { RefCell::new(None) };
}

/// Says, while the returned guard lives, that this thread runs the task
/// named `name` with id `id`, so that a panic report names it (nothing is
/// formatted unless a panic comes).
pub(crate) fn running(name: Arc<str>, id: u64) -> Running {
    RUNNING.with(|r| *r.borrow_mut() = Some((name, id)));
    Running
}

/// Forgets the running task's label when dropped.
pub(crate) struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|r| r.borrow_mut().take());
    }
}

/// Installs, once, a panic hook that records where a task body panicked and
/// then calls the hook that was set before.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let _ = PANIC_SITE.try_with(|site| {
                if let Ok(mut site) = site.try_borrow_mut()
                    && let Some(slot) = site.as_mut()
                {
                    *slot = info.location().map(|l| Location {
                        file: l.file().to_owned(),
                        line: l.line(),
                        column: l.column(),
                    });
                }
            });
            let _ = RUNNING.try_with(|r| {
                if let Ok(r) = r.try_borrow()
                    && let Some((name, id)) = r.as_ref()
                {
                    eprintln!(
                        "sidetask: task `{name}` (#{id}) panicked (its outcome is `Outcome::Panicked`):"
                    );
                }
            });
            previous(info);
        }));
    });
}

/// Runs `f`, catching a panic together with where it happened.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    PANIC_SITE.with(|site| *site.borrow_mut() = Some(None));
    let result = panic::catch_unwind(panic::AssertUnwindSafe(f));
    let location = PANIC_SITE.with(|site| site.borrow_mut().take()).flatten();
    result.map_err(|payload| Panic::new(payload, location))
}

impl<T, E> Outcome<T, E> {
    /// The case's name, for traces and messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Outcome::Value(_) => "value",
            Outcome::Error(_) => "error",
            Outcome::Panicked(_) => "panic",
            Outcome::Cancelled => "cancelled",
            Outcome::Killed(_) => "killed",
            Outcome::Crashed(_) => "crashed",
            Outcome::Lost(_) => "lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rare cases are boxed: an outcome of a word-sized value is two
    /// words, so that a pool's result is small to move and to queue.
    #[test]
    fn an_outcome_of_a_word_is_two_words() {
        assert_eq!(
            std::mem::size_of::<Outcome<u64, ()>>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    /// Boxing left the `Debug` forms as they were.
    #[test]
    fn debug_forms_name_the_fields() {
        assert_eq!(
            format!("{:?}", Lost::new("lease expired", 2)),
            r#"Lost { reason: "lease expired", attempts: 2 }"#
        );
        assert_eq!(
            format!("{:?}", Killed::new(Some(9), b"bye".to_vec())),
            r#"Killed { signal: Some(9), stderr: "bye" }"#
        );
    }
}
