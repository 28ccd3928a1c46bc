//! Pins CORS on the Engine.IO endpoint: none by default; an allowed-origins
//! list echoes a listed Origin (with `Vary: Origin`) and never a foreign
//! one; `*` without credentials answers `*`; the OPTIONS preflight is 204
//! with the allowed methods and the requested headers; credentials add
//! `Access-Control-Allow-Credentials: true`. Error answers carry the same
//! headers, so a browser can read them.

mod common;

use common::*;
use reqwest::header::HeaderMap;
use reqwest::Method;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

const CORS_HEADERS: [&str; 5] = [
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "vary",
];

fn with_cors(origins: &[&str], credentials: bool) -> riptide::Settings {
    let mut s = test_settings();
    s.cors.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
    s.cors.allow_credentials = credentials;
    s
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// The handshake GET, a POST, a GET with data, and an error, from `origin`.
async fn every_answer(server: &TestServer, origin: Option<&str>) -> Vec<(String, HeaderMap)> {
    let hdrs: Vec<(&str, &str)> = origin.map(|o| vec![("origin", o)]).unwrap_or_default();
    let mut out = Vec::new();
    let (status, headers, body) = server
        .request(
            Method::GET,
            &server.url_at(ECHO, "EIO=4&transport=polling"),
            &hdrs,
            None,
        )
        .await;
    assert_eq!(status, 200);
    out.push(("handshake".to_string(), headers));
    let sid = serde_json::from_str::<serde_json::Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.url_at(ECHO, &format!("EIO=4&transport=polling&sid={sid}"));
    let (status, headers, _) = server
        .request(Method::POST, &url, &hdrs, Some(b"4x".to_vec()))
        .await;
    assert_eq!(status, 200);
    out.push(("post".to_string(), headers));
    let (status, headers, body) = server.request(Method::GET, &url, &hdrs, None).await;
    assert_eq!((status, body.as_str()), (200, "4x"));
    out.push(("poll".to_string(), headers));
    let (status, headers, _) = server
        .request(
            Method::GET,
            &server.url_at(ECHO, "EIO=3&transport=polling"),
            &hdrs,
            None,
        )
        .await;
    assert_eq!(status, 400);
    out.push(("error".to_string(), headers));
    out
}

async fn preflight(server: &TestServer, origin: &str) -> (u16, HeaderMap) {
    let (status, headers, body) = server
        .request(
            Method::OPTIONS,
            &server.url_at(ECHO, "EIO=4&transport=polling"),
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type, x-token"),
            ],
            None,
        )
        .await;
    assert_eq!(body, "");
    (status, headers)
}

#[actix_rt::test]
async fn no_cors_headers_by_default() {
    let server = TestServer::start_echo(test_settings());
    for origin in [None, Some(APP)] {
        for (what, headers) in every_answer(&server, origin).await {
            for name in CORS_HEADERS {
                assert!(headers.get(name).is_none(), "{what}: unexpected {name}");
            }
        }
    }
    let (status, headers) = preflight(&server, APP).await;
    assert_eq!(status, 204);
    for name in CORS_HEADERS {
        assert!(headers.get(name).is_none(), "preflight: unexpected {name}");
    }
}

#[actix_rt::test]
async fn a_listed_origin_is_echoed_with_vary() {
    let server = TestServer::start_echo(with_cors(&[APP, "https://other.example.com"], false));
    for (what, headers) in every_answer(&server, Some(APP)).await {
        assert_eq!(
            h(&headers, "access-control-allow-origin"),
            Some(APP),
            "{what}"
        );
        assert_eq!(h(&headers, "vary"), Some("Origin"), "{what}");
        assert_eq!(
            h(&headers, "access-control-allow-credentials"),
            None,
            "{what}"
        );
    }
    let (status, headers) = preflight(&server, APP).await;
    assert_eq!(status, 204);
    assert_eq!(h(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(h(&headers, "vary"), Some("Origin"));
    assert_eq!(
        h(&headers, "access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        h(&headers, "access-control-allow-headers"),
        Some("content-type, x-token")
    );
    assert_eq!(h(&headers, "access-control-allow-credentials"), None);
}

#[actix_rt::test]
async fn a_foreign_origin_is_not_allowed() {
    let server = TestServer::start_echo(with_cors(&[APP], false));
    for origin in [Some(EVIL), Some("https://app.example.com.evil.net"), None] {
        for (what, headers) in every_answer(&server, origin).await {
            assert_eq!(
                h(&headers, "access-control-allow-origin"),
                None,
                "{what} {origin:?}"
            );
            assert_eq!(
                h(&headers, "access-control-allow-credentials"),
                None,
                "{what}"
            );
            // The answer depends on the Origin: caches must know.
            assert_eq!(h(&headers, "vary"), Some("Origin"), "{what} {origin:?}");
        }
    }
    let (status, headers) = preflight(&server, EVIL).await;
    assert_eq!(status, 204);
    assert_eq!(h(&headers, "access-control-allow-origin"), None);
    assert_eq!(h(&headers, "access-control-allow-methods"), None);
    assert_eq!(h(&headers, "access-control-allow-headers"), None);
}

#[actix_rt::test]
async fn any_origin_without_credentials_is_a_star() {
    let server = TestServer::start_echo(with_cors(&["*"], false));
    for origin in [Some(APP), Some(EVIL), None] {
        for (what, headers) in every_answer(&server, origin).await {
            assert_eq!(
                h(&headers, "access-control-allow-origin"),
                Some("*"),
                "{what}"
            );
            assert_eq!(
                h(&headers, "access-control-allow-credentials"),
                None,
                "{what}"
            );
        }
    }
    let (status, headers) = preflight(&server, EVIL).await;
    assert_eq!(status, 204);
    assert_eq!(h(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        h(&headers, "access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        h(&headers, "access-control-allow-headers"),
        Some("content-type, x-token")
    );
}

#[actix_rt::test]
async fn credentials_add_allow_credentials() {
    let server = TestServer::start_echo(with_cors(&[APP], true));
    for (what, headers) in every_answer(&server, Some(APP)).await {
        assert_eq!(
            h(&headers, "access-control-allow-origin"),
            Some(APP),
            "{what}"
        );
        assert_eq!(
            h(&headers, "access-control-allow-credentials"),
            Some("true"),
            "{what}"
        );
        assert_eq!(h(&headers, "vary"), Some("Origin"), "{what}");
    }
    let (_, headers) = preflight(&server, APP).await;
    assert_eq!(
        h(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    // Never for a foreign origin.
    for (what, headers) in every_answer(&server, Some(EVIL)).await {
        assert_eq!(
            h(&headers, "access-control-allow-credentials"),
            None,
            "{what}"
        );
        assert_eq!(h(&headers, "access-control-allow-origin"), None, "{what}");
    }
}

#[actix_rt::test]
async fn any_origin_with_credentials_echoes_the_origin() {
    // `*` is not valid with credentials: the browser needs the origin itself.
    let server = TestServer::start_echo(with_cors(&["*"], true));
    for (what, headers) in every_answer(&server, Some(EVIL)).await {
        assert_eq!(
            h(&headers, "access-control-allow-origin"),
            Some(EVIL),
            "{what}"
        );
        assert_eq!(
            h(&headers, "access-control-allow-credentials"),
            Some("true"),
            "{what}"
        );
        assert_eq!(h(&headers, "vary"), Some("Origin"), "{what}");
    }
}

#[actix_rt::test]
async fn preflight_creates_no_session() {
    let server = TestServer::start_echo(with_cors(&[APP], false));
    let (status, _) = preflight(&server, APP).await;
    assert_eq!(status, 204);
    assert_eq!(server.engine_sessions().await, 0.0);
}
