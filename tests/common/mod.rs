//! Fixtures shared by the integration tests: bounded waits, so that a hang
//! fails a test instead of stalling the suite.

#![allow(dead_code)]

pub mod process_tasks;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod remote;

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait may take before the test counts it as a hang.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; fails the test after [`LIMIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on its own thread and returns its result, failing the test if it
/// takes longer than `limit` (for calls that have no timed variant).
pub fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => panic::resume_unwind(p),
        Err(_) => panic!("timed out after {limit:?}"),
    }
}

/// The pids of every process `/proc` lists now.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a process is gone (or a zombie waiting to be reaped).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Kills process `pid`, as a test cleans up after itself by pid.
pub fn kill_pid(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// This test binary again, running only the ignored test `name`, with the
/// variable `env` set: a test that must run in a process of its own.
pub fn this_test_alone(name: &str, env: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([name, "--exact", "--ignored", "--nocapture"])
        .env(env, "1");
    command
}

/// Starts `parent`, waits for the line `PIDS=a,b,…` it prints, SIGKILLs it,
/// and returns those of the pids still running after [`LIMIT`] — killed by
/// pid, whatever the test then finds.
pub fn survivors_of_a_killed_parent(mut parent: std::process::Command) -> (usize, Vec<u32>) {
    use std::io::BufRead;
    let mut parent = parent.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = parent.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(pids) = line.strip_prefix("PIDS=") {
                let _ = tx.send(pids.to_owned());
            }
        }
    });
    let pids: Vec<u32> = match rx.recv_timeout(LIMIT) {
        Ok(pids) => pids.split(',').map(|p| p.trim().parse().unwrap()).collect(),
        Err(_) => {
            let _ = parent.kill();
            let _ = parent.wait();
            panic!("the parent printed no pids");
        }
    };
    parent.kill().unwrap();
    let _ = parent.wait();
    let deadline = Instant::now() + LIMIT;
    while pids.iter().any(|&p| !gone(p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
    for &p in &survivors {
        kill_pid(p);
    }
    (pids.len(), survivors)
}

/// Pids a test started or was told of: whatever is still alive of them when
/// this is dropped is killed by pid, whatever the test found.
#[derive(Default)]
pub struct Pids(pub Vec<u32>);

impl Pids {
    /// Waits (within [`LIMIT`]) for every pid to be gone; returns those
    /// that are not.
    pub fn survivors(&self) -> Vec<u32> {
        let deadline = Instant::now() + LIMIT;
        while self.0.iter().any(|&p| !gone(p)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.0.iter().copied().filter(|&p| !gone(p)).collect()
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !gone(pid) {
                kill_pid(pid);
            }
        }
    }
}
