//! The protocol between a parent and its child: the frames and their
//! encoding.
//!
//! A frame is a little-endian `u32` length and a postcard payload; the
//! length is checked against the maximum before anything is allocated.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};

use rustix::event::{PollFd, PollFlags};
use rustix::net::SendFlags;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sync::lock;

/// The protocol's version; both sides check it at the handshake.
pub(crate) const VERSION: u32 = 3;

/// What the parent asks a child to run (the first frame of each task on a
/// child; a warm child of a pool gets one per task).
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    pub(crate) name: String,
    /// The task type's fingerprint (its name and types), which the child
    /// compares with its own.
    pub(crate) fingerprint: u64,
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
    /// The task did not stop within the grace period: the child ends what
    /// it started (`SIGTERM`, then waits for it to go), then itself, by
    /// `SIGTERM`.
    Terminate,
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

/// The reading half of a connection: a buffer of bytes read and not yet
/// taken as frames. Whoever holds it may read; complete frames already in
/// the buffer are taken before the socket is read again.
pub(crate) struct FrameReader {
    stream: UnixStream,
    // Reused: `pos..` holds the unread bytes. The socket is read into its
    // spare capacity, so that no page of a chunk is touched before bytes
    // come (a new child's first read, the handshake, is small).
    buf: Vec<u8>,
    pos: usize,
}

/// A reading buffer's size to start with, and the most a reading or writing
/// buffer keeps between large frames.
const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    pub(crate) fn new(stream: UnixStream) -> FrameReader {
        FrameReader {
            stream,
            buf: Vec::new(),
            pos: 0,
        }
    }

    pub(crate) fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// The length of the next frame, if its prefix is in.
    fn next_len(&self) -> Option<usize> {
        self.buf[self.pos..]
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b) as usize)
    }

    /// Takes the next complete frame's payload out of the buffer, if there
    /// is one; the length is checked against `max` before anything grows.
    pub(crate) fn next(&mut self, max: usize) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(len) = self.next_len() else {
            return Ok(None);
        };
        if len > max {
            return Err(FrameError::TooLarge(len as u64, max));
        }
        if self.buf.len() - self.pos < 4 + len {
            return Ok(None);
        }
        let payload = self.buf[self.pos + 4..self.pos + 4 + len].to_vec();
        self.pos += 4 + len;
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
            if self.buf.capacity() > READ_CHUNK {
                self.buf.shrink_to(READ_CHUNK);
            }
        }
        Ok(Some(payload))
    }

    /// Reads what the socket has (waiting for something if it has nothing
    /// and is blocking). A close between frames is `Closed`, in the middle
    /// of one `Truncated`.
    pub(crate) fn fill(&mut self) -> Result<(), FrameError> {
        // Room for the whole next frame (its length was checked by `next`),
        // or a chunk.
        let need = self.next_len().map_or(0, |len| 4 + len);
        if self.pos > 0 && self.buf.capacity() - self.pos < need.max(READ_CHUNK / 2) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let want = (self.pos + need)
            .max(self.buf.len() + READ_CHUNK / 2)
            .max(READ_CHUNK);
        self.buf.reserve(want - self.buf.len());
        let read = rustix::io::retry_on_intr(|| {
            rustix::io::read(&self.stream, rustix::buffer::spare_capacity(&mut self.buf))
        })
        .map_err(io::Error::from);
        let partial = self.pos < self.buf.len();
        match read {
            Ok(0) if !partial => Err(FrameError::Closed),
            // A peer that closed its end with data of ours unread resets
            // the connection: that is a close too.
            Err(e) if !partial && e.kind() == io::ErrorKind::ConnectionReset => {
                Err(FrameError::Closed)
            }
            Ok(0) => Err(FrameError::Truncated),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(FrameError::Truncated),
            Ok(_) => Ok(()),
            Err(e) => Err(FrameError::Io(e)),
        }
    }

    /// Reads one whole frame, waiting as the socket does.
    pub(crate) fn read_frame<T: DeserializeOwned>(&mut self, max: usize) -> Result<T, FrameError> {
        loop {
            if let Some(payload) = self.next(max)? {
                return postcard::from_bytes(&payload).map_err(FrameError::Malformed);
            }
            self.fill()?;
        }
    }
}

/// The writing half of a connection, shared by the threads that write.
///
/// Bytes go out in frame order and a frame is never cut: a write that
/// finds the socket full ([`Writing::offer`]) keeps the rest of its frame
/// in a *backlog*, which every later write sends first, so the peer always
/// gets whole frames, however long it stops reading.
pub(crate) struct Writer {
    stream: UnixStream,
    out: Mutex<Out>,
}

/// What the writers share under the lock.
#[derive(Default)]
struct Out {
    // Reused for encoding.
    buf: Vec<u8>,
    // The part of a frame (or of several) not written yet: `backlog[at..]`.
    backlog: Vec<u8>,
    at: usize,
}

/// How an offered frame went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offered {
    /// All written.
    Whole,
    /// Begun: the rest waits in the backlog for room in the socket.
    Begun,
    /// Not taken: the backlog of an earlier frame still waits for room.
    Busy,
}

impl Writer {
    pub(crate) fn new(stream: UnixStream) -> Writer {
        Writer {
            stream,
            out: Mutex::new(Out::default()),
        }
    }

    /// Writes `frame`, waiting as the socket does (after the backlog).
    pub(crate) fn send<T: Serialize>(&self, frame: &T) -> io::Result<()> {
        self.lock().send_all(std::slice::from_ref(frame))
    }

    /// Waits until the socket has room (or has failed: the next write says
    /// how), or until `wake` is readable: `false` then.
    pub(crate) fn wait_writable(&self, wake: &OwnedFd) -> bool {
        let mut fds = [
            PollFd::new(&self.stream, PollFlags::OUT),
            PollFd::new(wake, PollFlags::IN),
        ];
        let polled = rustix::io::retry_on_intr(|| rustix::event::poll(&mut fds, None));
        // Room, a failure, or a poll that failed: the next write reports it.
        polled.is_err() || !fds[0].revents().is_empty()
    }

    /// Locks the connection for writing (what to write may be decided
    /// under the lock).
    pub(crate) fn lock(&self) -> Writing<'_> {
        Writing {
            stream: &self.stream,
            out: lock(&self.out),
        }
    }

    /// Locks the connection for writing if nobody else writes.
    pub(crate) fn try_lock(&self) -> Option<Writing<'_>> {
        let out = match self.out.try_lock() {
            Ok(out) => out,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Writing {
            stream: &self.stream,
            out,
        })
    }
}

/// A locked connection's writing half.
pub(crate) struct Writing<'a> {
    stream: &'a UnixStream,
    out: MutexGuard<'a, Out>,
}

impl Writing<'_> {
    /// Writes the backlog, then `frames`, waiting as the socket does.
    pub(crate) fn send_all<T: Serialize>(&mut self, frames: &[T]) -> io::Result<()> {
        self.drain()?;
        let bytes = self.encode(frames)?;
        let written = (&mut &*self.stream).write_all(&bytes);
        self.keep(bytes);
        written
    }

    /// Writes the backlog, waiting as the socket does.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        let out = &mut *self.out;
        if out.at < out.backlog.len() {
            let written = (&mut &*self.stream).write_all(&out.backlog[out.at..]);
            out.backlog.clear();
            out.at = 0;
            written?;
        }
        Ok(())
    }

    /// Writes what the socket takes now of the backlog, without waiting;
    /// returns whether all of it is written.
    pub(crate) fn flush_now(&mut self) -> io::Result<bool> {
        let out = &mut *self.out;
        while out.at < out.backlog.len() {
            match send_now(self.stream, &out.backlog[out.at..])? {
                0 => return Ok(false),
                n => out.at += n,
            }
        }
        out.backlog.clear();
        out.at = 0;
        if out.backlog.capacity() > READ_CHUNK {
            out.backlog.shrink_to(READ_CHUNK);
        }
        Ok(true)
    }

    /// Writes `frames` as far as the socket takes them now, without
    /// waiting: the rest goes to the backlog (they are taken whole, and will
    /// reach the peer whole). Takes nothing while a backlog waits and
    /// cannot be written now.
    pub(crate) fn offer<T: Serialize>(&mut self, frames: &[T]) -> io::Result<Offered> {
        if !self.flush_now()? {
            return Ok(Offered::Busy);
        }
        let bytes = self.encode(frames)?;
        let mut at = 0;
        while at < bytes.len() {
            match send_now(self.stream, &bytes[at..]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) => {
                    self.keep(bytes);
                    return Err(e);
                }
            }
        }
        if at == bytes.len() {
            self.keep(bytes);
            return Ok(Offered::Whole);
        }
        let out = &mut *self.out;
        if at == 0 {
            // The whole buffer becomes the backlog.
            out.backlog = bytes;
        } else {
            out.backlog.extend_from_slice(&bytes[at..]);
            self.keep(bytes);
        }
        Ok(Offered::Begun)
    }

    /// Drops the backlog (the peer is not written to any more).
    pub(crate) fn discard_backlog(&mut self) {
        self.out.backlog = Vec::new();
        self.out.at = 0;
    }

    /// Whether a frame waits, begun, in the backlog.
    pub(crate) fn has_backlog(&self) -> bool {
        self.out.at < self.out.backlog.len()
    }

    /// Encodes `frames` into the reused buffer, which the caller hands back
    /// with [`keep`](Writing::keep).
    fn encode<T: Serialize>(&mut self, frames: &[T]) -> io::Result<Vec<u8>> {
        let mut bytes = std::mem::take(&mut self.out.buf);
        bytes.clear();
        for frame in frames {
            bytes = put_frame(bytes, frame)?;
        }
        Ok(bytes)
    }

    /// Keeps a buffer for the next frame, unless it grew large.
    fn keep(&mut self, bytes: Vec<u8>) {
        if bytes.capacity() <= READ_CHUNK {
            self.out.buf = bytes;
        }
    }
}

/// Writes what the socket takes of `bytes` now: 0 if it has no room.
fn send_now(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    match rustix::io::retry_on_intr(|| rustix::net::send(stream, bytes, flags)) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("a malformed payload ({e})"))
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{FrameError, FrameReader, READ_CHUNK, put_frame};

    /// A reader on one end of a socket pair, and the other end to write
    /// into. The reader gives up after a while rather than hang a test.
    fn pair() -> (FrameReader, UnixStream) {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        ours.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        (FrameReader::new(ours), theirs)
    }

    /// A frame's bytes: its length, little-endian, then `payload`.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("a small payload");
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Takes the next frame, reading as needed.
    fn next_frame(reader: &mut FrameReader, max: usize) -> Result<Vec<u8>, FrameError> {
        loop {
            if let Some(payload) = reader.next(max)? {
                return Ok(payload);
            }
            reader.fill()?;
        }
    }

    #[test]
    fn a_frame_split_across_reads() {
        let (mut reader, mut writer) = pair();
        let bytes = frame(b"hello, frames");
        // The length prefix itself split, then the payload.
        for chunk in [&bytes[..2], &bytes[2..7]] {
            writer.write_all(chunk).unwrap();
            reader.fill().unwrap();
            assert!(reader.next(64).unwrap().is_none(), "a frame before its end");
        }
        writer.write_all(&bytes[7..]).unwrap();
        assert_eq!(next_frame(&mut reader, 64).unwrap(), b"hello, frames");
    }

    #[test]
    fn several_frames_in_one_read() {
        let (mut reader, mut writer) = pair();
        let mut bytes = frame(b"one");
        bytes.extend(frame(b"two"));
        bytes.extend(frame(b"three"));
        writer.write_all(&bytes).unwrap();
        reader.fill().unwrap();
        // All three are taken from what one read brought.
        assert_eq!(reader.buf.len() - reader.pos, bytes.len());
        assert_eq!(reader.next(64).unwrap().unwrap(), b"one");
        assert_eq!(reader.next(64).unwrap().unwrap(), b"two");
        assert_eq!(reader.next(64).unwrap().unwrap(), b"three");
        assert!(reader.next(64).unwrap().is_none());
        drop(writer);
        assert!(matches!(reader.fill(), Err(FrameError::Closed)));
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_allocating() {
        let (mut reader, mut writer) = pair();
        // The prefix alone: a reader that waited for (or made room for) the
        // payload would time out, or try to allocate 4 GiB.
        writer.write_all(&u32::MAX.to_le_bytes()).unwrap();
        match next_frame(&mut reader, 1024) {
            Err(FrameError::TooLarge(len, max)) => {
                assert_eq!((len, max), (u64::from(u32::MAX), 1024));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert!(
            reader.buf.len() <= READ_CHUNK,
            "the buffer grew to {}",
            reader.buf.len()
        );

        // One byte over the limit is over it; the limit itself is not.
        let (mut reader, mut writer) = pair();
        writer.write_all(&frame(&[7; 16])).unwrap();
        writer.write_all(&frame(&[7; 17])).unwrap();
        assert_eq!(next_frame(&mut reader, 16).unwrap(), [7; 16]);
        assert!(matches!(
            next_frame(&mut reader, 16),
            Err(FrameError::TooLarge(17, 16))
        ));
    }

    #[test]
    fn a_connection_closed_mid_frame_is_truncated() {
        // In the payload.
        let (mut reader, mut writer) = pair();
        writer.write_all(&frame(b"whole")).unwrap();
        writer.write_all(&frame(b"cut short")[..7]).unwrap();
        drop(writer);
        assert_eq!(next_frame(&mut reader, 64).unwrap(), b"whole");
        assert!(matches!(
            next_frame(&mut reader, 64),
            Err(FrameError::Truncated)
        ));

        // In the length prefix.
        let (mut reader, mut writer) = pair();
        writer.write_all(&[9, 0]).unwrap();
        drop(writer);
        assert!(matches!(
            next_frame(&mut reader, 64),
            Err(FrameError::Truncated)
        ));

        // Between frames it is a close.
        let (mut reader, mut writer) = pair();
        writer.write_all(&frame(b"last")).unwrap();
        drop(writer);
        assert_eq!(next_frame(&mut reader, 64).unwrap(), b"last");
        assert!(matches!(
            next_frame(&mut reader, 64),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_zero_length_frame() {
        let (mut reader, mut writer) = pair();
        let mut bytes = frame(b"");
        bytes.extend(frame(b"after"));
        bytes.extend(frame(b""));
        writer.write_all(&bytes).unwrap();
        assert_eq!(next_frame(&mut reader, 0).unwrap(), b"");
        assert!(matches!(
            next_frame(&mut reader, 0),
            Err(FrameError::TooLarge(5, 0))
        ));
        let (mut reader, mut writer) = pair();
        writer.write_all(&bytes).unwrap();
        drop(writer);
        assert_eq!(next_frame(&mut reader, 8).unwrap(), b"");
        assert_eq!(next_frame(&mut reader, 8).unwrap(), b"after");
        assert_eq!(next_frame(&mut reader, 8).unwrap(), b"");
        assert!(matches!(
            next_frame(&mut reader, 8),
            Err(FrameError::Closed)
        ));
        // A unit value is encoded as nothing, and read back from nothing.
        let (mut reader, writer) = pair();
        let bytes = put_frame(Vec::new(), &()).unwrap();
        assert_eq!(bytes, [0, 0, 0, 0]);
        (&writer).write_all(&bytes).unwrap();
        reader.read_frame::<()>(0).unwrap();
    }

    #[test]
    fn frames_larger_than_a_read_chunk() {
        let (mut reader, mut writer) = pair();
        let big: Vec<u8> = (0..3 * READ_CHUNK).map(|i| i as u8).collect();
        let max = big.len();
        let writing = std::thread::spawn(move || {
            writer.write_all(&frame(&big)).unwrap();
            writer.write_all(&frame(b"small")).unwrap();
            big
        });
        let got = next_frame(&mut reader, max).unwrap();
        assert_eq!(next_frame(&mut reader, max).unwrap(), b"small");
        assert_eq!(got, writing.join().unwrap());
        // A large frame's buffer is not kept.
        assert!(reader.buf.len() <= READ_CHUNK);
    }

    #[test]
    fn offered_frames_never_wait_and_arrive_whole_and_in_order() {
        use super::{Offered, Writer};
        let (reader, theirs) = pair();
        let writer = Writer::new(theirs);
        let blob = |id: u8| vec![id; 100 << 10];
        // Nobody reads: the socket fills, a frame is begun, then refused.
        let mut taken = 0u8;
        loop {
            let offered = writer.lock().offer(&[blob(taken)]).unwrap();
            match offered {
                Offered::Whole => taken += 1,
                Offered::Begun => {
                    taken += 1;
                    assert!(writer.lock().has_backlog());
                }
                Offered::Busy => break,
            }
            assert!(taken < 100, "the socket never filled");
        }
        assert!(writer.lock().has_backlog(), "refused with no frame begun");
        // Once the reader reads, the backlog goes first, then more frames.
        let reading = std::thread::spawn(move || {
            let mut reader = reader;
            (0..=taken)
                .map(|_| reader.read_frame::<Vec<u8>>(1 << 20).unwrap())
                .collect::<Vec<_>>()
        });
        writer.lock().drain().unwrap();
        assert!(!writer.lock().has_backlog());
        writer.send(&blob(taken)).unwrap();
        let got = reading.join().unwrap();
        let expected: Vec<Vec<u8>> = (0..=taken).map(blob).collect();
        assert!(got == expected, "frames lost, cut or out of order");
    }

    /// How a stream of frames ended.
    #[derive(Debug, PartialEq, Eq)]
    enum End {
        Closed,
        Truncated,
        TooLarge(u64),
    }

    /// The simplest decoder: the frames in `bytes`, then how it ends.
    fn oracle(mut bytes: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
        let mut frames = Vec::new();
        loop {
            if bytes.is_empty() {
                return (frames, End::Closed);
            }
            let Some((prefix, rest)) = bytes.split_first_chunk::<4>() else {
                return (frames, End::Truncated);
            };
            let len = u32::from_le_bytes(*prefix) as usize;
            if len > max {
                return (frames, End::TooLarge(len as u64));
            }
            if rest.len() < len {
                return (frames, End::Truncated);
            }
            frames.push(rest[..len].to_vec());
            bytes = &rest[len..];
        }
    }

    /// Takes every frame the socket has for now; `Some` once it ended.
    fn pump(reader: &mut FrameReader, max: usize, frames: &mut Vec<Vec<u8>>) -> Option<End> {
        loop {
            loop {
                match reader.next(max) {
                    Ok(Some(payload)) => {
                        assert!(payload.len() <= max, "a frame over the limit");
                        frames.push(payload);
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge(len, limit)) => {
                        assert_eq!(limit, max);
                        assert!(len > max as u64);
                        return Some(End::TooLarge(len));
                    }
                    Err(e) => panic!("next: {e}"),
                }
            }
            match reader.fill() {
                Ok(()) => {}
                Err(FrameError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(FrameError::Closed) => return Some(End::Closed),
                Err(FrameError::Truncated) => return Some(End::Truncated),
                Err(e) => panic!("fill: {e}"),
            }
        }
    }

    /// Bytes that are mostly frames (some over the limit), with some noise.
    fn stream(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..=max).prop_map(|p| frame(&p)),
            1 => (max + 1..max + 64).prop_map(|len| (len as u32).to_le_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random bytes in random reads: the reader never panics, never
        /// yields a frame over the limit, keeps its buffer bounded by the
        /// limit, and finds exactly the frames (and the end) that the
        /// oracle does.
        #[test]
        fn reads_what_the_oracle_reads(
            (max, bytes, cuts) in (0usize..200).prop_flat_map(|max| {
                (Just(max), stream(max), prop::collection::vec(1usize..40, 0..16))
            })
        ) {
            let (mut reader, mut writer) = pair();
            reader.get_ref().set_nonblocking(true).unwrap();
            let mut frames = Vec::new();
            let mut rest = &bytes[..];
            let mut end = None;
            for cut in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
                let (chunk, after) = rest.split_at(cut.min(rest.len()));
                rest = after;
                writer.write_all(chunk).unwrap();
                end = pump(&mut reader, max, &mut frames);
                prop_assert!(reader.buf.len() <= 2 * READ_CHUNK + 4 + max);
                if end.is_some() || rest.is_empty() {
                    break;
                }
            }
            drop(writer);
            let end = match end {
                Some(end) => end,
                None => pump(&mut reader, max, &mut frames).expect("an end once closed"),
            };
            let (expected, expected_end) = oracle(&bytes, max);
            prop_assert_eq!(frames, expected);
            prop_assert_eq!(end, expected_end);
        }
    }
}
