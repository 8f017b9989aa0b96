//! One error type per operation.
//!
//! Errors of operations that take a value give it back (`SendError<T>(pub T)`),
//! and their `Debug` does not require `T: Debug`. `Display` is lower case and
//! ends without a period.

use std::error::Error;
use std::fmt;
use std::io;

/// Writes the shared `Debug` of an error that carries a value back: the
/// variant's name only, so that `T: Debug` is not required.
macro_rules! debug_without_value {
    ($ty:ident { $($variant:ident),* }) => {
        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$variant(..) => f.write_str(concat!(stringify!($variant), "(..)")),)*
                }
            }
        }
    };
}

/// Generates `into_inner`, `Display` and `Error` for an enum whose every
/// variant carries the value back.
macro_rules! value_error {
    ($ty:ident { $($variant:ident => $msg:literal),* }) => {
        impl<T> $ty<T> {
            /// Takes back the value that could not be delivered.
            pub fn into_inner(self) -> T {
                match self {
                    $($ty::$variant(v) => v,)*
                }
            }
        }

        impl<T> fmt::Display for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$variant(..) => f.write_str($msg),)*
                }
            }
        }

        impl<T> Error for $ty<T> {}
        debug_without_value!($ty { $($variant),* });
    };
}

/// Generates `Display` and `Error` for a field-less error enum.
macro_rules! plain_error {
    ($ty:ident { $($variant:ident => $msg:literal),* }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$variant => f.write_str($msg),)*
                }
            }
        }

        impl Error for $ty {}
    };
}

// ---------------------------------------------------------------------------
// The handle's side: messages in.

/// The error of [`Task::send`](crate::Task::send). The message is given
/// back.
///
/// Unlike crossbeam's `SendError`, which has one cause, this is an enum: a
/// place that carries messages elsewhere (a child process) refuses a
/// message over its maximum size, and that is worth telling apart from a
/// task that is gone.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendError<T> {
    /// The task is stopping or has ended.
    Disconnected(T),
    /// The message is over the largest the task's place carries (a process
    /// task's [`max_frame`](crate::Process::max_frame), encoded).
    TooLarge(T),
}

value_error!(SendError {
    Disconnected => "sending to a task that is stopping or has ended",
    TooLarge => "sending a message over the largest the task's place carries (`max_frame`)"
});

impl<T> SendError<T> {
    /// Returns `true` if the task is stopping or has ended.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }

    /// Returns `true` if the message is over the largest the task's place
    /// carries.
    pub fn is_too_large(&self) -> bool {
        matches!(self, SendError::TooLarge(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    /// A failed [`send`](crate::Task::send) is the same case of
    /// [`try_send`](crate::Task::try_send): the message is kept.
    fn from(err: SendError<T>) -> TrySendError<T> {
        match err {
            SendError::Disconnected(m) => TrySendError::Disconnected(m),
            SendError::TooLarge(m) => TrySendError::TooLarge(m),
        }
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    /// A failed [`send`](crate::Task::send) is the same case of
    /// [`send_timeout`](crate::Task::send_timeout): the message is kept.
    fn from(err: SendError<T>) -> SendTimeoutError<T> {
        match err {
            SendError::Disconnected(m) => SendTimeoutError::Disconnected(m),
            SendError::TooLarge(m) => SendTimeoutError::TooLarge(m),
        }
    }
}

/// The error of [`Task::try_send`](crate::Task::try_send). The message is
/// given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The task's inbox is full.
    Full(T),
    /// The task is stopping or has ended.
    Disconnected(T),
    /// The message is over the largest the task's place carries.
    TooLarge(T),
}

value_error!(TrySendError {
    Full => "sending to a task whose inbox is full",
    Disconnected => "sending to a task that is stopping or has ended",
    TooLarge => "sending a message over the largest the task's place carries (`max_frame`)"
});

impl<T> TrySendError<T> {
    /// Returns `true` if the inbox was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Returns `true` if the task is stopping or has ended.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Disconnected(_))
    }

    /// Returns `true` if the message is over the largest the task's place
    /// carries.
    pub fn is_too_large(&self) -> bool {
        matches!(self, TrySendError::TooLarge(_))
    }
}

/// The error of [`Task::send_timeout`](crate::Task::send_timeout). The message
/// is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The inbox stayed full until the timeout.
    Timeout(T),
    /// The task is stopping or has ended.
    Disconnected(T),
    /// The message is over the largest the task's place carries.
    TooLarge(T),
}

value_error!(SendTimeoutError {
    Timeout => "timed out sending to a task whose inbox is full",
    Disconnected => "sending to a task that is stopping or has ended",
    TooLarge => "sending a message over the largest the task's place carries (`max_frame`)"
});

impl<T> SendTimeoutError<T> {
    /// Returns `true` if the send timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }

    /// Returns `true` if the task is stopping or has ended.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Disconnected(_))
    }

    /// Returns `true` if the message is over the largest the task's place
    /// carries.
    pub fn is_too_large(&self) -> bool {
        matches!(self, SendTimeoutError::TooLarge(_))
    }
}

// ---------------------------------------------------------------------------
// The handle's side: events out.

/// The error of [`Task::recv`](crate::Task::recv): the task has ended and
/// every event it emitted has been received.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving from a task that has ended and has no events left")
    }
}

impl Error for RecvError {}

impl From<RecvError> for TryRecvError {
    /// A failed [`recv`](crate::Task::recv) is the `Disconnected` case of
    /// [`try_recv`](crate::Task::try_recv).
    fn from(_: RecvError) -> TryRecvError {
        TryRecvError::Disconnected
    }
}

impl From<RecvError> for RecvTimeoutError {
    /// A failed [`recv`](crate::Task::recv) is the `Disconnected` case of
    /// [`recv_timeout`](crate::Task::recv_timeout).
    fn from(_: RecvError) -> RecvTimeoutError {
        RecvTimeoutError::Disconnected
    }
}

/// The error of [`Task::try_recv`](crate::Task::try_recv).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// No event is waiting now.
    Empty,
    /// The task has ended and every event it emitted has been received.
    Disconnected,
}

plain_error!(TryRecvError {
    Empty => "receiving from a task with no event waiting",
    Disconnected => "receiving from a task that has ended and has no events left"
});

impl TryRecvError {
    /// Returns `true` if no event was waiting.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }

    /// Returns `true` if the task has ended and every event has been
    /// received.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Disconnected)
    }
}

/// The error of [`Task::recv_timeout`](crate::Task::recv_timeout).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvTimeoutError {
    /// No event came before the timeout.
    Timeout,
    /// The task has ended and every event it emitted has been received.
    Disconnected,
}

plain_error!(RecvTimeoutError {
    Timeout => "timed out receiving from a task",
    Disconnected => "receiving from a task that has ended and has no events left"
});

impl RecvTimeoutError {
    /// Returns `true` if no event came before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }

    /// Returns `true` if the task has ended and every event has been
    /// received.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Disconnected)
    }
}

// ---------------------------------------------------------------------------
// The task's side.

/// The task has been asked to stop.
///
/// Returned by [`Ctx::checkpoint`](crate::Ctx::checkpoint) and
/// [`Ctx::sleep`](crate::Ctx::sleep), so that a task body can leave early
/// with `?`. Any error type with `From<Stopped>` (a boxed error, `anyhow`, or
/// your own) accepts it.
///
/// The errors of the task's blocking calls that mean "this task has nothing
/// more to do" convert into it, so `?` works on them in a body whose error
/// type is `Stopped`:
///
/// - [`CtxRecvError`], from [`Ctx::recv`](crate::Ctx::recv): asked to stop,
///   or no message can ever arrive.
/// - [`EmitError`], from [`Ctx::emit`](crate::Ctx::emit): asked to stop
///   while the outbox was full, or nobody can ever read the event (which
///   is dropped by the conversion).
///
/// The errors of the `try_` and `_timeout` calls do not convert:
/// [`CtxTryRecvError::Empty`], [`CtxRecvTimeoutError::Timeout`] and
/// [`TryEmitError::Full`] say "not now", and a `?` that turned them into
/// `Stopped` would end a task that was not asked to stop. Match on them
/// instead (their `is_*` predicates help).
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Stopped};
///
/// // Doubles every message until it is stopped or its handle is gone.
/// let task = sidetask::spawn(|ctx: &Ctx<u32, u32>| -> Result<(), Stopped> {
///     loop {
///         let n = ctx.recv()?;
///         ctx.emit(2 * n)?;
///     }
/// });
/// task.send(21)?;
/// assert_eq!(task.recv()?, 42);
/// task.stop();
/// assert_eq!(task.join().error(), Some(Stopped));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, PartialEq, Eq, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task was asked to stop")
    }
}

impl Error for Stopped {}

impl From<CtxRecvError> for Stopped {
    /// Both cases end the body's work: it was asked to stop, or no message
    /// can ever arrive.
    fn from(_: CtxRecvError) -> Stopped {
        Stopped
    }
}

impl<T> From<EmitError<T>> for Stopped {
    /// Both cases end the body's work: it was asked to stop, or nobody can
    /// ever read its events. The event is dropped.
    fn from(_: EmitError<T>) -> Stopped {
        Stopped
    }
}

/// The error of [`Ctx::recv`](crate::Ctx::recv), inside the task.
///
/// It converts into [`Stopped`], so `?` leaves a body whose error type is
/// `Stopped`; and into [`CtxTryRecvError`] and [`CtxRecvTimeoutError`], the
/// same cases of the other receiving calls.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CtxRecvError {
    /// The task has been asked to stop.
    Stopped,
    /// The inbox is empty and no message can ever arrive: the handle is
    /// gone (dropped or detached) or closed the inbox.
    Disconnected,
}

plain_error!(CtxRecvError {
    Stopped => "the task was asked to stop",
    Disconnected => "the task's inbox is empty and closed"
});

impl CtxRecvError {
    /// Returns `true` if the task has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        matches!(self, CtxRecvError::Stopped)
    }

    /// Returns `true` if no message can ever arrive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, CtxRecvError::Disconnected)
    }
}

/// The error of [`Ctx::try_recv`](crate::Ctx::try_recv), inside the task.
///
/// It does not convert into [`Stopped`]: `Empty` only means "not now".
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CtxTryRecvError {
    /// No message is waiting now.
    Empty,
    /// The task has been asked to stop.
    Stopped,
    /// The handle is gone and the inbox is empty.
    Disconnected,
}

plain_error!(CtxTryRecvError {
    Empty => "no message is waiting in the inbox",
    Stopped => "the task was asked to stop",
    Disconnected => "the task's inbox is empty and closed"
});

impl CtxTryRecvError {
    /// Returns `true` if no message was waiting.
    pub fn is_empty(&self) -> bool {
        matches!(self, CtxTryRecvError::Empty)
    }

    /// Returns `true` if the task has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        matches!(self, CtxTryRecvError::Stopped)
    }

    /// Returns `true` if no message can ever arrive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, CtxTryRecvError::Disconnected)
    }
}

/// The error of [`Ctx::recv_timeout`](crate::Ctx::recv_timeout), inside the
/// task.
///
/// It does not convert into [`Stopped`]: `Timeout` only means "not yet".
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum CtxRecvTimeoutError {
    /// No message came before the timeout.
    Timeout,
    /// The task has been asked to stop.
    Stopped,
    /// The handle is gone and the inbox is empty.
    Disconnected,
}

plain_error!(CtxRecvTimeoutError {
    Timeout => "timed out waiting for a message",
    Stopped => "the task was asked to stop",
    Disconnected => "the task's inbox is empty and closed"
});

impl CtxRecvTimeoutError {
    /// Returns `true` if no message came before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CtxRecvTimeoutError::Timeout)
    }

    /// Returns `true` if the task has been asked to stop.
    pub fn is_stopped(&self) -> bool {
        matches!(self, CtxRecvTimeoutError::Stopped)
    }

    /// Returns `true` if no message can ever arrive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, CtxRecvTimeoutError::Disconnected)
    }
}

macro_rules! stopped_into {
    ($($ty:ident),*) => {$(
        impl From<Stopped> for $ty {
            fn from(_: Stopped) -> Self {
                $ty::Stopped
            }
        }
    )*};
}

stopped_into!(CtxRecvError, CtxTryRecvError, CtxRecvTimeoutError);

/// `recv`'s cases are also cases of the other receiving calls.
macro_rules! recv_into {
    ($($ty:ident),*) => {$(
        impl From<CtxRecvError> for $ty {
            fn from(err: CtxRecvError) -> Self {
                match err {
                    CtxRecvError::Stopped => $ty::Stopped,
                    CtxRecvError::Disconnected => $ty::Disconnected,
                }
            }
        }
    )*};
}

recv_into!(CtxTryRecvError, CtxRecvTimeoutError);

/// The error of [`Ctx::emit`](crate::Ctx::emit), inside the task. The event is
/// given back.
///
/// It converts into [`Stopped`] (dropping the event), so `?` leaves a body
/// whose error type is `Stopped`, and into [`TryEmitError`].
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum EmitError<T> {
    /// The outbox was full and the task was asked to stop while waiting.
    Stopped(T),
    /// Nobody can ever read the event: the handle was dropped or detached,
    /// or the task has ended, or (in a [`Pool`](crate::Pool)'s task, whose
    /// outbox nobody reads as events come) the outbox is full.
    Disconnected(T),
}

value_error!(EmitError {
    Stopped => "the task was asked to stop while its outbox was full",
    Disconnected => "emitting an event that nobody can read"
});

impl<T> EmitError<T> {
    /// Returns `true` if the task was asked to stop while its outbox was
    /// full.
    pub fn is_stopped(&self) -> bool {
        matches!(self, EmitError::Stopped(_))
    }

    /// Returns `true` if nobody can ever read the event.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, EmitError::Disconnected(_))
    }
}

/// The error of [`Ctx::try_emit`](crate::Ctx::try_emit), inside the task. The
/// event is given back.
///
/// It does not convert into [`Stopped`]: `Full` only means "not now".
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TryEmitError<T> {
    /// The outbox is full.
    Full(T),
    /// Nobody can ever read the event: the handle was dropped or detached,
    /// or the task has ended.
    Disconnected(T),
}

value_error!(TryEmitError {
    Full => "emitting into a full outbox",
    Disconnected => "emitting an event that nobody can read"
});

impl<T> TryEmitError<T> {
    /// Returns `true` if the outbox was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryEmitError::Full(_))
    }

    /// Returns `true` if nobody can ever read the event.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryEmitError::Disconnected(_))
    }
}

impl<T> From<EmitError<T>> for TryEmitError<T> {
    /// `emit` fails with `Stopped` only when the outbox was full, which is
    /// what [`try_emit`](crate::Ctx::try_emit) reports as `Full` (it does so
    /// whether or not the task was asked to stop). The event is kept.
    fn from(err: EmitError<T>) -> TryEmitError<T> {
        match err {
            EmitError::Stopped(v) => TryEmitError::Full(v),
            EmitError::Disconnected(v) => TryEmitError::Disconnected(v),
        }
    }
}

// ---------------------------------------------------------------------------
// Starting.

/// Why a task could not be started: the error of
/// [`Task::start`](crate::Task::start), [`Builder::spawn`](crate::Builder::spawn),
/// [`Process::spawn`](crate::Process::spawn),
/// [`Command::spawn`](crate::Command::spawn), [`Pool::run`](crate::Pool::run)
/// and [`Chain::start`](crate::Chain::start).
///
/// Its text names the cause, including the operating system's error when
/// there is one (so [`source`](Error::source) does not repeat it: it gives
/// that error's own source). Ask which case it is with the `is_*`
/// predicates, [`handshake_error`](StartError::handshake_error) and
/// [`io_error`](StartError::io_error).
///
/// # Examples
///
/// ```
/// use sidetask::Command;
///
/// let err = Command::new("/no/such/program").spawn().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "could not start program `/no/such/program`: No such file or directory (os error 2)"
/// );
/// assert_eq!(err.io_error().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
/// ```
#[derive(Debug)]
pub struct StartError {
    kind: StartErrorKind,
}

/// Said when a process task is spawned before `init`: no child was started.
const NOT_INITIALIZED: &str =
    "`sidetask::init` was not called in this process: no process task can start";

#[derive(Debug)]
enum StartErrorKind {
    AlreadyStarted,
    /// No thread could be started for the task (or its helper).
    Thread(io::Error),
    /// A command's program, or a process task's child, could not be
    /// started.
    Program {
        program: String,
        error: io::Error,
    },
    /// A process task's argument could not be encoded.
    Encode(io::Error),
    /// A process task's argument, in its frame, is over the maximum frame.
    ArgumentTooLarge {
        size: usize,
        max: usize,
    },
    UnknownTask {
        name: String,
        in_child: bool,
    },
    Handshake(String),
    NotInitialized,
    #[cfg(feature = "tokio")]
    NoRuntime,
}

impl StartError {
    fn new(kind: StartErrorKind) -> StartError {
        StartError { kind }
    }

    pub(crate) fn already_started() -> StartError {
        StartError::new(StartErrorKind::AlreadyStarted)
    }

    /// No thread could be started for the task.
    pub(crate) fn spawn(err: io::Error) -> StartError {
        StartError::new(StartErrorKind::Thread(err))
    }

    /// `program` (a command's, or a process task's child) could not be
    /// started.
    pub(crate) fn program(program: impl AsRef<std::ffi::OsStr>, err: io::Error) -> StartError {
        StartError::new(StartErrorKind::Program {
            program: program.as_ref().to_string_lossy().into_owned(),
            error: err,
        })
    }

    /// A process task's argument could not be encoded.
    pub(crate) fn encode(err: impl fmt::Display) -> StartError {
        StartError::new(StartErrorKind::Encode(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("could not encode the task's argument: {err}"),
        )))
    }

    /// A process task's argument of `size` encoded bytes does not fit in a
    /// frame of at most `max` bytes.
    pub(crate) fn argument_too_large(size: usize, max: usize) -> StartError {
        StartError::new(StartErrorKind::ArgumentTooLarge { size, max })
    }

    /// No task of that name in this process's registry.
    pub(crate) fn unknown_task(name: &str) -> StartError {
        StartError::new(StartErrorKind::UnknownTask {
            name: name.to_owned(),
            in_child: false,
        })
    }

    /// No task of that name in the child's registry.
    pub(crate) fn unknown_task_in_child(name: &str) -> StartError {
        StartError::new(StartErrorKind::UnknownTask {
            name: name.to_owned(),
            in_child: true,
        })
    }

    pub(crate) fn handshake(why: String) -> StartError {
        StartError::new(StartErrorKind::Handshake(why))
    }

    /// No process task can start: `init` was not called (no child was).
    pub(crate) fn not_initialized() -> StartError {
        StartError {
            kind: StartErrorKind::NotInitialized,
        }
    }

    /// Returns `true` if no task of that name is registered (in this
    /// process's [`Registry`](crate::Registry), or in the child's).
    pub fn is_unknown_task(&self) -> bool {
        matches!(self.kind, StartErrorKind::UnknownTask { .. })
    }

    /// Returns `true` if a process task's argument, encoded, does not fit in
    /// the maximum frame ([`Process::max_frame`](crate::Process::max_frame)).
    /// It is refused before the child starts, and before the argument is
    /// encoded: only its size is counted.
    ///
    /// The error converts into an [`io::Error`] of kind
    /// [`InvalidInput`](io::ErrorKind::InvalidInput).
    pub fn is_argument_too_large(&self) -> bool {
        matches!(self.kind, StartErrorKind::ArgumentTooLarge { .. })
    }

    /// Why a process task could not be handed to a child: [`init`](crate::init)
    /// was not called in this process, or the child did not answer the
    /// handshake as expected (a version mismatch, no answer within the start
    /// timeout, `init` missing in the child's `main`); the text ends with
    /// the child's stderr tail when it wrote any.
    pub fn handshake_error(&self) -> Option<&str> {
        match &self.kind {
            StartErrorKind::Handshake(why) => Some(why),
            StartErrorKind::NotInitialized => Some(NOT_INITIALIZED),
            _ => None,
        }
    }

    /// Returns `true` if the task had been started (or stopped) already.
    pub fn is_already_started(&self) -> bool {
        matches!(self.kind, StartErrorKind::AlreadyStarted)
    }

    /// Returns the underlying error if no thread, child process or program
    /// could be started for the task, or a process task's argument could not
    /// be encoded (an error of kind [`InvalidInput`](io::ErrorKind::InvalidInput)).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            StartErrorKind::Thread(e)
            | StartErrorKind::Program { error: e, .. }
            | StartErrorKind::Encode(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "tokio")]
impl StartError {
    pub(crate) fn no_runtime() -> StartError {
        StartError::new(StartErrorKind::NoRuntime)
    }

    /// Returns `true` if an async task was spawned outside a tokio runtime.
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.kind, StartErrorKind::NoRuntime)
    }
}

/// Writes a byte count as its largest whole unit: `16 MiB`, `64 KiB`,
/// `10000 bytes`.
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KIB: usize = 1 << 10;
        const MIB: usize = 1 << 20;
        const GIB: usize = 1 << 30;
        match self.0 {
            0 => f.write_str("0 bytes"),
            n if n % GIB == 0 => write!(f, "{} GiB", n / GIB),
            n if n % MIB == 0 => write!(f, "{} MiB", n / MIB),
            n if n % KIB == 0 => write!(f, "{} KiB", n / KIB),
            n => write!(f, "{n} bytes"),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StartErrorKind::AlreadyStarted => {
                f.write_str("the task was started or stopped already")
            }
            StartErrorKind::Thread(e) => write!(f, "could not start a thread for the task: {e}"),
            StartErrorKind::Program { program, error } => {
                write!(f, "could not start program `{program}`: {error}")
            }
            StartErrorKind::Encode(e) => e.fmt(f),
            StartErrorKind::ArgumentTooLarge { size, max } => {
                let max = Bytes(*max);
                if size > &max.0 {
                    write!(f, "an argument of {size} bytes is over `max_frame` ({max})")?;
                } else {
                    write!(
                        f,
                        "an argument of {size} bytes makes a task frame over `max_frame` ({max})"
                    )?;
                }
                f.write_str("; raise it with `.max_frame(...)`")
            }
            StartErrorKind::UnknownTask {
                name,
                in_child: false,
            } => write!(
                f,
                "no task named `{name}` in the registry given to `sidetask::init`"
            ),
            StartErrorKind::UnknownTask {
                name,
                in_child: true,
            } => write!(
                f,
                "no task named `{name}` in the registry the child gave to `sidetask::init`"
            ),
            StartErrorKind::Handshake(why) => {
                write!(f, "the child process did not take the task: {why}")
            }
            StartErrorKind::NotInitialized => f.write_str(NOT_INITIALIZED),
            #[cfg(feature = "tokio")]
            StartErrorKind::NoRuntime => {
                f.write_str("spawning an async task outside a tokio runtime")
            }
        }
    }
}

impl Error for StartError {
    /// The operating system's error is in the text already; this gives its
    /// own source, if it has one.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.io_error().and_then(Error::source)
    }
}

impl From<StartError> for io::Error {
    /// An error of the same kind as the underlying one
    /// ([`InvalidInput`](io::ErrorKind::InvalidInput) for an argument too
    /// large, [`Other`](io::ErrorKind::Other) when there is none), whose
    /// text is the start error's: the program, the sizes, the name.
    fn from(err: StartError) -> io::Error {
        let kind = match &err.kind {
            StartErrorKind::ArgumentTooLarge { .. } => io::ErrorKind::InvalidInput,
            _ => err.io_error().map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, err)
    }
}
