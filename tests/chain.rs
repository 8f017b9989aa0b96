//! `Chain`: task.py's n-stage chain (n = 1, 10, 1,000), streaming in order, backpressure, a stage's error or panic reported with its stage, position and item, stopping, every item accounted for on a stop (stress with counts), and 100,000 items through ten stages.

mod common;
use common::{LIMIT, wait_for, within};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{Chain, ChainEnd, ChainRun, RecvTimeoutError, SendError};

/// Joins the chain, failing the test if a stage is still running after
/// [`LIMIT`].
fn join<A, Z, E>(run: ChainRun<A, Z, E>) -> ChainEnd<A, Z, E>
where
    A: Send + 'static,
{
    match run.join_timeout(LIMIT) {
        Ok(end) => end,
        Err(_) => panic!("a stage was still running after {LIMIT:?}"),
    }
}

/// task.py's chain: `n` stages each adding one.
fn adders(n: usize) -> Chain<u64, u64, ()> {
    (1..n).fold(Chain::new(|x: &u64| Ok(x + 1)), |chain, _| {
        chain.then(|x: &u64| Ok(x + 1))
    })
}

fn task_py_chain(n: usize) {
    let chain = adders(n);
    assert_eq!(chain.len(), n);
    let run = chain.start().unwrap();
    assert_eq!(run.len(), n);
    run.send(1).unwrap();
    assert_eq!(run.recv_timeout(LIMIT), Ok(n as u64 + 1));
    run.close_inbox();
    assert_eq!(run.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
    let end = join(run);
    assert!(end.unread.is_empty() && end.output.is_empty());
    assert_eq!(end.dropped, 0);
    assert!(end.into_result().is_ok());
}

#[test]
fn task_py_chain_of_one() {
    task_py_chain(1);
}

#[test]
fn task_py_chain_of_ten() {
    task_py_chain(10);
}

#[test]
fn task_py_chain_of_a_thousand() {
    task_py_chain(1_000);
}

#[test]
fn streaming_many_items_keeps_their_order() {
    const ITEMS: u32 = 20_000;
    let run = Chain::new(|x: &u32| Ok::<_, String>(u64::from(*x) * 2))
        .then(|x: &u64| Ok(x.to_string()))
        .then(|s: &String| s.parse::<u64>().map_err(|e| e.to_string()))
        .start()
        .unwrap();
    let end = within(LIMIT, move || {
        thread::scope(|s| {
            s.spawn(|| {
                for x in 0..ITEMS {
                    run.send(x).unwrap();
                }
                run.close_inbox();
            });
            for x in 0..ITEMS {
                assert_eq!(run.recv_timeout(LIMIT), Ok(u64::from(x) * 2));
            }
            assert_eq!(run.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
        });
        join(run)
    });
    assert_eq!(end.dropped, 0);
    assert!(end.into_result().is_ok());
}

#[test]
fn a_full_chain_blocks_the_sender() {
    const ITEMS: u64 = 100;
    let gate = Arc::new(AtomicBool::new(false));
    let last_started = Arc::new(AtomicU64::new(0));
    let run = {
        let gate = Arc::clone(&gate);
        let last_started = Arc::clone(&last_started);
        Chain::new(|x: &u64| Ok::<_, ()>(*x))
            .then(move |x: &u64| {
                last_started.fetch_add(1, Ordering::SeqCst);
                // A slow last stage: it holds its first item until the gate
                // opens.
                let deadline = Instant::now() + LIMIT;
                while !gate.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "the gate never opened");
                    thread::sleep(Duration::from_millis(1));
                }
                Ok(*x)
            })
            .capacity(1)
            .start()
            .unwrap()
    };
    let sent = AtomicU64::new(0);
    within(LIMIT, move || {
        thread::scope(|s| {
            let sender = s.spawn(|| {
                for x in 0..ITEMS {
                    run.send(x).unwrap();
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            });
            // One item in the last stage, one in its inbox, one held by the
            // first stage, one in the first stage's inbox: then the sender
            // waits.
            wait_for("the chain to fill", || sent.load(Ordering::SeqCst) >= 4);
            // Give a sender that does not wait time to show it (a negative
            // check needs a window; nothing waits on this sleep).
            thread::sleep(Duration::from_millis(100));
            assert_eq!(sent.load(Ordering::SeqCst), 4, "the sender ran ahead");
            assert_eq!(last_started.load(Ordering::SeqCst), 1);
            assert!(!sender.is_finished());

            gate.store(true, Ordering::SeqCst);
            for x in 0..ITEMS {
                assert_eq!(run.recv_timeout(LIMIT), Ok(x));
            }
            sender.join().unwrap();
        });
        assert_eq!(sent.load(Ordering::SeqCst), ITEMS);
        run.close_inbox();
        assert!(join(run).into_result().is_ok());
    });
}

#[test]
fn a_slow_last_stage_holds_the_sender_back() {
    const ITEMS: u64 = 150;
    let sent = Arc::new(AtomicU64::new(0));
    // How far ahead of the last stage the sender was, at most.
    let lead = Arc::new(AtomicU64::new(0));
    let run = {
        let sent = Arc::clone(&sent);
        let lead = Arc::clone(&lead);
        Chain::new(|x: &u64| Ok::<_, ()>(*x))
            .then(|x: &u64| Ok(*x))
            .then(move |x: &u64| {
                let ahead = sent.load(Ordering::SeqCst).saturating_sub(*x);
                lead.fetch_max(ahead, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(1));
                Ok(*x)
            })
            .capacity(1)
            .start()
            .unwrap()
    };
    within(LIMIT, move || {
        thread::scope(|s| {
            s.spawn(|| {
                for x in 0..ITEMS {
                    run.send(x).unwrap();
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                run.close_inbox();
            });
            for x in 0..ITEMS {
                assert_eq!(run.recv_timeout(LIMIT), Ok(x));
            }
        });
        assert!(join(run).into_result().is_ok());
    });
    // While the last stage works on item x, the sender has sent at most
    // items 0..=x and five more (one in the last stage's inbox, one held and
    // one waiting in front of each of the two stages before it); an unbounded
    // chain would let it run all the way ahead.
    let lead = lead.load(Ordering::SeqCst);
    assert!(lead <= 1 + 5 + 1, "the sender was {lead} items ahead");
}

#[test]
fn a_stage_error_stops_the_chain_and_reports_stage_position_and_item() {
    let run = Chain::new(|x: &u32| Ok(u64::from(*x)))
        .then(|x: &u64| {
            if *x == 5 {
                Err(format!("no {x}"))
            } else {
                Ok(*x)
            }
        })
        .then(|x: &u64| Ok(x * 10))
        .start()
        .unwrap();
    let end = within(LIMIT, move || {
        let mut sent = 0;
        for x in 0..20u32 {
            match run.send(x) {
                Ok(()) => sent += 1,
                Err(SendError::Disconnected(back) | SendError::TooLarge(back)) => {
                    assert_eq!(back, x);
                    break;
                }
            }
        }
        let mut received = Vec::new();
        loop {
            match run.recv_timeout(LIMIT) {
                Ok(z) => received.push(z),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the chain never ended"),
            }
        }
        // Items before the failed one may be dropped by the stop, but what
        // comes out comes in order.
        assert!([0, 10, 20, 30, 40].starts_with(&received), "{received:?}");
        // Stopped by the failure: no more items go in.
        assert_eq!(run.send(99).unwrap_err().into_inner(), 99);
        let end = join(run);
        assert_eq!(
            sent,
            received.len() + end.output.len() + end.unread.len() + end.dropped + 1
        );
        end
    });
    let failure = end.failure.expect("a stage failed");
    assert_eq!(failure.stage(), 1);
    assert_eq!(failure.position(), 5);
    assert_eq!(failure.take_item::<u32>(), None, "stage 1 takes u64");
    assert_eq!(failure.take_item::<u64>(), Some(5));
    assert_eq!(failure.take_item::<u64>(), None, "taken once");
    assert!(failure.failure().is_error());
    assert_eq!(failure.failure().as_error(), Some(&"no 5".to_owned()));
    let message = failure.to_string();
    assert!(
        message.contains("stage 1") && message.contains("no 5"),
        "{message}"
    );
}

#[test]
fn a_panicking_stage_stops_the_chain_with_its_message() {
    let run = Chain::new(|x: &u32| Ok::<_, String>(*x))
        .then(|x: &u32| Ok(x.to_string()))
        .then(|s: &String| {
            assert_ne!(s.as_str(), "3", "no three please");
            Ok(s.len())
        })
        .start()
        .unwrap();
    let end = within(LIMIT, move || {
        let mut sent = 0;
        for x in 0..10u32 {
            if run.send(x).is_err() {
                break;
            }
            sent += 1;
        }
        let received: Vec<usize> = run.iter().collect();
        assert_eq!(received, vec![1, 1, 1]);
        let end = join(run);
        assert_eq!(
            sent,
            received.len() + end.output.len() + end.unread.len() + end.dropped + 1
        );
        end
    });
    let failure = end.into_result().unwrap_err();
    assert_eq!(failure.stage(), 2);
    assert_eq!(failure.position(), 3);
    assert_eq!(failure.take_item::<String>().as_deref(), Some("3"));
    let panic = failure.failure().as_panic().expect("a panic");
    assert!(panic.message().contains("no three please"), "{panic}");
    assert!(failure.into_failure().is_panic());
}

#[test]
fn stop_ends_every_stage_of_a_running_chain() {
    let calls: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let chain = (1..4).fold(
        {
            let calls = Arc::clone(&calls);
            Chain::new(move |x: &u64| {
                calls[0].fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(*x)
            })
        },
        |chain, k| {
            let calls = Arc::clone(&calls);
            chain.then(move |x: &u64| {
                calls[k].fetch_add(1, Ordering::SeqCst);
                Ok(*x)
            })
        },
    );
    let run = chain.capacity(2).start().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let (end, received) = within(LIMIT, {
        let sent = Arc::clone(&sent);
        move || {
            let received = thread::scope(|s| {
                let sender = s.spawn(|| {
                    let mut x = 0;
                    while run.send(x).is_ok() {
                        sent.fetch_add(1, Ordering::SeqCst);
                        x += 1;
                    }
                });
                let received: Vec<u64> = (0..5).map(|_| run.recv_timeout(LIMIT).unwrap()).collect();
                // Nobody reads any more: every stage fills up and waits, the last
                // on its full output, the others on their successors.
                wait_for("every stage to be busy", || {
                    calls.iter().all(|c| c.load(Ordering::SeqCst) > 5)
                });
                let asked = Instant::now();
                run.stop();
                // Stopping wakes the sender too: its send fails.
                sender.join().unwrap();
                assert!(asked.elapsed() < Duration::from_secs(10));
                received
            });
            assert!(run.send(0).is_err(), "a stopped chain takes nothing");
            (join(run), received)
        }
    });
    assert_eq!(received, vec![0, 1, 2, 3, 4]);
    assert!(end.failure.is_none());
    assert_eq!(
        sent.load(Ordering::SeqCst),
        received.len() + end.output.len() + end.unread.len() + end.dropped
    );
}

/// Sets its flag when dropped: moved into a stage, it tells when the stage's
/// task has ended and let go of its function.
struct DropFlag(Arc<AtomicUsize>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn dropping_a_running_chain_ends_every_stage() {
    const STAGES: usize = 5;
    let ended = Arc::new(AtomicUsize::new(0));
    let stage = |ended: &Arc<AtomicUsize>| {
        let flag = DropFlag(Arc::clone(ended));
        move |x: &u64| {
            let _flag = &flag;
            Ok::<_, ()>(*x)
        }
    };
    let chain = (1..STAGES).fold(Chain::new(stage(&ended)), |c, _| c.then(stage(&ended)));
    let run = chain.capacity(1).start().unwrap();
    // A few items inside (fewer than the chain holds, so no send waits),
    // nobody reading them.
    let sender = thread::spawn(move || {
        for x in 0..STAGES as u64 {
            run.send(x).unwrap();
        }
        // Dropped here, by the thread that fed it.
    });
    wait_for("every stage to end", || {
        ended.load(Ordering::SeqCst) == STAGES
    });
    wait_for("the sender to end", || sender.is_finished());
    sender.join().unwrap();
}

/// A small deterministic generator for the stress rounds.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn every_item_is_accounted_for_when_a_chain_stops() {
    const ROUNDS: u64 = 200;
    const STAGES: u64 = 4;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut failures = 0;
    for round in 0..ROUNDS {
        // Some rounds a stage fails (an error or a panic) on one item; the
        // receiver stops the chain after a few items, or (half the failing
        // rounds) reads until the failure has ended it.
        let failing = match round % 3 {
            0 => None,
            _ => Some((rng.below(STAGES), rng.below(40))),
        };
        let panics = round % 3 == 2;
        let until_the_end = failing.is_some() && rng.below(2) == 0;
        let take = if until_the_end {
            usize::MAX
        } else {
            rng.below(30) as usize
        };
        let capacity = 1 + rng.below(4) as usize;
        let stage = move |k: u64| {
            move |x: &u64| {
                if failing == Some((k, *x)) {
                    if panics {
                        panic!("stage {k} panics on {x}");
                    }
                    return Err(format!("stage {k} fails on {x}"));
                }
                Ok(*x)
            }
        };
        let chain = (1..STAGES).fold(Chain::new(stage(0)), |c, k| c.then(stage(k)));
        let run = chain.capacity(capacity).start().unwrap();
        let (sent, received, end) = within(LIMIT, move || {
            let (sent, received) = thread::scope(|s| {
                let sender = s.spawn(|| {
                    let mut x = 0;
                    loop {
                        match run.send(x) {
                            Ok(()) => x += 1,
                            Err(SendError::Disconnected(back) | SendError::TooLarge(back)) => {
                                assert_eq!(back, x, "the refused item comes back");
                                return x;
                            }
                        }
                    }
                });
                let mut received = Vec::new();
                while received.len() < take {
                    match run.recv_timeout(LIMIT) {
                        Ok(x) => received.push(x),
                        Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => panic!("no item came"),
                    }
                }
                run.stop();
                (sender.join().unwrap(), received)
            });
            (sent, received, join(run))
        });

        let ctx = format!("round {round}, failing {failing:?}, capacity {capacity}");
        assert!(
            end.failure.is_some() || !until_the_end,
            "{ctx}: the chain ended without its failure"
        );
        let failed_item = end.failure.as_ref().map(|f| {
            let (stage, x) = failing.expect("only a failing stage fails");
            assert_eq!(f.stage() as u64, stage, "{ctx}");
            assert_eq!(f.position(), x, "{ctx}");
            assert_eq!(f.failure().is_panic(), panics, "{ctx}");
            let item = f.take_item::<u64>().expect("the failed item");
            assert_eq!(item, x, "{ctx}");
            item
        });
        // Counts: every item sent is received, left at the output, left
        // unread at the input, dropped inside, or held by the failure.
        let held = usize::from(failed_item.is_some());
        failures += held;
        assert_eq!(
            sent as usize,
            received.len() + end.output.len() + end.unread.len() + end.dropped + held,
            "{ctx}: sent {sent}, received {}, output {}, unread {}, dropped {}, held {held}",
            received.len(),
            end.output.len(),
            end.unread.len(),
            end.dropped,
        );
        // Identities: what came out is a prefix in order, what was never read
        // is a suffix in order, and the failed item lies between.
        let out: Vec<u64> = received.iter().chain(&end.output).copied().collect();
        assert_eq!(out, (0..out.len() as u64).collect::<Vec<_>>(), "{ctx}");
        let first_unread = sent - end.unread.len() as u64;
        assert_eq!(
            end.unread,
            (first_unread..sent).collect::<Vec<_>>(),
            "{ctx}"
        );
        if let Some(x) = failed_item {
            assert!((out.len() as u64..first_unread).contains(&x), "{ctx}");
        }
    }
    // Both ways of ending were exercised.
    assert!(failures >= ROUNDS as usize / 4, "only {failures} failures");
}

#[test]
fn stress_100_000_items_through_ten_stages() {
    const ITEMS: u64 = 100_000;
    const STAGES: usize = 10;
    let run = adders(STAGES).start().unwrap();
    let end = within(Duration::from_secs(60), move || {
        thread::scope(|s| {
            s.spawn(|| {
                for x in 0..ITEMS {
                    run.send(x).unwrap();
                }
                run.close_inbox();
            });
            for x in 0..ITEMS {
                assert_eq!(run.recv_timeout(LIMIT), Ok(x + STAGES as u64));
            }
            assert_eq!(run.recv_timeout(LIMIT), Err(RecvTimeoutError::Disconnected));
        });
        join(run)
    });
    assert!(end.output.is_empty() && end.unread.is_empty());
    assert_eq!(end.dropped, 0);
    assert!(end.into_result().is_ok());
}
