//! The places a task runs, one file each, behind the one handle.
//!
//! 1. `thread`: reused worker threads in this process (the default).
//!
//! The handle, the context and the outcome do not know which place runs a
//! task; a place only takes a job and runs it.

pub(crate) mod thread;
