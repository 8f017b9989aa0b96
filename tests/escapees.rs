//! Descendants that leave their task's process group or tree (`setsid`, a
//! double fork, a command started by a process task): 200 process tasks and
//! 200 commands that start them are stopped, killed, dropped or left to
//! end, and no descendant is left, as counted from `/proc` by the pids the
//! tasks reported.

mod common;

use std::time::Duration;

use common::process_tasks::*;
use common::{LIMIT, Pids};
use sidetask::{Command, Process};

sidetask::test_support!(registry());

/// Tasks started at a time, and rounds of them.
const BATCH: usize = 20;
const ROUNDS: usize = 10;
const GRACE: Duration = Duration::from_millis(50);

struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn process_tasks_leave_no_descendant_that_left_their_group_or_tree() {
    sidetask::init(registry());
    let mut rng = Rng::seeded();
    let mut reported = Pids::default();
    for _ in 0..ROUNDS {
        let mut tasks = Vec::new();
        for _ in 0..BATCH {
            // Half of them ignore a stop, so that it escalates to signals.
            let task = Process::<Escapees>::new(rng.below(2) == 0)
                .grace_period(GRACE)
                .spawn()
                .unwrap();
            for _ in 0..6 {
                reported.0.push(task.recv_timeout(LIMIT).unwrap());
            }
            tasks.push(task);
        }
        for task in tasks {
            match rng.below(3) {
                0 => task.stop(),
                1 => task.kill(),
                _ => {
                    drop(task);
                    continue;
                }
            }
            assert!(task.wait_timeout(LIMIT), "a task did not end");
        }
    }
    let survivors = reported.survivors();
    assert!(
        survivors.is_empty(),
        "{} of {} processes left behind: {survivors:?}",
        survivors.len(),
        reported.0.len()
    );
}

/// A program that reports its pid and those of the programs it starts: one
/// in a session of its own holding its pipes, one orphaned into a session
/// of its own (a double fork), and a plain one in its group; then it exits
/// when its stdin ends.
const SCRIPT: &str = "echo $$; \
    setsid sleep 1000 & echo $!; \
    (setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!); \
    sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; \
    read line; exit 0";

#[test]
fn commands_leave_no_descendant_that_left_their_group_or_tree() {
    sidetask::init(registry());
    let mut rng = Rng::seeded();
    let mut reported = Pids::default();
    for _ in 0..ROUNDS {
        let mut tasks = Vec::new();
        for _ in 0..BATCH {
            let task = Command::new("sh")
                .args(["-c", SCRIPT])
                .grace_period(GRACE)
                .spawn()
                .unwrap();
            for _ in 0..4 {
                let line = task.recv_timeout(LIMIT).unwrap();
                reported.0.push(line.trim().parse().unwrap());
            }
            tasks.push(task);
        }
        for task in tasks {
            match rng.below(4) {
                0 => task.stop(),
                1 => task.kill(),
                // The program exits by itself.
                2 => task.close_inbox(),
                _ => {
                    drop(task);
                    continue;
                }
            }
            assert!(task.wait_timeout(LIMIT), "a command did not end");
        }
    }
    let survivors = reported.survivors();
    assert!(
        survivors.is_empty(),
        "{} of {} processes left behind: {survivors:?}",
        survivors.len(),
        reported.0.len()
    );
}
