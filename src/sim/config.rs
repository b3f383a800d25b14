//! `SimConfig`: the builder a simulation starts from: how many nodes, the seed, the network
//! model's parameters, who the bootstrap nodes are, and how each core is configured.
//!
//! Owns the settings and their defaults, each with its reason. Never runs anything: `build`
//! hands the settings to `Sim::new`.

use super::network::NetworkParams;
use super::regions::{Region, RegionTable};
use super::world::Sim;
use crate::protocol::CoreConfig;
use crate::time::LocalDuration;
use std::collections::BTreeMap;

/// Upload bandwidth per node unless set: 100 Mbit/s, a common virtual server's uplink.
pub const DEFAULT_UPLOAD_BYTES_PER_SEC: u64 = 12_500_000;

/// Jitter unless set: ±10 % of the one-way latency, about the spread of the averaged
/// measurements behind the region table.
pub const DEFAULT_JITTER: f64 = 0.1;

/// The wall clock (Unix ms) at virtual time zero: a fixed date, so VERSION and ADDR
/// timestamps, and so the trace, do not depend on when the simulation runs (2027-01-15).
pub const DEFAULT_UNIX_EPOCH_MS: u64 = crate::time::FIXED_EPOCH_MS;

/// Outbound full-relay peers each node keeps unless set: the protocol's default.
pub const DEFAULT_OUTBOUND: usize = 8;

/// How long a chain takes to validate a block a peer sent, unless set: 1 ms, about what a
/// small block's checks and write take on a current machine.
pub const DEFAULT_VALIDATION_DELAY: LocalDuration = LocalDuration::from_millis(1);

/// How long a node's pool takes to check one transaction a peer sent, µs, unless set: an
/// ed25519 signature check and the admission, about what one costs on a current machine.
/// Transactions are checked one after another.
pub const DEFAULT_TX_CHECK_DELAY_US: u64 = 100;

/// How nodes are addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// Node `i` listens on a public-looking address of its own /16 (`20.0.0.1`, `20.1.0.1`,
    /// ..., `21.0.0.1`, ...) on port 8333: every node is its own network group, as on the
    /// internet, and addresses are gossiped without `allow_local_addrs`.
    Public,
    /// Node `i` listens on `127.0.0.1:20000+i`, like a local regtest network; the cores run
    /// with `allow_local_addrs`, so each loopback address:port is its own network group.
    Loopback,
}

/// Per-node core settings applied after the simulator's own (node id, seed, port, outbound).
pub type Configure = Box<dyn Fn(usize, &mut CoreConfig)>;

/// The settings of a simulation. Build one with `SimConfig::new(n)` and the methods below.
pub struct SimConfig {
    pub(crate) nodes: usize,
    pub(crate) seed: u64,
    pub(crate) params: NetworkParams,
    pub(crate) upload: u64,
    pub(crate) upload_of: BTreeMap<usize, u64>,
    pub(crate) outbound: usize,
    pub(crate) bootstrap: Vec<usize>,
    pub(crate) addressing: Addressing,
    pub(crate) keep_trace: bool,
    pub(crate) region_of: BTreeMap<usize, Region>,
    pub(crate) table: &'static RegionTable,
    pub(crate) unix_epoch_ms: u64,
    pub(crate) configure: Option<Configure>,
    pub(crate) validation_delay: LocalDuration,
    pub(crate) upload_range: Option<(u64, u64)>,
    pub(crate) tx_check_delay_us: u64,
}

impl SimConfig {
    /// `nodes` nodes with the defaults: seed 0, public addressing, no bootstrap nodes (they
    /// find nobody unless told), the built-in region table, the default bandwidth, jitter and
    /// outbound count, no loss, the trace kept.
    pub fn new(nodes: usize) -> SimConfig {
        SimConfig {
            nodes,
            seed: 0,
            params: NetworkParams {
                jitter: DEFAULT_JITTER,
                loss: 0.0,
            },
            upload: DEFAULT_UPLOAD_BYTES_PER_SEC,
            upload_of: BTreeMap::new(),
            outbound: DEFAULT_OUTBOUND,
            bootstrap: Vec::new(),
            addressing: Addressing::Public,
            keep_trace: true,
            region_of: BTreeMap::new(),
            table: RegionTable::builtin(),
            unix_epoch_ms: DEFAULT_UNIX_EPOCH_MS,
            configure: None,
            validation_delay: DEFAULT_VALIDATION_DELAY,
            upload_range: None,
            tx_check_delay_us: DEFAULT_TX_CHECK_DELAY_US,
        }
    }

    /// Seeds every random draw: regions, jitter, loss, node ids, and each core's own rng.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Upload bandwidth of every node, bytes per second (`u64::MAX`: unlimited).
    pub fn upload_bandwidth(mut self, bytes_per_sec: u64) -> Self {
        assert!(bytes_per_sec > 0, "a node must be able to send");
        self.upload = bytes_per_sec;
        self
    }

    /// Upload bandwidth of each node drawn uniformly from `min..=max` bytes per second,
    /// overriding `upload_bandwidth` (a node set with `node_upload_bandwidth` keeps its own).
    /// Each node's draw is derived from the seed and the node alone, so it moves no other
    /// draw.
    pub fn upload_bandwidth_range(mut self, min: u64, max: u64) -> Self {
        assert!(0 < min && min <= max, "a node must be able to send");
        self.upload_range = Some((min, max));
        self
    }

    /// Upload bandwidth of one node, overriding `upload_bandwidth`.
    pub fn node_upload_bandwidth(mut self, node: usize, bytes_per_sec: u64) -> Self {
        assert!(bytes_per_sec > 0, "a node must be able to send");
        self.upload_of.insert(node, bytes_per_sec);
        self
    }

    /// Jitter as a fraction of the one-way latency (see `NetworkParams::jitter`).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.params.jitter = fraction;
        self
    }

    /// Probability that a message is lost and retransmitted (see `network`'s loss model).
    pub fn loss(mut self, probability: f64) -> Self {
        self.params.loss = probability;
        self
    }

    /// Outbound full-relay peers per node (`CoreConfig::max_outbound`).
    pub fn outbound(mut self, n: usize) -> Self {
        self.outbound = n;
        self
    }

    /// Nodes every other node knows at the start, as from a bootstrap list or DNS seed:
    /// each is told their addresses with `Input::Discovered`.
    pub fn bootstrap(mut self, nodes: impl IntoIterator<Item = usize>) -> Self {
        self.bootstrap = nodes.into_iter().collect();
        self
    }

    pub fn addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = addressing;
        self
    }

    /// Whether the trace keeps every event (the hash and counts are kept regardless); a
    /// large benchmark run turns it off to save memory.
    pub fn keep_trace(mut self, keep: bool) -> Self {
        self.keep_trace = keep;
        self
    }

    /// Places `node` in `region` instead of drawing one.
    pub fn region(mut self, node: usize, region: Region) -> Self {
        self.region_of.insert(node, region);
        self
    }

    /// Another latency table (the built-in one unless set).
    pub fn region_table(mut self, table: &'static RegionTable) -> Self {
        self.table = table;
        self
    }

    /// The wall clock at virtual time zero.
    pub fn unix_epoch_ms(mut self, ms: u64) -> Self {
        self.unix_epoch_ms = ms;
        self
    }

    /// Adjusts each node's core settings (called with the node's index).
    pub fn configure(mut self, f: impl Fn(usize, &mut CoreConfig) + 'static) -> Self {
        self.configure = Some(Box::new(f));
        self
    }

    /// How long each node's chain takes to validate one block a peer sent (blocks validate
    /// one after another); the answer reaches the core after it.
    pub fn validation_delay(mut self, delay: LocalDuration) -> Self {
        self.validation_delay = delay;
        self
    }

    /// How long each node's pool takes to check one transaction a peer sent, µs
    /// (transactions are checked one after another); the verdict reaches the core after it.
    pub fn tx_check_delay_us(mut self, us: u64) -> Self {
        self.tx_check_delay_us = us;
        self
    }

    pub fn build(self) -> Sim {
        Sim::new(self)
    }
}
