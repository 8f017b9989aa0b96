//! A blocked send on a large inbox (one whose capacity is counted apart:
//! capacity times message size over 256 KiB) is woken when room appears,
//! although `try_send` calls that fail with `Full` race it: a failed try
//! must never leave the count over the truth, which would hide the room.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{Builder, Ctx, TrySendError};

/// 256 bytes: with `CAP` of them the inbox is over 256 KiB, so it is the
/// counted (unbounded + `inbox_len`) kind.
type Msg = [u64; 32];
const CAP: usize = 1000;
/// Threads doing `try_send` on the full inbox (more than the 2 cores, so that
/// some are preempted between their `fetch_add` and `fetch_sub`).
const SPAMMERS: usize = 6;
/// How long the whole test may look for the race.
const BUDGET: Duration = Duration::from_secs(10);
/// How long a send may stay blocked while the inbox has room.
const DEADLINE: Duration = Duration::from_secs(2);

enum Round {
    /// A try_send got the room first: the inbox was full again, nothing to
    /// conclude.
    Inconclusive,
    /// The blocked send got in: correct.
    Delivered,
    /// The blocked send stayed blocked with room in the inbox.
    Lost(String),
}

fn round(r: u64) -> Round {
    let (cmd_tx, cmd_rx) = mpsc::channel::<()>();
    let (got_tx, got_rx) = mpsc::channel::<u64>();
    let stop_spam = Arc::new(AtomicBool::new(false));
    let stop_in_body = Arc::clone(&stop_spam);
    let task = Builder::new()
        .inbox_capacity(CAP)
        .spawn(move |ctx: &Ctx<Msg>| {
            // Takes one message per command, so that it pops exactly when told.
            while cmd_rx.recv().is_ok() {
                match ctx.recv() {
                    Ok(m) => {
                        stop_in_body.store(true, Ordering::SeqCst);
                        let _ = got_tx.send(m[0]);
                    }
                    Err(_) => break,
                }
            }
            Ok::<_, ()>(())
        })
        .unwrap();
    for i in 0..CAP as u64 {
        task.try_send([i; 32]).unwrap();
    }
    assert!(matches!(task.try_send([0; 32]), Err(TrySendError::Full(_))));

    let b_done = AtomicBool::new(false);
    let a_ok = AtomicU64::new(0);
    let verdict = thread::scope(|s| {
        let b = s.spawn(|| {
            let sent = task.send([u64::MAX - 1; 32]).is_ok();
            b_done.store(true, Ordering::SeqCst);
            sent
        });
        // Only the hit rate depends on this: B should be parked (past its
        // 100 µs spin) when the room appears.
        thread::sleep(Duration::from_millis(2));
        let spammers: Vec<_> = (0..SPAMMERS)
            .map(|_| {
                s.spawn(|| {
                    while !stop_spam.load(Ordering::SeqCst) {
                        match task.try_send([u64::MAX; 32]) {
                            Ok(()) => {
                                a_ok.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(TrySendError::Full(_)) => {}
                            Err(TrySendError::Disconnected(_) | TrySendError::TooLarge(_)) => break,
                        }
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_micros(500 + (r % 7) * 300));
        // One message leaves: the inbox now has room for one.
        cmd_tx.send(()).unwrap();
        let first = got_rx.recv_timeout(DEADLINE).expect("the task pops");
        assert_eq!(first, 0);
        for t in spammers {
            t.join().unwrap();
        }
        let verdict = if a_ok.load(Ordering::SeqCst) != 0 {
            Round::Inconclusive
        } else {
            // Nobody but B sends now, and the inbox holds CAP - 1 messages.
            let since = Instant::now();
            while !b_done.load(Ordering::SeqCst) && since.elapsed() < DEADLINE {
                thread::yield_now();
            }
            if b_done.load(Ordering::SeqCst) {
                Round::Delivered
            } else {
                // Proof that the room is there: another send gets in at once.
                let room = task.try_send([7; 32]).is_ok();
                Round::Lost(format!(
                    "round {r}: the inbox held {} of {CAP} messages (a try_send now: {}), \
                     yet a blocked send stayed blocked for {DEADLINE:?}",
                    CAP - 1,
                    if room { "accepted" } else { "refused" },
                ))
            }
        };
        task.stop();
        let _ = b.join().unwrap();
        verdict
    });
    drop(cmd_tx);
    let _ = task.join();
    verdict
}

#[test]
fn a_blocked_send_on_a_counted_inbox_is_woken_when_room_appears() {
    let start = Instant::now();
    let (mut rounds, mut delivered) = (0u64, 0u64);
    while start.elapsed() < BUDGET {
        match round(rounds) {
            Round::Inconclusive => {}
            Round::Delivered => delivered += 1,
            Round::Lost(why) => panic!(
                "lost wake-up after {rounds} rounds ({delivered} conclusive and correct): {why}"
            ),
        }
        rounds += 1;
    }
    eprintln!("{rounds} rounds, {delivered} conclusive, no lost wake-up seen");
}
