//! task.py's `redis_pubsub` example: a local task fed from a Redis
//! channel.
//!
//! The task prints each message the feeder hears on the channel; this
//! program publishes a few (task.py's example published them from another
//! shell), once the feeder has subscribed, since pub/sub keeps nothing for
//! a subscriber that is not there yet. Once the task has read them all it
//! ends, and the feeder returns within one read timeout.
//!
//! Runs against `SIDETASK_REDIS_URL`, or `redis://127.0.0.1:6379`:
//!
//! ```text
//! redis-server &
//! cargo run --example redis_pubsub --features redis
//! ```

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use sidetask::remote::{Client, DEFAULT_URL, PubSubFeeder, URL_VAR};
use sidetask::{Ctx, Stopped};

/// How many messages are published and read.
const MESSAGES: usize = 5;

/// The unit of work: prints each message it is fed, and counts them.
fn work(ctx: &Ctx<String>) -> Result<usize, Stopped> {
    let mut read = 0;
    while read < MESSAGES {
        let message = ctx.recv()?;
        println!("task got {message:?}");
        read += 1;
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
    // A channel of this run's own, so that concurrent runs do not meet.
    let channel = format!("sidetask-example:pubsub:{}", std::process::id());
    let task = sidetask::spawn(work);
    let publisher = {
        let (url, channel) = (url.clone(), channel.clone());
        let stopper = task.stop_handle();
        thread::spawn(move || {
            let published = publish(&url, &channel);
            if published.is_err() {
                // The task would wait for ever.
                stopper.stop();
            }
            published
        })
    };
    let mut feeder =
        PubSubFeeder::strings(&client, &channel).read_timeout(Duration::from_millis(200));
    let outcome = sidetask::run(&mut feeder, task);
    let published = publisher.join().expect("the publisher does not panic");

    match (outcome, published) {
        (Ok(read), Ok(())) => {
            println!("the task read {read} messages");
            ExitCode::SUCCESS
        }
        (_, Err(e)) => fail(&e),
        (Err(e), _) => fail(&e),
    }
}

/// Waits until the feeder listens, then publishes the messages.
fn publish(url: &str, channel: &str) -> redis::RedisResult<()> {
    let mut con = redis::Client::open(url)?.get_connection()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, listeners): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut con)?;
        if listeners > 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the feeder did not subscribe within 5 s",
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
    for n in 1..=MESSAGES {
        let message = format!("message {n}");
        println!("publishing {message:?}");
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&message)
            .exec(&mut con)?;
        thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// One line on stderr, and a failure exit code.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("redis_pubsub: {e}");
    ExitCode::FAILURE
}
