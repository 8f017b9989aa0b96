//! Bounded parallelism over many inputs, each input a controllable task.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::backend::process::{self, Warm};
use crate::backend::thread as place;
use crate::builder::DEFAULT_CAPACITY;
use crate::ctx::Ctx;
use crate::error::StartError;
use crate::outcome::{self, Outcome, Panic};
use crate::registry::NamedTask;
use crate::sync::lock;
use crate::task::{Settings, Task};
use crate::timer::{self, Alarm};

/// Runs one task per input with at most `parallelism` running at once.
///
/// Inputs are pulled lazily from any iterator, so a pool over an endless
/// iterator works: memory stays bounded by the parallelism and the result
/// capacity, not by the number of inputs. Every input runs as a full task —
/// it sees [`Ctx::stopped`], can receive messages and emit events, and ends
/// with its own [`Outcome`] — so a panic or an error in one task is reported
/// in its outcome and never disturbs the others.
///
/// The pool's runners are threads from sidetask's worker cache: each runs its
/// tasks one after another on its own thread, so a tiny task costs no thread
/// hand-off at all. A pool starts one runner per core; whenever every runner
/// has been on its current task for half a millisecond or more (blocked, or
/// just long), a watchdog doubles them, up to the parallelism. So tiny tasks
/// run on as many threads as there are cores, and blocking tasks still get
/// their full parallelism within a few milliseconds.
///
/// # Examples
///
/// ```
/// use sidetask::{Ctx, Pool};
///
/// // task.py's pool: square 1..=100 with at most 10 at once.
/// let run = Pool::new(10).run(1..=100u64, |_: &Ctx, n| Ok::<_, ()>(n * n))?;
/// let mut sum = 0;
/// run.for_each(|done| sum += done.outcome.value().unwrap());
/// assert_eq!(sum, (1..=100u64).map(|n| n * n).sum::<u64>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a pool does nothing until `run`"]
#[derive(Debug, Clone)]
pub struct Pool {
    parallelism: usize,
    results: usize,
    inbox: usize,
    outbox: usize,
    timeout: Option<Duration>,
    grace: Duration,
}

impl Pool {
    /// A pool running at most `parallelism` tasks at once (at least one).
    pub fn new(parallelism: usize) -> Pool {
        Pool {
            parallelism: parallelism.max(1),
            results: 1024,
            inbox: DEFAULT_CAPACITY,
            outbox: DEFAULT_CAPACITY,
            timeout: None,
            grace: Duration::from_secs(5),
        }
    }

    /// How many finished results may wait to be collected before the
    /// runners wait (1024 unless set; at least one).
    pub fn result_capacity(mut self, capacity: usize) -> Pool {
        self.results = capacity.max(1);
        self
    }

    /// The inbox and outbox capacities of each task, as
    /// [`Builder::inbox_capacity`](crate::Builder::inbox_capacity) and
    /// [`Builder::outbox_capacity`](crate::Builder::outbox_capacity).
    pub fn task_capacities(mut self, inbox: usize, outbox: usize) -> Pool {
        self.inbox = inbox;
        self.outbox = outbox;
        self
    }

    /// Asks each task to stop once `timeout` has passed since it began.
    pub fn task_timeout(mut self, timeout: Duration) -> Pool {
        self.timeout = Some(timeout);
        self
    }

    /// For [`run_process`](Pool::run_process): how long each step of a
    /// stop's escalation waits (5 seconds unless set), as
    /// [`Process::grace_period`](crate::Process::grace_period).
    pub fn grace_period(mut self, grace: Duration) -> Pool {
        self.grace = grace;
        self
    }

    /// Starts running `body` over `inputs`.
    ///
    /// `body` gets each task's context and its input. Results come back
    /// through the returned [`PoolRun`]: as a callback per finished task
    /// ([`PoolRun::for_each`]), in completion order ([`PoolRun::recv`],
    /// [`PoolRun::iter`]) or in input order ([`PoolRun::in_order`]).
    ///
    /// # Errors
    ///
    /// If not a single runner thread could be started.
    pub fn run<It, F, I, T, E, In, Ev>(
        self,
        inputs: It,
        body: F,
    ) -> Result<PoolRun<T, E, In, Ev>, StartError>
    where
        It: IntoIterator<Item = I>,
        It::IntoIter: Send + 'static,
        F: Fn(&Ctx<In, Ev>, I) -> Result<T, E> + Send + Sync + 'static,
        I: Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        self.run_outcomes(inputs, move |ctx: &Ctx<In, Ev>, input| {
            match body(ctx, input) {
                Ok(value) => Outcome::Value(value),
                Err(error) => Outcome::Error(error),
            }
        })
    }

    /// Runs the named task `T` in child processes, once per argument, on at
    /// most `parallelism` warm children that are reused from one task to
    /// the next: a child is started when none is idle, and one that
    /// crashed, was killed or broke the protocol is not reused.
    ///
    /// Each task is a process task, as [`Process`](crate::Process) makes
    /// one (the pool's task timeout, capacities and grace period apply),
    /// with one difference: a child lives on after its task,
    /// so what the task leaves in its process (statics, threads) is there
    /// for the next one. The children are killed when the pool is dropped
    /// and its last task has ended. The children's other settings are
    /// [`Process`](crate::Process)'s defaults (no limits, the parent's
    /// environment and directory, the current program, a 16 MiB maximum
    /// frame, a 30-second start timeout).
    ///
    /// # Errors
    ///
    /// If `T` is not in the registry given to [`init`](crate::init) (or
    /// `init` was not called), or not a single runner thread could be
    /// started. A child that cannot be started makes its task's outcome
    /// [`Outcome::Crashed`] with [`CrashCause::Start`](crate::CrashCause::Start).
    ///
    /// # Examples
    ///
    /// ```standalone_crate
    /// use sidetask::{Ctx, NamedTask, Pool, Registry, Stopped};
    ///
    /// struct Square;
    /// impl NamedTask for Square {
    ///     const NAME: &'static str = "square";
    ///     type Arg = u64;
    ///     type In = ();
    ///     type Event = ();
    ///     type Value = u64;
    ///     type Error = Stopped;
    ///     fn run(_: &Ctx, n: u64) -> Result<u64, Stopped> {
    ///         Ok(n * n)
    ///     }
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     sidetask::init(Registry::new().with::<Square>()?);
    ///     let run = Pool::new(2).run_process::<Square, _>(1..=100)?;
    ///     let sum: u64 = run.iter().map(|f| f.outcome.unwrap()).sum();
    ///     assert_eq!(sum, (1..=100u64).map(|n| n * n).sum::<u64>());
    ///     Ok(())
    /// }
    /// ```
    pub fn run_process<T, It>(self, args: It) -> Result<ProcessPoolRun<T>, StartError>
    where
        T: NamedTask,
        It: IntoIterator<Item = T::Arg>,
        It::IntoIter: Send + 'static,
    {
        process::check_registered(T::NAME)?;
        let warm = Warm::new(process::Config {
            inbox: self.inbox,
            outbox: self.outbox,
            grace: self.grace,
            ..process::Config::default()
        });
        self.run_outcomes(args, move |ctx: &Ctx<T::In, T::Event>, arg| {
            warm.run::<T>(ctx, &arg)
        })
    }

    fn run_outcomes<It, F, I, T, E, In, Ev>(
        self,
        inputs: It,
        body: F,
    ) -> Result<PoolRun<T, E, In, Ev>, StartError>
    where
        It: IntoIterator<Item = I>,
        It::IntoIter: Send + 'static,
        F: Fn(&Ctx<In, Ev>, I) -> Outcome<T, E> + Send + Sync + 'static,
        I: Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
    {
        let iter = inputs.into_iter();
        let most = match iter.size_hint() {
            (_, Some(upper)) => self.parallelism.min(upper).max(1),
            _ => self.parallelism,
        };
        // Start with one runner per core; the watchdog adds more while every
        // runner is held up by a long task, up to the parallelism.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let first = most.min(cores);
        let (results_tx, results_rx) = crossbeam_channel::bounded(self.results);
        let shared = Arc::new_cyclic(|me| PoolShared {
            me: me.clone(),
            input: Mutex::new(Input {
                iter: Box::new(iter),
                next: 0,
                closed: false,
            }),
            advanced: Condvar::new(),
            waiting: AtomicUsize::new(0),
            window: AtomicUsize::new(usize::MAX),
            delivered: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            queued: AtomicUsize::new(usize::MAX),
            live: AtomicUsize::new(0),
            spare: Mutex::new(Some(results_tx)),
            input_panic: Mutex::new(None),
            slots: (0..most)
                .map(|_| {
                    CachePadded::new(Slot {
                        task: Mutex::new(None),
                        current: AtomicUsize::new(usize::MAX),
                        finished: AtomicUsize::new(0),
                        seen: AtomicUsize::new(usize::MAX),
                    })
                })
                .collect(),
            body,
            settings: (self.inbox, self.outbox, self.timeout),
        });
        shared.update_queued(&lock(&shared.input));
        for slot in 0..first {
            if let Err(err) = shared.start_runner(slot) {
                if slot == 0 {
                    return Err(StartError::spawn(err));
                }
                break;
            }
        }
        shared.watch();
        Ok(PoolRun {
            shared,
            results: results_rx,
            window: self.parallelism.saturating_add(self.results),
        })
    }
}

/// One runner's place: the task it runs now (with its input's index) and
/// its own counters, on a cache line of its own so runners never contend.
struct Slot<T, E, In, Ev> {
    task: Mutex<Running<T, E, In, Ev>>,
    // The index of the input running now, or `usize::MAX`: read by the
    // watchdog and `progress` without the lock, which `with_task` callers
    // may hold long.
    current: AtomicUsize,
    finished: AtomicUsize,
    // What the watchdog saw at its last look: the index held, or `usize::MAX`.
    seen: AtomicUsize,
}

/// The task a runner runs now, with its input's index.
type Running<T, E, In, Ev> = Option<(usize, Task<T, E, In, Ev>)>;

type Slots<T, E, In, Ev> = Box<[CachePadded<Slot<T, E, In, Ev>>]>;

struct Input<I> {
    iter: Box<dyn Iterator<Item = I> + Send>,
    next: usize,
    closed: bool,
}

/// How often the watchdog looks whether every runner is held up by the task
/// it held at the last look.
const HELD_UP: Duration = Duration::from_micros(500);

struct PoolShared<I, F, T, E, In, Ev> {
    me: Weak<PoolShared<I, F, T, E, In, Ev>>,
    input: Mutex<Input<I>>,
    // Runners waiting for the in-order window to move.
    advanced: Condvar,
    waiting: AtomicUsize,
    window: AtomicUsize,
    delivered: AtomicUsize,
    stopped: AtomicBool,
    queued: AtomicUsize,
    // Runners alive; runner `k` uses slot `k`.
    live: AtomicUsize,
    // A results sender for runners started later; dropped once no runner
    // can be needed, so that the results end when the last runner does.
    spare: Mutex<Option<Sender<Finished<T, E, Ev>>>>,
    input_panic: Mutex<Option<Panic>>,
    slots: Slots<T, E, In, Ev>,
    body: F,
    settings: (usize, usize, Option<Duration>),
}

/// What a pool can be asked without its input and body types.
trait PoolControl<T, E, In, Ev>: Send + Sync {
    fn slots(&self) -> &[CachePadded<Slot<T, E, In, Ev>>];
    fn close(&self, stop: bool);
    fn counts(&self) -> Progress;
    fn set_window(&self, window: usize);
    fn take_input_panic(&self) -> Option<Panic>;
    fn delivered(&self, next: usize);
}

impl<I, F, T, E, In, Ev> PoolShared<I, F, T, E, In, Ev> {
    fn update_queued(&self, input: &Input<I>) {
        let queued = match input.iter.size_hint() {
            (lo, Some(hi)) if lo == hi && !input.closed => lo,
            _ if input.closed => 0,
            _ => usize::MAX,
        };
        self.queued.store(queued, Ordering::Relaxed);
    }

    /// The next input and its index, or `None` when the inputs are used up
    /// or the pool was closed.
    fn next_input(&self) -> Option<(usize, I)> {
        let mut input = lock(&self.input);
        loop {
            if input.closed {
                return None;
            }
            let window = self.window.load(Ordering::SeqCst);
            if window != usize::MAX
                && input.next >= self.delivered.load(Ordering::SeqCst).saturating_add(window)
            {
                self.waiting.fetch_add(1, Ordering::SeqCst);
                input = self
                    .advanced
                    .wait(input)
                    .unwrap_or_else(|poison| poison.into_inner());
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let item = match outcome::catch(|| input.iter.next()) {
                Ok(item) => item,
                Err(panic) => {
                    // The input iterator panicked: no input can follow.
                    *lock(&self.input_panic) = Some(panic);
                    None
                }
            };
            let got = match item {
                Some(item) => {
                    let index = input.next;
                    input.next += 1;
                    Some((index, item))
                }
                None => {
                    input.closed = true;
                    *lock(&self.spare) = None;
                    None
                }
            };
            self.update_queued(&input);
            return got;
        }
    }
}

impl<I, F, T, E, In, Ev> PoolControl<T, E, In, Ev> for PoolShared<I, F, T, E, In, Ev>
where
    I: Send,
    F: Send + Sync,
    T: Send,
    E: Send,
    In: Send,
    Ev: Send,
{
    fn slots(&self) -> &[CachePadded<Slot<T, E, In, Ev>>] {
        &self.slots
    }

    fn close(&self, stop: bool) {
        if stop {
            self.stopped.store(true, Ordering::SeqCst);
        }
        {
            let mut input = lock(&self.input);
            input.closed = true;
            self.update_queued(&input);
        }
        *lock(&self.spare) = None;
        self.advanced.notify_all();
        if stop {
            for slot in &self.slots {
                if let Some((_, task)) = &*lock(&slot.task) {
                    task.stop();
                }
            }
        }
    }

    fn counts(&self) -> Progress {
        let queued = self.queued.load(Ordering::Relaxed);
        Progress {
            queued: (queued != usize::MAX).then_some(queued),
            running: self
                .slots
                .iter()
                .filter(|s| s.current.load(Ordering::Relaxed) != usize::MAX)
                .count(),
            finished: self
                .slots
                .iter()
                .map(|s| s.finished.load(Ordering::Relaxed))
                .sum(),
        }
    }

    fn take_input_panic(&self) -> Option<Panic> {
        lock(&self.input_panic).take()
    }

    fn set_window(&self, window: usize) {
        self.window.store(window, Ordering::SeqCst);
    }

    fn delivered(&self, next: usize) {
        self.delivered.store(next, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Take the lock so that a runner between its check and its wait
            // cannot miss this.
            drop(lock(&self.input));
            self.advanced.notify_all();
        }
    }
}

impl<I, F, T, E, In, Ev> PoolShared<I, F, T, E, In, Ev>
where
    F: Fn(&Ctx<In, Ev>, I) -> Outcome<T, E> + Send + Sync + 'static,
    I: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// Starts the runner of `slot`, if results can still be sent.
    fn start_runner(&self, slot: usize) -> std::io::Result<()> {
        let (Some(me), Some(results)) = (self.me.upgrade(), lock(&self.spare).clone()) else {
            return Ok(());
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        place::execute(Box::new(move || runner(&me, slot, &results))).map_err(|(_, err)| {
            self.live.fetch_sub(1, Ordering::SeqCst);
            err
        })
    }

    /// Schedules the next look at whether every runner is held up.
    fn watch(&self) {
        if self.live.load(Ordering::SeqCst) < self.slots.len() && lock(&self.spare).is_some() {
            let weak: Weak<dyn Alarm> = self.me.clone() as Weak<dyn Alarm>;
            timer::schedule(Instant::now() + HELD_UP, weak);
        }
    }
}

impl<I, F, T, E, In, Ev> Alarm for PoolShared<I, F, T, E, In, Ev>
where
    F: Fn(&Ctx<In, Ev>, I) -> Outcome<T, E> + Send + Sync + 'static,
    I: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    /// Adds runners when every one is held up by the same task as at the last
    /// look, [`HELD_UP`] ago (blocked, or simply long): as many again as are
    /// alive, up to the parallelism. Tiny tasks never trigger it.
    fn ring(&self) {
        let live = self.live.load(Ordering::SeqCst).min(self.slots.len());
        // A runner is held up if it holds the same task as at the last look.
        let mut held_up = 0;
        for slot in &self.slots[..live] {
            let now = slot.current.load(Ordering::Relaxed);
            if now != usize::MAX && slot.seen.swap(now, Ordering::Relaxed) == now {
                held_up += 1;
            }
        }
        if live > 0 && held_up == live {
            let add = live.min(self.slots.len() - live);
            for slot in live..live + add {
                if self.start_runner(slot).is_err() {
                    return;
                }
            }
        }
        self.watch();
    }
}

fn runner<I, F, T, E, In, Ev>(
    shared: &Arc<PoolShared<I, F, T, E, In, Ev>>,
    slot: usize,
    results: &Sender<Finished<T, E, Ev>>,
) where
    F: Fn(&Ctx<In, Ev>, I) -> Outcome<T, E> + Send + Sync + 'static,
    I: Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    struct Leave<'a>(&'a AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leave = Leave(&shared.live);
    let here = &shared.slots[slot];
    // A body reference of this runner's own, so that starting a task touches
    // no counter shared with other runners.
    let body = Arc::new(Arc::clone(shared));
    while let Some((index, item)) = shared.next_input() {
        let (inbox, outbox, timeout) = shared.settings;
        let body = Arc::clone(&body);
        let task = place::task(
            Settings {
                name: None,
                inbox,
                outbox,
                timeout,
            },
            move |ctx: &Ctx<In, Ev>| (body.body)(ctx, item),
        );
        let job = task.take_job().expect("a new task holds its job");
        *lock(&here.task) = Some((index, task));
        if shared.stopped.load(Ordering::SeqCst) {
            // `stop_all` may have looked at this slot before it was filled.
            if let Some((_, task)) = &*lock(&here.task) {
                task.stop();
            }
        }
        here.current.store(index, Ordering::Relaxed);
        job();
        here.current.store(usize::MAX, Ordering::Relaxed);
        let (_, task) = lock(&here.task).take().expect("the slot holds its task");
        let outcome = task.take_outcome();
        let events = task.try_iter().collect();
        drop(task);
        here.finished.fetch_add(1, Ordering::Relaxed);
        if results
            .send(Finished {
                index,
                outcome,
                events,
            })
            .is_err()
        {
            // Nobody collects results any more: the pool was dropped.
            shared.close(true);
            return;
        }
    }
}

/// The results of [`Pool::run_process`] for the named task `T`.
pub type ProcessPoolRun<T> = PoolRun<
    <T as NamedTask>::Value,
    <T as NamedTask>::Error,
    <T as NamedTask>::In,
    <T as NamedTask>::Event,
>;

/// One finished task of a pool: its input's index, its outcome and the
/// events it emitted that nobody read while it ran.
#[non_exhaustive]
#[derive(Debug)]
pub struct Finished<T, E, Ev = ()> {
    /// The position of its input in the input iterator, from 0.
    pub index: usize,
    /// How the task ended.
    pub outcome: Outcome<T, E>,
    /// Events left in the task's outbox when it ended, in order.
    pub events: Vec<Ev>,
}

/// How far a pool has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Inputs not started yet, when the input iterator knows (`None` for an
    /// iterator of unknown length).
    pub queued: Option<usize>,
    /// Tasks running now.
    pub running: usize,
    /// Tasks finished.
    pub finished: usize,
}

/// A running pool: its results, its progress, and control over its tasks.
///
/// **Dropping it stops every running task and starts no new one**, as
/// dropping a [`Task`] stops it; [`shutdown`](PoolRun::shutdown) lets the
/// running ones finish instead.
pub struct PoolRun<T, E, In = (), Ev = ()> {
    shared: Arc<dyn PoolControl<T, E, In, Ev>>,
    results: Receiver<Finished<T, E, Ev>>,
    window: usize,
}

impl<T, E, In, Ev> PoolRun<T, E, In, Ev> {
    /// The next finished task, in completion order; `None` once every task
    /// has finished and been received.
    pub fn recv(&self) -> Option<Finished<T, E, Ev>> {
        self.results.recv().ok()
    }

    /// The next finished task, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`](crate::RecvTimeoutError::Timeout) if
    /// none finished in time,
    /// [`RecvTimeoutError::Disconnected`](crate::RecvTimeoutError::Disconnected)
    /// once every task has finished and been received.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Finished<T, E, Ev>, crate::RecvTimeoutError> {
        self.results.recv_timeout(timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => crate::RecvTimeoutError::Timeout,
            crossbeam_channel::RecvTimeoutError::Disconnected => {
                crate::RecvTimeoutError::Disconnected
            }
        })
    }

    /// Finished tasks in completion order, until all have finished.
    pub fn iter(&self) -> impl Iterator<Item = Finished<T, E, Ev>> + '_ {
        std::iter::from_fn(move || self.recv())
    }

    /// Calls `receiver` with each finished task, in completion order, until
    /// all have finished (task.py's receiver callback).
    pub fn for_each(self, mut receiver: impl FnMut(Finished<T, E, Ev>)) {
        while let Some(done) = self.recv() {
            receiver(done);
        }
    }

    /// Finished tasks in input order.
    ///
    /// While results are taken this way, runners start no input more than
    /// the parallelism plus the result capacity ahead of the next one to
    /// deliver, so memory stays bounded even when an early task is slow.
    pub fn in_order(self) -> InOrder<T, E, In, Ev> {
        self.shared.set_window(self.window);
        InOrder {
            run: self,
            waiting: BTreeMap::new(),
            next: 0,
        }
    }

    /// The panic of the input iterator, if its `next` panicked: the pool
    /// then took no further input, as if the inputs had ended there. Taken
    /// once.
    pub fn input_panic(&self) -> Option<Panic> {
        self.shared.take_input_panic()
    }

    /// How many inputs are queued, how many tasks run and how many finished.
    pub fn progress(&self) -> Progress {
        self.shared.counts()
    }

    /// Starts no new task and asks every running one to stop; returns at
    /// once. Stopped tasks still report their outcomes; an input taken from
    /// the iterator but not begun yet reports [`Outcome::Cancelled`].
    pub fn stop_all(&self) {
        self.shared.close(true);
    }

    /// Starts no new task; running ones finish normally. Returns at once.
    pub fn shutdown(&self) {
        self.shared.close(false);
    }

    /// Waits for every task to finish, dropping their results.
    pub fn wait(self) {
        while self.recv().is_some() {}
    }

    /// Calls `f` with the handle of the running task of input `index`, if
    /// it is running now: to send it messages, read its events or stop it.
    ///
    /// Keep `f` short: the task's runner waits for it before it can move on.
    pub fn with_task<R>(
        &self,
        index: usize,
        f: impl FnOnce(&Task<T, E, In, Ev>) -> R,
    ) -> Option<R> {
        for slot in self.shared.slots() {
            let slot = lock(&slot.task);
            if let Some((i, task)) = &*slot
                && *i == index
            {
                return Some(f(task));
            }
        }
        None
    }

    /// The indices of the inputs whose tasks run now.
    pub fn running(&self) -> Vec<usize> {
        self.shared
            .slots()
            .iter()
            .filter_map(|slot| lock(&slot.task).as_ref().map(|(i, _)| *i))
            .collect()
    }
}

impl<T, E, In, Ev> Drop for PoolRun<T, E, In, Ev> {
    fn drop(&mut self) {
        self.shared.close(true);
    }
}

impl<T, E, In, Ev> fmt::Debug for PoolRun<T, E, In, Ev> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRun")
            .field("progress", &self.progress())
            .finish_non_exhaustive()
    }
}

/// A pool's results in input order, made by [`PoolRun::in_order`].
#[derive(Debug)]
pub struct InOrder<T, E, In, Ev> {
    run: PoolRun<T, E, In, Ev>,
    waiting: BTreeMap<usize, Finished<T, E, Ev>>,
    next: usize,
}

impl<T, E, In, Ev> InOrder<T, E, In, Ev> {
    /// The pool behind this iterator, to stop it or see its progress.
    pub fn pool(&self) -> &PoolRun<T, E, In, Ev> {
        &self.run
    }
}

impl<T, E, In, Ev> Iterator for InOrder<T, E, In, Ev> {
    type Item = Finished<T, E, Ev>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(done) = self.waiting.remove(&self.next) {
                self.next += 1;
                self.run.shared.delivered(self.next);
                return Some(done);
            }
            match self.run.recv() {
                Some(done) => {
                    self.waiting.insert(done.index, done);
                }
                None => {
                    // All finished: only gaps left by a stop remain.
                    let (&index, _) = self.waiting.iter().next()?;
                    self.next = index;
                }
            }
        }
    }
}
