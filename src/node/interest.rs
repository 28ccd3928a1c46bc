//! Who is interested in what, on this node: the one owner of record of room
//! membership (a namespace's sockets are the members of its namespace
//! room), of each user's sockets, and, through the creation hook, of the
//! node's cluster interest (a node subscribes to a room's subject exactly
//! while the room has an actor here).
//!
//! Joins and leaves pass through here under one lock, and the membership
//! message is sent to the actor while the lock is held: a join can never
//! reach an actor that is being retired, a room's actor is retired (its last
//! address dropped) exactly when its last member leaves, and the hook's calls
//! for one key come in the order of the changes. The actors keep a working
//! copy of their members, to fan out without a lock; when one is restarted
//! by its supervisor it rebuilds that copy from here ([`Roster`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use actix::prelude::*;
use parking_lot::RwLock;

use super::delivery::MemberConn;
use super::members::MemberMap;
use crate::engineio::Sid;

/// Add a member to a room or user actor.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct AddMember {
    pub sid: Sid,
    pub ns: Arc<str>,
    /// Deliveries and disconnects both go through it.
    pub conn: MemberConn,
}

/// Remove a member from a room or user actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    pub sid: Sid,
}

struct Entry<A: Actor> {
    addr: Addr<A>,
    /// By sid, which is the map's key only: a namespace room holds every
    /// socket of its namespace, and a second copy of each sid was 16 bytes
    /// in each of its slots. A vector while there are a few ([`MemberMap`]).
    members: MemberMap<Member>,
}

/// A member as the registry keeps it (an [`AddMember`] without its sid).
struct Member {
    ns: Arc<str>,
    conn: MemberConn,
}

type Entries<K, A> = Arc<RwLock<HashMap<K, Entry<A>>>>;

/// Starts the actor of one key, handing it its roster.
type Starter<K, A> = Box<dyn Fn(&K, Roster<K, A>) -> Addr<A> + Send + Sync>;

/// Told when a key's actor is created (`true`) or retired (`false`). Runs
/// under the registry's lock, so the calls for one key come in the order of
/// the changes (the cluster's interest relies on it); it must not block.
type Hook<K> = Box<dyn Fn(&K, bool) + Send + Sync>;

/// One key's members as the registry knows them: what a restarted actor
/// rebuilds its state from.
pub struct Roster<K, A: Actor> {
    entries: Entries<K, A>,
    key: K,
}

impl<K: Hash + Eq, A: Actor> Roster<K, A> {
    /// The key's members now (empty once the key is retired).
    pub fn members(&self) -> Vec<AddMember> {
        self.entries
            .read()
            .get(&self.key)
            .map(|e| {
                e.members
                    .iter()
                    .map(|(sid, m)| AddMember {
                        sid: sid.clone(),
                        ns: m.ns.clone(),
                        conn: m.conn.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A map from key to a supervised actor and its members.
pub struct Registry<K, A: Actor> {
    entries: Entries<K, A>,
    start: Starter<K, A>,
    hook: Option<Hook<K>>,
}

impl<K, A> Registry<K, A>
where
    K: Hash + Eq + Clone,
    A: Actor + Handler<AddMember> + Handler<RemoveMember>,
    A::Context: actix::dev::ToEnvelope<A, AddMember> + actix::dev::ToEnvelope<A, RemoveMember>,
{
    pub fn new(start: impl Fn(&K, Roster<K, A>) -> Addr<A> + Send + Sync + 'static) -> Self {
        Registry {
            entries: Arc::new(RwLock::new(HashMap::new())),
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
            let roster = Roster {
                entries: self.entries.clone(),
                key: key.clone(),
            };
            Entry {
                addr: (self.start)(key, roster),
                members: MemberMap::default(),
            }
        });
        entry.members.insert(
            member.sid.clone(),
            Member {
                ns: member.ns.clone(),
                conn: member.conn.clone(),
            },
        );
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
        if entry.members.remove(&sid).is_none() {
            return false;
        }
        entry.addr.do_send(RemoveMember { sid });
        if entry.members.is_empty() {
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

    /// `f` of up to `n` of the actors, from position `from` of the
    /// registry's iteration order on (the mailbox probe's round-robin; it
    /// walks the map under its read lock).
    pub fn sample<T>(&self, from: usize, n: usize, f: impl Fn(&Addr<A>) -> T) -> Vec<T> {
        self.entries
            .read()
            .values()
            .skip(from)
            .take(n)
            .map(|e| f(&e.addr))
            .collect()
    }

    /// How many keys have an actor.
    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    #[cfg(any(test, feature = "internals"))]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
