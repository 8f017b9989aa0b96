//! The inbox's queue: lock-free, and made at the first message.
//!
//! A normal build uses a crossbeam channel, bounded or unbounded as the
//! mailbox asks at the first push. A push that does not go in gives its
//! message back: `Full`, or `Closed` if the receiver were gone (never, while
//! its mailbox lives).
//!
//! Crossbeam cannot run under loom, so the model-checking build swaps in a
//! loom mutex over a `VecDeque` behind the same few methods, with a count
//! beside it that a push publishes (`Release`) and a pop reads (`Acquire`)
//! before it takes the mutex. The loom tests check the handshake around the
//! queue (the senders' count, the waiter flag, the flags): a pop that finds
//! the queue empty learns nothing more from it than from a lock-free queue,
//! so the model needs the same fences as the real thing.

#[cfg(not(all(test, loom)))]
pub(super) use self::channel::Queue;

#[cfg(all(test, loom))]
pub(super) use self::model::Queue;

#[cfg(not(all(test, loom)))]
mod channel {
    use std::sync::OnceLock;

    use crossbeam_channel::{Receiver, Sender, TrySendError};

    use crate::mailbox::PushError;

    pub(in crate::mailbox) struct Queue<T>(OnceLock<(Sender<T>, Receiver<T>)>);

    impl<T> Queue<T> {
        pub(in crate::mailbox) fn new() -> Self {
            Queue(OnceLock::new())
        }

        /// Pushes without waiting; the queue is made at the first push,
        /// holding at most `bound` messages (`None`: unbounded).
        #[inline]
        pub(in crate::mailbox) fn push(
            &self,
            message: T,
            bound: Option<usize>,
        ) -> Result<(), PushError<T>> {
            let (sender, _) = self.0.get_or_init(|| match bound {
                Some(cap) => crossbeam_channel::bounded(cap),
                None => crossbeam_channel::unbounded(),
            });
            sender.try_send(message).map_err(|e| match e {
                TrySendError::Full(m) => PushError::Full(m),
                TrySendError::Disconnected(m) => PushError::Closed(m),
            })
        }

        #[inline]
        pub(in crate::mailbox) fn pop(&self) -> Option<T> {
            self.0.get()?.1.try_recv().ok()
        }

        #[inline]
        pub(in crate::mailbox) fn len(&self) -> usize {
            self.0.get().map_or(0, |(_, receiver)| receiver.len())
        }

        /// Takes every message the queue holds into `all`.
        pub(in crate::mailbox) fn drain_into(&self, all: &mut Vec<T>) {
            if let Some((_, receiver)) = self.0.get() {
                all.extend(receiver.try_iter());
            }
        }
    }
}

#[cfg(all(test, loom))]
mod model {
    use std::collections::VecDeque;

    use crate::mailbox::PushError;
    use crate::sync::shim::atomic::{AtomicUsize, Ordering};
    use crate::sync::shim::{Mutex, lock};

    /// The messages under a mutex, and their count beside it: a pop finds
    /// the queue empty from the count alone, without the mutex, as a
    /// lock-free queue's pop does (a mutex taken by every pop would order
    /// each pop after every earlier push, and hide from the model the
    /// fences that the lock-free queue needs).
    pub(in crate::mailbox) struct Queue<T> {
        messages: Mutex<VecDeque<T>>,
        len: AtomicUsize,
    }

    impl<T> Queue<T> {
        pub(in crate::mailbox) fn new() -> Self {
            Queue {
                messages: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
            }
        }

        pub(in crate::mailbox) fn push(
            &self,
            message: T,
            bound: Option<usize>,
        ) -> Result<(), PushError<T>> {
            let mut messages = lock(&self.messages);
            if bound.is_some_and(|cap| messages.len() >= cap) {
                return Err(PushError::Full(message));
            }
            messages.push_back(message);
            self.len.store(messages.len(), Ordering::Release);
            Ok(())
        }

        pub(in crate::mailbox) fn pop(&self) -> Option<T> {
            if self.len.load(Ordering::Acquire) == 0 {
                return None;
            }
            let mut messages = lock(&self.messages);
            let message = messages.pop_front();
            self.len.store(messages.len(), Ordering::Release);
            message
        }

        pub(in crate::mailbox) fn len(&self) -> usize {
            self.len.load(Ordering::Acquire)
        }

        pub(in crate::mailbox) fn drain_into(&self, all: &mut Vec<T>) {
            let mut messages = lock(&self.messages);
            all.extend(messages.drain(..));
            self.len.store(0, Ordering::Release);
        }
    }
}
