//! `Sim`: the simulated world. Protocol cores, the connections between them, the virtual
//! clock, and the I/O shell's part played mechanically: executing each core's outputs and
//! feeding it the inputs they lead to, at the times the network model says.
//!
//! Owns the cores, the links and the event queue. Never makes a protocol decision (who to
//! dial, whom to drop: the cores decide) and never reaches into a core's internals: cores are
//! only fed `Input`s and asked the queries any shell may ask.
//!
//! A connection (a "link") has two sides, the dialler's (0) and the listener's (1). Each side
//! knows the other end by a peer id built from the link's number, `link << 1 | side`, so a
//! core's output finds its link without a lookup. Connecting costs the round trips TCP and
//! TLS 1.3 with client certificates take: the listener hears the SYN after half a round trip
//! and decides admission then (`Core::admit_inbound`); the dialler is connected after two
//! round trips, the listener half a round trip later. A closing side is told at once; the
//! other side when the FIN arrives, after everything sent before it.
//!
//! Each node has a chain (`chain::SimChain`) that outlives its restarts: `SubmitBlock` is
//! answered after the validation delay (blocks validate one after another), `ServeBlocks`
//! sends the stored blocks over the link, and every change of the active chain reaches the
//! core as `BlockConnected`/`BlockDisconnected`, in order.
//!
//! Each node has a transaction pool (`mempool::SimMempool`) that a restart empties, as the
//! real pool is not saved: `SubmitTx` is checked after the pool's check delay (one after
//! another) and answered `TxProcessed`, every transaction the pool makes ready reaches the
//! core as `TxAccepted`, `ServeTxs` sends TX messages over the link, `ListMempool` is
//! answered `MempoolContents`; connected blocks take their transactions out of the pool and
//! disconnected ones put them back (announced again).

use super::chain::{ChainChange, SimChain};
use super::config::{Addressing, SimConfig};
use super::mempool::{PoolChange, SimMempool};
use super::network::{Network, Transmission, UNANSWERED_DIAL_US};
use super::queue::{EventQueue, SimTime};
use super::regions::Region;
use super::trace::{Trace, TraceEvent, TraceHash, TraceKind};
use crate::chain::testkit::make_block_with_bits;
use crate::config::PeerSpec;
use crate::protocol::addrman::AddrMan;
use crate::protocol::bans::BanList;
use crate::protocol::cmpct::{block_txn_of, compact_of, Filler, KEPT_PUSHED};
use crate::protocol::Reconstruction;
use crate::protocol::{
    BlockResult, Command, CommandError, Core, CoreConfig, DialId, DialTarget, Input, Output,
    PeerId, Persist, TxResult,
};
use crate::time::{LocalDuration, LocalTime, Now};
use crate::types::block::MAX_BLOCK_SIZE;
use crate::types::transaction::MAX_TX_SIZE;
use crate::types::{Address, Block, Hash256, NodeId, Transaction};
use crate::wire::compact::{CompactBlock, GetBlockTxn};
use crate::wire::frame::encode_payload;
use crate::wire::limits::FRAME_HEADER_SIZE;
use crate::wire::message::{inv_list, InvItem, InvKind};
use crate::wire::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Microseconds per millisecond: the cores see milliseconds, the simulator counts µs.
const MICROS_PER_MILLI: u64 = 1_000;

/// Public addressing: node `i` is `FIRST_OCTET + i / 256 . i % 256 . 0 . 1`; octets 20 to 99
/// are routable, so this many nodes fit.
const PUBLIC_FIRST_OCTET: u32 = 20;
const MAX_PUBLIC_NODES: usize = 80 * 256;
/// The port every publicly addressed node listens on.
const PUBLIC_PORT: u16 = 8333;

/// Loopback addressing: node `i` listens on `LOOPBACK_FIRST_PORT + i`, below the ephemeral
/// range, so this many nodes fit.
const LOOPBACK_FIRST_PORT: u16 = 20_000;
const MAX_LOOPBACK_NODES: usize = (EPHEMERAL_FIRST_PORT - LOOPBACK_FIRST_PORT) as usize;

/// The ports a dialler's connections come from (Linux's default ephemeral range).
const EPHEMERAL_FIRST_PORT: u16 = 32_768;
const EPHEMERAL_LAST_PORT: u16 = 60_999;

/// Ready transactions listed for a new peer at most: the real shell's
/// `MEMPOOL_ANNOUNCED_ON_CONNECT`.
const MEMPOOL_LISTED_ON_CONNECT: usize = 50_000;

/// Transactions `mine_pool` puts in a block at most: what fits beside the header and the
/// coinbase.
const MAX_MINED_TXS: usize = (MAX_BLOCK_SIZE - 1_024) / MAX_TX_SIZE;

/// The index of a node in the simulation.
pub type NodeIndex = usize;

type LinkId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SideState {
    /// The connection is being set up; this side's core does not know it yet.
    Pending,
    /// This side's core has been told `Connected` and not yet `Disconnected`.
    Open,
    /// Gone for this side (it asked, was told, or was never connected).
    Closed,
}

#[derive(Debug)]
struct Link {
    /// [dialler, listener].
    node: [NodeIndex; 2],
    state: [SideState; 2],
    /// The latest arrival scheduled towards each side: a connection delivers in order.
    arrival_floor: [SimTime; 2],
    /// The address each side sees its peer at: the dialler (0) the listener's listen
    /// address, the listener (1) the dialler's address with an ephemeral port.
    seen_as: [SocketAddr; 2],
    dial: DialId,
}

fn peer_id(link: LinkId, side: usize) -> PeerId {
    (link << 1) | side as u64
}

/// What the trace hash takes of a delivered message's payload: SipHash-1-3 (fixed keys) of its
/// encoding, so two runs that deliver different bytes hash differently.
fn payload_digest(payload: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new();
    h.write(payload);
    h.finish()
}

fn link_of(peer: PeerId) -> (LinkId, usize) {
    (peer >> 1, (peer & 1) as usize)
}

#[derive(Debug)]
enum Event {
    /// A message reaches `side` of `link`.
    Deliver {
        link: LinkId,
        side: usize,
        /// The node at `side` (known from the link; here so it is known without loading it).
        node: NodeIndex,
        message: Message,
        size: usize,
        /// A digest of the encoded payload, taken when it was sent (for the trace hash; the
        /// message is not encoded a second time on delivery).
        digest: u64,
    },
    /// `node`'s timer (the `SetTimer` of incarnation `life`) is due.
    Tick { node: NodeIndex, life: u32 },
    /// A dialler's SYN reaches the node listening at the target.
    Syn {
        from: NodeIndex,
        life: u32,
        dial: DialId,
        to: NodeIndex,
        target: SocketAddr,
        expected: Option<NodeId>,
        rtt: SimTime,
        dialled_at: SimTime,
    },
    /// `side` of `link` is connected.
    Up { link: LinkId, side: usize },
    /// The side asked for the disconnection: tell its core (of incarnation `life`) it is done.
    Down {
        link: LinkId,
        side: usize,
        life: u32,
    },
    /// The other side's FIN (or RST) reaches `side`.
    Fin { link: LinkId, side: usize },
    /// TCP gave up on `link`.
    Break { link: LinkId },
    DialFailed {
        node: NodeIndex,
        life: u32,
        dial: DialId,
        peer: Option<NodeIndex>,
    },
    /// `node`'s shell (of incarnation `life`) has rebuilt a compact block `peer` sent.
    Rebuilt {
        node: NodeIndex,
        life: u32,
        peer: PeerId,
        hash: Hash256,
        result: Reconstruction,
    },
    /// `node`'s chain (of incarnation `life`) has validated a block `peer` sent.
    Validated {
        node: NodeIndex,
        life: u32,
        peer: PeerId,
        block: Arc<Block>,
    },
    /// `node`'s pool (of incarnation `life`) has checked a transaction `peer` (node `from`)
    /// sent.
    TxChecked {
        node: NodeIndex,
        life: u32,
        peer: PeerId,
        from: Option<NodeIndex>,
        tx: Box<Transaction>,
    },
    /// `node`'s shell (of incarnation `life`) reads its pool for a new `peer`
    /// (`ListMempool`).
    MempoolListed {
        node: NodeIndex,
        life: u32,
        peer: PeerId,
    },
}

struct Node {
    core: Core,
    cfg: CoreConfig,
    addr: SocketAddr,
    up: bool,
    /// Incremented at each stop: events of an earlier life are not delivered.
    life: u32,
    /// The pending `SetTimer`, if any.
    timer: Option<SimTime>,
    /// The earliest `Tick` event queued for this life, if known. A timer moved later does not
    /// queue another event: the queued one, when it comes, queues the timer's new time
    /// (timers move later after most inputs, and each queued event costs a heap push and pop).
    queued_tick: Option<SimTime>,
    /// Links this node's side has open or pending.
    links: BTreeSet<LinkId>,
    dials: u64,
    /// Its `--addnode` list: what was added with `Sim::command` and not removed, re-added
    /// at a restart.
    added: Vec<PeerSpec>,
    /// Identities learned on first use (`Persist::LearnedIdentity`), as the peer store keeps
    /// them.
    learned: BTreeMap<String, NodeId>,
    restarts: u32,
    /// Its chain: kept across restarts, as the block store is.
    chain: SimChain,
    /// When its chain is done with the blocks already handed over: blocks validate one
    /// after another.
    chain_busy_until: SimTime,
    /// Blocks it sent as compact blocks, newest last, for GETBLOCKTXN (as the real shell
    /// keeps them).
    recent_compact: VecDeque<Arc<Block>>,
    /// It answers no GETDATA: `ServeBlocks` is dropped.
    stalling: bool,
    /// Where the blocks it mines pay.
    coinbase: Address,
    /// Its transaction pool: emptied at a restart (the real pool is not saved), its chain
    /// nonces kept.
    pool: SimMempool,
    /// When its pool is done with the transactions already handed over: they are checked
    /// one after another.
    pool_busy_until: SimTime,
}

/// Totals for a run so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events taken off the queue.
    pub events: u64,
    /// Messages delivered to a core.
    pub delivered: u64,
    /// Messages whose connection was gone when they arrived.
    pub dropped: u64,
    /// Messages that needed at least one retransmission.
    pub retransmitted: u64,
    /// Dials the cores asked for.
    pub dials: u64,
    /// Connections made.
    pub connections: u64,
    /// Connections broken by TCP giving up (lost retransmissions).
    pub broken: u64,
}

/// The simulated network. See the module docs and `SimConfig`.
pub struct Sim {
    nodes: Vec<Node>,
    listen: HashMap<SocketAddr, NodeIndex>,
    links: Vec<Link>,
    queue: EventQueue<Event>,
    net: Network,
    trace: Trace,
    stats: SimStats,
    now: SimTime,
    seed: u64,
    unix_epoch_ms: u64,
    /// Reused to encode messages for their size and payload digest.
    scratch: Vec<u8>,
    /// Reused to take each input's outputs from its core.
    outputs: Vec<Output>,
    /// The next ephemeral port per host IP: nodes sharing an IP (loopback) share a range,
    /// as processes on one host do, so no two connections come from one address.
    next_port: BTreeMap<IpAddr, u16>,
    /// Blocks every node's chain refuses from now on (`mark_invalid`).
    invalid: BTreeSet<Hash256>,
    /// How long a chain takes to validate one block handed over by the core, µs.
    validation_delay: SimTime,
    /// Transactions every node's pool refuses as invalid from now on (`mark_tx_invalid`).
    invalid_txs: BTreeSet<Hash256>,
    /// How long a pool takes to check one transaction handed over by the core, µs.
    tx_check_delay: SimTime,
}

/// A 64-bit value derived from the seed for one purpose and node (SHA-256, so nearby seeds
/// and nodes give unrelated values).
fn derive(seed: u64, purpose: &str, node: usize, round: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"noded-sim");
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    h.update((node as u64).to_le_bytes());
    h.update(round.to_le_bytes());
    h.finalize().into()
}

fn derive_u64(seed: u64, purpose: &str, node: usize, round: u32) -> u64 {
    let d = derive(seed, purpose, node, round);
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let n = config.nodes;
        let loopback = config.addressing == Addressing::Loopback;
        let max = if loopback {
            MAX_LOOPBACK_NODES
        } else {
            MAX_PUBLIC_NODES
        };
        assert!(n <= max, "at most {max} nodes with {:?}", config.addressing);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let table = config.table;
        let regions: Vec<Region> = (0..n)
            .map(|i| {
                let drawn = Region(rng.gen_range(0..table.len()) as u8);
                config.region_of.get(&i).copied().unwrap_or(drawn)
            })
            .collect();
        let upload = (0..n)
            .map(|i| {
                let drawn = config.upload_range.map_or(config.upload, |(min, max)| {
                    StdRng::seed_from_u64(derive_u64(config.seed, "upload", i, 0))
                        .gen_range(min..=max)
                });
                config.upload_of.get(&i).copied().unwrap_or(drawn)
            })
            .collect();
        let net = Network::new(table, config.params, rng, regions, upload);

        let mut nodes = Vec::with_capacity(n);
        let mut listen = HashMap::with_capacity(n);
        for i in 0..n {
            let addr = if loopback {
                SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    LOOPBACK_FIRST_PORT + i as u16,
                )
            } else {
                let octet = |v: u32| v as u8;
                let ip = Ipv4Addr::new(
                    octet(PUBLIC_FIRST_OCTET + i as u32 / 256),
                    octet(i as u32 % 256),
                    0,
                    1,
                );
                SocketAddr::new(IpAddr::V4(ip), PUBLIC_PORT)
            };
            let mut cfg = CoreConfig::new(NodeId(derive(config.seed, "node id", i, 0)));
            cfg.rng_seed = derive_u64(config.seed, "core rng", i, 0);
            cfg.listen_port = Some(addr.port());
            cfg.max_outbound = config.outbound;
            cfg.allow_local_addrs = loopback;
            if let Some(f) = &config.configure {
                f(i, &mut cfg);
            }
            let book = AddrMan::new(derive(config.seed, "addrman key", i, 0));
            let chain = SimChain::new(cfg.network.params());
            let core =
                Core::new(cfg.clone(), book, BanList::default()).with_headers(chain.header_tree());
            let coinbase = Address(
                derive(config.seed, "coinbase", i, 0)[..20]
                    .try_into()
                    .expect("20 bytes"),
            );
            listen.insert(addr, i);
            nodes.push(Node {
                core,
                cfg,
                addr,
                up: true,
                life: 0,
                timer: None,
                queued_tick: None,
                links: BTreeSet::new(),
                dials: 0,
                added: Vec::new(),
                learned: BTreeMap::new(),
                restarts: 0,
                chain,
                chain_busy_until: 0,
                recent_compact: VecDeque::new(),
                stalling: false,
                coinbase,
                pool: SimMempool::new(),
                pool_busy_until: 0,
            });
        }
        let mut sim = Sim {
            nodes,
            listen,
            // Link 0 is never used: peer ids start at 2.
            links: Vec::new(),
            queue: EventQueue::new(),
            net,
            trace: Trace::new(config.keep_trace),
            stats: SimStats::default(),
            now: 0,
            seed: config.seed,
            unix_epoch_ms: config.unix_epoch_ms,
            scratch: Vec::new(),
            outputs: Vec::new(),
            next_port: BTreeMap::new(),
            invalid: BTreeSet::new(),
            validation_delay: config.validation_delay.as_millis() * MICROS_PER_MILLI,
            invalid_txs: BTreeSet::new(),
            tx_check_delay: config.tx_check_delay_us,
        };
        sim.links.push(Link {
            node: [0, 0],
            state: [SideState::Closed; 2],
            arrival_floor: [0; 2],
            seen_as: [SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0); 2],
            dial: 0,
        });
        let seeds: Vec<SocketAddr> = config
            .bootstrap
            .iter()
            .map(|&b| sim.nodes[b].addr)
            .collect();
        for i in 0..n {
            let addrs: Vec<SocketAddr> = seeds
                .iter()
                .copied()
                .filter(|a| *a != sim.nodes[i].addr)
                .collect();
            if !addrs.is_empty() {
                sim.feed(i, Input::Bootstrap { addrs });
            }
            sim.feed(i, Input::Tick);
        }
        sim
    }

    // ----- driving ---------------------------------------------------------------------

    /// Runs every event due up to and including `until`, then sets the clock to `until`.
    pub fn run_until(&mut self, until: LocalTime) {
        let until = until.as_millis() * MICROS_PER_MILLI;
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.prefetch_next();
            self.now = at;
            self.stats.events += 1;
            self.process(at, event);
            self.prefetch_next_tables();
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: LocalDuration) {
        let until = self.now().local + d;
        self.run_until(until);
    }

    /// Starts loading what the next event will touch first (its link, its node's core), so
    /// those cache misses overlap the handling of this one: with a thousand cores each event
    /// finds its own cold.
    fn prefetch_next(&self) {
        use crate::protocol::fpindex::prefetch;
        let node = match self.queue.peek() {
            Some(Event::Deliver { link, node, .. }) => {
                prefetch(&self.links[*link as usize]);
                *node
            }
            Some(Event::Tick { node, .. }) => *node,
            _ => return,
        };
        self.nodes[node].core.prefetch();
    }

    /// The second step of `prefetch_next`, once this event is handled: the next event's
    /// core is in cache by now, and the tables it points to load during the next pop.
    fn prefetch_next_tables(&self) {
        if let Some(Event::Deliver { node, .. }) = self.queue.peek() {
            self.nodes[*node].core.prefetch_tables();
        }
    }

    /// Runs one event, if any is queued; returns its time.
    pub fn step(&mut self) -> Option<SimTime> {
        let (at, event) = self.queue.pop_until(SimTime::MAX)?;
        self.now = at;
        self.stats.events += 1;
        self.process(at, event);
        Some(at)
    }

    /// The time as the cores see it.
    pub fn now(&self) -> Now {
        let ms = self.now / MICROS_PER_MILLI;
        Now {
            local: LocalTime::from_millis(ms),
            unix_ms: self.unix_epoch_ms + ms,
        }
    }

    /// Virtual time in µs.
    pub fn now_us(&self) -> SimTime {
        self.now
    }

    /// An operator command to `node`'s core (RPC `addnode`, `setban`, ...), now. An added
    /// node is remembered as the node's `--addnode` list: it is added again at a restart.
    pub fn command(&mut self, node: NodeIndex, command: Command) -> Result<(), CommandError> {
        assert!(self.nodes[node].up, "node {node} is stopped");
        let result = self.handle(node, Input::Command(command.clone()));
        if result.is_ok() {
            match command {
                Command::AddNode { spec, .. } => self.nodes[node].added.push(spec),
                Command::RemoveNode(spec) => self.nodes[node].added.retain(|s| *s != spec),
                _ => {}
            }
        }
        result
    }

    /// `--addnode <node>` on `at`: keep `at` connected to `node` (by address, trust on first
    /// use).
    pub fn add_node(&mut self, at: NodeIndex, node: NodeIndex) -> Result<(), CommandError> {
        let spec = PeerSpec {
            node_id: None,
            host: self.nodes[node].addr.ip().to_string(),
            port: self.nodes[node].addr.port(),
        };
        self.command(
            at,
            Command::AddNode {
                spec,
                learned: None,
            },
        )
    }

    /// Any other input to `node`'s core, now (addresses discovered, a tip change, ...).
    /// Connection inputs belong to the simulator: feeding them by hand confuses its links.
    pub fn input(&mut self, node: NodeIndex, input: Input) {
        assert!(self.nodes[node].up, "node {node} is stopped");
        self.feed(node, input);
    }

    /// Stops `node`, as its process exiting: its operating system closes its connections,
    /// so each peer is told after the one-way latency (and after what was already in
    /// flight); dials to it are refused until it restarts.
    pub fn stop(&mut self, node: NodeIndex) {
        assert!(self.nodes[node].up, "node {node} is already stopped");
        let links: Vec<LinkId> = self.nodes[node].links.iter().copied().collect();
        for link in links {
            self.cut(link, Some(node));
        }
        let n = &mut self.nodes[node];
        n.up = false;
        n.life += 1;
        n.timer = None;
        n.queued_tick = None;
        self.record(node, None, TraceKind::Stopped, 0);
    }

    /// Starts a stopped `node` again with its state kept: a new core from its config, its
    /// address book and its ban list as they were at the stop (what the peer store holds
    /// after `Input::Stopping` saved everything), its `--addnode` list with the identities
    /// it learned; a fresh rng seed, peer table and timers, as a real restart has.
    pub fn restart(&mut self, node: NodeIndex) {
        assert!(!self.nodes[node].up, "node {node} is running");
        let n = &mut self.nodes[node];
        n.restarts += 1;
        let old = n.core.addrman();
        let book = AddrMan::from_entries(old.key(), old.entries().cloned());
        let bans = BanList::from_entries(
            n.core
                .bans()
                .iter()
                .map(|(target, entry)| (*target, entry.clone())),
        );
        let mut cfg = n.cfg.clone();
        cfg.rng_seed = derive_u64(self.seed, "core rng", node, n.restarts);
        // The block store survives; the orphan pool and the validation queue do not.
        n.chain.clear_orphans();
        n.chain_busy_until = 0;
        // The pool lives in memory only; its transactions being checked die with it.
        n.pool.clear();
        n.pool_busy_until = 0;
        n.core = Core::new(cfg, book, bans).with_headers(n.chain.header_tree());
        n.up = true;
        self.record(node, None, TraceKind::Restarted, 0);
        let added = self.nodes[node].added.clone();
        for spec in added {
            let learned = self.nodes[node].learned.get(&spec.to_string()).copied();
            // The list came from this core's predecessor, which accepted each entry once.
            let _ = self.handle(node, Input::Command(Command::AddNode { spec, learned }));
        }
        self.feed(node, Input::Tick);
    }

    /// Splits the network: each group on a side of its own, nodes in no group together on
    /// another. Connections across are reset at once (both ends are told now, as a
    /// middlebox's RST would tell them), messages in flight across are lost, and dials
    /// across go unanswered until `heal`.
    pub fn partition(&mut self, groups: &[Vec<NodeIndex>]) {
        self.net.partition(groups);
        let mut cross = Vec::new();
        for n in &self.nodes {
            for &link in &n.links {
                let l = &self.links[link as usize];
                if !self.net.reachable(l.node[0], l.node[1]) {
                    cross.push(link);
                }
            }
        }
        cross.sort_unstable();
        cross.dedup();
        for link in cross {
            self.cut(link, None);
        }
    }

    /// Ends the partition: every node can reach every other again.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    // ----- chains ------------------------------------------------------------------------

    /// `node` mines a block on its active tip, now: the target its chain requires, the time
    /// now (or just past the median of the last blocks), a coinbase-only body paying the
    /// node's own address. It is stored and connected at once, as a locally mined block is
    /// (the core hears `BlockConnected` and announces it). Returns its hash.
    pub fn mine(&mut self, node: NodeIndex) -> Hash256 {
        self.mine_with(node, Vec::new())
    }

    /// `mine`, with `txs` after the coinbase, as given: nothing checks them (validity is the
    /// test's decision). Every pool that connects the block lets them go.
    pub fn mine_with(&mut self, node: NodeIndex, txs: Vec<Transaction>) -> Hash256 {
        assert!(self.nodes[node].up, "node {node} is stopped");
        let now_secs = self.now().unix_secs();
        let n = &self.nodes[node];
        let chain = &n.chain;
        let (header, parent_height) = chain.next_header(now_secs);
        let block = make_block_with_bits(
            chain.params(),
            &chain.tip_header(),
            parent_height,
            header.time,
            header.bits,
            n.coinbase,
            txs,
        );
        let hash = block.hash();
        self.submit_to_chain(node, Arc::new(block));
        hash
    }

    /// `mine_with` the transactions ready in `node`'s pool, per sender in nonce order (as
    /// many as fit in a block).
    pub fn mine_pool(&mut self, node: NodeIndex) -> Hash256 {
        let txs = self.nodes[node]
            .pool
            .ready()
            .take(MAX_MINED_TXS)
            .map(|(_, tx)| tx.clone())
            .collect();
        self.mine_with(node, txs)
    }

    /// Stores `blocks` in `node`'s chain at once, in order, as if mined or submitted
    /// locally (no validation delay); the core hears each active-chain change. Blocks given
    /// before a block is marked invalid are kept: that is how a node comes to hold and
    /// serve an invalid block (as one with faulty rules would).
    pub fn give_blocks(&mut self, node: NodeIndex, blocks: &[Block]) {
        assert!(self.nodes[node].up, "node {node} is stopped");
        for block in blocks {
            self.submit_to_chain(node, Arc::new(block.clone()));
        }
    }

    /// From now on every node's chain refuses `hash`, and so every block built on it, as
    /// consensus-invalid (`BlockResult::Invalid`: the sender is to blame). A node already
    /// holding it keeps it and serves it.
    pub fn mark_invalid(&mut self, hash: Hash256) {
        self.invalid.insert(hash);
    }

    // ----- transactions ----------------------------------------------------------------

    /// Submits `tx` at `node` as RPC `sendrawtransaction` would: admitted to its pool now
    /// (at once, no check delay), and the core told of what became ready (`TxAccepted`),
    /// which it announces. The txid, or why the pool refused it.
    pub fn submit_tx(&mut self, node: NodeIndex, tx: Transaction) -> Result<Hash256, TxResult> {
        assert!(self.nodes[node].up, "node {node} is stopped");
        let txid = tx.txid();
        match self.admit(node, None, tx) {
            TxResult::Accepted | TxResult::AcceptedFuture => Ok(txid),
            refused => Err(refused),
        }
    }

    /// From now on every node's pool refuses `txid` as invalid (`TxResult::Invalid`: the
    /// sender is to blame). A pool already holding it keeps it and serves it.
    pub fn mark_tx_invalid(&mut self, txid: Hash256) {
        self.invalid_txs.insert(txid);
    }

    /// Whether `node` answers GETDATA: a stalling node's shell drops every `ServeBlocks`
    /// (no BLOCK, no NOTFOUND); the rest of its protocol runs as usual.
    pub fn set_stalling(&mut self, node: NodeIndex, stalling: bool) {
        self.nodes[node].stalling = stalling;
    }

    /// Sends `message` from `from` to `to` over a connection between them that both cores
    /// know, as if `from`'s shell wrote the frame itself, bypassing its core: a scripted
    /// misbehaving peer. It costs `from`'s uplink and is delivered in order. False when no
    /// such connection is open.
    pub fn send_raw(&mut self, from: NodeIndex, to: NodeIndex, message: Message) -> bool {
        let open = self.nodes[from].links.iter().find_map(|&link| {
            let l = &self.links[link as usize];
            (0..2).find_map(|side| {
                (l.node[side] == from && l.node[1 - side] == to && l.state == [SideState::Open; 2])
                    .then_some(peer_id(link, side))
            })
        });
        match open {
            Some(peer) => {
                self.send(from, peer, message);
                true
            }
            None => false,
        }
    }

    // ----- queries -----------------------------------------------------------------------

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `node`'s core, for queries. A stopped node's core is the one that stopped.
    pub fn core(&self, node: NodeIndex) -> &Core {
        &self.nodes[node].core
    }

    /// `node`'s transaction pool, for queries. A stopped node's is the one it stopped with.
    pub fn mempool(&self, node: NodeIndex) -> &SimMempool {
        &self.nodes[node].pool
    }

    /// Puts `txs` in `node`'s pool as if relayed long ago: the pool holds them, the core is
    /// not told (nothing is announced). For a run that starts from pools already full, such
    /// as block propagation with every transaction relayed. How many it admitted.
    pub fn preload_pool(&mut self, node: NodeIndex, txs: &[Transaction]) -> usize {
        let pool = &mut self.nodes[node].pool;
        txs.iter()
            .filter(|tx| pool.admit(Transaction::clone(tx)).is_ok())
            .count()
    }

    /// `node`'s chain, for queries.
    pub fn chain(&self, node: NodeIndex) -> &SimChain {
        &self.nodes[node].chain
    }

    /// The hash of `node`'s active tip.
    pub fn tip(&self, node: NodeIndex) -> Hash256 {
        self.nodes[node].chain.tip()
    }

    /// The height of `node`'s active tip.
    pub fn height(&self, node: NodeIndex) -> u64 {
        self.nodes[node].chain.height()
    }

    /// The address `node` listens on.
    pub fn addr(&self, node: NodeIndex) -> SocketAddr {
        self.nodes[node].addr
    }

    pub fn node_id(&self, node: NodeIndex) -> NodeId {
        self.nodes[node].cfg.our_node_id
    }

    /// The node listening at `addr`.
    pub fn node_at(&self, addr: SocketAddr) -> Option<NodeIndex> {
        self.listen.get(&addr).copied()
    }

    pub fn region(&self, node: NodeIndex) -> Region {
        self.net.region(node)
    }

    pub fn is_up(&self, node: NodeIndex) -> bool {
        self.nodes[node].up
    }

    /// Dials `node`'s cores have asked for, over all its lives.
    pub fn dials(&self, node: NodeIndex) -> u64 {
        self.nodes[node].dials
    }

    /// The nodes `node` has a connection with that its core knows of, with the direction
    /// (`true` = `node` dialled).
    pub fn connections(&self, node: NodeIndex) -> Vec<(NodeIndex, bool)> {
        self.nodes[node]
            .links
            .iter()
            .filter_map(|&link| {
                let l = &self.links[link as usize];
                let side = if l.node[0] == node && l.state[0] == SideState::Open {
                    0
                } else if l.node[1] == node && l.state[1] == SideState::Open {
                    1
                } else {
                    return None;
                };
                Some((l.node[1 - side], side == 0))
            })
            .collect()
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn trace_hash(&self) -> TraceHash {
        self.trace.hash()
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Events still queued.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// When the next queued event is due (µs), if any.
    pub fn next_event_at(&self) -> Option<SimTime> {
        self.queue.next_time()
    }

    // ----- the shell's part ----------------------------------------------------------------

    fn handle(&mut self, node: NodeIndex, input: Input) -> Result<(), CommandError> {
        let now = self.now();
        let result = self.nodes[node].core.handle(now, input);
        // Reused from input to input; an output that feeds a core in turn (a nested call)
        // finds it taken and uses a new one.
        let mut outputs = std::mem::take(&mut self.outputs);
        self.nodes[node].core.drain_outputs_into(&mut outputs);
        for output in outputs.drain(..) {
            self.apply(node, output);
        }
        self.outputs = outputs;
        result
    }

    fn feed(&mut self, node: NodeIndex, input: Input) {
        // Only commands return errors; the simulator feeds none here.
        let _ = self.handle(node, input);
    }

    fn record(&mut self, node: NodeIndex, peer: Option<NodeIndex>, kind: TraceKind, size: usize) {
        self.trace.record(
            TraceEvent {
                at: self.now,
                node,
                peer,
                kind,
                size,
            },
            &[],
        );
    }

    fn apply(&mut self, node: NodeIndex, output: Output) {
        match output {
            Output::Send(peer, message) => self.send(node, peer, message),
            Output::Disconnect(peer, _reason) => self.close(node, peer),
            Output::Dial {
                dial,
                target,
                expected,
            } => self.dial(node, dial, target, expected),
            Output::SetTimer(at) => {
                let at = (at.as_millis() * MICROS_PER_MILLI).max(self.now);
                let n = &mut self.nodes[node];
                n.timer = Some(at);
                if n.queued_tick.is_none_or(|queued| at < queued) {
                    n.queued_tick = Some(at);
                    let life = n.life;
                    self.queue.push(at, Event::Tick { node, life });
                }
            }
            Output::Persist(Persist::LearnedIdentity { peer, node_id }) => {
                self.nodes[node].learned.insert(peer, node_id);
            }
            // The address book and ban list are read from the core at a restart; seeds
            // and events have no simulated counterpart.
            Output::Persist(_) | Output::ResolveSeeds | Output::Event(_) => {}
            Output::SubmitBlock { peer, block } => {
                let n = &mut self.nodes[node];
                let at = queue_behind(&mut n.chain_busy_until, self.now, self.validation_delay);
                let life = n.life;
                self.queue.push(
                    at,
                    Event::Validated {
                        node,
                        life,
                        peer,
                        block: Arc::from(block),
                    },
                );
            }
            Output::ServeBlocks { peer, hashes } => self.serve_blocks(node, peer, hashes),
            Output::SendCompact {
                peers,
                hash,
                block,
                nonce,
            } => self.send_compact(node, peers, hash, block, nonce),
            Output::ServeCompact { peer, hash, nonce } => {
                self.send_compact(node, vec![peer], hash, None, nonce)
            }
            Output::Reconstruct { peer, compact } => self.reconstruct(node, peer, &compact),
            Output::ServeBlockTxn { peer, request } => self.serve_block_txn(node, peer, request),
            Output::SubmitTx { .. } | Output::ServeTxs { .. } | Output::ListMempool { .. } => {
                self.apply_tx_output(node, output)
            }
        }
    }

    // ----- the shell's part: transactions ---------------------------------------------------

    /// The transaction outputs, as the real shell executes them: a peer's transaction is
    /// checked after the pool's delay, one after another; transactions asked for are sent
    /// from the pool; a new peer's listing is read from the pool (at once, as the shell's
    /// blocking thread does soon after).
    fn apply_tx_output(&mut self, node: NodeIndex, output: Output) {
        match output {
            Output::SubmitTx { peer, tx, .. } => {
                let from = self
                    .side_of(node, peer)
                    .map(|(link, side)| self.links[link as usize].node[1 - side]);
                let n = &mut self.nodes[node];
                let at = queue_behind(&mut n.pool_busy_until, self.now, self.tx_check_delay);
                let life = n.life;
                self.queue.push(
                    at,
                    Event::TxChecked {
                        node,
                        life,
                        peer,
                        from,
                        tx,
                    },
                );
            }
            Output::ServeTxs { peer, txids } => self.serve_txs(node, peer, txids),
            Output::ListMempool { peer } => {
                let life = self.nodes[node].life;
                self.queue
                    .push(self.now, Event::MempoolListed { node, life, peer });
            }
            _ => unreachable!("only transaction outputs come here"),
        }
    }

    /// The pool's verdict on a transaction `peer` sent: what it made ready reaches the core
    /// as `TxAccepted` first, then the verdict as `TxProcessed` (the real pool publishes its
    /// admissions before it returns the verdict to the checking task).
    fn tx_checked(
        &mut self,
        node: NodeIndex,
        peer: PeerId,
        from: Option<NodeIndex>,
        tx: Transaction,
    ) {
        let txid = tx.txid();
        let result = self.admit(node, from, tx);
        self.feed(node, Input::TxProcessed { peer, txid, result });
    }

    /// Hands `tx` to `node`'s pool (from the node `from`, or locally); records and feeds
    /// what it made ready. The verdict, as the core is told it.
    fn admit(&mut self, node: NodeIndex, from: Option<NodeIndex>, tx: Transaction) -> TxResult {
        if self.invalid_txs.contains(&tx.txid()) {
            return TxResult::Invalid("sim: marked invalid by the test".into());
        }
        match self.nodes[node].pool.admit(tx) {
            Ok(change) => {
                self.pool_changed(node, from, &change);
                TxResult::Accepted
            }
            Err(refusal) => refusal.to_result(),
        }
    }

    /// Records what entered `node`'s pool and what became ready there, and tells the core
    /// of each newly ready transaction (`TxAccepted`), in order.
    fn pool_changed(&mut self, node: NodeIndex, from: Option<NodeIndex>, change: &PoolChange) {
        for &(txid, future) in &change.entered {
            self.record_tx(node, from, TraceKind::TxAdmitted { future }, &txid);
        }
        for &(txid, sender, nonce) in &change.ready {
            if !change.entered.iter().any(|(t, _)| *t == txid) {
                self.record_tx(node, None, TraceKind::TxPromoted, &txid);
            }
            self.feed(
                node,
                Input::TxAccepted {
                    txid,
                    sender,
                    nonce,
                },
            );
        }
    }

    fn record_tx(
        &mut self,
        node: NodeIndex,
        peer: Option<NodeIndex>,
        kind: TraceKind,
        txid: &Hash256,
    ) {
        let event = TraceEvent {
            at: self.now,
            node,
            peer,
            kind,
            // Every transfer encodes to the same size (fixed-width integers).
            size: MAX_TX_SIZE,
        };
        self.trace.record_tx(event, txid);
    }

    /// `node`'s pool hears of a block its chain connected (its transactions leave) or
    /// disconnected (they come back and, ready, are announced again).
    fn pool_follows_chain(&mut self, node: NodeIndex, connected: bool, hash: &Hash256) {
        let n = &mut self.nodes[node];
        let block = Arc::clone(n.chain.block(hash).expect("a changed block is stored"));
        if connected {
            // Futures the block made ready are announced, as the real pool publishes them.
            let waiting: Vec<(Hash256, Address, u64)> = n
                .pool
                .iter()
                .filter(|(txid, _)| !n.pool.is_ready(txid))
                .filter_map(|(txid, tx)| match tx {
                    Transaction::Transfer(t) => Some((*txid, t.sender(), t.nonce)),
                    Transaction::Coinbase(_) => None,
                })
                .collect();
            n.pool.block_connected(&block);
            let mut ready: Vec<(Hash256, Address, u64)> = waiting
                .into_iter()
                .filter(|(txid, _, _)| n.pool.is_ready(txid))
                .collect();
            ready.sort_by_key(|(_, sender, nonce)| (*sender, *nonce));
            if !ready.is_empty() {
                let change = PoolChange {
                    entered: Vec::new(),
                    ready,
                };
                self.pool_changed(node, None, &change);
            }
        } else {
            let change = n.pool.block_disconnected(&block);
            self.pool_changed(node, None, &change);
        }
    }

    /// Sends `peer` the transactions `node`'s pool holds, each as a TX, then one NOTFOUND
    /// for the rest, as the shell's serving task does; nothing from a stalling node.
    fn serve_txs(&mut self, node: NodeIndex, peer: PeerId, txids: Vec<Hash256>) {
        if self.nodes[node].stalling {
            return;
        }
        let mut missing = Vec::new();
        for txid in txids {
            match self.nodes[node].pool.get(&txid) {
                Some(tx) => {
                    let message = Message::Tx(Box::new(tx.clone()));
                    self.send(node, peer, message);
                }
                None => missing.push(txid),
            }
        }
        if !missing.is_empty() {
            self.send(
                node,
                peer,
                Message::NotFound(inv_list(InvKind::Tx, &missing)),
            );
        }
    }

    /// Sends `peer` the stored blocks (or just pushed as compact blocks), in order, each as a
    /// BLOCK (its encoded size costs the uplink), a NOTFOUND for any not held; nothing at all
    /// from a stalling node.
    fn serve_blocks(&mut self, node: NodeIndex, peer: PeerId, hashes: Vec<Hash256>) {
        if self.nodes[node].stalling {
            return;
        }
        for hash in hashes {
            let n = &self.nodes[node];
            let pushed = n.recent_compact.iter().find(|b| b.hash() == hash);
            let message = match pushed.or_else(|| n.chain.block(&hash)) {
                Some(block) => Message::Block(Box::new(Block::clone(block))),
                None => Message::NotFound(crate::encoding::BoundedVec::truncating(vec![InvItem {
                    kind: InvKind::Block,
                    hash,
                }])),
            };
            self.send(node, peer, message);
        }
    }

    /// Sends `peers` the block as a compact block (the real shell's `send_compact`).
    fn send_compact(
        &mut self,
        node: NodeIndex,
        peers: Vec<PeerId>,
        hash: Hash256,
        block: Option<Arc<Block>>,
        nonce: u64,
    ) {
        let n = &self.nodes[node];
        let kept = n.recent_compact.iter().find(|b| b.hash() == hash).cloned();
        let Some(block) = block.or(kept).or_else(|| n.chain.block(&hash).cloned()) else {
            return;
        };
        let Some(compact) = compact_of(&block, nonce, None) else {
            return;
        };
        let recent = &mut self.nodes[node].recent_compact;
        if !recent.iter().any(|b| b.hash() == hash) {
            if recent.len() >= KEPT_PUSHED {
                recent.pop_front();
            }
            recent.push_back(block);
        }
        for peer in peers {
            self.send(node, peer, Message::CmpctBlock(Box::new(compact.clone())));
        }
    }

    /// Rebuilds a compact block from the node's pool (the real shell's `reconstruct`); the
    /// answer arrives as an input at once.
    fn reconstruct(&mut self, node: NodeIndex, peer: PeerId, compact: &CompactBlock) {
        let mut filler = Filler::new(compact);
        for (txid, tx) in self.nodes[node].pool.iter() {
            filler.offer(txid, || tx.clone());
        }
        let result = filler.finish();
        let life = self.nodes[node].life;
        self.queue.push(
            self.now,
            Event::Rebuilt {
                node,
                life,
                peer,
                hash: compact.header.hash(),
                result,
            },
        );
    }

    /// Answers a GETBLOCKTXN from a block just sent as a compact block or stored; NOTFOUND
    /// otherwise; nothing from a stalling node.
    fn serve_block_txn(&mut self, node: NodeIndex, peer: PeerId, request: GetBlockTxn) {
        if self.nodes[node].stalling {
            return;
        }
        let hash = request.block_hash;
        let n = &self.nodes[node];
        let block = n
            .recent_compact
            .iter()
            .find(|b| b.hash() == hash)
            .or_else(|| n.chain.block(&hash));
        let message = match block.and_then(|b| block_txn_of(b, &request)) {
            Some(txn) => Message::BlockTxn(txn),
            None => Message::NotFound(crate::wire::message::inv_list(InvKind::Block, &[hash])),
        };
        self.send(node, peer, message);
    }

    /// Hands a block to `node`'s chain and feeds its core the active-chain changes, in order.
    fn submit_to_chain(&mut self, node: NodeIndex, block: Arc<Block>) -> BlockResult {
        let n = &mut self.nodes[node];
        let (result, changes) = n.chain.submit(block, &self.invalid);
        for change in changes {
            let (connected, header) = match change {
                ChainChange::Connected { header, height } => {
                    self.feed(node, Input::BlockConnected { header, height });
                    (true, header)
                }
                ChainChange::Disconnected { header, height } => {
                    self.feed(node, Input::BlockDisconnected { header, height });
                    (false, header)
                }
            };
            // The pool follows the chain's events as the core does, after it.
            self.pool_follows_chain(node, connected, &header.hash());
        }
        result
    }

    /// The side of `peer`'s link that `node` holds, if `node` holds it.
    fn side_of(&self, node: NodeIndex, peer: PeerId) -> Option<(LinkId, usize)> {
        let (link, side) = link_of(peer);
        let l = self.links.get(link as usize)?;
        (l.node[side] == node).then_some((link, side))
    }

    fn send(&mut self, node: NodeIndex, peer: PeerId, message: Message) {
        let Some((link, side)) = self.side_of(node, peer) else {
            return;
        };
        let l = &self.links[link as usize];
        if l.state[side] != SideState::Open {
            return;
        }
        let (to, other, floor) = (l.node[1 - side], 1 - side, l.arrival_floor[1 - side]);
        self.scratch.clear();
        encode_payload(&message, &mut self.scratch);
        let size = FRAME_HEADER_SIZE + self.scratch.len();
        let digest = payload_digest(&self.scratch);
        match self.net.transmit(node, to, size, self.now, floor) {
            Transmission::Arrives { at, retransmits } => {
                self.stats.retransmitted += (retransmits > 0) as u64;
                self.links[link as usize].arrival_floor[other] = at;
                self.queue.push(
                    at,
                    Event::Deliver {
                        link,
                        side: other,
                        node: self.links[link as usize].node[other],
                        message,
                        size,
                        digest,
                    },
                );
            }
            Transmission::Breaks { at } => {
                self.links[link as usize].arrival_floor[other] = at;
                self.queue.push(at, Event::Break { link });
            }
        }
    }

    /// `node` closes its side of `peer`'s link: it is told at once, the other side when the
    /// FIN arrives.
    fn close(&mut self, node: NodeIndex, peer: PeerId) {
        let Some((link, side)) = self.side_of(node, peer) else {
            return;
        };
        if self.links[link as usize].state[side] != SideState::Open {
            return;
        }
        self.set_closed(link, side);
        let life = self.nodes[node].life;
        self.queue.push(self.now, Event::Down { link, side, life });
        self.send_fin(link, 1 - side);
    }

    /// Schedules the FIN towards `side`, after everything already sent to it.
    fn send_fin(&mut self, link: LinkId, side: usize) {
        let l = &self.links[link as usize];
        if l.state[side] == SideState::Closed {
            return;
        }
        let (from, to, floor) = (l.node[1 - side], l.node[side], l.arrival_floor[side]);
        let at = (self.now + self.net.one_way_us(from, to)).max(floor);
        self.links[link as usize].arrival_floor[side] = at;
        self.queue.push(at, Event::Fin { link, side });
    }

    /// Ends `link` from outside the cores: a partition's reset or TCP giving up (both sides
    /// told now), or `stopped` exiting (the other side told when the FIN arrives, the
    /// stopped side not at all). A dialler still connecting sees its dial fail.
    fn cut(&mut self, link: LinkId, stopped: Option<NodeIndex>) {
        for side in 0..2 {
            let l = &self.links[link as usize];
            let node = l.node[side];
            let state = l.state[side];
            if state == SideState::Closed {
                continue;
            }
            if stopped == Some(node) {
                self.set_closed(link, side);
                continue;
            }
            if stopped.is_some() {
                // The exiting host's FIN or RST.
                if state == SideState::Pending && side == 0 {
                    self.fail_pending_dial(link);
                } else {
                    self.send_fin(link, side);
                }
                continue;
            }
            if state == SideState::Pending && side == 0 {
                self.fail_pending_dial(link);
                continue;
            }
            self.set_closed(link, side);
            if state == SideState::Open {
                self.deliver_disconnected(link, side);
            }
        }
    }

    /// Closes `side` of `link`; the node forgets the link once none of its sides is live
    /// (a self-connection has both).
    fn set_closed(&mut self, link: LinkId, side: usize) {
        let l = &mut self.links[link as usize];
        l.state[side] = SideState::Closed;
        let node = l.node[side];
        if l.node[1 - side] != node || l.state[1 - side] == SideState::Closed {
            self.nodes[node].links.remove(&link);
        }
    }

    /// A dialler whose connection died before it was up: its dial fails now.
    fn fail_pending_dial(&mut self, link: LinkId) {
        self.set_closed(link, 0);
        let l = &self.links[link as usize];
        let (node, peer, dial) = (l.node[0], l.node[1], l.dial);
        let life = self.nodes[node].life;
        self.queue.push(
            self.now,
            Event::DialFailed {
                node,
                life,
                dial,
                peer: Some(peer),
            },
        );
    }

    fn deliver_disconnected(&mut self, link: LinkId, side: usize) {
        let l = &self.links[link as usize];
        let (node, peer) = (l.node[side], l.node[1 - side]);
        self.record(node, Some(peer), TraceKind::Disconnected, 0);
        self.feed(
            node,
            Input::Disconnected {
                peer: peer_id(link, side),
            },
        );
    }

    fn dial(
        &mut self,
        node: NodeIndex,
        dial: DialId,
        target: DialTarget,
        expected: Option<NodeId>,
    ) {
        self.nodes[node].dials += 1;
        self.stats.dials += 1;
        let life = self.nodes[node].life;
        let to = target
            .host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, target.port));
        let listener = to.and_then(|a| self.listen.get(&a).copied());
        match (to, listener) {
            (Some(target), Some(to)) if self.net.reachable(node, to) => {
                let rtt = self.net.one_way_us(node, to) + self.net.one_way_us(to, node);
                self.queue.push(
                    self.now + rtt / 2,
                    Event::Syn {
                        from: node,
                        life,
                        dial,
                        to,
                        target,
                        expected,
                        rtt,
                        dialled_at: self.now,
                    },
                );
            }
            // Nobody there, or behind the partition: the SYN goes unanswered.
            _ => self.queue.push(
                self.now + UNANSWERED_DIAL_US,
                Event::DialFailed {
                    node,
                    life,
                    dial,
                    peer: listener,
                },
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn syn(
        &mut self,
        from: NodeIndex,
        life: u32,
        dial: DialId,
        to: NodeIndex,
        target: SocketAddr,
        expected: Option<NodeId>,
        rtt: SimTime,
        dialled_at: SimTime,
    ) {
        if self.nodes[from].life != life {
            // The dialler stopped: its dial died with it.
            return;
        }
        let fail = move || Event::DialFailed {
            node: from,
            life,
            dial,
            peer: Some(to),
        };
        if !self.net.reachable(from, to) {
            self.queue.push(dialled_at + UNANSWERED_DIAL_US, fail());
            return;
        }
        if !self.nodes[to].up {
            // The host answers with a RST: nothing listens.
            self.queue.push(self.now + rtt / 2, fail());
            return;
        }
        if expected.is_some_and(|id| id != self.nodes[to].cfg.our_node_id) {
            // The dialler's TLS verifier refuses the certificate in the server's flight.
            self.queue.push(self.now + rtt * 3 / 2, fail());
            return;
        }
        let ip = self.nodes[from].addr.ip();
        let next = self.next_port.entry(ip).or_insert(EPHEMERAL_FIRST_PORT);
        let port = *next;
        *next = if port == EPHEMERAL_LAST_PORT {
            EPHEMERAL_FIRST_PORT
        } else {
            port + 1
        };
        let from_addr = SocketAddr::new(ip, port);
        if self.nodes[to]
            .core
            .admit_inbound(self.now(), from_addr)
            .is_err()
        {
            // Accepted and closed at once: the dialler's handshake ends after a round trip.
            self.queue.push(self.now + rtt, fail());
            return;
        }
        let link = self.links.len() as LinkId;
        let dialler_up = self.now + rtt * 3 / 2;
        let listener_up = self.now + rtt * 2;
        self.links.push(Link {
            node: [from, to],
            state: [SideState::Pending; 2],
            arrival_floor: [dialler_up, listener_up],
            seen_as: [target, from_addr],
            dial,
        });
        self.nodes[from].links.insert(link);
        self.nodes[to].links.insert(link);
        self.queue.push(dialler_up, Event::Up { link, side: 0 });
        self.queue.push(listener_up, Event::Up { link, side: 1 });
    }

    fn process(&mut self, at: SimTime, event: Event) {
        match event {
            Event::Deliver {
                link,
                side,
                node,
                message,
                size,
                digest,
            } => {
                let l = &self.links[link as usize];
                let from = l.node[1 - side];
                let command = message.command();
                if l.state[side] != SideState::Open {
                    self.stats.dropped += 1;
                    self.record(node, Some(from), TraceKind::Dropped(command), size);
                    return;
                }
                self.stats.delivered += 1;
                self.trace.record(
                    TraceEvent {
                        at,
                        node,
                        peer: Some(from),
                        kind: TraceKind::Delivered(command),
                        size,
                    },
                    &digest.to_le_bytes(),
                );
                self.feed(
                    node,
                    Input::Received {
                        peer: peer_id(link, side),
                        message,
                    },
                );
            }
            Event::Tick { node, life } => {
                let n = &mut self.nodes[node];
                if !n.up || n.life != life {
                    return;
                }
                if n.queued_tick == Some(at) {
                    n.queued_tick = None;
                }
                match n.timer {
                    Some(due) if due == at => {
                        n.timer = None;
                        self.feed(node, Input::Tick);
                    }
                    // Moved later since this event was queued: queue its new time (unless an
                    // earlier event is queued, which will).
                    Some(due) if due > at && n.queued_tick.is_none_or(|queued| due < queued) => {
                        n.queued_tick = Some(due);
                        self.queue.push(due, Event::Tick { node, life });
                    }
                    _ => {}
                }
            }
            Event::Syn {
                from,
                life,
                dial,
                to,
                target,
                expected,
                rtt,
                dialled_at,
            } => self.syn(from, life, dial, to, target, expected, rtt, dialled_at),
            Event::Up { link, side } => {
                let l = &mut self.links[link as usize];
                if l.state[side] != SideState::Pending {
                    return;
                }
                l.state[side] = SideState::Open;
                let (node, other, addr) = (l.node[side], l.node[1 - side], l.seen_as[side]);
                let dial = (side == 0).then_some(l.dial);
                if side == 0 {
                    self.stats.connections += 1;
                }
                let node_id = self.nodes[other].cfg.our_node_id;
                self.record(
                    node,
                    Some(other),
                    TraceKind::Connected { inbound: side == 1 },
                    0,
                );
                self.feed(
                    node,
                    Input::Connected {
                        peer: peer_id(link, side),
                        addr,
                        dial,
                        node_id,
                    },
                );
            }
            Event::Down { link, side, life } => {
                let node = &self.nodes[self.links[link as usize].node[side]];
                if node.up && node.life == life {
                    self.deliver_disconnected(link, side);
                }
            }
            Event::Fin { link, side } => {
                let l = &mut self.links[link as usize];
                let state = l.state[side];
                if state == SideState::Closed {
                    return;
                }
                self.set_closed(link, side);
                if state == SideState::Open {
                    self.deliver_disconnected(link, side);
                }
            }
            Event::Break { link } => {
                self.stats.broken += 1;
                self.cut(link, None);
            }
            Event::DialFailed {
                node,
                life,
                dial,
                peer,
            } => {
                let n = &self.nodes[node];
                if n.up && n.life == life {
                    self.record(node, peer, TraceKind::DialFailed, 0);
                    self.feed(node, Input::DialFailed { dial });
                }
            }
            Event::Rebuilt {
                node,
                life,
                peer,
                hash,
                result,
            } => {
                let n = &self.nodes[node];
                if n.up && n.life == life {
                    self.feed(node, Input::Reconstructed { peer, hash, result });
                }
            }
            Event::Validated {
                node,
                life,
                peer,
                block,
            } => {
                let n = &self.nodes[node];
                // A node that stopped meanwhile never finished writing it.
                if n.up && n.life == life {
                    let hash = block.hash();
                    let result = self.submit_to_chain(node, block);
                    self.feed(node, Input::BlockProcessed { peer, hash, result });
                }
            }
            Event::TxChecked {
                node,
                life,
                peer,
                from,
                tx,
            } => {
                let n = &self.nodes[node];
                if n.up && n.life == life {
                    self.tx_checked(node, peer, from, *tx);
                }
            }
            Event::MempoolListed { node, life, peer } => {
                let n = &self.nodes[node];
                if n.up && n.life == life {
                    let txs = n.pool.ready_announceable(MEMPOOL_LISTED_ON_CONNECT);
                    // The shell feeds nothing for an empty pool.
                    if !txs.is_empty() {
                        self.feed(node, Input::MempoolContents { peer, txs });
                    }
                }
            }
        }
    }
}

/// When work taking `cost` that queues behind `busy_until` (the node's chain or pool works
/// one item at a time) is done, if handed over at `now`; the queue's end moves there.
fn queue_behind(busy_until: &mut SimTime, now: SimTime, cost: SimTime) -> SimTime {
    *busy_until = (*busy_until).max(now) + cost;
    *busy_until
}
