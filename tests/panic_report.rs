//! A task's panic report names the task, not the worker thread it ran on.

use sidetask::{Builder, Ctx};

const ENV: &str = "SIDETASK_TEST_PANIC_REPORT";

/// Run only by the test below, in a process of its own, whose stderr it
/// reads.
#[test]
#[ignore = "run by a_panic_report_names_the_task in a child process"]
fn a_named_task_panics() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    let task = Builder::new()
        .name("fetcher")
        .spawn(|_: &Ctx| -> Result<(), ()> { panic!("boom in the body") })
        .unwrap();
    assert!(task.join().is_panic());
}

#[test]
fn a_panic_report_names_the_task() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["a_named_task_panics", "--exact", "--ignored", "--nocapture"])
        .env(ENV, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("task `fetcher` (#"), "{stderr}");
    assert!(stderr.contains("boom in the body"), "{stderr}");
}
