//! task.py's chain example: `n` stages each adding one to the previous
//! stage's result, from a seed of one; asserts the result is n + 1.
//!
//! `cargo run --example task_chain -- [n]` (default 1000)

use std::time::Instant;

use sidetask::Chain;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    assert!(n >= 1, "a chain has at least one stage");

    let mut chain = Chain::new(|x: &u64| Ok::<_, std::fmt::Error>(x + 1));
    for _ in 1..n {
        chain = chain.then(|x: &u64| Ok(x + 1));
    }
    let started = Instant::now();
    let run = chain.start()?;
    run.send(1)?; // the seed
    let result = run.recv()?;
    let took = started.elapsed();
    run.close_inbox();
    run.join().into_result()?;

    assert_eq!(result, n as u64 + 1);
    println!("{n} stages turned the seed 1 into {result} in {took:?}");
    Ok(())
}
