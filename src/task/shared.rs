//! What a task's handle, its context and its place share.
//!
//! One allocation per task holds the untyped part (id, name, mailbox, the
//! place's hooks) followed by the typed outcome slot as its last field. The
//! handle holds it with the outcome's types; everyone else (the context, a
//! chain's stages, a pool, the timer) holds the same allocation with the
//! outcome's type erased (`Arc<Shared<In, Ev>>`, an unsizing coercion), and
//! reaches the untyped part directly, without a trait object in between.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::TaskId;
use super::wire::{Served, Side, Wire};
use crate::mailbox::{DONE, INBOX_CLOSED, Mailbox, OUTBOX_UNREAD, PopError, PushError, STOP, Wait};
use crate::outcome::Outcome;
use crate::sync::lock;
use crate::timer::Alarm;

/// What runs on a stop or kill request, on the requesting thread, after the
/// flags are set; it must return at once.
pub(crate) type StopHook = Box<dyn Fn() + Send + Sync>;

/// A place's test, on a thread about to wait for the task with no
/// timeout, of whether the task can make progress only on this very thread
/// (an async body on the current-thread runtime this thread drives), so
/// that the wait would never end.
pub(crate) type HangCheck = fn() -> bool;

/// What runs once when the task ends (a group learning that one of its
/// tasks did), on the thread that recorded the outcome, told whether the
/// task failed (see [`Outcome::is_failure`]); it must return at once.
pub(crate) type EndHook = Box<dyn Fn(bool) + Send + Sync>;

/// A typed outcome's slot: empty until the task ends, then until joined.
pub(crate) type Slot<T, E> = Mutex<Option<Outcome<T, E>>>;

/// A task's shared state. `O` is the outcome's slot: [`Slot`] where the
/// types are known, erased (the default) elsewhere.
pub(crate) struct Shared<In, Ev, O: ?Sized = dyn Any + Send + Sync> {
    pub(crate) id: TaskId,
    pub(crate) name: Option<Arc<str>>,
    started: AtomicBool,
    /// Nobody waits to read the outbox while the task runs (a pool's task,
    /// whose events are kept for its result): an emit never waits for
    /// room.
    outbox_unread: AtomicBool,
    pub(crate) mailbox: Mailbox<In, Ev>,
    stop_hook: OnceLock<StopHook>,
    hang_check: Option<HangCheck>,
    wire: OnceLock<(Side, Weak<dyn Wire<Ev>>)>,
    limit: OnceLock<Limit<In>>,
    end_hook: OnceLock<EndHook>,
    /// The end hook ran (or is running): it runs once.
    end_told: AtomicBool,
    pub(crate) outcome: O,
}

/// The largest message a place carries: `size` tells a message's size as
/// the place counts it (encoded), which must be at most `max`.
struct Limit<In> {
    max: usize,
    size: fn(&In) -> usize,
}

impl<In, Ev, O> Shared<In, Ev, O> {
    /// The shared state of a task not started yet (`renew` makes one the
    /// same, in place: a field added here is reset there too).
    #[inline(always)]
    pub(crate) fn new(name: Option<Arc<str>>, inbox: usize, outbox: usize, outcome: O) -> Self {
        Shared {
            id: TaskId::next(),
            name,
            started: AtomicBool::new(false),
            outbox_unread: AtomicBool::new(false),
            mailbox: Mailbox::new(inbox, outbox),
            stop_hook: OnceLock::new(),
            hang_check: None,
            wire: OnceLock::new(),
            limit: OnceLock::new(),
            end_hook: OnceLock::new(),
            end_told: AtomicBool::new(false),
            outcome,
        }
    }
}

impl<In, Ev, T, E> Shared<In, Ev, Slot<T, E>> {
    /// Makes this state as [`new`](Shared::new) makes one (a new id, the
    /// outcome slot empty), in place: a task's state reused by the next
    /// task, which nobody else holds. What is left in it is dropped.
    pub(crate) fn renew(&mut self, name: Option<Arc<str>>, inbox: usize, outbox: usize) {
        self.id = TaskId::next();
        self.name = name;
        *self.started.get_mut() = false;
        *self.outbox_unread.get_mut() = false;
        self.mailbox.renew(inbox, outbox);
        self.stop_hook.take();
        self.hang_check = None;
        self.wire.take();
        self.limit.take();
        self.end_hook.take();
        *self.end_told.get_mut() = false;
        *self
            .outcome
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner()) = None;
    }
}

impl<In, Ev, O: ?Sized> Shared<In, Ev, O> {
    /// Whether the task was started.
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub(crate) fn set_started(&self, started: bool) {
        self.started.store(started, Ordering::Release);
    }

    /// Says nobody waits to read the outbox while the task runs: from now
    /// on an emit into a full outbox gives its event back at once. Only
    /// before the body runs (a pool's runner, for the task it is about to
    /// run); for a task that may run already, see
    /// [`set_outbox_unread_running`](Self::set_outbox_unread_running).
    pub(crate) fn set_outbox_unread(&self) {
        self.outbox_unread.store(true, Ordering::Relaxed);
    }

    /// [`set_outbox_unread`](Self::set_outbox_unread) for a task whose body
    /// may run already: an emit waiting for room now gives its event back
    /// too (under the mailbox's lock, which wakes it).
    pub(crate) fn set_outbox_unread_running(&self) {
        self.set_outbox_unread();
        self.mailbox.set(OUTBOX_UNREAD);
    }

    /// Whether an emit into a full outbox must give its event back at once
    /// instead of waiting for room.
    pub(crate) fn is_outbox_unread(&self) -> bool {
        self.outbox_unread.load(Ordering::Relaxed)
    }

    /// Sets what runs on each stop or kill request; only the first hook
    /// set is kept.
    pub(crate) fn set_stop_hook(&self, hook: StopHook) {
        let _ = self.stop_hook.set(hook);
    }

    /// Sets the test of whether a wait with no timeout on the calling
    /// thread would never end (before the state is shared).
    #[cfg(feature = "tokio")]
    pub(crate) fn set_hang_check(&mut self, check: HangCheck) {
        self.hang_check = Some(check);
    }

    /// Whether a wait with no timeout on this thread would never end,
    /// because the task can make progress only here (as far as its place
    /// can tell; `false` where it has no test).
    pub(crate) fn would_hang(&self) -> bool {
        self.hang_check.is_some_and(|check| check())
    }

    /// Sets the wire that serves `side`'s waits; only the first one set is
    /// kept.
    pub(crate) fn set_wire(&self, side: Side, wire: Weak<dyn Wire<Ev>>) {
        let _ = self.wire.set((side, wire));
    }

    /// Sets the largest message the place carries, as measured by `size`;
    /// a larger one is refused by the handle's sends. Only the first limit
    /// set is kept.
    pub(crate) fn set_message_limit(&self, max: usize, size: fn(&In) -> usize) {
        let _ = self.limit.set(Limit { max, size });
    }

    /// Gives `message` back if it is over the place's limit.
    pub(crate) fn admit(&self, message: In) -> Result<In, In> {
        match self.limit.get() {
            Some(limit) if (limit.size)(&message) > limit.max => Err(message),
            _ => Ok(message),
        }
    }

    /// The wire serving `side`, while the task's connection lasts.
    pub(crate) fn wire(&self, side: Side) -> Option<Arc<dyn Wire<Ev>>> {
        match self.wire.get() {
            Some((s, wire)) if *s == side => wire.upgrade(),
            _ => None,
        }
    }

    /// Tells the handle's wire, if any, that a message went in or the inbox
    /// closed.
    pub(crate) fn sent(&self) {
        if let Some(wire) = self.wire(Side::Handle) {
            wire.sent();
        }
    }

    /// Tells the wire of `side`, if any, that someone waits without reading.
    pub(crate) fn hurry(&self, side: Side) {
        if let Some(wire) = self.wire(side) {
            wire.hurry();
        }
    }

    /// Takes the next event, reading the connection for it where there is
    /// one and nobody else reads it.
    pub(crate) fn take_event(&self, wait: Wait) -> Result<Ev, PopError> {
        match self.wire(Side::Handle) {
            Some(wire) => {
                let got = super::wire::take_reading(wait, |w| self.mailbox.pop_out(w), &*wire);
                if got.is_ok() {
                    wire.received();
                }
                got
            }
            None => self.mailbox.pop_out(wait),
        }
    }

    /// Waits for the task's end until `wait` says, reading the connection
    /// for it where the place's wire brings the end and nobody else reads;
    /// returns whether it ended.
    pub(crate) fn wait_done(&self, wait: Wait) -> bool {
        if let Some(wire) = self.wire(Side::Handle).filter(|w| w.brings_end()) {
            let until = match wait {
                Wait::No => return self.mailbox.is(DONE),
                Wait::Forever => None,
                Wait::Until(until) => Some(until),
            };
            loop {
                // Before the look: see `Wire::mark`.
                let mark = wire.mark();
                if self.mailbox.is(DONE) {
                    break;
                }
                match wire.pull(until, mark) {
                    Served::Wake => {}
                    Served::TimedOut => return self.mailbox.is(DONE),
                    Served::Busy | Served::Ended => break,
                }
            }
        }
        self.hurry(Side::Handle);
        self.mailbox.wait_for(DONE, wait)
    }

    /// Tells the handle's wire, if any, that the handle took an event.
    #[cfg(feature = "tokio")]
    pub(crate) fn received(&self) {
        if let Some(wire) = self.wire(Side::Handle) {
            wire.received();
        }
    }

    /// Puts a message into the inbox, waiting for room; gives it back if the
    /// task is stopping, ended or closed (a chain's upstream stage feeding
    /// this one).
    pub(crate) fn feed(&self, message: In) -> Result<(), In> {
        self.mailbox
            .push_in(message, Wait::Forever)
            .map(|()| self.sent())
            .map_err(|e| match e {
                PushError::Full(m) | PushError::Closed(m) | PushError::Stopped(m) => m,
            })
    }

    /// Says no message will come any more.
    pub(crate) fn close_inbox(&self) {
        self.mailbox.set(INBOX_CLOSED);
        self.sent();
    }

    /// Asks the task to stop; `why` is traced.
    pub(crate) fn request_stop(&self, why: &'static str) {
        if self.mailbox.set(STOP) {
            tracing::debug!(
                task.id = self.id.as_u64(),
                task.name = self.name.as_deref(),
                why,
                "stop requested"
            );
        }
        if let Some(hook) = self.stop_hook.get() {
            hook();
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.mailbox.is(DONE)
    }

    /// Runs the end hook, if one is set and it has not run yet.
    fn tell_end(&self, failed: impl FnOnce() -> bool) {
        if let Some(hook) = self.end_hook.get()
            && !self.end_told.swap(true, Ordering::AcqRel)
        {
            hook(failed());
        }
    }

    /// Says the task ended with `outcome`, which its caller keeps (a task
    /// run by the thread that holds its only handle, which nobody can
    /// join), and wakes everyone waiting for it.
    pub(crate) fn finish_kept<T, E>(&self, outcome: &Outcome<T, E>) {
        tracing::debug!(
            task.id = self.id.as_u64(),
            task.name = self.name.as_deref(),
            outcome = outcome.kind(),
            "task ended"
        );
        self.mailbox.set(DONE);
        self.tell_end(|| outcome.is_failure());
    }
}

impl<In, Ev, T, E> Shared<In, Ev, Slot<T, E>> {
    /// Records how the task ended and wakes everyone waiting for it.
    pub(crate) fn finish(&self, outcome: Outcome<T, E>) {
        tracing::debug!(
            task.id = self.id.as_u64(),
            task.name = self.name.as_deref(),
            outcome = outcome.kind(),
            "task ended"
        );
        let failed = outcome.is_failure();
        *lock(&self.outcome) = Some(outcome);
        self.mailbox.set(DONE);
        // Either this thread sees the hook or `set_end_hook` sees `DONE`
        // (it reads it under the lock `set` holds): the hook runs once.
        self.tell_end(|| failed);
    }

    /// Sets what runs once when the task ends (at once, here, if it has
    /// ended already). Only the first hook set is kept; `Err` gives back
    /// one that was not.
    pub(crate) fn set_end_hook(&self, hook: EndHook) -> Result<(), EndHook> {
        self.end_hook.set(hook)?;
        if self.mailbox.is_set_locked(DONE) {
            self.tell_end(|| {
                lock(&self.outcome)
                    .as_ref()
                    .is_some_and(Outcome::is_failure)
            });
        }
        Ok(())
    }

    /// Takes the outcome of a finished task.
    pub(crate) fn take_outcome(&self) -> Outcome<T, E> {
        lock(&self.outcome)
            .take()
            .expect("a finished task holds its outcome until joined once")
    }
}

impl<In: Send, Ev: Send, O: ?Sized + Send + Sync> Alarm for Shared<In, Ev, O> {
    /// The task's timeout passed.
    fn ring(&self) {
        self.request_stop("timeout");
    }
}
