//! The entry hook, and its twin for test binaries.
//!
//! It belongs to no place and to no registry: it keeps the registry, then
//! lets each place that runs tasks by name find out whether this process
//! was started to run one.

use std::path::Path;

use crate::backend::{command, process};
use crate::named::{self, Registry};

/// The test that [`test_support!`](crate::test_support) defines.
const CHILD_TEST: &str = "__sidetask_child_entry";

/// `program` (this binary, or one built from the same crate) executed
/// again so that it enters [`init`] first: a test binary runs only the
/// hidden test that calls it (an ignored test whose name contains
/// `CHILD_TEST`, at any module path); a program whose `main` calls `init`
/// first never reads these arguments.
pub(crate) fn this_binary(program: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.args([
        CHILD_TEST,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]);
    command
}

/// The entry hook: call it first thing in `main`.
///
/// In a child process started for a process task, it runs the task and
/// exits the process; it never returns there (nor in a command's launcher,
/// the process of ours that a [`Command`](crate::Command)'s program runs
/// under once `init` was called). In any other process it keeps the
/// registry and returns: process tasks can then be spawned, and commands
/// run under a launcher.
///
/// Calling it again is harmless when the registry holds the same task
/// types (each test of a test binary may call it); a registry with other
/// types is not taken: the first one stays, and a warning says so through
/// [`tracing`](https://docs.rs/tracing) (`WARN` level). It never panics.
///
/// Everything `main` does before this call runs again in every child
/// process, before the child finds out that it is one: a line printed
/// there is printed once more per child, a file created is created again,
/// a thread or a server started is started in each child too. So nothing
/// before it should have side effects. Parse arguments, open files and
/// start threads after it.
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
    command::enter_if_launcher();
    // Kept in the child too, so that its task can start process tasks.
    let registry = named::install(registry);
    // A launcher started from here (or from a child's task) finds its way
    // back to this call.
    command::enable_launcher();
    process::enter_if_child(registry);
}

/// Makes a `cargo test` or `cargo nextest` binary able to run process
/// tasks: the child process re-executes the test binary and runs only the
/// hidden test this macro defines, which enters the task.
///
/// Put it once in each test binary that spawns process tasks (at the top
/// of a test file, or inside a module such as `#[cfg(test)] mod tests`),
/// with an expression that makes the [`Registry`]; each test calls [`init`]
/// with the same registry before spawning.
///
/// The hidden test is `#[ignore]`d, so it is not counted among your passed
/// tests (the summary shows it as one ignored test, named
/// `__sidetask_child_entry`); `cargo test -- --ignored` runs it to no
/// effect. The child runs the test harness first, which prints a line or
/// two ("running 1 test") to its stdout; the task's own output follows.
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
        // The child runs it with `--ignored` and a filter that matches its
        // name in any module.
        #[test]
        #[ignore = "sidetask's entry for process tasks: runs only in a child process"]
        fn __sidetask_child_entry() {
            $crate::init($registry);
        }
    };
}
