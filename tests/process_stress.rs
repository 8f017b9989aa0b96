//! 200 process tasks started and stopped or killed at random moments: every
//! outcome classified, no process left behind. Its own test binary, so that
//! no other test's children are counted.

mod common;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use common::LIMIT;
use common::process_tasks::*;
use sidetask::{Outcome, Process};

sidetask::test_support!(registry());

/// This process's descendants that are still alive (zombies count: one
/// would mean a child was not reaped).
fn descendants() -> Vec<u32> {
    let mut parent_of = Vec::new();
    for pid in common::pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": the comm may hold spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let ppid: u32 = rest.split_whitespace().nth(1).unwrap().parse().unwrap();
        parent_of.push((pid, ppid));
    }
    let mut ours: HashSet<u32> = HashSet::from([std::process::id()]);
    loop {
        let before = ours.len();
        for &(pid, ppid) in &parent_of {
            if ours.contains(&ppid) {
                ours.insert(pid);
            }
        }
        if ours.len() == before {
            break;
        }
    }
    ours.remove(&std::process::id());
    ours.into_iter().collect()
}

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
fn two_hundred_tasks_killed_at_random_moments_leave_nothing_behind() {
    sidetask::init(registry());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let (mut values, mut errors, mut killed) = (0, 0, 0);
    let mut sent = 0u64;
    let mut echoed = 0u64;
    let mut returned = 0u64;
    // 20 at a time, 10 rounds.
    for _round in 0..10 {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let task = Process::<Echo>::new(0)
                .grace_period(Duration::from_millis(20))
                .inbox_capacity(4)
                .spawn()
                .unwrap();
            tasks.push((task, rng.below(3), rng.below(1000), rng.below(12)));
        }
        let mut sent_to = Vec::new();
        for (task, how, delay_us, messages) in &tasks {
            let mut n = 0;
            for i in 0..*messages as i64 {
                if task.try_send(i).is_ok() {
                    n += 1;
                }
            }
            sent += n;
            thread::sleep(Duration::from_micros(*delay_us));
            match how {
                0 => task.stop(),
                1 => task.kill(),
                _ => task.close_inbox(),
            }
            // Some sends race the stop or kill.
            for i in 0..rng.below(4) as i64 {
                if task.try_send(i).is_ok() {
                    sent += 1;
                    n += 1;
                }
            }
            sent_to.push(n);
        }
        for ((task, how, _, _), sent_here) in tasks.into_iter().zip(sent_to) {
            assert!(task.wait_timeout(LIMIT), "a task did not end");
            let got = task.try_iter().count() as u64;
            let back = task.take_unread().unwrap().len() as u64;
            echoed += got;
            returned += back;
            let outcome = task.join();
            if let Outcome::Value(n) = outcome {
                // Stopped or closed: every message answered or given back,
                // none twice.
                assert_eq!(n, got, "answered {n}, received {got} (how {how})");
                assert_eq!(got + back, sent_here, "how {how}");
            } else {
                assert!(got + back <= sent_here);
            }
            match outcome {
                Outcome::Value(_) => values += 1,
                Outcome::Error(_) => errors += 1,
                Outcome::Killed(k) => {
                    assert_eq!(k.signal(), Some(9));
                    killed += 1
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    println!(
        "values {values}, errors {errors}, killed {killed}; \
         sent {sent}, echoed {echoed}, returned {returned}"
    );
    assert_eq!(values + errors + killed, 200);
    // Each message sent was echoed or given back, or lost with a killed
    // child (read but not answered): never more than were sent.
    assert!(echoed + returned <= sent);
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = descendants();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
