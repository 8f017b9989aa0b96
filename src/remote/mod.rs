//! Named tasks on remote workers through Redis, and feeders that bring a
//! Redis list's or channel's items into a local task.

mod client;
mod error;

pub use client::{Client, DEFAULT_NAMESPACE, DEFAULT_URL, URL_VAR};
pub use error::RemoteError;
