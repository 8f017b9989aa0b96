//! A tour of sidetask on tokio: async task bodies, the awaitable handle,
//! cancellation, kill, and one handle shared by threads and async code, with
//! printed output.
//!
//! `cargo run --example async_tour --features tokio`

use std::time::Duration;

use sidetask::{AsyncCtx, Builder, Command, Ctx, Stopped};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. An async body: the context's recv, emit and sleep are awaitable, and
    //    each wakes at once on stop.
    let echo = sidetask::spawn_async(|ctx: AsyncCtx<u64, String>| async move {
        let mut seen = 0;
        // Ends when the task is asked to stop (or its inbox is closed).
        while let Ok(n) = ctx.recv().await {
            seen += 1;
            ctx.emit(format!("got {n}")).await?;
        }
        Ok::<_, Stopped>(format!("done after {seen} messages."))
    });
    println!("spawned async task {} ({:?})", echo.id(), echo.status());
    for n in [1, 2, 3] {
        echo.send_async(n).await?; // waits while the inbox is full
        println!("event: {}", echo.recv_async().await?);
    }
    echo.stop();
    println!("after stop: {:?}", echo.status());
    println!("outcome: {:?}", echo.await); // `task.await` is `join_async`

    // 2. A thread task, awaited: the handle is the same type.
    let doubler = sidetask::spawn(|ctx: &Ctx<u32, u32>| {
        while let Ok(n) = ctx.recv() {
            ctx.emit(n * 2)?;
        }
        Ok::<_, Stopped>(())
    });
    doubler.send_async(21).await?;
    println!("thread task, awaited: {}", doubler.recv_async().await?);
    doubler.stop();
    println!("thread task outcome: {:?}", doubler.join_async().await);

    // 3. Timeouts: the awaitable twins of the blocking ones.
    let sleeper = Builder::new()
        .spawn_async(|ctx: AsyncCtx| async move { ctx.sleep(Duration::from_secs(3600)).await })?;
    let sleeper = match sleeper.join_timeout_async(Duration::from_millis(20)).await {
        Ok(outcome) => panic!("it sleeps for an hour, yet ended: {outcome:?}"),
        Err(handle) => handle, // not ended in time: the handle comes back
    };
    sleeper.stop(); // its sleep wakes at once
    println!("sleeper stopped: {:?}", sleeper.await);

    // 4. Select on a stop, and kill what does not await the context.
    let stubborn = sidetask::spawn_async(|ctx: AsyncCtx<(), &str>| async move {
        ctx.emit("ignoring stops").await.ok();
        tokio::time::sleep(Duration::from_secs(3600)).await; // not on the context
        Ok::<_, Stopped>(())
    });
    println!("stubborn says: {}", stubborn.recv_async().await?);
    stubborn.kill(); // dropped at its await
    println!("stubborn outcome: {:?}", stubborn.await);

    let polite = sidetask::spawn_async(|ctx: AsyncCtx<(), &str>| async move {
        ctx.emit("working").await.ok();
        tokio::select! {
            _ = ctx.stop_requested() => Ok("stopped while working"),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok::<_, Stopped>("finished"),
        }
    });
    println!("polite says: {}", polite.recv_async().await?);
    polite.stop(); // (a stop before the body began would cancel it)
    println!("polite outcome: {:?}", polite.await);

    // 5. Cancellation: a send that did not finish gives its message back.
    let full = Builder::new()
        .inbox_capacity(1)
        .build(|_: &Ctx<&str>| Ok::<_, Stopped>(()));
    full.send_async("fits").await?;
    let mut send = full.send_async("does not fit");
    let timed_out = tokio::time::timeout(Duration::from_millis(10), &mut send).await;
    println!(
        "send timed out: {}, message back: {:?}",
        timed_out.is_err(),
        send.into_message()
    );
    full.stop();
    println!("unread: {:?}", full.take_unread());

    // 6. An external program, awaited.
    let cat = Command::new("cat").spawn()?;
    cat.send_async("hello from async".to_string()).await?;
    println!("cat says: {}", cat.recv_async().await?);
    cat.close_inbox();
    println!(
        "cat exited: {:?}",
        cat.await.value().map(|exit| exit.code())
    );

    // 7. An async task joined from a plain thread.
    let handle = tokio::runtime::Handle::current();
    let from_thread = std::thread::spawn(move || {
        let task = Builder::new().spawn_async_on(&handle, |ctx: AsyncCtx<u8>| async move {
            ctx.recv().await.map_err(Stopped::from)
        });
        task.send(7).expect("the task is running"); // blocking send
        task.join() // blocking join
    });
    let outcome = tokio::task::spawn_blocking(move || from_thread.join()).await?;
    println!("joined from a thread: {:?}", outcome.map(|o| o.value()));
    Ok(())
}
