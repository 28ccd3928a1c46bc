//! The recovery store in NATS JetStream (`adapter.kind = nats`).
//!
//! - One stream per namespace, `<PREFIX>_REC_<hash>` on subject
//!   `<prefix>.rec.<hash>` (the hash of the namespace, [`super::ns_hash`]):
//!   file storage, `max_msgs`, `max_bytes` and `max_age` from the limits,
//!   discarding the oldest. Its sequence numbers are the offsets. A stream
//!   per namespace, rather than one stream with a subject per namespace, so
//!   that the stream's first sequence says exactly what was dropped from
//!   that namespace (JetStream keeps no per-subject first sequence).
//! - Session records in the stream `<PREFIX>_REC_SESSIONS`, one subject
//!   per record (`<prefix>.recs.<key>`, one message kept per subject,
//!   `max_age` the session TTL): what a key-value bucket is, built on the
//!   stream API directly because async-nats's KV layer does not parse the
//!   answers of the NATS 2.9 server Debian ships. The token is the
//!   sequence of the record's last message: a publish with
//!   `Nats-Expected-Last-Subject-Sequence` set to it is the compare-and-set
//!   that makes a record one node's. An empty message removes a record.
//! - Appends carry `Nats-Msg-Id` (the record's id): an append tried again
//!   after a lost ack is not stored twice.
//! - Reads and tails are ordered pull consumers (ephemeral, no acks; the
//!   client recreates them on a gap or a reconnect).
//!
//! Its own connection, apart from the bus's: JetStream's request/reply
//! traffic does not queue behind broadcasts, and the bus keeps `no_echo`.

use crate::adapter::settings::AdapterSettings;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{header, ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use slog::{warn, Logger};
use tokio::sync::OnceCell;

use super::{ns_hash, Range, Record, RecoveryStore, StoreError, StoreLimits, Token};
use crate::adapter::nats::parse_servers;
use crate::adapter::AdapterError;

/// See the module doc.
pub struct JetStreamStore {
    js: jetstream::Context,
    prefix: String,
    /// The prefix as it may appear in stream and bucket names.
    name_prefix: String,
    limits: StoreLimits,
    streams: Mutex<HashMap<String, stream::Stream>>,
    sessions: OnceCell<stream::Stream>,
    /// Bumped at every (re)connection.
    connections: tokio::sync::watch::Sender<u64>,
    log: Logger,
}

/// A store's own NATS connection (`options` plus the stores' reconnect
/// policy: never give up, retry at once then within half a second), made in
/// the background; fails only on a malformed URL.
pub(crate) async fn store_client(
    options: ConnectOptions,
    name: &str,
    servers: Vec<async_nats::ServerAddr>,
    timeout: Duration,
) -> Result<async_nats::Client, AdapterError> {
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(timeout)
        .reconnect_delay_callback(|attempts| {
            crate::adapter::backoff(
                attempts.saturating_sub(1) as u32,
                Duration::from_millis(50),
                Duration::from_millis(500),
            )
        })
        .connect(servers)
        .await
        .map_err(|e| AdapterError::InvalidSetting {
            key: "adapter.url",
            reason: e.to_string(),
        })
}

/// `prefix` as it may appear in a stream name (JetStream allows letters,
/// digits, `-` and `_`), upper-cased.
pub(crate) fn stream_name_prefix(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl JetStreamStore {
    /// Connect in the background; fails only on a malformed URL.
    pub async fn connect(
        settings: &AdapterSettings,
        limits: StoreLimits,
        log: Logger,
    ) -> Result<JetStreamStore, AdapterError> {
        let (url, ca_file, prefix) = (
            settings.url.as_str(),
            settings.ca_file(),
            settings.prefix.as_str(),
        );
        let servers = parse_servers(url)?;
        let connections = tokio::sync::watch::Sender::new(0u64);
        let bump = connections.clone();
        let options = ConnectOptions::new().event_callback(move |event| {
            let bump = bump.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    bump.send_modify(|n| *n += 1);
                }
            }
        });
        let options = crate::adapter::nats::with_ca(options, ca_file);
        let client = store_client(options, "riptide-recovery", servers, limits.timeout).await?;
        let mut js = jetstream::new(client);
        js.set_timeout(limits.timeout);
        let name_prefix = stream_name_prefix(prefix);
        Ok(JetStreamStore {
            js,
            prefix: prefix.to_owned(),
            name_prefix,
            limits,
            streams: Mutex::new(HashMap::new()),
            sessions: OnceCell::new(),
            connections,
            log,
        })
    }

    fn subject(&self, ns: &str) -> String {
        format!("{}.rec.{}", self.prefix, ns_hash(ns))
    }

    fn stream_config(&self, ns: &str) -> stream::Config {
        stream::Config {
            name: format!("{}_REC_{}", self.name_prefix, ns_hash(ns)),
            description: Some(format!("riptide recovery log of namespace {ns:?}")),
            subjects: vec![self.subject(ns)],
            max_messages: self.limits.max_len.min(i64::MAX as u64) as i64,
            max_bytes: self.limits.max_bytes.min(i64::MAX as u64) as i64,
            max_age: self.limits.max_age,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            ..Default::default()
        }
    }

    /// `ns`'s stream, created (or its limits brought up to date) on first use.
    async fn stream(&self, ns: &str) -> Result<stream::Stream, StoreError> {
        if let Some(s) = self.streams.lock().get(ns) {
            return Ok(s.clone());
        }
        let config = self.stream_config(ns);
        let stream = self
            .js
            .get_or_create_stream(config.clone())
            .await
            .map_err(unavailable)?;
        let have = &stream.cached_info().config;
        let stream = if (have.max_messages, have.max_bytes, have.max_age)
            != (config.max_messages, config.max_bytes, config.max_age)
        {
            // The limits changed since the stream was made: the configuration wins.
            if let Err(e) = self.js.update_stream(config.clone()).await {
                warn!(self.log, "could not update a recovery stream's limits"; "error" => %e);
            }
            self.js
                .get_stream(&config.name)
                .await
                .map_err(unavailable)?
        } else {
            stream
        };
        self.streams.lock().insert(ns.to_owned(), stream.clone());
        Ok(stream)
    }

    async fn sessions(&self) -> Result<&stream::Stream, StoreError> {
        self.sessions
            .get_or_try_init(|| async {
                self.js
                    .get_or_create_stream(stream::Config {
                        name: format!("{}_REC_SESSIONS", self.name_prefix),
                        description: Some("riptide recovery sessions".into()),
                        subjects: vec![format!("{}.recs.>", self.prefix)],
                        max_messages_per_subject: 1,
                        max_age: self.limits.session_ttl,
                        discard: stream::DiscardPolicy::Old,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)
            })
            .await
    }

    fn session_subject(&self, key: &str) -> String {
        format!("{}.recs.{key}", self.prefix)
    }

    /// Record `key`'s value and the sequence of its message; `None` if
    /// there is none (or it was removed).
    async fn session(&self, key: &str) -> Result<Option<(Bytes, u64)>, StoreError> {
        let sessions = self.sessions().await?;
        match sessions
            .get_last_raw_message_by_subject(&self.session_subject(key))
            .await
        {
            Ok(m) if m.payload.is_empty() => Ok(None),
            Ok(m) => Ok(Some((m.payload, m.sequence))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Publish `value` as `key`'s record if its last message is `expected`
    /// (0: it has none): the new token, or `None` if it was not.
    async fn swap(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.sessions().await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(self.session_subject(key), headers, value)
            .await
            .map_err(unavailable)?;
        match ack.await {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn messages(
        stream: &stream::Stream,
        subject: String,
        after: u64,
    ) -> Result<consumer::pull::Ordered, StoreError> {
        let deliver_policy = if after == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        consumer.messages().await.map_err(unavailable)
    }
}

fn record(m: Result<jetstream::Message, impl std::fmt::Display>) -> Result<Record, StoreError> {
    let m = m.map_err(unavailable)?;
    let seq = m.info().map_err(unavailable)?.stream_sequence;
    Ok(Record {
        seq,
        data: m.message.payload.clone(),
    })
}

impl RecoveryStore for JetStreamStore {
    fn append<'a>(
        &'a self,
        ns: &'a str,
        records: Vec<(String, Bytes)>,
        _retry: bool,
    ) -> BoxFuture<'a, Vec<Result<u64, StoreError>>> {
        async move {
            let n = records.len();
            if let Err(e) = self.stream(ns).await {
                return vec![Err(e); n];
            }
            let subject = self.subject(ns);
            // Published one after another (the order on the wire is the
            // stream's order), then the acks awaited together. `Nats-Msg-Id`:
            // the server stores an id once within its duplicate window (2
            // minutes by default), so a retry after a lost ack stores nothing
            // twice.
            let mut acks = Vec::with_capacity(n);
            for (id, data) in records {
                let mut headers = HeaderMap::new();
                headers.insert(header::NATS_MESSAGE_ID, id.as_str());
                let published = self
                    .js
                    .publish_with_headers(subject.clone(), headers, data)
                    .await;
                acks.push(match published {
                    Ok(ack) => Ok(ack),
                    Err(e) => Err(unavailable(e)),
                });
            }
            let mut out = Vec::with_capacity(n);
            for ack in acks {
                out.push(match ack {
                    Ok(ack) => ack.await.map(|a| a.sequence).map_err(|e| {
                        use async_nats::jetstream::context::PublishErrorKind as K;
                        match e.kind() {
                            K::MaxPayloadExceeded => StoreError::Refused(e.to_string()),
                            _ => unavailable(e),
                        }
                    }),
                    Err(e) => Err(e),
                });
            }
            out
        }
        .boxed()
    }

    fn last_seq<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move {
            let stream = self.stream(ns).await?;
            let info = stream.get_info().await.map_err(unavailable)?;
            Ok(info.state.last_sequence)
        }
        .boxed()
    }

    fn read_after<'a>(
        &'a self,
        ns: &'a str,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Range, StoreError>> {
        async move {
            let stream = self.stream(ns).await?;
            let state = stream.get_info().await.map_err(unavailable)?.state;
            let last = state.last_sequence;
            let truncated = after + 1 < state.first_sequence;
            if truncated || last <= after {
                return Ok(Range {
                    records: Vec::new(),
                    truncated,
                    last,
                });
            }
            let mut messages = Self::messages(&stream, self.subject(ns), after).await?;
            let mut records = Vec::new();
            let read = async {
                while let Some(m) = messages.next().await {
                    let r = record(m)?;
                    let seq = r.seq;
                    records.push(r);
                    if seq >= last || records.len() >= max {
                        break;
                    }
                }
                Ok::<_, StoreError>(())
            };
            tokio::time::timeout(self.limits.timeout, read)
                .await
                .map_err(|_| unavailable("reading the recovery stream timed out"))??;
            // Dropped between the info and the read: not everything is here.
            let truncated = records.first().is_some_and(|r| r.seq > after + 1);
            Ok(Range::read(records, max, last, truncated))
        }
        .boxed()
    }

    fn tail(
        self: Arc<Self>,
        ns: String,
        after: u64,
    ) -> BoxStream<'static, Result<Record, StoreError>> {
        async move {
            let stream = self.stream(&ns).await?;
            let messages = Self::messages(&stream, self.subject(&ns), after).await?;
            Ok::<_, StoreError>(messages.map(record))
        }
        .into_stream()
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Bytes, Token)>, StoreError>> {
        async move {
            let Some((value, seq)) = self.session(key).await? else {
                return Ok(None);
            };
            // The same value again, expecting the message read: only one
            // claimant's publish is accepted.
            Ok(self
                .swap(key, value.clone(), seq)
                .await?
                .map(|token| (value, token)))
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        token: Option<Token>,
    ) -> BoxFuture<'a, Result<Option<Token>, StoreError>> {
        async move { self.swap(key, value, token.unwrap_or(0)).await }.boxed()
    }

    fn remove<'a>(&'a self, key: &'a str, token: Token) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            // An empty record; refused if another node owns it now.
            self.swap(key, Bytes::new(), token).await.map(|_| ())
        }
        .boxed()
    }

    fn reconnected(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connections.subscribe()
    }

    fn trim<'a>(&'a self, _ns: &'a str) -> BoxFuture<'a, ()> {
        // JetStream applies max_age itself.
        async {}.boxed()
    }
}
