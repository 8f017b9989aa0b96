//! A task's two bounded queues and its flags.
//!
//! The inbox carries messages from the handle to the task, the outbox events
//! from the task to the handle; the flags say whether a stop was asked for,
//! whether the task is done, whether the handle is gone. Every operation is
//! one *decision* ("deliver, or give back because the task is stopping"),
//! written once and taken by a blocking caller (`Mailbox::wait`) and by a
//! future (the `poll` module) alike.
//!
//! # Glossary
//!
//! - **inbox**: the messages from the handle to the task. A lock-free queue
//!   (`queue::Queue`, made at the first message) behind the **given back**
//!   ones.
//! - **given back**: messages put back at the front of the inbox
//!   (`returned`): those a process child had not read. They are taken before
//!   the queue's and count against the capacity.
//! - **counted inbox**: an inbox too large for a bounded queue (over
//!   `ARRAY_BYTES`): its queue is unbounded and `inbox_len` keeps the
//!   capacity.
//! - **outbox**: the events from the task to the handle, a `VecDeque` under
//!   the state lock.
//! - **flags**: [`STOP`], [`DONE`], … bits kept under the state lock
//!   (`State::flags`) with a lock-free mirror (`Mailbox::flags`).
//! - **waiter**: a parked thread or a future's waker in the waiter list
//!   (under the lock), woken at the next change of state; it then tries
//!   again.
//! - **has_waiters**: whether a waiter on the inbox is (about to be)
//!   registered; read, without the lock, by the side that changed the inbox
//!   without it.
//! - **pushing**: how many sends are between their check of the flags and
//!   the end of their push.
//! - **settle**: waiting, under the lock, for `pushing` to fall to zero,
//!   before deciding on what the inbox holds after a close.
//! - **decision**: one operation's attempt under the lock (`attempt_*`),
//!   with, on the inbox, a lock-free first try (`*_now`): it completes, or
//!   says that the caller must wait for a change of state.
//!
//! # Invariants
//!
//! 1. The flags change only under the state lock, with their mirror in the
//!    same critical section, and a flag once set is never cleared.
//! 2. The outbox, the flags and the waiter list change only under the lock;
//!    whoever changes what a waiter may wait for marks the state
//!    (`State::wake`), and every waiter is woken once the lock is let go, so
//!    a woken thread never finds it still held.
//! 3. A send counts itself in `pushing` before it reads the flags, and
//!    uncounts itself after its push. Whoever decides on the inbox after a
//!    close (a `recv` that would report the end, a drain) settles first. So
//!    a message is either in the inbox before the close or refused after
//!    it: never pushed after the inbox was found empty for good.
//! 4. A waiter on the inbox sets `has_waiters`, then a `SeqCst` fence, then
//!    makes its last attempt before it registers (under the lock). A side
//!    that changes the inbox without the lock makes its change, then a
//!    `SeqCst` fence, then reads `has_waiters`. So either the waiter's
//!    attempt sees the change, or the changer sees the waiter and wakes it
//!    through the lock: no wake-up is lost.
//! 5. `has_waiters` is cleared only under the lock, when the waiter list is
//!    emptied by a wake-up, or by a waiter that completes while the list is
//!    empty.
//! 6. A message or an event is in one place at a time: with its sender, in
//!    a queue, or with its reader. Every refusal gives it back
//!    ([`PushError`]), and a receive takes it out only when it returns it.
//!
//! Invariants 3 and 4 are model-checked under loom (`loom_tests`, built
//! with `RUSTFLAGS="--cfg loom"`; the primitives come from
//! `crate::sync::shim`).
//!
//! # Waiting
//!
//! A caller first tries; then spins on lock-free mirrors of the lengths and
//! flags (the other side usually answers within microseconds, while a
//! kernel wake-up costs tens of them); then registers its thread in the
//! waiter list and parks. There is no polling interval anywhere: a stop
//! wakes a parked waiter at once. A future waits in the same list, with its
//! task's waker instead of a thread (the `poll` module), so one change of
//! state wakes threads and futures alike.
//!
//! The inbox, the busiest queue, is lock-free so that a sender and its task
//! do not meet on a lock for each message; invariants 3 and 4 keep its
//! decisions exact all the same.
//!
//! An empty queue holds no allocation (the inbox's queue is made at the
//! first message), so an idle task costs a few hundred bytes besides its
//! thread.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sync::shim::atomic::{self, AtomicBool, AtomicU8, AtomicUsize, Ordering};
use crate::sync::shim::thread::{self, Thread};
use crate::sync::shim::{Mutex, lock, seq_cst_order, spin_loop};
use crate::sync::spin_until;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(feature = "tokio")]
mod poll;
mod queue;

use queue::Queue;

/// The most memory an inbox's bounded queue may take (all of it at the
/// first message); a larger inbox grows as messages come instead.
const ARRAY_BYTES: usize = 256 << 10;

/// What one message takes in a bounded queue (its slot: the message and a
/// stamp, aligned).
fn slot_size<In>() -> usize {
    let align = std::mem::align_of::<In>().max(std::mem::align_of::<usize>());
    (std::mem::size_of::<In>() + std::mem::size_of::<usize>()).next_multiple_of(align)
}

/// The task was asked to stop.
pub(crate) const STOP: u8 = 1;
/// The task has ended and its outcome is stored.
pub(crate) const DONE: u8 = 2;
/// The handle is gone (dropped or detached): no message can come in, no
/// event can be read.
pub(crate) const HANDLE_GONE: u8 = 4;
/// No message will come in any more (a chain's upstream stage ended): the
/// task reads what is left, then its `recv` reports the end.
pub(crate) const INBOX_CLOSED: u8 = 8;
/// A hard kill was asked for (with `STOP`): places that can, end the task
/// at once.
pub(crate) const KILL: u8 = 16;
/// Nobody waits to read the outbox any more (a task put in a group): an
/// emit waiting for room in a full outbox gives its event back.
pub(crate) const OUTBOX_UNREAD: u8 = 32;

/// How long an operation may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    No,
    Forever,
    Until(Instant),
}

impl Wait {
    /// Until `timeout` from now; `Forever` if that is past what an
    /// `Instant` can hold.
    pub(crate) fn after(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// What a waiter waits on may change: under the lock only, or (the inbox)
/// without it too, when the waiter must announce itself (invariant 4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    Locked,
    Inbox,
}

// In declaration order (`repr(C)`), so that the senders' count is kept
// apart from the rest.
#[repr(C)]
pub(crate) struct Mailbox<In, Ev> {
    state: Mutex<State<Ev>>,
    // The inbox's messages, in a lock-free queue made at the first message:
    // sender and task do not meet on a lock for each message. A bounded
    // queue up to `ARRAY_BYTES` (it keeps its own count, apart from both
    // sides' hot data); beyond, an unbounded one (it allocates as messages
    // come) whose messages `inbox_len` counts against the capacity.
    inbox: Queue<In>,
    // Messages given back (a process task's unread ones), before the queue.
    returned: Mutex<VecDeque<In>>,
    returned_len: AtomicUsize,
    // Whether any thread is (about to be) registered as a waiter on the
    // inbox; lets the inbox's two sides change it without the state lock.
    has_waiters: AtomicBool,
    inbox_cap: usize,
    outbox_cap: usize,
    // Whether the task's side spins before it parks when its inbox is
    // empty (not where the other side is a kernel wake-up away anyway: a
    // process child's body; spinning there only takes a core from the
    // threads that do the work).
    spin_in: AtomicBool,
    // The flags' lock-free mirror, for spinning waiters and the inbox's two
    // sides; written under the lock.
    flags: AtomicU8,
    // How many messages a counted inbox holds; changed without the lock.
    inbox_len: AtomicUsize,
    // Whether the inbox is too large for a bounded queue (over
    // `ARRAY_BYTES`), and `inbox_len` keeps its capacity.
    counted: bool,
    outbox_len: AtomicUsize,
    // Two cache lines (a pair, as prefetched) between what the task's side
    // reads for each message and `pushing`, which senders write for each
    // message; without aligning the whole mailbox to cache lines, which
    // would make every spawn's allocation slower.
    _apart: [u8; 128],
    // Sends between their check of the flags and their push: a side that
    // decides on what the inbox holds after a close waits for them first
    // (`settle`), so a message is either in before the close or refused.
    pushing: AtomicUsize,
}

struct State<Ev> {
    outbox: VecDeque<Ev>,
    flags: u8,
    waiters: Waiters,
    // Set by a change of state: the waiters are woken once the lock is let
    // go, so that a woken thread never finds it still held.
    notify: bool,
}

impl<Ev> State<Ev> {
    fn wake(&mut self) {
        self.notify = true;
    }
}

/// Someone waiting for a change of state: a parked thread, or an async
/// task to be woken through its waker.
enum Waiter {
    Thread(Thread),
    #[cfg(feature = "tokio")]
    Task(std::task::Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            #[cfg(feature = "tokio")]
            Waiter::Task(w) => w.wake(),
        }
    }

    fn is_thread(&self, id: thread::ThreadId) -> bool {
        match self {
            Waiter::Thread(t) => t.id() == id,
            #[cfg(feature = "tokio")]
            Waiter::Task(_) => false,
        }
    }
}

/// The waiter list. The first waiter is kept inline: most of the time one
/// side waits for the other, and then registering and waking allocate
/// nothing.
#[derive(Default)]
struct Waiters {
    first: Option<Waiter>,
    rest: Vec<Waiter>,
}

impl Waiters {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push(&mut self, waiter: Waiter) {
        match self.first {
            None => self.first = Some(waiter),
            Some(_) => self.rest.push(waiter),
        }
    }

    /// Keeps the waiters for which `keep` holds (in any order).
    fn retain(&mut self, keep: impl Fn(&Waiter) -> bool) {
        self.rest.retain(&keep);
        if self.first.as_ref().is_some_and(|w| !keep(w)) {
            self.first = self.rest.pop();
        }
    }

    #[cfg(feature = "tokio")]
    fn iter(&self) -> impl Iterator<Item = &Waiter> {
        self.first.iter().chain(&self.rest)
    }

    fn wake_all(self) {
        for w in self.first.into_iter().chain(self.rest) {
            w.wake();
        }
    }
}

/// Why a message could not go into the inbox; the message is given back.
pub(crate) enum PushError<T> {
    /// The queue is full (and the wait, if any, ran out).
    Full(T),
    /// Nobody will take it: the task is stopping or done, or (for the
    /// outbox) the handle is gone.
    Closed(T),
    /// The outbox was full and a stop was asked for while waiting.
    Stopped(T),
}

/// Why a push was refused for good, decided under the lock while the value
/// stays with its sender.
#[derive(Clone, Copy)]
enum Refusal {
    Closed,
    Stopped,
    Full,
}

/// A push's decision, as its caller reports it: `value` leaves its option
/// only when delivered, and comes back in the error otherwise.
fn delivered<T>(done: Result<(), Refusal>, value: &mut Option<T>) -> Result<(), PushError<T>> {
    done.map_err(|refusal| {
        let value = value.take().expect("kept until refused");
        match refusal {
            Refusal::Closed => PushError::Closed(value),
            Refusal::Stopped => PushError::Stopped(value),
            Refusal::Full => PushError::Full(value),
        }
    })
}

/// Why nothing came out of a queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PopError {
    /// Nothing waiting (and the wait, if any, ran out).
    Empty,
    /// The task was asked to stop (inbox only).
    Stopped,
    /// Nothing can ever come: the other side is gone and the queue empty.
    Disconnected,
}

impl<In, Ev> Mailbox<In, Ev> {
    /// An empty mailbox (`renew` makes one the same, in place: a field
    /// added here is reset there too).
    #[inline(always)]
    pub(crate) fn new(inbox_cap: usize, outbox_cap: usize) -> Self {
        Mailbox {
            state: Mutex::new(State {
                outbox: VecDeque::new(),
                flags: 0,
                waiters: Waiters::default(),
                notify: false,
            }),
            inbox: Queue::new(),
            _apart: [0; 128],
            pushing: AtomicUsize::new(0),
            returned: Mutex::new(VecDeque::new()),
            returned_len: AtomicUsize::new(0),
            has_waiters: AtomicBool::new(false),
            inbox_cap: inbox_cap.max(1),
            outbox_cap: outbox_cap.max(1),
            spin_in: AtomicBool::new(true),
            flags: AtomicU8::new(0),
            inbox_len: AtomicUsize::new(0),
            counted: inbox_cap.saturating_mul(slot_size::<In>()) > ARRAY_BYTES,
            outbox_len: AtomicUsize::new(0),
        }
    }

    /// Makes this mailbox as [`new`](Mailbox::new) makes one, in place, for
    /// a task's state reused by the next task (nobody else holds it): what
    /// is left in it is dropped.
    pub(crate) fn renew(&mut self, inbox_cap: usize, outbox_cap: usize) {
        {
            #[cfg(not(all(test, loom)))]
            let state = self
                .state
                .get_mut()
                .unwrap_or_else(|poison| poison.into_inner());
            #[cfg(all(test, loom))]
            let mut state = lock(&self.state);
            state.outbox.clear();
            state.flags = 0;
            state.waiters = Waiters::default();
            state.notify = false;
        }
        self.inbox = Queue::new();
        if self.returned_len.load(Ordering::Relaxed) != 0 {
            lock(&self.returned).clear();
            self.returned_len.store(0, Ordering::Relaxed);
        }
        self.has_waiters.store(false, Ordering::Relaxed);
        self.inbox_cap = inbox_cap.max(1);
        self.outbox_cap = outbox_cap.max(1);
        self.spin_in.store(true, Ordering::Relaxed);
        self.flags.store(0, Ordering::Relaxed);
        self.inbox_len.store(0, Ordering::Relaxed);
        self.counted = inbox_cap.saturating_mul(slot_size::<In>()) > ARRAY_BYTES;
        self.outbox_len.store(0, Ordering::Relaxed);
        self.pushing.store(0, Ordering::Relaxed);
    }

    /// Runs `f` under the lock, then wakes the waiters if `f` changed the
    /// state.
    fn locked<R>(&self, f: impl FnOnce(&mut State<Ev>) -> R) -> R {
        let mut s = lock(&self.state);
        let r = f(&mut s);
        if s.notify && !s.waiters.is_empty() {
            s.notify = false;
            let waiters = std::mem::take(&mut s.waiters);
            self.has_waiters.store(false, Ordering::SeqCst);
            drop(s);
            waiters.wake_all();
        } else {
            s.notify = false;
        }
        r
    }

    /// Whether `flag` is set, without the lock.
    pub(crate) fn is(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Acquire) & flag != 0
    }

    /// Whether `flag` is set, read under the lock that every `set` holds:
    /// what this thread wrote before the call is seen by whoever sets the
    /// flag after it.
    pub(crate) fn is_set_locked(&self, flag: u8) -> bool {
        self.locked(|s| s.flags & flag != 0)
    }

    /// Whether the outbox holds no event, without the lock: exact for a
    /// caller that saw every emit end (the task's own thread, or after
    /// `DONE`).
    pub(crate) fn outbox_is_empty(&self) -> bool {
        self.outbox_len.load(Ordering::Acquire) == 0
    }

    /// Sets `flag` and wakes every waiter; returns `true` if it was not set.
    pub(crate) fn set(&self, flag: u8) -> bool {
        self.locked(|s| {
            if s.flags & flag != 0 {
                return false;
            }
            s.flags |= flag;
            // Sequentially consistent: a send checks the flags after it
            // announced itself in `pushing` (see `settle`).
            self.flags.store(s.flags, Ordering::SeqCst);
            s.wake();
            true
        })
    }

    // The decisions. Each is taken under the lock, by a blocking caller
    // (`wait`) and by a future (`poll_with`) alike, and says `None` when it
    // cannot be taken yet: the caller then waits for a change of state.
    // Those on the inbox have a lock-free first try too (`*_now`), also
    // shared by both callers.

    /// A send: into the inbox, or refused (`Closed`) because no one will
    /// read it. `message` leaves its option only when delivered.
    fn attempt_push_in(
        &self,
        s: &mut State<Ev>,
        message: &mut Option<In>,
    ) -> Option<Result<(), Refusal>> {
        match self.push_raw(message.take().expect("kept until delivered")) {
            Ok(()) => {
                if self.waited_on() {
                    s.wake();
                }
                Some(Ok(()))
            }
            Err(PushError::Full(m)) => {
                *message = Some(m);
                None
            }
            Err(PushError::Closed(m) | PushError::Stopped(m)) => {
                *message = Some(m);
                Some(Err(Refusal::Closed))
            }
        }
    }

    /// A send's first try, without the lock: `Full` means try under the
    /// lock, or wait.
    fn push_in_now(&self, message: In) -> Result<(), PushError<In>> {
        let pushed = self.push_raw(message);
        if pushed.is_ok() {
            self.tell_waiters();
        }
        pushed
    }

    /// A receive from the inbox: a message, or the stop, or the end once
    /// the inbox is closed and empty.
    fn attempt_pop_in(&self, s: &mut State<Ev>) -> Option<Result<In, PopError>> {
        if s.flags & STOP != 0 {
            return Some(Err(PopError::Stopped));
        }
        if s.flags & (HANDLE_GONE | INBOX_CLOSED) != 0 {
            // A send that began before the close is in, or refused.
            self.settle();
        }
        match self.pop_raw() {
            Some(m) => {
                if self.waited_on() {
                    s.wake();
                }
                Some(Ok(m))
            }
            None if s.flags & (HANDLE_GONE | INBOX_CLOSED) != 0 => {
                Some(Err(PopError::Disconnected))
            }
            None => None,
        }
    }

    /// A receive's first try, without the lock: `None` means try under the
    /// lock (only there is the end decided).
    fn pop_in_now(&self) -> Option<Result<In, PopError>> {
        if self.is(STOP) {
            return Some(Err(PopError::Stopped));
        }
        let m = self.pop_raw()?;
        self.tell_waiters();
        Some(Ok(m))
    }

    /// An emit: into the outbox; refused if the handle is gone or the task
    /// has ended, or if the outbox is full and a stop was asked for. `event`
    /// leaves its option only when delivered.
    fn attempt_push_out(
        &self,
        s: &mut State<Ev>,
        event: &mut Option<Ev>,
    ) -> Option<Result<(), Refusal>> {
        if s.flags & (HANDLE_GONE | DONE) != 0 {
            return Some(Err(Refusal::Closed));
        }
        if s.outbox.len() >= self.outbox_cap {
            if s.flags & STOP != 0 {
                return Some(Err(Refusal::Stopped));
            }
            return (s.flags & OUTBOX_UNREAD != 0).then_some(Err(Refusal::Full));
        }
        s.outbox
            .push_back(event.take().expect("kept until delivered"));
        self.outbox_len.store(s.outbox.len(), Ordering::Release);
        s.wake();
        Some(Ok(()))
    }

    /// A receive from the outbox: an event, or the end once the task is
    /// done and the outbox empty.
    fn attempt_pop_out(&self, s: &mut State<Ev>) -> Option<Result<Ev, PopError>> {
        match s.outbox.pop_front() {
            Some(e) => {
                self.outbox_len.store(s.outbox.len(), Ordering::Release);
                s.wake();
                Some(Ok(e))
            }
            None if s.flags & DONE != 0 => Some(Err(PopError::Disconnected)),
            None => None,
        }
    }

    /// A wait for a flag (any of `flag`'s bits).
    fn attempt_flag(s: &State<Ev>, flag: u8) -> Option<()> {
        (s.flags & flag != 0).then_some(())
    }

    /// Runs `attempt` under the lock as a waiter's last try before it
    /// registers: announced first if it watches the inbox (invariant 4).
    fn attempt_announced<R>(
        &self,
        s: &mut State<Ev>,
        watch: Watch,
        attempt: impl FnOnce(&mut State<Ev>) -> Option<R>,
    ) -> Option<R> {
        if watch == Watch::Inbox {
            // A side that changes the inbox without the lock checks this
            // flag after its change, so one of the two sees the other.
            self.has_waiters.store(true, Ordering::SeqCst);
            atomic::fence(Ordering::SeqCst);
        }
        let r = attempt(s)?;
        if watch == Watch::Inbox {
            self.has_waiters
                .store(!s.waiters.is_empty(), Ordering::SeqCst);
        }
        Some(r)
    }

    /// Takes a decision (`attempt`, under the lock) once it can be taken,
    /// waiting as `wait` allows in between; `None` when the wait ran out.
    /// `hint` says, without the lock, when trying again may be worth it
    /// (while spinning).
    fn wait<R>(
        &self,
        wait: Wait,
        watch: Watch,
        spin: bool,
        hint: impl Fn(&Self) -> bool,
        mut attempt: impl FnMut(&mut State<Ev>) -> Option<R>,
    ) -> Option<R> {
        if let Some(r) = self.locked(&mut attempt) {
            return Some(r);
        }
        let deadline = match wait {
            Wait::No => return None,
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
        let past = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);
        if spin
            && spin_until(|| (hint(self) || past(deadline)).then_some(())).is_some()
            && let Some(r) = self.locked(&mut attempt)
        {
            return Some(r);
        }
        let me = thread::current();
        loop {
            let now = Instant::now();
            let done = self.locked(|s| {
                s.waiters.retain(|w| !w.is_thread(me.id()));
                if let Some(r) = self.attempt_announced(s, watch, &mut attempt) {
                    return Some(Some(r));
                }
                if deadline.is_some_and(|d| now >= d) {
                    if watch == Watch::Inbox {
                        self.has_waiters
                            .store(!s.waiters.is_empty(), Ordering::SeqCst);
                    }
                    return Some(None);
                }
                s.waiters.push(Waiter::Thread(me.clone()));
                None
            });
            if let Some(r) = done {
                return r;
            }
            match deadline {
                None => thread::park(),
                Some(d) => thread::park_timeout(d - now),
            }
        }
    }

    /// How many messages the inbox holds (given back ones included).
    pub(crate) fn inbox_len(&self) -> usize {
        let queued = if self.counted {
            self.inbox_len.load(Ordering::SeqCst)
        } else {
            self.inbox.len()
        };
        queued + self.returned_len.load(Ordering::SeqCst)
    }

    /// Tries to put `message` into the inbox, without the lock and without
    /// waiting: `Full` or `Closed` give it back. Wakes no one.
    fn push_raw(&self, message: In) -> Result<(), PushError<In>> {
        self.pushing.fetch_add(1, Ordering::SeqCst);
        // Counted, then read the flags (invariant 3).
        seq_cst_order();
        let pushed = if self.flags.load(Ordering::SeqCst) & (STOP | DONE | INBOX_CLOSED) != 0 {
            Err(PushError::Closed(message))
        } else if self.returned_len.load(Ordering::SeqCst) > 0 && self.inbox_len() >= self.inbox_cap
        {
            // Given-back messages count against the capacity too.
            Err(PushError::Full(message))
        } else if !self.counted {
            self.inbox.push(message, Some(self.inbox_cap))
        } else if self
            .inbox_len
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                // Reserved only where there is room: the count never reads
                // over the truth, which would hide room from a waiter.
                (n < self.inbox_cap).then_some(n + 1)
            })
            .is_err()
        {
            Err(PushError::Full(message))
        } else {
            // Unbounded, and its receiver lives as long as this mailbox.
            self.inbox.push(message, None)
        };
        self.pushing.fetch_sub(1, Ordering::SeqCst);
        pushed
    }

    /// Tries to take a message out of the inbox, without the lock: a given
    /// back one first. Wakes no one.
    fn pop_raw(&self) -> Option<In> {
        if self.returned_len.load(Ordering::SeqCst) > 0
            && let Some(message) = lock(&self.returned).pop_front()
        {
            self.returned_len.fetch_sub(1, Ordering::SeqCst);
            return Some(message);
        }
        let message = self.inbox.pop()?;
        if self.counted {
            self.inbox_len.fetch_sub(1, Ordering::SeqCst);
        }
        Some(message)
    }

    /// Waits for the sends that checked the flags before a close to finish
    /// their push.
    fn settle(&self) {
        // The flags were set, then read the count (invariant 3).
        seq_cst_order();
        // A push takes nanoseconds, unless its thread lost its core in the
        // middle: then give the core back.
        let mut spins = 0u32;
        while self.pushing.load(Ordering::SeqCst) != 0 {
            if spins < 64 {
                spin_loop();
                spins += 1;
            } else {
                thread::yield_now();
            }
        }
    }

    /// After the inbox changed without the lock: whether anyone waits to
    /// hear of it.
    fn waited_on(&self) -> bool {
        atomic::fence(Ordering::SeqCst);
        self.has_waiters.load(Ordering::SeqCst)
    }

    /// Wakes the waiters after the inbox changed without the lock, if any
    /// wait.
    fn tell_waiters(&self) {
        if self.waited_on() {
            self.locked(State::wake);
        }
    }

    /// Puts a message into the inbox (the handle's send).
    pub(crate) fn push_in(&self, message: In, wait: Wait) -> Result<(), PushError<In>> {
        let message = match self.push_in_now(message) {
            Err(PushError::Full(m)) if !matches!(wait, Wait::No) => m,
            pushed => return pushed,
        };
        let mut message = Some(message);
        let hint = |m: &Self| m.is(STOP | DONE | INBOX_CLOSED) || m.inbox_len() < m.inbox_cap;
        match self.wait(wait, Watch::Inbox, true, hint, |s| {
            self.attempt_push_in(s, &mut message)
        }) {
            Some(done) => delivered(done, &mut message),
            None => Err(PushError::Full(message.take().expect("kept"))),
        }
    }

    /// Takes a message out of the inbox (the context's recv).
    pub(crate) fn pop_in(&self, wait: Wait) -> Result<In, PopError> {
        if let Some(got) = self.pop_in_now() {
            return got;
        }
        let hint = |m: &Self| m.is(STOP | HANDLE_GONE | INBOX_CLOSED) || m.inbox_len() > 0;
        let spin = self.spin_in.load(Ordering::Relaxed);
        self.wait(wait, Watch::Inbox, spin, hint, |s| self.attempt_pop_in(s))
            .unwrap_or(Err(PopError::Empty))
    }

    /// Puts an event into the outbox (the context's emit).
    pub(crate) fn push_out(&self, event: Ev, wait: Wait) -> Result<(), PushError<Ev>> {
        let mut event = Some(event);
        let hint = |m: &Self| {
            m.is(STOP | HANDLE_GONE | OUTBOX_UNREAD)
                || m.outbox_len.load(Ordering::Acquire) < m.outbox_cap
        };
        match self.wait(wait, Watch::Locked, true, hint, |s| {
            self.attempt_push_out(s, &mut event)
        }) {
            Some(done) => delivered(done, &mut event),
            None => Err(PushError::Full(event.take().expect("kept"))),
        }
    }

    /// Takes an event out of the outbox (the handle's recv).
    pub(crate) fn pop_out(&self, wait: Wait) -> Result<Ev, PopError> {
        let hint = |m: &Self| m.is(DONE) || m.outbox_len.load(Ordering::Acquire) > 0;
        self.wait(wait, Watch::Locked, true, hint, |s| self.attempt_pop_out(s))
            .unwrap_or(Err(PopError::Empty))
    }

    /// Waits until `flag` is set; returns whether it is.
    pub(crate) fn wait_for(&self, flag: u8, wait: Wait) -> bool {
        self.is(flag)
            || self
                .wait(
                    wait,
                    Watch::Locked,
                    true,
                    |m| m.is(flag),
                    |s| Self::attempt_flag(s, flag),
                )
                .is_some()
    }

    /// Takes every message left in the inbox.
    pub(crate) fn drain_in(&self) -> Vec<In> {
        self.locked(|s| {
            self.settle();
            let mut all: Vec<In> = lock(&self.returned).drain(..).collect();
            self.returned_len.fetch_sub(all.len(), Ordering::SeqCst);
            let returned = all.len();
            self.inbox.drain_into(&mut all);
            if self.counted {
                self.inbox_len
                    .fetch_sub(all.len() - returned, Ordering::SeqCst);
            }
            s.wake();
            all
        })
    }

    /// Whether an event waits, or none can come any more.
    pub(crate) fn has_event(&self) -> bool {
        self.outbox_len.load(Ordering::SeqCst) > 0 || self.is(DONE)
    }

    /// Whether a message waits, or the task's `recv` returns at once
    /// anyway.
    pub(crate) fn has_message(&self) -> bool {
        self.inbox_len() > 0 || self.is(STOP | HANDLE_GONE | INBOX_CLOSED)
    }

    /// Makes the task's side park at once on an empty inbox instead of
    /// spinning first.
    pub(crate) fn no_spin(&self) {
        self.spin_in.store(false, Ordering::Relaxed);
    }

    /// How many messages the inbox holds at most.
    pub(crate) fn inbox_capacity(&self) -> usize {
        self.inbox_cap
    }

    /// Puts an event into the outbox whatever its capacity, unless the
    /// handle is gone (then it is given back): an event a process task's
    /// child emitted, and was told was sent, before it saw a stop.
    pub(crate) fn push_out_over(&self, event: Ev) -> Result<(), Ev> {
        self.locked(|s| {
            if s.flags & HANDLE_GONE != 0 {
                return Err(event);
            }
            s.outbox.push_back(event);
            self.outbox_len.store(s.outbox.len(), Ordering::Release);
            s.wake();
            Ok(())
        })
    }

    /// Puts messages back at the front of the inbox, in order, whatever its
    /// capacity (messages a process task's child gave back unread).
    pub(crate) fn give_back(&self, messages: Vec<In>) {
        if messages.is_empty() {
            return;
        }
        self.locked(|s| {
            let n = messages.len();
            let mut returned = lock(&self.returned);
            for message in messages.into_iter().rev() {
                returned.push_front(message);
            }
            self.returned_len.fetch_add(n, Ordering::SeqCst);
            s.wake();
        });
    }
}
