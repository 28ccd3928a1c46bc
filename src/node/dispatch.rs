//! What a connection tells its namespace's handler actor, and where that
//! actor is: one per namespace and worker thread, started on first use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::remote::ServerEvent;
use super::socket::{DisconnectReason, Event, Socket};

/// One call into an application's handler, in the order the socket's
/// packets arrived.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Dispatch {
    Connect(Socket),
    Event(Socket, Event),
    /// The socket is leaving: `rooms` are the rooms it was in (its own id
    /// included), sent before it leaves them.
    Disconnecting(Socket, Vec<String>, DisconnectReason),
    /// The socket has left the namespace and its rooms.
    Disconnect(Socket, DisconnectReason),
    /// From another node's `server_side_emit`, for namespace `ns`.
    ServerEvent {
        ns: Arc<str>,
        event: ServerEvent,
    },
    /// Does nothing: answered once everything sent before it has run (node
    /// shutdown waits on it).
    Barrier,
}

/// A namespace's handler actor on one thread, as its sockets hold it: one
/// recipient behind one pointer (a recipient clone allocates; every socket
/// held one).
pub(crate) type HandlerRef = Arc<Recipient<Dispatch>>;

thread_local! {
    /// The handler actor of each namespace on this worker thread, started on
    /// first use: connections talk to the instance on their own thread.
    static LOCAL_HANDLERS: RefCell<HashMap<usize, HandlerRef>> = RefCell::new(HashMap::new());
}

/// The handler of namespace `id` on the current thread, started if needed;
/// `started` is told of each one it starts.
pub(crate) fn local_handler(
    id: usize,
    start: &dyn Fn() -> Recipient<Dispatch>,
    started: impl FnOnce(&Recipient<Dispatch>),
) -> HandlerRef {
    LOCAL_HANDLERS.with(|h| {
        let mut h = h.borrow_mut();
        match h.get(&id) {
            Some(r) if r.connected() => r.clone(),
            _ => {
                let r = start();
                started(&r);
                let r = Arc::new(r);
                h.insert(id, r.clone());
                r
            }
        }
    })
}
