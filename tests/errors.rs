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
    assert_eq!(SendError::Disconnected(Opaque(1)).into_inner().0, 1);
    assert_eq!(SendError::TooLarge(Opaque(7)).into_inner().0, 7);
    assert_eq!(TrySendError::Full(Opaque(2)).into_inner().0, 2);
    assert_eq!(TrySendError::Disconnected(Opaque(3)).into_inner().0, 3);
    assert_eq!(SendTimeoutError::Timeout(Opaque(4)).into_inner().0, 4);
    assert_eq!(EmitError::Stopped(Opaque(5)).into_inner().0, 5);
    assert_eq!(TryEmitError::Full(Opaque(6)).into_inner().0, 6);
}

#[test]
fn debug_does_not_need_the_value_to_be_debug() {
    assert_eq!(
        format!("{:?}", SendError::Disconnected(Opaque(0))),
        "Disconnected(..)"
    );
    assert_eq!(format!("{:?}", TrySendError::Full(Opaque(0))), "Full(..)");
    assert_eq!(
        format!("{:?}", EmitError::Disconnected(Opaque(0))),
        "Disconnected(..)"
    );
}

#[test]
fn display_is_lower_case_without_a_period() {
    let messages = [
        SendError::Disconnected(()).to_string(),
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
        sidetask::Command::new("/no/such/program")
            .spawn()
            .unwrap_err()
            .to_string(),
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

#[test]
fn ctx_recv_and_emit_errors_convert_into_stopped() {
    assert_eq!(Stopped::from(CtxRecvError::Stopped), Stopped);
    assert_eq!(Stopped::from(CtxRecvError::Disconnected), Stopped);
    assert_eq!(Stopped::from(EmitError::Stopped(Opaque(0))), Stopped);
    assert_eq!(Stopped::from(EmitError::Disconnected(Opaque(0))), Stopped);

    // So `?` works on them in a body whose error type is `Stopped`.
    fn body(
        recv: Result<u8, CtxRecvError>,
        emit: Result<(), EmitError<u8>>,
    ) -> Result<u8, Stopped> {
        let n = recv?;
        emit?;
        Ok(n)
    }
    assert_eq!(body(Ok(1), Ok(())), Ok(1));
    assert_eq!(body(Err(CtxRecvError::Disconnected), Ok(())), Err(Stopped));
    assert_eq!(body(Ok(1), Err(EmitError::Stopped(2))), Err(Stopped));
}

#[test]
fn try_recv_predicates() {
    assert!(TryRecvError::Empty.is_empty());
    assert!(!TryRecvError::Empty.is_disconnected());
    assert!(TryRecvError::Disconnected.is_disconnected());
    assert!(!TryRecvError::Disconnected.is_empty());

    assert!(CtxTryRecvError::Empty.is_empty());
    assert!(CtxTryRecvError::Stopped.is_stopped());
    assert!(CtxTryRecvError::Disconnected.is_disconnected());
    for (err, empty, stopped, disconnected) in [
        (CtxTryRecvError::Empty, true, false, false),
        (CtxTryRecvError::Stopped, false, true, false),
        (CtxTryRecvError::Disconnected, false, false, true),
    ] {
        assert_eq!(err.is_empty(), empty, "{err:?}");
        assert_eq!(err.is_stopped(), stopped, "{err:?}");
        assert_eq!(err.is_disconnected(), disconnected, "{err:?}");
    }
}

#[test]
fn recv_timeout_predicates() {
    assert!(RecvTimeoutError::Timeout.is_timeout());
    assert!(!RecvTimeoutError::Timeout.is_disconnected());
    assert!(RecvTimeoutError::Disconnected.is_disconnected());
    assert!(!RecvTimeoutError::Disconnected.is_timeout());

    for (err, timeout, stopped, disconnected) in [
        (CtxRecvTimeoutError::Timeout, true, false, false),
        (CtxRecvTimeoutError::Stopped, false, true, false),
        (CtxRecvTimeoutError::Disconnected, false, false, true),
    ] {
        assert_eq!(err.is_timeout(), timeout, "{err:?}");
        assert_eq!(err.is_stopped(), stopped, "{err:?}");
        assert_eq!(err.is_disconnected(), disconnected, "{err:?}");
    }
}

#[test]
fn ctx_recv_predicates() {
    assert!(CtxRecvError::Stopped.is_stopped());
    assert!(!CtxRecvError::Stopped.is_disconnected());
    assert!(CtxRecvError::Disconnected.is_disconnected());
    assert!(!CtxRecvError::Disconnected.is_stopped());
}

#[test]
fn send_predicates() {
    assert!(TrySendError::Full(()).is_full());
    assert!(!TrySendError::Full(()).is_disconnected());
    assert!(TrySendError::Disconnected(()).is_disconnected());
    assert!(!TrySendError::Disconnected(()).is_full());
    assert!(SendTimeoutError::Timeout(()).is_timeout());
    assert!(!SendTimeoutError::Timeout(()).is_disconnected());
    assert!(SendTimeoutError::Disconnected(()).is_disconnected());
    assert!(!SendTimeoutError::Disconnected(()).is_timeout());
}

#[test]
fn emit_predicates() {
    assert!(EmitError::Stopped(Opaque(0)).is_stopped());
    assert!(!EmitError::Stopped(Opaque(0)).is_disconnected());
    assert!(EmitError::Disconnected(Opaque(0)).is_disconnected());
    assert!(!EmitError::Disconnected(Opaque(0)).is_stopped());
    assert!(TryEmitError::Full(Opaque(0)).is_full());
    assert!(!TryEmitError::Full(Opaque(0)).is_disconnected());
    assert!(TryEmitError::Disconnected(Opaque(0)).is_disconnected());
    assert!(!TryEmitError::Disconnected(Opaque(0)).is_full());
}

#[test]
fn an_operations_errors_convert_among_themselves() {
    assert_eq!(
        TrySendError::from(SendError::Disconnected(7)),
        TrySendError::Disconnected(7)
    );
    assert_eq!(
        SendTimeoutError::from(SendError::Disconnected(7)),
        SendTimeoutError::Disconnected(7)
    );
    assert_eq!(
        TrySendError::from(SendError::TooLarge(7)),
        TrySendError::TooLarge(7)
    );
    assert_eq!(
        SendTimeoutError::from(SendError::TooLarge(7)),
        SendTimeoutError::TooLarge(7)
    );
    assert!(SendError::TooLarge(()).is_too_large());
    assert!(!SendError::TooLarge(()).is_disconnected());
    assert!(TrySendError::TooLarge(()).is_too_large());
    assert!(SendTimeoutError::TooLarge(()).is_too_large());
    assert_eq!(TryRecvError::from(RecvError), TryRecvError::Disconnected);
    assert_eq!(
        RecvTimeoutError::from(RecvError),
        RecvTimeoutError::Disconnected
    );

    assert_eq!(
        CtxTryRecvError::from(CtxRecvError::Stopped),
        CtxTryRecvError::Stopped
    );
    assert_eq!(
        CtxTryRecvError::from(CtxRecvError::Disconnected),
        CtxTryRecvError::Disconnected
    );
    assert_eq!(
        CtxRecvTimeoutError::from(CtxRecvError::Stopped),
        CtxRecvTimeoutError::Stopped
    );
    assert_eq!(
        CtxRecvTimeoutError::from(CtxRecvError::Disconnected),
        CtxRecvTimeoutError::Disconnected
    );

    // `emit` stops only on a full outbox: `try_emit` calls that `Full`.
    assert_eq!(
        TryEmitError::from(EmitError::Stopped(7)),
        TryEmitError::Full(7)
    );
    assert_eq!(
        TryEmitError::from(EmitError::Disconnected(7)),
        TryEmitError::Disconnected(7)
    );
}
