//! Keeping tasks alive: a flaky command and a crashing process task, each
//! restarted by a supervisor until it works, with every restart printed;
//! and the other way round, a fail-fast group of downloads where one
//! failure stops the rest, every outcome reported.
//!
//! Run with `cargo run --example supervise`.

use std::time::Duration;

use sidetask::{
    AttemptEnd, Backoff, Command, Ctx, Group, NamedTask, Outcome, Process, Registry, Restart,
    Stopped, Supervisor,
};

/// A service that crashes (aborts its process) on its first two attempts,
/// then serves: it answers each number with its square until its inbox
/// closes.
struct Service;

impl NamedTask for Service {
    const NAME: &'static str = "service";
    type Arg = u32; // the attempt's number
    type In = u64;
    type Event = String;
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx<u64, String>, attempt: u32) -> Result<u64, Stopped> {
        if attempt < 3 {
            eprintln!("service: attempt {attempt} crashes");
            std::process::abort();
        }
        ctx.emit(format!(
            "serving (attempt {attempt}, pid {})",
            std::process::id()
        ))?;
        let mut served = 0;
        while let Ok(n) = ctx.recv() {
            ctx.emit(format!("{n}² = {}", n * n))?;
            served += 1;
        }
        Ok(served)
    }
}

/// Prints a restart as it happens.
fn print_restart(what: &'static str) -> impl FnMut(&AttemptEnd, Duration) + Send + 'static {
    move |ended, delay| println!("[{what}] {ended}; restarting in {delay:?}")
}

/// A command that fails twice before it works, kept up as supervisord
/// would keep a daemon up.
fn flaky_command() -> Result<(), Box<dyn std::error::Error>> {
    let supervised = Supervisor::new()
        .restart(Restart::OnFailure)
        .backoff(Backoff::exponential(Duration::from_millis(50), Duration::from_secs(1)).jitter(0.2))
        .intensity(5, Duration::from_secs(10))
        .on_restart(print_restart("command"))
        .spawn(|attempt| {
            Command::new("sh")
                .args([
                    "-c",
                    "echo attempt $ATTEMPT starts; [ $ATTEMPT -ge 3 ] || exit 1; echo attempt $ATTEMPT works",
                ])
                .env("ATTEMPT", attempt.number().to_string())
                .spawn()
        })?;
    // The events of every attempt come out of the one handle.
    for line in supervised.iter() {
        println!("[command] {line}");
    }
    println!("[command] status: {:?}", supervised.status());
    let exit = supervised.join().unwrap();
    println!("[command] exited with {:?}", exit.code());
    Ok(())
}

/// A process task that crashes twice, each restart in a child started
/// ahead; messages sent meanwhile wait for the attempt that serves.
fn crashing_process() -> Result<(), Box<dyn std::error::Error>> {
    let supervised = Supervisor::new()
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(500),
        ))
        .on_restart(print_restart("process"))
        // The next attempt's child is started ahead, while this one runs.
        .standby(true)
        .spawn(|attempt| Process::<Service>::new(attempt.number()).spawn())?;
    for n in 1..=3 {
        supervised.send(n)?; // none is lost, whichever attempt runs
    }
    supervised.close_inbox();
    for line in supervised.iter() {
        println!("[process] {line}");
    }
    for ended in supervised.history() {
        println!("[process] history: {ended} after {:?}", ended.ran());
    }
    let served = supervised.join().unwrap();
    println!("[process] served {served} requests");
    Ok(())
}

/// Six slow downloads in a fail-fast group: the fourth fails, which stops
/// the others at once; the report says what became of each.
fn failing_downloads() {
    let mut downloads = Group::fail_fast();
    let mut names = std::collections::HashMap::new();
    for n in 1..=6u32 {
        let id = downloads.spawn(move |ctx: &Ctx<(), String>| {
            for percent in (0..=100).step_by(20) {
                if n == 4 && percent == 40 {
                    return Err(format!("connection reset at {percent}%"));
                }
                ctx.emit(format!("{percent}%")).ok();
                ctx.sleep(Duration::from_millis(20 * u64::from(n)))
                    .map_err(|Stopped| format!("stopped at {percent}%"))?;
            }
            Ok(format!("{n}.tar.gz: 100%"))
        });
        names.insert(id, format!("download {n}"));
    }
    let report = downloads.join_all();
    if let Some((id, outcome)) = report.first_failure() {
        println!("[downloads] first failure: {} ({outcome:?})", names[&id]);
    }
    for (id, outcome) in report.outcomes() {
        let what = match outcome {
            Outcome::Value(done) => done.clone(),
            Outcome::Error(why) => why.clone(),
            other => format!("{other:?}"),
        };
        println!("[downloads] {}: {what}", names[id]);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing: in a child process this runs the task and exits.
    sidetask::init(Registry::new().with::<Service>()?);
    flaky_command()?;
    crashing_process()?;
    failing_downloads();
    Ok(())
}
