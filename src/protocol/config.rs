//! `CoreConfig`: the protocol core's settings, each with the default of docs/PROTOCOL.md.
//!
//! Owns the settings only; the bounds that are not settings live, named, with the manager
//! they bound.

use super::netgroup::Subnet;
use crate::types::NodeId;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub our_node_id: NodeId,
    /// Whose headers and blocks: the consensus rules headers are checked against.
    pub network: crate::params::Network,
    pub protocol_version: u32,
    pub min_protocol_version: u32,
    pub services: u64,
    pub user_agent: String,
    /// The port we listen on, advertised to peers; `None` with --nolisten.
    pub listen_port: Option<u16>,
    pub max_outbound: usize,
    pub max_inbound: usize,
    pub max_total: usize,
    pub max_inbound_per_ip: usize,
    /// Timeouts and intervals, in milliseconds of monotonic time.
    pub handshake_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub inactivity_timeout_ms: u64,
    /// How long an automatic ban lasts (wall-clock time: bans outlive restarts).
    pub ban_duration_ms: u64,
    /// Dial only the manual peers; fill no outbound slots from the address book.
    pub connect_only: bool,
    /// Whether DNS seeds are configured (the I/O side resolves them).
    pub have_dns_seeds: bool,
    /// Inbound peers from these ranges (`--whitelist noban@...`) are scored and disconnected
    /// for misbehaviour but never banned, and are let in while their IP is banned.
    pub noban: Vec<Subnet>,
    /// Whether loopback and private addresses are gossiped and each loopback address:port is
    /// its own network group: a local test network (regtest), never the public networks.
    pub allow_local_addrs: bool,
    /// Seeds every random choice the core makes: same seed, same inputs, same outputs.
    pub rng_seed: u64,
    /// A header chain with less work than this is stored only after a pre-sync shows it
    /// reaches it (Bitcoin Core's `-minimumchainwork`; zero on networks without a history to
    /// pin, where the active tip's work sets the bar).
    pub minimum_chain_work: crate::chain::work::ChainWork,
}

impl CoreConfig {
    /// The defaults of docs/PROTOCOL.md for a node with `node_id`, on regtest (the node sets
    /// its network).
    pub fn new(our_node_id: NodeId) -> CoreConfig {
        CoreConfig {
            our_node_id,
            network: crate::params::Network::Regtest,
            protocol_version: crate::wire::PROTOCOL_VERSION,
            min_protocol_version: crate::wire::MIN_PROTOCOL_VERSION,
            services: crate::wire::SERVICE_NETWORK,
            user_agent: format!("/noded:{}/", env!("CARGO_PKG_VERSION")),
            listen_port: None,
            max_outbound: 8,
            max_inbound: 117,
            max_total: 125,
            max_inbound_per_ip: 16,
            handshake_timeout_ms: 60_000,
            ping_interval_ms: 120_000,
            ping_timeout_ms: 20 * 60_000,
            inactivity_timeout_ms: 20 * 60_000,
            ban_duration_ms: 24 * 3_600_000,
            connect_only: false,
            have_dns_seeds: false,
            allow_local_addrs: false,
            noban: Vec::new(),
            rng_seed: 0,
            minimum_chain_work: crate::chain::work::ChainWork::zero(),
        }
    }

    /// Whether `ip` is in a `--whitelist noban@` range.
    pub fn is_noban(&self, ip: std::net::IpAddr) -> bool {
        self.noban.iter().any(|range| range.contains(ip))
    }
}
