//! The network simulator (`noded::sim`) with real protocol cores: replay from a seed, the
//! latency, bandwidth, partition and churn models, each seen through what the cores did.

use noded::protocol::Input;
use noded::sim::{Addressing, NodeIndex, RegionTable, Sim, SimConfig, TraceKind};
use noded::time::LocalDuration;
use noded::wire::Command;
use std::collections::BTreeSet;
use std::net::SocketAddr;

fn secs(s: u64) -> LocalDuration {
    LocalDuration::from_secs(s)
}

fn mins(m: u64) -> LocalDuration {
    LocalDuration::from_mins(m)
}

/// The nodes whose cores list a completed handshake with `node`'s core.
fn ready_peers(sim: &Sim, node: NodeIndex) -> BTreeSet<NodeIndex> {
    let ids: Vec<_> = (0..sim.len()).map(|i| sim.node_id(i)).collect();
    sim.core(node)
        .peers(sim.now())
        .into_iter()
        .filter(|p| p.handshake_complete)
        .filter_map(|p| ids.iter().position(|id| *id == p.nodeid))
        .collect()
}

fn thirty_nodes(seed: u64) -> Sim {
    // A little loss too, so retransmission draws are part of what must replay.
    let mut sim = SimConfig::new(30)
        .seed(seed)
        .bootstrap([0, 1, 2])
        .loss(0.01)
        .build();
    sim.run_for(mins(10));
    sim
}

#[test]
fn a_30_node_network_replays_bit_for_bit_from_its_seed() {
    let a = thirty_nodes(42);
    let b = thirty_nodes(42);
    assert!(
        a.trace().delivered() > 1_000,
        "{} delivered",
        a.trace().delivered()
    );
    assert!(a.stats().retransmitted > 0, "loss was exercised");
    assert_eq!(a.trace_hash(), b.trace_hash());
    assert_eq!(a.trace().events(), b.trace().events());
    assert_eq!(a.stats(), b.stats());
    let c = thirty_nodes(43);
    assert_ne!(a.trace_hash(), c.trace_hash());
    // The network formed: every node has peers.
    for i in 0..30 {
        assert!(ready_peers(&a, i).len() >= 3, "node {i}");
    }
}

/// Two nodes in pinned regions, no jitter: `from` dials `to`.
fn pair(from_region: &str, to_region: &str, jitter: f64, upload: u64) -> Sim {
    let t = RegionTable::builtin();
    let mut sim = SimConfig::new(2)
        .seed(5)
        .jitter(jitter)
        .upload_bandwidth(upload)
        .region(0, t.by_name(from_region).unwrap())
        .region(1, t.by_name(to_region).unwrap())
        .build();
    sim.add_node(0, 1).unwrap();
    sim
}

/// When node 0's connection came up and when its VERSION, sent right then, reached node 1.
fn version_flight(sim: &Sim) -> (u64, u64, usize) {
    let up = sim
        .trace()
        .first(|e| e.node == 0 && e.kind == TraceKind::Connected { inbound: false })
        .expect("node 0 connected")
        .at;
    let version = sim
        .trace()
        .first_delivery(Command::Version, 1)
        .expect("node 1 got a VERSION");
    (up, version.at, version.size)
}

#[test]
fn a_message_takes_the_tables_one_way_latency_plus_its_transmission_time() {
    let table = RegionTable::builtin();
    for (a, b) in [
        ("Frankfurt", "Sydney"),
        ("Frankfurt", "London"),
        ("Tokyo", "Osaka"),
    ] {
        let (ra, rb) = (table.by_name(a).unwrap(), table.by_name(b).unwrap());
        let one_way = table.one_way_us(ra, rb);
        // Exact without jitter: 12.5 MB/s puts a VERSION on the wire in a few µs.
        let mut sim = pair(a, b, 0.0, 12_500_000);
        sim.run_for(secs(5));
        let (sent, arrived, size) = version_flight(&sim);
        let transmit = (size as u64 * 1_000_000).div_ceil(12_500_000);
        assert_eq!(arrived - sent, one_way + transmit, "{a} to {b}");

        // With ±10 % jitter, within the band.
        let mut sim = pair(a, b, 0.1, 12_500_000);
        sim.run_for(secs(5));
        let (sent, arrived, _) = version_flight(&sim);
        let took = arrived - sent;
        assert!(
            took >= one_way * 9 / 10 && took <= one_way * 11 / 10 + transmit + 1,
            "{a} to {b}: {took} µs, table one way {one_way} µs"
        );
        // The cores measure the round trip with their pings.
        sim.run_for(mins(3));
        let rtt = table.rtt_ms(ra, rb) as u64;
        let ping = sim.core(0).peers(sim.now())[0].ping_ms.expect("pinged");
        assert!(
            ping >= rtt * 9 / 10 - 1 && ping <= rtt * 11 / 10 + 1,
            "{a} to {b}: ping {ping} ms, table {rtt} ms"
        );
    }
}

#[test]
fn a_big_message_occupies_the_uplink_for_its_size_over_the_bandwidth() {
    // 100 kB/s: node 1's answer to GETADDR (about 34 bytes per address) takes a while.
    const UPLOAD: u64 = 100_000;
    let mut sim = pair("Frankfurt", "London", 0.0, UPLOAD);
    let addrs: Vec<SocketAddr> = (0..1_000u32)
        .map(|i| {
            format!("{}.{}.7.1:8333", 30 + i / 200, i % 200)
                .parse()
                .unwrap()
        })
        .collect();
    sim.input(
        1,
        Input::Discovered {
            addrs,
            source: "9.9.9.9:53".parse().unwrap(),
        },
    );
    sim.run_for(secs(30));
    let trace = sim.trace();
    let asked = trace
        .first_delivery(Command::GetAddr, 1)
        .expect("node 0 asks its outbound peer for addresses");
    let answer = trace
        .first(|e| e.node == 0 && e.kind == TraceKind::Delivered(Command::Addr) && e.size > 5_000)
        .expect("a large ADDR answer");
    let one_way = 6_500; // Frankfurt-London: 13 ms round trip.
    let transmit = (answer.size as u64 * 1_000_000).div_ceil(UPLOAD);
    let took = answer.at - asked.at;
    // Small messages queued before it on node 1's uplink (a PING at most) add a few ms.
    assert!(
        took >= transmit + one_way && took <= transmit + one_way + 5_000,
        "{} bytes took {took} µs; transmission alone {transmit} µs",
        answer.size
    );
    assert!(
        transmit > 50_000,
        "the answer is big: {} bytes",
        answer.size
    );

    // The same exchange with unlimited bandwidth takes only the latency.
    let mut fast = pair("Frankfurt", "London", 0.0, u64::MAX);
    let addrs: Vec<SocketAddr> = (0..1_000u32)
        .map(|i| {
            format!("{}.{}.7.1:8333", 30 + i / 200, i % 200)
                .parse()
                .unwrap()
        })
        .collect();
    fast.input(
        1,
        Input::Discovered {
            addrs,
            source: "9.9.9.9:53".parse().unwrap(),
        },
    );
    fast.run_for(secs(30));
    let asked = fast.trace().first_delivery(Command::GetAddr, 1).unwrap().at;
    let answered = fast
        .trace()
        .first(|e| e.node == 0 && e.kind == TraceKind::Delivered(Command::Addr) && e.size > 5_000)
        .unwrap()
        .at;
    assert_eq!(answered - asked, one_way);
}

#[test]
fn upload_bandwidth_drawn_from_a_range_is_seeded_per_node_and_moves_no_other_draw() {
    const MIN: u64 = 1_250_000;
    const MAX: u64 = 12_500_000;
    let build = |seed: u64, range: bool| {
        let config = SimConfig::new(200)
            .seed(seed)
            .node_upload_bandwidth(3, 1_000);
        let config = if range {
            config.upload_bandwidth_range(MIN, MAX)
        } else {
            config
        };
        config.build()
    };
    // The uplink time of `MAX` bytes is one second per `MAX / rate`.
    let rates = |sim: &Sim| -> Vec<u64> {
        (0..sim.len())
            .map(|i| MAX * 1_000_000 / sim.network().transmit_us(i, MAX as usize))
            .collect()
    };
    let a = rates(&build(1, true));
    assert_eq!(a, rates(&build(1, true)), "the same seed draws the same");
    assert_ne!(a, rates(&build(2, true)));
    assert_eq!(a[3], 1_000, "a node set on its own keeps its bandwidth");
    let drawn: Vec<u64> = a.iter().copied().filter(|&r| r != 1_000).collect();
    assert_eq!(drawn.len(), 199);
    assert!(
        drawn.iter().all(|r| (MIN - 1..=MAX).contains(r)),
        "{drawn:?}"
    );
    let slow = drawn.iter().filter(|&&r| r < (MIN + MAX) / 2).count();
    assert!(
        (60..140).contains(&slow),
        "spread over the range: {slow} of 199 in the lower half"
    );
    // Regions (and every later draw) are as without the range.
    let (with, without) = (build(1, true), build(1, false));
    assert!((0..200).all(|i| with.region(i) == without.region(i)));
}

/// Whether any connection links a node of `a` with one not in `a`.
fn links_across(sim: &Sim, a: &BTreeSet<NodeIndex>) -> usize {
    a.iter()
        .map(|&i| {
            ready_peers(sim, i)
                .iter()
                .filter(|p| !a.contains(p))
                .count()
        })
        .sum()
}

#[test]
fn a_partition_cuts_the_links_across_and_healing_lets_them_form_again() {
    let mut sim = SimConfig::new(24).seed(9).bootstrap([0, 10, 20]).build();
    sim.run_for(mins(5));
    // Six nodes, too few to fill their outbound slots among themselves.
    let small: BTreeSet<NodeIndex> = (0..6).collect();
    assert!(links_across(&sim, &small) > 0, "connected across at first");

    sim.partition(&[small.iter().copied().collect()]);
    sim.run_for(secs(1));
    assert_eq!(links_across(&sim, &small), 0, "the partition cut them");
    for i in 0..24 {
        assert!(
            sim.connections(i)
                .iter()
                .all(|(p, _)| small.contains(p) == small.contains(&i)),
            "node {i} still has a link across"
        );
    }
    sim.run_for(mins(2));
    assert_eq!(links_across(&sim, &small), 0, "no dial gets across");
    for &i in &small {
        assert!(
            !ready_peers(&sim, i).is_empty(),
            "node {i} kept its own side"
        );
    }

    sim.heal();
    sim.run_for(mins(10));
    for &i in &small {
        let across = ready_peers(&sim, i)
            .iter()
            .filter(|p| !small.contains(p))
            .count();
        assert!(across > 0, "node {i} reconnected across after healing");
    }
}

#[test]
fn a_stopped_node_is_noticed_by_its_peers_and_reconnects_after_a_restart() {
    // Thirty nodes: enough pairs (435) for everyone's 8 outbound peers (240 connections).
    let mut sim = SimConfig::new(30).seed(3).bootstrap([0, 1, 2]).build();
    sim.run_for(mins(5));
    let node = 7;
    let peers = ready_peers(&sim, node);
    assert!(peers.len() >= 3, "{peers:?}");
    let book = sim.core(node).addrman().len();

    sim.stop(node);
    // Its FINs take at most the longest one-way latency of the table (182 ms, +10 % jitter).
    sim.run_for(secs(1));
    for &p in &peers {
        assert!(
            !ready_peers(&sim, p).contains(&node),
            "node {p} still lists the stopped node"
        );
        assert!(
            sim.trace()
                .first(|e| e.node == p && e.peer == Some(node) && e.kind == TraceKind::Disconnected)
                .is_some(),
            "node {p} was told"
        );
    }
    // Dials to it are refused while it is down.
    sim.run_for(mins(2));
    assert!((0..30).all(|i| !ready_peers(&sim, i).contains(&node)));

    sim.restart(node);
    assert_eq!(
        sim.core(node).addrman().len(),
        book,
        "the address book survives the restart"
    );
    sim.run_for(mins(3));
    let again = ready_peers(&sim, node);
    assert!(again.len() >= 3, "reconnected: {again:?}");
    assert!(sim.core(node).outbound_count() >= 3);
}

#[test]
fn each_side_sees_the_address_a_real_connection_shows_it() {
    let mut sim = pair("Dallas", "Toronto", 0.1, 12_500_000);
    sim.run_for(secs(5));
    let dialler = sim.core(0).peers(sim.now());
    let listener = sim.core(1).peers(sim.now());
    assert_eq!(dialler.len(), 1);
    assert_eq!(dialler[0].addr, sim.addr(1), "the dialled listen address");
    assert_eq!(listener[0].addr.ip(), sim.addr(0).ip());
    assert!(listener[0].addr.port() >= 32_768, "an ephemeral port");
    // Node 0 advertised where it listens, and node 1 believed it.
    assert!(sim.core(1).addrman().get(&sim.addr(0)).is_some());
    assert!(sim.core(1).addrman().get(&sim.addr(1)).is_none());
}

#[test]
fn addressing_plans() {
    // Node addresses are those of a local test network.
    let sim = SimConfig::new(3).addressing(Addressing::Loopback).build();
    assert_eq!(sim.addr(2), "127.0.0.1:20002".parse().unwrap());
    assert!(sim.core(0).config().allow_local_addrs);
    let public = SimConfig::new(300).build();
    assert_eq!(public.addr(257), "21.1.0.1:8333".parse().unwrap());
    assert!(!public.core(0).config().allow_local_addrs);
}

#[test]
fn nodes_sharing_a_loopback_ip_share_its_ephemeral_ports() {
    let mut sim = SimConfig::new(3).addressing(Addressing::Loopback).build();
    sim.add_node(1, 0).unwrap();
    sim.add_node(2, 0).unwrap();
    sim.run_for(secs(5));
    let from: BTreeSet<SocketAddr> = sim
        .core(0)
        .peers(sim.now())
        .iter()
        .map(|p| p.addr)
        .collect();
    assert_eq!(
        from.len(),
        2,
        "two connections, two source addresses: {from:?}"
    );
}

/// A crowd starting at once from three bootstrap nodes: each newcomer asks a bootstrap node
/// for addresses over one short connection and fills its outbound slots from what it learned.
/// When bootstrap nodes were ordinary address-book entries, every newcomer knew only them and
/// dialled them all: they evicted for each other in a storm of connections (115 per node on
/// the 1,000-node benchmark) and the network took minutes to form.
#[test]
fn a_crowd_starting_together_forms_without_a_connection_storm_at_the_bootstrap_nodes() {
    const NODES: usize = 300;
    const OUTBOUND: usize = 8;
    let mut sim = SimConfig::new(NODES)
        .seed(11)
        .outbound(OUTBOUND)
        .bootstrap([0, 1, 2])
        .keep_trace(false)
        .build();
    let filled = |sim: &Sim| {
        (0..sim.len())
            .filter(|&i| sim.core(i).outbound_full_relay_count() >= OUTBOUND)
            .count()
    };
    // The old storm took 30 s to form this network.
    let limit = LocalDuration::from_secs(15);
    while filled(&sim) < NODES && sim.now().local.since(Default::default()) < limit {
        sim.run_for(secs(1));
    }
    let formed_ms = sim.now().local.as_millis();
    let connections = sim.stats().connections;
    println!(
        "{NODES} nodes: {} with {OUTBOUND} outbound after {formed_ms} ms, {connections} connections made",
        filled(&sim)
    );
    assert_eq!(filled(&sim), NODES, "formed within {limit:?}");
    // The outbound slots, a few address fetches and feelers, some duplicates: nowhere near a
    // storm.
    assert!(
        connections < (NODES * (OUTBOUND + 6)) as u64,
        "{connections} connections"
    );
}
