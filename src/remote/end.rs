//! A remote task's outcome as it is kept in Redis: a kind and its data.
//!
//! The kinds a script writes by itself (`cancelled`, `killed`, `lost`)
//! carry plain text; the others carry postcard, as messages and events do.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::named::Ended;
use crate::outcome::{Crash, CrashCause, Killed, Location, Lost, Outcome, Panic};

/// A crash's cause, as it crosses Redis.
#[derive(Serialize, Deserialize)]
enum Cause {
    Exited(i32),
    Signal(i32),
    OutOfMemory,
    CpuLimit,
    Start(String),
    Protocol(String),
}

/// A panic as it crosses Redis.
#[derive(Serialize, Deserialize)]
struct PanicData {
    message: String,
    location: Option<(String, u32, u32)>,
}

/// How a body ran on a worker ended, as a kind and its data.
pub(crate) fn from_ended(ended: Ended) -> (&'static str, Vec<u8>) {
    match ended {
        Ended::Value(bytes) => ("value", bytes),
        Ended::Error(bytes) => ("error", bytes),
        Ended::Panicked { message, location } => (
            "panic",
            postcard::to_stdvec(&PanicData { message, location }).unwrap_or_default(),
        ),
        Ended::Unencodable(why) => crashed(&CrashCause::Protocol(why), &[]),
        Ended::Killed(k) => killed(k.signal(), k.stderr_tail()),
        Ended::Crashed(c) => crashed(c.cause(), c.stderr_tail()),
    }
}

/// A kill on a worker, with the signal and stderr tail where it ran in a
/// child process.
pub(crate) fn killed(signal: Option<i32>, stderr: &[u8]) -> (&'static str, Vec<u8>) {
    (
        "killed",
        postcard::to_stdvec(&(signal, stderr)).unwrap_or_default(),
    )
}

/// A crash, with its cause and stderr tail.
pub(crate) fn crashed(cause: &CrashCause, stderr: &[u8]) -> (&'static str, Vec<u8>) {
    let cause = match cause {
        CrashCause::Exited(c) => Cause::Exited(*c),
        CrashCause::Signal(s) => Cause::Signal(*s),
        CrashCause::OutOfMemory => Cause::OutOfMemory,
        CrashCause::CpuLimit => Cause::CpuLimit,
        CrashCause::Start(w) => Cause::Start(w.clone()),
        CrashCause::Protocol(w) => Cause::Protocol(w.clone()),
    };
    (
        "crashed",
        postcard::to_stdvec(&(cause, stderr)).unwrap_or_default(),
    )
}

/// The outcome a kind and its data stand for. Data that does not decode is
/// a protocol crash that says so.
pub(crate) fn decode<T: DeserializeOwned, E: DeserializeOwned>(
    kind: &str,
    data: &[u8],
) -> Outcome<T, E> {
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        Outcome::Crashed(Crash::new(
            CrashCause::Protocol(format!("could not decode the task's {what}: {e}")),
            Vec::new(),
        ))
    };
    match kind {
        "value" => postcard::from_bytes(data).map_or_else(|e| broken("value", &e), Outcome::Value),
        "error" => postcard::from_bytes(data).map_or_else(|e| broken("error", &e), Outcome::Error),
        "panic" => match postcard::from_bytes::<PanicData>(data) {
            Ok(p) => Outcome::Panicked(Panic::new(
                Box::new(p.message),
                p.location.map(|(f, l, c)| Location::new(f, l, c)),
            )),
            Err(e) => broken("panic", &e),
        },
        "cancelled" => Outcome::Cancelled,
        "killed" => {
            let (signal, stderr) =
                postcard::from_bytes::<(Option<i32>, Vec<u8>)>(data).unwrap_or((None, Vec::new()));
            Outcome::Killed(Killed::new(signal, stderr))
        }
        "crashed" => match postcard::from_bytes::<(Cause, Vec<u8>)>(data) {
            Ok((cause, stderr)) => {
                let cause = match cause {
                    Cause::Exited(c) => CrashCause::Exited(c),
                    Cause::Signal(s) => CrashCause::Signal(s),
                    Cause::OutOfMemory => CrashCause::OutOfMemory,
                    Cause::CpuLimit => CrashCause::CpuLimit,
                    Cause::Start(w) => CrashCause::Start(w),
                    Cause::Protocol(w) => CrashCause::Protocol(w),
                };
                Outcome::Crashed(Crash::new(cause, stderr))
            }
            // Written by a script, as text.
            Err(_) => Outcome::Crashed(Crash::new(
                CrashCause::Protocol(String::from_utf8_lossy(data).into_owned()),
                Vec::new(),
            )),
        },
        "lost" => {
            let text = String::from_utf8_lossy(data);
            let (attempts, reason) = text.split_once('|').unwrap_or(("0", &text));
            Outcome::Lost(Lost::new(reason, attempts.parse().unwrap_or(0)))
        }
        other => Outcome::Crashed(Crash::new(
            CrashCause::Protocol(format!("unknown outcome kind `{other}` in Redis")),
            Vec::new(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_comes_back() {
        let (k, d) = from_ended(Ended::Value(postcard::to_stdvec(&7u32).unwrap()));
        assert_eq!(decode::<u32, String>(k, &d).value(), Some(7));
        let (k, d) = from_ended(Ended::Error(postcard::to_stdvec("no").unwrap()));
        assert_eq!(decode::<u32, String>(k, &d).error().as_deref(), Some("no"));
        let (k, d) = from_ended(Ended::Panicked {
            message: "boom".into(),
            location: Some(("a.rs".into(), 3, 4)),
        });
        let p = decode::<u32, String>(k, &d).panic().unwrap();
        assert_eq!(p.message(), "boom");
        assert_eq!(p.location().unwrap().line(), 3);
        let (k, d) = killed(Some(9), b"tail");
        let killed = decode::<u32, String>(k, &d).killed().unwrap();
        assert_eq!(killed.signal(), Some(9));
        let (k, d) = crashed(&CrashCause::Signal(11), b"segv");
        let crash = decode::<u32, String>(k, &d).crash().unwrap();
        assert_eq!(crash.cause(), &CrashCause::Signal(11));
        assert_eq!(crash.stderr_tail(), b"segv");
        // A child process's end, as the process place tells it.
        let (k, d) = from_ended(Ended::Killed(Killed::new(Some(9), b"k".to_vec())));
        let killed = decode::<u32, String>(k, &d).killed().unwrap();
        assert_eq!(
            (killed.signal(), killed.stderr_tail()),
            (Some(9), &b"k"[..])
        );
        let (k, d) = from_ended(Ended::Crashed(Crash::new(
            CrashCause::Signal(6),
            b"abort".to_vec(),
        )));
        let crash = decode::<u32, String>(k, &d).crash().unwrap();
        assert_eq!(crash.cause(), &CrashCause::Signal(6));
        assert_eq!(crash.stderr_tail(), b"abort");
        let lost = decode::<u32, String>("lost", b"2|gone").lost().unwrap();
        assert_eq!((lost.attempts(), lost.reason()), (2, "gone"));
        assert!(decode::<u32, String>("cancelled", b"").is_cancelled());
        assert!(decode::<u32, String>("killed", b"").is_killed());
    }

    #[test]
    fn data_that_does_not_decode_is_a_protocol_crash() {
        let crash = decode::<String, String>("value", &[0xff, 0xff])
            .crash()
            .unwrap();
        assert!(matches!(crash.cause(), CrashCause::Protocol(w) if w.contains("value")));
        assert!(decode::<u8, u8>("whatever", b"").is_crashed());
    }
}
