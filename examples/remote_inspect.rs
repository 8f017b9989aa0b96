//! What `rq info` or `celery inspect` print: the workers alive with what
//! they run, the tasks per queue, and one task by id.
//!
//! ```text
//! cargo run --features redis --example remote_inspect            # everything
//! cargo run --features redis --example remote_inspect -- 123456  # one task
//! ```

#[path = "common/remote_tasks.rs"]
mod remote_tasks;

fn main() {
    let client = remote_tasks::client_or_exit();
    let inspect = client.inspect().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let report = || -> Result<(), sidetask::remote::RemoteError> {
        if let Some(id) = std::env::args().nth(1).and_then(|a| a.parse::<u64>().ok()) {
            match inspect.task(sidetask::TaskId::from(id))? {
                Some(task) => println!("{task:#?}"),
                None => println!("no task #{id} (never submitted, or its result expired)"),
            }
            return Ok(());
        }
        let workers = inspect.workers()?;
        println!("{} worker(s) alive at {}", workers.len(), client.url());
        for w in workers {
            println!("  {} (pid {:?}) runs {:?}", w.name, w.pid, w.running);
        }
        for q in inspect.queues()? {
            println!(
                "queue {:<12} {:>6} queued {:>6} running",
                q.name, q.queued, q.running
            );
        }
        Ok(())
    };
    if let Err(e) = report() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
