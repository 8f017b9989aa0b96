//! A connection to Redis, made from a URL, shared by every handle and
//! feeder made from it.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use redis::ConnectionLike;

use super::RemoteError;
use super::reader::Reader;
use super::scripts::PROTOCOL;
use crate::TaskId;
use crate::sync::lock;

/// The URL used when none is given and `SIDETASK_REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The variable that overrides [`DEFAULT_URL`].
pub const URL_VAR: &str = "SIDETASK_REDIS_URL";
/// The namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "sidetask";

/// How long making a connection may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// How long an ordinary (non-blocking) command may take to answer.
pub(crate) const COMMAND_LIMIT: Duration = Duration::from_secs(10);
/// How many idle connections a client keeps for its commands.
const KEPT: usize = 16;

/// A Redis server (or cluster) and a namespace: what remote tasks, remote
/// workers and the feeders talk to.
///
/// Cloning it is cheap; clones share their connections. Connections are
/// made on first use, so `Client::open` succeeds without a server;
/// [`ping`](Client::ping) checks that one answers.
///
/// A URL is `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS,
/// with the `redis-tls` feature) or `redis+unix:///path/to/socket`.
///
/// # Examples
///
/// ```no_run
/// let client = sidetask::remote::Client::open("redis://127.0.0.1:6379")?;
/// client.ping()?; // a clear error, naming the URL, if no server answers
/// # Ok::<(), sidetask::remote::RemoteError>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    redis: Source,
    /// The URL as given, with any password hidden.
    shown: String,
    namespace: String,
    /// This client's name in Redis: its doorbell's.
    id: String,
    idle: Mutex<Vec<Conn>>,
    /// A connection that reads no answers (`CLIENT REPLY OFF`), for
    /// writes that must reach the server without a round trip.
    quiet: Mutex<Option<redis::Connection>>,
    reader: OnceLock<Arc<Reader>>,
}

impl Client {
    /// A client for `SIDETASK_REDIS_URL`, or [`DEFAULT_URL`] if it is not
    /// set.
    ///
    /// # Errors
    ///
    /// If the URL is malformed.
    pub fn from_env() -> Result<Client, RemoteError> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Client::open(&url),
            _ => Client::open(DEFAULT_URL),
        }
    }

    /// A client for `url`, in the default namespace.
    ///
    /// # Errors
    ///
    /// If the URL is malformed (or asks for TLS without the `redis-tls`
    /// feature).
    pub fn open(url: &str) -> Result<Client, RemoteError> {
        let shown = hide_password(url);
        let redis = redis::IntoConnectionInfo::into_connection_info(url)
            .and_then(|info| redis::Client::open(info.set_tcp_settings(tcp_settings())))
            .map_err(|e| RemoteError::url(&shown, e))?;
        Ok(Client::from_source(Source::Single(redis), shown))
    }

    /// A client for a Redis Cluster, given the URLs of some of its nodes.
    /// Every key of a namespace shares one hash tag, so a namespace lives
    /// on one node and every script runs there. The feeders need a single
    /// server's URL.
    ///
    /// # Errors
    ///
    /// If a URL is malformed.
    #[cfg(feature = "redis-cluster")]
    pub fn open_cluster(urls: &[&str]) -> Result<Client, RemoteError> {
        let shown = urls
            .iter()
            .map(|u| hide_password(u))
            .collect::<Vec<_>>()
            .join(",");
        let redis = redis::cluster::ClusterClient::builder(urls.iter().copied())
            .connection_timeout(CONNECT_LIMIT)
            .tcp_settings(tcp_settings())
            .build()
            .map_err(|e| RemoteError::url(&shown, e))?;
        Ok(Client::from_source(Source::Cluster(redis), shown))
    }

    fn from_source(redis: Source, shown: String) -> Client {
        Client {
            inner: Arc::new(Inner {
                redis,
                shown,
                namespace: DEFAULT_NAMESPACE.to_owned(),
                id: format!("{:x}", super::fresh_id()),
                idle: Mutex::new(Vec::new()),
                quiet: Mutex::new(None),
                reader: OnceLock::new(),
            }),
        }
    }

    /// The same server under another namespace: tasks, queues and workers
    /// of different namespaces never meet. Every key of a namespace shares
    /// one hash tag, so that a namespace lives on one node of a cluster.
    ///
    /// # Panics
    ///
    /// If `namespace` is empty or holds `{`, `}` or `:` (which would break
    /// its hash tag or its keys), or `*`, `?`, `[`, `]` or `\` (which
    /// would make [`key_prefix`](Client::key_prefix) a pattern).
    #[must_use]
    pub fn namespace(&self, namespace: &str) -> Client {
        assert!(
            !namespace.is_empty() && !namespace.contains(['{', '}', ':', '*', '?', '[', ']', '\\']),
            "a namespace is a non-empty name without `{{`, `}}`, `:`, `*`, `?`, `[`, `]` or \
             `\\`, not {namespace:?}"
        );
        self.sibling(namespace)
    }

    /// A client of the same server and id in `namespace`, with its own
    /// connections and reader.
    fn sibling(&self, namespace: &str) -> Client {
        Client {
            inner: Arc::new(Inner {
                redis: self.inner.redis.clone(),
                shown: self.inner.shown.clone(),
                namespace: namespace.to_owned(),
                id: self.inner.id.clone(),
                idle: Mutex::new(Vec::new()),
                quiet: Mutex::new(None),
                reader: OnceLock::new(),
            }),
        }
    }

    /// A handle on remote task `id`, submitted by this client or another
    /// one (before a restart, say): it resumes the events where the last
    /// handle on the task took them, with no gap and no duplicate, and
    /// serves every verb as the first handle did.
    ///
    /// # Errors
    ///
    /// If no task has this id ([`RemoteError::is_unknown_task`]: never
    /// submitted, or its result expired), the task is of another type or
    /// version, or Redis cannot be reached.
    pub fn attach<T: crate::NamedTask>(
        &self,
        id: TaskId,
    ) -> Result<super::RemoteTask<T>, RemoteError> {
        // What this client's handles took shows in the cursor read next.
        self.sync_durable();
        super::handle::attach::<T>(self, id)
    }

    /// The reader that serves this client's handles, started on first use.
    pub(crate) fn reader(&self) -> &Reader {
        self.inner
            .reader
            .get_or_init(|| Reader::start(&self.sibling(&self.inner.namespace)))
    }

    /// This client's name in Redis.
    pub(crate) fn id(&self) -> &str {
        &self.inner.id
    }

    /// What every key of this client's namespace starts with: the
    /// namespace as a hash tag, then the version of what sidetask stores
    /// there, as in `{sidetask}:1:`. For looking at a namespace's keys
    /// (`SCAN` with `MATCH <prefix>*`: a namespace holds no character
    /// that a pattern gives a meaning to) or deleting them all; clients and
    /// workers of another version of sidetask's records use other keys,
    /// so they never misread these (nor see these tasks, queues or
    /// workers).
    ///
    /// # Examples
    ///
    /// ```
    /// let client = sidetask::remote::Client::open("redis://127.0.0.1:6379")?.namespace("jobs");
    /// assert_eq!(client.key_prefix(), "{jobs}:1:");
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn key_prefix(&self) -> String {
        format!("{{{}}}:{PROTOCOL}:", self.inner.namespace)
    }

    /// The URL this client connects to, with any password hidden.
    pub fn url(&self) -> &str {
        &self.inner.shown
    }

    /// The client's namespace.
    pub fn namespace_name(&self) -> &str {
        &self.inner.namespace
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    ///
    /// [`RemoteError`] naming the URL if it does not.
    pub fn ping(&self) -> Result<(), RemoteError> {
        let mut con = self.connection()?;
        redis::cmd("PING")
            .query::<String>(&mut *con)
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// A connection for ordinary commands, given back to the client when
    /// dropped.
    pub(crate) fn connection(&self) -> Result<Pooled, RemoteError> {
        let kept = lock(&self.inner.idle).pop();
        let con = match kept {
            Some(con) => con,
            None => self.blocking(Some(COMMAND_LIMIT))?,
        };
        Ok(Pooled {
            con: Some(con),
            client: self.clone(),
        })
    }

    /// Runs `f` on a connection of the client's; once more on a new
    /// connection if the first one had broken (a server restarted since it
    /// was made).
    pub(crate) fn run<R>(
        &self,
        f: impl Fn(&mut Conn) -> redis::RedisResult<R>,
    ) -> Result<R, RemoteError> {
        let mut con = self.connection()?;
        match f(&mut con) {
            Ok(r) => Ok(r),
            Err(e) => {
                let e = self.error(e);
                if !e.is_connection() {
                    return Err(e);
                }
                // The others kept were made before the same break.
                con.discard();
                lock(&self.inner.idle).clear();
                let mut con = self.connection()?;
                f(&mut con).map_err(|e| {
                    let e = self.error(e);
                    con.discard_if(&e);
                    e
                })
            }
        }
    }

    /// Sends `cmd`, whose answer nobody needs, so that it reaches the
    /// server even if this process is killed the moment this returns:
    /// written whole into the socket of a connection that gets no answers
    /// (`CLIENT REPLY OFF`), without waiting for the server, so it costs no
    /// round trip. Where that cannot be done (a cluster, a connection that
    /// broke), it is run the ordinary way, waiting for its answer. A
    /// failure is traced, never returned.
    pub(crate) fn send_durably(&self, cmd: &redis::Cmd) {
        if matches!(self.inner.redis, Source::Single(_)) {
            let mut quiet = lock(&self.inner.quiet);
            if quiet.is_none() {
                *quiet = self
                    .dedicated(Some(COMMAND_LIMIT))
                    .ok()
                    .and_then(|mut con| {
                        let off = redis::cmd("CLIENT")
                            .arg("REPLY")
                            .arg("OFF")
                            .get_packed_command();
                        con.send_packed_command(&off).ok().map(|()| con)
                    });
            }
            if let Some(con) = quiet.as_mut() {
                match con.send_packed_command(&cmd.get_packed_command()) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "a connection without answers broke");
                        *quiet = None;
                    }
                }
            }
        }
        if let Err(e) = self.run(|con| cmd.query::<redis::Value>(con)) {
            tracing::warn!(error = %e, "a write to Redis failed");
        }
    }

    /// Waits until the server has run everything [`send_durably`] sent
    /// (one round trip, on the connection that gets no answers), so that
    /// what any connection reads next sees it.
    ///
    /// [`send_durably`]: Client::send_durably
    pub(crate) fn sync_durable(&self) {
        let mut quiet = lock(&self.inner.quiet);
        let Some(con) = quiet.as_mut() else { return };
        let on = redis::cmd("CLIENT")
            .arg("REPLY")
            .arg("ON")
            .get_packed_command();
        let off = redis::cmd("CLIENT")
            .arg("REPLY")
            .arg("OFF")
            .get_packed_command();
        let synced = con
            .send_packed_command(&on)
            .and_then(|()| con.recv_response())
            .and_then(|_| con.send_packed_command(&off));
        if let Err(e) = synced {
            tracing::debug!(error = %e, "a connection without answers broke");
            *quiet = None;
        }
    }

    /// A connection of its own (for a blocking read), whose reads time out
    /// after `limit` (never, if `None`).
    pub(crate) fn blocking(&self, limit: Option<Duration>) -> Result<Conn, RemoteError> {
        match &self.inner.redis {
            Source::Single(_) => self.dedicated(limit).map(Conn::Single),
            #[cfg(feature = "redis-cluster")]
            Source::Cluster(cluster) => {
                let con = cluster.get_connection().map_err(|e| self.error(e))?;
                con.set_read_timeout(limit).map_err(|e| self.error(e))?;
                con.set_write_timeout(Some(COMMAND_LIMIT))
                    .map_err(|e| self.error(e))?;
                Ok(Conn::Cluster(Box::new(con)))
            }
        }
    }

    /// A connection of its own to a single server (for a feeder's blocking
    /// read or subscription), whose reads time out after `limit` (never, if
    /// `None`).
    #[cfg_attr(
        not(feature = "redis-cluster"),
        allow(clippy::infallible_destructuring_match)
    )]
    pub(crate) fn dedicated(
        &self,
        limit: Option<Duration>,
    ) -> Result<redis::Connection, RemoteError> {
        let redis = match &self.inner.redis {
            Source::Single(redis) => redis,
            #[cfg(feature = "redis-cluster")]
            Source::Cluster(_) => {
                return Err(RemoteError::invalid(format!(
                    "the feeders need a single server's URL, not a cluster's ({})",
                    self.inner.shown
                )));
            }
        };
        let con = redis
            .get_connection_with_timeout(CONNECT_LIMIT)
            .map_err(|e| self.error(e))?;
        con.set_read_timeout(limit).map_err(|e| self.error(e))?;
        con.set_write_timeout(Some(COMMAND_LIMIT))
            .map_err(|e| self.error(e))?;
        Ok(con)
    }

    /// `e`, said of this client's server.
    pub(crate) fn error(&self, e: redis::RedisError) -> RemoteError {
        RemoteError::redis(&self.inner.shown, e)
    }

    /// The key `what` in this client's namespace, under its hash tag.
    pub(crate) fn key(&self, what: fmt::Arguments<'_>) -> String {
        format!("{{{}}}:{PROTOCOL}:{what}", self.inner.namespace)
    }
}

/// Every connection's TCP settings: small writes go out at once
/// (`TCP_NODELAY`), so that a write that expects no answer (a cursor) is
/// not held back, waiting for the acknowledgement of the one before it.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.shown)
            .field("namespace", &self.inner.namespace)
            .finish()
    }
}

/// A connection borrowed from a client; a healthy one goes back when
/// dropped.
pub(crate) struct Pooled {
    con: Option<Conn>,
    client: Client,
}

impl Pooled {
    /// Forgets the connection instead of giving it back (after an error,
    /// it may hold half an answer).
    pub(crate) fn discard(mut self) {
        self.con = None;
    }

    /// Forgets the connection if `e` says it broke.
    pub(crate) fn discard_if(&mut self, e: &RemoteError) {
        if e.is_connection() {
            self.con = None;
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.con
            .as_ref()
            .expect("a pooled connection until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Conn {
        self.con
            .as_mut()
            .expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(con) = self.con.take()
            && con.is_open()
        {
            let mut idle = lock(&self.client.inner.idle);
            if idle.len() < KEPT {
                idle.push(con);
            }
        }
    }
}

/// `url` with the password between `:` and `@` replaced by `***`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("redis://me:secret@host:1/0"),
            "redis://me:***@host:1/0"
        );
        assert_eq!(hide_password("redis://host:1"), "redis://host:1");
        assert_eq!(hide_password("redis://me@host"), "redis://me@host");
    }

    #[test]
    fn a_malformed_url_is_an_error_naming_it() {
        let err = Client::open("http://nowhere").unwrap_err();
        assert!(err.to_string().contains("http://nowhere"), "{err}");
    }

    #[test]
    fn keys_share_the_namespace_tag() {
        let client = Client::open(DEFAULT_URL).unwrap().namespace("jobs");
        let key = client.key(format_args!("q:{}", "x"));
        assert_eq!(key, format!("{{jobs}}:{PROTOCOL}:q:x"));
        assert!(key.starts_with(&client.key_prefix()));
    }

    #[test]
    #[should_panic(expected = "a namespace is a non-empty name without")]
    fn a_namespace_that_would_make_its_prefix_a_pattern_is_refused() {
        let _ = Client::open(DEFAULT_URL).unwrap().namespace("jobs*");
    }
}

/// Where a client's connections go.
#[derive(Clone)]
enum Source {
    Single(redis::Client),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to a single server, or to a cluster (routed by key).
pub(crate) enum Conn {
    Single(redis::Connection),
    #[cfg(feature = "redis-cluster")]
    Cluster(Box<redis::cluster::ClusterConnection>),
}

/// Calls `$f` on whichever connection `$self` holds.
macro_rules! either {
    ($self:expr, $con:ident => $f:expr) => {
        match $self {
            Conn::Single($con) => $f,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster($con) => $f,
        }
    };
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        either!(self, c => c.req_packed_command(cmd))
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        either!(self, c => c.req_packed_commands(cmd, offset, count))
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        either!(self, c => c.req_command(cmd))
    }

    fn get_db(&self) -> i64 {
        either!(self, c => c.get_db())
    }

    fn supports_pipelining(&self) -> bool {
        either!(self, c => c.supports_pipelining())
    }

    fn check_connection(&mut self) -> bool {
        either!(self, c => c.check_connection())
    }

    fn is_open(&self) -> bool {
        either!(self, c => c.is_open())
    }
}
