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

/// The error of [`Task::send`](crate::Task::send): the task is stopping or has
/// ended, so the message was not delivered. It is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// Takes back the message that could not be delivered.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending to a task that is stopping or has ended")
    }
}

impl<T> Error for SendError<T> {}

/// The error of [`Task::try_send`](crate::Task::try_send). The message is
/// given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The task's inbox is full.
    Full(T),
    /// The task is stopping or has ended.
    Disconnected(T),
}

value_error!(TrySendError {
    Full => "sending to a task whose inbox is full",
    Disconnected => "sending to a task that is stopping or has ended"
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
}

/// The error of [`Task::send_timeout`](crate::Task::send_timeout). The message
/// is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The inbox stayed full until the timeout.
    Timeout(T),
    /// The task is stopping or has ended.
    Disconnected(T),
}

value_error!(SendTimeoutError {
    Timeout => "timed out sending to a task whose inbox is full",
    Disconnected => "sending to a task that is stopping or has ended"
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

// ---------------------------------------------------------------------------
// The task's side.

/// The task has been asked to stop.
///
/// Returned by [`Ctx::checkpoint`](crate::Ctx::checkpoint) and
/// [`Ctx::sleep`](crate::Ctx::sleep), so that a task body can leave early
/// with `?`. Any error type with `From<Stopped>` (a boxed error, `anyhow`, or
/// your own) accepts it.
#[derive(Debug, PartialEq, Eq, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task was asked to stop")
    }
}

impl Error for Stopped {}

/// The error of [`Ctx::recv`](crate::Ctx::recv), inside the task.
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

/// The error of [`Ctx::try_recv`](crate::Ctx::try_recv), inside the task.
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

/// The error of [`Ctx::recv_timeout`](crate::Ctx::recv_timeout), inside the
/// task.
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

/// The error of [`Ctx::emit`](crate::Ctx::emit), inside the task. The event is
/// given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum EmitError<T> {
    /// The outbox was full and the task was asked to stop while waiting.
    Stopped(T),
    /// Nobody can ever read the event: the handle was dropped or detached.
    Disconnected(T),
}

value_error!(EmitError {
    Stopped => "the task was asked to stop while its outbox was full",
    Disconnected => "emitting an event that nobody can read"
});

/// The error of [`Ctx::try_emit`](crate::Ctx::try_emit), inside the task. The
/// event is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TryEmitError<T> {
    /// The outbox is full.
    Full(T),
    /// Nobody can ever read the event: the handle was dropped or detached.
    Disconnected(T),
}

value_error!(TryEmitError {
    Full => "emitting into a full outbox",
    Disconnected => "emitting an event that nobody can read"
});

// ---------------------------------------------------------------------------
// Starting.

/// Why a task could not be started: the error of
/// [`Task::start`](crate::Task::start), [`Builder::spawn`](crate::Builder::spawn),
/// [`Process::spawn`](crate::Process::spawn),
/// [`Command::spawn`](crate::Command::spawn), [`Pool::run`](crate::Pool::run)
/// and [`Chain::start`](crate::Chain::start).
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
    Spawn(io::Error),
    UnknownTask(String),
    Handshake(String),
    NotInitialized,
    #[cfg(feature = "tokio")]
    NoRuntime,
}

impl StartError {
    pub(crate) fn already_started() -> StartError {
        StartError {
            kind: StartErrorKind::AlreadyStarted,
        }
    }

    pub(crate) fn spawn(err: io::Error) -> StartError {
        StartError {
            kind: StartErrorKind::Spawn(err),
        }
    }

    pub(crate) fn unknown_task(name: &str) -> StartError {
        StartError {
            kind: StartErrorKind::UnknownTask(name.to_owned()),
        }
    }

    pub(crate) fn handshake(why: String) -> StartError {
        StartError {
            kind: StartErrorKind::Handshake(why),
        }
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
        matches!(self.kind, StartErrorKind::UnknownTask(_))
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
    /// be encoded or was over the maximum frame.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            StartErrorKind::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "tokio")]
impl StartError {
    pub(crate) fn no_runtime() -> StartError {
        StartError {
            kind: StartErrorKind::NoRuntime,
        }
    }

    /// Returns `true` if an async task was spawned outside a tokio runtime.
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.kind, StartErrorKind::NoRuntime)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StartErrorKind::AlreadyStarted => {
                f.write_str("the task was started or stopped already")
            }
            StartErrorKind::Spawn(_) => {
                f.write_str("failed to start a thread or process for the task")
            }
            StartErrorKind::UnknownTask(name) => write!(f, "no task named `{name}` is registered"),
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
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            StartErrorKind::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StartError> for io::Error {
    fn from(err: StartError) -> io::Error {
        match err.kind {
            StartErrorKind::Spawn(e) => e,
            _ => io::Error::other(err),
        }
    }
}
