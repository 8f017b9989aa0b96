//! A panic in a drop that runs on a worker after its task ended (the value of
//! a detached task) neither kills the worker nor loses track of it.

use std::time::{Duration, Instant};

use sidetask::{Ctx, Stopped};

/// A value whose drop panics.
struct Grenade;

impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("boom in drop");
        }
    }
}

#[test]
fn panicking_drops_after_the_end_leave_workers_counted() {
    sidetask::set_idle_timeout(Duration::from_millis(100));
    for _ in 0..5 {
        let task = sidetask::spawn(|ctx: &Ctx| {
            ctx.sleep(Duration::from_millis(10))?;
            Ok::<_, Stopped>(Grenade)
        });
        task.detach().unwrap();
    }
    // The workers drop the values, survive, go idle and exit: the count
    // comes back to zero only if every worker was accounted for.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sidetask::worker_threads() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} workers still counted",
            sidetask::worker_threads()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // And the cache still runs new tasks.
    let task = sidetask::spawn(|_: &Ctx| Ok::<_, ()>(5));
    assert_eq!(task.join().value(), Some(5));
}
