//! The protocol core's vocabulary: the `Input`s it is fed, the `Output`s it returns, the
//! `Event`s it publishes, what it asks to `Persist`, the `Internal` events its coordinator
//! fans out to the managers, and the `Outbox` managers write to.
//!
//! Owns these types and the building of protocol messages (typed helpers, so managers read as
//! decisions). Never decides anything itself.

use super::addrman::AddrInfo;
use super::bans::{BanChanges, BanTarget, Misbehaviour};
use crate::config::PeerSpec;
use crate::encoding::{BoundedString, BoundedVec};
use crate::time::LocalTime;
use crate::types::{Address, Block, Hash256, Header, NodeId, Transaction};
use crate::wire::compact::{CompactBlock, GetBlockTxn};
use crate::wire::limits::MAX_INV_ITEMS;
use crate::wire::message::{inv_list, InvKind, InvList, LocatorRequest};
use crate::wire::{Message, Reject, TimestampedAddress, Version, WireError};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

pub type PeerId = u64;
pub type DialId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    /// A short connection to a bootstrap node: one GETADDR, closed when its answer arrives.
    AddrFetch,
}

impl ConnType {
    pub fn name(self) -> &'static str {
        match self {
            ConnType::Inbound => "inbound",
            ConnType::Outbound => "outbound-full-relay",
            ConnType::Manual => "manual",
            ConnType::OneTry => "onetry",
            ConnType::Feeler => "feeler",
            ConnType::AddrFetch => "addr-fetch",
        }
    }

    /// A connection made for one question (a feeler's test, an address fetch): no header
    /// sync, no block or transaction relay over it.
    pub fn is_short_lived(self) -> bool {
        matches!(self, ConnType::Feeler | ConnType::AddrFetch)
    }

    pub fn is_manual(self) -> bool {
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
    /// An address fetch got its answer (or waited for it long enough).
    AddrFetchDone,
    /// It let a block request outlive the stall timeout.
    Stalling,
    /// It sent a block whose body does not match the header.
    MutatedBlock,
    /// Its headers, asked for a second time after a pre-sync, were not the same chain.
    HeadersChanged,
    /// Set by the I/O side: the outbox stayed full.
    SlowPeer,
    /// The operator turned network activity off (`setnetworkactive false`).
    NetworkOff,
    Closed(String),
}

impl DisconnectReason {
    /// Routine ends (a duplicate collapsed, a feeler done): not worth an operator's attention.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            DisconnectReason::DuplicateNodeId
                | DisconnectReason::FeelerDone
                | DisconnectReason::AddrFetchDone
        )
    }
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
            DisconnectReason::AddrFetchDone => write!(f, "address fetch done"),
            DisconnectReason::Stalling => write!(f, "stalled the block download"),
            DisconnectReason::MutatedBlock => {
                write!(f, "sent a block whose body does not match its header")
            }
            DisconnectReason::HeadersChanged => {
                write!(f, "redownloaded headers differ from the pre-synced chain")
            }
            DisconnectReason::SlowPeer => write!(f, "send queue stayed full"),
            DisconnectReason::NetworkOff => write!(f, "network activity turned off"),
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

impl DialTarget {
    pub fn socket(addr: SocketAddr) -> DialTarget {
        DialTarget {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
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

/// Everything that can happen to the core. Each comes with the time (`crate::time::Now`).
#[derive(Debug)]
pub enum Input {
    /// A TLS session is up. `dial` is set for outbound connections.
    Connected {
        peer: PeerId,
        addr: SocketAddr,
        dial: Option<DialId>,
        node_id: NodeId,
    },
    /// A decoded message from `peer`.
    Received { peer: PeerId, message: Message },
    /// The peer's byte stream broke a framing rule; the connection cannot continue.
    Broken { peer: PeerId, error: WireError },
    /// The connection is gone (closed by either side).
    Disconnected { peer: PeerId },
    /// A dial did not produce a connection.
    DialFailed { dial: DialId },
    /// The timer asked for with `Output::SetTimer` is due (early or repeated ticks are fine).
    Tick,
    /// Bootstrap nodes (`--bootstrap`): each is asked once for addresses over a short
    /// addr-fetch connection, then kept in the address book like any other address.
    Bootstrap { addrs: Vec<SocketAddr> },
    /// Addresses learned from DNS seeds or LAN discovery.
    Discovered {
        addrs: Vec<SocketAddr>,
        source: SocketAddr,
    },
    /// The chain connected this block: it is stored and the active chain's tip (in order).
    BlockConnected { header: Header, height: u64 },
    /// The chain disconnected this block: its parent is the active chain's tip again.
    BlockDisconnected { header: Header, height: u64 },
    /// A block submitted here (`submitblock`) whose body passed the chain's stateless checks
    /// and signatures, before the chain connects it: pushed at once to the peers that asked
    /// for compact pushes, as a relayed block is, so that their validation overlaps ours.
    BlockChecked {
        block: std::sync::Arc<crate::types::Block>,
    },
    /// The chain's answer for a block handed over with `Output::SubmitBlock`.
    BlockProcessed {
        peer: PeerId,
        hash: Hash256,
        result: BlockResult,
    },
    /// The shell's answer for a compact block handed over with `Output::Reconstruct`.
    Reconstructed {
        peer: PeerId,
        hash: Hash256,
        result: Reconstruction,
    },
    /// The mempool's answer for a transaction handed over with `Output::SubmitTx`.
    TxProcessed {
        peer: PeerId,
        txid: Hash256,
        result: TxResult,
    },
    /// The mempool admitted a transaction ready to mine (from a peer, RPC or the wallet, or
    /// promoted when its missing earlier nonce arrived): to be announced.
    TxAccepted {
        txid: Hash256,
        sender: Address,
        nonce: u64,
    },
    /// The mempool's transactions ready to mine (txid, sender, nonce), as asked for with
    /// `Output::ListMempool`.
    MempoolContents {
        peer: PeerId,
        txs: Vec<Announceable>,
    },
    /// The mempool evicted these transactions for room (futures first, when too many wait
    /// for their gaps). Each announced here and admitted as a future is fetched again after
    /// a delay: no peer announces a transaction twice, so it would be lost for good, and
    /// every later nonce of its sender with it.
    TxsEvicted { txids: Vec<Hash256> },
    /// The mempool dropped `count` future transactions (nonces past a gap) this peer relayed
    /// at their expiry, the gap still unfilled.
    FuturesExpired { peer: PeerId, count: usize },
    /// The chain's events were missed: the header tree, rebuilt from the store, replaces the
    /// core's.
    HeadersReloaded(Box<super::headers::HeaderTree>),
    /// An operator's command; `Core::handle` returns its result.
    Command(Command),
    /// The shell could not hand this over to the peer store now: keep it for a later turn.
    PersistDeferred(Persist),
    /// The node is stopping: emit everything the peer store has not saved yet.
    Stopping,
}

/// What an operator asks of the core (RPC `addnode`, `setban`, ...).
#[derive(Debug, Clone)]
pub enum Command {
    /// Keep this peer connected. `learned` is an identity remembered from an earlier first use.
    AddNode {
        spec: PeerSpec,
        learned: Option<NodeId>,
    },
    RemoveNode(PeerSpec),
    /// Dial once, no retries.
    OneTry(PeerSpec),
    /// Disconnect by peer id or by address.
    Disconnect {
        peer: Option<PeerId>,
        addr: Option<SocketAddr>,
    },
    /// Ban and disconnect everything matching; `duration_ms` defaults to the configured time.
    Ban {
        target: BanTarget,
        duration_ms: Option<u64>,
        reason: String,
    },
    Unban(BanTarget),
    ClearBans,
    /// Ping every ready peer now.
    PingAll,
    /// Turn all peer-to-peer activity off (disconnect, no dialling or accepting) or back on.
    SetNetworkActive(bool),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("node {0} is already added")]
    AlreadyAdded(String),
    #[error("node {0} has not been added")]
    NotAdded(String),
    #[error("no peer matches {0}")]
    NoSuchPeer(String),
    #[error("{0} is not banned")]
    NotBanned(BanTarget),
}

/// What the core asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send(PeerId, Message),
    Disconnect(PeerId, DisconnectReason),
    Dial {
        dial: DialId,
        target: DialTarget,
        expected: Option<NodeId>,
    },
    /// Ask the I/O side to resolve the DNS seeds and report back with `Input::Discovered`.
    ResolveSeeds,
    /// Hand this block to the chain (its header already passed the core's checks); answer
    /// with `Input::BlockProcessed`.
    SubmitBlock {
        peer: PeerId,
        block: Box<Block>,
    },
    /// Send the peer these blocks from the store, as BLOCK messages in order (NOTFOUND for
    /// any that is not there any more).
    ServeBlocks {
        peer: PeerId,
        hashes: Vec<Hash256>,
    },
    /// Hand this transaction (asked for and received from `peer`) to the mempool; answer
    /// with `Input::TxProcessed`.
    SubmitTx {
        peer: PeerId,
        /// The transaction's id, computed once where it arrived.
        txid: Hash256,
        tx: Box<Transaction>,
    },
    /// Send the peer these transactions from the mempool as TX messages (one NOTFOUND for
    /// those it no longer holds).
    ServeTxs {
        peer: PeerId,
        txids: Vec<Hash256>,
    },
    /// Send `peers` the block as a CMPCTBLOCK keyed with `nonce` (coinbase prefilled), and
    /// keep it at hand to answer their GETBLOCKTXN until the chain stores it. `block` is
    /// given when the core holds it (a block pushed before validation); otherwise it is read
    /// from the store. Building short ids hashes every transaction: off the network task.
    SendCompact {
        peers: Vec<PeerId>,
        hash: Hash256,
        block: Option<Arc<Block>>,
        nonce: u64,
    },
    /// Answer the peer's GETDATA with the block as a CMPCTBLOCK keyed with `nonce`, in turn
    /// with the other blocks it asked for (NOTFOUND of the block if it is not at hand).
    ServeCompact {
        peer: PeerId,
        hash: Hash256,
        nonce: u64,
    },
    /// Rebuild this compact block from the mempool (`cmpct::Filler`); answer with
    /// `Input::Reconstructed`.
    Reconstruct {
        peer: PeerId,
        compact: Box<CompactBlock>,
    },
    /// Answer the peer's GETBLOCKTXN with a BLOCKTXN of the block's transactions at the
    /// indexes asked (the block is stored or was just sent as a compact block); NOTFOUND of
    /// the block when it is not at hand or an index is out of range.
    ServeBlockTxn {
        peer: PeerId,
        request: GetBlockTxn,
    },
    /// Feed `Input::MempoolContents` for this peer: what it may lack, announced once it
    /// has completed its handshake.
    ListMempool {
        peer: PeerId,
    },
    /// Feed `Input::Tick` at this time (the latest request replaces earlier ones).
    SetTimer(LocalTime),
    /// Something subscribers and metrics may publish.
    Event(Event),
    /// Something the peer store must save.
    Persist(Persist),
}

/// What the core tells the world about (RPC subscriptions, metrics, logs).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A connection joined the peer table (it was not refused or collapsed at once).
    PeerConnected {
        peer: PeerId,
        addr: SocketAddr,
        node_id: NodeId,
        conn_type: ConnType,
    },
    /// The handshake completed.
    PeerNegotiated {
        peer: PeerId,
        user_agent: String,
        version: u32,
        height: u64,
    },
    /// A peer was banned (misbehaviour or an operator), until the Unix time given.
    Banned {
        target: BanTarget,
        until_unix_ms: u64,
        reason: String,
    },
}

/// What the chain made of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockResult {
    /// Connected to the active chain.
    Connected,
    /// Stored on a side branch.
    SideBranch,
    /// Its parent is not stored yet; held by the chain until it is.
    Orphan,
    /// Already known.
    Duplicate,
    /// It breaks a consensus rule: the sender is to blame.
    Invalid(String),
    /// Its body does not match its header (merkle root, size): the header and hash are not
    /// to blame, the sender relayed a body it had not checked.
    Mutated(String),
    /// The chain could not take it (shutting down, a store error): nobody is to blame.
    NotProcessed(String),
}

/// What rebuilding a compact block from the mempool gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconstruction {
    /// Every transaction was found: the block (not yet checked against its header).
    Complete(Box<Block>),
    /// Some were not: the block's transactions by index, and the indexes still missing
    /// (ascending).
    Partial {
        slots: Vec<Option<Transaction>>,
        missing: Vec<u32>,
    },
    /// Two transactions share a short id (in the pool, or in the compact block itself):
    /// rebuilding cannot tell which is meant.
    Ambiguous,
}

/// A transaction to announce: txid, sender, nonce (announcements are sorted by sender and
/// nonce).
pub type Announceable = (Hash256, Address, u64);

/// What the mempool made of a transaction a peer sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxResult {
    /// Admitted (announced separately, with `Input::TxAccepted`, once ready to mine).
    Accepted,
    /// Admitted as a future (its sender's earlier nonce is missing): the pool may evict it
    /// for room before the gap fills (`Input::TxsEvicted`), and then it is fetched again.
    AcceptedFuture,
    /// Not admitted for a reason that is not the sender's fault (already known, a fee below
    /// our minimum, a nonce already used, the pool full).
    Refused(String),
    /// It can never be valid (a bad signature, a bad amount, a coinbase): the sender relayed
    /// a transaction it did not check.
    Invalid(String),
}

/// What the peer store must save.
#[derive(Clone, Debug, PartialEq)]
pub enum Persist {
    /// An --addnode peer without a pinned id was reached: its id (trust on first use).
    LearnedIdentity { peer: String, node_id: NodeId },
    /// Ban-list changes, as single keys.
    Bans(BanChanges),
    /// A snapshot of the address book.
    Addresses(Vec<AddrInfo>),
}

/// Events inside the core: produced by one manager (or the coordinator), fanned out by the
/// coordinator to every manager. Managers never call each other; this is how they hear of
/// each other's decisions.
#[derive(Clone, Debug)]
pub enum Internal {
    /// A connection joined the peer table (it may be on its way out at once).
    PeerConnected {
        peer: PeerId,
        addr: SocketAddr,
        node_id: NodeId,
        conn_type: ConnType,
    },
    /// The handshake completed. `seen_as` is our address as the peer's VERSION saw it;
    /// `height` the best height it claimed.
    PeerNegotiated {
        peer: PeerId,
        addr: SocketAddr,
        conn_type: ConnType,
        seen_as: Option<SocketAddr>,
        height: u64,
        /// Its VERSION asked for transaction announcements.
        relay: bool,
    },
    /// A manager wants the peer gone; the coordinator asks the shell once.
    DisconnectRequested {
        peer: PeerId,
        reason: DisconnectReason,
    },
    /// The shell was asked to disconnect the peer: nothing more is done for it.
    PeerDisconnecting { peer: PeerId },
    /// The connection ended. `failed` = an outbound connection that never completed its
    /// handshake and was not a collapsed duplicate: a failure of its address.
    PeerGone {
        peer: PeerId,
        addr: SocketAddr,
        conn_type: ConnType,
        failed: bool,
    },
    /// A dial to this address-book address did not connect.
    DialFailed { addr: SocketAddr },
    /// The address fetch from this bootstrap node is over (answered, timed out, or never
    /// connected): the address joins the book.
    AddrFetchEnded { addr: SocketAddr },
    /// The peer broke a rule.
    Misbehaved { peer: PeerId, what: Misbehaviour },
    /// The chain's active tip changed.
    TipChanged { height: u64, hash: Hash256 },
    /// New headers joined the header tree (blocks may be wanted).
    HeadersAdded,
    /// The peer has this block (and its ancestors): it announced, sent or built on it.
    PeerHas { peer: PeerId, hash: Hash256 },
    /// The chain stored this block's body.
    BlockStored { hash: Hash256 },
    /// The chain found this block invalid.
    BlockInvalid { hash: Hash256 },
    /// This block is on its way from `peer` outside a GETDATA (a compact block being
    /// rebuilt): the download counts it in flight from that peer.
    BlockRequested { peer: PeerId, hash: Hash256 },
}

/// The earliest moment a manager's `tick` could do anything (send, disconnect, dial, draw
/// from an RNG, change what a later decision reads): the core asks for no tick before it.
/// Managers may report earlier than needed (a tick that finds nothing to do is harmless),
/// never later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake(Option<LocalTime>);

impl Wake {
    /// Nothing is due until an input changes the state.
    pub const NEVER: Wake = Wake(None);

    /// Something may be due at `t`.
    pub fn at(&mut self, t: LocalTime) {
        self.0 = Some(self.0.map_or(t, |w| w.min(t)));
    }

    pub fn merge(&mut self, other: Wake) {
        if let Some(t) = other.0 {
            self.at(t);
        }
    }

    pub fn time(self) -> Option<LocalTime> {
        self.0
    }
}

/// Where managers put their decisions: outputs for the shell, internal events for the other
/// managers.
#[derive(Debug, Default)]
pub struct Outbox {
    outputs: Vec<Output>,
    internal: VecDeque<Internal>,
}

impl Outbox {
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Moves the outputs into `into`, keeping both buffers' memory for the next input.
    pub fn move_outputs_into(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.outputs);
    }

    /// Outputs waiting to be taken.
    pub fn pending_outputs(&self) -> usize {
        self.outputs.len()
    }

    pub fn next_internal(&mut self) -> Option<Internal> {
        self.internal.pop_front()
    }

    /// Drains the internal events; the misbehaviours among them (for managers' tests).
    #[cfg(test)]
    pub fn take_misbehaviours(&mut self) -> Vec<super::bans::Misbehaviour> {
        std::iter::from_fn(|| self.next_internal())
            .filter_map(|e| match e {
                Internal::Misbehaved { what, .. } => Some(what),
                _ => None,
            })
            .collect()
    }

    /// Drains the internal events; the disconnection reasons among them (for managers' tests).
    #[cfg(test)]
    pub fn take_disconnect_reasons(&mut self) -> Vec<DisconnectReason> {
        std::iter::from_fn(|| self.next_internal())
            .filter_map(|e| match e {
                Internal::DisconnectRequested { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    pub fn push(&mut self, output: Output) {
        self.outputs.push(output);
    }

    pub fn internal(&mut self, event: Internal) {
        self.internal.push_back(event);
    }

    pub fn event(&mut self, event: Event) {
        self.outputs.push(Output::Event(event));
    }

    pub fn persist(&mut self, what: Persist) {
        self.outputs.push(Output::Persist(what));
    }

    pub fn send(&mut self, peer: PeerId, message: Message) {
        self.outputs.push(Output::Send(peer, message));
    }

    /// Asks for the peer's disconnection (once, whoever asks how often).
    pub fn disconnect(&mut self, peer: PeerId, reason: DisconnectReason) {
        self.internal
            .push_back(Internal::DisconnectRequested { peer, reason });
    }

    /// Reports misbehaviour to the scoring.
    pub fn misbehaved(&mut self, peer: PeerId, what: Misbehaviour) {
        self.internal.push_back(Internal::Misbehaved { peer, what });
    }

    /// Misbehaviour that also ends the connection.
    pub fn misbehaved_and_disconnect(&mut self, peer: PeerId, what: Misbehaviour) {
        self.misbehaved(peer, what);
        self.disconnect(peer, DisconnectReason::Misbehaviour(what));
    }

    pub fn dial(&mut self, dial: DialId, target: DialTarget, expected: Option<NodeId>) {
        self.outputs.push(Output::Dial {
            dial,
            target,
            expected,
        });
    }

    pub fn version(&mut self, peer: PeerId, version: Version) {
        self.send(peer, Message::Version(Box::new(version)));
    }

    pub fn verack(&mut self, peer: PeerId) {
        self.send(peer, Message::Verack);
    }

    pub fn ping(&mut self, peer: PeerId, nonce: u64) {
        self.send(peer, Message::Ping(nonce));
    }

    pub fn pong(&mut self, peer: PeerId, nonce: u64) {
        self.send(peer, Message::Pong(nonce));
    }

    pub fn get_addr(&mut self, peer: PeerId) {
        self.send(peer, Message::GetAddr);
    }

    /// An ADDR with `items`; nothing when empty. Callers cap the list at
    /// `wire::limits::MAX_ADDR_ITEMS`.
    pub fn addr(&mut self, peer: PeerId, items: Vec<TimestampedAddress>) {
        if items.is_empty() {
            return;
        }
        self.addr_answer(peer, items);
    }

    /// The answer to a GETADDR: sent even when empty, so the asker knows it has it all.
    pub fn addr_answer(&mut self, peer: PeerId, items: Vec<TimestampedAddress>) {
        let list = BoundedVec::new(items).expect("callers cap ADDR lists at MAX_ADDR_ITEMS");
        self.send(peer, Message::Addr(list));
    }

    pub fn send_headers(&mut self, peer: PeerId) {
        self.send(peer, Message::SendHeaders);
    }

    /// GETHEADERS: "these are my headers, newest first; send what follows, up to `stop`".
    pub fn get_headers(&mut self, peer: PeerId, locator: Vec<Hash256>, stop: Hash256) {
        let request = LocatorRequest {
            protocol_version: crate::wire::PROTOCOL_VERSION,
            locator: BoundedVec::truncating(locator),
            stop,
        };
        self.send(peer, Message::GetHeaders(request));
    }

    /// HEADERS (an empty list means "nothing after your locator").
    pub fn headers(&mut self, peer: PeerId, headers: Vec<Header>) {
        self.send(peer, Message::Headers(BoundedVec::truncating(headers)));
    }

    /// INV of `hashes` of one kind, in messages of at most `MAX_INV_ITEMS` (none if empty).
    pub fn inv(&mut self, peer: PeerId, kind: InvKind, hashes: &[Hash256]) {
        for chunk in hashes.chunks(MAX_INV_ITEMS) {
            self.send(peer, Message::Inv(inv_list(kind, chunk)));
        }
    }

    /// GETDATA of `hashes` of one kind, in messages of at most `MAX_INV_ITEMS`.
    pub fn get_data(&mut self, peer: PeerId, kind: InvKind, hashes: &[Hash256]) {
        for chunk in hashes.chunks(MAX_INV_ITEMS) {
            self.send(peer, Message::GetData(inv_list(kind, chunk)));
        }
    }

    pub fn not_found(&mut self, peer: PeerId, items: InvList) {
        if !items.is_empty() {
            self.send(peer, Message::NotFound(items));
        }
    }

    /// A REJECT of `command` with `code` (see `wire::message::reject_code`).
    pub fn reject(&mut self, peer: PeerId, command: &str, code: u8, reason: &str) {
        self.send(
            peer,
            Message::Reject(Box::new(Reject {
                message: BoundedString::truncating(command),
                code,
                reason: BoundedString::truncating(reason),
                hash: None,
            })),
        );
    }
}
