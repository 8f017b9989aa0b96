//! Named tasks for the process tests, and the registry that holds them.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sidetask::{Ctx, NamedTask, Process, Registry, Stopped};

/// The registry of every test task. A child started with
/// `OMIT_ECHO=1` in its environment leaves `Echo` out, to test a name the
/// child does not know.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    if std::env::var_os("OMIT_ECHO").is_none() {
        r.register::<Echo>().unwrap();
    }
    r.register::<Empty>().unwrap();
    r.register::<Fail>().unwrap();
    r.register::<Crash>().unwrap();
    r.register::<Stubborn>().unwrap();
    r.register::<Sleeper>().unwrap();
    r.register::<Hog>().unwrap();
    r.register::<Spin>().unwrap();
    r.register::<Grandparent>().unwrap();
    r.register::<ReadOne>().unwrap();
    r.register::<Noisy>().unwrap();
    r.register::<Pid>().unwrap();
    r.register::<ExitWithPid>().unwrap();
    r.register::<Square>().unwrap();
    r.register::<SlowExit>().unwrap();
    r.register::<Big>().unwrap();
    r.register::<Len>().unwrap();
    r.register::<Blobs>().unwrap();
    r.register::<TwoReaders>().unwrap();
    r.register::<TryEmitter>().unwrap();
    r.register::<Says>().unwrap();
    r.register::<Counter>().unwrap();
    r.register::<Family>().unwrap();
    r.register::<LeaveACopy>().unwrap();
    r.register::<Checker>().unwrap();
    r.register::<Escapees>().unwrap();
    r
}

/// The bytes of blob `id`, `len` long: each blob's content is its own.
pub fn blob(id: u64, len: u32) -> Vec<u8> {
    (0..len).map(|i| (id as u8).wrapping_add(i as u8)).collect()
}

/// Answers each `(id, len)` with blob `id` of `len` bytes; returns how many
/// it answered when its inbox closes or it is stopped.
pub struct Blobs;

impl NamedTask for Blobs {
    const NAME: &'static str = "blobs";
    type Arg = ();
    type In = (u64, u32);
    type Event = (u64, Vec<u8>);
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx<(u64, u32), (u64, Vec<u8>)>, (): ()) -> Result<u64, Stopped> {
        let mut n = 0;
        while let Ok((id, len)) = ctx.recv() {
            ctx.emit((id, blob(id, len)))?;
            n += 1;
        }
        Ok(n)
    }
}

/// Two threads of the body read the one context and echo what they read;
/// returns how many they echoed together.
pub struct TwoReaders;

impl NamedTask for TwoReaders {
    const NAME: &'static str = "two_readers";
    type Arg = ();
    type In = u64;
    type Event = u64;
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx<u64, u64>, (): ()) -> Result<u64, Stopped> {
        let echo = || {
            let mut n = 0;
            while let Ok(m) = ctx.recv() {
                if ctx.emit(m).is_err() {
                    break;
                }
                n += 1;
            }
            n
        };
        Ok(std::thread::scope(|s| {
            let other = s.spawn(echo);
            echo() + other.join().unwrap()
        }))
    }
}

/// Echoes each message as an event with the argument added; returns how
/// many it echoed when its inbox closes or it is stopped.
pub struct Echo;

impl NamedTask for Echo {
    const NAME: &'static str = "echo";
    type Arg = i64;
    type In = i64;
    type Event = i64;
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx<i64, i64>, add: i64) -> Result<u64, Stopped> {
        let mut n = 0;
        while let Ok(m) = ctx.recv() {
            ctx.emit(m + add)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Returns at once.
pub struct Empty;

impl NamedTask for Empty {
    const NAME: &'static str = "empty";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Returns its own error.
pub struct Fail;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub code: u32,
    pub why: String,
}

impl NamedTask for Fail {
    const NAME: &'static str = "fail";
    type Arg = u32;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Failure;

    fn run(_: &Ctx, code: u32) -> Result<(), Failure> {
        Err(Failure {
            code,
            why: "as asked".into(),
        })
    }
}

/// How [`Crash`] ends its process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum How {
    Panic,
    Exit(i32),
    Abort,
    Segv,
}

/// Ends its process the way it is asked to, after a line on stderr.
pub struct Crash;

impl NamedTask for Crash {
    const NAME: &'static str = "crash";
    type Arg = How;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, how: How) -> Result<(), Stopped> {
        eprintln!("crash: {how:?}");
        match how {
            How::Panic => panic!("crash test panic"),
            How::Exit(code) => std::process::exit(code),
            How::Abort => std::process::abort(),
            How::Segv => {
                // std's stack-overflow handler takes the first SIGSEGV that
                // is not a fault, restores the default action and returns;
                // the next one ends the process.
                let me = rustix::process::getpid();
                loop {
                    rustix::process::kill_process(me, rustix::process::Signal::SEGV).unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Ignores stop requests: sleeps without looking at its context.
pub struct Stubborn;

impl NamedTask for Stubborn {
    const NAME: &'static str = "stubborn";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<(), Stopped> {
        ctx.emit(std::process::id())?;
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// Sleeps on its context until stopped; returns how long it slept.
pub struct Sleeper;

impl NamedTask for Sleeper {
    const NAME: &'static str = "sleeper";
    type Arg = u64;
    type In = ();
    type Event = u32;
    type Value = String;
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u32>, secs: u64) -> Result<String, Stopped> {
        ctx.emit(std::process::id())?;
        ctx.sleep(Duration::from_secs(secs))?;
        Ok("slept".into())
    }
}

/// Allocates (and touches) this many MiB.
pub struct Hog;

impl NamedTask for Hog {
    const NAME: &'static str = "hog";
    type Arg = usize;
    type In = ();
    type Event = ();
    type Value = u64;
    type Error = Stopped;

    fn run(_: &Ctx, mib: usize) -> Result<u64, Stopped> {
        let v = vec![1u8; mib << 20];
        Ok(v.iter().step_by(4096).map(|&b| u64::from(b)).sum())
    }
}

/// Burns CPU until stopped.
pub struct Spin;

impl NamedTask for Spin {
    const NAME: &'static str = "spin";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = u64;
    type Error = Stopped;

    fn run(ctx: &Ctx, (): ()) -> Result<u64, Stopped> {
        let mut n = 0u64;
        while !ctx.stopped() {
            n = n.wrapping_add(1);
        }
        Ok(n)
    }
}

/// Emits its own pid, starts a `Sleeper` process task of its own (a
/// grandchild of the test) and emits its pid; with `true`, also starts a
/// plain `sleep` program (in its own process group) and emits its pid; then
/// waits to be killed.
pub struct Grandparent;

impl NamedTask for Grandparent {
    const NAME: &'static str = "grandparent";
    type Arg = bool;
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = String;

    fn run(ctx: &Ctx<(), u32>, with_sleep: bool) -> Result<(), String> {
        ctx.emit(std::process::id()).map_err(|e| e.to_string())?;
        let task = Process::<Sleeper>::new(600)
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = task.recv().map_err(|e| e.to_string())?;
        ctx.emit(pid).map_err(|e| e.to_string())?;
        if with_sleep {
            let sleep = std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .map_err(|e| e.to_string())?;
            ctx.emit(sleep.id()).map_err(|e| e.to_string())?;
        }
        task.detach().map_err(|e| e.to_string())?;
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// Reads one message, then returns it.
pub struct ReadOne;

impl NamedTask for ReadOne {
    const NAME: &'static str = "read_one";
    type Arg = ();
    type In = String;
    type Event = ();
    type Value = String;
    type Error = Stopped;

    fn run(ctx: &Ctx<String>, (): ()) -> Result<String, Stopped> {
        Ok(ctx.recv()?)
    }
}

/// Writes this many MiB to stderr, then exits with code 5 (a crash, which
/// carries the stderr tail).
pub struct Noisy;

impl NamedTask for Noisy {
    const NAME: &'static str = "noisy";
    type Arg = usize;
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, mib: usize) -> Result<(), Stopped> {
        use std::io::Write;
        let line = [b'x'; 1023];
        let mut err = std::io::stderr().lock();
        for i in 0..mib * 1024 {
            err.write_all(&line[..1022]).unwrap();
            writeln!(err, "{}", i % 10).unwrap();
        }
        err.write_all(b"the end\n").unwrap();
        drop(err);
        std::process::exit(5)
    }
}

/// Returns its process id.
pub struct Pid;

impl NamedTask for Pid {
    const NAME: &'static str = "pid";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = u32;
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<u32, Stopped> {
        Ok(std::process::id())
    }
}

/// Emits its process id, writes a line to stderr, then exits with the
/// code it is given.
pub struct ExitWithPid;

impl NamedTask for ExitWithPid {
    const NAME: &'static str = "exit_with_pid";
    type Arg = i32;
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u32>, code: i32) -> Result<(), Stopped> {
        ctx.emit(std::process::id())?;
        eprintln!("leaving with {code}");
        std::process::exit(code)
    }
}

/// Not in the registry.
pub struct Unregistered;

impl NamedTask for Unregistered {
    const NAME: &'static str = "unregistered";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = ();
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Squares its argument and says which process did it; aborts on an
/// argument ending in 3 (to show a pool replacing a crashed child), emits
/// the argument as an event first.
pub struct Square;

impl NamedTask for Square {
    const NAME: &'static str = "square";
    type Arg = u64;
    type In = ();
    type Event = u64;
    type Value = (u64, u32);
    type Error = Stopped;

    fn run(ctx: &Ctx<(), u64>, n: u64) -> Result<(u64, u32), Stopped> {
        ctx.emit(n)?;
        if n % 10 == 3 {
            std::process::abort();
        }
        Ok((n * n, std::process::id()))
    }
}

/// Returns its value, then hangs on its way out: a thread-local whose drop
/// never ends runs in `exit`.
pub struct SlowExit;

struct Hang;

impl Drop for Hang {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_secs(600));
    }
}

thread_local! {
    static HANG: std::cell::RefCell<Option<Hang>> = const { std::cell::RefCell::new(None) };
}

impl NamedTask for SlowExit {
    const NAME: &'static str = "slow_exit";
    type Arg = ();
    type In = ();
    type Event = ();
    type Value = u32;
    type Error = Stopped;

    fn run(_: &Ctx, (): ()) -> Result<u32, Stopped> {
        HANG.with(|h| *h.borrow_mut() = Some(Hang));
        Ok(7)
    }
}

/// Emits 1 MiB events until stopped.
pub struct Big;

impl NamedTask for Big {
    const NAME: &'static str = "big";
    type Arg = ();
    type In = ();
    type Event = Vec<u8>;
    type Value = ();
    type Error = Stopped;

    fn run(ctx: &Ctx<(), Vec<u8>>, (): ()) -> Result<(), Stopped> {
        loop {
            ctx.emit(vec![7u8; 1 << 20])?;
            ctx.checkpoint()?;
        }
    }
}

/// Returns the length of its argument.
pub struct Len;

impl NamedTask for Len {
    const NAME: &'static str = "len";
    type Arg = String;
    type In = ();
    type Event = ();
    type Value = usize;
    type Error = Stopped;

    fn run(_: &Ctx, s: String) -> Result<usize, Stopped> {
        Ok(s.len())
    }
}

/// Tries to emit `count` events of 64 KiB without waiting, then writes how
/// many were refused as full to the file `path` and returns that number.
pub struct TryEmitter;

impl NamedTask for TryEmitter {
    const NAME: &'static str = "try-emitter";
    type Arg = (String, u32);
    type In = ();
    type Event = Vec<u8>;
    type Value = u32;
    type Error = String;

    fn run(ctx: &Ctx<(), Vec<u8>>, (path, count): (String, u32)) -> Result<u32, String> {
        let mut full = 0;
        for _ in 0..count {
            match ctx.try_emit(vec![7; 64 << 10]) {
                Ok(()) => {}
                Err(sidetask::TryEmitError::Full(_)) => full += 1,
                Err(e) => return Err(e.to_string()),
            }
        }
        std::fs::write(&path, full.to_string()).map_err(|e| e.to_string())?;
        Ok(full)
    }
}

/// Writes its text to stderr, then exits with the code if one is given, or
/// returns its text.
pub struct Says;

impl NamedTask for Says {
    const NAME: &'static str = "says";
    type Arg = (String, Option<i32>);
    type In = ();
    type Event = ();
    type Value = String;
    type Error = Stopped;

    fn run(_: &Ctx, (text, exit): (String, Option<i32>)) -> Result<String, Stopped> {
        eprintln!("{text}");
        match exit {
            Some(code) => std::process::exit(code),
            None => Ok(text),
        }
    }
}

/// Emits 0, 1, 2, … until stopped; returns how many of its emits returned
/// `Ok`.
pub struct Counter;

impl NamedTask for Counter {
    const NAME: &'static str = "counter";
    type Arg = ();
    type In = ();
    type Event = u64;
    type Value = u64;
    type Error = String;

    fn run(ctx: &Ctx<(), u64>, (): ()) -> Result<u64, String> {
        let mut sent = 0;
        while !ctx.stopped() {
            match ctx.emit(sent) {
                Ok(()) => sent += 1,
                Err(_) if ctx.stopped() => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(sent)
    }
}

/// Starts a plain program in its own group and one in a session of its own
/// (`setsid`), emits its own pid and theirs, then waits for ever.
pub struct Family;

impl NamedTask for Family {
    const NAME: &'static str = "family";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = String;

    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<(), String> {
        ctx.emit(std::process::id()).map_err(|e| e.to_string())?;
        let plain = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .map_err(|e| e.to_string())?;
        ctx.emit(plain.id()).map_err(|e| e.to_string())?;
        let away = std::process::Command::new("setsid")
            .args(["sleep", "600"])
            .spawn()
            .map_err(|e| e.to_string())?;
        ctx.emit(away.id()).map_err(|e| e.to_string())?;
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

/// Leaves a program in a session of its own holding a copy of the child's
/// connection (as a fork without exec would), emits that program's pid,
/// then aborts.
pub struct LeaveACopy;

impl NamedTask for LeaveACopy {
    const NAME: &'static str = "leave-a-copy";
    type Arg = ();
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = String;

    fn run(ctx: &Ctx<(), u32>, (): ()) -> Result<(), String> {
        // The connection is the child's only Unix socket.
        let socket = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| e.to_string())?
            .flatten()
            .find(|entry| {
                std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
            .and_then(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .ok_or("no socket")?;
        // A copy of it that a program started now inherits.
        let me = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .map_err(|e| e.to_string())?;
        let copy =
            rustix::process::pidfd_getfd(&me, socket, rustix::process::PidfdGetfdFlags::empty())
                .map_err(|e| e.to_string())?;
        rustix::io::fcntl_setfd(&copy, rustix::io::FdFlags::empty()).map_err(|e| e.to_string())?;
        let away = std::process::Command::new("setsid")
            .args(["sleep", "1000"])
            .spawn()
            .map_err(|e| e.to_string())?;
        drop(copy);
        ctx.emit(away.id()).map_err(|e| e.to_string())?;
        std::process::abort()
    }
}

/// Emits its pid, then reads blobs `(id, bytes)` and emits the id of each
/// that is whole (as [`blob`] made it); a blob that is not ends the task
/// with an error. Returns how many it read when its inbox closes or it is
/// stopped.
pub struct Checker;

impl NamedTask for Checker {
    const NAME: &'static str = "checker";
    type Arg = ();
    type In = (u64, Vec<u8>);
    type Event = u64;
    type Value = u64;
    type Error = String;

    fn run(ctx: &Ctx<(u64, Vec<u8>), u64>, (): ()) -> Result<u64, String> {
        ctx.emit(u64::from(std::process::id()))
            .map_err(|e| e.to_string())?;
        let mut n = 0;
        while let Ok((id, bytes)) = ctx.recv() {
            if bytes != blob(id, bytes.len() as u32) {
                return Err(format!("blob {id} is not whole"));
            }
            n += 1;
            if ctx.emit(id).is_err() {
                break;
            }
        }
        Ok(n)
    }
}

/// Starts programs that leave its process group or its tree: a plain
/// `sleep` (in the child's group), one in a session of its own (`setsid`),
/// one whose parent exits at once (a double fork into a new session), and
/// a command (a `sidetask::Command`, in a group of its own) that leaves one
/// in a session of its own; emits its own pid and theirs (six in all).
/// With `true` it waits for a stop and returns; with `false` it ignores
/// stops and waits to be killed.
pub struct Escapees;

impl NamedTask for Escapees {
    const NAME: &'static str = "escapees";
    type Arg = bool;
    type In = ();
    type Event = u32;
    type Value = ();
    type Error = String;

    fn run(ctx: &Ctx<(), u32>, cooperative: bool) -> Result<(), String> {
        let fail = |e: std::io::Error| e.to_string();
        ctx.emit(std::process::id()).map_err(|e| e.to_string())?;
        let plain = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .map_err(fail)?;
        ctx.emit(plain.id()).map_err(|e| e.to_string())?;
        let away = std::process::Command::new("setsid")
            .args(["sleep", "1000"])
            .spawn()
            .map_err(fail)?;
        ctx.emit(away.id()).map_err(|e| e.to_string())?;
        // The shell prints its background job's pid and exits: the job is
        // orphaned, in a session of its own.
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $!",
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(fail)?;
        let orphan: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("no pid from the shell: {e}"))?;
        ctx.emit(orphan).map_err(|e| e.to_string())?;
        let command = sidetask::Command::new("sh")
            .args([
                "-c",
                "echo $$; setsid sleep 1000 & echo $!; exec sleep 1000",
            ])
            .spawn()
            .map_err(|e| e.to_string())?;
        for _ in 0..2 {
            let line = command.recv().map_err(|e| e.to_string())?;
            ctx.emit(line.trim().parse().map_err(|e| format!("{line}: {e}"))?)
                .map_err(|e| e.to_string())?;
        }
        if cooperative {
            while ctx.sleep(Duration::from_secs(60)).is_ok() {}
            Ok(())
        } else {
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}
