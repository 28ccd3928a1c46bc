//! `idle`: open connections in cumulative steps (`--conns 5000,10000`) at a
//! bounded concurrency; per step, the connect rate and the server's RSS per
//! idle connection ((RSS after the step's settle time − RSS before the first
//! connection) / connections open).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::cli::Opts;
use crate::client::{self, ConnectOpts, ConnectPhase, Ready, Target};
use crate::stats::{self, CpuMark, Failures, ServerSampler};
use crate::{common_params, progress, service, Report};

pub async fn run(o: &Opts) -> Result<Report, String> {
    let target = Arc::new(Target::resolve(&o.url, &o.path).await?);
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let copts = Arc::new(ConnectOpts {
        timeout: o.connect_timeout,
        deflate: o.deflate,
        rcvbuf: None,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let dropped = Arc::new(AtomicU64::new(0));
    let drop_kinds = Arc::new(Mutex::new(Failures::default()));

    let base_rss: Vec<Option<u64>> = o.server_pids.iter().map(|&p| stats::rss_kb(p)).collect();
    let base_self = stats::rss_kb(std::process::id());
    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);
    let phase0 = CpuMark::now();
    let mut handles = Vec::new();
    let mut steps = Vec::new();
    let mut attempted = 0usize;
    let mut opened = 0usize;
    // With --jwt-secret, each connection authenticates as service mode's
    // clients do (`u<i>`, a token valid for an hour), so service mode's idle
    // cost includes what it keeps per authenticated socket (its identity, the
    // token's expiry).
    let secret: Option<Arc<[u8]>> = o.jwt_secret.as_ref().map(|s| s.as_bytes().into());
    for &want in &o.conns {
        let n = want - attempted;
        attempted = want;
        progress!("idle: opening {n} connections (to {want} in total)");
        let (tx, mut rx) = mpsc::unbounded_channel::<Ready>();
        let started = Instant::now();
        for idx in attempted - n..attempted {
            let (target, copts, sem, tx) = (target.clone(), copts.clone(), sem.clone(), tx.clone());
            let (mut stop, dropped, kinds) = (stop_rx.clone(), dropped.clone(), drop_kinds.clone());
            let auth = secret.as_ref().map(|s| service::auth_payload(s, idx));
            handles.push(tokio::spawn(async move {
                let permit = sem.acquire_owned().await;
                let t = Instant::now();
                let r = client::connect_with(&target, &copts, auth.as_deref()).await;
                drop(permit);
                let mut conn = match r {
                    Ok((c, _)) => {
                        let _ = tx.send(Ok(t.elapsed()));
                        c
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.kind));
                        return;
                    }
                };
                drop(tx);
                if let Some(kind) = client::hold(&mut conn.ws, &mut stop).await {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    kinds.lock().add(kind);
                }
            }));
        }
        drop(tx);
        let phase = ConnectPhase::collect(&mut rx, n, "idle", started).await;
        if phase.ok == 0 {
            let _ = stop_tx.send(true);
            return Err(format!("idle: step {want}: no connection could be opened"));
        }
        opened += phase.ok;
        progress!(
            "idle: step {want}: {} ok, {} failed, {:.0} conn/s; settling {} ms",
            phase.ok,
            phase.failures.total(),
            phase.ok as f64 / phase.elapsed.as_secs_f64().max(1e-9),
            o.settle.as_millis()
        );
        tokio::time::sleep(o.settle).await;
        let alive = opened.saturating_sub(dropped.load(Ordering::Relaxed) as usize);
        let per_conn = |before: Option<u64>, now: Option<u64>| match (before, now) {
            (Some(b), Some(n)) if alive > 0 => {
                Some(stats::round1((n as f64 - b as f64) * 1024.0 / alive as f64))
            }
            _ => None,
        };
        let servers: Vec<Value> = o
            .server_pids
            .iter()
            .zip(&base_rss)
            .map(|(&pid, &before)| {
                let now = stats::rss_kb(pid);
                json!({
                    "pid": pid,
                    "rss_before_kb": before,
                    "rss_kb": now,
                    "rss_per_conn_bytes": per_conn(before, now),
                })
            })
            .collect();
        let self_now = stats::rss_kb(std::process::id());
        steps.push(json!({
            "conns": want,
            "open": alive,
            "connect": phase.json(),
            "dropped_so_far": dropped.load(Ordering::Relaxed),
            "server": servers,
            "generator_rss_per_conn_bytes": per_conn(base_self, self_now),
        }));
    }
    let phase1 = CpuMark::now();
    if !o.hold.is_zero() {
        progress!("idle: holding {opened} connections for {:?}", o.hold);
        tokio::time::sleep(o.hold).await;
    }
    let dropped_total = dropped.load(Ordering::Relaxed);
    let server = sampler.finish(false);
    progress!("idle: closing connections");
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }

    let mut params = common_params(o);
    params.insert("conns".into(), json!(o.conns));
    params.insert("settle_ms".into(), json!(o.settle.as_millis() as u64));
    params.insert("hold_s".into(), json!(o.hold.as_secs_f64()));
    params.insert("authenticated".into(), json!(o.jwt_secret.is_some()));
    let mut body = serde_json::Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert("steps".into(), Value::Array(steps));
    body.insert(
        "dropped".into(),
        json!({"total": dropped_total, "kinds": drop_kinds.lock().json()}),
    );
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}
