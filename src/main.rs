//! The `riptide` service binary: serves what `app.mode` names on `/` (the
//! bench fixture, or the notification service of `shared/SERVICE.md`) from
//! `config/`, with `RIPTIDE__…` overrides.

use std::path::PathBuf;
use std::process::ExitCode;

use riptide::fixture::FixtureHandler;
use riptide::settings::AppMode;
use riptide::{logging, service_mode, settings, AdminUi, Namespace, Riptide};

/// glibc's malloc was over a third of the node's CPU in fan-out profiles;
/// jemalloc's thread caches fit the many small, short-lived allocations of
/// message passing, and its RSS stays close to glibc's (docs/decisions.md).
/// The `jemalloc` feature (a default one); without it, the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let dir = std::env::var_os("RIPTIDE_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("config"));
    let settings = match settings::load(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("riptide: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let log = logging::build_logger(&settings.log);
    let system = actix_web::rt::System::new();
    let result = match settings.app.mode {
        AppMode::Service => system.block_on(service_mode::serve(settings, log.clone())),
        mode => {
            let demo = settings.clone();
            let admin = AdminUi::from_settings(&settings, &log);
            let mut node = Riptide::new(settings, log.clone());
            if mode == AppMode::Fixture {
                node = node.namespace("/", Namespace::new(|| FixtureHandler));
            }
            if let Some(admin) = &admin {
                node = admin.mount(node);
            }
            let server = node.build();
            system.block_on(async move {
                // Inside the system: it spawns the admin UI's stats task.
                if let Some(admin) = &admin {
                    admin.start(&server);
                }
                server
                    .run_with(move |cfg| riptide::demo::routes(&demo, cfg))
                    .await
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            slog::crit!(log, "riptide failed"; "error" => %e);
            ExitCode::FAILURE
        }
    }
}
