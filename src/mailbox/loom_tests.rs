//! The mailbox's handshakes under loom: every interleaving (up to a bound
//! on preemptions) of a few operations on two or three threads.
//!
//! Built only with `RUSTFLAGS="--cfg loom"`, where `crate::sync::shim`
//! gives loom's atomics, mutexes and parking, and the inbox's queue is a
//! loom mutex over a `VecDeque` (crossbeam cannot run under loom; see the
//! `queue` module). Run:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```
//!
//! What is checked: a send racing a stop or a close is either read (or
//! drained) or given back, never lost and never both (invariant 3); a waiter
//! that parks while the other side changes the inbox without the lock is
//! woken (invariant 4: a lost wake-up leaves every thread parked, which
//! loom reports as a deadlock); a stop waking every kind of waiter, which
//! gets its value back.

use loom::sync::Arc;
use loom::thread;

use super::{HANDLE_GONE, INBOX_CLOSED, Mailbox, PopError, PushError, STOP, Wait};

type Box2 = Mailbox<u32, u32>;

/// Runs `f` under loom, with at most three preemptions unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Sends each of `messages` without waiting; returns those given back.
fn send_all(mailbox: &Box2, messages: &[u32]) -> Vec<u32> {
    let mut refused = Vec::new();
    for &m in messages {
        match mailbox.push_in(m, Wait::No) {
            Ok(()) => {}
            Err(PushError::Closed(m) | PushError::Full(m) | PushError::Stopped(m)) => {
                refused.push(m);
            }
        }
    }
    refused
}

/// `a` and `b` together are `expected`, each message once.
/// Sends `messages` from a thread of their own; the thread gives back the
/// refused ones.
fn spawn_send(mailbox: &Arc<Box2>, messages: &'static [u32]) -> thread::JoinHandle<Vec<u32>> {
    let mailbox = Arc::clone(mailbox);
    thread::spawn(move || send_all(&mailbox, messages))
}

fn exactly_once(a: &[u32], b: &[u32], expected: &[u32]) {
    let mut all: Vec<u32> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, expected, "read or drained {a:?}, given back {b:?}");
}

/// A send racing a stop and the drain after it (`take_unread`): every
/// message is drained or given back, and nothing arrives after the drain.
#[test]
fn loom_send_races_stop_then_drain() {
    model(|| {
        let mailbox = Arc::new(Box2::new(2, 1));
        let sender = spawn_send(&mailbox, &[1, 2]);
        mailbox.set(STOP);
        let drained = mailbox.drain_in();
        let refused = sender.join().unwrap();
        exactly_once(&drained, &refused, &[1, 2]);
        assert!(
            mailbox.drain_in().is_empty(),
            "a message came in after the drain"
        );
    });
}

/// A send racing the close of the inbox while the task reads: every message
/// is read before the end is reported, or given back.
#[test]
fn loom_send_races_inbox_close() {
    model(|| {
        let mailbox = Arc::new(Box2::new(2, 1));
        let sender = spawn_send(&mailbox, &[1]);
        mailbox.set(INBOX_CLOSED);
        let mut read = Vec::new();
        loop {
            match mailbox.pop_in(Wait::Forever) {
                Ok(m) => read.push(m),
                Err(e) => {
                    assert_eq!(e, PopError::Disconnected);
                    break;
                }
            }
        }
        let refused = sender.join().unwrap();
        exactly_once(&read, &refused, &[1]);
        assert!(
            mailbox.drain_in().is_empty(),
            "a message came in after the end"
        );
    });
}

/// A send, then the handle's drop, while the task reads: the task reads
/// the message before it reads the end.
#[test]
fn loom_message_sent_before_handle_gone_is_read() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let handle = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                let refused = send_all(&mailbox, &[1]);
                mailbox.set(HANDLE_GONE);
                refused
            })
        };
        let mut read = Vec::new();
        while let Ok(m) = mailbox.pop_in(Wait::Forever) {
            read.push(m);
        }
        let refused = handle.join().unwrap();
        exactly_once(&read, &refused, &[1]);
        assert!(refused.is_empty());
    });
}

/// Two senders racing a stop and the drain after it.
#[test]
fn loom_two_senders_race_stop_then_drain() {
    model(|| {
        let mailbox = Arc::new(Box2::new(2, 1));
        let senders: Vec<_> = [1, 2]
            .into_iter()
            .map(|m| {
                let mailbox = Arc::clone(&mailbox);
                thread::spawn(move || send_all(&mailbox, &[m]))
            })
            .collect();
        mailbox.set(STOP);
        let drained = mailbox.drain_in();
        let refused: Vec<u32> = senders
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        exactly_once(&drained, &refused, &[1, 2]);
        assert!(
            mailbox.drain_in().is_empty(),
            "a message came in after the drain"
        );
    });
}

/// The same race on a counted inbox (one too large for a bounded queue,
/// whose capacity `inbox_len` keeps).
#[test]
fn loom_counted_send_races_inbox_close() {
    model(|| {
        let mut mailbox = Box2::new(1, 1);
        mailbox.counted = true;
        let mailbox = Arc::new(mailbox);
        let sender = spawn_send(&mailbox, &[1, 2]);
        mailbox.set(INBOX_CLOSED);
        let mut read = Vec::new();
        while let Ok(m) = mailbox.pop_in(Wait::Forever) {
            read.push(m);
        }
        let refused = sender.join().unwrap();
        exactly_once(&read, &refused, &[1, 2]);
        assert_eq!(mailbox.pop_in(Wait::No), Err(PopError::Disconnected));
    });
}

/// Messages given back (a process child's unread ones) racing a send:
/// they come first, count against the capacity, and none is lost.
#[test]
fn loom_give_back_races_send() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let relay = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.give_back(vec![1]))
        };
        let refused = send_all(&mailbox, &[2]);
        relay.join().unwrap();
        let mut read = Vec::new();
        while let Ok(m) = mailbox.pop_in(Wait::No) {
            read.push(m);
        }
        assert_eq!(read.first(), Some(&1), "a given back message comes first");
        exactly_once(&read, &refused, &[1, 2]);
    });
}

/// A task that parks on an empty inbox while the handle pushes without
/// the lock gets the message (no lost wake-up).
#[test]
fn loom_waiter_parks_while_message_pushed() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let task = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.pop_in(Wait::Forever))
        };
        assert!(mailbox.push_in(7, Wait::No).is_ok());
        assert_eq!(task.join().unwrap(), Ok(7));
    });
}

/// A sender that parks on a full inbox while the task pops without the
/// lock gets its room (no lost wake-up), and the order holds.
#[test]
fn loom_full_sender_parks_while_task_pops() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        assert!(mailbox.push_in(1, Wait::No).is_ok());
        let sender = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.push_in(2, Wait::Forever).is_ok())
        };
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(1));
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(2));
        assert!(sender.join().unwrap());
    });
}

/// The same on a counted inbox, whose room is its count.
#[test]
fn loom_counted_full_sender_parks_while_task_pops() {
    model(|| {
        let mut mailbox = Box2::new(1, 1);
        mailbox.counted = true;
        let mailbox = Arc::new(mailbox);
        assert!(mailbox.push_in(1, Wait::No).is_ok());
        let sender = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.push_in(2, Wait::Forever).is_ok())
        };
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(1));
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(2));
        assert!(sender.join().unwrap());
    });
}

/// A task parked on its inbox wakes at a stop; a wait for the flag wakes
/// too.
#[test]
fn loom_waiters_wake_at_stop() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let task = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.pop_in(Wait::Forever))
        };
        let watcher = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || mailbox.wait_for(STOP, Wait::Forever))
        };
        mailbox.set(STOP);
        assert_eq!(task.join().unwrap(), Err(PopError::Stopped));
        assert!(watcher.join().unwrap());
    });
}

/// A sender parked on a full inbox, and an emit parked on a full outbox,
/// wake at a stop and get their values back.
#[test]
fn loom_full_queues_give_back_at_stop() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        assert!(mailbox.push_in(1, Wait::No).is_ok());
        assert!(mailbox.push_out(10, Wait::No).is_ok());
        let sender = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || match mailbox.push_in(2, Wait::Forever) {
                Err(PushError::Closed(m)) => m,
                _ => panic!("a send into a full inbox went through a stop"),
            })
        };
        let emitter = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || match mailbox.push_out(20, Wait::Forever) {
                Err(PushError::Stopped(e)) => e,
                _ => panic!("an emit into a full outbox went through a stop"),
            })
        };
        mailbox.set(STOP);
        assert_eq!(sender.join().unwrap(), 2);
        assert_eq!(emitter.join().unwrap(), 20);
        assert_eq!(mailbox.drain_in(), [1]);
        assert_eq!(mailbox.pop_out(Wait::No), Ok(10));
    });
}

/// An event emitted while the handle parks on an empty outbox reaches it;
/// one emitted into a full outbox waits for room.
#[test]
fn loom_outbox_hand_over() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let task = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                assert!(mailbox.push_out(1, Wait::Forever).is_ok());
                assert!(mailbox.push_out(2, Wait::Forever).is_ok());
            })
        };
        assert_eq!(mailbox.pop_out(Wait::Forever), Ok(1));
        assert_eq!(mailbox.pop_out(Wait::Forever), Ok(2));
        task.join().unwrap();
    });
}

/// The async path's inbox waits: a future registered as a waiter while the
/// other side changes the inbox without the lock is woken.
#[cfg(feature = "tokio")]
#[test]
fn loom_future_waits_while_message_pushed() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        let task = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                loom::future::block_on(std::future::poll_fn(|cx| mailbox.poll_pop_in(cx)))
            })
        };
        assert!(mailbox.push_in(7, Wait::No).is_ok());
        assert_eq!(task.join().unwrap(), Ok(7));
    });
}

/// A send future waiting for room while the task pops without the lock.
#[cfg(feature = "tokio")]
#[test]
fn loom_send_future_waits_while_task_pops() {
    model(|| {
        let mailbox = Arc::new(Box2::new(1, 1));
        assert!(mailbox.push_in(1, Wait::No).is_ok());
        let sender = {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                let mut message = Some(2);
                loom::future::block_on(std::future::poll_fn(|cx| {
                    mailbox.poll_push_in(&mut message, cx)
                }))
                .is_ok()
            })
        };
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(1));
        assert_eq!(mailbox.pop_in(Wait::Forever), Ok(2));
        assert!(sender.join().unwrap());
    });
}
