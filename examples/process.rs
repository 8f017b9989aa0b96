//! Named tasks in child processes: one talks and is stopped, one aborts and
//! is reported as crashed while this process carries on.
//!
//! Run with `cargo run --example process`.

use std::time::Duration;

use sidetask::{CrashCause, Ctx, NamedTask, Outcome, Process, Registry, Stopped};

/// Sums the numbers it receives, emitting the running total, until stopped.
struct Summer;

impl NamedTask for Summer {
    const NAME: &'static str = "summer";
    type Arg = String; // a label for its progress events
    type In = u64;
    type Event = String;
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx<u64, String>, label: String) -> Result<u64, Stopped> {
        let mut total = 0;
        // `recv` wakes at once when the parent stops the task.
        while let Ok(n) = ctx.recv() {
            total += n;
            let pid = std::process::id();
            ctx.emit(format!("{label} (pid {pid}): total {total}"))?;
        }
        Ok(total)
    }
}

/// Aborts the process it runs in.
struct Crasher;

impl NamedTask for Crasher {
    const NAME: &'static str = "crasher";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        eprintln!("about to abort");
        std::process::abort()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing: in a child process this runs the task and exits.
    sidetask::init(Registry::new().with::<Summer>()?.with::<Crasher>()?);

    let summer = Process::<Summer>::new("summer".into())
        .grace_period(Duration::from_secs(2))
        .spawn()?;
    for n in 1..=5 {
        summer.send(n)?;
        println!("{}", summer.recv()?);
    }
    summer.stop();
    let total = summer.join().unwrap();
    assert_eq!(total, 15);
    println!("summer stopped with total {total}");

    let crasher = Process::<Crasher>::new(()).spawn()?;
    match crasher.join() {
        Outcome::Crashed(crash) => {
            assert_eq!(*crash.cause(), CrashCause::Signal(6));
            println!("crasher {crash}; its stderr: {:?}", crash.stderr_text());
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    println!("this process carries on: pid {}", std::process::id());
    Ok(())
}
