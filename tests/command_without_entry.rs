//! A binary that calls `init` but cannot re-enter it (a test binary without
//! `test_support!`): a command's launcher finds no way in, and commands are
//! started directly, as in a binary that never calls `init`.

mod common;

use common::LIMIT;
use sidetask::{Command, Registry};

#[test]
fn commands_start_directly_when_a_launcher_cannot_enter() {
    sidetask::init(Registry::new());
    for _ in 0..3 {
        let task = Command::new("sh")
            .args(["-c", "echo $PPID"])
            .spawn()
            .unwrap();
        let parent: u32 = task.recv_timeout(LIMIT).unwrap().parse().unwrap();
        assert_eq!(parent, std::process::id());
        let exit = task.join_timeout(LIMIT).unwrap().value().unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}
