//! Driving a process task to its end, on the parent's side: the task's
//! body on a worker thread sets up the session, reads the connection when
//! no caller does, and turns what it saw into the outcome.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustix::process::Signal;

use super::Config;
use super::classify::{Ending, classify};
use super::protocol::decode;
use super::relay::Relay;
use super::session::{Ended, FlightState, Pumped, Session};
use super::worker::Worker;
use crate::backend::thread as place;
use crate::backend::unix::{Escalation, Stage, Terminate, signal_group};
use crate::ctx::Ctx;
use crate::mailbox::{INBOX_CLOSED, KILL, STOP};
use crate::named::NamedTask;
use crate::outcome::{Crash, CrashCause, Outcome};
use crate::sync::lock;
use crate::task::wire::{Side, Wire};

/// Drives a task on `worker` to its end. Returns the outcome, and the
/// worker if `reuse` and the child is fit to take another task.
pub(super) fn drive<T: NamedTask>(
    ctx: &Ctx<T::In, T::Event>,
    mut worker: Worker,
    config: &Config,
    reuse: bool,
    awaiting_ready: bool,
) -> (Outcome<T::Value, T::Error>, Option<Worker>) {
    let mailbox = ctx.mailbox();
    mailbox.no_spin();
    let relay = worker
        .reader
        .take()
        .ok_or_else(|| io::Error::other("the connection's reader is gone"))
        .and_then(|reader| Relay::new(reader, config.max_frame));
    let relay = match relay {
        Ok(relay) => relay,
        Err(e) => {
            mailbox.set(INBOX_CLOSED);
            let tail = worker.kill_and_reap();
            let why = format!("could not read from the child: {e}");
            return (
                Outcome::Crashed(Crash::new(CrashCause::Start(why), tail)),
                None,
            );
        }
    };
    let pid = worker.pid();
    let link = Arc::new_cyclic(|me: &Weak<Session<T>>| Session::<T> {
        me: me.clone(),
        ctx: ctx.share(),
        writer: Arc::clone(&worker.writer),
        wake: OnceLock::new(),
        relay,
        flight: Mutex::new(FlightState {
            credits: mailbox.inbox_capacity(),
            unacked: VecDeque::new(),
            ended: false,
        }),
        pump: Mutex::new(Pumped::default()),
        pending: AtomicBool::new(false),
        max_frame: config.max_frame,
        awaiting_ready: AtomicBool::new(awaiting_ready),
        // The child is told to terminate, so that it ends what it started
        // before it goes: `SIGTERM` would end it first, and whatever left
        // its group would outlive it.
        escalation: {
            let me = me.clone();
            let ask = move || {
                if let Some(link) = me.upgrade() {
                    link.pump();
                }
            };
            Escalation::new(pid, pid, config.grace, false, Terminate::Ask(Box::new(ask)))
        },
        write_failed: AtomicBool::new(false),
        refused: Mutex::new(None),
        rejected: Mutex::new(Vec::new()),
        ended: Mutex::new(Ended::default()),
    });
    {
        let weak = Arc::downgrade(&link);
        ctx.shared().set_stop_hook(Box::new(move || {
            if let Some(link) = weak.upgrade() {
                link.stop_requested();
            }
        }));
        let wire: Weak<dyn Wire<T::Event>> = Arc::downgrade(&link) as Weak<dyn Wire<T::Event>>;
        ctx.shared().set_wire(Side::Handle, wire);
    }
    // A stop requested before the hook was set.
    if mailbox.is(STOP) {
        link.stop_requested();
    }
    // Messages sent before the port was set.
    link.pump();

    link.relay.fallback(&*link);

    let Ended {
        outcome: end,
        broken,
        cut,
    } = std::mem::take(&mut *lock(&link.ended));
    if broken.is_some() {
        signal_group(worker.pid(), Signal::KILL);
    }
    // The task is over: no signal goes out from now on.
    let escalated = link.escalation.retire();
    // Messages the child never took come back first, then the handle's
    // inbox. A write in progress ends first (it gives back what it holds),
    // and a frame waiting for room is left.
    let unacked = {
        let mut flight = lock(&link.flight);
        flight.ended = true;
        std::mem::take(&mut flight.unacked)
    };
    if link.abandon_writes() {
        link.write_failed.store(true, Ordering::SeqCst);
    }
    mailbox.set(INBOX_CLOSED);
    let mut back: Vec<T::In> = unacked
        .into_iter()
        .filter_map(|bytes| decode::<T::In>(&bytes).ok())
        .collect();
    back.append(&mut lock(&link.rejected));
    mailbox.give_back(back);
    worker.reader = link.relay.take_reader();
    let refused = lock(&link.refused).take();
    let broken = broken.or(refused);
    if let Some(end) = end.filter(|_| broken.is_none() && cut.is_none()) {
        let fit = escalated <= Stage::Asked
            && !link.write_failed.load(Ordering::SeqCst)
            && worker.reader.is_some()
            && worker.alive();
        if reuse && fit {
            return (end, Some(worker));
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
        return (end, None);
    }
    let (status, killed_late) = worker.reap(config.grace);
    let stderr_tail = worker.tail.finish_since(worker.tail_mark);
    let outcome = classify(Ending {
        broken,
        cut,
        status,
        escalated,
        killed_late,
        kill_asked: mailbox.is(KILL),
        memory_limited: config.memory_limit.is_some(),
        stderr_tail,
    });
    (outcome, None)
}
