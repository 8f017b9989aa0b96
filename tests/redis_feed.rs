//! The Redis feeders, each test against a `redis-server` of its own: the
//! list feeder keeps order and loses nothing (refused, unread, undecodable
//! items, a killed feeder process, a restarted server), stops in time and
//! gives up in time; the pub/sub feeder delivers what is published while it
//! listens, subscribes again after a restart, stops and gives up in time.

#![cfg(feature = "redis")]

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{LIMIT, wait_for};
use sidetask::remote::{Client, ListFeeder, PubSubFeeder, RemoteError};
use sidetask::{Builder, Controller, Ctx, DEFAULT_CAPACITY, RunError, Stopped, Task, run};

/// The block period (and read timeout) of the feeders under test.
const BLOCK: Duration = Duration::from_millis(200);

type Reader = Task<Vec<String>, Stopped, String, ()>;

/// A task that reads `n` messages and returns them, telling `seen` of
/// each as it reads it.
fn reader(n: usize, seen: Option<mpsc::Sender<String>>) -> Reader {
    reader_with(Builder::new(), n, seen)
}

fn reader_with(builder: Builder, n: usize, seen: Option<mpsc::Sender<String>>) -> Reader {
    builder
        .spawn(move |ctx: &Ctx<String>| {
            let mut read = Vec::new();
            while read.len() < n {
                let item = ctx.recv().map_err(Stopped::from)?;
                if let Some(seen) = &seen {
                    let _ = seen.send(item.clone());
                }
                read.push(item);
            }
            Ok(read)
        })
        .unwrap()
}

/// Runs `controller` on `task` on a thread of its own; the receiver gives
/// what `run` returned.
fn run_aside<C>(
    mut controller: C,
    task: Reader,
) -> mpsc::Receiver<Result<Vec<String>, RunError<Stopped>>>
where
    C: Controller<Vec<String>, Stopped, String, ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(run(&mut controller, task));
    });
    rx
}

fn finished<R>(rx: &mpsc::Receiver<R>) -> R {
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the feeder did not return within {LIMIT:?}"))
}

fn client(server: &RedisServer) -> Client {
    Client::open(&server.url()).unwrap()
}

/// Pushes `items` as a producer does (`LPUSH`), in order.
fn push<T: redis::ToRedisArgs>(server: &RedisServer, list: &str, items: &[T]) {
    let mut con = server.connection();
    for item in items {
        redis::cmd("LPUSH")
            .arg(list)
            .arg(item)
            .exec(&mut con)
            .unwrap();
    }
}

/// The items of `list` in the order a consumer taking from the right end
/// meets them (the next one first).
fn queue(server: &RedisServer, list: &str) -> Vec<String> {
    let mut items: Vec<String> = redis::cmd("LRANGE")
        .arg(list)
        .arg(0)
        .arg(-1)
        .query(&mut server.connection())
        .unwrap();
    items.reverse();
    items
}

fn items(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("item-{i:03}")).collect()
}

fn assert_empty(server: &RedisServer, lists: &[&str]) {
    for list in lists {
        assert_eq!(
            queue(server, list),
            Vec::<String>::new(),
            "`{list}` is not empty"
        );
    }
}

/// The give-up reason of a feeder that lost its server: a connection error
/// naming the server's URL.
fn assert_gave_up_on(err: &RunError<Stopped>, server_url: &str) {
    assert!(err.is_gave_up(), "{err:?}");
    let reason = err
        .give_up()
        .unwrap()
        .reason()
        .downcast_ref::<RemoteError>()
        .unwrap_or_else(|| panic!("not a RemoteError: {err:?}"));
    assert!(reason.is_connection(), "{reason}");
    assert_eq!(reason.url_tried(), server_url);
    assert!(err.to_string().contains(server_url), "{err}");
}

#[test]
fn feeders_are_send_and_debug() {
    fn send<T: Send + std::fmt::Debug>() {}
    send::<ListFeeder<String>>();
    send::<PubSubFeeder<Vec<u8>>>();
}

#[test]
fn the_list_feeder_keeps_order_and_every_item_reaches_the_task() {
    let server = RedisServer::start();
    let all = items(0..200);
    // Half before the feeder starts, half while it runs.
    push(&server, "jobs", &all[..100]);
    let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
    let done = run_aside(feeder, reader(all.len(), None));
    push(&server, "jobs", &all[100..]);
    let read = finished(&done).unwrap();
    assert_eq!(read, all);
    assert_empty(&server, &["jobs", "jobs:processing", "jobs:dead"]);
}

#[test]
fn items_the_task_refused_or_never_read_go_back_to_the_list_in_order() {
    let server = RedisServer::start();
    let all = items(0..50);
    for capacity in [1, DEFAULT_CAPACITY] {
        push(&server, "jobs", &all);
        // Reads five items, then returns when told, leaving its inbox full.
        let (go_tx, go) = mpsc::channel::<()>();
        let task = Builder::new()
            .inbox_capacity(capacity)
            .spawn(move |ctx: &Ctx<String>| {
                let mut read = Vec::new();
                while read.len() < 5 {
                    read.push(ctx.recv().map_err(Stopped::from)?);
                }
                let _ = go.recv();
                Ok(read)
            })
            .unwrap();
        let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
        let done = run_aside(feeder, task);
        // The inbox is full and the feeder waits to send one more item:
        // the items in flight (at most `in_flight`) and that one are in the
        // processing list.
        let in_processing = (5 + capacity).min(DEFAULT_CAPACITY) + 1;
        let mut redis = server.connection();
        wait_for("a full inbox", || {
            redis::cmd("LLEN")
                .arg("jobs:processing")
                .query::<usize>(&mut redis)
                .unwrap()
                == in_processing
        });
        go_tx.send(()).unwrap();
        let read = finished(&done).unwrap();
        assert_eq!(read, all[..5]);
        // Nothing lost: the item refused and those never read are back in
        // the list, in order, next in line.
        assert_eq!(queue(&server, "jobs"), all[5..], "inbox of {capacity}");
        assert_empty(&server, &["jobs:processing", "jobs:dead"]);

        // The next feeder hands out the rest, in order.
        let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
        let read = finished(&run_aside(feeder, reader(45, None))).unwrap();
        assert_eq!(read, all[5..]);
        assert_empty(&server, &["jobs", "jobs:processing", "jobs:dead"]);
    }
}

#[test]
fn a_feeder_recovers_what_its_processing_list_holds_first() {
    let server = RedisServer::start();
    // As a feeder that died would leave it: `BLMOVE` puts each item at the
    // processing list's left, so the oldest is at its right.
    push(&server, "jobs:processing", &["a", "b", "c"]);
    push(&server, "jobs", &["d", "e"]);
    let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
    let read = finished(&run_aside(feeder, reader(5, None))).unwrap();
    assert_eq!(read, ["a", "b", "c", "d", "e"]);
    assert_empty(&server, &["jobs", "jobs:processing"]);
}

const CHILD: &str = "SIDETASK_TEST_FEEDER_CHILD";
const CHILD_URL: &str = "SIDETASK_TEST_FEEDER_URL";
/// How many items the child's task reads before it stops reading.
const CHILD_READS: usize = 10;

/// Run only by the test below, in a process of its own: feeds a task that
/// prints each item it reads, reads ten, then sleeps until it is killed.
#[test]
#[ignore = "run by a_killed_feeder_process_loses_nothing in a child process"]
fn feeder_in_a_child_process() {
    let Some(url) = std::env::var_os(CHILD).and(std::env::var_os(CHILD_URL)) else {
        return;
    };
    let client = Client::open(url.to_str().unwrap()).unwrap();
    let task = sidetask::spawn(|ctx: &Ctx<String>| {
        for _ in 0..CHILD_READS {
            println!("READ={}", ctx.recv().map_err(Stopped::from)?);
        }
        println!("PAUSED");
        ctx.sleep(LIMIT * 4)
    });
    let _ = run(&mut ListFeeder::strings(&client, "jobs").block(BLOCK), task);
}

/// A child process, SIGKILLed and reaped when dropped, whatever the test's
/// outcome.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_killed_feeder_process_loses_nothing_and_the_next_feeder_recovers() {
    let server = RedisServer::start();
    let all = items(0..100);
    push(&server, "jobs", &all);

    let mut child = Killed(
        common::this_test_alone("feeder_in_a_child_process", CHILD)
            .env(CHILD_URL, server.url())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader_thread = thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut read_before = Vec::new();
    loop {
        let line = lines.recv_timeout(LIMIT);
        match line.as_deref() {
            Ok("PAUSED") => break,
            Ok(line) => read_before.extend(line.strip_prefix("READ=").map(str::to_owned)),
            Err(_) => panic!("the child feeder did not pause"),
        }
    }
    // Mid-way: the task's inbox is full, and the feeder holds one more
    // item it waits to send.
    let mut redis = server.connection();
    let taken = CHILD_READS + DEFAULT_CAPACITY + 1;
    wait_for("the task's inbox to fill", || {
        redis::cmd("LLEN")
            .arg("jobs")
            .query::<usize>(&mut redis)
            .unwrap()
            == all.len() - taken
    });
    drop(child);
    reader_thread.join().unwrap();
    read_before.extend(
        lines
            .try_iter()
            .filter_map(|l| l.strip_prefix("READ=").map(str::to_owned)),
    );
    assert_eq!(read_before, all[..CHILD_READS]);

    // Nothing lost: every item was read, or is in the list or in the
    // processing list.
    let processing = queue(&server, "jobs:processing");
    let mut everywhere: Vec<String> = read_before.clone();
    everywhere.extend(processing.iter().cloned());
    everywhere.extend(queue(&server, "jobs"));
    for item in &all {
        assert!(everywhere.contains(item), "{item} was lost");
    }

    // The next feeder hands out the processing list first, then the list,
    // in order, until the last item.
    let task = sidetask::spawn(|ctx: &Ctx<String>| {
        let mut read = Vec::new();
        loop {
            let item = ctx.recv().map_err(Stopped::from)?;
            read.push(item.clone());
            if item == "item-099" {
                return Ok(read);
            }
        }
    });
    let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
    let read_after = finished(&run_aside(feeder, task)).unwrap();
    assert!(read_after.is_sorted(), "out of order: {read_after:?}");
    assert_eq!(read_after.first(), processing.first());
    for item in &all {
        assert!(
            read_before.contains(item) || read_after.contains(item),
            "{item} never reached a task"
        );
    }
    // At least once: what is handed out twice is no more than what was in
    // flight.
    let twice = read_after
        .iter()
        .filter(|i| read_before.contains(i))
        .count();
    assert!(
        twice <= DEFAULT_CAPACITY + 1,
        "{twice} items handed out twice"
    );
    assert_empty(&server, &["jobs", "jobs:processing", "jobs:dead"]);
}

#[test]
fn the_list_feeder_returns_within_one_block_period_after_the_task_ends() {
    let server = RedisServer::start();
    let block = Duration::from_millis(400);
    let ended_at = Arc::new(Mutex::new(None));
    let task = {
        let ended_at = Arc::clone(&ended_at);
        sidetask::spawn(move |ctx: &Ctx<String>| {
            let item = ctx.recv().map_err(Stopped::from)?;
            *ended_at.lock().unwrap() = Some(Instant::now());
            Ok(vec![item])
        })
    };
    let feeder = ListFeeder::strings(&client(&server), "jobs").block(block);
    let done = run_aside(feeder, task);
    push(&server, "jobs", &["only"]);
    let read = finished(&done).unwrap();
    let returned_at = Instant::now();
    assert_eq!(read, ["only"]);
    let ended_at = ended_at.lock().unwrap().expect("the task recorded its end");
    let took = returned_at - ended_at;
    assert!(
        took < block + Duration::from_millis(300),
        "the feeder returned {took:?} after the task ended (block {block:?})"
    );
    assert_empty(&server, &["jobs", "jobs:processing"]);
}

#[test]
fn an_item_that_does_not_decode_goes_to_the_dead_letter_list() {
    let server = RedisServer::start();
    let bad: &[u8] = &[0xff, 0xfe];
    push::<&[u8]>(&server, "jobs", &[b"a", bad, b"b"]);
    let feeder = ListFeeder::strings(&client(&server), "jobs")
        .block(BLOCK)
        .dead_letter_list("jobs:rejected");
    let read = finished(&run_aside(feeder, reader(2, None))).unwrap();
    assert_eq!(read, ["a", "b"]);
    let dead: Vec<Vec<u8>> = redis::cmd("LRANGE")
        .arg("jobs:rejected")
        .arg(0)
        .arg(-1)
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(dead, [bad]);
    assert_empty(&server, &["jobs", "jobs:processing", "jobs:dead"]);
}

#[test]
fn the_list_feeder_reconnects_after_a_server_restart() {
    let mut server = RedisServer::start_persistent();
    let all = items(0..20);
    push(&server, "jobs", &all[..10]);
    let (seen_tx, seen) = mpsc::channel();
    let feeder = ListFeeder::strings(&client(&server), "jobs").block(BLOCK);
    let done = run_aside(feeder, reader(all.len(), Some(seen_tx)));
    for _ in 0..10 {
        seen.recv_timeout(LIMIT).expect("the first items are read");
    }
    server.restart();
    // Only a feeder that reconnected can hand these out.
    push(&server, "jobs", &all[10..]);
    let read = finished(&done).unwrap();
    assert_eq!(read, all);
    assert_empty(&server, &["jobs", "jobs:processing", "jobs:dead"]);
}

#[test]
fn the_list_feeder_gives_up_after_its_reconnect_time() {
    let mut server = RedisServer::start();
    let url = server.url();
    push(&server, "jobs", &["first"]);
    let (seen_tx, seen) = mpsc::channel();
    let reconnect_for = Duration::from_secs(1);
    let feeder = ListFeeder::strings(&client(&server), "jobs")
        .block(BLOCK)
        .reconnect_for(reconnect_for);
    let done = run_aside(feeder, reader(1000, Some(seen_tx)));
    seen.recv_timeout(LIMIT).expect("the first item is read");
    // Before the kill: the feeder may see the connection go while `kill`
    // still waits for the server's exit.
    let killed_at = Instant::now();
    server.kill();
    let err = finished(&done).unwrap_err();
    let took = killed_at.elapsed();
    assert_gave_up_on(&err, &url);
    assert!(
        took >= reconnect_for && took < reconnect_for + Duration::from_secs(5),
        "gave up after {took:?}"
    );
}

/// How many clients listen to `channel` (or, with `pattern`, how many
/// pattern subscriptions there are); zero while the server is away.
fn listeners(server: &RedisServer, channel: &str, pattern: bool) -> i64 {
    let Ok(mut con) = redis::Client::open(server.url()).and_then(|c| c.get_connection()) else {
        return 0;
    };
    let answer = if pattern {
        redis::cmd("PUBSUB").arg("NUMPAT").query::<i64>(&mut con)
    } else {
        redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query::<(String, i64)>(&mut con)
            .map(|(_, n)| n)
    };
    answer.unwrap_or(0)
}

fn publish<T: redis::ToRedisArgs>(server: &RedisServer, channel: &str, message: T) {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .exec(&mut server.connection())
        .unwrap();
}

#[test]
fn every_message_published_while_subscribed_reaches_the_task() {
    let server = RedisServer::start();
    let all = items(0..100);
    let feeder = PubSubFeeder::strings(&client(&server), "news").read_timeout(BLOCK);
    let done = run_aside(feeder, reader(all.len(), None));
    wait_for("the subscription", || {
        listeners(&server, "news", false) == 1
    });
    for item in &all {
        publish(&server, "news", item);
    }
    assert_eq!(finished(&done).unwrap(), all);
}

#[test]
fn a_pattern_feeder_hears_every_matching_channel_and_skips_what_does_not_decode() {
    let server = RedisServer::start();
    let feeder = PubSubFeeder::strings(&client(&server), "news.*")
        .pattern()
        .read_timeout(BLOCK);
    let done = run_aside(feeder, reader(2, None));
    wait_for("the subscription", || listeners(&server, "", true) == 1);
    publish(&server, "other", "not this");
    publish::<&[u8]>(&server, "news.bad", &[0xff]);
    publish(&server, "news.a", "a");
    publish(&server, "news.b", "b");
    assert_eq!(finished(&done).unwrap(), ["a", "b"]);
}

#[test]
fn the_pubsub_feeder_subscribes_again_after_a_server_restart() {
    let mut server = RedisServer::start();
    let (seen_tx, seen) = mpsc::channel();
    let feeder = PubSubFeeder::strings(&client(&server), "news").read_timeout(BLOCK);
    let done = run_aside(feeder, reader(2, Some(seen_tx)));
    wait_for("the subscription", || {
        listeners(&server, "news", false) == 1
    });
    publish(&server, "news", "before");
    assert_eq!(seen.recv_timeout(LIMIT).unwrap(), "before");
    server.restart();
    wait_for("the subscription again", || {
        listeners(&server, "news", false) == 1
    });
    publish(&server, "news", "after");
    assert_eq!(finished(&done).unwrap(), ["before", "after"]);
}

#[test]
fn the_pubsub_feeder_returns_within_one_read_timeout_after_the_task_ends() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(400);
    let ended_at = Arc::new(Mutex::new(None));
    let task = {
        let ended_at = Arc::clone(&ended_at);
        sidetask::spawn(move |ctx: &Ctx<String>| {
            let item = ctx.recv().map_err(Stopped::from)?;
            *ended_at.lock().unwrap() = Some(Instant::now());
            Ok(vec![item])
        })
    };
    let feeder = PubSubFeeder::strings(&client(&server), "news").read_timeout(timeout);
    let done = run_aside(feeder, task);
    wait_for("the subscription", || {
        listeners(&server, "news", false) == 1
    });
    publish(&server, "news", "only");
    let read = finished(&done).unwrap();
    let returned_at = Instant::now();
    assert_eq!(read, ["only"]);
    let ended_at = ended_at.lock().unwrap().expect("the task recorded its end");
    let took = returned_at - ended_at;
    assert!(
        took < timeout + Duration::from_millis(300),
        "the feeder returned {took:?} after the task ended (read timeout {timeout:?})"
    );
    wait_for("the feeder to unsubscribe", || {
        listeners(&server, "news", false) == 0
    });
}

#[test]
fn the_pubsub_feeder_gives_up_after_its_reconnect_time() {
    let mut server = RedisServer::start();
    let url = server.url();
    let reconnect_for = Duration::from_secs(1);
    let feeder = PubSubFeeder::strings(&client(&server), "news")
        .read_timeout(BLOCK)
        .reconnect_for(reconnect_for);
    let done = run_aside(feeder, reader(1000, None));
    wait_for("the subscription", || {
        listeners(&server, "news", false) == 1
    });
    // Before the kill: the feeder may see the connection go while `kill`
    // still waits for the server's exit.
    let killed_at = Instant::now();
    server.kill();
    let err = finished(&done).unwrap_err();
    let took = killed_at.elapsed();
    assert_gave_up_on(&err, &url);
    assert!(
        took >= reconnect_for && took < reconnect_for + Duration::from_secs(5),
        "gave up after {took:?}"
    );
}
