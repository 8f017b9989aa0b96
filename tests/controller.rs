//! Controllers: `WaitUntilDone`, `FeedFrom` (every item reaches the task; feeding stops when the task ends early), `Deadline` (stops a long task in time and returns its error), a custom controller that gives up, the `controlled` decorator (value, own error, panic), and `RunError`'s traits.

mod common;
use common::LIMIT;

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidetask::{
    Builder, Controller, Ctx, Deadline, FeedFrom, GiveUp, RunError, Stopped, Task, WaitUntilDone,
    controlled, run,
};

#[test]
fn wait_until_done_returns_the_value_or_the_error() {
    let task = sidetask::spawn(|ctx: &Ctx| {
        ctx.sleep(Duration::from_millis(20))?;
        Ok::<_, Stopped>(42)
    });
    assert_eq!(
        common::within(LIMIT, move || run(&mut WaitUntilDone, task).unwrap()),
        42
    );

    let task = sidetask::spawn(|_: &Ctx| Err::<u8, _>("no luck".to_owned()));
    let err = common::within(LIMIT, move || run(&mut WaitUntilDone, task).unwrap_err());
    assert!(err.is_error() && !err.is_panic() && !err.is_gave_up() && !err.is_cancelled());
    assert_eq!(
        err.task_error()
            .and_then(|e| e.as_error())
            .map(String::as_str),
        Some("no luck")
    );
    assert!(err.to_string().contains("no luck"), "{err}");
}

#[test]
fn a_task_never_started_is_cancelled() {
    let task = Builder::new().build(|_: &Ctx| Ok::<_, Stopped>(1));
    let err = common::within(LIMIT, move || run(&mut WaitUntilDone, task).unwrap_err());
    assert!(
        err.is_cancelled() && !err.is_error() && !err.is_gave_up(),
        "{err:?}"
    );
}

#[test]
fn feed_from_delivers_every_item() {
    const ITEMS: u64 = 10_000;
    // A small inbox, so that feeding waits on a full one again and again.
    let task = Builder::new()
        .inbox_capacity(4)
        .spawn(|ctx: &Ctx<u64>| {
            let mut count = 0;
            let mut sum = 0;
            let mut last = None;
            for n in ctx.iter() {
                assert!(last < Some(n), "items out of order");
                last = Some(n);
                count += 1;
                sum += n;
            }
            Ok::<_, Stopped>((count, sum))
        })
        .unwrap();
    let mut feed = FeedFrom(1..=ITEMS);
    let (got, mut feed) = common::within(LIMIT, move || (run(&mut feed, task), feed));
    assert_eq!(got.unwrap(), (ITEMS, ITEMS * (ITEMS + 1) / 2));
    assert_eq!(feed.0.next(), None, "every item was taken");
}

#[test]
fn feed_from_stops_when_the_task_ends_early() {
    const INBOX: usize = 4;
    let pulled = Arc::new(AtomicUsize::new(0));
    let items = {
        let pulled = Arc::clone(&pulled);
        (0..1_000_000u64).inspect(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
        })
    };
    let task = Builder::new()
        .inbox_capacity(INBOX)
        .spawn(|ctx: &Ctx<u64>| {
            // Reads three items, then ends without waiting for more.
            let three: Vec<u64> = ctx.iter().take(3).collect();
            Ok::<_, Stopped>(three)
        })
        .unwrap();
    let mut feed = FeedFrom(items);
    let (got, mut feed) = common::within(LIMIT, move || (run(&mut feed, task), feed));
    assert_eq!(got.unwrap(), vec![0, 1, 2]);
    // Three read, at most a full inbox, and the one refused.
    let taken = pulled.load(Ordering::SeqCst);
    assert!(taken <= 3 + INBOX + 1, "{taken} items taken");
    // The rest stayed in the iterator.
    assert_eq!(feed.0.next(), Some(taken as u64));
}

#[test]
fn deadline_stops_a_long_task_in_time_and_returns_its_error() {
    let task = sidetask::spawn(|ctx: &Ctx<(), ()>| {
        ctx.emit(()).ok();
        ctx.sleep(Duration::from_secs(3600))?;
        Ok::<u32, Stopped>(1)
    });
    // The task runs before the deadline starts, so it is its sleep that the
    // stop cuts short.
    task.recv_timeout(LIMIT).unwrap();
    let wait = Duration::from_millis(100);
    let began = Instant::now();
    let mut deadline = Deadline(began + wait);
    let err = common::within(LIMIT, move || run(&mut deadline, task).unwrap_err());
    let elapsed = began.elapsed();
    assert!(elapsed >= wait, "stopped early, after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped late, after {elapsed:?}"
    );
    assert!(err.is_error(), "{err:?}");
    let task_error = err.into_task_error().expect("the task's own error");
    assert_eq!(task_error.into_error().ok(), Some(Stopped));
}

#[test]
fn deadline_lets_a_quick_task_finish() {
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, Stopped>("quick"));
    let began = Instant::now();
    let mut deadline = Deadline(began + Duration::from_secs(20));
    let got = common::within(LIMIT, move || run(&mut deadline, task));
    assert_eq!(got.unwrap(), "quick");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "waited for the deadline"
    );
}

/// Reads one event, then gives up.
struct GivesUpAfterOneEvent;

impl Controller<(), Stopped, (), &'static str> for GivesUpAfterOneEvent {
    fn control(&mut self, task: &Task<(), Stopped, (), &'static str>) -> Result<(), GiveUp> {
        let event = task
            .recv_timeout(LIMIT)
            .map_err(|e| GiveUp::new(format!("no event: {e}")))?;
        assert_eq!(event, "working");
        Err(GiveUp::new("seen enough"))
    }
}

#[test]
fn a_controller_that_gives_up_stops_the_task() {
    let saw_stop = Arc::new(AtomicBool::new(false));
    let task = {
        let saw_stop = Arc::clone(&saw_stop);
        sidetask::spawn(move |ctx: &Ctx<(), &'static str>| {
            ctx.emit("working").ok();
            let slept = ctx.sleep(Duration::from_secs(3600));
            saw_stop.store(slept.is_err(), Ordering::SeqCst);
            slept
        })
    };
    let err = common::within(LIMIT, move || {
        run(&mut GivesUpAfterOneEvent, task).unwrap_err()
    });
    // `run` stopped the task and waited for it before returning.
    assert!(saw_stop.load(Ordering::SeqCst), "the task was not stopped");
    assert!(err.is_gave_up());
    assert!(!err.is_error() && !err.is_panic() && !err.is_cancelled());
    assert!(err.task_error().is_none());
    let give_up = err.give_up().expect("the controller's reason");
    assert_eq!(give_up.reason().to_string(), "seen enough");
    let message = err.to_string();
    assert!(message.contains("seen enough"), "{message}");
    assert!(err.into_task_error().is_none());
}

/// Talks with the task: sends numbers, reads the doubled answers, then
/// closes the inbox and waits.
struct PingPong(Vec<u32>);

impl Controller<u32, Stopped, u32, u32> for PingPong {
    fn control(&mut self, task: &Task<u32, Stopped, u32, u32>) -> Result<(), GiveUp> {
        for n in 0..5 {
            task.send(n)
                .map_err(|_| GiveUp::new("the task ended early"))?;
            let answer = task
                .recv_timeout(LIMIT)
                .map_err(|e| GiveUp::new(e.to_string()))?;
            self.0.push(answer);
        }
        task.close_inbox();
        if task.wait_timeout(LIMIT) {
            Ok(())
        } else {
            Err(GiveUp::new("the task did not end"))
        }
    }
}

#[test]
fn a_custom_controller_can_talk_to_the_task() {
    let task = sidetask::spawn(|ctx: &Ctx<u32, u32>| {
        let mut seen = 0;
        for n in ctx.iter() {
            ctx.emit(n * 2)?;
            seen += 1;
        }
        Ok::<_, Stopped>(seen)
    });
    let (got, answers) = common::within(LIMIT, move || {
        let mut ping = PingPong(Vec::new());
        (run(&mut ping, task), ping.0)
    });
    assert_eq!(got.unwrap(), 5);
    assert_eq!(answers, vec![0, 2, 4, 6, 8]);
}

#[test]
fn controlled_returns_value_own_error_and_panic_to_the_caller() {
    let checked = controlled(
        || WaitUntilDone,
        |_: &Ctx, n: i32| match n {
            n if n < 0 => Err(format!("negative {n}")),
            13 => panic!("unlucky {n}"),
            n => Ok(n * 2),
        },
    );
    let (value, error, panicked, again) = common::within(LIMIT, move || {
        (checked(21), checked(-4), checked(13), checked(1))
    });
    assert_eq!(value.unwrap(), 42);

    let error = error.unwrap_err();
    assert!(error.is_error() && !error.is_panic() && !error.is_gave_up());
    let task_error = error.into_task_error().expect("the task's error");
    assert_eq!(task_error.into_error().ok().as_deref(), Some("negative -4"));

    let panicked = panicked.unwrap_err();
    assert!(panicked.is_panic() && !panicked.is_error() && !panicked.is_gave_up());
    let panic = panicked
        .into_task_error()
        .and_then(|e| e.into_panic().ok())
        .expect("the task's panic");
    assert_eq!(panic.message(), "unlucky 13");

    // The decorated function can be called again after a panic.
    assert_eq!(again.unwrap(), 2);
}

#[test]
fn controlled_with_a_deadline_per_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    let nap = {
        let calls = Arc::clone(&calls);
        controlled(
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                Deadline(Instant::now() + Duration::from_millis(50))
            },
            |ctx: &Ctx, millis: u64| {
                ctx.sleep(Duration::from_millis(millis))?;
                Ok::<_, Stopped>(millis)
            },
        )
    };
    let began = Instant::now();
    let (short, long) = common::within(LIMIT, move || (nap(1), nap(3_600_000)));
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(short.unwrap(), 1);
    let long = long.unwrap_err();
    // Stopped while it slept, or before its body began on a loaded machine.
    assert!(long.is_error() || long.is_cancelled(), "{long:?}");
    if long.is_error() {
        assert_eq!(long.task_error().and_then(|e| e.as_error()), Some(&Stopped));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one controller per call");
}

/// An error type that is `Send + Sync + 'static`.
#[derive(Debug)]
struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my error")
    }
}

impl Error for MyError {}

fn assert_send_sync_static<T: Send + Sync + 'static>() {}

fn assert_error<T: Error + Send + Sync + 'static>() {}

#[test]
fn run_error_is_send_sync_static_when_its_error_is() {
    assert_send_sync_static::<RunError<String>>();
    assert_send_sync_static::<RunError<MyError>>();
    assert_error::<RunError<MyError>>();
    assert_error::<RunError<Stopped>>();
    assert_error::<GiveUp>();

    // So `?` turns it into a boxed error that can cross threads.
    fn fails() -> Result<u8, Box<dyn Error + Send + Sync + 'static>> {
        let task = sidetask::spawn(|_: &Ctx| Err::<u8, _>(MyError));
        Ok(run(&mut WaitUntilDone, task)?)
    }
    let err = common::within(LIMIT, || fails().unwrap_err());
    let shared: Arc<dyn Error + Send + Sync> = Arc::from(err);
    let message = thread::spawn(move || shared.to_string()).join().unwrap();
    assert!(message.contains("my error"), "{message}");
}

/// Kills the task once it has begun (it emits when it has).
#[cfg(feature = "tokio")]
struct KillOnceBegun;

#[cfg(feature = "tokio")]
impl<T, E, In, Ev> Controller<T, E, In, Ev> for KillOnceBegun {
    fn control(&mut self, task: &Task<T, E, In, Ev>) -> Result<(), GiveUp> {
        task.recv()
            .map_err(|_| GiveUp::new("the task ended before it emitted"))?;
        task.kill();
        Ok(())
    }
}

#[cfg(feature = "tokio")]
#[test]
fn a_killed_task_is_a_killed_run_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let task = Builder::new().spawn_async_on(
        runtime.handle(),
        |ctx: sidetask::AsyncCtx<(), ()>| async move {
            ctx.emit(()).await?;
            std::future::pending::<Result<(), Stopped>>().await
        },
    );
    let err = common::within(LIMIT, move || run(&mut KillOnceBegun, task).unwrap_err());
    assert!(err.is_killed(), "{err:?}");
    assert!(!err.is_error() && !err.is_panic() && !err.is_cancelled() && !err.is_gave_up());
    assert!(err.task_error().is_some_and(|e| e.is_killed()));
}
