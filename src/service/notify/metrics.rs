//! Service mode's figures, in the node's registry (served by `/metrics`).
//!
//! | series | meaning |
//! | --- | --- |
//! | `riptide_auth_refusals_total{reason}` | CONNECTs and refreshes refused: `missing_token`, `invalid_token`, `token_expired`, `token_revoked`, `unavailable` (revocations not loaded yet) |
//! | `riptide_auth_expired_total` | sockets disconnected at their token's `exp` |
//! | `riptide_auth_refreshes_total` | tokens refreshed by `auth:refresh` |
//! | `riptide_service_events_total{event,outcome}` | client events (`subscribe`, `publish`, …) by outcome (`ok`, `refused`, `invalid`) |
//! | `riptide_api_requests_total{command,status}` | server API requests by command and HTTP status (bus requests too) |
//! | `riptide_history_kept_total` | messages kept for offline users |
//! | `riptide_history_delivered_total` | kept messages delivered at a connect |
//! | `riptide_history_errors_total{op}` | store operations that failed (`keep`, `read`, `forget`, `revoke`) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventOutcome {
    event: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    command: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

/// Handles on service mode's series; cloning is cheap.
#[derive(Clone, Debug)]
pub struct ServiceMetrics {
    refusals: Family<Reason, Counter>,
    expired: Counter,
    refreshes: Counter,
    events: Family<EventOutcome, Counter>,
    requests: Family<Request, Counter>,
    kept: Counter,
    delivered: Counter,
    errors: Family<Op, Counter>,
}

impl ServiceMetrics {
    pub fn register(r: &mut Registry) -> ServiceMetrics {
        let m = ServiceMetrics {
            refusals: Family::default(),
            expired: Counter::default(),
            refreshes: Counter::default(),
            events: Family::default(),
            requests: Family::default(),
            kept: Counter::default(),
            delivered: Counter::default(),
            errors: Family::default(),
        };
        r.register(
            "auth_refusals",
            "Tokens refused at CONNECT or auth:refresh, by reason",
            m.refusals.clone(),
        );
        r.register(
            "auth_expired",
            "Sockets disconnected at their token's exp",
            m.expired.clone(),
        );
        r.register(
            "auth_refreshes",
            "Tokens refreshed with auth:refresh",
            m.refreshes.clone(),
        );
        r.register(
            "service_events",
            "Service mode client events, by event and outcome",
            m.events.clone(),
        );
        r.register(
            "api_requests",
            "Server API requests, by command and status",
            m.requests.clone(),
        );
        r.register(
            "history_kept",
            "Messages kept for offline users",
            m.kept.clone(),
        );
        r.register(
            "history_delivered",
            "Kept messages delivered at a connect",
            m.delivered.clone(),
        );
        r.register(
            "history_errors",
            "Service store operations that failed, by operation",
            m.errors.clone(),
        );
        // Every reason shows from the start, at 0, so dashboards and alerts
        // have a series to watch.
        for reason in [
            "missing_token",
            "invalid_token",
            "token_expired",
            "token_revoked",
            "unavailable",
        ] {
            let _ = m.refusals.get_or_create(&Reason { reason });
        }
        m
    }

    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&Reason { reason }).inc();
    }

    pub fn expired(&self) {
        self.expired.inc();
    }

    pub fn refreshed(&self) {
        self.refreshes.inc();
    }

    pub fn event(&self, event: &'static str, outcome: &'static str) {
        self.events
            .get_or_create(&EventOutcome { event, outcome })
            .inc();
    }

    pub fn request(&self, command: &'static str, status: u16) {
        self.requests
            .get_or_create(&Request { command, status })
            .inc();
    }

    pub fn kept(&self) {
        self.kept.inc();
    }

    pub fn delivered(&self, n: usize) {
        self.delivered.inc_by(n as u64);
    }

    pub fn error(&self, op: &'static str) {
        self.errors.get_or_create(&Op { op }).inc();
    }
}
