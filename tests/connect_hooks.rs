//! What connect middleware can give a socket before it exists
//! (`ConnectRequest::join`, `extensions`, `preface`), at the wire:
//!
//! - rooms joined by the middleware are in effect before the CONNECT reply
//!   leaves: an emit to the room made the moment the client has its reply
//!   reaches it;
//! - typed data put in the extensions is the socket's from the start;
//! - a preface's events are written before the CONNECT reply, in order, and
//!   what was emitted to the socket while the preface was being read comes
//!   after them (still before the reply); its `written` callback runs once;
//! - a socket that goes away during its preface is never announced, and the
//!   callback does not run.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use riptide::{
    Event, HandlerContext, Namespace, NamespaceHandler, Payload, Preface, Riptide, Socket,
};
use serde_json::{json, Value};

#[derive(Clone)]
struct Tier(&'static str);

struct App;

impl NamespaceHandler for App {
    fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
        if event.name == "tier" {
            if let Some(ack) = event.ack {
                ack.send(socket.data::<Tier>().map(|t| t.0));
            }
        }
    }
}

fn start(written: Arc<AtomicUsize>, preface_delay: Duration) -> TestServer {
    TestServer::start(test_settings(), move |r: Riptide| {
        r.namespace(
            "/",
            Namespace::new(|| App).on_connect(move |req| {
                req.join("vip");
                req.extensions().insert(Tier("gold"));
                if req.auth.get("preface").is_some() {
                    let written = written.clone();
                    req.preface(async move {
                        tokio::time::sleep(preface_delay).await;
                        let events = vec![
                            ("kept".to_owned(), Payload::new(vec![json!(1)])),
                            ("kept".to_owned(), Payload::new(vec![json!(2)])),
                        ];
                        Preface {
                            events,
                            written: Some(Box::new(move || {
                                written.fetch_add(1, Ordering::SeqCst);
                            })),
                        }
                    });
                }
                Ok(())
            }),
        )
    })
}

#[tokio::test]
async fn middleware_rooms_are_in_effect_before_the_connect_reply() {
    let server = start(Arc::new(AtomicUsize::new(0)), Duration::ZERO);
    for _ in 0..20 {
        let (mut c, _) = WsClient::connect(&server, "/", None).await;
        server
            .handle
            .of("/")
            .to("vip")
            .emit("hello", "vip")
            .unwrap();
        c.expect_text(r#"42["hello","vip"]"#).await;
    }
    let (mut c, _) = WsClient::connect(&server, "/", None).await;
    c.send(r#"421["tier"]"#).await;
    c.expect_text(r#"431["gold"]"#).await;
}

#[tokio::test]
async fn a_preface_comes_before_the_reply_and_what_waited_after_it() {
    let written = Arc::new(AtomicUsize::new(0));
    let server = start(written.clone(), Duration::from_millis(300));
    let mut c = WsClient::open(&server).await;
    c.send(r#"40{"preface":true}"#).await;
    // The socket is in "vip" already: this waits behind the preface.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.handle.of("/").to("vip").emit("live", 3).unwrap();
    c.expect_text(r#"42["kept",1]"#).await;
    c.expect_text(r#"42["kept",2]"#).await;
    c.expect_text(r#"42["live",3]"#).await;
    let reply = c.recv_text().await;
    assert!(
        reply.starts_with("40{"),
        "then the CONNECT reply, got {reply:?}"
    );
    let v: Value = serde_json::from_str(&reply[2..]).unwrap();
    assert!(v["sid"].is_string());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(written.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_socket_gone_during_its_preface_is_never_written_to() {
    let written = Arc::new(AtomicUsize::new(0));
    let server = start(written.clone(), Duration::from_millis(300));
    let mut c = WsClient::open(&server).await;
    c.send(r#"40{"preface":true}"#).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(written.load(Ordering::SeqCst), 0, "nothing was written");
    assert_eq!(server.handle.socket_count(), 0);
}
