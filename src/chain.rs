//! Stages connected by bounded inboxes, each stage a task.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::backend::thread as place;
use crate::builder::DEFAULT_CAPACITY;
use crate::ctx::Ctx;
use crate::error::{CtxRecvError, EmitError, RecvError, RecvTimeoutError, SendError, StartError};
use crate::mailbox::{PopError, Wait};
use crate::outcome::{self, Outcome, TaskError};
use crate::sync::lock;
use crate::task::{Settings, Shared, StopHandle, Task};

/// A pipeline of stages, each a task, connected by bounded inboxes.
///
/// Each stage is a function from a reference to its input item to its
/// output item (or its own error). Items stream through in order, with
/// backpressure: a stage whose successor's inbox is full waits. task.py's
/// chain, where each task passes its result to the next from a seed value,
/// is the one-item case.
///
/// A stage's error or panic stops the whole chain and is reported with the
/// stage's index, the item's position in the stream and the item itself
/// ([`ChainError`]). Stopping the chain stops every stage; items still
/// inside are counted or given back ([`ChainEnd`]), never silently lost.
///
/// # Examples
///
/// ```
/// use sidetask::Chain;
///
/// // task.py's chain: ten stages each adding one to a seed of one.
/// let chain = (0..10).fold(Chain::new(|n: &u64| Ok::<_, ()>(*n)), |c, _| c.then(|n: &u64| Ok(n + 1)));
/// let run = chain.start()?;
/// run.send(1)?;
/// assert_eq!(run.recv()?, 11);
/// run.close_inbox();
/// assert!(run.join().into_result().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a chain does nothing until `start`"]
pub struct Chain<A, Z, E> {
    // Stage builders, first to last; each takes its successor's way in and
    // returns its own.
    stages: Vec<StageFactory<E>>,
    capacity: usize,
    _types: PhantomData<fn(A) -> Z>,
}

type StageFactory<E> = Box<dyn FnOnce(Link, &Arc<ChainShared<E>>, usize, usize) -> Built + Send>;

/// A type-erased `Next<B>`.
type Link = Box<dyn Any + Send>;

struct Built {
    stage: Box<dyn Stage>,
    /// `Next<A>` of this stage, for its predecessor.
    entry: Link,
    /// `Arc<dyn Outlet<B>>` of this stage, for the chain's output.
    outlet: Link,
}

/// Where a stage sends what it made.
enum Next<B> {
    Stage(Arc<dyn Feed<B>>),
    Output,
}

impl<A, Z, E> Chain<A, Z, E>
where
    A: Send + 'static,
    Z: Send + 'static,
    E: Send + 'static,
{
    /// A chain of one stage.
    pub fn new<F>(stage: F) -> Chain<A, Z, E>
    where
        F: FnMut(&A) -> Result<Z, E> + Send + 'static,
    {
        Chain {
            stages: vec![factory(stage)],
            capacity: DEFAULT_CAPACITY,
            _types: PhantomData,
        }
    }

    /// Adds a stage after the last one.
    pub fn then<Y, F>(mut self, stage: F) -> Chain<A, Y, E>
    where
        Y: Send + 'static,
        F: FnMut(&Z) -> Result<Y, E> + Send + 'static,
    {
        self.stages.push(factory(stage));
        Chain {
            stages: self.stages,
            capacity: self.capacity,
            _types: PhantomData,
        }
    }

    /// How many items can wait in front of each stage, and at the output
    /// (32 unless set; at least one).
    pub fn capacity(mut self, capacity: usize) -> Chain<A, Z, E> {
        self.capacity = capacity.max(1);
        self
    }

    /// The number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Always `false`: a chain has at least one stage.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Starts every stage.
    ///
    /// # Errors
    ///
    /// If a stage's thread could not be started; the stages already started
    /// are stopped.
    pub fn start(self) -> Result<ChainRun<A, Z, E>, StartError> {
        let shared = Arc::new(ChainShared {
            failure: Mutex::new(None),
            stoppers: OnceLock::new(),
            dropped: AtomicUsize::new(0),
        });
        let count = self.stages.len();
        let mut next: Link = Box::new(Next::<Z>::Output);
        let mut built = Vec::with_capacity(count);
        let mut output = None;
        for (index, make) in self.stages.into_iter().enumerate().rev() {
            let stage = make(next, &shared, index, self.capacity);
            if index == count - 1 {
                output = Some(stage.outlet);
            }
            next = stage.entry;
            built.push(stage.stage);
        }
        built.reverse();
        let input = match *next.downcast::<Next<A>>().expect("the first stage takes A") {
            Next::Stage(feed) => feed,
            Next::Output => unreachable!("a stage's entry is a stage"),
        };
        let output = *output
            .expect("a chain has a last stage")
            .downcast::<Arc<dyn Outlet<Z>>>()
            .expect("the last stage makes Z");
        let _ = shared
            .stoppers
            .set(built.iter().map(|s| s.stopper()).collect());
        let run = ChainRun {
            input,
            output,
            stages: built,
            shared,
            _types: PhantomData,
        };
        for stage in &run.stages {
            stage.start()?;
        }
        Ok(run)
    }
}

impl<A, Z, E> fmt::Debug for Chain<A, Z, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("stages", &self.stages.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

fn factory<A, B, E, F>(mut f: F) -> StageFactory<E>
where
    A: Send + 'static,
    B: Send + 'static,
    E: Send + 'static,
    F: FnMut(&A) -> Result<B, E> + Send + 'static,
{
    Box::new(
        move |next: Link, shared: &Arc<ChainShared<E>>, index, capacity| {
            let next = *next.downcast::<Next<B>>().expect("stage types line up");
            let shared = Arc::clone(shared);
            let mut body = move |ctx: &Ctx<A, B>| {
                let mut seq = 0u64;
                loop {
                    let item = match ctx.recv() {
                        Ok(item) => item,
                        Err(CtxRecvError::Stopped | CtxRecvError::Disconnected) => break,
                    };
                    let made = match outcome::catch(|| f(&item)) {
                        Ok(Ok(made)) => made,
                        Ok(Err(e)) => {
                            shared.fail(index, seq, Box::new(item), TaskError::from_error(e));
                            break;
                        }
                        Err(panic) => {
                            shared.fail(index, seq, Box::new(item), TaskError::from_panic(panic));
                            break;
                        }
                    };
                    let passed = match &next {
                        Next::Stage(feed) => feed.feed(made).is_ok(),
                        Next::Output => match ctx.emit(made) {
                            Ok(()) => true,
                            Err(EmitError::Stopped(_) | EmitError::Disconnected(_)) => false,
                        },
                    };
                    if !passed {
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    seq += 1;
                }
                if let Next::Stage(feed) = &next {
                    feed.close();
                }
                Ok::<(), ()>(())
            };
            let task: Task<(), (), A, B> = place::task(
                Settings {
                    name: None,
                    inbox: capacity,
                    outbox: capacity,
                    timeout: None,
                },
                move |ctx: &Ctx<A, B>| match body(ctx) {
                    Ok(()) => Outcome::Value(()),
                    Err(()) => Outcome::Error(()),
                },
            );
            let feed: Arc<dyn Feed<A>> = task.shared();
            let outlet: Arc<dyn Outlet<B>> = task.shared();
            let entry: Link = Box::new(Next::<A>::Stage(feed));
            let outlet: Link = Box::new(outlet);
            Built {
                stage: Box::new(task),
                entry,
                outlet,
            }
        },
    )
}

/// A stage's inbox, for the stage before it (its events' type erased).
trait Feed<In>: Send + Sync {
    /// Puts a message in, waiting for room; gives it back if the stage is
    /// stopping, ended or closed.
    fn feed(&self, message: In) -> Result<(), In>;
    /// Says no message will come any more.
    fn close(&self);
    /// Takes back every message left unread.
    fn drain(&self) -> Vec<In>;
}

impl<In: Send, Ev: Send, O: ?Sized + Send + Sync> Feed<In> for Shared<In, Ev, O> {
    fn feed(&self, message: In) -> Result<(), In> {
        Shared::feed(self, message)
    }

    fn close(&self) {
        self.close_inbox();
    }

    fn drain(&self) -> Vec<In> {
        self.mailbox.drain_in()
    }
}

/// The last stage's outbox, for the chain's output (its messages' type
/// erased).
trait Outlet<Ev>: Send + Sync {
    fn take(&self, wait: Wait) -> Result<Ev, PopError>;
}

impl<In: Send, Ev: Send, O: ?Sized + Send + Sync> Outlet<Ev> for Shared<In, Ev, O> {
    fn take(&self, wait: Wait) -> Result<Ev, PopError> {
        self.mailbox.pop_out(wait)
    }
}

/// A stage's task, without its types.
trait Stage: Send + Sync {
    fn start(&self) -> Result<(), StartError>;
    fn stopper(&self) -> StopHandle;
    fn wait_until(&self, deadline: Option<Instant>) -> bool;
    fn discard_unread(&self) -> usize;
}

impl<A: Send + 'static, B: Send + 'static> Stage for Task<(), (), A, B> {
    fn start(&self) -> Result<(), StartError> {
        Task::start(self)
    }

    fn stopper(&self) -> StopHandle {
        self.stop_handle()
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        match deadline {
            None => {
                self.wait();
                true
            }
            Some(d) => self.wait_timeout(d.saturating_duration_since(Instant::now())),
        }
    }

    fn discard_unread(&self) -> usize {
        self.take_unread().map_or(0, |v| v.len())
    }
}

struct ChainShared<E> {
    failure: Mutex<Option<ChainError<E>>>,
    stoppers: OnceLock<Vec<StopHandle>>,
    dropped: AtomicUsize,
}

impl<E> ChainShared<E> {
    /// Records the first failure and stops every stage.
    fn fail(&self, stage: usize, seq: u64, item: Box<dyn Any + Send>, failure: TaskError<E>) {
        {
            let mut slot = lock(&self.failure);
            if slot.is_none() {
                *slot = Some(ChainError {
                    stage,
                    seq,
                    item: Mutex::new(Some(item)),
                    failure,
                });
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stop_all();
    }

    fn stop_all(&self) {
        if let Some(stoppers) = self.stoppers.get() {
            for s in stoppers {
                s.stop();
            }
        }
    }
}

/// A started chain: send items in, receive what the last stage makes.
///
/// **Dropping it stops every stage.** [`close_inbox`](ChainRun::close_inbox)
/// instead lets the items inside flow out, after which every stage ends.
pub struct ChainRun<A, Z, E> {
    input: Arc<dyn Feed<A>>,
    output: Arc<dyn Outlet<Z>>,
    stages: Vec<Box<dyn Stage>>,
    shared: Arc<ChainShared<E>>,
    _types: PhantomData<fn(A) -> Z>,
}

impl<A: Send + 'static, Z, E> ChainRun<A, Z, E> {
    /// Sends an item into the first stage, waiting while its inbox is full.
    ///
    /// # Errors
    ///
    /// If the chain was stopped, failed or its input closed; the item is
    /// given back.
    pub fn send(&self, item: A) -> Result<(), SendError<A>> {
        self.input.feed(item).map_err(SendError::Disconnected)
    }

    /// Says no more items will come: the stages finish what they hold and
    /// end, one after the other. Later sends fail, giving the item back.
    /// Nothing is asked to stop (that is [`stop`](ChainRun::stop)).
    ///
    /// The name is [`Task::close_inbox`]'s, for the same request ("nothing
    /// more comes in: finish what you have"): a chain's inbox is its first
    /// stage's.
    pub fn close_inbox(&self) {
        self.input.close();
    }

    /// Waits for the next item out of the last stage.
    ///
    /// # Errors
    ///
    /// [`RecvError`] once the last stage has ended and every item it made
    /// has been received.
    pub fn recv(&self) -> Result<Z, RecvError> {
        self.output.take(Wait::Forever).map_err(|_| RecvError)
    }

    /// Waits at most `timeout` for the next item out of the last stage.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] if none came in time,
    /// [`RecvTimeoutError::Disconnected`] once the last stage has ended and
    /// every item has been received.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Z, RecvTimeoutError> {
        self.output.take(Wait::after(timeout)).map_err(|e| match e {
            PopError::Disconnected => RecvTimeoutError::Disconnected,
            _ => RecvTimeoutError::Timeout,
        })
    }

    /// Items out of the last stage until it ends.
    pub fn iter(&self) -> impl Iterator<Item = Z> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// Asks every stage to stop; returns at once.
    pub fn stop(&self) {
        self.shared.stop_all();
    }

    /// The number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Always `false`: a chain has at least one stage.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Waits for every stage to end, then accounts for every item: the
    /// failure (with its item), the items the first stage never read, the
    /// items made but not received, and the count of items dropped inside
    /// by a stop.
    pub fn join(self) -> ChainEnd<A, Z, E> {
        self.join_until(None)
            .unwrap_or_else(|_| unreachable!("no deadline"))
    }

    /// As [`join`](ChainRun::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// The chain itself, if a stage was still running at the deadline.
    pub fn join_timeout(self, timeout: Duration) -> Result<ChainEnd<A, Z, E>, Self> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn join_until(self, deadline: Option<Instant>) -> Result<ChainEnd<A, Z, E>, Self> {
        for stage in &self.stages {
            if !stage.wait_until(deadline) {
                return Err(self);
            }
        }
        let unread = self.input.drain();
        let dropped_inside: usize = self.stages[1..].iter().map(|s| s.discard_unread()).sum();
        let mut output = Vec::new();
        while let Ok(z) = self.output.take(Wait::No) {
            output.push(z);
        }
        let failure = lock(&self.shared.failure).take();
        Ok(ChainEnd {
            failure,
            unread,
            output,
            dropped: self.shared.dropped.load(Ordering::Relaxed) + dropped_inside,
        })
    }
}

impl<A, Z, E> Drop for ChainRun<A, Z, E> {
    fn drop(&mut self) {
        self.shared.stop_all();
    }
}

impl<A, Z, E> fmt::Debug for ChainRun<A, Z, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainRun")
            .field("stages", &self.stages.len())
            .finish_non_exhaustive()
    }
}

/// How a chain ended, with every item accounted for.
#[non_exhaustive]
#[derive(Debug)]
pub struct ChainEnd<A, Z, E> {
    /// The first stage failure, if any; it stopped the chain.
    pub failure: Option<ChainError<E>>,
    /// Items sent in that the first stage never read, in order.
    pub unread: Vec<A>,
    /// Items the last stage made that were not received, in order.
    pub output: Vec<Z>,
    /// Items dropped inside the chain because it was stopped (between
    /// stages, or made by a stage that could not pass them on).
    pub dropped: usize,
}

impl<A, Z, E> ChainEnd<A, Z, E> {
    /// `Ok` if no stage failed, else the failure.
    ///
    /// # Errors
    ///
    /// The [`ChainError`] of the stage that failed first.
    pub fn into_result(self) -> Result<(), ChainError<E>> {
        match self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// A stage's failure: which stage, which item, and how it failed.
pub struct ChainError<E> {
    stage: usize,
    seq: u64,
    // A `Mutex` makes the `Send`-only item `Sync` without `unsafe`.
    item: Mutex<Option<Box<dyn Any + Send>>>,
    failure: TaskError<E>,
}

impl<E> ChainError<E> {
    /// The index of the stage that failed, from 0.
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// The failed item's position in the stream that stage saw, from 0.
    pub fn position(&self) -> u64 {
        self.seq
    }

    /// The item the stage failed on, if it is of type `T` (the stage's
    /// input type).
    pub fn take_item<T: 'static>(&self) -> Option<T> {
        let mut slot = lock(&self.item);
        match slot.take()?.downcast::<T>() {
            Ok(item) => Some(*item),
            Err(other) => {
                *slot = Some(other);
                None
            }
        }
    }

    /// How the stage failed: its own error or a panic.
    pub fn failure(&self) -> &TaskError<E> {
        &self.failure
    }

    /// Takes how the stage failed.
    pub fn into_failure(self) -> TaskError<E> {
        self.failure
    }
}

impl<E: fmt::Debug> fmt::Debug for ChainError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainError")
            .field("stage", &self.stage)
            .field("position", &self.seq)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl<E: fmt::Display> fmt::Display for ChainError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chain stage {} failed on item {}: {}",
            self.stage, self.seq, self.failure
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ChainError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.failure)
    }
}
