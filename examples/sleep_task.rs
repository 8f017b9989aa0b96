//! task.py's sleep example: the task is not done until it receives, over
//! `send`, how long to sleep; then it sleeps that long and is done.

use std::time::{Duration, Instant};

use sidetask::{Ctx, CtxRecvError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let task = sidetask::spawn(|ctx: &Ctx<Duration>| {
        let nap = ctx.recv()?;
        ctx.sleep(nap).map_err(CtxRecvError::from)?;
        Ok::<_, CtxRecvError>(nap)
    });
    std::thread::sleep(Duration::from_millis(200));
    println!("done before send? {}", task.is_finished());
    assert!(!task.is_finished());

    let sent = Instant::now();
    task.send(Duration::from_millis(300))?;
    let outcome = task.join();
    println!("done after {:?}: {outcome:?}", sent.elapsed());
    assert_eq!(outcome.value(), Some(Duration::from_millis(300)));
    Ok(())
}
