//! A parent `SIGKILL`ed with 20 process tasks and 20 commands running,
//! each with descendants in its group, in a session of their own and
//! orphaned by a double fork: nothing of theirs is left, as counted from
//! `/proc` (and cleaned up by pid whatever the outcome).

mod common;

use std::time::Duration;

use common::LIMIT;
use common::process_tasks::*;
use sidetask::{Command, Process};

sidetask::test_support!(registry());

const TASKS: usize = 20;
const FAMILIES: &str = "SIDETASK_TEST_KILLED_PARENT";

/// A program that prints its pid and those of the programs it starts: one
/// in a session of its own holding its pipes, one orphaned into a session
/// of its own (a double fork), and a plain one in its group; then waits.
const SCRIPT: &str = "echo $$; \
    setsid sleep 1000 & echo $!; \
    (setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!); \
    sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; \
    wait";

/// Run only by the test below, in a process of its own that it SIGKILLs:
/// starts the tasks, prints every pid they reported, and waits.
#[test]
#[ignore = "run by a_sigkilled_parent_leaves_nothing_of_its_process_tasks_and_commands"]
fn tasks_then_wait() {
    if std::env::var_os(FAMILIES).is_none() {
        return;
    }
    sidetask::init(registry());
    let mut pids: Vec<String> = Vec::new();
    let mut processes = Vec::new();
    let mut commands = Vec::new();
    for i in 0..TASKS {
        let task = Process::<Escapees>::new(i % 2 == 0).spawn().unwrap();
        for _ in 0..6 {
            pids.push(task.recv_timeout(LIMIT).unwrap().to_string());
        }
        processes.push(task);
        let task = Command::new("sh").args(["-c", SCRIPT]).spawn().unwrap();
        for _ in 0..4 {
            pids.push(task.recv_timeout(LIMIT).unwrap().trim().to_owned());
        }
        commands.push(task);
    }
    println!("PIDS={}", pids.join(","));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_parent_leaves_nothing_of_its_process_tasks_and_commands() {
    let (printed, survivors) =
        common::survivors_of_a_killed_parent(common::this_test_alone("tasks_then_wait", FAMILIES));
    assert_eq!(printed, TASKS * (6 + 4));
    assert!(
        survivors.is_empty(),
        "{} of {printed} survivors: {survivors:?}",
        survivors.len()
    );
}
