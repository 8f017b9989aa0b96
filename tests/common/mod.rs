//! Fixtures shared by the integration tests: bounded waits, so that a hang
//! fails a test instead of stalling the suite.

#![allow(dead_code)]

pub mod process_tasks;

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test counts it as a hang.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; fails the test after [`LIMIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on its own thread and returns its result, failing the test if it
/// takes longer than `limit` (for calls that have no timed variant).
pub fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => panic::resume_unwind(p),
        Err(_) => panic!("timed out after {limit:?}"),
    }
}
