//! A task's session with its child, on the parent's side: the messages on
//! their way (credits), writing what waits (pumping), what the child's
//! frames do, and the wire through which the handle's callers write and
//! read the connection themselves.
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
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::protocol::{Down, FrameError, Up, VERSION, Writer, decode, encode};
use super::relay::{Dispatch, Flow, Relay};
use crate::backend::thread as place;
use crate::backend::unix::{Escalation, Stage};
use crate::ctx::Ctx;
use crate::error::EmitError;
use crate::mailbox::{KILL, PopError, STOP, Wait};
use crate::named::NamedTask;
use crate::outcome::{Location, Outcome, Panic};
use crate::sync::lock;
use crate::task::wire::{Served, Wire};

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
pub(super) struct Ended<V, E> {
    pub(super) outcome: Option<Outcome<V, E>>,
    // A frame that breaks the protocol: the child is killed.
    pub(super) broken: Option<String>,
    // The connection ended in the middle of a frame, or failed: the exit
    // status tells whether the child was killed or broke the protocol.
    pub(super) cut: Option<String>,
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

/// What a task's body in the parent shares with its handle's callers and
/// its stop hook.
pub(super) struct Session<T: NamedTask> {
    // Itself, for work handed to a worker thread.
    pub(super) me: Weak<Session<T>>,
    pub(super) ctx: Ctx<T::In, T::Event>,
    pub(super) writer: Arc<Writer>,
    // Readable once the session has ended: the flusher leaves. Made with
    // the first flusher.
    pub(super) wake: OnceLock<OwnedFd>,
    pub(super) relay: Relay,
    pub(super) flight: Mutex<FlightState>,
    // Held by the thread that writes messages; `pending` asks it for
    // another pass.
    pub(super) pump: Mutex<Pumped>,
    pub(super) pending: AtomicBool,
    pub(super) max_frame: usize,
    // A warm child answers the handshake with the task's first frame.
    pub(super) awaiting_ready: AtomicBool,
    // The stop's escalation; every signal is sent under its lock, so that
    // none goes out once the body has retired it (the child may be running
    // the next task of a pool, or be reaped).
    pub(super) escalation: Arc<Escalation>,
    // A write to the child failed (it may hold half a frame): not reusable.
    pub(super) write_failed: AtomicBool,
    // Why the parent ended the task, if it did (a message over the maximum
    // frame).
    pub(super) refused: Mutex<Option<String>>,
    // Messages that could not be sent: given back at the end.
    pub(super) rejected: Mutex<Vec<T::In>>,
    pub(super) ended: Mutex<Ended<T::Value, T::Error>>,
}

impl<T: NamedTask> Session<T> {
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
        self.escalation.request(self.ctx.mailbox().is(KILL));
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
        let mailbox = self.ctx.mailbox();
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
            let credits = {
                let flight = lock(&self.flight);
                if flight.ended {
                    return;
                }
                flight.credits
            };
            if mailbox.is(STOP) {
                // Not to a child being killed, or whose task is over.
                let stage = self.escalation.stage();
                let killing = mailbox.is(KILL) || stage >= Stage::Killed;
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
                    self.escalation.kill();
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

    /// A frame waits for room: a flusher waits for it on a worker thread
    /// (on this one if none can be had), until the session ends.
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
        if let Err((flush, _)) = place::execute(flush) {
            flush();
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
    fn end_with(&self, f: impl FnOnce(&mut Ended<T::Value, T::Error>)) -> Flow {
        f(&mut lock(&self.ended));
        Flow::End
    }

    fn broken(&self, why: String) -> Flow {
        self.end_with(|e| e.broken = Some(why))
    }
}

impl<T: NamedTask> Dispatch for Session<T> {
    fn frame(&self, payload: &[u8]) -> Flow {
        let frame = match postcard::from_bytes::<Up>(payload) {
            Ok(frame) => frame,
            Err(e) => return self.broken(FrameError::Malformed(e).to_string()),
        };
        match frame {
            Up::Event(bytes) => match decode::<T::Event>(&bytes) {
                Ok(event) => {
                    // Wait for room (backpressure reaches the child through
                    // the socket; a caller reads only into an empty outbox).
                    // After a stop the wait ends, and the event is kept over
                    // the capacity: the child was told it was sent, and the
                    // reader must go on to the task's end. Only what the
                    // child emits before it sees the stop can come this way.
                    // (A pool's task, whose outbox nobody reads while it
                    // runs, keeps what fits; see `Finished::events`.)
                    if let Err(EmitError::Stopped(event)) = self.ctx.emit(event) {
                        let _ = self.ctx.mailbox().push_out_over(event);
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
                // later is written by its sender); pumping never waits.
                if self.ctx.mailbox().has_message() {
                    self.pump();
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

impl<T: NamedTask> Wire<T::Event> for Session<T> {
    fn sent(&self) {
        self.pump();
    }

    fn pull(&self, until: Option<Instant>) -> Served {
        self.relay.serve(self, until)
    }

    fn hurry(&self) {
        self.relay.hurry();
    }
}
