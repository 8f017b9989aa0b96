//! A registered task run in a child process by its name alone, its types
//! erased: the process place for a place that speaks bytes (a remote
//! worker that isolates each task it claims).
//!
//! [`prepare_isolated`] has the shape of a registered entry's `prepare`
//! (`named::Entry`): an inlet, and a body that runs on the calling thread.
//! Here the body is the session's driver: it starts the child (this binary
//! executed again), gives it the task, and drives the session to its end.
//! The inlet is the session's front, in bytes:
//!
//! 1. A message handed to it waits in its queue until the child has credit
//!    for it; it takes no more than the inbox holds (the queue and the
//!    messages on their way, until the child acknowledges reading them),
//!    and says `Full` beyond that.
//! 2. Each message the child acknowledges reading is
//!    [`taken`](crate::named::Line::taken) on the place's line, once per
//!    message, after its credit is back: the place may hand another at once.
//! 3. Each event goes to the line as it comes, waiting for room there.
//! 4. A stop escalates as a process task's does (asked, then after the
//!    grace period told to terminate, then `SIGKILL`); a kill sends
//!    `SIGKILL` to the child and everything it started, on the calling
//!    thread, and the body ends [`Ended::Killed`].
//!
//! A stop or a kill that comes before the child has answered the handshake
//! takes effect once it has (within the start timeout); a kill before the
//! child was started ends the body without starting it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::classify::Failure;
use super::drive::{drive, unreadable};
use super::protocol::Hello;
use super::session::{Front, Next, Session};
use super::worker::{Refusal, Worker};
use super::{Config, DEFAULT_MAX_FRAME, FRAMING, check_registered, hello_of};
use crate::named::{Delivered, Ended, Inlet, Line, Prepared};
use crate::outcome::{Crash, CrashCause, Killed};
use crate::sync::lock;

/// Prepares the task registered as `name` to run in a child process, from
/// its encoded argument, its inbox holding `inbox` messages, with `grace`
/// for each step of a stop's escalation; messages of up to `max_message`
/// bytes, encoded, are taken.
///
/// The child is this binary, executed again: it must call
/// [`init`](crate::init) first thing in `main`, with a registry that holds
/// `name` with this `fingerprint` (the child refuses the task otherwise,
/// and the body ends as a start crash).
///
/// # Errors
///
/// If [`init`](crate::init) was not called in this process (its child
/// would not know it is one), `name` is not in the registry given to it, or
/// the argument is over the maximum frame.
pub(crate) fn prepare_isolated(
    name: &str,
    fingerprint: u64,
    arg: &[u8],
    inbox: usize,
    grace: Duration,
    max_message: usize,
) -> Result<Prepared, String> {
    check_registered(name).map_err(|e| e.to_string())?;
    let config = Config {
        grace,
        inbox: inbox.max(1),
        // Events and the outcome are not bounded by the place: the default
        // maximum frame, or more for the largest message.
        max_frame: max_message
            .saturating_add(FRAMING)
            .max(DEFAULT_MAX_FRAME)
            .min(u32::MAX as usize),
        ..Config::default()
    };
    let hello =
        hello_of(name, fingerprint, arg.to_vec(), &config, false).map_err(|e| e.to_string())?;
    let isolated = Arc::new(Isolated {
        name: name.to_owned(),
        capacity: config.inbox,
        max_frame: config.max_frame,
        queue: Mutex::new(Queue::default()),
        stop: AtomicBool::new(false),
        kill: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        session: OnceLock::new(),
    });
    let inlet: Arc<dyn Inlet> = isolated.clone();
    let run = Box::new(move |line: Arc<dyn Line>| isolated.run(line, hello, &config));
    Ok(Prepared { inlet, run })
}

/// A task isolated in a child: its inlet, and what its front shares with
/// it.
struct Isolated {
    name: String,
    capacity: usize,
    max_frame: usize,
    queue: Mutex<Queue>,
    stop: AtomicBool,
    kill: AtomicBool,
    // The place is done with the task, or its session ended: no message is
    // taken any more.
    finished: AtomicBool,
    // Set once the child has taken the task.
    session: OnceLock<Weak<Session>>,
}

/// The messages handed to an isolated task.
#[derive(Default)]
struct Queue {
    // Waiting for credit, oldest first.
    messages: VecDeque<Vec<u8>>,
    // Handed over and not acknowledged yet: those waiting here and those on
    // their way to the child or in its inbox.
    outstanding: usize,
    closed: bool,
}

impl Isolated {
    /// Starts the child, gives it the task, and drives it to its end.
    fn run(self: Arc<Self>, line: Arc<dyn Line>, hello: Hello, config: &Config) -> Ended {
        if self.kill.load(Ordering::SeqCst) {
            return Ended::Killed(Killed::new(None, Vec::new()));
        }
        let mut worker = match Worker::start(config) {
            Ok(worker) => worker,
            Err(e) => {
                return Failure::start(format!("could not start a child: {e}"), Vec::new()).into();
            }
        };
        if let Err(refusal) = worker.begin(hello, config.start_timeout, config.max_frame) {
            let tail = worker.kill_and_reap();
            let why = match refusal {
                Refusal::Unknown => format!("the child does not know the task `{}`", self.name),
                Refusal::Other(why) => why,
            };
            return Failure::start(why, tail).into();
        }
        let front = Arc::new(Driven {
            isolated: Arc::clone(&self),
            line,
            reported: Mutex::new(None),
        });
        let session = match Session::open(&mut worker, config, front.clone(), self.capacity, false)
        {
            Ok(session) => session,
            Err(e) => return unreadable(&mut worker, &e).into(),
        };
        // A stop or kill from now on reaches the session; one that came
        // before is seen by the driver.
        let _ = self.session.set(Arc::downgrade(&session));
        let (failed, _) = drive(session, worker, config, false);
        match failed {
            Some(failure) => failure.into(),
            None => lock(&front.reported).take().unwrap_or_else(|| {
                Ended::Crashed(Crash::new(
                    CrashCause::Protocol("the child's outcome was lost".to_owned()),
                    Vec::new(),
                ))
            }),
        }
    }

    fn session(&self) -> Option<Arc<Session>> {
        self.session.get().and_then(Weak::upgrade)
    }
}

impl Inlet for Isolated {
    fn deliver(&self, bytes: &[u8]) -> Result<Delivered, String> {
        if bytes.len() + FRAMING > self.max_frame {
            return Err(format!(
                "a message of {} bytes is over the maximum frame of {}",
                bytes.len(),
                self.max_frame
            ));
        }
        if self.stop.load(Ordering::SeqCst) || self.finished.load(Ordering::SeqCst) {
            return Ok(Delivered::Refused);
        }
        {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Ok(Delivered::Refused);
            }
            if queue.outstanding >= self.capacity {
                return Ok(Delivered::Full);
            }
            queue.outstanding += 1;
            queue.messages.push_back(bytes.to_vec());
        }
        if let Some(session) = self.session() {
            session.pump();
        }
        Ok(Delivered::Taken)
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(session) = self.session() {
            session.stop_requested();
        }
    }

    /// `SIGKILL` to the child and everything it started, now.
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
        self.stop();
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        if let Some(session) = self.session() {
            session.pump();
        }
    }

    fn done(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }

    fn has_message(&self) -> bool {
        let queue = lock(&self.queue);
        !queue.messages.is_empty() || queue.closed || self.stop.load(Ordering::SeqCst)
    }
}

/// The session's front while the body runs: the inlet's queue and flags,
/// and the place's line.
struct Driven {
    isolated: Arc<Isolated>,
    line: Arc<dyn Line>,
    reported: Mutex<Option<Ended>>,
}

impl Front for Driven {
    fn stop_asked(&self) -> bool {
        self.isolated.stop.load(Ordering::SeqCst)
    }

    fn kill_asked(&self) -> bool {
        self.isolated.kill.load(Ordering::SeqCst)
    }

    fn has_message(&self) -> bool {
        let queue = lock(&self.isolated.queue);
        !queue.messages.is_empty() || queue.closed
    }

    fn next_message(&self) -> Next {
        let mut queue = lock(&self.isolated.queue);
        match queue.messages.pop_front() {
            Some(bytes) => Next::Message(bytes),
            None if queue.closed => Next::Closed,
            None => Next::Empty,
        }
    }

    fn event(&self, bytes: Vec<u8>) -> Result<(), String> {
        // The place waits for room, if it has to.
        let _ = self.line.event(bytes, true);
        Ok(())
    }

    fn taken(&self, n: usize) {
        {
            let mut queue = lock(&self.isolated.queue);
            queue.outstanding = queue.outstanding.saturating_sub(n);
        }
        for _ in 0..n {
            self.line.taken();
        }
    }

    fn outcome(&self, ended: Ended) -> Result<(), String> {
        *lock(&self.reported) = Some(ended);
        Ok(())
    }

    fn ready(&self) -> bool {
        // Nobody but the driver reads the connection.
        false
    }

    fn ended(&self, unacked: VecDeque<Vec<u8>>) {
        // The place gives back what its line was not told was taken: these
        // among them.
        drop(unacked);
        self.isolated.finished.store(true, Ordering::SeqCst);
        lock(&self.isolated.queue).messages.clear();
    }
}
