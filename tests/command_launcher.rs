//! Commands in a binary that calls `init`: each program runs under a
//! launcher (this binary again) and behaves as it does without one — its
//! lines, environment, directory, exit status, stderr, stop and kill — while
//! what it starts, wherever it goes, ends with it.

mod common;

use std::time::{Duration, Instant};

use common::process_tasks::registry;
use common::{LIMIT, gone, kill_pid, wait_for};
use sidetask::{Command, Outcome};

sidetask::test_support!(registry());

fn setup() {
    sidetask::init(registry());
}

#[test]
fn a_program_runs_under_a_launcher_that_is_this_binary() {
    setup();
    let task = Command::new("sh")
        .args([
            "-c",
            "echo $PPID; echo ${SIDETASK_LAUNCHER_OF:-unset}; cat >/dev/null",
        ])
        .spawn()
        .unwrap();
    let parent: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    assert_ne!(parent, std::process::id(), "no launcher between");
    // The program waits for its stdin to end: its launcher is there.
    let launcher = std::fs::read_link(format!("/proc/{parent}/exe"));
    let variable = task.recv_timeout(LIMIT).unwrap();
    task.close_inbox();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(launcher.unwrap(), std::env::current_exe().unwrap());
    // The launcher's own variable does not reach the program.
    assert_eq!(variable, "unset");
}

#[test]
fn lines_environment_and_directory_reach_the_program() {
    setup();
    let task = Command::new("sort").arg("-r").spawn().unwrap();
    for word in ["apple", "pear", "fig"] {
        task.send(word.to_owned()).unwrap();
    }
    task.close_inbox();
    let task = common::within(LIMIT, move || {
        assert_eq!(task.iter().collect::<Vec<_>>(), ["pear", "fig", "apple"]);
        task
    });
    assert!(task.join().value().unwrap().success());

    let dir = std::env::temp_dir().canonicalize().unwrap();
    let task = Command::new("sh")
        .args(["-c", "echo $GREETING; pwd"])
        .env("GREETING", "hello there")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "hello there");
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), dir.to_str().unwrap());
    assert!(task.join_timeout(LIMIT).unwrap().value().unwrap().success());
}

#[test]
fn a_missing_program_fails_to_spawn_as_it_does_without_a_launcher() {
    setup();
    let err = Command::new("/nonexistent/program").spawn().unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
    let os_error = err.io_error().unwrap().to_string();
    assert!(os_error.ends_with("(os error 2)"), "{os_error}");
    assert_eq!(
        err.to_string(),
        format!("could not start program `/nonexistent/program`: {os_error}")
    );
}

#[test]
fn the_exit_status_and_the_stderr_tail_come_through() {
    setup();
    let exit = Command::new("sh")
        .args(["-c", "echo oops >&2; exit 3"])
        .spawn()
        .unwrap()
        .join_timeout(LIMIT)
        .unwrap()
        .value()
        .unwrap();
    assert_eq!(exit.code(), Some(3));
    assert_eq!(exit.stderr_text(), "oops\n");

    // A signal from elsewhere is the program's status, not a kill of ours.
    let task = Command::new("sh")
        .args(["-c", "echo $$; exec sleep 1000"])
        .spawn()
        .unwrap();
    let pid: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    kill_pid(pid);
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert_eq!(exit.signal(), Some(9));
}

#[test]
fn stop_terminates_then_kills_and_kill_kills_at_once() {
    setup();
    let task = Command::new("sh")
        .args(["-c", "echo ready; exec sleep 100"])
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    task.stop();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert_eq!(exit.signal(), Some(15));

    // A program that ignores SIGTERM is killed after the grace period.
    let task = Command::new("sh")
        .args(["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
        .grace_period(Duration::from_millis(100))
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    let asked = Instant::now();
    task.stop();
    let outcome = task.join_timeout(LIMIT).unwrap();
    assert!(matches!(outcome, Outcome::Killed(_)), "{outcome:?}");
    assert!(asked.elapsed() < Duration::from_secs(10));

    let task = Command::new("sh")
        .args(["-c", "echo ready; exec sleep 100"])
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    task.kill();
    let outcome = task.join_timeout(LIMIT).unwrap();
    match outcome {
        Outcome::Killed(killed) => assert_eq!(killed.signal(), Some(9)),
        other => panic!("expected a kill, got {other:?}"),
    }
}

#[test]
fn what_a_program_leaves_in_a_session_of_its_own_ends_when_it_exits() {
    setup();
    // The program exits at once; what it left holds its stdout open.
    let task = Command::new("sh")
        .args(["-c", "setsid sleep 1000 & echo $!; exit 0"])
        .spawn()
        .unwrap();
    let left: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    let outcome = task.join_timeout(LIMIT);
    let ended = common::within(LIMIT, move || {
        let deadline = Instant::now() + LIMIT;
        while !gone(left) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        gone(left)
    });
    kill_pid(left);
    assert!(outcome.unwrap().value().unwrap().success());
    assert!(ended, "the program's leftover outlived it");
    wait_for("nothing more", || gone(left));
}
