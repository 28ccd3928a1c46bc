//! The recovery store in Redis Streams (`adapter.kind = redis`; Redis 7 or
//! later, for `XINFO STREAM`'s `max-deleted-entry-id`).
//!
//! - One stream key per namespace, `<prefix>:rec:<hash>`; each record one
//!   entry with fields `d` (the record) and `i` (its id: an append tried
//!   again first looks for its ids at the stream's end, so nothing is
//!   stored twice). `XADD ... MAXLEN = n` bounds the length at every
//!   append, `XTRIM ... MINID` the age (at appends and from the engine's
//!   periodic [`RecoveryStore::trim`]). Entry ids `<ms>-<n>` are packed
//!   into one `u64` (`ms << 20 | n`) so offsets compare as numbers.
//! - A read is truncated when an entry after the requested point may be
//!   gone: the oldest kept entry (`recorded-first-entry-id`) is after the
//!   point (trimmed past it, or the stream was made anew by a Redis that
//!   restarted without persistence), or none is kept and the last one was
//!   after it, or `max-deleted-entry-id` (an `XDEL`) is after it, or the
//!   key is gone although the client saw an entry of it.
//!   Ids are not consecutive, so a point whose own entry was the last one
//!   trimmed reads as truncated too: the safe side (not recovered, never
//!   a partial replay).
//! - Session records are hashes `<prefix>:rec:s:<key>` with fields `gen`
//!   (the owner's token) and `rec`, expiring with the session TTL; the
//!   scripts below make claim and owner-only writes atomic.
//! - Commands go through one auto-reconnecting connection; each tail has a
//!   connection of its own (`XREAD BLOCK` holds its connection).

use crate::adapter::settings::AdapterSettings;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManager;
use redis::{AsyncConnectionConfig, Value};
use slog::Logger;

use super::{ns_hash, Range, Record, RecoveryStore, StoreError, StoreLimits, Token};
use crate::adapter::redis::{parse_url, Commands};
use crate::adapter::AdapterError;

/// How long one `XREAD` of a tail blocks.
const BLOCK: Duration = Duration::from_secs(1);

/// Claim: hand back the record and make the claimant its owner.
const CLAIM: &str = r"
local r = redis.call('HGET', KEYS[1], 'rec')
if not r then return false end
redis.call('HSET', KEYS[1], 'gen', ARGV[1])
return r";

/// Write: a new record (none there), or the owner's (its token matches).
const WRITE: &str = r"
local gen = redis.call('HGET', KEYS[1], 'gen')
if gen and gen ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'rec', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1";

/// Remove: the owner's only.
const REMOVE: &str = r"
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1";

struct StreamInfo {
    last: u64,
    first: u64,
    max_deleted: u64,
    /// Entries trimmed or deleted, ever.
    removed: u64,
    empty: bool,
}

impl StreamInfo {
    /// Whether an entry after `after` may have been removed: deleted
    /// after it, or (the client saw `after`, so the stream held it) the
    /// stream holds nothing at or before it any more: trimmed past it, or
    /// made anew (Redis restarted without persistence).
    fn truncated_after(&self, after: u64) -> bool {
        if self.max_deleted > after {
            return true;
        }
        if after == 0 {
            return self.removed > 0;
        }
        if self.empty {
            self.last > after
        } else {
            self.first > after
        }
    }
}

/// See the module doc.
pub struct RedisStreamsStore {
    prefix: String,
    limits: StoreLimits,
    commands: Commands,
    /// Never bumped (see `reconnected`).
    connections: tokio::sync::watch::Sender<u64>,
    _log: Logger,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// `<ms>-<n>` as one number.
pub(crate) fn pack(id: &str) -> Option<u64> {
    let (ms, n) = id.split_once('-')?;
    let (ms, n): (u64, u64) = (ms.parse().ok()?, n.parse().ok()?);
    Some((ms << 20) | n.min((1 << 20) - 1))
}

pub(crate) fn unpack(seq: u64) -> String {
    format!("{}-{}", seq >> 20, seq & ((1 << 20) - 1))
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A reply of field/value pairs (RESP2 array or RESP3 map) as a map.
pub(crate) fn pairs(v: Value) -> HashMap<String, Value> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, v)))
            .collect(),
        Value::Array(a) => {
            let mut out = HashMap::new();
            let mut it = a.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = text(&k) {
                    out.insert(k, v);
                }
            }
            out
        }
        _ => HashMap::new(),
    }
}

/// A stream entry's fields by name.
pub(crate) type Fields = HashMap<String, Value>;

/// Stream entries (`[[id, [field, value, ...]], ...]`, as XRANGE answers):
/// each entry's id and fields.
pub(crate) fn stream_entries(v: Value) -> Vec<(String, Fields)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = pairs(parts.pop()?);
            Some((text(&parts.pop()?)?, fields))
        })
        .collect()
}

/// The entries of an `XREAD` answer: `[[key, entries]]` (RESP2) or
/// `{key: entries}` (RESP3); nil when it timed out.
pub(crate) fn xread_entries(v: Value) -> Vec<(String, Fields)> {
    match v {
        Value::Map(m) => m.into_iter().flat_map(|(_, e)| stream_entries(e)).collect(),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .flat_map(stream_entries)
            .collect(),
        _ => Vec::new(),
    }
}

/// Entries with their record (field `d`) as records.
fn records(entries: Vec<(String, Fields)>) -> Vec<Record> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let seq = pack(&id)?;
            let data = match fields.get("d")? {
                Value::BulkString(b) => Bytes::from(b.clone()),
                _ => return None,
            };
            Some(Record { seq, data })
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStreamsStore {
    /// Fails only on a malformed URL; connects on first use.
    pub fn connect(
        settings: &AdapterSettings,
        limits: StoreLimits,
        log: Logger,
    ) -> Result<RedisStreamsStore, AdapterError> {
        Ok(RedisStreamsStore {
            commands: Commands::new(
                parse_url(&settings.url, settings.ca_file())?,
                limits.timeout,
            ),
            prefix: settings.prefix.clone(),
            limits,
            connections: tokio::sync::watch::Sender::new(0),
            _log: log,
        })
    }

    fn stream_key(&self, ns: &str) -> String {
        format!("{}:rec:{}", self.prefix, ns_hash(ns))
    }

    fn session_key(&self, key: &str) -> String {
        format!("{}:rec:s:{key}", self.prefix)
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.commands.conn().await.map_err(unavailable)
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        self.commands.query(cmd).await.map_err(unavailable)
    }

    /// What `XINFO STREAM` says, `None` if there is no stream.
    async fn info(&self, key: &str) -> Result<Option<StreamInfo>, StoreError> {
        let mut c = self.conn().await?;
        let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .query_async(&mut c)
            .await;
        let v = match reply {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let fields = pairs(v);
        let id = |name: &str| fields.get(name).and_then(text).and_then(|t| pack(&t));
        let int = |name: &str| match fields.get(name) {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        };
        Ok(Some(StreamInfo {
            last: id("last-generated-id").unwrap_or(0),
            first: id("recorded-first-entry-id").unwrap_or(0),
            max_deleted: id("max-deleted-entry-id").unwrap_or(0),
            removed: int("entries-added").saturating_sub(int("length")),
            empty: int("length") == 0,
        }))
    }

    /// The record ids among the last `count` entries of stream `key`, with
    /// their sequences.
    async fn stored_ids(
        &self,
        key: &str,
        count: usize,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let v = self
            .query(
                redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(stream_entries(v)
            .into_iter()
            .filter_map(|(id, fields)| Some((text(fields.get("i")?)?, pack(&id)?)))
            .collect())
    }

    fn min_id(&self) -> String {
        let ms = now_ms().saturating_sub(self.limits.max_age.as_millis() as u64);
        format!("{ms}-0")
    }
}

impl RecoveryStore for RedisStreamsStore {
    fn append<'a>(
        &'a self,
        ns: &'a str,
        records: Vec<(String, Bytes)>,
        retry: bool,
    ) -> BoxFuture<'a, Vec<Result<u64, StoreError>>> {
        async move {
            let n = records.len();
            let key = self.stream_key(ns);
            // A retry: what an earlier attempt did store is at the stream's
            // end (give or take other nodes' appends meanwhile).
            let stored = if retry {
                match self.stored_ids(&key, n * 2 + 1024).await {
                    Ok(ids) => ids,
                    Err(e) => return vec![Err(e); n],
                }
            } else {
                HashMap::new()
            };
            let fresh: Vec<&(String, Bytes)> = records
                .iter()
                .filter(|(id, _)| !stored.contains_key(id))
                .collect();
            let mut pipe = redis::pipe();
            for (id, data) in &fresh {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg(self.limits.max_len)
                    .arg("*")
                    .arg("d")
                    .arg(data.as_ref())
                    .arg("i")
                    .arg(id);
            }
            pipe.cmd("XTRIM")
                .arg(&key)
                .arg("MINID")
                .arg(self.min_id())
                .ignore();
            let mut c = match self.conn().await {
                Ok(c) => c,
                Err(e) => return vec![Err(e); n],
            };
            let ids: redis::RedisResult<Vec<String>> = pipe.query_async(&mut c).await;
            let added = match ids {
                Ok(ids) if ids.len() == fresh.len() => ids,
                Ok(ids) => {
                    let e = unavailable(format!("{} ids for {} records", ids.len(), fresh.len()));
                    return vec![Err(e); n];
                }
                Err(e) => return vec![Err(unavailable(e)); n],
            };
            let mut added = added.iter();
            records
                .iter()
                .map(|(id, _)| match stored.get(id) {
                    Some(seq) => Ok(*seq),
                    None => added
                        .next()
                        .and_then(|e| pack(e))
                        .ok_or_else(|| unavailable("bad entry id")),
                })
                .collect()
        }
        .boxed()
    }

    fn last_seq<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        async move { Ok(self.info(&self.stream_key(ns)).await?.map_or(0, |i| i.last)) }.boxed()
    }

    fn read_after<'a>(
        &'a self,
        ns: &'a str,
        after: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Range, StoreError>> {
        async move {
            let key = self.stream_key(ns);
            let Some(info) = self.info(&key).await? else {
                return Ok(Range {
                    records: Vec::new(),
                    truncated: after > 0,
                    last: 0,
                });
            };
            let (truncated, last) = (info.truncated_after(after), info.last);
            if truncated || last <= after {
                return Ok(Range {
                    records: Vec::new(),
                    truncated,
                    last,
                });
            }
            let v = self
                .query(
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg(format!("({}", unpack(after)))
                        .arg("+")
                        .arg("COUNT")
                        .arg(max),
                )
                .await?;
            let records = records(stream_entries(v));
            // Trimmed between the info and the range: not everything is here.
            let truncated = match self.info(&key).await? {
                Some(info) => info.truncated_after(after),
                None => true,
            };
            // Entries appended between the info and the range are read too:
            // `last` covers them (the caller skips what it read, once).
            Ok(Range::read(records, max, last, truncated))
        }
        .boxed()
    }

    fn tail(
        self: Arc<Self>,
        ns: String,
        after: u64,
    ) -> BoxStream<'static, Result<Record, StoreError>> {
        let key = self.stream_key(&ns);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.limits.timeout))
            .set_response_timeout(Some(BLOCK + self.limits.timeout));
        let client = self.commands.client().clone();
        let start = async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(unavailable)
        };
        futures_util::stream::once(start)
            .flat_map(move |conn| {
                let key = key.clone();
                let state = conn.map(|c| (c, after, Vec::<Record>::new().into_iter()));
                futures_util::stream::unfold(Some(state), move |state| {
                    let key = key.clone();
                    async move {
                        let (mut c, mut last, mut batch) = match state? {
                            Ok(s) => s,
                            Err(e) => return Some((Err(e), None)),
                        };
                        loop {
                            if let Some(r) = batch.next() {
                                last = r.seq;
                                return Some((Ok(r), Some(Ok((c, last, batch)))));
                            }
                            let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
                                .arg("COUNT")
                                .arg(512)
                                .arg("BLOCK")
                                .arg(BLOCK.as_millis() as u64)
                                .arg("STREAMS")
                                .arg(&key)
                                .arg(unpack(last))
                                .query_async(&mut c)
                                .await;
                            let v = match reply {
                                Ok(v) => v,
                                Err(e) => return Some((Err(unavailable(e)), None)),
                            };
                            let found = records(xread_entries(v));
                            batch = found.into_iter();
                        }
                    }
                })
            })
            .boxed()
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(Bytes, Token)>, StoreError>> {
        async move {
            let token: Token = rand::random::<u64>() | 1;
            let v = self
                .query(
                    redis::cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg(self.session_key(key))
                        .arg(token),
                )
                .await?;
            Ok(match v {
                Value::BulkString(b) => Some((Bytes::from(b), token)),
                _ => None,
            })
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        token: Option<Token>,
    ) -> BoxFuture<'a, Result<Option<Token>, StoreError>> {
        async move {
            let next: Token = rand::random::<u64>() | 1;
            let v = self
                .query(
                    redis::cmd("EVAL")
                        .arg(WRITE)
                        .arg(1)
                        .arg(self.session_key(key))
                        .arg(token.unwrap_or(0))
                        .arg(next)
                        .arg(value.as_ref())
                        .arg(self.limits.session_ttl.as_millis() as u64),
                )
                .await?;
            Ok(matches!(v, Value::Int(1)).then_some(next))
        }
        .boxed()
    }

    fn remove<'a>(&'a self, key: &'a str, token: Token) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.query(
                redis::cmd("EVAL")
                    .arg(REMOVE)
                    .arg(1)
                    .arg(self.session_key(key))
                    .arg(token),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn reconnected(&self) -> tokio::sync::watch::Receiver<u64> {
        // A tail's own connection fails with the server: it starts again by
        // itself.
        self.connections.subscribe()
    }

    fn trim<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, ()> {
        async move {
            let _ = self
                .query(
                    redis::cmd("XTRIM")
                        .arg(self.stream_key(ns))
                        .arg("MINID")
                        .arg(self.min_id()),
                )
                .await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_pack_in_order_and_back() {
        let a = pack("1733000000000-0").unwrap();
        let b = pack("1733000000000-7").unwrap();
        let c = pack("1733000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(unpack(b), "1733000000000-7");
        assert_eq!(pack("junk"), None);
        assert_eq!(pack("1-x"), None);
    }
}
