//! The one place that turns a [`ClusterEnvelope`] into bytes and back.
//!
//! # Layout
//!
//! ```text
//! version: u16 big-endian | origin: 12 ASCII bytes | seq: u64 big-endian | body: bincode
//! ```
//!
//! The header is fixed-size and not bincode, for three reasons: the version
//! is readable before anything else, whatever a future version does to the
//! body (an unknown version is [`CodecError::UnknownVersion`], counted as
//! `riptide_adapter_errors_total{kind="unknown_version"}` and dropped, never
//! a panic); a receiver reads origin and sequence (to drop its own messages
//! and duplicates) without decoding the body; and a sender can encode the
//! body once, outside any lock, and stamp the sequence number into the
//! header under the lock that orders its publishes ([`stamp`]).
//!
//! The body is bincode 2 (`standard()` config: varint integers,
//! little-endian) with a byte limit ([`MAX_BODY_LEN`]), so a malicious or
//! corrupt length prefix cannot make the decoder allocate more than that;
//! trailing bytes after the body are an error too.
//!
//! Version 1 is this layout. A change to [`Body`] that an old node cannot
//! decode must bump [`VERSION`]; during a rolling upgrade old and new nodes
//! then ignore (and count) each other's messages instead of misreading them.

use bincode::de::Decoder;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{Decode, Encode};
use bytes::Bytes;

use super::{NodeId, NODE_ID_LEN};

/// The envelope version this node writes and reads. 2: broadcasts with
/// acks became a request ([`RequestOp::BroadcastWithAck`]), user operations
/// and chunked `fetchSockets` answers were added. 3: heartbeats carry the
/// node's HTTP address (requests for sessions it owns are forwarded there).
pub const VERSION: u16 = 3;

/// Bytes before the body: version, origin, seq.
pub const HEADER_LEN: usize = 2 + NODE_ID_LEN + 8;

/// Largest body the decoder accepts (NATS's hard maximum payload).
pub const MAX_BODY_LEN: usize = 64 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_BODY_LEN>()
}

/// What crosses nodes.
#[cfg(any(test, feature = "internals"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEnvelope {
    pub version: u16,
    /// The node that sent it.
    pub origin: NodeId,
    /// Strictly increasing per origin, over all topics (see [`super::cluster`]).
    pub seq: u64,
    pub body: Body,
}

/// The fixed header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub origin: NodeId,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Body {
    /// Frames to deliver to matching local sockets of the receiving node.
    Broadcast(Broadcast),
    /// A cluster-wide (or node-addressed) operation; answered by [`Body::Response`].
    Request {
        request_id: u64,
        reply_to: NodeId,
        op: RequestOp,
    },
    Response {
        request_id: u64,
        from: NodeId,
        payload: ResponsePayload,
    },
    /// "I am alive"; see [`super::cluster`] for `nodes_sent`.
    Heartbeat {
        started_at_ms: u64,
        /// Envelopes this node published on `Topic::Nodes` up to and
        /// including this one: receivers compare with what they got to count
        /// losses on the cluster-wide stream.
        nodes_sent: u64,
        /// Where other nodes reach this one over HTTP (`server.advertise_url`),
        /// to forward a client's request for a session it owns; empty when
        /// it does not take forwarded requests.
        http_url: String,
    },
    /// The sender is stopping cleanly: drop it from the peer table now.
    Goodbye,
}

/// An emit to sockets of one namespace, as the emitting node resolved it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct Broadcast {
    pub ns: String,
    /// Target rooms; empty = the whole namespace. A socket in several gets
    /// the message once (from the first listed room it is in).
    pub rooms: Vec<String>,
    pub except_rooms: Vec<String>,
    pub except_sids: Vec<String>,
    pub volatile: bool,
    /// Already-encoded Engine.IO frames: the text packet and its attachments.
    pub frames: Vec<WireFrame>,
}

/// One Engine.IO frame, as the engine encoded it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum WireFrame {
    Text(String),
    Binary(Vec<u8>),
}

impl WireFrame {
    #[cfg(any(test, feature = "internals"))]
    pub fn len(&self) -> usize {
        match self {
            WireFrame::Text(t) => t.len(),
            WireFrame::Binary(b) => b.len(),
        }
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum RequestOp {
    /// Describe the matching sockets (`fetchSockets`).
    FetchSockets {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
    },
    /// Make matching sockets (or the listed `sids`) join rooms.
    SocketsJoin {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        sids: Vec<String>,
        join: Vec<String>,
    },
    /// Make matching sockets (or the listed `sids`) leave rooms.
    SocketsLeave {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        sids: Vec<String>,
        leave: Vec<String>,
    },
    DisconnectSockets {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        close: bool,
    },
    /// `serverSideEmit`: an event for the other nodes' handlers of `ns`.
    /// Sent as a notification (nobody answers) unless `want_ack`.
    ServerSideEmit {
        ns: String,
        event: String,
        /// The arguments, a JSON array text.
        args_json: String,
        /// Binary attachments the arguments' placeholders refer to.
        binary: Vec<Vec<u8>>,
        want_ack: bool,
    },
    /// An emit whose emitter waits for every receiving client's ack: each
    /// node emits to its matching sockets with its own ack ids, waits up to
    /// `timeout_ms` and answers [`ResponsePayload::Acks`].
    BroadcastWithAck {
        ns: String,
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        except_sids: Vec<String>,
        event: String,
        args_json: String,
        binary: Vec<Vec<u8>>,
        timeout_ms: u64,
    },
    /// Emit to the sockets of `user` in `ns` (a notification: nobody answers).
    UserEmit {
        ns: String,
        user: String,
        frames: Vec<WireFrame>,
        volatile: bool,
    },
    /// Disconnect every socket of `user`.
    DisconnectUser { user: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum ResponsePayload {
    /// A node's (last part of its) `fetchSockets` answer.
    Sockets(Vec<RemoteSocket>),
    /// Part of a `fetchSockets` answer too large for one broker message;
    /// more follows, the last part as [`ResponsePayload::Sockets`].
    SocketsPart(Vec<RemoteSocket>),
    Done {
        affected: u32,
    },
    /// Acknowledgements: each a JSON array text (the ack's arguments);
    /// `unanswered` counts the receivers that did not ack in time.
    Acks {
        args: Vec<String>,
        unanswered: u32,
    },
}

/// A socket on another node, as `fetchSockets` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RemoteSocket {
    pub id: String,
    pub ns: String,
    pub rooms: Vec<String>,
    pub handshake_json: String,
    pub node: NodeId,
}

/// Why bytes are not an envelope this node can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown envelope version {0} (this node reads {VERSION})")]
    UnknownVersion(u16),
    #[error("envelope truncated")]
    Truncated,
    #[error("envelope origin is not a node id")]
    BadOrigin,
    #[error("malformed envelope body: {0}")]
    Malformed(String),
}

impl CodecError {
    /// The `kind` label it is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::UnknownVersion(_) => "unknown_version",
            _ => "decode",
        }
    }
}

impl Encode for NodeId {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.as_bytes().encode(encoder)
    }
}

impl<Context> Decode<Context> for NodeId {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let bytes = <[u8; NODE_ID_LEN]>::decode(decoder)?;
        NodeId::from_bytes(&bytes).ok_or(DecodeError::Other("invalid node id"))
    }
}

bincode::impl_borrow_decode!(NodeId);

// ---- connection state recovery's records -----------------------------------

/// The version of the records the recovery store holds
/// ([`StoredEvent`], [`SessionRecord`]): a 2-byte big-endian prefix, then
/// bincode. They outlive the process that wrote them (a rolling upgrade
/// reads what the old version stored), so an unknown version is refused
/// (the event skipped, the session not recovered), never misread.
pub const RECORD_VERSION: u16 = 1;

/// A stored event, as a namespace's recovery stream holds it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredEvent {
    /// Unique in the cluster (the emitting node's id and a counter): a
    /// record appended twice (a retry after an answer lost with the broker)
    /// is delivered once.
    pub id: String,
    pub ns: String,
    pub target: StoredTarget,
    /// The encoded frames without the offset: the text frame's JSON array
    /// gets it as its last element when the event is delivered.
    pub frames: Vec<WireFrame>,
}

/// Who a stored event is for.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum StoredTarget {
    /// The members of `rooms` (the whole namespace when empty; a socket id
    /// is a room), except those of `except_rooms` and `except_sids`.
    Rooms {
        rooms: Vec<String>,
        except_rooms: Vec<String>,
        except_sids: Vec<String>,
    },
    /// Every socket of one user.
    User(String),
}

/// A recoverable socket's state, as the recovery store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SessionRecord {
    pub ns: String,
    pub sid: String,
    pub user: Option<String>,
    pub rooms: Vec<String>,
    /// The stream position when the pid was first issued.
    pub from: u64,
    /// The last stored event written to the socket, as far as the writer knew.
    pub last_stored: Option<u64>,
    /// Trailing strings of the last volatile events written, each with the
    /// last stored event before it.
    pub tails: Vec<(String, Option<u64>)>,
    /// The node that wrote it.
    pub node: NodeId,
    /// Disconnected (`true`), or connected as of `at_ms` (a node that was
    /// killed leaves its sockets' records so).
    pub parked: bool,
    /// When it was written (ms since the Unix epoch).
    pub at_ms: u64,
}

/// A recovery record's bytes.
pub fn encode_record<T: Encode>(value: &T) -> Bytes {
    let mut buf = RECORD_VERSION.to_be_bytes().to_vec();
    let _ = bincode::encode_into_std_write(value, &mut buf, bincode::config::standard());
    buf.into()
}

/// A recovery record from its bytes; an unknown version is an error.
pub fn decode_record<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < 2 {
        return Err(CodecError::Truncated);
    }
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    if version != RECORD_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, read): (T, usize) =
        bincode::decode_from_slice(&bytes[2..], config()).map_err(|e| match e {
            DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            other => CodecError::Malformed(other.to_string()),
        })?;
    if read != bytes.len() - 2 {
        return Err(CodecError::Malformed("trailing bytes".into()));
    }
    Ok(value)
}

/// Encode a whole envelope (any version: tests write unknown ones).
#[cfg(any(test, feature = "internals"))]
pub fn encode(envelope: &ClusterEnvelope) -> Bytes {
    let mut buf = encode_body(&envelope.body);
    stamp(&mut buf, envelope.version, envelope.origin, envelope.seq);
    buf.into()
}

/// The body after a zeroed header; [`stamp`] fills the header in.
pub fn encode_body(body: &Body) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN];
    // Encoding into a Vec fails only on the size limit, which encoding does
    // not check (the broker's max_payload is the limit a sender meets).
    let _ = bincode::encode_into_std_write(body, &mut buf, bincode::config::standard());
    buf
}

/// The bincode size of `value` (for splitting answers to fit the broker).
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    let mut counter = bincode::enc::write::SizeWriter::default();
    let _ = bincode::encode_into_writer(value, &mut counter, bincode::config::standard());
    counter.bytes_written
}

/// Write the header into a buffer from [`encode_body`].
pub fn stamp(buf: &mut [u8], version: u16, origin: NodeId, seq: u64) {
    buf[0..2].copy_from_slice(&version.to_be_bytes());
    buf[2..2 + NODE_ID_LEN].copy_from_slice(origin.as_bytes());
    buf[2 + NODE_ID_LEN..HEADER_LEN].copy_from_slice(&seq.to_be_bytes());
}

/// Read the header only: version first.
pub fn decode_header(bytes: &[u8]) -> Result<Header, CodecError> {
    if bytes.len() < 2 {
        return Err(CodecError::Truncated);
    }
    let version = u16::from_be_bytes([bytes[0], bytes[1]]);
    if version != VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated);
    }
    let origin = NodeId::from_bytes(&bytes[2..2 + NODE_ID_LEN]).ok_or(CodecError::BadOrigin)?;
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[2 + NODE_ID_LEN..HEADER_LEN]);
    Ok(Header {
        version,
        origin,
        seq: u64::from_be_bytes(seq),
    })
}

/// Decode the body of an envelope whose header [`decode_header`] accepted.
pub fn decode_body(bytes: &[u8]) -> Result<Body, CodecError> {
    let body = bytes.get(HEADER_LEN..).ok_or(CodecError::Truncated)?;
    let (value, read): (Body, usize) =
        bincode::decode_from_slice(body, config()).map_err(|e| match e {
            DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            other => CodecError::Malformed(other.to_string()),
        })?;
    if read != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes",
            body.len() - read
        )));
    }
    Ok(value)
}

#[cfg(any(test, feature = "internals"))]
pub fn decode(bytes: &[u8]) -> Result<ClusterEnvelope, CodecError> {
    let header = decode_header(bytes)?;
    Ok(ClusterEnvelope {
        version: header.version,
        origin: header.origin,
        seq: header.seq,
        body: decode_body(bytes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn samples() -> Vec<Body> {
        let a = node("aaaaaaaaaaaa");
        vec![
            Body::Broadcast(Broadcast {
                ns: "/chat".into(),
                rooms: vec!["lobby".into(), "é.*>".into()],
                except_rooms: vec!["muted".into()],
                except_sids: vec!["sid1".into()],
                volatile: true,
                frames: vec![
                    WireFrame::Text("42[\"hi\"]".into()),
                    WireFrame::Binary(vec![0, 1, 255]),
                ],
            }),
            Body::Request {
                request_id: u64::MAX,
                reply_to: a,
                op: RequestOp::SocketsJoin {
                    ns: "/".into(),
                    rooms: vec![],
                    except_rooms: vec![],
                    sids: vec!["x".into()],
                    join: vec!["r".into()],
                },
            },
            Body::Request {
                request_id: 1,
                reply_to: a,
                op: RequestOp::ServerSideEmit {
                    ns: "/".into(),
                    event: "ev".into(),
                    args_json: "[1,2]".into(),
                    binary: vec![vec![9, 8]],
                    want_ack: true,
                },
            },
            Body::Request {
                request_id: 2,
                reply_to: a,
                op: RequestOp::BroadcastWithAck {
                    ns: "/".into(),
                    rooms: vec!["r".into()],
                    except_rooms: vec![],
                    except_sids: vec!["s".into()],
                    event: "ev".into(),
                    args_json: "[]".into(),
                    binary: vec![],
                    timeout_ms: 5000,
                },
            },
            Body::Request {
                request_id: 0,
                reply_to: a,
                op: RequestOp::UserEmit {
                    ns: "/".into(),
                    user: "u".into(),
                    frames: vec![WireFrame::Text("42[\"x\"]".into())],
                    volatile: false,
                },
            },
            Body::Request {
                request_id: 5,
                reply_to: a,
                op: RequestOp::DisconnectUser { user: "u".into() },
            },
            Body::Response {
                request_id: 3,
                from: a,
                payload: ResponsePayload::Sockets(vec![RemoteSocket {
                    id: "s".into(),
                    ns: "/".into(),
                    rooms: vec!["s".into(), "r".into()],
                    handshake_json: "{}".into(),
                    node: a,
                }]),
            },
            Body::Response {
                request_id: 4,
                from: a,
                payload: ResponsePayload::Acks {
                    args: vec!["[1]".into()],
                    unanswered: 2,
                },
            },
            Body::Response {
                request_id: 6,
                from: a,
                payload: ResponsePayload::SocketsPart(vec![]),
            },
            Body::Heartbeat {
                started_at_ms: 1_700_000_000_000,
                nodes_sent: 42,
                http_url: "http://10.0.0.7:3000".into(),
            },
            Body::Goodbye,
        ]
    }

    #[test]
    fn round_trip() {
        for (i, body) in samples().into_iter().enumerate() {
            let env = ClusterEnvelope {
                version: VERSION,
                origin: node("b0b0b0b0b0b0"),
                seq: i as u64 * 1_000_003,
                body,
            };
            let bytes = encode(&env);
            assert_eq!(decode(&bytes), Ok(env));
        }
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        let env = ClusterEnvelope {
            version: 99,
            origin: node("b0b0b0b0b0b0"),
            seq: 1,
            body: Body::Goodbye,
        };
        let bytes = encode(&env);
        assert_eq!(decode(&bytes), Err(CodecError::UnknownVersion(99)));
        assert_eq!(decode(&bytes).unwrap_err().kind(), "unknown_version");
        // The version is read first: even a header-only stub says so.
        assert_eq!(decode(&[0, 99]), Err(CodecError::UnknownVersion(99)));
    }

    #[test]
    fn truncated_and_garbage_input() {
        let env = ClusterEnvelope {
            version: VERSION,
            origin: node("b0b0b0b0b0b0"),
            seq: 1,
            body: samples().remove(0),
        };
        let bytes = encode(&env);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(CodecError::Malformed(_))));

        let mut bad_origin = bytes.to_vec();
        bad_origin[3] = b'.';
        assert_eq!(decode(&bad_origin), Err(CodecError::BadOrigin));

        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300usize {
            let mut junk: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let _ = decode(&junk);
            if junk.len() >= HEADER_LEN {
                stamp(&mut junk, VERSION, node("cccccccccccc"), 1);
                let _ = decode(&junk);
            }
        }
    }

    #[test]
    fn oversize_length_prefix_is_refused_without_allocating_it() {
        // A Broadcast whose `ns` claims ~2^62 bytes.
        let mut buf = vec![0u8; HEADER_LEN];
        stamp(&mut buf, VERSION, node("cccccccccccc"), 1);
        buf.push(0); // Body::Broadcast
        buf.push(253); // varint u64 marker
        buf.extend_from_slice(&(1u64 << 62).to_le_bytes());
        buf.extend_from_slice(b"abc");
        assert!(decode(&buf).is_err());

        // A body over MAX_BODY_LEN is refused by the limit.
        let big = Body::Broadcast(Broadcast {
            frames: vec![WireFrame::Binary(vec![7; MAX_BODY_LEN + 1])],
            ..Broadcast::default()
        });
        let env = ClusterEnvelope {
            version: VERSION,
            origin: node("cccccccccccc"),
            seq: 1,
            body: big,
        };
        assert!(matches!(
            decode(&encode(&env)),
            Err(CodecError::Malformed(_))
        ));
    }
}
