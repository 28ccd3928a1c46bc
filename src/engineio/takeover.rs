//! Riptide's upgrade service: actix-http hands it every request that asks
//! for a protocol upgrade, with the connection itself, instead of running
//! it through its HTTP/1 dispatcher.
//!
//! The request still goes through the application (every route, every
//! check, the Engine.IO handshake, forwarding), with a [`TakeoverOffer`] in
//! its extensions. A WebSocket the engine accepts answers `101` with a
//! [`Takeover`]: the head is written, and the connection, freed of the
//! dispatcher and its two 8 kB buffers, runs the WebSocket on its own task
//! (websocket/conn.rs). Any other `101` (a route of the application's own)
//! gets what the dispatcher would have given it: its body written raw, the
//! client's bytes as its request payload. Anything else is answered whole
//! and the connection closed, as after any refused upgrade.
//!
//! docs/decisions.md ("Idle memory") says why the WebSocket leaves the
//! dispatcher.

use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{h1, ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::{Service, ServiceFactory};
use actix_web::dev::ServiceResponse;
use bytes::{Bytes, BytesMut};
use futures_util::future::LocalBoxFuture;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::websocket::{Takeover, TakeoverOffer};

/// The factory actix-http's `HttpServiceBuilder::upgrade` takes: each
/// worker's upgrade service calls its own instance of the application.
pub struct UpgradeFactory<S> {
    app: S,
    live: Arc<AtomicUsize>,
}

impl<S> UpgradeFactory<S> {
    /// `live` counts the connections taken over and still running: a
    /// graceful stop waits for them (actix-server only waits for the
    /// connections its dispatchers hold).
    pub fn new(app: S, live: Arc<AtomicUsize>) -> Self {
        UpgradeFactory { app, live }
    }
}

/// One taken-over connection in [`UpgradeFactory`]'s count.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::AcqRel);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T, S> ServiceFactory<(Request, Framed<T, h1::Codec>)> for UpgradeFactory<S>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: ServiceFactory<
        Request,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
    >,
    S::Service: 'static,
    S::Future: 'static,
    S::InitError: fmt::Debug,
{
    type Response = ();
    type Error = actix_web::Error;
    type Config = ();
    type Service = Upgrade<S::Service>;
    type InitError = S::InitError;
    type Future = LocalBoxFuture<'static, Result<Self::Service, Self::InitError>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let app = self.app.new_service(());
        let live = self.live.clone();
        Box::pin(async move {
            Ok(Upgrade {
                app: Rc::new(app.await?),
                live,
            })
        })
    }
}

/// One worker's upgrade service.
pub struct Upgrade<S> {
    app: Rc<S>,
    live: Arc<AtomicUsize>,
}

impl<T, S> Service<(Request, Framed<T, h1::Codec>)> for Upgrade<S>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service<Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error> + 'static,
{
    type Response = ();
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<(), actix_web::Error>>;

    actix_service::always_ready!();

    fn call(&self, (req, framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        let app = self.app.clone();
        let live = self.live.clone();
        Box::pin(async move {
            // The client's bytes after the head, for a route that streams
            // them (the dispatcher would have given it this payload).
            let (mut sender, payload) = h1::Payload::create(false);
            let (req, _) = req.replace_payload(payload.into());
            req.extensions_mut().insert(TakeoverOffer);
            let res: Response<BoxBody> = match app.call(req).await {
                Ok(res) => res.into(),
                Err(e) => e.error_response().into(),
            };
            let (mut head, body) = res.into_parts();
            let takeover = head.extensions_mut().remove::<Takeover>();
            // Write errors need no answer: the client is gone, and whatever
            // runs on the connection next sees it fail.
            let mut framed = framed;
            if head.status() != StatusCode::SWITCHING_PROTOCOLS {
                head.head_mut().set_connection_type(ConnectionType::Close);
                let body = actix_http::body::to_bytes(body).await.unwrap_or_default();
                let size = BodySize::Sized(body.len() as u64);
                let _ = framed.feed(h1::Message::Item((head, size))).await;
                if !body.is_empty() {
                    let _ = framed.feed(h1::Message::Chunk(Some(body))).await;
                }
                let _ = framed.send(h1::Message::Chunk(None)).await;
                return Ok(());
            }
            let size = match takeover {
                Some(_) => BodySize::None,
                None => BodySize::Stream,
            };
            let head = h1::Message::Item((head, size));
            match takeover {
                Some(takeover) => {
                    // Encoded, not written: the connection's task writes it
                    // with the first frames (WsSink::queue_head).
                    let _ = framed.feed(head).await;
                    let parts = framed.into_parts();
                    // Its own task: the dispatcher's (and its memory) ends.
                    // Spawned as it is, not awaited in an async block that
                    // would keep it twice (Takeover::run).
                    let live = Live::new(&live);
                    actix_rt::spawn(takeover.run(parts.io, parts.read_buf, parts.write_buf, live));
                }
                None => {
                    let _ = framed.send(head).await;
                    let parts = framed.into_parts();
                    let mut io = parts.io;
                    if !parts.read_buf.is_empty() {
                        sender.feed_data(parts.read_buf.freeze());
                    }
                    raw_upgrade(&mut io, body, |data| match data {
                        Some(data) => sender.feed_data(data),
                        None => sender.feed_eof(),
                    })
                    .await;
                }
            }
            Ok(())
        })
    }
}

/// A `101` the application streams itself: its body written raw to the
/// client, what the client sends fed to `feed`, until either side ends.
async fn raw_upgrade<T, F>(io: &mut T, body: BoxBody, mut feed: F)
where
    T: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Option<Bytes>),
{
    let mut body = pin!(body);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let (mut rd, mut wr) = tokio::io::split(io);
    let write = async {
        while let Some(Ok(chunk)) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let read = async {
        loop {
            buf.reserve(4096);
            match rd.read_buf(&mut buf).await {
                Ok(n) if n > 0 => feed(Some(buf.split().freeze())),
                _ => break,
            }
        }
        feed(None);
        // The body decides when the connection ends.
        poll_fn(|_| Poll::<()>::Pending).await;
    };
    tokio::select! {
        _ = write => {}
        _ = read => {}
    }
}
