//! task.py's simple example: a task with arguments runs until it is asked to
//! stop, one second later, and returns "done." without an error.

use std::time::Duration;

use sidetask::{Ctx, Stopped};

/// The unit of work: prints its arguments, then works until stopped.
fn work(ctx: &Ctx, args: &[&str]) -> Result<&'static str, Stopped> {
    println!(
        "task started with arguments {:?} (first: {})",
        args, args[0]
    );
    let mut rounds = 0u32;
    while !ctx.stopped() {
        rounds += 1;
        // Sleeps 100 ms, or less if asked to stop meanwhile.
        let _ = ctx.sleep(Duration::from_millis(100));
    }
    println!("task stopping after {rounds} rounds");
    Ok("done.")
}

fn main() {
    let args = vec!["hello", "world"];
    let task = sidetask::spawn(move |ctx: &Ctx| work(ctx, &args));
    std::thread::sleep(Duration::from_secs(1));
    task.stop();
    let outcome = task.join();
    println!("result: {outcome:?}");
    assert_eq!(outcome.value(), Some("done."));
    println!("no error");
}
