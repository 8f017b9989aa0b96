//! A task's session with its child, on the parent's side: the messages on
//! their way (credits), writing what waits (pumping), what the child's
//! frames do, and the wire through which the handle's callers write and
//! read the connection themselves.
//!
//! The session speaks bytes. What it writes comes from its *front*, and
//! what the child sends goes there: a process task's handle (`typed`, which
//! encodes its messages and decodes its events and outcome), or a place
//! that speaks bytes itself (`erased`).
//!
//! The handle's caller writes the messages it sends to the socket itself,
//! at most the inbox capacity on their way (the child acknowledges the
//! messages its task read with its next event, or every half inbox; the
//! thread that reads an acknowledgement writes what waited for the credit),
//! and reads the child's frames itself while it waits for an event; the
//! body, on a worker thread, reads them when no caller does (see the
//! `relay` module) and ends the task. A stop is written by the thread that
//! asks for it; the escalation's signals go out on the requesting thread or
//! the timer's.
//!
//! # Nobody waits on the socket
//!
//! Writes never wait: a frame goes out as far as the socket takes it now,
//! and the rest waits in the writer's backlog (see `Writer`), so a child
//! that stops reading (frozen, or busy) holds up no sender, no stop and no
//! reader. While a backlog waits, the pump is *stalled*: nothing more is
//! written, and one worker thread (the *flusher*) waits for room, writes the
//! backlog and pumps again. The session's end wakes the flusher, which then
//! leaves; a child left with part of a frame is not reused.

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::Config;
use super::protocol::{Down, FrameError, Up, VERSION, Writer};
use super::relay::{Dispatch, Flow, Relay};
use super::worker::Worker;
use crate::backend::thread as place;
use crate::backend::unix::{Escalation, Stage, Terminate};
use crate::named::Ended;
use crate::sync::lock;
use crate::task::wire::{Served, Wire};

/// The parent's end of a session: where the messages for the child come
/// from, and where what the child sends goes. Every method returns at once,
/// unless it says otherwise.
pub(super) trait Front: Send + Sync {
    /// Whether a stop was asked for (a kill asks for one too).
    fn stop_asked(&self) -> bool;
    /// Whether a kill was asked for.
    fn kill_asked(&self) -> bool;
    /// Whether a message waits to be written, or the inbox was closed (its
    /// end waits to be written).
    fn has_message(&self) -> bool;
    /// Takes the next message to write, encoded.
    fn next_message(&self) -> Next;
    /// An event from the child, encoded: carries it on, waiting for room
    /// if it must; `Err` if it does not decode.
    fn event(&self, bytes: Vec<u8>) -> Result<(), String>;
    /// The child's task read `n` more messages.
    fn taken(&self, n: usize);
    /// The outcome the child sent (a value, an error or a panic); `Err` if
    /// it does not decode.
    fn outcome(&self, ended: Ended) -> Result<(), String>;
    /// Whether what a caller reading the connection waits for is there.
    fn ready(&self) -> bool;
    /// The session is over: nothing more is written. `unacked`: the
    /// messages the child did not acknowledge, oldest first.
    fn ended(&self, unacked: VecDeque<Vec<u8>>);
}

/// The next message a front has for the child.
pub(super) enum Next {
    Message(Vec<u8>),
    /// None waits now.
    Empty,
    /// None waits, and none will: the inbox is closed.
    Closed,
    /// The front changed meanwhile (a stop came): look at it again.
    Again,
    /// A message of this many bytes, encoded, is over the maximum frame:
    /// the front keeps it, and the task ends.
    TooLarge(usize),
}

/// Messages on their way to the child: how many more may go, and copies of
/// those the child has not acknowledged (they come back if the task ends
/// first).
pub(super) struct FlightState {
    pub(super) credits: usize,
    pub(super) unacked: VecDeque<Vec<u8>>,
    pub(super) ended: bool,
}

/// What only the thread that writes messages looks at.
#[derive(Default)]
pub(super) struct Pumped {
    stop_sent: bool,
    terminate_sent: bool,
    close_sent: bool,
    // A frame waits in the backlog for room in the socket, and a flusher
    // waits for that room: nothing more is written until it has pumped.
    stalled: bool,
    // A write failed or the task was ended for a message: nothing more is
    // written.
    done: bool,
}

/// How the task ended, as read from the connection.
#[derive(Default)]
pub(super) struct Seen {
    // The child sent its outcome, and the front took it.
    pub(super) reported: bool,
    // A frame that breaks the protocol: the child is killed.
    pub(super) broken: Option<String>,
    // The connection ended in the middle of a frame, or failed: the exit
    // status tells whether the child was killed or broke the protocol.
    pub(super) cut: Option<String>,
}

/// What a task's driver in the parent shares with its front's callers and
/// its stop hook.
pub(super) struct Session {
    // Itself, for work handed to a worker thread.
    me: Weak<Session>,
    pub(super) front: Arc<dyn Front>,
    writer: Arc<Writer>,
    // Readable once the session has ended: the flusher leaves. Made with
    // the first flusher.
    wake: OnceLock<OwnedFd>,
    pub(super) relay: Relay,
    pub(super) flight: Mutex<FlightState>,
    // Held by the thread that writes messages; `pending` asks it for
    // another pass.
    pump: Mutex<Pumped>,
    pending: AtomicBool,
    max_frame: usize,
    // A warm child answers the handshake with the task's first frame.
    awaiting_ready: AtomicBool,
    // The stop's escalation; every signal is sent under its lock, so that
    // none goes out once the driver has retired it (the child may be
    // running the next task of a pool, or be reaped).
    pub(super) escalation: Arc<Escalation>,
    // A write to the child failed (it may hold half a frame): not reusable.
    pub(super) write_failed: AtomicBool,
    // Why the parent ended the task, if it did (a message over the maximum
    // frame).
    pub(super) refused: Mutex<Option<String>>,
    pub(super) seen: Mutex<Seen>,
}

impl Session {
    /// A session for the task `worker`'s child took (it has answered the
    /// handshake, or answers it with its first frame if `awaiting_ready`),
    /// with `credits` messages allowed on their way. Takes the worker's
    /// reader; fails if the connection cannot be read.
    pub(super) fn open(
        worker: &mut Worker,
        config: &Config,
        front: Arc<dyn Front>,
        credits: usize,
        awaiting_ready: bool,
    ) -> io::Result<Arc<Session>> {
        let reader = worker
            .reader
            .take()
            .ok_or_else(|| io::Error::other("the connection's reader is gone"))?;
        let relay = Relay::new(reader, config.max_frame)?;
        let pid = worker.pid();
        Ok(Arc::new_cyclic(|me: &Weak<Session>| Session {
            me: me.clone(),
            front,
            writer: Arc::clone(&worker.writer),
            wake: OnceLock::new(),
            relay,
            flight: Mutex::new(FlightState {
                credits,
                unacked: VecDeque::new(),
                ended: false,
            }),
            pump: Mutex::new(Pumped::default()),
            pending: AtomicBool::new(false),
            max_frame: config.max_frame,
            awaiting_ready: AtomicBool::new(awaiting_ready),
            // The child is told to terminate, so that it ends what it
            // started before it goes: `SIGTERM` would end it first, and
            // whatever left its group would outlive it.
            escalation: {
                let me = me.clone();
                let ask = move || {
                    if let Some(session) = me.upgrade() {
                        session.pump();
                    }
                };
                Escalation::new(pid, pid, config.grace, false, Terminate::Ask(Box::new(ask)))
            },
            write_failed: AtomicBool::new(false),
            refused: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
        }))
    }

    /// Writes `frame` as far as the socket takes it now (the rest goes in
    /// the backlog); `false` if the connection failed.
    fn send(&self, frame: &Down, pumped: &mut Pumped) -> bool {
        let sent = self.writer.lock().offer(std::slice::from_ref(frame));
        if sent.is_err() {
            self.write_failed.store(true, Ordering::SeqCst);
            pumped.done = true;
        }
        // `Busy` cannot be: the backlog was written out first, under the
        // pump's lock (see `pump_once`).
        sent.is_ok()
    }

    /// A stop or kill was requested (on the requesting thread: returns at
    /// once). The stop frame is written as far as the socket takes it now;
    /// the escalation sends `SIGTERM` after the grace period and `SIGKILL`
    /// after another; a kill sends `SIGKILL` now.
    pub(super) fn stop_requested(&self) {
        self.escalation.request(self.front.kill_asked());
        self.pump();
    }

    /// Writes what waits to be written (messages while there is credit, a
    /// closed inbox, a stop), on the calling thread, as far as the socket
    /// takes it now; if another thread is writing, it does it instead.
    /// Never waits on the socket.
    pub(super) fn pump(&self) {
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
        while !pumped.done {
            // A frame begun goes first; while it waits for room, the
            // flusher pumps once it is out.
            if pumped.stalled {
                return;
            }
            let flushed = self.writer.lock().flush_now();
            match flushed {
                Ok(true) => {}
                Ok(false) => {
                    self.stall(pumped);
                    return;
                }
                Err(_) => {
                    self.write_failed.store(true, Ordering::SeqCst);
                    pumped.done = true;
                    return;
                }
            }
            if lock(&self.flight).ended {
                return;
            }
            if self.front.stop_asked() {
                // Not to a child being killed, or whose task is over.
                let stage = self.escalation.stage();
                let killing = self.front.kill_asked() || stage >= Stage::Killed;
                if !pumped.stop_sent {
                    pumped.stop_sent = true;
                    if !killing {
                        self.send(&Down::Stop, pumped);
                    }
                }
                if stage == Stage::Terminated && !pumped.terminate_sent && !pumped.done {
                    pumped.terminate_sent = true;
                    if !killing {
                        self.send(&Down::Terminate, pumped);
                    }
                }
                return;
            }
            if !self.front.has_message() {
                return;
            }
            // Taken under the flight's lock, so that a message is taken
            // only with a credit, and never once the session has ended.
            let next = {
                let mut flight = lock(&self.flight);
                if flight.ended || flight.credits == 0 {
                    return;
                }
                let next = self.front.next_message();
                if let Next::Message(bytes) = &next {
                    flight.credits -= 1;
                    flight.unacked.push_back(bytes.clone());
                }
                next
            };
            match next {
                Next::Message(bytes) => {
                    self.send(&Down::Message(bytes), pumped);
                }
                Next::Empty => return,
                Next::Again => {}
                Next::Closed => {
                    if !pumped.close_sent {
                        pumped.close_sent = true;
                        self.send(&Down::Close, pumped);
                    }
                    return;
                }
                Next::TooLarge(len) => {
                    // The child would refuse it: the task ends here.
                    *lock(&self.refused) = Some(format!(
                        "a message of {len} bytes is over the maximum frame of {}",
                        self.max_frame
                    ));
                    pumped.done = true;
                    self.escalation.kill();
                    return;
                }
            }
        }
    }

    /// A frame waits for room: a flusher waits for it on a worker thread,
    /// until the session ends.
    fn stall(&self, pumped: &mut Pumped) {
        let Some(link) = self.me.upgrade() else {
            return;
        };
        if self.wake.get().is_none() {
            match rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC) {
                Ok(wake) => {
                    let _ = self.wake.set(wake);
                }
                Err(e) => {
                    // Nothing could end the flusher's wait: nothing more is
                    // written (what was not comes back at the end).
                    tracing::warn!("no eventfd to wait for room in a child's socket: {e}");
                    self.write_failed.store(true, Ordering::SeqCst);
                    pumped.done = true;
                    return;
                }
            }
        }
        pumped.stalled = true;
        let flush = Box::new(move || link.flush_when_writable());
        if let Err((_, e)) = place::execute(flush) {
            // No thread to wait on, and not this one: it holds the pump,
            // which the flusher takes. Nothing more is written (what was
            // not comes back at the end), as without an eventfd.
            tracing::warn!("no thread to wait for room in a child's socket: {e}");
            pumped.stalled = false;
            self.write_failed.store(true, Ordering::SeqCst);
            pumped.done = true;
        }
    }

    /// The flusher: waits for room in the socket, writes the backlog, and
    /// pumps what waited behind it; leaves when the session ends.
    fn flush_when_writable(&self) {
        let Some(wake) = self.wake.get() else {
            return;
        };
        loop {
            if !self.writer.wait_writable(wake) {
                return;
            }
            let mut pumped = lock(&self.pump);
            let flushed = self.writer.lock().flush_now();
            match flushed {
                // Room for part of it only: wait again.
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => {
                    self.write_failed.store(true, Ordering::SeqCst);
                    pumped.done = true;
                }
            }
            pumped.stalled = false;
            drop(pumped);
            self.pump();
            return;
        }
    }

    /// The session has ended: a flusher waiting for room leaves. Returns
    /// whether part of a frame was left unwritten (the child is not fit for
    /// another task then).
    pub(super) fn abandon_writes(&self) -> bool {
        // Pumping waits for nothing (a flusher waits without the lock), so
        // the lock comes at once; no flusher starts after it.
        let mut pumped = lock(&self.pump);
        pumped.done = true;
        if let Some(wake) = self.wake.get() {
            let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
        }
        let mut writing = self.writer.lock();
        let cut = writing.has_backlog();
        writing.discard_backlog();
        cut
    }

    /// Records how the task ended.
    fn end_with(&self, f: impl FnOnce(&mut Seen)) -> Flow {
        f(&mut lock(&self.seen));
        Flow::End
    }

    fn broken(&self, why: String) -> Flow {
        self.end_with(|e| e.broken = Some(why))
    }

    /// The child sent its outcome: the front takes it.
    fn reported(&self, ended: Ended) -> Flow {
        match self.front.outcome(ended) {
            Ok(()) => self.end_with(|e| e.reported = true),
            Err(why) => self.broken(why),
        }
    }
}

impl Dispatch for Session {
    fn frame(&self, payload: &[u8]) -> Flow {
        let frame = match postcard::from_bytes::<Up>(payload) {
            Ok(frame) => frame,
            Err(e) => return self.broken(FrameError::Malformed(e).to_string()),
        };
        match frame {
            Up::Event(bytes) => match self.front.event(bytes) {
                Ok(()) => Flow::Wake,
                Err(why) => self.broken(why),
            },
            Up::Ack(n) => {
                let n = n as usize;
                let acked = {
                    let mut flight = lock(&self.flight);
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
                self.front.taken(n);
                // What waited for the credit goes now (a message sent
                // later is written by its sender); pumping never waits.
                if self.front.has_message() {
                    self.pump();
                }
                Flow::More
            }
            Up::Value(bytes) => self.reported(Ended::Value(bytes)),
            Up::Error(bytes) => self.reported(Ended::Error(bytes)),
            Up::Panicked { message, location } => {
                self.reported(Ended::Panicked { message, location })
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
        let mut seen = lock(&self.seen);
        match error {
            FrameError::Closed => {}
            e @ (FrameError::Truncated | FrameError::Io(_)) => seen.cut = Some(e.to_string()),
            e => seen.broken = Some(e.to_string()),
        }
    }

    fn ready(&self) -> bool {
        self.front.ready()
    }
}

/// The wire of a process task's handle (whatever its event type: the
/// session carries bytes).
impl<Ev> Wire<Ev> for Session {
    fn sent(&self) {
        self.pump();
    }

    fn pull(&self, until: Option<Instant>, _since: u64) -> Served {
        self.relay.serve(self, until)
    }

    fn hurry(&self) {
        self.relay.hurry();
    }
}
