//! Emitting to many sockets: rooms, exclusions, volatile, across nodes; a
//! fan-out encodes its packet once for all its receivers.

use std::sync::Arc;
use std::time::Duration;

use super::connection::could_be_v2_socket_id;
use super::delivery::{Deliver, Encoded, Filter, Mode};
use super::recovery::Target;
use super::room::{Broadcast, RoomKey};
use super::shared::{Emit, ServerShared};
use super::socket::{default_json_data, room_list, EmitError, Socket};
use crate::adapter::{
    Broadcast as ClusterBroadcast, NodeId, RemoteSocket, RequestOp, ResponsePayload, Topic,
    WireFrame,
};
use crate::engineio::{Frame, FrameRef, Sid};
use crate::socketio::encode::check_event_name;
use crate::socketio::parser::Parser;
use crate::socketio::payload::{payload_from_json, payload_to_wire, IntoArgs, Payload};

/// A broadcast being described: `to`, `except` and `volatile` narrow it,
/// `emit` sends it. Built from a socket (`to`, `within`, `broadcast`) or from
/// the server handle (`of`).
#[derive(Clone)]
pub struct BroadcastOperator {
    pub(crate) server: Arc<ServerShared>,
    pub(crate) ns: Arc<str>,
    pub(crate) rooms: Vec<Arc<str>>,
    pub(crate) except_rooms: Vec<Arc<str>>,
    pub(crate) except_sids: Vec<Sid>,
    pub(crate) volatile: bool,
}

impl BroadcastOperator {
    pub(crate) fn new(server: Arc<ServerShared>, ns: Arc<str>) -> BroadcastOperator {
        BroadcastOperator {
            server,
            ns,
            rooms: Vec::new(),
            except_rooms: Vec::new(),
            except_sids: Vec::new(),
            volatile: false,
        }
    }

    /// Add a target room (several rooms: their union, each socket once).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        let room: Arc<str> = room.into().into();
        if !self.rooms.contains(&room) {
            self.rooms.push(room);
        }
        self
    }

    /// Leave out the members of `room`.
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except_rooms.push(room.into().into());
        self
    }

    pub(crate) fn except_socket(mut self, sid: Sid) -> Self {
        self.except_sids.push(sid);
        self
    }

    /// Drop the message for clients that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Emit to the matching sockets of every node. Local sockets are served
    /// first, whatever happens next; with a cluster the packet is then
    /// published for the other nodes, and a refusal there
    /// ([`EmitError::Cluster`]) means the other nodes did not get it.
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        let emit =
            self.server
                .encode_emit(&self.ns, event, args.into_args()?, self.volatile, || {
                    Target::Rooms {
                        rooms: self.rooms.clone(),
                        except_rooms: self.except_rooms.clone(),
                        except_sids: self.except_sids.clone(),
                    }
                })?;
        match emit {
            Emit::Now(frames, mode) => self.send_encoded(frames, mode),
            Emit::Recorded => Ok(()),
        }
    }

    /// Emit to the matching sockets of every node and wait for each one's
    /// acknowledgement, at most `timeout` (`None`: `socketio.ack_timeout_ms`).
    /// Each receiver gets the event with its own ack id; every node waits for
    /// its own receivers and answers with what arrived in time, so the result
    /// comes after the timeout at the latest (plus one broker round trip),
    /// even when a node died meanwhile (it is then in `missing`). Not
    /// volatile: `volatile()` is ignored here.
    pub async fn emit_with_ack(
        self,
        event: &str,
        args: impl IntoArgs,
        timeout: Option<Duration>,
    ) -> Result<BroadcastAcks, EmitError> {
        check_event_name(event)?;
        let payload = args.into_args()?;
        let timeout = timeout.unwrap_or(self.server.config.ack_timeout);
        let local = self.select_local();
        let local = gather_acks(&local, event, &payload, timeout);
        let (args_json, binary) = payload_to_wire(&payload);
        let op = RequestOp::BroadcastWithAck {
            ns: self.ns.to_string(),
            rooms: self.room_names(),
            except_rooms: self.except_names(),
            except_sids: self
                .except_sids
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            event: event.to_owned(),
            args_json,
            binary,
            timeout_ms: timeout.as_millis() as u64,
        };
        let remote = self.request_within(op, timeout + REMOTE_ACK_GRACE);
        let ((mut acks, mut unanswered), (responses, missing)) = tokio::join!(local, remote);
        for r in responses {
            if let ResponsePayload::Acks {
                args,
                unanswered: n,
            } = r
            {
                acks.extend(args.iter().map(|a| payload_from_json(a)));
                unanswered += n as usize;
            }
        }
        Ok(BroadcastAcks {
            acks,
            unanswered,
            missing,
        })
    }

    pub(crate) fn send_encoded(self, frames: Encoded, mode: Mode) -> Result<(), EmitError> {
        let filter =
            if self.rooms.len() <= 1 && self.except_rooms.is_empty() && self.except_sids.is_empty()
            {
                None
            } else {
                Some(Arc::new(Filter {
                    rooms: self.rooms.clone(),
                    except_rooms: self.except_rooms.clone(),
                    except_sids: self.except_sids.clone(),
                }))
            };
        self.deliver_local(&frames, filter, mode);
        self.publish(&frames)
    }

    /// The matching sockets of every node (`fetchSockets`): this node's as
    /// handles, the others' as descriptions, and the peers that did not
    /// answer within the ack timeout (`missing`; every peer when the
    /// request could not be published).
    pub async fn fetch_sockets(self) -> FetchedSockets {
        let local = self.select_local();
        let op = RequestOp::FetchSockets {
            ns: self.ns.to_string(),
            rooms: self.room_names(),
            except_rooms: self.except_names(),
        };
        let (responses, missing) = self.request(op).await;
        let remote = responses
            .into_iter()
            .flat_map(|r| match r {
                ResponsePayload::Sockets(s) => s,
                _ => Vec::new(),
            })
            .collect();
        FetchedSockets {
            local,
            remote,
            missing,
        }
    }

    /// Make the matching sockets of every node join `room` (`socketsJoin`).
    pub async fn sockets_join(self, room: impl Into<String>) -> Affected {
        let room = room.into();
        let local = self.select_local();
        for s in &local {
            let _ = s.join(room.as_str());
        }
        let op = RequestOp::SocketsJoin {
            ns: self.ns.to_string(),
            rooms: self.room_names(),
            except_rooms: self.except_names(),
            sids: Vec::new(),
            join: vec![room],
        };
        self.affected(local.len(), op).await
    }

    /// Make the matching sockets of every node leave `room` (`socketsLeave`).
    pub async fn sockets_leave(self, room: impl Into<String>) -> Affected {
        let room = room.into();
        let local = self.select_local();
        for s in &local {
            s.leave(room.as_str());
        }
        let op = RequestOp::SocketsLeave {
            ns: self.ns.to_string(),
            rooms: self.room_names(),
            except_rooms: self.except_names(),
            sids: Vec::new(),
            leave: vec![room],
        };
        self.affected(local.len(), op).await
    }

    /// Disconnect the matching sockets of every node (`disconnectSockets`);
    /// `close` closes their whole connections.
    pub async fn disconnect_sockets(self, close: bool) -> Affected {
        let local = self.select_local();
        for s in &local {
            if close {
                s.close_connection();
            } else {
                s.disconnect();
            }
        }
        let op = RequestOp::DisconnectSockets {
            ns: self.ns.to_string(),
            rooms: self.room_names(),
            except_rooms: self.except_names(),
            close,
        };
        self.affected(local.len(), op).await
    }

    fn select_local(&self) -> Vec<Socket> {
        self.server
            .select_local(&self.ns, &self.rooms, &self.except_rooms, &self.except_sids)
    }

    fn room_names(&self) -> Vec<String> {
        self.rooms.iter().map(|r| r.to_string()).collect()
    }

    fn except_names(&self) -> Vec<String> {
        self.except_rooms.iter().map(|r| r.to_string()).collect()
    }

    async fn affected(&self, local: usize, op: RequestOp) -> Affected {
        affected_across(&self.server, local, op).await
    }

    /// Ask every peer; without a cluster, nobody.
    async fn request(&self, op: RequestOp) -> (Vec<ResponsePayload>, Vec<NodeId>) {
        self.request_within(op, self.server.config.ack_timeout)
            .await
    }

    async fn request_within(
        &self,
        op: RequestOp,
        timeout: Duration,
    ) -> (Vec<ResponsePayload>, Vec<NodeId>) {
        let (responses, missing) = request_peers(&self.server, op, timeout).await;
        (responses.into_iter().map(|(_, p)| p).collect(), missing)
    }

    /// Hand the packet to the other nodes (nothing without a cluster).
    fn publish(&self, frames: &Encoded) -> Result<(), EmitError> {
        let Some(cluster) = self.server.cluster() else {
            return Ok(());
        };
        // A local socket's id names no room on another node.
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .filter(|r| self.server.local_socket(&self.ns, r).is_none())
            .map(|r| r.to_string())
            .collect();
        if rooms.is_empty() && !self.rooms.is_empty() {
            return Ok(());
        }
        let ns = self.ns.to_string();
        let mut topics: Vec<Topic> = if rooms.is_empty() {
            vec![Topic::namespace(ns.clone())]
        } else {
            rooms
                .iter()
                .map(|r| Topic::room(ns.clone(), r.clone()))
                .collect()
        };
        // A socket of another node is no room there (no actor, no
        // subscription): a target that could be a socket id also goes to the
        // namespace's nodes, which hand it to that socket if it is theirs.
        // The receivers' filter keeps delivery exactly-once (a socket takes
        // it through the first target it is in).
        let v2 = self.server.config.v2_clients;
        if rooms
            .iter()
            .any(|r| Sid::could_be(r) || (v2 && could_be_v2_socket_id(r)))
        {
            topics.push(Topic::namespace(ns.clone()));
        }
        let broadcast = ClusterBroadcast {
            ns,
            rooms,
            except_rooms: self.except_rooms.iter().map(|r| r.to_string()).collect(),
            except_sids: self
                .except_sids
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            volatile: self.volatile,
            frames: wire_frames(frames),
        };
        cluster
            .broadcast_on(&topics, broadcast)
            .map_err(EmitError::Cluster)
    }

    fn deliver_local(&self, frames: &Encoded, filter: Option<Arc<Filter>>, mode: Mode) {
        let server = &self.server;
        if self.rooms.is_empty() {
            let key = RoomKey {
                ns: self.ns.clone(),
                room: None,
            };
            if let Some(room) = server.rooms.get(&key) {
                room.do_send(Broadcast {
                    frames: frames.clone(),
                    filter,
                    mode,
                });
            }
            return;
        }
        for room in &self.rooms {
            // A socket's own id is a room only that socket is in: served
            // directly, without an actor per socket.
            if let Some(conn) = server.local_socket(&self.ns, room) {
                conn.do_send(Deliver::one(
                    self.ns.clone(),
                    Sid::from(&**room),
                    Some(room.clone()),
                    frames.clone(),
                    filter.clone(),
                    mode.clone(),
                ));
                continue;
            }
            let key = RoomKey {
                ns: self.ns.clone(),
                room: Some(room.clone()),
            };
            if let Some(actor) = server.rooms.get(&key) {
                actor.do_send(Broadcast {
                    frames: frames.clone(),
                    filter: filter.clone(),
                    mode: mode.clone(),
                });
            }
        }
    }
}

/// What [`BroadcastOperator::fetch_sockets`] found.
#[derive(Debug)]
pub struct FetchedSockets {
    pub local: Vec<Socket>,
    pub remote: Vec<RemoteSocket>,
    /// Peers that did not answer in time: their sockets are not listed.
    pub missing: Vec<NodeId>,
}

/// What [`BroadcastOperator::emit_with_ack`] gathered.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastAcks {
    /// One per receiver that acknowledged in time: this node's first, then
    /// the other nodes' in the order they answered. Acks from other nodes
    /// carry their JSON arguments only (binary attachments stay there).
    pub acks: Vec<Payload>,
    /// Receivers (here and on the nodes that answered) that did not
    /// acknowledge in time or disconnected first.
    pub unanswered: usize,
    /// Nodes that did not answer: their receivers are in neither count.
    pub missing: Vec<NodeId>,
}

/// How many sockets a cluster-wide operation applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    pub local: usize,
    pub remote: usize,
    /// Peers that did not answer in time: the operation may or may not
    /// have been applied there.
    pub missing: Vec<NodeId>,
}

/// A local socket as another node sees it in `fetchSockets`.
pub(crate) fn describe(s: &Socket, node: NodeId) -> RemoteSocket {
    let inner = &s.inner;
    let rooms = room_list(&inner.rooms.lock().rooms, &inner.id);
    let hs = &inner.handshake;
    let headers: serde_json::Map<String, serde_json::Value> = hs
        .headers
        .iter()
        // Credentials stay on the node that received them.
        .filter(|(k, _)| {
            *k != actix_web::http::header::COOKIE
                && *k != actix_web::http::header::AUTHORIZATION
                && *k != actix_web::http::header::PROXY_AUTHORIZATION
        })
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    let handshake = serde_json::json!({
        "query": hs.query,
        "address": hs.client_ip.map(|a| a.to_string()),
        "transport": inner.transport(),
        "issued": hs.issued
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        "auth": inner.auth.get(),
        "user": inner.user.as_deref(),
        // For the admin UI's socket list (its `clientId` and headers).
        "session": hs.sid.as_str(),
        "headers": headers,
        // `socket.data` ([`RemoteSocket::data`]): in this JSON rather than a
        // field of its own, so the envelope (version 3) is unchanged and
        // nodes of either release read each other's answers.
        "data": s.json_data(),
    });
    RemoteSocket {
        id: inner.id.to_string(),
        ns: inner.ns.to_string(),
        rooms,
        handshake_json: handshake.to_string(),
        node,
    }
}

impl RemoteSocket {
    /// The socket's JSON data ([`Socket::json_data`]) as its node had it
    /// when it answered. A node of an earlier release does not send it: its
    /// sockets read as not set (`{}`, or `{"user": id}`).
    pub fn data(&self) -> serde_json::Value {
        let Ok(serde_json::Value::Object(mut described)) =
            serde_json::from_str::<serde_json::Value>(&self.handshake_json)
        else {
            return default_json_data(None);
        };
        match described.remove("data") {
            Some(data) => data,
            None => default_json_data(described.get("user").and_then(|u| u.as_str())),
        }
    }
}

/// Emit to every socket of one user in one namespace, on every node.
pub struct UserOperator {
    pub(crate) server: Arc<ServerShared>,
    pub(crate) ns: Arc<str>,
    pub(crate) user: Arc<str>,
}

impl UserOperator {
    /// Local sockets are served first; with a cluster the packet then goes
    /// to every node (a user has no subscription of its own), and a refusal
    /// there ([`EmitError::Cluster`]) means the other nodes did not get it.
    pub fn emit(self, event: &str, args: impl IntoArgs) -> Result<(), EmitError> {
        let emit = self
            .server
            .encode_emit(&self.ns, event, args.into_args()?, false, || {
                Target::User(self.user.clone())
            })?;
        match emit {
            Emit::Now(frames, mode) => self.send_encoded(frames, mode),
            Emit::Recorded => Ok(()),
        }
    }

    pub(crate) fn send_encoded(self, frames: Encoded, mode: Mode) -> Result<(), EmitError> {
        let volatile = mode.is_volatile();
        self.server
            .user_emit(&self.ns, &self.user, frames.clone(), mode);
        let Some(cluster) = self.server.cluster() else {
            return Ok(());
        };
        cluster
            .notify(RequestOp::UserEmit {
                ns: self.ns.to_string(),
                user: self.user.to_string(),
                frames: wire_frames(&frames),
                volatile,
            })
            .map_err(EmitError::Cluster)
    }
}

/// Frames as they cross nodes.
pub(crate) fn wire_frames(frames: &Encoded) -> Vec<WireFrame> {
    frames
        .iter()
        .map(|f| match f.view() {
            FrameRef::Text(t) => WireFrame::Text(t.to_string()),
            FrameRef::Binary(b) => WireFrame::Binary(b.to_vec()),
        })
        .collect()
}

/// Frames from another node (or a recovery stream), in this node's parser's
/// encoding: each node encodes with its own parser, so a node that speaks
/// another one (a cluster moving from one parser to the other) has its
/// packets decoded and encoded again, once per broadcast. `None` if they
/// do not decode.
pub(crate) fn local_frames(frames: Vec<WireFrame>, parser: Parser) -> Option<Encoded> {
    let frames: Vec<Frame> = frames
        .into_iter()
        .map(|f| match f {
            WireFrame::Text(t) => Frame::text(&t),
            WireFrame::Binary(b) => Frame::binary(&b),
        })
        .collect();
    parser.adopt(frames.into())
}

/// How long past the ack timeout the emitter waits for the other nodes'
/// answers (each waits the timeout itself, then answers).
pub(crate) const REMOTE_ACK_GRACE: Duration = Duration::from_millis(1000);

/// Ask every peer (nobody without a cluster): the answers, and the peers
/// that did not answer in time (every peer if the request was not sent).
pub(crate) async fn request_peers(
    server: &ServerShared,
    op: RequestOp,
    timeout: Duration,
) -> (Vec<(NodeId, ResponsePayload)>, Vec<NodeId>) {
    let Some(cluster) = server.cluster() else {
        return (Vec::new(), Vec::new());
    };
    match cluster.request(op, timeout).await {
        Ok(outcome) => (outcome.responses, outcome.missing),
        Err(e) => {
            slog::warn!(server.log, "cluster request not sent"; "error" => %e);
            (Vec::new(), cluster.peers())
        }
    }
}

/// Run `op` on every peer and add up the sockets it applied to there.
pub(crate) async fn affected_across(
    server: &ServerShared,
    local: usize,
    op: RequestOp,
) -> Affected {
    let (responses, missing) = request_peers(server, op, server.config.ack_timeout).await;
    let remote = responses
        .iter()
        .map(|(_, r)| match r {
            ResponsePayload::Done { affected } => *affected as usize,
            _ => 0,
        })
        .sum();
    Affected {
        local,
        remote,
        missing,
    }
}

/// Emit `event` with an ack to each of `sockets` and wait for them all, at
/// most `timeout`: the acks that came, and how many did not.
pub(crate) async fn gather_acks(
    sockets: &[Socket],
    event: &str,
    payload: &Payload,
    timeout: Duration,
) -> (Vec<Payload>, usize) {
    let waits = sockets
        .iter()
        .filter_map(|s| s.emit_with_ack(event, payload.clone(), Some(timeout)).ok());
    let results = futures_util::future::join_all(waits).await;
    let mut acks = Vec::with_capacity(results.len());
    let mut unanswered = 0;
    for r in results {
        match r {
            Ok(p) => acks.push(p),
            Err(_) => unanswered += 1,
        }
    }
    (acks, unanswered)
}
