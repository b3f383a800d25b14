//! The simulator's event queue: everything that will happen, ordered by virtual time and,
//! within one microsecond, by the order it was scheduled in.
//!
//! Owns the ordering. Never looks at what an event is and never reads a real clock: the
//! `(time, sequence)` key is the whole of its determinism.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Virtual time in microseconds since the simulation started.
pub type SimTime = u64;

/// `(time, sequence number, slot)` packed high to low in one integer, so the heap compares
/// keys with one instruction and holds 16 bytes a key (the heap's sifting is the simulator's
/// hottest loop): 44 bits of time (203 days of virtual microseconds), 52 bits of sequence
/// number, 32 bits of slot. The slot never decides an order (sequence numbers are unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u128);

const TIME_BITS: u32 = 44;
const SEQ_BITS: u32 = 52;
const SLOT_BITS: u32 = 32;

impl Key {
    fn new(at: SimTime, seq: u64, slot: u32) -> Key {
        assert!(at < 1 << TIME_BITS, "virtual time past 2^44 µs (203 days)");
        assert!(seq < 1 << SEQ_BITS, "more than 2^52 events scheduled");
        Key(u128::from(at) << (SEQ_BITS + SLOT_BITS)
            | u128::from(seq) << SLOT_BITS
            | u128::from(slot))
    }

    fn at(self) -> SimTime {
        (self.0 >> (SEQ_BITS + SLOT_BITS)) as SimTime
    }

    fn slot(self) -> u32 {
        self.0 as u32
    }
}

/// A min-queue of events keyed by `(time, sequence number)`. Events live in a slab and the
/// heap moves only 16-byte keys, so large events (messages) are moved once in and once out.
#[derive(Debug)]
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Key>>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Schedules `event` at `at`; among events at the same time it comes after every event
    /// scheduled before it.
    pub(crate) fn push(&mut self, at: SimTime, event: E) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Key::new(at, seq, slot)));
    }

    /// The earliest event, if it is due at or before `until`.
    pub(crate) fn pop_until(&mut self, until: SimTime) -> Option<(SimTime, E)> {
        let Reverse(key) = *self.heap.peek()?;
        if key.at() > until {
            return None;
        }
        self.heap.pop();
        let event = self.slots[key.slot() as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(key.slot());
        // The next events' slots were written when they were scheduled and are long out of
        // cache: they load while this event is handled, instead of stalling the next pops.
        // The one after next (the lesser of the top's children) is fetched two events ahead,
        // so `peek` finds the next one's slot in cache and the caller can fetch what that
        // event will touch while this one is handled.
        let heap = self.heap.as_slice();
        if let Some(Reverse(next)) = heap.first() {
            crate::protocol::fpindex::prefetch(&self.slots[next.slot() as usize]);
        }
        let after_next = match (heap.get(1), heap.get(2)) {
            (Some(Reverse(a)), Some(Reverse(b))) => Some((*a).min(*b)),
            (Some(Reverse(a)), None) => Some(*a),
            _ => None,
        };
        if let Some(key) = after_next {
            crate::protocol::fpindex::prefetch(&self.slots[key.slot() as usize]);
        }
        Some((key.at(), event))
    }

    /// The event the next pop will return (whatever its time).
    pub(crate) fn peek(&self) -> Option<&E> {
        let Reverse(key) = self.heap.peek()?;
        self.slots[key.slot() as usize].as_ref()
    }

    pub(crate) fn next_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(k)| k.at())
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_in_time_order_then_in_scheduling_order() {
        let mut q = EventQueue::new();
        q.push(30, "c");
        q.push(10, "a1");
        q.push(20, "b");
        q.push(10, "a2");
        q.push(10, "a3");
        assert_eq!(q.next_time(), Some(10));
        let mut out = Vec::new();
        while let Some((t, e)) = q.pop_until(25) {
            out.push((t, e));
        }
        assert_eq!(out, vec![(10, "a1"), (10, "a2"), (10, "a3"), (20, "b")]);
        assert_eq!(q.len(), 1);
        // Slots are reused: the slab does not grow with churn.
        for i in 0..100 {
            q.push(40 + i, "x");
            q.pop_until(u64::MAX);
        }
        assert!(q.slots.len() <= 5, "{}", q.slots.len());
    }
}
