//! task.py's exception example: the simple task given no arguments fails
//! inside (indexing an empty argument list panics); the handle reports the
//! failure with its message and the caller carries on.

use std::time::Duration;

use sidetask::{Ctx, Stopped};

fn work(ctx: &Ctx, args: &[&str]) -> Result<&'static str, Stopped> {
    println!("task started with first argument {}", args[0]);
    while !ctx.stopped() {
        let _ = ctx.sleep(Duration::from_millis(100));
    }
    Ok("done.")
}

fn main() {
    let args: Vec<&str> = Vec::new();
    let task = sidetask::spawn(move |ctx: &Ctx| work(ctx, &args));
    // The task fails on its own; no stop is needed.
    let outcome = task.join();
    let panic = outcome.panic().expect("the task panicked");
    println!("the task failed: {panic}");
    assert!(panic.message().contains("index out of bounds"));
    println!("the caller carries on");
}
