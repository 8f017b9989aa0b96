//! Async task bodies and the awaitable handle methods (the `tokio` feature):
//! every async method, cancellation of the awaiting futures, threads and
//! async on one handle, kill, runtime shutdown, no emit from a context's
//! clone after the body ended, blocking waits that would never end inside a
//! current-thread runtime panic, and a 10,000-task stress test with counts.

#![cfg(feature = "tokio")]

mod common;

use std::future::{Future, IntoFuture, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use sidetask::{
    AsyncCtx, Builder, Command, Ctx, CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError,
    Outcome, RecvError, RecvTimeoutError, SendTimeoutError, Status, Stopped, Task, TryEmitError,
    TryRecvError,
};

use common::{LIMIT, within};

/// Generous bound for things that should happen "at once".
const PROMPT: Duration = Duration::from_secs(2);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
async fn bounded<F: IntoFuture>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Polls `f` once; `Some` if it completed.
async fn poll_once<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *f).poll(cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        })
    })
    .await
}

/// A small deterministic generator, so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An async echo: every message comes back as an event, until stopped.
fn echo() -> Task<u64, Stopped, u64, u64> {
    sidetask::spawn_async(|ctx: AsyncCtx<u64, u64>| async move {
        let mut seen = 0;
        while let Ok(n) = ctx.recv().await {
            seen += 1;
            if ctx.emit(n).await.is_err() {
                break;
            }
        }
        Ok(seen)
    })
}

// ---------------------------------------------------------------------------
// Async bodies: every outcome.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_body_value_error_and_panic() {
    let value = sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, String>(42) });
    assert_eq!(bounded("value", value).await.value(), Some(42));

    let error = sidetask::spawn_async(|_: AsyncCtx| async { Err::<(), _>("no luck") });
    assert_eq!(bounded("error", error).await.error(), Some("no luck"));

    let panicked = sidetask::spawn_async(|_: AsyncCtx| async {
        tokio::task::yield_now().await;
        if true {
            panic!("async boom");
        }
        Ok::<(), Stopped>(())
    });
    let panic = bounded("panic", panicked).await.panic().expect("a panic");
    assert_eq!(panic.message(), "async boom");
    assert!(
        panic
            .location()
            .expect("a location")
            .file()
            .ends_with("async.rs")
    );

    // A panic while making the future (before the first await) too.
    let early = sidetask::spawn_async(|_: AsyncCtx| -> std::future::Ready<Result<(), Stopped>> {
        panic!("early boom")
    });
    assert_eq!(
        bounded("early panic", early)
            .await
            .panic()
            .unwrap()
            .message(),
        "early boom"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stop_before_first_poll_cancels() {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let task = sidetask::spawn_async(move |_: AsyncCtx| async move {
        flag.store(true, Ordering::SeqCst);
        Ok::<_, Stopped>(())
    });
    // On a current-thread runtime nothing runs until this task awaits.
    task.stop();
    assert_eq!(task.status(), Status::Stopping);
    assert!(bounded("join", task).await.is_cancelled());
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_id_status_and_debug() {
    let task = Builder::new()
        .name("async-named")
        .spawn_async(|ctx: AsyncCtx<(), String>| async move {
            ctx.emit(format!("{} {:?}", ctx.name().unwrap(), ctx.stopped()))
                .await
                .ok();
            ctx.stop_requested().await;
            Ok::<_, Stopped>(ctx.id())
        })
        .unwrap();
    assert_eq!(task.name(), Some("async-named"));
    assert!(task.start().unwrap_err().is_already_started());
    assert_eq!(
        bounded("event", task.recv_async()).await.unwrap(),
        "async-named false"
    );
    assert_eq!(task.status(), Status::Running);
    assert!(format!("{task:?}").contains("async-named"));
    let id = task.id();
    task.stop();
    assert_eq!(bounded("join", task).await.value(), Some(id));
}

// ---------------------------------------------------------------------------
// The async context: every method, and stop waking each.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_recv_emit_round_trip() {
    let task = echo();
    for n in 0..1000 {
        bounded("send", task.send_async(n)).await.unwrap();
        assert_eq!(bounded("recv", task.recv_async()).await, Ok(n));
    }
    task.stop();
    assert_eq!(bounded("join", task).await.value(), Some(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_wakes_ctx_recv_sleep_stop_requested_and_emit() {
    // recv
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, ()>| async move {
        ctx.emit(()).await.ok();
        ctx.recv().await
    });
    bounded("begun", task.recv_async()).await.unwrap();
    let asked = Instant::now();
    task.stop();
    assert_eq!(
        bounded("join", task).await.error(),
        Some(CtxRecvError::Stopped)
    );
    assert!(asked.elapsed() < PROMPT);

    // recv_timeout
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, ()>| async move {
        ctx.emit(()).await.ok();
        ctx.recv_timeout(Duration::from_secs(3600)).await
    });
    bounded("begun", task.recv_async()).await.unwrap();
    task.stop();
    assert_eq!(
        bounded("join", task).await.error(),
        Some(CtxRecvTimeoutError::Stopped)
    );

    // sleep
    let task = sidetask::spawn_async(|ctx: AsyncCtx<(), ()>| async move {
        ctx.emit(()).await.ok();
        ctx.sleep(Duration::from_secs(3600)).await
    });
    bounded("begun", task.recv_async()).await.unwrap();
    let asked = Instant::now();
    task.stop();
    assert_eq!(bounded("join", task).await.error(), Some(Stopped));
    assert!(asked.elapsed() < PROMPT);

    // stop_requested, raced against the body's own work
    let task = sidetask::spawn_async(|ctx: AsyncCtx<(), ()>| async move {
        ctx.emit(()).await.ok();
        tokio::select! {
            _ = ctx.stop_requested() => Ok::<_, Stopped>("stopped"),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok("slept"),
        }
    });
    bounded("begun", task.recv_async()).await.unwrap();
    task.stop();
    assert_eq!(bounded("join", task).await.value(), Some("stopped"));

    // emit on a full outbox
    let full = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&full);
    let task = Builder::new()
        .outbox_capacity(1)
        .spawn_async(|ctx: AsyncCtx<(), u8>| async move {
            ctx.emit(1).await.map_err(|_| "first")?;
            flag.store(true, Ordering::SeqCst);
            match ctx.emit(2).await {
                Err(EmitError::Stopped(2)) => Ok(ctx.checkpoint()),
                other => Err(if other.is_ok() {
                    "delivered"
                } else {
                    "wrong error"
                }),
            }
        })
        .unwrap();
    wait_until("outbox full", || full.load(Ordering::SeqCst)).await;
    task.stop();
    assert_eq!(bounded("join", task).await.value(), Some(Err(Stopped)));
}

/// Waits (asynchronously) until `cond` holds, failing after [`LIMIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_timeouts_try_calls_and_disconnect() {
    // The handle reads only once the body has seen its outbox full.
    let checked = Arc::new(AtomicBool::new(false));
    let theirs = Arc::clone(&checked);
    let task = Builder::new()
        .outbox_capacity(1)
        .spawn_async(move |ctx: AsyncCtx<u8, u8>| async move {
            assert_eq!(
                ctx.recv_timeout(Duration::from_millis(10)).await,
                Err(CtxRecvTimeoutError::Timeout)
            );
            assert_eq!(ctx.try_recv(), Err(CtxTryRecvError::Empty));
            assert!(ctx.sleep(Duration::from_millis(1)).await.is_ok());
            ctx.try_emit(1).map_err(|_| "first try_emit")?;
            match ctx.try_emit(2) {
                Err(TryEmitError::Full(2)) => {}
                _ => return Err("second try_emit"),
            }
            theirs.store(true, Ordering::SeqCst);
            // The handle reads the event, then sends one message.
            let n = ctx.recv().await.map_err(|_| "recv")?;
            assert_eq!(ctx.try_recv(), Err(CtxTryRecvError::Empty));
            ctx.emit(n).await.map_err(|_| "emit")?;
            // The handle stops the task: reading ends.
            assert_eq!(ctx.recv().await, Err(CtxRecvError::Stopped));
            Ok(n)
        })
        .unwrap();
    wait_until("the full outbox seen", || checked.load(Ordering::SeqCst)).await;
    assert_eq!(bounded("event", task.recv_async()).await, Ok(1));
    bounded("send", task.send_async(9)).await.unwrap();
    assert_eq!(bounded("echo", task.recv_async()).await, Ok(9));
    task.stop();
    assert_eq!(bounded("join", task).await.value(), Some(9));

    // Detached: the inbox is closed for the body, its events go nowhere.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, u8>| async move {
        let recv = ctx.recv().await;
        let emit = ctx.emit(1).await;
        let try_emit = ctx.try_emit(2);
        tx.send((
            recv,
            matches!(emit, Err(EmitError::Disconnected(1))),
            matches!(try_emit, Err(TryEmitError::Disconnected(2))),
        ))
        .ok();
        Ok::<_, Stopped>(())
    });
    task.detach().unwrap();
    let (recv, emit, try_emit) = bounded("detached body", rx).await.unwrap();
    assert_eq!(recv, Err(CtxRecvError::Disconnected));
    assert!(emit && try_emit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_inbox_ends_async_recv() {
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u32>| async move {
        let mut sum = 0;
        while let Ok(n) = ctx.recv().await {
            sum += n;
        }
        Ok::<_, Stopped>(sum)
    });
    for n in 1..=4 {
        task.send_async(n).await.unwrap();
    }
    task.close_inbox();
    assert_eq!(bounded("join", task).await.value(), Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_timeout_stops_async_task() {
    let task = Builder::new()
        .timeout(Duration::from_millis(20))
        .spawn_async(|ctx: AsyncCtx| async move { ctx.sleep(Duration::from_secs(3600)).await })
        .unwrap();
    let outcome = bounded("join", task).await;
    assert!(outcome.is_cancelled() || outcome.error() == Some(Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_async_task() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = sidetask::spawn_async(|ctx: AsyncCtx<(), ()>| async move {
        ctx.emit(()).await.ok();
        let r = ctx.recv().await;
        tx.send(r).ok();
        Ok::<_, Stopped>(())
    });
    bounded("begun", task.recv_async()).await.unwrap();
    drop(task);
    assert_eq!(
        bounded("body saw the stop", rx).await.unwrap(),
        Err(CtxRecvError::Stopped)
    );
}

// ---------------------------------------------------------------------------
// Kill.

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_drops_the_body_at_its_next_await() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(Arc::clone(&dropped));
    let task = sidetask::spawn_async(move |ctx: AsyncCtx<(), ()>| async move {
        let _flag = flag;
        ctx.emit(()).await.ok();
        // Not an await on the context: a stop would not reach it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Stopped>(())
    });
    bounded("begun", task.recv_async()).await.unwrap();
    let asked = Instant::now();
    task.kill();
    let outcome = bounded("join", task).await;
    assert!(asked.elapsed() < PROMPT);
    assert!(dropped.load(Ordering::SeqCst), "the body was dropped");
    assert_eq!(
        format!("{:?}", outcome.as_killed()),
        r#"Some(Killed { signal: None, stderr: "" })"#
    );
    let killed = outcome.killed().expect("a kill");
    assert_eq!(killed.signal(), None);
    assert!(killed.stderr_tail().is_empty());
}

/// On one thread the body is surely parked in `recv` when the kill comes.
#[tokio::test(flavor = "current_thread")]
async fn kill_while_waiting_on_the_context_is_a_kill() {
    for _ in 0..100 {
        let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, ()>| async move {
            ctx.emit(()).await.ok();
            ctx.recv().await
        });
        bounded("begun", task.recv_async()).await.unwrap();
        task.kill();
        assert!(bounded("join", task).await.is_killed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_through_join_and_into_result() {
    let task = sidetask::spawn_async(|ctx: AsyncCtx<(), ()>| async move {
        ctx.emit(()).await.ok();
        std::future::pending::<()>().await;
        Ok::<_, Stopped>(())
    });
    bounded("begun", task.recv_async()).await.unwrap();
    let mut join = task.join_async();
    assert!(poll_once(&mut join).await.is_none());
    join.task().kill();
    let err = bounded("join", join).await.into_result().unwrap_err();
    assert!(err.is_killed());
    assert_eq!(err.as_killed().and_then(|k| k.signal()), None);
    assert_eq!(err.killed(), Some(sidetask::Killed::default()));
}

// ---------------------------------------------------------------------------
// Places: the runtime, a handle, no runtime, a runtime shut down.

#[test]
fn spawn_async_outside_a_runtime_is_an_error() {
    let err = Builder::new()
        .spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(()) })
        .unwrap_err();
    assert!(err.is_no_runtime());
    assert!(!err.is_already_started());
    assert!(err.io_error().is_none());
    assert_eq!(
        err.to_string(),
        "spawning an async task outside a tokio runtime"
    );
    let panicked = std::panic::catch_unwind(|| {
        sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(()) })
    });
    assert!(panicked.is_err());
}

#[test]
fn async_task_joined_from_plain_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let task =
        Builder::new().spawn_async_on(runtime.handle(), |ctx: AsyncCtx<u64, u64>| async move {
            let mut sum = 0;
            while let Ok(n) = ctx.recv().await {
                sum += n;
                ctx.emit(sum).await.ok();
            }
            Ok::<_, Stopped>(sum)
        });
    let task = Arc::new(task);
    // A plain thread sends, blocking, while this thread receives, blocking.
    let sender = {
        let task = Arc::clone(&task);
        std::thread::spawn(move || {
            for n in 1..=100 {
                task.send(n).unwrap();
            }
        })
    };
    let mut last = 0;
    for _ in 0..100 {
        last = task.recv_timeout(LIMIT).unwrap();
    }
    sender.join().unwrap();
    assert_eq!(last, 5050);
    task.stop();
    let task = Arc::try_unwrap(task).unwrap();
    let outcome = within(LIMIT, move || task.join());
    assert_eq!(outcome.value(), Some(5050));
    // Spawned from a plain thread onto the runtime, joined there.
    let handle = runtime.handle().clone();
    let outcome = within(LIMIT, move || {
        let task = Builder::new().spawn_async_on(&handle, |_: AsyncCtx| async {
            tokio::task::yield_now().await;
            Ok::<_, Stopped>(3)
        });
        task.join_timeout(LIMIT).ok()
    });
    assert_eq!(outcome.and_then(Outcome::value), Some(3));
}

#[test]
fn runtime_shutdown_ends_tasks_killed_or_cancelled() {
    // Begun: killed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let task =
        Builder::new().spawn_async_on(runtime.handle(), |ctx: AsyncCtx<(), ()>| async move {
            ctx.emit(()).await.ok();
            std::future::pending::<()>().await;
            Ok::<_, Stopped>(())
        });
    runtime.block_on(async { bounded("begun", task.recv_async()).await.unwrap() });
    drop(runtime);
    assert!(within(LIMIT, move || task.join()).is_killed());

    // Never polled: cancelled.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let task = Builder::new().spawn_async_on(runtime.handle(), |_: AsyncCtx| async {
        Ok::<_, Stopped>(())
    });
    drop(runtime);
    assert!(within(LIMIT, move || task.join()).is_cancelled());
}

// ---------------------------------------------------------------------------
// The awaitable handle methods, on thread tasks too.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_task_awaited_from_async() {
    let task = sidetask::spawn(|ctx: &Ctx<u64, u64>| {
        while let Ok(n) = ctx.recv() {
            ctx.emit(n * 2)?;
        }
        Ok::<_, Stopped>("done")
    });
    for n in 0..100 {
        bounded("send", task.send_async(n)).await.unwrap();
        assert_eq!(bounded("recv", task.recv_async()).await, Ok(n * 2));
    }
    assert_eq!(
        task.recv_timeout_async(Duration::from_millis(5)).await,
        Err(RecvTimeoutError::Timeout)
    );
    task.stop();
    assert_eq!(
        bounded("join", task.join_async()).await.value(),
        Some("done")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_timeouts_and_disconnects() {
    let task = Builder::new()
        .inbox_capacity(1)
        .spawn(|ctx: &Ctx<u8, u8>| {
            ctx.emit(7).ok();
            ctx.sleep(Duration::from_secs(3600))
        })
        .unwrap();
    bounded("send", task.send_async(1)).await.unwrap();
    let err = task
        .send_timeout_async(2, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.into_inner(), 2);
    assert!(!task.wait_timeout_async(Duration::from_millis(5)).await);
    let task = task
        .join_timeout_async(Duration::from_millis(5))
        .await
        .unwrap_err();
    task.stop();
    assert!(matches!(
        task.send_timeout_async(3, Duration::from_secs(1)).await,
        Err(SendTimeoutError::Disconnected(3))
    ));
    assert!(
        bounded("send after stop", task.send_async(4))
            .await
            .is_err()
    );
    bounded("wait", task.wait_async()).await;
    assert_eq!(task.recv_async().await, Ok(7));
    assert_eq!(task.recv_async().await, Err(RecvError));
    assert_eq!(
        task.recv_timeout_async(Duration::from_secs(1)).await,
        Err(RecvTimeoutError::Disconnected)
    );
    assert_eq!(task.take_unread(), Some(vec![1]));
    let outcome = task
        .join_timeout_async(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(outcome.error(), Some(Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_async_cancels_a_task_never_started() {
    let task = Builder::new().build(|_: &Ctx| Ok::<_, Stopped>(()));
    assert!(bounded("join", task.join_async()).await.is_cancelled());
    let task = Builder::new().build(|_: &Ctx| Ok::<_, Stopped>(()));
    bounded("wait", task.wait_async()).await;
    assert!(task.join().is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_task_awaited() {
    let task = Command::new("cat").spawn().unwrap();
    for word in ["one", "two", "three"] {
        bounded("send", task.send_async(word.to_string()))
            .await
            .unwrap();
        assert_eq!(bounded("recv", task.recv_async()).await.unwrap(), word);
    }
    task.close_inbox();
    assert_eq!(
        bounded("end of events", task.recv_async()).await,
        Err(RecvError)
    );
    let exit = bounded("join", task).await.value().unwrap();
    assert!(exit.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handle_shared_by_threads_and_async() {
    const N: u64 = 2000;
    let task = Arc::new(echo());
    // A plain thread sends the even numbers, blocking; async code the odd.
    let thread_side = {
        let task = Arc::clone(&task);
        std::thread::spawn(move || {
            for n in (0..N).step_by(2) {
                task.send(n).unwrap();
            }
        })
    };
    let async_side = {
        let task = Arc::clone(&task);
        tokio::spawn(async move {
            for n in (1..N).step_by(2) {
                task.send_async(n).await.unwrap();
            }
        })
    };
    // Events come back to blocking and async receivers alike; each stops
    // once all N have been received between them.
    let received = Arc::new(AtomicUsize::new(0));
    let blocking_receiver = {
        let task = Arc::clone(&task);
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let deadline = Instant::now() + LIMIT;
            while received.load(Ordering::SeqCst) < N as usize {
                assert!(Instant::now() < deadline, "timed out receiving");
                if let Ok(n) = task.recv_timeout(Duration::from_millis(5)) {
                    got.push(n);
                    received.fetch_add(1, Ordering::SeqCst);
                }
            }
            got
        })
    };
    let mut got = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while received.load(Ordering::SeqCst) < N as usize {
        assert!(Instant::now() < deadline, "timed out receiving");
        if let Ok(n) = task.recv_timeout_async(Duration::from_millis(5)).await {
            got.push(n);
            received.fetch_add(1, Ordering::SeqCst);
        }
    }
    bounded("async sender", async_side).await.unwrap();
    thread_side.join().unwrap();
    got.extend(blocking_receiver.join().unwrap());
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    task.stop();
    let task = Arc::try_unwrap(task).unwrap();
    assert_eq!(bounded("join", task).await.value(), Some(N));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_recv_on_both_sides_and_a_shared_context() {
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u32, u32>| async move {
        // A clone of the context serves a helper task of the body's own.
        let helper = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let n = poll_fn(|cx| ctx.poll_recv(cx)).await?;
                ctx.emit(n + 1)
                    .await
                    .map_err(|_| CtxRecvError::Disconnected)?;
                Ok::<_, CtxRecvError>(n)
            })
        };
        let got = helper.await.expect("the helper ran")?;
        assert!(format!("{ctx:?}").contains("AsyncCtx"));
        Ok::<_, CtxRecvError>(got)
    });
    bounded("send", task.send_async(41)).await.unwrap();
    let event = bounded("poll_recv", poll_fn(|cx| task.poll_recv(cx))).await;
    assert_eq!(event, Ok(42));
    assert!(bounded("wait", task.wait_timeout_async(LIMIT)).await);
    assert_eq!(poll_fn(|cx| task.poll_recv(cx)).await, Err(RecvError));
    assert_eq!(bounded("join", task).await.value(), Some(41));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_async_waits_for_room() {
    const N: u32 = 300;
    // A slow thread reader behind a one-message inbox: every send waits for
    // room, and all arrive in order.
    let task = Builder::new()
        .inbox_capacity(1)
        .spawn(|ctx: &Ctx<u32>| {
            let mut got = Vec::new();
            while let Ok(n) = ctx.recv() {
                got.push(n);
                if n % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok::<_, Stopped>(got)
        })
        .unwrap();
    for n in 0..N {
        bounded("send", task.send_async(n)).await.unwrap();
    }
    let mut pending = task.send_async(N);
    assert!(format!("{pending:?}").contains("SendFuture"));
    bounded("last send", &mut pending).await.unwrap();
    assert_eq!(pending.into_message(), None, "delivered");
    task.close_inbox();
    let join = task.join_async();
    assert!(format!("{join:?}").contains("Join"));
    assert_eq!(bounded("join", join).await.value(), Some((0..=N).collect()));
}

// ---------------------------------------------------------------------------
// Cancelling the awaiting futures loses nothing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_recv_futures_lose_no_event() {
    // Handle side: a pending recv dropped, then the event arrives.
    let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, u8>| async move {
        while let Ok(n) = ctx.recv().await {
            ctx.emit(n).await.ok();
        }
        Ok::<_, Stopped>(())
    });
    let mut recv = Box::pin(task.recv_async());
    assert!(poll_once(&mut recv).await.is_none());
    drop(recv);
    task.send_async(5).await.unwrap();
    assert_eq!(bounded("recv", task.recv_async()).await, Ok(5));

    // Context side: the body's recv raced against a short timer, many
    // times; every message arrives once, in order.
    const N: u64 = 500;
    let task = Builder::new()
        .inbox_capacity(1)
        .spawn_async(|ctx: AsyncCtx<u64>| async move {
            let mut got = Vec::new();
            let mut timeouts = 0u64;
            loop {
                tokio::select! {
                    m = ctx.recv() => match m {
                        Ok(n) => got.push(n),
                        Err(_) => break,
                    },
                    _ = tokio::task::yield_now() => timeouts += 1,
                }
            }
            Ok::<_, Stopped>((got, timeouts))
        })
        .unwrap();
    let mut rng = Rng(7);
    for n in 0..N {
        task.send_async(n).await.unwrap();
        for _ in 0..rng.below(3) {
            tokio::task::yield_now().await;
        }
        if rng.below(10) == 0 {
            // Let the body wait in recv now and then.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    task.close_inbox();
    let (got, timeouts) = bounded("join", task).await.value().unwrap();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(
        timeouts > 0,
        "the recv futures were cancelled some of the time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_send_future_on_a_full_inbox_did_not_deliver() {
    // Built, not started: the inbox stays full.
    let task = Builder::new()
        .inbox_capacity(1)
        .build(|ctx: &Ctx<u8>| Ok::<_, Stopped>(ctx.iter().collect::<Vec<_>>()));
    task.send_async(1).await.unwrap();
    let mut send = task.send_async(2);
    assert!(poll_once(&mut send).await.is_none());
    assert_eq!(
        send.into_message(),
        Some(2),
        "not delivered: it is returned"
    );
    let mut send = task.send_async(3);
    assert!(poll_once(&mut send).await.is_none());
    drop(send); // dropped with the message, not half-sent
    task.close_inbox();
    task.start().unwrap();
    assert_eq!(bounded("join", task).await.value(), Some(vec![1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_either_delivered_or_returned() {
    const N: u64 = 5000;
    let task = Builder::new()
        .inbox_capacity(2)
        .spawn_async(|ctx: AsyncCtx<u64>| async move {
            let mut got = Vec::new();
            while let Ok(n) = ctx.recv().await {
                got.push(n);
                if n % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, Stopped>(got)
        })
        .unwrap();
    let mut rng = Rng(11);
    let mut delivered = Vec::new();
    let mut returned = Vec::new();
    for n in 0..N {
        let mut send = task.send_async(n);
        // Poll it once, or a few times, or to the end; then drop it.
        let tries = rng.below(4);
        let mut done = None;
        for _ in 0..=tries {
            done = poll_once(&mut send).await;
            if done.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        match done {
            Some(Ok(())) => {
                assert!(send.into_message().is_none(), "delivered and kept");
                delivered.push(n);
            }
            Some(Err(e)) => panic!("the task is running: {e}"),
            None => returned.push(send.into_message().expect("pending keeps the message")),
        }
    }
    task.close_inbox();
    let got = bounded("join", task).await.value().unwrap();
    assert_eq!(got, delivered, "the task got exactly what was delivered");
    let mut all: Vec<u64> = delivered.iter().chain(&returned).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "each message delivered or returned, once"
    );
    assert!(
        !returned.is_empty(),
        "some sends were cancelled while pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_emits_either_delivered_or_returned() {
    const N: u64 = 3000;
    let task = Builder::new()
        .outbox_capacity(2)
        .spawn_async(|ctx: AsyncCtx<(), u64>| async move {
            let mut delivered = Vec::new();
            let mut returned = Vec::new();
            let mut rng = Rng(5);
            for n in 0..N {
                let mut emit = ctx.emit(n);
                let mut done = None;
                for _ in 0..=rng.below(3) {
                    done = poll_once(&mut emit).await;
                    if done.is_some() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                match done {
                    Some(Ok(())) => delivered.push(n),
                    Some(Err(_)) => return Err("the handle is there"),
                    None => returned.push(emit.into_event().ok_or("pending keeps the event")?),
                }
            }
            Ok((delivered, returned))
        })
        .unwrap();
    let mut received = Vec::new();
    while let Ok(n) = bounded("recv", task.recv_async()).await {
        received.push(n);
        if n % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let (delivered, returned) = bounded("join", task).await.value().unwrap();
    assert_eq!(received, delivered);
    let mut all: Vec<u64> = delivered.into_iter().chain(returned).collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// Stress: many async tasks stopped at random moments, every message counted.

/// The number of async tasks in the stress test.
const STRESS_TASKS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_many_async_tasks_stopped_at_random() {
    let begun = Arc::new(AtomicUsize::new(0));
    let drivers: Vec<_> = (0..4u64)
        .map(|driver| {
            let begun = Arc::clone(&begun);
            tokio::spawn(async move {
                let mut rng = Rng(driver * 7919 + 1);
                let mut checked = (0usize, 0usize, 0usize); // values, cancelled, messages
                let tasks: Vec<_> = (0..STRESS_TASKS / 4)
                    .map(|_| {
                        let begun = Arc::clone(&begun);
                        Builder::new()
                            .inbox_capacity(4)
                            .spawn_async(move |ctx: AsyncCtx<u64, ()>| async move {
                                begun.fetch_add(1, Ordering::Relaxed);
                                let (mut count, mut sum) = (0u64, 0u64);
                                while let Ok(n) = ctx.recv().await {
                                    count += 1;
                                    sum += n;
                                }
                                Ok::<_, Stopped>((count, sum))
                            })
                            .unwrap()
                    })
                    .collect();
                for (i, task) in tasks.into_iter().enumerate() {
                    let messages = rng.below(12);
                    let stop_at = rng.below(messages + 1);
                    let (mut sent, mut sent_sum) = (0u64, 0u64);
                    for m in 0..messages {
                        if m == stop_at {
                            task.stop();
                        }
                        let n = (i as u64) * 100 + m;
                        match task.send_async(n).await {
                            Ok(()) => {
                                assert!(m < stop_at, "a send after the stop succeeded");
                                sent += 1;
                                sent_sum += n;
                            }
                            Err(e) => {
                                assert_eq!(e.into_inner(), n, "the message comes back");
                                assert!(m >= stop_at, "a send before the stop failed");
                            }
                        }
                        if rng.below(4) == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    task.stop();
                    task.wait_async().await;
                    let unread = task.take_unread().expect("ended");
                    let (unread_count, unread_sum): (u64, u64) =
                        (unread.len() as u64, unread.iter().sum());
                    match task.join() {
                        Outcome::Value((count, sum)) => {
                            assert_eq!(count + unread_count, sent, "task {i}: count");
                            assert_eq!(sum + unread_sum, sent_sum, "task {i}: sum");
                            checked.0 += 1;
                        }
                        Outcome::Cancelled => {
                            assert_eq!(unread_count, sent, "task {i}: cancelled count");
                            assert_eq!(unread_sum, sent_sum, "task {i}: cancelled sum");
                            checked.1 += 1;
                        }
                        other => panic!("task {i}: unexpected outcome {other:?}"),
                    }
                    checked.2 += sent as usize;
                }
                checked
            })
        })
        .collect();
    let (mut values, mut cancelled, mut messages) = (0, 0, 0);
    for driver in drivers {
        let (v, c, m) = bounded("driver", driver).await.unwrap();
        values += v;
        cancelled += c;
        messages += m;
    }
    assert_eq!(
        values + cancelled,
        STRESS_TASKS,
        "every task ended and was checked"
    );
    assert_eq!(
        begun.load(Ordering::Relaxed),
        values,
        "a body ran exactly for each value"
    );
    assert!(values > 0 && messages > 0);
}

#[test]
fn a_context_clone_cannot_emit_after_the_body_ended() {
    const ROUNDS: u64 = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (mut emitted, mut received) = (0, 0);
    for round in 0..ROUNDS {
        let (report, reported) = std::sync::mpsc::channel();
        let task = Builder::new().outbox_capacity(4).spawn_async_on(
            rt.handle(),
            move |ctx: AsyncCtx<(), u64>| async move {
                // A clone that outlives the body, emitting 0, 1, 2… until
                // an emit gives its event back.
                let helper = ctx.clone();
                tokio::spawn(async move {
                    let mut sent = 0;
                    let back = loop {
                        let refused = if round % 2 == 0 {
                            match helper.emit(sent).await {
                                Ok(()) => None,
                                Err(EmitError::Disconnected(back)) => Some(back),
                                Err(e) => panic!("emit: {e}"),
                            }
                        } else {
                            match helper.try_emit(sent) {
                                Ok(()) => None,
                                Err(TryEmitError::Full(_)) => {
                                    tokio::task::yield_now().await;
                                    continue;
                                }
                                Err(TryEmitError::Disconnected(back)) => Some(back),
                            }
                        };
                        match refused {
                            None => sent += 1,
                            Some(back) => break back,
                        }
                    };
                    report.send((sent, back)).unwrap();
                });
                for _ in 0..round % 5 {
                    tokio::task::yield_now().await;
                }
                Ok::<_, Stopped>(())
            },
        );
        let mut events = Vec::new();
        loop {
            match task.recv_timeout(LIMIT) {
                Ok(event) => events.push(event),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("round {round}: no event, no end"),
            }
        }
        let (sent, back) = reported
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("round {round}: an emit after the end never returned"));
        assert_eq!(
            task.try_recv(),
            Err(TryRecvError::Disconnected),
            "round {round}: an event after the end"
        );
        assert_eq!(task.join().value(), Some(()));
        // Emitted = received + given back, in order.
        assert_eq!(events, (0..sent).collect::<Vec<_>>(), "round {round}");
        assert_eq!(back, sent, "round {round}: the refused event is given back");
        emitted += sent + 1;
        received += events.len() as u64;
    }
    assert_eq!(emitted, received + ROUNDS);
}

/// The message of a caught panic.
fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast::<&str>()
            .map_or_else(|_| "(not a string)".to_owned(), |m| (*m).to_owned()),
    }
}

/// A task on the current runtime that never ends by itself (it waits for a
/// stop), reads nothing and has an inbox of one.
fn waits_for_a_stop() -> Task<(), Stopped, u8, u8> {
    Builder::new()
        .inbox_capacity(1)
        .spawn_async(|ctx: AsyncCtx<u8, u8>| async move {
            ctx.stop_requested().await;
            Err(Stopped)
        })
        .unwrap()
}

#[test]
fn blocking_waits_inside_the_tasks_own_current_thread_runtime_panic() {
    type Call = fn(Task<(), Stopped, u8, u8>);
    let calls: [(&str, Call); 4] = [
        ("`task.await` or `join_async().await`", |task| {
            drop(task.join())
        }),
        ("`wait_async().await`", |task| task.wait()),
        ("`recv_async().await`", |task| {
            let _ = task.recv();
        }),
        ("`send_async(message).await`", |task| {
            task.send(1).unwrap(); // room: no wait
            let _ = task.send(2);
        }),
    ];
    for (instead, call) in calls {
        // Inside the runtime's `block_on`.
        let message = within(LIMIT, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let task = waits_for_a_stop();
                let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(task)))
                    .expect_err("a blocking wait that would never end panics");
                panic_message(panic)
            })
        });
        assert!(
            message.contains("current-thread tokio runtime") && message.contains(instead),
            "{message}"
        );
    }
    // Inside one of its tasks.
    let message = within(LIMIT, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let task = waits_for_a_stop();
            let joined = tokio::spawn(async move { task.join() }).await;
            panic_message(joined.expect_err("the join panics").into_panic())
        })
    });
    assert!(message.contains("`Task::join` would block"), "{message}");
}

#[test]
fn blocking_waits_that_can_end_do_not_panic_inside_a_current_thread_runtime() {
    within(LIMIT, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            // From a blocking thread of the same runtime: the runtime's own
            // thread runs the task meanwhile.
            let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, u8>| async move {
                let n = ctx.recv().await?;
                ctx.emit(n + 1).await?;
                Ok::<_, Stopped>(n)
            });
            let (event, outcome) = tokio::task::spawn_blocking(move || {
                task.send(1).unwrap();
                let event = task.recv().unwrap();
                (event, task.join())
            })
            .await
            .unwrap();
            assert_eq!((event, outcome.value()), (2, Some(1)));

            // A task that has ended: nothing to wait for.
            let task = sidetask::spawn_async(|ctx: AsyncCtx<u8, u8>| async move {
                ctx.emit(3).await?;
                Ok::<_, Stopped>(4)
            });
            task.wait_async().await;
            task.wait();
            assert_eq!(task.recv(), Ok(3));
            assert_eq!(task.recv(), Err(RecvError));
            assert_eq!(task.join().value(), Some(4));

            // A thread task runs without this thread.
            let task = sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>(5));
            assert_eq!(task.join().value(), Some(5));
        });
    });
}
