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
use crate::node::metrics::CLOSE_REASONS;

/// The reference's interval, fixed in 0.5.x; the UI marks a node unhealthy
/// after 10 s without one.
const INTERVAL: Duration = Duration::from_secs(2);

pub(super) async fn run(state: Arc<AdminState>) {
    let hostname = hostname();
    let mut last = Reading::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(handle), Some(metrics)) = (state.handle(), state.metrics.get()) else {
            continue;
        };
        // The reasons first: the engine counts a close before its reason is
        // counted, so its total is never behind them.
        let closes = metrics.engine_closes();
        let now = Reading {
            engine: metrics.engine().totals(),
            closes,
        };
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
            "clientsCount": now.engine.polling_sessions + now.engine.websocket_sessions,
            "pollingClientsCount": now.engine.polling_sessions,
            "aggregatedEvents": aggregated(&last, &now, SystemTime::now()),
            "namespaces": namespaces,
        });
        last = now;
        state.broadcast("server_stats", vec![stats]);
    }
}

/// The figures `server_stats` reports the changes of.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    engine: EngineTotals,
    /// Sessions closed, by reason ([`CLOSE_REASONS`] order).
    closes: [u64; CLOSE_REASONS.len()],
}

/// What changed between two readings, as the reference's event buffer
/// drains it: one entry per type (and, for `rawDisconnection`, per
/// subtype: the close reason as the reference's engine names it), stamped
/// with the second it ends in.
fn aggregated(before: &Reading, now: &Reading, at: SystemTime) -> Vec<Value> {
    let timestamp = wire::millis(at) / 1000 * 1000;
    let entry = |kind: &str, sub: Option<&str>, count: u64| match sub {
        Some(sub) => {
            json!({ "timestamp": timestamp, "type": kind, "subType": sub, "count": count })
        }
        None => json!({ "timestamp": timestamp, "type": kind, "count": count }),
    };
    // The engine's count of closes is the total; the reasons split it. A
    // close the engine counted whose reason was not in yet (the two are
    // counted a few instructions apart) goes without a subtype.
    let mut closed = now.engine.closed.saturating_sub(before.engine.closed);
    let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
    for (i, reason) in CLOSE_REASONS.iter().enumerate() {
        let n = now.closes[i].saturating_sub(before.closes[i]).min(closed);
        if n == 0 {
            continue;
        }
        closed -= n;
        let sub = wire::engine_close_reason(*reason);
        match by_reason.iter_mut().find(|(s, _)| *s == sub) {
            Some((_, count)) => *count += n,
            None => by_reason.push((sub, n)),
        }
    }
    let (before, now) = (&before.engine, &now.engine);
    let mut out = vec![entry(
        "rawConnection",
        None,
        now.opened.saturating_sub(before.opened),
    )];
    out.extend(
        by_reason
            .into_iter()
            .map(|(sub, n)| entry("rawDisconnection", Some(sub), n)),
    );
    out.push(entry("rawDisconnection", None, closed));
    out.extend(
        [
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
        .map(|(kind, count)| entry(kind, None, count)),
    );
    out.retain(|e| e["count"].as_u64() != Some(0));
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::CloseReason;

    #[test]
    fn closes_are_split_by_the_references_reasons() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(5_500);
        let before = Reading::default();
        let mut now = Reading::default();
        now.engine.opened = 4;
        now.engine.closed = 4;
        let index = |r: CloseReason| CLOSE_REASONS.iter().position(|x| *x == r).unwrap();
        now.closes[index(CloseReason::TransportClose)] = 1;
        // Riptide's own reasons are the server closing: "forced close".
        now.closes[index(CloseReason::SlowConsumer)] = 1;
        now.closes[index(CloseReason::ForcedClose)] = 1;
        // The fourth close's reason is not counted yet.
        assert_eq!(
            aggregated(&before, &now, at),
            vec![
                json!({ "timestamp": 5000, "type": "rawConnection", "count": 4 }),
                json!({ "timestamp": 5000, "type": "rawDisconnection", "subType": "transport close", "count": 1 }),
                json!({ "timestamp": 5000, "type": "rawDisconnection", "subType": "forced close", "count": 2 }),
                json!({ "timestamp": 5000, "type": "rawDisconnection", "count": 1 }),
            ]
        );
        assert_eq!(aggregated(&now, &now, at), Vec::<Value>::new());
    }
}
