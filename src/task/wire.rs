//! The seam between the core and a place that has a connection.
//!
//! A place whose body runs elsewhere (a child process today) keeps a
//! connection to it. Handing each frame from a reading thread to the
//! waiting one costs a thread wake-up, which is most of a round trip's
//! time; so the place serves the waits itself: the thread that sends writes
//! what it sends, and the thread that waits reads the connection for what
//! it waits for, when nobody else does. The core knows only this trait: it
//! asks the wire of a task, where there is one, and the wire answers with
//! what its connection brought into the mailbox.
//!
//! A wire serves one [`Side`]: the handle's (messages go out, events come
//! in) or the body's (events go out, messages come in).

use std::time::Instant;

use crate::mailbox::{PopError, Wait};

/// Which side of a task a wire serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The handle's: messages go out through it, events come in.
    Handle,
    /// The body's (where the body runs apart from the place's driver):
    /// events go out through it, messages come in.
    Body,
}

/// How a caller's turn at reading a connection went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// It read something a waiter looks for: look again.
    Wake,
    /// Another thread reads: wait for what it hands on.
    Busy,
    /// The deadline passed.
    TimedOut,
    /// The task's last frame was read: nothing more comes this way.
    Ended,
}

/// A place's connection to where a task's body runs, serving one side's
/// waits on the waiting thread. Every method returns at once unless it says
/// otherwise.
pub(crate) trait Wire<Ev>: Send + Sync {
    /// Handle side: a message went into the inbox, or the inbox was closed;
    /// writes what may go now (or has another thread write it).
    fn sent(&self) {}

    /// Body side: the body took a message out of its inbox.
    fn taken(&self) {}

    /// Handle side: the handle took an event out of its outbox (a place
    /// that lets another handle resume where this one was records it).
    fn received(&self) {}

    /// Handle side: how many events the place dropped before the handle
    /// could read them.
    fn missed(&self) -> u64 {
        0
    }

    /// Body side: carries `event` out instead of the outbox. `wait`: whether
    /// it may wait for room. `Err(Full)` (only when it may not wait) or
    /// `Err(Gone)` give the event back.
    fn carry(&self, event: Ev, wait: bool) -> Result<(), Carry<Ev>> {
        let _ = wait;
        Err(Carry::Gone(event))
    }

    /// How much the connection has brought so far, in a count that only
    /// grows; taken before a caller looks at the mailbox, and given back to
    /// [`pull`](Wire::pull). A place whose other threads put what they read
    /// into the mailbox while a caller reads too counts it here.
    fn mark(&self) -> u64 {
        0
    }

    /// A caller waits until `until` for what the connection brings: reads
    /// for it if nobody else does. May wait until `until`. `since`: the
    /// [`mark`](Wire::mark) taken before the caller last found nothing; if
    /// more was brought since, it returns [`Served::Wake`] at once (what
    /// was brought may be what the caller waits for, put into the mailbox
    /// after it looked).
    fn pull(&self, until: Option<Instant>, since: u64) -> Served;

    /// Someone waits without reading (for the end, asynchronously, or in a
    /// sleep): whoever reads when nobody waits should read now.
    fn hurry(&self);

    /// Handle side: whether [`pull`](Wire::pull) also brings the task's end,
    /// so that a thread waiting for it may read the connection itself.
    fn brings_end(&self) -> bool {
        false
    }
}

/// Why a wire did not carry an event; the event is given back.
pub(crate) enum Carry<Ev> {
    /// No room now, and the caller may not wait.
    Full(Ev),
    /// Nobody can ever read it.
    Gone(Ev),
}

/// Takes what a caller waits for (`take`: an event, or a message): at once
/// if it is there; else reads the connection for it through `wire` while
/// nobody else reads, and waits on `take` itself while somebody does.
pub(crate) fn take_reading<R, Ev, W: Wire<Ev> + ?Sized>(
    wait: Wait,
    take: impl Fn(Wait) -> Result<R, PopError>,
    wire: &W,
) -> Result<R, PopError> {
    loop {
        let mark = wire.mark();
        match take(Wait::No) {
            Err(PopError::Empty) => {}
            got => return got,
        }
        let until = match wait {
            Wait::No => Some(Instant::now()),
            Wait::Forever => None,
            Wait::Until(until) => Some(until),
        };
        match wire.pull(until, mark) {
            Served::Wake => {}
            Served::TimedOut => return take(Wait::No),
            Served::Busy | Served::Ended => return take(wait),
        }
    }
}
