//! `echo`: `--sockets` sockets emit `echo` with an ack. `--rate 0` is a
//! closed loop (each socket sends its next request when the previous ack is
//! back); `--rate R` is open loop, R round trips/s in total, each socket on
//! its own schedule (staggered) whatever the acks do. Latency is timed from
//! the `t` the ack echoes back; an ack whose `seq` is not its own ack id is a
//! mismatch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::Opts;
use crate::client::{self, ConnectOpts, ConnectPhase, Packet, Ready, Target, Ws};
use crate::stats::{self, now_ns, CpuMark, Latency, ServerSampler};
use crate::{common_params, progress, Report};

#[derive(Default)]
struct EchoStats {
    connected: bool,
    sent: u64,
    acked: u64,
    mismatched: u64,
    last_ack: Option<Instant>,
    closed: Option<&'static str>,
}

/// When the load starts and stops, set once every socket is connected.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    stop_sending: Instant,
    give_up: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn echoer(
    idx: usize,
    n: usize,
    rate: f64,
    pad: Arc<str>,
    target: Arc<Target>,
    copts: Arc<ConnectOpts>,
    sem: Arc<Semaphore>,
    latency: Latency,
    ready: mpsc::UnboundedSender<Ready>,
    mut go: watch::Receiver<Option<Window>>,
) -> EchoStats {
    let mut st = EchoStats::default();
    let permit = sem.acquire_owned().await;
    let t = Instant::now();
    let mut conn = match client::connect(&target, &copts).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.kind));
            return st;
        }
    };
    drop(permit);
    st.connected = true;
    let _ = ready.send(Ok(t.elapsed()));
    drop(ready);
    let ws = &mut conn.ws;
    // Wait for the start, answering pings.
    let w = loop {
        if let Some(w) = *go.borrow_and_update() {
            break w;
        }
        tokio::select! {
            r = go.changed() => if r.is_err() { return st },
            m = ws.next() => if let Err(k) = on_frame(ws, m, &mut st, &latency, idx).await {
                st.closed = Some(k);
                return st;
            },
        }
    };
    let result = if rate > 0.0 {
        open_loop(ws, idx, n, rate, &pad, w, &mut st, &latency).await
    } else {
        closed_loop(ws, idx, &pad, w, &mut st, &latency).await
    };
    if let Err(k) = result {
        st.closed = Some(k);
    }
    st
}

fn request(seq: u64, pad: &str) -> Message {
    Message::text(client::event(
        "echo",
        Some(seq),
        &client::stamp(now_ns(), seq, pad),
    ))
}

/// Handle one incoming frame; `Err(kind)` when the connection ended.
async fn on_frame(
    ws: &mut Ws,
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    st: &mut EchoStats,
    latency: &Latency,
    idx: usize,
) -> Result<(), &'static str> {
    let rx_ns = now_ns();
    match &m {
        Some(Ok(Message::Text(t))) => match client::parse(t) {
            Packet::Ack { id, body } => {
                match client::ack_stamp(body) {
                    Some(s) if s.seq == id => {
                        st.acked += 1;
                        st.last_ack = Some(Instant::now());
                        latency.record(idx, rx_ns.saturating_sub(s.t));
                    }
                    _ => st.mismatched += 1,
                }
                Ok(())
            }
            Packet::Ping => ws
                .send(Message::text("3"))
                .await
                .map_err(|_| "write_failed"),
            Packet::Close => Err("eio_close"),
            Packet::Disconnect => Err("sio_disconnect"),
            _ => Ok(()),
        },
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(client::end_kind(&m)),
        Some(Ok(_)) => Ok(()),
    }
}

async fn closed_loop(
    ws: &mut Ws,
    idx: usize,
    pad: &str,
    w: Window,
    st: &mut EchoStats,
    latency: &Latency,
) -> Result<(), &'static str> {
    tokio::time::sleep_until(w.start.into()).await;
    while Instant::now() < w.stop_sending {
        ws.send(request(st.sent, pad))
            .await
            .map_err(|_| "write_failed")?;
        st.sent += 1;
        let answered = st.acked + st.mismatched;
        while st.acked + st.mismatched == answered {
            match tokio::time::timeout_at(w.give_up.into(), ws.next()).await {
                Ok(m) => on_frame(ws, m, st, latency, idx).await?,
                Err(_) => return Ok(()),
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    ws: &mut Ws,
    idx: usize,
    n: usize,
    rate: f64,
    pad: &str,
    w: Window,
    st: &mut EchoStats,
    latency: &Latency,
) -> Result<(), &'static str> {
    // Socket idx sends request k at start + (idx + k·n) / rate.
    let due = |k: u64| w.start + Duration::from_secs_f64((idx as f64 + k as f64 * n as f64) / rate);
    loop {
        let next = due(st.sent);
        let sending = next < w.stop_sending;
        if !sending && st.acked + st.mismatched >= st.sent {
            return Ok(());
        }
        let wake = if sending { next } else { w.give_up };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {
                if !sending {
                    return Ok(());
                }
                ws.send(request(st.sent, pad)).await.map_err(|_| "write_failed")?;
                st.sent += 1;
            }
            m = ws.next() => on_frame(ws, m, st, latency, idx).await?,
        }
    }
}

pub async fn run(o: &Opts) -> Result<Report, String> {
    let target = Arc::new(Target::resolve(&o.url, &o.path).await?);
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let copts = Arc::new(ConnectOpts {
        timeout: o.connect_timeout,
        deflate: o.deflate,
        rcvbuf: None,
    });
    let latency = Latency::new();
    let pad: Arc<str> = client::pad(o.payload_bytes).into();
    let (go_tx, go_rx) = watch::channel(None);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Ready>();
    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);
    progress!("echo: connecting {} sockets", o.sockets);
    let started = Instant::now();
    let tasks: Vec<_> = (0..o.sockets)
        .map(|idx| {
            tokio::spawn(echoer(
                idx,
                o.sockets,
                o.rate,
                pad.clone(),
                target.clone(),
                copts.clone(),
                sem.clone(),
                latency.clone(),
                ready_tx.clone(),
                go_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let connect = ConnectPhase::collect(&mut ready_rx, o.sockets, "echo sockets", started).await;
    if connect.ok == 0 {
        return Err("no echo socket could connect".into());
    }
    let start = Instant::now() + Duration::from_millis(50);
    let w = Window {
        start,
        stop_sending: start + o.duration,
        give_up: start + o.duration + o.drain,
    };
    progress!(
        "echo: {} sockets, {} for {:?}",
        connect.ok,
        if o.rate > 0.0 {
            format!("{} round trips/s", o.rate)
        } else {
            "closed loop".into()
        },
        o.duration
    );
    let phase0 = CpuMark::now();
    let _ = go_tx.send(Some(w));
    let mut total = EchoStats::default();
    let mut closed = stats::Failures::default();
    let mut last_ack = start;
    for t in tasks {
        let st = t.await.map_err(|e| e.to_string())?;
        if !st.connected {
            continue;
        }
        total.sent += st.sent;
        total.acked += st.acked;
        total.mismatched += st.mismatched;
        if let Some(a) = st.last_ack {
            last_ack = last_ack.max(a);
        }
        if let Some(k) = st.closed {
            closed.add(k);
        }
    }
    let phase1 = CpuMark::now();
    let server = sampler.finish(false);
    let window = last_ack.saturating_duration_since(start).max(o.duration);
    let secs = window.as_secs_f64().max(1e-9);
    let lat = latency.merged();

    let mut params = common_params(o);
    params.insert("sockets".into(), json!(o.sockets));
    params.insert("rate".into(), json!(o.rate));
    params.insert("duration_s".into(), json!(o.duration.as_secs_f64()));
    params.insert("payload_bytes".into(), json!(o.payload_bytes));
    params.insert("drain_ms".into(), json!(o.drain.as_millis() as u64));
    let mut body = Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert("connect".into(), connect.json());
    body.insert(
        "echo".into(),
        json!({
            "mode": if o.rate > 0.0 { "open_loop" } else { "closed_loop" },
            "sent": total.sent,
            "acked": total.acked,
            "unanswered": total.sent.saturating_sub(total.acked + total.mismatched),
            "mismatched": total.mismatched,
            "window_s": stats::round3(secs),
            "round_trips_per_s": stats::round1(total.acked as f64 / secs),
            "sockets_closed": closed.total(),
            "sockets_closed_kinds": closed.json(),
        }),
    );
    body.insert("latency_us".into(), stats::latency_json(&lat));
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}
