//! A process task's handle as its session's front: the typed layer over
//! the session, which encodes the messages of the handle's inbox and
//! decodes the child's events and outcome.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use super::Config;
use super::drive::{drive, unreadable};
use super::protocol::{decode, encode};
use super::session::{Front, Next, Session};
use super::worker::Worker;
use crate::ctx::Ctx;
use crate::error::EmitError;
use crate::mailbox::{INBOX_CLOSED, KILL, PopError, STOP, Wait};
use crate::named::{Ended, NamedTask};
use crate::outcome::{Crash, CrashCause, Location, Outcome, Panic};
use crate::sync::lock;
use crate::task::wire::{Side, Wire};

/// Drives a task of type `T` on `worker` to its end, its handle's side
/// being `ctx`. Returns the outcome, and the worker if `reuse` and the
/// child is fit to take another task.
pub(super) fn run<T: NamedTask>(
    ctx: &Ctx<T::In, T::Event>,
    mut worker: Worker,
    config: &Config,
    reuse: bool,
    awaiting_ready: bool,
) -> (Outcome<T::Value, T::Error>, Option<Worker>) {
    let mailbox = ctx.mailbox();
    mailbox.no_spin();
    let front = Arc::new(Typed::<T> {
        ctx: ctx.share(),
        max_frame: config.max_frame,
        rejected: Mutex::new(Vec::new()),
        outcome: Mutex::new(None),
    });
    let credits = mailbox.inbox_capacity();
    let session = match Session::open(&mut worker, config, front.clone(), credits, awaiting_ready) {
        Ok(session) => session,
        Err(e) => {
            mailbox.set(INBOX_CLOSED);
            return (unreadable(&mut worker, &e).into(), None);
        }
    };
    {
        let weak = Arc::downgrade(&session);
        ctx.shared().set_stop_hook(Box::new(move || {
            if let Some(session) = weak.upgrade() {
                session.stop_requested();
            }
        }));
        let wire: Weak<dyn Wire<T::Event>> = Arc::downgrade(&session) as Weak<dyn Wire<T::Event>>;
        ctx.shared().set_wire(Side::Handle, wire);
    }
    let (failed, worker) = drive(session, worker, config, reuse);
    let outcome = match failed {
        Some(failure) => failure.into(),
        None => lock(&front.outcome).take().unwrap_or_else(|| {
            Outcome::Crashed(Crash::new(
                CrashCause::Protocol("the child's outcome was lost".to_owned()),
                Vec::new(),
            ))
        }),
    };
    (outcome, worker)
}

/// The handle's side of a process task of type `T`.
struct Typed<T: NamedTask> {
    ctx: Ctx<T::In, T::Event>,
    max_frame: usize,
    // Messages that could not be sent: given back at the end.
    rejected: Mutex<Vec<T::In>>,
    outcome: Mutex<Option<Outcome<T::Value, T::Error>>>,
}

impl<T: NamedTask> Front for Typed<T> {
    fn stop_asked(&self) -> bool {
        self.ctx.mailbox().is(STOP)
    }

    fn kill_asked(&self) -> bool {
        self.ctx.mailbox().is(KILL)
    }

    fn has_message(&self) -> bool {
        self.ctx.mailbox().has_message()
    }

    fn next_message(&self) -> Next {
        loop {
            let message = match self.ctx.mailbox().pop_in(Wait::No) {
                Ok(message) => message,
                Err(PopError::Empty) => return Next::Empty,
                Err(PopError::Stopped) => return Next::Again,
                Err(PopError::Disconnected) => return Next::Closed,
            };
            match encode(&message) {
                // The frame adds a tag and a length.
                Ok(bytes) if bytes.len() + super::FRAMING <= self.max_frame => {
                    return Next::Message(bytes);
                }
                Ok(bytes) => {
                    // The child would refuse it: it comes back at the end.
                    lock(&self.rejected).push(message);
                    return Next::TooLarge(bytes.len());
                }
                Err(e) => {
                    // It can never reach the child: it comes back at the end.
                    tracing::warn!("a message to a process task could not be encoded: {e}");
                    lock(&self.rejected).push(message);
                }
            }
        }
    }

    fn event(&self, bytes: Vec<u8>) -> Result<(), String> {
        let event = decode::<T::Event>(&bytes)?;
        // Wait for room (backpressure reaches the child through the socket;
        // a caller reads only into an empty outbox). After a stop the wait
        // ends, and the event is kept over the capacity: the child was told
        // it was sent, and the reader must go on to the task's end. Only
        // what the child emits before it sees the stop can come this way.
        // (A pool's task, whose outbox nobody reads while it runs, keeps
        // what fits; see `Finished::events`.)
        if let Err(EmitError::Stopped(event)) = self.ctx.emit(event) {
            let _ = self.ctx.mailbox().push_out_over(event);
        }
        Ok(())
    }

    fn taken(&self, _: usize) {}

    fn outcome(&self, ended: Ended) -> Result<(), String> {
        let outcome = match ended {
            Ended::Value(bytes) => Outcome::Value(decode(&bytes)?),
            Ended::Error(bytes) => Outcome::Error(decode(&bytes)?),
            Ended::Panicked { message, location } => {
                let location = location.map(|(file, line, col)| Location::new(file, line, col));
                Outcome::Panicked(Panic::new(Box::new(message), location))
            }
            Ended::Unencodable(why) => return Err(why),
            Ended::Killed(killed) => Outcome::Killed(killed),
            Ended::Crashed(crash) => Outcome::Crashed(crash),
        };
        *lock(&self.outcome) = Some(outcome);
        Ok(())
    }

    fn ready(&self) -> bool {
        self.ctx.mailbox().has_event()
    }

    fn ended(&self, unacked: VecDeque<Vec<u8>>) {
        let mailbox = self.ctx.mailbox();
        mailbox.set(INBOX_CLOSED);
        // Messages the child never took come back first, then the handle's
        // inbox.
        let mut back: Vec<T::In> = unacked
            .into_iter()
            .filter_map(|bytes| decode::<T::In>(&bytes).ok())
            .collect();
        back.append(&mut lock(&self.rejected));
        mailbox.give_back(back);
    }
}
