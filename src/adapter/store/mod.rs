//! The broker-backed store of connection state recovery: what a client
//! missed while it was away, and the state of its socket, kept where every
//! node can read them, so a client is recovered by whichever node it
//! reconnects to, and by another node when its own was killed.
//!
//! Like the rest of the adapter, this knows bytes and brokers, not sockets:
//! the engine encodes its records ([`super::codec::StoredEvent`],
//! [`super::codec::SessionRecord`]) and decides what they mean.
//!
//! # Two things are stored
//!
//! - **Per-namespace event streams.** Each namespace with recovery on has
//!   one stream (a JetStream stream / a Redis stream key). The broker gives
//!   each appended record its sequence number, so the records of one
//!   namespace have one order for every node, whichever node appended them:
//!   that order is what a client's offset points into. Streams are bounded
//!   in length, bytes (JetStream) and age ([`StoreLimits`]); a read
//!   reports when records after the requested point were already dropped
//!   ([`Range::truncated`]) so the engine refuses the recovery rather than
//!   replay part of what was missed.
//! - **Session records** by key, each owned by one writer: a write carries
//!   the [`Token`] of the writer's last write and fails once another node has
//!   [claimed](RecoveryStore::claim) the key. A node whose half-open
//!   connection finally times out therefore cannot overwrite the state of
//!   the socket another node recovered. Records expire
//!   ([`StoreLimits::session_ttl`]); the engine refreshes its live ones.
//!
//! Implementations: [`jetstream::JetStreamStore`] (`adapter.kind = nats`;
//! the server must run with JetStream, `nats-server -js`) and
//! [`redis::RedisStreamsStore`] (`adapter.kind = redis`).

pub mod jetstream;
pub mod redis;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use slog::Logger;

use super::settings::{AdapterKind, AdapterSettings};
use super::AdapterError;

/// The bounds of what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLimits {
    /// Records kept per namespace (`recovery.stream_max_len`).
    pub max_len: u64,
    /// Records older than this are dropped (`recovery.stream_max_age_ms`).
    pub max_age: Duration,
    /// Bytes kept per namespace (`recovery.stream_max_bytes`; JetStream
    /// enforces it, Redis streams have no byte bound: length and age bound
    /// them there).
    pub max_bytes: u64,
    /// How long a session record lives after its last write.
    pub session_ttl: Duration,
    /// One broker operation's limit.
    pub timeout: Duration,
}

/// One record of a namespace's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the namespace's order, assigned by the broker; never 0.
    pub seq: u64,
    pub data: Bytes,
}

/// What [`RecoveryStore::read_after`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    /// The records after the requested point, in order.
    pub records: Vec<Record>,
    /// Some record after the requested point is no longer stored (dropped
    /// at the bounds): what is in `records` is not everything.
    pub truncated: bool,
    /// The last sequence the stream held when it was read, or the last of
    /// `records` if that is later (0: none yet); nothing at or below it is
    /// missing from `records` unless `truncated`.
    pub last: u64,
}

impl Range {
    /// What a read of `records` (at most `max`, in order) found, the stream's
    /// last sequence having been `stream_last` when it started: `last` covers
    /// what was read (appended since, or cut at `max`).
    pub fn read(records: Vec<Record>, max: usize, stream_last: u64, truncated: bool) -> Range {
        let last = match records.last() {
            // Cut at `max`: what comes after the last read is not covered.
            Some(r) if records.len() >= max => r.seq,
            Some(r) => r.seq.max(stream_last),
            None => stream_last,
        };
        Range {
            records,
            truncated,
            last,
        }
    }
}

/// Proof of ownership of a session record: what the last write returned.
pub type Token = u64;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The broker did not answer in time or is unreachable.
    #[error("recovery store unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the record (too large, bad configuration).
    #[error("recovery store refused the record: {0}")]
    Refused(String),
}

/// Durable recovery storage shared by every node. See the module doc.
pub trait RecoveryStore: Send + Sync + 'static {
    /// Append records to `ns`'s stream, in order (one broker round trip for
    /// the batch where the broker allows it); each gets its sequence, or why
    /// it was not stored. Each record has an id unique in the cluster: an
    /// append that is tried again (`retry`: an earlier attempt of some of
    /// these may have been stored although it failed) stores each id once.
    fn append<'a>(
        &'a self,
        ns: &'a str,
        records: Vec<(String, Bytes)>,
        retry: bool,
    ) -> BoxFuture<'a, Vec<Result<u64, StoreError>>>;

    /// The last sequence of `ns`'s stream (0: nothing stored yet).
    fn last_seq<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The records of `ns` after `after`, at most `max` of them.
    fn read_after<'a>(
        &'a self,
        ns: &'a str,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Range, StoreError>>;

    /// Every record of `ns` after `after`, as it is appended. Ends with an
    /// error when the broker connection fails (the caller starts again from
    /// the last record it got).
    fn tail(
        self: std::sync::Arc<Self>,
        ns: String,
        after: u64,
    ) -> BoxStream<'static, Result<Record, StoreError>>;

    /// Take session record `key` over: its value, and the token this node's
    /// writes must carry from now on. `None` if there is no such record, or
    /// another node claimed it at the same moment.
    fn claim<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Bytes, Token)>, StoreError>>;

    /// Write session record `key`: a new one (`token` `None`), or one this
    /// node owns (the token of its last write). The token for the next
    /// write, or `None` if the record is no longer this node's.
    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        token: Option<Token>,
    ) -> BoxFuture<'a, Result<Option<Token>, StoreError>>;

    /// Remove session record `key` if this node still owns it.
    fn remove<'a>(&'a self, key: &'a str, token: Token) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Changes each time the store's broker connection is made again: a
    /// tail started before may be stuck on the old one (JetStream's
    /// consumers do not outlive a server restart) and is best started again.
    fn reconnected(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Drop what is past the age bound now (streams are trimmed at appends
    /// too; this catches the ones nobody appends to). Best effort.
    fn trim<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, ()>;
}

/// The store for `[adapter]`: JetStream for NATS, Redis Streams for Redis,
/// none for memory (a single node keeps recovery in its own memory).
/// Returns at once; the connections are made in the background.
pub async fn connect(
    settings: &AdapterSettings,
    limits: StoreLimits,
    log: &Logger,
) -> Result<Option<std::sync::Arc<dyn RecoveryStore>>, AdapterError> {
    let log = log.new(slog::o!("store" => settings.kind));
    Ok(match settings.kind {
        AdapterKind::Memory => None,
        AdapterKind::Nats => Some(std::sync::Arc::new(
            jetstream::JetStreamStore::connect(settings, limits, log).await?,
        )),
        AdapterKind::Redis => Some(std::sync::Arc::new(redis::RedisStreamsStore::connect(
            settings, limits, log,
        )?)),
    })
}

/// A stable 64-bit hash (FNV-1a) of a namespace: names made of it are
/// valid broker names whatever the namespace contains, and the same on
/// every node.
pub(crate) fn ns_hash(ns: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ns.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_hashes_are_stable_and_distinct() {
        assert_eq!(ns_hash("/"), ns_hash("/"));
        assert_ne!(ns_hash("/"), ns_hash("/chat"));
        assert_eq!(ns_hash("").len(), 16);
        assert!(ns_hash("/a.b*c>").bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
