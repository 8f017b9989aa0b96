//! Each task runs in a `task` span and reports start, stop request and end.

use std::io::Write;
use std::sync::{Arc, Mutex};

use sidetask::{Builder, Ctx, Stopped};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn spans_and_events_tell_the_tasks_life() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Tasks run on worker threads, so the subscriber must be the global one;
    // this file is its own process and holds this one test.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let task = Builder::new()
        .name("traced")
        .spawn(|ctx: &Ctx<(), ()>| {
            ctx.emit(()).ok();
            ctx.sleep(std::time::Duration::from_secs(30))
        })
        .unwrap();
    task.recv().unwrap();
    task.stop();
    assert_eq!(task.join().error(), Some(Stopped));

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for needle in [
        "task started",
        "stop requested",
        "task ended",
        "outcome=\"error\"",
        "traced",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // The start event is inside the task's span, which carries its name.
    let started = text.lines().find(|l| l.contains("task started")).unwrap();
    assert!(
        started.contains("task{") && started.contains("traced"),
        "{started}"
    );
}
