//! The server API of service mode (SERVICE.md, "Backends"): `POST
//! /api/publish`, `/api/disconnect`, `/api/revoke`, `GET /api/presence`,
//! `/api/info` over HTTP with `Authorization: Bearer <api.key>`, and the
//! same commands as request/reply on `<adapter.prefix>.api.<command>` when
//! the adapter is NATS. One function ([`run`]) serves both.
//!
//! Bodies are checked before anything is done: an unknown field, a missing
//! or mistyped one, a body over `api.max_body_bytes` gets a 4xx whose
//! `error` names the field (or the limit), counted in
//! `riptide_api_requests_total{command,status}`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use slog::{debug, warn};
use tokio::sync::mpsc;

use super::{user_room, Service};
use crate::adapter::notify::ApiRequest;
use crate::adapter::NodeId;
use crate::socketio::encode::check_event_name;

/// The longest `ack_timeout_ms` a publish may ask for: a request that
/// waits longer than a minute is better retried by the backend.
pub const MAX_ACK_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    rooms: Vec<String>,
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    persist: bool,
    #[serde(default)]
    ack_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomBody {
    room: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// The commands, by name (the HTTP path's last segment and the bus
/// subject's last token), and the HTTP method each takes.
const COMMANDS: &[(&str, Method)] = &[
    ("publish", Method::POST),
    ("disconnect", Method::POST),
    ("revoke", Method::POST),
    ("presence", Method::GET),
    ("info", Method::GET),
];

fn bad(message: impl Into<String>) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({ "error": message.into() }))
}

/// `body` as a `T`, or a 400 naming the field at fault.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, (StatusCode, Value)> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() || inner.is_syntax() || inner.is_eof() {
            bad(format!("body: {inner}"))
        } else {
            bad(format!("{path}: {inner}"))
        }
    })
}

fn missing_list(missing: &[NodeId]) -> Value {
    json!(missing.iter().map(NodeId::to_string).collect::<Vec<_>>())
}

fn nonempty(field: &str, value: &str) -> Result<(), (StatusCode, Value)> {
    if value.is_empty() {
        return Err(bad(format!("{field}: must not be empty")));
    }
    Ok(())
}

/// Run `command` with `body`: the status and the JSON answer.
pub async fn run(service: &Arc<Service>, command: &str, body: &[u8]) -> (StatusCode, Value) {
    let Some(handle) = service.handle().cloned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "starting" }),
        );
    };
    let outcome: Result<(StatusCode, Value), (StatusCode, Value)> = async {
        match command {
            "publish" => publish(service, &handle, parse(body)?).await,
            "disconnect" => {
                let b: UserBody = parse(body)?;
                nonempty("user", &b.user)?;
                let a = handle.disconnect_user(&b.user).await;
                Ok((
                    StatusCode::OK,
                    json!({ "local": a.local, "remote": a.remote, "missing": missing_list(&a.missing) }),
                ))
            }
            "revoke" => {
                let b: UserBody = parse(body)?;
                nonempty("user", &b.user)?;
                match service.revoke(&b.user).await {
                    Ok(answer) => Ok((StatusCode::OK, answer)),
                    Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, json!({ "error": e }))),
                }
            }
            "presence" => {
                let b: RoomBody = parse(body)?;
                nonempty("room", &b.room)?;
                Ok((StatusCode::OK, service.presence(&b.room).await))
            }
            "info" => {
                let _: Empty = parse(body)?;
                Ok((StatusCode::OK, service.info().await))
            }
            _ => Err((
                StatusCode::NOT_FOUND,
                json!({ "error": format!("unknown command {command:?}") }),
            )),
        }
    }
    .await;
    outcome.unwrap_or_else(|e| e)
}

async fn publish(
    service: &Arc<Service>,
    handle: &crate::api::ServerHandle,
    p: Publish,
) -> Result<(StatusCode, Value), (StatusCode, Value)> {
    let s = &service.settings;
    if p.rooms.is_empty() {
        return Err(bad("rooms: must name at least one room"));
    }
    if p.rooms.len() > s.api.max_rooms {
        return Err(bad(format!(
            "rooms: {} rooms, at most {} (api.max_rooms)",
            p.rooms.len(),
            s.api.max_rooms
        )));
    }
    for (i, r) in p.rooms.iter().chain(&p.except).enumerate() {
        if r.is_empty() {
            let field = if i < p.rooms.len() { "rooms" } else { "except" };
            return Err(bad(format!("{field}: a room name must not be empty")));
        }
    }
    if p.event.is_empty() || check_event_name(&p.event).is_err() {
        return Err(bad(format!(
            "event: {:?} is not an event a client can receive",
            p.event
        )));
    }
    if p.ack_timeout_ms > MAX_ACK_TIMEOUT_MS {
        return Err(bad(format!("ack_timeout_ms: at most {MAX_ACK_TIMEOUT_MS}")));
    }
    let offline: Vec<String> = if p.persist {
        let size = p.event.len() + p.data.to_string().len();
        if size > s.history.max_message_bytes {
            return Err(bad(format!(
                "data: {size} bytes to keep, at most {} (history.max_message_bytes)",
                s.history.max_message_bytes
            )));
        }
        let users: Vec<String> = p
            .rooms
            .iter()
            .filter_map(|r| r.strip_prefix("user:"))
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .filter(|u| !p.except.contains(&user_room(u)))
            .collect();
        if users.is_empty() {
            Vec::new()
        } else {
            let present = service.present(&users).await;
            users.into_iter().filter(|u| !present.contains(u)).collect()
        }
    } else {
        Vec::new()
    };
    let mut kept = 0usize;
    for user in &offline {
        if service.keep(user, &p.event, &p.data).await {
            kept += 1;
        }
    }
    let mut op = handle.of("/");
    for r in &p.rooms {
        op = op.to(r.as_str());
    }
    for e in &p.except {
        op = op.except(e.as_str());
    }
    let mut answer = if p.ack_timeout_ms > 0 {
        let timeout = Duration::from_millis(p.ack_timeout_ms);
        match op.emit_with_ack(&p.event, p.data, Some(timeout)).await {
            Ok(acks) => {
                let mut a =
                    json!({ "ok": true, "acked": acks.acks.len(), "unanswered": acks.unanswered });
                if !acks.missing.is_empty() {
                    a["missing"] = missing_list(&acks.missing);
                }
                a
            }
            Err(e) => return Err(bad(format!("data: {e}"))),
        }
    } else {
        match op.emit(&p.event, p.data) {
            Ok(()) => json!({ "ok": true }),
            Err(crate::node::socket::EmitError::Cluster(e)) => {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": format!("delivered on this node only: {e}") }),
                ))
            }
            Err(e) => return Err(bad(format!("data: {e}"))),
        }
    };
    if p.persist {
        answer["kept"] = json!(kept);
    }
    Ok((StatusCode::OK, answer))
}

/// `a == b` in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &HttpRequest, key: &str) -> bool {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            same(token.trim().as_bytes(), key.as_bytes())
        }
        _ => false,
    }
}

fn answer(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// Mount the API's routes (`/api/...`) for `service`.
pub fn routes(service: Arc<Service>, cfg: &mut web::ServiceConfig) {
    let service = web::Data::new(service);
    cfg.app_data(service).route(
        "/api/{command}",
        web::route().to(
            |req: HttpRequest, mut body: web::Payload, service: web::Data<Arc<Service>>| async move {
                let service = service.get_ref().clone();
                let name = req.match_info().get("command").unwrap_or_default().to_owned();
                let Some((command, method)) = COMMANDS.iter().find(|(c, _)| *c == name) else {
                    return answer(StatusCode::NOT_FOUND, json!({ "error": format!("no such API: /api/{name}") }));
                };
                let count = |status: StatusCode| service.metrics.request(command, status.as_u16());
                if !authorized(&req, &service.settings.api.key) {
                    count(StatusCode::UNAUTHORIZED);
                    debug!(service.log, "API request without a valid key"; "command" => *command,
                        "remote" => req.peer_addr().map(|a| a.to_string()));
                    return answer(StatusCode::UNAUTHORIZED, json!({ "error": "unauthorized" }));
                }
                if req.method() != method {
                    count(StatusCode::METHOD_NOT_ALLOWED);
                    return HttpResponse::MethodNotAllowed()
                        .insert_header((header::ALLOW, method.as_str()))
                        .json(json!({ "error": format!("/api/{command} takes {method}") }));
                }
                let max = service.settings.api.max_body_bytes;
                let mut buf = BytesMut::new();
                while let Some(chunk) = body.next().await {
                    let Ok(chunk) = chunk else {
                        count(StatusCode::BAD_REQUEST);
                        return answer(StatusCode::BAD_REQUEST, json!({ "error": "body: could not be read" }));
                    };
                    if buf.len() + chunk.len() > max {
                        count(StatusCode::PAYLOAD_TOO_LARGE);
                        return answer(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            json!({ "error": format!("body: larger than {max} bytes (api.max_body_bytes)") }),
                        );
                    }
                    buf.extend_from_slice(&chunk);
                }
                let body: Bytes = if *method == Method::GET {
                    // GET takes its arguments from the query string.
                    let query: serde_json::Map<String, Value> = crate::engineio::url_query_pairs(req.query_string())
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect();
                    Bytes::from(Value::Object(query).to_string())
                } else {
                    buf.freeze()
                };
                let (status, body) = run(&service, command, &body).await;
                count(status);
                if status.is_server_error() {
                    warn!(service.log, "API request failed"; "command" => *command,
                        "status" => status.as_u16(), "error" => %body);
                }
                answer(status, body)
            },
        ),
    );
}

/// Serve the API requests that arrive on the bus.
pub async fn serve_bus(service: Arc<Service>, mut requests: mpsc::Receiver<ApiRequest>) {
    while let Some(request) = requests.recv().await {
        let service = service.clone();
        actix_rt::spawn(async move {
            let ApiRequest {
                command,
                body,
                reply,
            } = request;
            let known = COMMANDS
                .iter()
                .find(|(c, _)| *c == command)
                .map(|(c, _)| *c);
            let (status, answer) = run(&service, &command, &body).await;
            service
                .metrics
                .request(known.unwrap_or("unknown"), status.as_u16());
            reply(Bytes::from(answer.to_string()));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_refused_naming_the_field() {
        let err = |b: &str| parse::<Publish>(b.as_bytes()).unwrap_err().1["error"].to_string();
        assert!(
            err(r#"{"event":"e"}"#).contains("rooms"),
            "{}",
            err(r#"{"event":"e"}"#)
        );
        assert!(err(r#"{"rooms":"news","event":"e"}"#).contains("rooms"));
        assert!(err(r#"{"rooms":["news"],"event":1}"#).contains("event"));
        assert!(err(r#"{"rooms":["news"],"event":"e","colour":1}"#).contains("colour"));
        assert!(err(r#"{"rooms":["news"],"event":"e","persist":"yes"}"#).contains("persist"));
        assert!(err("{not json").contains("body"));
        assert!(parse::<Publish>(br#"{"rooms":["a"],"event":"e"}"#).is_ok());
        assert!(parse::<Empty>(b"").is_ok());
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
