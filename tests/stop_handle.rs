//! `StopHandle`: stop, kill and `is_finished` from anywhere, without the
//! task's handle or its types.

mod common;

use std::time::Duration;

use common::LIMIT;
use sidetask::{Command, Ctx, StopHandle, Stopped};

#[test]
fn stops_a_task_from_another_thread() {
    let task = sidetask::spawn(|ctx: &Ctx<(), ()>| {
        ctx.emit(()).ok();
        ctx.sleep(Duration::from_secs(3600))
    });
    task.recv_timeout(LIMIT).unwrap(); // running
    let stopper = task.stop_handle();
    assert_eq!(stopper.id(), task.id());
    assert!(!stopper.is_finished());
    let other = stopper.clone();
    std::thread::spawn(move || other.stop()).join().unwrap();
    let outcome = task.join_timeout(LIMIT).unwrap();
    assert_eq!(outcome.error(), Some(Stopped));
    assert!(stopper.is_finished());
    // After the end (and the handle's drop) its calls do nothing.
    stopper.stop();
    stopper.kill();
}

#[test]
fn handles_of_tasks_of_different_types_fit_in_one_collection() {
    let a = sidetask::spawn(|ctx: &Ctx<u8, String>| Ok::<_, Stopped>(ctx.recv()? * 2));
    let b = sidetask::spawn(|ctx: &Ctx<(), u64>| ctx.sleep(Duration::from_secs(3600)));
    let stoppers: Vec<StopHandle> = vec![a.stop_handle(), b.stop_handle()];
    for s in &stoppers {
        s.stop();
    }
    let (a, b) = (
        a.join_timeout(LIMIT).unwrap(),
        b.join_timeout(LIMIT).unwrap(),
    );
    assert!(a.is_error() || a.is_cancelled(), "{a:?}");
    assert!(b.is_error() || b.is_cancelled(), "{b:?}");
    assert!(stoppers.iter().all(StopHandle::is_finished));
}

#[test]
fn kills_a_command_and_the_outcome_says_killed() {
    let task = Command::new("sh")
        .args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .grace_period(Duration::from_secs(60))
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    let killer = task.stop_handle();
    std::thread::spawn(move || killer.kill()).join().unwrap();
    let outcome = task.join_timeout(LIMIT).unwrap();
    assert!(outcome.is_killed(), "{outcome:?}");
}

#[test]
fn a_stop_handle_does_not_keep_the_task_from_ending() {
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>(7));
    let stopper = task.stop_handle();
    assert_eq!(task.join_timeout(LIMIT).unwrap().value(), Some(7));
    assert!(stopper.is_finished());
    assert!(format!("{stopper:?}").contains("finished: true"));
}
