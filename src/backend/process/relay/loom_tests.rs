//! The reader role's hand-over under loom.
//!
//! The relay's loops (`Relay::serve`, `Relay::fallback`) lock a std mutex,
//! wait on a condition variable, poll a socket and an eventfd; loom cannot
//! run those. So this model runs the role's own transitions (`Role`'s
//! methods, the very ones the relay calls) inside the same loops written
//! with loom's primitives: the connection is a list of frames under a loom
//! mutex and condition variable, on which the eventfd's kick is a flag; a
//! linger that runs out is a yield, then a look at the role as of its end
//! (loom has no clock).
//!
//! A child sends an event, then its last frame. The fallback reads when no
//! caller does; a caller waits for the event, reading itself when it may.
//! Checked, in every interleaving up to the preemption bound: one reader at
//! a time, the event read once and seen by the caller, nobody left waiting
//! (a lost wake-up leaves a thread parked: loom reports a deadlock), and
//! the fallback done once the last frame was read.

use std::time::Instant;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::{CallerTurn, FallbackTurn, Holder, Role, Served};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    Event,
    End,
}

/// The socket as the reader sees it: frames come in, and the fallback's
/// poll also wakes at a kick.
#[derive(Default)]
struct Wire {
    frames: Vec<Frame>,
    kick: bool,
}

struct Link {
    role: Mutex<Role>,
    changed: Condvar,
    wire: Mutex<Wire>,
    io: Condvar,
    // What the dispatch hands on: the event was read (by anyone).
    event: AtomicBool,
    events_read: AtomicUsize,
    readers: AtomicUsize,
}

impl Link {
    fn new() -> Link {
        Link {
            role: Mutex::new(Role::new()),
            changed: Condvar::new(),
            wire: Mutex::new(Wire::default()),
            io: Condvar::new(),
            event: AtomicBool::new(false),
            events_read: AtomicUsize::new(0),
            readers: AtomicUsize::new(0),
        }
    }

    /// The child writes a frame.
    fn send(&self, frame: Frame) {
        self.wire.lock().unwrap().frames.push(frame);
        self.io.notify_all();
    }

    /// A caller writes the eventfd.
    fn kick(&self) {
        self.wire.lock().unwrap().kick = true;
        self.io.notify_all();
    }

    /// Takes the next frame, as the holder of the role: waits for one, or
    /// (`kickable`: the fallback's poll) for a kick, `None`.
    fn next_frame(&self, kickable: bool) -> Option<Frame> {
        let mut wire = self.wire.lock().unwrap();
        loop {
            if !wire.frames.is_empty() {
                return Some(wire.frames.remove(0));
            }
            if kickable && wire.kick {
                return None;
            }
            wire = self.io.wait(wire).unwrap();
        }
    }

    fn drain_kick(&self) {
        self.wire.lock().unwrap().kick = false;
    }

    /// The dispatch of a frame: an event is handed on.
    fn dispatch(&self, frame: Frame) {
        if frame == Frame::Event {
            self.events_read.fetch_add(1, Ordering::SeqCst);
            self.event.store(true, Ordering::SeqCst);
        }
    }

    fn ready(&self) -> bool {
        self.event.load(Ordering::SeqCst)
    }

    /// Counts a reader in for as long as the guard lives: never two.
    fn reading(&self) -> Reading<'_> {
        let before = self.readers.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "two readers at once");
        Reading(self)
    }

    /// `Relay::serve`, the role's transitions in loom's loops.
    fn serve(&self) -> Served {
        {
            let mut role = self.role.lock().unwrap();
            role.wanted += 1;
            let got = loop {
                match role.caller_turn(self.ready(), || false) {
                    CallerTurn::Take => break None,
                    CallerTurn::Leave(served) => break Some(served),
                    CallerTurn::Wait { kick } => {
                        if kick {
                            self.kick();
                        }
                        role = self.changed.wait(role).unwrap();
                    }
                }
            };
            role.wanted -= 1;
            if let Some(got) = got {
                if role.wakes_on_let_go() {
                    self.changed.notify_all();
                }
                return got;
            }
            role.holder = Holder::Caller;
        }
        let served = {
            let _reading = self.reading();
            // `Relay::read`, without a deadline.
            match self.next_frame(false).expect("a frame") {
                Frame::Event => {
                    self.dispatch(Frame::Event);
                    Served::Wake
                }
                Frame::End => Served::Ended,
            }
        };
        let mut role = self.role.lock().unwrap();
        role.caller_left(&served, Instant::now());
        if role.wakes_on_let_go() {
            self.changed.notify_all();
        }
        served
    }

    /// `Relay::fallback`, the role's transitions in loom's loops.
    fn fallback(&self) {
        loop {
            {
                let mut role = self.role.lock().unwrap();
                let mut now = Instant::now();
                loop {
                    match role.fallback_turn(now) {
                        FallbackTurn::Stop => return,
                        FallbackTurn::Take => break,
                        FallbackTurn::Linger(until) => {
                            drop(role);
                            thread::yield_now();
                            role = self.role.lock().unwrap();
                            now = until;
                        }
                        FallbackTurn::WaitForCallers => {
                            role.fallback_waits = true;
                            role = self.changed.wait(role).unwrap();
                            role.fallback_waits = false;
                        }
                    }
                }
                role.fallback_took();
            }
            let ended = self.fallback_read();
            let mut role = self.role.lock().unwrap();
            role.fallback_left(ended);
            self.changed.notify_all();
        }
    }

    /// `Relay::fallback_read`: reads until a caller asks for the role
    /// (`false`) or the last frame (`true`).
    fn fallback_read(&self) -> bool {
        let _reading = self.reading();
        loop {
            let Some(frame) = self.next_frame(true) else {
                // Kicked.
                self.drain_kick();
                return false;
            };
            self.dispatch(frame);
            if frame == Frame::End {
                return true;
            }
            let role = self.role.lock().unwrap();
            if role.wanted > 0 {
                self.changed.notify_all();
            }
            if role.kicked {
                drop(role);
                self.drain_kick();
                return false;
            }
        }
    }
}

struct Reading<'a>(&'a Link);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A caller waits for the child's event while the fallback reads.
#[test]
fn loom_relay_role_hand_over() {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(|| {
        let link = Arc::new(Link::new());
        let child = {
            let link = Arc::clone(&link);
            thread::spawn(move || {
                link.send(Frame::Event);
                link.send(Frame::End);
            })
        };
        let fallback = {
            let link = Arc::clone(&link);
            thread::spawn(move || link.fallback())
        };
        // `take_reading`, for the event.
        while !link.ready() {
            match link.serve() {
                Served::Wake => {}
                Served::Ended => assert!(link.ready(), "the end came before the event"),
                other => panic!("a caller without a deadline got {other:?}"),
            }
        }
        child.join().unwrap();
        fallback.join().unwrap();
        assert_eq!(link.events_read.load(Ordering::SeqCst), 1);
        assert!(link.role.lock().unwrap().ended);
    });
}
