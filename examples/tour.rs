//! A tour of every verb of a sidetask handle, with printed output: on
//! threads, then in a child process and on an external program.
//!
//! `cargo run --example tour`

use std::time::Duration;

use sidetask::{Builder, Command, Ctx, CtxRecvError, NamedTask, Process, Registry, Stopped};

/// A task that can run in a child process: named, with serde types.
struct Shout;

impl NamedTask for Shout {
    const NAME: &'static str = "shout";
    type Arg = String;
    type In = String;
    type Event = String;
    type Value = u32;
    type Error = Stopped;

    fn run(ctx: &Ctx<String, String>, suffix: String) -> Result<u32, Stopped> {
        ctx.emit(format!("child pid {}", std::process::id()))?;
        let mut n = 0;
        while let Ok(word) = ctx.recv() {
            ctx.emit(word.to_uppercase() + &suffix)?;
            n += 1;
        }
        Ok(n)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing: in a child process started for `Shout`, this runs it and
    // exits.
    sidetask::init(Registry::new().with::<Shout>()?);

    // 1. Spawn: a task that echoes numbers as events until it is stopped.
    let echo = sidetask::spawn(|ctx: &Ctx<u64, String>| {
        let mut seen = 0;
        loop {
            match ctx.recv() {
                Ok(n) => {
                    seen += 1;
                    ctx.emit(format!("got {n}"))?;
                }
                Err(CtxRecvError::Stopped) => break,
                Err(CtxRecvError::Disconnected) => break,
            }
        }
        Ok::<_, Stopped>(format!("done after {seen} messages."))
    });
    println!("spawned task {} ({:?})", echo.id(), echo.status());
    for n in [1, 2, 3] {
        echo.send(n)?;
    }
    for event in echo.iter().take(3) {
        println!("event: {event}");
    }
    println!("try_recv with nothing waiting: {:?}", echo.try_recv());
    echo.stop();
    println!("after stop: {:?}", echo.status());
    println!(
        "send after stop gives the message back: {:?}",
        echo.send(4).map_err(|e| e.into_inner())
    );
    println!("outcome: {:?}", echo.join());

    // 2. Build now, start later: messages sent meanwhile wait in order.
    let adder = Builder::new()
        .name("adder")
        .inbox_capacity(4)
        .build(|ctx: &Ctx<i32>| {
            let mut sum = 0;
            while let Ok(n) = ctx.try_recv() {
                sum += n;
            }
            Ok::<_, Stopped>(sum)
        });
    adder.send(20)?;
    adder.send(22)?;
    println!("{:?} is {:?}", adder.name(), adder.status());
    adder.start()?;
    println!("adder: {:?}", adder.join().value());

    // 3. Errors and panics are outcomes, not crashes of the caller.
    let failing = sidetask::spawn(|_: &Ctx| Err::<(), _>("no input file"));
    println!("own error: {:?}", failing.join());
    let panicking = sidetask::spawn(|_: &Ctx| -> Result<(), Stopped> {
        let args: Vec<&str> = Vec::new();
        println!("{}", args[0]);
        Ok(())
    });
    let outcome = panicking.join();
    println!("panic: {}", outcome.panic().expect("panicked"));

    // 4. Stop wakes a task out of a long sleep at once.
    let sleeper = sidetask::spawn(|ctx: &Ctx| ctx.sleep(Duration::from_secs(3600)));
    let sleeper = sleeper.join_timeout(Duration::from_millis(50)).unwrap_err();
    println!("join_timeout gave the handle back: {:?}", sleeper.status());
    sleeper.stop();
    println!("woken by stop: {:?}", sleeper.join());

    // 5. A timeout from the builder asks the task to stop.
    let timed = Builder::new()
        .timeout(Duration::from_millis(100))
        .spawn(|ctx: &Ctx| {
            let mut ticks = 0;
            while ctx.sleep(Duration::from_millis(10)).is_ok() {
                ticks += 1;
            }
            Ok::<_, Stopped>(ticks)
        })?;
    println!("ticks before the timeout: {:?}", timed.join().value());

    // 6. Messages a task never read come back.
    let lazy = Builder::new().build(|ctx: &Ctx<&str>| ctx.recv().map_err(Stopped::from));
    for word in ["read", "unread", "also unread"] {
        lazy.send(word)?;
    }
    lazy.start()?;
    lazy.wait();
    println!("lazy is {:?}", lazy.status());
    println!("unread: {:?}", lazy.take_unread());
    println!("lazy: {:?}", lazy.join().value());

    // 7. Detach: the task runs on; its events go nowhere.
    let detached = sidetask::spawn(|ctx: &Ctx| ctx.sleep(Duration::from_millis(10)));
    detached.detach()?;
    println!("worker threads alive: {}", sidetask::worker_threads());

    // 8. The same handle on a child process running a named task.
    let child = Process::<Shout>::new("!".into()).spawn()?;
    println!("{} (this process: {})", child.recv()?, std::process::id());
    child.send("hello".into())?;
    println!("child says: {}", child.recv()?);
    child.stop(); // cooperative first; SIGTERM, then SIGKILL, if ignored
    println!("child: {:?}", child.join());

    // 9. And on an external program: stdin lines in, stdout lines out.
    let sort = Command::new("sort").spawn()?;
    for word in ["pear", "apple", "fig"] {
        sort.send(word.to_string())?;
    }
    sort.close_inbox();
    println!("sort: {:?}", sort.iter().collect::<Vec<_>>());
    println!(
        "sort exit: {}",
        sort.join().value().is_some_and(|e| e.success())
    );
    Ok(())
}
