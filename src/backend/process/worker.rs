//! A child process: starting it, the handshake that gives it a task, and
//! waiting for its end.
//!
//! A child that ends is waited for through a pidfd without reaping it, so
//! that its group can be killed before its pid can be reused; then it is
//! reaped by its pid. A worker thread per child keeps the tail of its
//! stderr, and ends the reading of its connection once it has exited.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::protocol::{Down, FrameError, FrameReader, Hello, Up, VERSION, Writer};
use super::{Config, ENV};
use crate::backend::unix::{ExitWatch, Tail, signal_group, timespec};

/// A child process and the parent's ends of its connection.
pub(super) struct Worker {
    child: Child,
    pub(super) writer: Arc<Writer>,
    // `None` while a task's relay holds it.
    pub(super) reader: Option<FrameReader>,
    pub(super) tail: Tail,
    // Where the current task's stderr begins in the tail (a warm child
    // runs many).
    pub(super) tail_mark: u64,
    // Through which to wait for the child without reaping it (`None` on
    // kernels before 5.3).
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

/// Why a child did not take a task.
pub(super) enum Refusal {
    Unknown,
    Other(String),
}

impl Worker {
    /// Starts a child process.
    pub(super) fn start(config: &Config) -> io::Result<Worker> {
        let (ours, theirs) = UnixStream::pair()?;
        let reader = FrameReader::new(ours.try_clone()?);
        // The frames written waiting (the task's own, before its session)
        // wait no longer than this for a child that stops reading.
        ours.set_write_timeout(Some(config.grace.max(Duration::from_secs(1))))?;
        let mut command = crate::init::this_binary(&config.program);
        command
            .env(ENV, std::process::id().to_string())
            .envs(config.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &config.cwd {
            command.current_dir(cwd);
        }
        // From this thread: the child has no parent-death signal (it learns
        // of this process's death from its connection), so the thread that
        // starts it may end.
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        // Not reaped yet, so the pid is still this child's.
        let pidfd = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
        // Once the child has exited, our reading of its connection ends:
        // whoever else still holds the child's end (a copy the child forked
        // without exec), the reader sees the end once what was sent is read.
        let exit = match pidfd.as_ref().and_then(|p| p.try_clone().ok()) {
            Some(pidfd) => {
                let socket = ours.try_clone()?;
                let hook = move || {
                    let _ = socket.shutdown(std::net::Shutdown::Read);
                };
                Some(ExitWatch {
                    pidfd,
                    hook: Box::new(hook),
                })
            }
            None => None,
        };
        Ok(Worker {
            child,
            writer: Arc::new(Writer::new(ours)),
            reader: Some(reader),
            tail: Tail::start_watching(stderr, exit),
            tail_mark: 0,
            pidfd,
            reaped: false,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Gives the child a task and waits for its answer.
    pub(super) fn begin(
        &mut self,
        hello: Hello,
        timeout: Duration,
        max_frame: usize,
    ) -> Result<(), Refusal> {
        let failed = |what: &str, e: &dyn fmt::Display| Refusal::Other(format!("{what}: {e}"));
        // A child that already answered and left makes the send fail; its
        // answer is still read.
        let sent = self.writer.send(&Down::Start(hello));
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| Refusal::Other("the connection's reader is gone".to_owned()))?;
        reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(|e| failed("could not set the start timeout", &e))?;
        let answer = reader.read_frame::<Up>(max_frame);
        let _ = reader.get_ref().set_read_timeout(None);
        let hint = "does the child's `main` call `sidetask::init` first, or the test file use `sidetask::test_support!`?";
        match answer {
            Ok(Up::Ready { version }) if version == VERSION => Ok(()),
            Ok(Up::Ready { version }) => Err(Refusal::Other(format!(
                "the child speaks protocol version {version}, this process {VERSION}"
            ))),
            Ok(Up::Refused { unknown: true, .. }) => Err(Refusal::Unknown),
            Ok(Up::Refused { why, .. }) => Err(Refusal::Other(why)),
            Ok(_) => Err(Refusal::Other("the child answered out of turn".to_owned())),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Refusal::Other(format!(
                    "no answer within {timeout:?} ({hint})"
                )))
            }
            Err(FrameError::Closed) => Err(Refusal::Other(format!(
                "the child exited without answering{} ({hint})",
                sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
            ))),
            Err(e) => Err(failed("the handshake failed", &e)),
        }
    }

    /// Kills the child's group, reaps the child, and returns its current
    /// task's stderr tail.
    pub(super) fn kill_and_reap(&mut self) -> Vec<u8> {
        if !self.reaped {
            signal_group(self.pid(), Signal::KILL);
            let _ = self.child.wait();
            self.reaped = true;
        }
        self.tail.finish_since(self.tail_mark)
    }

    /// Whether the child has exited (without reaping it), waiting at most
    /// `timeout` (`None`: as long as it takes). Without a pidfd, says so at
    /// once ([`reap`](Worker::reap) then polls instead).
    fn exited_within(&self, timeout: Option<Duration>) -> bool {
        let Some(pidfd) = &self.pidfd else {
            return true;
        };
        let timeout = timeout.map(timespec);
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        rustix::io::retry_on_intr(|| rustix::event::poll(&mut fds, timeout.as_ref()))
            .map_or(true, |n| n > 0)
    }

    /// Whether the child still runs (an idle child of a pool, or a standby,
    /// may have died).
    pub(super) fn alive(&self) -> bool {
        if self.reaped {
            return false;
        }
        if self.pidfd.is_some() {
            return !self.exited_within(Some(Duration::ZERO));
        }
        // Without a pidfd: asked without reaping it, so the pid stays this
        // child's.
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        i32::try_from(self.pid())
            .ok()
            .and_then(Pid::from_raw)
            .is_some_and(|pid| {
                matches!(rustix::process::waitid(WaitId::Pid(pid), options), Ok(None))
            })
    }

    /// Waits for the child's exit, at most `bound` before killing its group
    /// (a child that hangs on its way out); then kills what it left in its
    /// group and reaps it. Returns the status, and whether it had to be
    /// killed.
    pub(super) fn reap(&mut self, bound: Duration) -> (Option<ExitStatus>, bool) {
        let mut killed = false;
        if self.pidfd.is_none() && !self.reaped {
            // No pidfd: reap first (polling, within the bound), then kill
            // what is left in the group.
            let until = Instant::now() + bound;
            let mut status = self.child.try_wait().ok().flatten();
            while status.is_none() && Instant::now() < until {
                thread::sleep(Duration::from_millis(1));
                status = self.child.try_wait().ok().flatten();
            }
            if status.is_none() {
                signal_group(self.pid(), Signal::KILL);
                killed = true;
                status = self.child.wait().ok();
            } else {
                signal_group(self.pid(), Signal::KILL);
            }
            self.reaped = true;
            return (status, killed);
        }
        if !self.exited_within(Some(bound)) {
            signal_group(self.pid(), Signal::KILL);
            killed = true;
            self.exited_within(None);
        }
        if !self.reaped {
            signal_group(self.pid(), Signal::KILL);
        }
        self.reaped = true;
        (self.child.wait().ok(), killed)
    }
}

/// A child started ahead for a supervised task's next attempt (see
/// [`Spares`](crate::spare::Spares)): started as its task's would be, it
/// waits for the task's handshake.
pub(super) struct Spare {
    /// What the child was started with: a task started otherwise (another
    /// program, environment, directory or grace) does not take it.
    config: Config,
    worker: Worker,
}

impl Spare {
    pub(super) fn start(config: Config) -> io::Result<Spare> {
        let worker = Worker::start(&config)?;
        Ok(Spare { config, worker })
    }

    /// The child, if it was started as `config` starts one and still
    /// lives; otherwise it is killed and reaped.
    pub(super) fn fits(self, config: &Config) -> Option<Worker> {
        let started = &self.config;
        let fits = started.program == config.program
            && started.envs == config.envs
            && started.cwd == config.cwd
            && started.grace == config.grace;
        (fits && self.worker.alive()).then_some(self.worker)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // An idle child of a pool, or one whose task was never run.
        if !self.reaped {
            signal_group(self.pid(), Signal::KILL);
            let _ = self.child.wait();
        }
    }
}
