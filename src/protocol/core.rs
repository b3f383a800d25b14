//! `Core`: the protocol state machine. Owns every peer's protocol state, the handshake and
//! liveness rules, ADDR gossip, misbehaviour scoring, inbound eviction, and the choice of whom
//! to dial. Time comes in as an argument (Unix milliseconds); decisions go out as `Output`s.

use super::addrman::AddrMan;
use super::bans::{BanList, BanTarget, Misbehaviour, BAN_THRESHOLD};
use super::eviction::{self, Candidate};
use super::netgroup::netgroup;
use crate::config::PeerSpec;
use crate::encoding::{BoundedString, BoundedVec};
use crate::types::NodeId;
use crate::wire::message::reject_code;
use crate::wire::{limits, Message, NetAddress, Reject, TimestampedAddress, Version, WireError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
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
}

impl ConnType {
    pub fn name(self) -> &'static str {
        match self {
            ConnType::Inbound => "inbound",
            ConnType::Outbound => "outbound-full-relay",
            ConnType::Manual => "manual",
            ConnType::OneTry => "onetry",
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
    dials: HashMap<DialId, PendingDial>,
    next_dial: DialId,
    best_height: u64,
    last_seed_request_ms: Option<u64>,
    last_cleanup_ms: u64,
    out: Vec<Output>,
}

fn now_secs(now_ms: u64) -> u64 {
    now_ms / 1000
}

impl Core {
    pub fn new(cfg: CoreConfig, addrman: AddrMan, bans: BanList) -> Core {
        Core {
            rng: StdRng::seed_from_u64(cfg.rng_seed),
            cfg,
            addrman,
            bans,
            peers: BTreeMap::new(),
            manual: Vec::new(),
            dials: HashMap::new(),
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

    pub fn addrman_mut(&mut self) -> &mut AddrMan {
        &mut self.addrman
    }

    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    pub fn bans_mut(&mut self) -> &mut BanList {
        &mut self.bans
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
        self.bans.ban(target, now_ms, duration_ms, reason);
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| match target {
                BanTarget::Ip(ip) => p.addr.ip() == ip,
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
        if self.bans.is_banned(&BanTarget::Ip(addr.ip()), now_ms) {
            return Err(DisconnectReason::Banned);
        }
        let from_ip = self
            .peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound && p.addr.ip() == addr.ip())
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
        if banned && !conn_type.is_manual() {
            self.disconnect(peer, DisconnectReason::Banned);
            return;
        }
        if self
            .peers
            .iter()
            .any(|(id, p)| *id != peer && p.node_id == node_id && !p.disconnecting)
        {
            self.disconnect(peer, DisconnectReason::DuplicateNodeId);
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
                group: netgroup(&p.addr),
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
            DialKind::Auto(addr) => self.addrman.attempt_failed(&addr, now_secs(now_ms)),
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
        if p.conn_type == ConnType::Outbound && !p.ready {
            self.addrman.attempt_failed(&p.addr, now_secs(now_ms));
        }
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

    /// Adds to a peer's score; at the threshold it is disconnected and (unless manual)
    /// banned by IP and node id.
    pub fn misbehaving(&mut self, peer: PeerId, what: Misbehaviour, now_ms: u64) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.score = p.score.saturating_add(what.weight());
        if p.score < BAN_THRESHOLD {
            return;
        }
        let (ip, node_id, manual) = (p.addr.ip(), p.node_id, p.conn_type.is_manual());
        if !manual {
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
        if conn_type == ConnType::Outbound {
            self.addrman.mark_good(&addr, now_secs(now_ms));
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
        let p = self.peers.get_mut(&peer).expect("caller checked");
        let elapsed = now_ms.saturating_sub(p.addr_tokens_ms) as f64 / 1000.0;
        p.addr_tokens = (p.addr_tokens + elapsed * ADDR_TOKENS_PER_SEC).min(ADDR_TOKENS_MAX);
        p.addr_tokens_ms = now_ms;
        let source = p.addr;
        let mut fresh_new = Vec::new();
        let mut processed = 0usize;
        for item in list {
            if p.addr_tokens < 1.0 {
                break; // over the rate: the rest is dropped, without penalty
            }
            p.addr_tokens -= 1.0;
            processed += 1;
            let addr = item.addr.socket_addr();
            if p.known_addrs.len() >= KNOWN_ADDRS_MAX {
                p.known_addrs.clear();
            }
            p.known_addrs.insert(addr);
            let added = self
                .addrman
                .add(addr, item.addr.services, source, item.time, now);
            if added && now.saturating_sub(item.time) < 600 {
                fresh_new.push(*item);
            }
        }
        if processed > 0 && !fresh_new.is_empty() {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.last_useful_ms = now_ms;
            }
        }
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
        let items: Vec<TimestampedAddress> = self
            .addrman
            .sample(&mut self.rng, now_secs(now_ms), limits::MAX_ADDR_ITEMS)
            .into_iter()
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
        self.dials
            .retain(|_, d| now_ms.saturating_sub(d.started_ms) < DIAL_TIMEOUT_MS * 2);
        if now_ms.saturating_sub(self.last_cleanup_ms) >= ADDRMAN_CLEANUP_MS {
            self.last_cleanup_ms = now_ms;
            self.addrman.remove_terrible(now_secs(now_ms));
        }
        self.maintain_manual(now_ms);
        self.maintain_outbound(now_ms);
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
            let connected: HashSet<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
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
                .map(|p| netgroup(&p.addr))
                .chain(pending.iter().map(netgroup))
                .collect();
            let bans = &self.bans;
            let listen_port = self.cfg.listen_port;
            let excluded = |a: &SocketAddr| {
                connected.contains(a)
                    || pending.contains(a)
                    || groups.contains(&netgroup(a))
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
