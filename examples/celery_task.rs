//! task.py's `celery_task` example: a job submitted to a remote worker,
//! whose body is fed from a Redis list while it runs, and whose running
//! totals come back to this program through the same handle.
//!
//! A worker in this process serves the job unless `--no-local-worker` is
//! given (then run `cargo run --features redis --example redis_worker`
//! elsewhere).
//!
//! ```text
//! redis-server &
//! cargo run --features redis --example celery_task
//! ```

#[path = "common/remote_tasks.rs"]
mod remote_tasks;

use std::time::Duration;

use redis::Commands;
use remote_tasks::Summer;
use sidetask::Controller;
use sidetask::remote::{ListFeeder, Remote, Worker};

fn main() {
    let client = remote_tasks::client_or_exit();
    let local = !std::env::args().any(|a| a == "--no-local-worker");
    let worker = local.then(|| Worker::new(&client, remote_tasks::registry()).spawn());

    // The job, on whichever worker claims it.
    let job = Remote::<Summer>::new(())
        .timeout(Duration::from_secs(30))
        .spawn_on(&client)
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2);
        });
    println!("submitted job {} to {}", job.id(), client.url());

    // Its input: numbers pushed to a list of this run's own.
    let list = format!("sidetask-example:celery:{}", std::process::id());
    let mut con = redis::Client::open(client.url())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2);
        });
    for n in 1..=5i64 {
        let _: () = con.lpush(&list, n.to_string()).expect("LPUSH");
    }

    let mut feeder = ListFeeder::new(&client, &list, |item: Vec<u8>| {
        String::from_utf8(item)?
            .parse::<i64>()
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
    })
    .block(Duration::from_millis(200));
    std::thread::scope(|scope| {
        let fed = scope.spawn(|| feeder.control(&job));
        for _ in 0..5 {
            match job.recv_timeout(Duration::from_secs(20)) {
                Ok(total) => println!("running total: {total}"),
                Err(e) => {
                    eprintln!("error: no total came: {e}");
                    break;
                }
            }
        }
        job.close_inbox();
        if let Ok(Err(e)) = fed.join() {
            eprintln!("the feeder gave up: {e}");
        }
    });
    match job.join() {
        sidetask::Outcome::Value(sum) => println!("the job returned {sum}"),
        other => println!("the job ended: {other:?}"),
    }
    let _: Result<(), _> = con.del(&list);
    if let Some(worker) = worker {
        worker.stop();
        let _ = worker.join_timeout(Duration::from_secs(10));
    }
}
