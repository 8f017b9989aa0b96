//! The registry and the entry hook: one type registered twice, two types
//! under one name, `init` called again, `test_support!` inside a module
//! (its hidden test ignored), and a child whose task types differ from the
//! parent's.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sidetask::{Ctx, NamedTask, Process, Registry, Stopped};

const LIMIT: Duration = Duration::from_secs(30);

/// Doubles its argument.
struct Double;

impl NamedTask for Double {
    const NAME: &'static str = "double";
    type Arg = u64;
    type In = ();
    type Event = ();
    type Value = u64;
    type Error = Stopped;

    fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> {
        Ok(n * 2)
    }
}

/// `Double`'s name with other types: what a child built from other code
/// would hold.
struct OtherDouble;

impl NamedTask for OtherDouble {
    const NAME: &'static str = "double";
    type Arg = String;
    type In = ();
    type Event = ();
    type Value = String;
    type Error = Stopped;

    fn run(_: &Ctx, s: String) -> Result<String, Stopped> {
        Ok(s.repeat(2))
    }
}

/// A task of another name.
struct Nothing;

impl NamedTask for Nothing {
    const NAME: &'static str = "nothing";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        Ok(())
    }
}

/// `Double`; `OtherDouble` in a child started with
/// `SIDETASK_TEST_OTHER_DOUBLE` set.
fn registry() -> Registry {
    if std::env::var_os("SIDETASK_TEST_OTHER_DOUBLE").is_some() {
        Registry::new().with::<OtherDouble>().unwrap()
    } else {
        Registry::new().with::<Double>().unwrap()
    }
}

#[test]
fn one_type_registered_twice_is_there_once() {
    let mut registry = Registry::new().with::<Double>().unwrap();
    registry.register::<Double>().unwrap();
    let registry = registry
        .with::<Nothing>()
        .unwrap()
        .with::<Double>()
        .unwrap();
    let mut names: Vec<_> = registry.names().collect();
    names.sort_unstable();
    assert_eq!(names, ["double", "nothing"]);
}

#[test]
fn two_types_under_one_name_are_an_error_naming_both() {
    let err = Registry::new()
        .with::<Double>()
        .unwrap()
        .with::<OtherDouble>()
        .unwrap_err();
    assert_eq!(err.name(), "double");
    let text = err.to_string();
    assert!(text.contains(std::any::type_name::<Double>()), "{text}");
    assert!(
        text.contains(std::any::type_name::<OtherDouble>()),
        "{text}"
    );
}

#[test]
fn registry_errors_are_send_sync_and_static() {
    fn check<E: std::error::Error + Send + Sync + 'static>() {}
    check::<sidetask::RegistryError>();
}

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The entry hook inside a module, as unit tests have it.
mod tests {
    use super::*;

    sidetask::test_support!(registry());

    #[test]
    fn a_process_task_runs_with_the_entry_in_a_module() {
        sidetask::init(registry());
        let task = Process::<Double>::new(21).spawn().unwrap();
        let outcome = task
            .join_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("the task did not end within {LIMIT:?}"));
        assert_eq!(outcome.value(), Some(42));
    }

    #[test]
    fn a_child_whose_task_types_differ_refuses_the_task() {
        sidetask::init(registry());
        let err = Process::<Double>::new(1)
            .env("SIDETASK_TEST_OTHER_DOUBLE", "1")
            .spawn()
            .unwrap_err();
        let why = err.handshake_error().expect("a handshake error");
        assert!(
            why.contains(
                "task `double` was built from different code in the child (its types differ)"
            ),
            "{why}"
        );
    }

    #[test]
    fn the_hidden_entry_is_an_ignored_test() {
        let list = |args: &[&str]| {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let ignored = list(&["--list", "--ignored"]);
        assert!(
            ignored.contains("tests::__sidetask_child_entry: test"),
            "{ignored}"
        );
        assert!(!ignored.contains("runs_with_the_entry"), "{ignored}");
    }

    #[test]
    fn init_again_with_other_tasks_warns_and_keeps_the_first() {
        sidetask::init(registry());
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // The same tasks again: harmless, and nothing to say.
            sidetask::init(registry());
            sidetask::init(Registry::new().with::<Nothing>().unwrap());
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("WARN").count(), 1, "{text}");
        assert!(
            text.contains("called again with other task types"),
            "{text}"
        );
        // The first registry is kept.
        let err = Process::<Nothing>::new(()).spawn().unwrap_err();
        assert!(err.is_unknown_task(), "{err}");
    }
}
