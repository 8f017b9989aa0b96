//! A remote worker: runs the example tasks that clients submit through
//! Redis, four at a time, until Ctrl-C or `SIGTERM` (then it stops its
//! tasks and leaves), or for `--for-seconds N`.
//!
//! ```text
//! redis-server &
//! cargo run --features redis --example redis_worker
//! cargo run --features redis --example celery_task      # in another terminal
//! ```

#[path = "common/remote_tasks.rs"]
mod remote_tasks;

use std::time::{Duration, Instant};

use sidetask::remote::Worker;

fn main() {
    sidetask::init(remote_tasks::registry());
    let client = remote_tasks::client_or_exit();
    let limit = std::env::args()
        .skip_while(|a| a != "--for-seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    println!("worker serving summer and countdown at {}", client.url());
    let worker = Worker::new(&client, remote_tasks::registry()).concurrency(4);
    let ended = match limit {
        Some(limit) => worker.run_until(|| started.elapsed() > limit),
        // Until Ctrl-C or SIGTERM.
        None => worker.run(),
    };
    if let Err(e) = ended {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
