//! The named tasks of the Redis examples: the worker registers them, the
//! clients submit them.

#![allow(dead_code)]

use std::time::Duration;

use sidetask::{Ctx, NamedTask, Registry, Stopped};

/// Adds up the numbers it is sent, emitting each running total, until its
/// inbox closes; returns the sum.
pub struct Summer;

impl NamedTask for Summer {
    const NAME: &'static str = "summer";
    type Arg = ();
    type In = i64;
    type Event = i64;
    type Value = i64;
    type Error = Stopped;

    fn run(ctx: &Ctx<i64, i64>, (): ()) -> Result<i64, Stopped> {
        let mut sum = 0;
        while let Ok(n) = ctx.recv() {
            sum += n;
            ctx.emit(sum)?;
        }
        Ok(sum)
    }
}

/// Counts down from its argument, one step every 100 ms, reporting each.
pub struct Countdown;

impl NamedTask for Countdown {
    const NAME: &'static str = "countdown";
    type Arg = u32;
    type In = ();
    type Event = u32;
    type Value = String;
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u32>, from: u32) -> Result<String, Stopped> {
        for n in (1..=from).rev() {
            ctx.emit(n)?;
            ctx.sleep(Duration::from_millis(100))?;
        }
        Ok("lift-off".to_owned())
    }
}

/// Every task the example worker runs.
pub fn registry() -> Registry {
    Registry::new()
        .with::<Summer>()
        .and_then(|r| r.with::<Countdown>())
        .expect("distinct task names")
}

/// The client for `SIDETASK_REDIS_URL` (or the default), or one clear line
/// and exit code 2 if no Redis answers there.
pub fn client_or_exit() -> sidetask::remote::Client {
    let client = match sidetask::remote::Client::from_env() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = client.ping() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    client
}
