//! What service mode keeps beside the broadcasts: revocations and the
//! messages kept for users who are offline (offline delivery), in the broker
//! when there is one so that every node sees the same, and a node restart
//! loses nothing:
//!
//! - [`memory::MemoryNotifyStore`]: in the node's memory, bounded (no broker);
//! - [`jetstream::JetStreamNotifyStore`]: NATS JetStream (`adapter.kind =
//!   nats`), which also serves the server API on `<prefix>.api.<command>`;
//! - [`redis::RedisNotifyStore`]: Redis Streams (`adapter.kind = redis`).
//!
//! The stores know bytes, users and positions, nothing of Socket.IO.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use slog::Logger;
use tokio::sync::mpsc;

use super::{AdapterError, AdapterKind, AdapterSettings};

pub mod jetstream;
pub mod memory;
pub mod redis;

/// The bounds of what a store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyLimits {
    /// Messages kept per user, at most (the oldest go first).
    pub max_per_user: usize,
    /// Kept messages older than this are dropped.
    pub ttl: Duration,
    /// Users the in-memory store keeps messages for, at most.
    pub max_users: usize,
    /// How long a revocation is kept.
    pub revocation_ttl: Duration,
    /// How long one broker operation may take.
    pub timeout: Duration,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The broker did not answer in time or is unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> NotifyError {
    NotifyError::Unavailable(e.to_string())
}

/// A user's tokens issued (`iat`) before `at_s` (unix seconds) are revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub user: String,
    pub at_s: u64,
}

/// What following the revocations yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationEvent {
    Revoked(Revocation),
    /// Every revocation kept when the follow began has been yielded.
    UpToDate,
}

/// A user's kept messages, oldest first, and where they end (to
/// [`NotifyStore::forget`] them once delivered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    pub messages: Vec<Bytes>,
    /// `None` when there are none.
    pub end: Option<String>,
}

/// A server API request that arrived on the bus (`<prefix>.api.<command>`).
pub struct ApiRequest {
    pub command: String,
    pub body: Bytes,
    /// Sends the answer to the requester (nothing if it asked for none).
    pub reply: Box<dyn FnOnce(Bytes) + Send>,
}

/// Revocations and kept messages, shared by every node. See the module doc.
pub trait NotifyStore: Send + Sync + 'static {
    /// Record that `user`'s tokens issued before `at_s` are revoked (for the
    /// revocation TTL). Resolves once the broker stored it.
    fn revoke<'a>(&'a self, user: &'a str, at_s: u64) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// Every revocation kept, [`RevocationEvent::UpToDate`], then each new
    /// one as any node makes it. Ends with an error when the broker
    /// connection is lost: start it again (everything is read again;
    /// applying a revocation twice is harmless).
    fn revocations(self: Arc<Self>) -> BoxStream<'static, Result<RevocationEvent, NotifyError>>;

    /// Keep `message` for `user` (bounded per user and in age).
    fn keep<'a>(&'a self, user: &'a str, message: Bytes) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// `user`'s kept messages, oldest first. They stay kept until
    /// [`NotifyStore::forget`].
    fn kept<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Kept, NotifyError>>;

    /// Forget `user`'s kept messages up to and including `end` (from
    /// [`Kept::end`]); newer ones stay.
    fn forget<'a>(&'a self, user: &'a str, end: &'a str) -> BoxFuture<'a, Result<(), NotifyError>>;

    /// The server API's requests on the bus, where the broker is NATS
    /// (`None` otherwise). One node of the cluster gets each request.
    fn api_requests(self: Arc<Self>) -> Option<mpsc::Receiver<ApiRequest>> {
        None
    }
}

/// The store for `[adapter]`: JetStream for NATS, Redis Streams for Redis,
/// the node's memory for memory. Returns at once (connections are made in
/// the background); fails only on a malformed URL.
pub async fn connect(
    settings: &AdapterSettings,
    limits: NotifyLimits,
    log: &Logger,
) -> Result<Arc<dyn NotifyStore>, AdapterError> {
    let log = log.new(slog::o!("store" => "notify"));
    Ok(match settings.kind {
        AdapterKind::Memory => Arc::new(memory::MemoryNotifyStore::new(limits)),
        AdapterKind::Nats => {
            Arc::new(jetstream::JetStreamNotifyStore::connect(settings, limits, log).await?)
        }
        AdapterKind::Redis => Arc::new(redis::RedisNotifyStore::connect(settings, limits, log)?),
    })
}

/// A user id as a broker name token: its bytes in hex, so any id (dots,
/// wildcards, spaces) names one subject or key, and no two ids the same.
pub(crate) fn user_token(user: &str) -> String {
    let mut out = String::with_capacity(user.len() * 2);
    for b in user.as_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The inverse of [`user_token`]; `None` for a token it did not make.
pub(crate) fn user_from_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tokens_round_trip_and_are_name_safe() {
        for user in ["42", "a.b", "*", "> x", "ünï", ""] {
            let t = user_token(user);
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
            assert_eq!(user_from_token(&t).as_deref(), Some(user));
        }
        assert_ne!(user_token("ab"), user_token("a.b"));
        assert_eq!(user_from_token("zz"), None);
        assert_eq!(user_from_token("abc"), None);
    }
}
