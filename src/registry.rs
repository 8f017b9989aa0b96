//! Named task types, the registry of them, and the entry hook.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::process::{self, Entry};
use crate::ctx::Ctx;

/// A task type that can run in another process: a stable name, and serde
/// types for its argument, its messages in, its events out, its value and
/// its error.
///
/// A process task cannot be a closure: the child process finds the task by
/// its [`NAME`](NamedTask::NAME) in the [`Registry`] given to [`init`], and
/// only registered names ever run. Keep the name stable across versions of
/// the program, and unique in it.
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, NamedTask, Stopped};
///
/// /// Squares each number it receives, until stopped or its inbox closes.
/// struct Squarer;
///
/// impl NamedTask for Squarer {
///     const NAME: &'static str = "squarer";
///     type Arg = u64; // an offset added to each square
///     type In = u64;
///     type Event = u64;
///     type Value = u64; // how many it squared
///     type Error = Stopped;
///
///     fn run(ctx: &Ctx<u64, u64>, offset: u64) -> Result<u64, Stopped> {
///         let mut count = 0;
///         while let Ok(n) = ctx.recv() {
///             ctx.emit(n * n + offset)?;
///             count += 1;
///         }
///         Ok(count)
///     }
/// }
/// ```
pub trait NamedTask: 'static {
    /// The task's name, unique in the program and stable across its
    /// versions.
    const NAME: &'static str;
    /// What the task is started with.
    type Arg: Serialize + DeserializeOwned + Send + 'static;
    /// The messages it receives.
    type In: Serialize + DeserializeOwned + Send + 'static;
    /// The events it emits.
    type Event: Serialize + DeserializeOwned + Send + 'static;
    /// What it returns on success.
    type Value: Serialize + DeserializeOwned + Send + 'static;
    /// Its own error.
    type Error: Serialize + DeserializeOwned + Send + 'static;

    /// The task's body, run in the child process.
    fn run(ctx: &Ctx<Self::In, Self::Event>, arg: Self::Arg) -> Result<Self::Value, Self::Error>;
}

/// The named task types a program can run in a child process.
///
/// Build it with [`with`](Registry::with) and hand it to [`init`] first
/// thing in `main` (and to [`test_support!`](crate::test_support) in a test
/// binary).
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, NamedTask, Registry, Stopped};
///
/// struct Nothing;
/// impl NamedTask for Nothing {
///     const NAME: &'static str = "nothing";
///     type Arg = ();
///     type In = ();
///     type Event = ();
///     type Value = ();
///     type Error = Stopped;
///     fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
///         Ok(())
///     }
/// }
///
/// let registry = Registry::new().with::<Nothing>()?;
/// assert!(registry.contains("nothing"));
/// // The same name twice is an error.
/// let err = registry.with::<Nothing>().unwrap_err();
/// assert_eq!(err.name(), "nothing");
/// # Ok::<(), sidetask::RegistryError>(())
/// ```
#[derive(Default)]
pub struct Registry {
    entries: HashMap<&'static str, Entry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds the task type `T`.
    ///
    /// # Errors
    ///
    /// If a task of the same name is registered already.
    pub fn with<T: NamedTask>(mut self) -> Result<Registry, RegistryError> {
        self.register::<T>()?;
        Ok(self)
    }

    /// Adds the task type `T`, in place.
    ///
    /// # Errors
    ///
    /// If a task of the same name is registered already.
    pub fn register<T: NamedTask>(&mut self) -> Result<&mut Registry, RegistryError> {
        if self.entries.contains_key(T::NAME) {
            return Err(RegistryError { name: T::NAME });
        }
        self.entries.insert(T::NAME, process::entry::<T>());
        Ok(self)
    }

    /// Whether a task of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The registered names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

/// A task name was registered twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    name: &'static str,
}

impl RegistryError {
    /// The name registered twice.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a task named `{}` is registered already", self.name)
    }
}

impl Error for RegistryError {}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The entry hook: call it first thing in `main`.
///
/// In a child process started for a process task, it runs the task and
/// exits the process; it never returns there. In any other process it
/// keeps the registry (the first one given; later calls are ignored) and
/// returns: process tasks can then be spawned.
///
/// Nothing of the program before this call should have side effects: the
/// child runs it too, before it finds out it is a child. Parse arguments,
/// open files and start threads after it.
///
/// For `cargo test` (and `cargo nextest`) binaries, whose `main` is the test
/// harness's, use [`test_support!`](crate::test_support) instead, and call
/// `init` in each test before spawning.
///
/// # Examples
///
/// ```standalone_crate
/// use sidetask::{Ctx, NamedTask, Process, Registry, Stopped};
///
/// struct Hello;
/// impl NamedTask for Hello {
///     const NAME: &'static str = "hello";
///     type Arg = String;
///     type In = ();
///     type Event = ();
///     type Value = String;
///     type Error = Stopped;
///     fn run(_: &Ctx, name: String) -> Result<String, Stopped> {
///         Ok(format!("hello, {name}, from process {}", std::process::id()))
///     }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     sidetask::init(Registry::new().with::<Hello>()?);
///     let task = Process::<Hello>::new("world".into()).spawn()?;
///     println!("{}", task.join().unwrap());
///     Ok(())
/// }
/// ```
pub fn init(registry: Registry) {
    // Kept in the child too, so that its task can start process tasks.
    let _ = REGISTRY.set(registry);
    if let Some(registry) = REGISTRY.get() {
        process::enter_if_child(registry);
    }
}

/// The registry given to [`init`] in this process, if any.
pub(crate) fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

/// Makes a `cargo test` or `cargo nextest` binary able to run process
/// tasks: the child process re-executes the test binary and runs only the
/// hidden test this macro defines, which enters the task.
///
/// Put it once at the top level of each test file (each test binary) that
/// spawns process tasks, with an expression that makes the [`Registry`];
/// each test calls [`init`] with the same registry before spawning.
///
/// The child runs the test harness first, which prints a line or two
/// ("running 1 test") to its stdout; the task's own output follows.
///
/// # Examples
///
/// ```ignore
/// fn registry() -> sidetask::Registry {
///     sidetask::Registry::new().with::<Squarer>().unwrap()
/// }
///
/// sidetask::test_support!(registry());
///
/// #[test]
/// fn squares_in_a_child() {
///     sidetask::init(registry());
///     let task = sidetask::Process::<Squarer>::new(0).spawn().unwrap();
///     // …
/// }
/// ```
#[macro_export]
macro_rules! test_support {
    ($registry:expr) => {
        #[test]
        fn __sidetask_child_entry() {
            $crate::init($registry);
        }
    };
}
