//! How a process task ended, when no outcome came from its child: from the
//! protocol's state, the exit status and how far a stop had escalated.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::Signal;

use crate::backend::unix::Stage;
use crate::named;
use crate::outcome::{Crash, CrashCause, Killed, Outcome};

/// How a task ended without an outcome of its own: killed, or crashed.
pub(super) enum Failure {
    Killed(Killed),
    Crashed(Crash),
}

impl Failure {
    /// A crash before the task could run.
    pub(super) fn start(why: String, stderr_tail: Vec<u8>) -> Failure {
        Failure::Crashed(Crash::new(CrashCause::Start(why), stderr_tail))
    }
}

impl<V, E> From<Failure> for Outcome<V, E> {
    fn from(failure: Failure) -> Outcome<V, E> {
        match failure {
            Failure::Killed(killed) => Outcome::Killed(killed),
            Failure::Crashed(crash) => Outcome::Crashed(crash),
        }
    }
}

impl From<Failure> for named::Ended {
    fn from(failure: Failure) -> named::Ended {
        match failure {
            Failure::Killed(killed) => named::Ended::Killed(killed),
            Failure::Crashed(crash) => named::Ended::Crashed(crash),
        }
    }
}

/// What is known of a task that ended without an outcome.
pub(super) struct Ending {
    pub(super) broken: Option<String>,
    pub(super) cut: Option<String>,
    pub(super) status: Option<ExitStatus>,
    pub(super) escalated: Stage,
    pub(super) killed_late: bool,
    pub(super) kill_asked: bool,
    // Whether the child ran under a memory limit (`RLIMIT_AS`).
    pub(super) memory_limited: bool,
    pub(super) stderr_tail: Vec<u8>,
}

pub(super) fn classify(ending: Ending) -> Failure {
    let Ending {
        broken,
        cut,
        status,
        escalated,
        killed_late,
        kill_asked,
        memory_limited,
        stderr_tail,
    } = ending;
    if let Some(why) = broken {
        return Failure::Crashed(Crash::new(CrashCause::Protocol(why), stderr_tail));
    }
    let Some(status) = status else {
        return Failure::Crashed(Crash::new(
            CrashCause::Protocol(crate::backend::unix::status_lost()),
            stderr_tail,
        ));
    };
    if let Some(signal) = status.signal() {
        let ours = (signal == Signal::KILL.as_raw()
            && (escalated == Stage::Killed || kill_asked || killed_late))
            || (signal == Signal::TERM.as_raw() && escalated >= Stage::Terminated);
        if ours {
            return Failure::Killed(Killed::new(Some(signal), stderr_tail));
        }
        // From evidence only, never from what the child wrote: under a
        // memory limit an allocation that fails aborts the child (Rust's
        // allocation error handler) or makes it fault (C code that does not
        // check); the CPU limit's signal is its own. A SIGKILL we did not
        // send is a signal like any other (the kernel's OOM killer cannot be
        // told from a `kill -9` without a cgroup to ask).
        let by_allocation = [Signal::ABORT, Signal::SEGV, Signal::BUS]
            .iter()
            .any(|s| s.as_raw() == signal);
        let cause = if signal == Signal::XCPU.as_raw() {
            CrashCause::CpuLimit
        } else if memory_limited && by_allocation {
            CrashCause::OutOfMemory
        } else {
            CrashCause::Signal(signal)
        };
        return Failure::Crashed(Crash::new(cause, stderr_tail));
    }
    let cause = if let Some(why) = cut {
        CrashCause::Protocol(why)
    } else {
        CrashCause::Exited(status.code().unwrap_or(-1))
    };
    Failure::Crashed(Crash::new(cause, stderr_tail))
}
