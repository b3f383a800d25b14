//! An index from keyed 64-bit fingerprints to positions in a vector: open addressing with
//! linear probing, one 16-byte slot per entry in one array, and a prefetch for a fingerprint's
//! slot, so that a list of addresses can have its lookups in flight together instead of one
//! cache miss after another (a GETADDR answer is hundreds of lookups in a cold book).
//!
//! Owns only its slots. Never sees a key: two keys may share a fingerprint (1 in 2^64 a pair,
//! unaimable when fingerprints are keyed with a secret), so every candidate position is
//! confirmed by the caller.

/// A slot's position when it is empty.
const EMPTY: u32 = u32::MAX;
/// The fewest slots a non-empty index has.
const MIN_SLOTS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Slot {
    fingerprint: u64,
    position: u32,
}

const VACANT: Slot = Slot {
    fingerprint: 0,
    position: EMPTY,
};

#[derive(Clone, Debug, Default)]
pub struct FpIndex {
    /// A power of two long, at most half full (linear probing stays short at that load).
    slots: Vec<Slot>,
    len: usize,
}

impl FpIndex {
    pub fn with_capacity(entries: usize) -> FpIndex {
        let mut index = FpIndex::default();
        if entries > 0 {
            index.slots = vec![VACANT; (entries * 2).next_power_of_two().max(MIN_SLOTS)];
        }
        index
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Asks the CPU to start loading `fingerprint`'s slot; a hint, with no effect on results.
    #[inline]
    pub fn prefetch(&self, fingerprint: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[fingerprint as usize & self.mask()]);
        }
    }

    /// The first position under `fingerprint` that `is_key` confirms.
    #[inline]
    pub fn find(&self, fingerprint: u64, is_key: impl FnMut(usize) -> bool) -> Option<usize> {
        self.probe(fingerprint, is_key)
            .map(|i| self.slots[i].position as usize)
    }

    /// The first slot of `fingerprint`'s run holding that fingerprint with a position `hit`
    /// accepts.
    #[inline]
    fn probe(&self, fingerprint: u64, mut hit: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = fingerprint as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.position == EMPTY {
                return None;
            }
            if slot.fingerprint == fingerprint && hit(slot.position as usize) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `position` under `fingerprint` (the caller knows its key is not indexed yet).
    pub fn insert(&mut self, fingerprint: u64, position: usize) {
        let position = u32::try_from(position).expect("fewer than 2^32 - 1 entries");
        assert!(position != EMPTY, "fewer than 2^32 - 1 entries");
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(Slot {
            fingerprint,
            position,
        });
        self.len += 1;
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.mask();
        let mut i = slot.fingerprint as usize & mask;
        while self.slots[i].position != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![VACANT; size]);
        for slot in old.into_iter().filter(|s| s.position != EMPTY) {
            self.place(slot);
        }
    }

    /// The slot holding `position` under `fingerprint`.
    fn slot_of(&self, fingerprint: u64, position: usize) -> Option<usize> {
        self.probe(fingerprint, |p| p == position)
    }

    /// Removes `position` from under `fingerprint`; whether it was there.
    pub fn remove(&mut self, fingerprint: u64, position: usize) -> bool {
        let Some(mut hole) = self.slot_of(fingerprint, position) else {
            return false;
        };
        // Backward-shift deletion: every later slot of the run that may live in the hole
        // moves into it, so no lookup's probe ever stops at a gap before its slot.
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let slot = self.slots[next];
            if slot.position == EMPTY {
                break;
            }
            let home = slot.fingerprint as usize & mask;
            // Whether `home` lies cyclically in (hole, next]: then the slot stays.
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.slots[hole] = slot;
                hole = next;
            }
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        true
    }

    /// The entry under `fingerprint` at `from` moved to `to` (a swap-remove filled a hole).
    pub fn moved(&mut self, fingerprint: u64, from: usize, to: usize) {
        let i = self
            .slot_of(fingerprint, from)
            .expect("a moved entry is indexed");
        self.slots[i].position = u32::try_from(to).expect("positions fit");
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Starts loading the cache line holding `value`.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing into the program, and
    // the pointer comes from a live reference anyway. SSE is part of x86_64's baseline.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// Keys of a small range with deliberately colliding fingerprints (many share a home
    /// slot and some share a fingerprint), checked against a HashMap model through inserts,
    /// swap-removes and lookups.
    #[test]
    fn it_agrees_with_a_map_through_inserts_and_swap_removes() {
        let mut rng = StdRng::seed_from_u64(7);
        let fingerprint = |key: u32| u64::from(key % 61) * 1_024 + u64::from(key % 3);
        let mut keys: Vec<u32> = Vec::new();
        let mut index = FpIndex::with_capacity(0);
        let mut model: HashMap<u32, usize> = HashMap::new();
        for _ in 0..20_000 {
            let key = rng.gen_range(0..500u32);
            if let Some(&at) = model.get(&key) {
                if rng.gen_bool(0.5) {
                    // Swap-remove, as the address book does.
                    assert!(index.remove(fingerprint(key), at));
                    model.remove(&key);
                    let last = keys.len() - 1;
                    keys.swap_remove(at);
                    if at < last {
                        let moved = keys[at];
                        index.moved(fingerprint(moved), last, at);
                        model.insert(moved, at);
                    }
                }
            } else {
                keys.push(key);
                index.insert(fingerprint(key), keys.len() - 1);
                model.insert(key, keys.len() - 1);
            }
            let probe = rng.gen_range(0..500u32);
            let found = index.find(fingerprint(probe), |at| keys[at] == probe);
            assert_eq!(found, model.get(&probe).copied(), "key {probe}");
            assert_eq!(index.len(), model.len());
        }
        for (key, at) in &model {
            assert_eq!(
                index.find(fingerprint(*key), |p| keys[p] == *key),
                Some(*at)
            );
        }
    }

    #[test]
    fn an_empty_index_finds_nothing_and_removes_nothing() {
        let mut index = FpIndex::default();
        index.prefetch(5);
        assert_eq!(index.find(5, |_| true), None);
        assert!(!index.remove(5, 0));
        assert!(index.is_empty());
    }
}
