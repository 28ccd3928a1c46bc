//! Supervision of the node's actors: rooms, users and handlers.
//!
//! Every message an actor of the node handles runs under [`guard`]. A panic
//! is caught there (it would otherwise unwind through actix), logged and
//! turned into a stop; the actix `Supervisor` each actor was started under
//! then restarts it in place, with the same mailbox, so every address held
//! by connections, the registry and in-flight emits stays valid. On restart
//! the actor rebuilds its state from the owner of record, never from the
//! state that panicked: a room or user actor from the interest registry
//! ([`super::interest`]), a handler from its namespace's factory. Each
//! restart is counted in `riptide_actor_restarts_total{kind}`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::prelude::*;
use slog::{error, Logger};

/// Run one message's work for actor `kind` (with its context); a panic stops
/// the actor so its supervisor restarts it, and is reported as `None`.
pub(crate) fn guard<A, R>(
    ctx: &mut Context<A>,
    log: &Logger,
    kind: &'static str,
    f: impl FnOnce(&mut Context<A>) -> R,
) -> Option<R>
where
    A: Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
        Ok(r) => Some(r),
        Err(panic) => {
            error!(log, "actor panicked; restarting it"; "actor" => kind,
                "panic" => panic_message(&panic));
            ctx.stop();
            None
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Fault injection for the supervision tests: panics inside the actor that
/// handles it, on the ordinary message path.
#[cfg(any(test, feature = "internals"))]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;
