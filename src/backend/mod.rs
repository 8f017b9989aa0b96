//! The places a task runs, one file each, behind the one handle.
//!
//! 1. `thread`: reused worker threads in this process (the default).
//! 2. `command`: an external program, its stdin and stdout lines as messages
//!    and events, driven by a task on a worker thread; under a launcher
//!    (this binary again, a subreaper) once `init` was called.
//! 3. `process`: a named task in a child process (the current binary run
//!    again), framed serde messages over a socketpair, driven likewise.
//! 4. `tokio`: an async body as a tokio task (the `tokio` feature).
//!
//! And `unix`: what the places that run other processes share (signalling a
//! process group, walking and killing a process tree, the stop's
//! escalation, the stderr tail).
//!
//! The handle, the context and the outcome do not know which place runs a
//! task: a place makes the task's shared state and its job, and plugs in
//! through the core's seams (a launch function, a stop hook, a wire; see
//! the `task` module). The thread place is the ground the command and
//! process places stand on (their tasks are thread tasks that drive a
//! child); no other place imports another.

pub(crate) mod command;
pub(crate) mod process;
pub(crate) mod thread;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;
pub(crate) mod unix;
