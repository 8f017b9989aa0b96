//! An external program as a task: drive `sh` through send / recv as a tiny
//! calculator, then stop a program that would run forever.
//!
//! `cargo run --example command`

use std::time::{Duration, Instant};

use sidetask::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A line-oriented calculator: each message is an expression, each event
    // its value.
    let calc = Command::new("sh")
        .args(["-c", "while read -r e; do echo $(($e)); done"])
        .name("calc")
        .spawn()?;
    for expr in ["6 * 7", "1024 / 8", "(1 + 2) * 3"] {
        calc.send(expr.to_string())?;
        println!("{expr} = {}", calc.recv_timeout(Duration::from_secs(5))?);
    }
    calc.close_inbox(); // end of input: the loop ends, the shell exits
    let exit = calc.join().value().expect("an exit");
    println!("calc exited with {:?}", exit.code());

    // A program that never ends on its own: stop escalates SIGTERM → SIGKILL.
    let forever = Command::new("sh")
        .args([
            "-c",
            "trap '' TERM; echo started >&2; while :; do sleep 1; done",
        ])
        .grace_period(Duration::from_millis(200))
        .spawn()?;
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    forever.stop();
    let exit = forever.join().value().expect("an exit");
    println!(
        "stopped after {:?}: signal {:?}, stderr {:?}",
        asked.elapsed(),
        exit.signal(),
        exit.stderr_text()
    );
    Ok(())
}
