//! A registered task type, its types erased: what a place that runs named
//! tasks by name (a process child, a remote worker) needs.
//!
//! The place speaks bytes: it hands over the encoded argument and each
//! encoded message, and carries encoded events and the encoded outcome. The
//! typed work (decoding, running the body with its context, encoding) is
//! done here, instantiated for each type when it is registered, so that the
//! registry never names a place.
//!
//! # Glossary
//!
//! - *line*: the place's byte-level way out of the body ([`Line`]): it
//!   carries encoded events and serves the body's waits, as a wire does.
//! - *inlet*: the typed task's way in for the place ([`Inlet`]): encoded
//!   messages and the flags (stop, kill, closed inbox, done).
//!
//! A body prepared here runs on the calling thread. The process place
//! prepares another kind, with the same shape, whose body runs in a child
//! process (`backend::process::prepare_isolated`): its inlet writes to the
//! child, and it can end [`Ended::Killed`] or [`Ended::Crashed`].

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::NamedTask;
use crate::ctx::Ctx;
use crate::mailbox::{DONE, INBOX_CLOSED, PushError, STOP, Wait};
use crate::outcome::{self, Crash, Killed};
use crate::task::Shared;
use crate::task::wire::{Carry, Served, Side, Wire};

/// A line had no room for an event now, and the caller may not wait.
pub(crate) struct Full;

/// A place's line out of a body that runs here, in bytes.
pub(crate) trait Line: Send + Sync {
    /// Carries an encoded event out; `wait`: whether it may wait for room.
    fn event(&self, bytes: Vec<u8>, wait: bool) -> Result<(), Full>;
    /// An event could not be encoded: the task cannot go on as promised.
    fn broken(&self, why: String);
    /// The body took a message.
    fn taken(&self);
    /// How much the place has brought so far (see [`Wire::mark`]).
    fn mark(&self) -> u64 {
        0
    }
    /// The body waits for a message until `until`: reads for it if it can
    /// (see [`Wire::pull`]).
    fn pull(&self, until: Option<Instant>, since: u64) -> Served;
    /// The body waits without reading (a sleep).
    fn hurry(&self);
}

/// What became of an encoded message handed to a task.
pub(crate) enum Delivered {
    /// In the task's inbox.
    Taken,
    /// The inbox was full (the place sent more than it had credit for).
    Full,
    /// The task is stopping or ended: the sender keeps the message.
    Refused,
}

/// A task's way in, for its place: encoded messages and the flags.
pub(crate) trait Inlet: Send + Sync {
    /// Decodes a message and puts it into the inbox without waiting.
    fn deliver(&self, bytes: &[u8]) -> Result<Delivered, String>;
    /// Asks the body to stop.
    fn stop(&self);
    /// Ends the body at once where the place can (a child process gets
    /// `SIGKILL`, and its body ends [`Ended::Killed`]); elsewhere, as here,
    /// asks it to stop: a thread cannot be killed, and the place records
    /// the kill itself.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn kill(&self) {
        self.stop();
    }
    /// Says no message will come any more.
    fn close(&self);
    /// The place is done with the task (the next one was asked for).
    fn done(&self);
    /// Whether a message waits, or the body's `recv` returns at once anyway.
    fn has_message(&self) -> bool;
}

impl<In: DeserializeOwned + Send, Ev: Send> Inlet for Shared<In, Ev, ()> {
    fn deliver(&self, bytes: &[u8]) -> Result<Delivered, String> {
        let message: In = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(match self.mailbox.push_in(message, Wait::No) {
            Ok(()) => Delivered::Taken,
            Err(PushError::Full(_)) => Delivered::Full,
            Err(PushError::Closed(_) | PushError::Stopped(_)) => Delivered::Refused,
        })
    }

    fn stop(&self) {
        self.mailbox.set(STOP);
    }

    fn close(&self) {
        self.mailbox.set(INBOX_CLOSED);
    }

    fn done(&self) {
        self.mailbox.set(DONE);
    }

    fn has_message(&self) -> bool {
        self.mailbox.has_message()
    }
}

/// How a body ended, encoded.
pub(crate) enum Ended {
    Value(Vec<u8>),
    Error(Vec<u8>),
    Panicked {
        message: String,
        location: Option<(String, u32, u32)>,
    },
    /// The value or error could not be encoded.
    Unencodable(String),
    /// The body's process was killed (a kill, or a stop that escalated).
    Killed(Killed),
    /// The body's process ended without an outcome.
    Crashed(Crash),
}

/// A task made from its encoded argument, ready to run.
pub(crate) struct Prepared {
    /// Where the place delivers messages and flags.
    pub(crate) inlet: Arc<dyn Inlet>,
    /// Runs the body on the calling thread, its events through the line.
    pub(crate) run: Box<dyn FnOnce(Arc<dyn Line>) -> Ended + Send>,
}

/// A registered type's erased entry points.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// Decodes the argument and makes the task, its inbox holding
    /// `inbox` messages; `Err` if the argument does not decode.
    pub(crate) prepare: fn(arg: &[u8], inbox: usize) -> Result<Prepared, String>,
}

impl Entry {
    pub(crate) fn of<T: NamedTask>() -> Entry {
        Entry {
            prepare: prepare::<T>,
        }
    }
}

fn prepare<T: NamedTask>(arg: &[u8], inbox: usize) -> Result<Prepared, String> {
    let arg: T::Arg = postcard::from_bytes(arg)
        .map_err(|e| format!("could not decode the argument of `{}`: {e}", T::NAME))?;
    let shared = Arc::new(Shared::<T::In, T::Event, ()>::new(
        Some(Arc::from(T::NAME)),
        inbox,
        1,
        (),
    ));
    shared.set_started(true);
    // The body's side is a kernel wake-up away from the other side anyway:
    // spinning there only takes a core from the threads that do the work.
    shared.mailbox.no_spin();
    outcome::install_hook();
    let inlet: Arc<dyn Inlet> = shared.clone();
    let run = Box::new(move |line: Arc<dyn Line>| {
        let wire: Arc<dyn Wire<T::Event>> = Arc::new(Encoding::<T::Event> {
            line,
            event: PhantomData,
        });
        shared.set_wire(Side::Body, Arc::downgrade(&wire));
        let ctx = Ctx::new(shared);
        let result = outcome::catch(move || {
            let result = T::run(&ctx, arg);
            drop(ctx);
            result
        });
        drop(wire);
        let encoded = match result {
            Ok(Ok(v)) => postcard::to_stdvec(&v).map(Ended::Value),
            Ok(Err(e)) => postcard::to_stdvec(&e).map(Ended::Error),
            Err(p) => Ok(Ended::Panicked {
                message: p.message().to_owned(),
                location: p
                    .location()
                    .map(|l| (l.file().to_owned(), l.line(), l.column())),
            }),
        };
        encoded.unwrap_or_else(|e| Ended::Unencodable(format!("could not encode the outcome: {e}")))
    });
    Ok(Prepared { inlet, run })
}

/// The body's wire: encodes events for the place's line.
struct Encoding<Ev> {
    line: Arc<dyn Line>,
    event: PhantomData<fn(Ev)>,
}

impl<Ev: serde::Serialize> Wire<Ev> for Encoding<Ev> {
    fn taken(&self) {
        self.line.taken();
    }

    fn carry(&self, event: Ev, wait: bool) -> Result<(), Carry<Ev>> {
        let bytes = match postcard::to_stdvec(&event) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.line.broken(format!("could not encode an event: {e}"));
                return Err(Carry::Gone(event));
            }
        };
        self.line
            .event(bytes, wait)
            .map_err(|Full| Carry::Full(event))
    }

    fn mark(&self) -> u64 {
        self.line.mark()
    }

    fn pull(&self, until: Option<Instant>, since: u64) -> Served {
        self.line.pull(until, since)
    }

    fn hurry(&self) {
        self.line.hurry();
    }
}
