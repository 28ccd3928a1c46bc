//! What the admin UI reads, in the shapes `@socket.io/admin-ui` 0.5.x sends
//! them: a socket as `serialize()` makes it, JavaScript's date strings, an
//! event's arguments out of its encoded frames.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::adapter::RemoteSocket;
use crate::engineio::{url_query_pairs, CloseReason, Handshake};
use crate::node::socket::{room_list, DisconnectReason, Socket};
use crate::socketio::encode::Encoded;
use crate::socketio::msgpack::{civil_from_days, iso_date};
use crate::socketio::packet::PacketData;
use crate::socketio::parser::decode_frames;

/// How the node's sockets are reached: the parts of `handshake.url` and
/// `handshake.secure` the handshake itself does not carry.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// `server.path` (`/socket.io`).
    pub path: String,
    /// `server.tls` is on.
    pub secure: bool,
}

/// A local socket as the UI lists it (`serialize` in the admin-ui sources).
pub(super) fn local_socket(s: &Socket, at: &Endpoint) -> Value {
    let inner = &s.inner;
    let hs: &Handshake = &inner.handshake;
    let headers: Map<String, Value> = hs
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    let rooms = room_list(&inner.rooms.lock().rooms, &inner.id);
    let issued = millis(hs.issued);
    serialized(
        s.id(),
        s.namespace(),
        hs.sid.as_str(),
        inner.transport(),
        s.json_data(),
        Handshake_ {
            address: hs.client_ip.map(|a| a.to_string()).unwrap_or_default(),
            xdomain: headers.contains_key("origin"),
            headers,
            query: &hs.query,
            issued,
        },
        rooms,
        at,
    )
}

/// Another node's socket, from what `fetchSockets` tells of it
/// (`node::fanout::describe`).
pub(super) fn remote_socket(s: &RemoteSocket, at: &Endpoint) -> Value {
    let hs: Value = serde_json::from_str(&s.handshake_json).unwrap_or(Value::Null);
    let str_of = |key: &str| hs.get(key).and_then(Value::as_str).unwrap_or("");
    let headers = match hs.get("headers") {
        Some(Value::Object(h)) => h.clone(),
        _ => Map::new(),
    };
    // `describe` sends the query parsed (a map): the URL is rebuilt from it.
    let query = match hs.get("query") {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Object(q)) => q
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("&"),
        _ => String::new(),
    };
    serialized(
        &s.id,
        &s.ns,
        str_of("session"),
        str_of("transport"),
        s.data(),
        Handshake_ {
            address: str_of("address").to_owned(),
            xdomain: headers.contains_key("origin"),
            headers,
            query: &query,
            issued: hs.get("issued").and_then(Value::as_u64).unwrap_or(0),
        },
        s.rooms.clone(),
        at,
    )
}

struct Handshake_<'a> {
    address: String,
    headers: Map<String, Value>,
    query: &'a str,
    issued: u64,
    xdomain: bool,
}

#[allow(clippy::too_many_arguments)]
fn serialized(
    id: &str,
    ns: &str,
    session: &str,
    transport: &str,
    data: Value,
    hs: Handshake_<'_>,
    rooms: Vec<String>,
    at: &Endpoint,
) -> Value {
    let query: Map<String, Value> = url_query_pairs(hs.query)
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let url = if hs.query.is_empty() {
        format!("{}/", at.path)
    } else {
        format!("{}/?{}", at.path, hs.query)
    };
    json!({
        "id": id,
        // The Engine.IO connection's id, 12 characters as the reference's:
        // its end (in a cluster it starts with the node's id, which every
        // connection of a node shares, and the UI groups sockets by it).
        "clientId": session.get(session.len().saturating_sub(12)..).unwrap_or(session),
        "transport": transport,
        "nsp": ns,
        // `socket.data`: Socket::json_data (a handler's typed extensions
        // are not JSON, and are not shown).
        "data": data,
        "handshake": {
            "address": hs.address,
            "headers": hs.headers,
            "query": query,
            "issued": hs.issued,
            "secure": at.secure,
            "time": date_string(UNIX_EPOCH + Duration::from_millis(hs.issued)),
            "url": url,
            "xdomain": hs.xdomain,
        },
        "rooms": rooms,
    })
}

/// The event (name first, then its arguments) encoded frames carry, with
/// its binary attachments (the placeholders in the arguments point at
/// them, as they did in the packet); `None` for anything but an event
/// (acks are not reported, as in the reference).
pub(super) fn sent_event(frames: &Encoded) -> Option<(Value, Vec<Bytes>)> {
    // Either parser's frames: the node's own.
    match decode_frames(frames)?.data {
        PacketData::Event { data, .. } => Some((data, Vec::new())),
        PacketData::BinaryEvent {
            data, attachments, ..
        } => Some((data, attachments)),
        _ => None,
    }
}

/// An Engine.IO close reason as the reference's engine names it (the
/// `subType` of `rawDisconnection`): it has five; a session Riptide closed
/// for its own reasons (shutdown, no CONNECT in time, a slow consumer) is
/// one the server closed, `"forced close"`, as `socket.close()` there.
pub(super) fn engine_close_reason(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::TransportClose
        | CloseReason::TransportError
        | CloseReason::PingTimeout
        | CloseReason::ParseError
        | CloseReason::ForcedClose => reason.as_str(),
        CloseReason::ServerShutdown | CloseReason::ConnectTimeout | CloseReason::SlowConsumer => {
            CloseReason::ForcedClose.as_str()
        }
    }
}

/// A socket's disconnect reason as the reference server would give it
/// (its `disconnect` event's, which `instrument()` reports): Riptide's own
/// reasons are what the client went through there. A handler panic
/// disconnected the socket from its namespace, the client told (`41`), as
/// `socket.disconnect()`; a slow consumer's connection was closed by the
/// server, as `socket.conn.close()`.
pub(super) fn disconnect_reason(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::HandlerPanic => DisconnectReason::ServerNamespaceDisconnect.as_str(),
        DisconnectReason::SlowConsumer => DisconnectReason::ForcedClose.as_str(),
        other => other.as_str(),
    }
}

pub(super) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `Date#toISOString()`: `2026-12-02T06:58:23.687Z`.
pub(super) fn iso(t: SystemTime) -> String {
    // Any SystemTime after the epoch is within a Date's range.
    iso_date(millis(t) as i64).unwrap_or_default()
}

/// `Date#toString()` in UTC: `Wed Dec 02 2026 06:57:59 GMT+0000 (Coordinated Universal Time)`.
fn date_string(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = millis(t) / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let (h, mi, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let weekday = DAYS[((secs / 86_400) % 7) as usize];
    let month = MONTHS[(mo - 1) as usize];
    format!("{weekday} {month} {d:02} {y:04} {h:02}:{mi:02}:{s:02} GMT+0000 (Coordinated Universal Time)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::Frame;

    #[test]
    fn dates_read_as_javascript_writes_them() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_194_703_687);
        assert_eq!(iso(t), "2026-12-02T06:58:23.687Z");
        assert_eq!(
            date_string(t),
            "Wed Dec 02 2026 06:58:23 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(iso(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn reasons_are_the_references() {
        assert_eq!(
            disconnect_reason(DisconnectReason::HandlerPanic),
            "server namespace disconnect"
        );
        assert_eq!(
            disconnect_reason(DisconnectReason::SlowConsumer),
            "forced close"
        );
        assert_eq!(
            disconnect_reason(DisconnectReason::ServerShuttingDown),
            "server shutting down"
        );
        assert_eq!(
            engine_close_reason(CloseReason::PingTimeout),
            "ping timeout"
        );
        assert_eq!(
            engine_close_reason(CloseReason::ServerShutdown),
            "forced close"
        );
        assert_eq!(
            engine_close_reason(CloseReason::ConnectTimeout),
            "forced close"
        );
    }

    #[test]
    fn sent_events_are_read_back_from_their_frames() {
        let one = |t: &str| -> Encoded { vec![Frame::message(t)].into() };
        let args = |f: &Encoded| sent_event(f).map(|(args, _)| args);
        assert_eq!(args(&one("2[\"msg\",1]")), Some(json!(["msg", 1])));
        assert_eq!(
            args(&one("2/chat,12[\"msg\",{\"a\":[1]}]")),
            Some(json!(["msg", { "a": [1] }]))
        );
        let binary: Encoded = vec![
            Frame::message("51-/x,[\"b\",{\"_placeholder\":true,\"num\":0}]"),
            Frame::binary(&[1, 2, 3]),
        ]
        .into();
        assert_eq!(
            sent_event(&binary),
            Some((
                json!(["b", { "_placeholder": true, "num": 0 }]),
                vec![Bytes::from_static(&[1, 2, 3])]
            ))
        );
        assert_eq!(args(&one("3/chat,1[\"ack\"]")), None);
        assert_eq!(args(&one("0/chat,{}")), None);
        assert_eq!(args(&one("2not json")), None);
    }
}
