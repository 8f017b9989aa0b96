//! Small synchronisation pieces shared by the handle and the backends, and
//! the primitives of the mailbox's handshake.
//!
//! The mailbox takes its atomics, its mutexes and its thread parking from
//! [`shim`] rather than from `std`. In a normal build they are `std`'s own,
//! re-exported (no wrapper, no indirection). In the model-checking build
//! (the crate's own tests with `RUSTFLAGS="--cfg loom"`: loom is a
//! dev-dependency, so the swap is `cfg(all(test, loom))`, as in tokio) they
//! are [loom]'s, so that loom tests can run the mailbox's handshake through
//! every interleaving (see the mailbox's `loom_tests`). Three things differ
//! there:
//!
//! - [`spin_until`] asks once instead of spinning on a clock (loom has no
//!   clock, and a spin of unbounded length has unbounded interleavings);
//! - [`shim::thread::park_timeout`] parks until woken (the loom tests wait
//!   without deadlines);
//! - [`shim::seq_cst_order`] is a `SeqCst` fence. Loom regards `SeqCst`
//!   loads and stores as `AcqRel` (its documented limitation), which would
//!   let it find executions that the single total order of `SeqCst`
//!   accesses rules out; the call marks each place where the mailbox relies
//!   on that order, and in a normal build it is nothing.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(all(test, loom)))]
use std::hint;
use std::sync::Mutex;
#[cfg(not(all(test, loom)))]
use std::time::{Duration, Instant};

/// The primitives of the mailbox's handshake: `std`'s, re-exported, or
/// loom's in the model-checking build.
pub(crate) mod shim {
    #[cfg(not(all(test, loom)))]
    pub(crate) use super::lock;
    #[cfg(not(all(test, loom)))]
    pub(crate) use std::sync::{Mutex, atomic};

    #[cfg(all(test, loom))]
    pub(crate) use loom::sync::{Mutex, atomic};

    /// Locks a loom mutex, ignoring poison.
    #[cfg(all(test, loom))]
    pub(crate) fn lock<T>(m: &Mutex<T>) -> loom::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Thread handles and parking.
    pub(crate) mod thread {
        #[cfg(not(all(test, loom)))]
        pub(crate) use std::thread::{Thread, ThreadId, current, park, park_timeout, yield_now};

        #[cfg(all(test, loom))]
        pub(crate) use loom::thread::{Thread, ThreadId, current, park, yield_now};

        /// Loom has no clock: a timed park parks until woken.
        #[cfg(all(test, loom))]
        pub(crate) fn park_timeout(_: std::time::Duration) {
            park();
        }
    }

    /// Spins for a moment: `std`'s hint, or a yield to another of loom's
    /// threads.
    #[inline]
    pub(crate) fn spin_loop() {
        #[cfg(not(all(test, loom)))]
        std::hint::spin_loop();
        #[cfg(all(test, loom))]
        loom::hint::spin_loop();
    }

    /// Marks a place where a handshake relies on the single total order of
    /// `SeqCst` accesses (a Dekker-style "I wrote mine, then I read
    /// yours"): nothing in a normal build, where the accesses themselves
    /// give that order; a `SeqCst` fence under loom, which models them
    /// weaker.
    #[inline(always)]
    pub(crate) fn seq_cst_order() {
        #[cfg(all(test, loom))]
        atomic::fence(atomic::Ordering::SeqCst);
    }
}

/// How long a waiter spins before it blocks.
///
/// Waking a parked thread costs tens of microseconds on a busy virtual
/// machine, while the other side of a hand-off usually answers within a
/// microsecond or two. A
/// waiter first checks in a tight loop, then yields its core while checking,
/// and parks only after `SPIN_FOR` has passed. The window is longer than a
/// wake-up, so that two sides that take turns never fall into waking each
/// other from the kernel on every turn.
#[cfg(not(all(test, loom)))]
const SPIN_FOR: Duration = Duration::from_micros(100);
#[cfg(not(all(test, loom)))]
const TIGHT_STEPS: u32 = 6;

/// Calls `ready` until it returns `Some`, spinning then yielding; gives up
/// with `None` after [`SPIN_FOR`], and the caller then blocks.
#[cfg(not(all(test, loom)))]
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
        std::thread::yield_now();
    }
}

/// Under loom: asks `ready` once (a spin's first look, without the clock
/// that would end it).
#[cfg(all(test, loom))]
pub(crate) fn spin_until<R>(mut ready: impl FnMut() -> Option<R>) -> Option<R> {
    ready()
}

/// Locks a mutex, ignoring poison: every value behind our mutexes is valid
/// at every unlock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}
