//! What can go wrong talking to Redis.

use std::error::Error;
use std::fmt;

/// An error talking to Redis: a malformed URL, a server that does not
/// answer, a lost connection, or a command Redis refused. It names the URL
/// it tried (password hidden).
#[derive(Debug)]
pub struct RemoteError {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Url(redis::RedisError),
    Redis(redis::RedisError),
    Invalid(String),
    UnknownTask(u64),
}

impl RemoteError {
    pub(crate) fn url(url: &str, e: redis::RedisError) -> RemoteError {
        RemoteError {
            url: url.to_owned(),
            kind: Kind::Url(e),
        }
    }

    pub(crate) fn redis(url: &str, e: redis::RedisError) -> RemoteError {
        RemoteError {
            url: url.to_owned(),
            kind: Kind::Redis(e),
        }
    }

    /// A request this crate refuses before it reaches Redis (an argument
    /// over the largest message, a task of another type).
    pub(crate) fn invalid(what: impl Into<String>) -> RemoteError {
        RemoteError {
            url: String::new(),
            kind: Kind::Invalid(what.into()),
        }
    }

    /// No task has this id (never submitted, or its result expired).
    pub(crate) fn unknown_task(url: &str, id: crate::TaskId) -> RemoteError {
        RemoteError {
            url: url.to_owned(),
            kind: Kind::UnknownTask(id.as_u64()),
        }
    }

    /// Returns `true` if no task has the id asked for.
    pub fn is_unknown_task(&self) -> bool {
        matches!(self.kind, Kind::UnknownTask(_))
    }

    /// Returns `true` if the request was refused before it reached Redis.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_))
    }

    /// The URL that was tried, with any password hidden.
    pub fn url_tried(&self) -> &str {
        &self.url
    }

    /// Returns `true` if no server answered, or the connection was lost.
    pub fn is_connection(&self) -> bool {
        match &self.kind {
            Kind::Redis(e) => {
                e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_io_error()
                    || e.is_timeout()
            }
            _ => false,
        }
    }

    /// Returns `true` if the URL itself is malformed.
    pub fn is_url(&self) -> bool {
        matches!(self.kind, Kind::Url(_))
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Url(e) => write!(f, "`{}` is not a Redis URL: {e}", self.url),
            Kind::Redis(e) if self.is_connection() => write!(
                f,
                "no Redis answers at {} ({e}); start one with `redis-server`, or set \
                 SIDETASK_REDIS_URL",
                self.url
            ),
            Kind::Redis(e) => write!(f, "Redis at {} refused a command: {e}", self.url),
            Kind::Invalid(what) => f.write_str(what),
            Kind::UnknownTask(id) => write!(
                f,
                "Redis at {} holds no task #{id} (never submitted, or its result expired)",
                self.url
            ),
        }
    }
}

impl Error for RemoteError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::Url(e) | Kind::Redis(e) => Some(e),
            Kind::Invalid(_) | Kind::UnknownTask(_) => None,
        }
    }
}
