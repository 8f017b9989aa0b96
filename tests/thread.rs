//! Every verb of a thread task, each error path, and stop waking each blocking call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sidetask::{
    Builder, Ctx, CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError, Outcome,
    RecvError, RecvTimeoutError, SendTimeoutError, Status, Stopped, TryEmitError, TryRecvError,
    TrySendError,
};

/// Generous bound for things that should happen "at once".
const PROMPT: Duration = Duration::from_secs(1);
/// Bound for a whole operation that must not hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `cond` holds, failing the test after [`DEADLINE`].
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// Spawns a task and returns once its body has begun, so that a stop
/// reaches the body rather than cancelling it.
fn spawn_begun<T, E, In, Ev>(
    body: impl FnOnce(&Ctx<In, Ev>) -> Result<T, E> + Send + 'static,
) -> sidetask::Task<T, E, In, Ev>
where
    T: Send + 'static,
    E: Send + 'static,
    In: Send + 'static,
    Ev: Send + 'static,
{
    let began = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&began);
    let task = sidetask::spawn(move |ctx: &Ctx<In, Ev>| {
        flag.store(true, Ordering::SeqCst);
        body(ctx)
    });
    wait_until("the body to begin", || began.load(Ordering::SeqCst));
    task
}

#[test]
fn spawn_returns_value() {
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>("done."));
    assert_eq!(task.join().value(), Some("done."));
}

#[test]
fn own_error_is_its_own_case() {
    let task = sidetask::spawn(|_: &Ctx| Err::<(), _>("bad input".to_string()));
    let outcome = task.join();
    assert!(outcome.is_error());
    assert_eq!(outcome.error().as_deref(), Some("bad input"));
}

#[test]
fn panic_carries_message_and_location() {
    let task = sidetask::spawn(|_: &Ctx| -> Result<(), ()> {
        let args: Vec<&str> = Vec::new();
        println!("{}", args[0]);
        Ok(())
    });
    let outcome = task.join();
    let panic = outcome.panic().expect("a panic");
    assert!(
        panic.message().contains("index out of bounds"),
        "{}",
        panic.message()
    );
    let location = panic.location().expect("a location");
    assert!(location.file().ends_with("thread.rs"), "{location}");
    assert!(location.line() > 0);
}

#[test]
fn a_panics_debug_shows_its_message_and_location() {
    let task = sidetask::spawn(|_: &Ctx| -> Result<(), ()> { panic!("boom") });
    let outcome = task.join();
    let location = outcome
        .as_panic()
        .and_then(|p| p.location())
        .expect("a location")
        .to_string();
    assert!(location.starts_with("tests/thread.rs:"), "{location}");
    assert_eq!(
        format!("{outcome:?}"),
        format!(r#"Panicked(Panic {{ message: "boom", location: Some({location}) }})"#)
    );
}

#[test]
fn outcome_and_task_error_accessors_agree() {
    // Borrowing: `as_*` on both.
    let outcome = sidetask::spawn(|_: &Ctx| Err::<(), _>("no luck")).join();
    assert_eq!(outcome.as_error(), Some(&"no luck"));
    assert!(outcome.as_panic().is_none());
    assert!(outcome.as_killed().is_none());
    assert!(outcome.as_crash().is_none());
    let err = outcome.into_result().unwrap_err();
    assert_eq!(err.as_error(), Some(&"no luck"));
    assert!(err.as_panic().is_none());
    assert!(err.as_killed().is_none());
    assert!(err.as_crash().is_none());
    // Taking: the nouns on both.
    assert_eq!(err.error(), Some("no luck"));

    let panicking = || sidetask::spawn(|_: &Ctx| -> Result<(), ()> { panic!("boom") });
    let outcome = panicking().join();
    assert_eq!(
        outcome.as_panic().map(sidetask::Panic::message),
        Some("boom")
    );
    assert!(outcome.as_error().is_none());
    let err = outcome.into_result().unwrap_err();
    assert_eq!(err.as_panic().map(sidetask::Panic::message), Some("boom"));
    assert!(err.as_error().is_none());
    assert_eq!(err.panic().expect("a panic").message(), "boom");
    assert_eq!(
        panicking().join().panic().expect("a panic").message(),
        "boom"
    );

    let outcome = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(1)).join();
    assert!(outcome.killed().is_none());
    let cancelled = Builder::new().build(|_: &Ctx| Ok::<_, ()>(1));
    cancelled.stop();
    let err = cancelled.join().into_result().unwrap_err();
    assert!(err.is_cancelled());
    assert!(err.crash().is_none());
}

#[test]
fn panic_payload_can_be_resumed_by_the_caller_only() {
    let task = sidetask::spawn(|_: &Ctx| -> Result<(), ()> { std::panic::panic_any(17u32) });
    let outcome = task.join();
    // Reaching here means the panic did not cross into this thread.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| outcome.unwrap()));
    let payload = caught.expect_err("unwrap resumes the panic");
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
}

#[test]
fn into_result_tells_failures_apart() {
    let err = sidetask::spawn(|_: &Ctx| Err::<(), _>(std::fmt::Error))
        .join()
        .into_result()
        .unwrap_err();
    assert!(err.is_error() && !err.is_panic() && !err.is_cancelled());
    assert_eq!(
        err.to_string(),
        "task failed: an error occurred when formatting an argument"
    );
    assert!(std::error::Error::source(&err).is_some());
    let err = sidetask::spawn(|_: &Ctx| -> Result<(), ()> { panic!("boom") })
        .join()
        .into_result()
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.into_panic().unwrap().message(), "boom");
}

#[test]
fn build_then_start_keeps_messages_in_order() {
    let task = Builder::new().build(|ctx: &Ctx<u32>| {
        let mut got = Vec::new();
        while let Ok(n) = ctx.try_recv() {
            got.push(n);
        }
        Ok::<_, ()>(got)
    });
    assert_eq!(task.status(), Status::NotStarted);
    for n in 0..10 {
        task.send(n).unwrap();
    }
    task.start().unwrap();
    assert!(task.start().unwrap_err().is_already_started());
    assert_eq!(task.join().value(), Some((0..10).collect()));
}

#[test]
fn join_of_an_unstarted_task_cancels_it() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let task = Builder::new().build(move |_: &Ctx| {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, ()>(())
    });
    task.send(()).unwrap();
    let outcome = task.join();
    assert!(outcome.is_cancelled());
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn stop_before_start_cancels_and_gives_messages_back() {
    let task = Builder::new().build(|ctx: &Ctx<u8>| ctx.recv().map_err(Stopped::from));
    task.send(1).unwrap();
    task.send(2).unwrap();
    task.stop();
    assert_eq!(task.status(), Status::Done);
    assert!(task.start().unwrap_err().is_already_started());
    assert_eq!(task.take_unread(), Some(vec![1, 2]));
    assert!(task.join().is_cancelled());
}

#[test]
fn status_moves_through_its_states() {
    let gate = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&gate);
    let task = Builder::new().build(move |ctx: &Ctx| {
        while !ctx.stopped() {
            std::thread::yield_now();
        }
        while !seen.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        Ok::<_, ()>(())
    });
    assert_eq!(task.status(), Status::NotStarted);
    task.start().unwrap();
    assert_eq!(task.status(), Status::Running);
    task.stop();
    assert_eq!(task.status(), Status::Stopping);
    assert!(!task.is_finished());
    gate.store(true, Ordering::SeqCst);
    task.wait();
    assert_eq!(task.status(), Status::Done);
    assert!(task.is_finished());
}

#[test]
fn stop_wakes_recv_at_once() {
    let task = spawn_begun(|ctx: &Ctx<u8>| ctx.recv());
    std::thread::sleep(Duration::from_millis(50)); // let it park, not just spin
    let asked = Instant::now();
    task.stop();
    let outcome = task.join();
    assert!(asked.elapsed() < PROMPT, "took {:?}", asked.elapsed());
    assert_eq!(outcome.error(), Some(CtxRecvError::Stopped));
}

#[test]
fn stop_wakes_a_long_recv_timeout_at_once() {
    // A 10 s timeout that must end within 1 s of stop: no polling interval.
    let task = spawn_begun(|ctx: &Ctx<u8>| ctx.recv_timeout(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    task.stop();
    let outcome = task.join();
    assert!(asked.elapsed() < PROMPT, "took {:?}", asked.elapsed());
    assert_eq!(outcome.error(), Some(CtxRecvTimeoutError::Stopped));
}

#[test]
fn stop_wakes_sleep_at_once() {
    let task = spawn_begun(|ctx: &Ctx| ctx.sleep(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    task.stop();
    let outcome = task.join();
    assert!(asked.elapsed() < PROMPT, "took {:?}", asked.elapsed());
    assert_eq!(outcome.error(), Some(Stopped));
}

#[test]
fn stop_wakes_emit_on_a_full_outbox_and_gives_the_event_back() {
    let blocked = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&blocked);
    let task = Builder::new()
        .outbox_capacity(1)
        .spawn(move |ctx: &Ctx<(), u32>| {
            ctx.emit(1).unwrap();
            flag.store(true, Ordering::SeqCst);
            match ctx.emit(2) {
                Err(EmitError::Stopped(event)) => Ok(event),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap();
    wait_until("the outbox to fill", || blocked.load(Ordering::SeqCst));
    std::thread::sleep(Duration::from_millis(50));
    task.stop();
    task.wait();
    // The first event is still readable; the second came back to the task.
    assert_eq!(task.recv(), Ok(1));
    let outcome = task.join();
    assert!(matches!(outcome, Outcome::Value(2)), "{outcome:?}");
}

#[test]
fn sleep_runs_its_time_when_not_stopped() {
    let task = sidetask::spawn(|ctx: &Ctx| {
        let start = Instant::now();
        ctx.sleep(Duration::from_millis(30))?;
        Ok::<_, Stopped>(start.elapsed())
    });
    assert!(task.join().value().unwrap() >= Duration::from_millis(30));
}

#[test]
fn checkpoint_turns_stop_into_an_early_return() {
    let began = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&began);
    let task = sidetask::spawn(
        move |ctx: &Ctx| -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
            flag.store(true, Ordering::SeqCst);
            let mut rounds = 0;
            loop {
                ctx.checkpoint()?;
                rounds += 1;
                std::thread::yield_now();
                if rounds == u32::MAX {
                    return Ok(rounds);
                }
            }
        },
    );
    wait_until("the body to begin", || began.load(Ordering::SeqCst));
    task.stop();
    let err = task.join().error().expect("the task's own error");
    assert!(err.downcast_ref::<Stopped>().is_some());
}

#[test]
fn recv_after_stop_leaves_messages_for_take_unread() {
    let task = Builder::new().build(|ctx: &Ctx<u8>| {
        // Wait for the stop (sleep wakes on it), then look.
        assert!(ctx.sleep(Duration::from_secs(30)).is_err());
        assert_eq!(ctx.try_recv(), Err(CtxTryRecvError::Stopped));
        assert_eq!(ctx.recv(), Err(CtxRecvError::Stopped));
        Ok::<_, ()>(())
    });
    task.send(5).unwrap();
    task.send(6).unwrap();
    // The body sees Stopped (or never runs); either way the two messages
    // come back.
    task.start().unwrap();
    task.stop();
    task.wait();
    assert_eq!(task.take_unread(), Some(vec![5, 6]));
    let outcome = task.join();
    assert!(outcome.is_value() || outcome.is_cancelled());
}

#[test]
fn send_after_end_gives_the_message_back() {
    let task = sidetask::spawn(|_: &Ctx<String>| Ok::<_, ()>(()));
    task.wait();
    let err = task.send("hello".to_string()).unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.into_inner(), "hello");
    assert_eq!(
        task.try_send("again".to_string()),
        Err(TrySendError::Disconnected("again".to_string()))
    );
    let err = task
        .send_timeout("late".to_string(), Duration::from_secs(5))
        .unwrap_err();
    assert!(err.is_disconnected());
    assert_eq!(err.into_inner(), "late");
}

#[test]
fn send_after_stop_gives_the_message_back() {
    let task = sidetask::spawn(|ctx: &Ctx<u8>| ctx.sleep(Duration::from_secs(10)));
    task.stop();
    assert_eq!(task.send(9).unwrap_err().into_inner(), 9);
    let _ = task.join();
}

#[test]
fn a_blocked_send_wakes_when_the_task_stops() {
    let task = Builder::new()
        .inbox_capacity(1)
        .spawn(|ctx: &Ctx<u8>| ctx.sleep(Duration::from_secs(10)))
        .unwrap();
    task.send(1).unwrap();
    assert_eq!(task.try_send(2), Err(TrySendError::Full(2)));
    std::thread::scope(|s| {
        let blocked = s.spawn(|| task.send(3));
        std::thread::sleep(Duration::from_millis(50));
        let asked = Instant::now();
        task.stop();
        assert_eq!(blocked.join().unwrap().unwrap_err().into_inner(), 3);
        assert!(asked.elapsed() < PROMPT);
    });
    task.wait();
    assert_eq!(task.take_unread(), Some(vec![1]));
}

#[test]
fn a_large_inbox_holds_its_capacity_exactly_and_in_order() {
    // Over the size kept in a bounded queue: the inbox grows as messages
    // come, and its capacity is counted apart.
    const CAP: usize = 50_000;
    let task = Builder::new()
        .inbox_capacity(CAP)
        .build(|ctx: &Ctx<[u64; 8]>| Ok::<_, ()>(ctx.iter().map(|m| m[0]).collect::<Vec<_>>()));
    for i in 0..CAP as u64 {
        task.try_send([i; 8]).unwrap();
    }
    assert_eq!(task.try_send([7; 8]), Err(TrySendError::Full([7; 8])));
    task.start().unwrap();
    task.close_inbox();
    let got = task.join().value().unwrap();
    assert_eq!(got, (0..CAP as u64).collect::<Vec<_>>());
}

#[test]
fn send_timeout_times_out_on_a_full_inbox() {
    let task = Builder::new()
        .inbox_capacity(2)
        .spawn(|ctx: &Ctx<u8>| ctx.sleep(Duration::from_secs(10)))
        .unwrap();
    task.send(1).unwrap();
    task.send(2).unwrap();
    let start = Instant::now();
    let err = task.send_timeout(3, Duration::from_millis(30)).unwrap_err();
    assert_eq!(err, SendTimeoutError::Timeout(3));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn events_flow_out_and_end_with_disconnected() {
    let task = sidetask::spawn(|ctx: &Ctx<(), u32>| {
        for n in 0..5 {
            ctx.emit(n).unwrap();
        }
        Ok::<_, ()>(())
    });
    let events: Vec<u32> = task.iter().collect();
    assert_eq!(events, vec![0, 1, 2, 3, 4]);
    assert_eq!(task.recv(), Err(RecvError));
    assert_eq!(task.try_recv(), Err(TryRecvError::Disconnected));
    assert_eq!(
        task.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Disconnected)
    );
    assert!(task.join().is_value());
}

#[test]
fn recv_on_a_finished_tasks_empty_outbox_fails_at_once() {
    let task = sidetask::spawn(|_: &Ctx<(), u8>| Ok::<_, ()>(()));
    task.wait();
    let start = Instant::now();
    assert_eq!(task.recv(), Err(RecvError));
    assert!(start.elapsed() < PROMPT);
}

#[test]
fn try_recv_and_recv_timeout_on_a_quiet_task() {
    let task = sidetask::spawn(|ctx: &Ctx<(), u8>| ctx.sleep(Duration::from_secs(10)));
    assert_eq!(task.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(task.try_iter().count(), 0);
    let start = Instant::now();
    assert_eq!(
        task.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn try_emit_reports_a_full_outbox() {
    let task = Builder::new()
        .outbox_capacity(1)
        .spawn(|ctx: &Ctx<(), u8>| {
            ctx.try_emit(1).unwrap();
            match ctx.try_emit(2) {
                Err(TryEmitError::Full(2)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap();
    assert!(task.join().is_value());
}

#[test]
fn emit_nobody_can_read_fails_instead_of_blocking() {
    let (tx, rx) = std::sync::mpsc::channel();
    let task = Builder::new()
        .outbox_capacity(1)
        .build(move |ctx: &Ctx<(), u8>| {
            let mut refused = None;
            for n in 0..100 {
                if let Err(EmitError::Disconnected(n)) = ctx.emit(n) {
                    refused = Some(n);
                    break;
                }
            }
            tx.send(refused).unwrap();
            Ok::<_, ()>(())
        });
    task.detach().unwrap();
    let refused = rx.recv_timeout(DEADLINE).expect("the task ended its loop");
    assert!(refused.is_some());
}

#[test]
fn ctx_recv_reports_disconnected_when_the_handle_is_detached() {
    let (tx, rx) = std::sync::mpsc::channel();
    let task = Builder::new().build(move |ctx: &Ctx<u8>| {
        let mut got = Vec::new();
        let end = loop {
            match ctx.recv() {
                Ok(n) => got.push(n),
                Err(e) => break e,
            }
        };
        tx.send((got, end)).unwrap();
        Ok::<_, ()>(())
    });
    task.send(1).unwrap();
    task.detach().unwrap();
    let (got, end) = rx.recv_timeout(DEADLINE).unwrap();
    assert_eq!(got, vec![1]);
    assert_eq!(end, CtxRecvError::Disconnected);
}

#[test]
fn drop_stops_the_task() {
    let stopped = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(false));
    let (seen, began) = (Arc::clone(&stopped), Arc::clone(&running));
    let task = sidetask::spawn(move |ctx: &Ctx| {
        began.store(true, Ordering::SeqCst);
        let r = ctx.sleep(Duration::from_secs(30));
        seen.store(r.is_err(), Ordering::SeqCst);
        Ok::<_, ()>(())
    });
    wait_until("the body to begin", || running.load(Ordering::SeqCst));
    drop(task);
    wait_until("the dropped task to see its stop", || {
        stopped.load(Ordering::SeqCst)
    });
}

#[test]
fn detached_task_runs_to_its_end() {
    let finished = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&finished);
    let task = sidetask::spawn(move |ctx: &Ctx| {
        ctx.sleep(Duration::from_millis(20))?;
        count.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Stopped>(())
    });
    task.detach().unwrap();
    wait_until("the detached task to finish", || {
        finished.load(Ordering::SeqCst) == 1
    });
}

#[test]
fn join_timeout_on_a_task_that_never_ends_returns_in_time() {
    let task = sidetask::spawn(|ctx: &Ctx| {
        while !ctx.stopped() {
            std::thread::yield_now();
        }
        Ok::<_, ()>(7)
    });
    let start = Instant::now();
    let task = task.join_timeout(Duration::from_millis(50)).unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < PROMPT * 5,
        "{waited:?}"
    );
    let task = task.try_join().unwrap_err();
    assert!(!task.wait_timeout(Duration::from_millis(1)));
    task.stop();
    assert_eq!(task.join_timeout(DEADLINE).unwrap().value(), Some(7));
}

#[test]
fn try_join_returns_the_outcome_once_done() {
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(3));
    task.wait();
    assert_eq!(task.try_join().unwrap().value(), Some(3));
}

#[test]
fn builder_timeout_asks_the_task_to_stop() {
    let start = Instant::now();
    let task = Builder::new()
        .timeout(Duration::from_millis(50))
        .spawn(|ctx: &Ctx| ctx.sleep(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(task.join().error(), Some(Stopped));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn name_reaches_handle_ctx_and_thread() {
    let task = Builder::new()
        .name("resizer")
        .spawn(|ctx: &Ctx| {
            let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
            Ok::<_, ()>((
                ctx.name().map(str::to_owned),
                comm.trim().to_owned(),
                ctx.id(),
            ))
        })
        .unwrap();
    assert_eq!(task.name(), Some("resizer"));
    let id = task.id();
    let (name, comm, ctx_id) = task.join().value().unwrap();
    assert_eq!(name.as_deref(), Some("resizer"));
    assert_eq!(comm, "resizer");
    assert_eq!(ctx_id, id);
}

#[test]
fn a_blocked_task_does_not_starve_others() {
    let blocked: Vec<_> = (0..4)
        .map(|_| sidetask::spawn(|ctx: &Ctx<u8>| ctx.recv()))
        .collect();
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(1));
    assert_eq!(task.join_timeout(DEADLINE).unwrap().value(), Some(1));
    drop(blocked);
}

#[test]
fn ctx_iter_ends_on_stop() {
    let task = sidetask::spawn(|ctx: &Ctx<u32>| Ok::<_, ()>(ctx.iter().sum::<u32>()));
    for n in 1..=4 {
        task.send(n).unwrap();
    }
    wait_until("the task to read", || task.status() == Status::Running);
    // The stop can overtake messages not read yet: they come back instead.
    task.stop();
    task.wait();
    let unread: u32 = task.take_unread().unwrap().iter().sum();
    // A stop that came before the body began cancels it: it read nothing.
    let read = task.join().value().unwrap_or(0);
    assert_eq!(read + unread, 10);
}

#[test]
fn debug_output_names_the_task() {
    let task = Builder::new().name("dbg").build(|_: &Ctx| Ok::<_, ()>(()));
    let text = format!("{task:?}");
    assert!(
        text.contains("dbg") && text.contains("NotStarted"),
        "{text}"
    );
    let outcome: Outcome<(), ()> = task.join();
    assert_eq!(format!("{outcome:?}"), "Cancelled");
}

#[test]
fn a_timeout_too_large_to_represent_never_fires() {
    let task = Builder::new()
        .timeout(Duration::MAX)
        .spawn(|_: &Ctx| Ok::<_, ()>(1))
        .unwrap();
    assert_eq!(task.join().value(), Some(1));
}

#[test]
fn threads_sharing_a_ctx_keep_their_own_timeouts() {
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    let task = spawn_begun(move |ctx: &Ctx<u8>| {
        std::thread::scope(|s| {
            // One thread waits in recv with no timeout…
            let waiting = s.spawn(|| ctx.recv());
            // (Give it a moment to be waiting; if it is not yet, the timed
            // receive below is merely not contended.)
            std::thread::sleep(Duration::from_millis(20));
            // …and another's short timeout still holds.
            let start = Instant::now();
            let r = ctx.recv_timeout(Duration::from_millis(20));
            let waited = start.elapsed();
            flag.store(true, Ordering::SeqCst);
            let first = waiting.join().unwrap();
            Ok::<_, ()>((r, waited, first))
        })
    });
    // Once the timed receive is over, release the other one.
    wait_until("the timed receive to end", || {
        timed_out.load(Ordering::SeqCst)
    });
    task.send(9).unwrap();
    let (r, waited, first) = task.join_timeout(DEADLINE).unwrap().value().unwrap();
    assert_eq!(r, Err(CtxRecvTimeoutError::Timeout));
    assert!(waited < Duration::from_millis(150), "{waited:?}");
    assert_eq!(first, Ok(9));
}
