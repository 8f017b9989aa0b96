//! Inspection, as `rq info` and `celery inspect` give it: the workers
//! alive, the tasks per state per queue, and one task's state by id.

use redis::Commands;

use super::client::{Client, Pooled};
use super::error::RemoteError;
use crate::TaskId;

/// A view of a namespace's workers, queues and tasks, made by
/// [`Client::inspect`].
///
/// # Examples
///
/// ```no_run
/// let client = sidetask::remote::Client::from_env()?;
/// let inspect = client.inspect()?;
/// for worker in inspect.workers()? {
///     println!("{} runs {:?}", worker.name, worker.running);
/// }
/// for queue in inspect.queues()? {
///     println!("{}: {} queued, {} running, {} done", queue.name, queue.queued, queue.running, queue.done);
/// }
/// # Ok::<(), sidetask::remote::RemoteError>(())
/// ```
pub struct Inspect {
    client: Client,
}

/// A live worker, as it last described itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its name (`host:pid:random` unless it was given one).
    pub name: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// The ids of the tasks it runs.
    pub running: Vec<u64>,
}

/// A queue: the tasks of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The task name.
    pub name: String,
    /// How many wait for a worker.
    pub queued: usize,
    /// How many run.
    pub running: usize,
    /// How many ended (their results kept or expired).
    pub done: u64,
}

/// One task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Its id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// `queued`, `running` or `done`.
    pub state: &'static str,
    /// How many attempts were started.
    pub attempts: u32,
    /// The worker that runs (or last ran) it.
    pub worker: Option<String>,
    /// How it ended (`value`, `error`, `panic`, `killed`, `crashed`,
    /// `cancelled`, `lost`), once it has.
    pub outcome: Option<String>,
    /// Why a worker refused it, if one did (another version of the task
    /// type).
    pub refusal: Option<String>,
    /// How many messages were sent to it.
    pub messages_sent: u64,
    /// How many messages it read, as its worker last said.
    pub messages_read: u64,
}

impl Client {
    /// A view of this client's namespace.
    ///
    /// # Errors
    ///
    /// If Redis cannot be reached.
    pub fn inspect(&self) -> Result<Inspect, RemoteError> {
        self.connection()?;
        Ok(Inspect {
            client: self.clone(),
        })
    }
}

impl Inspect {
    fn con(&self) -> Result<Pooled, RemoteError> {
        self.client.connection()
    }

    /// The workers alive: those whose last renewal has not expired. A
    /// worker whose `run_until` returned leaves the list at once; one that
    /// vanished (killed, cut off) leaves it when its last renewal expires,
    /// 6 s after it.
    ///
    /// # Errors
    ///
    /// If Redis cannot be reached.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>, RemoteError> {
        let mut con = self.con()?;
        let err = |e| self.client.error(e);
        let names: Vec<String> = con
            .zrange(self.client.key(format_args!("workers")), 0, -1)
            .map_err(err)?;
        let mut alive = Vec::new();
        for name in names {
            let described: Option<String> = con
                .get(self.client.key(format_args!("w:{name}")))
                .map_err(err)?;
            let Some(described) = described else { continue };
            let mut info = WorkerInfo {
                name,
                pid: None,
                running: Vec::new(),
            };
            for part in described.split_whitespace() {
                if let Some(pid) = part.strip_prefix("pid=") {
                    info.pid = pid.parse().ok();
                } else if let Some(ids) = part.strip_prefix("running=") {
                    info.running = ids.split(',').filter_map(|i| i.parse().ok()).collect();
                }
            }
            alive.push(info);
        }
        alive.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(alive)
    }

    /// Every queue that was ever submitted to, with its queued and running
    /// tasks.
    ///
    /// # Errors
    ///
    /// If Redis cannot be reached.
    pub fn queues(&self) -> Result<Vec<QueueInfo>, RemoteError> {
        let mut con = self.con()?;
        let err = |e| self.client.error(e);
        let names: Vec<String> = con
            .smembers(self.client.key(format_args!("queues")))
            .map_err(err)?;
        let running: Vec<String> = con
            .zrange(self.client.key(format_args!("running")), 0, -1)
            .map_err(err)?;
        let mut of_running = Vec::new();
        for id in &running {
            let name: Option<String> = con
                .hget(self.client.key(format_args!("t:{id}")), "name")
                .map_err(err)?;
            of_running.extend(name);
        }
        let mut queues = Vec::new();
        for name in names {
            let queued: usize = con
                .llen(self.client.key(format_args!("q:{name}")))
                .map_err(err)?;
            let running = of_running.iter().filter(|n| **n == name).count();
            let done: Option<u64> = con
                .hget(self.client.key(format_args!("done")), &name)
                .map_err(err)?;
            queues.push(QueueInfo {
                name,
                queued,
                running,
                done: done.unwrap_or(0),
            });
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(queues)
    }

    /// Task `id`'s state, or `None` if no task has that id (never
    /// submitted, or its result expired).
    ///
    /// # Errors
    ///
    /// If Redis cannot be reached.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskInfo>, RemoteError> {
        let mut con = self.con()?;
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.client.key(format_args!("t:{}", id.as_u64())))
            .arg(&["name", "st", "att", "wk", "ok", "refusal", "sent", "nread"])
            .query(&mut *con)
            .map_err(|e| self.client.error(e))?;
        let [name, st, att, wk, ok, refusal, sent, nread] = &fields[..] else {
            return Ok(None);
        };
        let (Some(name), Some(st)) = (name, st) else {
            return Ok(None);
        };
        Ok(Some(TaskInfo {
            id,
            name: name.clone(),
            state: match st.as_str() {
                "q" => "queued",
                "r" => "running",
                _ => "done",
            },
            attempts: att.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0),
            worker: wk.clone().filter(|w| !w.is_empty()),
            outcome: ok.clone(),
            refusal: refusal.clone(),
            messages_sent: sent.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0),
            messages_read: nread.as_deref().and_then(|n| n.parse().ok()).unwrap_or(0),
        }))
    }
}

impl std::fmt::Debug for Inspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspect")
            .field("client", &self.client)
            .finish()
    }
}
