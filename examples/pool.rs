//! A pool over many inputs with a live progress bar, one task failing and
//! one panicking without disturbing the others, and results in input order.
//!
//! `cargo run --example pool`

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sidetask::{Ctx, Outcome, Pool, Stopped};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const INPUTS: u64 = 200;
    let bar = ProgressBar::new(INPUTS);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} finished, {msg}",
    )?);
    // A panicking task's report ("thread … panicked at …") goes to stderr,
    // where the bar is drawn: print it above the bar instead of over it.
    // Set before the pool runs, so that sidetask's own hook (which records
    // where a task panicked) chains to this one.
    let report = std::panic::take_hook();
    let above = bar.clone();
    std::panic::set_hook(Box::new(move |info| above.suspend(|| report(info))));

    let run = Pool::new(16).run(0..INPUTS, |ctx: &Ctx, n| {
        // Some work that a stop would cut short.
        ctx.sleep(Duration::from_millis(5 + n % 20))
            .map_err(|Stopped| "stopped".to_string())?;
        match n {
            13 => Err("thirteen is unlucky".to_string()),
            42 => panic!("the answer was not expected"),
            _ => Ok(n * 2),
        }
    })?;

    let mut values = 0;
    for done in run.in_order() {
        if let Some(line) = not_a_value(&done.outcome) {
            bar.println(format!("input {}: {line}", done.index));
        } else {
            values += 1;
        }
        bar.inc(1);
        bar.set_message(format!("{values} values"));
    }
    bar.finish();
    println!("{values} values, one error, one panic, out of {INPUTS} inputs");
    assert_eq!(values, INPUTS - 2);
    Ok(())
}

/// What to say of an outcome that is not a value.
fn not_a_value(outcome: &Outcome<u64, String>) -> Option<String> {
    match outcome {
        Outcome::Value(_) => None,
        Outcome::Error(e) => Some(format!("error: {e}")),
        Outcome::Panicked(p) => Some(format!("panic: {p}")),
        other => Some(format!("{other:?}")),
    }
}
