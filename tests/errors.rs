//! Every public error is `Send + Sync + 'static`, prints lower case without a
//! final period, and gives back the value it could not deliver.

use std::error::Error;

use sidetask::{
    CtxRecvError, CtxRecvTimeoutError, CtxTryRecvError, EmitError, RecvError, RecvTimeoutError,
    SendError, SendTimeoutError, StartError, Stopped, TaskError, TryEmitError, TryRecvError,
    TrySendError,
};

fn assert_error<E: Error + Send + Sync + 'static>() {}

/// A type that is neither `Debug` nor `Clone`, carried in errors.
struct Opaque(u8);

#[test]
fn send_sync_traits() {
    assert_error::<SendError<Opaque>>();
    assert_error::<TrySendError<Opaque>>();
    assert_error::<SendTimeoutError<Opaque>>();
    assert_error::<RecvError>();
    assert_error::<TryRecvError>();
    assert_error::<RecvTimeoutError>();
    assert_error::<Stopped>();
    assert_error::<CtxRecvError>();
    assert_error::<CtxTryRecvError>();
    assert_error::<CtxRecvTimeoutError>();
    assert_error::<EmitError<Opaque>>();
    assert_error::<TryEmitError<Opaque>>();
    assert_error::<StartError>();
    assert_error::<TaskError<std::io::Error>>();
    assert_error::<sidetask::ChainError<std::io::Error>>();
    assert_error::<sidetask::RunError<std::io::Error>>();
    assert_error::<sidetask::GiveUp>();
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<sidetask::Panic>();
    assert_send_sync::<sidetask::Outcome<u8, String>>();
    assert_send_sync::<sidetask::Task<u8, String, u8, u8>>();
    assert_send_sync::<sidetask::Ctx<u8, u8>>();
}

#[test]
fn values_come_back() {
    assert_eq!(SendError(Opaque(1)).into_inner().0, 1);
    assert_eq!(TrySendError::Full(Opaque(2)).into_inner().0, 2);
    assert_eq!(TrySendError::Disconnected(Opaque(3)).into_inner().0, 3);
    assert_eq!(SendTimeoutError::Timeout(Opaque(4)).into_inner().0, 4);
    assert_eq!(EmitError::Stopped(Opaque(5)).into_inner().0, 5);
    assert_eq!(TryEmitError::Full(Opaque(6)).into_inner().0, 6);
}

#[test]
fn debug_does_not_need_the_value_to_be_debug() {
    assert_eq!(format!("{:?}", SendError(Opaque(0))), "SendError(..)");
    assert_eq!(format!("{:?}", TrySendError::Full(Opaque(0))), "Full(..)");
    assert_eq!(
        format!("{:?}", EmitError::Disconnected(Opaque(0))),
        "Disconnected(..)"
    );
}

#[test]
fn display_is_lower_case_without_a_period() {
    let messages = [
        SendError(()).to_string(),
        TrySendError::Full(()).to_string(),
        TrySendError::Disconnected(()).to_string(),
        SendTimeoutError::Timeout(()).to_string(),
        RecvError.to_string(),
        TryRecvError::Empty.to_string(),
        RecvTimeoutError::Timeout.to_string(),
        Stopped.to_string(),
        CtxRecvError::Disconnected.to_string(),
        CtxTryRecvError::Empty.to_string(),
        CtxRecvTimeoutError::Timeout.to_string(),
        EmitError::Stopped(()).to_string(),
        TryEmitError::Full(()).to_string(),
    ];
    for m in messages {
        let first = m.chars().next().unwrap();
        assert!(first.is_lowercase(), "{m}");
        assert!(!m.ends_with('.'), "{m}");
    }
}

#[test]
fn stopped_converts_into_ctx_errors() {
    assert_eq!(CtxRecvError::from(Stopped), CtxRecvError::Stopped);
    assert_eq!(CtxTryRecvError::from(Stopped), CtxTryRecvError::Stopped);
    assert_eq!(
        CtxRecvTimeoutError::from(Stopped),
        CtxRecvTimeoutError::Stopped
    );
}
