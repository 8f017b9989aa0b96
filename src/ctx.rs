//! The task's side of the handle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{
    CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError, Stopped, TryEmitError,
};
use crate::mailbox::{Mailbox, PopError, PushError, STOP, Wait};
use crate::task::wire::{Carry, Side, take_reading};
use crate::task::{Shared, TaskId};

/// The task's side of its handle: the stop flag, the inbox and the outbox.
///
/// A task body receives `&Ctx<In, Ev>`: `In` is the type of the messages the
/// handle sends in, `Ev` the type of the events the task emits. Both default
/// to `()` for a task that talks to nobody, so `|ctx: &Ctx|` is the shortest
/// body signature.
///
/// Every blocking call here (`recv`, `recv_timeout`, `sleep`, and `emit` on a
/// full outbox) wakes as soon as the task is asked to stop, however long its
/// timeout: nothing polls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::{Ctx, Stopped};
///
/// let task = sidetask::spawn(|ctx: &Ctx<u32, u32>| {
///     let mut sum = 0;
///     while let Ok(n) = ctx.recv() {
///         sum += n;
///         ctx.emit(sum).ok();
///     }
///     Ok::<_, Stopped>(sum)
/// });
/// task.send(2)?;
/// task.send(3)?;
/// assert_eq!(task.recv()?, 2);
/// assert_eq!(task.recv()?, 5);
/// task.stop();
/// assert_eq!(task.join().value(), Some(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Ctx<In = (), Ev = ()> {
    shared: Arc<Shared<In, Ev>>,
}

impl<In, Ev> Ctx<In, Ev> {
    pub(crate) fn new(shared: Arc<Shared<In, Ev>>) -> Self {
        Ctx { shared }
    }

    pub(crate) fn mailbox(&self) -> &Mailbox<In, Ev> {
        &self.shared.mailbox
    }

    /// The task's shared state (a place's driver sets its hooks there).
    pub(crate) fn shared(&self) -> &Arc<Shared<In, Ev>> {
        &self.shared
    }

    /// Another context on the same task (a place's helper thread).
    pub(crate) fn share(&self) -> Self {
        Ctx {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Takes the next message for the body; where the body runs apart from
    /// its place's driver (a process child), reads the connection for it
    /// when nobody else does.
    fn take(&self, wait: Wait) -> Result<In, PopError> {
        let Some(wire) = self.shared.wire(Side::Body) else {
            return self.mailbox().pop_in(wait);
        };
        let got = take_reading(wait, |w| self.mailbox().pop_in(w), &*wire);
        if got.is_ok() {
            wire.taken();
        }
        got
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.shared.id
    }

    /// The task's name, if the builder gave one.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// Returns `true` once the task has been asked to stop (by
    /// [`Task::stop`](crate::Task::stop), the handle's drop, or the
    /// builder's timeout).
    ///
    /// Stopping is cooperative: the body decides when to return.
    pub fn stopped(&self) -> bool {
        self.mailbox().is(STOP)
    }

    /// Returns `Err(Stopped)` once the task has been asked to stop, so that a
    /// body can leave early with `?`.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the task has been asked to stop.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Stopped};
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx<(), &str>| -> Result<(), Stopped> {
    ///     ctx.emit("working").ok();
    ///     loop {
    ///         ctx.checkpoint()?;
    ///         std::thread::yield_now();
    ///     }
    /// });
    /// assert_eq!(task.recv()?, "working");
    /// task.stop();
    /// assert_eq!(task.join().error(), Some(Stopped));
    /// # Ok::<(), sidetask::RecvError>(())
    /// ```
    pub fn checkpoint(&self) -> Result<(), Stopped> {
        if self.stopped() { Err(Stopped) } else { Ok(()) }
    }

    /// Sleeps for `duration`, waking at once if the task is asked to stop.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the task was asked to stop before or during the sleep.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use sidetask::Ctx;
    ///
    /// let task = sidetask::spawn(|ctx: &Ctx<(), ()>| {
    ///     ctx.emit(()).ok();
    ///     ctx.sleep(Duration::from_secs(3600))
    /// });
    /// task.recv()?; // the task is running
    /// let asked = Instant::now();
    /// task.stop();
    /// assert!(task.join().is_error());
    /// assert!(asked.elapsed() < Duration::from_secs(60));
    /// # Ok::<(), sidetask::RecvError>(())
    /// ```
    pub fn sleep(&self, duration: Duration) -> Result<(), Stopped> {
        self.shared.hurry(Side::Body);
        if self.mailbox().wait_for(STOP, Wait::after(duration)) {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    /// Waits for the next message from the handle.
    ///
    /// Once the task has been asked to stop, this returns
    /// [`CtxRecvError::Stopped`] even if messages are waiting: they stay in
    /// the inbox, and the handle can take them back after the task ends
    /// ([`Task::take_unread`](crate::Task::take_unread)).
    ///
    /// # Errors
    ///
    /// [`CtxRecvError::Stopped`] when the task is asked to stop (also while
    /// waiting); [`CtxRecvError::Disconnected`] when the handle is gone and
    /// the inbox is empty.
    pub fn recv(&self) -> Result<In, CtxRecvError> {
        self.take(Wait::Forever).map_err(|e| match e {
            PopError::Stopped => CtxRecvError::Stopped,
            _ => CtxRecvError::Disconnected,
        })
    }

    /// Waits at most `timeout` for the next message from the handle.
    ///
    /// # Errors
    ///
    /// [`CtxRecvTimeoutError::Timeout`] if none came in time, and otherwise as
    /// [`recv`](Ctx::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<In, CtxRecvTimeoutError> {
        self.take(Wait::after(timeout)).map_err(|e| match e {
            PopError::Empty => CtxRecvTimeoutError::Timeout,
            PopError::Stopped => CtxRecvTimeoutError::Stopped,
            PopError::Disconnected => CtxRecvTimeoutError::Disconnected,
        })
    }

    /// Takes the next message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`CtxTryRecvError::Empty`] if none is waiting, and otherwise as
    /// [`recv`](Ctx::recv).
    pub fn try_recv(&self) -> Result<In, CtxTryRecvError> {
        self.take(Wait::No).map_err(|e| match e {
            PopError::Empty => CtxTryRecvError::Empty,
            PopError::Stopped => CtxTryRecvError::Stopped,
            PopError::Disconnected => CtxTryRecvError::Disconnected,
        })
    }

    /// An iterator over messages that ends when the task is asked to stop or
    /// the handle is gone.
    pub fn iter(&self) -> impl Iterator<Item = In> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Emits an event to the handle, waiting while the outbox is full.
    ///
    /// Emitting still works after a stop request (a last progress report,
    /// say); only the wait on a full outbox is cut short by it.
    ///
    /// In a [`Pool`](crate::Pool)'s task it never waits: nobody reads the
    /// outbox as events come (its events are kept for the task's
    /// [`Finished::events`](crate::Finished::events), up to the outbox's
    /// capacity), so an event that finds the outbox full is given back at
    /// once.
    ///
    /// # Errors
    ///
    /// [`EmitError::Disconnected`] if nobody can ever read the event: the
    /// handle was dropped or detached, or the task has ended (a part of the
    /// body still running after it returned), or, in a pool's task, the
    /// outbox is full; [`EmitError::Stopped`] if the outbox was full and the
    /// task was asked to stop while waiting. The event is given back either
    /// way.
    pub fn emit(&self, event: Ev) -> Result<(), EmitError<Ev>> {
        if let Some(wire) = self.shared.wire(Side::Body) {
            return wire.carry(event, true).map_err(|e| match e {
                Carry::Full(e) | Carry::Gone(e) => EmitError::Disconnected(e),
            });
        }
        let wait = if self.shared.is_outbox_unread() {
            Wait::No
        } else {
            Wait::Forever
        };
        self.mailbox().push_out(event, wait).map_err(|e| match e {
            // Full only where nobody waits to read the outbox.
            PushError::Closed(e) | PushError::Full(e) => EmitError::Disconnected(e),
            PushError::Stopped(e) => EmitError::Stopped(e),
        })
    }

    /// Emits an event if the outbox has room.
    ///
    /// # Errors
    ///
    /// [`TryEmitError::Full`] if the outbox is full;
    /// [`TryEmitError::Disconnected`] if nobody can ever read the event (the
    /// handle was dropped or detached, or the task has ended).
    pub fn try_emit(&self, event: Ev) -> Result<(), TryEmitError<Ev>> {
        if let Some(wire) = self.shared.wire(Side::Body) {
            return wire.carry(event, false).map_err(|e| match e {
                Carry::Full(e) => TryEmitError::Full(e),
                Carry::Gone(e) => TryEmitError::Disconnected(e),
            });
        }
        self.mailbox()
            .push_out(event, Wait::No)
            .map_err(|e| match e {
                PushError::Closed(e) => TryEmitError::Disconnected(e),
                PushError::Stopped(e) | PushError::Full(e) => TryEmitError::Full(e),
            })
    }
}

impl<In, Ev> fmt::Debug for Ctx<In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("stopped", &self.stopped())
            .finish_non_exhaustive()
    }
}
