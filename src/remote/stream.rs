//! Entries of a task's event stream, and stream ids.

use std::fmt;
use std::sync::Mutex;
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

/// A client's doorbell stream, read by the client's reader thread and
/// also, one at a time, by a handle's thread waiting for what it brings:
/// that thread reads it itself, on a connection of its own, so what it
/// waits for needs no hand-over between threads. Both read the same
/// entries; whoever applies one applies it once (each entry says the id
/// before it, checked against a cursor).
pub(crate) struct Doorbell {
    pub(crate) key: String,
    /// The id of the last entry read, by either.
    last: Mutex<String>,
    /// The waiting thread's connection, held while it reads (so that one
    /// reads at a time).
    direct: Mutex<Option<Conn>>,
    /// How long one blocking read waits at most.
    block: Duration,
}

impl Doorbell {
    pub(crate) fn new(key: String, block: Duration) -> Doorbell {
        Doorbell {
            key,
            last: Mutex::new("0-0".to_owned()),
            direct: Mutex::new(None),
            block,
        }
    }

    /// The id of the last entry read.
    pub(crate) fn last(&self) -> String {
        lock(&self.last).clone()
    }

    /// Records that the stream was read up to entry `id`.
    pub(crate) fn read_up_to(&self, id: &str) {
        let mut last = lock(&self.last);
        if Sid::parse(id) > Sid::parse(&last) {
            id.clone_into(&mut last);
        }
    }

    /// A waiting thread reads the doorbell until `until`, unless another
    /// one does (`Busy`), handing each entry to `apply` with the
    /// connection it came on.
    pub(crate) fn pull(
        &self,
        client: &Client,
        until: Option<Instant>,
        count: usize,
        mut apply: impl FnMut(&mut Conn, &StreamId),
    ) -> Served {
        let Ok(mut direct) = self.direct.try_lock() else {
            // Another thread reads (or one panicked reading: the reader
            // thread serves).
            return Served::Busy;
        };
        self.pull_alone(&mut direct, client, until, count, &mut apply)
    }

    fn pull_alone(
        &self,
        direct: &mut Option<Conn>,
        client: &Client,
        until: Option<Instant>,
        count: usize,
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
        if direct.is_none() {
            match client.blocking(Some(self.block + Duration::from_secs(5))) {
                Ok(c) => *direct = Some(c),
                Err(_) => return Served::Busy,
            }
        }
        let Some(con) = direct.as_mut() else {
            return Served::Busy;
        };
        let from = self.last();
        let opts = StreamReadOptions::default()
            // At least a millisecond: 0 would block for ever.
            .block((block.as_millis() as usize).max(1))
            .count(count);
        let reply: redis::RedisResult<Option<StreamReadReply>> =
            redis::Commands::xread_options(con, &[&self.key], &[&from], &opts);
        match reply {
            Ok(Some(reply)) => {
                for entry in reply.keys.iter().flat_map(|k| &k.ids) {
                    self.read_up_to(&entry.id);
                    apply(con, entry);
                }
                Served::Wake
            }
            Ok(None) if until.is_some_and(|u| Instant::now() >= u) => Served::TimedOut,
            Ok(None) => Served::Wake,
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
