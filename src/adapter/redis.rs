//! The Redis bus (pub/sub: at-most-once, like NATS core).
//!
//! # Two connections, our own reconnect loops
//!
//! - The **publisher** is a `MultiplexedConnection`. Its task takes up to
//!   [`BATCH`] messages off the outbound queue and sends them as one
//!   pipeline of `PUBLISH`es (one round trip for a burst). When the pipeline
//!   fails, the connection is dropped, the bus reports degraded, and the task
//!   reconnects with capped, jittered backoff, then sends the *same* batch
//!   again: nothing accepted while Redis was up is lost to a blip. If Redis
//!   had executed part of the failed pipeline, that part arrives twice; the
//!   cluster drops such duplicates by sequence number
//!   (`errors_total{kind="duplicate"}`).
//! - The **subscriber** is a dedicated pub/sub connection. Redis forgets a
//!   connection's subscriptions when it goes, so after every (re)connect the
//!   task subscribes to the whole wanted set in one `SUBSCRIBE`; after that
//!   it applies interest changes as they come. It pings every
//!   `ping_interval` (the first right after it connects) and treats a ping
//!   without answer within that time as a dead connection (a broker that
//!   hangs rather than closes). Each answered ping is a round-trip sample,
//!   `riptide_adapter_broker_rtt_seconds{adapter="redis"}`: the time the
//!   subscriber connection takes to hear back from Redis, behind what Redis
//!   had pushed on it before (no extra command).
//!
//! The bus is up when both are. One outage counts one reconnect, when the
//! last of the two recovers.
//!
//! # Payload cap
//!
//! Redis takes messages up to 512 MiB, but a subscriber whose output buffer
//! passes 32 MiB is disconnected (`client-output-buffer-limit pubsub`), and
//! one huge message stalls every node: [`Bus::max_payload`] is
//! [`AdapterOptions::max_payload`] (1 MiB by default, NATS's default).

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use prometheus_client::metrics::histogram::Histogram;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use slog::{debug, Logger};
use tokio::sync::mpsc;

use super::core::{Core, Outgoing, Tasks};
use super::{
    backoff, AdapterError, AdapterMetrics, AdapterOptions, Bus, BusStatus, Inbound, PublishError,
    Topic,
};

/// Most `PUBLISH`es sent in one pipeline.
pub const BATCH: usize = 64;

const PUBLISHER: usize = 0;
const SUBSCRIBER: usize = 1;

/// See the module doc.
pub struct RedisBus {
    core: Arc<Core>,
    _tasks: Tasks,
}

/// The client for `url`; a `rediss://` one checks the server's certificate
/// against `ca_file`'s when given, the system's roots otherwise.
pub(crate) fn parse_url(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<redis::Client, AdapterError> {
    let invalid = |reason: String| AdapterError::InvalidSetting {
        key: "adapter.url",
        reason,
    };
    let url = url.trim();
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(invalid(format!(
            "{url:?} is not a Redis URL (redis://host:port[/db])"
        )));
    }
    match ca_file {
        Some(ca) if url.starts_with("rediss://") => {
            let root_cert = crate::adapter::settings::ca_certificates(&ca.to_string_lossy())
                .map_err(|reason| AdapterError::InvalidSetting {
                    key: "adapter.tls_ca_file",
                    reason,
                })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            };
            redis::Client::build_with_tls(url, certs)
        }
        _ => redis::Client::open(url),
    }
    .map_err(|e| invalid(format!("{url:?}: {e}")))
}

impl RedisBus {
    /// Start the connection tasks; fails only on a malformed URL.
    pub fn connect(
        url: &str,
        ca_file: Option<&std::path::Path>,
        prefix: &str,
        options: &AdapterOptions,
        inbound: mpsc::Sender<Inbound>,
        metrics: &AdapterMetrics,
        log: &Logger,
    ) -> Result<RedisBus, AdapterError> {
        let client = parse_url(url, ca_file)?;
        let (core, out_rx) = Core::new(
            prefix,
            options,
            metrics,
            log,
            inbound,
            &["redis publisher", "redis subscriber"],
        );
        let core = Arc::new(core);
        let mut tasks = Tasks::default();
        tasks.push(tokio::spawn(publisher(
            core.clone(),
            client.clone(),
            out_rx,
        )));
        let rtt = metrics.broker_rtt("redis");
        tasks.push(tokio::spawn(subscriber(core.clone(), client, rtt)));
        Ok(RedisBus {
            core,
            _tasks: tasks,
        })
    }
}

async fn connect_publisher(core: &Core, client: &redis::Client) -> MultiplexedConnection {
    let options = &core.options;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.ping_interval));
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(backoff(
            attempt,
            options.reconnect_min,
            options.reconnect_max,
        ))
        .await;
        attempt = attempt.saturating_add(1);
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => {
                core.set_part(PUBLISHER, None);
                return conn;
            }
            Err(e) => {
                debug!(core.log, "Redis publisher connect failed"; "attempt" => attempt, "error" => %e);
                core.set_part(PUBLISHER, Some(format!("redis publisher: {e}")));
            }
        }
    }
}

async fn publisher(core: Arc<Core>, client: redis::Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let mut up = core.up_watch();
    loop {
        let mut conn = connect_publisher(&core, &client).await;
        // Both connections up (our subscriptions restored), and after an
        // outage the other nodes' too, before what was buffered goes.
        if !core.ready(&mut up).await {
            return;
        }
        loop {
            if batch.is_empty() {
                if rx.recv_many(&mut batch, BATCH).await == 0 {
                    return;
                }
                for msg in &batch {
                    core.taken(msg);
                }
            }
            let mut pipe = redis::pipe();
            for msg in &batch {
                pipe.cmd("PUBLISH")
                    .arg(&msg.subject)
                    .arg(msg.payload.as_ref())
                    .ignore();
            }
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    for msg in batch.drain(..) {
                        core.handed(msg.payload.len());
                    }
                }
                Err(e) => {
                    core.metrics.error("publish");
                    core.set_part(PUBLISHER, Some(format!("redis publisher: {e}")));
                    // Keep `batch`: it goes again on the next connection.
                    break;
                }
            }
        }
    }
}

/// Subscribe to what is wanted and not held, unsubscribe the rest.
async fn reconcile(
    core: &Core,
    sink: &mut redis::aio::PubSubSink,
    actual: &mut HashMap<String, Topic>,
) -> redis::RedisResult<()> {
    let (wanted, gen) = core.wanted();
    let wanted: HashMap<String, Topic> =
        wanted.into_iter().map(|t| (core.subject(&t), t)).collect();
    let gone: Vec<String> = actual
        .keys()
        .filter(|s| !wanted.contains_key(*s))
        .cloned()
        .collect();
    let new: Vec<(String, Topic)> = wanted
        .into_iter()
        .filter(|(s, _)| !actual.contains_key(s))
        .collect();
    // Never an empty (UN)SUBSCRIBE: without arguments it means "all".
    for chunk in gone.chunks(512) {
        sink.unsubscribe(chunk).await?;
        for s in chunk {
            actual.remove(s);
        }
    }
    for chunk in new.chunks(512) {
        let subjects: Vec<&String> = chunk.iter().map(|(s, _)| s).collect();
        sink.subscribe(&subjects).await?;
        actual.extend(chunk.iter().cloned());
    }
    core.metrics.set_subscriptions(actual.len());
    // Each (UN)SUBSCRIBE above resolved on Redis's confirmation.
    core.applied(gen);
    Ok(())
}

async fn subscriber(core: Arc<Core>, client: redis::Client, rtt: Histogram) {
    let options = core.options.clone();
    let mut attempt = 0u32;
    loop {
        tokio::time::sleep(backoff(
            attempt,
            options.reconnect_min,
            options.reconnect_max,
        ))
        .await;
        attempt = attempt.saturating_add(1);
        let pubsub =
            match tokio::time::timeout(options.connect_timeout, client.get_async_pubsub()).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    core.set_part(SUBSCRIBER, Some(format!("redis subscriber: {e}")));
                    continue;
                }
                Err(_) => {
                    core.set_part(SUBSCRIBER, Some("redis subscriber: connect timeout".into()));
                    continue;
                }
            };
        let (mut sink, mut stream) = pubsub.split();
        let mut actual = HashMap::new();
        if let Err(e) = reconcile(&core, &mut sink, &mut actual).await {
            core.metrics.error("subscribe");
            core.set_part(SUBSCRIBER, Some(format!("redis subscriber: {e}")));
            continue;
        }
        core.set_part(SUBSCRIBER, None);
        attempt = 0;

        // Its first tick is at once: a round-trip sample as soon as the
        // connection is made.
        let mut ping = tokio::time::interval(options.ping_interval);
        let mut changed = pin!(core.interest_changed.notified());
        let reason = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if let Some(topic) = actual.get(msg.get_channel_name()) {
                            let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                            core.deliver(topic.clone(), payload);
                        }
                    }
                    None => break "connection closed".to_owned(),
                },
                _ = &mut changed => {
                    changed.set(core.interest_changed.notified());
                    if let Err(e) = reconcile(&core, &mut sink, &mut actual).await {
                        core.metrics.error("subscribe");
                        break e.to_string();
                    }
                }
                _ = ping.tick() => {
                    // In subscribed mode Redis answers PING with
                    // ["pong", ""], not +PONG: any reply will do.
                    let start = std::time::Instant::now();
                    let pong = tokio::time::timeout(options.ping_interval, sink.ping::<redis::Value>());
                    match pong.await {
                        Ok(Ok(_)) => rtt.observe(start.elapsed().as_secs_f64()),
                        Ok(Err(e)) => break format!("ping: {e}"),
                        Err(_) => break "ping timed out".to_owned(),
                    }
                }
            }
        };
        core.metrics.set_subscriptions(0);
        core.set_part(SUBSCRIBER, Some(format!("redis subscriber: {reason}")));
    }
}

impl Bus for RedisBus {
    fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), PublishError> {
        self.core
            .publish(topic, payload, self.core.options.max_payload)
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
        self.core.options.max_payload
    }

    fn synced(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        self.core.synced(timeout).boxed()
    }

    fn flush(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        self.core.flush(timeout).boxed()
    }
}

/// The stores' command connection to Redis: auto-reconnecting, made on
/// first use within `timeout` (each command answered within it too), then
/// shared by every caller.
pub(crate) struct Commands {
    client: redis::Client,
    timeout: Duration,
    slot: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
}

impl Commands {
    pub(crate) fn new(client: redis::Client, timeout: Duration) -> Commands {
        Commands {
            client,
            timeout,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    pub(crate) async fn conn(&self) -> Result<redis::aio::ConnectionManager, String> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let c = tokio::time::timeout(
            self.timeout,
            redis::aio::ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| "connecting to Redis timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    pub(crate) async fn query(&self, cmd: &redis::Cmd) -> Result<redis::Value, String> {
        let mut c = self.conn().await?;
        cmd.query_async(&mut c).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("redis://127.0.0.1:6379", None).is_ok());
        assert!(parse_url("redis://127.0.0.1:6379/2", None).is_ok());
        for bad in ["nats://127.0.0.1:4222", "127.0.0.1:6379", "redis://[::1"] {
            let err = parse_url(bad, None).unwrap_err();
            assert!(err.to_string().starts_with("adapter.url: "), "{bad}: {err}");
        }
    }
}
