//! The `remote_throughput` baseline: N no-op jobs through apalis 1.0 with
//! its Redis storage (apalis-redis), one worker of concurrency 8.
//!
//! `apalis-baseline <redis-url> <n> [--poll-ms <ms>]`
//!
//! The worker starts first and waits, registered and idle, as sidetask's
//! worker does in the same figure. Then the jobs are pushed one at a time
//! and the clock runs until Redis has recorded every one as done. It prints
//! one line:
//!
//! `apalis_baseline jobs=<n> secs=<elapsed> jobs_per_sec=<n/elapsed> poll_ms=<ms>`
//!
//! How "done" is known: apalis-redis acknowledges finished jobs in batches
//! (its `handle_results` script), which adds each to the queue's done set
//! and publishes its id on `tasks:<queue>:done`. This binary subscribes to
//! that channel before the first push and stops the clock at the N-th id;
//! then it checks that the done set holds exactly N ids and that nothing is
//! left queued, scheduled, in flight or dead. A job that ran but whose
//! result is not yet written to Redis does not count, as a sidetask task
//! does not count until its client has joined its outcome.
//!
//! The poll interval (10 ms by default): apalis-redis parks a worker that
//! found its queue empty until its next heartbeat (30 s by default), and
//! writes the acknowledgements it holds only when it wakes, so a worker
//! needs a poll interval to pick up jobs pushed while it is idle and to
//! flush the last results.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::{Notify, oneshot};

/// The queue's name: apalis-redis splits pub/sub channel names at `:`, so
/// it has none.
const QUEUE: &str = "noop";
/// Jobs in flight at once on the worker.
const CONCURRENCY: usize = 8;
/// How long the whole run may take before it is reported as stuck.
const LIMIT: Duration = Duration::from_secs(300);

async fn noop(_: u64) -> Result<(), BoxDynError> {
    Ok(())
}

struct Args {
    url: String,
    jobs: u64,
    poll: Duration,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: apalis-baseline <redis-url> <n> [--poll-ms <ms>]";
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or(usage)?;
    let jobs = args
        .next()
        .ok_or(usage)?
        .parse()
        .map_err(|e| format!("<n>: {e}"))?;
    let mut poll = Duration::from_millis(10);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--poll-ms" => {
                let ms: u64 = args
                    .next()
                    .ok_or(usage)?
                    .parse()
                    .map_err(|e| format!("--poll-ms: {e}"))?;
                poll = Duration::from_millis(ms);
            }
            _ => return Err(usage.to_owned()),
        }
    }
    Ok(Args { url, jobs, poll })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match tokio::time::timeout(LIMIT, run(&args)).await {
        Ok(Ok(secs)) => {
            println!(
                "apalis_baseline jobs={} secs={secs:.6} jobs_per_sec={:.1} poll_ms={}",
                args.jobs,
                args.jobs as f64 / secs,
                args.poll.as_millis()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("apalis-baseline: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "apalis-baseline: {} jobs not done within {LIMIT:?}",
                args.jobs
            );
            ExitCode::FAILURE
        }
    }
}

/// Runs the jobs and returns the seconds from the first push to the last
/// result recorded.
async fn run(args: &Args) -> Result<f64, BoxDynError> {
    let client = redis::Client::open(args.url.as_str())?;
    let config = Config::default().queue(QUEUE);

    // Listen for finished jobs before anything can finish.
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(format!("tasks:{}", config.done_jobs_set()))
        .await?;
    let mut finished = pubsub.into_on_message();

    // The worker, on its own connection, started and registered first.
    let storage = RedisStorage::<u64>::new(client.get_connection_manager().await?)
        .with_config(config.clone())
        .poll_with_interval(args.poll);
    let registered = Arc::new(Notify::new());
    let on_heartbeat = Arc::clone(&registered);
    let worker = WorkerBuilder::new("apalis-baseline")
        .backend(storage)
        .on_event(move |_, event| {
            if let Event::HeartBeat = event {
                on_heartbeat.notify_one();
            }
        })
        .concurrency(CONCURRENCY)
        .build(noop);
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
        Ok::<_, WorkerError>(())
    }));
    registered.notified().await;

    // The producer, on a connection of its own.
    let mut producer = RedisStorage::<u64>::new(client.get_connection_manager().await?)
        .with_config(config.clone());
    let start = Instant::now();
    for job in 0..args.jobs {
        producer.push(job).await?;
    }
    let mut done = 0;
    while done < args.jobs {
        finished
            .next()
            .await
            .ok_or("the subscription to finished jobs closed")?;
        done += 1;
    }
    let secs = start.elapsed().as_secs_f64();

    let _ = stop.send(());
    worker.await??;
    check(&client, &config, args.jobs).await?;
    Ok(secs)
}

/// Checks Redis's own account of the queue: exactly `jobs` done, nothing
/// else left anywhere.
async fn check(client: &redis::Client, config: &Config, jobs: u64) -> Result<(), BoxDynError> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let done: u64 = con.scard(config.done_jobs_set()).await?;
    let dead: u64 = con.scard(config.dead_jobs_set()).await?;
    let queued: u64 = con.llen(config.active_jobs_list()).await?;
    let scheduled: u64 = con.zcard(config.scheduled_jobs_set()).await?;
    let inflight: u64 = con
        .scard(format!("{}:apalis-baseline", config.inflight_jobs_set()))
        .await?;
    if (done, dead, queued, scheduled, inflight) != (jobs, 0, 0, 0, 0) {
        return Err(format!(
            "Redis holds done={done} dead={dead} queued={queued} scheduled={scheduled} \
             inflight={inflight}, expected done={jobs} and nothing else"
        )
        .into());
    }
    Ok(())
}
