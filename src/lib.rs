//! Run a unit of work on the side and keep one handle on it.
//!
//! sidetask runs a function in the background and gives back a [`Task`]
//! handle through which the caller stays in control: [`stop`](Task::stop) it,
//! [`send`](Task::send) it messages while it runs, [`recv`](Task::recv) its
//! events, and [`join`](Task::join) it to collect its value, its own error or
//! its panic, each its own case of [`Outcome`].
//!
//! The task's side is its context, [`Ctx`]: it checks
//! [`stopped`](Ctx::stopped), receives messages with [`recv`](Ctx::recv),
//! emits events with [`emit`](Ctx::emit) and sleeps with
//! [`sleep`](Ctx::sleep). Every blocking call there wakes the moment a stop
//! is asked for.
//!
//! ```
//! use std::time::Duration;
//! use sidetask::{Ctx, Stopped};
//!
//! let task = sidetask::spawn(|ctx: &Ctx<u64, String>| {
//!     while !ctx.stopped() {
//!         match ctx.recv_timeout(Duration::from_millis(100)) {
//!             Ok(n) => ctx.emit(format!("got {n}"))?,
//!             Err(_) => continue,
//!         }
//!     }
//!     Ok::<_, Stopped>("done.")
//! });
//! task.send(7)?; // an Err gives the message back if the task is gone
//! assert_eq!(task.recv()?, "got 7");
//! task.stop(); // cooperative; returns at once
//! assert_eq!(task.join().value(), Some("done."));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where tasks run
//!
//! On worker threads that are reused: a finished task's thread waits a while
//! for the next one, so spawning a small task costs a fraction of a new OS
//! thread. When every worker is busy a new one starts, so a task that blocks
//! forever never starves the others. Idle workers exit after
//! [`idle_timeout`] (see [`set_idle_timeout`]).
//!
//! A [`NamedTask`] runs in a child process through [`Process`]: the same
//! binary, executed again, whose `main` calls [`init`] first (in a test
//! binary: [`test_support!`]). Messages, events and the outcome cross as
//! serde values; stop escalates from the cooperative request to `SIGTERM`
//! and `SIGKILL` on the child and everything it started; the child holds
//! everything its task starts (it is a subreaper), so nothing of it
//! outlives the task or the parent, even `SIGKILL`ed; and how it ended is
//! classified ([`Outcome::Killed`], [`Outcome::Crashed`] with a
//! [`CrashCause`] and the stderr tail).
//! [`Pool::run_process`] runs many on warm children that are reused.
//!
//! An external program runs as a task through [`Command`]: its stdin lines
//! are the messages, its stdout lines the events, its exit the outcome, and
//! stop escalates from `SIGTERM` to `SIGKILL` on its whole process group. In
//! a program that calls [`init`], the program runs under a launcher of
//! ours that holds everything it starts, so nothing of it outlives the task
//! or this process (the README says what is guaranteed where).
//!
//! With the `tokio` feature, a task body may be async
//! (`spawn_async`, `AsyncCtx`) and every blocking
//! method of the handle has an awaitable twin (`join_async` or `task.await`,
//! `send_async`, `recv_async`, …): one handle serves blocking and async
//! callers alike, whatever runs the task. `kill` drops an async body at its
//! next await.
//!
//! # Stop, drop and detach
//!
//! Stopping is cooperative first: [`Task::stop`] sets a flag that the task
//! sees and wakes the task out of its context's blocking calls; a thread
//! task decides when to return, while a process or command task that has
//! not returned after its grace period gets `SIGTERM`, then `SIGKILL`.
//! [`Task::kill`] ends a process, command or async task at once, as
//! [`Outcome::Killed`] on each. Dropping a handle stops its task, unless it
//! was [`detach`](Task::detach)ed. [`Task::stop_handle`] gives a cloneable
//! [`StopHandle`] that stops, kills or asks [`is_finished`](Task::is_finished)
//! from anywhere. A builder [`timeout`](Builder::timeout) stops
//! the task when it passes.
//!
//! # Messages are never lost
//!
//! Every call that takes a value gives it back when it cannot deliver it
//! ([`SendError`], [`TrySendError`], [`EmitError`], …), and the messages a
//! task never read can be taken back after it ended
//! ([`Task::take_unread`]).
//!
//! # Pools, chains and controllers
//!
//! Built from the same handles: a [`Pool`] runs a task per input with
//! bounded parallelism (results by callback, in completion order or in input
//! order); a [`Chain`] streams items through stages, each a task, connected by
//! bounded inboxes; a [`Controller`] drives a running task from outside
//! ([`WaitUntilDone`], [`FeedFrom`], [`Deadline`]), and [`controlled`] turns a
//! task body into a plain call that returns its value or a [`RunError`].
//!
//! # Many tasks as one
//!
//! A [`Group`] holds tasks of any place and joins them in the order they
//! end ([`join_next`](Group::join_next)); it stops or kills them together,
//! and stops every task still in it when dropped. A
//! [`fail_fast`](Group::fail_fast) group stops the others at the first
//! failure and still reports each outcome ([`Joined`]). [`scope`] runs
//! thread tasks that borrow from the caller's stack and returns once each
//! has ended.
//!
//! # Keeping tasks alive
//!
//! A [`Supervisor`] restarts a task by policy ([`Restart`]: always, on
//! failure, never, as Erlang/OTP's permanent, transient and temporary),
//! waiting a [`Backoff`] between restarts and giving up past a restart
//! intensity (at most N restarts within a window). It knows no place: a
//! factory makes each attempt, a thread task, a [`Process`], a [`Command`]
//! or a remote task. The [`Supervised`] handle stays one handle across
//! restarts: messages reach the current attempt, those an attempt never
//! read go to the next one, the events of every attempt come out of one
//! `recv`, and [`status`](Supervised::status),
//! [`attempt`](Supervised::attempt) and [`history`](Supervised::history)
//! tell the restarts. [`Supervisor::spawn_group`] keeps several children
//! alive together with Erlang's strategies ([`Strategy`]: one-for-one,
//! one-for-all, rest-for-one).
//!
//! # Tracing
//!
//! Each task runs inside a `task` span (its id and name) of the [`tracing`]
//! crate, with events when it starts, when a stop is requested and when it
//! ends (with its outcome). A supervisor traces each attempt's end and each
//! restart (with the attempt's number and its outcome's kind) at `info`,
//! and giving up at `warn`. Without a subscriber they cost next to nothing.
//!
//! [`tracing`]: https://docs.rs/tracing
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tokio")]
mod async_ctx;
mod backend;
mod builder;
mod chain;
mod controller;
mod ctx;
mod error;
mod group;
mod init;
mod mailbox;
mod named;
mod outcome;
mod pool;
#[cfg(feature = "redis")]
pub mod remote;
mod scope;
mod spare;
mod supervise;
mod sync;
mod task;
mod timer;

pub use backend::command::{Command, Exit, STDERR_TAIL};
pub use backend::process::{DEFAULT_MAX_FRAME, Process, ProcessTask};
pub use backend::thread::{idle_timeout, set_idle_timeout, worker_threads};
pub use builder::{Builder, DEFAULT_CAPACITY, spawn};
pub use chain::{Chain, ChainEnd, ChainError, ChainRun};
pub use controller::{
    Controller, Deadline, FeedFrom, GiveUp, RunError, WaitUntilDone, controlled, run,
};
pub use ctx::Ctx;
pub use error::{
    CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError, RecvError, RecvTimeoutError,
    SendError, SendTimeoutError, StartError, Stopped, TryEmitError, TryRecvError, TrySendError,
};
pub use group::{Group, JoinNextError, Joined};
pub use init::init;
pub use named::{NamedTask, Registry, RegistryError};
pub use outcome::{Crash, CrashCause, Killed, Location, Lost, Outcome, Panic, TaskError};
pub use pool::{Finished, InOrder, Pool, PoolRun, ProcessPoolRun, Progress};
pub use scope::{Scope, ScopedTask, scope};
pub use supervise::{
    Attempt, AttemptEnd, Backoff, Restart, Strategy, SuperviseError, Supervised, SupervisedGroup,
    SupervisedGroupReport, SupervisedStatus, Supervisor, Unread,
};
pub use task::{Events, Status, StopHandle, Task, TaskId};

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use async_ctx::{AsyncCtx, EmitFuture};
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use backend::tokio::spawn_async;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use task::{Join, SendFuture};

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
