//! The parent's side: a child process (a worker), the handshake that gives
//! it a task, and the body that drives the task to its end.
//!
//! The handle's caller writes the messages it sends to the socket itself,
//! at most the inbox capacity on their way (the child acknowledges the
//! messages its task read with its next event, or every half inbox; the
//! thread that reads an acknowledgement writes what waited for the credit),
//! and reads the child's frames itself while it waits for an event; the
//! body, on a worker thread, reads them when no caller does (see the
//! `relay` module) and ends the task. A stop is written to the child from
//! a worker thread, so the request returns at once. A stop escalates through
//! the timer: `SIGTERM` to the child's process group after the grace
//! period, `SIGKILL` after another; a kill sends `SIGKILL` at once. A child
//! that ends is waited for through a pidfd without reaping it, so that its
//! group can be killed before its pid can be reused; then it is reaped by
//! its pid; once a task has its outcome, a worker thread does that, so the
//! outcome does not wait for the child's teardown. A worker thread per child
//! keeps the tail of its stderr.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Signal};

use super::protocol::{Down, FrameError, FrameReader, Hello, Up, VERSION, Writer, decode, encode};
use super::relay::{Dispatch, Flow, Relay, Served};
use super::{CHILD_TEST, Config, ENV};
use crate::backend::command::{Tail, signal_group};
use crate::backend::thread as place;
use crate::ctx::Ctx;
use crate::mailbox::{EXITED, INBOX_CLOSED, KILL, PopError, STOP, Wait};
use crate::outcome::{Crash, CrashCause, Killed, Location, Outcome, Panic};
use crate::registry::NamedTask;
use crate::sync::lock;
use crate::task::Port;
use crate::timer::{self, Deadline};

/// A child process and the parent's ends of its connection.
pub(crate) struct Worker {
    child: Child,
    writer: Arc<Writer>,
    // `None` while a task's relay holds it.
    reader: Option<FrameReader>,
    tail: Tail,
    // Through which to wait for the child without reaping it (`None` on
    // kernels before 5.3).
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

/// Why a child did not take a task.
pub(crate) enum Refusal {
    Unknown,
    Other(String),
}

impl Worker {
    /// Starts a child process.
    pub(crate) fn start(config: &Config) -> io::Result<Worker> {
        let (ours, theirs) = UnixStream::pair()?;
        let reader = FrameReader::new(ours.try_clone()?);
        // A child that stops reading (frozen) cannot block the writers, nor
        // the stop's escalation, for longer than this.
        ours.set_write_timeout(Some(config.grace.max(Duration::from_secs(1))))?;
        let mut command = std::process::Command::new(&config.program);
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
            .envs(config.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &config.cwd {
            command.current_dir(cwd);
        }
        let mut child = spawn_child(command)?;
        let stderr = child.stderr.take().expect("stderr is piped");
        // Not reaped yet, so the pid is still this child's.
        let pidfd = i32::try_from(child.id())
            .ok()
            .and_then(Pid::from_raw)
            .and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
        Ok(Worker {
            child,
            writer: Arc::new(Writer::new(ours)),
            reader: Some(reader),
            tail: Tail::start(stderr),
            pidfd,
            reaped: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Gives the child a task and waits for its answer.
    pub(crate) fn begin(
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

    /// Kills the child's group, reaps the child, and returns its stderr
    /// tail.
    pub(crate) fn kill_and_reap(&mut self) -> Vec<u8> {
        if !self.reaped {
            signal_group(self.pid(), Signal::KILL);
            let _ = self.child.wait();
            self.reaped = true;
        }
        self.tail.finish()
    }

    /// Whether the child has exited (without reaping it), waiting at most
    /// `timeout` (`None`: as long as it takes). Without a pidfd, says so at
    /// once ([`reap`](Worker::reap) then polls instead).
    fn exited_within(&self, timeout: Option<Duration>) -> bool {
        let Some(pidfd) = &self.pidfd else {
            return true;
        };
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        loop {
            let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(n) => return n > 0,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return true,
            }
        }
    }

    /// Whether the child still runs (an idle child of a pool may have died).
    fn alive(&self) -> bool {
        !self.reaped && !self.exited_within(Some(Duration::ZERO))
    }

    /// Waits for the child's exit, at most `bound` before killing its group
    /// (a child that hangs on its way out); then kills what it left in its
    /// group and reaps it. Returns the status, and whether it had to be
    /// killed.
    fn reap(&mut self, bound: Duration) -> (Option<ExitStatus>, bool) {
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

impl Drop for Worker {
    fn drop(&mut self) {
        // An idle child of a pool, or one whose task was never run.
        if !self.reaped {
            signal_group(self.pid(), Signal::KILL);
            let _ = self.child.wait();
        }
    }
}

/// Messages on their way to the child: how many more may go, and copies of
/// those the child has not acknowledged (they come back if the task ends
/// first).
struct FlightState {
    credits: usize,
    unacked: VecDeque<Vec<u8>>,
    ended: bool,
}

/// What only the thread that writes messages looks at.
#[derive(Default)]
struct Pumped {
    stop_sent: bool,
    close_sent: bool,
    // A write failed or the task was ended for a message: nothing more is
    // written.
    done: bool,
}

/// How the task ended, as read from the connection.
struct Ended<V, E> {
    outcome: Option<Outcome<V, E>>,
    // A frame that breaks the protocol: the child is killed.
    broken: Option<String>,
    // The connection ended in the middle of a frame, or failed: the exit
    // status tells whether the child was killed or broke the protocol.
    cut: Option<String>,
}

impl<V, E> Default for Ended<V, E> {
    fn default() -> Self {
        Ended {
            outcome: None,
            broken: None,
            cut: None,
        }
    }
}

/// What a task's body in the parent shares with its handle's callers, its
/// stop hook and the timer.
struct Link<T: NamedTask> {
    // Itself, for work handed to a worker thread.
    me: Weak<Link<T>>,
    ctx: Ctx<T::In, T::Event>,
    writer: Arc<Writer>,
    relay: Relay,
    flight: Mutex<FlightState>,
    // Held by the thread that writes messages; `pending` asks it for
    // another pass.
    pump: Mutex<Pumped>,
    pending: AtomicBool,
    pid: u32,
    grace: Duration,
    max_frame: usize,
    // A warm child answers the handshake with the task's first frame.
    awaiting_ready: AtomicBool,
    // How far a stop has escalated; every signal is sent under this lock,
    // so that none goes out once the body has retired the link (the child
    // may be running the next task of a pool, or be reaped).
    escalation: Mutex<Escalation>,
    // A write to the child failed (it may hold half a frame): not reusable.
    write_failed: AtomicBool,
    // Why the parent ended the task, if it did (a message over the maximum
    // frame).
    refused: Mutex<Option<String>>,
    // Messages that could not be sent: given back at the end.
    rejected: Mutex<Vec<T::In>>,
    ended: Mutex<Ended<T::Value, T::Error>>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Escalation {
    None,
    Asked,
    Terminated,
    Killed,
    Retired,
}

impl<T: NamedTask> Link<T> {
    /// Moves the escalation from `from` to `to` and sends `signal`, unless
    /// it has moved on (or the link is retired).
    fn escalate(&self, from: &[Escalation], to: Escalation, signal: Option<Signal>) -> bool {
        let mut stage = lock(&self.escalation);
        if !from.contains(&stage) {
            return false;
        }
        *stage = to;
        if let Some(signal) = signal {
            signal_group(self.pid, signal);
        }
        true
    }

    /// Ends the escalation: returns how far it went.
    fn retire(&self) -> Escalation {
        std::mem::replace(&mut *lock(&self.escalation), Escalation::Retired)
    }

    fn send(&self, frame: &Down, pumped: &mut Pumped) -> bool {
        let sent = self.writer.send(frame).is_ok();
        if !sent {
            self.write_failed.store(true, Ordering::SeqCst);
            pumped.done = true;
        }
        sent
    }

    /// A stop or kill was requested (on the requesting thread: returns at
    /// once). A worker thread writes the stop frame; the timer sends
    /// `SIGTERM` after the grace period and `SIGKILL` after another; a kill
    /// sends `SIGKILL` now.
    fn stop_requested(self: &Arc<Self>) {
        use Escalation::*;
        if self.ctx.mailbox().is(KILL) {
            self.escalate(&[None, Asked, Terminated], Killed, Some(Signal::KILL));
        } else if self.escalate(&[None], Asked, Option::None) {
            let now = Instant::now();
            for steps in 1..=2 {
                if let Some(at) = self
                    .grace
                    .checked_mul(steps)
                    .and_then(|d| now.checked_add(d))
                {
                    let me: Weak<dyn Deadline> = Arc::downgrade(self) as Weak<dyn Deadline>;
                    timer::schedule(at, me);
                }
            }
        }
        // The write may wait for the child to read: not on this thread.
        self.pump_elsewhere();
    }

    /// Writes what waits to be written on a worker thread (on this one if
    /// none can be had).
    fn pump_elsewhere(&self) {
        let Some(link) = self.me.upgrade() else {
            return;
        };
        if let Err((pump, _)) = place::execute(Box::new(move || link.pump())) {
            pump();
        }
    }

    /// Writes what waits to be written (messages while there is credit, a
    /// closed inbox, a stop), on the calling thread; if another thread is
    /// writing, it does it instead.
    fn pump(&self) {
        self.pending.store(true, Ordering::SeqCst);
        loop {
            let mut pumped = match self.pump.try_lock() {
                Ok(pumped) => pumped,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                // Its holder looks at `pending` after it lets go.
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            while self.pending.swap(false, Ordering::SeqCst) {
                self.pump_once(&mut pumped);
            }
            drop(pumped);
            if !self.pending.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    fn pump_once(&self, pumped: &mut Pumped) {
        let mailbox = self.ctx.mailbox();
        while !pumped.done {
            let credits = {
                let flight = lock(&self.flight);
                if flight.ended {
                    return;
                }
                flight.credits
            };
            if mailbox.is(STOP) {
                if !pumped.stop_sent {
                    pumped.stop_sent = true;
                    // Not to a child being killed, or whose task is over.
                    if !mailbox.is(KILL | EXITED) {
                        self.send(&Down::Stop, pumped);
                    }
                }
                return;
            }
            // Nothing to write, or no credit to write it with.
            if credits == 0 || !mailbox.has_message() {
                return;
            }
            let message = match mailbox.pop_in(Wait::No) {
                Ok(message) => message,
                Err(PopError::Empty) => return,
                Err(PopError::Stopped) => continue,
                Err(PopError::Disconnected) => {
                    if !pumped.close_sent {
                        pumped.close_sent = true;
                        self.send(&Down::Close, pumped);
                    }
                    return;
                }
            };
            let bytes = match encode(&message) {
                Ok(bytes) if bytes.len() + 6 <= self.max_frame => bytes,
                Ok(bytes) => {
                    // The child would refuse it: the task ends here, and the
                    // message comes back.
                    *lock(&self.refused) = Some(format!(
                        "a message of {} bytes is over the maximum frame of {}",
                        bytes.len(),
                        self.max_frame
                    ));
                    lock(&self.rejected).push(message);
                    pumped.done = true;
                    self.escalate(
                        &[Escalation::None, Escalation::Asked, Escalation::Terminated],
                        Escalation::Killed,
                        Some(Signal::KILL),
                    );
                    return;
                }
                Err(e) => {
                    // It can never reach the child: it comes back at the end.
                    tracing::warn!("a message to a process task could not be encoded: {e}");
                    lock(&self.rejected).push(message);
                    continue;
                }
            };
            {
                let mut flight = lock(&self.flight);
                if flight.ended {
                    drop(flight);
                    mailbox.give_back(vec![message]);
                    return;
                }
                flight.credits -= 1;
                flight.unacked.push_back(bytes.clone());
            }
            self.send(&Down::Message(bytes), pumped);
        }
    }

    /// Records how the task ended.
    fn end_with(&self, f: impl FnOnce(&mut Ended<T::Value, T::Error>)) -> Flow {
        f(&mut lock(&self.ended));
        Flow::End
    }

    fn broken(&self, why: String) -> Flow {
        self.end_with(|e| e.broken = Some(why))
    }
}

impl<T: NamedTask> Dispatch for Link<T> {
    fn frame(&self, payload: &[u8], may_wait: bool) -> Flow {
        let frame = match postcard::from_bytes::<Up>(payload) {
            Ok(frame) => frame,
            Err(e) => return self.broken(FrameError::Malformed(e).to_string()),
        };
        match frame {
            Up::Event(bytes) => match decode::<T::Event>(&bytes) {
                Ok(event) => {
                    // Wait for room (backpressure reaches the child through
                    // the socket; a caller reads only into an empty outbox);
                    // after a stop, keep what fits.
                    if let Err(e) = self.ctx.emit(event) {
                        let _ = self.ctx.try_emit(e.into_inner());
                    }
                    Flow::Wake
                }
                Err(why) => self.broken(why),
            },
            Up::Ack(n) => {
                let acked = {
                    let mut flight = lock(&self.flight);
                    let n = n as usize;
                    if n > flight.unacked.len() {
                        false
                    } else {
                        flight.unacked.drain(..n);
                        flight.credits += n;
                        true
                    }
                };
                if !acked {
                    return self
                        .broken("the child acknowledged more messages than were sent".to_owned());
                }
                // What waited for the credit goes now (a message sent
                // later is written by its sender); not on the thread of a
                // caller with a deadline, which a write could hold up.
                if self.ctx.mailbox().has_message() {
                    if may_wait {
                        self.pump();
                    } else {
                        self.pump_elsewhere();
                    }
                }
                Flow::More
            }
            Up::Value(bytes) => match decode(&bytes) {
                Ok(v) => self.end_with(|e| e.outcome = Some(Outcome::Value(v))),
                Err(why) => self.broken(why),
            },
            Up::Error(bytes) => match decode(&bytes) {
                Ok(v) => self.end_with(|e| e.outcome = Some(Outcome::Error(v))),
                Err(why) => self.broken(why),
            },
            Up::Panicked { message, location } => {
                let location = location.map(|(file, line, col)| Location::new(file, line, col));
                let panic = Panic::new(Box::new(message), location);
                self.end_with(|e| e.outcome = Some(Outcome::Panicked(panic)))
            }
            Up::Broken(why) => self.broken(format!("the child could not send its outcome: {why}")),
            Up::Ready { version }
                if version == VERSION && self.awaiting_ready.swap(false, Ordering::SeqCst) =>
            {
                Flow::More
            }
            Up::Refused { why, .. } if self.awaiting_ready.load(Ordering::SeqCst) => {
                self.broken(format!("the child refused the task: {why}"))
            }
            Up::Ready { .. } | Up::Refused { .. } => {
                self.broken("the child sent a handshake frame during a task".to_owned())
            }
        }
    }

    fn failed(&self, error: FrameError) {
        let mut ended = lock(&self.ended);
        match error {
            FrameError::Closed => {}
            e @ (FrameError::Truncated | FrameError::Io(_)) => ended.cut = Some(e.to_string()),
            e => ended.broken = Some(e.to_string()),
        }
    }

    fn ready(&self) -> bool {
        self.ctx.mailbox().has_event()
    }
}

impl<T: NamedTask> Port for Link<T> {
    fn pushed(&self) {
        self.pump();
    }

    fn pull(&self, until: Option<Instant>) -> Served {
        self.relay.serve(self, until)
    }

    fn hurry(&self) {
        self.relay.hurry();
    }
}

impl<T: NamedTask> Deadline for Link<T> {
    /// A grace period passed: `SIGTERM` the first time, `SIGKILL` the
    /// second.
    fn expire(&self) {
        use Escalation::*;
        if !self.escalate(&[Asked], Terminated, Some(Signal::TERM)) {
            self.escalate(&[Terminated], Killed, Some(Signal::KILL));
        }
    }
}

/// Drives a task on `worker` to its end. Returns the outcome, and the
/// worker if `reuse` and the child is fit to take another task.
pub(crate) fn drive<T: NamedTask>(
    ctx: &Ctx<T::In, T::Event>,
    mut worker: Worker,
    config: &Config,
    reuse: bool,
    awaiting_ready: bool,
) -> (Outcome<T::Value, T::Error>, Option<Worker>) {
    let mailbox = ctx.mailbox();
    mailbox.no_spin();
    let relay = worker
        .reader
        .take()
        .ok_or_else(|| io::Error::other("the connection's reader is gone"))
        .and_then(|reader| Relay::new(reader, config.max_frame));
    let relay = match relay {
        Ok(relay) => relay,
        Err(e) => {
            mailbox.set(EXITED);
            mailbox.set(INBOX_CLOSED);
            let tail = worker.kill_and_reap();
            let why = format!("could not read from the child: {e}");
            return (
                Outcome::Crashed(Crash::new(CrashCause::Start(why), tail)),
                None,
            );
        }
    };
    let link = Arc::new_cyclic(|me| Link::<T> {
        me: me.clone(),
        ctx: ctx.share(),
        writer: Arc::clone(&worker.writer),
        relay,
        flight: Mutex::new(FlightState {
            credits: mailbox.inbox_capacity(),
            unacked: VecDeque::new(),
            ended: false,
        }),
        pump: Mutex::new(Pumped::default()),
        pending: AtomicBool::new(false),
        pid: worker.pid(),
        grace: config.grace,
        max_frame: config.max_frame,
        awaiting_ready: AtomicBool::new(awaiting_ready),
        escalation: Mutex::new(Escalation::None),
        write_failed: AtomicBool::new(false),
        refused: Mutex::new(None),
        rejected: Mutex::new(Vec::new()),
        ended: Mutex::new(Ended::default()),
    });
    {
        let weak = Arc::downgrade(&link);
        ctx.set_stop_hook(Box::new(move || {
            if let Some(link) = weak.upgrade() {
                link.stop_requested();
            }
        }));
        let port: Weak<dyn Port> = Arc::downgrade(&link) as Weak<dyn Port>;
        ctx.set_port(port);
    }
    // A stop requested before the hook was set.
    if mailbox.is(STOP) {
        link.stop_requested();
    }
    // Messages sent before the port was set.
    link.pump();

    link.relay.fallback(&*link);

    let Ended {
        outcome: end,
        broken,
        cut,
    } = std::mem::take(&mut *lock(&link.ended));
    if broken.is_some() {
        signal_group(worker.pid(), Signal::KILL);
    }
    // The task is over: no signal goes out from now on.
    mailbox.set(EXITED);
    let escalated = link.retire();
    // Messages the child never took come back first, then the handle's
    // inbox. A write in progress ends first (it gives back what it holds).
    let unacked = {
        let mut flight = lock(&link.flight);
        flight.ended = true;
        std::mem::take(&mut flight.unacked)
    };
    drop(lock(&link.pump));
    mailbox.set(INBOX_CLOSED);
    let mut back: Vec<T::In> = unacked
        .into_iter()
        .filter_map(|bytes| decode::<T::In>(&bytes).ok())
        .collect();
    back.append(&mut lock(&link.rejected));
    mailbox.give_back(back);
    worker.reader = link.relay.take_reader();
    let refused = lock(&link.refused).take();
    let broken = broken.or(refused);
    if let Some(end) = end.filter(|_| broken.is_none() && cut.is_none()) {
        let fit = escalated <= Escalation::Asked
            && !link.write_failed.load(Ordering::SeqCst)
            && worker.reader.is_some()
            && worker.alive();
        if reuse && fit {
            return (end, Some(worker));
        }
        // A child not kept exits by itself after its outcome (or by the
        // signal it got); one that hangs on its way out is killed. The
        // outcome does not wait for that: a worker thread reaps it (or this
        // one, if none can be had).
        let grace = config.grace;
        let reap = Box::new(move || {
            worker.reap(grace);
        });
        if let Err((reap, _)) = place::execute(reap) {
            reap();
        }
        return (end, None);
    }
    let (status, killed_late) = worker.reap(config.grace);
    let stderr_tail = worker.tail.finish();
    let outcome = classify(Ending {
        broken,
        cut,
        status,
        escalated,
        killed_late,
        kill_asked: mailbox.is(KILL),
        stderr_tail,
    });
    (outcome, None)
}

/// What is known of a task that ended without an outcome.
struct Ending {
    broken: Option<String>,
    cut: Option<String>,
    status: Option<ExitStatus>,
    escalated: Escalation,
    killed_late: bool,
    kill_asked: bool,
    stderr_tail: Vec<u8>,
}

fn classify<V, E>(ending: Ending) -> Outcome<V, E> {
    let Ending {
        broken,
        cut,
        status,
        escalated,
        killed_late,
        kill_asked,
        stderr_tail,
    } = ending;
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
        let ours = (signal == Signal::KILL.as_raw()
            && (escalated == Escalation::Killed || kill_asked || killed_late))
            || (signal == Signal::TERM.as_raw() && escalated >= Escalation::Terminated);
        if ours {
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
    let cause = if out_of_memory() {
        CrashCause::OutOfMemory
    } else if let Some(why) = cut {
        CrashCause::Protocol(why)
    } else {
        CrashCause::Exited(status.code().unwrap_or(-1))
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

/// The warm children of a process pool: idle ones wait here between tasks;
/// a child that crashed, was killed or broke the protocol is not put back,
/// and a new one is started when none is idle.
pub(crate) struct Warm {
    config: Config,
    idle: Mutex<Vec<Worker>>,
}

impl Warm {
    pub(crate) fn new(config: Config) -> Arc<Warm> {
        Arc::new(Warm {
            config,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs one task of type `T` on an idle child (or a new one).
    pub(crate) fn run<T: NamedTask>(
        &self,
        ctx: &Ctx<T::In, T::Event>,
        arg: &T::Arg,
    ) -> Outcome<T::Value, T::Error> {
        let start_failed =
            |why: String| Outcome::Crashed(Crash::new(CrashCause::Start(why), Vec::new()));
        let hello = match super::hello::<T>(arg, &self.config, true) {
            Ok(hello) => hello,
            Err(why) => return start_failed(why.to_string()),
        };
        // An idle child may have died meanwhile.
        let idle = loop {
            match lock(&self.idle).pop() {
                Some(worker) if !worker.alive() => drop(worker),
                other => break other,
            }
        };
        let warm = idle.is_some();
        let mut worker = match idle {
            Some(worker) => worker,
            None => match Worker::start(&self.config) {
                Ok(worker) => worker,
                Err(e) => return start_failed(format!("could not start a child: {e}")),
            },
        };
        // A new child answers the handshake here, within the start timeout;
        // a warm one answers in the body, saving a round trip per task.
        let begun = if warm {
            worker
                .writer
                .send(&Down::Start(hello))
                .map_err(|e| Refusal::Other(format!("could not send the task: {e}")))
        } else {
            worker.begin(hello, self.config.start_timeout, self.config.max_frame)
        };
        if let Err(refusal) = begun {
            let tail = worker.kill_and_reap();
            let why = match refusal {
                Refusal::Unknown => format!("the child does not know the task `{}`", T::NAME),
                Refusal::Other(why) => why,
            };
            return Outcome::Crashed(Crash::new(CrashCause::Start(why), tail));
        }
        let (outcome, worker) = drive::<T>(ctx, worker, &self.config, true, warm);
        if let Some(worker) = worker {
            lock(&self.idle).push(worker);
        }
        outcome
    }
}
