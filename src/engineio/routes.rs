//! The HTTP face of an engine: handshake, polling GET/POST, the WebSocket
//! handshake, the protocol's error answers and CORS.

use std::sync::Arc;
use std::time::SystemTime;

use actix::prelude::*;
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use actix_web_actors::ws;
use futures_util::StreamExt;
use slog::{debug, warn, Logger};
use tokio::sync::oneshot;

use super::config::EngineConfig;
use super::errors::EngineError;
use super::packet::decode_payload;
use super::session::{
    new_core, url_query_pairs, CloseReason, CloseSession, EngineAppFactory, Handshake, Poll, Post,
    PostError, SessionActor, SessionHandle, SessionRegistry,
};
use super::sid::Sid;
use super::websocket::WsTransport;
use crate::metrics::Metrics;

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
    metrics: Metrics,
    log: Logger,
    max_sessions: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TransportKind {
    Polling,
    WebSocket,
}

impl<F: EngineAppFactory> Engine<F> {
    pub fn new(
        config: EngineConfig,
        factory: F,
        metrics: Metrics,
        log: Logger,
        max_sessions: usize,
    ) -> Self {
        Engine {
            inner: Arc::new(EngineInner {
                config: Arc::new(config),
                factory,
                registry: SessionRegistry::default(),
                metrics,
                log,
                max_sessions,
            }),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn factory(&self) -> &F {
        &self.inner.factory
    }

    pub fn session_count(&self) -> usize {
        self.inner.registry.read().len()
    }

    /// Close every live session, e.g. before the node stops.
    pub fn close_all(&self, reason: CloseReason) {
        let handles: Vec<SessionHandle> = self.inner.registry.read().values().cloned().collect();
        for h in handles {
            h.close.do_send(CloseSession(reason));
        }
    }

    /// Mount the endpoint at `path` (for example `/socket.io/`); both the path
    /// with and without its trailing slash answer, like the reference server.
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

    fn error(&self, req: &HttpRequest, e: EngineError) -> HttpResponse {
        self.inner.metrics.bad_input(e.metric_kind());
        debug!(self.inner.log, "engine.io request refused";
            "error" => %e, "uri" => %req.uri(), "peer" => ?req.peer_addr());
        let mut resp = e.response();
        self.apply_cors(req, resp.headers_mut());
        resp
    }

    fn cors_origin(&self, req: &HttpRequest) -> Option<header::HeaderValue> {
        let origins = &self.inner.config.cors_origins;
        if origins.is_empty() {
            return None;
        }
        let origin = req.headers().get(header::ORIGIN)?;
        let allowed = origins
            .iter()
            .any(|o| o == "*" || o.as_bytes() == origin.as_bytes());
        allowed.then(|| origin.clone())
    }

    fn apply_cors(&self, req: &HttpRequest, headers: &mut header::HeaderMap) {
        if let Some(origin) = self.cors_origin(req) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
            if self.inner.config.cors_credentials {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    header::HeaderValue::from_static("true"),
                );
            }
        }
    }

    fn ok(&self, req: &HttpRequest, content_type: &'static str) -> HttpResponseBuilder {
        let mut b = HttpResponse::Ok();
        b.insert_header((header::CONTENT_TYPE, content_type));
        if let Some(origin) = self.cors_origin(req) {
            b.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
            b.insert_header((header::VARY, "Origin"));
            if self.inner.config.cors_credentials {
                b.insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"));
            }
        }
        b
    }

    fn start_session(
        &self,
        req: &HttpRequest,
        kind: TransportKind,
    ) -> Result<Addr<SessionActor<F::App>>, EngineError> {
        if self.session_count() >= self.inner.max_sessions {
            warn!(self.inner.log, "connection refused: node at max_connections";
                "max_connections" => self.inner.max_sessions);
            return Err(EngineError::ServerFull);
        }
        let handshake = Arc::new(Handshake {
            sid: Sid::random(),
            headers: req.headers().clone(),
            query: req.query_string().to_string(),
            remote_addr: req.peer_addr(),
            issued: SystemTime::now(),
            transport: match kind {
                TransportKind::Polling => "polling",
                TransportKind::WebSocket => "websocket",
            },
        });
        let app = self.inner.factory.create(&handshake);
        let core = new_core(
            handshake,
            self.inner.config.clone(),
            self.inner.metrics.clone(),
            &self.inner.log,
            self.inner.registry.clone(),
            kind == TransportKind::Polling,
        );
        self.inner.metrics.session_opened(match kind {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        });
        Ok(SessionActor { core, app }.start())
    }
}

struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

fn parse_query(q: &str) -> Query {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for (k, v) in url_query_pairs(q) {
        match k.as_str() {
            "EIO" => out.eio = Some(v),
            "transport" => out.transport = Some(v),
            "sid" => out.sid = Some(v),
            _ => {}
        }
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
    match q.eio.as_deref() {
        Some("4") => {}
        _ => return engine.error(&req, EngineError::UnsupportedProtocolVersion),
    }
    match q.sid {
        None => handshake(engine, req, payload, kind).await,
        Some(sid) => {
            let handle = engine.inner.registry.read().get(sid.as_str()).cloned();
            let Some(handle) = handle else {
                return engine.error(&req, EngineError::UnknownSid);
            };
            match kind {
                TransportKind::Polling if req.method() == Method::GET => {
                    poll(&engine, &req, &handle).await
                }
                TransportKind::Polling if req.method() == Method::POST => {
                    post(&engine, &req, payload, &handle).await
                }
                TransportKind::Polling => engine.error(&req, EngineError::BadRequest),
                TransportKind::WebSocket => {
                    if req.method() != Method::GET {
                        return engine.error(&req, EngineError::BadRequest);
                    }
                    let transport =
                        WsTransport::new(handle.ws.clone(), true, engine.inner.config.max_payload);
                    websocket(&engine, &req, payload, transport)
                }
            }
        }
    }
}

async fn handshake<F: EngineAppFactory>(
    engine: Engine<F>,
    req: HttpRequest,
    payload: web::Payload,
    kind: TransportKind,
) -> HttpResponse {
    if req.method() != Method::GET {
        return engine.error(&req, EngineError::BadHandshakeMethod);
    }
    if kind == TransportKind::WebSocket && ws::handshake(&req).is_err() {
        return engine.error(&req, EngineError::BadRequest);
    }
    let session = match engine.start_session(&req, kind) {
        Ok(s) => s,
        Err(e) => return engine.error(&req, e),
    };
    match kind {
        TransportKind::Polling => {
            let handle = SessionHandle {
                poll: session.clone().recipient(),
                post: session.clone().recipient(),
                ws: session.clone().recipient(),
                close: session.recipient(),
            };
            poll(&engine, &req, &handle).await
        }
        TransportKind::WebSocket => {
            let transport = WsTransport::new(
                session.clone().recipient(),
                false,
                engine.inner.config.max_payload,
            );
            let resp = websocket(&engine, &req, payload, transport);
            if !resp.status().is_informational() {
                session.do_send(CloseSession(CloseReason::TransportError));
            }
            resp
        }
    }
}

async fn poll<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    handle: &SessionHandle,
) -> HttpResponse {
    let (tx, rx) = oneshot::channel();
    if handle.poll.try_send(Poll(tx)).is_err() {
        return engine.error(req, EngineError::UnknownSid);
    }
    match rx.await {
        Ok(Ok(body)) => {
            engine.inner.metrics.bytes_out(body.len());
            engine.ok(req, "text/plain; charset=UTF-8").body(body)
        }
        Ok(Err(e)) => engine.error(req, e),
        Err(_) => engine.error(req, EngineError::UnknownSid),
    }
}

async fn post<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    mut payload: web::Payload,
    handle: &SessionHandle,
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
    let packets = if too_large {
        Err(PostError::TooLarge)
    } else {
        match std::str::from_utf8(&body) {
            Ok(text) => decode_payload(text, engine.inner.config.max_packets_per_payload())
                .map_err(|_| PostError::Decode),
            Err(_) => Err(PostError::Decode),
        }
    };
    match handle.post.send(Post(packets)).await {
        Ok(Ok(())) => engine.ok(req, "text/html").body("ok"),
        Ok(Err(e)) => engine.error(req, e),
        Err(_) => engine.error(req, EngineError::UnknownSid),
    }
}

fn websocket<F: EngineAppFactory>(
    engine: &Engine<F>,
    req: &HttpRequest,
    payload: web::Payload,
    transport: WsTransport,
) -> HttpResponse {
    match ws::WsResponseBuilder::new(transport, req, payload)
        .frame_size(engine.inner.config.max_payload)
        .start()
    {
        Ok(resp) => resp,
        Err(_) => engine.error(req, EngineError::BadRequest),
    }
}

fn preflight<F: EngineAppFactory>(engine: &Engine<F>, req: &HttpRequest) -> HttpResponse {
    let mut b = HttpResponse::NoContent();
    if let Some(origin) = engine.cors_origin(req) {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin));
        b.insert_header((header::VARY, "Origin"));
        b.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"));
        if let Some(h) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            b.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
        }
        if engine.inner.config.cors_credentials {
            b.insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"));
        }
    }
    b.finish()
}
