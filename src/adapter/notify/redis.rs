//! The notify store in Redis (`adapter.kind = redis`).
//!
//! - Revocations: one stream `<prefix>:revoked`, entries with fields `u`
//!   (the user) and `a` (the revocation's second), trimmed by age (`MINID`)
//!   at every append. Every node reads it whole at start, then follows it
//!   with `XREAD BLOCK` on a connection of its own.
//! - Kept messages: a stream per user, `<prefix>:kept:<user hex>`, field `d`;
//!   `XADD … MAXLEN = max_per_user`, the key expiring `ttl` after its last
//!   message, and entries older than the TTL skipped and trimmed at reads.
//!   Forgetting trims the stream below the entry after the last delivered.
//!
//! What a Redis without persistence loses when it dies is lost here too
//! (run it with AOF for offline delivery that survives Redis restarts).

use crate::adapter::settings::AdapterSettings;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManager;
use redis::{AsyncConnectionConfig, Value};
use slog::Logger;

use super::{
    unavailable, user_token, Kept, NotifyError, NotifyLimits, NotifyStore, Revocation,
    RevocationEvent,
};
use crate::adapter::redis::{parse_url, Commands};
use crate::adapter::store::redis::{now_ms, stream_entries, text, xread_entries, Fields};
use crate::adapter::AdapterError;

/// How long one `XREAD` of the revocations' tail blocks.
const BLOCK: Duration = Duration::from_secs(1);

/// See the module doc.
pub struct RedisNotifyStore {
    prefix: String,
    limits: NotifyLimits,
    commands: Commands,
    _log: Logger,
}

fn bytes(fields: &Fields, name: &str) -> Option<Bytes> {
    match fields.get(name)? {
        Value::BulkString(b) => Some(Bytes::from(b.clone())),
        _ => None,
    }
}

/// The id right after `id` (`<ms>-<n>` → `<ms>-<n+1>`).
fn successor(id: &str) -> Option<String> {
    let (ms, n) = id.split_once('-')?;
    let (ms, n): (u64, u64) = (ms.parse().ok()?, n.parse().ok()?);
    Some(format!("{ms}-{}", n + 1))
}

impl RedisNotifyStore {
    /// Fails only on a malformed URL; connects on first use.
    pub fn connect(
        settings: &AdapterSettings,
        limits: NotifyLimits,
        log: Logger,
    ) -> Result<RedisNotifyStore, AdapterError> {
        Ok(RedisNotifyStore {
            commands: Commands::new(
                parse_url(&settings.url, settings.ca_file())?,
                limits.timeout,
            ),
            prefix: settings.prefix.clone(),
            limits,
            _log: log,
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, NotifyError> {
        self.commands.conn().await.map_err(unavailable)
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, NotifyError> {
        self.commands.query(cmd).await.map_err(unavailable)
    }

    fn revoked_key(&self) -> String {
        format!("{}:revoked", self.prefix)
    }

    fn kept_key(&self, user: &str) -> String {
        format!("{}:kept:{}", self.prefix, user_token(user))
    }

    fn min_id(ttl: Duration) -> String {
        format!("{}-0", now_ms().saturating_sub(ttl.as_millis() as u64))
    }
}

fn revocation(fields: &Fields) -> Option<Revocation> {
    Some(Revocation {
        user: text(fields.get("u")?)?,
        at_s: text(fields.get("a")?)?.parse().ok()?,
    })
}

impl NotifyStore for RedisNotifyStore {
    fn revoke<'a>(&'a self, user: &'a str, at_s: u64) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            self.query(
                redis::cmd("XADD")
                    .arg(self.revoked_key())
                    .arg("MINID")
                    .arg(Self::min_id(self.limits.revocation_ttl))
                    .arg("*")
                    .arg("u")
                    .arg(user)
                    .arg("a")
                    .arg(at_s.to_string()),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }

    fn revocations(self: Arc<Self>) -> BoxStream<'static, Result<RevocationEvent, NotifyError>> {
        let key = self.revoked_key();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.limits.timeout))
            .set_response_timeout(Some(BLOCK + self.limits.timeout));
        let client = self.commands.client().clone();
        let ttl = self.limits.revocation_ttl;
        let start = async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(unavailable)
        };
        futures_util::stream::once(start)
            .flat_map(move |conn| {
                let key = key.clone();
                // From the oldest revocation still within its TTL.
                let from = Self::min_id(ttl);
                let state =
                    conn.map(|c| (c, from, false, Vec::<RevocationEvent>::new().into_iter()));
                futures_util::stream::unfold(Some(state), move |state| {
                    let key = key.clone();
                    async move {
                        let (mut c, mut last, mut caught_up, mut batch) = match state? {
                            Ok(s) => s,
                            Err(e) => return Some((Err(e), None)),
                        };
                        loop {
                            if let Some(r) = batch.next() {
                                return Some((Ok(r), Some(Ok((c, last, caught_up, batch)))));
                            }
                            let reply: redis::RedisResult<Value> = redis::cmd("XREAD")
                                .arg("COUNT")
                                .arg(512)
                                .arg("BLOCK")
                                .arg(BLOCK.as_millis() as u64)
                                .arg("STREAMS")
                                .arg(&key)
                                .arg(&last)
                                .query_async(&mut c)
                                .await;
                            let v = match reply {
                                Ok(v) => v,
                                Err(e) => return Some((Err(unavailable(e)), None)),
                            };
                            let found = xread_entries(v);
                            if let Some((id, _)) = found.last() {
                                last = id.clone();
                            }
                            let mut events: Vec<RevocationEvent> = found
                                .iter()
                                .filter_map(|(_, f)| revocation(f))
                                .map(RevocationEvent::Revoked)
                                .collect();
                            // A read that did not fill its COUNT reached the end.
                            if !caught_up && found.len() < 512 {
                                caught_up = true;
                                events.push(RevocationEvent::UpToDate);
                            }
                            batch = events.into_iter();
                        }
                    }
                })
            })
            .boxed()
    }

    fn keep<'a>(&'a self, user: &'a str, message: Bytes) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            let key = self.kept_key(user);
            let mut pipe = redis::pipe();
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg(self.limits.max_per_user)
                .arg("*")
                .arg("d")
                .arg(message.as_ref())
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(self.limits.ttl.as_millis() as u64)
                .ignore();
            let mut c = self.conn().await?;
            pipe.query_async::<()>(&mut c).await.map_err(unavailable)
        }
        .boxed()
    }

    fn kept<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        async move {
            let v = self
                .query(
                    redis::cmd("XRANGE")
                        .arg(self.kept_key(user))
                        .arg(Self::min_id(self.limits.ttl))
                        .arg("+"),
                )
                .await?;
            let found = stream_entries(v);
            Ok(Kept {
                end: found.last().map(|(id, _)| id.clone()),
                messages: found
                    .iter()
                    .filter_map(|(_, fields)| bytes(fields, "d"))
                    .collect(),
            })
        }
        .boxed()
    }

    fn forget<'a>(&'a self, user: &'a str, end: &'a str) -> BoxFuture<'a, Result<(), NotifyError>> {
        async move {
            let Some(next) = successor(end) else {
                return Ok(());
            };
            self.query(
                redis::cmd("XTRIM")
                    .arg(self.kept_key(user))
                    .arg("MINID")
                    .arg(next),
            )
            .await
            .map(|_| ())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors() {
        assert_eq!(successor("1700-0").as_deref(), Some("1700-1"));
        assert_eq!(successor("1700-41").as_deref(), Some("1700-42"));
        assert_eq!(successor("x"), None);
    }
}
