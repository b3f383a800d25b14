//! Blocks over the simulated network (`noded::sim` with each node's chain model): many nodes
//! converging on the tip of blocks mined at random nodes, two halves of a partition
//! converging on the heavier side after it heals, a new node syncing past a stalling and an
//! invalid-block peer, and header spam leaving the header tree bounded. Seeded, with the
//! region latencies and the virtual clock; a seed that ever fails stays as a named test.

use noded::chain::testkit::TestChainBuilder;
use noded::encoding::BoundedVec;
use noded::params::Network;
use noded::protocol::bans::BanTarget;
use noded::protocol::headers::MAX_HEADERS_WITHOUT_BODY;
use noded::sim::{NodeIndex, Sim, SimConfig, TraceKind};
use noded::time::LocalDuration;
use noded::types::pow::hash_meets_target;
use noded::types::{Address, Block, Hash256, Header};
use noded::wire::limits::MAX_HEADERS_ITEMS;
use noded::wire::{Command, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn secs(s: u64) -> LocalDuration {
    LocalDuration::from_secs(s)
}

fn mins(m: u64) -> LocalDuration {
    LocalDuration::from_mins(m)
}

/// How often a settling run checks whether the nodes agree.
const SETTLE_STEP: LocalDuration = LocalDuration::from_millis(100);

/// Whether every node in `nodes` has the same active tip, in its chain and in its core.
fn agree(sim: &Sim, nodes: &[NodeIndex]) -> bool {
    let tip = sim.tip(nodes[0]);
    nodes
        .iter()
        .all(|&i| sim.tip(i) == tip && sim.core(i).headers().active_tip() == tip)
}

/// Runs until `nodes` agree on a tip or `limit` passes; returns how long it took (ms).
fn settle(sim: &mut Sim, nodes: &[NodeIndex], limit: LocalDuration) -> Option<u64> {
    let start = sim.now().local;
    while sim.now().local.since(start) < limit {
        if agree(sim, nodes) {
            return Some(sim.now().local.since(start).as_millis());
        }
        sim.run_for(SETTLE_STEP);
    }
    agree(sim, nodes).then(|| sim.now().local.since(start).as_millis())
}

fn all(sim: &Sim) -> Vec<NodeIndex> {
    (0..sim.len()).collect()
}

/// `n` nodes, 3 bootstrap nodes, gossip: the network forms for two minutes.
fn network(n: usize, seed: u64) -> Sim {
    let mut sim = SimConfig::new(n).seed(seed).bootstrap([0, 1, 2]).build();
    sim.run_for(mins(2));
    sim
}

/// Mines `count` blocks at nodes drawn from `miners`, each after a pause drawn from
/// `gap_ms`; returns the hashes.
fn mine_randomly(
    sim: &mut Sim,
    rng: &mut StdRng,
    miners: &[NodeIndex],
    count: usize,
    gap_ms: std::ops::Range<u64>,
) -> Vec<Hash256> {
    (0..count)
        .map(|_| {
            sim.run_for(LocalDuration::from_millis(rng.gen_range(gap_ms.clone())));
            let node = miners[rng.gen_range(0..miners.len())];
            sim.mine(node)
        })
        .collect()
}

// ----- a. 50 nodes, 200 blocks ----------------------------------------------------------

/// 200 blocks mined at random nodes of a 50-node network, every 0.5 to 10 s: all 50 end on
/// one tip. Returns the simulated ms it took after the last block, and the tip's height.
fn fifty_nodes_two_hundred_blocks(seed: u64) -> (u64, u64) {
    let mut sim = network(50, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let miners = all(&sim);
    let mined = mine_randomly(&mut sim, &mut rng, &miners, 200, 500..10_000);
    let took = settle(&mut sim, &miners, mins(10))
        .unwrap_or_else(|| panic!("seed {seed}: 50 nodes did not agree: {:?}", heights(&sim)));
    let tip = sim.tip(0);
    let height = sim.height(0);
    // The tip is one of the mined blocks, with every node's chain on it; forks cost at most
    // the blocks mined on losing branches.
    assert!(mined.contains(&tip), "seed {seed}");
    assert!(
        height > 150 && height <= 200,
        "seed {seed}: height {height}"
    );
    for i in 0..sim.len() {
        assert_eq!(
            sim.core(i).headers().best_hash(),
            tip,
            "seed {seed} node {i}"
        );
    }
    (took, height)
}

fn heights(sim: &Sim) -> Vec<u64> {
    (0..sim.len()).map(|i| sim.height(i)).collect()
}

#[test]
fn fifty_nodes_reach_one_tip_after_two_hundred_blocks_mined_at_random_nodes() {
    let (took, height) = fifty_nodes_two_hundred_blocks(11);
    println!("seed 11: one tip at height {height}, {took} ms after the last block");
}

// ----- b. partition and heal ------------------------------------------------------------

/// 30 nodes share 5 blocks, split into halves that mine apart (the right half more), heal:
/// every node ends on the right half's tip. Returns the ms the convergence took.
fn halves_mine_apart_and_converge(seed: u64) -> u64 {
    let mut sim = network(30, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let everyone = all(&sim);
    mine_randomly(&mut sim, &mut rng, &everyone, 5, 1_000..5_000);
    settle(&mut sim, &everyone, mins(2)).expect("the shared blocks spread");
    let left: Vec<NodeIndex> = (0..15).collect();
    let right: Vec<NodeIndex> = (15..30).collect();
    sim.partition(&[left.clone(), right.clone()]);
    mine_randomly(&mut sim, &mut rng, &left, 3, 5_000..20_000);
    mine_randomly(&mut sim, &mut rng, &right, 6, 5_000..20_000);
    settle(&mut sim, &left, mins(2)).expect("the left half agrees");
    settle(&mut sim, &right, mins(2)).expect("the right half agrees");
    let (left_tip, right_tip) = (sim.tip(0), sim.tip(15));
    assert_eq!((sim.height(0), sim.height(15)), (8, 11), "seed {seed}");
    sim.heal();
    let took = settle(&mut sim, &everyone, mins(20))
        .unwrap_or_else(|| panic!("seed {seed}: no convergence: {:?}", heights(&sim)));
    assert_eq!(sim.tip(0), right_tip, "seed {seed}: the heavier side wins");
    assert_ne!(left_tip, right_tip);
    took
}

#[test]
fn two_halves_that_mined_apart_converge_on_the_heavier_one_after_healing() {
    let took = halves_mine_apart_and_converge(5);
    println!("seed 5: converged {took} ms after the heal");
}

// ----- c. a new node, a staller and an invalid block ------------------------------------

/// `n` blocks on genesis, each paying `to`.
fn chain(n: usize, to: u8) -> Vec<Block> {
    let mut builder = TestChainBuilder::new(Network::Regtest.params());
    (0..n)
        .map(|_| builder.build(Address([to; 20]), vec![]))
        .collect()
}

/// Node 4 joins nodes 0 to 3, which hold a 2,000-block chain: node 0 stalls (answers no
/// GETDATA), node 1 holds a heavier branch from height 1,000 whose first block is
/// consensus-invalid. Node 4 bans node 1 and syncs the 2,000 blocks from the others.
fn new_node_syncs_past_a_staller_and_an_invalid_block(seed: u64) {
    const HONEST: usize = 2_000;
    const FORK_AT: usize = 1_000;
    let mut sim = SimConfig::new(5)
        .seed(seed)
        // The four peers keep to themselves; the new node finds them as bootstrap nodes.
        .configure(|i, cfg| cfg.connect_only = i < 4)
        .bootstrap([0, 1, 2, 3])
        .build();
    let honest = chain(HONEST, 1);
    // The evil branch: the honest first 1,000 blocks, then 1,001 of its own (more work).
    let mut evil_builder = TestChainBuilder::new(Network::Regtest.params());
    let evil: Vec<Block> = (0..HONEST + 1)
        .map(|h| evil_builder.build(Address([if h < FORK_AT { 1 } else { 2 }; 20]), vec![]))
        .collect();
    assert_eq!(evil[FORK_AT - 1].hash(), honest[FORK_AT - 1].hash());
    for node in [0, 2, 3] {
        sim.give_blocks(node, &honest);
    }
    sim.give_blocks(1, &evil);
    // The first block of node 1's branch breaks a rule every other chain enforces.
    let bad = evil[FORK_AT].hash();
    sim.mark_invalid(bad);
    sim.set_stalling(0, true);
    let (new, staller, liar) = (4, 0, 1);
    let target = honest[HONEST - 1].hash();
    let start = sim.now().local;
    let mut synced_at = None;
    while sim.now().local.since(start) < mins(10) {
        sim.run_for(secs(1));
        if sim.tip(new) == target {
            synced_at = Some(sim.now().local.since(start).as_millis());
            break;
        }
    }
    let synced_at = synced_at.unwrap_or_else(|| {
        panic!(
            "seed {seed}: node 4 at height {} of {HONEST}",
            sim.height(new)
        )
    });
    assert_eq!(sim.height(new), HONEST as u64);
    assert!(
        sim.chain(new).is_failed(&bad),
        "the bad block was fetched and refused"
    );
    let banned: Vec<BanTarget> = sim.core(new).bans().iter().map(|(t, _)| *t).collect();
    let liar_targets = [
        BanTarget::Ip(sim.addr(liar).ip()),
        BanTarget::Node(sim.node_id(liar)),
    ];
    assert!(
        !banned.is_empty() && banned.iter().all(|t| liar_targets.contains(t)),
        "seed {seed}: the invalid block's sender, and only it, is banned: {banned:?}"
    );
    // The staller was dropped at least once for stalling (it is not banned: it may return).
    let staller_drops = sim
        .trace()
        .count(|e| e.node == new && e.peer == Some(staller) && e.kind == TraceKind::Disconnected);
    assert!(
        staller_drops >= 1,
        "seed {seed}: the staller was never dropped"
    );
    let from_staller = sim.trace().count(|e| {
        e.node == new && e.peer == Some(staller) && e.kind == TraceKind::Delivered(Command::Block)
    });
    assert_eq!(from_staller, 0);
    println!(
        "seed {seed}: synced {HONEST} blocks in {synced_at} ms; staller dropped {staller_drops} times"
    );
}

#[test]
fn a_new_node_syncs_2000_blocks_past_a_staller_and_bans_the_invalid_block_sender() {
    new_node_syncs_past_a_staller_and_an_invalid_block(3);
}

// ----- d. header spam -------------------------------------------------------------------

/// A valid regtest header on `prev`, `branch` telling sibling branches apart.
fn header_on(prev: &Header, branch: u32) -> Header {
    let params = Network::Regtest.params();
    let mut merkle = [0u8; 32];
    merkle[..4].copy_from_slice(&branch.to_le_bytes());
    let mut h = Header {
        version: noded::params::BLOCK_VERSION,
        prev_hash: prev.hash(),
        merkle_root: Hash256(merkle),
        time: prev.time + 1,
        bits: params.pow_limit_bits,
        nonce: 0,
    };
    let target = params.pow_limit();
    while !hash_meets_target(&h.hash(), &target) {
        h.nonce += 1;
    }
    h
}

/// A branch of `len` headers from genesis.
fn spam_branch(branch: u32, len: usize) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::with_capacity(len);
    let genesis = Network::Regtest.params().genesis_block().header;
    for _ in 0..len {
        let prev = out.last().copied().unwrap_or(genesis);
        out.push(header_on(&prev, branch));
    }
    out
}

/// Node 0 (the victim) syncs a 2,500-block chain from node 1 while node 2 feeds it
/// `branches` branches of 2,000 headers from genesis, each with less work than the honest
/// chain less `ANTI_DOS_WORK_BLOCKS`, one HEADERS message at a time. Returns the largest
/// header-without-body count the victim's tree reached, and whether the victim followed a
/// block mined after the spam.
fn header_spam(seed: u64, branches: u32) -> (usize, bool) {
    const HONEST: usize = 2_500;
    let mut sim = SimConfig::new(3)
        .seed(seed)
        .configure(|_, cfg| cfg.connect_only = true)
        .build();
    sim.give_blocks(1, &chain(HONEST, 1));
    sim.add_node(0, 1).unwrap();
    sim.add_node(2, 0).unwrap();
    for _ in 0..120 {
        if sim.height(0) == HONEST as u64 {
            break;
        }
        sim.run_for(secs(1));
    }
    assert_eq!(
        sim.height(0),
        HONEST as u64,
        "the honest sync before the spam"
    );
    let mut peak = sim.core(0).headers().headers_without_body();
    for branch in 0..branches {
        let headers = spam_branch(branch, MAX_HEADERS_ITEMS);
        let message = Message::Headers(BoundedVec::new(headers).expect("2,000 headers"));
        assert!(sim.send_raw(2, 0, message), "the spammer is connected");
        // Run until it arrives, watching the tree.
        for _ in 0..10 {
            sim.run_for(LocalDuration::from_millis(100));
            let held = sim.core(0).headers().headers_without_body();
            assert!(held <= MAX_HEADERS_WITHOUT_BODY, "{held} headers held");
            peak = peak.max(held);
        }
    }
    // Honest mining continues: the victim follows it.
    let next = sim.mine(1);
    sim.run_for(secs(10));
    (peak, sim.tip(0) == next)
}

#[test]
fn a_peer_feeding_100000_low_work_headers_leaves_the_header_tree_bounded() {
    let (peak, follows) = header_spam(9, 50);
    println!(
        "100,000 low-work headers: the victim's tree held at most {peak} headers without a body \
         (cap {MAX_HEADERS_WITHOUT_BODY})"
    );
    // Pre-sync follows each branch in constant memory and stores none of it.
    assert_eq!(peak, 0, "low-work headers were stored");
    assert!(follows, "the victim still follows the honest chain");
}

// ----- determinism ----------------------------------------------------------------------

fn twenty_nodes_thirty_blocks(seed: u64) -> Sim {
    let mut sim = network(20, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let everyone = all(&sim);
    mine_randomly(&mut sim, &mut rng, &everyone, 30, 200..5_000);
    sim.run_for(mins(1));
    sim
}

#[test]
fn twenty_nodes_mining_thirty_blocks_replay_bit_for_bit_from_their_seed() {
    let a = twenty_nodes_thirty_blocks(21);
    let b = twenty_nodes_thirty_blocks(21);
    // Blocks crossed the network (empty blocks go as compact blocks, rebuilt on arrival).
    let blocks = |s: &Sim| {
        s.trace().delivered_of(Command::Block) + s.trace().delivered_of(Command::CmpctBlock)
    };
    assert!(blocks(&a) > 0);
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(a.stats(), b.stats());
    assert_eq!(heights(&a), heights(&b));
    assert!(agree(&a, &all(&a)), "settled: {:?}", heights(&a));
    let c = twenty_nodes_thirty_blocks(22);
    assert_ne!(a.trace_hash(), c.trace_hash());
}

// ----- restarts -------------------------------------------------------------------------

#[test]
fn a_restarted_node_keeps_its_chain_and_catches_up() {
    let mut sim = network(10, 31);
    let mut rng = StdRng::seed_from_u64(31);
    let everyone = all(&sim);
    mine_randomly(&mut sim, &mut rng, &everyone, 10, 500..2_000);
    settle(&mut sim, &everyone, mins(1)).expect("agreed before the stop");
    sim.stop(9);
    let kept = sim.height(9);
    let others: Vec<NodeIndex> = (0..9).collect();
    mine_randomly(&mut sim, &mut rng, &others, 5, 500..2_000);
    sim.restart(9);
    assert_eq!(sim.height(9), kept, "the store survived the restart");
    assert_eq!(
        sim.core(9).headers().active_height(),
        kept,
        "the new core starts with the chain's headers"
    );
    settle(&mut sim, &everyone, mins(2)).expect("caught up after the restart");
    assert_eq!(sim.height(9), kept + 5);
}
