//! task.py's pool example: run a task per input, at most `parallelism` at
//! once, with a receiver called for each finished task; asserts that it
//! received exactly 1..=size.
//!
//! `cargo run --example task_pool -- [size] [parallelism]` (default 1000 100)

use std::time::Instant;

use sidetask::{Ctx, Pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size: u64 = args.next().map_or(Ok(1000), |a| a.parse())?;
    let parallelism: usize = args.next().map_or(Ok(100), |a| a.parse())?;

    let start = Instant::now();
    let run = Pool::new(parallelism).run(1..=size, |_: &Ctx, n| Ok::<_, ()>(n))?;
    let mut received = Vec::with_capacity(size as usize);
    // The receiver callback, called once per finished task.
    run.for_each(|done| received.push(done.outcome.value().expect("a value")));
    let took = start.elapsed();

    received.sort_unstable();
    assert_eq!(received, (1..=size).collect::<Vec<_>>());
    println!("received 1..={size} with parallelism {parallelism} in {took:?}");
    Ok(())
}
