//! Named task types and the registry of them, shared by every place that
//! runs a task by its name; the registry names no place (see `erased`).

use std::any::{TypeId, type_name};
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ctx::Ctx;

mod erased;

#[cfg(feature = "redis")]
pub(crate) use erased::Prepared;
pub(crate) use erased::{Delivered, Ended, Entry, Full, Inlet, Line};

/// A task type that can run in another process: a stable name, and serde
/// types for its argument, its messages in, its events out, its value and
/// its error.
///
/// A process task cannot be a closure: the child process finds the task by
/// its [`NAME`](NamedTask::NAME) in the [`Registry`] given to [`init`](crate::init), and
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
/// Build it with [`with`](Registry::with) and hand it to [`init`](crate::init) first
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
/// // Another type that took the same name by mistake.
/// struct AlsoNothing;
/// impl NamedTask for AlsoNothing {
///     const NAME: &'static str = "nothing";
///     type Arg = u8;
///     type In = ();
///     type Event = ();
///     type Value = ();
///     type Error = Stopped;
///     fn run(_: &Ctx, _: u8) -> Result<(), Stopped> {
///         Ok(())
///     }
/// }
///
/// // The same type twice is harmless: it is there once.
/// let registry = Registry::new().with::<Nothing>()?.with::<Nothing>()?;
/// assert!(registry.contains("nothing"));
/// assert_eq!(registry.names().count(), 1);
/// // Two types under one name are an error that names both.
/// let err = registry.with::<AlsoNothing>().unwrap_err();
/// assert_eq!(err.name(), "nothing");
/// assert!(err.to_string().contains("AlsoNothing"), "{err}");
/// # Ok::<(), sidetask::RegistryError>(())
/// ```
#[derive(Default)]
pub struct Registry {
    entries: HashMap<&'static str, Registered>,
}

/// A registered task type: how a place runs it by name, and what it is.
struct Registered {
    entry: Entry,
    type_id: TypeId,
    type_name: &'static str,
    fingerprint: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds the task type `T`; adding it again changes nothing.
    ///
    /// # Errors
    ///
    /// If another type is registered under the same name.
    pub fn with<T: NamedTask>(mut self) -> Result<Registry, RegistryError> {
        self.register::<T>()?;
        Ok(self)
    }

    /// Adds the task type `T`, in place; adding it again changes nothing.
    ///
    /// # Errors
    ///
    /// If another type is registered under the same name.
    pub fn register<T: NamedTask>(&mut self) -> Result<&mut Registry, RegistryError> {
        match self.entries.get(T::NAME) {
            Some(known) if known.type_id == TypeId::of::<T>() => return Ok(self),
            Some(known) => {
                return Err(RegistryError {
                    name: T::NAME,
                    registered: known.type_name,
                    refused: type_name::<T>(),
                });
            }
            None => {}
        }
        self.entries.insert(
            T::NAME,
            Registered {
                entry: Entry::of::<T>(),
                type_id: TypeId::of::<T>(),
                type_name: type_name::<T>(),
                fingerprint: fingerprint::<T>(),
            },
        );
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

    pub(crate) fn get(&self, name: &str) -> Option<Entry> {
        self.entries.get(name).map(|known| known.entry)
    }

    /// The [`fingerprint`] of the task type registered under `name`.
    pub(crate) fn fingerprint(&self, name: &str) -> Option<u64> {
        self.entries.get(name).map(|known| known.fingerprint)
    }

    /// Whether both registries hold the same names for the same types.
    fn same_tasks(&self, other: &Registry) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|(name, known)| other.fingerprint(name) == Some(known.fingerprint))
    }
}

/// A fingerprint of the task type `T`: its name and the type names of its
/// argument, messages, events, value and error, hashed with 64-bit FNV-1a.
///
/// A parent and its child (or, later, a client and a worker) compare it to
/// find a task whose name is known on both sides but whose types differ:
/// code built from different sources. The hash is written out here rather
/// than taken from `std`, whose `DefaultHasher` may change between Rust
/// releases. [`type_name`] itself is not promised to be stable across
/// compilers either: two programs built by different compilers may differ
/// even from the same source, which is refused as well, safely.
pub(crate) fn fingerprint<T: NamedTask>() -> u64 {
    let parts = [
        T::NAME,
        type_name::<T::Arg>(),
        type_name::<T::In>(),
        type_name::<T::Event>(),
        type_name::<T::Value>(),
        type_name::<T::Error>(),
    ];
    // 0xff never occurs in UTF-8: it ends each part unambiguously.
    fnv1a(
        parts
            .iter()
            .flat_map(|part| part.bytes().chain(std::iter::once(0xff))),
    )
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.entries.keys()).finish()
    }
}

/// Two different task types have the same name: the error of
/// [`Registry::with`] and [`Registry::register`].
///
/// Its message names both Rust types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    name: &'static str,
    registered: &'static str,
    refused: &'static str,
}

impl RegistryError {
    /// The name both types have.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "two task types are named `{}`: `{}`, registered first, and `{}`",
            self.name, self.registered, self.refused
        )
    }
}

impl Error for RegistryError {}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Keeps `registry` as this process's, unless one is kept already (a
/// registry with other task types is then refused, with a warning); returns
/// the one kept.
pub(crate) fn install(registry: Registry) -> &'static Registry {
    if let Err(refused) = REGISTRY.set(registry)
        && let Some(kept) = REGISTRY.get()
        && !kept.same_tasks(&refused)
    {
        tracing::warn!(
            ?kept,
            ?refused,
            "`sidetask::init` was called again with other task types; the first registry is kept"
        );
    }
    REGISTRY.get().expect("set above or before")
}

/// The registry given to [`init`](crate::init) in this process, if any.
pub(crate) fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Stopped;

    /// A task type whose name does not depend on its argument type `A`.
    struct Named<A>(std::marker::PhantomData<A>);

    impl<A> NamedTask for Named<A>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        const NAME: &'static str = "same name";
        type Arg = A;
        type In = ();
        type Event = ();
        type Value = ();
        type Error = Stopped;

        fn run(_: &Ctx, _: A) -> Result<(), Stopped> {
            Ok(())
        }
    }

    #[test]
    fn fnv1a_gives_the_published_values() {
        assert_eq!(fnv1a([]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_name_with_another_argument_type_has_another_fingerprint() {
        let a = fingerprint::<Named<u32>>();
        let b = fingerprint::<Named<String>>();
        assert_ne!(a, b);
        assert_eq!(
            a,
            fingerprint::<Named<u32>>(),
            "the same type, the same print"
        );
        let registry = Registry::new().with::<Named<u32>>().unwrap();
        assert_eq!(registry.fingerprint("same name"), Some(a));
        assert_eq!(registry.fingerprint("another name"), None);
    }

    #[test]
    fn two_types_under_one_name_are_refused_and_named() {
        let mut registry = Registry::new();
        registry.register::<Named<u32>>().unwrap();
        registry.register::<Named<u32>>().unwrap();
        assert_eq!(registry.names().count(), 1);
        let err = registry.register::<Named<String>>().unwrap_err();
        let text = err.to_string();
        assert!(text.contains(type_name::<Named<u32>>()), "{text}");
        assert!(text.contains(type_name::<Named<String>>()), "{text}");
        assert_eq!(
            registry.fingerprint("same name"),
            Some(fingerprint::<Named<u32>>())
        );
    }

    #[test]
    fn same_tasks_compares_names_and_types() {
        let a = Registry::new().with::<Named<u32>>().unwrap();
        assert!(a.same_tasks(&Registry::new().with::<Named<u32>>().unwrap()));
        assert!(!a.same_tasks(&Registry::new().with::<Named<String>>().unwrap()));
        assert!(!a.same_tasks(&Registry::new()));
    }

    #[test]
    fn spawning_before_init_says_so_and_not_that_a_child_refused() {
        // No unit test of this crate calls `init`.
        let err = crate::Process::<Named<u32>>::new(1).spawn().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sidetask::init` was not called"), "{text}");
        assert!(!text.contains("child"), "{text}");
        assert!(err.handshake_error().is_some());
    }
}
