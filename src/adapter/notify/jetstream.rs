//! The notify store in NATS JetStream (`adapter.kind = nats`).
//!
//! - Revocations: stream `<PREFIX>_REVOKED`, one subject per user
//!   (`<prefix>.revoked.<user hex>`), one message kept per subject,
//!   `max_age` the revocation TTL. Every node reads it whole at start and
//!   then follows it (an ordered consumer), so a node that was down when a
//!   user was revoked knows it before its first client connects.
//! - Kept messages: stream `<PREFIX>_KEPT`, one subject per user
//!   (`<prefix>.kept.<user hex>`), `max_messages_per_subject` the per-user
//!   bound and `max_age` the TTL, discarding the oldest. Forgetting is a
//!   purge of the user's subject below a sequence.
//! - The server API: a queue subscription on `<prefix>.api.*` (queue group
//!   `<prefix>.api`), so one node answers each request.
//!
//! File storage: a NATS restart keeps both. Its own connection, apart from
//! the bus's and the recovery store's.

use crate::adapter::settings::AdapterSettings;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use async_nats::ConnectOptions;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use slog::{debug, warn, Logger};
use tokio::sync::{mpsc, OnceCell};

use super::{
    unavailable, user_from_token, user_token, ApiRequest, Kept, NotifyError, NotifyLimits,
    NotifyStore, Revocation, RevocationEvent,
};
use crate::adapter::nats::parse_servers;
use crate::adapter::store::jetstream::{store_client, stream_name_prefix};
use crate::adapter::AdapterError;

/// See the module doc.
pub struct JetStreamNotifyStore {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    name_prefix: String,
    limits: NotifyLimits,
    revoked: OnceCell<stream::Stream>,
    kept: OnceCell<stream::Stream>,
    log: Logger,
}

impl JetStreamNotifyStore {
    /// Connect in the background; fails only on a malformed URL.
    pub async fn connect(
        settings: &AdapterSettings,
        limits: NotifyLimits,
        log: Logger,
    ) -> Result<JetStreamNotifyStore, AdapterError> {
        let (url, ca_file, prefix) = (
            settings.url.as_str(),
            settings.ca_file(),
            settings.prefix.as_str(),
        );
        let servers = parse_servers(url)?;
        let client = store_client(
            crate::adapter::nats::with_ca(ConnectOptions::new(), ca_file),
            "riptide-notify",
            servers,
            limits.timeout,
        )
        .await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(limits.timeout);
        let name_prefix = stream_name_prefix(prefix);
        Ok(JetStreamNotifyStore {
            client,
            js,
            prefix: prefix.to_owned(),
            name_prefix,
            limits,
            revoked: OnceCell::new(),
            kept: OnceCell::new(),
            log,
        })
    }

    async fn revoked_stream(&self) -> Result<&stream::Stream, NotifyError> {
        self.revoked
            .get_or_try_init(|| async {
                self.ensure(stream::Config {
                    name: format!("{}_REVOKED", self.name_prefix),
                    description: Some("riptide service mode: revoked users".into()),
                    subjects: vec![format!("{}.revoked.>", self.prefix)],
                    max_messages_per_subject: 1,
                    max_age: self.limits.revocation_ttl,
                    discard: stream::DiscardPolicy::Old,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
            })
            .await
    }

    async fn kept_stream(&self) -> Result<&stream::Stream, NotifyError> {
        self.kept
            .get_or_try_init(|| async {
                self.ensure(stream::Config {
                    name: format!("{}_KEPT", self.name_prefix),
                    description: Some(
                        "riptide service mode: messages kept for offline users".into(),
                    ),
                    subjects: vec![format!("{}.kept.>", self.prefix)],
                    max_messages_per_subject: self.limits.max_per_user.min(i64::MAX as usize)
                        as i64,
                    max_age: self.limits.ttl,
                    discard: stream::DiscardPolicy::Old,
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
            })
            .await
    }

    /// The stream `config` describes, created, or brought up to its limits.
    async fn ensure(&self, config: stream::Config) -> Result<stream::Stream, NotifyError> {
        let stream = self
            .js
            .get_or_create_stream(config.clone())
            .await
            .map_err(unavailable)?;
        let have = &stream.cached_info().config;
        if (have.max_messages_per_subject, have.max_age)
            == (config.max_messages_per_subject, config.max_age)
        {
            return Ok(stream);
        }
        // The limits changed since the stream was made: the configuration wins.
        if let Err(e) = self.js.update_stream(config.clone()).await {
            warn!(self.log, "could not update a stream's limits"; "stream" => &config.name,
                "error" => %e);
        }
        self.js.get_stream(&config.name).await.map_err(unavailable)
    }

    fn kept_subject(&self, user: &str) -> String {
        format!("{}.kept.{}", self.prefix, user_token(user))
    }
}

impl NotifyStore for JetStreamNotifyStore {
    fn revoke<'a>(&'a self, user: &'a str, at_s: u64) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            self.revoked_stream().await?;
            let subject = format!("{}.revoked.{}", self.prefix, user_token(user));
            let ack = self
                .js
                .publish(subject, Bytes::from(at_s.to_string()))
                .await
                .map_err(unavailable)?;
            ack.await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn revocations(self: Arc<Self>) -> BoxStream<'static, Result<RevocationEvent, NotifyError>> {
        let prefix = format!("{}.revoked.", self.prefix);
        async move {
            let stream = self.revoked_stream().await?;
            let empty = stream.get_info().await.map_err(unavailable)?.state.messages == 0;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: format!("{prefix}>"),
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let messages = consumer.messages().await.map_err(unavailable)?;
            let first = empty.then_some(Ok(RevocationEvent::UpToDate));
            let follow = messages.flat_map(move |m| {
                let prefix = prefix.clone();
                let events: Vec<Result<RevocationEvent, NotifyError>> = match m {
                    Err(e) => vec![Err(unavailable(e))],
                    Ok(m) => {
                        let pending = m.info().map(|i| i.pending).unwrap_or(0);
                        let user = m
                            .subject
                            .as_str()
                            .strip_prefix(&prefix)
                            .and_then(user_from_token);
                        let at_s = std::str::from_utf8(&m.payload)
                            .ok()
                            .and_then(|t| t.parse().ok());
                        let mut events = Vec::with_capacity(2);
                        if let (Some(user), Some(at_s)) = (user, at_s) {
                            events.push(Ok(RevocationEvent::Revoked(Revocation { user, at_s })));
                        }
                        // The last message there was when the follow began.
                        if pending == 0 {
                            events.push(Ok(RevocationEvent::UpToDate));
                        }
                        events
                    }
                };
                futures_util::stream::iter(events)
            });
            Ok::<_, NotifyError>(futures_util::stream::iter(first).chain(follow))
        }
        .into_stream()
        .map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn keep<'a>(&'a self, user: &'a str, message: Bytes) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            self.kept_stream().await?;
            let ack = self
                .js
                .publish(self.kept_subject(user), message)
                .await
                .map_err(unavailable)?;
            ack.await.map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn kept<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        async move {
            let stream = self.kept_stream().await?;
            let subject = self.kept_subject(user);
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => m.sequence,
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(Kept::default())
                }
                Err(e) => return Err(unavailable(e)),
            };
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: subject,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let mut messages = consumer.messages().await.map_err(unavailable)?;
            let mut kept = Vec::new();
            let read = async {
                while let Some(m) = messages.next().await {
                    let m = m.map_err(unavailable)?;
                    let seq = m.info().map_err(unavailable)?.stream_sequence;
                    kept.push(m.message.payload.clone());
                    if seq >= last {
                        break;
                    }
                }
                Ok::<_, NotifyError>(())
            };
            tokio::time::timeout(self.limits.timeout, read)
                .await
                .map_err(|_| unavailable("reading kept messages timed out"))??;
            Ok(Kept {
                messages: kept,
                end: Some(last.to_string()),
            })
        }
        .boxed()
    }

    fn forget<'a>(&'a self, user: &'a str, end: &'a str) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            let Ok(end) = end.parse::<u64>() else {
                return Ok(());
            };
            let stream = self.kept_stream().await?;
            // Purges the user's messages below `end + 1`: newer ones stay.
            stream
                .purge()
                .filter(self.kept_subject(user))
                .sequence(end + 1)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn api_requests(self: Arc<Self>) -> Option<mpsc::Receiver<ApiRequest>> {
        let (tx, rx) = mpsc::channel(256);
        let subject = format!("{}.api.*", self.prefix);
        let group = format!("{}.api", self.prefix);
        let strip = format!("{}.api.", self.prefix);
        tokio::spawn(async move {
            let mut sub = loop {
                match self
                    .client
                    .queue_subscribe(subject.clone(), group.clone())
                    .await
                {
                    Ok(sub) => break sub,
                    Err(e) => {
                        warn!(self.log, "server API subscription failed; retrying";
                            "subject" => &subject, "error" => %e);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            debug!(self.log, "serving the API on the bus"; "subject" => &subject);
            while let Some(msg) = sub.next().await {
                let command = msg
                    .subject
                    .as_str()
                    .strip_prefix(&strip)
                    .unwrap_or_default()
                    .to_owned();
                let client = self.client.clone();
                let reply_to = msg.reply.clone();
                let request = ApiRequest {
                    command,
                    body: msg.payload,
                    reply: Box::new(move |answer| {
                        if let Some(to) = reply_to {
                            tokio::spawn(async move {
                                let _ = client.publish(to, answer).await;
                            });
                        }
                    }),
                };
                if tx.send(request).await.is_err() {
                    return;
                }
            }
        });
        Some(rx)
    }
}
