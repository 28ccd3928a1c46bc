//! `fanout`, `cross-node` and `slow`: `--receivers` sockets join one room
//! (with ack), one publisher emits `publish` to it; every receiver checks the
//! `seq` of each `msg` (loss, duplicates, order) and times it from its `t`.
//!
//! - cross-node: the receivers connect to `--url-b`, the publisher to `--url`.
//! - slow: one more receiver joins, then never reads its socket again (its
//!   SO_RCVBUF set small before connecting, so its TCP window closes fast).
//!   The server side of its connection is watched in /proc/net/tcp (same
//!   machine): the first time it leaves ESTABLISHED is when the server closed
//!   it, even while the FIN is stuck behind the closed window. At the end the
//!   generator reads what is left on that socket to see how it ended.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{Opts, Scenario};
use crate::client::{self, ConnectOpts, ConnectPhase, Packet, Ready, Target, Ws};
use crate::stats::{self, now_ns, CpuMark, Latency, ServerSampler};
use crate::{common_params, progress, Report};

/// Loss, duplicates and order of one receiver's sequence numbers: exact, in
/// memory proportional to the gaps (none when delivery is in order).
#[derive(Default, Debug)]
pub struct SeqTracker {
    next: u64,
    holes: BTreeMap<u64, u64>,
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl SeqTracker {
    /// Returns true when `seq` is new.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq >= self.next {
            if seq > self.next {
                self.holes.insert(self.next, seq);
            }
            self.next = seq + 1;
            self.received += 1;
            return true;
        }
        if let Some((&start, &end)) = self.holes.range(..=seq).next_back() {
            if seq < end {
                self.holes.remove(&start);
                if start < seq {
                    self.holes.insert(start, seq);
                }
                if seq + 1 < end {
                    self.holes.insert(seq + 1, end);
                }
                self.out_of_order += 1;
                self.received += 1;
                return true;
            }
        }
        self.duplicates += 1;
        false
    }

    /// Whether `seq` was received.
    pub fn contains(&self, seq: u64) -> bool {
        if seq >= self.next {
            return false;
        }
        match self.holes.range(..=seq).next_back() {
            Some((_, &end)) => seq >= end,
            None => true,
        }
    }
}

#[derive(Default)]
struct RecvStats {
    joined: bool,
    seq: SeqTracker,
    last_rx_ns: u64,
    closed: Option<&'static str>,
    /// Silences between two deliveries longer than [`GAP_NS`]: (start, end).
    gaps: Vec<(u64, u64)>,
}

/// A silence this long between two deliveries counts as a gap (the
/// publisher sends at least every 10 ms at the rates an outage runs at).
const GAP_NS: u64 = 100_000_000;

struct Shared {
    delivered: AtomicU64,
    latency: Latency,
}

#[allow(clippy::too_many_arguments)]
async fn receiver(
    idx: usize,
    target: Arc<Target>,
    copts: Arc<ConnectOpts>,
    sem: Arc<Semaphore>,
    room: Arc<str>,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<Ready>,
    mut stop: watch::Receiver<bool>,
) -> RecvStats {
    let mut st = RecvStats::default();
    let permit = sem.acquire_owned().await;
    let t = Instant::now();
    let mut conn = match client::connect(&target, &copts).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.kind));
            return st;
        }
    };
    match tokio::time::timeout(copts.timeout, client::join(&mut conn.ws, &room, 0)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            let _ = ready.send(Err("join"));
            return st;
        }
        Err(_) => {
            let _ = ready.send(Err("join_timeout"));
            return st;
        }
    }
    drop(permit);
    st.joined = true;
    let _ = ready.send(Ok(t.elapsed()));
    drop(ready);
    let ws = &mut conn.ws;
    // The stop signal is awaited once beside the whole receive loop, not
    // raced against every message: a `changed()` future per delivery was a
    // registration and a drop on the generator's hot path.
    let stopped = async {
        while stop.changed().await.is_ok() {
            if *stop.borrow() {
                return;
            }
        }
    };
    let received = async {
        loop {
            let m = ws.next().await;
            let rx_ns = now_ns();
            match &m {
                Some(Ok(Message::Text(text))) => match client::parse(text) {
                    Packet::Event { ack: None, body } => {
                        if let Some(s) = client::msg_stamp(body) {
                            if st.last_rx_ns > 0 && rx_ns - st.last_rx_ns > GAP_NS {
                                st.gaps.push((st.last_rx_ns, rx_ns));
                            }
                            st.last_rx_ns = rx_ns;
                            if st.seq.accept(s.seq) {
                                shared.latency.record(idx, rx_ns.saturating_sub(s.t));
                                shared.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Packet::Ping => match ws.send(Message::text("3")).await {
                        Ok(()) => {}
                        Err(_) => {
                            st.closed = Some("write_failed");
                            return;
                        }
                    },
                    Packet::Close => {
                        st.closed = Some("eio_close");
                        return;
                    }
                    Packet::Disconnect => {
                        st.closed = Some("sio_disconnect");
                        return;
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    st.closed = Some(client::end_kind(&m));
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::select! {
        biased;
        () = stopped => {}
        () = received => {}
    }
    st
}

struct PubStats {
    sent: u64,
    elapsed: Duration,
    max_lag: Duration,
    error: Option<String>,
}

/// Publish at `rate` msg/s (0: as fast as the connection takes them) for
/// `duration` or `messages`. `t` is stamped when each message is built.
async fn publish(ws: &mut Ws, o: &Opts) -> PubStats {
    let pad = client::pad(o.payload_bytes);
    let room = serde_json::to_string(&o.room).unwrap_or_default();
    let start = Instant::now();
    let deadline = start + o.duration;
    let mut st = PubStats {
        sent: 0,
        elapsed: Duration::ZERO,
        max_lag: Duration::ZERO,
        error: None,
    };
    let result: Result<(), String> = async {
        loop {
            match o.messages {
                Some(m) if st.sent >= m => break,
                None if Instant::now() >= deadline => break,
                _ => {}
            }
            if o.rate > 0.0 {
                let due = start + Duration::from_secs_f64(st.sent as f64 / o.rate);
                let now = Instant::now();
                if due > now {
                    ws.flush().await.map_err(|e| e.to_string())?;
                    let sleep = tokio::time::sleep_until(due.into());
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            m = ws.next() => pub_incoming(ws, m).await?,
                        }
                    }
                } else {
                    st.max_lag = st.max_lag.max(now - due);
                }
            } else if st.sent.is_multiple_of(64) {
                ws.flush().await.map_err(|e| e.to_string())?;
                while let Some(m) = ws.next().now_or_never() {
                    pub_incoming(ws, m).await?;
                }
            }
            let body = format!("{room},{}", client::stamp(now_ns(), st.sent, &pad));
            ws.feed(Message::text(client::event("publish", None, &body)))
                .await
                .map_err(|e| e.to_string())?;
            st.sent += 1;
        }
        ws.flush().await.map_err(|e| e.to_string())
    }
    .await;
    st.elapsed = start.elapsed();
    st.error = result.err();
    st
}

async fn pub_incoming(
    ws: &mut Ws,
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<(), String> {
    match &m {
        Some(Ok(Message::Text(t))) => match client::parse(t) {
            Packet::Ping => ws.feed(Message::text("3")).await.map_err(|e| e.to_string()),
            Packet::Close | Packet::Disconnect => Err("publisher closed by the server".into()),
            _ => Ok(()),
        },
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(format!(
            "publisher connection ended: {}",
            client::end_kind(&m)
        )),
        Some(Ok(_)) => Ok(()),
    }
}

/// TCP state names of /proc/net/tcp (include/net/tcp_states.h).
fn tcp_state(n: u8) -> &'static str {
    match n {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// The server's end of the connection `client → server`, from /proc/net/tcp:
/// (state, bytes in its send queue). `None`: gone (or not IPv4).
fn server_side(client: SocketAddr, server: SocketAddr) -> Option<(u8, u64)> {
    let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
        return None;
    };
    let hex = |a: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (local, remote) = (hex(s), hex(c));
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 4 && f[1] == local && f[2] == remote {
            let state = u8::from_str_radix(f[3], 16).ok()?;
            let tx = u64::from_str_radix(f[4].split(':').next()?, 16).ok()?;
            Some((state, tx))
        } else {
            None
        }
    })
}

/// Our own end: TCP state and bytes waiting in our receive queue.
fn client_side(fd: std::os::fd::RawFd) -> (u8, u64) {
    // SAFETY: getsockopt/ioctl on a socket fd we own (the connection is held
    // by the calling task), into locals of the right size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let state = if libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut libc::c_void,
            &mut len,
        ) == 0
        {
            info.tcpi_state
        } else {
            0
        };
        let mut queued: libc::c_int = 0;
        libc::ioctl(fd, libc::FIONREAD, &mut queued);
        (state, queued.max(0) as u64)
    }
}

struct SlowOutcome {
    json: Value,
    /// When the server side was first seen leaving ESTABLISHED.
    closed_at: Option<Instant>,
}

/// The receiver that stops reading. Joins, reports ready, then only watches
/// both ends of its connection until `stop`; then reads what is left.
async fn slow_receiver(
    target: Arc<Target>,
    copts: ConnectOpts,
    room: Arc<str>,
    ready: oneshot::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> Option<SlowOutcome> {
    let mut conn = match client::connect(&target, &copts).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return None;
        }
    };
    if let Err(e) = client::join(&mut conn.ws, &room, 0).await {
        let _ = ready.send(Err(e.to_string()));
        return None;
    }
    let _ = ready.send(Ok(()));
    let stopped_reading = Instant::now();
    let mut closed_at: Option<(Instant, &'static str)> = None;
    let mut server_tx_max = 0u64;
    let mut client_rx_max = 0u64;
    let mut client_state_changed: Option<(Instant, &'static str)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            _ = tick.tick() => {
                let server = conn.local.and_then(|l| server_side(l, target.addr));
                match server {
                    Some((state, tx)) => {
                        server_tx_max = server_tx_max.max(tx);
                        if state != 1 && closed_at.is_none() {
                            closed_at = Some((Instant::now(), tcp_state(state)));
                        }
                    }
                    None => {
                        if closed_at.is_none() && conn.local.is_some() && target.addr.is_ipv4() {
                            closed_at = Some((Instant::now(), "GONE"));
                        }
                    }
                }
                let (cstate, queued) = client_side(conn.fd);
                client_rx_max = client_rx_max.max(queued);
                if cstate != 1 && client_state_changed.is_none() {
                    client_state_changed = Some((Instant::now(), tcp_state(cstate)));
                }
            }
        }
    }
    // Read what is left, for at most 10 s, to see how the connection ends.
    let mut seq = SeqTracker::default();
    let (mut frames, mut bytes) = (0u64, 0u64);
    let mut end: Option<&'static str> = None;
    let drain_until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = drain_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left.min(Duration::from_secs(2)), conn.ws.next()).await {
            Err(_) => break,
            Ok(m) => match &m {
                Some(Ok(Message::Text(t))) => {
                    frames += 1;
                    bytes += t.len() as u64;
                    match client::parse(t) {
                        Packet::Event { ack: None, body } => {
                            if let Some(s) = client::msg_stamp(body) {
                                seq.accept(s.seq);
                            }
                        }
                        Packet::Close => {
                            end = Some("eio_close");
                            break;
                        }
                        Packet::Disconnect => {
                            end = Some("sio_disconnect");
                            break;
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    end = Some(client::end_kind(&m));
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
        if Instant::now() >= drain_until {
            break;
        }
    }
    if end.is_none() && conn.ws.send(Message::text("3")).await.is_err() {
        end = Some("write_failed");
    }
    let ms = |t: Instant| stats::round1(t.duration_since(stopped_reading).as_secs_f64() * 1e3);
    let json = json!({
        "rcvbuf": copts.rcvbuf,
        "ping_interval_ms": conn.ping_interval_ms,
        "ping_timeout_ms": conn.ping_timeout_ms,
        "server_closed": closed_at.is_some() || end.is_some(),
        "server_side_closed_after_ms": closed_at.map(|(t, _)| ms(t)),
        "server_side_state": closed_at.map(|(_, s)| s),
        "server_send_queue_max_bytes": server_tx_max,
        "client_recv_queue_max_bytes": client_rx_max,
        "client_side_state_change": client_state_changed.map(|(t, s)| json!({"after_ms": ms(t), "state": s})),
        "end_read": {
            "how": end.unwrap_or("still_open"),
            "frames": frames,
            "bytes": bytes,
            "msgs": seq.received,
            "msg_gaps": seq.holes.len(),
        },
    });
    Some(SlowOutcome {
        json,
        closed_at: closed_at.map(|(t, _)| t),
    })
}

pub async fn run(o: &Opts) -> Result<Report, String> {
    let pub_target = Arc::new(Target::resolve(&o.url, &o.path).await?);
    let recv_target = match (o.scenario, &o.url_b) {
        (Scenario::CrossNode, Some(b)) => Arc::new(Target::resolve(b, &o.path).await?),
        _ => pub_target.clone(),
    };
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let copts = Arc::new(ConnectOpts {
        timeout: o.connect_timeout,
        deflate: o.deflate,
        rcvbuf: None,
    });
    let room: Arc<str> = o.room.as_str().into();
    let shared = Arc::new(Shared {
        delivered: AtomicU64::new(0),
        latency: Latency::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = ServerSampler::start(o.server_pids.clone(), o.sample);

    progress!(
        "{}: connecting {} receivers to {}",
        o.scenario.name(),
        o.receivers,
        recv_target.ws_url
    );
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Ready>();
    let started = Instant::now();
    let receivers: Vec<_> = (0..o.receivers)
        .map(|idx| {
            tokio::spawn(receiver(
                idx,
                recv_target.clone(),
                copts.clone(),
                sem.clone(),
                room.clone(),
                shared.clone(),
                ready_tx.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let connect = ConnectPhase::collect(&mut ready_rx, o.receivers, "receivers", started).await;
    progress!(
        "receivers: {} joined, {} failed in {:.2} s",
        connect.ok,
        connect.failures.total(),
        connect.elapsed.as_secs_f64()
    );
    if connect.ok == 0 {
        return Err("no receiver could connect and join".into());
    }

    let slow = if o.scenario == Scenario::Slow {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(slow_receiver(
            recv_target.clone(),
            ConnectOpts {
                timeout: o.connect_timeout,
                deflate: o.deflate,
                rcvbuf: Some(o.slow_rcvbuf),
            },
            room.clone(),
            tx,
            stop_rx.clone(),
        ));
        match rx.await {
            Ok(Ok(())) => progress!("slow receiver joined; it reads nothing from now on"),
            Ok(Err(e)) => return Err(format!("slow receiver: {e}")),
            Err(_) => return Err("slow receiver task failed".into()),
        }
        Some(task)
    } else {
        None
    };

    let mut publisher = client::connect(&pub_target, &copts)
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    progress!(
        "publishing to room {:?} at {} for {}",
        o.room,
        if o.rate > 0.0 {
            format!("{} msg/s", o.rate)
        } else {
            "full speed".into()
        },
        match o.messages {
            Some(m) => format!("{m} messages"),
            None => format!("{:?}", o.duration),
        }
    );
    let phase0 = CpuMark::now();
    let server_cpu0 = stats::servers_cpu_s(&o.server_pids);
    let pub_start = Instant::now();
    let pub_start_ns = now_ns();
    let o2 = o.clone();
    let pub_task = tokio::spawn(async move {
        let st = publish(&mut publisher.ws, &o2).await;
        (st, publisher)
    });
    let outage = o.outage_cmd.clone().map(|cmd| {
        let at = o.outage_at.unwrap_or(o.duration / 3);
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            progress!("outage: running {cmd}");
            let start_ns = now_ns();
            let result =
                tokio::task::spawn_blocking(move || crate::rolling::run_cmd(&cmd, "broker"))
                    .await
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
            (start_ns, now_ns(), result)
        })
    });
    let (pub_stats, publisher) = pub_task.await.map_err(|e| e.to_string())?;
    let outage = match outage {
        Some(t) => Some(t.await.map_err(|e| e.to_string())?),
        None => None,
    };
    if let Some(e) = &pub_stats.error {
        progress!("publisher error: {e}");
    }
    let expected = pub_stats.sent * connect.ok as u64;
    progress!(
        "sent {} in {:.2} s; waiting up to {:?} for {} deliveries",
        pub_stats.sent,
        pub_stats.elapsed.as_secs_f64(),
        o.drain,
        expected
    );
    let drain_deadline = Instant::now() + o.drain;
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let phase1 = CpuMark::now();
    let server_cpu1 = stats::servers_cpu_s(&o.server_pids);
    let _ = stop_tx.send(true);
    drop(publisher);

    let mut seq = SeqTracker::default();
    let mut closed = stats::Failures::default();
    let mut last_rx_ns = pub_start_ns;
    let mut per_receiver_loss_max = 0u64;
    // Per receiver: its longest gap, and when delivery came back after the
    // outage command returned (the end of the gap it was in then, if any).
    let (mut max_gap_ns, mut resumed_after_ns, mut gap_receivers) = (0u64, 0u64, 0usize);
    for r in receivers {
        let st = r.await.map_err(|e| e.to_string())?;
        if !st.joined {
            continue;
        }
        if let Some((_, back_ns, _)) = &outage {
            max_gap_ns = max_gap_ns.max(st.gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0));
            if let Some((_, end)) = st.gaps.iter().find(|(a, b)| a <= back_ns && b > back_ns) {
                resumed_after_ns = resumed_after_ns.max(end - back_ns);
                gap_receivers += 1;
            }
        }
        seq.received += st.seq.received;
        seq.duplicates += st.seq.duplicates;
        seq.out_of_order += st.seq.out_of_order;
        per_receiver_loss_max =
            per_receiver_loss_max.max(pub_stats.sent.saturating_sub(st.seq.received));
        last_rx_ns = last_rx_ns.max(st.last_rx_ns);
        if let Some(k) = st.closed {
            closed.add(k);
        }
    }
    let window = Duration::from_nanos(last_rx_ns.saturating_sub(pub_start_ns));
    let slow_json = match slow {
        Some(task) => match task.await {
            Ok(Some(s)) => {
                let mut j = s.json;
                j["server_closed_after_publish_start_ms"] = json!(s.closed_at.map(|t| {
                    stats::round1(t.saturating_duration_since(pub_start).as_secs_f64() * 1e3)
                }));
                Some(j)
            }
            _ => Some(json!({"error": "slow receiver failed"})),
        },
        None => None,
    };
    let server = sampler.finish(o.scenario == Scenario::Slow);
    let latency = shared.latency.merged();

    let mut params = common_params(o);
    params.insert("receivers".into(), json!(o.receivers));
    params.insert("rate".into(), json!(o.rate));
    params.insert("duration_s".into(), json!(o.duration.as_secs_f64()));
    params.insert("messages".into(), json!(o.messages));
    params.insert("payload_bytes".into(), json!(o.payload_bytes));
    params.insert("drain_ms".into(), json!(o.drain.as_millis() as u64));
    params.insert("room".into(), json!(o.room));
    if o.scenario == Scenario::Slow {
        params.insert("slow_rcvbuf".into(), json!(o.slow_rcvbuf));
    }
    let secs = window.as_secs_f64().max(1e-9);
    let mut body = Map::new();
    body.insert("params".into(), Value::Object(params));
    body.insert("connect".into(), connect.json());
    body.insert(
        "publish".into(),
        json!({
            "sent": pub_stats.sent,
            "elapsed_s": stats::round3(pub_stats.elapsed.as_secs_f64()),
            "rate_achieved": stats::round1(pub_stats.sent as f64 / pub_stats.elapsed.as_secs_f64().max(1e-9)),
            "max_lag_ms": stats::round1(pub_stats.max_lag.as_secs_f64() * 1e3),
            "error": pub_stats.error,
        }),
    );
    body.insert(
        "delivery".into(),
        json!({
            "receivers": connect.ok,
            "expected": expected,
            "received": seq.received,
            "loss": expected.saturating_sub(seq.received),
            "loss_max_per_receiver": per_receiver_loss_max,
            "duplicates": seq.duplicates,
            "out_of_order": seq.out_of_order,
            "window_s": stats::round3(secs),
            "deliveries_per_s": stats::round1(seq.received as f64 / secs),
            "receivers_closed": closed.total(),
            "receivers_closed_kinds": closed.json(),
        }),
    );
    body.insert("latency_us".into(), stats::latency_json(&latency));
    // The servers' CPU (every node's, from /proc) from the first publish to
    // the last delivery (or the drain's end), per million deliveries: the
    // cost of the work, whatever the machine's speed that run.
    let phase_cpu = server_cpu0.zip(server_cpu1).map(|(a, b)| (b - a).max(0.0));
    body.insert(
        "server_phase".into(),
        json!({
            "cpu_s": phase_cpu.map(stats::round3),
            "cpu_s_per_million_deliveries": phase_cpu
                .filter(|_| seq.received > 0)
                .map(|c| stats::round3(c / seq.received as f64 * 1e6)),
        }),
    );
    if let Some((start_ns, back_ns, command)) = outage {
        let ms = |ns: u64| stats::round1(ns as f64 / 1e6);
        body.insert(
            "outage".into(),
            json!({
                "command": command,
                "started_after_publish_ms": ms(start_ns.saturating_sub(pub_start_ns)),
                "broker_back_after_publish_ms": ms(back_ns.saturating_sub(pub_start_ns)),
                "outage_ms": ms(back_ns.saturating_sub(start_ns)),
                "max_gap_ms": ms(max_gap_ns),
                "receivers_waiting_when_back": gap_receivers,
                "resumed_after_broker_back_ms": ms(resumed_after_ns),
            }),
        );
    }
    if let Some(s) = slow_json {
        body.insert("slow".into(), s);
    }
    body.insert("server".into(), server);
    Ok(Report {
        body,
        phase: (phase0, phase1),
    })
}

#[cfg(test)]
mod tests {
    use super::SeqTracker;

    #[test]
    fn tracks_loss_duplicates_and_order() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 2, 2, 5, 3, 6] {
            t.accept(s);
        }
        assert_eq!(t.received, 6); // 0 1 3 2 5 6
        assert_eq!(t.out_of_order, 1); // 2
        assert_eq!(t.duplicates, 2); // 2, 3
        assert_eq!(t.holes.len(), 1); // 4
        for s in [0, 1, 2, 3, 5, 6] {
            assert!(t.contains(s), "{s}");
        }
        for s in [4, 7, 100] {
            assert!(!t.contains(s), "{s}");
        }
    }
}
