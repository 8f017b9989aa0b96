//! Task groups and scopes: completion order, stop and kill of all, drop
//! stopping every task (no descendant of a process task left, counted from
//! `/proc`), fail-fast with every other outcome reported, tasks of several
//! places and types in one group, and scopes whose tasks borrow.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::process_tasks::*;
use common::{LIMIT, Pids, gone, wait_for, within};
use sidetask::{Command, Ctx, Group, Outcome, Process, Stopped, TaskId};

sidetask::test_support!(registry());

fn setup() {
    sidetask::init(registry());
}

/// Counts drops: a task holding one has ended when the count moved.
struct Ended(Arc<AtomicUsize>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn join_next_returns_tasks_in_the_order_they_end() {
    let mut group = Group::new();
    let mut gates = Vec::new();
    let mut ids = Vec::new();
    for n in 0..4u32 {
        let (go, wait) = mpsc::channel::<()>();
        gates.push(go);
        ids.push(group.spawn(move |_: &Ctx| {
            wait.recv().map_err(|_| "gate dropped")?;
            Ok::<_, &str>(n)
        }));
    }
    assert_eq!(group.len(), 4);
    assert!(group.try_join_next().is_none());
    for n in [2usize, 0, 3, 1] {
        gates[n].send(()).unwrap();
        let (id, outcome) = group.join_next_timeout(LIMIT).unwrap();
        assert_eq!(id, ids[n]);
        assert_eq!(outcome.value(), Some(n as u32));
        assert!(!group.contains(id));
    }
    assert!(group.is_empty());
    assert!(group.join_next().is_none());
    assert!(
        group
            .join_next_timeout(Duration::ZERO)
            .unwrap_err()
            .is_empty()
    );
}

#[test]
fn join_next_timeout_times_out_while_tasks_run() {
    let mut group: Group<(), Stopped> = Group::new();
    group.spawn(|ctx: &Ctx| ctx.sleep(LIMIT * 2));
    let start = Instant::now();
    let err = group
        .join_next_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(group.len(), 1);
    group.stop_all();
    let (_, outcome) = group.join_next_timeout(LIMIT).unwrap();
    assert_eq!(outcome.error(), Some(Stopped));
}

#[test]
fn stop_all_wakes_every_task_and_each_outcome_is_reported_once() {
    let mut group: Group<u64, Stopped> = Group::new();
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(group.spawn(|ctx: &Ctx<u64>| {
            let mut sum = 0;
            loop {
                sum += ctx.recv()?;
                let _ = sum;
            }
        }));
    }
    group.stop_all();
    let joined = within(LIMIT, move || group.join_all());
    assert!(!joined.is_success(), "a stopped task's error is a failure");
    let mut seen: Vec<TaskId> = joined.outcomes().iter().map(|(id, _)| *id).collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    assert!(
        joined
            .outcomes()
            .iter()
            .all(|(_, o)| o.as_error() == Some(&Stopped) || o.is_cancelled())
    );
}

#[test]
fn dropping_a_group_stops_every_task_in_it() {
    let ended = Arc::new(AtomicUsize::new(0));
    let mut group: Group<(), Stopped> = Group::new();
    for _ in 0..20 {
        let guard = Ended(ended.clone());
        group.spawn(move |ctx: &Ctx| {
            let _guard = guard;
            ctx.sleep(LIMIT * 2)
        });
    }
    drop(group);
    wait_for("every task of the dropped group to end", || {
        ended.load(Ordering::SeqCst) == 20
    });
}

#[test]
fn a_detached_task_outlives_its_group() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (go, wait) = mpsc::channel::<()>();
    let mut group: Group<(), &str> = Group::new();
    let guard = Ended(ended.clone());
    let saw_stop = stopped.clone();
    let (began, running) = mpsc::channel::<()>();
    let id = group.spawn(move |ctx: &Ctx| {
        let _guard = guard;
        began.send(()).map_err(|_| "test gone")?;
        // Blocks outside its context (a stop does not wake it), then tells
        // whether a stop was asked for meanwhile: a stop is a flag set at
        // once by whoever asks.
        wait.recv().map_err(|_| "gate dropped")?;
        if ctx.stopped() {
            saw_stop.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    running.recv_timeout(LIMIT).unwrap();
    assert!(group.detach(id));
    assert!(!group.detach(id));
    assert!(group.is_empty());
    drop(group);
    go.send(()).unwrap();
    wait_for("the detached task to end", || {
        ended.load(Ordering::SeqCst) == 1
    });
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        0,
        "the group's drop stopped it"
    );
}

#[test]
fn fail_fast_stops_the_others_and_reports_every_outcome() {
    let mut group = Group::fail_fast();
    assert!(group.is_fail_fast());
    let (failed, fail) = mpsc::channel::<()>();
    let mut sleepers = Vec::new();
    for _ in 0..5 {
        sleepers.push(group.spawn(|ctx: &Ctx| {
            ctx.sleep(LIMIT * 2).map_err(|e| e.to_string())?;
            Ok::<u32, String>(0)
        }));
    }
    let quick = group.spawn(|_: &Ctx| Ok::<u32, String>(7));
    let failing = group.spawn(move |_: &Ctx| {
        fail.recv().map_err(|_| "gate dropped".to_string())?;
        Err::<u32, String>("broken".into())
    });
    // The quick one ends first, on its own.
    let (id, outcome) = group.join_next_timeout(LIMIT).unwrap();
    assert_eq!((id, outcome.value()), (quick, Some(7)));
    failed.send(()).unwrap();
    let joined = within(LIMIT, move || group.join_all());
    let (first, outcome) = joined.first_failure().unwrap();
    assert_eq!(first, failing);
    assert_eq!(outcome.as_error().map(String::as_str), Some("broken"));
    // The first failure, then each stopped sleeper, all reported.
    assert_eq!(joined.outcomes().len(), 6);
    assert_eq!(joined.outcomes()[0].0, failing);
    let mut stopped: Vec<TaskId> = joined.outcomes()[1..].iter().map(|(id, _)| *id).collect();
    stopped.sort();
    sleepers.sort();
    assert_eq!(stopped, sleepers);
    for (_, outcome) in &joined.outcomes()[1..] {
        // A sleeper woken by the stop returns `Stopped` (as a `String`).
        assert!(outcome.is_error() || outcome.is_cancelled(), "{outcome:?}");
    }
    assert!(joined.into_values().is_err());
}

#[test]
fn a_panic_fails_fast_and_a_task_put_in_afterwards_is_stopped_at_once() {
    let mut group: Group<(), Stopped> = Group::fail_fast();
    let panicking = group.spawn(|_: &Ctx| -> Result<(), Stopped> { panic!("boom") });
    wait_for("the panic to be recorded", || {
        group.first_failure().is_some()
    });
    assert_eq!(group.first_failure(), Some(panicking));
    let late = group.spawn(|ctx: &Ctx| ctx.sleep(LIMIT * 2));
    let joined = within(LIMIT, move || group.join_all());
    assert_eq!(joined.outcomes().len(), 2);
    let (first, outcome) = joined.first_failure().unwrap();
    assert_eq!(first, panicking);
    assert_eq!(outcome.as_panic().unwrap().message(), "boom");
    let (_, late_outcome) = joined
        .outcomes()
        .iter()
        .find(|(id, _)| *id == late)
        .unwrap();
    assert!(late_outcome.is_cancelled() || late_outcome.as_error() == Some(&Stopped));
}

#[test]
fn a_group_without_fail_fast_lets_the_others_run_after_a_failure() {
    let mut group: Group<u32, String> = Group::new();
    let (go, wait) = mpsc::channel::<()>();
    let failing = group.spawn(|_: &Ctx| Err("no".to_string()));
    let waiting = group.spawn(move |_: &Ctx| {
        wait.recv().map_err(|e| e.to_string())?;
        Ok(5)
    });
    let (id, outcome) = group.join_next_timeout(LIMIT).unwrap();
    assert_eq!(id, failing);
    assert!(outcome.is_error());
    go.send(()).unwrap();
    let (id, outcome) = group.join_next_timeout(LIMIT).unwrap();
    assert_eq!((id, outcome.value()), (waiting, Some(5)));
    assert_eq!(group.first_failure(), Some(failing));
}

#[test]
fn tasks_of_several_places_and_types_join_as_one_type() {
    setup();
    #[derive(Debug, PartialEq)]
    enum Done {
        Thread(u64),
        Process(String),
        Command(Option<i32>),
    }
    let mut group: Group<Done, String> = Group::new();
    let thread = group.insert_with(sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>(3u64)), |o| {
        o.map(Done::Thread).map_error(|e| e.to_string())
    });
    let process = group.insert_with(Process::<Sleeper>::new(0).spawn().unwrap(), |o| {
        o.map(Done::Process).map_error(|e| e.to_string())
    });
    let command = group.insert_with(
        Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap(),
        |o| {
            o.map(|exit| Done::Command(exit.code()))
                .map_error(|e| e.to_string())
        },
    );
    let mut got = Vec::new();
    while let Ok((id, outcome)) = group.join_next_timeout(LIMIT) {
        got.push((id, outcome.value().unwrap()));
    }
    got.sort_by_key(|(id, _)| *id);
    let mut want = vec![
        (thread, Done::Thread(3)),
        (process, Done::Process("slept".into())),
        (command, Done::Command(Some(3))),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(got, want);
}

#[test]
fn kill_all_kills_process_tasks_that_ignore_stops() {
    setup();
    let mut group: Group<(), Stopped> = Group::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let task = Process::<Stubborn>::new(())
            .grace_period(LIMIT)
            .spawn()
            .unwrap();
        pids.push(task.recv_timeout(LIMIT).unwrap());
        group.insert(task);
    }
    let pids = Pids(pids);
    group.kill_all();
    let joined = within(LIMIT, move || group.join_all());
    assert!(joined.outcomes().iter().all(|(_, o)| o.is_killed()));
    assert_eq!(pids.survivors(), Vec::<u32>::new());
}

#[test]
fn dropping_a_group_of_process_tasks_leaves_no_descendant() {
    setup();
    let mut group: Group<(), String> = Group::new();
    let mut pids = Vec::new();
    for _ in 0..4 {
        // Each child starts a process task of its own and a `sleep`, and
        // reports the three pids; then it ignores stops.
        let task = Process::<Grandparent>::new(true)
            .grace_period(Duration::from_millis(100))
            .spawn()
            .unwrap();
        for _ in 0..3 {
            pids.push(task.recv_timeout(LIMIT).unwrap());
        }
        group.insert(task);
    }
    let pids = Pids(pids);
    assert!(pids.0.iter().all(|&p| !gone(p)));
    drop(group);
    let left = pids.survivors();
    assert!(left.is_empty(), "left behind: {left:?} of {:?}", pids.0);
}

#[test]
fn many_tasks_each_joined_exactly_once() {
    const N: u64 = 2000;
    let mut group: Group<u64, Stopped> = Group::new();
    let mut want = 0;
    for n in 0..N {
        want += n;
        group.spawn(move |_: &Ctx| Ok(n));
    }
    let mut seen = std::collections::HashSet::new();
    let mut sum = 0;
    while let Some((id, outcome)) = group.join_next() {
        assert!(seen.insert(id), "{id:?} joined twice");
        sum += outcome.value().unwrap();
    }
    assert_eq!(seen.len() as u64, N);
    assert_eq!(sum, want);
}

#[test]
fn tasks_that_end_before_they_are_put_in_are_joined() {
    let mut group: Group<u32, Stopped> = Group::new();
    let task = sidetask::spawn(|_: &Ctx| Ok(9));
    task.wait();
    let id = group.insert(task);
    assert_eq!(
        group.try_join_next().map(|(i, o)| (i, o.value())),
        Some((id, Some(9)))
    );
    // A task built and not started is started when put in.
    let built = sidetask::Builder::new().build(|_: &Ctx| Ok(10));
    let id = group.insert(built);
    assert_eq!(
        group.join_next_timeout(LIMIT).map(|(i, o)| (i, o.value())),
        Ok((id, Some(10)))
    );
}

#[cfg(feature = "tokio")]
#[test]
fn join_next_async_awaits_each_task() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sum = rt.block_on(async {
        let mut group: Group<u64, Stopped> = Group::new();
        for n in 1..=10u64 {
            group.insert(sidetask::spawn_async(
                move |_: sidetask::AsyncCtx| async move { Ok(n) },
            ));
            group.spawn(move |_: &Ctx| Ok(n * 100));
        }
        let mut sum = 0;
        while let Some((_, outcome)) = group.join_next_async().await {
            sum += outcome.value().unwrap();
        }
        sum
    });
    assert_eq!(sum, 55 + 5500);
}

#[test]
fn a_scope_borrows_and_waits_for_every_task() {
    let mut numbers = vec![1u64, 2, 3, 4, 5, 6];
    let counted = AtomicUsize::new(0);
    let (left, right) = numbers.split_at_mut(3);
    let total = sidetask::scope(|s| {
        let a = s.spawn(|_: &Ctx| {
            for n in left.iter_mut() {
                *n *= 10;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Stopped>(left.iter().sum::<u64>())
        });
        // Its handle dropped: the scope still waits for it.
        let _ = s.spawn(|ctx: &Ctx| {
            ctx.sleep(Duration::from_millis(20))?;
            for n in right.iter_mut() {
                *n *= 100;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Stopped>(())
        });
        a.join().value().unwrap()
    });
    assert_eq!(total, 60);
    assert_eq!(counted.load(Ordering::SeqCst), 2);
    assert_eq!(numbers, [10, 20, 30, 400, 500, 600]);
}

#[test]
fn a_scoped_task_may_spawn_into_its_scope() {
    let hits = Mutex::new(Vec::new());
    sidetask::scope(|s| {
        let _ = s.spawn(|_: &Ctx| {
            for n in 0..5 {
                let hits = &hits;
                let _ = s.spawn(move |_: &Ctx| {
                    hits.lock().unwrap().push(n);
                    Ok::<_, Stopped>(())
                });
            }
            Ok::<_, Stopped>(())
        });
    });
    let mut hits = hits.into_inner().unwrap();
    hits.sort();
    assert_eq!(hits, [0, 1, 2, 3, 4]);
}

#[test]
fn a_scope_panics_after_its_tasks_end_when_an_unjoined_task_panicked() {
    let ended = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sidetask::scope(|s| {
            let _ = s.spawn(|_: &Ctx| -> Result<(), Stopped> { panic!("scoped boom") });
            let _ = s.spawn(|ctx: &Ctx| {
                ctx.sleep(Duration::from_millis(20))?;
                ended.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Stopped>(())
            });
        })
    }));
    assert!(result.is_err());
    assert_eq!(
        ended.load(Ordering::SeqCst),
        1,
        "the scope waited for the other"
    );
    // A joined panic is the caller's, not the scope's.
    let outcome = sidetask::scope(|s| {
        s.spawn(|_: &Ctx| -> Result<(), Stopped> { panic!("joined boom") })
            .join()
    });
    assert_eq!(outcome.as_panic().unwrap().message(), "joined boom");
}

#[test]
fn a_scoped_task_can_be_stopped_and_talked_to() {
    let log = Mutex::new(Vec::new());
    sidetask::scope(|s| {
        let task = s.spawn(|ctx: &Ctx<u32, u32>| {
            while let Ok(n) = ctx.recv() {
                log.lock().unwrap().push(n);
                ctx.emit(n * 2)?;
            }
            Ok::<_, Stopped>(())
        });
        task.send(4).unwrap();
        assert_eq!(task.recv_timeout(LIMIT), Ok(8));
        task.stop();
        let task = task.join_timeout(LIMIT).map_err(|_| "not ended").unwrap();
        assert!(task.is_value() || task.is_error());
    });
    assert_eq!(*log.lock().unwrap(), [4]);
}

#[test]
fn outcome_map_keeps_every_other_case() {
    let o: Outcome<u32, String> = Outcome::Cancelled;
    assert!(o.map(|n| n + 1).is_cancelled());
    let o: Outcome<u32, String> = Outcome::Error("e".into());
    assert_eq!(o.map(|n| n + 1).map_error(|e| e.len()).error(), Some(1));
}

#[test]
fn a_task_in_a_group_never_waits_to_emit_events_nobody_reads() {
    let mut group: Group<(usize, usize), Stopped> = Group::new();
    group.spawn(|ctx: &Ctx<(), u32>| {
        let (mut kept, mut given_back) = (0, 0);
        for n in 0..10_000 {
            match ctx.emit(n) {
                Ok(()) => kept += 1,
                Err(_) => given_back += 1,
            }
        }
        Ok((kept, given_back))
    });
    let (_, outcome) = group.join_next_timeout(LIMIT).unwrap();
    let (kept, given_back) = outcome.value().unwrap();
    assert_eq!(kept + given_back, 10_000);
    assert!(given_back > 0);
}

/// A task already waiting for room in its outbox when it is put in a group
/// (where nobody reads its events) gives that event back then, rather than
/// wait for ever.
#[test]
fn a_task_waiting_to_emit_when_put_in_a_group_gives_its_event_back() {
    // The body's thread, as `/proc/self/task/<tid>`, once its outbox is full.
    let thread = Arc::new(Mutex::new(None));
    let theirs = Arc::clone(&thread);
    let task = sidetask::Builder::new()
        .outbox_capacity(1)
        .spawn(move |ctx: &Ctx<(), u32>| {
            ctx.emit(0)?;
            let me = std::fs::read_link("/proc/thread-self").expect("this thread's /proc entry");
            *theirs.lock().unwrap() = Some(std::path::Path::new("/proc").join(me));
            // Waits for room: nobody reads.
            Ok::<_, Stopped>(ctx.emit(1).is_err())
        })
        .unwrap();
    wait_for("the body to wait for room in its outbox", || {
        let Some(path) = thread.lock().unwrap().clone() else {
            return false;
        };
        // Parked (sleeping), past its spin.
        std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit(')')
                    .next()
                    .map(|rest| rest.trim_start().starts_with('S'))
            })
            .unwrap_or(false)
    });
    let mut group: Group<bool, Stopped> = Group::new();
    group.insert(task);
    let (_, outcome) = group.join_next_timeout(LIMIT).unwrap();
    assert_eq!(
        outcome.value(),
        Some(true),
        "the second event was given back"
    );
}

#[cfg(feature = "tokio")]
#[test]
fn join_next_refuses_to_hang_on_the_runtime_its_async_tasks_need() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut group: Group<u64, Stopped> = Group::new();
        group.insert(sidetask::spawn_async(|_: sidetask::AsyncCtx| async move {
            Ok(1)
        }));
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.join_next()));
        let message = refused.unwrap_err();
        let message = message
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| message.downcast_ref::<String>().map(String::as_str))
            .unwrap_or_default();
        assert!(message.contains("join_next_async"), "{message}");
        // The awaitable twin gets it.
        let (_, outcome) = group.join_next_async().await.unwrap();
        assert_eq!(outcome.value(), Some(1));
    });
}
