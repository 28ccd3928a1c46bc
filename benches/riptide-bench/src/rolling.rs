//! `rolling-restart`: a deploy under load, with connection state recovery.
//!
//! `--clients` sockets, half on `--url` (node A) and half on `--url-b`
//! (node B), join `--room`; a publisher emits `publish` at `--rate` through
//! a node of its own choosing. Then `--restart-cmd` restarts node A (its
//! clients reconnect to B) and, `--gap-s` later, `--restart-cmd-b` restarts
//! node B (every client reconnects to the new A). A client reconnects like
//! socket.io-client with `connectionStateRecovery`: with the `pid` the
//! server gave it and the offset of the last event it got, to the other node
//! (the one restarting is going away), with backoff.
//!
//! Reported: messages lost, duplicated and reordered over all clients (the
//! goal is 0 of each), how many reconnects were recovered and how many were
//! not, and per restart the time from the restart command until every client
//! it disconnected was back.
//!
//! What counts as published: a `publish` the publisher saw acknowledged (it
//! follows each with an `echo` that has an ack; the server handles one
//! socket's events in order), or that any client received. A publish written
//! to a connection that died before its echo came back, and that no client
//! received, was never emitted: not a loss.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Opts;
use crate::client::{self, Backoff, ConnectOpts, Packet, Target};
use crate::stats::{self, CpuMark, Failures, ServerSampler};
use crate::{common_params, progress, Report};

enum Ev {
    Up { idx: usize, recovered: bool },
    Down { idx: usize },
    AttemptFailed { kind: &'static str },
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// `seq` of every `msg`, in arrival order.
    received: Vec<u64>,
    recovered: u64,
    not_recovered: u64,
}

impl Tally {
    /// Record a `msg` event frame; its offset (the last argument) is kept
    /// for the next CONNECT.
    fn take(&mut self, text: &str, offset: &mut Option<String>) {
        let Packet::Event { body, .. } = client::parse(text) else {
            return;
        };
        let Ok(args) = serde_json::from_str::<Vec<Value>>(body) else {
            return;
        };
        if args.first().and_then(Value::as_str) != Some("msg") {
            return;
        }
        if let Some(seq) = args.get(1).and_then(|s| s["seq"].as_u64()) {
            self.received.push(seq);
        }
        if let Some(Value::String(o)) = args.get(2) {
            *offset = Some(o.clone());
        }
    }
}

struct Client {
    idx: usize,
    targets: Arc<[Target; 2]>,
    copts: Arc<ConnectOpts>,
    room: Arc<str>,
    backoff: Backoff,
    events: mpsc::UnboundedSender<Ev>,
}

async fn client_task(c: Client, mut stop: watch::Receiver<bool>) -> Tally {
    let mut tally = Tally::default();
    let mut node = c.idx % 2;
    let (mut pid, mut sid, mut offset): (Option<String>, Option<String>, Option<String>) =
        (None, None, None);
    let mut attempt = 0u32;
    loop {
        if *stop.borrow() {
            return tally;
        }
        let auth = pid.as_ref().map(|p| {
            let mut a = json!({ "pid": p });
            if let Some(o) = &offset {
                a["offset"] = json!(o);
            }
            a.to_string()
        });
        match client::connect_with(&c.targets[node], &c.copts, auth.as_deref()).await {
            Ok((mut conn, connected)) => {
                let reply: Value = serde_json::from_str(&connected.reply).unwrap_or_default();
                let new_sid = reply["sid"].as_str().map(str::to_owned);
                let recovered = sid.is_some() && new_sid == sid;
                for text in &connected.before {
                    tally.take(text, &mut offset);
                }
                let joined = recovered || client::join(&mut conn.ws, &c.room, 1).await.is_ok();
                if joined {
                    attempt = 0;
                    if recovered {
                        tally.recovered += 1;
                    } else if sid.is_some() {
                        tally.not_recovered += 1;
                    }
                    pid = reply["pid"].as_str().map(str::to_owned);
                    sid = new_sid;
                    let _ = c.events.send(Ev::Up {
                        idx: c.idx,
                        recovered,
                    });
                    let ended = client::hold_with(&mut conn.ws, &mut stop, |text| {
                        tally.take(text, &mut offset)
                    })
                    .await;
                    if ended.is_none() {
                        return tally;
                    }
                    let _ = c.events.send(Ev::Down { idx: c.idx });
                } else {
                    let _ = c.events.send(Ev::AttemptFailed { kind: "join" });
                    attempt += 1;
                }
            }
            Err(e) => {
                let _ = c.events.send(Ev::AttemptFailed { kind: e.kind });
                attempt += 1;
            }
        }
        // The node it was on is going away (or refused): the other one.
        node = 1 - node;
        let wait = c.backoff.delay(attempt.saturating_sub(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return tally,
        }
    }
}

/// What the publisher did.
#[derive(Default)]
struct Published {
    sent: u64,
    /// Publishes whose following echo was acknowledged.
    confirmed: Vec<u64>,
    reconnects: u64,
}

/// Publish `seq` 0, 1, … at `rate` through node A, or B when A is away;
/// each publish is followed by an `echo` with ack id `seq + 1`.
async fn publisher(
    targets: Arc<[Target; 2]>,
    copts: Arc<ConnectOpts>,
    room: Arc<str>,
    rate: f64,
    pad: String,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let mut out = Published::default();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let room_json = serde_json::to_string(&*room).unwrap_or_default();
    let mut node = 0;
    let mut seq = 0u64;
    'connect: loop {
        if *stop.borrow() {
            return out;
        }
        let mut conn = match client::connect(&targets[node], &copts).await {
            Ok(c) => c,
            Err(_) => {
                node = 1 - node;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return out,
                m = conn.ws.next() => match m {
                    Some(Ok(Message::Text(t))) => match client::parse(&t) {
                        Packet::Ping => { let _ = conn.ws.send(Message::text("3")).await; }
                        Packet::Ack { id, .. } if id > 0 => out.confirmed.push(id - 1),
                        Packet::Close | Packet::Disconnect => break,
                        _ => {}
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {
                    let body = client::stamp(stats::now_ns(), seq, &pad);
                    let publish = client::event("publish", None, &format!("{room_json},{body}"));
                    let echo = client::event("echo", Some(seq + 1), &body);
                    if conn.ws.send(Message::text(publish)).await.is_err()
                        || conn.ws.send(Message::text(echo)).await.is_err()
                    {
                        break;
                    }
                    out.sent += 1;
                    seq += 1;
                }
            }
        }
        out.reconnects += 1;
        node = 1 - node;
        continue 'connect;
    }
}

/// Run `cmd` with `sh -c`, `RIPTIDE_BENCH_NODE=node` in its environment and
/// its stdout on our stderr (our stdout carries only the JSON line).
pub fn run_cmd(cmd: &str, node: &str) -> Value {
    let t = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("RIPTIDE_BENCH_NODE", node)
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status();
    json!({
        "exit_code": status.as_ref().ok().and_then(|s| s.code()),
        "error": status.as_ref().err().map(|e| e.to_string()),
        "ms": stats::round1(t.elapsed().as_secs_f64() * 1e3),
    })
}

/// Restart one node and wait until every client it disconnected is back.
async fn restart(
    name: &str,
    cmd: &str,
    ev_rx: &mut mpsc::UnboundedReceiver<Ev>,
    timeout: Duration,
    failures: &mut Failures,
) -> Value {
    progress!("rolling-restart: restarting node {name}");
    let t0 = Instant::now();
    let (cmd, node) = (cmd.to_owned(), name.to_owned());
    let mut task = Some(tokio::task::spawn_blocking(move || run_cmd(&cmd, &node)));
    let mut cmd_json = Value::Null;
    let mut down: HashSet<usize> = HashSet::new();
    let mut back: HashSet<usize> = HashSet::new();
    let (mut recovered, mut not_recovered) = (0u64, 0u64);
    let mut last_back: Option<Instant> = None;
    let mut quiet_since = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let settled = task.is_none()
            && down.len() == back.len()
            && quiet_since.elapsed() >= Duration::from_secs(1);
        if settled || t0.elapsed() >= timeout {
            break;
        }
        tokio::select! {
            r = async { task.as_mut().unwrap().await }, if task.is_some() => {
                cmd_json = r.unwrap_or_else(|e| json!({"error": e.to_string()}));
                task = None;
                quiet_since = Instant::now();
            }
            ev = ev_rx.recv() => match ev {
                Some(Ev::Down { idx }) => {
                    down.insert(idx);
                    back.remove(&idx);
                    quiet_since = Instant::now();
                }
                Some(Ev::Up { idx, recovered: r }) => {
                    if down.contains(&idx) && back.insert(idx) {
                        last_back = Some(Instant::now());
                        if r { recovered += 1 } else { not_recovered += 1 }
                    }
                    quiet_since = Instant::now();
                }
                Some(Ev::AttemptFailed { kind }) => failures.add(kind),
                None => break,
            },
            _ = tick.tick() => {}
        }
    }
    if let Some(t) = task.take() {
        cmd_json = t.await.unwrap_or_else(|e| json!({"error": e.to_string()}));
    }
    let all_back = down.len() == back.len();
    json!({
        "node": name,
        "command": cmd_json,
        "disconnected": down.len(),
        "back": back.len(),
        "all_back": all_back,
        "recovered": recovered,
        "not_recovered": not_recovered,
        "all_back_after_restart_ms": last_back
            .filter(|_| all_back)
            .map(|t| stats::round1(t.duration_since(t0).as_secs_f64() * 1e3)),
    })
}

/// Loss, duplicates and reordering of every client against what was published.
fn delivery(tallies: &[Tally], published: &Published) -> Value {
    let mut emitted: BTreeSet<u64> = published.confirmed.iter().copied().collect();
    for t in tallies {
        emitted.extend(t.received.iter().copied());
    }
    let (mut lost, mut duplicated, mut reordered, mut with_loss) = (0u64, 0u64, 0u64, 0u64);
    for t in tallies {
        let mut seen = HashSet::with_capacity(t.received.len());
        let mut max: Option<u64> = None;
        for &s in &t.received {
            if !seen.insert(s) {
                duplicated += 1;
            } else if max.is_some_and(|m| s < m) {
                reordered += 1;
            }
            max = max.max(Some(s));
        }
        let missing = emitted.iter().filter(|s| !seen.contains(s)).count() as u64;
        lost += missing;
        with_loss += u64::from(missing > 0);
    }
    json!({
        "published": emitted.len(),
        "publisher_sent": published.sent,
        "publisher_confirmed": published.confirmed.len(),
        "publisher_reconnects": published.reconnects,
        "expected_deliveries": emitted.len() as u64 * tallies.len() as u64,
        "delivered": tallies.iter().map(|t| t.received.len() as u64).sum::<u64>(),
        "loss": lost,
        "clients_with_loss": with_loss,
        "duplicates": duplicated,
        "out_of_order": reordered,
        "recovered": tallies.iter().map(|t| t.recovered).sum::<u64>(),
        "not_recovered": tallies.iter().map(|t| t.not_recovered).sum::<u64>(),
    })
}

pub async fn run(o: &Opts) -> Result<Report, String> {
    let url_b = o.url_b.as_deref().ok_or("--url-b is required")?;
    let targets = Arc::new([
        Target::resolve(&o.url, &o.path).await?,
        Target::resolve(url_b, &o.path).await?,
    ]);
    let copts = Arc::new(ConnectOpts {
        timeout: o.connect_timeout,
        deflate: o.deflate,
        rcvbuf: None,
    });
    let room: Arc<str> = o.room.as_str().into();
    let backoff = o.backoff();
    let n = o.clients;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    progress!("rolling-restart: connecting {n} clients to two nodes");
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|idx| {
            let c = Client {
                idx,
                targets: targets.clone(),
                copts: copts.clone(),
                room: room.clone(),
                backoff,
                events: ev_tx.clone(),
            };
            tokio::spawn(client_task(c, stop_rx.clone()))
        })
        .collect();
    drop(ev_tx);
    let mut initial_failures = Failures::default();
    let mut up = HashSet::new();
    let deadline = Instant::now() + o.timeout;
    while up.len() < n {
        match tokio::time::timeout_at(deadline.into(), ev_rx.recv()).await {
            Ok(Some(Ev::Up { idx, .. })) => {
                up.insert(idx);
            }
            Ok(Some(Ev::Down { idx })) => {
                up.remove(&idx);
                initial_failures.add("dropped");
            }
            Ok(Some(Ev::AttemptFailed { kind })) => initial_failures.add(kind),
            Ok(None) | Err(_) => break,
        }
    }
    if up.len() < n {
        let _ = stop_tx.send(true);
        return Err(format!(
            "only {} of {n} clients connected within {:?} (failures: {})",
            up.len(),
            o.timeout,
            initial_failures.json()
        ));
    }
    let initial_s = started.elapsed().as_secs_f64();
    progress!("all {n} clients connected and joined in {initial_s:.2} s");

    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);
    let phase0 = CpuMark::now();
    let (pub_stop_tx, pub_stop_rx) = watch::channel(false);
    let pad = client::pad(o.payload_bytes);
    let publisher = tokio::spawn(publisher(
        targets.clone(),
        copts.clone(),
        room.clone(),
        o.rate,
        pad,
        pub_stop_rx,
    ));
    let mut failures = Failures::default();
    let mut restarts = Vec::new();
    for (name, cmd) in [("a", &o.restart_cmd), ("b", &o.restart_cmd_b)] {
        tokio::time::sleep(o.gap).await;
        match cmd {
            Some(cmd) => {
                restarts.push(restart(name, cmd, &mut ev_rx, o.timeout, &mut failures).await)
            }
            None => restarts.push(json!({"node": name, "command": null})),
        }
    }
    tokio::time::sleep(o.gap).await;
    let _ = pub_stop_tx.send(true);
    let published = publisher.await.unwrap_or_default();
    // What was published reaches everyone within the drain.
    tokio::time::sleep(o.drain).await;
    let phase1 = CpuMark::now();
    let server = sampler.finish(false);
    let _ = stop_tx.send(true);
    let mut tallies = Vec::with_capacity(n);
    for t in tasks {
        tallies.push(t.await.unwrap_or_default());
    }
    while let Ok(ev) = ev_rx.try_recv() {
        if let Ev::AttemptFailed { kind } = ev {
            failures.add(kind);
        }
    }

    let mut params = common_params(o);
    params.insert("clients".into(), json!(n));
    params.insert("rate".into(), json!(o.rate));
    params.insert("room".into(), json!(o.room));
    params.insert("restart_cmd".into(), json!(o.restart_cmd));
    params.insert("restart_cmd_b".into(), json!(o.restart_cmd_b));
    params.insert("gap_s".into(), json!(o.gap.as_secs_f64()));
    params.insert("drain_ms".into(), json!(o.drain.as_millis() as u64));
    params.insert("timeout_s".into(), json!(o.timeout.as_secs_f64()));
    let mut body = Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert(
        "initial".into(),
        json!({
            "connected": n,
            "elapsed_s": stats::round3(initial_s),
            "failures": initial_failures.json(),
        }),
    );
    body.insert("restarts".into(), Value::Array(restarts));
    body.insert("delivery".into(), delivery(&tallies, &published));
    body.insert(
        "failed_attempts".into(),
        json!({"total": failures.total(), "kinds": failures.json()}),
    );
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}
