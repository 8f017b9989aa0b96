//! The process place: a named task in a child process.
//!
//! The child is the current binary, executed again (never forked without
//! exec) with one end of a socketpair as its stdin; its entry hook
//! ([`init`](crate::init)) moves the socket off stdin, puts `/dev/null` in
//! its place, sets the parent-death signal and answers the handshake. Its
//! stdout is the parent's; its stderr is read by the parent, which keeps the
//! tail.
//!
//! # Who carries a task's messages
//!
//! The thread that sends writes the message to the child's socket itself,
//! while fewer than the inbox capacity are unread in the child (others wait
//! in the inbox and are written as the child reads). The thread that waits
//! in `Task::recv` reads the socket itself, and so does the child's body in
//! `Ctx::recv` (both through the core's wire): a message and its answer cost
//! two thread wake-ups, as over a bare socketpair. When nobody waits, a
//! worker thread reads for the handle (and another in the child for its
//! body), so events, stops and the end still come in.
//!
//! # Glossary
//!
//! - *worker*: a child process, with the parent's ends of its connection.
//! - *session*: one task's life on a worker, on the parent's side: the
//!   messages on their way, who writes them, what the frames do.
//! - *credit*: how many more messages may be on their way to the child (its
//!   inbox's capacity, less those it has not acknowledged reading).
//! - *pump*: writing what waits (messages while there is credit, a closed
//!   inbox, a stop) on the thread that asks, or on the thread already at it.
//! - *relay*: who reads a connection: the thread waiting for what it brings,
//!   or a *fallback* thread when none waits. The *role* is the right to read;
//!   the fallback is *kicked* out of it when a caller comes, *lingers* a
//!   moment before it takes it back, and is *hurried* by a waiter that does
//!   not read.
//! - *warm*: a pool's idle worker kept for its next task.
//!
//! # Files
//!
//! - `protocol`: the frames.
//! - `relay`: the reading role.
//! - `worker`: a child process: start, handshake, reaping.
//! - `session` and `drive`: the parent's side of a task, in bytes; the
//!   session's *front* is where its messages come from and what the child
//!   sends goes.
//! - `typed`: a process task's handle as the front.
//! - `erased`: a registered task run by its name alone, for a place that
//!   speaks bytes (a remote worker's isolated tasks).
//! - `classify`: how a task ended without an outcome.
//! - `warm`: a pool's idle children.
//! - `child`: the child's side.

mod child;
mod classify;
mod drive;
#[cfg(feature = "redis")]
mod erased;
mod protocol;
mod relay;
mod session;
mod typed;
mod warm;
mod worker;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use child::enter_if_child;
#[cfg(feature = "redis")]
pub(crate) use erased::prepare_isolated;
use protocol::{Hello, VERSION, encode};
pub(crate) use warm::Warm;
use worker::{Refusal, Spare, Worker};

use crate::backend::thread as place;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::named::{self, NamedTask};
use crate::spare::Spares;
use crate::task::{Settings, Task};

/// Set in the child's environment: the parent's pid.
const ENV: &str = "SIDETASK_CHILD_OF";
/// What a frame's payload may be at most unless set: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Exit codes of a child that could not run its task.
const EXIT_PARENT_GONE: i32 = 70;
const EXIT_PROTOCOL: i32 = 71;
/// A child told to terminate whose task caught its `SIGTERM`.
const EXIT_TERMINATED: i32 = 72;

/// How children are started and driven.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) program: PathBuf,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) grace: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) cpu_limit: Option<u64>,
    pub(crate) inbox: usize,
    pub(crate) outbox: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            program: PathBuf::from("/proc/self/exe"),
            envs: Vec::new(),
            cwd: None,
            grace: Duration::from_secs(5),
            start_timeout: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            memory_limit: None,
            cpu_limit: None,
            inbox: crate::DEFAULT_CAPACITY,
            outbox: crate::DEFAULT_CAPACITY,
        }
    }
}

/// Fails unless `name` is in the registry given to [`init`](crate::init).
pub(crate) fn check_registered(name: &str) -> Result<(), StartError> {
    let Some(registry) = named::registry() else {
        return Err(StartError::not_initialized());
    };
    if registry.contains(name) {
        Ok(())
    } else {
        Err(StartError::unknown_task(name))
    }
}

/// What to send a child for a task of type `T`; fails if the argument
/// cannot be encoded or is over the maximum frame.
///
/// The argument's size is counted before it is encoded, so an argument over
/// the maximum is refused without a buffer of its size.
fn hello<T: NamedTask>(arg: &T::Arg, config: &Config, reuse: bool) -> Result<Hello, StartError> {
    let arg_len = postcard::experimental::serialized_size(arg).map_err(StartError::encode)?;
    if arg_len > config.max_frame {
        return Err(StartError::argument_too_large(arg_len, config.max_frame));
    }
    let arg = encode(arg).map_err(StartError::encode)?;
    hello_of(T::NAME, named::fingerprint::<T>(), arg, config, reuse)
}

/// What to send a child for the task named `name`, its argument encoded;
/// fails if the argument is over the maximum frame.
fn hello_of(
    name: &str,
    fingerprint: u64,
    arg: Vec<u8>,
    config: &Config,
    reuse: bool,
) -> Result<Hello, StartError> {
    let arg_len = arg.len();
    if arg_len > config.max_frame {
        return Err(StartError::argument_too_large(arg_len, config.max_frame));
    }
    let hello = Hello {
        version: VERSION,
        name: name.to_owned(),
        fingerprint,
        arg,
        max_frame: config.max_frame as u64,
        inbox: clamp(config.inbox),
        outbox: clamp(config.outbox),
        memory_limit: config.memory_limit,
        cpu_limit: config.cpu_limit,
        reuse,
    };
    // The frame adds a tag to the hello.
    let size = postcard::experimental::serialized_size(&hello).map_or(usize::MAX, |n| n + 1);
    if size > config.max_frame {
        return Err(StartError::argument_too_large(arg_len, config.max_frame));
    }
    Ok(hello)
}

/// What a message's frame adds to its encoded payload, at most.
const FRAMING: usize = 6;

/// A value's size once encoded (`usize::MAX` if it cannot be encoded, which
/// its sending then finds out).
fn encoded_size<V: serde::Serialize>(value: &V) -> usize {
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

fn clamp(capacity: usize) -> u32 {
    u32::try_from(capacity.max(1)).unwrap_or(u32::MAX)
}

/// The handle of a process task running the named task `T`.
pub type ProcessTask<T> = Task<
    <T as NamedTask>::Value,
    <T as NamedTask>::Error,
    <T as NamedTask>::In,
    <T as NamedTask>::Event,
>;

/// A [`NamedTask`] to run in a child process: the builder of a process task.
///
/// The child is the current program, executed again; it must call
/// [`init`](crate::init) first thing in `main` (or, in a test binary, use
/// [`test_support!`](crate::test_support)). Its stdout is this process's
/// stdout; the last [`STDERR_TAIL`](crate::STDERR_TAIL) bytes of its stderr
/// are kept for the outcome.
///
/// **Stop escalates**: a stop (or the handle's drop) first asks the task to
/// stop, as on a thread (its context sees [`Ctx::stopped`] and its blocking
/// calls wake); if the child still runs after the grace period, it is told
/// to terminate: everything its task started gets `SIGTERM`, and once that
/// is gone the child ends by `SIGTERM` itself; after another grace period,
/// `SIGKILL` reaches the child and everything it started. [`Task::kill`]
/// sends that `SIGKILL` at once.
///
/// **No process outlives the task**: the child is a subreaper, so what its
/// task starts stays in its process tree even when it leaves the child's
/// group or session (`setsid`, a double fork); the child kills that tree
/// when its task ends, when it leaves, and when this process dies (its
/// connection closes, even after a `SIGKILL`), and a kill reaches all of
/// it. Only a child that dies by a signal it was not sent by this crate (a
/// crash, a `SIGKILL` from elsewhere) leaves behind what its task had moved
/// out of its process group; what stayed in the group is killed.
///
/// **How it ended** is the outcome: the value, the task's own error, its
/// panic (message and location carried across), [`Outcome::Killed`](crate::Outcome::Killed) when we
/// killed it, or [`Outcome::Crashed`](crate::Outcome::Crashed) with a [`CrashCause`](crate::CrashCause): it exited
/// without a result, a signal (`SIGSEGV`, `SIGABRT`…), likely out of memory,
/// its CPU-time limit, or a broken protocol (a malformed, oversized or
/// truncated frame). Each carries the stderr tail.
///
/// Messages the task did not read come back to the handle's inbox when it
/// ends ([`Task::take_unread`]), including those still on their way. The
/// child acknowledges what its task read with its next event (or every half
/// inbox), so on a kill or a crash the messages it read since then come
/// back too. A message over the maximum frame ends the task as
/// [`CrashCause::Protocol`](crate::CrashCause::Protocol) and comes back.
///
/// A child that hangs on its way out after sending its outcome (a
/// destructor that never returns) is killed after the grace period; the
/// outcome stands.
///
/// **Sending never waits on the child.** A message goes into the handle's
/// inbox (where [`Task::send`] waits for room and [`Task::try_send`] does
/// not), and from there to the child as far as its socket takes it; a
/// child that stops reading (busy, or frozen by `SIGSTOP`) holds up no
/// send, no stop and no kill. Every message reaches the child whole, in
/// order, once it reads again, or comes back unread at the end. A message
/// and its answer cost about as much as over a bare socketpair.
///
/// # Examples
///
/// ```standalone_crate
/// use sidetask::{Ctx, NamedTask, Process, Registry, Stopped};
///
/// struct Doubler;
/// impl NamedTask for Doubler {
///     const NAME: &'static str = "doubler";
///     type Arg = ();
///     type In = i64;
///     type Event = i64;
///     type Value = ();
///     type Error = Stopped;
///     fn run(ctx: &Ctx<i64, i64>, (): ()) -> Result<(), Stopped> {
///         while let Ok(n) = ctx.recv() {
///             ctx.emit(2 * n)?;
///         }
///         Ok(())
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     sidetask::init(Registry::new().with::<Doubler>()?);
///     let task = Process::<Doubler>::new(()).spawn()?;
///     task.send(21)?;
///     assert_eq!(task.recv()?, 42);
///     task.close_inbox();
///     assert!(task.join().is_value());
///     Ok(())
/// }
/// ```
#[must_use = "a process task does nothing until `spawn`"]
pub struct Process<T: NamedTask> {
    arg: T::Arg,
    config: Config,
    settings: Settings,
    task: PhantomData<fn() -> T>,
}

impl<T: NamedTask> Process<T> {
    /// A process task of type `T`, started with `arg`.
    pub fn new(arg: T::Arg) -> Process<T> {
        Process {
            arg,
            config: Config::default(),
            settings: Settings {
                name: Some(T::NAME.to_owned()),
                inbox: crate::DEFAULT_CAPACITY,
                outbox: crate::DEFAULT_CAPACITY,
                timeout: None,
            },
            task: PhantomData,
        }
    }

    /// How long each step of a stop's escalation waits (5 seconds unless
    /// set): after the stop request before `SIGTERM`, then before `SIGKILL`.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// Stops the task (as [`Task::stop`], escalating) once `timeout` has
    /// passed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = Some(timeout);
        self
    }

    /// How long the child has to start and answer the handshake (30 seconds
    /// unless set).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = timeout;
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.config
            .envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.config.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Limits the child's address space to `bytes` (`RLIMIT_AS`); an
    /// allocation beyond it fails, and the outcome is
    /// [`CrashCause::OutOfMemory`](crate::CrashCause::OutOfMemory). Address space counts more than memory
    /// in use (each thread's stack, the allocator's reserved arenas): leave
    /// a few hundred MiB of headroom.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.config.memory_limit = Some(bytes);
        self
    }

    /// Limits the child's CPU time (`RLIMIT_CPU`, in whole seconds, at least
    /// one); past it the child gets `SIGXCPU`, and the outcome is
    /// [`CrashCause::CpuLimit`](crate::CrashCause::CpuLimit).
    pub fn cpu_limit(mut self, limit: Duration) -> Self {
        self.config.cpu_limit = Some(limit.as_secs().max(1));
        self
    }

    /// The largest frame payload either side accepts
    /// ([`DEFAULT_MAX_FRAME`] unless set): a larger message, event or value
    /// ends the task as [`CrashCause::Protocol`](crate::CrashCause::Protocol) before anything is
    /// allocated for it.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.config.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// Runs another program as the child instead of the current one (a
    /// worker binary built from the same crate, which calls
    /// [`init`](crate::init) with a registry holding `T`).
    pub fn program(mut self, program: impl AsRef<Path>) -> Self {
        self.config.program = program.as_ref().to_owned();
        self
    }

    /// Names the task (its [`NAME`](NamedTask::NAME) unless set).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    /// How many messages can wait in the handle's inbox before
    /// [`Task::send`] waits (as many more can be on their way to the child
    /// and in its own inbox).
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.settings.inbox = capacity;
        self
    }

    /// How many events can wait in the handle to be received. In the child,
    /// [`Ctx::emit`] and [`Ctx::try_emit`] write straight to the parent: once
    /// these and the socket's buffer are full, `emit` waits (until the
    /// handle reads, or a stop lets the parent keep what does not fit) and
    /// `try_emit` reports `Full`.
    pub fn outbox_capacity(mut self, capacity: usize) -> Self {
        self.settings.outbox = capacity;
        self
    }

    /// Starts the child, waits for its handshake, and returns the task's
    /// handle.
    ///
    /// # Errors
    ///
    /// - [`StartError::is_unknown_task`]: `T` is not in the registry given
    ///   to [`init`](crate::init) (in this process, or in the child).
    /// - [`StartError::handshake_error`]: [`init`](crate::init) was not
    ///   called in this process, or the child did not answer the handshake
    ///   within the start timeout, answered with another protocol version,
    ///   or exited first (its stderr tail is in the text).
    /// - [`StartError::is_argument_too_large`]: the argument, encoded, does
    ///   not fit in [`max_frame`](Process::max_frame); no child was started.
    /// - [`StartError::io_error`]: the child or a thread could not be
    ///   started, or the argument could not be encoded.
    pub fn spawn(mut self) -> Result<ProcessTask<T>, StartError> {
        check_registered(T::NAME)?;
        self.config.inbox = self.settings.inbox;
        self.config.outbox = self.settings.outbox;
        let hello = hello::<T>(&self.arg, &self.config, false)?;
        // Spawned by the factory of a supervisor that keeps a standby: the
        // child started ahead takes the task, and the next one starts
        // meanwhile, on a thread of its own.
        let spares = Spares::current();
        let spare = spares
            .as_ref()
            .and_then(|spares| spares.take::<Spare>())
            .and_then(|spare| spare.fits(&self.config));
        if let Some(spares) = &spares {
            let config = self.config.clone();
            spares.start_next(move || {
                Spare::start(config)
                    .map_err(|e| tracing::debug!(error = %e, "could not start a standby child"))
                    .ok()
            });
        }
        let mut worker = match spare {
            Some(worker) => worker,
            None => Worker::start(&self.config)
                .map_err(|e| StartError::program(&self.config.program, e))?,
        };
        if let Err(refusal) = worker.begin(hello, self.config.start_timeout, self.config.max_frame)
        {
            let tail = worker.kill_and_reap();
            return Err(match refusal {
                Refusal::Unknown => StartError::unknown_task_in_child(T::NAME),
                Refusal::Other(why) if tail.is_empty() => StartError::handshake(why),
                Refusal::Other(why) => StartError::handshake(format!(
                    "{why}; the child's stderr ends with:\n{}",
                    String::from_utf8_lossy(&tail)
                )),
            });
        }
        let max_message = self.config.max_frame.saturating_sub(FRAMING);
        let config = self.config;
        let task = place::driver(self.settings, move |ctx: &Ctx<T::In, T::Event>| {
            typed::run::<T>(ctx, worker, &config, false, false).0
        });
        // A message the child would refuse is refused by the send itself.
        task.shared()
            .set_message_limit(max_message, encoded_size::<T::In>);
        task.start()?;
        Ok(task)
    }
}

impl<T: NamedTask> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("task", &T::NAME)
            .field("program", &self.config.program)
            .field("grace", &self.config.grace)
            .field("memory_limit", &self.config.memory_limit)
            .field("cpu_limit", &self.config.cpu_limit)
            .field("max_frame", &self.config.max_frame)
            .finish_non_exhaustive()
    }
}
