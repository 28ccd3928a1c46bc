//! The NATS bus (core NATS, no JetStream: at-most-once, which is what
//! Socket.IO broadcasts promise).
//!
//! # Connection and faults
//!
//! async-nats owns the connection: `retry_on_initial_connect` (a NATS that
//! is down at start does not stop the node; [`NatsBus::connect`] returns at
//! once, degraded), `max_reconnects(None)` (never gives up), and our capped,
//! jittered backoff (`adapter::backoff`) as its `reconnect_delay_callback`.
//! Its event callback drives our status: `Disconnected` → degraded (logged,
//! counted as `errors_total{kind="connection"}`), `Connected` → up (an outage
//! ended: `reconnects_total`). On reconnect async-nats re-sends `SUB` for
//! every live `Subscriber` before anything else; the tests check that
//! traffic on a room subscribed before the outage flows after it.
//!
//! # Memory while NATS is away
//!
//! async-nats has its own command channel (2048 commands) and, while it
//! reconnects, stops draining it; its `publish` then waits. So our publisher
//! task stops handing messages over while the bus is degraded: what async-nats
//! holds is at most what it took before the disconnect was noticed, and the
//! bound that matters is our outbound queue ([`super::AdapterOptions`]),
//! whose overflow is refused and counted. After the reconnect the queue
//! drains in order.
//!
//! `no_echo`: a node never receives its own publishes (the cluster would
//! drop them anyway). Each subscription gets a small forwarding task into the
//! one inbound channel, so order holds per topic, not across topics.
//!
//! # Round-trip time
//!
//! [`rtt`] times one request every `ping_interval` while the bus is up, to
//! a subject nobody serves: the server answers it at once with a "no
//! responders" status (NATS 2.2+), so the time is one round trip through
//! the server, behind whatever the connection had queued before it
//! (`riptide_adapter_broker_rtt_seconds{adapter="nats"}`). async-nats's
//! `flush` would not do: it only writes the client's buffer out, no PING.
//! The subscription reconciler uses the same round trip to know that the
//! server has its SUBs and UNSUBs ([`Bus::synced`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, Request, RequestErrorKind, ServerAddr};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use prometheus_client::metrics::histogram::Histogram;
use slog::{debug, info, warn, Logger};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::core::{Core, Outgoing, Tasks};
use super::settings::AdapterSettings;
use super::{
    backoff, AdapterError, AdapterMetrics, AdapterOptions, Bus, BusStatus, Inbound, NodeId,
    PublishError, Topic,
};

/// See the module doc.
pub struct NatsBus {
    core: Arc<Core>,
    client: async_nats::Client,
    _tasks: Tasks,
}

/// Parse `adapter.url`: one NATS URL or several, comma-separated.
/// Trust `ca_file`'s certificates for a TLS connection (`tls://`, or a
/// server that requires TLS) besides the system's roots.
pub(crate) fn with_ca(
    options: ConnectOptions,
    ca_file: Option<&std::path::Path>,
) -> ConnectOptions {
    match ca_file {
        Some(ca) => options.add_root_certificates(ca.to_path_buf()),
        None => options,
    }
}

pub(crate) fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, AdapterError> {
    let invalid = |reason: String| AdapterError::InvalidSetting {
        key: "adapter.url",
        reason,
    };
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| invalid(format!("{s:?} is not a NATS server URL: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(invalid("no NATS server URL".into()));
    }
    Ok(servers)
}

impl NatsBus {
    /// Connect in the background; fails only on a malformed URL.
    pub async fn connect(
        settings: &AdapterSettings,
        options: &AdapterOptions,
        node: NodeId,
        inbound: mpsc::Sender<Inbound>,
        metrics: &AdapterMetrics,
        log: &Logger,
    ) -> Result<NatsBus, AdapterError> {
        let (url, prefix) = (settings.url.as_str(), settings.prefix.as_str());
        let servers = parse_servers(url)?;
        let (core, out_rx) = Core::new(prefix, options, metrics, log, inbound, &["nats"]);
        let core = Arc::new(core);

        let events_core = core.clone();
        let (min, max) = (options.reconnect_min, options.reconnect_max);
        let client = with_ca(ConnectOptions::new(), settings.ca_file())
            .name(format!("riptide-{node}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(options.connect_timeout)
            .ping_interval(options.ping_interval)
            // async-nats counts attempts from 1; the first retry is immediate.
            .reconnect_delay_callback(move |attempts| {
                backoff(attempts.saturating_sub(1) as u32, min, max)
            })
            .event_callback(move |event| {
                let core = events_core.clone();
                async move { on_event(&core, event) }
            })
            .connect(servers)
            .await
            .map_err(|e| AdapterError::InvalidSetting {
                key: "adapter.url",
                reason: e.to_string(),
            })?;

        let mut tasks = Tasks::default();
        tasks.push(tokio::spawn(publisher(
            core.clone(),
            client.clone(),
            out_rx,
        )));
        tasks.push(tokio::spawn(reconciler(core.clone(), client.clone())));
        tasks.push(tokio::spawn(rtt(
            core.clone(),
            client.clone(),
            metrics.broker_rtt("nats"),
        )));
        Ok(NatsBus {
            core,
            client,
            _tasks: tasks,
        })
    }
}

fn on_event(core: &Core, event: Event) {
    match event {
        Event::Connected => core.set_part(0, None),
        Event::Disconnected => core.set_part(0, Some("nats: disconnected".into())),
        Event::SlowConsumer(sid) => {
            core.metrics.error("slow_consumer");
            warn!(core.log, "NATS dropped messages for a slow subscription"; "sid" => sid);
        }
        Event::ServerError(e) => {
            core.metrics.error("server");
            warn!(core.log, "NATS server error"; "error" => %e);
        }
        Event::ClientError(e) => {
            core.metrics.error("connection");
            warn!(core.log, "NATS client error"; "error" => %e);
        }
        other => info!(core.log, "NATS event"; "event" => %other),
    }
}

async fn publisher(core: Arc<Core>, client: async_nats::Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut up = core.up_watch();
    while let Some(msg) = rx.recv().await {
        core.taken(&msg);
        // Hold messages here (bounded) rather than in async-nats while away,
        // and let the other nodes subscribe again before they go.
        if !core.ready(&mut up).await {
            return;
        }
        let len = msg.payload.len();
        match client.publish(msg.subject, msg.payload).await {
            Ok(()) => core.handed(len),
            Err(e) => {
                // Only if the server's max_payload shrank under us, or the
                // client is closed: the message is lost, say so.
                core.metrics.error("publish");
                warn!(core.log, "NATS publish failed"; "error" => %e, "bytes" => len);
                core.abandoned();
            }
        }
    }
}

/// A subscription's forwarding task, aborted (so its `Subscriber` dropped
/// and `UNSUB` sent) when this is dropped: on unsubscribe, and when the bus
/// goes (aborting the reconciler drops its map of these). Once every
/// `Subscriber` and client clone is gone, async-nats closes the connection.
struct Forwarder(JoinHandle<()>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the client's subscriptions equal to the wanted set.
async fn reconciler(core: Arc<Core>, client: async_nats::Client) {
    let mut actual: HashMap<Topic, Forwarder> = HashMap::new();
    loop {
        let (wanted, gen) = core.wanted();
        actual.retain(|topic, _| wanted.contains(topic));
        let mut failed = false;
        for topic in wanted {
            if actual.contains_key(&topic) {
                continue;
            }
            let subject = core.subject(&topic);
            match client.subscribe(subject.clone()).await {
                Ok(sub) => {
                    debug!(core.log, "subscribed"; "subject" => &subject);
                    let task = tokio::spawn(forward(core.clone(), topic.clone(), sub));
                    actual.insert(topic, Forwarder(task));
                }
                Err(e) => {
                    core.metrics.error("subscribe");
                    warn!(core.log, "NATS subscribe failed"; "subject" => &subject, "error" => %e);
                    failed = true;
                }
            }
        }
        core.metrics.set_subscriptions(actual.len());
        if failed {
            tokio::time::sleep(core.options.reconnect_max).await;
            continue;
        }
        // The server handles a connection's operations in order: once a
        // request sent after the SUBs and UNSUBs is answered, they are in
        // effect. (async-nats's `flush` only writes them out: it sends no
        // PING and waits for nothing from the server.)
        // Asked again until answered (a slow or reconnecting server), unless
        // the wanted set changes first.
        let changed = core.interest_changed.notified();
        tokio::pin!(changed);
        let probe = client.new_inbox();
        loop {
            tokio::select! {
                biased;
                _ = &mut changed => break,
                answered = round_trip(&client, &probe, core.options.connect_timeout) => {
                    if answered {
                        core.applied(gen);
                        (&mut changed).await;
                        break;
                    }
                    tokio::time::sleep(core.options.reconnect_min).await;
                }
            }
        }
    }
}

/// Measure the round trip to the server every `ping_interval` while the bus
/// is up (see the module doc). A request that fails or is not answered
/// within the interval is not a sample (the outage shows as
/// `riptide_adapter_up`). Each request has its own reply inbox, dropped
/// (unsubscribed) with it, so an unanswered one leaves nothing behind.
async fn rtt(core: Arc<Core>, client: async_nats::Client, rtt: Histogram) {
    let interval = core.options.ping_interval;
    // Nobody subscribes to a fresh inbox subject: the server answers for it.
    let subject = client.new_inbox();
    let mut up = core.up_watch();
    loop {
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        let start = std::time::Instant::now();
        if round_trip(&client, &subject, interval).await {
            rtt.observe(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(interval).await;
    }
}

/// One request to `subject`, which nobody serves, answered by the server
/// itself ("no responders") within `timeout`: a round trip through the
/// server, behind everything the connection sent before it.
async fn round_trip(client: &async_nats::Client, subject: &str, timeout: Duration) -> bool {
    let request = Request::new()
        .inbox(client.new_inbox())
        .timeout(Some(timeout));
    match client.send_request(subject.to_owned(), request).await {
        Ok(_) => true,
        Err(e) => e.kind() == RequestErrorKind::NoResponders,
    }
}

async fn forward(core: Arc<Core>, topic: Topic, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        core.deliver(topic.clone(), msg.payload);
    }
}

impl Bus for NatsBus {
    fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), PublishError> {
        self.core.publish(topic, payload, self.client.max_payload())
    }

    fn subscribe(&self, topic: &Topic) {
        self.core.subscribe(topic)
    }

    fn unsubscribe(&self, topic: &Topic) {
        self.core.unsubscribe(topic)
    }

    fn status(&self) -> BusStatus {
        self.core.status()
    }

    fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    fn synced(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        self.core.synced(timeout).boxed()
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            if !self.core.flush(timeout).await {
                return false;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            matches!(
                tokio::time::timeout(left, self.client.flush()).await,
                Ok(Ok(()))
            )
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_servers("nats://127.0.0.1:4222").is_ok());
        assert_eq!(
            parse_servers("nats://a:1, nats://b:2").map(|s| s.len()),
            Ok(2)
        );
        let err = parse_servers("nats://127.0.0.1:notaport").unwrap_err();
        assert!(err.to_string().starts_with("adapter.url: "), "{err}");
        assert!(parse_servers(" , ").is_err());
    }
}
