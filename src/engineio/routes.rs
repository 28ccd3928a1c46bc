//! The HTTP face of an engine: handshake, polling GET/POST, the WebSocket
//! handshake, the protocol's error answers and CORS.

use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use actix_web_actors::ws;
use futures_util::StreamExt;
use slog::{debug, warn, Logger};
use tokio::sync::oneshot;

use super::config::EngineConfig;
use super::errors::EngineError;
use super::forward::{self, Forwarder, FORWARDED_HEADER};
use super::metrics::EngineMetrics as Metrics;
use super::packet::{decode_payload, decode_payload_v3, decode_payload_v3_binary, Protocol};
use super::session::{
    new_core, take_closed_poll, url_query_pairs, CloseReason, CloseSession, ClosedPolls,
    EngineAppFactory, Handshake, Headers, Poll, PollBody, Post, PostError, SessionActor,
    SessionHandle, SessionRegistry, TransportKind, CLOSED_POLL_GRACE,
};
use super::sid::Sid;

/// One Engine.IO endpoint: its settings, its app factory and its sessions.
pub struct Engine<F: EngineAppFactory> {
    inner: Arc<EngineInner<F>>,
}

impl<F: EngineAppFactory> Clone for Engine<F> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

struct EngineInner<F> {
    config: Arc<EngineConfig>,
    factory: F,
    registry: SessionRegistry,
    /// What is owed to the GETs of sessions their clients just closed.
    closed_polls: ClosedPolls,
    metrics: Metrics,
    log: Logger,
    max_sessions: usize,
    capacity: super::admission::Capacity,
    ip_limiter: super::admission::IpLimiter,
    /// Set when the node starts stopping: new sessions are refused.
    draining: std::sync::atomic::AtomicBool,
    /// Set when the node joins a cluster that forwards requests for sessions
    /// other nodes own (see [`super::forward`]).
    forwarder: std::sync::OnceLock<Arc<dyn Forwarder>>,
}

impl<F: EngineAppFactory> Engine<F> {
    pub fn new(
        config: EngineConfig,
        factory: F,
        metrics: Metrics,
        log: Logger,
        max_sessions: usize,
    ) -> Self {
        if let Some(at) = config.deflate_threshold {
            super::websocket::deflate::enable(at);
        }
        let ip_limiter = super::admission::IpLimiter::new(
            config.max_connections_per_ip,
            config.connection_rate_per_ip,
            config.connection_burst_per_ip,
        );
        Engine {
            inner: Arc::new(EngineInner {
                config: Arc::new(config),
                factory,
                registry: SessionRegistry::default(),
                closed_polls: ClosedPolls::default(),
                metrics,
                log,
                max_sessions,
                capacity: super::admission::Capacity::new(max_sessions),
                ip_limiter,
                draining: std::sync::atomic::AtomicBool::new(false),
                forwarder: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Forward requests for sessions other nodes own, and give this node's
    /// sessions ids that say it owns them. Set once, before the node serves
    /// (a second call is ignored).
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) {
        let _ = self.inner.forwarder.set(forwarder);
    }

    /// The node a request for unknown session `sid` should go to, if it can
    /// be forwarded there (never a request that was forwarded already).
    fn owner_of(&self, req: &HttpRequest, sid: &str) -> Option<String> {
        if req.headers().contains_key(FORWARDED_HEADER) {
            return None;
        }
        self.inner.forwarder.get()?.owner(sid)
    }

    /// A fresh session id: prefixed with this node's id in a cluster that
    /// forwards.
    fn new_sid(&self) -> Sid {
        match self.inner.forwarder.get() {
            Some(f) => Sid::from(format!("{}{}", f.sid_prefix(), Sid::random().as_str()).as_str()),
            None => Sid::random(),
        }
    }

    pub fn session_count(&self) -> usize {
        self.inner.registry.read().len()
    }

    /// Refuse new sessions from now on (503 "Server shutting down"): a
    /// stopping node must not take back the clients it is closing, or it
    /// never empties and its successor waits for it.
    pub fn drain(&self) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Close every live session, e.g. before the node stops.
    pub fn close_all(&self, reason: CloseReason) {
        let handles: Vec<SessionHandle> = self.inner.registry.read().values().cloned().collect();
        for h in handles {
            h.close(reason);
        }
    }

    /// Close every live session at most `per_second` a second, in ticks of
    /// 20 ms, and resolve once each has been told; those left at `deadline`
    /// are closed at once. Paced so that the clients of a stopping node do
    /// not all reconnect elsewhere in the same instant.
    pub async fn close_paced(
        &self,
        reason: CloseReason,
        per_second: u32,
        deadline: tokio::time::Instant,
    ) {
        const TICK: std::time::Duration = std::time::Duration::from_millis(20);
        let handles: Vec<SessionHandle> = self.inner.registry.read().values().cloned().collect();
        let per_tick = (per_second as usize / 50).max(1);
        let mut ticks = tokio::time::interval(TICK);
        for batch in handles.chunks(per_tick) {
            if tokio::time::Instant::now() >= deadline {
                return self.close_all(reason);
            }
            ticks.tick().await;
            for h in batch {
                h.close(reason);
            }
        }
    }

    /// Mount the endpoint at `path` (for example `/socket.io/`); both the path
    /// with and without its trailing slash answer, like the reference server.
    ///
    /// Serve it with `HttpServer::h1_allow_half_closed(false)` (as
    /// `RiptideServer` does): otherwise actix keeps a long-poll
    /// whose client hung up (FIN) running, and the session only ends at the
    /// ping timeout instead of at once.
    pub fn mount(&self, path: &str, cfg: &mut web::ServiceConfig) {
        let trimmed = path.trim_end_matches('/');
        let routes = [format!("{trimmed}/"), trimmed.to_string()];
        for p in routes.iter().filter(|p| !p.is_empty()) {
            cfg.service(
                web::resource(p.as_str())
                    .app_data(web::Data::new(self.clone()))
                    .default_service(web::to(handle_request::<F>)),
            );
        }
    }

    /// Refuse a request: count it in `riptide_bad_input_total` and answer
    /// the protocol's error.
    fn error(&self, req: &HttpRequest, e: EngineError) -> HttpResponse {
        self.inner.metrics.bad_input(e.metric_kind());
        self.refuse(req, e)
    }

    /// Answer an error the session actor already counted (under its own,
    /// more precise kind), so one bad request counts once.
    fn refuse(&self, req: &HttpRequest, e: EngineError) -> HttpResponse {
        debug!(self.inner.log, "engine.io request refused";
            "error" => %e, "uri" => %req.uri(), "peer" => ?req.peer_addr());
        let mut resp = e.response();
        self.apply_cors(req, resp.headers_mut());
        resp
    }

    /// The CORS headers of an answer to `req`; the bool says whether its
    /// origin is allowed. None at all when CORS is off (no origins listed).
    ///
    /// `*` without credentials answers `*`, the same for everyone. Otherwise
    /// the answer depends on the Origin (`Vary: Origin`, even when it is
    /// refused, so a cache never serves one origin's answer to another) and
    /// only a listed origin (any, for `*` with credentials, where browsers
    /// refuse a literal `*`) is echoed.
    fn cors_headers(&self, req: &HttpRequest) -> (bool, Vec<(HeaderName, HeaderValue)>) {
        let config = &self.inner.config;
        let origins = &config.cors_origins;
        if origins.is_empty() {
            return (false, Vec::new());
        }
        let any = origins.iter().any(|o| o == "*");
        if any && !config.cors_credentials {
            let star = HeaderValue::from_static("*");
            return (true, vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, star)]);
        }
        let mut out = vec![(header::VARY, HeaderValue::from_static("Origin"))];
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return (false, out);
        };
        if !any && !origins.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
            return (false, out);
        }
        out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()));
        if config.cors_credentials {
            let yes = HeaderValue::from_static("true");
            out.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, yes));
        }
        (true, out)
    }

    fn apply_cors(&self, req: &HttpRequest, headers: &mut header::HeaderMap) {
        for (name, value) in self.cors_headers(req).1 {
            headers.insert(name, value);
        }
    }

    /// The 200 answer of a polling GET.
    fn poll_answer(&self, req: &HttpRequest, body: PollBody) -> HttpResponse {
        self.inner.metrics.bytes_out(body.len());
        let mut answer = self.ok(req, body.content_type());
        let coding = match self.inner.config.http_compression {
            Some(at) if body.len() >= at => req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .and_then(super::compression::negotiate),
            _ => None,
        };
        let body = body.into_bytes();
        match coding {
            Some(coding) => {
                let z = coding.encode(&body);
                self.inner.metrics.compressed(body.len(), z.len());
                answer
                    .insert_header((header::CONTENT_ENCODING, coding.name()))
                    .insert_header((header::VARY, "Accept-Encoding"))
                    .body(z)
            }
            None => answer.body(body),
        }
    }

    fn ok(&self, req: &HttpRequest, content_type: &'static str) -> HttpResponseBuilder {
        let mut b = HttpResponse::Ok();
        b.insert_header((header::CONTENT_TYPE, content_type));
        for h in self.cors_headers(req).1 {
            b.insert_header(h);
        }
        b
    }

    fn start_session(
        &self,
        req: &HttpRequest,
        kind: TransportKind,
        protocol: Protocol,
    ) -> Result<Arc<Addr<SessionActor<F::App>>>, EngineError> {
        if self
            .inner
            .draining
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(EngineError::ShuttingDown);
        }
        // Taken now, not when the session registers: handshakes on other
        // workers run concurrently and must not all see room for one more.
        let Some(capacity) = self.inner.capacity.try_acquire() else {
            warn!(self.inner.log, "connection refused: node at max_connections";
                "max_connections" => self.inner.max_sessions);
            return Err(EngineError::ServerFull);
        };
        // The client's address: the peer's, or behind a trusted proxy the
        // one its forwarding header names (server.trusted_proxies).
        let client_ip = req.peer_addr().map(|peer| {
            let ip = self
                .inner
                .config
                .trusted_proxies
                .client_ip(peer.ip(), req.headers());
            if let super::proxy::ClientIp::Malformed(_) = ip {
                self.inner.metrics.bad_input("forwarded_header");
                debug!(self.inner.log, "forwarding header ignored: it names no client address";
                    "peer" => %peer,
                    "forwarded" => ?req.headers().get(actix_web::http::header::FORWARDED),
                    "x-forwarded-for" => ?req.headers().get("x-forwarded-for"));
            }
            ip.ip()
        });
        let ip_slot = match client_ip {
            Some(peer) => match self.inner.ip_limiter.admit(peer) {
                Ok(slot) => Some(slot),
                Err(refusal) => {
                    debug!(self.inner.log, "connection refused"; "reason" => %refusal, "peer" => %peer);
                    return Err(match refusal {
                        super::admission::Refusal::TooManyConnections => {
                            EngineError::TooManyConnectionsFromIp
                        }
                        super::admission::Refusal::RateLimited => {
                            EngineError::ConnectionRateLimited
                        }
                    });
                }
            },
            None => None,
        };
        let handshake = Arc::new(Handshake {
            sid: self.new_sid(),
            headers: Headers::from_map(req.headers()),
            query: req.query_string().into(),
            remote_addr: req.peer_addr(),
            client_ip,
            issued: SystemTime::now(),
            transport: kind,
            protocol,
        });
        let app = self.inner.factory.create(&handshake);
        let mut core = new_core(
            handshake,
            self.inner.config.clone(),
            self.inner.metrics.clone(),
            &self.inner.log,
            self.inner.registry.clone(),
            self.inner.closed_polls.clone(),
            kind == TransportKind::Polling,
        );
        self.inner.metrics.session_opened(kind.as_str(), protocol);
        core.hold_ip_slot(super::admission::SessionSlot {
            capacity,
            ip: ip_slot,
        });
        Ok(SessionActor::launch(core, app))
    }
}

struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    /// Engine.IO v3 JSONP polling's callback index.
    jsonp: Option<String>,
    /// Engine.IO v3: binary as base64 on this transport.
    b64: Option<String>,
}

fn parse_query(q: &str) -> Query {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
        jsonp: None,
        b64: None,
    };
    for (k, v) in url_query_pairs(q) {
        let slot = match k.as_str() {
            "EIO" => &mut out.eio,
            "transport" => &mut out.transport,
            "sid" => &mut out.sid,
            "j" => &mut out.jsonp,
            "b64" => &mut out.b64,
            _ => continue,
        };
        // A repeated parameter is not guessed at: like the reference
        // server's (whose parser makes it an array), it matches nothing.
        *slot = match slot {
            None => Some(v),
            Some(_) => Some(String::new()),
        };
    }
    out
}

async fn handle_request<F: EngineAppFactory>(
    req: HttpRequest,
    payload: web::Payload,
    engine: web::Data<Engine<F>>,
) -> HttpResponse {
    let engine = engine.get_ref().clone();
    if req.method() == Method::OPTIONS {
        return preflight(&engine, &req);
    }
    let q = parse_query(req.query_string());
    let kind = match q.transport.as_deref() {
        Some("polling") if engine.inner.config.allow_polling => TransportKind::Polling,
        Some("websocket") if engine.inner.config.allow_websocket => TransportKind::WebSocket,
        _ => return engine.error(&req, EngineError::UnknownTransport),
    };
    // Only the two revisions by name: the reference server takes anything
    // but "4" (even none) for v3, which would let a typo through as v3.
    let protocol = match q.eio.as_deref() {
        Some("4") => Protocol::V4,
        Some("3") if engine.inner.config.allow_eio3 => Protocol::V3,
        _ => return engine.error(&req, EngineError::UnsupportedProtocolVersion),
    };
    if protocol == Protocol::V3 && kind == TransportKind::Polling && q.jsonp.is_some() {
        // JSONP is for browsers without XHR (IE 9 and older); Socket.IO v2
        // clients use it only then or when forced. Refused rather than
        // served: answering with script the page evaluates, and
        // form-encoded POSTs, are a second polling transport for clients
        // an old-mobile-fleet migration does not have.
        return engine.error(&req, EngineError::JsonpUnsupported);
    }
    let base64 = q.b64.is_some();
    match q.sid {
        None => handshake(engine, req, payload, kind, protocol, base64).await,
        Some(sid) => {
            let handle = engine.inner.registry.read().get(sid.as_str()).cloned();
            let Some(handle) = handle else {
                if kind == TransportKind::Polling && req.method() == Method::GET {
                    if let Some(body) = take_closed_poll(&engine.inner.closed_polls, &sid) {
                        return engine.poll_answer(&req, body);
                    }
                }
                if let Some(owner) = engine.owner_of(&req, &sid) {
                    return forward(&engine, &req, payload, kind, &owner).await;
                }
                return engine.error(&req, EngineError::UnknownSid);
            };
            if handle.protocol != protocol {
                // A session speaks the revision it was opened with.
                return engine.error(&req, EngineError::BadRequest);
            }
            match kind {
                TransportKind::Polling if req.method() == Method::GET => {
                    poll(&engine, &req, &handle, Some(&sid)).await
                }
                TransportKind::Polling if req.method() == Method::POST => {
                    post(&engine, &req, payload, &handle, &sid).await
                }
                TransportKind::Polling => engine.error(&req, EngineError::BadRequest),
                TransportKind::WebSocket => {
                    if req.method() != Method::GET {
                        return engine.error(&req, EngineError::BadRequest);
                    }
                    websocket(
                        &engine,
                        &req,
                        payload,
                        handle.clone(),
                        true,
                        protocol,
                        base64,
                    )
                }
            }
        }
    }
}

/// A request for a session `owner` owns, sent on to it.
async fn forward<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    payload: web::Payload,
    kind: TransportKind,
    owner: &str,
) -> HttpResponse {
    let inner = &engine.inner;
    let f = forward::Forwarding {
        config: &inner.config,
        metrics: &inner.metrics,
        log: &inner.log,
    };
    let answer = match kind {
        TransportKind::Polling if req.method() == Method::GET || req.method() == Method::POST => {
            forward::polling(&f, req, payload, owner).await
        }
        TransportKind::WebSocket if req.method() == Method::GET => {
            forward::websocket(&f, req, payload, owner).await
        }
        _ => Err(EngineError::BadRequest),
    };
    answer.unwrap_or_else(|e| engine.error(req, e))
}

async fn handshake<F: EngineAppFactory>(
    engine: Engine<F>,
    req: HttpRequest,
    payload: web::Payload,
    kind: TransportKind,
    protocol: Protocol,
    base64: bool,
) -> HttpResponse {
    if req.method() != Method::GET {
        return engine.error(&req, EngineError::BadHandshakeMethod);
    }
    if kind == TransportKind::WebSocket && ws::handshake(&req).is_err() {
        return engine.error(&req, EngineError::BadRequest);
    }
    let session = match engine.start_session(&req, kind, protocol) {
        Ok(s) => s,
        Err(e) => return engine.error(&req, e),
    };
    match kind {
        TransportKind::Polling => {
            let handle = SessionHandle::new(protocol, session);
            poll(&engine, &req, &handle, None).await
        }
        TransportKind::WebSocket => {
            let resp = websocket(
                &engine,
                &req,
                payload,
                SessionHandle::new(protocol, session.clone()),
                false,
                protocol,
                base64,
            );
            if !resp.status().is_informational() {
                session.do_send(CloseSession(CloseReason::TransportError));
            }
            resp
        }
    }
}

/// A polling GET. `sid` is the session's, when the request named it: if the
/// session turns out to be gone, a GET its client's close owes an answer to
/// gets it (see [`ClosedPolls`]).
async fn poll<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    handle: &SessionHandle,
    sid: Option<&str>,
) -> HttpResponse {
    let gone = |engine: &Engine<F>| match sid
        .and_then(|sid| take_closed_poll(&engine.inner.closed_polls, sid))
    {
        Some(body) => engine.poll_answer(req, body),
        None => engine.error(req, EngineError::UnknownSid),
    };
    let (tx, rx) = oneshot::channel();
    // Armed until the GET is answered: if actix drops this future first (the
    // client's connection died), the session hears of it at once.
    let mut guard = PollGuard(Some(handle));
    // `send`, not `try_send`: a busy session's full mailbox is no reason to
    // refuse the poll; only a stopped session is.
    if handle.poll().send(Poll(tx)).await.is_err() {
        guard.0 = None;
        return gone(engine);
    }
    let reply = rx.await;
    guard.0 = None;
    match reply {
        Ok(Ok(body)) => engine.poll_answer(req, body),
        Ok(Err(e)) => engine.refuse(req, e),
        Err(_) => gone(engine),
    }
}

/// Removes what a held close POST kept for its GET, when the POST is
/// answered or its request goes away.
struct ClosedPollSlot<'a> {
    polls: &'a ClosedPolls,
    sid: &'a str,
}

impl Drop for ClosedPollSlot<'_> {
    fn drop(&mut self) {
        self.polls.lock().remove(self.sid);
    }
}

/// Tells the session when a waiting GET's request is dropped unanswered.
struct PollGuard<'a>(Option<&'a SessionHandle>);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            session.poll_aborted();
        }
    }
}

async fn post<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    mut payload: web::Payload,
    handle: &SessionHandle,
    sid: &str,
) -> HttpResponse {
    let max = engine.inner.config.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = web::BytesMut::new();
    let mut too_large = declared.is_some_and(|n| n > max);
    while !too_large {
        match payload.next().await {
            Some(Ok(chunk)) => {
                if body.len() + chunk.len() > max {
                    too_large = true;
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Some(Err(_)) => return engine.error(req, EngineError::BadRequest),
            None => break,
        }
    }
    engine.inner.metrics.bytes_in(body.len());
    let max_packets = engine.inner.config.max_packets_per_payload();
    // A v3 client sends a payload holding binary in the XHR2 binary form,
    // and says so by its content type.
    let binary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
    let packets = if too_large {
        Err(PostError::TooLarge)
    } else if handle.protocol == Protocol::V3 && binary {
        decode_payload_v3_binary(&body.freeze(), max_packets).map_err(|_| PostError::Decode)
    } else {
        match std::str::from_utf8(&body) {
            Ok(text) => match handle.protocol {
                Protocol::V4 => decode_payload(text, max_packets),
                Protocol::V3 => decode_payload_v3(text, max_packets),
            }
            .map_err(|_| PostError::Decode),
            Err(_) => Err(PostError::InvalidUtf8),
        }
    };
    match handle.post().send(Post(packets)).await {
        Ok(Ok(closed)) => {
            if let Some(taken) = closed {
                // The client closed with no GET waiting: hold the answer for
                // the GET it may have sent first (see `ClosedPolls`).
                let _slot = ClosedPollSlot {
                    polls: &engine.inner.closed_polls,
                    sid,
                };
                let _ = tokio::time::timeout(CLOSED_POLL_GRACE, taken).await;
            }
            engine.ok(req, "text/html").body("ok")
        }
        Ok(Err(e)) => engine.refuse(req, e),
        Err(_) => engine.error(req, EngineError::UnknownSid),
    }
}

fn websocket<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    payload: web::Payload,
    session: SessionHandle,
    upgrade: bool,
    protocol: Protocol,
    base64: bool,
) -> HttpResponse {
    match super::websocket::accept(
        req,
        payload,
        session,
        super::websocket::Opening {
            upgrade,
            protocol,
            base64,
        },
        engine.inner.config.ws_limits(),
    ) {
        Ok((resp, _sink)) => resp,
        Err(_) => engine.error(req, EngineError::BadRequest),
    }
}

fn preflight<F: EngineAppFactory>(engine: &Engine<F>, req: &HttpRequest) -> HttpResponse {
    let mut b = HttpResponse::NoContent();
    let (allowed, headers) = engine.cors_headers(req);
    for h in headers {
        b.insert_header(h);
    }
    if allowed {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"));
        if let Some(h) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            b.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
        }
    }
    b.finish()
}
