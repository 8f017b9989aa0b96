//! task.py's `redis_brpop` example: a local task fed from a Redis list.
//!
//! The task reads what the feeder takes from the list and prints it; this
//! program plays the producer too, pushing a few items (task.py's example
//! took them from another shell). Once the task has read them all it ends,
//! and the feeder returns within one block period.
//!
//! Runs against `SIDETASK_REDIS_URL`, or `redis://127.0.0.1:6379`:
//!
//! ```text
//! redis-server &
//! cargo run --example redis_brpop --features redis
//! ```

use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use sidetask::remote::{Client, DEFAULT_URL, ListFeeder, URL_VAR};
use sidetask::{Ctx, Stopped};

/// How many items the producer pushes and the task reads.
const ITEMS: usize = 5;

/// The unit of work: prints each item it is fed, and returns them.
fn work(ctx: &Ctx<String>) -> Result<Vec<String>, Stopped> {
    let mut read = Vec::new();
    while read.len() < ITEMS {
        let item = ctx.recv()?;
        println!("task got {item:?}");
        read.push(item);
    }
    Ok(read)
}

fn main() -> ExitCode {
    let url = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => DEFAULT_URL.to_owned(),
    };
    let client = match Client::open(&url) {
        Ok(client) => client,
        Err(e) => return fail(&e),
    };
    if let Err(e) = client.ping() {
        return fail(&e);
    }
    // A list of this run's own, so that concurrent runs do not meet.
    let list = format!("sidetask-example:brpop:{}", std::process::id());
    let task = sidetask::spawn(work);
    let producer = {
        let (url, list) = (url.clone(), list.clone());
        let stopper = task.stop_handle();
        thread::spawn(move || {
            let produced = produce(&url, &list);
            if produced.is_err() {
                // The task would wait for ever.
                stopper.stop();
            }
            produced
        })
    };
    let mut feeder = ListFeeder::strings(&client, &list).block(Duration::from_millis(200));
    let outcome = sidetask::run(&mut feeder, task);
    let produced = producer.join().expect("the producer does not panic");

    let cleaned = cleanup(
        &url,
        &[&list, feeder.processing_key(), feeder.dead_letter_key()],
    );
    match (outcome, produced, cleaned) {
        (Ok(read), Ok(()), Ok(())) => {
            println!("the task read {} items: {read:?}", read.len());
            ExitCode::SUCCESS
        }
        (_, Err(e), _) | (_, _, Err(e)) => fail(&e),
        (Err(e), _, _) => fail(&e),
    }
}

/// Pushes the items one by one, as a producer elsewhere would.
fn produce(url: &str, list: &str) -> redis::RedisResult<()> {
    let mut con = redis::Client::open(url)?.get_connection()?;
    for n in 1..=ITEMS {
        let item = format!("item {n}");
        println!("pushing {item:?}");
        redis::cmd("LPUSH").arg(list).arg(&item).exec(&mut con)?;
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn cleanup(url: &str, keys: &[&str]) -> redis::RedisResult<()> {
    let mut con = redis::Client::open(url)?.get_connection()?;
    redis::cmd("DEL").arg(keys).exec(&mut con)
}

/// One line on stderr, and a failure exit code.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("redis_brpop: {e}");
    ExitCode::FAILURE
}
