//! The notify store in the node's memory (no broker): revocations and kept
//! messages live as long as the process, bounded by [`NotifyLimits`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::{Kept, NotifyError, NotifyLimits, NotifyStore, Revocation, RevocationEvent};

struct UserKept {
    /// (id, kept at, message), oldest first.
    messages: VecDeque<(u64, Instant, Bytes)>,
}

#[derive(Default)]
struct State {
    users: HashMap<String, UserKept>,
    /// Users in the order they started having kept messages (lazily
    /// cleaned): the front is evicted first past `max_users`.
    order: VecDeque<String>,
    next_id: u64,
    revoked: HashMap<String, (u64, Instant)>,
}

/// See the module doc.
pub struct MemoryNotifyStore {
    limits: NotifyLimits,
    state: Mutex<State>,
    revocations: broadcast::Sender<Revocation>,
}

impl MemoryNotifyStore {
    pub fn new(limits: NotifyLimits) -> MemoryNotifyStore {
        MemoryNotifyStore {
            limits,
            state: Mutex::new(State::default()),
            revocations: broadcast::channel(1024).0,
        }
    }

    /// Users with kept messages now.
    #[cfg(test)]
    pub fn users(&self) -> usize {
        self.state.lock().users.len()
    }
}

impl State {
    fn expire(&mut self, user: &str, limits: &NotifyLimits, now: Instant) {
        if let Some(kept) = self.users.get_mut(user) {
            while kept
                .messages
                .front()
                .is_some_and(|(_, at, _)| now.duration_since(*at) > limits.ttl)
            {
                kept.messages.pop_front();
            }
            if kept.messages.is_empty() {
                self.users.remove(user);
            }
        }
    }
}

impl NotifyStore for MemoryNotifyStore {
    fn revoke<'a>(&'a self, user: &'a str, at_s: u64) -> BoxFuture<'a, Result<(), NotifyError>> {
        let now = Instant::now();
        {
            let mut state = self.state.lock();
            let ttl = self.limits.revocation_ttl;
            state
                .revoked
                .retain(|_, (_, at)| now.duration_since(*at) <= ttl);
            let entry = state.revoked.entry(user.to_owned()).or_insert((0, now));
            *entry = (entry.0.max(at_s), now);
        }
        let _ = self.revocations.send(Revocation {
            user: user.to_owned(),
            at_s,
        });
        async { Ok(()) }.boxed()
    }

    fn revocations(self: Arc<Self>) -> BoxStream<'static, Result<RevocationEvent, NotifyError>> {
        let rx = self.revocations.subscribe();
        let now: Vec<RevocationEvent> = self
            .state
            .lock()
            .revoked
            .iter()
            .map(|(user, (at_s, _))| {
                RevocationEvent::Revoked(Revocation {
                    user: user.clone(),
                    at_s: *at_s,
                })
            })
            .chain([RevocationEvent::UpToDate])
            .collect();
        let live = futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(r) => return Some((Ok(RevocationEvent::Revoked(r)), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        futures_util::stream::iter(now.into_iter().map(Ok))
            .chain(live)
            .boxed()
    }

    fn keep<'a>(&'a self, user: &'a str, message: Bytes) -> BoxFuture<'a, Result<(), NotifyError>> {
        let now = Instant::now();
        let limits = &self.limits;
        let mut state = self.state.lock();
        state.expire(user, limits, now);
        let id = state.next_id;
        state.next_id += 1;
        let fresh = !state.users.contains_key(user);
        if fresh {
            // Past max_users, the users who have had kept messages longest go.
            while state.users.len() >= limits.max_users {
                let Some(old) = state.order.pop_front() else {
                    break;
                };
                state.users.remove(&old);
            }
            state.order.push_back(user.to_owned());
        }
        let kept = state.users.entry(user.to_owned()).or_insert(UserKept {
            messages: VecDeque::new(),
        });
        kept.messages.push_back((id, now, message));
        while kept.messages.len() > limits.max_per_user {
            kept.messages.pop_front();
        }
        // `order` holds users who have since gone: drop them from its front
        // so it stays about as long as `users`.
        while state
            .order
            .front()
            .is_some_and(|u| !state.users.contains_key(u))
        {
            state.order.pop_front();
        }
        async { Ok(()) }.boxed()
    }

    fn kept<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        let mut state = self.state.lock();
        state.expire(user, &self.limits, Instant::now());
        let kept = match state.users.get(user) {
            None => Kept::default(),
            Some(k) => Kept {
                messages: k.messages.iter().map(|(_, _, m)| m.clone()).collect(),
                end: k.messages.back().map(|(id, _, _)| id.to_string()),
            },
        };
        async { Ok(kept) }.boxed()
    }

    fn forget<'a>(&'a self, user: &'a str, end: &'a str) -> BoxFuture<'a, Result<(), NotifyError>> {
        if let Ok(end) = end.parse::<u64>() {
            let mut state = self.state.lock();
            if let Some(kept) = state.users.get_mut(user) {
                kept.messages.retain(|(id, _, _)| *id > end);
                if kept.messages.is_empty() {
                    state.users.remove(user);
                }
            }
        }
        async { Ok(()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max_per_user: usize, max_users: usize, ttl_ms: u64) -> NotifyLimits {
        NotifyLimits {
            max_per_user,
            ttl: Duration::from_millis(ttl_ms),
            max_users,
            revocation_ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        }
    }

    fn texts(k: &Kept) -> Vec<String> {
        k.messages
            .iter()
            .map(|m| String::from_utf8(m.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn keeps_the_newest_per_user_in_order_until_forgotten() {
        let store = MemoryNotifyStore::new(limits(3, 10, 60_000));
        for n in 0..5 {
            store.keep("42", Bytes::from(n.to_string())).await.unwrap();
        }
        let kept = store.kept("42").await.unwrap();
        assert_eq!(texts(&kept), ["2", "3", "4"]);
        store.keep("42", Bytes::from("5")).await.unwrap();
        store
            .forget("42", kept.end.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(texts(&store.kept("42").await.unwrap()), ["5"]);
        assert_eq!(store.kept("7").await.unwrap(), Kept::default());
    }

    #[tokio::test]
    async fn drops_what_is_past_its_age_and_the_oldest_users_past_the_bound() {
        let store = MemoryNotifyStore::new(limits(10, 2, 50));
        store.keep("a", Bytes::from("old")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(store.kept("a").await.unwrap().messages.is_empty());
        for u in ["a", "b", "c"] {
            store.keep(u, Bytes::from(u)).await.unwrap();
        }
        assert_eq!(store.users(), 2);
        assert!(store.kept("a").await.unwrap().messages.is_empty());
        assert_eq!(texts(&store.kept("c").await.unwrap()), ["c"]);
    }

    #[tokio::test]
    async fn revocations_stream_what_is_kept_then_what_comes() {
        let store = Arc::new(MemoryNotifyStore::new(limits(1, 1, 1)));
        store.revoke("42", 100).await.unwrap();
        let mut stream = store.clone().revocations();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            RevocationEvent::Revoked(Revocation {
                user: "42".into(),
                at_s: 100
            })
        );
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            RevocationEvent::UpToDate
        );
        store.revoke("7", 200).await.unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            RevocationEvent::Revoked(Revocation {
                user: "7".into(),
                at_s: 200
            })
        );
    }
}
