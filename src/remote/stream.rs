//! Entries of a task's event stream, and stream ids.

use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};

use super::client::{Client, Conn};
use crate::sync::lock;
use crate::task::wire::Served;

/// A stream entry's id: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Sid(pub(crate) u64, pub(crate) u64);

impl Sid {
    /// The id before every entry.
    pub(crate) const ZERO: Sid = Sid(0, 0);

    pub(crate) fn parse(text: &str) -> Option<Sid> {
        let (ms, seq) = text.split_once('-')?;
        Some(Sid(ms.parse().ok()?, seq.parse().ok()?))
    }

    /// The exclusive start of a range after this id (`(` + id).
    pub(crate) fn after(self) -> String {
        format!("({self}")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// What an event-stream entry says.
#[derive(Debug)]
pub(crate) enum Entry {
    /// An event, numbered from 1.
    Event { n: u64, bytes: Vec<u8> },
    /// The task has read this many messages, and the client waited for it.
    Credit(u64),
    /// An attempt was lost and the task was queued again.
    Requeued(u32),
    /// The task ended, having read `read` messages.
    End {
        kind: String,
        data: Vec<u8>,
        read: Option<u64>,
    },
}

/// The bytes of field `name`, if it is there.
pub(crate) fn field(id: &StreamId, name: &str) -> Option<Vec<u8>> {
    match id.map.get(name)? {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// Field `name` as text.
pub(crate) fn text(id: &StreamId, name: &str) -> Option<String> {
    field(id, name).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn number<N: std::str::FromStr>(id: &StreamId, name: &str) -> Option<N> {
    text(id, name)?.parse().ok()
}

impl Entry {
    /// Reads an entry; `None` for one this crate does not know.
    pub(crate) fn read(id: &StreamId) -> Option<Entry> {
        if let Some(bytes) = field(id, "e") {
            return Some(Entry::Event {
                n: number(id, "n").unwrap_or(0),
                bytes,
            });
        }
        if let Some(kind) = text(id, "end") {
            return Some(Entry::End {
                kind,
                data: field(id, "d").unwrap_or_default(),
                read: number(id, "nr"),
            });
        }
        if let Some(n) = number(id, "a") {
            return Some(Entry::Credit(n));
        }
        number(id, "rq").map(Entry::Requeued)
    }
}

/// How long after a waiting thread's read the background reader still
/// leaves the doorbell to waiting threads: a thread that waits again soon
/// (the next `recv` of a loop) reads it alone, so an entry wakes one thread
/// rather than two.
const STAND_ASIDE: Duration = Duration::from_millis(2);

/// A doorbell stream (a client's, or a worker's), read by a background
/// reader thread and also, one at a time, by a thread waiting for what it
/// brings (a handle's, or a task body's): that thread reads it itself, on a
/// connection of its own, so what it waits for needs no hand-over between
/// threads. Whoever reads an entry applies it to whichever task it is for,
/// once (each entry says the id before it, checked against a cursor).
///
/// While waiting threads read it, the background reader stands aside
/// ([`stand_aside`](Doorbell::stand_aside)): every blocked read of a stream
/// is woken by each entry, and on a small machine the second wake-up costs
/// the first one its time. It reads again once no waiting thread has read
/// for [`STAND_ASIDE`], so an entry for a task nobody waits on is applied
/// that much later at most.
pub(crate) struct Doorbell {
    pub(crate) key: String,
    /// How far the stream was read and applied, by either.
    rung: Mutex<Rung>,
    /// The waiting thread's connection, held while it reads (so that one
    /// reads at a time).
    direct: Mutex<Option<Conn>>,
    /// Whether a waiting thread reads, and when one last stopped.
    pulls: Mutex<Pulls>,
    /// Signalled when a waiting thread stops reading.
    pulled: Condvar,
    /// How long one blocking read waits at most.
    block: Duration,
    /// How many entries one read takes at most.
    count: usize,
}

struct Rung {
    /// The id of the last entry applied.
    last: String,
    /// How many entries were applied, a count that only grows: a waiting
    /// thread that finds it grew since it last looked at its mailbox may
    /// have been brought what it waits for, by the other reader, after it
    /// looked; it looks again rather than block.
    applied: u64,
}

struct Pulls {
    /// A waiting thread reads now.
    reading: bool,
    /// When the last one that read stopped.
    stopped: Option<Instant>,
    /// The background reader waits for the one reading to stop (and is
    /// signalled then; otherwise nobody signals, so a waiting thread's
    /// read costs no wake-up of the reader).
    watched: bool,
}

/// Says a waiting thread stopped reading, however it leaves; and, if it
/// did read (`read`), when: a turn that read nothing (a deadline already
/// past, an entry applied since the caller's mark) does not keep the
/// background reader aside, so that a loop of such turns (`try_recv` in a
/// loop) cannot starve the doorbell.
struct Reading<'a> {
    bell: &'a Doorbell,
    /// The doorbell's own connection, held while the turn lasts.
    direct: MutexGuard<'a, Option<Conn>>,
    read: bool,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut pulls = lock(&self.bell.pulls);
        pulls.reading = false;
        if self.read {
            pulls.stopped = Some(Instant::now());
        }
        if pulls.watched {
            self.bell.pulled.notify_all();
        }
    }
}

impl Doorbell {
    pub(crate) fn new(key: String, block: Duration, count: usize) -> Doorbell {
        Doorbell {
            key,
            rung: Mutex::new(Rung {
                last: "0-0".to_owned(),
                applied: 0,
            }),
            direct: Mutex::new(None),
            pulls: Mutex::new(Pulls {
                reading: false,
                stopped: None,
                watched: false,
            }),
            pulled: Condvar::new(),
            block,
            count,
        }
    }

    /// The background reader's turn: unless waiting threads read (it then
    /// stands aside, at most one block), one blocking read after the last
    /// entry applied, each entry it brings applied with `apply`.
    pub(crate) fn read_aside(
        &self,
        con: &mut Conn,
        apply: &mut dyn FnMut(&mut Conn, &StreamId),
    ) -> redis::RedisResult<()> {
        if self.stand_aside(self.block) {
            self.read(con, &self.last(), self.block, apply)?;
        }
        Ok(())
    }

    /// One blocking read on `con` after entry `from`, at most `block`: each
    /// entry it brings is applied with `apply`, then recorded as applied.
    /// `Ok(false)` if the wait ended with nothing.
    fn read(
        &self,
        con: &mut Conn,
        from: &str,
        block: Duration,
        apply: &mut dyn FnMut(&mut Conn, &StreamId),
    ) -> redis::RedisResult<bool> {
        let opts = StreamReadOptions::default()
            // At least a millisecond: 0 would block for ever.
            .block((block.as_millis() as usize).max(1))
            .count(self.count);
        let reply: Option<StreamReadReply> =
            redis::Commands::xread_options(con, &[&self.key], &[from], &opts)?;
        let Some(reply) = reply else {
            return Ok(false);
        };
        for entry in reply.keys.iter().flat_map(|k| &k.ids) {
            apply(con, entry);
            self.applied(&entry.id);
        }
        Ok(true)
    }

    /// Waits, at most `most`, while a waiting thread reads or read within
    /// [`STAND_ASIDE`]; `true` if the background reader should read now.
    fn stand_aside(&self, most: Duration) -> bool {
        let until = Instant::now() + most;
        let mut pulls = lock(&self.pulls);
        loop {
            let now = Instant::now();
            let resume = match pulls.stopped {
                _ if pulls.reading => until,
                Some(stopped) if now < stopped + STAND_ASIDE => stopped + STAND_ASIDE,
                _ => return true,
            };
            if now >= until {
                return false;
            }
            pulls.watched = pulls.reading;
            pulls = self
                .pulled
                .wait_timeout(pulls, resume.min(until) - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            pulls.watched = false;
        }
    }

    /// The id of the last entry applied.
    fn last(&self) -> String {
        lock(&self.rung).last.clone()
    }

    /// How many entries were applied so far (see [`Wire::mark`]).
    ///
    /// [`Wire::mark`]: crate::task::wire::Wire::mark
    pub(crate) fn mark(&self) -> u64 {
        lock(&self.rung).applied
    }

    /// Counts what was applied by other means (a read of a task's own
    /// stream), so that a waiting thread whose mark came before looks at
    /// its mailbox again rather than block.
    pub(crate) fn bump(&self) {
        lock(&self.rung).applied += 1;
    }

    /// Records that entry `id` was applied (after it was: a waiting thread
    /// that reads from the last id applied must not skip one that is still
    /// being applied).
    fn applied(&self, id: &str) {
        let mut rung = lock(&self.rung);
        rung.applied += 1;
        if Sid::parse(id) > Sid::parse(&rung.last) {
            id.clone_into(&mut rung.last);
        }
    }

    /// A waiting thread reads the doorbell until `until`, unless another
    /// one does (`Busy`) or an entry was applied since its [`mark`]
    /// `since` (`Wake`, at once), handing each entry to `apply` with the
    /// connection it came on.
    ///
    /// [`mark`]: Doorbell::mark
    pub(crate) fn pull(
        &self,
        client: &Client,
        until: Option<Instant>,
        since: u64,
        mut apply: impl FnMut(&mut Conn, &StreamId),
    ) -> Served {
        let Ok(direct) = self.direct.try_lock() else {
            // Another thread reads (or one panicked reading: the reader
            // thread serves).
            return Served::Busy;
        };
        lock(&self.pulls).reading = true;
        let mut turn = Reading {
            bell: self,
            direct,
            read: false,
        };
        self.pull_alone(&mut turn, client, until, since, &mut apply)
    }

    fn pull_alone(
        &self,
        turn: &mut Reading<'_>,
        client: &Client,
        until: Option<Instant>,
        since: u64,
        apply: &mut dyn FnMut(&mut Conn, &StreamId),
    ) -> Served {
        let block = match until {
            None => self.block,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Served::TimedOut;
                }
                left.min(self.block)
            }
        };
        let direct = &mut *turn.direct;
        if direct.is_none() {
            match client.blocking(Some(self.block + Duration::from_secs(5))) {
                Ok(c) => *direct = Some(c),
                Err(_) => return Served::Busy,
            }
        }
        let Some(con) = direct.as_mut() else {
            return Served::Busy;
        };
        let from = {
            let rung = lock(&self.rung);
            if rung.applied != since {
                return Served::Wake;
            }
            rung.last.clone()
        };
        turn.read = true;
        match self.read(con, &from, block, apply) {
            Ok(true) => Served::Wake,
            Ok(false) if until.is_some_and(|u| Instant::now() >= u) => Served::TimedOut,
            Ok(false) => Served::Wake,
            Err(e) => {
                tracing::debug!(error = %e, "a waiting thread's read of a doorbell failed");
                *direct = None;
                Served::Busy
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_by_time_then_sequence() {
        let a = Sid::parse("5-1").unwrap();
        let b = Sid::parse("5-2").unwrap();
        let c = Sid::parse("10-0").unwrap();
        assert!(a < b && b < c && Sid::ZERO < a);
        assert_eq!(c.to_string(), "10-0");
        assert_eq!(Sid::parse("x-1"), None);
    }
}
