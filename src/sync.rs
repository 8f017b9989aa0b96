//! Small synchronisation pieces shared by the handle and the backends.

use std::hint;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a waiter spins before it blocks.
///
/// Waking a parked thread costs tens of microseconds on a busy virtual
/// machine, while the other side of a hand-off usually answers within a
/// microsecond or two. A
/// waiter first checks in a tight loop, then yields its core while checking,
/// and parks only after `SPIN_FOR` has passed. The window is longer than a
/// wake-up, so that two sides that take turns never fall into waking each
/// other from the kernel on every turn.
const SPIN_FOR: Duration = Duration::from_micros(100);
const TIGHT_STEPS: u32 = 6;

/// Calls `ready` until it returns `Some`, spinning then yielding; gives up
/// with `None` after [`SPIN_FOR`], and the caller then blocks.
#[inline]
pub(crate) fn spin_until<R>(mut ready: impl FnMut() -> Option<R>) -> Option<R> {
    for step in 0..TIGHT_STEPS {
        if let Some(r) = ready() {
            return Some(r);
        }
        for _ in 0..1u32 << step {
            hint::spin_loop();
        }
    }
    let start = Instant::now();
    loop {
        if let Some(r) = ready() {
            return Some(r);
        }
        if start.elapsed() >= SPIN_FOR {
            return None;
        }
        thread::yield_now();
    }
}

/// Locks a mutex, ignoring poison: every value behind our mutexes is valid
/// at every unlock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}
