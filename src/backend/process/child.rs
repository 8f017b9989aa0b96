//! The child's side: the entry hook finds out whether this process is a
//! child, takes its connection and runs the tasks the parent asks for.
//!
//! A task's body runs on the thread that entered the child (at once: no
//! thread starts before it) with a context of its own kind: its inbox is a
//! mailbox filled with the messages read from the socket (by the body
//! itself while it waits in `recv`, by a worker thread otherwise:
//! see the `relay` module; a closed socket means the parent is gone, and
//! the child exits at once), the messages it takes are acknowledged (with
//! its next event, or every half inbox), and its events and its outcome are
//! written straight to the socket. A message the task did not take is never
//! acknowledged, and the parent, which keeps a copy of each message until
//! then, gives it back. A child of a pool then waits for its next task.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustix::process::{Pid, Resource, Rlimit, Signal, setrlimit};

use super::protocol::{Down, FrameError, FrameReader, Hello, Offered, Up, VERSION, Writer};
use super::relay::{Dispatch, Flow, Relay};
use super::{ENV, EXIT_PARENT_GONE, EXIT_PROTOCOL, EXIT_TERMINATED};
use crate::backend::thread as place;
use crate::backend::unix::{descendants, kill_descendants};
use crate::named::{Delivered, Ended, Entry, Full, Inlet, Line, Registry};
use crate::sync::lock;
use crate::task::wire::Served;

/// The child's connection to its parent.
struct Conn {
    // `None` while a task's relay holds it.
    reader: Option<FrameReader>,
    writer: Arc<Writer>,
}

/// If this process is a child started for a process task, runs the tasks
/// its parent asks for and exits; otherwise returns.
pub(crate) fn enter_if_child(registry: &Registry) {
    let Some(parent) = std::env::var_os(ENV)
        .and_then(|v| v.to_str()?.parse::<i32>().ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    // A grandchild that inherited the variable (the same program started
    // by the task) is not our child: it runs as a program of its own.
    if rustix::process::getppid() != Some(parent) {
        return;
    }
    // Whatever the task starts stays in this process's tree, even what
    // leaves its group or session: orphans come back here, not to `init`.
    // When the parent goes (its end of the connection closes, whoever reads
    // it sees that) or the task ends, this child kills that tree: no
    // parent-death signal, which would kill this child before it could.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    if rustix::process::getppid() != Some(parent) {
        leave(EXIT_PARENT_GONE);
    }
    let conn = match take_connection() {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("sidetask child: no connection to the parent: {e}");
            leave(EXIT_PROTOCOL);
        }
    };
    serve(registry, conn)
}

/// Moves the socket off stdin (so that nothing reads it by mistake) and
/// puts `/dev/null` there.
fn take_connection() -> io::Result<Conn> {
    let fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    let stream = UnixStream::from(fd);
    Ok(Conn {
        reader: Some(FrameReader::new(stream.try_clone()?)),
        writer: Arc::new(Writer::new(stream)),
    })
}

fn refuse(conn: &Conn, unknown: bool, why: String) -> ! {
    let _ = conn.writer.send(&Up::Refused {
        unknown,
        why: why.clone(),
    });
    eprintln!("sidetask child: {why}");
    leave(EXIT_PROTOCOL)
}

fn serve(registry: &Registry, mut conn: Conn) -> ! {
    let first = match conn.reader.as_mut() {
        Some(reader) => reader.read_frame::<Down>(1 << 30),
        None => Err(FrameError::Closed),
    };
    let mut next = match first {
        Ok(Down::Start(hello)) => hello,
        Ok(_) => refuse(&conn, false, "the first frame was not a task".to_owned()),
        Err(FrameError::Closed) => leave(EXIT_PARENT_GONE),
        Err(e) => refuse(&conn, false, format!("could not read the task: {e}")),
    };
    loop {
        if next.version != VERSION {
            refuse(
                &conn,
                false,
                format!(
                    "the parent speaks protocol version {}, this child {VERSION}",
                    next.version
                ),
            );
        }
        let limits = [
            (Resource::As, next.memory_limit),
            (Resource::Cpu, next.cpu_limit),
        ];
        for (resource, limit) in limits {
            let Some(limit) = limit else { continue };
            // The CPU limit's hard value is a second later: SIGXCPU first.
            let hard = if resource == Resource::Cpu {
                limit.saturating_add(1)
            } else {
                limit
            };
            let set = setrlimit(
                resource,
                Rlimit {
                    current: Some(limit),
                    maximum: Some(hard),
                },
            );
            if let Err(e) = set {
                refuse(
                    &conn,
                    false,
                    format!("could not set the {resource:?} limit: {e}"),
                );
            }
        }
        let Some(entry) = registry.get(&next.name) else {
            let names: Vec<_> = registry.names().collect();
            refuse(
                &conn,
                true,
                format!(
                    "no task named `{}` is registered in the child (registered: {names:?})",
                    next.name
                ),
            )
        };
        if let Some(ours) = registry.fingerprint(&next.name)
            && ours != next.fingerprint
        {
            refuse(
                &conn,
                false,
                format!(
                    "task `{}` was built from different code in the child (its types differ): fingerprint {ours:016x} in the child, {:016x} in the parent",
                    next.name, next.fingerprint
                ),
            );
        }
        match run_task(&mut conn, next, entry) {
            Some(hello) => next = hello,
            None => leave(0),
        }
    }
}

/// Kills what the task started (every descendant of this child), and
/// reaps those that were orphaned to it.
fn end_descendants() {
    kill_descendants(std::process::id());
    // Orphans came back to this subreaper: reap them (the task's own
    // children are the task's to wait for, and the task is over).
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}

/// The task did not stop within the grace period: sends `SIGTERM` to
/// everything it started (in this child's group or not: it is all in this
/// subreaper's tree), waits for it to go, then ends this child by
/// `SIGTERM`. What ignores `SIGTERM` keeps this child waiting until the
/// parent's `SIGKILL`, which reaches the whole tree.
fn terminate() -> ! {
    for pid in descendants(std::process::id()) {
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
    }
    // Until no child is left: a child's own children come back here as it
    // goes.
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::empty()) {}
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::TERM);
    // A handler of the task's own may have caught it.
    leave(EXIT_TERMINATED)
}

/// Ends this child: first everything the task started.
fn leave(code: i32) -> ! {
    end_descendants();
    std::process::exit(code)
}

fn fail(why: String) -> ! {
    eprintln!("sidetask child: {why}");
    leave(EXIT_PROTOCOL)
}

/// A task's state in the child: its way in (the inbox only: events go
/// straight to the parent), the messages it read but has not acknowledged
/// yet, and who reads the socket.
struct ChildTask {
    inlet: Arc<dyn Inlet>,
    writer: Arc<Writer>,
    relay: Relay,
    max_frame: usize,
    unacked: AtomicU32,
    ack_every: u32,
    reuse: bool,
    // `true` once the outcome is on its way: the parent may ask for the
    // next task.
    finished: AtomicBool,
    // The next task asked for (a warm child of a pool).
    next: Mutex<Option<Hello>>,
}

impl ChildTask {
    /// Writes the pending acknowledgement, then `last`, in one write: the
    /// parent learns a message was read before any event that answers it.
    fn flush(&self, last: Option<Up>) {
        let mut writing = self.writer.lock();
        let acks = self.unacked.swap(0, Ordering::SeqCst);
        let frames = match (acks, last) {
            (0, None) => return,
            (0, Some(last)) => vec![last],
            (n, last) => std::iter::once(Up::Ack(n)).chain(last).collect(),
        };
        if writing.send_all(&frames).is_err() {
            // The parent is gone: nobody is left to report to.
            leave(EXIT_PARENT_GONE);
        }
    }
}

impl Dispatch for ChildTask {
    fn frame(&self, payload: &[u8]) -> Flow {
        match postcard::from_bytes::<Down>(payload) {
            Ok(Down::Message(bytes)) => match self.inlet.deliver(&bytes) {
                Ok(Delivered::Taken) => Flow::Wake,
                Ok(Delivered::Full) => {
                    fail("the parent sent more messages than the inbox holds".to_owned())
                }
                // Stopping or ended: the parent still holds it, not
                // acknowledged, and takes it back.
                Ok(Delivered::Refused) => Flow::More,
                Err(e) => fail(format!("a malformed message from the parent: {e}")),
            },
            Ok(Down::Close) => {
                self.inlet.close();
                Flow::Wake
            }
            Ok(Down::Stop) => {
                self.inlet.stop();
                Flow::Wake
            }
            Ok(Down::Terminate) => terminate(),
            Ok(Down::Start(next)) => {
                // The parent asks for the next task only once it has this
                // one's outcome.
                if !self.finished.load(Ordering::SeqCst) {
                    fail("a new task was asked for before the last one ended".to_owned());
                }
                self.inlet.done();
                *lock(&self.next) = Some(next);
                Flow::End
            }
            Err(e) => fail(format!("a broken connection to the parent: {e}")),
        }
    }

    fn failed(&self, error: FrameError) {
        match error {
            FrameError::Closed if self.reuse && self.finished.load(Ordering::SeqCst) => {}
            // The parent is gone: nobody is left to report to.
            FrameError::Closed => leave(EXIT_PARENT_GONE),
            e => fail(format!("a broken connection to the parent: {e}")),
        }
    }

    fn ready(&self) -> bool {
        self.inlet.has_message()
    }
}

impl Line for ChildTask {
    fn taken(&self) {
        // Acknowledged in batches, with the next event at the latest: the
        // parent has credit for at least half the inbox meanwhile.
        if self.unacked.fetch_add(1, Ordering::SeqCst) + 1 >= self.ack_every {
            self.flush(None);
        }
    }

    fn event(&self, bytes: Vec<u8>, wait: bool) -> Result<(), Full> {
        // The frame adds a tag and a length to the payload.
        if bytes.len() + 6 > self.max_frame {
            let max = self.max_frame;
            self.broken(format!(
                "an event of {} bytes is over the maximum frame of {max}",
                bytes.len()
            ));
        }
        if wait {
            self.flush(Some(Up::Event(bytes)));
            return Ok(());
        }
        // Without waiting: only when the connection can begin the frame
        // now, nobody else writing and nothing else waiting to be written.
        let Some(mut writing) = self.writer.try_lock() else {
            return Err(Full);
        };
        match writing.flush_now() {
            Ok(true) => {}
            Ok(false) => return Err(Full),
            Err(_) => leave(EXIT_PARENT_GONE),
        }
        let acks = self.unacked.swap(0, Ordering::SeqCst);
        let event = Up::Event(bytes);
        let offered = if acks == 0 {
            writing.offer(std::slice::from_ref(&event))
        } else {
            writing.offer(&[Up::Ack(acks), event])
        };
        match offered {
            Ok(Offered::Whole) => Ok(()),
            Ok(Offered::Begun) => {
                // The rest of the frame goes on a worker thread, which waits
                // for the parent to read.
                drop(writing);
                let writer = Arc::clone(&self.writer);
                let drain = Box::new(move || {
                    if writer.lock().drain().is_err() {
                        leave(EXIT_PARENT_GONE);
                    }
                });
                if let Err((drain, _)) = place::execute(drain) {
                    drain();
                }
                Ok(())
            }
            // Not after a backlog written out under the same lock.
            Ok(Offered::Busy) => {
                self.unacked.fetch_add(acks, Ordering::SeqCst);
                Err(Full)
            }
            Err(_) => leave(EXIT_PARENT_GONE),
        }
    }

    fn broken(&self, why: String) {
        self.flush(Some(Up::Broken(why)));
        leave(EXIT_PROTOCOL)
    }

    fn pull(&self, until: Option<Instant>, _since: u64) -> Served {
        self.relay.serve(self, until)
    }

    fn hurry(&self) {
        self.relay.hurry();
    }
}

/// Runs one task; returns the next task asked for, or `None` when this
/// child is done.
fn run_task(conn: &mut Conn, hello: Hello, entry: Entry) -> Option<Hello> {
    let max_frame = usize::try_from(hello.max_frame).unwrap_or(usize::MAX);
    let reuse = hello.reuse;
    let inbox = hello.inbox.max(1);
    let prepared = match (entry.prepare)(&hello.arg, inbox as usize) {
        Ok(prepared) => prepared,
        Err(why) => refuse(conn, false, why),
    };
    let Some(reader) = conn.reader.take() else {
        fail("the connection's reader is gone".to_owned())
    };
    let relay = match Relay::new(reader, max_frame) {
        Ok(relay) => relay,
        Err(e) => fail(format!("could not make the connection's relay: {e}")),
    };
    let task = Arc::new(ChildTask {
        inlet: prepared.inlet,
        writer: Arc::clone(&conn.writer),
        relay,
        max_frame,
        unacked: AtomicU32::new(0),
        ack_every: inbox.div_ceil(2),
        reuse,
        finished: AtomicBool::new(false),
        next: Mutex::new(None),
    });
    let body = {
        let task = Arc::clone(&task);
        let run = prepared.run;
        move || {
            let line: Arc<dyn Line> = task.clone();
            let last = match run(line) {
                Ended::Value(bytes) | Ended::Error(bytes) if bytes.len() + 6 > task.max_frame => {
                    Up::Broken(format!(
                        "an outcome of {} bytes is over the maximum frame of {}",
                        bytes.len(),
                        task.max_frame
                    ))
                }
                Ended::Value(bytes) => Up::Value(bytes),
                Ended::Error(bytes) => Up::Error(bytes),
                Ended::Panicked { message, location } => Up::Panicked { message, location },
                Ended::Unencodable(why) => Up::Broken(why),
                // A body prepared to run on this thread never ends so.
                Ended::Killed(_) | Ended::Crashed(_) => {
                    Up::Broken("the task ended without an outcome".to_owned())
                }
            };
            task.finished.store(true, Ordering::SeqCst);
            task.flush(Some(last));
            // What the task started ends with it, whether or not the
            // parent is still there to kill it: no process outlives the
            // task. (A pool's warm child keeps what its tasks started until
            // it leaves: walking its tree after each task would double the
            // cost of a small one.)
            if !reuse {
                leave(0);
            }
            // The reader reads the next task's frame now.
            task.relay.hurry();
        }
    };
    // A worker thread reads whenever the body does not, until the next
    // task's frame or the end of the connection; the body runs here at
    // once (a new thread would cost its start before the body's).
    let (read_tx, read_end) = crossbeam_channel::bounded::<()>(1);
    let fallback = {
        let task = Arc::clone(&task);
        move || {
            task.relay.fallback(&*task);
            drop(read_tx);
        }
    };
    if let Err((_, e)) = place::execute(Box::new(fallback)) {
        fail(format!("could not start a thread for the task: {e}"));
    }
    // The answer, once the reader is on its way: the parent it wakes does
    // not compete with that thread's start.
    if conn.writer.send(&Up::Ready { version: VERSION }).is_err() {
        leave(EXIT_PARENT_GONE);
    }
    body();
    // A child kept for another task: the reader reads its frame, then
    // gives the connection back.
    let _ = read_end.recv();
    conn.reader = task.relay.take_reader();
    lock(&task.next).take()
}
