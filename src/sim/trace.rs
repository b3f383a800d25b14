//! The simulator's trace: what each node was handed, by whom, when, and how big it was, and
//! a SHA-256 hash over all of it that two runs agree on only if they happened identically.
//!
//! Owns the record and its canonical encoding. Never influences the simulation: it is
//! written to, read by tests and benchmarks, and hashed.
//!
//! Canonical encoding, one record per event in the order the simulator processed them
//! (little-endian throughout): `at` (u64 µs) | `node` (u32) | `peer` (u32, `u32::MAX` when
//! none) | kind (u8: 0 delivered, 1 connected, 7 connected inbound, 2 disconnected, 3 dial
//! failed, 4 dropped, 5 stopped, 6 restarted, 8 transaction admitted ready, 9 admitted as
//! future, 10 promoted) | command index in `wire::Command::ALL` (u8, 0xff when none) |
//! `size` (u32) | for a delivered message, a digest of its payload (the `size` frame bytes
//! but the 24-byte frame header, implied by command and size): SipHash-1-3 with zero keys, 8
//! bytes, taken when it was sent so it is encoded once; for a transaction event, its txid.
//!
//! Transaction arrivals (admissions into a node's pool) are also indexed by txid, kept
//! whether or not the events are (16 bytes an admission), so a benchmark can ask when each
//! node got a transaction.

use super::SimTime;
use crate::types::Hash256;
use crate::wire::Command;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The encoding's marker for "no peer" and "no command".
const NO_PEER: u32 = u32::MAX;
const NO_COMMAND: u8 = 0xff;

/// What happened to `TraceEvent::node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// A message from `peer` was handed to the node's core.
    Delivered(Command),
    /// A connection with `peer` came up (`inbound` = `peer` dialled).
    Connected { inbound: bool },
    /// A connection with `peer` ended.
    Disconnected,
    /// A dial failed; `peer` is the node dialled, if an address of one was dialled.
    DialFailed,
    /// A message to the node was not delivered: its connection was gone by then.
    Dropped(Command),
    /// The node was stopped.
    Stopped,
    /// The node was started again.
    Restarted,
    /// A transaction entered the node's pool (`future`: held until an earlier nonce
    /// arrives), from `peer`, or submitted locally or taken back from a disconnected block
    /// when there is none; `size` is its encoded size.
    TxAdmitted { future: bool },
    /// A future transaction in the node's pool became ready to mine.
    TxPromoted,
}

impl TraceKind {
    fn code(self) -> u8 {
        match self {
            TraceKind::Delivered(_) => 0,
            TraceKind::Connected { inbound: false } => 1,
            TraceKind::Connected { inbound: true } => 7,
            TraceKind::Disconnected => 2,
            TraceKind::DialFailed => 3,
            TraceKind::Dropped(_) => 4,
            TraceKind::Stopped => 5,
            TraceKind::Restarted => 6,
            TraceKind::TxAdmitted { future: false } => 8,
            TraceKind::TxAdmitted { future: true } => 9,
            TraceKind::TxPromoted => 10,
        }
    }

    /// The message command, for `Delivered` and `Dropped`.
    pub fn command(self) -> Option<Command> {
        match self {
            TraceKind::Delivered(c) | TraceKind::Dropped(c) => Some(c),
            _ => None,
        }
    }
}

/// One thing that happened, at one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time, µs since the start.
    pub at: SimTime,
    /// The node it happened at (the receiver of a message).
    pub node: usize,
    /// The other end (the sender of a message), when there is one.
    pub peer: Option<usize>,
    pub kind: TraceKind,
    /// Frame bytes of a message (24-byte header included); 0 otherwise.
    pub size: usize,
}

impl TraceEvent {
    /// The time in whole milliseconds, as the cores see it.
    pub fn at_ms(&self) -> u64 {
        self.at / 1_000
    }
}

/// A trace hash: SHA-256 over the canonical encoding of every event.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceHash(pub [u8; 32]);

impl std::fmt::Display for TraceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for TraceHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TraceHash({self})")
    }
}

fn command_index(command: Command) -> usize {
    Command::ALL
        .iter()
        .position(|c| *c == command)
        .expect("every command is in Command::ALL")
}

/// The record of a simulation run.
#[derive(Clone, Debug)]
pub struct Trace {
    hasher: Sha256,
    /// The events, when kept (`SimConfig::keep_trace`); the hash and counts always are.
    events: Vec<TraceEvent>,
    keep: bool,
    len: u64,
    delivered: [u64; Command::ALL.len()],
    delivered_bytes: u64,
    dropped: u64,
    /// Per transaction, each admission into a pool: (node, time), in order.
    arrivals: BTreeMap<Hash256, Vec<(usize, SimTime)>>,
}

impl Trace {
    pub(crate) fn new(keep: bool) -> Trace {
        Trace {
            hasher: Sha256::new(),
            events: Vec::new(),
            keep,
            len: 0,
            delivered: [0; Command::ALL.len()],
            delivered_bytes: 0,
            dropped: 0,
            arrivals: BTreeMap::new(),
        }
    }

    /// Records a transaction event (`TxAdmitted`, `TxPromoted`) for `txid`; an admission is
    /// indexed as an arrival.
    pub(crate) fn record_tx(&mut self, event: TraceEvent, txid: &Hash256) {
        if matches!(event.kind, TraceKind::TxAdmitted { .. }) {
            self.arrivals
                .entry(*txid)
                .or_default()
                .push((event.node, event.at));
        }
        self.record(event, &txid.0);
    }

    /// Records an event; `payload` is a delivered message's payload digest or a transaction
    /// event's txid (empty otherwise).
    pub(crate) fn record(&mut self, event: TraceEvent, payload: &[u8]) {
        let mut head = [0u8; 22];
        head[0..8].copy_from_slice(&event.at.to_le_bytes());
        head[8..12].copy_from_slice(&(event.node as u32).to_le_bytes());
        let peer = event.peer.map_or(NO_PEER, |p| p as u32);
        head[12..16].copy_from_slice(&peer.to_le_bytes());
        head[16] = event.kind.code();
        head[17] = event
            .kind
            .command()
            .map_or(NO_COMMAND, |c| command_index(c) as u8);
        head[18..22].copy_from_slice(&(event.size as u32).to_le_bytes());
        self.hasher.update(head);
        self.hasher.update(payload);
        self.len += 1;
        match event.kind {
            TraceKind::Delivered(c) => {
                self.delivered[command_index(c)] += 1;
                self.delivered_bytes += event.size as u64;
            }
            TraceKind::Dropped(_) => self.dropped += 1,
            _ => {}
        }
        if self.keep {
            self.events.push(event);
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> TraceHash {
        TraceHash(self.hasher.clone().finalize().into())
    }

    /// Events recorded (kept or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept events, in the order they happened; empty when the trace keeps none.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// Messages delivered, all commands.
    pub fn delivered(&self) -> u64 {
        self.delivered.iter().sum()
    }

    /// Messages of `command` delivered.
    pub fn delivered_of(&self, command: Command) -> u64 {
        self.delivered[command_index(command)]
    }

    /// Frame bytes delivered.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered_bytes
    }

    /// Messages not delivered because their connection was gone.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Kept events that match `pred`.
    pub fn count(&self, pred: impl Fn(&TraceEvent) -> bool) -> usize {
        self.events.iter().filter(|e| pred(e)).count()
    }

    /// The first kept event that matches `pred`.
    pub fn first(&self, pred: impl Fn(&TraceEvent) -> bool) -> Option<&TraceEvent> {
        self.events.iter().find(|e| pred(e))
    }

    /// Every admission of `txid` into a pool, (node, µs), in the order they happened (a node
    /// appears again when it took the transaction back after a block or a restart).
    pub fn tx_arrivals(&self, txid: &Hash256) -> &[(usize, SimTime)] {
        self.arrivals.get(txid).map_or(&[], Vec::as_slice)
    }

    /// When `txid` first entered `node`'s pool, µs.
    pub fn tx_arrival(&self, txid: &Hash256, node: usize) -> Option<SimTime> {
        self.tx_arrivals(txid)
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, at)| *at)
    }

    /// When `txid` first entered each node's pool, µs, by node (nodes it never reached
    /// absent).
    pub fn tx_first_arrivals(&self, txid: &Hash256) -> BTreeMap<usize, SimTime> {
        let mut first = BTreeMap::new();
        for &(node, at) in self.tx_arrivals(txid) {
            first.entry(node).or_insert(at);
        }
        first
    }

    /// The first delivery of `command` to `node` (from anyone).
    pub fn first_delivery(&self, command: Command, node: usize) -> Option<&TraceEvent> {
        self.first(|e| e.node == node && e.kind == TraceKind::Delivered(command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at: SimTime, node: usize, kind: TraceKind) -> TraceEvent {
        TraceEvent {
            at,
            node,
            peer: Some(1),
            kind,
            size: 32,
        }
    }

    #[test]
    fn the_hash_covers_every_field_and_the_payload() {
        let base = || {
            let mut t = Trace::new(true);
            t.record(ev(5, 0, TraceKind::Delivered(Command::Ping)), &[1; 8]);
            t
        };
        assert_eq!(base().hash(), base().hash());
        let variants = [
            (ev(6, 0, TraceKind::Delivered(Command::Ping)), [1u8; 8]),
            (ev(5, 2, TraceKind::Delivered(Command::Ping)), [1; 8]),
            (ev(5, 0, TraceKind::Delivered(Command::Pong)), [1; 8]),
            (ev(5, 0, TraceKind::Dropped(Command::Ping)), [1; 8]),
            (ev(5, 0, TraceKind::Delivered(Command::Ping)), [2; 8]),
        ];
        for (e, payload) in variants {
            let mut t = Trace::new(false);
            t.record(e, &payload);
            assert_ne!(t.hash(), base().hash(), "{e:?}");
        }
        let mut t = Trace::new(true);
        t.record(
            TraceEvent {
                peer: None,
                ..ev(5, 0, TraceKind::Delivered(Command::Ping))
            },
            &[1; 8],
        );
        assert_ne!(t.hash(), base().hash());
    }

    #[test]
    fn transaction_events_hash_their_txid_and_index_arrivals() {
        let (a, b) = (Hash256([1; 32]), Hash256([2; 32]));
        let admitted = |at, node| TraceEvent {
            at,
            node,
            peer: None,
            kind: TraceKind::TxAdmitted { future: false },
            size: 144,
        };
        let run = |txid: &Hash256| {
            let mut t = Trace::new(false);
            t.record_tx(admitted(5, 0), txid);
            t
        };
        assert_eq!(run(&a).hash(), run(&a).hash());
        assert_ne!(run(&a).hash(), run(&b).hash());
        let mut future = Trace::new(false);
        future.record_tx(
            TraceEvent {
                kind: TraceKind::TxAdmitted { future: true },
                ..admitted(5, 0)
            },
            &a,
        );
        assert_ne!(future.hash(), run(&a).hash());

        let mut t = Trace::new(false);
        t.record_tx(admitted(5, 3), &a);
        t.record_tx(admitted(9, 1), &a);
        t.record_tx(
            TraceEvent {
                kind: TraceKind::TxPromoted,
                ..admitted(10, 4)
            },
            &a,
        );
        t.record_tx(admitted(12, 3), &a);
        assert_eq!(t.tx_arrivals(&a), &[(3, 5), (1, 9), (3, 12)]);
        assert_eq!(t.tx_arrival(&a, 3), Some(5));
        assert_eq!(t.tx_arrival(&a, 4), None, "a promotion is not an arrival");
        assert_eq!(
            t.tx_first_arrivals(&a).into_iter().collect::<Vec<_>>(),
            vec![(1, 9), (3, 5)]
        );
        assert!(t.tx_arrivals(&b).is_empty());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn counts_and_queries() {
        let mut t = Trace::new(true);
        t.record(ev(1, 0, TraceKind::Connected { inbound: true }), &[]);
        t.record(ev(2, 0, TraceKind::Delivered(Command::Version)), &[]);
        t.record(ev(3, 1, TraceKind::Delivered(Command::Version)), &[]);
        t.record(ev(4, 1, TraceKind::Dropped(Command::Verack)), &[]);
        assert_eq!(t.len(), 4);
        assert_eq!(t.delivered(), 2);
        assert_eq!(t.delivered_of(Command::Version), 2);
        assert_eq!(t.delivered_of(Command::Verack), 0);
        assert_eq!(t.delivered_bytes(), 64);
        assert_eq!(t.dropped(), 1);
        assert_eq!(t.first_delivery(Command::Version, 1).unwrap().at, 3);
        assert_eq!(t.count(|e| e.node == 0), 2);
        let mut quiet = Trace::new(false);
        quiet.record(ev(1, 0, TraceKind::Delivered(Command::Ping)), &[]);
        assert!(quiet.events().is_empty());
        assert_eq!(quiet.delivered(), 1);
    }
}
