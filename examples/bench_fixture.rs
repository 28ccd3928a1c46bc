//! The bench fixture application of `shared/FIXTURE.md`, for load tests:
//! `PORT=3001 cargo run --release --example bench_fixture`.
//!
//! It reads `config/` and `RIPTIDE__…` overrides like the binary (so the same
//! adapter settings cluster it), and listens on `127.0.0.1:$PORT`.

use riptide::fixture::FixtureHandler;
use riptide::service::{config, logging};
use riptide::{Namespace, Riptide};

/// glibc's malloc was over a third of the node's CPU in fan-out profiles;
/// jemalloc's thread caches fit the many small, short-lived allocations of
/// message passing, and its RSS stays close to glibc's (docs/decisions.md).
/// The `jemalloc` feature (a default one); without it, the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = config::load(std::path::Path::new("config"))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    settings.server.host = "127.0.0.1".into();
    if let Ok(port) = std::env::var("PORT") {
        settings.server.port = port.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "PORT must be a port number",
            )
        })?;
    }
    let log = logging::build_logger(&settings.log);
    Riptide::new(settings, log)
        .namespace("/", Namespace::new(|| FixtureHandler))
        .build()
        .run()
        .await
}
