//! `PeerMap`: a manager's per-peer state, ordered by peer id, in two sorted vectors (the ids,
//! then the states in the same order).
//!
//! Owns only the ordering. A node has tens of peers, rarely more than 130: a lookup is a binary
//! search over a few cache lines of ids and one read of the state, where a B-tree of that size
//! is an internal node and a leaf (a cache miss each in a core that has gone cold, which in a
//! simulation of a thousand nodes every core is). Ids are handed out in increasing order, so
//! an insert is a push; a removal moves the few later entries down. Iteration is in id order,
//! as a `BTreeMap`'s, so nothing that depends on it changes.

use super::io::PeerId;

#[derive(Clone, Debug)]
pub struct PeerMap<V> {
    ids: Vec<PeerId>,
    states: Vec<V>,
}

impl<V> Default for PeerMap<V> {
    fn default() -> Self {
        PeerMap {
            ids: Vec::new(),
            states: Vec::new(),
        }
    }
}

impl<V> PeerMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn position(&self, peer: &PeerId) -> Result<usize, usize> {
        // The newest peer is the likeliest to be asked for, and is last.
        match self.ids.last() {
            Some(last) if last == peer => Ok(self.ids.len() - 1),
            Some(last) if last < peer => Err(self.ids.len()),
            _ => self.ids.binary_search(peer),
        }
    }

    /// Starts loading the ids a lookup searches (a hint, no effect on behaviour).
    pub fn prefetch(&self) {
        if let (Some(first), Some(last)) = (self.ids.first(), self.ids.last()) {
            super::fpindex::prefetch(first);
            super::fpindex::prefetch(last);
        }
    }

    #[inline]
    pub fn get(&self, peer: &PeerId) -> Option<&V> {
        self.position(peer).ok().map(|i| &self.states[i])
    }

    #[inline]
    pub fn get_mut(&mut self, peer: &PeerId) -> Option<&mut V> {
        self.position(peer).ok().map(|i| &mut self.states[i])
    }

    pub fn contains_key(&self, peer: &PeerId) -> bool {
        self.position(peer).is_ok()
    }

    /// Adds or replaces `peer`'s state; the state replaced.
    pub fn insert(&mut self, peer: PeerId, state: V) -> Option<V> {
        match self.position(&peer) {
            Ok(i) => Some(std::mem::replace(&mut self.states[i], state)),
            Err(i) => {
                self.ids.insert(i, peer);
                self.states.insert(i, state);
                None
            }
        }
    }

    pub fn remove(&mut self, peer: &PeerId) -> Option<V> {
        let i = self.position(peer).ok()?;
        self.ids.remove(i);
        Some(self.states.remove(i))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&PeerId, &V)> + ExactSizeIterator {
        self.ids.iter().zip(self.states.iter())
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&PeerId, &mut V)> + ExactSizeIterator {
        self.ids.iter().zip(self.states.iter_mut())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &PeerId> + ExactSizeIterator {
        self.ids.iter()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.states.iter()
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.states.iter_mut()
    }

    /// Keeps the peers for which `keep` says so, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&PeerId, &mut V) -> bool) {
        let ids = std::mem::take(&mut self.ids);
        let states = std::mem::take(&mut self.states);
        for (id, mut state) in ids.into_iter().zip(states) {
            if keep(&id, &mut state) {
                self.ids.push(id);
                self.states.push(state);
            }
        }
    }
}

impl<V> std::ops::Index<&PeerId> for PeerMap<V> {
    type Output = V;

    /// Panics when `peer` has no state, as a `BTreeMap`'s index does.
    fn index(&self, peer: &PeerId) -> &V {
        self.get(peer).expect("a peer in the map")
    }
}

impl<'a, V> IntoIterator for &'a PeerMap<V> {
    type Item = (&'a PeerId, &'a V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, PeerId>, std::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().zip(self.states.iter())
    }
}

impl<'a, V> IntoIterator for &'a mut PeerMap<V> {
    type Item = (&'a PeerId, &'a mut V);
    type IntoIter = std::iter::Zip<std::slice::Iter<'a, PeerId>, std::slice::IterMut<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.ids.iter().zip(self.states.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    #[test]
    fn it_behaves_as_a_btree_map_in_order_and_content() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut map = PeerMap::new();
        let mut model = BTreeMap::new();
        let mut next: PeerId = 0;
        for step in 0..5_000u32 {
            match rng.gen_range(0..10) {
                // Mostly new ids, as connections get; sometimes an old one again.
                0..=3 => {
                    let id = if rng.gen_bool(0.8) {
                        next += 1;
                        next
                    } else {
                        rng.gen_range(0..=next)
                    };
                    assert_eq!(map.insert(id, step), model.insert(id, step));
                }
                4..=5 => {
                    let id = rng.gen_range(0..=next);
                    assert_eq!(map.remove(&id), model.remove(&id));
                }
                6 => {
                    let cut = rng.gen_range(0..20);
                    map.retain(|id, v| (*id + u64::from(*v)) % 20 != cut);
                    model.retain(|id, v| (*id + u64::from(*v)) % 20 != cut);
                }
                _ => {
                    let id = rng.gen_range(0..=next + 1);
                    if let Some(v) = map.get_mut(&id) {
                        *v += 1;
                    }
                    if let Some(v) = model.get_mut(&id) {
                        *v += 1;
                    }
                    assert_eq!(map.get(&id), model.get(&id));
                    assert_eq!(map.contains_key(&id), model.contains_key(&id));
                }
            }
            assert_eq!(map.len(), model.len());
        }
        assert!(map.iter().eq(model.iter()));
        assert!(map.keys().rev().eq(model.keys().rev()));
    }
}
