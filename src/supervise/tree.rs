//! A supervised group: children restarted together by a strategy.

use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{
    Attempt, AttemptEnd, Limits, OnRestart, Restart, Strategy, SuperviseError, SupervisedStatus,
    Supervisor, describe, failed, not_started,
};
use crate::backend::thread as place;
use crate::mailbox::KILL;
use crate::outcome::{self, Outcome};
use crate::spare::Standby;
use crate::sync::lock;
use crate::task::{StopHandle, Task, TaskId};

/// A child's attempt, as the group sees it: no types.
struct Running {
    stop: StopHandle,
    /// Waits for the attempt's end (reading and dropping its events).
    watch: Box<dyn FnOnce() -> Summary + Send>,
}

/// How a child's attempt ended.
struct Summary {
    kind: &'static str,
    description: String,
    failed: bool,
}

impl Summary {
    fn of<T: 'static, E: fmt::Debug>(outcome: &Outcome<T, E>) -> Summary {
        Summary {
            kind: outcome.kind(),
            description: describe(outcome),
            failed: failed(outcome),
        }
    }
}

type Make = Box<dyn FnMut(Attempt) -> Result<Running, Summary> + Send>;

/// A child of a group: its factory, with the types erased.
pub(super) struct Child {
    make: Make,
    /// The standby, if the group keeps one per child.
    standby: Option<Standby>,
}

impl Child {
    pub(super) fn new<F, T, E, In, Ev, Er>(mut factory: F) -> Child
    where
        F: FnMut(Attempt) -> Result<Task<T, E, In, Ev>, Er> + Send + 'static,
        T: Send + 'static,
        E: Send + fmt::Debug + 'static,
        In: Send + 'static,
        Ev: Send + 'static,
        Er: fmt::Display,
    {
        Child {
            make: Box::new(move |attempt| match outcome::catch(|| factory(attempt)) {
                Ok(Ok(task)) => {
                    if let Err(e) = task.start()
                        && !e.is_already_started()
                    {
                        task.stop();
                    }
                    Ok(Running {
                        stop: task.stop_handle(),
                        watch: Box::new(move || {
                            while task.recv().is_ok() {}
                            let outcome = task.join();
                            Summary::of(&outcome)
                        }),
                    })
                }
                Ok(Err(e)) => Err(Summary::of(&not_started::<T, E>(e.to_string()))),
                Err(panic) => Err(Summary::of(&Outcome::<T, E>::Panicked(panic))),
            }),
            standby: None,
        }
    }
}

/// What the group's loop hears.
enum Note {
    /// A stop (or kill) through the group's handle.
    Stop { kill: bool },
    /// Child `child`'s attempt `number` ended.
    Ended {
        child: usize,
        number: u32,
        summary: Summary,
    },
}

/// What a supervised group tells when it has ended.
#[derive(Debug, Clone)]
pub struct SupervisedGroupReport {
    status: SupervisedStatus,
    history: Vec<AttemptEnd>,
    last: Vec<Option<AttemptEnd>>,
}

impl SupervisedGroupReport {
    /// How the group ended: [`Finished`](SupervisedStatus::Finished) (every
    /// child ended and none was to restart),
    /// [`Stopped`](SupervisedStatus::Stopped) or
    /// [`GaveUp`](SupervisedStatus::GaveUp).
    pub fn status(&self) -> SupervisedStatus {
        self.status
    }

    /// Whether the group gave up (more restarts than the intensity).
    pub fn gave_up(&self) -> bool {
        self.status == SupervisedStatus::GaveUp
    }

    /// Every attempt of every child that ended, in the order they ended.
    pub fn history(&self) -> &[AttemptEnd] {
        &self.history
    }

    /// Each child's last attempt's end, by the order children were added
    /// (`None` for a child that never ran).
    pub fn last(&self) -> &[Option<AttemptEnd>] {
        &self.last
    }
}

/// A group of tasks kept alive together by a [`Supervisor`] with a
/// [`Strategy`], made by [`Supervisor::spawn_group`].
///
/// **Dropping it stops the group**: every running child is asked to stop
/// (a process or command child is killed after its grace period) and none
/// restarts.
///
/// When a child ends and the [`Restart`] policy wants it again, the
/// strategy says which children restart with it: that one alone
/// ([`OneForOne`](Strategy::OneForOne)), all
/// ([`OneForAll`](Strategy::OneForAll)), or it and those added after it
/// ([`RestForOne`](Strategy::RestForOne)); those still running are stopped
/// first, then all restart in the order they were added, after the
/// backoff's delay. The intensity counts the group's restarts as a whole.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sidetask::{Backoff, Ctx, Restart, Strategy, Supervisor, SupervisedStatus};
///
/// let group = Supervisor::new()
///     .strategy(Strategy::OneForAll)
///     .restart(Restart::OnFailure)
///     .backoff(Backoff::none())
///     .intensity(2, Duration::from_secs(10))
///     // A child that waits until stopped…
///     .child(|_| sidetask::Builder::new().spawn(|ctx: &Ctx| ctx.sleep(Duration::from_secs(60))))
///     // …and one that always fails: both restart, twice, then the group gives up.
///     .child(|_| sidetask::Builder::new().spawn(|_: &Ctx| Err::<(), _>("broken")))
///     .spawn_group()?;
/// let report = group.join_timeout(Duration::from_secs(30)).unwrap();
/// assert!(report.gave_up());
/// assert_eq!(report.last()[1].as_ref().unwrap().number(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a supervised group stops its children"]
pub struct SupervisedGroup {
    task: Task<SupervisedGroupReport, Infallible>,
    watch: Arc<Mutex<GroupState>>,
}

struct GroupState {
    status: SupervisedStatus,
    attempts: Vec<u32>,
    history: Vec<AttemptEnd>,
}

impl Supervisor {
    /// Starts the children added with [`child`](Supervisor::child), in
    /// order, and supervises them together with the
    /// [`strategy`](Supervisor::strategy) ([`Strategy::OneForOne`] unless
    /// set).
    ///
    /// # Errors
    ///
    /// [`SuperviseError::is_invalid`]: no child was added, or a setting is
    /// out of range (see [`spawn`](Supervisor::spawn));
    /// [`SuperviseError::start_error`]: no thread could be started for the
    /// group.
    pub fn spawn_group(self) -> Result<SupervisedGroup, SuperviseError> {
        self.check()?;
        if self.children.is_empty() {
            return Err(SuperviseError::invalid(
                "a group needs at least one child".to_owned(),
            ));
        }
        let n = self.children.len();
        let watch = Arc::new(Mutex::new(GroupState {
            status: SupervisedStatus::Running { attempt: 1 },
            attempts: vec![0; n],
            history: Vec::new(),
        }));
        let (tx, rx) = crossbeam_channel::unbounded();
        let settings = self.settings();
        let standby = self.keeps_standby();
        let plan = GroupPlan {
            strategy: self.strategy.unwrap_or_default(),
            restart: self.restart,
            limits: Limits::new(&self),
            on_restart: self.on_restart,
        };
        let children: Vec<Child> = (self.children.into_iter())
            .map(|child| Child {
                standby: standby.then(Standby::default),
                ..child
            })
            .collect();
        let theirs = Arc::clone(&watch);
        let notes = tx.clone();
        let task = place::driver(settings, move |ctx: &crate::Ctx| {
            let id = ctx.id().as_u64();
            Outcome::Value(supervise_group(id, children, plan, &theirs, &notes, &rx))
        });
        let shared = Arc::downgrade(&task.shared());
        task.shared().set_stop_hook(Box::new(move || {
            if let Some(shared) = shared.upgrade() {
                let _ = tx.send(Note::Stop {
                    kill: shared.mailbox.is(KILL),
                });
            }
        }));
        task.start().map_err(SuperviseError::start)?;
        Ok(SupervisedGroup { task, watch })
    }
}

struct GroupPlan {
    strategy: Strategy,
    restart: Restart,
    limits: Limits,
    on_restart: Option<OnRestart>,
}

/// A child's place in the group's loop.
struct Slot {
    child: Child,
    /// The running attempt: its number, when it started, its stop handle.
    running: Option<(u32, Instant, Option<StopHandle>)>,
    number: u32,
    /// When it is to start again (once its running attempt, if any, ended).
    restart_at: Option<Instant>,
    /// Stopped by the group (strategy or stop), not ended by itself.
    stopping: bool,
    last: Option<AttemptEnd>,
}

fn supervise_group(
    id: u64,
    children: Vec<Child>,
    mut plan: GroupPlan,
    watch: &Mutex<GroupState>,
    notes: &Sender<Note>,
    rx: &Receiver<Note>,
) -> SupervisedGroupReport {
    let mut slots: Vec<Slot> = children
        .into_iter()
        .map(|child| Slot {
            child,
            running: None,
            number: 0,
            restart_at: None,
            stopping: false,
            last: None,
        })
        .collect();
    let mut restarts = 1u32;
    let now = Instant::now();
    for slot in &mut slots {
        slot.restart_at = Some(now);
    }
    // `Some(status)` once the group is ending: Stopped or GaveUp.
    let mut ending: Option<SupervisedStatus> = None;
    let mut kill = false;
    loop {
        // Start, in order, the children that are due; a child still ending
        // holds up those after it (start order).
        if ending.is_none() {
            let now = Instant::now();
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(at) = slot.restart_at else { continue };
                if slot.running.is_some() || at > now {
                    break;
                }
                slot.restart_at = None;
                slot.number += 1;
                start_child(i, slot, notes);
                lock(watch).attempts[i] = slot.number;
            }
        }
        let running = slots.iter().filter(|s| s.running.is_some()).count();
        let pending = slots.iter().filter_map(|s| s.restart_at).min();
        if running == 0 && (ending.is_some() || pending.is_none()) {
            let status = ending.unwrap_or(SupervisedStatus::Finished);
            let mut st = lock(watch);
            st.status = status;
            return SupervisedGroupReport {
                status,
                history: st.history.clone(),
                last: slots.iter_mut().map(|s| s.last.take()).collect(),
            };
        }
        {
            let mut st = lock(watch);
            st.status = match (ending, pending) {
                (Some(_), _) => SupervisedStatus::Stopping,
                (None, Some(until)) if until > Instant::now() => SupervisedStatus::BackingOff {
                    attempt: restarts,
                    until,
                },
                _ => SupervisedStatus::Running { attempt: restarts },
            };
        }
        let note = match pending.filter(|_| ending.is_none()) {
            Some(at) => match rx.recv_deadline(at) {
                Ok(note) => note,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => unreachable!("the loop holds a sender"),
            },
            None => rx.recv().expect("the loop holds a sender"),
        };
        match note {
            Note::Stop { kill: k } => {
                kill |= k;
                if ending.is_none() {
                    ending = Some(SupervisedStatus::Stopped);
                }
                stop_all(&mut slots, kill);
            }
            Note::Ended {
                child,
                number,
                summary,
            } => {
                let slot = &mut slots[child];
                let Some((_, started, _)) = slot.running.take_if(|r| r.0 == number) else {
                    continue;
                };
                let stopped = slot.stopping || ending.is_some();
                slot.stopping = false;
                let ended = AttemptEnd {
                    number,
                    child,
                    started,
                    ended: Instant::now(),
                    kind: summary.kind,
                    description: summary.description,
                    stopped,
                };
                tracing::info!(
                    supervisor = id,
                    child,
                    attempt = number,
                    outcome = ended.kind(),
                    stopped,
                    "supervised child ended: {}",
                    ended.description()
                );
                lock(watch).history.push(ended.clone());
                slot.last = Some(ended.clone());
                if stopped {
                    continue;
                }
                let wants = match plan.restart {
                    Restart::Always => true,
                    Restart::OnFailure => summary.failed,
                    Restart::Never => false,
                };
                if !wants {
                    continue;
                }
                let Some(delay) = plan.limits.restart(ended.ran()) else {
                    tracing::warn!(
                        supervisor = id,
                        child,
                        attempt = number,
                        "supervisor gave up: restart intensity reached"
                    );
                    ending = Some(SupervisedStatus::GaveUp);
                    for slot in &mut slots {
                        slot.restart_at = None;
                    }
                    stop_all(&mut slots, kill);
                    continue;
                };
                restarts += 1;
                if let Some(f) = plan.on_restart.as_mut() {
                    f(&ended, delay);
                }
                let until = Instant::now() + delay;
                let batch = match plan.strategy {
                    Strategy::OneForOne => child..child + 1,
                    Strategy::OneForAll => 0..slots.len(),
                    Strategy::RestForOne => child..slots.len(),
                };
                tracing::info!(
                    supervisor = id,
                    child,
                    strategy = ?plan.strategy,
                    restarting = batch.len(),
                    delay_ms = delay.as_millis() as u64,
                    "restarting supervised children"
                );
                for j in batch {
                    let slot = &mut slots[j];
                    // A child that ended for good (the policy wanted no
                    // restart) stays ended; the one that failed, those
                    // running and those due restart.
                    if let Some((_, _, stop)) = &slot.running {
                        slot.stopping = true;
                        if let Some(stop) = stop {
                            stop.stop();
                        }
                        slot.restart_at = Some(until);
                    } else if j == child || slot.restart_at.is_some() {
                        slot.restart_at = Some(until);
                    }
                }
            }
        }
    }
}

/// Makes child `i`'s next attempt and starts its watcher.
fn start_child(i: usize, slot: &mut Slot, notes: &Sender<Note>) {
    let number = slot.number;
    let attempt = Attempt { number, child: i };
    let started = Instant::now();
    let child = &mut slot.child;
    let made = match &child.standby {
        Some(standby) => standby.spares().around(|| (child.make)(attempt)),
        None => (child.make)(attempt),
    };
    match made {
        Ok(Running { stop, watch }) => {
            slot.running = Some((number, started, Some(stop.clone())));
            let notes = notes.clone();
            let job: place::Job = Box::new(move || {
                let summary = outcome::catch(watch).unwrap_or_else(|panic| Summary {
                    kind: "panic",
                    description: panic.to_string(),
                    failed: true,
                });
                let _ = notes.send(Note::Ended {
                    child: i,
                    number,
                    summary,
                });
            });
            if let Err((job, e)) = place::execute(job) {
                // No thread to watch it: it is killed, and watched here.
                tracing::warn!(child = i, "no thread to watch a supervised child: {e}");
                stop.kill();
                job();
            }
        }
        Err(summary) => {
            slot.running = Some((number, started, None));
            let _ = notes.send(Note::Ended {
                child: i,
                number,
                summary,
            });
        }
    }
}

/// Asks every running child to stop (or kills it).
fn stop_all(slots: &mut [Slot], kill: bool) {
    for slot in slots {
        if let Some((_, _, stop)) = &slot.running {
            slot.stopping = true;
            if let Some(stop) = stop {
                if kill { stop.kill() } else { stop.stop() }
            }
        }
    }
}

impl SupervisedGroup {
    /// The group's id (its supervisor's task).
    pub fn id(&self) -> TaskId {
        self.task.id()
    }

    /// How many children the group has.
    pub fn len(&self) -> usize {
        lock(&self.watch).attempts.len()
    }

    /// Always `false`: a group has at least one child.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Child `child`'s current (or last) attempt number, from 1; 0 before
    /// its first attempt.
    ///
    /// # Panics
    ///
    /// If `child` is not below [`len`](SupervisedGroup::len).
    pub fn attempt(&self, child: usize) -> u32 {
        lock(&self.watch).attempts[child]
    }

    /// Where the group is. Never blocks.
    pub fn status(&self) -> SupervisedStatus {
        lock(&self.watch).status
    }

    /// Every attempt of every child that ended so far, in the order they
    /// ended.
    pub fn history(&self) -> Vec<AttemptEnd> {
        lock(&self.watch).history.clone()
    }

    /// Stops every child and ends supervision; returns at once.
    pub fn stop(&self) {
        self.task.stop();
    }

    /// Kills every child (see [`Task::kill`]) and ends supervision;
    /// returns at once.
    pub fn kill(&self) {
        self.task.kill();
    }

    /// A handle that stops or kills the group from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.task.stop_handle()
    }

    /// Whether the group has ended. Never blocks.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Blocks until the group has ended or `timeout` passed; returns
    /// whether it ended.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.task.wait_timeout(timeout)
    }

    /// Waits for the group to end (every child ended) and reports how.
    pub fn join(self) -> SupervisedGroupReport {
        into_report(self.task.join())
    }

    /// Waits at most `timeout` for the group to end.
    ///
    /// # Errors
    ///
    /// The handle itself, if the group did not end in time.
    pub fn join_timeout(self, timeout: Duration) -> Result<SupervisedGroupReport, Self> {
        let watch = self.watch;
        self.task
            .join_timeout(timeout)
            .map(into_report)
            .map_err(|task| SupervisedGroup { task, watch })
    }
}

/// The group loop's outcome is its report; a panic there is a bug of ours,
/// resumed.
fn into_report(outcome: Outcome<SupervisedGroupReport, Infallible>) -> SupervisedGroupReport {
    outcome.unwrap()
}

impl fmt::Debug for SupervisedGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.watch);
        f.debug_struct("SupervisedGroup")
            .field("id", &self.task.id())
            .field("status", &st.status)
            .field("attempts", &st.attempts)
            .finish_non_exhaustive()
    }
}
