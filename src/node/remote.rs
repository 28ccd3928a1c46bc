//! What other nodes ask of this one: broadcasts to deliver to local
//! sockets, requests to run and answer, and server-side events for the
//! application's handlers.

use std::sync::Arc;
use std::time::Duration;

use slog::{debug, info, Logger};

use super::delivery::{Deliver, Filter, Mode};
use super::dispatch::Dispatch;
use super::fanout::{describe, gather_acks, local_frames};
use super::room::{Broadcast as RoomBroadcast, RoomKey};
use super::shared::ServerShared;
use super::socket::Socket;
use super::user::DisconnectUser;
use crate::adapter::{Broadcast, Cluster, ClusterEvent, NodeId, RequestOp, ResponsePayload, Topic};
use crate::engineio::Sid;
use crate::socketio::payload::{payload_from_wire, payload_to_json, IntoArgs, Payload};

impl ServerShared {
    /// Deliver a broadcast from another node to the local sockets: only
    /// through the room (or namespace) actor of the topic it came by, so a
    /// socket in several target rooms takes it once (from the first target
    /// room it is in, as for a local emit).
    pub(crate) fn deliver_remote(&self, via: &Topic, broadcast: Broadcast) {
        let key = match via {
            Topic::Room { ns, room } => RoomKey {
                ns: ns.as_str().into(),
                room: Some(room.as_str().into()),
            },
            Topic::Namespace { ns } => RoomKey {
                ns: ns.as_str().into(),
                room: None,
            },
            // Not a route broadcasts take.
            Topic::Nodes | Topic::Node(_) => return,
        };
        // On the namespace topic with target rooms: targets that may be
        // socket ids of this node (see `BroadcastOperator::publish`).
        let direct = key.room.is_none() && !broadcast.rooms.is_empty();
        let actor = if direct {
            None
        } else {
            match self.rooms.get(&key) {
                Some(actor) => Some(actor),
                None => return,
            }
        };
        let filter = if broadcast.rooms.len() <= 1
            && broadcast.except_rooms.is_empty()
            && broadcast.except_sids.is_empty()
        {
            None
        } else {
            Some(Arc::new(Filter {
                rooms: broadcast.rooms.iter().map(|r| r.as_str().into()).collect(),
                except_rooms: broadcast
                    .except_rooms
                    .iter()
                    .map(|r| r.as_str().into())
                    .collect(),
                except_sids: broadcast
                    .except_sids
                    .iter()
                    .map(|s| Sid::from(s.as_str()))
                    .collect(),
            }))
        };
        let Some(frames) = local_frames(broadcast.frames, self.config.parser) else {
            self.metrics.bad_input("cluster_frames");
            debug!(self.log, "dropping a broadcast from another node that does not decode";
                "ns" => &*key.ns);
            return;
        };
        let Some(actor) = actor else {
            for room in &broadcast.rooms {
                if let Some(conn) = self.local_socket(&key.ns, room) {
                    conn.do_send(Deliver::one(
                        key.ns.clone(),
                        Sid::from(room.as_str()),
                        Some(room.as_str().into()),
                        frames.clone(),
                        filter.clone(),
                        Mode::volatile(broadcast.volatile),
                    ));
                }
            }
            return;
        };
        actor.do_send(RoomBroadcast {
            frames,
            filter,
            mode: Mode::volatile(broadcast.volatile),
        });
    }
    /// Run a request from another node and answer it through `reply`
    /// (a notification's reply sends nothing). Operations that wait (acks)
    /// answer from a task of their own; `serverSideEmit` is answered by the
    /// application's handler, if it acks.
    pub(crate) fn serve(self: &Arc<Self>, op: RequestOp, reply: Reply) {
        let done = |n: usize| ResponsePayload::Done { affected: n as u32 };
        let payload = match op {
            RequestOp::FetchSockets {
                ns,
                rooms,
                except_rooms,
            } => {
                let node = reply.cluster.node();
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &[]);
                ResponsePayload::Sockets(sockets.iter().map(|s| describe(s, node)).collect())
            }
            RequestOp::SocketsJoin {
                ns,
                rooms,
                except_rooms,
                sids,
                join,
            } => {
                let sockets = self.select_by(&ns, &rooms, &except_rooms, &sids);
                for s in &sockets {
                    for room in &join {
                        let _ = s.join(room.as_str());
                    }
                }
                done(sockets.len())
            }
            RequestOp::SocketsLeave {
                ns,
                rooms,
                except_rooms,
                sids,
                leave,
            } => {
                let sockets = self.select_by(&ns, &rooms, &except_rooms, &sids);
                for s in &sockets {
                    for room in &leave {
                        s.leave(room.as_str());
                    }
                }
                done(sockets.len())
            }
            RequestOp::DisconnectSockets {
                ns,
                rooms,
                except_rooms,
                close,
            } => {
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &[]);
                for s in &sockets {
                    if close {
                        s.close_connection();
                    } else {
                        s.disconnect();
                    }
                }
                done(sockets.len())
            }
            RequestOp::ServerSideEmit {
                ns,
                event,
                args_json,
                binary,
                want_ack,
            } => {
                let event = ServerEvent {
                    name: event,
                    payload: payload_from_wire(&args_json, binary),
                    origin: reply.origin,
                    ack: want_ack.then(|| ServerAck { reply }),
                };
                self.dispatch_server_event(&ns, event);
                return;
            }
            RequestOp::BroadcastWithAck {
                ns,
                rooms,
                except_rooms,
                except_sids,
                event,
                args_json,
                binary,
                timeout_ms,
            } => {
                let except_sids: Vec<Sid> =
                    except_sids.iter().map(|s| Sid::from(s.as_str())).collect();
                let sockets = self.select_local(&ns, &rooms, &except_rooms, &except_sids);
                let payload = payload_from_wire(&args_json, binary);
                let timeout = Duration::from_millis(timeout_ms);
                actix_rt::spawn(async move {
                    let (acks, unanswered) = gather_acks(&sockets, &event, &payload, timeout).await;
                    reply.send(ResponsePayload::Acks {
                        args: acks.iter().map(payload_to_json).collect(),
                        unanswered: unanswered as u32,
                    });
                });
                return;
            }
            RequestOp::UserEmit {
                ns,
                user,
                frames,
                volatile,
            } => {
                let Some(frames) = local_frames(frames, self.config.parser) else {
                    self.metrics.bad_input("cluster_frames");
                    debug!(self.log, "dropping a user emit from another node that does not decode";
                        "ns" => &ns);
                    return;
                };
                self.user_emit(&ns.into(), &user, frames, Mode::volatile(volatile));
                return;
            }
            RequestOp::DisconnectUser { user } => {
                let Some(actor) = self.users.get(&Arc::from(user.as_str())) else {
                    return reply.send(done(0));
                };
                actix_rt::spawn(async move {
                    let n = actor.send(DisconnectUser).await.unwrap_or(0);
                    reply.send(done(n));
                });
                return;
            }
        };
        reply.send(payload);
    }

    /// Hand a `serverSideEmit` from another node to a handler of `ns` (the
    /// one of the current thread). A namespace this node does not serve
    /// drops it; an ack then never comes, and the emitter sees this node
    /// `missing`.
    fn dispatch_server_event(&self, ns: &str, event: ServerEvent) {
        let Some(spec) = self.spec(ns) else {
            slog::debug!(self.log, "server-side event for a namespace not served here"; "ns" => ns);
            return;
        };
        self.handler(&spec).do_send(Dispatch::ServerEvent {
            ns: ns.into(),
            event,
        });
    }

    /// [`ServerShared::select_local`], or exactly the listed `sids` if any.
    fn select_by(
        &self,
        ns: &str,
        rooms: &[String],
        except_rooms: &[String],
        sids: &[String],
    ) -> Vec<Socket> {
        let mut sockets = self.select_local(ns, rooms, except_rooms, &[]);
        if !sids.is_empty() {
            sockets.retain(|s| sids.iter().any(|id| id == s.id()));
        }
        sockets
    }
}

/// The inbound side of the cluster: what other nodes send this node.
pub(crate) async fn cluster_events(
    shared: Arc<ServerShared>,
    mut events: tokio::sync::mpsc::Receiver<ClusterEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClusterEvent::Broadcast { via, broadcast, .. } => {
                shared.deliver_remote(&via, broadcast)
            }
            ClusterEvent::Request {
                origin,
                request_id,
                reply_to,
                op,
            } => {
                let Some(cluster) = shared.cluster() else {
                    continue;
                };
                let reply = Reply {
                    cluster: cluster.clone(),
                    log: shared.log.clone(),
                    origin,
                    request_id,
                    reply_to,
                };
                shared.serve(op, reply);
            }
            ClusterEvent::PeerUp(node) => info!(shared.log, "cluster peer up"; "peer" => node),
            ClusterEvent::PeerDown { node, reason } => {
                info!(shared.log, "cluster peer down"; "peer" => node, "reason" => ?reason)
            }
        }
    }
}

/// Where the answer to one cluster request goes.
pub(crate) struct Reply {
    cluster: Cluster,
    log: Logger,
    /// The node that asked.
    pub origin: NodeId,
    request_id: u64,
    reply_to: NodeId,
}

impl Reply {
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// Send the answer (nothing for a notification); a failure is logged:
    /// the requester then counts this node as missing.
    pub fn send(self, payload: ResponsePayload) {
        if let Err(e) = self
            .cluster
            .respond(self.request_id, self.reply_to, payload)
        {
            slog::warn!(self.log, "cluster reply not sent";
                "origin" => self.origin, "error" => %e);
        }
    }
}

/// An event from another node's `server_side_emit`.
#[derive(Debug)]
pub struct ServerEvent {
    pub name: String,
    pub payload: Payload,
    /// The node that sent it.
    pub origin: NodeId,
    /// Present when the emitter waits for an acknowledgement.
    pub ack: Option<ServerAck>,
}

/// Answers one `server_side_emit_with_ack` for this node; consumed by `send`.
pub struct ServerAck {
    pub(crate) reply: Reply,
}

impl ServerAck {
    /// Acknowledge with `payload` (its JSON arguments: binary attachments
    /// do not travel back to the emitter, and are dropped with a warning).
    pub fn send(self, args: impl IntoArgs) {
        let payload = args.into_args().unwrap_or_else(|e| {
            slog::warn!(self.reply.log(), "server-side ack not serializable"; "error" => %e);
            Payload::default()
        });
        if !payload.binary.is_empty() {
            slog::warn!(self.reply.log(), "binary attachments of a server-side ack dropped";
                "attachments" => payload.binary.len());
        }
        self.reply.send(ResponsePayload::Acks {
            args: vec![payload_to_json(&payload)],
            unanswered: 0,
        });
    }
}

impl std::fmt::Debug for ServerAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAck")
            .field("origin", &self.reply.origin)
            .finish()
    }
}

/// What `ServerHandle::server_side_emit_with_ack` gathered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerAcks {
    /// One acknowledgement per node that gave one in time.
    pub responses: Vec<(NodeId, Payload)>,
    /// Nodes that did not acknowledge in time.
    pub missing: Vec<NodeId>,
}
