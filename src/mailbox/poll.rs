//! The mailbox's operations as poll functions, for futures.
//!
//! Each one tries under the state lock; when it cannot complete, it
//! registers the task's waker in the same waiter list that parked threads
//! use, so every change of state wakes futures and threads alike. A waker
//! that would wake the same task as one already registered is not added
//! again, so a future polled many times leaves one entry. A future dropped
//! while registered leaves its waker behind until the next change of state
//! wakes it once, harmlessly.
//!
//! The decisions are the parent module's own (`attempt_*`, `*_now`), the
//! very ones a blocking caller takes; only the waiting differs. So a message
//! is either in a queue or still with its sender, never in between, whoever
//! waits.

use std::cell::Cell;
use std::task::{Context, Poll};

use super::{Mailbox, PopError, PushError, State, Waiter, Watch, delivered};

thread_local! {
    /// The address of the mailbox where this thread last registered a
    /// waker, so that an async task's wrapper can tell whether its body left
    /// a waker in its own mailbox during a poll.
    static REGISTERED: Cell<usize> = const { Cell::new(0) };
}

impl<In, Ev> Mailbox<In, Ev> {
    fn address(&self) -> usize {
        std::ptr::from_ref(self).addr()
    }

    /// Forgets this thread's last registration (before polling a body).
    pub(crate) fn clear_registered() {
        REGISTERED.with(|r| r.set(0));
    }

    /// Whether this thread registered a waker here since
    /// [`clear_registered`](Mailbox::clear_registered).
    pub(crate) fn registered_here(&self) -> bool {
        REGISTERED.with(|r| r.get()) == self.address()
    }

    /// Takes a decision (`attempt`, under the lock) if it can be taken;
    /// else registers the waker of `cx` and returns `Pending`. The last try
    /// before registering is announced as `watch` says (invariant 4).
    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        watch: Watch,
        mut attempt: impl FnMut(&mut State<Ev>) -> Option<R>,
    ) -> Poll<R> {
        self.locked(|s| {
            if let Some(r) = attempt(s) {
                return Poll::Ready(r);
            }
            if watch == Watch::Inbox
                && let Some(r) = self.attempt_announced(s, watch, &mut attempt)
            {
                return Poll::Ready(r);
            }
            let waker = cx.waker();
            let known = s
                .waiters
                .iter()
                .any(|w| matches!(w, Waiter::Task(w) if w.will_wake(waker)));
            if !known {
                s.waiters.push(Waiter::Task(waker.clone()));
            }
            REGISTERED.with(|r| r.set(self.address()));
            Poll::Pending
        })
    }

    /// Polls to put `message` into the inbox. The message leaves `message`
    /// only when it is delivered (`Ready(Ok)`) or refused
    /// (`Ready(Err(Closed))`); while `Pending` it stays there.
    pub(crate) fn poll_push_in(
        &self,
        message: &mut Option<In>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError<In>>> {
        if let Some(m) = message.take() {
            match self.push_in_now(m) {
                Err(PushError::Full(m)) => *message = Some(m),
                pushed => return Poll::Ready(pushed),
            }
        }
        self.poll_with(cx, Watch::Inbox, |s| self.attempt_push_in(s, message))
            .map(|done| delivered(done, message))
    }

    /// Polls to take a message out of the inbox (the async context's recv).
    /// A message leaves the inbox only in a `Ready(Ok)`.
    pub(crate) fn poll_pop_in(&self, cx: &mut Context<'_>) -> Poll<Result<In, PopError>> {
        if let Some(got) = self.pop_in_now() {
            return Poll::Ready(got);
        }
        self.poll_with(cx, Watch::Inbox, |s| self.attempt_pop_in(s))
    }

    /// Polls to put `event` into the outbox (the async context's emit). The
    /// event leaves `event` only when it is delivered or refused.
    pub(crate) fn poll_push_out(
        &self,
        event: &mut Option<Ev>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError<Ev>>> {
        self.poll_with(cx, Watch::Locked, |s| self.attempt_push_out(s, event))
            .map(|done| delivered(done, event))
    }

    /// Polls to take an event out of the outbox (the handle's async recv).
    /// An event leaves the outbox only in a `Ready(Ok)`.
    pub(crate) fn poll_pop_out(&self, cx: &mut Context<'_>) -> Poll<Result<Ev, PopError>> {
        self.poll_with(cx, Watch::Locked, |s| self.attempt_pop_out(s))
    }

    /// Polls until `flag` is set.
    pub(crate) fn poll_wait_for(&self, flag: u8, cx: &mut Context<'_>) -> Poll<()> {
        if self.is(flag) {
            return Poll::Ready(());
        }
        self.poll_with(cx, Watch::Locked, |s| Self::attempt_flag(s, flag))
    }
}
