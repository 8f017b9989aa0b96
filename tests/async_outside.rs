//! `spawn_async` outside a runtime panics at the caller's line and says
//! what to do instead.
#![cfg(feature = "tokio")]

use std::sync::{Arc, Mutex};

use sidetask::{AsyncCtx, Stopped};

#[test]
fn spawn_async_outside_a_runtime_panics_at_the_callers_line() {
    let seen: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let theirs = Arc::clone(&seen);
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| l.file().to_owned())
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        *theirs.lock().unwrap() = Some((location, message));
    }));
    let result = std::panic::catch_unwind(|| {
        let _task = sidetask::spawn_async(|_: AsyncCtx| async { Ok::<_, Stopped>(()) });
    });
    let _ = std::panic::take_hook();
    assert!(result.is_err(), "it must panic outside a runtime");
    let (file, message) = seen.lock().unwrap().take().expect("the hook saw the panic");
    assert!(file.ends_with("async_outside.rs"), "reported at {file}");
    assert!(message.contains("#[tokio::main]"), "{message}");
    assert!(message.contains("spawn_async_on"), "{message}");
}
