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
//! The attempts mirror those of the blocking operations in the parent
//! module, decision for decision (a receive takes the very same steps): a
//! message is either in a queue or still with its sender, never in between.

use std::cell::Cell;
use std::sync::atomic::{self, Ordering};
use std::task::{Context, Poll};

use super::{DONE, HANDLE_GONE, Mailbox, PopError, PushError, STOP, State, Waiter};

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

    /// Runs `attempt` under the lock; if it cannot complete, registers the
    /// waker of `cx` and returns `Pending`. `lock_free`: whether the waiter
    /// waits on the inbox, which both its sides change without the lock.
    fn poll_with<R>(
        &self,
        cx: &mut Context<'_>,
        lock_free: bool,
        mut attempt: impl FnMut(&mut State<Ev>) -> Option<R>,
    ) -> Poll<R> {
        self.locked(|s| {
            if let Some(r) = attempt(s) {
                return Poll::Ready(r);
            }
            if lock_free {
                // Announce the waiter before checking again: a side that
                // changes the inbox without the lock checks this flag after
                // its change, so one of the two sees the other.
                self.has_waiters.store(true, Ordering::SeqCst);
                atomic::fence(Ordering::SeqCst);
                if let Some(r) = attempt(s) {
                    self.has_waiters
                        .store(!s.waiters.is_empty(), Ordering::SeqCst);
                    return Poll::Ready(r);
                }
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
        self.poll_with(cx, true, |s| self.push_locked(s, message))
            .map(|done| {
                done.map_err(|()| PushError::Closed(message.take().expect("kept until refused")))
            })
    }

    /// Polls to take a message out of the inbox (the async context's recv).
    /// A message leaves the inbox only in a `Ready(Ok)`.
    pub(crate) fn poll_pop_in(&self, cx: &mut Context<'_>) -> Poll<Result<In, PopError>> {
        if self.is(STOP) {
            return Poll::Ready(Err(PopError::Stopped));
        }
        if let Some(m) = self.pop_raw() {
            self.tell_waiters();
            return Poll::Ready(Ok(m));
        }
        self.poll_with(cx, true, |s| self.pop_locked(s))
    }

    /// Polls to put `event` into the outbox (the async context's emit). The
    /// event leaves `event` only when it is delivered or refused.
    pub(crate) fn poll_push_out(
        &self,
        event: &mut Option<Ev>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError<Ev>>> {
        self.poll_with(cx, false, |s| {
            if s.flags & (HANDLE_GONE | DONE) != 0 {
                return Some(Err(false));
            }
            if s.outbox.len() >= self.outbox_cap {
                return (s.flags & STOP != 0).then_some(Err(true));
            }
            s.outbox.push_back(event.take().expect("pushed once"));
            self.outbox_len.store(s.outbox.len(), Ordering::Release);
            s.wake();
            Some(Ok(()))
        })
        .map(|done| {
            done.map_err(|stopped| {
                let event = event.take().expect("kept until refused");
                if stopped {
                    PushError::Stopped(event)
                } else {
                    PushError::Closed(event)
                }
            })
        })
    }

    /// Polls to take an event out of the outbox (the handle's async recv).
    /// An event leaves the outbox only in a `Ready(Ok)`.
    pub(crate) fn poll_pop_out(&self, cx: &mut Context<'_>) -> Poll<Result<Ev, PopError>> {
        self.poll_with(cx, false, |s| match s.outbox.pop_front() {
            Some(e) => {
                self.outbox_len.store(s.outbox.len(), Ordering::Release);
                s.wake();
                Some(Ok(e))
            }
            None if s.flags & DONE != 0 => Some(Err(PopError::Disconnected)),
            None => None,
        })
    }

    /// Polls until `flag` is set.
    pub(crate) fn poll_wait_for(&self, flag: u8, cx: &mut Context<'_>) -> Poll<()> {
        if self.is(flag) {
            return Poll::Ready(());
        }
        self.poll_with(cx, false, |s| (s.flags & flag != 0).then_some(()))
    }
}
