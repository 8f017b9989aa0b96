//! The warm children of a process pool.

use std::sync::{Arc, Mutex};

use super::Config;
use super::protocol::Down;
use super::worker::{Refusal, Worker};
use crate::ctx::Ctx;
use crate::named::NamedTask;
use crate::outcome::{Crash, CrashCause, Outcome};
use crate::sync::lock;

/// The warm children of a process pool: idle ones wait here between tasks;
/// a child that crashed, was killed or broke the protocol is not put back,
/// and a new one is started when none is idle.
pub(crate) struct Warm {
    config: Config,
    idle: Mutex<Vec<Worker>>,
}

impl Warm {
    pub(crate) fn new(config: Config) -> Arc<Warm> {
        Arc::new(Warm {
            config,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs one task of type `T` on an idle child (or a new one).
    pub(crate) fn run<T: NamedTask>(
        &self,
        ctx: &Ctx<T::In, T::Event>,
        arg: &T::Arg,
    ) -> Outcome<T::Value, T::Error> {
        let start_failed =
            |why: String| Outcome::Crashed(Crash::new(CrashCause::Start(why), Vec::new()));
        let hello = match super::hello::<T>(arg, &self.config, true) {
            Ok(hello) => hello,
            Err(why) => return start_failed(why.to_string()),
        };
        // An idle child may have died meanwhile.
        let idle = loop {
            match lock(&self.idle).pop() {
                Some(worker) if !worker.alive() => drop(worker),
                other => break other,
            }
        };
        let warm = idle.is_some();
        let mut idle = idle;
        if let Some(worker) = &mut idle {
            // Each task's outcome carries its own stderr tail.
            worker.tail_mark = worker.tail.mark();
        }
        let mut worker = match idle {
            Some(worker) => worker,
            None => match Worker::start(&self.config) {
                Ok(worker) => worker,
                Err(e) => return start_failed(format!("could not start a child: {e}")),
            },
        };
        // A new child answers the handshake here, within the start timeout;
        // a warm one answers in the body, saving a round trip per task.
        let begun = if warm {
            worker
                .writer
                .send(&Down::Start(hello))
                .map_err(|e| Refusal::Other(format!("could not send the task: {e}")))
        } else {
            worker.begin(hello, self.config.start_timeout, self.config.max_frame)
        };
        if let Err(refusal) = begun {
            let tail = worker.kill_and_reap();
            let why = match refusal {
                Refusal::Unknown => format!("the child does not know the task `{}`", T::NAME),
                Refusal::Other(why) => why,
            };
            return Outcome::Crashed(Crash::new(CrashCause::Start(why), tail));
        }
        let (outcome, worker) = super::typed::run::<T>(ctx, worker, &self.config, true, warm);
        if let Some(worker) = worker {
            lock(&self.idle).push(worker);
        }
        outcome
    }
}
