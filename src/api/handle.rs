//! [`ServerHandle`]: emit to and manage the node's sockets from anywhere.

use std::sync::Arc;
use std::time::Duration;

use crate::adapter::{RequestOp, ResponsePayload};
use crate::node::fanout::{affected_across, Affected, BroadcastOperator, UserOperator};
use crate::node::remote::ServerAcks;
use crate::node::shared::ServerShared;
use crate::node::socket::{EmitError, Socket};
use crate::node::user::DisconnectUser;
use crate::socketio::encode::check_event_name;
use crate::socketio::payload::{payload_from_json, payload_to_wire, IntoArgs, Payload};

fn server_side_op(
    ns: &str,
    event: &str,
    payload: Payload,
    want_ack: bool,
) -> Result<RequestOp, EmitError> {
    check_event_name(event)?;
    let (args_json, binary) = payload_to_wire(&payload);
    Ok(RequestOp::ServerSideEmit {
        ns: ns.to_owned(),
        event: event.to_owned(),
        args_json,
        binary,
        want_ack,
    })
}

/// Emit to and manage the node's sockets from anywhere (a handler, a timer,
/// an HTTP route).
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<ServerShared>,
}

impl ServerHandle {
    /// Broadcast in namespace `ns`: narrow with `.to(room)`, `.except(room)`.
    pub fn of(&self, ns: &str) -> BroadcastOperator {
        BroadcastOperator::new(self.shared.clone(), ns.into())
    }

    /// Emit to every socket of `user` in namespace `ns`, on every device.
    pub fn to_user(&self, ns: &str, user: &str) -> UserOperator {
        UserOperator {
            server: self.shared.clone(),
            ns: ns.into(),
            user: user.into(),
        }
    }

    /// Disconnect every socket of `user` on every node (for example, its
    /// token was revoked). Resolves once every node answered, or after
    /// `socketio.ack_timeout_ms` with the nodes that did not in `missing`
    /// (the revocation may not have reached them: retry, or close their
    /// sockets another way).
    pub async fn disconnect_user(&self, user: &str) -> Affected {
        let local = match self.shared.users.get(&Arc::from(user)) {
            Some(actor) => actor.send(DisconnectUser).await.unwrap_or(0),
            None => 0,
        };
        let op = RequestOp::DisconnectUser { user: user.into() };
        affected_across(&self.shared, local, op).await
    }

    /// Send `event` to the handlers of namespace `ns` on the *other* nodes
    /// (Socket.IO's `serverSideEmit`): each node's
    /// [`crate::NamespaceHandler::on_server_event`] runs once. Without a
    /// cluster there is nobody to tell: `Ok`.
    pub fn server_side_emit(
        &self,
        ns: &str,
        event: &str,
        args: impl IntoArgs,
    ) -> Result<(), EmitError> {
        let op = server_side_op(ns, event, args.into_args()?, false)?;
        match self.shared.cluster() {
            Some(cluster) => cluster.notify(op).map_err(EmitError::Cluster),
            None => Ok(()),
        }
    }

    /// [`ServerHandle::server_side_emit`], and wait for every other node's
    /// acknowledgement ([`ServerAck::send`](crate::ServerAck::send)), at most `timeout` (`None`:
    /// `socketio.ack_timeout_ms`). Nodes that did not acknowledge in time
    /// (dead, or their handler did not ack) are in `missing`.
    pub async fn server_side_emit_with_ack(
        &self,
        ns: &str,
        event: &str,
        args: impl IntoArgs,
        timeout: Option<Duration>,
    ) -> Result<ServerAcks, EmitError> {
        let op = server_side_op(ns, event, args.into_args()?, true)?;
        let timeout = timeout.unwrap_or(self.shared.config.ack_timeout);
        let Some(cluster) = self.shared.cluster() else {
            return Ok(ServerAcks::default());
        };
        let outcome = cluster.request(op, timeout).await?;
        let responses = outcome
            .responses
            .into_iter()
            .map(|(node, r)| {
                let payload = match r {
                    ResponsePayload::Acks { args, .. } => args
                        .first()
                        .map(|a| payload_from_json(a))
                        .unwrap_or_default(),
                    _ => Payload::default(),
                };
                (node, payload)
            })
            .collect();
        Ok(ServerAcks {
            responses,
            missing: outcome.missing,
        })
    }

    /// Wait until every room this node's sockets joined so far is in effect
    /// at the cluster's broker (a broadcast another node makes from then on
    /// reaches them), at most `timeout`; true if it was in time. Without a
    /// cluster a join is in effect at once: true.
    pub async fn synced(&self, timeout: Duration) -> bool {
        match self.shared.cluster() {
            Some(cluster) => cluster.synced(timeout).await,
            None => true,
        }
    }

    /// The local sockets of namespace `ns`.
    pub fn sockets(&self, ns: &str) -> Vec<Socket> {
        self.shared.local_sockets(ns)
    }

    /// How many namespaces are alive on this node: the registered ones, plus
    /// each dynamic namespace that has sockets.
    pub fn namespace_count(&self) -> usize {
        self.shared.namespace_count()
    }

    /// How many sockets are connected on this node, all namespaces together.
    pub fn socket_count(&self) -> usize {
        self.shared.socket_count()
    }

    /// How many room actors are alive on this node (namespaces included).
    pub fn room_actor_count(&self) -> usize {
        self.shared.rooms.len()
    }

    /// Fault injection for the supervision tests: a panic inside the room
    /// actor of `room` in `ns`, on its ordinary message path.
    #[cfg(feature = "internals")]
    pub fn inject_room_panic(&self, ns: &str, room: &str) -> bool {
        let key = crate::node::room::RoomKey {
            ns: ns.into(),
            room: Some(room.into()),
        };
        match self.shared.rooms.get(&key) {
            Some(actor) => {
                actor.do_send(crate::node::supervisor::InjectPanic);
                true
            }
            None => false,
        }
    }

    /// Fault injection: a panic inside the user actor of `user`.
    #[cfg(feature = "internals")]
    pub fn inject_user_panic(&self, user: &str) -> bool {
        match self.shared.users.get(&Arc::from(user)) {
            Some(actor) => {
                actor.do_send(crate::node::supervisor::InjectPanic);
                true
            }
            None => false,
        }
    }
}
