//! Transactions over the simulated network (`noded::sim` with each node's pool model): a
//! transaction submitted at one node reaches every pool of 50 nodes on the region latencies,
//! with and without loss; a sender's consecutive nonces submitted at different nodes both
//! arrive everywhere (the later one held until the earlier fills the gap); a block carrying
//! pool transactions empties every pool as it propagates, and a reorg that disconnects it
//! puts them back, announced to a node that never had them. Seeded, on the virtual clock:
//! every wait is a condition with a simulated-time deadline.

use noded::sim::{sim_sender, sim_transfer, sim_transfers, NodeIndex, Sim, SimConfig, TraceKind};
use noded::time::LocalDuration;
use noded::types::Hash256;
use noded::wire::Command;

fn secs(s: u64) -> LocalDuration {
    LocalDuration::from_secs(s)
}

/// How often a waiting run checks its condition.
const STEP: LocalDuration = LocalDuration::from_millis(50);

/// Runs until `done` holds or `limit` passes; how long it took (ms), if it held.
fn wait_for(sim: &mut Sim, limit: LocalDuration, done: impl Fn(&Sim) -> bool) -> Option<u64> {
    let start = sim.now().local;
    loop {
        if done(sim) {
            return Some(sim.now().local.since(start).as_millis());
        }
        if sim.now().local.since(start) >= limit {
            return None;
        }
        sim.run_for(STEP);
    }
}

/// `n` nodes, 3 bootstrap nodes, `loss` on every link: the network forms for two minutes.
fn network(n: usize, seed: u64, loss: f64) -> Sim {
    let mut sim = SimConfig::new(n)
        .seed(seed)
        .bootstrap([0, 1, 2])
        .loss(loss)
        .build();
    sim.run_for(LocalDuration::from_mins(2));
    sim
}

fn all(sim: &Sim) -> Vec<NodeIndex> {
    (0..sim.len()).collect()
}

/// Whether every node in `nodes` holds every transaction of `txids` in its pool.
fn held_by(sim: &Sim, nodes: &[NodeIndex], txids: &[Hash256]) -> bool {
    nodes
        .iter()
        .all(|&i| txids.iter().all(|t| sim.mempool(i).contains(t)))
}

fn missing(sim: &Sim, txids: &[Hash256]) -> Vec<NodeIndex> {
    all(sim)
        .into_iter()
        .filter(|&i| !held_by(sim, &[i], txids))
        .collect()
}

/// The ms after `from_us` by which `fraction` of the nodes had `txid` (trace arrivals).
fn reach_ms(sim: &Sim, txid: &Hash256, from_us: u64, fraction: f64) -> u64 {
    let mut times: Vec<u64> = sim.trace().tx_first_arrivals(txid).into_values().collect();
    times.sort_unstable();
    let k = ((fraction * sim.len() as f64).ceil() as usize).clamp(1, times.len());
    (times[k - 1] - from_us) / 1_000
}

/// Prints when 50 %, 90 % and 100 % of the nodes had `txid`.
fn print_reach(label: &str, sim: &Sim, txid: &Hash256, from_us: u64) {
    let [half, most, all] = [0.5, 0.9, 1.0].map(|f| reach_ms(sim, txid, from_us, f));
    println!("{label}: 50% in {half} ms, 90% in {most} ms, 100% in {all} ms");
}

/// One transaction submitted at node 7 of an `n`-node network with `loss`; runs until every
/// pool holds it (or `limit`). Returns the network, the txid and when it was submitted (µs).
fn relay_one(n: usize, seed: u64, loss: f64, limit: LocalDuration) -> (Sim, Hash256, u64) {
    let mut sim = network(n, seed, loss);
    let start = sim.now_us();
    let txid = sim
        .submit_tx(7, sim_transfer(1, 0))
        .expect("an empty pool admits it");
    if wait_for(&mut sim, limit, |s| held_by(s, &all(s), &[txid])).is_none() {
        panic!(
            "seed {seed} loss {loss}: not in every pool after {limit:?}; missing at {:?}",
            missing(&sim, &[txid])
        );
    }
    (sim, txid, start)
}

// ----- a. 50 nodes -----------------------------------------------------------------------

#[test]
fn a_transaction_submitted_at_one_node_reaches_all_fifty_pools() {
    let (sim, txid, start) = relay_one(50, 3, 0.0, secs(30));
    let arrivals = sim.trace().tx_first_arrivals(&txid);
    assert_eq!(arrivals.len(), 50, "the trace records every node's arrival");
    assert_eq!(
        sim.trace().tx_arrival(&txid, 7),
        Some(start),
        "node 7 at submission"
    );
    for i in all(&sim) {
        assert!(sim.mempool(i).is_ready(&txid), "node {i}");
        assert_eq!(sim.mempool(i).len(), 1, "node {i}");
        let tx = sim.mempool(i).get(&txid).expect("held");
        assert_eq!(tx.txid(), txid);
    }
    // Fetched once per node: one TX each (but the submitter's), no NOTFOUND.
    assert_eq!(sim.trace().delivered_of(Command::Tx), 49);
    assert_eq!(sim.trace().delivered_of(Command::NotFound), 0);
    print_reach("50 nodes", &sim, &txid, start);
}

// ----- b. 10 % loss ----------------------------------------------------------------------

#[test]
fn a_transaction_reaches_all_fifty_pools_with_ten_percent_loss_on_every_link() {
    let (sim, txid, start) = relay_one(50, 4, 0.1, secs(60));
    assert!(sim.stats().retransmitted > 0, "loss was modelled");
    assert_eq!(sim.trace().tx_first_arrivals(&txid).len(), 50);
    print_reach("50 nodes, 10% loss", &sim, &txid, start);
}

// ----- c. consecutive nonces at different nodes --------------------------------------------

#[test]
fn a_senders_consecutive_nonces_submitted_at_different_nodes_reach_every_pool() {
    let mut sim = network(50, 5, 0.0);
    let sender = 42;
    // Nonce 0 is mined first, so the pair is 1 and 2: the pools follow the chain's nonce.
    let first = sim.submit_tx(0, sim_transfer(sender, 0)).unwrap();
    wait_for(&mut sim, secs(30), |s| held_by(s, &all(s), &[first])).expect("nonce 0 relayed");
    let block = sim.mine_pool(0);
    wait_for(&mut sim, secs(30), |s| {
        all(s)
            .iter()
            .all(|&i| s.tip(i) == block && s.mempool(i).is_empty())
    })
    .expect("the block empties every pool");
    assert_eq!(sim.mempool(9).chain_nonce(&sim_sender(sender)), 1);

    // Nonce 2 first, at another node: held as future there, not announced until 1 arrives.
    let n2 = sim.submit_tx(40, sim_transfer(sender, 2)).unwrap();
    assert!(sim.mempool(40).contains(&n2) && !sim.mempool(40).is_ready(&n2));
    assert_eq!(sim.mempool(40).future_len(), 1);
    sim.run_for(secs(2));
    assert!(
        all(&sim)
            .iter()
            .all(|&i| i == 40 || !sim.mempool(i).contains(&n2)),
        "a future transaction is not announced"
    );
    let n1 = sim.submit_tx(3, sim_transfer(sender, 1)).unwrap();
    let took = wait_for(&mut sim, secs(30), |s| held_by(s, &all(s), &[n1, n2]))
        .unwrap_or_else(|| panic!("missing at {:?}", missing(&sim, &[n1, n2])));
    for i in all(&sim) {
        let pool = sim.mempool(i);
        assert!(pool.is_ready(&n1) && pool.is_ready(&n2), "node {i}");
        assert_eq!(pool.next_nonce(&sim_sender(sender)), 3, "node {i}");
    }
    // Node 40 promoted its future when nonce 1 arrived.
    assert!(
        sim.trace()
            .count(|e| e.node == 40 && e.kind == TraceKind::TxPromoted)
            == 1
    );
    println!("nonces 1 and 2 in every pool {took} ms after nonce 1 was submitted");
}

// ----- d. a block, then a reorg ------------------------------------------------------------

#[test]
fn a_mined_block_empties_every_pool_and_a_reorg_that_disconnects_it_returns_them() {
    let mut sim = network(30, 6, 0.0);
    let island = 29;
    let everyone = all(&sim);
    let rest: Vec<NodeIndex> = everyone.iter().copied().filter(|&i| i != island).collect();

    // 20 transactions from 4 senders, submitted round-robin at different nodes (a later
    // nonce can reach a node before the earlier one: held there until it comes).
    let txs = sim_transfers(100, 4, 20);
    let txids: Vec<Hash256> = txs
        .iter()
        .enumerate()
        .map(|(k, tx)| sim.submit_tx((k * 7) % 30, tx.clone()).unwrap())
        .collect();
    wait_for(&mut sim, secs(30), |s| held_by(s, &everyone, &txids))
        .unwrap_or_else(|| panic!("missing at {:?}", missing(&sim, &txids)));

    // The island is cut off; node 0 mines the pool, and one transaction nobody relayed.
    sim.partition(&[vec![island]]);
    let unrelayed = sim_transfer(999, 0);
    let unrelayed_id = unrelayed.txid();
    let mut block_txs: Vec<_> = sim.mempool(0).ready().map(|(_, tx)| tx.clone()).collect();
    assert_eq!(block_txs.len(), 20);
    block_txs.push(unrelayed);
    let parent = sim.tip(0);
    let block = sim.mine_with(0, block_txs);
    wait_for(&mut sim, secs(30), |s| {
        rest.iter()
            .all(|&i| s.tip(i) == block && s.mempool(i).is_empty())
    })
    .unwrap_or_else(|| {
        panic!(
            "pools not emptied: {:?}",
            rest.iter()
                .map(|&i| sim.mempool(i).len())
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(sim.mempool(island).len(), 20, "the island still holds them");

    // The island mines a heavier branch on the parent; after the heal everyone reorgs to it.
    assert_eq!(sim.tip(island), parent);
    sim.mine(island);
    let heavier = sim.mine(island);
    sim.heal();
    let mut all_txids = txids.clone();
    all_txids.push(unrelayed_id);
    let took = wait_for(&mut sim, LocalDuration::from_mins(5), |s| {
        everyone.iter().all(|&i| s.tip(i) == heavier) && held_by(s, &everyone, &all_txids)
    })
    .unwrap_or_else(|| {
        panic!(
            "after the reorg: tips {:?}, missing at {:?}",
            everyone
                .iter()
                .map(|&i| sim.tip(i) == heavier)
                .collect::<Vec<_>>(),
            missing(&sim, &all_txids)
        )
    });
    for &i in &everyone {
        assert_eq!(sim.mempool(i).len(), 21, "node {i}");
        assert!(
            all_txids.iter().all(|t| sim.mempool(i).is_ready(t)),
            "node {i}"
        );
    }
    // The island never had the disconnected block: the unrelayed transaction reached it
    // only because the nodes that took it back announced it.
    let island_got = sim.trace().tx_arrival(&unrelayed_id, island);
    assert!(island_got.is_some());
    assert!(sim
        .trace()
        .first(|e| e.node == island && e.kind == TraceKind::Delivered(Command::Tx))
        .is_some());
    println!("reorg: every pool holds the 21 transactions again {took} ms after the heal");
}

// ----- determinism -------------------------------------------------------------------------

fn twenty_nodes_with_traffic(seed: u64) -> Sim {
    let mut sim = network(20, seed, 0.05);
    let txs = sim_transfers(500, 3, 30);
    for (k, tx) in txs.into_iter().enumerate() {
        sim.submit_tx(k % 20, tx).unwrap();
        sim.run_for(LocalDuration::from_millis(37));
    }
    sim.run_for(secs(10));
    sim.mine_pool(5);
    sim.run_for(secs(10));
    sim
}

#[test]
fn transaction_relay_replays_bit_for_bit_from_its_seed() {
    let a = twenty_nodes_with_traffic(31);
    let b = twenty_nodes_with_traffic(31);
    assert!(a.trace().delivered_of(Command::Tx) > 0);
    assert!(
        a.trace()
            .count(|e| matches!(e.kind, TraceKind::TxAdmitted { .. }))
            >= 600
    );
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(a.stats(), b.stats());
    for i in all(&a) {
        assert!(a.mempool(i).is_empty(), "node {i}: the block took them all");
        assert_eq!(a.tip(i), b.tip(i));
    }
    let c = twenty_nodes_with_traffic(32);
    assert_ne!(a.trace_hash(), c.trace_hash());
}
