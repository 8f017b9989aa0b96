//! Bounded parallelism over many inputs, each input a controllable task.
//!
//! How it works: a pool has one *slot* per unit of parallelism, and a
//! *runner* per slot in use, a worker thread that runs tasks in its slot one
//! after another. A runner pulls the next input (under the input lock,
//! which hands out the indices), builds the input's task, puts the handle in
//! its slot (where the pool's handle reaches it: `with_task`, `running`,
//! `stop_all`), runs the task's body right there on the runner's thread, and
//! sends the [`Finished`] result down a bounded channel, which is the only
//! place results wait. The body runs without a job of its own (no
//! allocation, no lock on a pending job, no outcome stored and taken back),
//! and the task's shared state is made new in place for the runner's next
//! task when nobody else holds it. A pool starts one runner per core; the
//! watchdog adds more while every runner is held up, up to the
//! parallelism. A process pool is the same pool, whose body hands each
//! input to a warm child (`Warm`, in the process place).
//!
//! Glossary:
//!
//! - *slot*: a runner's place: the task it runs now, and its counters.
//! - *live*: how many runners there are; runner `k` uses slot `k`.
//! - *spare sender*: the results sender kept for runners started later. It
//!   is dropped once the input is closed, so that the results channel ends
//!   exactly when the last result pulled before the close is sent.
//! - *parked sender*: a runner's results sender while it pulls, kept in its
//!   slot, where a close takes it. A runner takes it back under the input
//!   lock as soon as the iterator's `next` returns; if it is gone, the
//!   input is dropped, never run.
//! - *closed*: no input is taken any more (the inputs ended, or
//!   `close_inbox`, `stop_all`, a drop); a flag read without the input
//!   lock.
//! - *gate*: the lock runners wait on for the in-order window, apart from
//!   the input lock.
//! - *held up*: a runner holding the same task at two looks of the
//!   watchdog.
//! - *window*, *delivered*: in input order, no input is pulled more than
//!   the window ahead of the next one to deliver.
//!
//! Invariants:
//!
//! 1. While the handle lives, every input pulled from the iterator comes
//!    back once as a [`Finished`]: its task's outcome, or
//!    [`Outcome::Cancelled`] if a stop came before its body began.
//! 2. A runner pulls an input only to run it at once: closing the input
//!    (`close_inbox`, `stop_all`, a drop) leaves no input pulled and
//!    forgotten. An input the iterator yields after the close (its `next`
//!    was under way, blocked perhaps) is dropped, never run: the runner
//!    finds its parked sender taken.
//! 3. Closing never waits for the input iterator: it takes neither the
//!    input lock, which a runner holds inside the iterator's `next` (which
//!    may never return), nor anything a runner holds while waiting for it;
//!    it takes the senders parked by the runners that pull (the one inside
//!    `next`, and those waiting for the input lock or the window).
//! 4. The results end (`recv` fails) once the input is closed and every
//!    input pulled before has sent its result; a runner blocked in the
//!    iterator's `next` does not hold them up.
//!
//! The files:
//!
//! - `shared`: the state the runners and the handle share, and what the
//!   handle may ask of it without the input and body types.
//! - `runner`: the runner loop.
//! - `watchdog`: adds runners while every one is held up.
//! - `in_order`: results in input order.

mod in_order;
mod runner;
mod shared;
mod watchdog;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::backend::process::{self, Warm};
use crate::builder::DEFAULT_CAPACITY;
use crate::ctx::Ctx;
use crate::error::{RecvError, RecvTimeoutError, StartError, TryRecvError};
use crate::named::NamedTask;
use crate::outcome::{Outcome, Panic};
use crate::sync::lock;
use crate::task::Task;

pub use in_order::InOrder;
use shared::{PoolControl, PoolShared};

/// Runs one task per input with at most `parallelism` running at once.
///
/// Inputs are pulled lazily from any iterator, so a pool over an endless
/// iterator works: memory stays bounded by the parallelism and the result
/// capacity, not by the number of inputs. Every input runs as a full task —
/// it sees [`Ctx::stopped`], can receive messages and emit events, and ends
/// with its own [`Outcome`] — so a panic or an error in one task is reported
/// in its outcome and never disturbs the others.
///
/// Each task runs on one of sidetask's reused worker threads, which runs the
/// pool's tasks one after another, so a tiny task costs no hand-off between
/// threads. Tiny tasks run on about as many threads as there are cores;
/// when tasks block or run long, the pool adds threads, up to its
/// parallelism.
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

    /// How many finished results may wait to be collected (1024 unless
    /// set; at least one). While that many wait, the pool starts no new
    /// task.
    pub fn result_capacity(mut self, capacity: usize) -> Pool {
        self.results = capacity.max(1);
        self
    }

    /// The inbox and outbox capacities of each task, as
    /// [`Builder::inbox_capacity`](crate::Builder::inbox_capacity) and
    /// [`Builder::outbox_capacity`](crate::Builder::outbox_capacity).
    ///
    /// The outbox is where a task's events are kept for its
    /// [`Finished::events`]: nobody reads it as events come, so an emit
    /// never waits for room there. Once `outbox` events are kept, an emit
    /// gives its event back (see [`Finished::events`]).
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
    /// If not a single thread could be started for the pool.
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
    /// `init` was not called), or not a single thread could be
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
        let cores = cores();
        let first = most.min(cores);
        let (results_tx, results_rx) = crossbeam_channel::bounded(self.results);
        let shared = Arc::new_cyclic(|me| {
            PoolShared::new(
                me.clone(),
                iter,
                most,
                results_tx,
                body,
                (self.inbox, self.outbox, self.timeout),
            )
        });
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

/// The number of cores, asked of the system once: `available_parallelism`
/// reads the cgroup files on each call (some tens of microseconds, a good
/// part of a small pool's whole run).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// How many times a receive that finds no result yields its thread (to the
/// runners, when no core is spare) before it waits.
const YIELDS: usize = 16;

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
    /// The events the task emitted that nobody read while it ran, in
    /// order.
    ///
    /// Nobody reads a pool task's outbox as events come (unless through
    /// [`PoolRun::with_task`]), so these are kept in the outbox: at most its
    /// capacity ([`Pool::task_capacities`]). An emit that finds it full
    /// never waits: [`Ctx::emit`] gives the event back as
    /// [`EmitError::Disconnected`](crate::EmitError::Disconnected) and
    /// [`Ctx::try_emit`] as [`TryEmitError::Full`](crate::TryEmitError::Full),
    /// so every event emitted is either here (or was read) or was given
    /// back to the body. In [`Pool::run_process`], the child's emit is not
    /// refused (the event has left the child): an event that finds the
    /// outbox full is dropped.
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
/// dropping a [`Task`] stops it; [`close_inbox`](PoolRun::close_inbox) lets
/// the running ones finish instead. The drop returns at once, even while
/// the input iterator's `next` is blocked.
pub struct PoolRun<T, E, In = (), Ev = ()> {
    shared: Arc<dyn PoolControl<T, E, In, Ev>>,
    results: Receiver<Finished<T, E, Ev>>,
    window: usize,
}

impl<T, E, In, Ev> PoolRun<T, E, In, Ev> {
    /// Waits for the next finished task, in completion order.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once every task has finished and its result has been
    /// received: no result will ever come.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Pool, RecvError};
    ///
    /// let run = Pool::new(2).run(1..=3u32, |_: &Ctx, n| Ok::<_, ()>(n * 10))?;
    /// let mut sum = 0;
    /// for _ in 0..3 {
    ///     sum += run.recv()?.outcome.value().unwrap();
    /// }
    /// assert_eq!(sum, 60);
    /// assert!(matches!(run.recv(), Err(RecvError))); // every result received
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv(&self) -> Result<Finished<T, E, Ev>, RecvError> {
        // The results come from the pool's own runners: yield to them a few
        // times before the channel's wait, which first spins on this core
        // (taking it from a runner when no core is spare).
        for _ in 0..YIELDS {
            match self.results.try_recv() {
                Ok(done) => return Ok(done),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(RecvError),
                Err(crossbeam_channel::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.results.recv().map_err(|_| RecvError)
    }

    /// The next finished task if one is waiting, without waiting.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if none is waiting now,
    /// [`TryRecvError::Disconnected`] once every task has finished and its
    /// result has been received.
    pub fn try_recv(&self) -> Result<Finished<T, E, Ev>, TryRecvError> {
        self.results.try_recv().map_err(|e| match e {
            crossbeam_channel::TryRecvError::Empty => TryRecvError::Empty,
            crossbeam_channel::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Waits at most `timeout` for the next finished task.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none finished in time,
    /// [`RecvTimeoutError::Disconnected`] once every task has finished and
    /// its result has been received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Finished<T, E, Ev>, RecvTimeoutError> {
        self.results.recv_timeout(timeout).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => RecvTimeoutError::Timeout,
            crossbeam_channel::RecvTimeoutError::Disconnected => RecvTimeoutError::Disconnected,
        })
    }

    /// Finished tasks in completion order, until all have finished.
    pub fn iter(&self) -> impl Iterator<Item = Finished<T, E, Ev>> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Calls `receiver` with each finished task, in completion order, until
    /// all have finished (task.py's receiver callback).
    pub fn for_each(self, mut receiver: impl FnMut(Finished<T, E, Ev>)) {
        while let Ok(done) = self.recv() {
            receiver(done);
        }
    }

    /// Finished tasks in input order.
    ///
    /// While results are taken this way, the pool starts no input more than
    /// the parallelism plus the result capacity ahead of the next one to
    /// deliver, so memory stays bounded even when an early task is slow.
    pub fn in_order(self) -> InOrder<T, E, In, Ev> {
        self.shared.set_window(self.window);
        InOrder {
            run: self,
            waiting: Default::default(),
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
    ///
    /// It never waits for the input iterator: if a call of its `next` is
    /// under way (blocked, perhaps), the results end all the same, and the
    /// input that call yields, if it ever returns, is dropped without
    /// running and without a result.
    pub fn stop_all(&self) {
        self.shared.close(true);
    }

    /// Says no more input will be taken: no new task starts, the running
    /// ones finish normally, and once their results are received,
    /// [`recv`](PoolRun::recv) reports that every result has been. Inputs
    /// the iterator has not yielded yet are never taken, as messages never
    /// sent. Returns at once; nothing is asked to stop (that is
    /// [`stop_all`](PoolRun::stop_all)).
    ///
    /// It never waits for the input iterator: if a call of its `next` is
    /// under way (blocked, perhaps), the results end once the running
    /// tasks' results are received, and the input that call yields, if it
    /// ever returns, is dropped without running and without a result.
    ///
    /// A pool's inbox is its input iterator, so this is the name that
    /// [`Task::close_inbox`] and [`ChainRun::close_inbox`](crate::ChainRun::close_inbox)
    /// have for the same request, "nothing more comes in: finish what you
    /// have". It names the side it closes because a bare `close` on a
    /// handle that also has results and running tasks would read as ending
    /// them.
    pub fn close_inbox(&self) {
        self.shared.close(false);
    }

    /// Waits for every task to finish and drops their results; returns how
    /// many it dropped (whatever their outcomes: values, errors and panics
    /// alike).
    ///
    /// To look at the outcomes, use [`iter`](PoolRun::iter),
    /// [`for_each`](PoolRun::for_each) or [`in_order`](PoolRun::in_order)
    /// instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use sidetask::{Ctx, Pool};
    ///
    /// let run = Pool::new(4).run(0..10, |_: &Ctx, n: u32| {
    ///     if n == 3 {
    ///         panic!("three");
    ///     }
    ///     Ok::<_, ()>(n)
    /// })?;
    /// assert_eq!(run.wait(), 10); // the panic is among the ten dropped
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use = "the results were dropped; the count says how many"]
    pub fn wait(self) -> usize {
        self.iter().count()
    }

    /// Calls `f` with the handle of the running task of input `index`, if
    /// it is running now: to send it messages, read its events or stop it.
    ///
    /// Keep `f` short: the pool's thread that runs this task waits for it
    /// before it can start the next one.
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
