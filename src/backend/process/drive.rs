//! Driving a session to its end, on the parent's side: the driver (a
//! task's body on a worker thread) reads the connection when no caller
//! does, and turns what it saw into how the task ended.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::process::Signal;

use super::Config;
use super::classify::{Ending, Failure, classify};
use super::session::Session;
use super::worker::Worker;
use crate::backend::thread as place;
use crate::backend::unix::{Stage, signal_group};
use crate::sync::lock;

/// A session could not be opened on `worker`: kills and reaps its child.
pub(super) fn unreadable(worker: &mut Worker, e: &io::Error) -> Failure {
    let tail = worker.kill_and_reap();
    Failure::start(format!("could not read from the child: {e}"), tail)
}

/// Drives `session`, on `worker`, to its end. Returns `None` if the child
/// sent its outcome (its front has it), else how the task failed; and the
/// worker if `reuse` and the child is fit to take another task.
pub(super) fn drive(
    session: Arc<Session>,
    mut worker: Worker,
    config: &Config,
    reuse: bool,
) -> (Option<Failure>, Option<Worker>) {
    // A stop requested before the session was opened.
    if session.front.stop_asked() {
        session.stop_requested();
    }
    // Messages sent before it was opened.
    session.pump();

    session.relay.fallback(&*session);

    let seen = std::mem::take(&mut *lock(&session.seen));
    if seen.broken.is_some() {
        signal_group(worker.pid(), Signal::KILL);
    }
    // The task is over: no signal goes out from now on.
    let escalated = session.escalation.retire();
    // Messages the child never took go back to the front. A write in
    // progress ends first (it gives back what it holds), and a frame
    // waiting for room is left.
    let unacked = {
        let mut flight = lock(&session.flight);
        flight.ended = true;
        std::mem::take(&mut flight.unacked)
    };
    if session.abandon_writes() {
        session.write_failed.store(true, Ordering::SeqCst);
    }
    session.front.ended(unacked);
    worker.reader = session.relay.take_reader();
    let refused = lock(&session.refused).take();
    let broken = seen.broken.or(refused);
    if seen.reported && broken.is_none() && seen.cut.is_none() {
        let fit = escalated <= Stage::Asked
            && !session.write_failed.load(Ordering::SeqCst)
            && worker.reader.is_some()
            && worker.alive();
        if reuse && fit {
            return (None, Some(worker));
        }
        // A child not kept exits by itself after its outcome (or by the
        // signal it got); one that hangs on its way out is killed. The
        // outcome does not wait for that: a worker thread reaps it (or this
        // one, if none can be had).
        let grace = config.grace;
        let reap = Box::new(move || {
            worker.reap(grace);
        });
        if let Err((reap, _)) = place::execute(reap) {
            reap();
        }
        return (None, None);
    }
    let (status, killed_late) = worker.reap(config.grace);
    let stderr_tail = worker.tail.finish_since(worker.tail_mark);
    let failure = classify(Ending {
        broken,
        cut: seen.cut,
        status,
        escalated,
        killed_late,
        kill_asked: session.front.kill_asked(),
        memory_limited: config.memory_limit.is_some(),
        stderr_tail,
    });
    (Some(failure), None)
}
