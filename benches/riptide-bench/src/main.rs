//! `riptide-bench`: the load generator for the bench fixture
//! (`../shared/FIXTURE.md`). It speaks Engine.IO v4 / Socket.IO v5 over
//! WebSocket itself and drives any fixture server by URL, so the same
//! generator measures Riptide and its peers.
//!
//! ```sh
//! cargo run --release -p riptide-bench -- fanout --url http://127.0.0.1:3000 --receivers 1000 --rate 1000 --duration 10
//! ```
//!
//! One JSON line on stdout per run (schema `riptide-bench/1`, see
//! `benches/README.md`), progress on stderr. Exit status 0 when the scenario
//! ran (its figures may still show loss or failures), 1 when it could not run
//! (the JSON line then has `"ok": false` and an `"error"`), 2 on a bad
//! command line.
//!
//! Threads: `--threads` defaults to 1. The generator shares the machine with
//! the server under test; one worker thread leaves the other core(s) to the
//! server and makes a generator-bound run obvious (`generator.saturated`),
//! where more threads would hide the contention in both processes' numbers.

mod cli;
mod client;
mod echo;
mod fanout;
mod idle;
mod inflate;
mod rolling;
mod service;
mod stats;
mod storm;

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use cli::{CliError, Opts, Scenario};
use stats::CpuMark;

/// What a scenario hands back: its figures and the measured phase, over
/// which the generator's own CPU use is judged.
pub struct Report {
    pub body: Map<String, Value>,
    pub phase: (CpuMark, CpuMark),
}

/// Progress for people: stderr, prefixed.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[riptide-bench] {}", format!($($arg)*))
    };
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(CliError::Help) => {
            print!("{}", cli::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("riptide-bench: {e}");
            std::process::exit(2);
        }
    };
    let nofile = stats::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("riptide-bench: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let run_mark = CpuMark::now();
    // The scenario runs as a task so that it, too, runs on the worker
    // threads: `--threads` is then the generator's whole parallelism.
    let o = opts.clone();
    let result = rt.block_on(async move {
        tokio::spawn(async move { run(&o).await })
            .await
            .unwrap_or_else(|e| Err(format!("scenario task failed: {e}")))
    });
    let mut out = Map::new();
    out.insert("schema".into(), json!("riptide-bench/1"));
    out.insert("scenario".into(), json!(opts.scenario.name()));
    out.insert("label".into(), json!(opts.label));
    let ok = match result {
        Ok(report) => {
            out.extend(report.body);
            out.insert(
                "generator".into(),
                stats::generator_json(opts.threads, run_mark, report.phase),
            );
            true
        }
        Err(e) => {
            progress!("error: {e}");
            out.insert("error".into(), json!(e));
            out.insert(
                "generator".into(),
                stats::generator_json(opts.threads, run_mark, (run_mark, CpuMark::now())),
            );
            false
        }
    };
    out.insert("ok".into(), json!(ok));
    if opts.deflate {
        out.insert("deflate".into(), inflate::totals());
    }
    out.insert("nofile_limit".into(), json!(nofile));
    out.insert(
        "wall_s".into(),
        json!(stats::round3(started.elapsed().as_secs_f64())),
    );
    println!("{}", Value::Object(out));
    // Connection tasks may still be closing sockets: do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(500));
    if !ok {
        std::process::exit(1);
    }
}

async fn run(o: &Opts) -> Result<Report, String> {
    match o.scenario {
        Scenario::Idle => idle::run(o).await,
        Scenario::Fanout | Scenario::CrossNode | Scenario::Slow => fanout::run(o).await,
        Scenario::Echo => echo::run(o).await,
        Scenario::ReconnectStorm => storm::run(o).await,
        Scenario::RollingRestart => rolling::run(o).await,
        Scenario::ServicePublish => service::run(o).await,
    }
}

/// Parameters every scenario reports.
pub fn common_params(o: &Opts) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("url".into(), json!(o.url));
    m.insert("url_b".into(), json!(o.url_b));
    m.insert("path".into(), json!(o.path));
    m.insert("threads".into(), json!(o.threads));
    m.insert("concurrency".into(), json!(o.concurrency));
    m.insert(
        "connect_timeout_ms".into(),
        json!(o.connect_timeout.as_millis() as u64),
    );
    m.insert("server_pids".into(), json!(o.server_pids));
    m.insert("sample_ms".into(), json!(o.sample.as_millis() as u64));
    m.insert("deflate".into(), json!(o.deflate));
    m
}
