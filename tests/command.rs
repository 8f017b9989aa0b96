//! Command tasks: lines in and out, exit status, stderr tail, stop
//! escalation, kill, no orphans, and pipes drained whoever reads.

mod common;

use std::time::{Duration, Instant};

use common::{LIMIT, gone, kill_pid, wait_for};
use sidetask::{Command, STDERR_TAIL};

#[test]
fn lines_in_come_back_as_events() {
    let task = Command::new("cat").spawn().unwrap();
    for n in 0..100 {
        task.send(format!("line {n}")).unwrap();
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), format!("line {n}"));
    }
    task.close_inbox();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert!(exit.success());
    assert_eq!(exit.dropped_lines, 0);
}

#[test]
fn exit_code_and_stderr_tail_are_the_outcome() {
    let task = Command::new("sh")
        .args(["-c", "echo to-out; echo oops >&2; exit 3"])
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "to-out");
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert_eq!(exit.code(), Some(3));
    assert!(!exit.success());
    assert_eq!(exit.stderr_text(), "oops\n");
    let debug = format!("{exit:?}");
    assert!(debug.starts_with("Exit { status: "), "{debug}");
    assert!(
        debug.ends_with(r#", stderr: "oops\n", dropped_lines: 0, malformed_lines: 0 }"#),
        "{debug}"
    );
}

#[test]
fn a_stderr_tail_that_is_not_utf8_is_shown_as_lossy_text() {
    let task = Command::new("sh")
        .args(["-c", r"printf 'bad \377 byte\n' >&2"])
        .spawn()
        .unwrap();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert_eq!(exit.stderr_tail, b"bad \xff byte\n");
    assert!(
        format!("{exit:?}").contains("stderr: \"bad \u{fffd} byte\\n\""),
        "{exit:?}"
    );
}

#[test]
fn a_missing_program_fails_to_spawn() {
    let err = Command::new("/nonexistent/program").spawn().unwrap_err();
    assert_eq!(err.io_error().unwrap().kind(), std::io::ErrorKind::NotFound);
    // The text names the program and the operating system's error.
    let os_error = err.io_error().unwrap().to_string();
    assert!(os_error.ends_with("(os error 2)"), "{os_error}");
    assert_eq!(
        err.to_string(),
        format!("could not start program `/nonexistent/program`: {os_error}")
    );
    let io = std::io::Error::from(err);
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(io.to_string().contains("/nonexistent/program"), "{io}");
}

#[test]
fn stop_sends_sigterm_to_the_program() {
    let task = Command::new("sh")
        .args(["-c", "echo ready; exec sleep 100"])
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    let asked = Instant::now();
    task.stop();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert_eq!(exit.signal(), Some(15));
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_program_ignoring_sigterm_gets_sigkill_after_the_grace_period() {
    let task = Command::new("sh")
        .args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .grace_period(Duration::from_millis(300))
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    let asked = Instant::now();
    task.stop();
    // Killed by the escalation: the same outcome as a kill, on every place.
    let outcome = task.join_timeout(LIMIT).unwrap();
    let took = asked.elapsed();
    assert!(outcome.is_killed(), "{outcome:?}");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[test]
fn kill_sends_sigkill_at_once() {
    let task = Command::new("sh")
        .args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .grace_period(Duration::from_secs(60))
        .spawn()
        .unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "ready");
    let asked = Instant::now();
    task.kill();
    // `kill` ends a command as `Killed`, as it ends a process or async task.
    let outcome = task.join_timeout(LIMIT).unwrap();
    match &outcome {
        sidetask::Outcome::Killed(killed) => assert_eq!(killed.signal(), Some(9)),
        other => panic!("expected Killed, got {other:?}"),
    }
    assert!(asked.elapsed() < Duration::from_secs(10));
}

#[test]
fn stopping_kills_grandchildren_too() {
    let task = Command::new("sh")
        .args(["-c", "sleep 100 & echo $!; wait"])
        .spawn()
        .unwrap();
    let grandchild: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    assert!(!gone(grandchild));
    task.stop();
    let _ = task.join_timeout(LIMIT).unwrap();
    wait_for("the grandchild to end", || gone(grandchild));
}

#[test]
fn what_the_program_leaves_behind_is_killed_when_it_exits() {
    let task = Command::new("sh")
        .args(["-c", "sleep 100 & echo $!"])
        .spawn()
        .unwrap();
    let grandchild: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert!(exit.success());
    wait_for("the grandchild to end", || gone(grandchild));
}

#[test]
fn dropping_the_handle_stops_the_program() {
    let task = Command::new("sh")
        .args(["-c", "echo $$; exec sleep 100"])
        .spawn()
        .unwrap();
    let pid: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
    drop(task);
    wait_for("the program to end", || gone(pid));
}

#[test]
fn fifty_megabytes_on_stdout_nobody_reads_never_deadlock() {
    // 500,000 lines of 100 bytes; nobody receives any event.
    let task = Command::new("sh")
        .args([
            "-c",
            "head -c 50000000 /dev/zero | tr '\\0' a | fold -w 100",
        ])
        .outbox_capacity(16)
        .spawn()
        .unwrap();
    let exit = task
        .join_timeout(Duration::from_secs(120))
        .unwrap()
        .value()
        .unwrap();
    assert!(exit.success());
    assert_eq!(exit.dropped_lines, 500_000 - 16);
}

#[test]
fn fifty_megabytes_on_stderr_keep_only_the_tail() {
    let task = Command::new("sh")
        .args([
            "-c",
            "head -c 50000000 /dev/zero | tr '\\0' e >&2; echo -n end >&2",
        ])
        .spawn()
        .unwrap();
    let exit = task
        .join_timeout(Duration::from_secs(120))
        .unwrap()
        .value()
        .unwrap();
    assert!(exit.success());
    assert_eq!(exit.stderr_tail.len(), STDERR_TAIL);
    assert!(exit.stderr_tail.ends_with(b"eeeend"));
}

#[test]
fn a_send_after_the_program_ended_gives_the_line_back() {
    let task = Command::new("true").spawn().unwrap();
    task.wait_timeout(LIMIT);
    assert!(task.is_finished());
    assert_eq!(
        task.send("late".to_string()).unwrap_err().into_inner(),
        "late"
    );
}

#[test]
fn events_can_be_received_while_the_program_runs() {
    let task = Command::new("sh")
        .args([
            "-c",
            "for i in 1 2 3; do echo $i; done; read line; echo got $line",
        ])
        .spawn()
        .unwrap();
    let first: Vec<String> = (0..3).map(|_| task.recv_timeout(LIMIT).unwrap()).collect();
    assert_eq!(first, ["1", "2", "3"]);
    task.send("hello".to_string()).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), "got hello");
    assert!(task.join_timeout(LIMIT).unwrap().value().unwrap().success());
}

#[test]
fn a_command_stopped_before_it_began_leaves_no_process() {
    for _ in 0..20 {
        let task = Command::new("sh")
            .args(["-c", "echo $$; exec sleep 100"])
            .spawn()
            .unwrap();
        task.stop();
        let pid_line = task.recv_timeout(Duration::from_millis(500));
        let outcome = task.join_timeout(LIMIT).unwrap();
        // Either the watcher began and SIGTERM ended the program, or it
        // never began and the program was killed with the task.
        match outcome {
            sidetask::Outcome::Value(exit) => assert!(exit.signal().is_some() || exit.success()),
            other => assert!(other.is_cancelled(), "{other:?}"),
        }
        if let Ok(line) = pid_line {
            let pid: u32 = line.parse().unwrap();
            wait_for("the program to end", || gone(pid));
        }
    }
}

#[cfg(feature = "json")]
#[test]
fn json_lines_round_trip_and_malformed_lines_are_counted() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }
    let task = Command::new("sh")
        .args(["-c", "echo not-json; while read -r l; do echo \"$l\"; done"])
        .spawn_json::<Point, Point>()
        .unwrap();
    task.send(Point { x: 1, y: -2 }).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), Point { x: 1, y: -2 });
    task.close_inbox();
    let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
    assert!(exit.success());
    assert_eq!(exit.malformed_lines, 1);
}

const DROP_AT_EXIT: &str = "SIDETASK_TEST_DROP_AT_EXIT";

/// Run only by the test below, in a process of its own: starts a program,
/// prints its pid, and returns, dropping the handle as the process exits.
#[test]
#[ignore = "run by a_handle_dropped_as_the_program_exits_stops_its_command in a child process"]
fn drop_a_command_at_exit() {
    if std::env::var_os(DROP_AT_EXIT).is_none() {
        return;
    }
    let task = Command::new("sh")
        .args(["-c", "echo $$; exec sleep 1000"])
        .spawn()
        .unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    println!("PID={pid}");
    drop(task);
}

#[test]
fn a_handle_dropped_as_the_program_exits_stops_its_command() {
    let out = common::this_test_alone("drop_a_command_at_exit", DROP_AT_EXIT)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PID="))
        .unwrap_or_else(|| panic!("no pid in {stdout}"))
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let survived = !gone(pid);
    // Clean up whatever the outcome.
    kill_pid(pid);
    assert!(
        !survived,
        "the command's program outlived the program that dropped its handle"
    );
}

#[test]
fn a_program_whose_escaped_child_keeps_stdout_open_still_ends() {
    // The program exits at once; the `sleep` it leaves in a session of its
    // own holds stdout (and stdin) open for ever.
    let task = Command::new("sh")
        .args(["-c", "setsid sleep 1000 <&0 & echo $!; exit 0"])
        .spawn()
        .unwrap();
    let escaped: u32 = task.recv_timeout(LIMIT).unwrap().trim().parse().unwrap();
    let outcome = task.join_timeout(LIMIT);
    kill_pid(escaped);
    let exit = outcome
        .unwrap_or_else(|_| panic!("the task did not end"))
        .value()
        .unwrap();
    assert!(exit.success());
}

#[test]
fn a_write_to_a_pipe_nobody_reads_is_left_once_the_program_exits() {
    // The escaped `sleep` holds stdin without reading it: a large message
    // fills the pipe, and the writer must give up once the program exits.
    let task = Command::new("sh")
        .args(["-c", "setsid sleep 1000 <&0 & echo $!; sleep 0.2; exit 0"])
        .spawn()
        .unwrap();
    let escaped: u32 = task.recv_timeout(LIMIT).unwrap().trim().parse().unwrap();
    let _ = task.send("x".repeat(1 << 20));
    let outcome = task.join_timeout(LIMIT);
    kill_pid(escaped);
    let exit = outcome
        .unwrap_or_else(|_| panic!("the task did not end"))
        .value()
        .unwrap();
    assert!(exit.success());
}

const PROGRAMS: &str = "SIDETASK_TEST_PROGRAMS";

/// Run only by the test below, in a process of its own that it SIGKILLs:
/// starts programs, prints their pids, and waits.
#[test]
#[ignore = "run by a_sigkilled_parent_leaves_no_program_of_its_commands"]
fn programs_then_wait() {
    if std::env::var_os(PROGRAMS).is_none() {
        return;
    }
    let mut pids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let task = Command::new("sh")
            .args(["-c", "echo $$; exec sleep 1000"])
            .spawn()
            .unwrap();
        pids.push(task.recv_timeout(LIMIT).unwrap());
        tasks.push(task);
    }
    println!("PIDS={}", pids.join(","));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_parent_leaves_no_program_of_its_commands() {
    let (printed, survivors) = common::survivors_of_a_killed_parent(common::this_test_alone(
        "programs_then_wait",
        PROGRAMS,
    ));
    assert_eq!(printed, 5);
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
}
