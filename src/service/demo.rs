//! The demo page the binary serves at `/` (`server.demo`, on by default in
//! the fixture and service modes): a person joins a room and exchanges
//! messages with the official client, seeing the connection's state and
//! transport. The client bundle is served beside it, as Node's server
//! serves `/socket.io/socket.io.js`, so the page needs nothing from the
//! internet.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::service::settings::{AppMode, Settings};

const PAGE: &str = include_str!("demo/index.html");
/// `socket.io-client` 4.8.4's `dist/socket.io.min.js` (MIT), vendored.
const CLIENT: &str = include_str!("demo/socket.io.min.js");
const MARK: &str = "/*RIPTIDE_CONFIG*/ { mode: \"fixture\", path: \"/socket.io/\" }";

/// Mount `/` and `/demo/socket.io.min.js` when `server.demo` is on and the
/// node runs an application the page knows (fixture or service).
pub fn routes(settings: &Settings, cfg: &mut web::ServiceConfig) {
    let mode = match settings.app.mode {
        AppMode::Fixture => "fixture",
        AppMode::Service => "service",
        AppMode::None => return,
    };
    if !settings.server.demo {
        return;
    }
    let config = serde_json::json!({ "mode": mode, "path": settings.server.path });
    // Filled in once; each request shares it.
    let page = web::Bytes::from(PAGE.replacen(MARK, &config.to_string(), 1));
    cfg.route(
        "/",
        web::get().to(move || {
            let page = page.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .body(page)
            }
        }),
    );
    cfg.route(
        "/demo/socket.io.min.js",
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("application/javascript; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
                .body(CLIENT)
        }),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_has_the_mark_the_server_fills_in() {
        assert_eq!(super::PAGE.matches(super::MARK).count(), 1);
        assert!(super::CLIENT.starts_with("/*!\n * Socket.IO v4.8.4"));
    }
}
