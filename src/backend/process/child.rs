//! The child's side: the entry hook finds out whether this process is a
//! child, takes its connection and runs the tasks the parent asks for.
//!
//! A task runs on a worker thread as a thread task. The main thread reads
//! frames (a closed socket means the parent is gone, and the child exits at
//! once), one helper feeds the messages into the task's inbox, another
//! forwards its events; at the end the messages the task did not read are
//! sent back with its outcome. A child of a pool then waits for its next
//! task.

use std::io::{self, BufReader};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::thread;

use rustix::process::{Pid, Resource, Rlimit, Signal, setrlimit};

use super::protocol::{Down, FrameError, Hello, Up, VERSION, Writer, encode, read_frame};
use super::{ENV, EXIT_PARENT_GONE, EXIT_PROTOCOL};
use crate::builder::Builder;
use crate::ctx::Ctx;
use crate::outcome::Outcome;
use crate::registry::{NamedTask, Registry};
use crate::sync::lock;
use crate::task::outcome_name;

/// How the child runs one registered task type: runs it, and returns the
/// next task asked for, if any.
pub(crate) struct Entry {
    run: fn(&mut Conn, Hello) -> Option<Hello>,
}

pub(crate) fn entry<T: NamedTask>() -> Entry {
    Entry { run: run_task::<T> }
}

/// The child's connection to its parent.
pub(crate) struct Conn {
    reader: BufReader<UnixStream>,
    writer: Writer,
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
    // Die with the parent; if it died before this line, the check below
    // sees a new parent.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if rustix::process::getppid() != Some(parent) {
        std::process::exit(EXIT_PARENT_GONE);
    }
    let conn = match take_connection() {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("sidetask child: no connection to the parent: {e}");
            std::process::exit(EXIT_PROTOCOL);
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
        reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
        writer: Writer(Mutex::new(stream)),
    })
}

fn refuse(conn: &Conn, unknown: bool, why: String) -> ! {
    let _ = conn.writer.send(&Up::Refused {
        unknown,
        why: why.clone(),
    });
    eprintln!("sidetask child: {why}");
    std::process::exit(EXIT_PROTOCOL)
}

fn serve(registry: &Registry, mut conn: Conn) -> ! {
    let mut next = match read_frame::<Down>(&mut conn.reader, 1 << 30) {
        Ok(Down::Start(hello)) => hello,
        Ok(_) => refuse(&conn, false, "the first frame was not a task".to_owned()),
        Err(FrameError::Closed) => std::process::exit(EXIT_PARENT_GONE),
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
        match (entry.run)(&mut conn, next) {
            Some(hello) => next = hello,
            None => std::process::exit(0),
        }
    }
}

/// A message read from the socket, or the end of messages.
enum Staged<In> {
    Message(In),
    Close,
}

fn fail(why: String) -> ! {
    eprintln!("sidetask child: {why}");
    std::process::exit(EXIT_PROTOCOL)
}

/// Runs one task of type `T`; returns the next task asked for, or `None`
/// when this child is done.
fn run_task<T: NamedTask>(conn: &mut Conn, hello: Hello) -> Option<Hello> {
    let Conn { reader, writer } = conn;
    let max_frame = usize::try_from(hello.max_frame).unwrap_or(usize::MAX);
    let reuse = hello.reuse;
    let arg: T::Arg = match postcard::from_bytes(&hello.arg) {
        Ok(arg) => arg,
        Err(e) => fail(format!(
            "could not decode the argument of `{}`: {e}",
            T::NAME
        )),
    };
    let task = Builder::new()
        .name(T::NAME)
        .inbox_capacity(hello.inbox as usize)
        .outbox_capacity(hello.outbox as usize)
        .build(move |ctx: &Ctx<T::In, T::Event>| T::run(ctx, arg));
    if writer.send(&Up::Ready { version: VERSION }).is_err() {
        std::process::exit(EXIT_PARENT_GONE);
    }
    if let Err(e) = task.start() {
        fail(format!("could not start a thread for the task: {e}"));
    }
    let feed = task.feed();
    let stopper = task.stopper();
    let (staged_tx, staged_rx) = crossbeam_channel::unbounded::<Staged<T::In>>();
    // Held while a message is acknowledged and goes in, so that the end
    // finds every acknowledged message read, in the inbox, or refused.
    // The acknowledgement comes first: once the parent reads an event the
    // task sent in answer to a message, it knows the message arrived.
    // `true` once the outcome is sent: later messages are not acknowledged
    // (the parent still holds them and takes them back).
    let feeding = Mutex::new(false);
    let refused = Mutex::new(Vec::new());
    let writer = &*writer;
    thread::scope(|s| {
        s.spawn(|| {
            for staged in staged_rx {
                let finished = lock(&feeding);
                if *finished {
                    continue;
                }
                match staged {
                    Staged::Message(message) => {
                        if writer.send(&Up::Ack(1)).is_err() {
                            std::process::exit(EXIT_PARENT_GONE);
                        }
                        // Refused once the task stops or ends: given back
                        // at the end.
                        if let Err(message) = feed.feed(message) {
                            lock(&refused).push(message);
                        }
                    }
                    Staged::Close => feed.close(),
                }
            }
        });
        s.spawn(|| {
            while let Ok(event) = task.recv() {
                let frame = match encode(&event) {
                    Ok(bytes) if bytes.len() <= max_frame => Up::Event(bytes),
                    Ok(bytes) => Up::Broken(format!(
                        "an event of {} bytes is over the maximum frame of {max_frame}",
                        bytes.len()
                    )),
                    Err(e) => Up::Broken(format!("could not encode an event: {e}")),
                };
                let broken = matches!(frame, Up::Broken(_));
                if writer.send(&frame).is_err() {
                    std::process::exit(EXIT_PARENT_GONE);
                }
                if broken {
                    std::process::exit(EXIT_PROTOCOL);
                }
            }
            task.wait();
            let mut finished = lock(&feeding);
            let mut frames = Vec::new();
            let unread = task.take_unread().unwrap_or_default();
            for message in unread.into_iter().chain(lock(&refused).drain(..)) {
                match encode(&message) {
                    Ok(bytes) => frames.push(Up::Returned(bytes)),
                    Err(e) => fail(format!("could not encode an unread message: {e}")),
                }
            }
            let last = match task.take_outcome() {
                Outcome::Value(v) => encode(&v).map(Up::Value),
                Outcome::Error(e) => encode(&e).map(Up::Error),
                Outcome::Panicked(p) => Ok(Up::Panicked {
                    message: p.message().to_owned(),
                    location: p
                        .location()
                        .map(|l| (l.file().to_owned(), l.line(), l.column())),
                }),
                Outcome::Cancelled => Ok(Up::Cancelled),
                other => Ok(Up::Broken(format!(
                    "the task ended as {}",
                    outcome_name(&other)
                ))),
            };
            frames.push(
                last.unwrap_or_else(|e| Up::Broken(format!("could not encode the outcome: {e}"))),
            );
            for frame in &frames {
                if writer.send(frame).is_err() {
                    std::process::exit(EXIT_PARENT_GONE);
                }
            }
            if !reuse {
                std::process::exit(0);
            }
            *finished = true;
        });
        loop {
            match read_frame::<Down>(reader, max_frame) {
                Ok(Down::Message(bytes)) => match postcard::from_bytes(&bytes) {
                    Ok(message) => {
                        let _ = staged_tx.send(Staged::Message(message));
                    }
                    Err(e) => fail(format!("a malformed message from the parent: {e}")),
                },
                Ok(Down::Close) => {
                    let _ = staged_tx.send(Staged::Close);
                }
                Ok(Down::Stop) => stopper.stop(),
                Ok(Down::Start(next)) => {
                    // The parent asks for the next task only once it has
                    // this one's outcome.
                    if !*lock(&feeding) {
                        fail("a new task was asked for before the last one ended".to_owned());
                    }
                    drop(staged_tx);
                    return Some(next);
                }
                Err(FrameError::Closed) if reuse && *lock(&feeding) => {
                    drop(staged_tx);
                    return None;
                }
                // The parent is gone: nobody is left to report to.
                Err(FrameError::Closed) => std::process::exit(EXIT_PARENT_GONE),
                Err(e) => fail(format!("a broken connection to the parent: {e}")),
            }
        }
    })
}
