//! A pool over many inputs with a live progress bar, one task failing and
//! one panicking without disturbing the others, and results in input order.
//!
//! `cargo run --example pool`

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sidetask::{Ctx, Outcome, Pool, Stopped};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const INPUTS: u64 = 200;
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

    let bar = ProgressBar::new(INPUTS);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} finished, {msg}",
    )?);
    let results = run.in_order();
    let mut values = 0;
    for done in results {
        let progress = done_progress(&done.outcome);
        if let Some(line) = progress {
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

fn done_progress(outcome: &Outcome<u64, String>) -> Option<String> {
    match outcome {
        Outcome::Value(_) => None,
        Outcome::Error(e) => Some(format!("error: {e}")),
        Outcome::Panicked(p) => Some(format!("panic: {p}")),
        other => Some(format!("{other:?}")),
    }
}
