//! `Core`: the protocol state machine. Owns every peer's protocol state, the handshake and
//! liveness rules, ADDR gossip, misbehaviour scoring, inbound eviction, and the choice of whom
//! to dial. Time comes in as an argument (Unix milliseconds); decisions go out as `Output`s.

use super::addrman::{AddrInfo, AddrMan};
use super::bans::{BanChanges, BanList, BanTarget, Misbehaviour, BAN_THRESHOLD};
use super::eviction::{self, Candidate};
use super::netgroup::{canonical_ip, host_key, is_routable, netgroup, Subnet};
use crate::config::PeerSpec;
use crate::encoding::{BoundedString, BoundedVec};
use crate::types::NodeId;
use crate::wire::message::reject_code;
use crate::wire::{limits, Message, NetAddress, Reject, TimestampedAddress, Version, WireError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

pub type PeerId = u64;
pub type DialId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    Inbound,
    /// Chosen from the address book to fill an outbound slot.
    Outbound,
    /// From --addnode, --connect or `addnode add`: kept connected, never auto-banned.
    Manual,
    /// From `addnode onetry`: dialled once.
    OneTry,
    /// A short test connection to a tried address whose slot a newcomer wants; closed after
    /// the handshake.
    Feeler,
}

impl ConnType {
    pub fn name(self) -> &'static str {
        match self {
            ConnType::Inbound => "inbound",
            ConnType::Outbound => "outbound-full-relay",
            ConnType::Manual => "manual",
            ConnType::OneTry => "onetry",
            ConnType::Feeler => "feeler",
        }
    }

    fn is_manual(self) -> bool {
        matches!(self, ConnType::Manual | ConnType::OneTry)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    HandshakeTimeout,
    PingTimeout,
    Inactivity,
    SelfConnection,
    DuplicateNodeId,
    Banned,
    Misbehaviour(Misbehaviour),
    ObsoleteVersion(u32),
    WrongNetwork,
    Evicted,
    TooManyConnections,
    TooManyFromIp,
    Requested,
    NodeIdMismatch,
    /// A feeler connection did its job.
    FeelerDone,
    /// Set by the I/O side: the outbox stayed full.
    SlowPeer,
    Closed(String),
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::HandshakeTimeout => write!(f, "handshake timeout"),
            DisconnectReason::PingTimeout => write!(f, "ping timeout"),
            DisconnectReason::Inactivity => write!(f, "inactivity timeout"),
            DisconnectReason::SelfConnection => write!(f, "connected to self"),
            DisconnectReason::DuplicateNodeId => write!(f, "duplicate connection to node id"),
            DisconnectReason::Banned => write!(f, "banned"),
            DisconnectReason::Misbehaviour(m) => write!(f, "misbehaviour: {}", m.name()),
            DisconnectReason::ObsoleteVersion(v) => write!(f, "obsolete protocol version {v}"),
            DisconnectReason::WrongNetwork => write!(f, "wrong network magic"),
            DisconnectReason::Evicted => write!(f, "evicted for a new inbound peer"),
            DisconnectReason::TooManyConnections => write!(f, "connection limit reached"),
            DisconnectReason::TooManyFromIp => write!(f, "too many connections from this IP"),
            DisconnectReason::Requested => write!(f, "disconnect requested"),
            DisconnectReason::NodeIdMismatch => {
                write!(f, "VERSION node id differs from TLS identity")
            }
            DisconnectReason::FeelerDone => write!(f, "feeler test done"),
            DisconnectReason::SlowPeer => write!(f, "send queue stayed full"),
            DisconnectReason::Closed(why) => write!(f, "closed: {why}"),
        }
    }
}

/// Where to dial: a host name or IP literal, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialTarget {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for DialTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send(PeerId, Message),
    Disconnect(PeerId, DisconnectReason),
    Dial {
        dial: DialId,
        target: DialTarget,
        expected: Option<NodeId>,
    },
    /// Ask the I/O side to resolve the DNS seeds and report back with `discovered`.
    ResolveSeeds,
    /// An --addnode peer without a pinned id was reached: remember its id (trust on first use).
    LearnedIdentity {
        peer: String,
        node_id: NodeId,
    },
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub our_node_id: NodeId,
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
    pub handshake_timeout_ms: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub inactivity_timeout_ms: u64,
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
    pub rng_seed: u64,
}

impl CoreConfig {
    /// The defaults of docs/PROTOCOL.md for a node with `node_id`.
    pub fn new(our_node_id: NodeId) -> CoreConfig {
        CoreConfig {
            our_node_id,
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
        }
    }
}

/// Manual peer backoff: first retry after this, doubling to the maximum.
const MANUAL_BACKOFF_MIN_MS: u64 = 1_000;
const MANUAL_BACKOFF_MAX_MS: u64 = 5 * 60_000;
/// A connection that lasted this long resets the manual backoff.
const STABLE_CONNECTION_MS: u64 = 60_000;
/// ADDR token bucket: refill rate and burst.
const ADDR_TOKENS_PER_SEC: f64 = 0.1;
const ADDR_TOKENS_MAX: f64 = 1_000.0;
/// Addresses per ADDR that we still relay onwards, and to how many peers.
const ADDR_RELAY_MAX_ITEMS: usize = 10;
const ADDR_RELAY_FANOUT: usize = 2;
/// New outbound dials started per tick.
const DIALS_PER_TICK: usize = 2;
/// How long a pending dial may take before its slot is reused.
const DIAL_TIMEOUT_MS: u64 = 30_000;
const SEED_RETRY_MS: u64 = 5 * 60_000;
const ADDRMAN_CLEANUP_MS: u64 = 3_600_000;
const KNOWN_ADDRS_MAX: usize = 5_000;
/// How long an address whose dial reached a node already connected is not dialled again.
const DUPLICATE_DIAL_BACKOFF_MS: u64 = 10 * 60_000;
/// Addresses remembered for that; the one due soonest goes first beyond this.
const MAX_DUPLICATE_DIALS: usize = 1_024;
/// Gossiped address times further ahead than this are not believed (clock skew allowance).
const ADDR_FUTURE_SKEW_SECS: u64 = 10 * 60;
/// What an unbelievable future time is replaced with: five days ago, old enough not to be
/// relayed or preferred.
const ADDR_FUTURE_PENALTY_SECS: u64 = 5 * 86_400;
/// An ADDR entry younger than this is fresh: relayed onwards.
const ADDR_FRESH_SECS: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ManualState {
    Idle,
    Dialing(DialId),
    Connected(PeerId),
}

#[derive(Debug, Clone)]
struct ManualPeer {
    spec: PeerSpec,
    /// Pinned by the user or learned on first use.
    node_id: Option<NodeId>,
    state: ManualState,
    next_attempt_ms: u64,
    backoff_ms: u64,
    /// When the last connection attempt started (for getaddednodeinfo).
    last_attempt_ms: u64,
}

#[derive(Debug, Clone)]
enum DialKind {
    Auto(SocketAddr),
    Manual(String),
    OneTry,
    Feeler(SocketAddr),
}

#[derive(Debug, Clone)]
struct PendingDial {
    kind: DialKind,
    started_ms: u64,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    conn_type: ConnType,
    node_id: NodeId,
    connected_ms: u64,
    version: Option<Version>,
    sent_version_nonce: Option<u64>,
    ready: bool,
    last_recv_ms: u64,
    ping: Option<(u64, u64)>,
    last_ping_ms: u64,
    ping_rtt_ms: Option<u64>,
    min_ping_ms: Option<u64>,
    score: u32,
    getaddr_answered: bool,
    addr_tokens: f64,
    addr_tokens_ms: u64,
    known_addrs: HashSet<SocketAddr>,
    last_useful_ms: u64,
    manual_key: Option<String>,
    disconnecting: bool,
    /// A second connection to a node already connected: dropped, and no failure of its
    /// address.
    duplicate: bool,
}

impl Peer {
    /// Where this peer accepts connections: the address we dialled, or for an inbound peer
    /// its IP with the listen port its VERSION gave (none if it does not listen).
    fn listen_addr(&self) -> Option<SocketAddr> {
        if self.conn_type != ConnType::Inbound {
            return Some(self.addr);
        }
        let port = self.version.as_ref()?.sender.port;
        (port != 0).then(|| SocketAddr::new(self.addr.ip(), port))
    }
}

/// What getpeerinfo shows of a peer's protocol state.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerSnapshot {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub inbound: bool,
    pub connection_type: &'static str,
    pub nodeid: NodeId,
    pub version: u32,
    pub subver: String,
    pub services: u64,
    pub startingheight: u64,
    pub conntime_ms: u64,
    pub lastrecv_ms: u64,
    pub ping_ms: Option<u64>,
    pub minping_ms: Option<u64>,
    pub banscore: u32,
    pub handshake_complete: bool,
}

/// What getaddednodeinfo shows of a manual peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AddedNodeSnapshot {
    pub addednode: String,
    pub connected: bool,
    pub peer: Option<PeerId>,
    pub nodeid: Option<NodeId>,
    pub last_attempt_ms: u64,
    pub next_attempt_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("node {0} is already added")]
    AlreadyAdded(String),
    #[error("node {0} has not been added")]
    NotAdded(String),
    #[error("no peer matches {0}")]
    NoSuchPeer(String),
}

pub struct Core {
    cfg: CoreConfig,
    rng: StdRng,
    addrman: AddrMan,
    bans: BanList,
    peers: BTreeMap<PeerId, Peer>,
    manual: Vec<ManualPeer>,
    dials: BTreeMap<DialId, PendingDial>,
    /// Addresses not to dial until the time given: their node is connected another way.
    duplicate_dials: BTreeMap<SocketAddr, u64>,
    next_dial: DialId,
    best_height: u64,
    last_seed_request_ms: Option<u64>,
    last_cleanup_ms: u64,
    out: Vec<Output>,
}

/// Whether addresses of `ip` may be gossiped: routable ones, or any on a local network
/// (`CoreConfig::allow_local_addrs`).
fn gossipable(allow_local: bool, ip: IpAddr) -> bool {
    allow_local || is_routable(ip)
}

fn now_secs(now_ms: u64) -> u64 {
    now_ms / 1000
}

impl Core {
    pub fn new(cfg: CoreConfig, addrman: AddrMan, bans: BanList) -> Core {
        Core {
            rng: StdRng::seed_from_u64(cfg.rng_seed),
            addrman: addrman.with_local_groups(cfg.allow_local_addrs),
            cfg,
            bans,
            peers: BTreeMap::new(),
            manual: Vec::new(),
            dials: BTreeMap::new(),
            duplicate_dials: BTreeMap::new(),
            next_dial: 1,
            best_height: 0,
            last_seed_request_ms: None,
            last_cleanup_ms: 0,
            out: Vec::new(),
        }
    }

    /// Takes the outputs produced since the last call.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    pub fn set_best_height(&mut self, height: u64) {
        self.best_height = height;
    }

    pub fn addrman(&self) -> &AddrMan {
        &self.addrman
    }

    /// The address book's entries, when they changed since the last call (or `force`), for
    /// the peer store.
    pub fn take_address_snapshot(&mut self, force: bool) -> Option<Vec<AddrInfo>> {
        (self.addrman.take_dirty() || force).then(|| self.addrman.entries().cloned().collect())
    }

    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    /// What changed in the ban list since the last call, for the peer store.
    pub fn take_ban_changes(&mut self) -> Option<BanChanges> {
        self.bans.take_changes()
    }

    /// `setban remove`.
    pub fn unban(&mut self, target: &BanTarget) -> bool {
        self.bans.unban(target)
    }

    /// `clearbanned`.
    pub fn clear_bans(&mut self) {
        self.bans.clear()
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn inbound_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound)
            .count()
    }

    pub fn outbound_count(&self) -> usize {
        self.peers.len() - self.inbound_count()
    }

    fn auto_outbound_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn_type == ConnType::Outbound)
            .count()
            + self
                .dials
                .values()
                .filter(|d| matches!(d.kind, DialKind::Auto(_)))
                .count()
    }

    pub fn peers(&self) -> impl Iterator<Item = PeerSnapshot> + '_ {
        self.peers.iter().map(|(id, p)| PeerSnapshot {
            id: *id,
            addr: p.addr,
            inbound: p.conn_type == ConnType::Inbound,
            connection_type: p.conn_type.name(),
            nodeid: p.node_id,
            version: p.version.as_ref().map_or(0, |v| v.protocol_version),
            subver: p
                .version
                .as_ref()
                .map_or(String::new(), |v| v.user_agent.to_string()),
            services: p.version.as_ref().map_or(0, |v| v.services),
            startingheight: p.version.as_ref().map_or(0, |v| v.best_height),
            conntime_ms: p.connected_ms,
            lastrecv_ms: p.last_recv_ms,
            ping_ms: p.ping_rtt_ms,
            minping_ms: p.min_ping_ms,
            banscore: p.score,
            handshake_complete: p.ready,
        })
    }

    pub fn added_nodes(&self) -> Vec<AddedNodeSnapshot> {
        self.manual
            .iter()
            .map(|m| AddedNodeSnapshot {
                addednode: m.spec.to_string(),
                connected: matches!(m.state, ManualState::Connected(_)),
                peer: match m.state {
                    ManualState::Connected(p) => Some(p),
                    _ => None,
                },
                nodeid: m.node_id,
                last_attempt_ms: m.last_attempt_ms,
                next_attempt_ms: m.next_attempt_ms,
            })
            .collect()
    }

    // ----- commands -------------------------------------------------------------------------

    /// Adds a peer to keep connected (--addnode, --connect, `addnode add`). `learned` is an
    /// identity remembered from an earlier first use.
    pub fn add_manual(
        &mut self,
        spec: PeerSpec,
        learned: Option<NodeId>,
        now_ms: u64,
    ) -> Result<(), CommandError> {
        let key = spec.to_string();
        if self.manual.iter().any(|m| m.spec.to_string() == key) {
            return Err(CommandError::AlreadyAdded(key));
        }
        let node_id = spec.node_id.or(learned);
        self.manual.push(ManualPeer {
            spec,
            node_id,
            state: ManualState::Idle,
            next_attempt_ms: now_ms,
            backoff_ms: MANUAL_BACKOFF_MIN_MS,
            last_attempt_ms: 0,
        });
        self.maintain_manual(now_ms);
        Ok(())
    }

    /// `addnode remove`: stops keeping the peer connected and disconnects it.
    pub fn remove_manual(&mut self, spec: &PeerSpec) -> Result<(), CommandError> {
        let key = spec.to_string();
        let index = self
            .manual
            .iter()
            .position(|m| {
                m.spec.to_string() == key || m.spec.host == spec.host && m.spec.port == spec.port
            })
            .ok_or(CommandError::NotAdded(key))?;
        let removed = self.manual.remove(index);
        match removed.state {
            ManualState::Connected(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.manual_key = None;
                }
                self.disconnect(peer, DisconnectReason::Requested);
            }
            ManualState::Dialing(dial) => {
                self.dials.remove(&dial);
            }
            ManualState::Idle => {}
        }
        Ok(())
    }

    /// `addnode onetry`: dial once, no retries.
    pub fn one_try(&mut self, spec: PeerSpec, now_ms: u64) {
        let dial = self.new_dial(DialKind::OneTry, now_ms);
        self.out.push(Output::Dial {
            dial,
            target: DialTarget {
                host: spec.host,
                port: spec.port,
            },
            expected: spec.node_id,
        });
    }

    /// `disconnectnode`: by peer id or by address.
    pub fn disconnect_matching(
        &mut self,
        peer: Option<PeerId>,
        addr: Option<SocketAddr>,
    ) -> Result<(), CommandError> {
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| Some(**id) == peer || Some(p.addr) == addr)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Err(CommandError::NoSuchPeer(match (peer, addr) {
                (Some(p), _) => format!("peer id {p}"),
                (_, Some(a)) => a.to_string(),
                _ => "nothing".into(),
            }));
        }
        for id in ids {
            self.disconnect(id, DisconnectReason::Requested);
        }
        Ok(())
    }

    /// `setban add`: bans and disconnects everything matching.
    pub fn ban(&mut self, target: BanTarget, now_ms: u64, duration_ms: u64, reason: &str) {
        let target = target.canonical();
        self.bans.ban(target, now_ms, duration_ms, reason);
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| match target {
                BanTarget::Ip(ip) => canonical_ip(p.addr.ip()) == ip,
                BanTarget::Node(id) => p.node_id == id,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.disconnect(id, DisconnectReason::Banned);
        }
    }

    /// `ping`: pings every ready peer now.
    pub fn ping_all(&mut self, now_ms: u64) {
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready && p.ping.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.send_ping(id, now_ms);
        }
    }

    /// Addresses learned from DNS seeds, bootstrap nodes or LAN discovery.
    pub fn discovered(&mut self, addrs: &[SocketAddr], source: SocketAddr, now_ms: u64) -> usize {
        let now = now_secs(now_ms);
        addrs
            .iter()
            .filter(|a| {
                self.addrman
                    .add(**a, crate::wire::SERVICE_NETWORK, source, now, now)
            })
            .count()
    }

    // ----- connection events ----------------------------------------------------------------

    /// Whether to start a TLS handshake with a new inbound TCP connection from `addr`.
    pub fn admit_inbound(&self, addr: SocketAddr, now_ms: u64) -> Result<(), DisconnectReason> {
        if self.bans.is_banned(&BanTarget::Ip(addr.ip()), now_ms) && !self.is_noban(addr.ip()) {
            return Err(DisconnectReason::Banned);
        }
        let host = host_key(addr.ip());
        let from_ip = self
            .peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound && host_key(p.addr.ip()) == host)
            .count();
        if from_ip >= self.cfg.max_inbound_per_ip {
            return Err(DisconnectReason::TooManyFromIp);
        }
        if self.cfg.max_inbound == 0 {
            return Err(DisconnectReason::TooManyConnections);
        }
        Ok(())
    }

    /// A TLS session is up. `dial` is set for outbound connections.
    pub fn connected(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        dial: Option<DialId>,
        node_id: NodeId,
        now_ms: u64,
    ) {
        let pending = dial.and_then(|d| self.dials.remove(&d));
        let (conn_type, manual_key) = match &pending {
            None => (ConnType::Inbound, None),
            Some(PendingDial {
                kind: DialKind::Auto(_),
                ..
            }) => (ConnType::Outbound, None),
            Some(PendingDial {
                kind: DialKind::Manual(key),
                ..
            }) => (ConnType::Manual, Some(key.clone())),
            Some(PendingDial {
                kind: DialKind::OneTry,
                ..
            }) => (ConnType::OneTry, None),
            Some(PendingDial {
                kind: DialKind::Feeler(_),
                ..
            }) => (ConnType::Feeler, None),
        };
        if dial.is_some() && pending.is_none() {
            // The dial was cancelled (addnode remove) while it was under way.
            self.out
                .push(Output::Disconnect(peer, DisconnectReason::Requested));
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                addr,
                conn_type,
                node_id,
                connected_ms: now_ms,
                version: None,
                sent_version_nonce: None,
                ready: false,
                last_recv_ms: now_ms,
                ping: None,
                last_ping_ms: now_ms,
                ping_rtt_ms: None,
                min_ping_ms: None,
                score: 0,
                getaddr_answered: false,
                addr_tokens: if conn_type == ConnType::Inbound {
                    10.0
                } else {
                    ADDR_TOKENS_MAX
                },
                addr_tokens_ms: now_ms,
                known_addrs: HashSet::new(),
                last_useful_ms: 0,
                manual_key: manual_key.clone(),
                disconnecting: false,
                duplicate: false,
            },
        );
        if let Some(key) = &manual_key {
            if let Some(m) = self.manual.iter_mut().find(|m| &m.spec.to_string() == key) {
                m.state = ManualState::Connected(peer);
                if m.node_id.is_none() {
                    m.node_id = Some(node_id);
                    self.out.push(Output::LearnedIdentity {
                        peer: key.clone(),
                        node_id,
                    });
                }
            }
        }

        if node_id == self.cfg.our_node_id {
            self.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        let banned = self.bans.is_banned(&BanTarget::Node(node_id), now_ms)
            || self.bans.is_banned(&BanTarget::Ip(addr.ip()), now_ms);
        let exempt =
            conn_type.is_manual() || (conn_type == ConnType::Inbound && self.is_noban(addr.ip()));
        if banned && !exempt {
            self.disconnect(peer, DisconnectReason::Banned);
            return;
        }
        let existing = self
            .peers
            .iter()
            .find(|(id, p)| **id != peer && p.node_id == node_id && !p.disconnecting)
            .map(|(id, _)| *id);
        if let Some(existing) = existing {
            self.on_duplicate(peer, existing, pending.map(|d| d.kind), now_ms);
            return;
        }
        if conn_type == ConnType::Inbound && !self.make_inbound_room(peer) {
            self.disconnect(peer, DisconnectReason::TooManyConnections);
            return;
        }
        if conn_type != ConnType::Inbound {
            self.send_version(peer, now_ms);
        }
    }

    /// `peer` is a second connection to the node `existing` is connected to: it is dropped
    /// without counting against its address. A dialled address is left alone for a while
    /// (it is that node's, already connected the other way); an added node counts as
    /// connected through `existing`, and is dialled again only when that connection ends.
    fn on_duplicate(
        &mut self,
        peer: PeerId,
        existing: PeerId,
        dial: Option<DialKind>,
        now_ms: u64,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.duplicate = true;
            p.manual_key = None;
        }
        match dial {
            Some(DialKind::Auto(addr)) => {
                if self.duplicate_dials.len() >= MAX_DUPLICATE_DIALS {
                    let soonest = self
                        .duplicate_dials
                        .iter()
                        .min_by_key(|(_, until)| **until)
                        .map(|(a, _)| *a);
                    if let Some(a) = soonest {
                        self.duplicate_dials.remove(&a);
                    }
                }
                self.duplicate_dials
                    .insert(addr, now_ms + DUPLICATE_DIAL_BACKOFF_MS);
            }
            Some(DialKind::Manual(key)) => {
                if let Some(m) = self.manual.iter_mut().find(|m| m.spec.to_string() == key) {
                    m.state = ManualState::Connected(existing);
                }
                if let Some(e) = self.peers.get_mut(&existing) {
                    e.manual_key.get_or_insert(key);
                }
            }
            _ => {}
        }
        self.disconnect(peer, DisconnectReason::DuplicateNodeId);
    }

    /// Keeps inbound within its limits by evicting someone if needed; false = no room.
    fn make_inbound_room(&mut self, newcomer: PeerId) -> bool {
        let inbound = self
            .peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound && !p.disconnecting)
            .count();
        let total = self.peers.values().filter(|p| !p.disconnecting).count();
        if inbound <= self.cfg.max_inbound && total <= self.cfg.max_total {
            return true;
        }
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .filter(|(id, p)| {
                **id != newcomer && p.conn_type == ConnType::Inbound && !p.disconnecting
            })
            .map(|(id, p)| Candidate {
                peer: *id,
                group: netgroup(&p.addr, self.cfg.allow_local_addrs),
                connected_ms: p.connected_ms,
                min_ping_ms: p.min_ping_ms,
                last_useful_ms: p.last_useful_ms,
            })
            .collect();
        let key = self.addrman.key();
        match eviction::select_victim(candidates, &key) {
            Some(victim) => {
                self.disconnect(victim, DisconnectReason::Evicted);
                true
            }
            None => false,
        }
    }

    pub fn dial_failed(&mut self, dial: DialId, now_ms: u64) {
        let Some(pending) = self.dials.remove(&dial) else {
            return;
        };
        match pending.kind {
            DialKind::Auto(addr) | DialKind::Feeler(addr) => {
                self.addrman.attempt_failed(&addr, now_secs(now_ms))
            }
            DialKind::Manual(key) => self.manual_retry_later(&key, now_ms, false),
            DialKind::OneTry => {}
        }
    }

    fn manual_retry_later(&mut self, key: &str, now_ms: u64, was_stable: bool) {
        if let Some(m) = self.manual.iter_mut().find(|m| m.spec.to_string() == key) {
            if was_stable {
                m.backoff_ms = MANUAL_BACKOFF_MIN_MS;
            }
            m.state = ManualState::Idle;
            m.next_attempt_ms = now_ms + m.backoff_ms;
            m.backoff_ms = (m.backoff_ms * 2).min(MANUAL_BACKOFF_MAX_MS);
        }
    }

    /// The connection is gone (closed by either side).
    pub fn disconnected(&mut self, peer: PeerId, now_ms: u64) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let Some(key) = &p.manual_key {
            let stable = now_ms.saturating_sub(p.connected_ms) >= STABLE_CONNECTION_MS;
            self.manual_retry_later(key, now_ms, stable && p.ready);
        }
        // Other added nodes that counted as connected through this peer (the same node
        // under another name) are dialled again.
        for m in &mut self.manual {
            if m.state == ManualState::Connected(peer) {
                m.state = ManualState::Idle;
                m.next_attempt_ms = now_ms;
            }
        }
        if matches!(p.conn_type, ConnType::Outbound | ConnType::Feeler) && !p.ready && !p.duplicate
        {
            self.addrman.attempt_failed(&p.addr, now_secs(now_ms));
        }
    }

    /// Whether `peer` is on its way out (the core asked for its disconnection).
    pub fn is_disconnecting(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.disconnecting)
    }

    fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if !p.disconnecting {
                p.disconnecting = true;
                self.out.push(Output::Disconnect(peer, reason));
            }
        }
    }

    /// The peer's byte stream broke a framing rule; the connection cannot continue.
    pub fn broken(&mut self, peer: PeerId, error: &WireError, now_ms: u64) {
        match error {
            WireError::WrongMagic { .. } => {
                self.reject(peer, "version", reject_code::INVALID, "wrong network magic");
                self.disconnect(peer, DisconnectReason::WrongNetwork);
            }
            WireError::PayloadTooLarge { .. } | WireError::TooManyItems { .. } => {
                self.misbehaving(peer, Misbehaviour::Oversized, now_ms);
                self.disconnect(
                    peer,
                    DisconnectReason::Misbehaviour(Misbehaviour::Oversized),
                );
            }
            WireError::Io(e) => self.disconnect(peer, DisconnectReason::Closed(e.to_string())),
            _ => {
                self.misbehaving(peer, Misbehaviour::MalformedFrame, now_ms);
                self.disconnect(
                    peer,
                    DisconnectReason::Misbehaviour(Misbehaviour::MalformedFrame),
                );
            }
        }
    }

    /// Whether `ip` is in a `--whitelist noban@` range.
    fn is_noban(&self, ip: IpAddr) -> bool {
        self.cfg.noban.iter().any(|range| range.contains(ip))
    }

    /// Adds to a peer's score; at the threshold it is disconnected and (unless manual, or an
    /// inbound peer with the noban permission) banned by IP and node id.
    pub fn misbehaving(&mut self, peer: PeerId, what: Misbehaviour, now_ms: u64) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.score = p.score.saturating_add(what.weight());
        if p.score < BAN_THRESHOLD {
            return;
        }
        let (ip, node_id, manual) = (p.addr.ip(), p.node_id, p.conn_type.is_manual());
        let noban = p.conn_type == ConnType::Inbound && self.is_noban(ip);
        if !manual && !noban {
            let duration = self.cfg.ban_duration_ms;
            self.bans
                .ban(BanTarget::Ip(ip), now_ms, duration, what.name());
            self.bans
                .ban(BanTarget::Node(node_id), now_ms, duration, what.name());
        }
        self.disconnect(peer, DisconnectReason::Misbehaviour(what));
    }

    fn reject(&mut self, peer: PeerId, command: &str, code: u8, reason: &str) {
        self.out.push(Output::Send(
            peer,
            Message::Reject(Reject {
                message: BoundedString::truncating(command),
                code,
                reason: BoundedString::truncating(reason),
                hash: None,
            }),
        ));
    }

    // ----- messages -------------------------------------------------------------------------

    fn send_version(&mut self, peer: PeerId, now_ms: u64) {
        let nonce: u64 = self.rng.gen();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.sent_version_nonce = Some(nonce);
        let sender_port = self.cfg.listen_port.unwrap_or(0);
        let version = Version {
            protocol_version: self.cfg.protocol_version,
            services: self.cfg.services,
            timestamp: now_secs(now_ms) as i64,
            receiver: NetAddress::new(p.addr, 0),
            sender: NetAddress::new(
                SocketAddr::new(IpAddr::from([0u8; 4]), sender_port),
                self.cfg.services,
            ),
            nonce,
            user_agent: BoundedString::truncating(&self.cfg.user_agent),
            best_height: self.best_height,
            node_id: self.cfg.our_node_id,
            relay: true,
        };
        self.out.push(Output::Send(peer, Message::Version(version)));
    }

    fn send_ping(&mut self, peer: PeerId, now_ms: u64) {
        let nonce: u64 = self.rng.gen();
        if let Some(p) = self.peers.get_mut(&peer) {
            p.ping = Some((nonce, now_ms));
            p.last_ping_ms = now_ms;
            self.out.push(Output::Send(peer, Message::Ping(nonce)));
        }
    }

    /// A decoded message from `peer`.
    pub fn received(&mut self, peer: PeerId, message: Message, now_ms: u64) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.disconnecting {
            return;
        }
        p.last_recv_ms = now_ms;
        let ready = p.ready;
        match message {
            Message::Version(v) => self.on_version(peer, v, now_ms),
            Message::Verack => self.on_verack(peer, now_ms),
            Message::Reject(r) => {
                tracing::debug!(peer, code = r.code, reason = %r.reason, command = %r.message, "peer sent REJECT");
            }
            _ if !ready => {
                self.misbehaving(peer, Misbehaviour::ProtocolOrder, now_ms);
                self.disconnect(
                    peer,
                    DisconnectReason::Misbehaviour(Misbehaviour::ProtocolOrder),
                );
            }
            Message::Ping(nonce) => self.out.push(Output::Send(peer, Message::Pong(nonce))),
            Message::Pong(nonce) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if let Some((expected, sent)) = p.ping {
                        if expected == nonce {
                            let rtt = now_ms.saturating_sub(sent);
                            p.ping = None;
                            p.ping_rtt_ms = Some(rtt);
                            p.min_ping_ms = Some(p.min_ping_ms.map_or(rtt, |m| m.min(rtt)));
                        }
                    }
                }
            }
            Message::Addr(list) => self.on_addr(peer, list.as_slice(), now_ms),
            Message::GetAddr => self.on_getaddr(peer, now_ms),
            Message::GetData(items) => {
                // Blocks and transactions are served once the chain and mempool are wired in
                // to the relay; until then every requested item is not found.
                if !items.is_empty() {
                    self.out.push(Output::Send(peer, Message::NotFound(items)));
                }
            }
            Message::Block(_) | Message::Tx(_) | Message::Headers(_) | Message::NotFound(_) => {
                // Nothing has been requested from this peer.
                self.misbehaving(peer, Misbehaviour::Unrequested, now_ms);
            }
            Message::Inv(_)
            | Message::GetHeaders(_)
            | Message::GetBlocks(_)
            | Message::SendHeaders => {}
        }
    }

    fn on_version(&mut self, peer: PeerId, v: Version, now_ms: u64) {
        let our_nonces: HashSet<u64> = self
            .peers
            .values()
            .filter_map(|p| p.sent_version_nonce)
            .collect();
        let p = self.peers.get_mut(&peer).expect("caller checked");
        if p.version.is_some() {
            self.misbehaving(peer, Misbehaviour::ProtocolOrder, now_ms);
            return;
        }
        if v.node_id != p.node_id {
            self.disconnect(peer, DisconnectReason::NodeIdMismatch);
            return;
        }
        if v.protocol_version < self.cfg.min_protocol_version {
            let reason = format!(
                "protocol version {} is below the minimum {}",
                v.protocol_version, self.cfg.min_protocol_version
            );
            self.reject(peer, "version", reject_code::OBSOLETE, &reason);
            self.disconnect(peer, DisconnectReason::ObsoleteVersion(v.protocol_version));
            return;
        }
        let inbound = p.conn_type == ConnType::Inbound;
        if inbound && our_nonces.contains(&v.nonce) {
            self.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        p.version = Some(v);
        if inbound {
            self.send_version(peer, now_ms);
        }
        self.out.push(Output::Send(peer, Message::Verack));
    }

    fn on_verack(&mut self, peer: PeerId, now_ms: u64) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        if p.version.is_none() || p.ready {
            self.misbehaving(peer, Misbehaviour::ProtocolOrder, now_ms);
            self.disconnect(
                peer,
                DisconnectReason::Misbehaviour(Misbehaviour::ProtocolOrder),
            );
            return;
        }
        p.ready = true;
        p.last_ping_ms = now_ms;
        let (addr, conn_type) = (p.addr, p.conn_type);
        let seen_as = p.version.as_ref().map(|v| v.receiver.socket_addr());
        if matches!(conn_type, ConnType::Outbound | ConnType::Feeler) {
            self.addrman.mark_good(&addr, now_secs(now_ms));
        }
        if conn_type == ConnType::Feeler {
            self.disconnect(peer, DisconnectReason::FeelerDone);
            return;
        }
        if conn_type != ConnType::Inbound {
            self.out.push(Output::Send(peer, Message::GetAddr));
            self.advertise_self(peer, seen_as, now_ms);
        }
        tracing::debug!(peer, %addr, conn = conn_type.name(), "handshake complete");
    }

    /// Tells an outbound peer where we listen: the IP it sees us at, and our listen port.
    fn advertise_self(&mut self, peer: PeerId, seen_as: Option<SocketAddr>, now_ms: u64) {
        let (Some(port), Some(seen)) = (self.cfg.listen_port, seen_as) else {
            return;
        };
        if seen.ip().is_unspecified() {
            return;
        }
        if !gossipable(self.cfg.allow_local_addrs, seen.ip()) {
            return;
        }
        let ours = SocketAddr::new(seen.ip(), port);
        let list = BoundedVec::new(vec![TimestampedAddress {
            time: now_secs(now_ms),
            addr: NetAddress::new(ours, self.cfg.services),
        }])
        .expect("one address fits");
        self.out.push(Output::Send(peer, Message::Addr(list)));
    }

    fn on_addr(&mut self, peer: PeerId, list: &[TimestampedAddress], now_ms: u64) {
        let now = now_secs(now_ms);
        let allow_local = self.cfg.allow_local_addrs;
        let p = self.peers.get_mut(&peer).expect("caller checked");
        let elapsed = now_ms.saturating_sub(p.addr_tokens_ms) as f64 / 1000.0;
        p.addr_tokens = (p.addr_tokens + elapsed * ADDR_TOKENS_PER_SEC).min(ADDR_TOKENS_MAX);
        p.addr_tokens_ms = now_ms;
        let source = p.addr;
        let mut fresh_new = Vec::new();
        for item in list {
            if p.addr_tokens < 1.0 {
                break; // over the rate: the rest is dropped, without penalty
            }
            p.addr_tokens -= 1.0;
            let addr = item.addr.socket_addr();
            if p.known_addrs.len() >= KNOWN_ADDRS_MAX {
                p.known_addrs.clear();
            }
            p.known_addrs.insert(addr);
            if !gossipable(allow_local, addr.ip()) {
                continue; // never stored, relayed or dialled
            }
            // A time far in the future is a lie meant to look fresh: treat it as old.
            let time = if item.time > now + ADDR_FUTURE_SKEW_SECS {
                now.saturating_sub(ADDR_FUTURE_PENALTY_SECS)
            } else {
                item.time.min(now)
            };
            let added = self
                .addrman
                .add(addr, item.addr.services, source, time, now);
            if added && now - time < ADDR_FRESH_SECS {
                fresh_new.push(TimestampedAddress { time, ..*item });
            }
        }
        // Addresses earn no eviction protection: they are free to make up.
        if list.len() <= ADDR_RELAY_MAX_ITEMS && !fresh_new.is_empty() {
            self.relay_addrs(peer, &fresh_new);
        }
    }

    /// Forwards newly learned, fresh addresses to a few other peers that don't know them.
    fn relay_addrs(&mut self, from: PeerId, items: &[TimestampedAddress]) {
        let mut targets: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| **id != from && p.ready && !p.disconnecting)
            .map(|(id, _)| *id)
            .collect();
        for i in 0..targets.len().min(ADDR_RELAY_FANOUT) {
            let j = self.rng.gen_range(i..targets.len());
            targets.swap(i, j);
        }
        targets.truncate(ADDR_RELAY_FANOUT);
        for target in targets {
            let p = self.peers.get_mut(&target).expect("listed above");
            let unknown: Vec<TimestampedAddress> = items
                .iter()
                .filter(|i| p.known_addrs.insert(i.addr.socket_addr()))
                .copied()
                .collect();
            if !unknown.is_empty() {
                let list = BoundedVec::new(unknown).expect("at most ADDR_RELAY_MAX_ITEMS");
                self.out.push(Output::Send(target, Message::Addr(list)));
            }
        }
    }

    fn on_getaddr(&mut self, peer: PeerId, now_ms: u64) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        if p.getaddr_answered {
            return;
        }
        p.getaddr_answered = true;
        let allow_local = self.cfg.allow_local_addrs;
        let items: Vec<TimestampedAddress> = self
            .addrman
            .sample(&mut self.rng, now_secs(now_ms), limits::MAX_ADDR_ITEMS)
            .into_iter()
            .filter(|e| gossipable(allow_local, e.socket_addr().ip()))
            .map(|e| TimestampedAddress {
                time: e.last_seen,
                addr: NetAddress::new(e.socket_addr(), e.services),
            })
            .collect();
        if let Some(p) = self.peers.get_mut(&peer) {
            for i in &items {
                if p.known_addrs.len() < KNOWN_ADDRS_MAX {
                    p.known_addrs.insert(i.addr.socket_addr());
                }
            }
        }
        if !items.is_empty() {
            let list = BoundedVec::new(items).expect("sample is capped at MAX_ADDR_ITEMS");
            self.out.push(Output::Send(peer, Message::Addr(list)));
        }
    }

    // ----- timers ---------------------------------------------------------------------------

    /// Periodic work: timeouts, pings, ban expiry, and dialling. Call about once a second.
    pub fn tick(&mut self, now_ms: u64) {
        let mut to_ping = Vec::new();
        let mut to_drop = Vec::new();
        for (id, p) in &self.peers {
            if p.disconnecting {
                continue;
            }
            if !p.ready {
                if now_ms.saturating_sub(p.connected_ms) >= self.cfg.handshake_timeout_ms {
                    to_drop.push((*id, DisconnectReason::HandshakeTimeout));
                }
                continue;
            }
            if let Some((_, sent)) = p.ping {
                if now_ms.saturating_sub(sent) >= self.cfg.ping_timeout_ms {
                    to_drop.push((*id, DisconnectReason::PingTimeout));
                    continue;
                }
            }
            if now_ms.saturating_sub(p.last_recv_ms) >= self.cfg.inactivity_timeout_ms {
                to_drop.push((*id, DisconnectReason::Inactivity));
                continue;
            }
            if p.ping.is_none()
                && now_ms.saturating_sub(p.last_ping_ms) >= self.cfg.ping_interval_ms
            {
                to_ping.push(*id);
            }
        }
        for (id, reason) in to_drop {
            self.disconnect(id, reason);
        }
        for id in to_ping {
            self.send_ping(id, now_ms);
        }
        self.bans.expire(now_ms);
        // Dials the I/O side has not answered by now are given up as failed, so that an
        // added peer is not left "dialling" forever (a late answer is then ignored).
        let expired: Vec<DialId> = self
            .dials
            .iter()
            .filter(|(_, d)| now_ms.saturating_sub(d.started_ms) >= DIAL_TIMEOUT_MS * 2)
            .map(|(id, _)| *id)
            .collect();
        for dial in expired {
            self.dial_failed(dial, now_ms);
        }
        self.duplicate_dials.retain(|_, until| *until > now_ms);
        if now_ms.saturating_sub(self.last_cleanup_ms) >= ADDRMAN_CLEANUP_MS {
            self.last_cleanup_ms = now_ms;
            self.addrman.remove_terrible(now_secs(now_ms));
        }
        self.addrman.resolve_collisions(now_secs(now_ms));
        self.maintain_manual(now_ms);
        self.maintain_outbound(now_ms);
        self.maybe_start_feeler(now_ms);
    }

    fn new_dial(&mut self, kind: DialKind, now_ms: u64) -> DialId {
        let dial = self.next_dial;
        self.next_dial += 1;
        self.dials.insert(
            dial,
            PendingDial {
                kind,
                started_ms: now_ms,
            },
        );
        dial
    }

    fn maintain_manual(&mut self, now_ms: u64) {
        let due: Vec<usize> = self
            .manual
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state == ManualState::Idle && now_ms >= m.next_attempt_ms)
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let key = self.manual[i].spec.to_string();
            let dial = self.new_dial(DialKind::Manual(key), now_ms);
            let m = &mut self.manual[i];
            m.state = ManualState::Dialing(dial);
            m.last_attempt_ms = now_ms;
            self.out.push(Output::Dial {
                dial,
                target: DialTarget {
                    host: m.spec.host.clone(),
                    port: m.spec.port,
                },
                expected: m.node_id,
            });
        }
    }

    fn maintain_outbound(&mut self, now_ms: u64) {
        if self.cfg.connect_only {
            return;
        }
        let now = now_secs(now_ms);
        let mut started = 0;
        while started < DIALS_PER_TICK
            && self.auto_outbound_count() < self.cfg.max_outbound
            && self.peers.len() + self.dials.len() < self.cfg.max_total
        {
            // Peers by the address we dialled and by where they listen: an inbound peer's
            // listen address, learned from gossip, is not a new peer.
            let connected: HashSet<SocketAddr> = self
                .peers
                .values()
                .flat_map(|p| [Some(p.addr), p.listen_addr()])
                .flatten()
                .collect();
            let duplicates = &self.duplicate_dials;
            let pending: HashSet<SocketAddr> = self
                .dials
                .values()
                .filter_map(|d| match d.kind {
                    DialKind::Auto(a) => Some(a),
                    _ => None,
                })
                .collect();
            let groups: HashSet<_> = self
                .peers
                .values()
                .filter(|p| p.conn_type == ConnType::Outbound)
                .map(|p| netgroup(&p.addr, self.cfg.allow_local_addrs))
                .chain(
                    pending
                        .iter()
                        .map(|a| netgroup(a, self.cfg.allow_local_addrs)),
                )
                .collect();
            let bans = &self.bans;
            let listen_port = self.cfg.listen_port;
            let local = self.cfg.allow_local_addrs;
            let excluded = |a: &SocketAddr| {
                connected.contains(a)
                    || duplicates.get(a).is_some_and(|until| *until > now_ms)
                    || pending.contains(a)
                    || groups.contains(&netgroup(a, local))
                    || bans.is_banned(&BanTarget::Ip(a.ip()), now_ms)
                    // our own listener, heard of through gossip
                    || (a.ip().is_loopback() && Some(a.port()) == listen_port)
            };
            let pick = self.addrman.select(&mut self.rng, now, |a| !excluded(a));
            let Some(addr) = pick else {
                self.maybe_request_seeds(now_ms);
                return;
            };
            let dial = self.new_dial(DialKind::Auto(addr), now_ms);
            self.out.push(Output::Dial {
                dial,
                target: DialTarget {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                },
                expected: None,
            });
            started += 1;
        }
    }

    /// Tests a tried address that a newcomer wants to evict: one short feeler connection at a
    /// time, outside the outbound slots (the address book resolves the collision from how it
    /// went).
    fn maybe_start_feeler(&mut self, now_ms: u64) {
        if self.cfg.connect_only
            || self
                .dials
                .values()
                .any(|d| matches!(d.kind, DialKind::Feeler(_)))
            || self.peers.values().any(|p| p.conn_type == ConnType::Feeler)
            || self.peers.len() + self.dials.len() >= self.cfg.max_total
        {
            return;
        }
        let Some(addr) = self.addrman.collision_to_test() else {
            return;
        };
        if self.peers.values().any(|p| p.addr == addr && p.ready) {
            // Connected and working right now: that is the test passed.
            self.addrman.mark_good(&addr, now_secs(now_ms));
            return;
        }
        if self.bans.is_banned(&BanTarget::Ip(addr.ip()), now_ms) {
            return; // the collision timeout settles it
        }
        let dial = self.new_dial(DialKind::Feeler(addr), now_ms);
        self.out.push(Output::Dial {
            dial,
            target: DialTarget {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            expected: None,
        });
    }

    fn maybe_request_seeds(&mut self, now_ms: u64) {
        if !self.cfg.have_dns_seeds || self.auto_outbound_count() > 0 {
            return;
        }
        let due = self
            .last_seed_request_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= SEED_RETRY_MS);
        if due {
            self.last_seed_request_ms = Some(now_ms);
            self.out.push(Output::ResolveSeeds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PROTOCOL_VERSION;

    const T0: u64 = 1_800_000_000_000;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn public_core() -> Core {
        let mut cfg = CoreConfig::new(id(0));
        cfg.rng_seed = 7;
        Core::new(cfg, AddrMan::new([1; 32]), BanList::default())
    }

    fn ready_inbound(core: &mut Core, peer: PeerId, from: &str, n: u8) {
        let addr: SocketAddr = from.parse().unwrap();
        core.connected(peer, addr, None, id(n), T0);
        let any: SocketAddr = "1.1.1.1:1".parse().unwrap();
        core.received(
            peer,
            Message::Version(Version {
                protocol_version: PROTOCOL_VERSION,
                services: 1,
                timestamp: 0,
                receiver: NetAddress::new(any, 0),
                sender: NetAddress::new(any, 1),
                nonce: peer,
                user_agent: BoundedString::truncating("/t/"),
                best_height: 0,
                node_id: id(n),
                relay: true,
            }),
            T0,
        );
        core.received(peer, Message::Verack, T0);
        core.drain_outputs();
    }

    fn addr_msg(items: &[(&str, u64)]) -> Message {
        let list = items
            .iter()
            .map(|(a, time)| TimestampedAddress {
                time: *time,
                addr: NetAddress::new(a.parse().unwrap(), 1),
            })
            .collect();
        Message::Addr(BoundedVec::new(list).unwrap())
    }

    fn relayed(out: &[Output]) -> Vec<TimestampedAddress> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(_, Message::Addr(list)) => Some(list.as_slice().to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Hardening issue, defect 4: loopback, RFC 1918 and link-local addresses were stored,
    /// relayed and dialled from gossip.
    #[test]
    fn gossiped_local_addresses_are_not_stored_or_relayed_on_public_networks() {
        let mut c = public_core();
        ready_inbound(&mut c, 1, "8.8.8.8:5000", 1);
        ready_inbound(&mut c, 2, "9.9.9.9:5000", 2);
        let now = T0 / 1000;
        c.received(
            1,
            addr_msg(&[
                ("127.0.0.1:8333", now),
                ("10.1.2.3:8333", now),
                ("192.168.1.1:8333", now),
                ("169.254.0.1:8333", now),
                ("[fe80::1]:8333", now),
                ("5.6.7.8:8333", now),
            ]),
            T0,
        );
        let out = c.drain_outputs();
        assert_eq!(c.addrman().len(), 1, "only the routable address is stored");
        assert!(c.addrman().get(&"5.6.7.8:8333".parse().unwrap()).is_some());
        let forwarded: Vec<SocketAddr> =
            relayed(&out).iter().map(|i| i.addr.socket_addr()).collect();
        assert_eq!(
            forwarded,
            vec!["5.6.7.8:8333".parse::<SocketAddr>().unwrap()]
        );

        // On a local network (regtest) the same gossip is kept.
        let mut cfg = CoreConfig::new(id(0));
        cfg.allow_local_addrs = true;
        let mut local = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
        ready_inbound(&mut local, 1, "127.0.0.1:5000", 1);
        local.received(
            1,
            addr_msg(&[("127.0.0.1:8333", now), ("10.1.2.3:8333", now)]),
            T0,
        );
        assert_eq!(local.addrman().len(), 2);
    }

    /// Defect 4: a future timestamp counted as fresh, so it was relayed and looked recent.
    #[test]
    fn future_address_times_are_not_fresh() {
        let mut c = public_core();
        ready_inbound(&mut c, 1, "8.8.8.8:5000", 1);
        ready_inbound(&mut c, 2, "9.9.9.9:5000", 2);
        let now = T0 / 1000;
        c.received(1, addr_msg(&[("5.6.7.8:8333", now + 86_400)]), T0);
        let out = c.drain_outputs();
        assert!(
            relayed(&out).is_empty(),
            "a far-future address is not relayed"
        );
        let stored = c.addrman().get(&"5.6.7.8:8333".parse().unwrap()).unwrap();
        assert!(stored.last_seen <= now - ADDR_FUTURE_PENALTY_SECS);
        // Within the clock-skew allowance it is fresh, relayed with our time, not its own.
        c.received(1, addr_msg(&[("5.6.7.9:8333", now + 60)]), T0);
        let out = c.drain_outputs();
        let items = relayed(&out);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].time, now);
    }

    /// Defect 4: one fabricated fresh address earned a peer eviction protection.
    #[test]
    fn addr_gossip_earns_no_eviction_protection() {
        let mut c = public_core();
        ready_inbound(&mut c, 1, "8.8.8.8:5000", 1);
        let now = T0 / 1000;
        c.received(1, addr_msg(&[("5.6.7.8:8333", now)]), T0 + 1_000);
        assert_eq!(c.addrman().len(), 1, "the address itself is accepted");
        assert_eq!(c.peers[&1].last_useful_ms, 0);
    }

    /// Defect 3: a per-IP cap counted exact IPv6 addresses, so one /64 was no limit at all.
    #[test]
    fn inbound_per_ip_caps_count_ipv6_by_slash_64() {
        let mut cfg = CoreConfig::new(id(0));
        cfg.max_inbound_per_ip = 2;
        let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
        c.connected(1, "[2001:db8:1:2::1]:1".parse().unwrap(), None, id(1), T0);
        c.connected(2, "[2001:db8:1:2::2]:1".parse().unwrap(), None, id(2), T0);
        let third: SocketAddr = "[2001:db8:1:2:abcd::3]:1".parse().unwrap();
        assert_eq!(
            c.admit_inbound(third, T0),
            Err(DisconnectReason::TooManyFromIp)
        );
        assert!(c
            .admit_inbound("[2001:db8:1:3::1]:1".parse().unwrap(), T0)
            .is_ok());
    }

    /// Defect 3: a ban given as `::ffff:a.b.c.d` (or an IPv4 ban) matches the peer however
    /// its address arrived.
    #[test]
    fn bans_match_mapped_and_plain_ipv4_alike() {
        let mut c = public_core();
        c.ban(
            BanTarget::Ip("::ffff:1.2.3.4".parse().unwrap()),
            T0,
            60_000,
            "test",
        );
        assert_eq!(
            c.admit_inbound("1.2.3.4:5".parse().unwrap(), T0),
            Err(DisconnectReason::Banned)
        );
        assert_eq!(
            c.admit_inbound("[::ffff:1.2.3.4]:5".parse().unwrap(), T0),
            Err(DisconnectReason::Banned)
        );
    }

    /// Defect 4 (test-before-evict): a collision in the tried table makes the core open one
    /// feeler to the occupant; a good handshake keeps it.
    #[test]
    fn a_tried_collision_is_resolved_by_a_feeler() {
        let mut c = public_core();
        c.cfg.connect_only = true; // no ordinary outbound dials to muddle the outputs
        let now = T0 / 1000;
        let (first, other) = c.addrman.tried_colliding_pair();
        let src: SocketAddr = "5.5.5.5:1".parse().unwrap();
        c.addrman.add(first, 1, src, now, now);
        c.addrman.mark_good(&first, now - 10 * 3600);
        c.addrman.add(other, 1, src, now, now);
        c.addrman.mark_good(&other, now);
        assert_eq!(c.addrman.collision_to_test(), Some(first));
        c.cfg.connect_only = false;
        c.cfg.max_outbound = 0; // only the feeler may dial
        c.tick(T0);
        let dial = c
            .drain_outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Dial { dial, target, .. } if target.host == "1.2.3.4" => Some(dial),
                _ => None,
            })
            .expect("a feeler to the occupant");
        c.connected(9, first, Some(dial), id(9), T0 + 100);
        c.received(
            9,
            Message::Version(Version {
                protocol_version: PROTOCOL_VERSION,
                services: 1,
                timestamp: 0,
                receiver: NetAddress::new(first, 0),
                sender: NetAddress::new(first, 1),
                nonce: 99,
                user_agent: BoundedString::truncating("/t/"),
                best_height: 0,
                node_id: id(9),
                relay: true,
            }),
            T0 + 200,
        );
        c.received(9, Message::Verack, T0 + 300);
        let out = c.drain_outputs();
        assert!(out.contains(&Output::Disconnect(9, DisconnectReason::FeelerDone)));
        c.tick(T0 + 1_000);
        assert!(
            c.addrman.get(&first).unwrap().tried,
            "the working occupant stays"
        );
        assert!(!c.addrman.get(&other).unwrap().tried);
        assert_eq!(c.addrman.collision_to_test(), None);
    }
}
