//! The thread place: a cache of worker threads that run task bodies.
//!
//! It is also the ground the other blocking places stand on: a command's or
//! a process's task is a thread task whose body drives the program or the
//! child, so those places make their tasks through [`task`].
//!
//! A worker that finishes a job puts itself on the idle stack and waits for
//! the next one: it spins briefly (a hand-off to a spinning worker costs well
//! under a microsecond), then parks. A spawn pops the most recently idled
//! worker, hands it the job and unparks it; when no worker is idle it starts a
//! new thread, so a task that blocks forever never starves the others. A
//! worker left idle for the keep-alive period exits.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::ctx::Ctx;
use crate::mailbox::STOP;
use crate::outcome::{self, Outcome};
use crate::sync::{lock, spin_until};
use crate::task::{Settings, Shared, Task};

/// A unit of work for a worker. It must not unwind: task jobs catch panics.
pub(crate) use crate::task::Job;

/// A task whose body runs on a worker thread once started, and gives its
/// whole outcome (a place that can tell a kill or a crash from a value).
pub(crate) fn task<T, E, In, Ev, F>(settings: Settings, body: F) -> Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E> + Send + 'static,
{
    make(settings, true, body)
}

/// A task whose body drives work that has begun already elsewhere (a child
/// process that took its task): a stop that comes before the body runs
/// does not cancel it, the body sees the stop and passes it on.
pub(crate) fn driver<T, E, In, Ev, F>(settings: Settings, body: F) -> Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E> + Send + 'static,
{
    make(settings, false, body)
}

fn make<T, E, In, Ev, F>(settings: Settings, cancel: bool, body: F) -> Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E> + Send + 'static,
{
    let shared = Arc::new(settings.shared::<In, Ev, T, E>());
    let ctx = Ctx::new(shared.clone());
    let theirs = Arc::clone(&shared);
    let job: Job = Box::new(move || run(theirs, ctx, cancel, body));
    Task::unstarted(shared, job, execute, settings.timeout)
}

/// Runs a task body on the current (worker) thread and records its outcome.
/// `cancel`: whether a stop that came first cancels the body.
fn run<T, E, In, Ev, F>(
    shared: Arc<Shared<In, Ev, crate::task::Slot<T, E>>>,
    ctx: Ctx<In, Ev>,
    cancel: bool,
    body: F,
) where
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E>,
{
    run_body(&ctx, cancel, body, |outcome| shared.finish(outcome));
    // With the handle gone this is the last reference: dropping it runs the
    // drops of the value, the error and unread messages, which may panic.
    let _ = outcome::catch(move || drop((ctx, shared)));
}

/// A task whose body the calling thread runs itself, at once, through
/// [`run_here`]: a pool's runner, which keeps the handle (in its slot, for
/// the pool's handle to reach) and takes the outcome straight from the body.
/// It counts as started, and its timeout runs from now.
///
/// `reuse`: the handle of the caller's last task, ended, whose shared state
/// is made new in place if nobody else holds it any more.
pub(crate) fn here<T, E, In, Ev>(
    settings: Settings,
    reuse: Option<Task<T, E, In, Ev>>,
) -> (Task<T, E, In, Ev>, Ctx<In, Ev>)
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    let task = Task::running_here(&settings, reuse);
    let ctx = Ctx::new(task.shared());
    (task, ctx)
}

/// Runs the body of a task made by [`here`] on the calling thread, through
/// its context, and gives its outcome back, the task then done (a stop that
/// came first cancels the body). The outcome is never stored in the task:
/// nobody can join a task whose handle the caller keeps.
pub(crate) fn run_here<T, E, In, Ev, F>(ctx: &Ctx<In, Ev>, body: F) -> Outcome<T, E>
where
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E>,
{
    run_body(ctx, true, body, |outcome| {
        ctx.shared().finish_kept(&outcome);
        outcome
    })
}

/// Runs a task body on the current thread, unless `cancel` and a stop came
/// first, and hands its outcome to `finish`, all in the task's span; the
/// task's name is the thread's while the body runs.
fn run_body<T, E, In, Ev, F, R>(
    ctx: &Ctx<In, Ev>,
    cancel: bool,
    body: F,
    finish: impl FnOnce(Outcome<T, E>) -> R,
) -> R
where
    F: FnOnce(&Ctx<In, Ev>) -> Outcome<T, E>,
{
    let shared = ctx.shared();
    let span = tracing::debug_span!(
        "task",
        id = shared.id.as_u64(),
        name = shared.name.as_deref()
    );
    let _entered = span.enter();
    let outcome = if cancel && shared.mailbox.is(STOP) {
        let _ = outcome::catch(move || drop(body));
        Outcome::Cancelled
    } else {
        tracing::debug!("task started");
        let _name = shared.name.as_ref().map(|name| {
            (
                ThreadName::set(name),
                outcome::running(Arc::clone(name), shared.id.as_u64()),
            )
        });
        match outcome::catch(move || body(ctx)) {
            Ok(outcome) => outcome,
            Err(panic) => Outcome::Panicked(panic),
        }
    };
    finish(outcome)
}

/// Sets the worker thread's kernel name to the task's while it runs.
struct ThreadName;

impl ThreadName {
    fn set(name: &str) -> ThreadName {
        set_thread_name(name);
        ThreadName
    }
}

impl Drop for ThreadName {
    fn drop(&mut self) {
        set_thread_name("sidetask-worker");
    }
}

fn set_thread_name(name: &str) {
    // The kernel keeps 15 bytes; cut at a character boundary and at a NUL.
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &name[..end];
    let cut = cut.split('\0').next().unwrap_or_default();
    if let Ok(c) = std::ffi::CString::new(cut) {
        let _ = rustix::thread::set_name(&c);
    }
}

const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

struct Cache {
    idle: Mutex<Vec<Arc<Slot>>>,
    keep_alive_nanos: AtomicU64,
    live: AtomicUsize,
}

static CACHE: Cache = Cache {
    idle: Mutex::new(Vec::new()),
    keep_alive_nanos: AtomicU64::new(DEFAULT_KEEP_ALIVE.as_nanos() as u64),
    live: AtomicUsize::new(0),
};

/// One idle worker's mailbox.
struct Slot {
    job: Mutex<Option<Job>>,
    ready: AtomicBool,
    thread: Thread,
}

/// Runs `job` on a cached worker, or on a new one if none is idle.
///
/// On failure the job is given back with the error, unrun.
pub(crate) fn execute(job: Job) -> Result<(), (Job, io::Error)> {
    let slot = lock(&CACHE.idle).pop();
    match slot {
        Some(slot) => {
            *lock(&slot.job) = Some(job);
            slot.ready.store(true, Ordering::Release);
            slot.thread.unpark();
            Ok(())
        }
        None => spawn_worker(job),
    }
}

fn spawn_worker(job: Job) -> Result<(), (Job, io::Error)> {
    // The job goes through a shared cell so that a failed spawn can give it
    // back instead of dropping it.
    let cell = Arc::new(Mutex::new(Some(job)));
    let theirs = Arc::clone(&cell);
    CACHE.live.fetch_add(1, Ordering::Relaxed);
    let spawned = thread::Builder::new()
        .name("sidetask-worker".to_owned())
        .spawn(move || {
            let _live = LiveGuard;
            let first = lock(&theirs).take();
            drop(theirs);
            if let Some(job) = first {
                worker_main(job);
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(err) => {
            CACHE.live.fetch_sub(1, Ordering::Relaxed);
            let job = lock(&cell)
                .take()
                .expect("an unspawned worker leaves its job");
            Err((job, err))
        }
    }
}

/// Counts a worker out when its thread ends, however it ends.
struct LiveGuard;

impl Drop for LiveGuard {
    fn drop(&mut self) {
        CACHE.live.fetch_sub(1, Ordering::Relaxed);
    }
}

fn worker_main(first: Job) {
    let slot = Arc::new(Slot {
        job: Mutex::new(None),
        ready: AtomicBool::new(false),
        thread: thread::current(),
    });
    let mut job = first;
    loop {
        // Task jobs catch their own panics; this keeps the worker alive
        // whatever a job does.
        let _ = panic::catch_unwind(AssertUnwindSafe(job));
        slot.ready.store(false, Ordering::Relaxed);
        lock(&CACHE.idle).push(Arc::clone(&slot));
        match wait_for_job(&slot) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Waits on the idle stack for a job; `None` when the keep-alive ran out.
fn wait_for_job(slot: &Arc<Slot>) -> Option<Job> {
    let take = || lock(&slot.job).take();
    if spin_until(|| slot.ready.load(Ordering::Acquire).then_some(())).is_some() {
        return take();
    }
    let deadline = Instant::now() + keep_alive();
    loop {
        if slot.ready.load(Ordering::Acquire) {
            return take();
        }
        let now = Instant::now();
        if now >= deadline {
            let mut idle = lock(&CACHE.idle);
            if let Some(at) = idle.iter().position(|s| Arc::ptr_eq(s, slot)) {
                idle.remove(at);
                return None;
            }
            drop(idle);
            // A spawner took this worker off the stack: its job is on the way.
            while !slot.ready.load(Ordering::Acquire) {
                thread::park();
            }
            return take();
        }
        thread::park_timeout(deadline - now);
    }
}

fn keep_alive() -> Duration {
    Duration::from_nanos(CACHE.keep_alive_nanos.load(Ordering::Relaxed))
}

/// Sets how long an idle worker thread waits for a new task before it exits
/// (10 seconds unless set). Takes effect from each worker's next idle period.
///
/// Worker threads are shared by every task of the process; a shorter period
/// gives memory back sooner, a longer one keeps spawning cheap after a lull.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// sidetask::set_idle_timeout(Duration::from_secs(2));
/// assert_eq!(sidetask::idle_timeout(), Duration::from_secs(2));
/// ```
pub fn set_idle_timeout(period: Duration) {
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    CACHE.keep_alive_nanos.store(nanos, Ordering::Relaxed);
}

/// How long an idle worker thread waits for a new task before it exits.
pub fn idle_timeout() -> Duration {
    keep_alive()
}

/// The number of worker threads alive now, busy or idle.
///
/// # Examples
///
/// ```
/// use sidetask::Ctx;
///
/// let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(()));
/// assert!(task.join().is_value());
/// assert!(sidetask::worker_threads() >= 1);
/// ```
pub fn worker_threads() -> usize {
    CACHE.live.load(Ordering::Relaxed)
}
