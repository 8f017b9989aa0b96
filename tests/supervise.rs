//! Supervision: each restart policy, backoff timing, the intensity limit,
//! messages across restarts (sent = read + handed on + given back), a
//! panicking thread task, a crashing process task and a failing command
//! restarted, stop, kill and drop, a standby child taking the next
//! attempt, and groups with their strategies.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{LIMIT, gone, wait_for};
use sidetask::{
    Backoff, Builder, Command, Ctx, NamedTask, Process, Registry, Restart, Stopped, Strategy,
    Supervised, SupervisedStatus, Supervisor, Unread,
};

/// Aborts its process on its first attempt; on later ones says it runs,
/// then sums the messages it gets until its inbox closes.
struct Flaky;

impl NamedTask for Flaky {
    const NAME: &'static str = "supervise_flaky";
    type Arg = u32;
    type In = u32;
    type Event = String;
    type Value = u32;
    type Error = Stopped;

    fn run(ctx: &Ctx<u32, String>, attempt: u32) -> Result<u32, Stopped> {
        if attempt == 1 {
            eprintln!("flaky: aborting");
            std::process::abort();
        }
        ctx.emit(format!("attempt {attempt} running"))?;
        let mut sum = 0;
        while let Ok(n) = ctx.recv() {
            sum += n;
        }
        Ok(sum)
    }
}

fn registry() -> Registry {
    let mut registry = common::process_tasks::registry();
    registry.register::<Flaky>().unwrap();
    registry.register::<UpThenFail>().unwrap();
    registry
}

sidetask::test_support!(registry());

fn setup() {
    sidetask::init(registry());
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A supervisor that restarts at once, as often as a test needs.
fn eager() -> Supervisor {
    Supervisor::new()
        .backoff(Backoff::none())
        .intensity(10_000, Duration::from_secs(60))
}

fn join<T, E, In, Ev>(supervised: Supervised<T, E, In, Ev>) -> sidetask::Outcome<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    supervised
        .join_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("supervision did not end within {LIMIT:?}"))
}

fn kinds(history: &[sidetask::AttemptEnd]) -> Vec<&'static str> {
    history.iter().map(|end| end.kind()).collect()
}

#[test]
fn always_restarts_even_after_a_value_until_the_intensity_gives_up() {
    let restarts = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&restarts);
    let supervised = Supervisor::new()
        .restart(Restart::Always)
        .backoff(Backoff::none())
        .intensity(3, Duration::from_secs(60))
        .on_restart(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .spawn(|attempt| {
            let n = attempt.number();
            Builder::new().spawn(move |_: &Ctx| Ok::<_, Stopped>(n))
        })
        .unwrap();
    assert!(supervised.wait_timeout(LIMIT));
    assert_eq!(supervised.status(), SupervisedStatus::GaveUp);
    assert_eq!(supervised.attempt(), 4);
    let history = supervised.history();
    assert_eq!(kinds(&history), ["value"; 4]);
    let numbers: Vec<u32> = history.iter().map(|e| e.number()).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert!(
        history
            .iter()
            .all(|e| !e.was_stopped() && e.ended() >= e.started())
    );
    assert_eq!(restarts.load(Ordering::SeqCst), 3);
    assert_eq!(join(supervised).value(), Some(4));
}

#[test]
fn on_failure_restarts_an_error_and_a_panic_until_a_value() {
    let supervised = eager()
        .restart(Restart::OnFailure)
        .spawn(|attempt| {
            let n = attempt.number();
            Builder::new().spawn(move |_: &Ctx| match n {
                1 => Err("first try failed".to_owned()),
                2 => panic!("second try panicked"),
                _ => Ok(n),
            })
        })
        .unwrap();
    assert!(supervised.wait_timeout(LIMIT));
    assert_eq!(supervised.status(), SupervisedStatus::Finished);
    let history = supervised.history();
    assert_eq!(kinds(&history), ["error", "panic", "value"]);
    assert!(
        history[0].description().contains("first try failed"),
        "{}",
        history[0]
    );
    assert!(
        history[1].description().contains("second try panicked"),
        "{}",
        history[1]
    );
    assert_eq!(join(supervised).value(), Some(3));
}

#[test]
fn never_restarts_a_failure() {
    let made = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&made);
    let supervised = eager()
        .restart(Restart::Never)
        .spawn(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Builder::new().spawn(|_: &Ctx| Err::<(), _>("broken"))
        })
        .unwrap();
    assert_eq!(join_status(&supervised), SupervisedStatus::Finished);
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert_eq!(kinds(&supervised.history()), ["error"]);
    assert_eq!(join(supervised).error(), Some("broken"));
}

/// Waits for supervision to end and returns its status.
fn join_status<T, E, In, Ev>(supervised: &Supervised<T, E, In, Ev>) -> SupervisedStatus
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    assert!(supervised.wait_timeout(LIMIT), "supervision did not end");
    supervised.status()
}

#[test]
fn the_intensity_limit_gives_up_with_the_last_outcome_and_the_history() {
    let supervised = Supervisor::new()
        .backoff(Backoff::none())
        .intensity(2, Duration::from_secs(60))
        .spawn(|attempt| {
            let n = attempt.number();
            Builder::new().spawn(move |_: &Ctx| Err::<(), _>(format!("failure {n}")))
        })
        .unwrap();
    assert_eq!(join_status(&supervised), SupervisedStatus::GaveUp);
    let history = supervised.history();
    assert_eq!(history.len(), 3);
    assert!(history[2].description().contains("failure 3"));
    assert_eq!(join(supervised).error(), Some("failure 3".to_owned()));
}

#[test]
fn backoff_doubles_from_the_floor_to_the_ceiling() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let theirs = Arc::clone(&starts);
    let supervised = Supervisor::new()
        .backoff(Backoff::exponential(ms(20), ms(80)))
        .intensity(5, Duration::from_secs(60))
        .spawn(move |_| {
            theirs.lock().unwrap().push(Instant::now());
            Builder::new().spawn(|_: &Ctx| Err::<(), _>("again"))
        })
        .unwrap();
    assert_eq!(join_status(&supervised), SupervisedStatus::GaveUp);
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 6);
    let expected = [20, 40, 80, 80, 80];
    for (i, want) in expected.into_iter().enumerate() {
        let gap = starts[i + 1] - starts[i];
        assert!(gap >= ms(want), "restart {}: {gap:?} < {want} ms", i + 1);
        // Generous: a loaded machine may wake late, but not by seconds.
        assert!(gap < ms(want) + LIMIT / 10, "restart {}: {gap:?}", i + 1);
    }
}

#[test]
fn jitter_keeps_each_delay_within_the_floor_and_the_ceiling() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let theirs = Arc::clone(&starts);
    let supervised = Supervisor::new()
        .backoff(Backoff::exponential(ms(10), ms(30)).jitter(1.0))
        .intensity(6, Duration::from_secs(60))
        .spawn(move |_| {
            theirs.lock().unwrap().push(Instant::now());
            Builder::new().spawn(|_: &Ctx| Err::<(), _>("again"))
        })
        .unwrap();
    assert_eq!(join_status(&supervised), SupervisedStatus::GaveUp);
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 7);
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= ms(10), "{:?}", pair[1] - pair[0]);
    }
}

#[test]
fn a_stop_during_the_backoff_ends_supervision_at_once() {
    let supervised = Supervisor::new()
        .backoff(Backoff::fixed(Duration::from_secs(3600)))
        .spawn(|_| Builder::new().spawn(|_: &Ctx| Err::<(), _>("down")))
        .unwrap();
    wait_for("the backoff", || {
        matches!(
            supervised.status(),
            SupervisedStatus::BackingOff { attempt: 2, .. }
        )
    });
    let SupervisedStatus::BackingOff { until, .. } = supervised.status() else {
        unreachable!()
    };
    assert!(until > Instant::now() + Duration::from_secs(3000));
    let asked = Instant::now();
    supervised.stop();
    assert_eq!(join_status(&supervised), SupervisedStatus::Stopped);
    assert!(asked.elapsed() < LIMIT);
    assert_eq!(supervised.attempt(), 1);
    assert_eq!(join(supervised).error(), Some("down"));
}

#[test]
fn bad_settings_are_refused_with_a_clear_error() {
    let factory = |_| Builder::new().spawn(|_: &Ctx| Ok::<_, Stopped>(()));
    let err = Supervisor::new()
        .backoff(Backoff::exponential(ms(20), ms(10)))
        .spawn(factory)
        .unwrap_err();
    assert!(err.is_invalid());
    assert!(err.to_string().contains("floor"), "{err}");
    for jitter in [-0.1, 1.5, f64::NAN] {
        let err = Supervisor::new()
            .backoff(Backoff::none().jitter(jitter))
            .spawn(factory)
            .unwrap_err();
        assert!(err.to_string().contains("jitter"), "{err}");
    }
    let err = Supervisor::new()
        .intensity(3, Duration::ZERO)
        .spawn(factory)
        .unwrap_err();
    assert!(err.to_string().contains("window"), "{err}");
    let err = Supervisor::new().spawn_group().unwrap_err();
    assert!(err.to_string().contains("at least one child"), "{err}");
    let err = Supervisor::new().child(factory).spawn(factory).unwrap_err();
    assert!(err.to_string().contains("spawn_group"), "{err}");
    assert!(err.start_error().is_none());
}

#[test]
fn errors_are_send_sync_and_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<sidetask::SuperviseError>();
    check::<sidetask::AttemptEnd>();
    check::<sidetask::SupervisedGroupReport>();
}

#[test]
fn messages_across_restarts_are_read_or_handed_on_or_given_back_in_order() {
    const SENT: u32 = 2000;
    // Each attempt reads a few messages, emitting each, then fails.
    let supervised = eager()
        .inbox_capacity(8)
        .spawn(|attempt| {
            let n = attempt.number();
            Builder::new()
                .inbox_capacity(4)
                .spawn(move |ctx: &Ctx<u32, u32>| {
                    for _ in 0..(n % 7 + 1) {
                        let m = ctx.recv().map_err(Stopped::from)?;
                        ctx.emit(m)?;
                    }
                    Err::<(), _>(Stopped)
                })
        })
        .unwrap();
    let mut read = Vec::new();
    for m in 0..SENT {
        supervised.send(m).unwrap();
        read.extend(supervised.try_iter());
        if m == SENT / 2 {
            // A few in flight while it stops.
            supervised.stop();
            break;
        }
    }
    let sent = SENT / 2 + 1;
    while let Ok(m) = supervised.recv_timeout(LIMIT) {
        read.push(m);
    }
    assert!(supervised.wait_timeout(LIMIT));
    let back = supervised.take_unread().unwrap();
    assert!(supervised.attempt() > 1, "it restarted");
    let mut all = read.clone();
    all.extend(&back);
    assert_eq!(
        all,
        (0..sent).collect::<Vec<_>>(),
        "read {read:?} back {back:?}"
    );
}

#[test]
fn unread_messages_can_be_given_back_instead_of_handed_on() {
    const SENT: u32 = 10;
    let supervised = eager()
        .restart(Restart::Always)
        .unread(Unread::GiveBack)
        .spawn(|_| {
            Builder::new().spawn(|ctx: &Ctx<u32, u32>| {
                // Reads one message, then fails.
                let m = ctx.recv().map_err(Stopped::from)?;
                ctx.emit(m)?;
                Err::<(), _>(Stopped)
            })
        })
        .unwrap();
    for m in 0..SENT {
        supervised.send(m).unwrap();
    }
    // However far the attempts got (each reads one message; those left in
    // its inbox are kept), nothing is lost and nothing comes twice.
    let mut read = vec![supervised.recv_timeout(LIMIT).unwrap()];
    wait_for("an attempt to end", || !supervised.history().is_empty());
    supervised.stop();
    read.extend(supervised.iter());
    let back = supervised.take_unread().unwrap();
    assert!(back.is_sorted() && read.is_sorted(), "{read:?} {back:?}");
    let mut all = read.clone();
    all.extend(&back);
    all.sort();
    assert_eq!(
        all,
        (0..SENT).collect::<Vec<_>>(),
        "read {read:?} back {back:?}"
    );
}

#[test]
fn a_factory_error_is_a_crashed_attempt_and_restarted() {
    let supervised = eager()
        .spawn(|attempt| {
            if attempt.number() == 1 {
                return Err("no resource yet");
            }
            Ok(sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>(7)))
        })
        .unwrap();
    assert_eq!(join_status(&supervised), SupervisedStatus::Finished);
    let history = supervised.history();
    assert_eq!(kinds(&history), ["crashed", "value"]);
    assert!(history[0].description().contains("no resource yet"));
    assert_eq!(join(supervised).value(), Some(7));
}

#[test]
fn a_crashing_process_task_is_restarted() {
    setup();
    let supervised = eager()
        .spawn(|attempt| Process::<Flaky>::new(attempt.number()).spawn())
        .unwrap();
    // Sent while the first attempt may still be crashing: none is lost.
    for n in 1..=3 {
        supervised.send(n).unwrap();
    }
    assert_eq!(supervised.recv_timeout(LIMIT).unwrap(), "attempt 2 running");
    assert_eq!(
        supervised.status(),
        SupervisedStatus::Running { attempt: 2 }
    );
    supervised.close_inbox();
    assert_eq!(join_status(&supervised), SupervisedStatus::Finished);
    let history = supervised.history();
    assert_eq!(kinds(&history), ["crashed", "value"]);
    assert!(
        history[0].description().contains("signal 6"),
        "{}",
        history[0]
    );
    assert_eq!(join(supervised).value(), Some(6));
}

#[test]
fn a_failing_command_is_restarted_until_it_succeeds() {
    let supervised = eager()
        .spawn(|attempt| {
            let script = if attempt.number() < 3 {
                "echo down; exit 1"
            } else {
                "echo up; exit 0"
            };
            Command::new("sh").args(["-c", script]).spawn()
        })
        .unwrap();
    let events: Vec<String> = supervised.iter().collect();
    assert_eq!(events, ["down", "down", "up"]);
    assert_eq!(join_status(&supervised), SupervisedStatus::Finished);
    let history = supervised.history();
    assert!(
        history[0].description().contains("code 1"),
        "{}",
        history[0]
    );
    let exit = join(supervised).value().unwrap();
    assert!(exit.success());
}

#[test]
fn stop_reaches_the_current_attempt_and_ends_supervision() {
    let supervised = eager()
        .restart(Restart::Always)
        .spawn(|_| {
            Builder::new().spawn(|ctx: &Ctx<(), &str>| {
                ctx.emit("up")?;
                ctx.sleep(Duration::from_secs(3600))
            })
        })
        .unwrap();
    assert_eq!(supervised.recv_timeout(LIMIT).unwrap(), "up");
    supervised.stop_handle().stop();
    assert_eq!(join_status(&supervised), SupervisedStatus::Stopped);
    let history = supervised.history();
    assert_eq!(history.len(), 1);
    assert!(history[0].was_stopped());
    assert_eq!(join(supervised).error(), Some(Stopped));
}

#[test]
fn kill_kills_a_process_attempt_and_no_process_is_left() {
    setup();
    let supervised = eager()
        .restart(Restart::Always)
        .spawn(|_| Process::<common::process_tasks::Sleeper>::new(3600).spawn())
        .unwrap();
    let pid = supervised.recv_timeout(LIMIT).unwrap();
    supervised.kill();
    assert_eq!(join_status(&supervised), SupervisedStatus::Stopped);
    assert!(join(supervised).is_killed());
    wait_for("the child to be gone", || gone(pid));
}

#[test]
fn dropping_the_handle_stops_the_attempt_and_no_process_is_left() {
    setup();
    let supervised = eager()
        .restart(Restart::Always)
        .spawn(|_| Process::<common::process_tasks::Sleeper>::new(3600).spawn())
        .unwrap();
    let pid = supervised.recv_timeout(LIMIT).unwrap();
    let stop = supervised.stop_handle();
    drop(supervised);
    wait_for("supervision to end", || stop.is_finished());
    wait_for("the child to be gone", || gone(pid));

    let ended = Arc::new(AtomicBool::new(false));
    let theirs = Arc::clone(&ended);
    let supervised = eager()
        .spawn(move |_| {
            let ended = Arc::clone(&theirs);
            Builder::new().spawn(move |ctx: &Ctx<(), ()>| {
                ctx.emit(())?;
                let slept = ctx.sleep(Duration::from_secs(3600));
                ended.store(true, Ordering::SeqCst);
                slept
            })
        })
        .unwrap();
    supervised.recv_timeout(LIMIT).unwrap();
    drop(supervised);
    wait_for("the thread attempt to end", || ended.load(Ordering::SeqCst));
}

/// The live processes whose environment holds `STANDBY_MARK=<mark>`.
fn marked(mark: &str) -> Vec<u32> {
    let wanted = format!("STANDBY_MARK={mark}");
    let mut found: Vec<u32> = common::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| var == wanted.as_bytes())
            }) && !gone(*pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// A sleeper process task that carries `mark`.
fn marked_sleeper(mark: &str) -> Process<common::process_tasks::Sleeper> {
    Process::new(3600).env("STANDBY_MARK", mark)
}

/// Waits until exactly two processes carry `mark`, `running` (an attempt's
/// child) and one more (the standby started ahead); returns the standby.
fn standby_beside(mark: &str, running: u32) -> u32 {
    let mut both = Vec::new();
    wait_for("the attempt's child and a standby", || {
        both = marked(mark);
        both.len() == 2 && both.contains(&running)
    });
    *both.iter().find(|&&pid| pid != running).unwrap()
}

/// A mark of this test run's: `name` and this process's id.
fn mark(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Kills, by pid, whatever carries its mark when a test ends, however it
/// ends.
struct KillMarked(String);

impl Drop for KillMarked {
    fn drop(&mut self) {
        for pid in marked(&self.0) {
            common::kill_pid(pid);
        }
    }
}

#[test]
fn a_standby_child_takes_the_next_attempt_and_is_killed_with_the_supervisor() {
    setup();
    let mark = mark("takes-next");
    let _cleanup = KillMarked(mark.clone());
    let theirs = mark.clone();
    let supervised = eager()
        .restart(Restart::Always)
        .standby(true)
        .spawn(move |_| marked_sleeper(&theirs).spawn())
        .unwrap();
    let mut running = supervised.recv_timeout(LIMIT).unwrap();
    for attempt in 2..=3 {
        let standby = standby_beside(&mark, running);
        common::kill_pid(running);
        let next = supervised.recv_timeout(LIMIT).unwrap();
        assert_eq!(next, standby, "attempt {attempt} ran in the standby child");
        assert_eq!(supervised.attempt(), attempt);
        running = next;
    }
    supervised.stop();
    assert_eq!(join_status(&supervised), SupervisedStatus::Stopped);
    drop(supervised);
    wait_for("the attempt and the standby to be gone", || {
        marked(&mark).is_empty()
    });
}

#[test]
fn a_standby_started_otherwise_than_the_next_attempt_is_not_used() {
    setup();
    let mark = mark("started-otherwise");
    let _cleanup = KillMarked(mark.clone());
    let theirs = mark.clone();
    let supervised = eager()
        .restart(Restart::Always)
        .standby(true)
        .spawn(move |attempt| {
            marked_sleeper(&theirs)
                .env("STANDBY_ATTEMPT", attempt.number().to_string())
                .spawn()
        })
        .unwrap();
    let first = supervised.recv_timeout(LIMIT).unwrap();
    let standby = standby_beside(&mark, first);
    common::kill_pid(first);
    let second = supervised.recv_timeout(LIMIT).unwrap();
    assert_ne!(second, standby, "started with another environment");
    wait_for("the unfit standby to be killed", || gone(standby));
    supervised.kill();
    assert!(join(supervised).is_killed());
    wait_for("every child to be gone", || marked(&mark).is_empty());
}

/// A group's children: each records its starts; child `failing` fails on
/// its first attempt, the others (and its later attempts) wait until
/// stopped.
fn group(
    strategy: Strategy,
    failing: usize,
) -> (sidetask::SupervisedGroup, Arc<Mutex<Vec<usize>>>) {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut supervisor = eager().strategy(strategy);
    for child in 0..3 {
        let starts = Arc::clone(&starts);
        supervisor = supervisor.child(move |attempt: sidetask::Attempt| {
            starts.lock().unwrap().push(attempt.child());
            let fail = child == failing && attempt.number() == 1;
            Builder::new().spawn(move |ctx: &Ctx| {
                if fail {
                    return Err(Stopped);
                }
                ctx.sleep(Duration::from_secs(3600))
            })
        });
    }
    (supervisor.spawn_group().unwrap(), starts)
}

fn stop_group(group: sidetask::SupervisedGroup) -> sidetask::SupervisedGroupReport {
    group.stop();
    let report = group
        .join_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the group did not end"));
    assert_eq!(report.status(), SupervisedStatus::Stopped);
    report
}

#[test]
fn each_child_of_a_group_keeps_its_own_standby() {
    setup();
    let mark = mark("group");
    let _cleanup = KillMarked(mark.clone());
    let theirs = mark.clone();
    let child = move |_| marked_sleeper(&theirs).spawn();
    let group = eager()
        .restart(Restart::Always)
        .standby(true)
        .child(child.clone())
        .child(child)
        .spawn_group()
        .unwrap();
    wait_for("two attempts and two standbys", || marked(&mark).len() == 4);
    stop_group(group);
    wait_for("every child to be gone", || marked(&mark).is_empty());
}

#[test]
fn one_for_one_restarts_the_failed_child_alone() {
    let (group, starts) = group(Strategy::OneForOne, 1);
    wait_for("the restart", || starts.lock().unwrap().len() == 4);
    assert_eq!(*starts.lock().unwrap(), [0, 1, 2, 1]);
    wait_for("attempt 2 of child 1", || group.attempt(1) == 2);
    assert_eq!((group.attempt(0), group.attempt(2)), (1, 1));
    let report = stop_group(group);
    // The failure, then the three stopped.
    assert_eq!(report.history().len(), 4);
    assert!(!report.history()[0].was_stopped());
    assert!(report.history()[1..].iter().all(|e| e.was_stopped()));
}

#[test]
fn one_for_all_restarts_every_child_in_start_order() {
    let (group, starts) = group(Strategy::OneForAll, 1);
    wait_for("the restarts", || starts.lock().unwrap().len() == 6);
    assert_eq!(*starts.lock().unwrap(), [0, 1, 2, 0, 1, 2]);
    assert_eq!(group.len(), 3);
    let history = group.history();
    // Child 1 failed; children 0 and 2 were stopped for the restart.
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].child(), 1);
    assert!(!history[0].was_stopped());
    assert!(history[1..].iter().all(|e| e.was_stopped()));
    let report = stop_group(group);
    assert!(
        report
            .last()
            .iter()
            .all(|e| e.as_ref().unwrap().number() == 2)
    );
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let (group, starts) = group(Strategy::RestForOne, 1);
    wait_for("the restarts", || starts.lock().unwrap().len() == 5);
    assert_eq!(*starts.lock().unwrap(), [0, 1, 2, 1, 2]);
    let history = group.history();
    assert_eq!(history.len(), 2);
    assert_eq!((history[0].child(), history[1].child()), (1, 2));
    assert!(history[1].was_stopped());
    let report = stop_group(group);
    let last: Vec<u32> = report
        .last()
        .iter()
        .map(|e| e.as_ref().unwrap().number())
        .collect();
    assert_eq!(last, [1, 2, 2]);
}

#[test]
fn a_group_gives_up_as_a_whole_and_stops_every_child() {
    let starts = Arc::new(AtomicU32::new(0));
    let theirs = Arc::clone(&starts);
    // The second child fails only once the first one's body runs, so that
    // the first is stopped in its body (an error), not before it began
    // (cancelled).
    let began = Arc::new(AtomicBool::new(false));
    let first_began = Arc::clone(&began);
    let group = Supervisor::new()
        .strategy(Strategy::OneForOne)
        .backoff(Backoff::none())
        .intensity(3, Duration::from_secs(60))
        .child(move |_| {
            let began = Arc::clone(&first_began);
            Builder::new().spawn(move |ctx: &Ctx| {
                began.store(true, Ordering::SeqCst);
                ctx.sleep(Duration::from_secs(3600))
            })
        })
        .child(move |_| {
            theirs.fetch_add(1, Ordering::SeqCst);
            let began = Arc::clone(&began);
            Builder::new().spawn(move |_: &Ctx| {
                wait_for("the first child to run", || began.load(Ordering::SeqCst));
                Err::<(), _>("broken")
            })
        })
        .spawn_group()
        .unwrap();
    let report = group.join_timeout(LIMIT).unwrap();
    assert!(report.gave_up());
    assert_eq!(starts.load(Ordering::SeqCst), 4);
    let first = report.last()[0].as_ref().unwrap();
    assert!(first.was_stopped());
    assert_eq!(first.kind(), "error");
}

/// The factory takes a remote task as any other (checked when built; the
/// Redis tests run remote tasks).
#[cfg(feature = "redis")]
#[allow(dead_code)]
fn a_remote_task_can_be_supervised(
    client: sidetask::remote::Client,
) -> Result<Supervised<String, Stopped, (), u32>, sidetask::SuperviseError> {
    use sidetask::remote::Remote;
    Supervisor::new()
        .restart(Restart::OnFailure)
        .spawn(move |_| Remote::<common::process_tasks::Sleeper>::new(1).spawn_on(&client))
}

/// Says it runs, then fails at its first message.
struct UpThenFail;

impl NamedTask for UpThenFail {
    const NAME: &'static str = "supervise_up_then_fail";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), ()>, (): ()) -> Result<(), Stopped> {
        ctx.emit(())?;
        let _ = ctx.recv();
        std::process::exit(1)
    }
}

#[test]
fn each_message_fails_at_least_one_process_attempt_and_the_next_one_runs() {
    setup();
    let supervised = eager()
        .spawn(|_| Process::<UpThenFail>::new(()).spawn())
        .unwrap();
    supervised.recv_timeout(LIMIT).unwrap();
    for n in 2..=6 {
        supervised.send(()).unwrap();
        supervised.recv_timeout(LIMIT).unwrap();
        // A child that exits right after it read a message may not have
        // told us it read it: that message goes to the next attempt too
        // (at least once), and fails it as well.
        assert!(supervised.attempt() >= n, "{} < {n}", supervised.attempt());
    }
    supervised.stop();
    assert_eq!(join_status(&supervised), SupervisedStatus::Stopped);
    assert!(supervised.history().len() >= 6);
}

#[test]
fn a_group_whose_children_all_succeed_finishes() {
    let group = eager()
        .strategy(Strategy::OneForAll)
        .child(|_| Builder::new().spawn(|_: &Ctx| Ok::<_, Stopped>(1)))
        .child(|_| Command::new("true").spawn())
        .spawn_group()
        .unwrap();
    let report = group.join_timeout(LIMIT).unwrap();
    assert_eq!(report.status(), SupervisedStatus::Finished);
    assert!(
        report
            .last()
            .iter()
            .all(|e| e.as_ref().unwrap().kind() == "value" && e.as_ref().unwrap().number() == 1)
    );
    assert_eq!(report.history().len(), 2);
}
