//! Requests for a session another node owns: served anyway, by forwarding
//! them to the owner over HTTP, so a load balancer needs no sticky sessions.
//!
//! In a cluster every session id starts with its node's id
//! ([`Forwarder::sid_prefix`]). A polling GET or POST, or the WebSocket of an
//! upgrade, that reaches a node without that session is sent on to the
//! owner's HTTP address, which the cluster learned from its heartbeats
//! ([`Forwarder::owner`]), and the owner's answer comes back unchanged: the
//! owner serves the real request, so every rule is the owner's own (one
//! pending GET, the close rules, payload limits, the order of packets, the
//! upgrade). A WebSocket is piped frame by frame in both directions.
//!
//! Only live peers are forwarded to (a sid naming anything else is just
//! unknown), and a forwarded request carries [`FORWARDED_HEADER`] so it is
//! never forwarded again. docs/decisions.md says why this goes over HTTP
//! between nodes rather than through the broker.

use std::cell::RefCell;
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use slog::{debug, Logger};

use super::config::EngineConfig;
use super::errors::EngineError;
use super::metrics::EngineMetrics;

/// How long a forwarded WebSocket waits for the owner's handshake.
const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);

/// Marks a request one node forwarded to another.
pub const FORWARDED_HEADER: &str = "x-riptide-forwarded";

/// What the engine asks the cluster about session ownership.
pub trait Forwarder: Send + Sync + 'static {
    /// The prefix of this node's session ids.
    fn sid_prefix(&self) -> &str;
    /// The HTTP base address (`http://host:port`) of the live peer that
    /// owns `sid`, if it is not this node.
    fn owner(&self, sid: &str) -> Option<String>;
}

/// The request headers a forwarded polling request keeps (the owner
/// answers with CORS headers for the client's origin, and sees its cookies).
const POLLING_KEPT: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::ORIGIN,
    header::COOKIE,
    header::USER_AGENT,
    header::ACCEPT,
];

/// The same for a forwarded WebSocket handshake (it has no body).
const WEBSOCKET_KEPT: [HeaderName; 3] = [header::ORIGIN, header::COOKIE, header::USER_AGENT];

/// What forwarding needs of its engine.
pub(crate) struct Forwarding<'a> {
    pub config: &'a EngineConfig,
    pub metrics: &'a EngineMetrics,
    pub log: &'a Logger,
}

impl Forwarding<'_> {
    /// The owner could not be reached, or its answer not read: counted,
    /// logged, and the client told its session is unknown (it reconnects).
    fn failed(&self, owner: &str, what: &str, error: impl std::fmt::Display) -> EngineError {
        self.metrics.forwarded("failed");
        debug!(self.log, "forwarding failed"; "what" => what, "owner" => owner, "error" => %error);
        EngineError::UnknownSid
    }
}

/// The headers a forwarded request carries: the client's among `kept`, the
/// mark that it was forwarded, and the client's address.
fn forwarded_headers<'a>(
    req: &'a HttpRequest,
    kept: &'a [HeaderName],
) -> impl Iterator<Item = (HeaderName, HeaderValue)> + 'a {
    let client = kept
        .iter()
        .filter_map(|name| Some((name.clone(), req.headers().get(name)?.clone())));
    let mark = (
        HeaderName::from_static(FORWARDED_HEADER),
        HeaderValue::from_static("1"),
    );
    let peer = req
        .peer_addr()
        .and_then(|a| HeaderValue::from_str(&a.ip().to_string()).ok())
        .map(|ip| (HeaderName::from_static("x-forwarded-for"), ip));
    client.chain(std::iter::once(mark)).chain(peer)
}

/// The answer headers passed back to the client.
fn kept_in_answer(name: &HeaderName) -> bool {
    *name == header::CONTENT_TYPE
        || *name == header::VARY
        || *name == header::SET_COOKIE
        || name.as_str().starts_with("access-control-")
}

thread_local! {
    // One client per worker thread: awc clients are not `Send`, and each
    // keeps its own pool of connections to the other nodes.
    static CLIENT: RefCell<Option<awc::Client>> = const { RefCell::new(None) };
}

fn client() -> awc::Client {
    CLIENT.with(|c| {
        c.borrow_mut()
            .get_or_insert_with(|| {
                awc::Client::builder()
                    // No cap on connections to the other nodes: a forwarded
                    // long-poll holds one for up to a ping interval, and
                    // awc's default (100 per worker) would queue the rest
                    // behind them. The clients behind them are already
                    // bounded by the nodes' admission limits.
                    .connector(awc::Connector::new().limit(0))
                    .disable_redirects()
                    // Each request sets its own (a GET waits up to a ping interval).
                    .disable_timeout()
                    .finish()
            })
            .clone()
    })
}

fn target(owner: &str, req: &HttpRequest) -> String {
    format!("{owner}{}?{}", req.path(), req.query_string())
}

/// A polling GET or POST, sent to `owner`; its answer, as the owner gave it.
pub(crate) async fn polling(
    f: &Forwarding<'_>,
    req: &HttpRequest,
    payload: web::Payload,
    owner: &str,
) -> Result<HttpResponse, EngineError> {
    let config = f.config;
    let is_get = req.method() == Method::GET;
    // A GET waits for data up to the ping interval, then for the pong.
    let timeout = if is_get {
        config.ping_interval + config.ping_timeout + Duration::from_secs(5)
    } else {
        Duration::from_secs(30)
    };
    let mut fwd = client()
        .request(req.method().clone(), target(owner, req))
        .timeout(timeout);
    for header in forwarded_headers(req, &POLLING_KEPT) {
        fwd = fwd.insert_header(header);
    }
    let sent = if is_get {
        fwd.send().await
    } else {
        // Streamed as it comes: the owner applies its own payload limit.
        fwd.send_stream(payload).await
    };
    let mut answer = sent.map_err(|e| f.failed(owner, "polling request", e))?;
    // A GET's answer is everything the owner had queued for the client: at
    // most `max_queued_bytes` (past that the client is closed as a slow
    // consumer), a third more for base64 binary, plus framing. A POST's is
    // a short text.
    let limit = config
        .max_queued_bytes
        .max(config.max_payload)
        .saturating_mul(4)
        / 3
        + 64 * 1024;
    let body = (answer.body().limit(limit).await).map_err(|e| f.failed(owner, "answer", e))?;
    f.metrics.forwarded(if is_get { "get" } else { "post" });
    let mut out = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if kept_in_answer(name) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    Ok(out.body(body))
}

/// A WebSocket for a session `owner` owns: connected to the owner first
/// (refused if that fails), then piped both ways until either side closes.
pub(crate) async fn websocket(
    f: &Forwarding<'_>,
    req: &HttpRequest,
    payload: web::Payload,
    owner: &str,
) -> Result<HttpResponse, EngineError> {
    let config = f.config;
    // A request that is no WebSocket handshake is refused before anything
    // is asked of the owner.
    if actix_http::ws::verify_handshake(req.head()).is_err() {
        return Err(EngineError::BadRequest);
    }
    let url = target(owner, req).replacen("http", "ws", 1);
    // The owner's frames are bounded by its outbound queue, not by
    // max_payload (which bounds what clients send).
    let mut connect = client()
        .ws(url)
        .max_frame_size(config.max_queued_bytes.max(config.max_payload));
    for (name, value) in forwarded_headers(req, &WEBSOCKET_KEPT) {
        connect = connect.set_header(name, value);
    }
    // The client waits on this: an owner that accepts and never answers is
    // given up on like one that refuses.
    let connected = tokio::time::timeout(UPSTREAM_CONNECT, connect.connect()).await;
    let (_, upstream) = match connected {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => return Err(f.failed(owner, "websocket", e)),
        Err(_) => return Err(f.failed(owner, "websocket", "timed out")),
    };
    if req
        .extensions()
        .contains::<super::websocket::TakeoverOffer>()
    {
        // On the raw connection (Riptide's upgrade service): both sides'
        // handshakes are done, so the frames are copied as bytes.
        let mut response = actix_web_actors::ws::handshake(req)
            .map_err(|_| EngineError::BadRequest)?
            .finish();
        let parts = upstream.into_parts();
        response
            .extensions_mut()
            .insert(super::websocket::Takeover::Pipe {
                upstream: parts.io,
                leftover: parts.read_buf,
            });
        f.metrics.forwarded("websocket");
        return Ok(response);
    }
    let (response, session, stream) =
        actix_ws::handle(req, payload).map_err(|_| EngineError::BadRequest)?;
    let stream = stream
        .max_frame_size(config.max_payload)
        .aggregate_continuations()
        .max_continuation_size(config.max_payload);
    f.metrics.forwarded("websocket");
    actix_rt::spawn(pipe(session, stream, upstream));
    Ok(response)
}

/// Copy frames between the client (`session`, `stream`) and the owner
/// (`upstream`) until either ends; then end the other. Each direction waits
/// for the other side to take a frame, so a slow reader holds the writer
/// back through TCP, down to the owner's bounded queue (which closes a slow
/// consumer as usual).
async fn pipe(
    mut session: actix_ws::Session,
    mut stream: actix_ws::AggregatedMessageStream,
    upstream: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
) {
    use actix_ws::AggregatedMessage as In;
    use awc::ws::{Frame, Message as Out};
    let (mut up_tx, mut up_rx) = upstream.split();
    let reason = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(In::Text(t))) => {
                    if up_tx.send(Out::Text(t)).await.is_err() { break None; }
                }
                Some(Ok(In::Binary(b))) => {
                    if up_tx.send(Out::Binary(b)).await.is_err() { break None; }
                }
                Some(Ok(In::Ping(p))) => {
                    if session.pong(&p).await.is_err() { break None; }
                }
                Some(Ok(In::Pong(_))) => {}
                Some(Ok(In::Close(reason))) => {
                    let _ = up_tx.send(Out::Close(reason)).await;
                    return;
                }
                Some(Err(_)) | None => break None,
            },
            frame = up_rx.next() => match frame {
                Some(Ok(Frame::Text(b))) => {
                    let Ok(text) = ByteString::try_from(b) else { break None };
                    if session.text(text).await.is_err() { break None; }
                }
                Some(Ok(Frame::Binary(b))) => {
                    if session.binary(b).await.is_err() { break None; }
                }
                Some(Ok(Frame::Ping(p))) => {
                    if up_tx.send(Out::Pong(p)).await.is_err() { break None; }
                }
                Some(Ok(Frame::Pong(_))) => {}
                Some(Ok(Frame::Close(reason))) => break reason,
                // The owner writes whole frames.
                Some(Ok(Frame::Continuation(_))) | Some(Err(_)) | None => break None,
            },
        }
    };
    let _ = session.close(reason).await;
    let _ = up_tx.close().await;
}
