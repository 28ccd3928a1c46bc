//! The bench fixture application of `shared/FIXTURE.md`, for load tests:
//! `PORT=3001 cargo run --release --example bench_fixture`.
//!
//! It reads `config/` and `RIPTIDE__…` overrides like the binary (so the same
//! adapter settings cluster it), and listens on `127.0.0.1:$PORT`.

use riptide::fixture::FixtureHandler;
use riptide::{logging, settings, AckSender, HandlerContext, Namespace, Riptide, Socket};

/// glibc's malloc was over a third of the node's CPU in fan-out profiles;
/// jemalloc's thread caches fit the many small, short-lived allocations of
/// message passing, and its RSS stays close to glibc's (docs/decisions.md).
/// The `jemalloc` feature (a default one); without it, the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `join(room)`: the join is in effect before the ack leaves (FIXTURE.md).
fn join(
    _h: &mut FixtureHandler,
    socket: &Socket,
    room: String,
    ack: Option<AckSender>,
    _ctx: &mut HandlerContext<FixtureHandler>,
) {
    // A refusal (room limit) is logged and counted by `join`; the fixture
    // contract has no error reply, so it acks either way.
    let _ = socket.join(room);
    if let Some(ack) = ack {
        ack.send(());
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut settings = settings::load(std::path::Path::new("config"))
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
        .namespace(
            "/",
            // `join` is a typed listener; `publish` and `echo` pass their
            // arguments (binary attachments included) through untouched, so
            // they stay on the handler's catch-all (`FixtureHandler::on_event`).
            Namespace::new(|| FixtureHandler).on("join", join),
        )
        .build()
        .run()
        .await
}
