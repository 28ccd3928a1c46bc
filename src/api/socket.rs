//! Broadcasting from a socket, and reaching its server.

use super::handle::ServerHandle;
use crate::node::fanout::BroadcastOperator;
use crate::node::socket::Socket;

impl Socket {
    /// The node's handle: other namespaces, users, `server_side_emit`.
    pub fn server(&self) -> ServerHandle {
        ServerHandle {
            shared: self.server_shared().clone(),
        }
    }

    /// Emit to `room`'s members except this socket.
    pub fn to(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(self.server_shared().clone(), self.namespace().into())
            .to(room)
            .except_socket(self.sid().clone())
    }

    /// Emit to `room`'s members, this socket included if it is a member.
    pub fn within(&self, room: impl Into<String>) -> BroadcastOperator {
        BroadcastOperator::new(self.server_shared().clone(), self.namespace().into()).to(room)
    }

    /// Emit to every socket of the namespace except this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.server_shared().clone(), self.namespace().into())
            .except_socket(self.sid().clone())
    }
}
