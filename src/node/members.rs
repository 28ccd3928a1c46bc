//! A room's or a user's members by sid: a [`VecMap`] while there are a few,
//! a hash table once there are more.
//!
//! Most keys have one member or a handful: a user's room and actor hold
//! that user's sockets, a role's or a channel's room may hold thousands. A
//! hash table allocates four slots for its first entry (about 200 bytes
//! with a member's address), and a socket in service mode was in four of
//! them: its user's room and user, in the registry and in each actor's
//! working copy (docs/decisions.md, "Idle memory", ninth session). Up to
//! [`FEW`] members are a vector, searched in order (a sid comparison is a
//! length and a few words); past it, the table; back to the vector when a
//! table has shrunk to a quarter of [`FEW`] (not at [`FEW`]: a room that
//! hovers around it would convert at every join and leave).

use std::collections::hash_map;
use std::collections::HashMap;

use super::vec_map::{self, VecMap};
use crate::engineio::Sid;

/// The most members kept as a vector.
pub(crate) const FEW: usize = 8;

pub(crate) enum MemberMap<V> {
    Few(VecMap<Sid, V>),
    Many(HashMap<Sid, V>),
}

impl<V> Default for MemberMap<V> {
    fn default() -> Self {
        MemberMap::Few(VecMap::default())
    }
}

impl<V> MemberMap<V> {
    /// Insert or replace the member `sid`; the value it replaces.
    pub fn insert(&mut self, sid: Sid, v: V) -> Option<V> {
        match self {
            MemberMap::Few(m) if m.len() < FEW || m.contains_key(&sid) => m.insert(sid, v),
            MemberMap::Few(m) => {
                let mut table = HashMap::with_capacity(2 * FEW);
                table.extend(std::mem::take(m));
                table.insert(sid, v);
                *self = MemberMap::Many(table);
                None
            }
            MemberMap::Many(t) => t.insert(sid, v),
        }
    }

    pub fn remove(&mut self, sid: &Sid) -> Option<V> {
        match self {
            MemberMap::Few(m) => m.remove(sid),
            MemberMap::Many(t) => {
                let v = t.remove(sid);
                if t.len() <= FEW / 4 {
                    let mut few = VecMap::default();
                    for (k, v) in t.drain() {
                        few.insert(k, v);
                    }
                    *self = MemberMap::Few(few);
                }
                v
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MemberMap::Few(m) => m.len(),
            MemberMap::Many(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> Iter<'_, V> {
        match self {
            MemberMap::Few(m) => Iter::Few(m.iter()),
            MemberMap::Many(t) => Iter::Many(t.iter()),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Sid> {
        self.iter().map(|(k, _)| k)
    }
}

impl<V> FromIterator<(Sid, V)> for MemberMap<V> {
    fn from_iter<I: IntoIterator<Item = (Sid, V)>>(iter: I) -> Self {
        let mut m = MemberMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<'a, V> IntoIterator for &'a MemberMap<V> {
    type Item = (&'a Sid, &'a V);
    type IntoIter = Iter<'a, V>;
    fn into_iter(self) -> Iter<'a, V> {
        self.iter()
    }
}

pub(crate) enum Iter<'a, V> {
    Few(vec_map::Iter<'a, Sid, V>),
    Many(hash_map::Iter<'a, Sid, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a Sid, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(i) => i.next(),
            Iter::Many(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Few(i) => i.size_hint(),
            Iter::Many(i) => i.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sids(n: usize) -> Vec<Sid> {
        (0..n).map(|_| Sid::random()).collect()
    }

    fn is_few<V>(m: &MemberMap<V>) -> bool {
        matches!(m, MemberMap::Few(_))
    }

    #[test]
    fn a_vector_up_to_few_then_a_table_and_back_once_small() {
        let ids = sids(3 * FEW);
        let mut m = MemberMap::default();
        for (i, sid) in ids.iter().enumerate().take(FEW) {
            assert_eq!(m.insert(sid.clone(), i), None);
        }
        assert!(is_few(&m), "{FEW} members are a vector");
        assert_eq!(m.insert(ids[0].clone(), 100), Some(0), "replaced in place");
        assert!(is_few(&m));
        for (i, sid) in ids.iter().enumerate().skip(FEW) {
            assert_eq!(m.insert(sid.clone(), i), None);
        }
        assert!(!is_few(&m));
        assert_eq!(m.len(), 3 * FEW);
        let mut seen: Vec<usize> = m.iter().map(|(_, v)| *v).collect();
        seen.sort();
        assert_eq!(seen[..3], [1, 2, 3]);
        assert_eq!(seen.len(), 3 * FEW);
        // Down to FEW / 4 + 1: still a table; one fewer: a vector again,
        // with every member left.
        for sid in &ids[..3 * FEW - FEW / 4 - 1] {
            assert!(m.remove(sid).is_some());
        }
        assert!(!is_few(&m));
        assert!(m.remove(&ids[3 * FEW - FEW / 4 - 1]).is_some());
        assert!(is_few(&m));
        let left: Vec<&Sid> = m.keys().collect();
        assert_eq!(left.len(), FEW / 4);
        for sid in &ids[3 * FEW - FEW / 4..] {
            assert!(left.contains(&sid));
        }
        assert_eq!(m.remove(&ids[0]), None, "gone already");
        for sid in &ids[3 * FEW - FEW / 4..] {
            m.remove(sid);
        }
        assert!(m.is_empty());
    }

    #[test]
    fn built_from_an_iterator_like_inserted_one_by_one() {
        let ids = sids(2 * FEW);
        let m: MemberMap<usize> = ids.iter().cloned().zip(0..).collect();
        assert_eq!(m.len(), 2 * FEW);
        assert!(!is_few(&m));
        let few: MemberMap<usize> = ids[..2].iter().cloned().zip(0..).collect();
        assert!(is_few(&few));
        assert_eq!(few.iter().count(), 2);
    }
}
