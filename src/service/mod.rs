//! Running Riptide as a service: typed settings with environment overrides
//! (`settings`), structured logging (`logging`), the HTTP server that
//! serves a node with `/health` and `/metrics` and stops it in order
//! (`http`), the bench fixture application (`fixture`), and the Socket.IO
//! admin UI's namespace (`admin`).

pub mod admin;
pub mod demo;
pub mod fixture;
pub mod http;
pub mod logging;
pub mod notify;
pub mod settings;
pub(crate) mod tls;
