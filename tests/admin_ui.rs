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
//! - `admin.password_hash` must be a bcrypt hash.

mod common;

use common::*;
use riptide::{AdminUi, Riptide, Settings};
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
    let log = riptide::logging::build_logger(&settings.log);
    let admin = AdminUi::from_settings(&settings, &log).expect("admin.enabled");
    let mounted = admin.clone();
    TestServer::start_mounted(
        settings,
        move |r: Riptide| {
            mounted.mount(r.namespace(
                "/",
                riptide::Namespace::new(|| riptide::fixture::FixtureHandler),
            ))
        },
        move |server| {
            admin.start(server);
            |_: &mut actix_web::web::ServiceConfig| {}
        },
    )
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
    let mut admin = WsClient::open(&server).await;
    admin
        .connect_raw(
            "/admin",
            Some(json!({ "username": USER, "password": PASSWORD })),
        )
        .await;
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
    let mut admin = WsClient::open(&server).await;
    admin
        .connect_raw(
            "/admin",
            Some(json!({ "username": USER, "password": PASSWORD })),
        )
        .await;
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
