//! The protocol between a parent and its child: the frames and their
//! encoding.
//!
//! A frame is a little-endian `u32` length and a postcard payload; the
//! length is checked against the maximum before anything is allocated.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// The protocol's version; both sides check it at the handshake.
pub(crate) const VERSION: u32 = 1;

/// What the parent asks a child to run (the first frame of each task on a
/// child; a warm child of a pool gets one per task).
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    pub(crate) name: String,
    pub(crate) arg: Vec<u8>,
    pub(crate) max_frame: u64,
    pub(crate) inbox: u32,
    pub(crate) outbox: u32,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) cpu_limit: Option<u64>,
    /// Whether the child waits for another task after this one.
    pub(crate) reuse: bool,
}

/// Frames from the parent.
#[derive(Serialize, Deserialize)]
pub(crate) enum Down {
    Start(Hello),
    Message(Vec<u8>),
    Close,
    Stop,
}

/// Frames from the child.
#[derive(Serialize, Deserialize)]
pub(crate) enum Up {
    Ready {
        version: u32,
    },
    Refused {
        unknown: bool,
        why: String,
    },
    Event(Vec<u8>),
    /// The task has read this many more messages.
    Ack(u32),
    Value(Vec<u8>),
    Error(Vec<u8>),
    Panicked {
        message: String,
        location: Option<(String, u32, u32)>,
    },
    /// The child could not encode its outcome.
    Broken(String),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The other side closed the socket between frames.
    Closed,
    Io(io::Error),
    TooLarge(u64, usize),
    Truncated,
    Malformed(postcard::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("the connection closed"),
            FrameError::Io(e) => write!(f, "the connection failed: {e}"),
            FrameError::TooLarge(len, max) => {
                write!(f, "a frame of {len} bytes is over the maximum of {max}")
            }
            FrameError::Truncated => f.write_str("the connection closed in the middle of a frame"),
            FrameError::Malformed(e) => write!(f, "a malformed frame ({e})"),
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Appends one frame to `buf`.
fn put_frame<T: Serialize>(buf: Vec<u8>, value: &T) -> io::Result<Vec<u8>> {
    let start = buf.len();
    let mut buf = buf;
    buf.extend_from_slice(&[0; 4]);
    let mut buf = postcard::to_extend(value, buf).map_err(io::Error::other)?;
    let len =
        u32::try_from(buf.len() - start - 4).map_err(|_| io::Error::other("frame too large"))?;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// Writes frames in one `write_all`.
pub(crate) fn write_frames<T: Serialize>(mut w: impl Write, frames: &[T]) -> io::Result<()> {
    let mut buf = Vec::new();
    for frame in frames {
        buf = put_frame(buf, frame)?;
    }
    w.write_all(&buf)
}

/// Reads one frame's payload, checking its length before allocating.
pub(crate) fn read_payload(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    // A peer that closed its end with data of ours unread resets the
    // connection: that is a close too.
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Err(e) if got == 0 && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(FrameError::Closed);
            }
            Ok(0) => return Err(FrameError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(FrameError::Truncated);
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(len);
    if len as usize > max {
        return Err(FrameError::TooLarge(u64::from(len), max));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ) {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(payload)
}

pub(crate) fn read_frame<T: DeserializeOwned>(
    r: &mut impl Read,
    max: usize,
) -> Result<T, FrameError> {
    let payload = read_payload(r, max)?;
    postcard::from_bytes(&payload).map_err(FrameError::Malformed)
}

/// The writing half of a connection, shared by the threads that write.
pub(crate) struct Writer(pub(crate) Mutex<UnixStream>);

impl Writer {
    pub(crate) fn send<T: Serialize>(&self, frame: &T) -> io::Result<()> {
        write_frames(&mut *lock(&self.0), std::slice::from_ref(frame))
    }

    /// Locks the connection for writing several frames at once.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, UnixStream> {
        lock(&self.0)
    }
}

pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("a malformed payload ({e})"))
}
