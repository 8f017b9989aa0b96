//! Stress tests of who reads a process task's connection: the handle's
//! callers of every kind and the body's fallback in the parent, the body's
//! threads and the main thread in the child.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::LIMIT;
use common::process_tasks::*;
use sidetask::{Process, RecvTimeoutError, TryRecvError};

sidetask::test_support!(registry());

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every kind of reader at once on one connection, with events large enough
/// to arrive in pieces: a blocking reader, one with short deadlines (it
/// leaves frames half read) and one that polls, while two threads send and
/// the task is stopped, closed or left to finish at a random moment. Each
/// event arrives once, whole, and every message is answered or given back.
#[test]
fn readers_of_every_kind_share_one_connection_and_lose_nothing() {
    sidetask::init(registry());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    // Mostly small; some over the socket's buffer, which arrive in pieces.
    const LENS: [u32; 8] = [8, 8, 8, 1000, 1000, 5000, 70_000, 300_000];
    for round in 0..10 {
        let task = Process::<Blobs>::new(())
            .inbox_capacity(1 + rng.below(8) as usize)
            .outbox_capacity(1 + rng.below(4) as usize)
            .spawn()
            .unwrap();
        let how = rng.below(3);
        let per_sender = 100 + rng.below(100);
        let stop_after = rng.below(2 * per_sender);
        let lens: Vec<u32> = (0..2 * per_sender)
            .map(|_| LENS[rng.below(8) as usize])
            .collect();
        let sent = AtomicU64::new(0);
        let got = Mutex::new(Vec::new());
        thread::scope(|s| {
            let (task, got, sent, lens) = (&task, &got, &sent, &lens);
            let receive = |(id, bytes): (u64, Vec<u8>)| {
                assert_eq!(bytes, blob(id, lens[id as usize]), "blob {id} damaged");
                got.lock().unwrap().push(id);
            };
            let readers = [
                s.spawn(move || {
                    while let Ok(event) = task.recv() {
                        receive(event);
                    }
                }),
                s.spawn(move || {
                    let mut tiny = 1;
                    loop {
                        match task.recv_timeout(Duration::from_micros(tiny)) {
                            Ok(event) => receive(event),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                        tiny = tiny % 500 + 37;
                    }
                }),
                s.spawn(move || {
                    loop {
                        match task.try_recv() {
                            Ok(event) => receive(event),
                            Err(TryRecvError::Empty) => thread::yield_now(),
                            Err(TryRecvError::Disconnected) => break,
                        }
                    }
                }),
            ];
            let senders: Vec<_> = (0..2u64)
                .map(|k| {
                    s.spawn(move || {
                        for i in 0..per_sender {
                            let id = k * per_sender + i;
                            if task.send((id, lens[id as usize])).is_err() {
                                break;
                            }
                            sent.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            let deadline = Instant::now() + LIMIT;
            while sent.load(Ordering::SeqCst) < stop_after
                && !senders.iter().all(|s| s.is_finished())
            {
                assert!(Instant::now() < deadline, "the senders are stuck");
                thread::yield_now();
            }
            match how {
                0 => task.stop(),
                1 => task.close_inbox(),
                _ => {}
            }
            for sender in senders {
                sender.join().unwrap();
            }
            if how == 2 {
                task.close_inbox();
            }
            assert!(
                task.wait_timeout(LIMIT),
                "round {round}: the task did not end"
            );
            for reader in readers {
                reader.join().unwrap();
            }
        });
        let mut got = got.into_inner().unwrap();
        let unread = task.take_unread().unwrap();
        let answered = task
            .join()
            .value()
            .expect("stopped or closed, the task returns");
        let sent = sent.into_inner();
        // Every message was answered or given back, none twice.
        assert_eq!(
            answered + unread.len() as u64,
            sent,
            "round {round} (how {how}): answered {answered}, given back {}, sent {sent}",
            unread.len()
        );
        // Every answer arrived, unless a stop met a full outbox (the
        // documented policy keeps what fits then).
        if how == 0 {
            assert!(got.len() as u64 <= answered, "round {round}");
        } else {
            assert_eq!(got.len() as u64, answered, "round {round} (how {how})");
        }
        let arrived = got.len() + unread.len();
        got.extend(unread.iter().map(|&(id, _)| id));
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), arrived, "round {round}: a message twice");
    }
}

/// Two threads of a child's body read one context: every message is read
/// by one of them, once.
#[test]
fn two_threads_of_a_child_share_its_inbox() {
    sidetask::init(registry());
    for _ in 0..5 {
        let task = Process::<TwoReaders>::new(())
            .inbox_capacity(3)
            .spawn()
            .unwrap();
        let mut got = Vec::new();
        for i in 0..1000u64 {
            task.send(i).unwrap();
            while let Ok(m) = task.try_recv() {
                got.push(m);
            }
        }
        task.close_inbox();
        got.extend(task.iter());
        assert_eq!(task.join().value(), Some(1000));
        got.sort_unstable();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}

/// A lone receiver whose outbox holds one event, the child answering a
/// stream of messages: the reader that fills the outbox never waits for
/// room while the receiver waits to read (each event comes at once).
#[test]
fn a_lone_receiver_is_not_stalled_by_a_full_outbox() {
    sidetask::init(registry());
    const N: i64 = 20_000;
    let task = Process::<Echo>::new(0)
        .inbox_capacity(64)
        .outbox_capacity(1)
        .spawn()
        .unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                task.send_timeout(i, LIMIT).unwrap();
            }
            task.close_inbox();
        });
        for i in 0..N {
            let asked = Instant::now();
            let got = task.recv_timeout(LIMIT);
            assert_eq!(got, Ok(i), "after {:?}", asked.elapsed());
            assert!(
                asked.elapsed() < Duration::from_secs(1),
                "event {i} took {:?}",
                asked.elapsed()
            );
        }
    });
    assert_eq!(task.join().value(), Some(N as u64));
}

/// An async receiver never reads the socket itself: it has the fallback
/// read for it at once (no linger), while a blocking receiver on another
/// thread takes turns with it. Every event arrives once.
#[cfg(feature = "tokio")]
#[test]
fn an_async_receiver_and_a_blocking_one_share_a_process_task() {
    sidetask::init(registry());
    const N: i64 = 5000;
    let task = Process::<Echo>::new(0)
        .inbox_capacity(8)
        .outbox_capacity(2)
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut got = thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                task.send_timeout(i, LIMIT).unwrap();
            }
            task.close_inbox();
        });
        let blocking = s.spawn(|| {
            let mut got = Vec::new();
            while let Ok(event) = task.recv_timeout(LIMIT) {
                got.push(event);
            }
            got
        });
        let mut got = runtime.block_on(async {
            let mut got = Vec::new();
            loop {
                match tokio::time::timeout(LIMIT, task.recv_async()).await {
                    Ok(Ok(event)) => got.push(event),
                    Ok(Err(_)) => break got,
                    Err(_) => panic!("no event within {LIMIT:?} after {}", got.len()),
                }
            }
        });
        got.extend(blocking.join().unwrap());
        got
    });
    assert_eq!(task.join().value(), Some(N as u64));
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
}
