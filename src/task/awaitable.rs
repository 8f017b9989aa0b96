//! The handle's awaitable methods, and the making of async tasks.
//!
//! Every blocking method of the handle has an awaitable twin here. They wait
//! on the same mailbox as the blocking ones (a future registers its waker
//! where a thread would park), so one handle serves blocking and async
//! callers at once, whatever place runs the task.

use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use super::Task;
use super::wire::Side;
use crate::error::{RecvError, RecvTimeoutError, SendError, SendTimeoutError};
use crate::mailbox::{DONE, PushError};
use crate::outcome::Outcome;

/// The awaitable methods (the `tokio` feature).
///
/// They work on every task, whatever runs it (a thread, an async body, a
/// command), and beside the blocking methods on the same handle. Those
/// without a timeout need no particular runtime; the `*_timeout_async`
/// methods use tokio's timer.
impl<T, E, In, Ev> Task<T, E, In, Ev> {
    /// Waits for the task to end and returns how it ended; `task.await` does
    /// the same.
    ///
    /// A task that was never started is cancelled, as [`join`](Task::join)
    /// does.
    ///
    /// # Cancel safety
    ///
    /// The future owns the handle: dropping it before it completes drops the
    /// handle, which asks the task to stop (unlike tokio's `JoinHandle`,
    /// whose drop detaches). To wait without giving the handle up, await
    /// [`wait_async`](Task::wait_async) and then call [`join`](Task::join),
    /// which returns at once; or use
    /// [`join_timeout_async`](Task::join_timeout_async).
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A thread task, awaited.
    /// let task = sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>(6 * 7));
    /// assert_eq!(task.join_async().await.value(), Some(42));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn join_async(self) -> Join<T, E, In, Ev> {
        Join { task: Some(self) }
    }

    /// Waits at most `timeout` for the task to end; returns the outcome, or
    /// gives the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, if the task did not end in time.
    ///
    /// # Cancel safety
    ///
    /// The future owns the handle: dropping it before it completes asks the
    /// task to stop, as dropping the handle does.
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx| async move {
    ///     ctx.sleep(Duration::from_secs(60)).await
    /// });
    /// let task = task.join_timeout_async(Duration::from_millis(10)).await.unwrap_err();
    /// task.stop();
    /// let outcome = task.await;
    /// assert!(outcome.is_cancelled() || outcome.error() == Some(Stopped));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn join_timeout_async(self, timeout: Duration) -> Result<Outcome<T, E>, Self> {
        if self.wait_timeout_async(timeout).await {
            Ok(self.take_outcome())
        } else {
            Err(self)
        }
    }

    /// Waits until the task has ended, without taking its outcome.
    ///
    /// A task that was never started is cancelled, as [`wait`](Task::wait)
    /// does.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches a flag.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(1) });
    /// task.wait_async().await;
    /// assert!(task.is_finished());
    /// assert_eq!(task.join().value(), Some(1)); // returns at once
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn wait_async(&self) {
        self.cancel_if_pending();
        self.shared.hurry(Side::Handle);
        poll_fn(|cx| self.shared.mailbox.poll_wait_for(DONE, cx)).await;
    }

    /// Waits until the task has ended or `timeout` passed; returns `true` if
    /// it ended. A task never started is not cancelled by this call.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches a flag.
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx| async move { ctx.stop_requested().await; Ok::<_, Stopped>(()) });
    /// assert!(!task.wait_timeout_async(Duration::from_millis(5)).await);
    /// task.stop();
    /// assert!(task.wait_timeout_async(Duration::from_secs(60)).await);
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn wait_timeout_async(&self, timeout: Duration) -> bool {
        let mut sleep = pin!(tokio::time::sleep(timeout));
        self.shared.hurry(Side::Handle);
        poll_fn(|cx| {
            if self.shared.mailbox.poll_wait_for(DONE, cx).is_ready() {
                return Poll::Ready(true);
            }
            sleep.as_mut().poll(cx).map(|()| false)
        })
        .await
    }

    /// Sends a message into the task's inbox, waiting while it is full.
    ///
    /// # Errors
    ///
    /// If the task is stopping or has ended (also while waiting), the message
    /// is given back in the [`SendError`].
    ///
    /// # Cancel safety
    ///
    /// The message is either in the inbox or still in the future, never in
    /// between: a future dropped before it completed did not deliver its
    /// message (and drops it). To keep the message, hold the future (it is
    /// `Unpin`) and take the message back with
    /// [`SendFuture::into_message`].
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx<i32>| async move {
    ///     ctx.recv().await.map_err(Stopped::from)
    /// });
    /// task.send_async(1).await?;
    /// task.wait_async().await;
    /// assert_eq!(task.send_async(2).await.unwrap_err().into_inner(), 2);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn send_async(&self, message: In) -> SendFuture<'_, T, E, In, Ev> {
        SendFuture {
            task: self,
            message: Some(message),
        }
    }

    /// Sends a message, waiting at most `timeout` while the inbox is full.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] if the inbox stayed full,
    /// [`SendTimeoutError::Disconnected`] if the task is stopping or has
    /// ended, [`SendTimeoutError::TooLarge`] if it is over the largest the
    /// task's place carries; the message is given back.
    ///
    /// # Cancel safety
    ///
    /// As [`send_async`](Task::send_async): never half-delivered; a dropped
    /// future drops the message it still holds.
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, Builder, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = Builder::new()
    ///     .inbox_capacity(1)
    ///     .spawn_async(|ctx: AsyncCtx<u8>| async move { ctx.sleep(Duration::from_secs(60)).await })?;
    /// task.send_async(1).await?;
    /// let err = task.send_timeout_async(2, Duration::from_millis(10)).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// assert_eq!(err.into_inner(), 2);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn send_timeout_async(
        &self,
        message: In,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<In>> {
        let mut send = self.send_async(message);
        let mut sleep = pin!(tokio::time::sleep(timeout));
        poll_fn(|cx| {
            if let Poll::Ready(sent) = Pin::new(&mut send).poll(cx) {
                return Poll::Ready(sent.map_err(SendTimeoutError::from));
            }
            sleep.as_mut().poll(cx).map(|()| {
                let message = send.message.take().expect("kept while pending");
                Err(SendTimeoutError::Timeout(message))
            })
        })
        .await
    }

    /// Waits for the next event from the task.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the task has ended and every event it emitted has
    /// been received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event leaves the outbox only in the poll that returns
    /// it, so a dropped `recv_async` future loses nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, RecvError, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn(|ctx: &Ctx<(), u8>| {
    ///     ctx.emit(1).ok();
    ///     Ok::<_, Stopped>(())
    /// });
    /// assert_eq!(task.recv_async().await, Ok(1));
    /// assert_eq!(task.recv_async().await, Err(RecvError)); // ended, nothing left
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_async(&self) -> Result<Ev, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event, as [`recv_async`](Task::recv_async) does;
    /// for hand-written futures and streams.
    ///
    /// On `Pending`, the waker of `cx` is woken when an event arrives or the
    /// task ends.
    ///
    /// # Errors
    ///
    /// As [`recv_async`](Task::recv_async).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use sidetask::{Ctx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn(|ctx: &Ctx<(), &str>| ctx.emit("hi").map_err(Stopped::from));
    /// assert_eq!(poll_fn(|cx| task.poll_recv(cx)).await, Ok("hi"));
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Ev, RecvError>> {
        let got = self.shared.mailbox.poll_pop_out(cx);
        match got {
            Poll::Pending => self.shared.hurry(Side::Handle),
            Poll::Ready(Ok(_)) => self.shared.received(),
            Poll::Ready(Err(_)) => {}
        }
        got.map_err(|_| RecvError)
    }

    /// Waits at most `timeout` for the next event.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none came in time,
    /// [`RecvTimeoutError::Disconnected`] once the task has ended and every
    /// event has been received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv_async`](Task::recv_async).
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{Command, RecvTimeoutError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cat = Command::new("cat").spawn()?;
    /// let quiet = cat.recv_timeout_async(Duration::from_millis(5)).await;
    /// assert_eq!(quiet, Err(RecvTimeoutError::Timeout));
    /// cat.send_async("meow".to_string()).await?;
    /// assert_eq!(cat.recv_timeout_async(Duration::from_secs(60)).await?, "meow");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn recv_timeout_async(&self, timeout: Duration) -> Result<Ev, RecvTimeoutError> {
        let mut sleep = pin!(tokio::time::sleep(timeout));
        poll_fn(|cx| {
            if let Poll::Ready(got) = self.poll_recv(cx) {
                return Poll::Ready(got.map_err(|RecvError| RecvTimeoutError::Disconnected));
            }
            sleep
                .as_mut()
                .poll(cx)
                .map(|()| Err(RecvTimeoutError::Timeout))
        })
        .await
    }
}

/// `task.await` waits for the task to end and returns its outcome, as
/// [`Task::join_async`].
impl<T, E, In, Ev> IntoFuture for Task<T, E, In, Ev> {
    type Output = Outcome<T, E>;
    type IntoFuture = Join<T, E, In, Ev>;

    fn into_future(self) -> Join<T, E, In, Ev> {
        self.join_async()
    }
}

/// The future of [`Task::join_async`] and of `task.await`: the task's
/// outcome.
///
/// It owns the handle: dropping it asks the task to stop.
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "futures do nothing unless polled"]
pub struct Join<T, E, In = (), Ev = ()> {
    task: Option<Task<T, E, In, Ev>>,
}

impl<T, E, In, Ev> Join<T, E, In, Ev> {
    /// The handle being joined: to stop or kill the task while awaiting it.
    ///
    /// # Panics
    ///
    /// If the future has completed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn_async(|_: AsyncCtx| async {
    ///     tokio::time::sleep(Duration::from_secs(3600)).await;
    ///     Ok::<_, Stopped>(())
    /// });
    /// let mut join = task.join_async();
    /// let outcome = tokio::select! {
    ///     outcome = &mut join => outcome,
    ///     _ = tokio::time::sleep(Duration::from_millis(10)) => {
    ///         join.task().kill(); // its sleep is not on the context: kill it
    ///         join.await
    ///     }
    /// };
    /// assert!(outcome.is_killed() || outcome.is_cancelled());
    /// # }
    /// ```
    pub fn task(&self) -> &Task<T, E, In, Ev> {
        self.task.as_ref().expect("`Join` polled after completion")
    }
}

impl<T, E, In, Ev> Future for Join<T, E, In, Ev> {
    type Output = Outcome<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T, E>> {
        let this = self.get_mut();
        let task = this.task.as_ref().expect("`Join` polled after completion");
        if !task.shared.is_started() {
            task.cancel_if_pending();
        }
        task.shared.hurry(Side::Handle);
        match task.shared.mailbox.poll_wait_for(DONE, cx) {
            Poll::Ready(()) => {
                let task = this.task.take().expect("checked above");
                Poll::Ready(task.take_outcome())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T, E, In, Ev> fmt::Debug for Join<T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join").field("task", &self.task).finish()
    }
}

/// The future of [`Task::send_async`]: it holds the message until the inbox
/// takes it.
///
/// It is `Unpin`, so it can be polled through `&mut` (in `tokio::select!`,
/// say) and then asked for its message back with
/// [`into_message`](SendFuture::into_message).
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T, E, In, Ev> {
    task: &'a Task<T, E, In, Ev>,
    message: Option<In>,
}

// The message is moved in and out, never pinned.
impl<T, E, In, Ev> Unpin for SendFuture<'_, T, E, In, Ev> {}

impl<T, E, In, Ev> SendFuture<'_, T, E, In, Ev> {
    /// The message, if it has not been delivered (or given back in an
    /// error) yet.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{Builder, Ctx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Built, not started: the inbox fills up and stays full.
    /// let task = Builder::new().inbox_capacity(1).build(|_: &Ctx<u8>| Ok::<_, Stopped>(()));
    /// task.send_async(1).await?;
    /// let mut send = task.send_async(2);
    /// let timed_out = tokio::time::timeout(Duration::from_millis(10), &mut send).await;
    /// assert!(timed_out.is_err());
    /// assert_eq!(send.into_message(), Some(2)); // not delivered: it comes back
    /// task.stop();
    /// assert_eq!(task.take_unread(), Some(vec![1]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_message(self) -> Option<In> {
        self.message
    }
}

impl<T, E, In, Ev> Future for SendFuture<'_, T, E, In, Ev> {
    type Output = Result<(), SendError<In>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let message = this
            .message
            .take()
            .expect("`SendFuture` polled after completion");
        match this.task.shared.admit(message) {
            Ok(message) => this.message = Some(message),
            Err(message) => return Poll::Ready(Err(SendError::TooLarge(message))),
        }
        this.task
            .shared
            .mailbox
            .poll_push_in(&mut this.message, cx)
            .map_ok(|()| this.task.shared.sent())
            .map_err(|e| match e {
                PushError::Full(m) | PushError::Closed(m) | PushError::Stopped(m) => {
                    SendError::Disconnected(m)
                }
            })
    }
}

impl<T, E, In, Ev> fmt::Debug for SendFuture<'_, T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendFuture")
            .field("task", &self.task.id())
            .field("pending", &self.message.is_some())
            .finish()
    }
}
