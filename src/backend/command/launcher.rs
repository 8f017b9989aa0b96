//! The launcher: a command's program runs under a small process of ours,
//! the current binary executed again (as a process task's child is), which
//! holds every descendant of the program.
//!
//! The launcher is a child *subreaper*: whatever the program starts stays
//! in the launcher's process tree, even what leaves the program's group or
//! session (`setsid`, a double fork). It kills that whole tree when the
//! program exits, and when its parent goes (its connection to the parent
//! closes, even after a `SIGKILL`); the program itself also dies with the
//! launcher (a parent-death signal). It is used once this process has
//! called [`init`](crate::init), which a re-executed binary needs to find
//! its way here; without it a command's program is started directly.
//!
//! # The connection
//!
//! The launcher's stdin is one end of a socketpair (moved off stdin at
//! once; `/dev/null` goes there). The parent sends the program's spec (a
//! length and a postcard payload) with the program's stdin and stdout
//! pipes attached (`SCM_RIGHTS`); the program's stderr is the launcher's,
//! which the parent reads. The launcher answers with one message when the
//! program started (its pid) or could not start (the OS error), and one
//! when it exited (its wait status), once everything it left is killed.
//! The program is not reaped until the parent closes the connection: until
//! then its pid, and its process group's, cannot be reused, so the parent's
//! signals to the group stay safe until it has retired its escalation.
//!
//! The parent signals the program's group itself (a stop's `SIGTERM`, a
//! kill's `SIGKILL`, which also reaches every descendant of the launcher);
//! the launcher, in a group of its own, is not signalled.

use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, WaitIdStatus, WaitOptions};
use serde::{Deserialize, Serialize};

use crate::backend::unix::{children, die_with_parent, ignores_sigchld, kill_descendants};

/// Set in the launcher's environment: the parent's pid.
const ENV: &str = "SIDETASK_LAUNCHER_OF";

/// How long the launcher has to answer whether the program started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest spec the launcher accepts.
const MAX_SPEC: usize = 64 << 20;

/// Whether commands run under a launcher (see [`State`]).
static STATE: AtomicU8 = AtomicU8::new(State::Off as u8);

/// Whether commands run under a launcher.
#[repr(u8)]
enum State {
    /// This process has not called `init`: a launcher would not find its
    /// way to this module.
    Off,
    On,
    /// A launcher did not answer (a binary whose `main` does not call
    /// `init` first, or a test binary without `test_support!`).
    Failed,
}

/// This process called `init`: commands run under a launcher from now on.
pub(crate) fn enable() {
    let _ = STATE.compare_exchange(
        State::Off as u8,
        State::On as u8,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
}

/// What the launcher runs.
#[derive(Serialize, Deserialize)]
struct Spec {
    program: Vec<u8>,
    args: Vec<Vec<u8>>,
    // `None`: removed.
    envs: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    cwd: Option<Vec<u8>>,
}

/// What the launcher tells its parent: a tag and a number.
const STARTED: u8 = 1;
const FAILED: u8 = 2;
const EXITED: u8 = 3;
/// The program's exit status was lost (this process ignores `SIGCHLD`,
/// and so does the launcher, which inherits it).
const LOST: u8 = 4;

/// A program running under a launcher, on the parent's side.
pub(super) struct Launched {
    // `None` once let go (a worker thread reaps it).
    launcher: Option<Child>,
    launcher_pid: u32,
    program: u32,
    // Closed when the parent lets the launcher go.
    connection: Option<UnixStream>,
    pub(super) stdin: Option<OwnedFd>,
    pub(super) stdout: Option<OwnedFd>,
    pub(super) stderr: Option<ChildStderr>,
}

impl Launched {
    /// The program's pid, which is also its process group's.
    pub(super) fn program(&self) -> u32 {
        self.program
    }

    pub(super) fn launcher(&self) -> u32 {
        self.launcher_pid
    }

    /// Waits for the program's exit, as the launcher reports it once
    /// everything the program left is killed. A launcher that ended
    /// without saying (killed) gives its own status.
    pub(super) fn wait(&mut self) -> io::Result<ExitStatus> {
        let reported = match &self.connection {
            Some(connection) => read_message(connection).ok(),
            None => None,
        };
        match reported {
            Some((EXITED, status)) => Ok(ExitStatus::from_raw(status)),
            Some((LOST, _)) => Err(rustix::io::Errno::CHILD.into()),
            _ => {
                self.connection = None;
                match self.launcher.take() {
                    Some(mut launcher) => launcher.wait(),
                    None => Err(rustix::io::Errno::CHILD.into()),
                }
            }
        }
    }

    /// Lets the launcher go: it kills whatever is left of the program's
    /// tree, reaps the program and exits; a worker thread reaps it (this
    /// one, if none can be had).
    pub(super) fn release(&mut self) {
        self.connection = None;
        let Some(mut launcher) = self.launcher.take() else {
            return;
        };
        let reap = Box::new(move || {
            let _ = launcher.wait();
        });
        if let Err((reap, _)) = crate::backend::thread::execute(reap) {
            reap();
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.release();
    }
}

/// Starts `command`'s program under a launcher, with its stdin and stdout
/// piped and its stderr piped to the launcher's (`launcher.stderr`).
/// `Ok(None)`: no launcher here (this process did not call `init`, or a
/// launcher could not find its way), and nothing was started.
pub(super) fn launch(command: &std::process::Command) -> io::Result<Option<Launched>> {
    if STATE.load(Ordering::SeqCst) != State::On as u8 {
        return Ok(None);
    }
    let spec = Spec {
        program: command.get_program().as_bytes().to_vec(),
        args: command.get_args().map(|a| a.as_bytes().to_vec()).collect(),
        envs: command
            .get_envs()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect(),
        cwd: command
            .get_current_dir()
            .map(|d| d.as_os_str().as_bytes().to_vec()),
    };
    let payload = postcard::to_stdvec(&spec).map_err(io::Error::other)?;
    let mut bytes = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("the command is too large"))?
        .to_le_bytes()
        .to_vec();
    bytes.extend(payload);

    let (ours, theirs) = UnixStream::pair()?;
    let (stdin_theirs, stdin_ours) = io::pipe()?;
    let (stdout_ours, stdout_theirs) = io::pipe()?;
    let mut launcher = {
        let mut command = crate::init::this_binary("/proc/self/exe".as_ref());
        command
            .env(ENV, std::process::id().to_string())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            // A test harness prints there.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        // The command, with our copy of the launcher's end, goes now: a
        // launcher that exits without answering closes the connection.
        command.spawn()?
    };
    let launched = (|| {
        ours.set_read_timeout(Some(START_TIMEOUT))?;
        let fds = [stdin_theirs.as_fd(), stdout_theirs.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = rustix::net::sendmsg(
            &ours,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        (&ours).write_all(&bytes[sent..])?;
        read_message(&ours)
    })();
    drop((stdin_theirs, stdout_theirs));
    match launched {
        Ok((STARTED, pid)) => {
            ours.set_read_timeout(None)?;
            Ok(Some(Launched {
                launcher_pid: launcher.id(),
                stderr: launcher.stderr.take(),
                launcher: Some(launcher),
                program: pid as u32,
                connection: Some(ours),
                stdin: Some(stdin_ours.into()),
                stdout: Some(stdout_ours.into()),
            }))
        }
        Ok((FAILED, errno)) => {
            drop(ours);
            let _ = launcher.wait();
            Err(io::Error::from_raw_os_error(errno))
        }
        // No answer: this binary does not enter the launcher.
        _ => {
            drop(ours);
            let _ = launcher.kill();
            let _ = launcher.wait();
            if STATE
                .compare_exchange(
                    State::On as u8,
                    State::Failed as u8,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                tracing::warn!(
                    "a command's launcher did not answer (does `main` call `sidetask::init` \
                     first, or the test file use `sidetask::test_support!`?): commands are \
                     started without one from now on, and what their programs start may \
                     outlive them"
                );
            }
            Ok(None)
        }
    }
}

/// Reads one message (a tag and a number).
fn read_message(connection: &UnixStream) -> io::Result<(u8, i32)> {
    let mut buf = [0u8; 5];
    (&*connection).read_exact(&mut buf)?;
    let [tag, n @ ..] = buf;
    Ok((tag, i32::from_le_bytes(n)))
}

/// If this process was started as a launcher, runs the program it is sent
/// and exits; otherwise returns.
pub(crate) fn enter_if_launcher() {
    let Some(parent) = std::env::var_os(ENV)
        .and_then(|v| v.to_str()?.parse::<i32>().ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // The program does not inherit the variable; a program of this binary
    // started otherwise is not a launcher.
    if rustix::process::getppid() != Some(parent) {
        return;
    }
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let connection = match take_connection() {
        Ok(connection) => connection,
        Err(e) => {
            eprintln!("sidetask launcher: no connection to the parent: {e}");
            std::process::exit(1);
        }
    };
    serve(connection)
}

/// Moves the connection off stdin and puts `/dev/null` there.
fn take_connection() -> io::Result<UnixStream> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(UnixStream::from(fd))
}

/// Tells the parent something; a parent that is gone is seen by the
/// watcher, which ends the launcher.
fn tell(connection: &UnixStream, tag: u8, n: i32) {
    let mut buf = [tag, 0, 0, 0, 0];
    buf[1..].copy_from_slice(&n.to_le_bytes());
    let _ = (&*connection).write_all(&buf);
}

fn serve(connection: UnixStream) -> ! {
    let (spec, stdin, stdout) = match receive(&connection) {
        Ok(received) => received,
        Err(e) => {
            eprintln!("sidetask launcher: could not read the command: {e}");
            std::process::exit(1);
        }
    };
    // The parent's going (or letting go) ends the launcher and all it holds.
    let watched = connection.try_clone().and_then(|watched| {
        std::thread::Builder::new()
            .name("sidetask-launcher".into())
            .spawn(move || watch(&watched))
    });
    if let Err(e) = watched {
        tell(&connection, FAILED, e.raw_os_error().unwrap_or(0));
        std::process::exit(1);
    }
    let mut command = std::process::Command::new(OsStr::from_bytes(&spec.program));
    command.args(spec.args.iter().map(|a| OsStr::from_bytes(a)));
    for (key, value) in &spec.envs {
        let key = OsStr::from_bytes(key);
        match value {
            Some(value) => command.env(key, OsStr::from_bytes(value)),
            None => command.env_remove(key),
        };
    }
    if let Some(cwd) = spec.cwd {
        command.current_dir(OsString::from_vec(cwd));
    }
    command
        .env_remove(ENV)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .process_group(0);
    // The program dies with this launcher, however it ends (this thread
    // lives as long as the launcher).
    die_with_parent(&mut command);
    let spawned = command.spawn();
    // Our copies of the program's pipes close, stderr too: it reaches its
    // end once the program and what it started are gone, not this
    // launcher.
    drop(command);
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    let program = match spawned {
        Ok(child) => child.id(),
        Err(e) => {
            tell(&connection, FAILED, e.raw_os_error().unwrap_or(0));
            // The parent closes the connection: the watcher ends this.
            park()
        }
    };
    tell(&connection, STARTED, program as i32);
    let status = wait_for(program);
    // Whatever the program left, wherever it went, goes with it, before
    // the parent hears of the exit (so its pipes reach their end).
    kill_descendants(std::process::id());
    match status {
        Some(status) => tell(&connection, EXITED, status),
        None => tell(&connection, LOST, 0),
    }
    park()
}

fn park() -> ! {
    loop {
        std::thread::park();
    }
}

/// Reads the spec and the pipes attached to it.
fn receive(connection: &UnixStream) -> io::Result<(Spec, OwnedFd, OwnedFd)> {
    let mut buf = vec![0u8; 64 << 10];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::io::retry_on_intr(|| {
        rustix::net::recvmsg(
            connection,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
    })?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let mut got = received.bytes;
    let len = buf
        .first_chunk::<4>()
        .filter(|_| got >= 4)
        .map(|b| u32::from_le_bytes(*b) as usize)
        .ok_or_else(|| io::Error::other("no command"))?;
    if len > MAX_SPEC {
        return Err(io::Error::other("the command is too large"));
    }
    if buf.len() < 4 + len {
        buf.resize(4 + len, 0);
    }
    if got < 4 + len {
        (&*connection).read_exact(&mut buf[got..4 + len])?;
        got = 4 + len;
    }
    let spec: Spec = postcard::from_bytes(&buf[4..got.min(4 + len)]).map_err(io::Error::other)?;
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next()) {
        (Some(stdin), Some(stdout)) => Ok((spec, stdin, stdout)),
        _ => Err(io::Error::other("the program's pipes did not come")),
    }
}

/// Waits for the parent to close the connection (it went, or let the
/// launcher go), then kills every descendant and exits.
fn watch(connection: &UnixStream) {
    let mut buf = [0u8; 64];
    loop {
        match (&*connection).read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kill_descendants(std::process::id());
    // Reaped here, rather than left to whoever inherits them.
    while let Ok(Some(_)) = rustix::process::wait(WaitOptions::empty()) {}
    std::process::exit(0)
}

/// Waits for `program` to exit without reaping it, reaping what else ends
/// meanwhile (orphans that came to this subreaper); returns its wait
/// status, or `None` if it was lost (`SIGCHLD` ignored: the kernel reaps
/// children at once).
fn wait_for(program: u32) -> Option<i32> {
    let pid = Pid::from_raw(program as i32).expect("a child's pid is positive");
    if ignores_sigchld() {
        // `waitid` would wait for every child: the program's pidfd says
        // when it alone has exited.
        if let Ok(pidfd) = rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            let _ = rustix::io::retry_on_intr(|| rustix::event::poll(&mut fds, None));
        }
        return None;
    }
    loop {
        let any = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        if rustix::io::retry_on_intr(|| rustix::process::waitid(WaitId::All, any)).is_err() {
            // No child at all: the program was reaped by someone else.
            return None;
        }
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
        if let Ok(Some(status)) = rustix::process::waitid(WaitId::Pid(pid), options) {
            return Some(raw_status(&status));
        }
        for child in children(std::process::id()) {
            if child != program
                && let Some(child) = Pid::from_raw(child as i32)
            {
                let _ = rustix::process::waitpid(Some(child), WaitOptions::NOHANG);
            }
        }
    }
}

/// A wait status as `waitpid` gives it, from what `waitid` says.
fn raw_status(status: &WaitIdStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        (code & 0xff) << 8
    } else if let Some(signal) = status.terminating_signal() {
        signal | if status.dumped() { 0x80 } else { 0 }
    } else {
        0
    }
}
