//! `server_stats`, every 2 s to every admin UI: this node's id, host,
//! uptime, Engine.IO clients, namespaces, and what happened since the last
//! one (connections, disconnections, packets and bytes), as the reference's
//! `emitStats` sends it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::wire;
use super::AdminState;
use crate::engineio::metrics::EngineTotals;

/// The reference's interval, fixed in 0.5.x; the UI marks a node unhealthy
/// after 10 s without one.
const INTERVAL: Duration = Duration::from_secs(2);

pub(super) async fn run(state: Arc<AdminState>) {
    let hostname = hostname();
    let mut last = EngineTotals::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(handle), Some(metrics)) = (state.handle(), state.metrics.get()) else {
            continue;
        };
        let now = metrics.engine().totals();
        let shared = &handle.shared;
        let server_id = if !state.settings.server_id.is_empty() {
            state.settings.server_id.clone()
        } else {
            match shared.cluster() {
                Some(cluster) => cluster.node().as_str().to_owned(),
                None => hostname.clone(),
            }
        };
        let mut namespaces: Vec<Value> = shared
            .namespace_sockets()
            .into_iter()
            .map(|(name, count)| json!({ "name": &*name, "socketsCount": count }))
            .collect();
        namespaces.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let stats = json!({
            "serverId": server_id,
            "hostname": hostname,
            "pid": std::process::id(),
            "uptime": state.started.elapsed().as_secs_f64(),
            "clientsCount": now.polling_sessions + now.websocket_sessions,
            "pollingClientsCount": now.polling_sessions,
            "aggregatedEvents": aggregated(&last, &now, SystemTime::now()),
            "namespaces": namespaces,
        });
        last = now;
        state.broadcast("server_stats", vec![stats]);
    }
}

/// What changed between two readings, as the reference's event buffer
/// drains it (one entry per type, stamped with the second it ends in).
fn aggregated(before: &EngineTotals, now: &EngineTotals, at: SystemTime) -> Vec<Value> {
    let timestamp = wire::millis(at) / 1000 * 1000;
    [
        ("rawConnection", now.opened.saturating_sub(before.opened)),
        ("rawDisconnection", now.closed.saturating_sub(before.closed)),
        (
            "packetsIn",
            now.packets_in.saturating_sub(before.packets_in),
        ),
        ("bytesIn", now.bytes_in.saturating_sub(before.bytes_in)),
        (
            "packetsOut",
            now.packets_out.saturating_sub(before.packets_out),
        ),
        ("bytesOut", now.bytes_out.saturating_sub(before.bytes_out)),
    ]
    .into_iter()
    .filter(|(_, count)| *count > 0)
    .map(|(kind, count)| json!({ "timestamp": timestamp, "type": kind, "count": count }))
    .collect()
}

/// The host's name, as `os.hostname()`: the kernel's, else `$HOSTNAME`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
