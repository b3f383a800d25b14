//! Simulator benchmark: networks of 100 and 1,000 protocol cores on the region latency
//! matrix, 8 outbound peers each, starting from 3 seed nodes. Prints the simulated time until
//! every node has its 8 outbound full-relay peers, the wall time taken and the delivered
//! messages per wall second; then runs the 1,000-node network to 30 simulated minutes.
//! Targets (issue 10): the 30 minutes in under 30 s of wall time on one core, and at least
//! 500,000 delivered messages per wall second.
//!
//! Run with `cargo bench --bench sim`. Single-threaded: the simulator runs on one core.

use noded::sim::{Sim, SimConfig};
use noded::time::LocalDuration;
use std::time::Instant;

/// Outbound full-relay peers each node is to reach.
const OUTBOUND: usize = 8;
/// The seed every run uses, so the figures are of the same simulated history.
const SEED: u64 = 1;
/// How often the benchmark checks whether every node has its outbound peers.
const CHECK_EVERY: LocalDuration = LocalDuration::from_secs(1);
/// The longest simulated run.
const RUN: LocalDuration = LocalDuration::from_mins(30);

fn build(nodes: usize) -> Sim {
    SimConfig::new(nodes)
        .seed(SEED)
        .outbound(OUTBOUND)
        .bootstrap([0, 1, 2])
        .keep_trace(false)
        .build()
}

/// Nodes with all their outbound full-relay peers (a count, not the getpeerinfo list: the
/// figures are of the simulator, not of building snapshots).
fn filled(sim: &Sim) -> usize {
    (0..sim.len())
        .filter(|&i| sim.core(i).outbound_full_relay_count() >= OUTBOUND)
        .count()
}

struct Figures {
    sim_secs: f64,
    wall_secs: f64,
    delivered: u64,
    events: u64,
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label:<44} sim {:>7.1} s  wall {:>6.2} s  delivered {:>9}  {:>9.0} msg/s  {:>9.0} events/s",
        f.sim_secs,
        f.wall_secs,
        f.delivered,
        f.delivered as f64 / f.wall_secs,
        f.events as f64 / f.wall_secs,
    );
}

/// `filled` from the getpeerinfo lists, to check the count against once a run.
fn filled_from_snapshots(sim: &Sim) -> usize {
    let now = sim.now();
    (0..sim.len())
        .filter(|&i| {
            let peers = sim.core(i).peers(now);
            let full_relay = peers.iter();
            full_relay
                .filter(|p| p.connection_type == "outbound-full-relay")
                .count()
                >= OUTBOUND
        })
        .count()
}

/// Runs until every node has its outbound peers (or `RUN` passes); the figures of that run.
fn until_filled(sim: &mut Sim, started: Instant) -> (Figures, bool) {
    let limit = RUN.as_millis();
    loop {
        sim.run_for(CHECK_EVERY);
        let done = filled(sim) == sim.len();
        if done || sim.now().local.as_millis() >= limit {
            let stats = sim.stats();
            let figures = Figures {
                sim_secs: sim.now().local.as_millis() as f64 / 1_000.0,
                wall_secs: started.elapsed().as_secs_f64(),
                delivered: stats.delivered,
                events: stats.events,
            };
            return (figures, done);
        }
    }
}

fn main() {
    for nodes in [100, 1_000] {
        let started = Instant::now();
        let mut sim = build(nodes);
        let (f, done) = until_filled(&mut sim, started);
        assert_eq!(filled(&sim), filled_from_snapshots(&sim));
        let label = if done {
            format!("{nodes} nodes: all have {OUTBOUND} outbound")
        } else {
            format!(
                "{nodes} nodes: {} of {nodes} have {OUTBOUND} outbound by 30 min",
                filled(&sim)
            )
        };
        print(&label, &f);
        if nodes == 1_000 {
            let until = noded::time::LocalTime::from_millis(RUN.as_millis());
            sim.run_until(until);
            let stats = sim.stats();
            let f = Figures {
                sim_secs: RUN.as_secs_f64(),
                wall_secs: started.elapsed().as_secs_f64(),
                delivered: stats.delivered,
                events: stats.events,
            };
            print(&format!("{nodes} nodes: 30 simulated minutes"), &f);
            println!(
                "  {} connections made, {} dials, {} messages dropped with their connection, {} of {nodes} nodes with {OUTBOUND} outbound, trace {}",
                stats.connections,
                stats.dials,
                stats.dropped,
                filled(&sim),
                sim.trace_hash()
            );
        }
    }
}
