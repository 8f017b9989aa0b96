//! Entries of a task's event stream, and stream ids.

use std::fmt;

use redis::Value;
use redis::streams::StreamId;

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
