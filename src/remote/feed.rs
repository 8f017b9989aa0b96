//! Feeders: controllers that bring the items of a Redis list, or the
//! messages of a Redis channel, into a local task's inbox.
//!
//! Glossary:
//!
//! - *source*: the list the items come from. Producers `LPUSH`; the feeder
//!   takes from the right end (as `BRPOP` does), so the right end is the
//!   *head*, the next item out.
//! - *processing list*: where `BLMOVE` puts each item it takes (at its
//!   left), so that an item is always in Redis until the task is done with
//!   it. It belongs to one feeder at a time.
//! - *window*: the raw items sent to the task and still in the processing
//!   list, oldest first, as the feeder remembers them.
//! - *acknowledge*: remove an item from the processing list (`LREM`).
//! - *give back*: move an item from the processing list to the source's
//!   head, in one script, so that it is handed out next.
//! - *reconcile*: after (re)connecting, move to the source's head whatever
//!   the processing list holds beyond the window (items of a feeder that
//!   died, or an item moved by a `BLMOVE` whose answer was lost).
//!
//! Invariants of the list feeder:
//!
//! 1. Every item taken from the source is, at every moment, in the source,
//!    the processing list, the dead-letter list, or read by the task.
//! 2. The window is a suffix of the items sent to the task; an item leaves
//!    it (is acknowledged) only once `in_flight` newer items were sent (a
//!    task's inbox holds no more than that, so it was read) or once the task
//!    has ended and `Task::take_unread` says it was read.
//! 3. The processing list holds the window, plus at most the one item in
//!    hand (taken, not yet sent), plus what a reconcile will move back.
//!
//! Every Redis call goes through [`Link::call`], which reconnects with
//! backoff on a lost connection and gives up after the configured time.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};
use serde::de::DeserializeOwned;

use super::client::COMMAND_LIMIT;
use super::{Client, RemoteError};
use crate::builder::DEFAULT_CAPACITY;
use crate::controller::{Controller, GiveUp};
use crate::error::SendError;
use crate::task::Task;

/// How long a feeder blocks on Redis, by default, before it looks at its
/// task again.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(1);
/// How long a feeder keeps trying to reconnect, by default, before it
/// gives up.
pub const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(30);

/// The first pause between two reconnection attempts; each next one
/// doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A decoding function, its error boxed.
type Decode<In> = Box<dyn FnMut(Vec<u8>) -> Result<In, Box<dyn Error + Send + Sync>> + Send>;

fn boxed<In, D, E>(mut decode: D) -> Decode<In>
where
    D: FnMut(Vec<u8>) -> Result<In, E> + Send + 'static,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    Box::new(move |raw| decode(raw).map_err(Into::into))
}

fn utf8(raw: Vec<u8>) -> Result<String, std::string::FromUtf8Error> {
    String::from_utf8(raw)
}

fn raw(raw: Vec<u8>) -> Result<Vec<u8>, std::convert::Infallible> {
    Ok(raw)
}

fn from_postcard<In: DeserializeOwned>(raw: Vec<u8>) -> Result<In, postcard::Error> {
    postcard::from_bytes(&raw)
}

#[cfg(feature = "json")]
fn from_json<In: DeserializeOwned>(raw: Vec<u8>) -> Result<In, serde_json::Error> {
    serde_json::from_slice(&raw)
}

/// Moves one item (`ARGV[1]`) from the processing list (`KEYS[1]`) to
/// `KEYS[2]`, at its right end if `ARGV[2]` is `R`, else at its left; does
/// nothing if the item is no longer in the processing list, so that a retry
/// after a lost answer does not push it twice.
static MOVE_ITEM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
            return 0
        end
        if ARGV[2] == 'R' then
            redis.call('RPUSH', KEYS[2], ARGV[1])
        else
            redis.call('LPUSH', KEYS[2], ARGV[1])
        end
        return 1
        ",
    )
});

/// Feeds a local task from a Redis list, reliably: task.py's `redis_brpop`
/// controller.
///
/// Producers push items with `LPUSH`; the feeder takes them from the other
/// end, so the task reads them in the order they were pushed, and sends
/// each into the task with [`Task::send`] (waiting while its inbox is full).
/// It returns once the task has ended, within one [`block`](Self::block)
/// period. It never stops the task itself: a task fed from a list usually
/// runs until it is stopped, or until it has read what it wanted.
///
/// The list's key, and the keys of its processing and dead-letter lists,
/// are used as given, not under the client's namespace. On Redis Cluster
/// they must share a slot: give the list a hash tag, as in `{jobs}`, and
/// the derived keys (`{jobs}:processing`, `{jobs}:dead`) share it.
///
/// # Delivery: at least once, in order
///
/// Each item is moved atomically (`BLMOVE`, Redis 6.2 or later) from the
/// list to the feeder's *processing list* (`<list>:processing` unless
/// [`processing_list`](Self::processing_list) says otherwise), and stays
/// there until the task is done with it:
///
/// - an item sent to the task is removed from the processing list once
///   [`in_flight`](Self::in_flight) newer items have been sent after it
///   (the task's inbox holds no more, so the task has read it), or once the
///   task has ended having read it;
/// - when the task ends, the item its [`send`](Task::send) refused and the
///   items left unread in its inbox are moved back to the head of the list,
///   in order, so the next feeder hands them out first;
/// - if the feeder's process dies, the processing list keeps what it held.
///   A feeder starting on a processing list first moves everything in it
///   back to the head of the list, oldest first.
///
/// So no item is lost. But an item the task had read before its process
/// died is handed out again: delivery is *at least once*, and a task whose
/// work must not be repeated should remember what it did. Several feeders
/// may take from one list; each needs a processing list of its own, since a
/// starting feeder takes back whatever is in its processing list.
///
/// # Items that do not decode
///
/// An item the decoding function rejects (or one over the largest message
/// the task's place carries) is not lost: it is moved to the *dead-letter
/// list* (`<list>:dead` unless [`dead_letter_list`](Self::dead_letter_list)
/// says otherwise, pushed at its left, so the oldest is at its right), a
/// warning is logged through `tracing`, and feeding goes on.
///
/// # Errors
///
/// On a lost connection the feeder reconnects, with pauses from 50 ms
/// doubling up to 1 s, for at most [`reconnect_for`](Self::reconnect_for);
/// then it gives up with a [`GiveUp`] whose [`reason`](GiveUp::reason) is
/// the last [`RemoteError`]. A command Redis refuses (a key of another
/// type, a server older than 6.2) gives up at once. Either way the items in
/// the processing list stay there for the next feeder.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use sidetask::remote::{Client, ListFeeder};
/// use sidetask::{Ctx, Stopped};
///
/// let client = Client::from_env()?;
/// // Reads three items, then ends.
/// let task = sidetask::spawn(|ctx: &Ctx<String>| {
///     let mut read = Vec::new();
///     while read.len() < 3 {
///         read.push(ctx.recv().map_err(Stopped::from)?);
///     }
///     Ok::<_, Stopped>(read)
/// });
/// let mut feeder = ListFeeder::strings(&client, "jobs").block(Duration::from_millis(200));
/// let read = sidetask::run(&mut feeder, task)?;
/// println!("read {read:?}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a feeder does nothing until it drives a task (`sidetask::run`)"]
pub struct ListFeeder<In> {
    client: Client,
    list: String,
    processing: String,
    dead: String,
    block: Duration,
    reconnect_for: Duration,
    in_flight: usize,
    decode: Decode<In>,
}

impl<In> ListFeeder<In> {
    /// A feeder from the list `list`, whose items `decode` turns into the
    /// task's messages.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// type BoxError = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// let client = Client::from_env()?;
    /// // Items are decimal numbers.
    /// let feeder = ListFeeder::new(&client, "numbers", |raw: Vec<u8>| -> Result<u64, BoxError> {
    ///     Ok(String::from_utf8(raw)?.trim().parse()?)
    /// });
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn new<D, E>(client: &Client, list: &str, decode: D) -> ListFeeder<In>
    where
        D: FnMut(Vec<u8>) -> Result<In, E> + Send + 'static,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        ListFeeder {
            client: client.clone(),
            list: list.to_owned(),
            processing: format!("{list}:processing"),
            dead: format!("{list}:dead"),
            block: DEFAULT_BLOCK,
            reconnect_for: DEFAULT_RECONNECT_FOR,
            in_flight: DEFAULT_CAPACITY,
            decode: boxed(decode),
        }
    }

    /// Sets the processing list's key (by default `<list>:processing`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// // Two feeders on one list, each with its own processing list.
    /// let a = ListFeeder::strings(&client, "jobs").processing_list("jobs:processing:a");
    /// let b = ListFeeder::strings(&client, "jobs").processing_list("jobs:processing:b");
    /// # drop((a, b));
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn processing_list(mut self, key: &str) -> ListFeeder<In> {
        key.clone_into(&mut self.processing);
        self
    }

    /// Sets the dead-letter list's key (by default `<list>:dead`), where
    /// items that do not decode go.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::strings(&client, "jobs").dead_letter_list("jobs:rejected");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn dead_letter_list(mut self, key: &str) -> ListFeeder<In> {
        key.clone_into(&mut self.dead);
        self
    }

    /// Sets how long each `BLMOVE` blocks waiting for an item (by default
    /// [`DEFAULT_BLOCK`]): the feeder returns within this time once the
    /// task has ended. The connection's read timeout is this plus ten
    /// seconds, so a blocked read is never taken for a lost connection.
    ///
    /// # Panics
    ///
    /// If `block` is under a millisecond (Redis would block forever).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::strings(&client, "jobs").block(Duration::from_millis(250));
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn block(mut self, block: Duration) -> ListFeeder<In> {
        assert!(
            block >= Duration::from_millis(1),
            "a feeder blocks at least a millisecond, not {block:?}"
        );
        self.block = block;
        self
    }

    /// Sets how long the feeder keeps trying to reconnect after it lost
    /// its connection, before it gives up (by default
    /// [`DEFAULT_RECONNECT_FOR`]; zero gives up at the first failure).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::strings(&client, "jobs").reconnect_for(Duration::from_secs(5));
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn reconnect_for(mut self, limit: Duration) -> ListFeeder<In> {
        self.reconnect_for = limit;
        self
    }

    /// Sets how many items sent to the task stay in the processing list,
    /// as possibly unread, until newer ones push them out (by default
    /// [`DEFAULT_CAPACITY`], the inbox capacity of a task made with
    /// [`spawn`](crate::spawn)).
    ///
    /// It must be at least the task's inbox capacity
    /// ([`Builder::inbox_capacity`](crate::Builder::inbox_capacity)): else
    /// an item still in the inbox can be removed from the processing list,
    /// and lost if the process dies (when the task ends, the feeder warns
    /// of such items through `tracing`). A larger value only means more
    /// items handed out again after a crash.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    /// use sidetask::{Builder, Ctx, Stopped};
    ///
    /// let client = Client::from_env()?;
    /// let task = Builder::new()
    ///     .inbox_capacity(256)
    ///     .spawn(|ctx: &Ctx<String>| Ok::<_, Stopped>(ctx.iter().count()))?;
    /// let mut feeder = ListFeeder::strings(&client, "jobs").in_flight(256);
    /// # let _ = sidetask::run(&mut feeder, task);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_flight(mut self, n: usize) -> ListFeeder<In> {
        assert!(n > 0, "a feeder keeps at least one item in flight");
        self.in_flight = n;
        self
    }

    /// The list the items come from.
    pub fn list(&self) -> &str {
        &self.list
    }

    /// The processing list's key.
    pub fn processing_key(&self) -> &str {
        &self.processing
    }

    /// The dead-letter list's key.
    pub fn dead_letter_key(&self) -> &str {
        &self.dead
    }
}

impl ListFeeder<String> {
    /// A feeder of UTF-8 text items; an item that is not UTF-8 goes to the
    /// dead-letter list.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::strings(&client, "jobs");
    /// assert_eq!(feeder.processing_key(), "jobs:processing");
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn strings(client: &Client, list: &str) -> ListFeeder<String> {
        ListFeeder::new(client, list, utf8)
    }
}

impl ListFeeder<Vec<u8>> {
    /// A feeder of the items' bytes as they are.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::bytes(&client, "images");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn bytes(client: &Client, list: &str) -> ListFeeder<Vec<u8>> {
        ListFeeder::new(client, list, raw)
    }
}

impl<In: DeserializeOwned + 'static> ListFeeder<In> {
    /// A feeder of items encoded with postcard (as `postcard::to_stdvec`
    /// writes them).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Job {
    ///     id: u64,
    /// }
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::<Job>::postcard(&client, "jobs");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn postcard(client: &Client, list: &str) -> ListFeeder<In> {
        ListFeeder::new(client, list, from_postcard::<In>)
    }

    /// A feeder of JSON items.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, ListFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = ListFeeder::<serde_json::Value>::json(&client, "events");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json(client: &Client, list: &str) -> ListFeeder<In> {
        ListFeeder::new(client, list, from_json::<In>)
    }
}

impl<In> fmt::Debug for ListFeeder<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListFeeder")
            .field("client", &self.client)
            .field("list", &self.list)
            .field("processing", &self.processing)
            .field("dead", &self.dead)
            .field("block", &self.block)
            .field("reconnect_for", &self.reconnect_for)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<T, E, In, Ev> Controller<T, E, In, Ev> for ListFeeder<In>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        let lists = Lists {
            source: &self.list,
            processing: &self.processing,
            dead: &self.dead,
            block: self.block,
        };
        let mut link = Link::new(
            &self.client,
            Some(self.block + COMMAND_LIMIT),
            self.reconnect_for,
        );
        let mut window: VecDeque<Vec<u8>> = VecDeque::new();
        let never = || false;
        let ended = || task.is_finished();

        // Connecting reconciles: what a previous feeder left goes back.
        link.call(&lists, 0, &never, |_| Ok(()))?;

        let refused = loop {
            if task.is_finished() {
                break None;
            }
            let Some(popped) = link.call(&lists, window.len(), &ended, |con| lists.pop(con))?
            else {
                break None; // Redis is away and the task has ended.
            };
            let Some(raw) = popped else {
                continue; // Nothing came within the block period.
            };
            let item = match (self.decode)(raw.clone()) {
                Ok(item) => item,
                Err(e) => {
                    tracing::warn!(
                        "an item of the Redis list `{}` does not decode ({e}); it goes to `{}`",
                        lists.source,
                        lists.dead
                    );
                    link.call(&lists, window.len(), &never, |con| lists.bury(con, &raw))?;
                    continue;
                }
            };
            match task.send(item) {
                Ok(()) => {
                    window.push_back(raw);
                    while window.len() > self.in_flight {
                        let kept = window.len();
                        let oldest = &window[0];
                        link.call(&lists, kept, &never, |con| lists.acknowledge(con, oldest))?;
                        window.pop_front();
                    }
                }
                Err(SendError::TooLarge(_)) => {
                    tracing::warn!(
                        "an item of the Redis list `{}` is too large for the task; it goes to `{}`",
                        lists.source,
                        lists.dead
                    );
                    link.call(&lists, window.len(), &never, |con| lists.bury(con, &raw))?;
                }
                Err(SendError::Disconnected(_)) => break Some(raw),
            }
        };

        // The task is stopping or has ended: what it did not read goes back
        // to the head of the list, newest first, so the oldest ends up first.
        task.wait();
        let unread = task.take_unread().map_or(0, |unread| unread.len());
        if let Some(raw) = refused {
            link.call(&lists, window.len(), &never, |con| {
                lists.give_back(con, &raw)
            })?;
        }
        if unread > window.len() {
            tracing::warn!(
                "{} items the task never read had left the processing list `{}`: its inbox \
                 holds more than the feeder's `in_flight` ({}); they are lost",
                unread - window.len(),
                lists.processing,
                self.in_flight
            );
        }
        for _ in 0..unread.min(window.len()) {
            let kept = window.len();
            let newest = &window[kept - 1];
            link.call(&lists, kept, &never, |con| lists.give_back(con, newest))?;
            window.pop_back();
        }
        // The rest was read.
        let kept = window.len();
        link.call(&lists, kept, &never, |con| {
            lists.acknowledge_all(con, &window)
        })?;
        window.clear();
        // Anything else in the processing list (an item moved by a `BLMOVE`
        // whose answer was lost) goes back too.
        link.call(&lists, 0, &never, |con| lists.reconcile(con, 0))?;
        Ok(())
    }
}

/// The keys a list feeder uses, and its commands on them.
struct Lists<'a> {
    source: &'a str,
    processing: &'a str,
    dead: &'a str,
    block: Duration,
}

impl Lists<'_> {
    /// Takes the next item into the processing list; `None` if none came
    /// within the block period.
    fn pop(&self, con: &mut Connection) -> RedisResult<Option<Vec<u8>>> {
        redis::cmd("BLMOVE")
            .arg(self.source)
            .arg(self.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(self.block.as_secs_f64())
            .query(con)
    }

    /// Removes a read item from the processing list.
    fn acknowledge(&self, con: &mut Connection, raw: &[u8]) -> RedisResult<()> {
        redis::cmd("LREM")
            .arg(self.processing)
            .arg(-1)
            .arg(raw)
            .exec(con)
    }

    /// Removes read items from the processing list, in one round trip.
    fn acknowledge_all(&self, con: &mut Connection, window: &VecDeque<Vec<u8>>) -> RedisResult<()> {
        if window.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for raw in window {
            pipe.cmd("LREM")
                .arg(self.processing)
                .arg(-1)
                .arg(raw)
                .ignore();
        }
        pipe.exec(con)
    }

    /// Moves an item from the processing list back to the source's head.
    fn give_back(&self, con: &mut Connection, raw: &[u8]) -> RedisResult<()> {
        MOVE_ITEM
            .key(self.processing)
            .key(self.source)
            .arg(raw)
            .arg("R")
            .invoke::<i64>(con)
            .map(drop)
    }

    /// Moves an item from the processing list to the dead-letter list.
    fn bury(&self, con: &mut Connection, raw: &[u8]) -> RedisResult<()> {
        MOVE_ITEM
            .key(self.processing)
            .key(self.dead)
            .arg(raw)
            .arg("L")
            .invoke::<i64>(con)
            .map(drop)
    }

    /// Moves what the processing list holds beyond the `kept` items of the
    /// window (the newest, at its left) back to the source's head, one
    /// atomic `LMOVE` at a time, newest first, so that the oldest is handed
    /// out first.
    fn reconcile(&self, con: &mut Connection, kept: usize) -> RedisResult<()> {
        let len: usize = redis::cmd("LLEN").arg(self.processing).query(con)?;
        let mut moved = 0;
        for _ in kept..len {
            let item: Option<Vec<u8>> = redis::cmd("LMOVE")
                .arg(self.processing)
                .arg(self.source)
                .arg("LEFT")
                .arg("RIGHT")
                .query(con)?;
            if item.is_none() {
                break;
            }
            moved += 1;
        }
        if moved > 0 {
            tracing::info!(
                "{moved} items left in the processing list `{}` went back to the head of `{}`",
                self.processing,
                self.source
            );
        }
        Ok(())
    }
}

/// A connection that comes back after it is lost, for a bounded time.
struct Link<'a> {
    client: &'a Client,
    read_limit: Option<Duration>,
    con: Option<Connection>,
    outage: Outage,
}

impl<'a> Link<'a> {
    fn new(client: &'a Client, read_limit: Option<Duration>, reconnect_for: Duration) -> Link<'a> {
        Link {
            client,
            read_limit,
            con: None,
            outage: Outage::new(reconnect_for),
        }
    }

    /// Runs `command` on the connection, connecting first if there is none
    /// (then reconciling the processing list with the `kept` items of the
    /// window). On a lost connection it tries again after a pause, until
    /// the outage lasted too long; `Ok(None)` if `abandon` says to stop
    /// trying meanwhile.
    fn call<R>(
        &mut self,
        lists: &Lists<'_>,
        kept: usize,
        abandon: &dyn Fn() -> bool,
        mut command: impl FnMut(&mut Connection) -> RedisResult<R>,
    ) -> Result<Option<R>, GiveUp> {
        loop {
            match self.attempt(lists, kept, &mut command) {
                Ok(r) => {
                    self.outage.over();
                    return Ok(Some(r));
                }
                Err(err) => {
                    self.con = None;
                    self.outage.pause_or_give_up(err)?;
                    if abandon() {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn attempt<R>(
        &mut self,
        lists: &Lists<'_>,
        kept: usize,
        command: &mut impl FnMut(&mut Connection) -> RedisResult<R>,
    ) -> Result<R, RemoteError> {
        let con = match &mut self.con {
            Some(con) => con,
            None => {
                let mut con = self.client.dedicated(self.read_limit)?;
                lists
                    .reconcile(&mut con, kept)
                    .map_err(|e| self.client.error(e))?;
                self.con.insert(con)
            }
        };
        command(con).map_err(|e| self.client.error(e))
    }
}

/// A time without a connection: how long it lasted, and the next pause.
struct Outage {
    limit: Duration,
    since: Option<Instant>,
    pause: Duration,
}

impl Outage {
    fn new(limit: Duration) -> Outage {
        Outage {
            limit,
            since: None,
            pause: FIRST_PAUSE,
        }
    }

    /// A command went through: the next failure starts a new outage.
    fn over(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!("reconnected to Redis after {:?}", since.elapsed());
        }
        self.pause = FIRST_PAUSE;
    }

    /// After `err`: pauses before the next attempt if `err` is a lost
    /// connection and the outage has not lasted its limit; gives up with
    /// `err` otherwise.
    fn pause_or_give_up(&mut self, err: RemoteError) -> Result<(), GiveUp> {
        if !err.is_connection() {
            return Err(GiveUp::new(err));
        }
        let since = match self.since {
            Some(since) => since,
            None => {
                tracing::warn!("{err}; reconnecting for at most {:?}", self.limit);
                *self.since.insert(Instant::now())
            }
        };
        let left = self.limit.saturating_sub(since.elapsed());
        if left.is_zero() {
            tracing::warn!("giving up on Redis after {:?}: {err}", since.elapsed());
            return Err(GiveUp::new(err));
        }
        thread::sleep(self.pause.min(left));
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Ok(())
    }
}

/// What a [`PubSubFeeder`] listens to.
#[derive(Debug, Clone)]
enum Subscription {
    Channel(String),
    Pattern(String),
}

/// Feeds a local task from a Redis pub/sub channel, or from every channel
/// matching a pattern: task.py's `redis_pubsub` controller.
///
/// Each message's payload, decoded, is sent into the task with
/// [`Task::send`] (waiting while its inbox is full), in the order Redis
/// delivers them. The feeder returns once the task has ended, within one
/// [`read_timeout`](Self::read_timeout) period. It never stops the task
/// itself.
///
/// The channel's name is used as given, not under the client's namespace.
///
/// # Delivery: at most once
///
/// Redis keeps no pub/sub message for anyone: a message published while
/// the feeder is not subscribed (before it subscribed, while it
/// reconnects, after it returned) is lost; so are the message in hand when
/// the task ends and the messages in the task's inbox that it never reads.
/// While the task's inbox is full the feeder waits, and Redis buffers the
/// messages for it, up to its `client-output-buffer-limit` for pub/sub
/// clients; past that, Redis closes the connection and the buffered
/// messages are lost. For items that must not be lost, push them to a list
/// and use a [`ListFeeder`].
///
/// A message that does not decode is skipped, with a warning through
/// `tracing`: there is nowhere to keep it.
///
/// # Errors
///
/// On a lost connection the feeder reconnects and subscribes again, with
/// pauses from 50 ms doubling up to 1 s, for at most
/// [`reconnect_for`](Self::reconnect_for); then it gives up with a
/// [`GiveUp`] whose [`reason`](GiveUp::reason) is the last
/// [`RemoteError`].
///
/// # Examples
///
/// ```no_run
/// use sidetask::remote::{Client, PubSubFeeder};
/// use sidetask::{Ctx, Stopped};
///
/// let client = Client::from_env()?;
/// // Prints what is published on `news`, until stopped.
/// let task = sidetask::spawn(|ctx: &Ctx<String>| {
///     for message in ctx.iter() {
///         println!("{message}");
///     }
///     Ok::<_, Stopped>(())
/// });
/// let stopper = task.stop_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(std::time::Duration::from_secs(60));
///     stopper.stop();
/// });
/// sidetask::run(&mut PubSubFeeder::strings(&client, "news"), task)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a feeder does nothing until it drives a task (`sidetask::run`)"]
pub struct PubSubFeeder<In> {
    client: Client,
    subscription: Subscription,
    read_timeout: Duration,
    reconnect_for: Duration,
    decode: Decode<In>,
}

impl<In> PubSubFeeder<In> {
    /// A feeder from the channel `channel`, whose messages `decode` turns
    /// into the task's messages.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// type BoxError = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// let client = Client::from_env()?;
    /// // Messages are decimal numbers.
    /// let feeder = PubSubFeeder::new(&client, "readings", |raw: Vec<u8>| -> Result<f64, BoxError> {
    ///     Ok(String::from_utf8(raw)?.trim().parse()?)
    /// });
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn new<D, E>(client: &Client, channel: &str, decode: D) -> PubSubFeeder<In>
    where
        D: FnMut(Vec<u8>) -> Result<In, E> + Send + 'static,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        PubSubFeeder {
            client: client.clone(),
            subscription: Subscription::Channel(channel.to_owned()),
            read_timeout: DEFAULT_BLOCK,
            reconnect_for: DEFAULT_RECONNECT_FOR,
            decode: boxed(decode),
        }
    }

    /// Takes the channel's name as a glob-style pattern (`PSUBSCRIBE`):
    /// the feeder hears every channel that matches it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::strings(&client, "news.*").pattern();
    /// assert_eq!(feeder.channel(), "news.*");
    /// assert!(feeder.is_pattern());
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn pattern(mut self) -> PubSubFeeder<In> {
        if let Subscription::Channel(name) = self.subscription {
            self.subscription = Subscription::Pattern(name);
        }
        self
    }

    /// Sets how long each read waits for a message (by default
    /// [`DEFAULT_BLOCK`]): the feeder returns within this time once the
    /// task has ended.
    ///
    /// # Panics
    ///
    /// If `timeout` is zero.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::strings(&client, "news").read_timeout(Duration::from_millis(250));
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn read_timeout(mut self, timeout: Duration) -> PubSubFeeder<In> {
        assert!(!timeout.is_zero(), "a feeder's read timeout is not zero");
        self.read_timeout = timeout;
        self
    }

    /// Sets how long the feeder keeps trying to reconnect after it lost
    /// its connection, before it gives up (by default
    /// [`DEFAULT_RECONNECT_FOR`]; zero gives up at the first failure).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::strings(&client, "news").reconnect_for(Duration::from_secs(5));
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn reconnect_for(mut self, limit: Duration) -> PubSubFeeder<In> {
        self.reconnect_for = limit;
        self
    }

    /// The channel's name, or the pattern.
    pub fn channel(&self) -> &str {
        match &self.subscription {
            Subscription::Channel(name) | Subscription::Pattern(name) => name,
        }
    }

    /// Returns `true` if the channel's name is taken as a pattern.
    pub fn is_pattern(&self) -> bool {
        matches!(self.subscription, Subscription::Pattern(_))
    }
}

impl PubSubFeeder<String> {
    /// A feeder of UTF-8 text messages; a message that is not UTF-8 is
    /// skipped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::strings(&client, "news");
    /// assert!(!feeder.is_pattern());
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn strings(client: &Client, channel: &str) -> PubSubFeeder<String> {
        PubSubFeeder::new(client, channel, utf8)
    }
}

impl PubSubFeeder<Vec<u8>> {
    /// A feeder of the messages' bytes as they are.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::bytes(&client, "frames");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn bytes(client: &Client, channel: &str) -> PubSubFeeder<Vec<u8>> {
        PubSubFeeder::new(client, channel, raw)
    }
}

impl<In: DeserializeOwned + 'static> PubSubFeeder<In> {
    /// A feeder of messages encoded with postcard (as `postcard::to_stdvec`
    /// writes them).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Reading {
    ///     celsius: f32,
    /// }
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::<Reading>::postcard(&client, "readings");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    pub fn postcard(client: &Client, channel: &str) -> PubSubFeeder<In> {
        PubSubFeeder::new(client, channel, from_postcard::<In>)
    }

    /// A feeder of JSON messages.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use sidetask::remote::{Client, PubSubFeeder};
    ///
    /// let client = Client::from_env()?;
    /// let feeder = PubSubFeeder::<serde_json::Value>::json(&client, "events");
    /// # drop(feeder);
    /// # Ok::<(), sidetask::remote::RemoteError>(())
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json(client: &Client, channel: &str) -> PubSubFeeder<In> {
        PubSubFeeder::new(client, channel, from_json::<In>)
    }
}

impl<In> fmt::Debug for PubSubFeeder<In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubFeeder")
            .field("client", &self.client)
            .field("channel", &self.channel())
            .field("pattern", &self.is_pattern())
            .field("read_timeout", &self.read_timeout)
            .field("reconnect_for", &self.reconnect_for)
            .finish_non_exhaustive()
    }
}

impl<T, E, In, Ev> Controller<T, E, In, Ev> for PubSubFeeder<In>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        let mut outage = Outage::new(self.reconnect_for);
        loop {
            if task.is_finished() {
                return Ok(());
            }
            let err = match self.listen(task, &mut outage) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            outage.pause_or_give_up(err)?;
        }
    }
}

impl<In> PubSubFeeder<In> {
    /// Connects, subscribes and feeds the task until it ends (`Ok`) or the
    /// connection fails (the error).
    fn listen<T, E, Ev>(
        &mut self,
        task: &Task<T, E, In, Ev>,
        outage: &mut Outage,
    ) -> Result<(), RemoteError>
    where
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        let client = &self.client;
        let mut con = client.dedicated(Some(self.read_timeout))?;
        let mut pubsub = con.as_pubsub();
        match &self.subscription {
            Subscription::Channel(name) => pubsub.subscribe(name),
            Subscription::Pattern(name) => pubsub.psubscribe(name),
        }
        .map_err(|e| client.error(e))?;
        outage.over();
        loop {
            if task.is_finished() {
                return Ok(());
            }
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(e) if e.is_timeout() => continue,
                Err(e) => return Err(client.error(e)),
            };
            let raw = message.get_payload_bytes().to_vec();
            let item = match (self.decode)(raw) {
                Ok(item) => item,
                Err(e) => {
                    tracing::warn!(
                        "a message on the Redis channel `{}` does not decode ({e}); skipped",
                        message.get_channel_name()
                    );
                    continue;
                }
            };
            match task.send(item) {
                Ok(()) => {}
                Err(SendError::TooLarge(_)) => tracing::warn!(
                    "a message on the Redis channel `{}` is too large for the task; skipped",
                    message.get_channel_name()
                ),
                Err(SendError::Disconnected(_)) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_and_options() {
        let client = Client::open(crate::remote::DEFAULT_URL).unwrap();
        let feeder = ListFeeder::strings(&client, "{jobs}");
        assert_eq!(feeder.list(), "{jobs}");
        assert_eq!(feeder.processing_key(), "{jobs}:processing");
        assert_eq!(feeder.dead_letter_key(), "{jobs}:dead");
        let feeder = feeder.processing_list("p").dead_letter_list("d");
        assert_eq!(
            (feeder.processing_key(), feeder.dead_letter_key()),
            ("p", "d")
        );
        let shown = format!("{feeder:?}");
        assert!(
            shown.contains("ListFeeder") && shown.contains("\"p\""),
            "{shown}"
        );

        let feeder = PubSubFeeder::bytes(&client, "news.*").pattern();
        assert!(feeder.is_pattern());
        assert_eq!(feeder.channel(), "news.*");
        assert!(format!("{feeder:?}").contains("pattern: true"));
    }

    #[test]
    fn the_default_decoders() {
        assert_eq!(utf8(b"caf\xc3\xa9".to_vec()).unwrap(), "café");
        assert!(utf8(vec![0xff]).is_err());
        assert_eq!(raw(vec![0xff]).unwrap(), vec![0xff]);
        let encoded = postcard::to_stdvec(&(7u32, "seven")).unwrap();
        assert_eq!(
            from_postcard::<(u32, String)>(encoded).unwrap(),
            (7, "seven".to_owned())
        );
        assert!(from_postcard::<(u32, String)>(vec![0xff; 3]).is_err());
    }

    #[test]
    #[should_panic(expected = "at least a millisecond")]
    fn a_zero_block_is_refused() {
        let client = Client::open(crate::remote::DEFAULT_URL).unwrap();
        let _ = ListFeeder::bytes(&client, "l").block(Duration::ZERO);
    }
}
