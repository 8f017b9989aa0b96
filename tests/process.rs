//! Process tasks: every verb, every way a child can end, the protocol's
//! failures, and no process left behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::process_tasks::*;
use common::{LIMIT, gone, wait_for, within};
use sidetask::{CrashCause, Outcome, Pool, Process, RecvTimeoutError, Status, TryRecvError};

sidetask::test_support!(registry());

fn setup() {
    sidetask::init(registry());
}

fn join<T: Send + 'static, E: Send + 'static, In: Send + 'static, Ev: Send + 'static>(
    task: sidetask::Task<T, E, In, Ev>,
) -> Outcome<T, E> {
    task.join_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("the task did not end within {LIMIT:?}"))
}

#[test]
fn messages_events_and_value_cross_the_boundary() {
    setup();
    let task = Process::<Echo>::new(100).spawn().unwrap();
    assert_eq!(task.name(), Some("echo"));
    for i in 0..50 {
        task.send(i).unwrap();
    }
    for i in 0..50 {
        assert_eq!(task.recv_timeout(LIMIT).unwrap(), i + 100);
    }
    assert_eq!(task.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        task.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    );
    task.try_send(7).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 107);
    task.send_timeout(8, LIMIT).unwrap();
    assert_eq!(task.recv_timeout(LIMIT).unwrap(), 108);
    assert_eq!(task.status(), Status::Running);
    task.close_inbox();
    assert_eq!(join(task).value(), Some(52));
}

#[test]
fn the_childs_pid_differs_and_each_task_has_its_own() {
    setup();
    let a = Process::<Pid>::new(()).spawn().unwrap();
    let b = Process::<Pid>::new(()).spawn().unwrap();
    let (a, b) = (join(a).value().unwrap(), join(b).value().unwrap());
    assert_ne!(a, std::process::id());
    assert_ne!(a, b);
}

#[test]
fn own_error_comes_back_typed() {
    setup();
    let task = Process::<Fail>::new(42).spawn().unwrap();
    assert_eq!(
        join(task).error(),
        Some(Failure {
            code: 42,
            why: "as asked".into()
        })
    );
}

#[test]
fn a_panic_carries_its_message_and_location() {
    setup();
    let task = Process::<Crash>::new(How::Panic).spawn().unwrap();
    let panic = join(task).panic().expect("a panic");
    assert_eq!(panic.message(), "crash test panic");
    let location = panic.location().expect("a location");
    assert!(location.file().ends_with("process_tasks.rs"), "{location}");
    assert!(location.line() > 0);
}

#[test]
fn exit_without_a_result_is_classified_with_stderr() {
    setup();
    let task = Process::<Crash>::new(How::Exit(3)).spawn().unwrap();
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Exited(3));
    assert!(crash.stderr_text().contains("crash: Exit(3)"), "{crash:?}");
    // Its `Debug` shows the stderr tail as text.
    let debug = format!("{crash:?}");
    assert!(
        debug.starts_with(r#"Crash { cause: Exited(3), stderr: ""#),
        "{debug}"
    );
    assert!(debug.contains(r"crash: Exit(3)\n"), "{debug}");
}

#[test]
fn a_bodys_exit_ends_the_task_with_its_code_and_the_child_is_reaped() {
    setup();
    for code in [0, 1, 42] {
        let task = Process::<ExitWithPid>::new(code).spawn().unwrap();
        let pid = task.recv_timeout(LIMIT).unwrap();
        let crash = join(task).crash().expect("a crash");
        assert_eq!(*crash.cause(), CrashCause::Exited(code), "{crash:?}");
        assert!(
            crash
                .stderr_text()
                .contains(&format!("leaving with {code}")),
            "{crash:?}"
        );
        // No zombie left.
        wait_for("the child reaped", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

#[test]
fn abort_and_segfault_are_crashes_by_signal() {
    setup();
    let abort = Process::<Crash>::new(How::Abort).spawn().unwrap();
    let segv = Process::<Crash>::new(How::Segv).spawn().unwrap();
    let abort = join(abort).crash().expect("a crash");
    assert_eq!(*abort.cause(), CrashCause::Signal(6));
    assert!(abort.stderr_text().contains("crash: Abort"));
    let segv = join(segv).crash().expect("a crash");
    assert_eq!(*segv.cause(), CrashCause::Signal(11));
    assert!(segv.to_string().contains("signal 11"));
}

#[test]
fn memory_limit_is_reported_as_out_of_memory() {
    setup();
    let task = Process::<Hog>::new(2048)
        .memory_limit(512 << 20)
        .spawn()
        .unwrap();
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::OutOfMemory, "{crash:?}");
    // Under the limit, the same task succeeds.
    let task = Process::<Hog>::new(16)
        .memory_limit(512 << 20)
        .spawn()
        .unwrap();
    assert_eq!(join(task).value(), Some(16 * 256));
}

#[test]
fn cpu_limit_is_reported() {
    setup();
    let task = Process::<Spin>::new(())
        .cpu_limit(Duration::from_secs(1))
        .spawn()
        .unwrap();
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::CpuLimit);
}

#[test]
fn stop_is_cooperative_first() {
    setup();
    let task = Process::<Sleeper>::new(600).spawn().unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    let began = Instant::now();
    task.stop();
    // Stopping, or already done if this thread lost its core for the
    // moment the stop takes.
    assert!(matches!(task.status(), Status::Stopping | Status::Done));
    // `ctx.sleep` wakes and returns `Err(Stopped)`: the task's own error.
    assert!(join(task).is_error());
    assert!(began.elapsed() < Duration::from_secs(4));
    wait_for("the child to be gone", || gone(pid));
}

#[test]
fn stop_escalates_to_sigterm_after_the_grace_period() {
    setup();
    let task = Process::<Stubborn>::new(())
        .grace_period(Duration::from_millis(100))
        .spawn()
        .unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    task.stop();
    let killed = match join(task) {
        Outcome::Killed(k) => k,
        other => panic!("expected a kill, got {other:?}"),
    };
    assert_eq!(killed.signal(), Some(15));
    assert!(gone(pid));
}

#[test]
fn timeout_stops_and_escalates() {
    setup();
    let began = Instant::now();
    let task = Process::<Stubborn>::new(())
        .timeout(Duration::from_millis(100))
        .grace_period(Duration::from_millis(100))
        .spawn()
        .unwrap();
    assert!(join(task).is_killed());
    assert!(began.elapsed() >= Duration::from_millis(200));
}

#[test]
fn kill_reaches_the_whole_group_and_grandchildren() {
    setup();
    let task = Process::<Grandparent>::new(true).spawn().unwrap();
    let child = task.recv_timeout(LIMIT).unwrap();
    let grandchild_task = task.recv_timeout(LIMIT).unwrap();
    let grandchild_sleep = task.recv_timeout(LIMIT).unwrap();
    task.kill();
    let killed = match join(task) {
        Outcome::Killed(k) => k,
        other => panic!("expected a kill, got {other:?}"),
    };
    assert_eq!(killed.signal(), Some(9));
    let debug = format!("{killed:?}");
    assert!(
        debug.starts_with(r#"Killed { signal: Some(9), stderr: ""#),
        "{debug}"
    );
    assert!(gone(child));
    // The plain program was in the child's group; the process task dies
    // with its parent.
    wait_for("the grandchild program to die", || gone(grandchild_sleep));
    wait_for("the grandchild task to die", || gone(grandchild_task));
}

#[test]
fn a_child_dies_with_its_parent() {
    setup();
    let task = Process::<Grandparent>::new(false).spawn().unwrap();
    let parent = task.recv_timeout(LIMIT).unwrap();
    let child = task.recv_timeout(LIMIT).unwrap();
    assert!(!gone(child));
    // SIGKILL to the parent alone: nothing of ours runs in it any more.
    let pid = rustix::process::Pid::from_raw(parent as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    wait_for("the orphaned child to die", || gone(child));
    // A SIGKILL we did not send is a signal like any other.
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Signal(9));
}

#[test]
fn dropping_the_handle_stops_then_kills() {
    setup();
    let task = Process::<Stubborn>::new(())
        .grace_period(Duration::from_millis(50))
        .spawn()
        .unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    drop(task);
    wait_for("the dropped task's child to die", || gone(pid));
}

#[test]
fn unread_messages_come_back_in_order() {
    setup();
    for _ in 0..20 {
        let task = Process::<ReadOne>::new(()).spawn().unwrap();
        // The task may end (after its one message) before every send: those
        // come back as errors, and the rest through `take_unread`.
        let sent: Vec<String> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map_while(|m| task.send(m.to_string()).ok().map(|()| m.to_string()))
            .collect();
        assert!(task.wait_timeout(LIMIT));
        assert_eq!(task.take_unread().unwrap(), sent[1..]);
        assert_eq!(join(task).value().as_deref(), Some("a"));
    }
}

#[test]
fn unread_messages_come_back_after_a_stop_too() {
    setup();
    // Many messages: some in the child's inbox, some on their way, some
    // still here; none lost, none twice.
    for _ in 0..5 {
        let task = Process::<Sleeper>::new(600)
            .inbox_capacity(4)
            .spawn()
            .unwrap();
        let _pid = task.recv_timeout(LIMIT).unwrap();
        let mut sent = 0;
        while task.try_send(()).is_ok() {
            sent += 1;
        }
        task.stop();
        assert!(task.wait_timeout(LIMIT));
        let unread = task.take_unread().unwrap();
        assert_eq!(unread.len(), sent, "sent {sent}, got back {}", unread.len());
    }
}

#[test]
fn send_after_the_end_gives_the_message_back() {
    setup();
    let task = Process::<ReadOne>::new(()).spawn().unwrap();
    task.send("only".into()).unwrap();
    assert!(task.wait_timeout(LIMIT));
    let err = task.send("late".into()).unwrap_err();
    assert_eq!(err.into_inner(), "late");
}

#[test]
fn fifty_megabytes_of_stderr_do_not_block_and_the_tail_is_kept() {
    setup();
    let task = Process::<Noisy>::new(50).spawn().unwrap();
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Exited(5));
    assert_eq!(crash.stderr_tail().len(), sidetask::STDERR_TAIL);
    assert!(crash.stderr_text().ends_with("9\nthe end\n"));
}

#[test]
fn the_other_verbs_work_across_the_boundary() {
    setup();
    let task = Process::<Echo>::new(1).spawn().unwrap();
    assert!(task.id().as_u64() > 0);
    assert!(!task.is_finished());
    for i in 0..3 {
        task.send(i).unwrap();
    }
    let got: Vec<i64> = task.iter().take(3).collect();
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(task.try_iter().count(), 0);
    task.send(10).unwrap();
    wait_for("an event", || task.try_recv().is_ok());
    let task = match task.try_join() {
        Ok(outcome) => panic!("ended early: {outcome:?}"),
        Err(task) => task,
    };
    task.close_inbox();
    task.wait();
    assert!(task.is_finished());
    assert_eq!(task.status(), Status::Done);
    assert!(task.send(1).is_err());
    let outcome = task.try_join().unwrap_or_else(|_| panic!("not done"));
    assert_eq!(outcome.value(), Some(4));
}

#[test]
fn a_detached_task_runs_on_without_its_handle() {
    setup();
    let task = Process::<Sleeper>::new(1).spawn().unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    task.detach().unwrap();
    // Not stopped by the drop: it sleeps its second out, then ends.
    assert!(!gone(pid));
    wait_for("the detached child to end", || gone(pid));
}

#[test]
fn an_unregistered_task_is_refused_here() {
    setup();
    let err = Process::<Unregistered>::new(()).spawn().unwrap_err();
    assert!(err.is_unknown_task(), "{err}");
    assert!(err.to_string().contains("unregistered"));
    assert_eq!(
        err.to_string(),
        "no task named `unregistered` in the registry given to `sidetask::init`"
    );
}

#[test]
fn a_name_the_child_does_not_know_is_refused_there() {
    setup();
    let err = Process::<Echo>::new(0)
        .env("OMIT_ECHO", "1")
        .spawn()
        .unwrap_err();
    assert!(err.is_unknown_task(), "{err}");
    assert_eq!(
        err.to_string(),
        "no task named `echo` in the registry the child gave to `sidetask::init`"
    );
}

#[test]
fn env_and_working_directory_reach_the_child() {
    setup();
    // `Crash` with `Exit` reports its stderr; the environment decides what
    // the registry holds, which shows the variable arrived.
    let dir = std::env::temp_dir();
    let task = Process::<Pid>::new(())
        .env("SIDETASK_TEST_VAR", "1")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let pid = join(task).value().unwrap();
    assert_ne!(pid, 0);
    let err = Process::<Pid>::new(())
        .current_dir("/no/such/directory")
        .spawn()
        .unwrap_err();
    assert!(err.io_error().is_some(), "{err}");
}

// ---------------------------------------------------------------------------
// Broken protocol: a stand-in child, a shell script, writes bytes into the
// socket (its stdin).

/// A `Ready` frame of protocol version 3: a length of 2, the tag, the version.
const READY: &str = r"\002\000\000\000\000\003";

fn script(name: &str, body: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sidetask-test-{}-{name}.sh", std::process::id()));
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Spawns, retrying while the script is "busy": a child forked by another
/// test in the instant the script was open for writing holds it open until
/// its exec, and executing it meanwhile fails with `ETXTBSY`.
fn spawn_script(
    process: impl Fn() -> Process<Echo>,
) -> Result<sidetask::ProcessTask<Echo>, sidetask::StartError> {
    let deadline = Instant::now() + LIMIT;
    loop {
        match process().spawn() {
            Err(e)
                if e.io_error().and_then(|e| e.raw_os_error()) == Some(26)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

fn protocol_crash(name: &str, body: &str) -> String {
    setup();
    let path = script(name, body);
    let task = spawn_script(|| Process::<Echo>::new(0).program(&path)).unwrap();
    let outcome = within(LIMIT, move || join(task));
    let _ = fs::remove_file(&path);
    match outcome {
        Outcome::Crashed(crash) => match crash.cause() {
            CrashCause::Protocol(why) => why.clone(),
            other => panic!("expected a protocol error, got {other:?}"),
        },
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn a_malformed_frame_ends_the_task() {
    let why = protocol_crash(
        "malformed",
        &format!(r"printf '{READY}\003\000\000\000\377\377\377' >&0; sleep 30"),
    );
    assert!(why.contains("malformed"), "{why}");
}

#[test]
fn an_oversized_frame_ends_the_task_before_allocating() {
    let why = protocol_crash(
        "oversized",
        &format!(r"printf '{READY}\377\377\377\177' >&0; sleep 30"),
    );
    assert!(why.contains("over the maximum"), "{why}");
}

#[test]
fn a_truncated_frame_ends_the_task() {
    let why = protocol_crash(
        "truncated",
        &format!(r"printf '{READY}\144\000\000\000abc' >&0"),
    );
    assert!(why.contains("middle of a frame"), "{why}");
}

#[test]
fn a_frame_of_the_wrong_kind_ends_the_task() {
    // A second `Ready`.
    let why = protocol_crash(
        "wrong-kind",
        &format!(r"printf '{READY}{READY}' >&0; sleep 30"),
    );
    assert!(why.contains("handshake"), "{why}");
}

#[test]
fn a_version_mismatch_fails_the_start() {
    setup();
    let path = script(
        "version",
        r"printf '\002\000\000\000\000\143' >&0; sleep 30",
    );
    let err = spawn_script(|| Process::<Echo>::new(0).program(&path)).unwrap_err();
    let _ = fs::remove_file(&path);
    let why = err.handshake_error().expect("a handshake error");
    assert!(why.contains("version 99"), "{why}");
}

#[test]
fn an_oversized_answer_fails_the_start() {
    setup();
    let path = script("big-answer", r"printf '\377\377\377\177' >&0; sleep 30");
    let err = spawn_script(|| Process::<Echo>::new(0).program(&path)).unwrap_err();
    let _ = fs::remove_file(&path);
    assert!(err.to_string().contains("over the maximum"), "{err}");
}

#[test]
fn a_child_that_never_answers_fails_the_start_within_its_timeout() {
    setup();
    let path = script("silent", "echo 'silent child' >&2; sleep 30");
    let began = Instant::now();
    let err = spawn_script(|| {
        Process::<Echo>::new(0)
            .program(&path)
            .start_timeout(Duration::from_millis(300))
    })
    .unwrap_err();
    let _ = fs::remove_file(&path);
    assert!(began.elapsed() < Duration::from_secs(10));
    let why = err.handshake_error().expect("a handshake error");
    assert!(why.contains("no answer"), "{why}");
    assert!(why.contains("silent child"), "{why}");
}

#[test]
fn a_child_that_exits_at_once_fails_the_start() {
    setup();
    let path = script("quits", "echo 'no init here' >&2; exit 0");
    let err = spawn_script(|| Process::<Echo>::new(0).program(&path)).unwrap_err();
    let _ = fs::remove_file(&path);
    let why = err.handshake_error().expect("a handshake error");
    assert!(why.contains("no init here"), "{why}");
}

#[test]
fn an_oversized_message_is_refused_by_the_send_and_comes_back() {
    setup();
    let task = Process::<ReadOne>::new(()).max_frame(64).spawn().unwrap();
    let err = task.send("x".repeat(1000)).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    assert!(err.to_string().contains("max_frame"), "{err}");
    assert_eq!(err.into_inner(), "x".repeat(1000));
    let err = task.try_send("y".repeat(58)).unwrap_err();
    assert!(err.is_too_large());
    let err = task
        .send_timeout("z".repeat(100), Duration::from_secs(1))
        .unwrap_err();
    assert!(err.is_too_large());
    // The largest that fits a 64-byte frame still goes, and the task goes on.
    task.send("w".repeat(57)).unwrap();
    assert_eq!(join(task).value(), Some("w".repeat(57)));
}

#[test]
fn a_child_that_hangs_on_its_way_out_is_killed_and_its_value_kept() {
    setup();
    let began = Instant::now();
    let task = Process::<SlowExit>::new(())
        .grace_period(Duration::from_millis(100))
        .spawn()
        .unwrap();
    assert_eq!(join(task).value(), Some(7));
    assert!(began.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_kill_in_the_middle_of_a_large_event_is_a_kill() {
    setup();
    for _ in 0..3 {
        let task = Process::<Big>::new(()).outbox_capacity(1).spawn().unwrap();
        assert_eq!(task.recv_timeout(LIMIT).unwrap().len(), 1 << 20);
        // Nobody reads now: the parent waits for outbox room while the child
        // is blocked writing its next event. Whatever the timing, a kill is
        // a kill.
        std::thread::sleep(Duration::from_millis(20));
        task.kill();
        match join(task) {
            Outcome::Killed(k) => assert_eq!(k.signal(), Some(9)),
            other => panic!("expected a kill, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The process pool.

#[test]
fn a_process_pool_reuses_warm_children_and_replaces_crashed_ones() {
    setup();
    let run = Pool::new(2)
        .run_process::<Square, _>((0..100).filter(|n| n % 10 != 3))
        .unwrap();
    let mut pids = std::collections::HashSet::new();
    let mut seen = [false; 100];
    for finished in run.iter() {
        let (square, pid) = finished.outcome.value().expect("a value");
        let n = (0..100u64)
            .filter(|n| n % 10 != 3)
            .nth(finished.index)
            .unwrap();
        assert_eq!(square, n * n);
        assert_eq!(finished.events, [n]);
        assert!(!seen[n as usize]);
        seen[n as usize] = true;
        pids.insert(pid);
    }
    assert_eq!(seen.iter().filter(|s| **s).count(), 90);
    // Two children at a time, reused: far fewer children than tasks.
    assert!(pids.len() <= 4, "{} children for 90 tasks", pids.len());
    assert!(!pids.contains(&std::process::id()));

    // Every tenth task aborts its child; the others still run, on new
    // children.
    let run = Pool::new(2).run_process::<Square, _>(0..50).unwrap();
    let (mut values, mut crashes) = (0, 0);
    for finished in run.iter() {
        match finished.outcome {
            Outcome::Value((square, _)) => {
                assert_eq!(square, (finished.index * finished.index) as u64);
                values += 1;
            }
            Outcome::Crashed(crash) => {
                assert_eq!(finished.index % 10, 3);
                assert_eq!(*crash.cause(), CrashCause::Signal(6));
                crashes += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((values, crashes), (45, 5));
}

#[test]
fn a_process_pool_refuses_an_unregistered_task() {
    setup();
    let err = Pool::new(2)
        .run_process::<Unregistered, _>([()])
        .unwrap_err();
    assert!(err.is_unknown_task());
}

#[test]
fn a_process_pool_can_be_stopped() {
    setup();
    let run = Pool::new(2)
        .run_process::<Sleeper, _>(std::iter::repeat(600))
        .unwrap();
    wait_for("two running tasks", || run.running().len() == 2);
    run.stop_all();
    let outcomes: Vec<_> = within(LIMIT, move || run.iter().map(|f| f.outcome).collect());
    assert!(!outcomes.is_empty());
    // Stopped cooperatively: `ctx.sleep` returns `Err(Stopped)`.
    assert!(
        outcomes.iter().all(|o| o.is_error() || o.is_cancelled()),
        "{outcomes:?}"
    );
}

#[test]
fn a_process_pool_kills_tasks_past_their_timeout_and_carries_on() {
    setup();
    // Stubborn tasks ignore the stop: the timeout escalates to SIGTERM;
    // each killed child is replaced for the next task.
    let run = Pool::new(2)
        .task_timeout(Duration::from_millis(50))
        .grace_period(Duration::from_millis(50))
        .run_process::<Stubborn, _>([(), (), (), ()])
        .unwrap();
    let outcomes: Vec<_> = within(LIMIT, move || run.iter().map(|f| f.outcome).collect());
    assert_eq!(outcomes.len(), 4);
    for outcome in outcomes {
        match outcome {
            Outcome::Killed(k) => assert_eq!(k.signal(), Some(15)),
            other => panic!("expected a kill, got {other:?}"),
        }
    }
}

#[cfg(feature = "tokio")]
#[test]
fn a_process_task_is_awaitable() {
    setup();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let task = Process::<Echo>::new(10).spawn().unwrap();
        task.send_async(1).await.unwrap();
        let event = tokio::time::timeout(LIMIT, task.recv_async())
            .await
            .expect("an event in time")
            .unwrap();
        assert_eq!(event, 11);
        task.close_inbox();
        let outcome = tokio::time::timeout(LIMIT, task.join_async())
            .await
            .expect("the end in time");
        assert_eq!(outcome.value(), Some(1));
    });
}

#[test]
fn a_hundred_megabyte_argument_is_refused_by_its_size() {
    setup();
    let err = Process::<Len>::new("x".repeat(100 << 20))
        .spawn()
        .unwrap_err();
    assert!(err.is_argument_too_large(), "{err}");
    assert_eq!(
        err.to_string(),
        "an argument of 104857604 bytes is over `max_frame` (16 MiB); \
         raise it with `.max_frame(...)`"
    );
}

#[test]
fn an_argument_over_the_maximum_frame_is_refused_before_any_child_starts() {
    setup();
    let err = Process::<Len>::new("x".repeat(100_000))
        .max_frame(10_000)
        .spawn()
        .unwrap_err();
    assert!(err.is_argument_too_large(), "{err}");
    // 100,000 bytes and their length, encoded.
    assert_eq!(
        err.to_string(),
        "an argument of 100003 bytes is over `max_frame` (10000 bytes); \
         raise it with `.max_frame(...)`"
    );
    assert!(err.io_error().is_none());
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::InvalidInput
    );
    // In a pool, on new and warm children alike, it is that task's crash.
    let args = ["a".to_string(), "b".repeat(20 << 20), "c".to_string()];
    let run = Pool::new(1).run_process::<Len, _>(args).unwrap();
    let mut outcomes: Vec<_> = run.iter().map(|f| (f.index, f.outcome)).collect();
    outcomes.sort_by_key(|(i, _)| *i);
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes[0].1.is_value());
    match &outcomes[1].1 {
        Outcome::Crashed(c) => assert!(matches!(c.cause(), CrashCause::Start(_)), "{c:?}"),
        other => panic!("expected a crash, got {other:?}"),
    }
    assert!(outcomes[2].1.is_value());
}

#[test]
fn try_emit_in_a_child_never_waits_for_the_handle() {
    setup();
    let path = std::env::temp_dir().join(format!("sidetask-try-emit-{}", std::process::id()));
    let _ = fs::remove_file(&path);
    let count = 200;
    let task = Process::<TryEmitter>::new((path.to_string_lossy().into_owned(), count))
        .outbox_capacity(1)
        .spawn()
        .unwrap();
    // Nobody reads the events until the body has tried every one: with
    // 12.5 MiB offered to a handle that holds one, most must be refused at
    // once rather than wait.
    wait_for("the body to try every event", || path.exists());
    let events = within(LIMIT, move || {
        let events = task.iter().count() as u32;
        (events, task)
    });
    let (received, task) = events;
    let full = join(task).value().unwrap();
    let _ = fs::remove_file(&path);
    assert!(full > 0, "every event fit");
    assert_eq!(received + full, count, "each event is received or refused");
}

#[test]
fn a_crash_is_classified_from_evidence_not_from_what_the_child_wrote() {
    setup();
    // Text that looks like an allocation failure, and an exit code.
    let says = (
        "memory allocation of 1048576 bytes failed".to_owned(),
        Some(3),
    );
    let crash = join(Process::<Says>::new(says).spawn().unwrap())
        .crash()
        .expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Exited(3), "{crash:?}");
    assert!(crash.stderr_text().contains("memory allocation of"));

    // A SIGKILL we did not send is a signal, not "out of memory".
    let task = Process::<Sleeper>::new(60_000).spawn().unwrap();
    let pid = task.recv_timeout(LIMIT).unwrap();
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let crash = join(task).crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Signal(9), "{crash:?}");
}

#[test]
fn a_warm_childs_crash_carries_only_its_own_tasks_stderr() {
    setup();
    let inputs = vec![
        ("the first task's words".to_owned(), None),
        ("the second task's words".to_owned(), Some(4)),
    ];
    let run = sidetask::Pool::new(1)
        .run_process::<Says, _>(inputs)
        .unwrap();
    let mut finished: Vec<_> = run.iter().collect();
    finished.sort_by_key(|f| f.index);
    let second = finished.pop().unwrap().outcome;
    let crash = second.crash().expect("the second task crashed");
    let tail = crash.stderr_text();
    assert!(tail.contains("the second task's words"), "{tail}");
    assert!(!tail.contains("the first task's words"), "{tail}");
}

#[test]
#[ignore = "run by exit_statuses_lost_to_an_ignored_sigchld_are_explained, with SIGCHLD ignored"]
fn with_sigchld_ignored() {
    if std::env::var_os("SIDETASK_TEST_SIGCHLD").is_none() {
        return;
    }
    setup();
    let crash = join(Process::<Crash>::new(How::Exit(3)).spawn().unwrap())
        .crash()
        .expect("a crash");
    match crash.cause() {
        CrashCause::Protocol(why) => assert!(why.contains("ignores SIGCHLD"), "{why}"),
        other => panic!("expected the lost status explained, got {other:?}"),
    }
    let outcome = sidetask::Command::new("sh")
        .args(["-c", "exit 3"])
        .spawn()
        .unwrap()
        .join_timeout(LIMIT)
        .unwrap();
    let err = outcome.error().expect("an error");
    assert!(err.to_string().contains("ignores SIGCHLD"), "{err}");
}

#[test]
fn exit_statuses_lost_to_an_ignored_sigchld_are_explained() {
    let out = std::process::Command::new("bash")
        .args(["-c", "trap '' CHLD; exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args([
            "with_sigchld_ignored",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SIDETASK_TEST_SIGCHLD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn a_stop_right_after_spawn_is_cooperative_once_the_child_took_the_task() {
    setup();
    const ROUNDS: usize = 30;
    for _ in 0..ROUNDS {
        let task = Process::<Sleeper>::new(600).spawn().unwrap();
        task.stop();
        // The child's body had begun (spawn returns once it took the task):
        // it sees the stop and returns its own `Stopped`, never cancelled.
        let outcome = join(task);
        assert_eq!(
            outcome.error(),
            Some(sidetask::Stopped),
            "a stop right after spawn"
        );
    }
}

#[test]
fn every_event_a_child_was_told_it_sent_is_received_after_a_stop() {
    setup();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let task = Process::<Counter>::new(())
            .outbox_capacity(4)
            .spawn()
            .unwrap();
        // Read a few (more each round), then stop with the outbox full.
        for n in 0..=round as u64 {
            assert_eq!(task.recv_timeout(LIMIT).unwrap(), n);
        }
        task.stop();
        let (rest, task) = within(LIMIT, move || {
            let rest: Vec<u64> = task.iter().collect();
            (rest, task)
        });
        let emitted = join(task).value().unwrap();
        let received = round as u64 + 1 + rest.len() as u64;
        assert_eq!(received, emitted, "round {round}: emitted = received");
        // In order, none twice.
        let expected: Vec<u64> = (round as u64 + 1..emitted).collect();
        assert_eq!(rest, expected, "round {round}");
    }
}

const FAMILIES: &str = "SIDETASK_TEST_FAMILIES";

/// Run only by the test below, in a process of its own that it SIGKILLs:
/// starts process tasks that start programs (one in a session of its own),
/// prints every pid, and waits.
#[test]
#[ignore = "run by a_sigkilled_parent_leaves_no_descendant_of_its_process_tasks"]
fn families_then_wait() {
    if std::env::var_os(FAMILIES).is_none() {
        return;
    }
    setup();
    let mut pids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let task = Process::<Family>::new(()).spawn().unwrap();
        for _ in 0..3 {
            pids.push(task.recv_timeout(LIMIT).unwrap().to_string());
        }
        tasks.push(task);
    }
    println!("PIDS={}", pids.join(","));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_parent_leaves_no_descendant_of_its_process_tasks() {
    let (printed, survivors) = common::survivors_of_a_killed_parent(common::this_test_alone(
        "families_then_wait",
        FAMILIES,
    ));
    assert_eq!(printed, 15);
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
}

#[test]
fn a_child_that_crashes_while_a_copy_of_its_connection_lives_on_still_ends() {
    setup();
    let task = Process::<LeaveACopy>::new(()).spawn().unwrap();
    let copy_holder = task.recv_timeout(LIMIT).unwrap();
    let outcome = task.join_timeout(LIMIT);
    // Clean up by pid, whatever the outcome.
    common::kill_pid(copy_holder);
    let outcome =
        outcome.unwrap_or_else(|_| panic!("no outcome while a copy of the connection lives"));
    let crash = outcome.crash().expect("a crash");
    assert_eq!(*crash.cause(), CrashCause::Signal(6), "{crash:?}");
}
