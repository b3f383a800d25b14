//! The peer manager: the connection lifecycle. Admission, the VERSION/VERACK handshake and
//! its timeout, duplicate and self connections, inbound eviction, added (manual) peers with
//! their backoff, and the choice of whom to dial (outbound slots, feelers, address fetches
//! from bootstrap nodes, DNS seeds).
//!
//! Owns the peer table, pending dials and added peers, on monotonic time (wall time only goes
//! into VERSION). Never scores or bans (it asks the coordinator whether a peer is banned),
//! never gossips, never pings; it borrows the address book only to pick and grade addresses.

use super::addrman::AddrMan;
use super::bans::Misbehaviour;
use super::config::CoreConfig;
use super::eviction::{self, Candidate};
use super::io::{
    CommandError, ConnType, DialId, DialTarget, DisconnectReason, Event, Internal, Outbox, PeerId,
    Persist, Wake,
};
use super::netgroup::{canonical_addr, host_key, netgroup};
use super::peermap::PeerMap;
use crate::config::PeerSpec;
use crate::encoding::BoundedString;
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::NodeId;
use crate::wire::message::reject_code;
use crate::wire::{NetAddress, Version};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

/// Manual peer backoff: first retry after this, doubling to the maximum.
const MANUAL_BACKOFF_MIN: LocalDuration = LocalDuration::from_secs(1);
const MANUAL_BACKOFF_MAX: LocalDuration = LocalDuration::from_mins(5);
/// A connection that lasted this long resets the manual backoff.
const STABLE_CONNECTION: LocalDuration = LocalDuration::from_secs(60);
/// New outbound dials started per tick: a slow, steady fill, not a burst.
const DIALS_PER_TICK: usize = 2;
/// A dial the I/O side has not answered by now is given up as failed (twice its own
/// connect-plus-TLS timeout), so an added peer is never left "dialling" forever.
const DIAL_EXPIRY: LocalDuration = LocalDuration::from_secs(60);
/// How often DNS seeds are asked again while we have no outbound peers.
const SEED_RETRY: LocalDuration = LocalDuration::from_mins(5);
/// How long an address whose dial reached a node already connected is not dialled again.
const DUPLICATE_DIAL_BACKOFF: LocalDuration = LocalDuration::from_mins(10);
/// At most one feeler connection this often (Bitcoin Core's `FEELER_INTERVAL`): each one
/// takes an inbound slot at its target, which evicts a peer there when the target is full.
const FEELER_INTERVAL: LocalDuration = LocalDuration::from_mins(2);
/// Addresses remembered for that; the one due soonest goes first beyond this.
const MAX_DUPLICATE_DIALS: usize = 1_024;
/// Bootstrap nodes waiting for their address fetch; more are ignored (an operator's list,
/// not a stranger's).
const MAX_ADDR_FETCHES: usize = 64;
/// An address fetch whose answer has not come by this long after connecting is closed: an
/// answer takes one round trip after the handshake.
const ADDR_FETCH_TIMEOUT: LocalDuration = LocalDuration::from_secs(30);

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
    next_attempt: LocalTime,
    backoff: LocalDuration,
    /// When the last connection attempt started (for getaddednodeinfo).
    last_attempt: Option<LocalTime>,
}

#[derive(Debug, Clone)]
enum DialKind {
    Auto(SocketAddr),
    Manual(String),
    OneTry,
    Feeler(SocketAddr),
    AddrFetch(SocketAddr),
}

#[derive(Debug, Clone)]
struct PendingDial {
    kind: DialKind,
    started: LocalTime,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    /// Its network group's rank for eviction (`eviction::group_rank`), computed once.
    group_rank: u64,
    conn_type: ConnType,
    node_id: NodeId,
    connected_at: LocalTime,
    version: Option<Version>,
    sent_version_nonce: Option<u64>,
    ready: bool,
    /// Last time the peer gave us something new and useful (blocks and transactions, once
    /// relayed): eviction protects such peers. Addresses never count: they are free to make up.
    last_useful: Option<LocalTime>,
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

/// What getpeerinfo shows of a peer's connection (the coordinator adds liveness and score).
#[derive(Clone, Debug)]
pub struct PeerView {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub conn_type: ConnType,
    pub node_id: NodeId,
    pub connected_at: LocalTime,
    pub version: Option<Version>,
    pub ready: bool,
}

/// What getaddednodeinfo shows of a manual peer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AddedNodeSnapshot {
    pub addednode: String,
    pub connected: bool,
    pub peer: Option<PeerId>,
    pub nodeid: Option<NodeId>,
    /// Unix milliseconds; 0 = never.
    pub last_attempt_ms: u64,
    pub next_attempt_ms: u64,
}

/// What the peer manager needs to know of the rest of the core at a decision, lent by the
/// coordinator for that call.
pub struct Views<'a> {
    /// Whether an IP (and node id, once known) is banned.
    pub banned: &'a dyn Fn(IpAddr, Option<NodeId>) -> bool,
    /// A peer's lowest ping, for eviction.
    pub min_ping: &'a dyn Fn(PeerId) -> Option<LocalDuration>,
}

#[derive(Debug, Default)]
pub struct PeerMgr {
    peers: PeerMap<Peer>,
    manual: Vec<ManualPeer>,
    dials: BTreeMap<DialId, PendingDial>,
    /// Addresses not to dial until the time given: their node is connected another way.
    duplicate_dials: BTreeMap<SocketAddr, LocalTime>,
    next_dial: DialId,
    best_height: u64,
    last_seed_request: Option<LocalTime>,
    /// When the next feeler may start.
    next_feeler: LocalTime,
    /// Bootstrap nodes still to be asked for addresses, one connection at a time, in a
    /// seeded random order (so a crowd starting together spreads over them).
    addr_fetches: std::collections::VecDeque<SocketAddr>,
    /// Set by `setnetworkactive false`: no dialling, no inbound, every peer let go.
    network_off: bool,
}

impl PeerMgr {
    pub fn new() -> PeerMgr {
        PeerMgr {
            next_dial: 1,
            ..PeerMgr::default()
        }
    }

    pub fn on_internal(&mut self, event: &Internal) {
        if let Internal::TipChanged { height, .. } = *event {
            self.best_height = height;
        }
    }

    // ----- queries --------------------------------------------------------------------------

    pub fn inbound_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound)
            .count()
    }

    pub fn outbound_count(&self) -> usize {
        self.peers.len() - self.inbound_count()
    }

    /// Outbound full-relay peers (`ConnType::Outbound`), in any state: what getpeerinfo
    /// lists as "outbound-full-relay".
    pub fn outbound_full_relay_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.conn_type == ConnType::Outbound)
            .count()
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

    /// Starts loading the peer table's ids (a hint).
    pub fn prefetch(&self) {
        self.peers.prefetch();
    }

    /// Whether the peer is connected and not on its way out: its messages are handled.
    pub fn is_live(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| !p.disconnecting)
    }

    pub fn is_ready(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.ready)
    }

    pub fn is_disconnecting(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.disconnecting)
    }

    pub fn view(&self, peer: PeerId) -> Option<PeerView> {
        self.peers.get(&peer).map(|p| Self::view_of(peer, p))
    }

    pub fn views(&self) -> impl Iterator<Item = PeerView> + '_ {
        self.peers.iter().map(|(id, p)| Self::view_of(*id, p))
    }

    fn view_of(id: PeerId, p: &Peer) -> PeerView {
        PeerView {
            id,
            addr: p.addr,
            conn_type: p.conn_type,
            node_id: p.node_id,
            connected_at: p.connected_at,
            version: p.version.clone(),
            ready: p.ready,
        }
    }

    pub fn added_nodes(&self, now: Now) -> Vec<AddedNodeSnapshot> {
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
                last_attempt_ms: m.last_attempt.map_or(0, |t| now.unix_ms_at(t)),
                next_attempt_ms: now.unix_ms_at(m.next_attempt),
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
        now: Now,
        out: &mut Outbox,
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
            next_attempt: now.local,
            backoff: MANUAL_BACKOFF_MIN,
            last_attempt: None,
        });
        self.maintain_manual(now.local, out);
        Ok(())
    }

    /// `addnode remove`: stops keeping the peer connected and disconnects it.
    pub fn remove_manual(&mut self, spec: &PeerSpec, out: &mut Outbox) -> Result<(), CommandError> {
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
                out.disconnect(peer, DisconnectReason::Requested);
            }
            ManualState::Dialing(dial) => {
                self.dials.remove(&dial);
            }
            ManualState::Idle => {}
        }
        Ok(())
    }

    /// `addnode onetry`: dial once, no retries.
    pub fn one_try(&mut self, spec: PeerSpec, now: LocalTime, out: &mut Outbox) {
        let dial = self.new_dial(DialKind::OneTry, now);
        let target = DialTarget {
            host: spec.host,
            port: spec.port,
        };
        out.dial(dial, target, spec.node_id);
    }

    /// `disconnectnode`: by peer id or by address.
    pub fn disconnect_matching(
        &mut self,
        peer: Option<PeerId>,
        addr: Option<SocketAddr>,
        out: &mut Outbox,
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
            out.disconnect(id, DisconnectReason::Requested);
        }
        Ok(())
    }

    /// `setnetworkactive`: off lets every peer go and stops dialling and accepting until on.
    pub fn set_network_active(&mut self, active: bool, out: &mut Outbox) {
        self.network_off = !active;
        if !active {
            for (id, p) in &self.peers {
                if !p.disconnecting {
                    out.disconnect(*id, DisconnectReason::NetworkOff);
                }
            }
        }
    }

    pub fn network_active(&self) -> bool {
        !self.network_off
    }

    // ----- connection events ----------------------------------------------------------------

    /// Whether to start a TLS handshake with a new inbound TCP connection from `addr`.
    pub fn admit_inbound(
        &self,
        cfg: &CoreConfig,
        addr: SocketAddr,
        banned: bool,
    ) -> Result<(), DisconnectReason> {
        if self.network_off {
            return Err(DisconnectReason::NetworkOff);
        }
        if banned && !cfg.is_noban(addr.ip()) {
            return Err(DisconnectReason::Banned);
        }
        let host = host_key(addr.ip());
        let from_ip = self
            .peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound && host_key(p.addr.ip()) == host)
            .count();
        if from_ip >= cfg.max_inbound_per_ip {
            return Err(DisconnectReason::TooManyFromIp);
        }
        if cfg.max_inbound == 0 {
            return Err(DisconnectReason::TooManyConnections);
        }
        Ok(())
    }

    /// A TLS session is up. `dial` is set for outbound connections.
    #[allow(clippy::too_many_arguments)]
    pub fn connected(
        &mut self,
        peer: PeerId,
        addr: SocketAddr,
        dial: Option<DialId>,
        node_id: NodeId,
        cfg: &CoreConfig,
        views: &Views,
        eviction_key: &[u8; 32],
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let pending = dial.and_then(|d| self.dials.remove(&d));
        if dial.is_some() && pending.is_none() {
            // The dial was cancelled (addnode remove) while it was under way.
            out.push(super::io::Output::Disconnect(
                peer,
                DisconnectReason::Requested,
            ));
            return;
        }
        let kind = pending.map(|d| d.kind);
        let (conn_type, manual_key) = match &kind {
            None => (ConnType::Inbound, None),
            Some(DialKind::Auto(_)) => (ConnType::Outbound, None),
            Some(DialKind::Manual(key)) => (ConnType::Manual, Some(key.clone())),
            Some(DialKind::OneTry) => (ConnType::OneTry, None),
            Some(DialKind::Feeler(_)) => (ConnType::Feeler, None),
            Some(DialKind::AddrFetch(_)) => (ConnType::AddrFetch, None),
        };
        let group_rank =
            eviction::group_rank(eviction_key, &netgroup(&addr, cfg.allow_local_addrs));
        self.peers.insert(
            peer,
            Peer {
                addr,
                group_rank,
                conn_type,
                node_id,
                connected_at: now.local,
                version: None,
                sent_version_nonce: None,
                ready: false,
                last_useful: None,
                manual_key: manual_key.clone(),
                disconnecting: false,
                duplicate: false,
            },
        );
        out.internal(Internal::PeerConnected {
            peer,
            addr,
            node_id,
            conn_type,
        });
        if let Some(key) = &manual_key {
            if let Some(m) = self.manual.iter_mut().find(|m| &m.spec.to_string() == key) {
                m.state = ManualState::Connected(peer);
                if m.node_id.is_none() {
                    m.node_id = Some(node_id);
                    out.persist(Persist::LearnedIdentity {
                        peer: key.clone(),
                        node_id,
                    });
                }
            }
        }

        if node_id == cfg.our_node_id {
            out.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        // A dial that was under way when the network was turned off.
        if self.network_off {
            out.disconnect(peer, DisconnectReason::NetworkOff);
            return;
        }
        let exempt =
            conn_type.is_manual() || (conn_type == ConnType::Inbound && cfg.is_noban(addr.ip()));
        if (views.banned)(addr.ip(), Some(node_id)) && !exempt {
            out.disconnect(peer, DisconnectReason::Banned);
            return;
        }
        let existing = self
            .peers
            .iter()
            .find(|(id, p)| **id != peer && p.node_id == node_id && !p.disconnecting)
            .map(|(id, _)| *id);
        if let Some(existing) = existing {
            let existing_inbound = self.peers[&existing].conn_type == ConnType::Inbound;
            let inbound = conn_type == ConnType::Inbound;
            // The same two nodes dialled each other at once: both sides keep the connection
            // dialled by the lower node id, or each would drop the one the other keeps.
            let dialler = |inbound: bool| if inbound { node_id } else { cfg.our_node_id };
            if inbound == existing_inbound || dialler(existing_inbound) < dialler(inbound) {
                self.on_duplicate(peer, existing, kind, now.local, out);
                return;
            }
            self.replace_duplicate(existing, peer, now.local, out);
        }
        if conn_type == ConnType::Inbound && !self.make_inbound_room(peer, cfg, views, out) {
            out.disconnect(peer, DisconnectReason::TooManyConnections);
            return;
        }
        if conn_type != ConnType::Inbound {
            self.send_version(peer, cfg, now, rng, out);
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
        now: LocalTime,
        out: &mut Outbox,
    ) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.duplicate = true;
            p.manual_key = None;
        }
        match dial {
            Some(DialKind::Auto(addr)) => self.rest_address(addr, now),
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
        out.disconnect(peer, DisconnectReason::DuplicateNodeId);
    }

    /// `existing` loses a tie to `newcomer`, a connection to the same node dialled the other
    /// way: it is dropped without counting against its address, and an added node it stood
    /// for counts as connected through the newcomer.
    fn replace_duplicate(
        &mut self,
        existing: PeerId,
        newcomer: PeerId,
        now: LocalTime,
        out: &mut Outbox,
    ) {
        let Some(e) = self.peers.get_mut(&existing) else {
            return;
        };
        e.duplicate = true;
        let key = e.manual_key.take();
        if e.conn_type == ConnType::Outbound {
            let addr = e.addr;
            self.rest_address(addr, now);
        }
        if let Some(key) = key {
            if let Some(m) = self.manual.iter_mut().find(|m| m.spec.to_string() == key) {
                m.state = ManualState::Connected(newcomer);
            }
            if let Some(n) = self.peers.get_mut(&newcomer) {
                n.manual_key.get_or_insert(key);
            }
        }
        for m in &mut self.manual {
            if m.state == ManualState::Connected(existing) {
                m.state = ManualState::Connected(newcomer);
            }
        }
        out.disconnect(existing, DisconnectReason::DuplicateNodeId);
    }

    /// An address whose node is connected another way is not dialled for a while.
    fn rest_address(&mut self, addr: SocketAddr, now: LocalTime) {
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
            .insert(addr, now + DUPLICATE_DIAL_BACKOFF);
    }

    /// Keeps inbound within its limits by evicting someone if needed; false = no room.
    fn make_inbound_room(
        &mut self,
        newcomer: PeerId,
        cfg: &CoreConfig,
        views: &Views,
        out: &mut Outbox,
    ) -> bool {
        let inbound = self
            .peers
            .values()
            .filter(|p| p.conn_type == ConnType::Inbound && !p.disconnecting)
            .count();
        let total = self.peers.values().filter(|p| !p.disconnecting).count();
        if inbound <= cfg.max_inbound && total <= cfg.max_total {
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
                group: netgroup(&p.addr, cfg.allow_local_addrs),
                group_rank: p.group_rank,
                connected_ms: p.connected_at.as_millis(),
                min_ping_ms: (views.min_ping)(*id).map(|d| d.as_millis()),
                last_useful_ms: p.last_useful.map_or(0, |t| t.as_millis()),
            })
            .collect();
        match eviction::select_victim(candidates) {
            Some(victim) => {
                out.disconnect(victim, DisconnectReason::Evicted);
                true
            }
            None => false,
        }
    }

    /// A dial did not produce a connection.
    pub fn dial_failed(&mut self, dial: DialId, now: LocalTime, out: &mut Outbox) {
        let Some(pending) = self.dials.remove(&dial) else {
            return;
        };
        match pending.kind {
            DialKind::Auto(addr) | DialKind::Feeler(addr) => {
                out.internal(Internal::DialFailed { addr })
            }
            DialKind::AddrFetch(addr) => out.internal(Internal::AddrFetchEnded { addr }),
            DialKind::Manual(key) => self.manual_retry_later(&key, now, false),
            DialKind::OneTry => {}
        }
    }

    fn manual_retry_later(&mut self, key: &str, now: LocalTime, was_stable: bool) {
        if let Some(m) = self.manual.iter_mut().find(|m| m.spec.to_string() == key) {
            if was_stable {
                m.backoff = MANUAL_BACKOFF_MIN;
            }
            m.state = ManualState::Idle;
            m.next_attempt = now + m.backoff;
            m.backoff = (m.backoff + m.backoff).min(MANUAL_BACKOFF_MAX);
        }
    }

    /// The connection is gone (closed by either side).
    pub fn disconnected(&mut self, peer: PeerId, now: LocalTime, out: &mut Outbox) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let Some(key) = &p.manual_key {
            let stable = now.since(p.connected_at) >= STABLE_CONNECTION;
            self.manual_retry_later(key, now, stable && p.ready);
        }
        // Other added nodes that counted as connected through this peer (the same node
        // under another name) are dialled again.
        for m in &mut self.manual {
            if m.state == ManualState::Connected(peer) {
                m.state = ManualState::Idle;
                m.next_attempt = now;
            }
        }
        if p.conn_type == ConnType::AddrFetch {
            out.internal(Internal::AddrFetchEnded { addr: p.addr });
        }
        let failed = matches!(p.conn_type, ConnType::Outbound | ConnType::Feeler)
            && !p.ready
            && !p.duplicate;
        out.internal(Internal::PeerGone {
            peer,
            addr: p.addr,
            conn_type: p.conn_type,
            failed,
        });
    }

    /// Marks the peer as on its way out; false if it already was (or is unknown).
    pub fn mark_disconnecting(&mut self, peer: PeerId) -> bool {
        match self.peers.get_mut(&peer) {
            Some(p) if !p.disconnecting => {
                p.disconnecting = true;
                true
            }
            _ => false,
        }
    }

    // ----- the handshake --------------------------------------------------------------------

    fn send_version(
        &mut self,
        peer: PeerId,
        cfg: &CoreConfig,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let nonce: u64 = rng.gen();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.sent_version_nonce = Some(nonce);
        let sender_port = cfg.listen_port.unwrap_or(0);
        out.version(
            peer,
            Version {
                protocol_version: cfg.protocol_version,
                services: cfg.services,
                timestamp: now.unix_secs() as i64,
                receiver: NetAddress::new(p.addr, 0),
                sender: NetAddress::new(
                    SocketAddr::new(IpAddr::from([0u8; 4]), sender_port),
                    cfg.services,
                ),
                nonce,
                user_agent: BoundedString::truncating(&cfg.user_agent),
                best_height: self.best_height,
                node_id: cfg.our_node_id,
                // A connection for one question wants no transaction announcements.
                relay: !p.conn_type.is_short_lived(),
            },
        );
    }

    pub fn on_version(
        &mut self,
        peer: PeerId,
        v: Version,
        cfg: &CoreConfig,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let ours = self
            .peers
            .values()
            .any(|p| p.sent_version_nonce == Some(v.nonce));
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.version.is_some() {
            out.misbehaved(peer, Misbehaviour::ProtocolOrder);
            return;
        }
        if v.node_id != p.node_id {
            out.disconnect(peer, DisconnectReason::NodeIdMismatch);
            return;
        }
        if v.protocol_version < cfg.min_protocol_version {
            let reason = format!(
                "protocol version {} is below the minimum {}",
                v.protocol_version, cfg.min_protocol_version
            );
            out.reject(peer, "version", reject_code::OBSOLETE, &reason);
            out.disconnect(peer, DisconnectReason::ObsoleteVersion(v.protocol_version));
            return;
        }
        let inbound = p.conn_type == ConnType::Inbound;
        if inbound && ours {
            out.disconnect(peer, DisconnectReason::SelfConnection);
            return;
        }
        p.version = Some(v);
        if inbound {
            self.send_version(peer, cfg, now, rng, out);
        }
        out.verack(peer);
    }

    pub fn on_verack(&mut self, peer: PeerId, out: &mut Outbox) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(version) = p.version.as_ref().filter(|_| !p.ready) else {
            out.misbehaved_and_disconnect(peer, Misbehaviour::ProtocolOrder);
            return;
        };
        p.ready = true;
        let seen_as = Some(version.receiver.socket_addr());
        out.internal(Internal::PeerNegotiated {
            peer,
            addr: p.addr,
            conn_type: p.conn_type,
            seen_as,
            height: version.best_height,
            relay: version.relay,
        });
        out.event(Event::PeerNegotiated {
            peer,
            user_agent: version.user_agent.to_string(),
            version: version.protocol_version,
            height: version.best_height,
        });
        if p.conn_type == ConnType::Feeler {
            out.disconnect(peer, DisconnectReason::FeelerDone);
            return;
        }
        tracing::debug!(peer, addr = %p.addr, conn = p.conn_type.name(), "handshake complete");
    }

    // ----- timers ---------------------------------------------------------------------------

    /// Handshake timeouts, expired dials, and dialling: added peers, outbound slots, feelers.
    pub fn tick(
        &mut self,
        cfg: &CoreConfig,
        views: &Views,
        book: &mut AddrMan,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let handshake_timeout = LocalDuration::from_millis(cfg.handshake_timeout_ms);
        for (id, p) in &self.peers {
            if !p.disconnecting && !p.ready && now.local.since(p.connected_at) >= handshake_timeout
            {
                out.disconnect(*id, DisconnectReason::HandshakeTimeout);
            } else if !p.disconnecting
                && p.conn_type == ConnType::AddrFetch
                && now.local.since(p.connected_at) >= ADDR_FETCH_TIMEOUT
            {
                out.disconnect(*id, DisconnectReason::AddrFetchDone);
            }
        }
        let expired: Vec<DialId> = self
            .dials
            .iter()
            .filter(|(_, d)| now.local.since(d.started) >= DIAL_EXPIRY)
            .map(|(id, _)| *id)
            .collect();
        for dial in expired {
            self.dial_failed(dial, now.local, out);
        }
        self.duplicate_dials.retain(|_, until| *until > now.local);
        if self.network_off {
            return;
        }
        self.maintain_manual(now.local, out);
        self.maybe_fetch_addrs(cfg, views, now.local, out);
        self.maintain_outbound(cfg, views, book, now, rng, out);
        self.maybe_start_feeler(cfg, views, book, now, out);
    }

    /// When `tick` next has something to do: a handshake or dial timing out, a manual peer's
    /// retry, a free outbound slot (filled a few dials a tick), a collision's feeler. The
    /// expired duplicate-dial backoffs `tick` drops are only tidied: every use compares the
    /// time, and the fullest-table eviction takes the soonest expiry first.
    pub fn next_wake(&self, cfg: &CoreConfig, book: &AddrMan, now: LocalTime) -> Wake {
        let mut wake = Wake::NEVER;
        let handshake_timeout = LocalDuration::from_millis(cfg.handshake_timeout_ms);
        for p in self.peers.values() {
            if !p.disconnecting && !p.ready {
                wake.at(p.connected_at + handshake_timeout);
            } else if !p.disconnecting && p.conn_type == ConnType::AddrFetch {
                wake.at(p.connected_at + ADDR_FETCH_TIMEOUT);
            }
        }
        for d in self.dials.values() {
            wake.at(d.started + DIAL_EXPIRY);
        }
        for m in &self.manual {
            if m.state == ManualState::Idle {
                wake.at(m.next_attempt);
            }
        }
        let room = self.peers.len() + self.dials.len() < cfg.max_total;
        if !cfg.connect_only && room && self.auto_outbound_count() < cfg.max_outbound {
            wake.at(now);
        }
        if !cfg.connect_only && room && !self.addr_fetches.is_empty() && !self.fetching() {
            wake.at(now);
        }
        let feeling = self
            .dials
            .values()
            .any(|d| matches!(d.kind, DialKind::Feeler(_)))
            || self.peers.values().any(|p| p.conn_type == ConnType::Feeler);
        if !cfg.connect_only && room && !feeling && book.collision_to_test().is_some() {
            wake.at(self.next_feeler);
        }
        wake
    }

    fn new_dial(&mut self, kind: DialKind, now: LocalTime) -> DialId {
        let dial = self.next_dial;
        self.next_dial += 1;
        self.dials.insert(dial, PendingDial { kind, started: now });
        dial
    }

    fn maintain_manual(&mut self, now: LocalTime, out: &mut Outbox) {
        for i in 0..self.manual.len() {
            let m = &self.manual[i];
            if m.state != ManualState::Idle || now < m.next_attempt {
                continue;
            }
            let key = m.spec.to_string();
            let dial = self.new_dial(DialKind::Manual(key), now);
            let m = &mut self.manual[i];
            m.state = ManualState::Dialing(dial);
            m.last_attempt = Some(now);
            let target = DialTarget {
                host: m.spec.host.clone(),
                port: m.spec.port,
            };
            out.dial(dial, target, m.node_id);
        }
    }

    fn maintain_outbound(
        &mut self,
        cfg: &CoreConfig,
        views: &Views,
        book: &AddrMan,
        now: Now,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        if cfg.connect_only {
            return;
        }
        // Added peers given as an IP address (in the book's canonical form): theirs is the
        // manual dial's to make (one the outbound slots made first would win the duplicate
        // race and leave the added peer typed outbound-full-relay, outside what an added peer
        // is promised). A host name's address is not known here.
        let added: HashSet<SocketAddr> = self
            .manual
            .iter()
            .filter_map(|m| m.spec.socket_addr().map(canonical_addr))
            .collect();
        let mut started = 0;
        while started < DIALS_PER_TICK
            && self.auto_outbound_count() < cfg.max_outbound
            && self.peers.len() + self.dials.len() < cfg.max_total
        {
            // Peers by the address we dialled and by where they listen: an inbound peer's
            // listen address, learned from gossip, is not a new peer.
            let connected: HashSet<SocketAddr> = self
                .peers
                .values()
                .flat_map(|p| [Some(p.addr), p.listen_addr()])
                .flatten()
                .collect();
            let pending: HashSet<SocketAddr> = self
                .dials
                .values()
                .filter_map(|d| match d.kind {
                    DialKind::Auto(a) => Some(a),
                    _ => None,
                })
                .collect();
            let local = cfg.allow_local_addrs;
            let groups: HashSet<_> = self
                .peers
                .values()
                .filter(|p| p.conn_type == ConnType::Outbound)
                .map(|p| netgroup(&p.addr, local))
                .chain(pending.iter().map(|a| netgroup(a, local)))
                .collect();
            let duplicates = &self.duplicate_dials;
            let excluded = |a: &SocketAddr| {
                connected.contains(a)
                    || added.contains(a)
                    || duplicates.get(a).is_some_and(|until| *until > now.local)
                    || pending.contains(a)
                    || groups.contains(&netgroup(a, local))
                    || (views.banned)(a.ip(), None)
                    // our own listener, heard of through gossip
                    || (a.ip().is_loopback() && Some(a.port()) == cfg.listen_port)
            };
            let Some(addr) = book.select(rng, now.unix_secs(), |a| !excluded(a)) else {
                self.maybe_request_seeds(cfg, now.local, out);
                return;
            };
            let dial = self.new_dial(DialKind::Auto(addr), now.local);
            out.dial(dial, DialTarget::socket(addr), None);
            started += 1;
        }
    }

    /// Tests a tried address that a newcomer wants to evict: one short feeler connection at a
    /// time, outside the outbound slots (the address book resolves the collision from how it
    /// went).
    fn maybe_start_feeler(
        &mut self,
        cfg: &CoreConfig,
        views: &Views,
        book: &mut AddrMan,
        now: Now,
        out: &mut Outbox,
    ) {
        if cfg.connect_only
            || now.local < self.next_feeler
            || self
                .dials
                .values()
                .any(|d| matches!(d.kind, DialKind::Feeler(_)))
            || self.peers.values().any(|p| p.conn_type == ConnType::Feeler)
            || self.peers.len() + self.dials.len() >= cfg.max_total
        {
            return;
        }
        let Some(addr) = book.collision_to_test() else {
            return;
        };
        if self.peers.values().any(|p| p.addr == addr && p.ready) {
            // Connected and working right now: that is the test passed.
            book.mark_good(&addr, now.unix_secs());
            return;
        }
        if (views.banned)(addr.ip(), None) {
            return; // the collision timeout settles it
        }
        let dial = self.new_dial(DialKind::Feeler(addr), now.local);
        self.next_feeler = now.local + FEELER_INTERVAL;
        out.dial(dial, DialTarget::socket(addr), None);
    }

    /// Bootstrap nodes to ask for addresses (`Input::Bootstrap`), queued in a random order.
    pub fn queue_addr_fetches(&mut self, addrs: &[SocketAddr], rng: &mut StdRng) {
        let mut addrs: Vec<SocketAddr> = addrs
            .iter()
            .filter(|a| !self.addr_fetches.contains(a))
            .copied()
            .collect();
        addrs.shuffle(rng);
        let room = MAX_ADDR_FETCHES.saturating_sub(self.addr_fetches.len());
        self.addr_fetches.extend(addrs.into_iter().take(room));
    }

    /// Whether an address fetch is under way (dialling or connected).
    fn fetching(&self) -> bool {
        self.dials
            .values()
            .any(|d| matches!(d.kind, DialKind::AddrFetch(_)))
            || self
                .peers
                .values()
                .any(|p| p.conn_type == ConnType::AddrFetch)
    }

    /// Asks the next bootstrap node for addresses, one at a time: a crowd of new nodes costs
    /// each bootstrap node one short connection per newcomer, not a full-relay slot it must
    /// evict for (every newcomer otherwise knows only the bootstrap nodes and dials them all).
    fn maybe_fetch_addrs(
        &mut self,
        cfg: &CoreConfig,
        views: &Views,
        now: LocalTime,
        out: &mut Outbox,
    ) {
        if cfg.connect_only
            || self.fetching()
            || self.peers.len() + self.dials.len() >= cfg.max_total
        {
            return;
        }
        while let Some(addr) = self.addr_fetches.pop_front() {
            let connected = self
                .peers
                .values()
                .any(|p| p.addr == addr || p.listen_addr() == Some(addr));
            if connected || (views.banned)(addr.ip(), None) {
                // Asked another way already, or not to be asked: it joins the book as is.
                out.internal(Internal::AddrFetchEnded { addr });
                continue;
            }
            let dial = self.new_dial(DialKind::AddrFetch(addr), now);
            out.dial(dial, DialTarget::socket(addr), None);
            return;
        }
    }

    fn maybe_request_seeds(&mut self, cfg: &CoreConfig, now: LocalTime, out: &mut Outbox) {
        if !cfg.have_dns_seeds || self.auto_outbound_count() > 0 {
            return;
        }
        let due = self
            .last_seed_request
            .is_none_or(|t| now.since(t) >= SEED_RETRY);
        if due {
            self.last_seed_request = Some(now);
            out.push(super::io::Output::ResolveSeeds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::io::Output;
    use super::*;
    use crate::wire::Message;
    use rand::SeedableRng;

    const T0: u64 = 1_800_000_000_000;

    use crate::time::after_epoch as at;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn nobody_banned(_: IpAddr, _: Option<NodeId>) -> bool {
        false
    }

    fn no_ping(_: PeerId) -> Option<LocalDuration> {
        None
    }

    const VIEWS: Views = Views {
        banned: &nobody_banned,
        min_ping: &no_ping,
    };

    struct Fixture {
        cfg: CoreConfig,
        mgr: PeerMgr,
        rng: StdRng,
        out: Outbox,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                cfg: CoreConfig::new(id(0)),
                mgr: PeerMgr::new(),
                rng: StdRng::seed_from_u64(1),
                out: Outbox::default(),
            }
        }

        fn connect(&mut self, peer: PeerId, addr: &str, dial: Option<DialId>, n: u8, ms: u64) {
            let addr = addr.parse().unwrap();
            let (cfg, rng, out) = (&self.cfg, &mut self.rng, &mut self.out);
            self.mgr.connected(
                peer,
                addr,
                dial,
                id(n),
                cfg,
                &VIEWS,
                &[0; 32],
                at(ms),
                rng,
                out,
            );
        }

        fn version(&mut self, peer: PeerId, n: u8, nonce: u64) {
            let v = Version {
                protocol_version: self.cfg.protocol_version,
                services: 1,
                timestamp: 0,
                receiver: NetAddress::new("1.1.1.1:1".parse().unwrap(), 0),
                sender: NetAddress::new("1.1.1.1:1".parse().unwrap(), 0),
                nonce,
                user_agent: BoundedString::truncating("/t/"),
                best_height: 0,
                node_id: id(n),
                relay: true,
            };
            let (cfg, rng, out) = (&self.cfg, &mut self.rng, &mut self.out);
            self.mgr.on_version(peer, v, cfg, at(0), rng, out);
        }

        fn tick(&mut self, ms: u64, book: &mut AddrMan) {
            let (cfg, rng, out) = (&self.cfg, &mut self.rng, &mut self.out);
            self.mgr.tick(cfg, &VIEWS, book, at(ms), rng, out);
        }

        /// Outputs, and the internal events (disconnect requests applied as the coordinator
        /// would).
        fn drain(&mut self) -> (Vec<Output>, Vec<Internal>) {
            let mut internal = Vec::new();
            while let Some(e) = self.out.next_internal() {
                if let Internal::DisconnectRequested { peer, reason } = &e {
                    if self.mgr.mark_disconnecting(*peer) {
                        self.out.push(Output::Disconnect(*peer, reason.clone()));
                    }
                }
                internal.push(e);
            }
            (self.out.take_outputs(), internal)
        }
    }

    fn disconnects(out: &[Output]) -> Vec<(PeerId, DisconnectReason)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Disconnect(p, r) => Some((*p, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn dials(out: &[Output]) -> Vec<(DialId, String)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Dial { dial, target, .. } => Some((*dial, target.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_outbound_handshake_sends_version_and_negotiates_on_verack() {
        let mut f = Fixture::new();
        f.mgr.one_try(
            PeerSpec::parse("5.5.5.5:8333").unwrap(),
            at(0).local,
            &mut f.out,
        );
        let (out, _) = f.drain();
        let dial = dials(&out)[0].0;
        f.connect(1, "5.5.5.5:8333", Some(dial), 5, 10);
        let (out, internal) = f.drain();
        assert!(matches!(out[0], Output::Send(1, Message::Version(_))));
        assert!(matches!(
            internal[0],
            Internal::PeerConnected {
                conn_type: ConnType::OneTry,
                ..
            }
        ));
        f.version(1, 5, 77);
        let (out, _) = f.drain();
        assert_eq!(out, vec![Output::Send(1, Message::Verack)]);
        f.mgr.on_verack(1, &mut f.out);
        let (out, internal) = f.drain();
        assert!(matches!(
            internal[0],
            Internal::PeerNegotiated { peer: 1, .. }
        ));
        assert!(matches!(
            out[0],
            Output::Event(Event::PeerNegotiated { peer: 1, .. })
        ));
        assert!(f.mgr.is_ready(1));
        f.mgr.on_verack(1, &mut f.out);
        let (out, _) = f.drain();
        assert_eq!(
            disconnects(&out),
            vec![(
                1,
                DisconnectReason::Misbehaviour(Misbehaviour::ProtocolOrder)
            )],
            "a second VERACK is out of order"
        );
    }

    #[test]
    fn our_own_version_nonce_coming_back_is_a_self_connection() {
        let mut f = Fixture::new();
        f.mgr.one_try(
            PeerSpec::parse("5.5.5.5:8333").unwrap(),
            at(0).local,
            &mut f.out,
        );
        let dial = dials(&f.drain().0)[0].0;
        f.connect(1, "5.5.5.5:8333", Some(dial), 5, 0);
        let nonce = match &f.drain().0[0] {
            Output::Send(_, Message::Version(v)) => v.nonce,
            other => panic!("{other:?}"),
        };
        // The same node reaches us inbound under another identity with our nonce.
        f.connect(2, "6.6.6.6:4000", None, 6, 0);
        f.drain();
        f.version(2, 6, nonce);
        assert_eq!(
            disconnects(&f.drain().0),
            vec![(2, DisconnectReason::SelfConnection)]
        );
    }

    #[test]
    fn a_duplicate_auto_dial_is_dropped_and_its_address_rests() {
        let mut f = Fixture::new();
        // Above the peer's id: its inbound connection wins the tie (the one it dialled).
        f.cfg.our_node_id = id(200);
        let mut book = AddrMan::new([3; 32]);
        let listen: SocketAddr = "7.7.7.7:8333".parse().unwrap();
        book.add(
            listen,
            1,
            "1.1.1.1:1".parse().unwrap(),
            T0 / 1000,
            T0 / 1000,
        );
        // The node at that address is already connected to us inbound, from another port.
        f.connect(1, "7.7.7.7:50000", None, 7, 0);
        f.drain();
        f.tick(1_000, &mut book);
        let (out, _) = f.drain();
        let dial = dials(&out)[0].0;
        f.connect(2, "7.7.7.7:8333", Some(dial), 7, 1_100);
        let (out, internal) = f.drain();
        assert_eq!(
            disconnects(&out),
            vec![(2, DisconnectReason::DuplicateNodeId)]
        );
        f.mgr.disconnected(2, at(1_200).local, &mut f.out);
        let (_, internal2) = f.drain();
        assert!(internal2
            .iter()
            .any(|e| matches!(e, Internal::PeerGone { failed: false, .. })));
        assert!(!internal.is_empty());
        for s in 2..600 {
            f.tick(s * 1_000, &mut book);
        }
        assert!(
            dials(&f.drain().0).is_empty(),
            "not redialled for ten minutes"
        );
        f.tick(1_200 + DUPLICATE_DIAL_BACKOFF.as_millis(), &mut book);
        assert_eq!(dials(&f.drain().0).len(), 1);
    }

    #[test]
    fn an_added_peers_address_is_left_to_its_manual_dial() {
        // As the operator wrote it, and as an IPv4-mapped IPv6 address (the book holds the
        // IPv4 form).
        for written in ["7.7.7.7:8333", "[::ffff:7.7.7.7]:8333"] {
            let mut f = Fixture::new();
            let mut book = AddrMan::new([3; 32]);
            let added: SocketAddr = "7.7.7.7:8333".parse().unwrap();
            book.add(added, 1, "1.1.1.1:1".parse().unwrap(), T0 / 1000, T0 / 1000);
            let spec = PeerSpec::parse(written).unwrap();
            f.mgr.add_manual(spec, None, at(0), &mut f.out).unwrap();
            let (out, _) = f.drain();
            let manual = dials(&out);
            assert_eq!(manual.len(), 1, "the added peer is dialled at once");
            // Its dial fails: while it waits out its backoff, the outbound slots, free as
            // they are, do not take the address (a connection made that way would be typed
            // outbound-full-relay, outside what an added peer is promised).
            f.mgr.dial_failed(manual[0].0, at(100).local, &mut f.out);
            f.drain();
            for ms in (200..900).step_by(100) {
                f.tick(ms, &mut book);
            }
            assert!(dials(&f.drain().0).is_empty(), "{written}");
        }
    }

    #[test]
    fn an_added_peer_is_redialled_with_a_doubling_backoff() {
        let mut f = Fixture::new();
        f.cfg.connect_only = true;
        let mut book = AddrMan::new([3; 32]);
        let spec = PeerSpec::parse("8.8.8.8:8333").unwrap();
        f.mgr.add_manual(spec, None, at(0), &mut f.out).unwrap();
        let mut attempts = Vec::new();
        let mut ms = 0;
        while attempts.len() < 5 {
            for (dial, _) in dials(&f.drain().0) {
                attempts.push(ms);
                f.mgr.dial_failed(dial, at(ms).local, &mut f.out);
            }
            ms += 100;
            f.tick(ms, &mut book);
        }
        let waits: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            waits[0] >= 1_000 && waits[1] >= 2_000 && waits[2] >= 4_000 && waits[3] >= 8_000,
            "{waits:?}"
        );
        let added = f.mgr.added_nodes(at(ms));
        assert_eq!(added[0].last_attempt_ms, T0 + attempts[4]);
    }

    #[test]
    fn a_full_inbound_table_evicts_an_inbound_peer_never_an_outbound_one() {
        let mut f = Fixture::new();
        f.cfg.max_inbound = 30;
        f.mgr.one_try(
            PeerSpec::parse("5.5.5.5:8333").unwrap(),
            at(0).local,
            &mut f.out,
        );
        let dial = dials(&f.drain().0)[0].0;
        f.connect(1, "5.5.5.5:8333", Some(dial), 5, 0);
        for n in 0..30u8 {
            let addr = format!("{}.0.0.1:1", 20 + n % 5);
            f.connect(10 + n as u64, &addr, None, 100 + n, n as u64);
        }
        assert!(disconnects(&f.drain().0).is_empty());
        f.connect(99, "99.0.0.1:1", None, 99, 1_000);
        let gone = disconnects(&f.drain().0);
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(gone[0].1, DisconnectReason::Evicted);
        assert!(
            (10..40).contains(&gone[0].0),
            "an older inbound peer: {gone:?}"
        );
        // With every candidate protected, the newcomer is refused instead.
        let mut f = Fixture::new();
        f.cfg.max_inbound = 2;
        f.connect(2, "20.0.0.1:1", None, 20, 0);
        f.connect(3, "30.0.0.1:1", None, 30, 0);
        f.connect(4, "40.0.0.1:1", None, 40, 0);
        assert_eq!(
            disconnects(&f.drain().0),
            vec![(4, DisconnectReason::TooManyConnections)]
        );
    }

    /// Bootstrap nodes are asked for addresses one short connection at a time, never as
    /// outbound slots; each joins the book once its fetch is over, however it ended.
    #[test]
    fn bootstrap_nodes_are_asked_for_addresses_one_at_a_time_then_join_the_book() {
        let mut f = Fixture::new();
        let mut book = AddrMan::new([3; 32]);
        let seeds: Vec<SocketAddr> = ["7.0.0.1:8333", "8.0.0.1:8333"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        f.mgr.queue_addr_fetches(&seeds, &mut f.rng);
        f.tick(0, &mut book);
        let (out, _) = f.drain();
        let first = dials(&out);
        assert_eq!(
            first.len(),
            1,
            "one fetch at a time, no outbound dial: {out:?}"
        );
        let (dial, target) = first[0].clone();
        // Still under way: nothing more is dialled.
        f.tick(1_000, &mut book);
        assert!(dials(&f.drain().0).is_empty());
        let n = if target.starts_with('7') { 7 } else { 8 };
        f.connect(1, &target, Some(dial), n, 1_000);
        let (out, internal) = f.drain();
        assert!(internal.iter().any(|e| matches!(
            e,
            Internal::PeerConnected {
                conn_type: ConnType::AddrFetch,
                ..
            }
        )));
        // Its VERSION asks for no transaction announcements.
        assert!(matches!(&out[0], Output::Send(1, Message::Version(v)) if !v.relay));
        f.version(1, n, 5);
        f.mgr.on_verack(1, &mut f.out);
        f.drain();
        // No answer within the timeout: the fetch is closed.
        f.tick(1_000 + ADDR_FETCH_TIMEOUT.as_millis() - 1, &mut book);
        assert!(disconnects(&f.drain().0).is_empty());
        f.tick(1_000 + ADDR_FETCH_TIMEOUT.as_millis(), &mut book);
        assert_eq!(
            disconnects(&f.drain().0),
            vec![(1, DisconnectReason::AddrFetchDone)]
        );
        f.mgr.disconnected(1, at(32_000).local, &mut f.out);
        let (_, internal) = f.drain();
        let ended: SocketAddr = target.parse().unwrap();
        assert!(internal
            .iter()
            .any(|e| matches!(e, Internal::AddrFetchEnded { addr } if *addr == ended)));
        // The other bootstrap node is next; its dial fails, and it is over too.
        f.tick(33_000, &mut book);
        let (out, _) = f.drain();
        let second = dials(&out);
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].1, target);
        f.mgr.dial_failed(second[0].0, at(34_000).local, &mut f.out);
        let (_, internal) = f.drain();
        assert!(internal.iter().any(
            |e| matches!(e, Internal::AddrFetchEnded { addr } if addr.to_string() == second[0].1)
        ));
        // Nothing left to fetch, and the book is empty (the address manager fills it from
        // `AddrFetchEnded`): no dial.
        f.tick(35_000, &mut book);
        assert!(dials(&f.drain().0).is_empty());
    }

    /// Two nodes that dial each other at once must keep the same one of the two connections
    /// (the one dialled by the lower node id), or each drops the one the other kept.
    #[test]
    fn mutual_dials_keep_the_connection_dialled_by_the_lower_node_id() {
        for (ours, theirs) in [(1u8, 2u8), (2, 1)] {
            let mut f = Fixture::new();
            f.cfg.our_node_id = id(ours);
            let spec = PeerSpec::parse("5.5.5.5:8333").unwrap();
            f.mgr.one_try(spec, at(0).local, &mut f.out);
            let dial = dials(&f.drain().0)[0].0;
            // Our dial connects first, then theirs arrives inbound.
            f.connect(1, "5.5.5.5:8333", Some(dial), theirs, 0);
            f.connect(2, "5.5.5.5:40000", None, theirs, 10);
            let dropped = disconnects(&f.drain().0);
            let kept_ours = ours < theirs;
            let expected = if kept_ours { 2 } else { 1 };
            assert_eq!(
                dropped,
                vec![(expected, DisconnectReason::DuplicateNodeId)],
                "we are {ours}, they are {theirs}"
            );
        }
    }

    #[test]
    fn the_handshake_times_out_on_monotonic_time() {
        let mut f = Fixture::new();
        let mut book = AddrMan::new([3; 32]);
        f.cfg.connect_only = true;
        f.connect(1, "20.0.0.1:1", None, 20, 0);
        f.drain();
        f.tick(f.cfg.handshake_timeout_ms - 1, &mut book);
        assert!(disconnects(&f.drain().0).is_empty());
        f.tick(f.cfg.handshake_timeout_ms, &mut book);
        assert_eq!(
            disconnects(&f.drain().0),
            vec![(1, DisconnectReason::HandshakeTimeout)]
        );
    }
}
