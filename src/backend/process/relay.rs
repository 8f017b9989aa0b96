//! Who reads a connection: whoever waits for what it brings.
//!
//! A frame that reaches a thread through another thread costs a wake-up,
//! which is most of a round trip's time. So the thread that waits for a
//! frame (a parent's caller in `recv`, a child's body in `recv`) reads the
//! socket itself, and hands on what is not for it (an acknowledgement, an
//! outcome). A fallback thread (the parent's body, a worker in the child)
//! reads when nobody else does, so that stops, ends and events still come
//! in while the callers are busy elsewhere.
//!
//! One reader at a time holds the [`FrameReader`]. The fallback gives the
//! role up when a caller comes (a wake through an eventfd), and leaves it to
//! callers for [`LINGER`] after the last one left: a caller that asks for
//! the next frame a moment later finds the role free. Anyone who waits
//! without reading (a join, an awaited event) asks the fallback to
//! [`hurry`](Relay::hurry).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd};

use super::protocol::{FrameError, FrameReader};
use crate::backend::unix::timespec;
use crate::sync::lock;
use crate::task::wire::Served;

#[cfg(all(test, loom))]
mod loom_tests;

/// How long the fallback leaves the connection to callers after the last
/// one left.
const LINGER: Duration = Duration::from_millis(1);

/// What a frame did.
pub(crate) enum Flow {
    /// Nothing a waiter looks for: read on.
    More,
    /// Something a waiter looks for came (a caller stops reading).
    Wake,
    /// The last frame of the task: nobody reads after it.
    End,
}

/// What the reader does with frames and with the connection's end.
pub(crate) trait Dispatch {
    /// Handles one frame (without waiting on other work: the reader may
    /// be a caller with a deadline).
    fn frame(&self, payload: &[u8]) -> Flow;
    /// The connection ended or broke: always the end.
    fn failed(&self, error: FrameError);
    /// Whether what a caller waits for is there already (another reader
    /// handed it on).
    fn ready(&self) -> bool;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    Fallback,
    Caller,
}

struct Role {
    holder: Holder,
    // Callers waiting for the role: the fallback leaves it to them.
    wanted: usize,
    // The fallback was asked to give the role up.
    kicked: bool,
    // The fallback should read now, not linger.
    hurry: bool,
    // The fallback waits for callers to let the role go (not lingering).
    fallback_waits: bool,
    left: Option<Instant>,
    ended: bool,
}

/// A caller's next step, as the role says (under its lock).
#[derive(Debug, PartialEq, Eq)]
enum CallerTurn {
    /// Take the role and read.
    Take,
    /// Go back with this.
    Leave(Served),
    /// Wait for a change; `kick`: ask the fallback to give the role up
    /// first.
    Wait { kick: bool },
}

/// The fallback's next step, as the role says (under its lock).
#[derive(Debug, PartialEq, Eq)]
enum FallbackTurn {
    /// The task's last frame was read: nothing more to read.
    Stop,
    /// Take the role and read.
    Take,
    /// Leave the role to callers until then (one may come back at once).
    Linger(Instant),
    /// Wait for the callers to let the role go.
    WaitForCallers,
}

// The role's transitions, apart from the locking, the waiting and the
// reading around them (exercised under loom: `loom_tests`).
impl Role {
    fn new() -> Role {
        Role {
            holder: Holder::Nobody,
            wanted: 0,
            kicked: false,
            hurry: false,
            fallback_waits: false,
            left: None,
            ended: false,
        }
    }

    /// A caller (counted in `wanted` while it looks) looks at the role:
    /// `ready` says whether what it waits for is there, `late` whether its
    /// deadline passed.
    fn caller_turn(&mut self, ready: bool, late: impl FnOnce() -> bool) -> CallerTurn {
        if self.ended {
            return CallerTurn::Leave(Served::Ended);
        }
        if ready {
            return CallerTurn::Leave(Served::Wake);
        }
        match self.holder {
            Holder::Nobody => return CallerTurn::Take,
            Holder::Caller => {
                // The fallback serves us when that caller leaves.
                self.hurry = true;
                return CallerTurn::Leave(Served::Busy);
            }
            Holder::Fallback => {}
        }
        // A caller whose time is up leaves the fallback be: it hands on
        // what it reads.
        if late() {
            return CallerTurn::Leave(Served::TimedOut);
        }
        let kick = !self.kicked;
        self.kicked = true;
        CallerTurn::Wait { kick }
    }

    /// A caller is done reading (`served`) at `now`.
    fn caller_left(&mut self, served: &Served, now: Instant) {
        self.holder = Holder::Nobody;
        self.left = Some(now);
        if *served == Served::Ended {
            self.ended = true;
        }
    }

    /// Whether a caller that let the role go, or stopped waiting for it,
    /// wakes the others. A fallback that lingers is not woken: it finds the
    /// role free when its linger ends, so a caller that comes back at once
    /// costs nobody a wake-up.
    fn wakes_on_let_go(&self) -> bool {
        self.wanted > 0 || self.hurry || self.ended || self.fallback_waits
    }

    /// The fallback looks at the role at `now`.
    fn fallback_turn(&self, now: Instant) -> FallbackTurn {
        if self.ended {
            return FallbackTurn::Stop;
        }
        if self.holder != Holder::Nobody || self.wanted > 0 {
            return FallbackTurn::WaitForCallers;
        }
        match self
            .left
            .map(|left| left + LINGER)
            .filter(|&until| !self.hurry && now < until)
        {
            None => FallbackTurn::Take,
            Some(until) => FallbackTurn::Linger(until),
        }
    }

    /// The fallback takes the role.
    fn fallback_took(&mut self) {
        self.holder = Holder::Fallback;
        self.hurry = false;
        self.kicked = false;
    }

    /// The fallback is done reading (`ended`: it read the last frame).
    fn fallback_left(&mut self, ended: bool) {
        self.holder = Holder::Nobody;
        self.ended |= ended;
    }
}

pub(crate) struct Relay {
    role: Mutex<Role>,
    changed: Condvar,
    // Taken only by the holder of the role; `None` once given back.
    reader: Mutex<Option<FrameReader>>,
    kick: OwnedFd,
    max_frame: usize,
}

impl Relay {
    pub(crate) fn new(reader: FrameReader, max_frame: usize) -> std::io::Result<Relay> {
        let kick = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Relay {
            role: Mutex::new(Role::new()),
            changed: Condvar::new(),
            reader: Mutex::new(Some(reader)),
            kick,
            max_frame,
        })
    }

    /// Asks the fallback to read now rather than linger (someone waits
    /// without reading).
    pub(crate) fn hurry(&self) {
        let mut role = lock(&self.role);
        if !role.hurry {
            role.hurry = true;
            self.changed.notify_all();
        }
    }

    fn wait<'a>(&self, role: MutexGuard<'a, Role>, until: Option<Instant>) -> MutexGuard<'a, Role> {
        match until {
            None => self
                .changed
                .wait(role)
                .unwrap_or_else(|poison| poison.into_inner()),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                self.changed
                    .wait_timeout(role, left)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
        }
    }

    /// A caller's turn: reads until a frame wakes it, the task's last
    /// frame, or `until` (`None`: no limit).
    pub(crate) fn serve(&self, dispatch: &dyn Dispatch, until: Option<Instant>) -> Served {
        {
            let mut role = lock(&self.role);
            role.wanted += 1;
            // `None`: this caller takes the role.
            let got = loop {
                let late = || until.is_some_and(|u| Instant::now() >= u);
                match role.caller_turn(dispatch.ready(), late) {
                    CallerTurn::Take => break None,
                    CallerTurn::Leave(served) => break Some(served),
                    CallerTurn::Wait { kick } => {
                        if kick {
                            let _ = rustix::io::write(&self.kick, &1u64.to_ne_bytes());
                        }
                        role = self.wait(role, until);
                    }
                }
            };
            role.wanted -= 1;
            if let Some(got) = got {
                self.let_go(&role);
                return got;
            }
            role.holder = Holder::Caller;
        }
        let served = self.read(dispatch, until);
        let mut role = lock(&self.role);
        role.caller_left(&served, Instant::now());
        self.let_go(&role);
        served
    }

    /// A caller is done with the role (or with waiting for it): wakes
    /// those who wait for that (`Role::wakes_on_let_go`).
    fn let_go(&self, role: &Role) {
        if role.wakes_on_let_go() {
            self.changed.notify_all();
        }
    }

    /// Reads as a caller (the role held).
    fn read(&self, dispatch: &dyn Dispatch, until: Option<Instant>) -> Served {
        let mut guard = lock(&self.reader);
        let Some(reader) = guard.as_mut() else {
            return Served::Ended;
        };
        loop {
            match reader.next(self.max_frame) {
                Ok(Some(payload)) => match dispatch.frame(&payload) {
                    Flow::More => continue,
                    Flow::Wake => return Served::Wake,
                    Flow::End => return Served::Ended,
                },
                Ok(None) => {}
                Err(e) => {
                    dispatch.failed(e);
                    return Served::Ended;
                }
            }
            if let Some(until) = until
                && !readable(reader.get_ref(), None, Some(until))
            {
                return Served::TimedOut;
            }
            if let Err(e) = reader.fill() {
                dispatch.failed(e);
                return Served::Ended;
            }
        }
    }

    /// The fallback: reads whenever no caller does, until the task's last
    /// frame.
    pub(crate) fn fallback(&self, dispatch: &dyn Dispatch) {
        loop {
            {
                let mut role = lock(&self.role);
                loop {
                    match role.fallback_turn(Instant::now()) {
                        FallbackTurn::Stop => return,
                        FallbackTurn::Take => break,
                        FallbackTurn::Linger(until) => role = self.wait(role, Some(until)),
                        FallbackTurn::WaitForCallers => {
                            role.fallback_waits = true;
                            role = self.wait(role, None);
                            role.fallback_waits = false;
                        }
                    }
                }
                role.fallback_took();
            }
            let ended = self.fallback_read(dispatch);
            let mut role = lock(&self.role);
            role.fallback_left(ended);
            self.changed.notify_all();
        }
    }

    /// Reads as the fallback until a caller asks for the role (`false`) or
    /// the task's last frame (`true`).
    fn fallback_read(&self, dispatch: &dyn Dispatch) -> bool {
        let mut guard = lock(&self.reader);
        let Some(reader) = guard.as_mut() else {
            return true;
        };
        loop {
            loop {
                match reader.next(self.max_frame) {
                    Ok(Some(payload)) => match dispatch.frame(&payload) {
                        Flow::End => return true,
                        Flow::More => {}
                        Flow::Wake => {
                            // Callers waiting for the role may have what
                            // they wait for now (and the next frame may
                            // wait for one of them, for room).
                            let role = lock(&self.role);
                            if role.wanted > 0 {
                                self.changed.notify_all();
                            }
                            if role.kicked {
                                drop(role);
                                self.drain_kick();
                                return false;
                            }
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        dispatch.failed(e);
                        return true;
                    }
                }
            }
            if lock(&self.role).kicked {
                self.drain_kick();
                return false;
            }
            if !readable(reader.get_ref(), Some(&self.kick), None) {
                self.drain_kick();
                return false;
            }
            if let Err(e) = reader.fill() {
                dispatch.failed(e);
                return true;
            }
        }
    }

    fn drain_kick(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.kick, &mut buf);
    }

    /// Takes the reader back once the task's last frame was read and no
    /// caller holds the role any more.
    pub(crate) fn take_reader(&self) -> Option<FrameReader> {
        let mut role = lock(&self.role);
        while role.holder != Holder::Nobody {
            role = self.wait(role, None);
        }
        role.ended = true;
        lock(&self.reader).take()
    }
}

/// Waits until `socket` is readable (`true`), `kick` is, or `until` passes
/// (`false`).
fn readable(socket: &impl AsFd, kick: Option<&OwnedFd>, until: Option<Instant>) -> bool {
    let socket = socket.as_fd();
    let kick_fd = kick.map_or(socket, AsFd::as_fd);
    let mut fds = [
        PollFd::from_borrowed_fd(socket, PollFlags::IN),
        PollFd::from_borrowed_fd(kick_fd, PollFlags::IN),
    ];
    let n = if kick.is_some() { 2 } else { 1 };
    let polled = rustix::io::retry_on_intr(|| {
        let timeout = until.map(|until| timespec(until.saturating_duration_since(Instant::now())));
        rustix::event::poll(&mut fds[..n], timeout.as_ref())
    });
    match polled {
        Ok(0) => false,
        // A hang-up or an error reads as the end, in the read that follows.
        Ok(_) => !fds[0].revents().is_empty(),
        // The read that follows reports it.
        Err(_) => true,
    }
}
