//! The async task's side of the handle.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{
    CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError, Stopped, TryEmitError,
};
use crate::mailbox::{Mailbox, PopError, PushError, STOP, Wait};
use crate::task::{Shared, TaskId};

/// The async task's side of its handle: the stop flag, the inbox and the
/// outbox, with awaitable calls.
///
/// An async task body (see [`spawn_async`](crate::spawn_async)) receives an
/// `AsyncCtx<In, Ev>` by value: `In` is the type of the messages the handle
/// sends in, `Ev` the type of the events the task emits. It is cheap to
/// clone, so parts of the body running elsewhere can share it. Once the
/// body's future has completed, the task has ended: a clone's emit then
/// gives its event back ([`EmitError::Disconnected`]), so that no event
/// comes after the handle heard the end.
///
/// Every awaitable call here ([`recv`](AsyncCtx::recv),
/// [`recv_timeout`](AsyncCtx::recv_timeout), [`sleep`](AsyncCtx::sleep),
/// [`stop_requested`](AsyncCtx::stop_requested), and [`emit`](AsyncCtx::emit)
/// on a full outbox) completes as soon as the task is asked to stop: nothing
/// polls. [`Task::kill`](crate::Task::kill) goes further and drops the body
/// at its next await, whatever it awaits.
///
/// # Cancel safety
///
/// Each method says whether it is cancel safe, as tokio's documentation
/// does: whether dropping its future before it completes (a losing branch of
/// `tokio::select!`, a timeout) can lose anything. Every method here is
/// cancel safe except that a dropped [`emit`](AsyncCtx::emit) future drops
/// the event it still holds (it never half-delivers it, and
/// [`EmitFuture::into_event`] takes it back).
///
/// # Examples
///
/// ```
/// use sidetask::{AsyncCtx, Stopped};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let task = sidetask::spawn_async(|ctx: AsyncCtx<u32, u32>| async move {
///     let mut sum = 0;
///     while let Ok(n) = ctx.recv().await {
///         sum += n;
///         ctx.emit(sum).await.ok();
///     }
///     Ok::<_, Stopped>(sum)
/// });
/// task.send_async(2).await?;
/// task.send_async(3).await?;
/// assert_eq!(task.recv_async().await?, 2);
/// assert_eq!(task.recv_async().await?, 5);
/// task.stop();
/// assert_eq!(task.await.value(), Some(5));
/// # Ok(())
/// # }
/// ```
pub struct AsyncCtx<In = (), Ev = ()> {
    shared: Arc<Shared<In, Ev>>,
}

impl<In, Ev> Clone for AsyncCtx<In, Ev> {
    fn clone(&self) -> Self {
        AsyncCtx {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<In: Send, Ev: Send> AsyncCtx<In, Ev> {
    pub(crate) fn new(shared: Arc<Shared<In, Ev>>) -> Self {
        AsyncCtx { shared }
    }

    fn mailbox(&self) -> &Mailbox<In, Ev> {
        &self.shared.mailbox
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
    /// builder's timeout). Never waits.
    pub fn stopped(&self) -> bool {
        self.mailbox().is(STOP)
    }

    /// Returns `Err(Stopped)` once the task has been asked to stop, so that a
    /// body can leave early with `?`.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the task has been asked to stop.
    pub fn checkpoint(&self) -> Result<(), Stopped> {
        if self.stopped() { Err(Stopped) } else { Ok(()) }
    }

    /// Completes when the task is asked to stop (at once if it was already).
    ///
    /// Made for `tokio::select!`: race the body's own work against a stop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches a flag.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx<(), &str>| async move {
    ///     ctx.emit("working").await.ok();
    ///     tokio::select! {
    ///         _ = ctx.stop_requested() => Err(Stopped),
    ///         _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok("slept"),
    ///     }
    /// });
    /// assert_eq!(task.recv_async().await?, "working");
    /// task.stop();
    /// assert_eq!(task.await.error(), Some(Stopped));
    /// # Ok(())
    /// # }
    /// ```
    pub fn stop_requested(&self) -> impl Future<Output = ()> + Send + '_ {
        poll_fn(move |cx| self.mailbox().poll_wait_for(STOP, cx))
    }

    /// Sleeps for `duration`, waking at once if the task is asked to stop.
    ///
    /// # Errors
    ///
    /// [`Stopped`] if the task was asked to stop before or during the sleep.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use sidetask::{AsyncCtx, Stopped};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx<(), ()>| async move {
    ///     ctx.sleep(Duration::from_millis(1)).await?; // a short nap
    ///     ctx.emit(()).await.ok();
    ///     ctx.sleep(Duration::from_secs(3600)).await // woken by the stop
    /// });
    /// task.recv_async().await?;
    /// let asked = Instant::now();
    /// task.stop();
    /// assert_eq!(task.await.error(), Some(Stopped));
    /// assert!(asked.elapsed() < Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sleep(&self, duration: Duration) -> Result<(), Stopped> {
        let mut sleep = pin!(tokio::time::sleep(duration));
        poll_fn(|cx| {
            if self.mailbox().poll_wait_for(STOP, cx).is_ready() {
                return Poll::Ready(Err(Stopped));
            }
            sleep.as_mut().poll(cx).map(Ok)
        })
        .await
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
    /// waiting); [`CtxRecvError::Disconnected`] when the handle is gone (or
    /// closed the inbox) and the inbox is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message leaves the inbox only in the poll that returns
    /// it, so a dropped `recv` future loses nothing; the next `recv` gets
    /// the message.
    pub async fn recv(&self) -> Result<In, CtxRecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message, as [`recv`](AsyncCtx::recv) does; for
    /// hand-written futures and streams.
    ///
    /// On `Pending`, the waker of `cx` is woken when a message arrives, the
    /// task is asked to stop, or the inbox is closed.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncCtx::recv).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<In, CtxRecvError>> {
        self.mailbox().poll_pop_in(cx).map_err(|e| match e {
            PopError::Stopped => CtxRecvError::Stopped,
            _ => CtxRecvError::Disconnected,
        })
    }

    /// Waits at most `timeout` for the next message from the handle.
    ///
    /// # Errors
    ///
    /// [`CtxRecvTimeoutError::Timeout`] if none came in time, and otherwise
    /// as [`recv`](AsyncCtx::recv).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](AsyncCtx::recv).
    ///
    /// # Panics
    ///
    /// If polled outside a tokio runtime with its time driver enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidetask::{AsyncCtx, CtxRecvTimeoutError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let task = sidetask::spawn_async(|ctx: AsyncCtx<u8>| async move {
    ///     ctx.recv_timeout(Duration::from_millis(5)).await
    /// });
    /// assert_eq!(task.await.error(), Some(CtxRecvTimeoutError::Timeout));
    /// # }
    /// ```
    pub async fn recv_timeout(&self, timeout: Duration) -> Result<In, CtxRecvTimeoutError> {
        let mut sleep = pin!(tokio::time::sleep(timeout));
        poll_fn(|cx| {
            if let Poll::Ready(got) = self.mailbox().poll_pop_in(cx) {
                return Poll::Ready(got.map_err(|e| match e {
                    PopError::Stopped => CtxRecvTimeoutError::Stopped,
                    _ => CtxRecvTimeoutError::Disconnected,
                }));
            }
            sleep
                .as_mut()
                .poll(cx)
                .map(|()| Err(CtxRecvTimeoutError::Timeout))
        })
        .await
    }

    /// Takes the next message if one is waiting. Never waits.
    ///
    /// # Errors
    ///
    /// [`CtxTryRecvError::Empty`] if none is waiting, and otherwise as
    /// [`recv`](AsyncCtx::recv).
    pub fn try_recv(&self) -> Result<In, CtxTryRecvError> {
        self.mailbox().pop_in(Wait::No).map_err(|e| match e {
            PopError::Empty => CtxTryRecvError::Empty,
            PopError::Stopped => CtxTryRecvError::Stopped,
            PopError::Disconnected => CtxTryRecvError::Disconnected,
        })
    }

    /// Emits an event to the handle, waiting while the outbox is full.
    ///
    /// Emitting still works after a stop request (a last progress report,
    /// say); only the wait on a full outbox is cut short by it.
    ///
    /// # Errors
    ///
    /// [`EmitError::Disconnected`] if nobody can ever read the event: the
    /// handle was dropped or detached, or the task has ended (a clone of
    /// this context still in use after the body's future completed; its
    /// wait on a full outbox ends then too); [`EmitError::Stopped`] if the
    /// outbox was full and the task was asked to stop while waiting. The
    /// event is given back either way.
    ///
    /// # Cancel safety
    ///
    /// The event is either in the outbox or still in the future, never in
    /// between: a future dropped before it completed did not deliver its
    /// event (and drops it). To keep the event, hold the future (it is
    /// `Unpin`) and take the event back with [`EmitFuture::into_event`].
    pub fn emit(&self, event: Ev) -> EmitFuture<'_, In, Ev> {
        EmitFuture {
            ctx: self,
            event: Some(event),
        }
    }

    /// Emits an event if the outbox has room. Never waits.
    ///
    /// # Errors
    ///
    /// [`TryEmitError::Full`] if the outbox is full;
    /// [`TryEmitError::Disconnected`] if nobody can ever read the event (the
    /// handle was dropped or detached, or the task has ended).
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{AsyncCtx, Builder, Stopped, TryEmitError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let task = Builder::new()
    ///     .outbox_capacity(1)
    ///     .spawn_async(|ctx: AsyncCtx<(), u8>| async move {
    ///         let first = ctx.try_emit(1);
    ///         let second = ctx.try_emit(2);
    ///         Ok::<_, Stopped>(first.is_ok() && matches!(second, Err(TryEmitError::Full(2))))
    ///     })?;
    /// assert_eq!(task.recv_async().await?, 1);
    /// assert_eq!(task.await.value(), Some(true));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_emit(&self, event: Ev) -> Result<(), TryEmitError<Ev>> {
        self.mailbox()
            .push_out(event, Wait::No)
            .map_err(|e| match e {
                PushError::Closed(e) => TryEmitError::Disconnected(e),
                PushError::Stopped(e) | PushError::Full(e) => TryEmitError::Full(e),
            })
    }
}

impl<In: Send, Ev: Send> fmt::Debug for AsyncCtx<In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncCtx")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("stopped", &self.stopped())
            .finish_non_exhaustive()
    }
}

/// The future of [`AsyncCtx::emit`]: it holds the event until the outbox
/// takes it.
///
/// It is `Unpin`, so it can be polled through `&mut` (in `tokio::select!`,
/// say) and then asked for its event back with
/// [`into_event`](EmitFuture::into_event).
#[must_use = "futures do nothing unless polled"]
pub struct EmitFuture<'a, In, Ev> {
    ctx: &'a AsyncCtx<In, Ev>,
    event: Option<Ev>,
}

// The event is moved in and out, never pinned.
impl<In, Ev> Unpin for EmitFuture<'_, In, Ev> {}

impl<In, Ev> EmitFuture<'_, In, Ev> {
    /// The event, if it has not been delivered (or given back in an error)
    /// yet.
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
    ///     .outbox_capacity(1)
    ///     .spawn_async(|ctx: AsyncCtx<(), u8>| async move {
    ///         ctx.emit(1).await?; // fills the outbox
    ///         let mut second = ctx.emit(2);
    ///         let timed_out =
    ///             tokio::time::timeout(Duration::from_millis(10), &mut second).await.is_err();
    ///         Ok::<_, Stopped>((timed_out, second.into_event()))
    ///     })?;
    /// assert_eq!(task.await.value(), Some((true, Some(2))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_event(self) -> Option<Ev> {
        self.event
    }
}

impl<In: Send, Ev: Send> Future for EmitFuture<'_, In, Ev> {
    type Output = Result<(), EmitError<Ev>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(this.event.is_some(), "`EmitFuture` polled after completion");
        this.ctx
            .mailbox()
            .poll_push_out(&mut this.event, cx)
            .map_err(|e| match e {
                PushError::Closed(e) => EmitError::Disconnected(e),
                PushError::Stopped(e) | PushError::Full(e) => EmitError::Stopped(e),
            })
    }
}

impl<In, Ev> fmt::Debug for EmitFuture<'_, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitFuture")
            .field("pending", &self.event.is_some())
            .finish_non_exhaustive()
    }
}
