//! The admin UI's namespace (`[admin]`, `@socket.io/admin-ui` 0.5.x) at the
//! wire, on one node:
//!
//! - a wrong password, a missing or non-string password, a bad auth payload
//!   and an unknown session id are all refused with exactly
//!   `{"message":"invalid credentials"}`; the bad payloads are counted as
//!   bad input and the node goes on serving;
//! - a good login gets `session` (16 hex characters) before its CONNECT
//!   reply, then `config` with the development-mode features and
//!   `all_sockets` with its own socket; the session id logs in again
//!   without the password;
//! - a socket connecting elsewhere is told (`room_joined` for its own room,
//!   then `socket_connected`); commands with wrong types or unknown names
//!   are counted and ignored; `_disconnect` disconnects the socket;
//! - read-only: no command features, and commands do nothing; production
//!   mode: no socket feed, `server_stats` only;
//! - past `admin.max_logins_per_s` no password is checked (refused);
//! - `admin.password_hash` must be a bcrypt hash;
//! - a socket's JSON data (`socket.data`) as its connect middleware and
//!   its handler set it, in `socket_connected`, `socket_updated`,
//!   `all_sockets` and `fetch_sockets`; disconnect reasons and the close
//!   subtypes of `server_stats` as the reference names them (a handler
//!   panic is "server namespace disconnect", a client's close "transport
//!   close"); a binary event's attachments reported as binary;
//! - two nodes through NATS: a dynamic namespace that exists only on the
//!   other node is in a UI's `all_sockets`, with its sockets' data, and the
//!   UI's commands reach its sockets.

mod common;

use common::brokers::{Broker, NatsServer};
use common::*;
use riptide::{
    AdminUi, Event, HandlerContext, Namespace, NamespaceHandler, Riptide, Settings, Socket,
};
use serde_json::{json, Value};

const USER: &str = "admin";
const PASSWORD: &str = "changeit";
/// bcrypt of PASSWORD at cost 4 (the cheapest: the test logs in often).
const HASH: &str = "$2b$04$0F/YTn317oLMrqMVBqbUo.ZmoJ6Nc2T7IWCNx.c.mkHlbs8vkRMMG";

fn settings(readonly: bool) -> Settings {
    let mut s = test_settings();
    s.admin.enabled = true;
    s.admin.username = USER.into();
    s.admin.password_hash = HASH.into();
    s.admin.readonly = readonly;
    s.admin.max_logins_per_s = 100;
    s
}

fn start(settings: Settings) -> TestServer {
    start_with(settings, |r| {
        r.namespace(
            "/",
            riptide::Namespace::new(|| riptide::fixture::FixtureHandler),
        )
    })
}

/// A node with the admin UI and the namespaces `build` adds.
fn start_with(
    settings: Settings,
    build: impl FnOnce(Riptide) -> Riptide + Send + 'static,
) -> TestServer {
    let log = riptide::logging::build_logger(&settings.log);
    let admin = AdminUi::from_settings(&settings, &log).expect("admin.enabled");
    let mounted = admin.clone();
    TestServer::start_mounted(
        settings,
        move |r: Riptide| mounted.mount(build(r)),
        move |server| {
            admin.start(server);
            |_: &mut actix_web::web::ServiceConfig| {}
        },
    )
}

/// Sets a socket's JSON data: from the CONNECT's `auth.data` (connect
/// middleware), and on `set` (its argument; acked); panics on `panic`.
struct DataHandler;

impl NamespaceHandler for DataHandler {
    fn on_event(&mut self, socket: &Socket, event: Event, _ctx: &mut HandlerContext<Self>) {
        match event.name.as_str() {
            "set" => {
                socket
                    .set_json_data(event.arg(0).cloned().unwrap_or(Value::Null))
                    .unwrap();
                if let Some(ack) = event.ack {
                    ack.send(());
                }
            }
            "panic" => panic!("the test asked for it"),
            _ => {}
        }
    }
}

fn data_namespace() -> Namespace<DataHandler> {
    Namespace::new(|| DataHandler).on_connect(|req| {
        if let Some(data) = req.auth.get("data").cloned() {
            req.set_json_data(data).unwrap();
        }
        Ok(())
    })
}

/// Connect to `/admin` with the right credentials.
async fn connect_admin(server: &TestServer) -> WsClient {
    let mut admin = WsClient::open(server).await;
    admin
        .connect_raw(
            "/admin",
            Some(json!({ "username": USER, "password": PASSWORD })),
        )
        .await;
    admin
}

/// Log in to `/admin`: the socket, and `all_sockets`' list.
async fn login(server: &TestServer) -> (WsClient, Vec<Value>) {
    let mut admin = connect_admin(server).await;
    let all = next_event(&mut admin, "all_sockets").await;
    let Value::Array(list) = all[0].clone() else {
        panic!("all_sockets: {all:?}");
    };
    (admin, list)
}

/// The next `event` on `/admin` whose arguments satisfy `ok`.
async fn next_matching(c: &mut WsClient, event: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    loop {
        let args = next_event(c, event).await;
        if ok(&args) {
            return args;
        }
    }
}

/// Read until an ack (`43…`) arrives.
async fn acked(c: &mut WsClient) {
    loop {
        if c.recv_text().await.starts_with("43") {
            return;
        }
    }
}

/// The next text frame that is an event named `event` on `/admin`: its
/// arguments (other frames are skipped).
async fn next_event(c: &mut WsClient, event: &str) -> Vec<Value> {
    let prefix = "42/admin,";
    loop {
        let text = c.recv_text().await;
        let Some(json) = text.strip_prefix(prefix) else {
            continue;
        };
        let Value::Array(mut args) = serde_json::from_str(json).unwrap() else {
            panic!("an event: {text}");
        };
        if args.first() == Some(&json!(event)) {
            args.remove(0);
            return args;
        }
    }
}

async fn refused(server: &TestServer, auth: Value) {
    let mut c = WsClient::open(server).await;
    let reply = c.connect_raw("/admin", Some(auth.clone())).await;
    assert_eq!(
        reply, r#"44/admin,{"message":"invalid credentials"}"#,
        "auth {auth}"
    );
}

#[actix_rt::test]
async fn logins_are_checked_and_bad_input_is_refused_and_counted() {
    let server = start(settings(false));
    refused(&server, json!({ "username": USER, "password": "wrong" })).await;
    refused(&server, json!({ "username": "root", "password": PASSWORD })).await;
    refused(&server, json!({ "username": USER })).await;
    refused(&server, json!({ "username": USER, "password": 1234 })).await;
    refused(&server, json!({ "username": [USER], "password": PASSWORD })).await;
    refused(&server, json!({ "sessionId": "0123456789abcdef" })).await;
    refused(&server, json!({})).await;
    assert!(server.bad_input("admin_auth").await >= 3.0);

    // A good login: `session` first, then the CONNECT reply.
    let mut admin = WsClient::open(&server).await;
    let first = admin
        .connect_raw(
            "/admin",
            Some(json!({ "username": USER, "password": PASSWORD })),
        )
        .await;
    let session: Value = serde_json::from_str(first.strip_prefix("42/admin,").unwrap()).unwrap();
    assert_eq!(session[0], "session");
    let id = session[1].as_str().unwrap().to_owned();
    assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    let reply = admin.recv_text().await;
    assert!(reply.starts_with("40/admin,{\"sid\""), "{reply}");
    let config = next_event(&mut admin, "config").await;
    assert_eq!(
        config[0]["supportedFeatures"],
        json!([
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
            "AGGREGATED_EVENTS",
            "ALL_EVENTS"
        ])
    );
    let all = next_event(&mut admin, "all_sockets").await;
    let me = &all[0][0];
    assert_eq!(me["nsp"], "/admin");
    assert_eq!(me["clientId"].as_str().unwrap().len(), 12);
    assert!(me["rooms"].as_array().unwrap().contains(&me["id"].clone()));

    // The session id is enough the next time.
    let mut again = WsClient::open(&server).await;
    let reply = again
        .connect_raw("/admin", Some(json!({ "sessionId": id })))
        .await;
    assert!(reply.starts_with("40/admin,{\"sid\""), "{reply}");

    // A user connects: its own room, then the socket.
    let (mut user, sid) = WsClient::connect(&server, "/", None).await;
    // (The second admin socket was reported too: skipped.)
    let joined = loop {
        let joined = next_event(&mut admin, "room_joined").await;
        if joined[0] == "/" {
            break joined;
        }
    };
    assert_eq!(&joined[..3], &[json!("/"), json!(sid), json!(sid)]);
    assert!(joined[3].as_str().unwrap().ends_with('Z'));
    let connected = next_event(&mut admin, "socket_connected").await;
    assert_eq!(connected[0]["id"], json!(sid));
    assert_eq!(connected[0]["handshake"]["query"]["EIO"], "4");

    // Commands with wrong types, unknown commands: counted, ignored.
    for bad in [
        json!(["_disconnect", 1, false, sid]),
        json!(["_disconnect", "/", "no", sid]),
        json!(["join", "/", null, sid]),
        json!(["leave", "/", "room", { "x": 1 }]),
        json!(["emit", "/", null, "disconnect"]),
        json!(["emit"]),
        json!(["shutdown", "/"]),
    ] {
        admin.emit("/admin", bad, None).await;
    }
    assert_eq!(
        server
            .wait_metric("riptide_bad_input_total{kind=\"admin_command\"}", 7.0)
            .await,
        7.0
    );
    user.expect_silence(std::time::Duration::from_millis(200))
        .await;

    // And a good one.
    admin
        .emit("/admin", json!(["_disconnect", "/", false, sid]), None)
        .await;
    user.expect_text("41").await;
    let gone = next_event(&mut admin, "socket_disconnected").await;
    assert_eq!(
        &gone[..3],
        &[json!("/"), json!(sid), json!("server namespace disconnect")]
    );
}

#[actix_rt::test]
async fn read_only_offers_no_commands_and_runs_none() {
    let server = start(settings(true));
    let mut admin = connect_admin(&server).await;
    let config = next_event(&mut admin, "config").await;
    assert_eq!(
        config[0]["supportedFeatures"],
        json!(["AGGREGATED_EVENTS", "ALL_EVENTS"])
    );
    let (mut user, sid) = WsClient::connect(&server, "/", None).await;
    admin
        .emit("/admin", json!(["_disconnect", "/", false, sid]), None)
        .await;
    user.expect_silence(std::time::Duration::from_millis(300))
        .await;
    assert_eq!(
        server
            .wait_metric("riptide_bad_input_total{kind=\"admin_command\"}", 1.0)
            .await,
        1.0
    );
}

#[actix_rt::test]
async fn production_mode_sends_stats_only() {
    let mut s = settings(false);
    s.admin.mode = riptide::settings::AdminMode::Production;
    let server = start(s);
    let mut admin = connect_admin(&server).await;
    admin.recv_text().await; // the CONNECT reply
    let config = next_event(&mut admin, "config").await;
    assert_eq!(
        config[0]["supportedFeatures"],
        json!([
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
            "AGGREGATED_EVENTS"
        ])
    );
    let (_user, _) = WsClient::connect(&server, "/", None).await;
    // Nothing about sockets: the next event is the stats.
    let next = admin.recv_text().await;
    assert!(next.starts_with("42/admin,[\"server_stats\""), "{next}");
}

#[actix_rt::test]
async fn password_checks_are_bounded_per_second() {
    let mut s = settings(false);
    s.admin.max_logins_per_s = 1;
    let server = start(s);
    let login = json!({ "username": USER, "password": PASSWORD });
    let mut first = WsClient::open(&server).await;
    let reply = first.connect_raw("/admin", Some(login.clone())).await;
    assert!(reply.starts_with("42/admin,[\"session\""), "{reply}");
    // The second check in the same second is not made.
    refused(&server, login).await;
}

#[test]
fn the_password_must_be_a_bcrypt_hash() {
    let mut s = settings(false);
    s.admin.password_hash = PASSWORD.into();
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("admin.password_hash"), "{err}");
    let mut s = settings(false);
    s.admin.username.clear();
    assert!(s
        .validate()
        .unwrap_err()
        .to_string()
        .contains("admin.username"));
    assert!(settings(false).validate().is_ok());
    // Off, nothing is required.
    let mut s = Settings::default();
    s.admin.password_hash = "not a hash".into();
    assert!(s.validate().is_ok());
}

#[actix_rt::test]
async fn socket_data_disconnect_reasons_and_close_subtypes_are_the_references() {
    let server = start_with(settings(false), |r| r.namespace("/", data_namespace()));
    let (mut admin, _) = login(&server).await;

    // Data its connect middleware set: in `socket_connected`.
    let (mut user, sid) =
        WsClient::connect(&server, "/", Some(json!({ "data": { "team": "blue" } }))).await;
    let connected = next_matching(&mut admin, "socket_connected", |a| a[0]["nsp"] == "/").await;
    assert_eq!(connected[0]["id"], json!(sid));
    assert_eq!(connected[0]["data"], json!({ "team": "blue" }));

    // Set by its handler: `socket_updated` with the data, as the
    // reference's proxy on `socket.data` sends it.
    user.emit("/", json!(["set", { "score": 3, "tags": ["a"] }]), Some(1))
        .await;
    acked(&mut user).await;
    let updated = next_matching(&mut admin, "socket_updated", |a| a[0]["id"] == json!(sid)).await;
    assert_eq!(
        updated[0],
        json!({ "id": sid, "nsp": "/", "data": { "score": 3, "tags": ["a"] } })
    );
    // `fetch_sockets` and a UI that logs in now see it too.
    let found = server.handle.of("/").fetch_sockets().await;
    assert_eq!(found.local.len(), 1);
    assert_eq!(
        found.local[0].json_data(),
        json!({ "score": 3, "tags": ["a"] })
    );
    let (_again, all) = login(&server).await;
    let listed = all.iter().find(|s| s["id"] == json!(sid)).expect("listed");
    assert_eq!(listed["data"], json!({ "score": 3, "tags": ["a"] }));

    // A binary event: reported with its attachment, as binary.
    user.send("451-[\"bin\",{\"_placeholder\":true,\"num\":0}]")
        .await;
    user.send_binary(vec![7, 8, 9]).await;
    let head = loop {
        if let Frame::Text(t) = admin.recv().await {
            if t.starts_with("451-/admin,[\"event_received\"") {
                break t;
            }
        }
    };
    let args: Value = serde_json::from_str(&head["451-/admin,".len()..]).unwrap();
    assert_eq!(
        args[3],
        json!(["bin", { "_placeholder": true, "num": 0 }]),
        "{head}"
    );
    assert_eq!(admin.recv().await, Frame::Binary(vec![7, 8, 9]));

    // Its handler panics: disconnected from the namespace (the client told),
    // which the reference calls "server namespace disconnect".
    user.emit("/", json!(["panic"]), None).await;
    user.expect_text("41").await;
    let gone = next_matching(&mut admin, "socket_disconnected", |a| a[1] == json!(sid)).await;
    assert_eq!(gone[2], "server namespace disconnect");

    // The client closes its session: `rawDisconnection`, subtype
    // "transport close" (the reference engine's reason).
    user.send("1").await;
    let stats = next_matching(&mut admin, "server_stats", |a| {
        a[0]["aggregatedEvents"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "rawDisconnection"))
    })
    .await;
    let closes: Vec<&Value> = stats[0]["aggregatedEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "rawDisconnection")
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0]["subType"], "transport close");
    assert_eq!(closes[0]["count"], 1);
}

#[actix_rt::test]
async fn a_dynamic_namespace_only_on_another_node_is_listed_with_its_sockets_data() {
    let nats = NatsServer::start();
    let node = |dynamic: bool| {
        let mut s = settings(false);
        s.adapter = nats.adapter_settings("admin");
        start_with(s, move |r| {
            let r = r.namespace("/", data_namespace());
            if dynamic {
                r.dynamic_namespace(regex::Regex::new(r"^/dyn-\d+$").unwrap(), data_namespace())
            } else {
                r
            }
        })
    };
    let a = node(false);
    let b = node(true);
    for n in [&a, &b] {
        assert_eq!(n.wait_metric("riptide_adapter_peers", 1.0).await, 1.0);
    }

    // A socket of /dyn-7 on node B, which node A does not have.
    let (mut user, sid) = WsClient::connect(&b, "/dyn-7", None).await;
    user.emit("/dyn-7", json!(["set", { "on": "b" }]), Some(1))
        .await;
    acked(&mut user).await;
    assert_eq!(a.handle.namespace_count(), 2, "only / and /admin on A");

    // fetch_sockets from node A carries its data across.
    let found = a.handle.of("/dyn-7").fetch_sockets().await;
    assert_eq!(found.remote.len(), 1);
    assert_eq!(found.remote[0].id, sid);
    assert_eq!(found.remote[0].data(), json!({ "on": "b" }));

    // A UI logging in to node A lists it, with its data.
    let (mut admin, all) = login(&a).await;
    let listed = all
        .iter()
        .find(|s| s["id"] == json!(sid))
        .unwrap_or_else(|| panic!("the /dyn-7 socket of node B in {all:?}"));
    assert_eq!(listed["nsp"], "/dyn-7");
    assert_eq!(listed["data"], json!({ "on": "b" }));

    // And a command on that namespace reaches it.
    admin
        .emit("/admin", json!(["_disconnect", "/dyn-7", false, sid]), None)
        .await;
    user.expect_text("41/dyn-7,").await;
}
