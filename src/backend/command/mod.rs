//! The command place: an external program as a task.
//!
//! The program runs in a process group of its own, under a launcher (the
//! `launcher` module) once this process has called `init`, or as this
//! process's own child otherwise. A task body on a worker
//! thread owns it and runs two scoped helpers: one writes the messages
//! (lines) to its stdin, one turns its stdout lines into events; a worker
//! thread keeps the tail of its stderr. A stop or kill signals the program
//! on the requesting thread, through the task's stop hook and the shared
//! escalation (`unix` module). Both output pipes are always read to their
//! end, so a program never blocks on a full pipe, whoever reads the events;
//! once the program has exited, a pipe that something outside its group
//! still holds open is drained for [`DRAIN`] and then left.

mod launcher;

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::Signal;

use crate::backend::thread as place;
use crate::backend::unix::{
    Escalation, Stage, Tail, Terminate, die_with_parent, kill_descendants, signal_group, spawn,
    timespec,
};
use crate::ctx::Ctx;
use crate::error::{StartError, TryEmitError};
use crate::mailbox::{INBOX_CLOSED, KILL};
use crate::outcome::{Killed, Outcome};
use crate::sync::lock;
use crate::task::{Settings, Task};
use launcher::Launched;
pub(crate) use launcher::{enable as enable_launcher, enter_if_launcher};

/// How much of a program's stderr a command task keeps: the last 64 KiB.
pub const STDERR_TAIL: usize = 64 * 1024;

/// An external program as a task: each message is written to its stdin as a
/// line, each line of its stdout is an event, and its exit is the outcome.
///
/// **Stop escalates**: the task's stop (or its handle's drop) sends
/// `SIGTERM` to the program's process group and closes its stdin; whatever
/// still runs after the grace period gets `SIGKILL`. [`Task::kill`] sends
/// `SIGKILL` at once. A task stopped before its body began kills the
/// program at once; its outcome is then
/// [`Outcome::Cancelled`](crate::Outcome::Cancelled).
///
/// **No process outlives the task** where this process has called
/// [`init`](crate::init): the program then runs under a *launcher*, a small
/// process of ours (this binary, executed again) that holds everything the
/// program starts, even what leaves its group or session (`setsid`, a
/// double fork). When the program exits, the launcher kills all of that;
/// a kill reaches all of it; and when this process ends, however it ends
/// (even `SIGKILL`ed), the launcher kills the program and all of it. Without
/// `init`, the program is this process's child: what it leaves in its
/// process group is killed when it exits, a kill reaches what it started
/// wherever that went while it runs, and the program itself dies with this
/// process; but what it moved out of its group outlives a stop, and what
/// it started outlives this process. The launcher costs about a
/// millisecond more per spawn (see the README's benchmarks).
///
/// **Pipes are always drained.** Events beyond the outbox capacity are
/// dropped and counted ([`Exit::dropped_lines`]) rather than blocking the
/// program; the last [`STDERR_TAIL`] bytes of stderr are kept. A line that is
/// not UTF-8 arrives with its bad bytes replaced.
///
/// # Examples
///
/// ```
/// use sidetask::Command;
///
/// let task = Command::new("sort").spawn()?;
/// for word in ["pear", "apple", "fig"] {
///     task.send(word.to_string())?;
/// }
/// task.close_inbox(); // end of input: sort prints its lines and exits
/// let lines: Vec<String> = task.iter().collect();
/// assert_eq!(lines, ["apple", "fig", "pear"]);
/// assert!(task.join().value().unwrap().success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a command does nothing until `spawn`"]
pub struct Command {
    command: std::process::Command,
    grace: Duration,
    settings: Settings,
}

impl Command {
    /// A command running `program`, found on the `PATH` as
    /// [`std::process::Command`] finds it.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            command: std::process::Command::new(program),
            grace: Duration::from_secs(5),
            settings: Settings {
                name: None,
                inbox: crate::DEFAULT_CAPACITY,
                outbox: 1024,
                timeout: None,
            },
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Command {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable of the program.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Command {
        self.command.env(key, value);
        self
    }

    /// Sets the program's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Command {
        self.command.current_dir(dir);
        self
    }

    /// How long a stopped program has between `SIGTERM` and `SIGKILL`
    /// (5 seconds unless set).
    pub fn grace_period(mut self, grace: Duration) -> Command {
        self.grace = grace;
        self
    }

    /// Names the task, as [`Builder::name`](crate::Builder::name).
    pub fn name(mut self, name: impl Into<String>) -> Command {
        self.settings.name = Some(name.into());
        self
    }

    /// How many lines can wait to be written to stdin before
    /// [`Task::send`] waits.
    pub fn inbox_capacity(mut self, capacity: usize) -> Command {
        self.settings.inbox = capacity;
        self
    }

    /// How many stdout lines can wait to be received (1024 unless set);
    /// lines beyond it are dropped and counted.
    pub fn outbox_capacity(mut self, capacity: usize) -> Command {
        self.settings.outbox = capacity;
        self
    }

    /// Stops the task (as [`Task::stop`]) once `timeout` has passed.
    pub fn timeout(mut self, timeout: Duration) -> Command {
        self.settings.timeout = Some(timeout);
        self
    }

    /// Starts the program and returns the task's handle.
    ///
    /// # Errors
    ///
    /// If the program could not be started (not found, not executable…) or
    /// no thread could be started to watch it; in the latter case the
    /// program is killed.
    pub fn spawn(self) -> Result<Task<Exit, io::Error, String, String>, StartError> {
        self.spawn_with(Text)
    }

    /// Starts the program with JSON lines: each message is written to its
    /// stdin as one line of JSON, and each stdout line is parsed as JSON
    /// into an event. A line that does not parse is counted in
    /// [`Exit::malformed_lines`] and skipped.
    ///
    /// # Errors
    ///
    /// As [`spawn`](Command::spawn).
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::Command;
    ///
    /// // `cat` echoes each JSON line back.
    /// let task = Command::new("cat").spawn_json::<Vec<u32>, Vec<u32>>()?;
    /// task.send(vec![1, 2, 3])?;
    /// assert_eq!(task.recv()?, vec![1, 2, 3]);
    /// task.close_inbox();
    /// assert!(task.join().value().unwrap().success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn spawn_json<In, Ev>(self) -> Result<Task<Exit, io::Error, In, Ev>, StartError>
    where
        In: serde::Serialize + Send + 'static,
        Ev: serde::de::DeserializeOwned + Send + 'static,
    {
        self.spawn_with(Json)
    }

    fn spawn_with<In, Ev, C>(
        mut self,
        codec: C,
    ) -> Result<Task<Exit, io::Error, In, Ev>, StartError>
    where
        In: Send + 'static,
        Ev: Send + 'static,
        C: LineCodec<In, Ev> + Send + 'static,
    {
        let program = self.command.get_program().to_owned();
        let started = match launcher::launch(&self.command) {
            Ok(Some(launched)) => Started::Launched(launched),
            Ok(None) => {
                self.command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .process_group(0);
                // The program dies with this process, even SIGKILLed.
                die_with_parent(&mut self.command);
                Started::Direct(spawn(self.command).map_err(|e| StartError::program(&program, e))?)
            }
            Err(e) => return Err(StartError::program(&program, e)),
        };
        // The program's group gets the signals; a kill reaches every
        // descendant of the launcher (or of the program).
        let (group, root) = started.pids();
        let escalation = Escalation::new(group, root, self.grace, true, Terminate::Group);
        let guard = ChildGuard(Some(started), Arc::clone(&escalation));
        let ours = Arc::clone(&escalation);
        let task = place::task(self.settings, move |ctx: &Ctx<In, Ev>| {
            match drive(ctx, guard, &ours, &codec) {
                Ok((exit, Stage::Killed)) if exit.signal() == Some(Signal::KILL.as_raw()) => {
                    Outcome::Killed(Killed::new(exit.signal(), exit.stderr_tail))
                }
                Ok((exit, _)) => Outcome::Value(exit),
                Err(e) => Outcome::Error(e),
            }
        });
        // Stop and kill signal the program on the requesting thread, at once.
        let shared = task.shared();
        let weak = Arc::downgrade(&shared);
        shared.set_stop_hook(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                escalation.request(shared.mailbox.is(KILL));
            }
        }));
        drop(shared);
        // Should it fail, the guard kills and reaps the program.
        task.start()?;
        Ok(task)
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("command", &self.command)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How a command task's program ended.
///
/// Its `Debug` shows the stderr tail as text (bad bytes replaced).
#[non_exhaustive]
#[derive(Clone)]
pub struct Exit {
    /// The program's exit status.
    pub status: ExitStatus,
    /// The last [`STDERR_TAIL`] bytes the program wrote to stderr.
    pub stderr_tail: Vec<u8>,
    /// Stdout lines dropped because the outbox was full (or nobody could
    /// read them any more).
    pub dropped_lines: u64,
    /// Stdout lines that did not decode into an event (JSON lines only).
    pub malformed_lines: u64,
}

impl Exit {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, if the program exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that ended the program, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// The stderr tail as text, bad bytes replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr_tail).into_owned()
    }
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exit")
            .field("status", &self.status)
            .field("stderr", &String::from_utf8_lossy(&self.stderr_tail))
            .field("dropped_lines", &self.dropped_lines)
            .field("malformed_lines", &self.malformed_lines)
            .finish()
    }
}

/// A command's program: started directly, or under a launcher that holds
/// every descendant of it.
enum Started {
    Direct(Child),
    Launched(Launched),
}

impl Started {
    /// The program's process group, and the root of the tree a kill
    /// reaches.
    fn pids(&self) -> (u32, u32) {
        match self {
            Started::Direct(child) => (child.id(), child.id()),
            Started::Launched(launched) => (launched.program(), launched.launcher()),
        }
    }

    /// The program's stdin and stdout, and the stderr of the process this
    /// one started.
    fn take_pipes(&mut self) -> (Option<OwnedFd>, Option<OwnedFd>, Option<ChildStderr>) {
        match self {
            Started::Direct(child) => (
                child.stdin.take().map(OwnedFd::from),
                child.stdout.take().map(OwnedFd::from),
                child.stderr.take(),
            ),
            Started::Launched(launched) => (
                launched.stdin.take(),
                launched.stdout.take(),
                launched.stderr.take(),
            ),
        }
    }

    /// Waits for the program's exit.
    fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Started::Direct(child) => child.wait(),
            Started::Launched(launched) => launched.wait(),
        }
    }

    /// Once the program has exited (and the escalation is retired): kills
    /// what it left (in its group, or, under a launcher, anywhere: the
    /// launcher has killed it before it reported the exit, and reaps the
    /// program once let go).
    fn after_exit(&mut self) {
        match self {
            Started::Direct(child) => signal_group(child.id(), Signal::KILL),
            Started::Launched(launched) => launched.release(),
        }
    }

    /// Kills the program and whatever it started, and reaps it.
    fn kill_and_reap(&mut self) {
        let (group, root) = self.pids();
        if root != group {
            kill_descendants(root);
        }
        signal_group(group, Signal::KILL);
        let _ = self.wait();
        self.after_exit();
    }
}

/// Owns the program until its task's body takes it; if the body never runs
/// (the task was stopped before it began), the program and its group are
/// killed and reaped.
struct ChildGuard(Option<Started>, Arc<Escalation>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut started) = self.0.take() {
            self.1.retire();
            started.kill_and_reap();
        }
    }
}

/// The body of a command task.
/// How messages become stdin lines and stdout lines become events.
trait LineCodec<In, Ev>: Sync {
    fn encode(&self, message: &In) -> io::Result<String>;
    /// `None` for a line that is not an event.
    fn decode(&self, line: &[u8]) -> Option<Ev>;
}

/// Plain text: a message is a line; a line is an event, bad UTF-8 replaced.
struct Text;

impl LineCodec<String, String> for Text {
    fn encode(&self, message: &String) -> io::Result<String> {
        Ok(message.clone())
    }

    fn decode(&self, line: &[u8]) -> Option<String> {
        Some(String::from_utf8_lossy(line).into_owned())
    }
}

/// One JSON value per line.
#[cfg(feature = "json")]
struct Json;

#[cfg(feature = "json")]
impl<In, Ev> LineCodec<In, Ev> for Json
where
    In: serde::Serialize,
    Ev: serde::de::DeserializeOwned,
{
    fn encode(&self, message: &In) -> io::Result<String> {
        serde_json::to_string(message).map_err(io::Error::other)
    }

    fn decode(&self, line: &[u8]) -> Option<Ev> {
        serde_json::from_slice(line).ok()
    }
}

/// Runs the program to its end; returns how it exited and how far a stop
/// had escalated.
fn drive<In: Send, Ev: Send, C: LineCodec<In, Ev>>(
    ctx: &Ctx<In, Ev>,
    mut guard: ChildGuard,
    escalation: &Escalation,
    codec: &C,
) -> io::Result<(Exit, Stage)> {
    // Made first: should it fail, the guard still kills and reaps the
    // program.
    let exited = Exited::new()?;
    let mut child = guard.0.take().expect("the guard holds the program");
    let mailbox = ctx.mailbox();
    let (stdin, stdout, stderr) = child.take_pipes();
    let stdout = stdout.expect("stdout is piped");
    let stderr = stderr.expect("stderr is piped");
    thread::scope(|s| {
        let events = s.spawn(|| forward_lines(ctx, stdout, codec, &exited));
        let tail = Tail::start(stderr);
        s.spawn(|| {
            let Some(stdin) = stdin else { return };
            write_lines(ctx, stdin, codec, &exited);
        });
        let status = child.wait();
        let escalated = escalation.retire();
        // Whatever the program left goes with it, so that the pipes reach
        // their end and no process outlives the task.
        child.after_exit();
        // The stdin writer ends; a pipe that something outside the group
        // still holds open is drained a moment longer, then left.
        mailbox.set(INBOX_CLOSED);
        exited.now();
        let (dropped_lines, malformed_lines) =
            events.join().expect("the stdout reader does not panic");
        let stderr_tail = tail.finish();
        let status = status.map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::CHILD.raw_os_error()) {
                io::Error::new(e.kind(), crate::backend::unix::status_lost())
            } else {
                e
            }
        })?;
        let exit = Exit {
            status,
            stderr_tail,
            dropped_lines,
            malformed_lines,
        };
        Ok((exit, escalated))
    })
}

/// How long a pipe is still read (or written) once the program has exited:
/// a descendant that escaped its group (a new session) may hold it open
/// for ever.
const DRAIN: Duration = Duration::from_millis(100);

/// Tells the pipes' threads that the program has exited.
struct Exited {
    // Readable once the program has exited.
    signal: OwnedFd,
    at: Mutex<Option<Instant>>,
}

impl Exited {
    fn new() -> io::Result<Exited> {
        Ok(Exited {
            signal: rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC)?,
            at: Mutex::new(None),
        })
    }

    /// The program has exited now.
    fn now(&self) {
        *lock(&self.at) = Some(Instant::now());
        let _ = rustix::io::write(&self.signal, &1u64.to_ne_bytes());
    }

    /// Waits until `fd` is ready for `flags`: `true`, or `false` once the
    /// program has exited and the drain period passed.
    fn wait(&self, fd: &OwnedFd, flags: PollFlags) -> bool {
        loop {
            let until = lock(&self.at).map(|at| at + DRAIN);
            let timeout = match until {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    Some(timespec(left))
                }
                None => None,
            };
            let mut fds = [
                PollFd::new(fd, flags),
                PollFd::new(&self.signal, PollFlags::IN),
            ];
            // Once the program has exited, only the pipe and the time count.
            let fds = if until.is_some() {
                &mut fds[..1]
            } else {
                &mut fds[..]
            };
            match rustix::io::retry_on_intr(|| rustix::event::poll(fds, timeout.as_ref())) {
                Err(_) => return false,
                Ok(_) if !fds[0].revents().is_empty() => return true,
                Ok(_) => {}
            }
        }
    }
}

/// Writes each message the task takes as a line to the program's stdin,
/// until the inbox ends; a pipe the program's leftovers hold without
/// reading is left after the drain period. Dropping `stdin` closes it.
fn write_lines<In: Send, Ev: Send, C: LineCodec<In, Ev>>(
    ctx: &Ctx<In, Ev>,
    fd: OwnedFd,
    codec: &C,
    exited: &Exited,
) {
    if rustix::io::ioctl_fionbio(&fd, true).is_err() {
        return;
    }
    // Ends on stop, on close_inbox, on the handle's drop, and when the
    // program has exited.
    while let Ok(message) = ctx.recv() {
        let Ok(line) = codec.encode(&message) else {
            return;
        };
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match rustix::io::retry_on_intr(|| rustix::io::write(&fd, rest)) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::AGAIN) => {
                    if !exited.wait(&fd, PollFlags::OUT) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// Turns stdout lines into events until the end of the pipe (or the drain
/// period after the program's exit); returns how many were dropped for a
/// full outbox and how many did not decode.
fn forward_lines<In: Send, Ev: Send, C: LineCodec<In, Ev>>(
    ctx: &Ctx<In, Ev>,
    fd: OwnedFd,
    codec: &C,
    exited: &Exited,
) -> (u64, u64) {
    let blocking = rustix::io::ioctl_fionbio(&fd, true).is_err();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let (mut dropped, mut malformed) = (0, 0);
    let mut line_out = |line: &[u8]| {
        let mut line = line;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let Some(event) = codec.decode(line) else {
            malformed += 1;
            return;
        };
        match ctx.try_emit(event) {
            Ok(()) => {}
            // Full, or nobody will read: keep draining, count what is lost.
            Err(TryEmitError::Full(_) | TryEmitError::Disconnected(_)) => dropped += 1,
        }
    };
    loop {
        match rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf)) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
                    line_out(&pending[start..start + end]);
                    start += end + 1;
                }
                pending.drain(..start);
            }
            Err(rustix::io::Errno::AGAIN) if !blocking => {
                if !exited.wait(&fd, PollFlags::IN) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    // A last line without its newline is a line too.
    if !pending.is_empty() {
        line_out(&pending);
    }
    (dropped, malformed)
}
