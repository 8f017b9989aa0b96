//! Named tasks on remote workers through Redis, and feeders that bring a
//! Redis list's or channel's items into a local task.
//!
//! It needs Redis 6.2 or later (its scripts append to streams with
//! `NOMKSTREAM`; the list feeder moves items with `BLMOVE`).

mod client;
mod end;
mod error;
mod feed;
mod handle;
mod inspect;
mod reader;
mod scripts;
mod stream;
mod worker;

pub use client::{Client, DEFAULT_NAMESPACE, DEFAULT_URL, URL_VAR};
pub use error::RemoteError;
pub use feed::{DEFAULT_BLOCK, DEFAULT_RECONNECT_FOR, ListFeeder, PubSubFeeder};
pub use handle::{DEFAULT_MAX_MESSAGE, Remote, RemoteTask};
pub use inspect::{Inspect, QueueInfo, TaskInfo, WorkerInfo};
pub use worker::Worker;

/// A new id, random, below 2^53 (a number every JSON reader keeps whole)
/// and above 2^32 (far from a process's own task ids).
pub(crate) fn fresh_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    (1 << 32) + h.finish() % ((1 << 53) - (1 << 32))
}
