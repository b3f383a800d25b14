//! The network model: when a byte sent by one simulated node reaches another, or whether it
//! can at all. Region latency with seeded jitter, per-node upload bandwidth, loss as TCP
//! retransmission, and partitions.
//!
//! Owns every draw of the network's random number generator and each node's uplink queue.
//! Never holds connections or protocol state, and never reads a real clock: it answers for
//! the virtual time it is given.
//!
//! Loss: every connection is TLS over TCP, which never loses a message it delivers, so a
//! lost segment costs time, not a message: a lost message is retransmitted after the
//! retransmission timeout (the round trip plus Linux's 200 ms minimum), each retry lost
//! again with the same probability and the timeout doubling, and the connection breaks
//! when `MAX_RETRANSMITS` retries are lost, as TCP gives up. Because a connection delivers
//! in order, everything sent after a delayed message waits for it (head-of-line blocking):
//! `Network::transmit` never delivers before the `floor` the caller gives (the previous arrival).

use super::regions::{Region, RegionTable};
use super::SimTime;
use rand::rngs::StdRng;
use rand::Rng;

/// Microseconds per second, for bandwidth arithmetic.
const MICROS_PER_SEC: u64 = 1_000_000;

/// Linux's minimum TCP retransmission timeout (`TCP_RTO_MIN`): a retransmission waits at
/// least the round trip plus this.
pub const RETRANSMIT_MIN_US: u64 = 200_000;

/// Retransmissions of one segment before TCP gives up and the connection breaks (Linux's
/// `tcp_retries2` default).
pub const MAX_RETRANSMITS: u32 = 15;

/// Jitter is drawn as a fraction of the one-way latency; more than this would let a jittered
/// latency reach zero or below.
pub const MAX_JITTER_FRACTION: f64 = 0.9;

/// How long a dial to an address nobody answers waits before it fails: the I/O shell's TCP
/// connect timeout (`net::peer::CONNECT_TIMEOUT`, 10 s).
pub const UNANSWERED_DIAL_US: u64 = 10 * MICROS_PER_SEC;

/// How one message crosses one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmission {
    /// It arrives at this time (never before `floor`, the previous arrival on that
    /// direction of the connection).
    Arrives { at: SimTime, retransmits: u32 },
    /// TCP gave up: the connection is broken when the last retry would have been due.
    Breaks { at: SimTime },
}

/// The model's tunable parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkParams {
    /// Jitter as a fraction of the one-way latency: each message's latency is drawn
    /// uniformly from `one_way * (1 ± jitter)`.
    pub jitter: f64,
    /// Probability that a message (and, independently, each of its retransmissions) is lost.
    pub loss: f64,
}

/// The network's state: where each node is, its uplink, its side of any partition.
#[derive(Debug)]
pub struct Network {
    table: &'static RegionTable,
    params: NetworkParams,
    rng: StdRng,
    region: Vec<Region>,
    /// Upload bandwidth per node, bytes per second; `u64::MAX` = unlimited.
    upload: Vec<u64>,
    /// When each node's uplink has finished sending everything queued on it.
    uplink_free_at: Vec<SimTime>,
    /// Each node's side of the current partition; nodes on different sides cannot reach
    /// each other. All zero when healed.
    side: Vec<u32>,
}

impl Network {
    pub fn new(
        table: &'static RegionTable,
        params: NetworkParams,
        rng: StdRng,
        region: Vec<Region>,
        upload: Vec<u64>,
    ) -> Network {
        assert!(
            (0.0..=MAX_JITTER_FRACTION).contains(&params.jitter),
            "jitter must be in [0, {MAX_JITTER_FRACTION}]"
        );
        assert!((0.0..1.0).contains(&params.loss), "loss must be in [0, 1)");
        assert_eq!(region.len(), upload.len());
        let n = region.len();
        Network {
            table,
            params,
            rng,
            region,
            upload,
            uplink_free_at: vec![0; n],
            side: vec![0; n],
        }
    }

    pub fn table(&self) -> &'static RegionTable {
        self.table
    }

    pub fn region(&self, node: usize) -> Region {
        self.region[node]
    }

    pub fn params(&self) -> NetworkParams {
        self.params
    }

    /// The table's round trip between two nodes' regions, in µs (no jitter).
    pub fn rtt_us(&self, from: usize, to: usize) -> u64 {
        self.table.rtt_us(self.region[from], self.region[to])
    }

    /// A one-way latency from `from` to `to` with jitter drawn.
    pub fn one_way_us(&mut self, from: usize, to: usize) -> u64 {
        let base = self.table.one_way_us(self.region[from], self.region[to]);
        self.jittered(base)
    }

    fn jittered(&mut self, base: u64) -> u64 {
        if self.params.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + self.rng.gen_range(-self.params.jitter..=self.params.jitter);
        (base as f64 * factor).round() as u64
    }

    /// How long `size` bytes occupy `node`'s uplink.
    pub fn transmit_us(&self, node: usize, size: usize) -> u64 {
        let rate = self.upload[node];
        if rate == u64::MAX {
            return 0;
        }
        (size as u64 * MICROS_PER_SEC).div_ceil(rate)
    }

    /// Sends `size` bytes from `from` to `to` at `now`: queued behind whatever `from`'s
    /// uplink is still sending, then the jittered latency, then any retransmission delays;
    /// never arriving before `floor`.
    pub fn transmit(
        &mut self,
        from: usize,
        to: usize,
        size: usize,
        now: SimTime,
        floor: SimTime,
    ) -> Transmission {
        let start = now.max(self.uplink_free_at[from]);
        let sent = start + self.transmit_us(from, size);
        self.uplink_free_at[from] = sent;
        let mut at = sent + self.one_way_us(from, to);
        let mut retransmits = 0;
        if self.params.loss > 0.0 {
            let mut timeout = self.rtt_us(from, to) + RETRANSMIT_MIN_US;
            while self.rng.gen_bool(self.params.loss) {
                if retransmits == MAX_RETRANSMITS {
                    return Transmission::Breaks { at };
                }
                at += timeout;
                timeout *= 2;
                retransmits += 1;
            }
        }
        Transmission::Arrives {
            at: at.max(floor),
            retransmits,
        }
    }

    /// When `node`'s uplink will have sent everything queued on it.
    pub fn uplink_free_at(&self, node: usize) -> SimTime {
        self.uplink_free_at[node]
    }

    /// Whether `a` can reach `b` across the current partition.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.side[a] == self.side[b]
    }

    /// Puts each group on a side of its own; nodes in no group stay on side 0 together.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.side.iter_mut().for_each(|s| *s = 0);
        for (i, group) in groups.iter().enumerate() {
            for &node in group {
                self.side[node] = i as u32 + 1;
            }
        }
    }

    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
    }

    /// The rng, for the simulator's other seeded draws (region assignment happens before).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn net(jitter: f64, loss: f64, upload: u64) -> Network {
        let t = RegionTable::builtin();
        let regions = vec![
            t.by_name("Frankfurt").unwrap(),
            t.by_name("Sydney").unwrap(),
            t.by_name("Frankfurt").unwrap(),
        ];
        Network::new(
            t,
            NetworkParams { jitter, loss },
            StdRng::seed_from_u64(7),
            regions,
            vec![upload; 3],
        )
    }

    #[test]
    fn latency_is_half_the_round_trip_within_the_jitter() {
        let mut n = net(0.0, 0.0, u64::MAX);
        assert_eq!(
            n.transmit(0, 1, 100, 1_000, 0),
            Transmission::Arrives {
                at: 1_000 + 125_500,
                retransmits: 0
            }
        );
        let mut n = net(0.1, 0.0, u64::MAX);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            let Transmission::Arrives { at, .. } = n.transmit(0, 1, 100, 0, 0) else {
                panic!("no loss configured")
            };
            assert!((112_950..=138_050).contains(&at), "{at}");
            seen.insert(at);
        }
        assert!(seen.len() > 100, "jitter varies: {} values", seen.len());
    }

    #[test]
    fn the_uplink_is_shared_and_a_big_message_takes_size_over_bandwidth() {
        // 1 MB/s: a 1 MB message holds the uplink for one second.
        let mut n = net(0.0, 0.0, 1_000_000);
        let Transmission::Arrives { at: big, .. } = n.transmit(0, 2, 1_000_000, 0, 0) else {
            panic!()
        };
        assert_eq!(big, 1_000_000 + 1_000);
        // A small message to another peer queues behind it.
        let Transmission::Arrives { at: small, .. } = n.transmit(0, 1, 1_000, 0, 0) else {
            panic!()
        };
        assert_eq!(small, 1_000_000 + 1_000 + 125_500);
        assert_eq!(n.uplink_free_at(0), 1_001_000);
        // Another node's uplink is free.
        let Transmission::Arrives { at, .. } = n.transmit(2, 0, 1_000, 0, 0) else {
            panic!()
        };
        assert_eq!(at, 1_000 + 1_000);
    }

    #[test]
    fn a_lost_message_is_late_by_the_retransmission_timeout_and_ordered_by_its_floor() {
        let mut n = net(0.0, 0.5, u64::MAX);
        let mut retried = 0;
        for _ in 0..200 {
            match n.transmit(0, 2, 10, 0, 0) {
                Transmission::Arrives { at, retransmits } => {
                    // Frankfurt to Frankfurt: 1 ms one way, 2 ms round trip.
                    let timeouts: u64 = (0..retransmits).map(|k| (2_000 + 200_000) << k).sum();
                    assert_eq!(at, 1_000 + timeouts);
                    retried += (retransmits > 0) as u32;
                }
                Transmission::Breaks { .. } => {}
            }
        }
        assert!((60..140).contains(&retried), "about half: {retried}");
        let mut n = net(0.0, 0.0, u64::MAX);
        assert_eq!(
            n.transmit(0, 2, 10, 0, 50_000),
            Transmission::Arrives {
                at: 50_000,
                retransmits: 0
            }
        );
    }

    #[test]
    fn partitions_separate_groups_until_healed() {
        let mut n = net(0.0, 0.0, u64::MAX);
        assert!(n.reachable(0, 1));
        n.partition(&[vec![1]]);
        assert!(!n.reachable(0, 1) && n.reachable(0, 2));
        n.partition(&[vec![0], vec![2]]);
        assert!(!n.reachable(0, 2) && !n.reachable(0, 1) && !n.reachable(1, 2));
        n.heal();
        assert!(n.reachable(0, 1) && n.reachable(1, 2));
    }

    #[test]
    fn the_same_seed_draws_the_same_latencies() {
        let draws = |seed| {
            let mut n = net(0.2, 0.1, 1_000_000);
            n.rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|i| n.transmit(i % 3, (i + 1) % 3, 500, i as u64 * 10, 0))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
    }
}
