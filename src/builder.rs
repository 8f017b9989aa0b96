//! Every option of a task, then spawn.

use std::time::Duration;

use crate::backend::thread as place;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::outcome::Outcome;
use crate::task::{Settings, Task};

/// The default capacity of a task's inbox and of its outbox.
pub const DEFAULT_CAPACITY: usize = 32;

/// Sets a task's options, then builds or spawns it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::{Builder, Ctx, Stopped};
///
/// let task = Builder::new()
///     .name("ticker")
///     .inbox_capacity(8)
///     .outbox_capacity(64)
///     .timeout(Duration::from_millis(20))
///     .spawn(|ctx: &Ctx<(), u32>| {
///         let mut ticks = 0;
///         while ctx.sleep(Duration::from_millis(1)).is_ok() {
///             ticks += 1;
///             ctx.try_emit(ticks).ok();
///         }
///         Ok::<_, Stopped>(ticks)
///     })?;
/// assert_eq!(task.name(), Some("ticker"));
/// assert!(task.join().value().unwrap() > 0); // the timeout asked it to stop
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` or `spawn`"]
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<String>,
    inbox: usize,
    outbox: usize,
    timeout: Option<Duration>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults: no name, inbox and outbox of
    /// [`DEFAULT_CAPACITY`], no timeout.
    pub fn new() -> Builder {
        Builder {
            name: None,
            inbox: DEFAULT_CAPACITY,
            outbox: DEFAULT_CAPACITY,
            timeout: None,
        }
    }

    /// Names the task. The name shows in [`Task::name`], [`Ctx::name`], the
    /// tracing span, and the kernel's name of the worker thread while the task
    /// runs on it (first 15 bytes, as `top` and debuggers show it).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// How many messages can wait in the task's inbox before
    /// [`Task::send`] waits. At least one: zero is taken as one.
    pub fn inbox_capacity(mut self, capacity: usize) -> Builder {
        self.inbox = capacity;
        self
    }

    /// How many events can wait in the task's outbox before [`Ctx::emit`]
    /// waits. At least one: zero is taken as one.
    pub fn outbox_capacity(mut self, capacity: usize) -> Builder {
        self.outbox = capacity;
        self
    }

    /// Asks the task to stop once `timeout` has passed since it started, as
    /// [`Task::stop`] would.
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = Some(timeout);
        self
    }

    /// Makes the task without starting it; [`Task::start`] starts it.
    /// Messages sent meanwhile wait in its inbox.
    pub fn build<F, T, E, In, Ev>(self, body: F) -> Task<T, E, In, Ev>
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        place::task(self.settings(), move |ctx: &Ctx<In, Ev>| match body(ctx) {
            Ok(value) => Outcome::Value(value),
            Err(error) => Outcome::Error(error),
        })
    }

    /// Makes the task and starts it.
    ///
    /// # Errors
    ///
    /// If no thread could be started to run the task (only when no cached
    /// worker is idle and the operating system refuses a new thread).
    pub fn spawn<F, T, E, In, Ev>(self, body: F) -> Result<Task<T, E, In, Ev>, StartError>
    where
        F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        let task = self.build(body);
        task.start()?;
        Ok(task)
    }
}

impl Builder {
    /// The options, for a place that makes its task elsewhere.
    pub(crate) fn settings(self) -> Settings {
        Settings {
            name: self.name,
            inbox: self.inbox,
            outbox: self.outbox,
            timeout: self.timeout,
        }
    }
}

/// Spawns a task with the default options and returns its handle.
///
/// The body receives the task's context, [`Ctx`], and returns `Ok(value)` or
/// its own `Err(error)`; [`Task::join`] tells which, or that it panicked.
///
/// # Panics
///
/// If no thread could be started to run the task; [`Builder::spawn`] returns
/// the error instead.
///
/// # Examples
///
/// ```
/// use sidetask::Ctx;
///
/// let task = sidetask::spawn(|_: &Ctx| Ok::<_, String>(6 * 7));
/// assert_eq!(task.join().value(), Some(42));
/// ```
pub fn spawn<F, T, E, In, Ev>(body: F) -> Task<T, E, In, Ev>
where
    F: FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    Builder::new()
        .spawn(body)
        .expect("failed to start a thread for the task")
}
