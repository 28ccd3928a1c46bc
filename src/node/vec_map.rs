//! A small map kept as a vector and searched in order, for the
//! per-connection and per-socket tables that hold none or a handful of
//! entries (a connection's sockets by namespace, a socket's extensions):
//! a search is a comparison or two, and an entry costs its own size, where
//! a hash table allocated four slots at least for the first one
//! (docs/decisions.md, "Idle memory").

use std::borrow::Borrow;

pub(crate) struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Eq, V> VecMap<K, V> {
    fn position<Q: Eq + ?Sized>(&self, k: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
    {
        self.0.iter().position(|(key, _)| key.borrow() == k)
    }

    /// Append, one slot at a time (a vector's first growth is to four).
    fn push(&mut self, k: K, v: V) -> usize {
        self.0.reserve_exact(1);
        self.0.push((k, v));
        self.0.len() - 1
    }

    pub fn contains_key<Q: Eq + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.position(k).is_some()
    }

    pub fn get<Q: Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.position(k).map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Eq + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.position(k).map(|i| &mut self.0[i].1)
    }

    /// Insert or replace the one entry of `k`; the value it replaces.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.position(&k) {
            Some(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            None => {
                self.push(k, v);
                None
            }
        }
    }

    /// The entry of `k`, made by `f` if there is none.
    pub fn get_or_insert_with(&mut self, k: K, f: impl FnOnce() -> V) -> &mut V {
        let i = match self.position(&k) {
            Some(i) => i,
            None => self.push(k, f()),
        };
        &mut self.0[i].1
    }

    pub fn remove<Q: Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.position(k)?;
        // Order is of no meaning: the last one takes the place.
        Some(self.0.swap_remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.0.iter())
    }
}

/// [`VecMap::iter`]'s iterator (a named type, for [`MemberMap`](super::members::MemberMap)'s).
pub(crate) struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;
    use std::sync::Arc;

    #[test]
    fn one_entry_per_key_found_by_borrowed_key() {
        let mut m: VecMap<Arc<str>, u32> = VecMap::default();
        assert_eq!(m.insert("/".into(), 1), None);
        assert_eq!(m.insert("/chat".into(), 2), None);
        assert_eq!(m.insert("/".into(), 3), Some(1));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("/"), Some(&3));
        *m.get_mut("/chat").unwrap() += 1;
        assert_eq!(*m.get_or_insert_with("/chat".into(), || 9), 3);
        assert_eq!(*m.get_or_insert_with("/new".into(), || 9), 9);
        assert_eq!(m.remove("/"), Some(3));
        assert!(!m.contains_key("/"));
        let mut keys: Vec<_> = m.keys().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["/chat", "/new"]);
        assert_eq!(m.values().sum::<u32>(), 12);
    }
}
