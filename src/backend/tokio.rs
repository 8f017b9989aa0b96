//! The tokio place: an async task body as a tokio task.
//!
//! The body's future runs inside a wrapper future spawned on a tokio
//! runtime. The wrapper
//!
//! 1. ends the task as cancelled, without calling the body, if a stop came
//!    before its first poll (as a thread task that had not begun);
//! 2. polls the body, catching a panic together with where it happened;
//! 3. checks the kill flag before each poll of the body and, when the body is
//!    pending, registers its waker for the kill too, so that a kill wakes it
//!    whatever the body awaits; a kill drops the body at once and ends the
//!    task as killed;
//! 4. records the outcome through the same path as a thread task.
//!
//! A guard owned by the wrapper records an outcome if the wrapper itself is
//! dropped before the body ended (its runtime shut down): killed if the body
//! had begun, cancelled if not. So a join never waits for a task that can no
//! longer end.
//!
//! On a current-thread runtime, only the thread inside the runtime's
//! `block_on` runs the wrapper: a blocking wait for the task on that thread
//! would never end. So every async task gets a hang check: a blocking wait
//! with no timeout panics when the waiting thread drives a current-thread
//! runtime now, as tokio's own `block_on` panics inside a runtime. The
//! check runs only where a wait would block; the spawn pays one field's
//! write for it.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::async_ctx::AsyncCtx;
use crate::builder::Builder;
use crate::error::StartError;
use crate::mailbox::{KILL, Mailbox, STOP};
use crate::outcome::{self, Killed, Outcome};
use crate::task::{Settings, Shared, Slot, Task};

type TypedShared<T, E, In, Ev> = Arc<Shared<In, Ev, Slot<T, E>>>;

/// Records an outcome when dropped, unless one was recorded: killed if the
/// body had begun, cancelled if not.
struct Guard<T, E, In, Ev> {
    shared: TypedShared<T, E, In, Ev>,
    begun: bool,
    done: bool,
}

impl<T, E, In, Ev> Drop for Guard<T, E, In, Ev> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.finish(if self.begun {
                Outcome::Killed(Killed::new(None, Vec::new()))
            } else {
                Outcome::Cancelled
            });
        }
    }
}

/// Makes an async task and spawns its body on the runtime of `on`, or on
/// the current runtime (which the caller made sure exists).
fn spawn<F, Fut, T, E, In, Ev>(
    settings: Settings,
    on: Option<&Handle>,
    body: F,
) -> Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    F: FnOnce(AsyncCtx<In, Ev>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let mut shared = settings.shared::<In, Ev, T, E>();
    shared.set_hang_check(drives_a_current_thread_runtime);
    let shared = Arc::new(shared);
    let ctx = AsyncCtx::new(shared.clone());
    let guard = Guard {
        shared: Arc::clone(&shared),
        begun: false,
        done: false,
    };
    let task = Task::started(shared, settings.timeout, false);
    // Boxed: a small task cell is cheaper to allocate than one holding the
    // whole wrapper. The wrapper records the outcome itself; the join handle
    // is not needed.
    let wrapper = Box::pin(run(guard, ctx, body));
    drop(match on {
        Some(handle) => handle.spawn(wrapper),
        None => tokio::spawn(wrapper),
    });
    task
}

/// Whether this thread drives a current-thread runtime now (it is inside
/// its `block_on`, holding its scheduler), so that no task of that runtime
/// can run while this thread waits.
fn drives_a_current_thread_runtime() -> bool {
    tokio::runtime::worker_index() == Some(0)
        && Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

/// Whether this thread is in a tokio runtime's context, so that
/// `tokio::spawn` works.
fn in_runtime() -> bool {
    // Inside a task (the common case) this reads a thread-local; asking
    // for the current handle clones a reference shared by every worker.
    tokio::task::try_id().is_some() || Handle::try_current().is_ok()
}

async fn run<T, E, In, Ev, F, Fut>(mut guard: Guard<T, E, In, Ev>, ctx: AsyncCtx<In, Ev>, body: F)
where
    F: FnOnce(AsyncCtx<In, Ev>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let Guard {
        shared,
        begun,
        done,
    } = &mut guard;
    let shared = &**shared;
    let mailbox = &shared.mailbox;
    let span = tracing::debug_span!(
        "task",
        id = shared.id.as_u64(),
        name = shared.name.as_deref()
    );
    let mut start = Some((body, ctx));
    // The body's future, made at the first poll.
    let mut future = pin!(None);
    // Records the outcome. The body's future (and the context in it) goes
    // first, as a thread body's context is dropped before its outcome is
    // recorded; a finished body's went in the poll that finished it.
    let mut end = |mut future: Pin<&mut Option<Fut>>, outcome: Outcome<T, E>| {
        if future.is_some() {
            // Killed, or panicked: its drops may panic too.
            let _ = outcome::catch(|| future.set(None));
        }
        *done = true;
        shared.finish(outcome);
        Poll::Ready(())
    };
    poll_fn(|cx| {
        let _entered = span.enter();
        if start.is_some() && mailbox.is(STOP) {
            // Stopped before it began: the body is never called.
            let _ = outcome::catch(|| drop(start.take()));
            return end(future.as_mut(), Outcome::Cancelled);
        }
        let killed = || Outcome::Killed(Killed::new(None, Vec::new()));
        if mailbox.is(KILL) {
            return end(future.as_mut(), killed());
        }
        Mailbox::<In, Ev>::clear_registered();
        // One catch around making the future, polling it, and dropping it
        // once it is done (a panicking drop is the body's panic).
        let polled = outcome::catch(|| {
            if let Some((body, ctx)) = start.take() {
                tracing::debug!("task started");
                *begun = true;
                future.set(Some(body(ctx)));
            }
            let polled = future
                .as_mut()
                .as_pin_mut()
                .expect("the body is polled until it ends")
                .poll(cx);
            if polled.is_ready() {
                future.set(None);
            }
            polled
        });
        match polled {
            Ok(Poll::Ready(Ok(value))) => end(future.as_mut(), Outcome::Value(value)),
            Ok(Poll::Ready(Err(error))) => end(future.as_mut(), Outcome::Error(error)),
            Err(panic) => end(future.as_mut(), Outcome::Panicked(panic)),
            // A body waiting on its own context left the task's waker in
            // the mailbox, which a kill wakes too; otherwise the wrapper
            // leaves one, so that a kill wakes it whatever the body awaits.
            Ok(Poll::Pending) if mailbox.registered_here() => Poll::Pending,
            Ok(Poll::Pending) => match mailbox.poll_wait_for(KILL, cx) {
                Poll::Ready(()) => end(future.as_mut(), killed()),
                Poll::Pending => Poll::Pending,
            },
        }
    })
    .await;
    // With the handle gone, the last reference's drop runs the drops of the
    // value, the error and unread messages; should one panic, tokio catches
    // it as the wrapper's own panic, after the outcome was recorded.
}

impl Builder {
    /// Makes an async task and spawns it on the current tokio runtime.
    ///
    /// The body is called with the task's [`AsyncCtx`] and returns the
    /// future to run; it resolves to `Ok(value)` or the task's own
    /// `Err(error)`. The body's future runs as a tokio task; the handle is
    /// the same [`Task`] as a thread task's, with blocking and awaitable
    /// methods alike.
    ///
    /// A stop before the body's first poll cancels it (its outcome is
    /// [`Outcome::Cancelled`]); [`Task::kill`] drops the body's future at its
    /// next await and ends the task as [`Outcome::Killed`]. If the runtime
    /// shuts down before the body ends, the task ends as killed (or
    /// cancelled, if its body had not begun).
    ///
    /// # Errors
    ///
    /// [`StartError::is_no_runtime`] if called outside a tokio runtime;
    /// [`spawn_async_on`](Builder::spawn_async_on) takes a runtime's handle.
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
    ///     .name("ticker")
    ///     .timeout(Duration::from_millis(20))
    ///     .spawn_async(|ctx: AsyncCtx<(), u32>| async move {
    ///         let mut ticks = 0;
    ///         while ctx.sleep(Duration::from_millis(1)).await.is_ok() {
    ///             ticks += 1;
    ///         }
    ///         Ok::<_, Stopped>(ticks)
    ///     })?;
    /// assert!(task.await.value().unwrap() > 0); // the timeout asked it to stop
    ///
    /// // Outside a runtime there is nowhere to run.
    /// let outside = std::thread::spawn(|| {
    ///     Builder::new().spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(()) }).unwrap_err()
    /// });
    /// assert!(outside.join().unwrap().is_no_runtime());
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn spawn_async<F, Fut, T, E, In, Ev>(
        self,
        body: F,
    ) -> Result<Task<T, E, In, Ev>, StartError>
    where
        F: FnOnce(AsyncCtx<In, Ev>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        if !in_runtime() {
            return Err(StartError::no_runtime());
        }
        Ok(spawn(self.settings(), None, body))
    }

    /// Makes an async task and spawns it on the runtime of `handle`, as
    /// [`spawn_async`](Builder::spawn_async) does on the current one. Works
    /// from any thread, inside a runtime or not.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{AsyncCtx, Builder, Stopped};
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let task = Builder::new().spawn_async_on(runtime.handle(), |ctx: AsyncCtx<u8>| async move {
    ///     ctx.recv().await.map_err(Stopped::from)
    /// });
    /// task.send(7)?; // the blocking methods work from a plain thread
    /// assert_eq!(task.join().value(), Some(7));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub fn spawn_async_on<F, Fut, T, E, In, Ev>(
        self,
        handle: &Handle,
        body: F,
    ) -> Task<T, E, In, Ev>
    where
        F: FnOnce(AsyncCtx<In, Ev>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        spawn(self.settings(), Some(handle), body)
    }
}

/// Spawns an async task on the current tokio runtime with the default
/// options and returns its handle.
///
/// The body receives the task's [`AsyncCtx`] and returns a future that
/// resolves to `Ok(value)` or the task's own `Err(error)`. The handle is
/// the same [`Task`] as for a thread task: `task.await` (or
/// [`join_async`](Task::join_async)) collects the outcome, and the blocking
/// [`join`](Task::join) works from a plain thread.
///
/// # Panics
///
/// If called outside a tokio runtime (as `tokio::spawn` does), at the
/// caller's line; [`Builder::spawn_async`] returns the error instead, and
/// [`Builder::spawn_async_on`] takes a runtime's handle.
///
/// # Examples
///
/// ```
/// use sidetask::{AsyncCtx, Stopped};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let task = sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(6 * 7) });
/// assert_eq!(task.await.value(), Some(42));
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[track_caller]
pub fn spawn_async<F, Fut, T, E, In, Ev>(body: F) -> Task<T, E, In, Ev>
where
    F: FnOnce(AsyncCtx<In, Ev>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    Builder::new().spawn_async(body).expect(
        "`sidetask::spawn_async` was called outside a tokio runtime: call it from async code \
             under `#[tokio::main]` (or a runtime's `block_on`), or use \
             `Builder::spawn_async_on` with a runtime's handle",
    )
}
