//! A client's one reader: a thread that serves every remote handle made
//! from the client with one blocking read of the client's doorbell stream.
//!
//! A worker that appends to a task's event stream rings the doorbell of the
//! task's client with a copy of the entry, its id and the id before it. The
//! reader hands the copy to the handle when it follows what the handle has
//! seen, and otherwise reads the task's stream from the handle's cursor, so
//! that nothing is skipped and nothing is seen twice. A sweep every few
//! seconds reads every handle's stream anyway (a doorbell trimmed, a
//! reconnect) and finds tasks whose record Redis lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use redis::Commands;
use redis::streams::StreamRangeReply;

use super::client::{Client, Conn};
use super::scripts;
use super::stream::{Doorbell, Entry, Sid, text};
use crate::sync::lock;
use crate::task::wire::Served;

/// How long one blocking read waits for the doorbell.
const BLOCK: Duration = Duration::from_secs(1);
/// How often every handle's stream is read anyway.
const SWEEP: Duration = Duration::from_secs(2);
/// How many entries one read takes at most.
const COUNT: usize = 512;

/// What the reader feeds: one handle's view of a task's event stream.
pub(crate) trait Sink: Send + Sync {
    /// The id of the last entry applied.
    fn cursor(&self) -> Sid;
    /// Applies the entry `sid` (`None`: one of no interest, which only
    /// moves the cursor), unless it is not after the cursor.
    fn deliver(&self, sid: Sid, entry: Option<Entry>);
    /// Whether the task is known to be in Redis (submitted, or found by an
    /// attach); it never becomes unknown again.
    fn is_known(&self) -> bool;
    /// The task's record is gone from Redis while the handle waited for
    /// its end (asked only of a task known to be there before the look).
    fn vanished(&self);
    /// Whether the reader can forget the handle (it ended, or was dropped).
    fn is_over(&self) -> bool;
    /// Called at each sweep: writes what a failed write left waiting.
    fn retry(&self);
}

/// The reader of one client.
pub(crate) struct Reader {
    client: Client,
    /// The client's doorbell, read by the reader thread and by a waiting
    /// handle's thread.
    bell: Doorbell,
    sinks: Mutex<HashMap<String, Vec<Weak<dyn Sink>>>>,
}

impl Reader {
    /// Starts the reader thread of `client`.
    pub(crate) fn start(client: &Client) -> Arc<Reader> {
        let bell = client.key(format_args!("n:{}", client.id()));
        let reader = Arc::new(Reader {
            client: client.clone(),
            bell: Doorbell::new(bell, BLOCK, COUNT),
            sinks: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&reader);
        thread::Builder::new()
            .name("sidetask-redis-reader".into())
            .spawn(move || run(&weak))
            .expect("a thread for the Redis reader");
        reader
    }

    /// A handle's thread waits until `until` for what the doorbell brings:
    /// reads it itself if no other thread of this client's handles does,
    /// and hands each entry to its handle.
    pub(crate) fn pull(&self, until: Option<Instant>, since: u64) -> Served {
        self.bell.pull(&self.client, until, since, |con, entry| {
            ring(self, con, entry)
        })
    }

    /// How many doorbell entries were applied so far.
    pub(crate) fn mark(&self) -> u64 {
        self.bell.mark()
    }

    /// Serves `sink` for task `id` from now on. Whatever its stream holds
    /// after its cursor is read by the caller, so that an entry whose
    /// doorbell rang before the registration is not missed.
    pub(crate) fn register(&self, id: &str, sink: &Arc<dyn Sink>) {
        lock(&self.sinks)
            .entry(id.to_owned())
            .or_default()
            .push(Arc::downgrade(sink));
    }

    /// Reads task `id`'s stream after `sink`'s cursor into it, on a
    /// connection of the client's.
    pub(crate) fn catch_up(&self, id: &str, sink: &dyn Sink) {
        match self.client.connection() {
            Ok(mut con) => {
                let key = self.client.key(format_args!("ev:{id}"));
                if fetch(&mut con, &key, sink).is_err() {
                    con.discard();
                }
                self.bell.bump();
            }
            Err(e) => tracing::debug!(error = %e, "could not read a task's events at once"),
        }
    }

    fn sinks_of(&self, id: &str) -> Vec<Arc<dyn Sink>> {
        lock(&self.sinks)
            .get(id)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Forgets the handles that are over.
    fn prune(&self) {
        lock(&self.sinks).retain(|_, v| {
            v.retain(|w| w.upgrade().is_some_and(|s| !s.is_over()));
            !v.is_empty()
        });
    }
}

/// Reads `key` after `sink`'s cursor into it, until the stream's end.
fn fetch(con: &mut Conn, key: &str, sink: &dyn Sink) -> redis::RedisResult<()> {
    loop {
        let from = sink.cursor();
        let reply: StreamRangeReply = con.xrange_count(key, from.after(), "+", COUNT)?;
        let n = reply.ids.len();
        for id in &reply.ids {
            if let Some(sid) = Sid::parse(&id.id) {
                sink.deliver(sid, Entry::read(id));
            }
        }
        if n < COUNT || sink.cursor() == from {
            return Ok(());
        }
    }
}

/// The reader thread: blocks on the doorbell while any handle is served,
/// and ends when the client is dropped.
fn run(reader: &Weak<Reader>) {
    let mut con: Option<Conn> = None;
    let mut swept = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(me) = reader.upgrade() else { return };
        let c = match con.as_mut() {
            Some(c) => c,
            None => match me.client.blocking(Some(BLOCK + Duration::from_secs(5))) {
                Ok(c) => {
                    backoff = Duration::from_millis(50);
                    // Whatever rang while disconnected is read by a sweep.
                    swept = Instant::now() - SWEEP;
                    con.insert(c)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the Redis reader could not connect; retrying");
                    drop(me);
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        if swept.elapsed() >= SWEEP {
            swept = Instant::now();
            me.prune();
            // A failure that leaves the connection whole (the server out
            // of memory, a read-only replica) must not keep the sweep and
            // the reads from running.
            if let Err(e) = keep_bell(&me, c) {
                tracing::warn!(error = %e, "the Redis reader could not keep the client's doorbell");
                if me.client.error(e).is_connection() {
                    con = None;
                    continue;
                }
            }
            let swept_all = sweep(&me, c);
            // What the sweep applied counts as the doorbell's (see `bump`).
            me.bell.bump();
            if let Err(e) = swept_all {
                tracing::debug!(error = %e, "the Redis reader lost its connection");
                con = None;
                continue;
            }
        }
        // A handle's thread that reads the doorbell itself serves every
        // handle meanwhile.
        if let Err(e) = me.bell.read_aside(c, &mut |c, entry| ring(&me, c, entry)) {
            tracing::debug!(error = %e, "the Redis reader lost its connection");
            con = None;
        }
        drop(me);
    }
}

/// One doorbell entry: hands its copy over, or reads the task's stream.
fn ring(reader: &Reader, con: &mut Conn, bell: &redis::streams::StreamId) {
    let (Some(id), Some(sid)) = (
        text(bell, "id"),
        text(bell, "sid").and_then(|s| Sid::parse(&s)),
    ) else {
        return;
    };
    let prev = text(bell, "prev").and_then(|s| Sid::parse(&s));
    let key = reader.client.key(format_args!("ev:{id}"));
    for sink in reader.sinks_of(&id) {
        let cursor = sink.cursor();
        if sid <= cursor {
            continue;
        }
        if prev == Some(cursor) {
            sink.deliver(sid, Entry::read(bell));
            continue;
        }
        if let Err(e) = fetch(con, &key, &*sink) {
            tracing::debug!(error = %e, task = id, "could not read a task's events");
        }
    }
}

/// Keeps the client's doorbell, which workers ring only while it is there
/// (made again if it was missing: what rang it meanwhile is read by the
/// sweep that follows).
fn keep_bell(reader: &Reader, con: &mut Conn) -> redis::RedisResult<()> {
    scripts::KEEP_BELL
        .key(&reader.bell.key)
        .arg(reader.client.key_prefix())
        .invoke::<i64>(con)
        .map(drop)
}

/// Reads every handle's stream, and finds the tasks whose record is gone.
fn sweep(reader: &Reader, con: &mut Conn) -> redis::RedisResult<()> {
    let all: Vec<(String, Arc<dyn Sink>)> = lock(&reader.sinks)
        .iter()
        .flat_map(|(id, v)| v.iter().filter_map(|w| Some((id.clone(), w.upgrade()?))))
        .collect();
    for (id, sink) in all {
        if sink.is_over() {
            continue;
        }
        sink.retry();
        let ev = reader.client.key(format_args!("ev:{id}"));
        fetch(con, &ev, &*sink)?;
        // Known before the look, so that a record written meanwhile is not
        // taken for one lost.
        if sink.is_over() || !sink.is_known() {
            continue;
        }
        let t = reader.client.key(format_args!("t:{id}"));
        if !con.exists::<_, bool>(&t)? {
            sink.vanished();
        }
    }
    Ok(())
}
