//! Headers-first sync, block download and announcements between protocol cores in memory.
//! Each core's chain is played by the test: a block the core submits is "connected" when its
//! parent is the tip (the test trusts bodies, except those it was told to reject), and blocks
//! are served from what each node has connected.

use noded::chain::testkit::TestChainBuilder;
use noded::encoding::BoundedString;
use noded::params::Network;
use noded::protocol::addrman::AddrMan;
use noded::protocol::bans::BanList;
use noded::protocol::cmpct::{compact_of, Filler};
use noded::protocol::{BlockResult, Core, CoreConfig, DisconnectReason, Input, Output};
use noded::time::FIXED_EPOCH_MS;
use noded::types::{Address, Block, Hash256, NodeId};
use noded::wire::{Message, NetAddress, Version, PROTOCOL_VERSION};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use noded::time::after_epoch as now;

struct Node {
    core: Core,
    id: NodeId,
    /// Blocks the node's "chain" holds, and its active chain.
    blocks: HashMap<Hash256, Block>,
    active: Vec<Hash256>,
    /// Bodies this node's chain refuses as invalid.
    poisoned: HashSet<Hash256>,
    /// Bodies this node's chain finds mutated the next time they come.
    mutated: HashSet<Hash256>,
    submitted: usize,
    /// Blocks whose parent is missing, held as the real chain's orphan pool holds them.
    orphans: HashMap<Hash256, Block>,
}

struct Net {
    nodes: Vec<Node>,
    /// (node, peer id) → (other node, its peer id)
    links: HashMap<(usize, u64), (usize, u64)>,
    queue: VecDeque<(usize, Input)>,
    next_peer: u64,
    ms: u64,
    /// Peers that served nothing (they stall every GETDATA).
    silent: HashSet<usize>,
    /// Nodes whose compact blocks go out of order, as the shell's parallel builds can send
    /// them: held until the network is quiet, then delivered odd positions first.
    reordered: HashSet<usize>,
    held: Vec<(usize, u64, Message)>,
}

impl Net {
    fn new(n: usize) -> Net {
        let params = Network::Regtest.params();
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId([i as u8 + 1; 32]);
                let mut cfg = CoreConfig::new(id);
                cfg.rng_seed = i as u64;
                cfg.connect_only = true;
                cfg.allow_local_addrs = true;
                Node {
                    core: Core::new(cfg, AddrMan::new([i as u8; 32]), BanList::default()),
                    id,
                    blocks: HashMap::from([(params.genesis_hash(), params.genesis_block())]),
                    active: vec![params.genesis_hash()],
                    poisoned: HashSet::new(),
                    mutated: HashSet::new(),
                    submitted: 0,
                    orphans: HashMap::new(),
                }
            })
            .collect();
        Net {
            nodes,
            links: HashMap::new(),
            queue: VecDeque::new(),
            next_peer: 1,
            ms: 0,
            silent: HashSet::new(),
            reordered: HashSet::new(),
            held: Vec::new(),
        }
    }

    /// Two nodes, 1 connected to 0; node 0 delivers node 1 `first` (its first new block), so
    /// node 1 asks it for compact pushes.
    fn pushing_compact_blocks(first: &Block) -> Net {
        let mut net = Net::new(2);
        net.connect(1, 0);
        net.run(2);
        net.give(0, std::slice::from_ref(first));
        assert_eq!(net.height(1), 1);
        net
    }

    fn tip(&self, i: usize) -> Hash256 {
        *self.nodes[i].active.last().unwrap()
    }

    fn height(&self, i: usize) -> usize {
        self.nodes[i].active.len() - 1
    }

    /// Node `i` mines `blocks` (built elsewhere) as if submitted locally.
    fn give(&mut self, i: usize, blocks: &[Block]) {
        for block in blocks {
            self.connect_block(i, block.clone());
        }
        self.pump();
    }

    /// The node's "chain": stores a block whose parent it has, and follows the most-work
    /// (here: longest; the first seen wins a tie) branch, disconnecting and connecting blocks
    /// as a reorganisation does.
    fn connect_block(&mut self, i: usize, block: Block) -> BlockResult {
        let hash = block.hash();
        let node = &mut self.nodes[i];
        if node.poisoned.contains(&hash) {
            return BlockResult::Invalid("test: refused".into());
        }
        if node.mutated.remove(&hash) {
            return BlockResult::Mutated("test: bad-txnmrklroot".into());
        }
        if node.blocks.contains_key(&hash) {
            return BlockResult::Duplicate;
        }
        if !node.blocks.contains_key(&block.header.prev_hash) {
            node.orphans.insert(hash, block);
            return BlockResult::Orphan;
        }
        node.blocks.insert(hash, block.clone());
        // The branch ending at this block, down to where it meets the active chain.
        let mut branch = vec![hash];
        let mut cursor = block.header.prev_hash;
        while !node.active.contains(&cursor) {
            branch.push(cursor);
            cursor = node.blocks[&cursor].header.prev_hash;
        }
        let fork = node.active.iter().position(|h| *h == cursor).unwrap();
        let new_height = fork + branch.len();
        if new_height < node.active.len() {
            return BlockResult::SideBranch;
        }
        while node.active.len() - 1 > fork {
            let gone = node.active.pop().unwrap();
            let header = node.blocks[&gone].header;
            let height = node.active.len() as u64;
            self.queue
                .push_back((i, Input::BlockDisconnected { header, height }));
        }
        for h in branch.into_iter().rev() {
            let header = node.blocks[&h].header;
            node.active.push(h);
            let height = node.active.len() as u64 - 1;
            self.queue
                .push_back((i, Input::BlockConnected { header, height }));
        }
        // Orphans waiting for this block follow it.
        let children: Vec<Block> = node
            .orphans
            .values()
            .filter(|o| o.header.prev_hash == hash)
            .cloned()
            .collect();
        for child in children {
            self.nodes[i].orphans.remove(&child.hash());
            self.connect_block(i, child);
        }
        BlockResult::Connected
    }

    fn connect(&mut self, a: usize, b: usize) {
        let (pa, pb) = (self.next_peer, self.next_peer + 1);
        self.next_peer += 2;
        self.links.insert((a, pa), (b, pb));
        self.links.insert((b, pb), (a, pa));
        let addr_of =
            |i: usize| -> SocketAddr { format!("127.0.0.{}:8333", i + 1).parse().unwrap() };
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        self.queue.push_back((
            b,
            Input::Connected {
                peer: pb,
                addr: addr_of(a),
                dial: None,
                node_id: ida,
            },
        ));
        // The dialling side: a one-try dial is what lets `dial` be set; an inbound-looking
        // connection on both sides is simpler and the handshake is the same but for who
        // speaks first, so the test makes `a` send VERSION itself.
        self.queue.push_back((
            a,
            Input::Connected {
                peer: pa,
                addr: addr_of(b),
                dial: None,
                node_id: idb,
            },
        ));
        let version = Message::Version(Box::new(Version {
            protocol_version: PROTOCOL_VERSION,
            services: 1,
            timestamp: (FIXED_EPOCH_MS / 1000) as i64,
            receiver: NetAddress::new(addr_of(b), 0),
            sender: NetAddress::new(addr_of(a), 0),
            nonce: pa,
            user_agent: BoundedString::truncating("/test/"),
            best_height: self.height(a) as u64,
            node_id: ida,
            relay: true,
        }));
        self.queue.push_back((
            b,
            Input::Received {
                peer: pb,
                message: version,
            },
        ));
        self.pump();
    }

    fn deliver(&mut self, from: usize, peer: u64, message: Message) {
        if let Some(&(to, their)) = self.links.get(&(from, peer)) {
            self.queue.push_back((
                to,
                Input::Received {
                    peer: their,
                    message,
                },
            ));
        }
    }

    fn pump(&mut self) {
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 1_000_000, "the network never went quiet");
            if let Some((i, input)) = self.queue.pop_front() {
                self.nodes[i].core.handle(now(self.ms), input).unwrap();
            }
            let mut any = false;
            for i in 0..self.nodes.len() {
                for output in self.nodes[i].core.drain_outputs() {
                    any = true;
                    self.apply(i, output);
                }
            }
            if !any && self.queue.is_empty() {
                if self.held.is_empty() {
                    return;
                }
                let held = std::mem::take(&mut self.held);
                let (odd, even): (Vec<_>, Vec<_>) = held
                    .into_iter()
                    .enumerate()
                    .partition(|(position, _)| position % 2 == 1);
                for (_, (from, peer, message)) in odd.into_iter().chain(even) {
                    self.deliver(from, peer, message);
                }
            }
        }
    }

    fn apply(&mut self, i: usize, output: Output) {
        match output {
            Output::Send(peer, message) => self.deliver(i, peer, message),
            Output::Disconnect(peer, _) => {
                if let Some((j, their)) = self.links.remove(&(i, peer)) {
                    self.links.remove(&(j, their));
                    self.queue
                        .push_back((j, Input::Disconnected { peer: their }));
                }
                self.queue.push_back((i, Input::Disconnected { peer }));
            }
            Output::SubmitBlock { peer, block } => {
                let hash = block.hash();
                self.nodes[i].submitted += 1;
                let result = self.connect_block(i, *block);
                self.queue
                    .push_back((i, Input::BlockProcessed { peer, hash, result }));
            }
            Output::ServeBlocks { peer, hashes } => {
                if self.silent.contains(&i) {
                    return;
                }
                for hash in hashes {
                    let block = self.nodes[i].blocks[&hash].clone();
                    self.deliver(i, peer, Message::Block(Box::new(block)));
                }
            }
            // Compact blocks, as the node's shell handles them (no mempool here: rebuilt from
            // the prefilled coinbase alone).
            Output::SendCompact {
                peers,
                hash,
                block,
                nonce,
            } => {
                let block = block.unwrap_or_else(|| Arc::new(self.nodes[i].blocks[&hash].clone()));
                let compact = compact_of(&block, nonce, None).unwrap();
                for peer in peers {
                    let message = Message::CmpctBlock(Box::new(compact.clone()));
                    if self.reordered.contains(&i) {
                        self.held.push((i, peer, message));
                    } else {
                        self.deliver(i, peer, message);
                    }
                }
            }
            Output::ServeCompact { peer, hash, nonce } => {
                let block = &self.nodes[i].blocks[&hash];
                let compact = compact_of(block, nonce, None).unwrap();
                self.deliver(i, peer, Message::CmpctBlock(Box::new(compact)));
            }
            Output::Reconstruct { peer, compact } => {
                let hash = compact.header.hash();
                let result = Filler::new(&compact).finish();
                self.queue
                    .push_back((i, Input::Reconstructed { peer, hash, result }));
            }
            _ => {}
        }
    }

    /// Advances the clock by `secs`, ticking every node each second.
    fn run(&mut self, secs: u64) {
        for _ in 0..secs {
            self.ms += 1_000;
            for i in 0..self.nodes.len() {
                self.queue.push_back((i, Input::Tick));
            }
            self.pump();
        }
    }

    fn banned(&self, i: usize) -> usize {
        self.nodes[i].core.bans().len()
    }
}

fn chain(len: usize) -> Vec<Block> {
    let mut builder = TestChainBuilder::new(Network::Regtest.params());
    (0..len)
        .map(|_| builder.build(Address([1; 20]), vec![]))
        .collect()
}

#[test]
fn a_new_node_syncs_headers_then_blocks_from_a_peer() {
    let mut net = Net::new(2);
    let blocks = chain(300);
    net.give(0, &blocks);
    assert_eq!(net.height(0), 300);
    net.connect(1, 0);
    net.run(5);
    assert_eq!(net.height(1), 300);
    assert_eq!(net.tip(1), net.tip(0));
    assert_eq!(
        net.nodes[1].submitted, 300,
        "each block handed to the chain once"
    );
}

#[test]
fn a_block_mined_later_is_announced_and_fetched() {
    let mut net = Net::new(3);
    let blocks = chain(12);
    net.give(0, &blocks[..10]);
    // A line: 0 - 1 - 2.
    net.connect(1, 0);
    net.connect(2, 1);
    net.run(3);
    assert_eq!((net.height(1), net.height(2)), (10, 10));
    // Two more blocks mined at 0 travel the line without any tick.
    net.give(0, &blocks[10..]);
    assert_eq!((net.height(1), net.height(2)), (12, 12));
    assert_eq!(net.tip(2), net.tip(0));
}

/// Found in a five-node line of real processes: a node that connected several blocks at once
/// pushed their compact blocks out of order (each is built on a thread of its own). The first
/// whose parent was unknown was asked for with GETHEADERS up to that block only, and the later
/// ones, arriving while that request was out, were dropped: the node stayed behind until the
/// next block was mined.
#[test]
fn compact_blocks_pushed_out_of_order_all_arrive() {
    let blocks = chain(7);
    let mut net = Net::pushing_compact_blocks(&blocks[0]);
    // Six blocks connected at once at node 0, pushed in the order 3, 5, 7, 2, 4, 6.
    net.reordered.insert(0);
    net.give(0, &blocks[1..]);
    assert_eq!(
        (net.height(1), net.tip(1)),
        (7, blocks[6].hash()),
        "without any tick"
    );
}

#[test]
fn a_block_submitted_here_is_pushed_once_checked_before_it_is_connected() {
    let blocks = chain(3);
    let mut net = Net::pushing_compact_blocks(&blocks[0]);
    // `submitblock` at node 0: the chain checked the body and is connecting it. Node 1 has
    // it (pushed, rebuilt, connected) while node 0's chain has not connected it yet.
    let submitted = Arc::new(blocks[1].clone());
    net.queue
        .push_back((0, Input::BlockChecked { block: submitted }));
    net.pump();
    assert_eq!(net.height(0), 1, "node 0's chain never connected it");
    assert_eq!((net.height(1), net.tip(1)), (2, blocks[1].hash()));
    // Node 0's chain connects it: nothing goes twice, and the next block goes on as usual.
    net.give(0, &blocks[1..]);
    assert_eq!((net.height(0), net.height(1)), (3, 3));
    assert_eq!(
        net.nodes[1].submitted, 3,
        "each block handed to node 1's chain once"
    );
    // A block the header tree refuses (here: not building on anything known) is not pushed.
    let stray = chain(5).pop().unwrap();
    net.queue.push_back((
        0,
        Input::BlockChecked {
            block: Arc::new(stray),
        },
    ));
    net.pump();
    assert_eq!(net.nodes[1].submitted, 3);
}

#[test]
fn two_sides_that_mined_apart_converge_on_the_heavier_one() {
    let params = Network::Regtest.params();
    let mut net = Net::new(4);
    let mut common = TestChainBuilder::new(params);
    let shared: Vec<Block> = (0..5)
        .map(|_| common.build(Address([1; 20]), vec![]))
        .collect();
    for i in 0..4 {
        net.give(i, &shared);
    }
    // Two halves: 0-1 and 2-3, each mining its own branch on the shared blocks.
    net.connect(1, 0);
    net.connect(3, 2);
    let mut left = TestChainBuilder::new(params);
    let mut right = TestChainBuilder::new(params);
    for _ in 0..5 {
        left.build(Address([1; 20]), vec![]);
        right.build(Address([1; 20]), vec![]);
    }
    let lighter: Vec<Block> = (0..2)
        .map(|_| left.build(Address([2; 20]), vec![]))
        .collect();
    let heavier: Vec<Block> = (0..3)
        .map(|_| right.build(Address([3; 20]), vec![]))
        .collect();
    net.give(0, &lighter);
    net.give(2, &heavier);
    net.run(2);
    assert_eq!((net.height(1), net.height(3)), (7, 8));
    // The partition heals.
    net.connect(1, 2);
    net.run(5);
    for i in 0..4 {
        assert_eq!(net.height(i), 8, "node {i}");
        assert_eq!(net.tip(i), heavier[2].hash(), "node {i}");
    }
}

#[test]
fn a_peer_that_serves_an_invalid_block_is_banned_and_sync_completes_elsewhere() {
    let mut net = Net::new(3);
    let blocks = chain(40);
    net.give(0, &blocks);
    net.give(2, &blocks);
    // Node 1's chain will refuse block 20 the first time (as if node 0 sent a corrupt body
    // under that header); node 0 is asked first.
    let bad = blocks[19].hash();
    net.nodes[1].poisoned.insert(bad);
    net.connect(1, 0);
    net.run(1);
    assert!(
        net.banned(1) >= 1,
        "the sender of the invalid block is banned"
    );
    assert!(net.height(1) < 40);
    // The same header is now known invalid: nothing on that chain is fetched again.
    net.nodes[1].poisoned.clear();
    net.connect(1, 2);
    net.run(3);
    assert_eq!(
        net.height(1),
        19,
        "the chain above the invalid block is not followed"
    );
}

#[test]
fn a_peer_that_stalls_is_dropped_and_its_blocks_come_from_another() {
    let mut net = Net::new(3);
    let blocks = chain(60);
    net.give(0, &blocks);
    net.give(2, &blocks);
    net.silent.insert(0);
    net.connect(1, 0);
    net.connect(1, 2);
    net.run(30);
    assert_eq!(net.height(1), 60);
    let reasons: Vec<String> = net.nodes[1]
        .core
        .peers(now(net.ms))
        .iter()
        .map(|p| p.addr.to_string())
        .collect();
    assert!(
        !reasons.iter().any(|a| a.starts_with("127.0.0.1:")),
        "the staller is gone: {reasons:?}"
    );
    let _ = DisconnectReason::Stalling;
}

#[test]
fn a_mutated_block_costs_the_sender_its_connection_not_the_header() {
    let mut net = Net::new(3);
    let blocks = chain(30);
    net.give(0, &blocks);
    net.give(2, &blocks);
    let hit = blocks[9].hash();
    net.nodes[1].mutated.insert(hit);
    net.connect(1, 0);
    net.run(1);
    assert_eq!(net.banned(1), 0, "no ban for a mutated body");
    assert!(!net.nodes[1].core.headers().is_invalid(&hit));
    assert!(net.height(1) < 30);
    net.connect(1, 2);
    net.run(3);
    assert_eq!(net.height(1), 30, "the same block, fetched again, connects");
}

#[test]
fn headers_of_a_heavier_branch_withheld_do_not_stop_a_node_announcing_its_blocks() {
    // Node 0 mines; node 1 is its peer; a stranger (2) gives node 0 the headers of a heavier
    // branch whose blocks it never serves.
    let mut net = Net::new(3);
    let honest = chain(5);
    net.give(0, &honest);
    let mut other = TestChainBuilder::new(Network::Regtest.params());
    let heavier: Vec<Block> = (0..8)
        .map(|_| other.build(Address([9; 20]), vec![]))
        .collect();
    net.give(2, &heavier);
    net.silent.insert(2);
    net.connect(1, 0);
    net.connect(0, 2);
    net.run(3);
    assert_eq!(net.height(1), 5);
    let best = net.nodes[0].core.headers().best_height();
    assert_eq!(best, 8, "node 0's best header is the stranger's");
    // A block mined now at node 0 reaches node 1 without any tick: node 0's new tip is
    // recent, so it is announced although it is not node 0's best header.
    let fresh = noded::chain::testkit::make_block(
        Network::Regtest.params(),
        &honest[4].header,
        5,
        FIXED_EPOCH_MS / 1_000 + net.ms / 1_000,
        Address([1; 20]),
        vec![],
    );
    net.give(0, std::slice::from_ref(&fresh));
    assert_eq!(net.tip(1), fresh.hash(), "node 0 announced its new tip");
}
