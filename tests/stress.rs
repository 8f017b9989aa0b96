//! Races under load, checked by counting: each message and event is accounted for exactly once.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{Builder, Ctx, CtxRecvError, EmitError, Outcome, SendTimeoutError, TrySendError};

/// Threads sending into one task at once.
const SENDERS: u64 = 8;
/// Messages each of them sends.
const MESSAGES_PER_SENDER: u64 = 100_000;

/// Rounds of stop racing with senders.
const STOP_ROUNDS: u64 = 400;
/// Sender threads per stop round.
const STOP_SENDERS: u64 = 4;
/// Messages each sender tries per stop round.
const STOP_MESSAGES: u64 = 2_000;

/// Short tasks spawned and joined.
const SHORT_TASKS: u64 = 10_000;
/// How many of them are in flight at once.
const SHORT_BATCH: usize = 64;

/// Tasks in the panic test; every third one panics.
const PANIC_TASKS: u64 = 6_000;

/// Rounds of the emit race, and tasks per round.
const EMIT_ROUNDS: u64 = 1_500;
const EMIT_TASKS_PER_ROUND: u64 = 4;

/// Bound for an operation that must not hang; a hang fails the test instead.
const DEADLINE: Duration = Duration::from_secs(30);

/// A small deterministic pseudo-random generator (xorshift64*), so that a
/// failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits until `cond` holds, failing the test after [`DEADLINE`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::yield_now();
    }
}

/// Joins with [`DEADLINE`]; a task still running then is a hang.
fn join<T, E, In, Ev>(task: sidetask::Task<T, E, In, Ev>, what: &str) -> Outcome<T, E> {
    match task.join_timeout(DEADLINE) {
        Ok(outcome) => outcome,
        Err(task) => {
            let status = task.status();
            panic!("{what}: the task did not end within {DEADLINE:?} (status {status:?})");
        }
    }
}

// ---------------------------------------------------------------------------

/// What the receiving task saw from each sender.
#[derive(Debug, Default, Clone)]
struct PerSender {
    received: u64,
    /// The next sequence number expected; every other one is a fault.
    next: u64,
    out_of_order: u64,
}

#[test]
fn many_senders_every_message_once_in_order() {
    const TOTAL: u64 = SENDERS * MESSAGES_PER_SENDER;
    let task = sidetask::spawn(|ctx: &Ctx<u64>| {
        let mut seen = vec![PerSender::default(); SENDERS as usize];
        let mut total = 0;
        let mut unknown = 0u64;
        while total < TOTAL {
            let Ok(m) = ctx.recv() else { break };
            total += 1;
            let (sender, seq) = (m >> 32, m & 0xFFFF_FFFF);
            match seen.get_mut(sender as usize) {
                Some(s) => {
                    s.received += 1;
                    if seq != s.next {
                        s.out_of_order += 1;
                    }
                    s.next = seq + 1;
                }
                None => unknown += 1,
            }
        }
        Ok::<_, ()>((seen, unknown))
    });

    thread::scope(|scope| {
        for sender in 0..SENDERS {
            let task = &task;
            scope.spawn(move || {
                for seq in 0..MESSAGES_PER_SENDER {
                    if task.send(sender << 32 | seq).is_err() {
                        panic!("sender {sender}: message {seq} refused by a running task");
                    }
                }
            });
        }
    });

    let outcome = match task.join_timeout(DEADLINE) {
        Ok(outcome) => outcome,
        Err(task) => {
            // Messages went missing: stop the task to read what it saw.
            task.stop();
            let seen = join(task, "stopped receiver").value();
            panic!("the receiver still waited after every send returned; it saw {seen:?}");
        }
    };
    let (seen, unknown) = outcome.value().expect("the receiver returns its counts");
    assert_eq!(unknown, 0, "messages from no sender");
    for (sender, s) in seen.iter().enumerate() {
        assert_eq!(
            (s.received, s.next, s.out_of_order),
            (MESSAGES_PER_SENDER, MESSAGES_PER_SENDER, 0),
            "sender {sender}: received, next expected, out of order"
        );
    }
}

// ---------------------------------------------------------------------------

#[test]
fn stop_racing_with_send_loses_nothing() {
    const TOTAL: u64 = STOP_SENDERS * STOP_MESSAGES;
    const CAPACITIES: [usize; 4] = [1, 4, 32, 1024];
    for round in 0..STOP_ROUNDS {
        let mut rng = Rng::new(round);
        let capacity = CAPACITIES[round as usize % CAPACITIES.len()];
        // Stop after the task has received this many; sometimes at once.
        let stop_after = if round % 5 == 0 { 0 } else { rng.below(TOTAL) };
        let received_count = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&received_count);
        // Set once `stop` returned: a send begun after that must fail.
        let stop_returned = AtomicBool::new(false);
        let task = Builder::new()
            .inbox_capacity(capacity)
            .spawn(move |ctx: &Ctx<u64>| {
                let mut got = Vec::new();
                let why = loop {
                    match ctx.recv() {
                        Ok(id) => {
                            got.push(id);
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => break e,
                    }
                };
                Ok::<_, ()>((got, why))
            })
            .unwrap();

        let handed_back: Vec<Vec<u64>> = thread::scope(|scope| {
            let senders: Vec<_> = (0..STOP_SENDERS)
                .map(|sender| {
                    let (task, stop_returned) = (&task, &stop_returned);
                    scope.spawn(move || {
                        let mut back = Vec::new();
                        for seq in 0..STOP_MESSAGES {
                            let id = sender * STOP_MESSAGES + seq;
                            let late = stop_returned.load(Ordering::SeqCst);
                            // Each sender uses another way to send.
                            let refused = match sender % 3 {
                                0 => task.send(id).err().map(|e| e.into_inner()),
                                1 => loop {
                                    match task.send_timeout(id, Duration::from_micros(50)) {
                                        Ok(()) => break None,
                                        Err(SendTimeoutError::Timeout(_)) => continue,
                                        Err(e) => break Some(e.into_inner()),
                                    }
                                },
                                _ => loop {
                                    match task.try_send(id) {
                                        Ok(()) => break None,
                                        Err(TrySendError::Full(_)) => thread::yield_now(),
                                        Err(e) => break Some(e.into_inner()),
                                    }
                                },
                            };
                            match refused {
                                Some(m) => {
                                    assert_eq!(m, id, "a refused send gives its message back");
                                    back.push(m);
                                }
                                None => assert!(
                                    !late,
                                    "round {round}: sender {sender}'s message {seq} was \
                                     accepted after stop() returned"
                                ),
                            }
                        }
                        back
                    })
                })
                .collect();
            wait_until("the task to receive its share before the stop", || {
                received_count.load(Ordering::SeqCst) >= stop_after
            });
            task.stop();
            stop_returned.store(true, Ordering::SeqCst);
            senders.into_iter().map(|s| s.join().unwrap()).collect()
        });

        assert!(
            task.wait_timeout(DEADLINE),
            "round {round}: task did not end"
        );
        let unread = task
            .take_unread()
            .expect("an ended task gives its inbox back");
        assert_eq!(task.take_unread(), Some(Vec::new()), "taken back twice");
        let received = match join(task, "stop round") {
            Outcome::Value((received, why)) => {
                assert_eq!(why, CtxRecvError::Stopped, "round {round}");
                received
            }
            // Stopped before a worker began the body.
            Outcome::Cancelled => {
                assert_eq!(stop_after, 0, "round {round}: cancelled after it received");
                Vec::new()
            }
            other => panic!("round {round}: {other:?}"),
        };

        let back: u64 = handed_back.iter().map(|b| b.len() as u64).sum();
        assert_eq!(
            received.len() as u64 + back + unread.len() as u64,
            TOTAL,
            "round {round} (capacity {capacity}, stop after {stop_after}): \
             received {} + handed back {back} + unread {} != sent",
            received.len(),
            unread.len()
        );
        let mut seen = vec![0u8; TOTAL as usize];
        for &id in received
            .iter()
            .chain(&unread)
            .chain(handed_back.iter().flatten())
        {
            seen[id as usize] += 1;
        }
        let wrong: Vec<_> = seen.iter().enumerate().filter(|(_, n)| **n != 1).collect();
        assert!(
            wrong.is_empty(),
            "round {round}: ids not seen exactly once: {wrong:?}"
        );

        // Per sender, the inbox is a queue and the stop a line: what the task
        // read comes first, then what it left unread, then what was refused.
        for sender in 0..STOP_SENDERS {
            let of = |ids: &mut dyn Iterator<Item = &u64>| -> Vec<u64> {
                ids.filter(|&&id| id / STOP_MESSAGES == sender)
                    .map(|id| id % STOP_MESSAGES)
                    .collect()
            };
            let mut order = of(&mut received.iter());
            order.extend(of(&mut unread.iter()));
            order.extend(of(&mut handed_back[sender as usize].iter()));
            assert!(
                order.iter().copied().eq(0..STOP_MESSAGES),
                "round {round}, sender {sender}: read, unread, refused out of order"
            );
        }
    }
}

// ---------------------------------------------------------------------------

#[test]
fn ten_thousand_short_tasks() {
    let mut next = 0u64;
    while next < SHORT_TASKS {
        let batch: Vec<_> = (next..SHORT_TASKS.min(next + SHORT_BATCH as u64))
            .map(|i| (i, sidetask::spawn(move |_: &Ctx| Ok::<_, ()>(i * 3 + 1))))
            .collect();
        next += batch.len() as u64;
        for (i, task) in batch {
            assert_eq!(join(task, "short task").value(), Some(i * 3 + 1));
        }
    }
}

// ---------------------------------------------------------------------------

#[test]
fn panics_are_outcomes_and_do_not_poison_the_workers() {
    fn spawn_one(i: u64) -> sidetask::Task<u64, String, u64> {
        sidetask::spawn(move |ctx: &Ctx<u64>| -> Result<u64, String> {
            match i % 6 {
                0 => panic!("stress panic {i}"),
                3 => {
                    // Panics after it received a message, holding it.
                    let m = ctx.recv().map_err(|e| e.to_string())?;
                    std::panic::panic_any(m)
                }
                5 => Err(format!("error {i}")),
                _ => Ok(i * 7),
            }
        })
    }

    let caller = panic::catch_unwind(AssertUnwindSafe(|| {
        thread::scope(|scope| {
            for part in 0..2u64 {
                scope.spawn(move || {
                    let mut pending = Vec::new();
                    for i in (part..PANIC_TASKS).step_by(2) {
                        let task = spawn_one(i);
                        if i % 6 == 3 {
                            task.send(i + 1_000_000).unwrap();
                        }
                        pending.push((i, task));
                        if pending.len() == 32 {
                            check(pending.drain(..));
                        }
                    }
                    check(pending.drain(..));
                });
            }
        });
    }));
    assert!(caller.is_ok(), "a task's panic reached the caller");

    fn check(tasks: impl Iterator<Item = (u64, sidetask::Task<u64, String, u64>)>) {
        for (i, task) in tasks {
            match join(task, "panicking mix") {
                Outcome::Panicked(p) if i % 6 == 0 => {
                    assert_eq!(p.message(), format!("stress panic {i}"));
                    assert!(p.location().is_some(), "task {i}: no location");
                }
                Outcome::Panicked(p) if i % 6 == 3 => {
                    assert_eq!(p.message(), "Box<dyn Any>");
                    let payload = p.into_payload();
                    assert_eq!(payload.downcast_ref::<u64>(), Some(&(i + 1_000_000)));
                }
                Outcome::Error(e) if i % 6 == 5 => assert_eq!(e, format!("error {i}")),
                Outcome::Value(v) if i % 6 != 0 && i % 6 != 3 && i % 6 != 5 => {
                    assert_eq!(v, i * 7)
                }
                other => panic!("task {i}: unexpected outcome {other:?}"),
            }
        }
    }

    // The workers that ran panicking bodies still run new tasks.
    for i in 0..200u64 {
        let task = sidetask::spawn(move |ctx: &Ctx<u64, u64>| {
            let m = ctx.recv().map_err(|_| ())?;
            ctx.emit(m + 1).map_err(|_| ())?;
            Ok::<_, ()>(m * 2)
        });
        task.send(i).unwrap();
        assert_eq!(task.recv(), Ok(i + 1));
        assert_eq!(join(task, "after panics").value(), Some(i * 2));
    }
}

// ---------------------------------------------------------------------------

/// An event that counts itself if it is dropped without being read or given
/// back: that is, if it was lost in a dropped outbox.
struct Event {
    n: u64,
    lost: Option<Arc<AtomicU64>>,
}

impl Event {
    fn take(mut self) -> u64 {
        self.lost = None;
        self.n
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if let Some(lost) = &self.lost {
            lost.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The task's own counts, shared so that they can be read after its handle
/// was dropped.
#[derive(Default)]
struct EmitCounts {
    attempts: AtomicU64,
    emitted: AtomicU64,
    given_back: AtomicU64,
    /// Given back as `EmitError::Stopped` (the others were `Disconnected`).
    given_back_stopped: AtomicU64,
    ended: AtomicBool,
    /// Events dropped unread in the outbox once nobody held it.
    lost: Arc<AtomicU64>,
}

/// Emits numbered events until asked to stop or refused; the counts are kept
/// in `counts`, and the value is (attempts, emitted, given back).
fn emitter(counts: Arc<EmitCounts>) -> impl FnOnce(&Ctx<(), Event>) -> Result<(u64, u64, u64), ()> {
    struct Ended(Arc<EmitCounts>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.ended.store(true, Ordering::SeqCst);
        }
    }
    // Dropped when the body returns, or with the body if it never ran.
    let ended = Ended(Arc::clone(&counts));
    move |ctx| {
        let ended = ended;
        let (mut attempts, mut emitted, mut back) = (0u64, 0u64, 0u64);
        loop {
            attempts += 1;
            counts.attempts.store(attempts, Ordering::SeqCst);
            let event = Event {
                n: attempts,
                lost: Some(Arc::clone(&counts.lost)),
            };
            match ctx.emit(event) {
                Ok(()) => {
                    emitted += 1;
                    counts.emitted.store(emitted, Ordering::SeqCst);
                }
                Err(e) => {
                    if matches!(e, EmitError::Stopped(_)) {
                        counts.given_back_stopped.fetch_add(1, Ordering::SeqCst);
                    }
                    assert_eq!(e.into_inner().take(), attempts, "given back its own event");
                    back += 1;
                    counts.given_back.store(back, Ordering::SeqCst);
                    break;
                }
            }
            if ctx.stopped() {
                break;
            }
        }
        drop(ended);
        Ok((attempts, emitted, back))
    }
}

/// Receives until the task ended and every event was read; checks that they
/// come numbered on from `next`, and returns the number after the last.
fn drain(task: &sidetask::Task<(u64, u64, u64), (), (), Event>, mut next: u64) -> u64 {
    let start = Instant::now();
    loop {
        match task.recv_timeout(DEADLINE) {
            Ok(ev) => {
                assert_eq!(ev.take(), next, "events in order");
                next += 1;
            }
            Err(sidetask::RecvTimeoutError::Disconnected) => return next,
            Err(sidetask::RecvTimeoutError::Timeout) => panic!("no event and no end"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the task kept emitting after a stop"
        );
    }
}

#[test]
fn stop_or_drop_while_emitting_loses_no_event() {
    for round in 0..EMIT_ROUNDS {
        let mut rng = Rng::new(round + 1_000);
        thread::scope(|scope| {
            let mut dropped = Vec::new();
            for k in 0..EMIT_TASKS_PER_ROUND {
                let capacity = 1 + rng.below(4) as usize;
                let threshold = rng.below(200);
                let counts = Arc::new(EmitCounts::default());
                let task = Builder::new()
                    .outbox_capacity(capacity)
                    .spawn(emitter(Arc::clone(&counts)))
                    .unwrap();
                let what = format!("round {round} task {k} (outbox {capacity})");
                match (round + k) % 3 {
                    // Stopped from another thread while the owner receives.
                    0 => {
                        scope.spawn(move || {
                            let received = thread::scope(|inner| {
                                inner.spawn(|| {
                                    wait_until("attempts before the stop", || {
                                        counts.attempts.load(Ordering::SeqCst) >= threshold
                                    });
                                    task.stop();
                                });
                                drain(&task, 1) - 1
                            });
                            let (attempts, emitted, back) =
                                outcome_counts(join(task, &what), &what);
                            assert_eq!(received, emitted, "{what}: received all emitted");
                            assert_eq!(received + back, attempts, "{what}");
                            assert_eq!(
                                attempts,
                                counts.attempts.load(Ordering::SeqCst),
                                "{what}: the value and the shared count agree"
                            );
                            assert_eq!(counts.lost.load(Ordering::SeqCst), 0, "{what}");
                            assert_eq!(
                                counts.given_back_stopped.load(Ordering::SeqCst),
                                back,
                                "{what}: given back because of the stop, the handle alive"
                            );
                        });
                    }
                    // Stopped from another thread while the owner waits
                    // without reading (the task often blocked on a full
                    // outbox); read afterwards.
                    1 => {
                        let threshold = threshold % (capacity as u64 + 1);
                        scope.spawn(move || {
                            thread::scope(|inner| {
                                inner.spawn(|| {
                                    wait_until("attempts before the stop", || {
                                        counts.attempts.load(Ordering::SeqCst) >= threshold
                                    });
                                    task.stop();
                                });
                                assert!(task.wait_timeout(DEADLINE), "{what}: did not end");
                            });
                            let received = drain(&task, 1) - 1;
                            let (attempts, emitted, back) =
                                outcome_counts(join(task, &what), &what);
                            assert_eq!(received, emitted, "{what}: received all emitted");
                            assert_eq!(received + back, attempts, "{what}");
                            assert_eq!(
                                attempts,
                                counts.attempts.load(Ordering::SeqCst),
                                "{what}: the value and the shared count agree"
                            );
                            assert_eq!(counts.lost.load(Ordering::SeqCst), 0, "{what}");
                            assert_eq!(
                                counts.given_back_stopped.load(Ordering::SeqCst),
                                back,
                                "{what}: given back because of the stop, the handle alive"
                            );
                            // Nothing was read while it ran: it filled the
                            // outbox at most, and the one emit past that was
                            // given back.
                            assert!(emitted <= capacity as u64, "{what}: emitted {emitted}");
                            assert_eq!(
                                back == 1,
                                attempts == capacity as u64 + 1,
                                "{what}: attempts {attempts}, given back {back}"
                            );
                        });
                    }
                    // Dropped by its owner after reading some, mid-emit.
                    _ => {
                        let counts2 = Arc::clone(&counts);
                        let received = scope.spawn(move || {
                            let mut next = 1;
                            while next <= threshold {
                                match task.recv_timeout(DEADLINE) {
                                    Ok(ev) => {
                                        assert_eq!(ev.take(), next, "events in order");
                                        next += 1;
                                    }
                                    Err(e) => panic!("an emitting task went quiet: {e}"),
                                }
                            }
                            drop(task);
                            next - 1
                        });
                        dropped.push((what, capacity as u64, counts2, received));
                    }
                }
            }
            // Each dropped task ends on its own; its outbox is dropped with
            // the last reference, and every event is accounted for.
            for (what, capacity, counts, received) in dropped.drain(..) {
                let received = received.join().unwrap();
                let settled = || {
                    counts.ended.load(Ordering::SeqCst)
                        && received
                            + counts.given_back.load(Ordering::SeqCst)
                            + counts.lost.load(Ordering::SeqCst)
                            == counts.attempts.load(Ordering::SeqCst)
                };
                let start = Instant::now();
                while !settled() && start.elapsed() < DEADLINE {
                    thread::yield_now();
                }
                assert!(
                    settled(),
                    "{what}: ended {}, received {received} + given back {} + lost in the \
                     outbox {} != attempts {} (emitted {})",
                    counts.ended.load(Ordering::SeqCst),
                    counts.given_back.load(Ordering::SeqCst),
                    counts.lost.load(Ordering::SeqCst),
                    counts.attempts.load(Ordering::SeqCst),
                    counts.emitted.load(Ordering::SeqCst),
                );
                // What was emitted and never read sat in the outbox when the
                // handle went.
                let lost = counts.lost.load(Ordering::SeqCst);
                assert_eq!(
                    counts.emitted.load(Ordering::SeqCst),
                    received + lost,
                    "{what}: emitted = received + lost"
                );
                assert!(lost <= capacity, "{what}: {lost} events lost");
                assert!(counts.given_back.load(Ordering::SeqCst) <= 1, "{what}");
            }
        });
    }
}

/// The task's counts from its outcome; a task stopped before it began
/// attempted nothing.
fn outcome_counts(outcome: Outcome<(u64, u64, u64), ()>, what: &str) -> (u64, u64, u64) {
    match outcome {
        Outcome::Value(v) => v,
        Outcome::Cancelled => (0, 0, 0),
        other => panic!("{what}: {other:?}"),
    }
}
