//! A child frozen (`SIGSTOP`) longer than the grace period: sending never
//! waits on its socket, every frame goes whole, nothing is wedged once it
//! resumes, and stop, kill and timed sends return within their bounds. Its
//! own test binary, so that the time bounds are not shared with the other
//! process tests.

mod common;

use std::time::{Duration, Instant};

use common::process_tasks::*;
use common::{LIMIT, kill_pid, wait_for};
use rustix::process::{Pid, Signal, kill_process};
use sidetask::{Process, ProcessTask, TrySendError};

sidetask::test_support!(registry());

/// What a call that must not wait on the child may take, at most: far
/// below the seconds a write blocked on a frozen child would take, with
/// room for a loaded machine (a debug build copies each large message more
/// than once).
const PROMPT: Duration = Duration::from_millis(300);
/// Each message: larger than the socket's buffer, so that a frozen child
/// leaves the connection full after the first.
const BLOB: u32 = 256 << 10;
/// How long the child stays frozen: longer than its grace period (and than
/// the one-second floor a write to a child may wait).
const FROZEN: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_millis(100);

type Task = ProcessTask<Checker>;

/// A frozen child, resumed and then killed by its pid when dropped, whatever
/// the test found.
struct Frozen(u32);

impl Frozen {
    fn freeze(pid: u32) -> Frozen {
        signal(pid, Signal::STOP);
        wait_for("the child to be stopped", || state(pid) == Some('T'));
        Frozen(pid)
    }

    fn resume(&self) {
        signal(self.0, Signal::CONT);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.resume();
        kill_pid(self.0);
    }
}

fn signal(pid: u32, signal: Signal) {
    let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), signal);
}

/// A process's state letter, from `/proc`.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// A checker with a small inbox, and its child's pid.
fn checker() -> (Task, u32) {
    sidetask::init(registry());
    let task = Process::<Checker>::new(())
        .inbox_capacity(4)
        .grace_period(GRACE)
        .spawn()
        .unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap() as u32;
    (task, pid)
}

/// `try_send`s blobs `next..` until one is refused as full, each within
/// [`PROMPT`]; returns the first id not accepted.
fn fill(task: &Task, mut next: u64) -> u64 {
    loop {
        let blob = (next, blob(next, BLOB));
        let start = Instant::now();
        let sent = task.try_send(blob);
        let took = start.elapsed();
        assert!(took < PROMPT, "try_send took {took:?} (message {next})");
        match sent {
            Ok(()) => next += 1,
            Err(TrySendError::Full(_)) => return next,
            Err(e) => panic!("message {next}: {e}"),
        }
    }
}

#[test]
fn a_frozen_child_holds_up_no_send_and_gets_every_message_whole_once_it_resumes() {
    let (task, pid) = checker();
    let frozen = Frozen::freeze(pid);
    let mut accepted = fill(&task, 0);
    assert!(accepted > 0, "no message was accepted");
    // Frozen longer than the grace period, tried all along: none waits.
    let start = Instant::now();
    while start.elapsed() < FROZEN {
        accepted = fill(&task, accepted);
        let before = Instant::now();
        let timed = task.send_timeout((accepted, blob(accepted, BLOB)), PROMPT);
        let took = before.elapsed();
        assert!(took < 2 * PROMPT, "send_timeout took {took:?}");
        assert!(timed.unwrap_err().is_timeout());
    }
    frozen.resume();
    // Every message accepted arrives whole and in order, and the
    // connection goes on: one more after them arrives too.
    for id in 0..accepted {
        assert_eq!(task.recv_timeout(LIMIT), Ok(id), "message {id}");
    }
    task.send_timeout((accepted, blob(accepted, BLOB)), LIMIT)
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT), Ok(accepted));
    task.close_inbox();
    let outcome = task
        .join_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the task did not end"));
    assert_eq!(outcome.value(), Some(accepted + 1));
}

/// Freezes a checker, fills its connection, ends it with `end` (which must
/// return at once), and checks that every message comes back unread.
fn end_a_frozen_child(end: impl FnOnce(&Task)) {
    let (task, pid) = checker();
    let _frozen = Frozen::freeze(pid);
    let accepted = fill(&task, 0);
    let start = Instant::now();
    end(&task);
    let took = start.elapsed();
    assert!(took < PROMPT, "ending the task took {took:?}");
    // Stop escalates to SIGKILL after two grace periods; kill at once.
    assert!(task.wait_timeout(LIMIT), "the frozen task did not end");
    // The child read nothing: every message comes back, in order.
    let back = task.take_unread().unwrap();
    let outcome = task.join();
    assert!(outcome.is_killed(), "{outcome:?}");
    let ids: Vec<u64> = back.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (0..accepted).collect::<Vec<_>>());
    assert!(back.iter().all(|(id, bytes)| *bytes == blob(*id, BLOB)));
}

#[test]
fn a_frozen_child_is_stopped_at_once_and_gives_back_every_message() {
    end_a_frozen_child(|task| task.stop());
}

#[test]
fn a_frozen_child_is_killed_at_once_and_gives_back_every_message() {
    end_a_frozen_child(|task| task.kill());
}
