//! The process place: a named task in a child process.
//!
//! The child is the current binary, executed again (never forked without
//! exec) with one end of a socketpair as its stdin; its entry hook
//! ([`init`](crate::init)) moves the socket off stdin, puts `/dev/null` in
//! its place, sets the parent-death signal and answers the handshake. Its
//! stdout is the parent's; its stderr is read by the parent, which keeps the
//! tail.
//!
//! Frames on the socket are a little-endian `u32` length and a postcard
//! payload; the length is checked against the maximum before anything is
//! allocated.
//!
//! In the parent, the task's body on a worker thread reads the child's
//! frames, and scoped helpers write the messages (at most the inbox
//! capacity in flight, the child acknowledging each one it has taken into
//! its own inbox), keep the stderr tail, and escalate a stop: a stop frame,
//! then `SIGTERM` to the child's process group after the grace period, then
//! `SIGKILL` after another. The child is waited for through a pidfd without
//! reaping it, so that its group can be killed before its pid can be
//! reused; then it is reaped by its pid.
//!
//! In the child, the task runs on a worker thread as a thread task; the
//! main thread reads frames (a closed socket means the parent is gone, and
//! the child exits at once), one helper feeds the messages into the task's
//! inbox, another forwards its events, and at the end the messages it did
//! not read are sent back with its outcome.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::command::keep_tail;
use crate::builder::Builder;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::mailbox::{EXITED, INBOX_CLOSED, KILL, STOP, Wait};
use crate::outcome::{Crash, CrashCause, Killed, Location, Outcome, Panic};
use crate::registry::{self, NamedTask, Registry};
use crate::sync::lock;
use crate::task::{Settings, Task, outcome_name};

/// The protocol's version; both sides check it at the handshake.
const VERSION: u32 = 1;
/// Set in the child's environment: the parent's pid.
const ENV: &str = "SIDETASK_CHILD_OF";
/// The test that [`test_support!`](crate::test_support) defines.
const CHILD_TEST: &str = "__sidetask_child_entry";
/// What a frame's payload may be at most unless set: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Exit codes of a child that could not run its task.
const EXIT_PARENT_GONE: i32 = 70;
const EXIT_PROTOCOL: i32 = 71;

// ---------------------------------------------------------------------------
// The protocol.

/// The parent's first frame.
#[derive(Serialize, Deserialize)]
struct Hello {
    version: u32,
    name: String,
    arg: Vec<u8>,
    max_frame: u64,
    inbox: u32,
    outbox: u32,
    memory_limit: Option<u64>,
    cpu_limit: Option<u64>,
}

/// Frames from the parent after the hello.
#[derive(Serialize, Deserialize)]
enum Down {
    Message(Vec<u8>),
    Close,
    Stop,
}

/// Frames from the child.
#[derive(Serialize, Deserialize)]
enum Up {
    Ready {
        version: u32,
    },
    Refused {
        unknown: bool,
        why: String,
    },
    Event(Vec<u8>),
    /// The child took this many messages into its task's inbox.
    Ack(u32),
    /// A message the task did not read, given back.
    Returned(Vec<u8>),
    Value(Vec<u8>),
    Error(Vec<u8>),
    Panicked {
        message: String,
        location: Option<(String, u32, u32)>,
    },
    /// The child could not encode its outcome.
    Broken(String),
}

/// Why a frame could not be read.
#[derive(Debug)]
enum FrameError {
    /// The other side closed the socket between frames.
    Closed,
    Io(io::Error),
    TooLarge(u64, usize),
    Truncated,
    Malformed(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("the connection closed"),
            FrameError::Io(e) => write!(f, "the connection failed: {e}"),
            FrameError::TooLarge(len, max) => {
                write!(f, "a frame of {len} bytes is over the maximum of {max}")
            }
            FrameError::Truncated => f.write_str("the connection closed in the middle of a frame"),
            FrameError::Malformed(e) => write!(f, "a malformed frame ({e})"),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Writes one frame in one `write_all`.
fn write_frame<T: Serialize>(mut w: impl Write, value: &T) -> io::Result<()> {
    let mut buf = vec![0u8; 4];
    let mut buf = postcard::to_extend(value, std::mem::take(&mut buf)).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| io::Error::other("frame too large"))?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(&buf)
}

/// Reads one frame's payload, checking its length before allocating.
fn read_payload(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    // A peer that closed its end with data of ours unread resets the
    // connection: that is a close too.
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Err(e) if got == 0 && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(FrameError::Closed);
            }
            Ok(0) => return Err(FrameError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(FrameError::Truncated);
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(len);
    if len as usize > max {
        return Err(FrameError::TooLarge(u64::from(len), max));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(payload)
}

fn read_frame<T: DeserializeOwned>(r: &mut impl Read, max: usize) -> Result<T, FrameError> {
    let payload = read_payload(r, max)?;
    postcard::from_bytes(&payload).map_err(FrameError::Malformed)
}

/// The writing half of a connection, shared by the threads that write.
struct Writer(Mutex<UnixStream>);

impl Writer {
    fn send<T: Serialize>(&self, frame: &T) -> io::Result<()> {
        write_frame(&mut *lock(&self.0), frame)
    }
}

// ---------------------------------------------------------------------------
// The parent's side.

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
/// calls wake); if the child still runs after the grace period, its process
/// group gets `SIGTERM`, and after another grace period `SIGKILL`.
/// [`Task::kill`] sends `SIGKILL` to the group at once, so grandchildren die
/// too. A child also dies when this process dies (parent-death signal) and
/// when its connection closes. Anything left in the child's process group
/// when it exits is killed.
///
/// **How it ended** is the outcome: the value, the task's own error, its
/// panic (message and location carried across), [`Outcome::Killed`] when we
/// killed it, or [`Outcome::Crashed`] with a [`CrashCause`]: it exited
/// without a result, a signal (`SIGSEGV`, `SIGABRT`…), likely out of memory,
/// its CPU-time limit, or a broken protocol (a malformed, oversized or
/// truncated frame). Each carries the stderr tail.
///
/// Messages the task did not read come back to the handle's inbox when it
/// ends ([`Task::take_unread`]), including those still on their way.
///
/// # Examples
///
/// ```no_run
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
///             ctx.emit(2 * n).map_err(|_| Stopped)?;
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
    program: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    grace: Duration,
    start_timeout: Duration,
    max_frame: usize,
    memory_limit: Option<u64>,
    cpu_limit: Option<u64>,
    settings: Settings,
    task: PhantomData<fn() -> T>,
}

impl<T: NamedTask> Process<T> {
    /// A process task of type `T`, started with `arg`.
    pub fn new(arg: T::Arg) -> Process<T> {
        Process {
            arg,
            program: None,
            envs: Vec::new(),
            cwd: None,
            grace: Duration::from_secs(5),
            start_timeout: Duration::from_secs(30),
            max_frame: DEFAULT_MAX_FRAME,
            memory_limit: None,
            cpu_limit: None,
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
        self.grace = grace;
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
        self.start_timeout = timeout;
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Limits the child's address space to `bytes` (`RLIMIT_AS`); an
    /// allocation beyond it fails, and the outcome is
    /// [`CrashCause::OutOfMemory`]. Address space counts more than memory
    /// in use (each thread's stack, the allocator's reserved arenas): leave
    /// a few hundred MiB of headroom.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Limits the child's CPU time (`RLIMIT_CPU`, in whole seconds, at least
    /// one); past it the child gets `SIGXCPU`, and the outcome is
    /// [`CrashCause::CpuLimit`].
    pub fn cpu_limit(mut self, limit: Duration) -> Self {
        self.cpu_limit = Some(limit.as_secs().max(1));
        self
    }

    /// The largest frame payload either side accepts
    /// ([`DEFAULT_MAX_FRAME`] unless set): a larger message, event or value
    /// ends the task as [`CrashCause::Protocol`] before anything is
    /// allocated for it.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.min(u32::MAX as usize);
        self
    }

    /// Runs another program as the child instead of the current one (a
    /// worker binary built from the same crate, which calls
    /// [`init`](crate::init) with a registry holding `T`).
    pub fn program(mut self, program: impl AsRef<Path>) -> Self {
        self.program = Some(program.as_ref().to_owned());
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

    /// How many events can wait to be received before the child's
    /// [`Ctx::emit`] waits.
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
    /// - [`StartError::io_error`]: the child or a thread could not be
    ///   started, or the argument could not be encoded.
    pub fn spawn(self) -> Result<ProcessTask<T>, StartError> {
        let Some(registry) = registry::registry() else {
            return Err(StartError::handshake(
                "`sidetask::init` was not called in this process".to_owned(),
            ));
        };
        if !registry.contains(T::NAME) {
            return Err(StartError::unknown_task(T::NAME));
        }
        let hello = Hello {
            version: VERSION,
            name: T::NAME.to_owned(),
            arg: encode(&self.arg).map_err(|e| StartError::spawn(io::Error::other(e)))?,
            max_frame: self.max_frame as u64,
            inbox: clamp(self.settings.inbox),
            outbox: clamp(self.settings.outbox),
            memory_limit: self.memory_limit,
            cpu_limit: self.cpu_limit,
        };
        let (ours, theirs) = UnixStream::pair().map_err(StartError::spawn)?;
        let program = self
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let mut command = std::process::Command::new(program);
        // A test binary runs only the hidden test that enters the task; a
        // program whose `main` calls `init` first never reads these.
        command
            .args([
                CHILD_TEST,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(ENV, std::process::id().to_string())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let child = spawn_child(command).map_err(StartError::spawn)?;
        let mut guard = ChildGuard::new(child);
        let mut reader =
            BufReader::with_capacity(64 * 1024, ours.try_clone().map_err(StartError::spawn)?);
        // A child that stops reading (frozen) cannot block the writers, nor
        // the stop's escalation, for longer than this.
        let _ = ours.set_write_timeout(Some(self.grace.max(Duration::from_secs(1))));
        let writer = Writer(Mutex::new(ours));
        match handshake(&writer, &mut reader, &hello, self.start_timeout) {
            Ok(()) => {}
            Err(Refusal::Unknown) => {
                guard.kill_and_reap();
                return Err(StartError::unknown_task(T::NAME));
            }
            Err(Refusal::Other(why)) => {
                let tail = guard.kill_and_reap();
                let tail = String::from_utf8_lossy(&tail);
                return Err(StartError::handshake(if tail.is_empty() {
                    why
                } else {
                    format!("{why}; the child's stderr ends with:\n{tail}")
                }));
            }
        }
        let link = Link {
            writer,
            reader,
            max_frame: self.max_frame,
            grace: self.grace,
        };
        let task = Task::with_outcome(self.settings, move |ctx: &Ctx<T::In, T::Event>| {
            drive::<T>(ctx, guard, link)
        });
        task.start()?;
        Ok(task)
    }
}

impl<T: NamedTask> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("task", &T::NAME)
            .field("program", &self.program)
            .field("grace", &self.grace)
            .field("memory_limit", &self.memory_limit)
            .field("cpu_limit", &self.cpu_limit)
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

fn clamp(capacity: usize) -> u32 {
    u32::try_from(capacity.max(1)).unwrap_or(u32::MAX)
}

enum Refusal {
    Unknown,
    Other(String),
}

fn handshake(
    writer: &Writer,
    reader: &mut BufReader<UnixStream>,
    hello: &Hello,
    timeout: Duration,
) -> Result<(), Refusal> {
    let failed = |what: &str, e: &dyn fmt::Display| Refusal::Other(format!("{what}: {e}"));
    // A child that already answered and left makes the send fail; its
    // answer is still read.
    let sent = writer.send(hello);
    let stream = reader.get_ref();
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(|e| failed("could not set the start timeout", &e))?;
    let answer = read_frame::<Up>(reader, 4096);
    let _ = reader.get_ref().set_read_timeout(None);
    match answer {
        Ok(Up::Ready { version }) if version == VERSION => Ok(()),
        Ok(Up::Ready { version }) => Err(Refusal::Other(format!(
            "the child speaks protocol version {version}, this process {VERSION}"
        ))),
        Ok(Up::Refused { unknown: true, .. }) => Err(Refusal::Unknown),
        Ok(Up::Refused { why, .. }) => Err(Refusal::Other(why)),
        Ok(_) => Err(Refusal::Other("the child answered out of turn".to_owned())),
        Err(FrameError::Io(e))
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
        {
            Err(Refusal::Other(format!(
                "no answer within {timeout:?} (does the child's `main` call `sidetask::init` first, or the test file use `sidetask::test_support!`?)"
            )))
        }
        Err(FrameError::Closed) => Err(Refusal::Other(format!(
            "the child exited without answering{} (does its `main` call `sidetask::init` first, or the test file use `sidetask::test_support!`?)",
            sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
        ))),
        Err(e) => Err(failed("the handshake failed", &e)),
    }
}

/// The parent's ends of the connection.
struct Link {
    writer: Writer,
    reader: BufReader<UnixStream>,
    max_frame: usize,
    grace: Duration,
}

/// Owns the child until the task's body takes it; if the body never runs,
/// the child and its group are killed and reaped.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// Kills the child's group, reaps it, and returns its stderr tail.
    fn kill_and_reap(&mut self) -> Vec<u8> {
        let Some(mut child) = self.0.take() else {
            return Vec::new();
        };
        signal_group(child.id(), Signal::KILL);
        let tail = child.stderr.take().map(keep_tail).unwrap_or_default();
        let _ = child.wait();
        tail
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The group may be gone already; nothing to do then.
        let _ = kill_process_group(pid, signal);
    }
}

/// Messages on their way to the child: how many more may go, and copies of
/// those not yet taken into the child's inbox (they come back if the task
/// ends first).
struct InFlight {
    state: Mutex<FlightState>,
    changed: Condvar,
}

struct FlightState {
    credits: usize,
    unacked: VecDeque<Vec<u8>>,
    ended: bool,
}

impl InFlight {
    fn ack(&self, n: usize) -> bool {
        let mut s = lock(&self.state);
        if n > s.unacked.len() {
            return false;
        }
        s.unacked.drain(..n);
        s.credits += n;
        self.changed.notify_all();
        true
    }

    fn end(&self) -> VecDeque<Vec<u8>> {
        let mut s = lock(&self.state);
        s.ended = true;
        self.changed.notify_all();
        std::mem::take(&mut s.unacked)
    }

    /// Waits for room to send one more; `false` once the task has ended.
    fn reserve(&self) -> bool {
        let mut s = lock(&self.state);
        while s.credits == 0 && !s.ended {
            s = self
                .changed
                .wait(s)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        !s.ended
    }
}

/// The body of a process task in the parent.
fn drive<T: NamedTask>(
    ctx: &Ctx<T::In, T::Event>,
    mut guard: ChildGuard,
    link: Link,
) -> Outcome<T::Value, T::Error> {
    let mut child = guard.0.take().expect("the guard holds the child");
    let pid = child.id();
    let mailbox = ctx.mailbox();
    let stderr = child.stderr.take().expect("stderr is piped");
    let Link {
        writer,
        mut reader,
        max_frame,
        grace,
    } = link;
    let flight = InFlight {
        state: Mutex::new(FlightState {
            credits: mailbox.inbox_capacity(),
            unacked: VecDeque::new(),
            ended: false,
        }),
        changed: Condvar::new(),
    };
    // The last signal we sent the child's group (0: none).
    let signalled = AtomicI32::new(0);
    let send_signal = |signal: Signal| {
        signalled.store(signal.as_raw(), Ordering::SeqCst);
        signal_group(pid, signal);
    };
    thread::scope(|s| {
        let tail = s.spawn(|| keep_tail(stderr));
        let forwarder = s.spawn(|| forward_messages::<T>(ctx, &writer, &flight));
        s.spawn(|| {
            mailbox.wait_for(STOP | EXITED, Wait::Forever);
            if mailbox.is(EXITED) {
                return;
            }
            if !mailbox.is(KILL) {
                let _ = writer.send(&Down::Stop);
                for signal in [Signal::TERM, Signal::KILL] {
                    let until = Instant::now()
                        .checked_add(grace)
                        .map_or(Wait::Forever, Wait::Until);
                    mailbox.wait_for(EXITED | KILL, until);
                    if mailbox.is(EXITED) {
                        return;
                    }
                    if mailbox.is(KILL) {
                        break;
                    }
                    send_signal(signal);
                }
            }
            if !mailbox.is(EXITED) {
                send_signal(Signal::KILL);
            }
        });

        let mut end = None;
        let mut returned = Vec::new();
        let mut broken = None;
        loop {
            let frame = match read_frame::<Up>(&mut reader, max_frame) {
                Ok(frame) => frame,
                Err(FrameError::Closed) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            };
            let step = match frame {
                Up::Event(bytes) => decode::<T::Event>(&bytes).map(|event| {
                    // Wait for room (backpressure reaches the child through
                    // the socket); after a stop, keep what fits.
                    if let Err(e) = ctx.emit(event) {
                        let _ = ctx.try_emit(e.into_inner());
                    }
                }),
                Up::Ack(n) => {
                    if flight.ack(n as usize) {
                        Ok(())
                    } else {
                        Err("the child acknowledged more messages than were sent".to_owned())
                    }
                }
                Up::Returned(bytes) => decode::<T::In>(&bytes).map(|m| returned.push(m)),
                Up::Value(bytes) => decode(&bytes).map(|v| end = Some(Outcome::Value(v))),
                Up::Error(bytes) => decode(&bytes).map(|e| end = Some(Outcome::Error(e))),
                Up::Panicked { message, location } => {
                    let location = location.map(|(file, line, col)| Location::new(file, line, col));
                    end = Some(Outcome::Panicked(Panic::new(Box::new(message), location)));
                    Ok(())
                }
                Up::Broken(why) => Err(format!("the child could not send its outcome: {why}")),
                Up::Ready { .. } | Up::Refused { .. } => {
                    Err("the child sent a handshake frame after the handshake".to_owned())
                }
            };
            if let Err(why) = step {
                broken = Some(why);
                break;
            }
        }
        if broken.is_some() {
            send_signal(Signal::KILL);
        }
        // Wait for the child's exit without reaping it, so that its pid (and
        // its group's id) cannot be reused before the group is killed.
        wait_exit(&child);
        signal_group(pid, Signal::KILL);
        let status = child.wait().ok();
        mailbox.set(EXITED);
        // Messages still on their way come back after those the child
        // returned, then the handle's inbox. The forwarder is told to end
        // (a closed inbox wakes it) and gives back what it holds first.
        let unacked = flight.end();
        mailbox.set(INBOX_CLOSED);
        let _ = forwarder.join();
        for bytes in unacked {
            if let Ok(m) = decode::<T::In>(&bytes) {
                returned.push(m);
            }
        }
        mailbox.give_back(returned);
        let stderr_tail = tail.join().unwrap_or_default();
        classify(
            end,
            broken,
            status,
            signalled.load(Ordering::SeqCst),
            mailbox.is(KILL),
            stderr_tail,
        )
    })
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("a malformed payload ({e})"))
}

/// Writes the handle's messages to the child, at most the capacity in
/// flight; on a closed inbox, tells the child.
fn forward_messages<T: NamedTask>(ctx: &Ctx<T::In, T::Event>, writer: &Writer, flight: &InFlight) {
    loop {
        if !flight.reserve() {
            return;
        }
        let message = match ctx.recv() {
            Ok(message) => message,
            Err(crate::CtxRecvError::Disconnected) => {
                let _ = writer.send(&Down::Close);
                return;
            }
            // Stopped: the stop watcher tells the child.
            Err(_) => return,
        };
        let Ok(bytes) = encode(&message) else {
            // A message that cannot be encoded cannot reach the child: it is
            // dropped, as `serde` refused it.
            tracing::warn!("a message to a process task could not be encoded; dropped");
            continue;
        };
        {
            let mut s = lock(&flight.state);
            if s.ended {
                drop(s);
                ctx.mailbox().give_back(vec![message]);
                return;
            }
            s.credits -= 1;
            s.unacked.push_back(bytes.clone());
        }
        if writer.send(&Down::Message(bytes)).is_err() {
            return;
        }
    }
}

/// Waits until the child has exited, leaving it to be reaped. Without a
/// pidfd (kernels before 5.3), returns at once: the caller then reaps first
/// and kills the group after.
fn wait_exit(child: &Child) {
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return;
    };
    while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
    ) {}
}

fn classify<V, E>(
    end: Option<Outcome<V, E>>,
    broken: Option<String>,
    status: Option<ExitStatus>,
    signalled: i32,
    kill_asked: bool,
    stderr_tail: Vec<u8>,
) -> Outcome<V, E> {
    if let Some(end) = end {
        return end;
    }
    if let Some(why) = broken {
        return Outcome::Crashed(Crash::new(CrashCause::Protocol(why), stderr_tail));
    }
    let out_of_memory = || String::from_utf8_lossy(&stderr_tail).contains("memory allocation of");
    let Some(status) = status else {
        return Outcome::Crashed(Crash::new(
            CrashCause::Protocol("the child's exit status was lost".to_owned()),
            stderr_tail,
        ));
    };
    if let Some(signal) = status.signal() {
        if signalled == signal || (kill_asked && signal == Signal::KILL.as_raw()) {
            return Outcome::Killed(Killed::new(Some(signal), stderr_tail));
        }
        let cause = if signal == Signal::XCPU.as_raw() {
            CrashCause::CpuLimit
        } else if signal == Signal::KILL.as_raw() || out_of_memory() {
            CrashCause::OutOfMemory
        } else {
            CrashCause::Signal(signal)
        };
        return Outcome::Crashed(Crash::new(cause, stderr_tail));
    }
    let code = status.code().unwrap_or(-1);
    let cause = if out_of_memory() {
        CrashCause::OutOfMemory
    } else {
        CrashCause::Exited(code)
    };
    Outcome::Crashed(Crash::new(cause, stderr_tail))
}

/// Starts children from one long-lived thread: the parent-death signal
/// fires when the thread that started a child ends, so it must be a thread
/// that never ends.
fn spawn_child(command: std::process::Command) -> io::Result<Child> {
    type Request = (std::process::Command, Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<io::Result<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx): (Sender<Request>, Receiver<Request>) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("sidetask-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| tx)
    });
    let spawner = spawner
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    spawner
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

// ---------------------------------------------------------------------------
// The child's side.

/// How the child runs one registered task type.
pub(crate) struct Entry {
    run: fn(Conn, Hello) -> !,
}

pub(crate) fn entry<T: NamedTask>() -> Entry {
    Entry {
        run: run_child::<T>,
    }
}

/// The child's connection to its parent.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: Writer,
}

/// If this process is a child started for a process task, runs the task and
/// exits; otherwise returns.
pub(crate) fn enter_if_child(registry: &Registry) {
    let Some(parent) = std::env::var_os(ENV)
        .and_then(|v| v.to_str()?.parse::<i32>().ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // A grandchild that inherited the variable (the same program started
    // by the task) is not our child: it runs as a program of its own.
    if rustix::process::getppid() != Some(parent) {
        return;
    }
    // Die with the parent; if it died before this line, the check below
    // sees a new parent.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if rustix::process::getppid() != Some(parent) {
        std::process::exit(EXIT_PARENT_GONE);
    }
    let conn = match take_connection() {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("sidetask child: no connection to the parent: {e}");
            std::process::exit(EXIT_PROTOCOL);
        }
    };
    serve(registry, conn)
}

/// Moves the socket off stdin (so that nothing reads it by mistake) and
/// puts `/dev/null` there.
fn take_connection() -> io::Result<Conn> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    let stream = UnixStream::from(fd);
    Ok(Conn {
        reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
        writer: Writer(Mutex::new(stream)),
    })
}

fn serve(registry: &Registry, mut conn: Conn) -> ! {
    let refuse = |conn: &Conn, unknown: bool, why: String| -> ! {
        let _ = conn.writer.send(&Up::Refused {
            unknown,
            why: why.clone(),
        });
        eprintln!("sidetask child: {why}");
        std::process::exit(EXIT_PROTOCOL)
    };
    let hello = match read_frame::<Hello>(&mut conn.reader, 1 << 30) {
        Ok(hello) => hello,
        Err(FrameError::Closed) => std::process::exit(EXIT_PARENT_GONE),
        Err(e) => refuse(&conn, false, format!("could not read the task: {e}")),
    };
    if hello.version != VERSION {
        refuse(
            &conn,
            false,
            format!(
                "the parent speaks protocol version {}, this child {VERSION}",
                hello.version
            ),
        );
    }
    use rustix::process::{Resource, Rlimit, setrlimit};
    let limits = [
        (Resource::As, hello.memory_limit),
        (Resource::Cpu, hello.cpu_limit),
    ];
    for (resource, limit) in limits {
        let Some(limit) = limit else { continue };
        // The CPU limit's hard value is a second later: SIGXCPU first.
        let hard = if resource == Resource::Cpu {
            limit + 1
        } else {
            limit
        };
        let set = setrlimit(
            resource,
            Rlimit {
                current: Some(limit),
                maximum: Some(hard),
            },
        );
        if let Err(e) = set {
            refuse(
                &conn,
                false,
                format!("could not set the {resource:?} limit: {e}"),
            );
        }
    }
    match registry.get(&hello.name) {
        Some(entry) => (entry.run)(conn, hello),
        None => {
            let names: Vec<_> = registry.names().collect();
            refuse(
                &conn,
                true,
                format!(
                    "no task named `{}` is registered in the child (registered: {names:?})",
                    hello.name
                ),
            )
        }
    }
}

/// A message read from the socket, or the end of messages.
enum Staged<In> {
    Message(In),
    Close,
}

fn run_child<T: NamedTask>(conn: Conn, hello: Hello) -> ! {
    let Conn { mut reader, writer } = conn;
    let max_frame = usize::try_from(hello.max_frame).unwrap_or(usize::MAX);
    let arg: T::Arg = match postcard::from_bytes(&hello.arg) {
        Ok(arg) => arg,
        Err(e) => {
            let why = format!("could not decode the argument of `{}`: {e}", T::NAME);
            let _ = writer.send(&Up::Refused {
                unknown: false,
                why: why.clone(),
            });
            eprintln!("sidetask child: {why}");
            std::process::exit(EXIT_PROTOCOL)
        }
    };
    let task = Builder::new()
        .name(T::NAME)
        .inbox_capacity(hello.inbox as usize)
        .outbox_capacity(hello.outbox as usize)
        .build(move |ctx: &Ctx<T::In, T::Event>| T::run(ctx, arg));
    if writer.send(&Up::Ready { version: VERSION }).is_err() || task.start().is_err() {
        std::process::exit(EXIT_PARENT_GONE);
    }
    let feed = task.feed();
    let stopper = task.stopper();
    let (staged_tx, staged_rx) = crossbeam_channel::unbounded::<Staged<T::In>>();
    // Held while a message is acknowledged and goes in, so that the end
    // finds every acknowledged message read, in the inbox, or refused.
    // The acknowledgement comes first: once the parent reads an event the
    // task sent in answer to a message, it knows the message arrived.
    let feeding = Mutex::new(());
    let refused = Mutex::new(Vec::new());
    let fail = |why: String| -> ! {
        eprintln!("sidetask child: {why}");
        std::process::exit(EXIT_PROTOCOL)
    };
    thread::scope(|s| {
        s.spawn(|| {
            for staged in staged_rx {
                let _feeding = lock(&feeding);
                match staged {
                    Staged::Message(message) => {
                        if writer.send(&Up::Ack(1)).is_err() {
                            std::process::exit(EXIT_PARENT_GONE);
                        }
                        // Refused once the task stops or ends: given back
                        // at the end.
                        if let Err(message) = feed.feed(message) {
                            lock(&refused).push(message);
                        }
                    }
                    Staged::Close => feed.close(),
                }
            }
        });
        s.spawn(|| {
            while let Ok(event) = task.recv() {
                let frame = match encode(&event) {
                    Ok(bytes) if bytes.len() <= max_frame => Up::Event(bytes),
                    Ok(bytes) => Up::Broken(format!(
                        "an event of {} bytes is over the maximum frame of {max_frame}",
                        bytes.len()
                    )),
                    Err(e) => Up::Broken(format!("could not encode an event: {e}")),
                };
                let broken = matches!(frame, Up::Broken(_));
                if writer.send(&frame).is_err() {
                    std::process::exit(EXIT_PARENT_GONE);
                }
                if broken {
                    std::process::exit(EXIT_PROTOCOL);
                }
            }
            task.wait();
            let _feeding = lock(&feeding);
            let mut frames = Vec::new();
            let unread = task.take_unread().unwrap_or_default();
            for message in unread.into_iter().chain(lock(&refused).drain(..)) {
                match encode(&message) {
                    Ok(bytes) => frames.push(Up::Returned(bytes)),
                    Err(e) => fail(format!("could not encode an unread message: {e}")),
                }
            }
            let last = match task.take_outcome() {
                Outcome::Value(v) => encode(&v).map(Up::Value),
                Outcome::Error(e) => encode(&e).map(Up::Error),
                Outcome::Panicked(p) => Ok(Up::Panicked {
                    message: p.message().to_owned(),
                    location: p
                        .location()
                        .map(|l| (l.file().to_owned(), l.line(), l.column())),
                }),
                other => Ok(Up::Broken(format!(
                    "the task ended as {}",
                    outcome_name(&other)
                ))),
            };
            let last = match last {
                Ok(frame) => frame,
                Err(e) => Up::Broken(format!("could not encode the outcome: {e}")),
            };
            frames.push(last);
            for frame in &frames {
                if writer.send(frame).is_err() {
                    std::process::exit(EXIT_PARENT_GONE);
                }
            }
            std::process::exit(0);
        });
        loop {
            match read_frame::<Down>(&mut reader, max_frame) {
                Ok(Down::Message(bytes)) => match postcard::from_bytes(&bytes) {
                    Ok(message) => {
                        let _ = staged_tx.send(Staged::Message(message));
                    }
                    Err(e) => fail(format!("a malformed message from the parent: {e}")),
                },
                Ok(Down::Close) => {
                    let _ = staged_tx.send(Staged::Close);
                }
                Ok(Down::Stop) => stopper.stop(),
                // The parent is gone: nobody is left to report to.
                Err(FrameError::Closed) => std::process::exit(EXIT_PARENT_GONE),
                Err(e) => fail(format!("a broken connection to the parent: {e}")),
            }
        }
    })
}
