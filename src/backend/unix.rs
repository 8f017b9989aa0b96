//! What the places that run other processes share: signalling a process
//! group, the stop's escalation, and the tail of a child's stderr.
//!
//! # Escalation
//!
//! A stop asks first; a place that can kill then escalates on the timer:
//! *terminate* once the first grace period has passed (at once for a
//! command, whose program hears of a stop through `SIGTERM` alone),
//! `SIGKILL` after the next one. A command's program is terminated by
//! `SIGTERM` to its process group; a process task's child is told through
//! its connection (a `Terminate::Ask` hook), so that it can
//! end what it started, wherever that went, before it goes. A kill sends
//! `SIGKILL` at once, to every descendant of the *root* (the child, or the
//! launcher a command's program runs under) and to the group. Every signal
//! goes out under the escalation's lock, and the place *retires* the
//! escalation when its child has ended, so that no late signal reaches a
//! group whose pid may be reused (or a reused child that runs another
//! task).

use std::collections::VecDeque;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStderr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustix::process::{Pid, Signal, kill_process_group};

use crate::STDERR_TAIL;
use crate::backend::thread as place;
use crate::sync::lock;
use crate::timer::{self, Alarm};

/// `d` as a `poll` timeout.
pub(crate) fn timespec(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Sends `signal` to the process group led by `pid`; a group that is gone
/// already is no error.
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, signal);
    }
}

/// Starts `command` from one long-lived thread: a parent-death signal
/// fires when the thread that started a child ends, so it must be a thread
/// that never ends.
pub(crate) fn spawn(command: std::process::Command) -> io::Result<Child> {
    type Request = (std::process::Command, Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<io::Result<Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx): (Sender<Request>, Receiver<Request>) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("sidetask-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .map(|_| tx)
    });
    let spawner = spawner
        .as_ref()
        .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    spawner
        .send((command, tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Makes `command`'s program get `SIGKILL` when this process ends, however
/// it ends (start it with [`spawn`], from the thread that never ends).
///
/// One of the crate's two `unsafe` blocks (the other widens a scoped
/// task's body to `'static`): a hook that runs in the forked child
/// before it executes the program.
#[allow(unsafe_code)]
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe work is allowed. It makes two system calls (prctl
    // and getppid) and builds its error from an error number: it allocates
    // nothing, takes no lock and touches no state shared with the parent.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died before the signal was set: then it
            // never comes, and the program must not start.
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// Why a child's exit status was lost, as a sentence: most often because
/// this process ignores `SIGCHLD`, which makes the kernel reap children by
/// itself.
pub(crate) fn status_lost() -> String {
    if ignores_sigchld() {
        "the child's exit status was lost: this process ignores SIGCHLD (its disposition is \
         SIG_IGN), so the kernel reaps children at once; restore the default disposition \
         (SIG_DFL) to have exit statuses"
            .to_owned()
    } else {
        "the child's exit status was lost (another part of this process reaped it)".to_owned()
    }
}

/// Whether this process ignores `SIGCHLD`, read from `/proc/self/status`.
pub(crate) fn ignores_sigchld() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (Signal::CHILD.as_raw() - 1)) != 0)
}

/// The pids of `pid`'s children (of any of its threads), read from
/// `/proc`; empty where `/proc` says nothing.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for thread in threads.flatten() {
        let path = thread.path().join("children");
        let Ok(children) = std::fs::read_to_string(path) else {
            continue;
        };
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            if !found.contains(&child) {
                found.push(child);
            }
        }
    }
    found
}

/// The pids of `pid`'s descendants (children, their children, …), read
/// from `/proc`; empty where `/proc` says nothing.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        for child in children(parent) {
            if !found.contains(&child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

/// Kills every descendant of `pid` (not `pid` itself), wherever it went
/// (another process group, another session): each is stopped as it is
/// found, so that none forks away while the tree is walked, then all are
/// killed. A descendant that was orphaned out of the tree (to `init`) is
/// out of reach; a process task's child and a command's launcher are
/// subreapers, so their own descendants stay in their trees while they
/// live.
///
/// Those in the caller's own process group are killed as they are found
/// instead: a stopped member would let the kernel hang up the whole group
/// (`SIGHUP`, the caller with it, halfway through) should the group become
/// orphaned meanwhile, as a child's group does when its parent dies. What
/// such a member forks before it dies comes back to the subreaper, and the
/// next walk finds it.
pub(crate) fn kill_descendants(pid: u32) {
    let ours = rustix::process::getpgrp();
    let mut found: Vec<u32> = Vec::new();
    let mut stopped: Vec<u32> = Vec::new();
    // Bounded: a tree that keeps growing faster than it is walked is
    // killed as far as it was found.
    for _ in 0..16 {
        let fresh: Vec<u32> = descendants(pid)
            .into_iter()
            .filter(|d| !found.contains(d))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &d in &fresh {
            let group = i32::try_from(d)
                .ok()
                .and_then(Pid::from_raw)
                .and_then(|d| rustix::process::getpgid(Some(d)).ok());
            if group == Some(ours) {
                signal(d, Signal::KILL);
            } else {
                signal(d, Signal::STOP);
                stopped.push(d);
            }
        }
        found.extend(fresh);
    }
    for &d in &stopped {
        signal(d, Signal::KILL);
    }
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// How far a stop has escalated, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    /// No stop asked for.
    None,
    /// A stop was asked for; the child was not signalled yet.
    Asked,
    /// The group got `SIGTERM`.
    Terminated,
    /// The group got `SIGKILL`.
    Killed,
    /// The child ended: no signal goes out any more.
    Retired,
}

/// How a stop's escalation terminates: `SIGTERM` to the group, or a hook
/// that tells the child (called outside the escalation's lock).
pub(crate) enum Terminate {
    Group,
    Ask(Box<dyn Fn() + Send + Sync>),
}

/// A child's stop escalation (see the module's docs).
pub(crate) struct Escalation {
    me: Weak<Escalation>,
    // The process group signalled.
    group: u32,
    // Whose every descendant a kill reaches.
    root: u32,
    grace: Duration,
    // `SIGTERM` at once on a stop (a command), rather than after a grace
    // period (a process task, which is asked through its connection first).
    term_at_once: bool,
    terminate: Terminate,
    stage: Mutex<Stage>,
}

impl Escalation {
    /// The escalation of the process group `group`, whose kill reaches
    /// every descendant of `root` too.
    pub(crate) fn new(
        group: u32,
        root: u32,
        grace: Duration,
        term_at_once: bool,
        terminate: Terminate,
    ) -> Arc<Escalation> {
        Arc::new_cyclic(|me| Escalation {
            me: me.clone(),
            group,
            root,
            grace,
            term_at_once,
            terminate,
            stage: Mutex::new(Stage::None),
        })
    }

    /// Moves from one of `from` to `to`, signalling as `to` says, unless
    /// the stage has moved on; returns whether it moved.
    fn advance(&self, from: &[Stage], to: Stage) -> bool {
        let mut stage = lock(&self.stage);
        if !from.contains(&stage) {
            return false;
        }
        *stage = to;
        match to {
            Stage::Terminated => match &self.terminate {
                Terminate::Group => signal_group(self.group, Signal::TERM),
                Terminate::Ask(ask) => {
                    drop(stage);
                    ask();
                }
            },
            Stage::Killed => {
                // Descendants first: once the root is gone, those it
                // orphaned are out of its tree.
                kill_descendants(self.root);
                signal_group(self.group, Signal::KILL);
            }
            Stage::None | Stage::Asked | Stage::Retired => {}
        }
        true
    }

    /// A stop (or, with `kill`, a kill) was asked for: signals or schedules
    /// the next steps, and returns at once.
    pub(crate) fn request(&self, kill: bool) {
        use Stage::*;
        if kill {
            self.kill();
            return;
        }
        let first = if self.term_at_once {
            self.advance(&[None], Terminated)
        } else {
            self.advance(&[None], Asked)
        };
        if first {
            let steps = if self.term_at_once { 1 } else { 2 };
            let now = Instant::now();
            for step in 1..=steps {
                if let Some(at) = self
                    .grace
                    .checked_mul(step)
                    .and_then(|d| now.checked_add(d))
                {
                    let me: Weak<dyn Alarm> = self.me.clone();
                    timer::schedule(at, me);
                }
            }
        }
    }

    /// `SIGKILL` to the group now, and to every descendant of the root
    /// outside it, unless the child has ended.
    pub(crate) fn kill(&self) {
        use Stage::*;
        self.advance(&[None, Asked, Terminated], Killed);
    }

    /// How far it went so far.
    pub(crate) fn stage(&self) -> Stage {
        *lock(&self.stage)
    }

    /// The child ended: no signal goes out from now on. Returns how far it
    /// had gone.
    pub(crate) fn retire(&self) -> Stage {
        std::mem::replace(&mut *lock(&self.stage), Stage::Retired)
    }
}

impl Alarm for Escalation {
    /// A grace period passed: `SIGTERM` the first time, `SIGKILL` the next.
    fn ring(&self) {
        use Stage::*;
        if !self.advance(&[Asked], Terminated) {
            self.advance(&[Terminated], Killed);
        }
    }
}

/// The last [`STDERR_TAIL`] bytes of a child's stderr, read on a worker
/// thread until the pipe's end.
///
/// The pipe is non-blocking: the reader waits for bytes without the lock,
/// then reads all there is under it. So a [`mark`](Tail::mark) taken under
/// the lock when the pipe is empty sees every byte written before it, and
/// a warm child's next task gets a tail of its own without writing
/// anything to tell the tasks apart.
pub(crate) struct Tail {
    kept: Arc<Mutex<Kept>>,
    pipe: Option<OwnedFd>,
    done: Receiver<()>,
}

#[derive(Default)]
struct Kept {
    bytes: VecDeque<u8>,
    // Every byte read so far.
    total: u64,
}

impl Tail {
    pub(crate) fn start(stderr: ChildStderr) -> Tail {
        Tail::start_watching(stderr, None)
    }

    /// As [`start`](Tail::start), and the same thread waits for the child's
    /// exit: once `exit`'s pidfd is readable, it calls its hook (one thread
    /// per child for both, so that one fewer wakes as the child ends).
    pub(crate) fn start_watching(stderr: ChildStderr, exit: Option<ExitWatch>) -> Tail {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let (done_tx, done) = crossbeam_channel::bounded::<()>(1);
        let theirs = Arc::clone(&kept);
        let fd = OwnedFd::from(stderr);
        let pipe = fd.try_clone().ok();
        let blocking = rustix::io::ioctl_fionbio(&fd, true).is_err();
        let _ = place::execute(Box::new(move || {
            let mut exit = exit;
            let mut buf = [0u8; 8192];
            loop {
                let readable = if exit.is_some() || !blocking {
                    match wait_readable(&fd, exit.as_ref().map(|e| &e.pidfd)) {
                        Some(ready) => ready,
                        None => break,
                    }
                } else {
                    Ready {
                        pipe: true,
                        exited: false,
                    }
                };
                if readable.exited
                    && let Some(exit) = exit.take()
                {
                    (exit.hook)();
                }
                if !readable.pipe {
                    continue;
                }
                let mut kept = lock(&theirs);
                let ended = loop {
                    match rustix::io::retry_on_intr(|| rustix::io::read(&fd, &mut buf)) {
                        Err(rustix::io::Errno::AGAIN) => break false,
                        Ok(0) | Err(_) => break true,
                        Ok(n) => {
                            kept.bytes.extend(&buf[..n]);
                            kept.total += n as u64;
                            let excess = kept.bytes.len().saturating_sub(STDERR_TAIL);
                            kept.bytes.drain(..excess);
                            if blocking {
                                break false;
                            }
                        }
                    }
                };
                drop(kept);
                if ended {
                    break;
                }
            }
            drop(done_tx);
            // The pipe ended first (the child closed its stderr, or it could
            // not be waited on): its exit is still waited for.
            if let Some(exit) = exit {
                exit.wait();
            }
        }));
        Tail { kept, pipe, done }
    }

    /// Where the tail stands now: every byte written to the pipe so far is
    /// before the mark, those still in the pipe too (the reader reads the
    /// pipe under the lock taken here, so they are neither read nor counted
    /// twice meanwhile).
    pub(crate) fn mark(&self) -> u64 {
        let kept = lock(&self.kept);
        let unread = self
            .pipe
            .as_ref()
            .and_then(|pipe| rustix::io::ioctl_fionread(pipe).ok())
            .unwrap_or(0);
        kept.total + unread
    }

    /// The tail, once the pipe has reached its end (the child and its group
    /// are gone), or after a second if something outside the group still
    /// holds the pipe open.
    pub(crate) fn finish(&self) -> Vec<u8> {
        self.finish_since(0)
    }

    /// As [`finish`](Tail::finish), without what came before `mark`.
    pub(crate) fn finish_since(&self, mark: u64) -> Vec<u8> {
        let _ = self.done.recv_timeout(Duration::from_secs(1));
        let kept = lock(&self.kept);
        let since = usize::try_from(kept.total.saturating_sub(mark)).unwrap_or(usize::MAX);
        let skip = kept.bytes.len().saturating_sub(since);
        kept.bytes.iter().skip(skip).copied().collect()
    }
}

/// What a child's exit watcher does: `hook` once `pidfd` is readable.
pub(crate) struct ExitWatch {
    pub(crate) pidfd: OwnedFd,
    pub(crate) hook: Box<dyn FnOnce() + Send>,
}

impl ExitWatch {
    /// Waits for the exit (or an error waiting for it), then calls the hook.
    fn wait(self) {
        let mut fds = [rustix::event::PollFd::new(
            &self.pidfd,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::io::retry_on_intr(|| rustix::event::poll(&mut fds, None));
        (self.hook)();
    }
}

/// What [`wait_readable`] found.
struct Ready {
    pipe: bool,
    exited: bool,
}

/// Waits until `fd` is readable or at its end, or `exit` is readable;
/// `None` if they cannot be waited on.
fn wait_readable(fd: &OwnedFd, exit: Option<&OwnedFd>) -> Option<Ready> {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [
        PollFd::new(fd, PollFlags::IN),
        PollFd::new(exit.unwrap_or(fd), PollFlags::IN),
    ];
    let n = if exit.is_some() { 2 } else { 1 };
    rustix::io::retry_on_intr(|| rustix::event::poll(&mut fds[..n], None)).ok()?;
    Some(Ready {
        pipe: !fds[0].revents().is_empty(),
        exited: exit.is_some() && !fds[1].revents().is_empty(),
    })
}
