//! `reconnect-storm`: `--clients` sockets connect; once all are up the
//! generator runs `--restart-cmd` (or waits for someone else to restart the
//! node) and every client reconnects with backoff. Reported: the time until
//! all are back, each client's time from losing its connection to being back,
//! failed attempts by kind, and the new server's CPU (peak over one sampling
//! period) read from /proc/<pid>/stat of the PID in `--server-pid-file`.
//!
//! Backoff, like socket.io-client's (which defaults to 1 s × 2^n capped at
//! 5 s, ±50% jitter) but shorter so a storm is measured in seconds: after a
//! lost connection or a failed attempt n (0, 1, …) a client waits
//! min(cap, base × 2^n) with base drawn uniformly in [min, max] for every
//! wait (default 100–500 ms, cap 5 s). A client reconnects after any end of
//! its connection: Engine.IO close, Socket.IO DISCONNECT, WebSocket close,
//! reset or EOF (socket.io-client would not after an explicit `41`; a fixture
//! server never sends one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::Opts;
use crate::client::{self, Backoff, ConnectOpts, Target};
use crate::stats::{self, CpuMark, Failures, ServerSampler};
use crate::{common_params, progress, Report};

enum Ev {
    Up {
        idx: usize,
        at: Instant,
    },
    Down {
        idx: usize,
        at: Instant,
        kind: &'static str,
    },
    AttemptFailed {
        kind: &'static str,
    },
}

async fn client_task(
    idx: usize,
    target: Arc<Target>,
    copts: Arc<ConnectOpts>,
    sem: Arc<Semaphore>,
    backoff: Backoff,
    events: mpsc::UnboundedSender<Ev>,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    let mut attempt = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        // Only the initial connects are bounded; reconnects are the storm.
        let permit = if first {
            sem.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let r = client::connect(&target, &copts).await;
        drop(permit);
        match r {
            Ok(mut conn) => {
                first = false;
                attempt = 0;
                let _ = events.send(Ev::Up {
                    idx,
                    at: Instant::now(),
                });
                let Some(kind) = client::hold(&mut conn.ws, &mut stop).await else {
                    return;
                };
                let _ = events.send(Ev::Down {
                    idx,
                    at: Instant::now(),
                    kind,
                });
                drop(conn);
            }
            Err(e) => {
                let _ = events.send(Ev::AttemptFailed { kind: e.kind });
                attempt += 1;
            }
        }
        let wait = backoff.delay(attempt.saturating_sub(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn read_pid(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Samples the CPU of the PID found in `path` once it differs from `old`.
async fn sample_new_server(
    path: String,
    old: Option<u32>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> Value {
    let start = Instant::now();
    let pid = loop {
        if let Some(p) = read_pid(&path) {
            if Some(p) != old && stats::proc_cpu_s(p).is_some() {
                break p;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => return json!({"pid": null, "error": "no new PID in the PID file"}),
        }
    };
    let found_after_ms = stats::round1(start.elapsed().as_secs_f64() * 1e3);
    let cpu0 = stats::proc_cpu_s(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let (mut last_cpu, mut last_at) = (cpu0, t0);
    let mut peak: f64 = 0.0;
    let mut rss_peak = 0u64;
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let Some(cpu) = stats::proc_cpu_s(pid) else {
            break;
        };
        let now = Instant::now();
        let pct = (cpu - last_cpu) / now.duration_since(last_at).as_secs_f64().max(1e-9) * 100.0;
        let rss = stats::rss_kb(pid).unwrap_or(0);
        rss_peak = rss_peak.max(rss);
        peak = peak.max(pct);
        samples.push(json!([
            stats::round1(now.duration_since(t0).as_secs_f64() * 1e3),
            rss,
            stats::round1(pct)
        ]));
        (last_cpu, last_at) = (cpu, now);
    }
    let cpu_s = last_cpu - cpu0;
    json!({
        "pid": pid,
        "found_after_ms": found_after_ms,
        "cpu_s": stats::round3(cpu_s),
        "cpu_pct_avg": stats::round1(cpu_s / last_at.duration_since(t0).as_secs_f64().max(1e-9) * 100.0),
        "cpu_pct_peak": stats::round1(peak),
        "rss_peak_kb": rss_peak,
        "samples": samples,
    })
}

fn run_restart(cmd: &str) -> Value {
    let t = Instant::now();
    // stdout to our stderr: our stdout carries only the JSON line.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status();
    json!({
        "exit_code": status.as_ref().ok().and_then(|s| s.code()),
        "error": status.as_ref().err().map(|e| e.to_string()),
        "ms": stats::round1(t.elapsed().as_secs_f64() * 1e3),
    })
}

pub async fn run(o: &Opts) -> Result<Report, String> {
    let target = Arc::new(Target::resolve(&o.url, &o.path).await?);
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let copts = Arc::new(ConnectOpts {
        timeout: o.connect_timeout,
        deflate: o.deflate,
        rcvbuf: None,
    });
    let backoff = o.backoff();
    let n = o.clients;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    progress!("reconnect-storm: connecting {n} clients");
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|idx| {
            tokio::spawn(client_task(
                idx,
                target.clone(),
                copts.clone(),
                sem.clone(),
                backoff,
                ev_tx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(ev_tx);

    // Phase 1: everyone up once.
    let mut up = vec![false; n];
    let mut up_count = 0usize;
    let mut initial_failures = Failures::default();
    let initial_deadline = Instant::now() + o.timeout;
    while up_count < n {
        let ev = tokio::time::timeout_at(initial_deadline.into(), ev_rx.recv()).await;
        match ev {
            Ok(Some(Ev::Up { idx, .. })) if !up[idx] => {
                up[idx] = true;
                up_count += 1;
            }
            Ok(Some(Ev::AttemptFailed { kind })) => initial_failures.add(kind),
            Ok(Some(Ev::Down { idx, kind, .. })) => {
                initial_failures.add(&format!("dropped_{kind}"));
                if up[idx] {
                    up[idx] = false;
                    up_count -= 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let initial_elapsed = started.elapsed();
    if up_count < n {
        let _ = stop_tx.send(true);
        return Err(format!(
            "only {up_count} of {n} clients connected within {:?} (failures: {})",
            o.timeout,
            initial_failures.json()
        ));
    }
    progress!(
        "all {n} clients connected in {:.2} s",
        initial_elapsed.as_secs_f64()
    );

    // Phase 2: restart, then wait for every client to be back.
    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);
    let old_pid = o.server_pid_file.as_deref().and_then(read_pid);
    let (sample_stop_tx, sample_stop_rx) = watch::channel(false);
    let new_server = o.server_pid_file.clone().map(|path| {
        tokio::spawn(sample_new_server(
            path,
            old_pid,
            o.sample,
            sample_stop_rx.clone(),
        ))
    });
    let phase0 = CpuMark::now();
    let t_restart = Instant::now();
    let mut restart = match &o.restart_cmd {
        Some(cmd) => {
            progress!("running restart command: {cmd}");
            let cmd = cmd.clone();
            let r = tokio::task::spawn_blocking(move || run_restart(&cmd));
            Some(r)
        }
        None => {
            progress!("no --restart-cmd: waiting for the node to be restarted");
            None
        }
    };
    let mut down_at: Vec<Option<Instant>> = vec![None; n];
    let mut back_at: Vec<Option<Instant>> = vec![None; n];
    let mut back = 0usize;
    let mut downs = 0usize;
    let mut down_kinds = Failures::default();
    let mut failures = Failures::default();
    let mut restart_json = Value::Null;
    let deadline = t_restart + o.timeout;
    // Clients still connected 5 s after the restart command returned were not
    // reached by the restart: stop waiting for them then.
    let mut quiet_after: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        let quiet = quiet_after.is_some_and(|q| now >= q);
        if (downs == n && back == n) || now >= deadline || (quiet && back == downs) {
            break;
        }
        tokio::select! {
            r = async { restart.as_mut().unwrap().await }, if restart.is_some() => {
                restart_json = r.unwrap_or_else(|e| json!({"error": e.to_string()}));
                restart = None;
                quiet_after = Some(Instant::now() + Duration::from_secs(5));
            }
            ev = ev_rx.recv() => match ev {
                Some(Ev::Down { idx, at, kind }) => {
                    if down_at[idx].is_none() {
                        down_at[idx] = Some(at);
                        downs += 1;
                        down_kinds.add(kind);
                    } else if back_at[idx].is_some() {
                        // Lost again after coming back: a failure of its own.
                        failures.add(&format!("dropped_again_{kind}"));
                    }
                }
                Some(Ev::Up { idx, at }) => {
                    if down_at[idx].is_some() && back_at[idx].is_none() {
                        back_at[idx] = Some(at);
                        back += 1;
                    }
                }
                Some(Ev::AttemptFailed { kind }) => failures.add(kind),
                None => break,
            },
            _ = tick.tick() => {}
        }
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            progress!(
                "storm: {downs} disconnected, {back} back, {} failed attempts",
                failures.total()
            );
        }
    }
    let phase1 = CpuMark::now();
    if let Some(r) = restart.take() {
        restart_json = r.await.unwrap_or_else(|e| json!({"error": e.to_string()}));
    }
    let _ = sample_stop_tx.send(true);
    let new_server = match new_server {
        Some(t) => t.await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    let server = sampler.finish(false);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    let first_down = down_at.iter().flatten().min().copied();
    let last_back = back_at.iter().flatten().max().copied();
    let ms = |d: Duration| stats::round1(d.as_secs_f64() * 1e3);
    let mut per_client = stats::histogram();
    for (d, b) in down_at.iter().zip(&back_at) {
        if let (Some(d), Some(b)) = (d, b) {
            per_client.saturating_record(b.saturating_duration_since(*d).as_nanos() as u64);
        }
    }
    let all_back = back == n;
    let mut params = common_params(o);
    params.insert("clients".into(), json!(n));
    params.insert("restart_cmd".into(), json!(o.restart_cmd));
    params.insert("server_pid_file".into(), json!(o.server_pid_file));
    params.insert("timeout_s".into(), json!(o.timeout.as_secs_f64()));
    let mut body = Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert(
        "backoff".into(),
        json!({
            "policy": "wait min(cap, base * 2^n) after a lost connection (n = 0) or the n-th consecutive failed attempt; base uniform in [min, max] per wait",
            "min_ms": o.backoff_min.as_millis() as u64,
            "max_ms": o.backoff_max.as_millis() as u64,
            "cap_ms": o.backoff_cap.as_millis() as u64,
        }),
    );
    body.insert(
        "initial".into(),
        json!({
            "connected": up_count,
            "elapsed_s": stats::round3(initial_elapsed.as_secs_f64()),
            "conn_per_s": stats::round1(up_count as f64 / initial_elapsed.as_secs_f64().max(1e-9)),
            "failures": initial_failures.json(),
        }),
    );
    body.insert("restart".into(), restart_json);
    body.insert(
        "storm".into(),
        json!({
            "disconnected": downs,
            "never_disconnected": n - downs,
            "disconnect_kinds": down_kinds.json(),
            "back": back,
            "not_back": downs - back,
            "all_back": all_back,
            "first_disconnect_after_restart_ms": first_down.map(|t| ms(t.saturating_duration_since(t_restart))),
            "all_back_after_restart_ms": last_back.filter(|_| all_back).map(|t| ms(t.saturating_duration_since(t_restart))),
            "all_back_after_first_disconnect_ms": match (first_down, last_back) {
                (Some(f), Some(l)) if all_back => Some(ms(l.saturating_duration_since(f))),
                _ => None,
            },
            "failed_attempts": failures.total(),
            "failed_attempt_kinds": failures.json(),
            "reconnect_us": stats::latency_json(&per_client),
        }),
    );
    body.insert("new_server".into(), new_server);
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}
