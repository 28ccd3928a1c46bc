//! Which room and user actors exist on this node.
//!
//! Joins and leaves pass through here under one lock, and the membership
//! message is sent while the lock is held: a join can never reach an actor
//! that is being retired, and a room's actor is retired (its last address
//! dropped) exactly when its last member leaves.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::RwLock;

use super::delivery::{Deliver, DisconnectSocket};
use crate::engineio::Sid;

/// Add a member to a room or user actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMember {
    pub sid: Sid,
    pub ns: Arc<str>,
    pub conn: Recipient<Deliver>,
    pub control: Recipient<DisconnectSocket>,
}

/// Remove a member from a room or user actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    pub sid: Sid,
}

struct Entry<A: Actor> {
    addr: Addr<A>,
    members: usize,
}

/// Starts the actor of one key.
type Starter<K, A> = Box<dyn Fn(&K) -> Addr<A> + Send + Sync>;

/// Told when a key's actor is created (`true`) or retired (`false`). Runs
/// under the registry's lock, so the calls for one key come in the order of
/// the changes (the cluster's interest relies on it); it must not block.
type Hook<K> = Box<dyn Fn(&K, bool) + Send + Sync>;

/// A map from key to a supervised actor, counted by membership.
pub struct Registry<K, A: Actor> {
    entries: RwLock<HashMap<K, Entry<A>>>,
    start: Starter<K, A>,
    hook: Option<Hook<K>>,
}

impl<K, A> Registry<K, A>
where
    K: Hash + Eq + Clone,
    A: Actor + Handler<AddMember> + Handler<RemoveMember>,
    A::Context: actix::dev::ToEnvelope<A, AddMember> + actix::dev::ToEnvelope<A, RemoveMember>,
{
    pub fn new(start: impl Fn(&K) -> Addr<A> + Send + Sync + 'static) -> Self {
        Registry {
            entries: RwLock::new(HashMap::new()),
            start: Box::new(start),
            hook: None,
        }
    }

    /// Call `hook(key, true)` when a key's actor is created and
    /// `hook(key, false)` when it is retired (see [`Hook`]).
    pub fn with_hook(mut self, hook: impl Fn(&K, bool) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Returns true when this join started the actor.
    pub fn join(&self, key: &K, member: AddMember) -> bool {
        let mut entries = self.entries.write();
        let mut created = false;
        let entry = entries.entry(key.clone()).or_insert_with(|| {
            created = true;
            Entry {
                addr: (self.start)(key),
                members: 0,
            }
        });
        entry.members += 1;
        entry.addr.do_send(member);
        if created {
            if let Some(hook) = &self.hook {
                hook(key, true);
            }
        }
        created
    }

    /// Returns true when this leave retired the actor.
    pub fn leave(&self, key: &K, sid: Sid) -> bool {
        let mut entries = self.entries.write();
        let Some(entry) = entries.get_mut(key) else {
            return false;
        };
        entry.addr.do_send(RemoveMember { sid });
        entry.members = entry.members.saturating_sub(1);
        if entry.members == 0 {
            // Dropping the registry's address lets the actor stop once its
            // mailbox is drained and in-flight broadcasts are done with it.
            entries.remove(key);
            if let Some(hook) = &self.hook {
                hook(key, false);
            }
            return true;
        }
        false
    }

    pub fn get(&self, key: &K) -> Option<Addr<A>> {
        self.entries.read().get(key).map(|e| e.addr.clone())
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys for which `pred` holds, e.g. the rooms of one namespace.
    pub fn keys_where(&self, pred: impl Fn(&K) -> bool) -> Vec<K> {
        self.entries
            .read()
            .keys()
            .filter(|k| pred(k))
            .cloned()
            .collect()
    }
}
