//! The protocol core under wall-clock jumps, driven by a manual clock: its timers run on
//! monotonic time, so setting the system clock an hour forward or back neither strands an
//! added peer nor switches off the handshake, ping and inactivity timeouts.

use noded::config::PeerSpec;
use noded::encoding::BoundedString;
use noded::protocol::addrman::AddrMan;
use noded::protocol::bans::BanList;
use noded::protocol::{Command, Core, CoreConfig, DisconnectReason, Input, Output};
use noded::time::{Clock, LocalDuration, LocalTime, ManualClock, Now};
use noded::types::NodeId;
use noded::wire::{Message, NetAddress, Version, PROTOCOL_VERSION};
use std::net::SocketAddr;

const HOUR_MS: i64 = 3_600_000;

fn node_id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn clock() -> ManualClock {
    ManualClock::new(Now {
        local: LocalTime::from_millis(10_000),
        unix_ms: 1_800_000_000_000,
    })
}

fn core() -> Core {
    let mut cfg = CoreConfig::new(node_id(0));
    cfg.connect_only = true; // only the added peer is dialled
    Core::new(cfg, AddrMan::new([1; 32]), BanList::default())
}

fn feed(core: &mut Core, clock: &ManualClock, input: Input) -> Vec<Output> {
    core.handle(clock.now(), input).unwrap();
    core.drain_outputs()
}

/// Ticks once a second for `secs` seconds; returns every output.
fn run(core: &mut Core, clock: &ManualClock, secs: u64) -> Vec<Output> {
    let mut all = Vec::new();
    for _ in 0..secs {
        clock.advance(LocalDuration::from_secs(1));
        all.extend(feed(core, clock, Input::Tick));
    }
    all
}

fn dials(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Dial { dial, .. } => Some(*dial),
            _ => None,
        })
        .collect()
}

fn disconnects(out: &[Output]) -> Vec<(u64, DisconnectReason)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Disconnect(p, r) => Some((*p, r.clone())),
            _ => None,
        })
        .collect()
}

fn version_from(n: u8) -> Message {
    let any: SocketAddr = "127.0.0.1:1".parse().unwrap();
    Message::Version(Box::new(Version {
        protocol_version: PROTOCOL_VERSION,
        services: 1,
        timestamp: 0,
        receiver: NetAddress::new(any, 0),
        sender: NetAddress::new(any, 0),
        nonce: 1_000 + n as u64,
        user_agent: BoundedString::truncating("/t/"),
        best_height: 0,
        node_id: node_id(n),
        relay: true,
    }))
}

/// An inbound peer `peer` (node `n`) that completes its handshake.
fn ready_inbound(core: &mut Core, clock: &ManualClock, peer: u64, n: u8) {
    let addr: SocketAddr = format!("10.0.0.{n}:5000").parse().unwrap();
    feed(
        core,
        clock,
        Input::Connected {
            peer,
            addr,
            dial: None,
            node_id: node_id(n),
        },
    );
    feed(
        core,
        clock,
        Input::Received {
            peer,
            message: version_from(n),
        },
    );
    let out = feed(
        core,
        clock,
        Input::Received {
            peer,
            message: Message::Verack,
        },
    );
    assert!(disconnects(&out).is_empty(), "{out:?}");
}

#[test]
fn a_forward_jump_while_dialling_an_added_peer_does_not_strand_it() {
    let clock = clock();
    let mut c = core();
    let spec = PeerSpec::parse("10.0.0.9:8333").unwrap();
    let out = feed(
        &mut c,
        &clock,
        Input::Command(Command::AddNode {
            spec,
            learned: None,
        }),
    );
    let first = dials(&out);
    assert_eq!(first.len(), 1);
    // The system clock moves an hour forward while the dial is under way, and the dial
    // never reports back (the peer is down).
    clock.jump_wall(HOUR_MS);
    let out = run(&mut c, &clock, 59);
    assert!(dials(&out).is_empty(), "the dial is still within its time");
    let out = run(&mut c, &clock, 5);
    let second = dials(&out);
    assert_eq!(
        second.len(),
        1,
        "given up after its monotonic deadline and dialled again"
    );
    assert_ne!(second[0], first[0]);
    // The peer is back: the new dial connects and the handshake completes.
    let peer = 40;
    let addr: SocketAddr = "10.0.0.9:8333".parse().unwrap();
    let out = feed(
        &mut c,
        &clock,
        Input::Connected {
            peer,
            addr,
            dial: Some(second[0]),
            node_id: node_id(9),
        },
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Send(40, Message::Version(_)))));
    feed(
        &mut c,
        &clock,
        Input::Received {
            peer,
            message: version_from(9),
        },
    );
    feed(
        &mut c,
        &clock,
        Input::Received {
            peer,
            message: Message::Verack,
        },
    );
    let added = c.added_nodes(clock.now());
    assert!(added[0].connected, "{added:?}");
    assert_eq!(added[0].peer, Some(peer));
    assert!(c.peers(clock.now())[0].handshake_complete);
}

#[test]
fn a_backward_jump_does_not_switch_off_the_handshake_timeout() {
    let clock = clock();
    let mut c = core();
    let addr: SocketAddr = "10.0.0.2:5000".parse().unwrap();
    feed(
        &mut c,
        &clock,
        Input::Connected {
            peer: 1,
            addr,
            dial: None,
            node_id: node_id(2),
        },
    );
    clock.jump_wall(-HOUR_MS);
    let out = run(&mut c, &clock, 59);
    assert!(disconnects(&out).is_empty());
    let out = run(&mut c, &clock, 1);
    assert_eq!(
        disconnects(&out),
        vec![(1, DisconnectReason::HandshakeTimeout)]
    );
}

#[test]
fn a_backward_jump_does_not_switch_off_the_ping_timeout() {
    let clock = clock();
    let mut cfg = CoreConfig::new(node_id(0));
    cfg.connect_only = true;
    cfg.inactivity_timeout_ms = u64::MAX / 2; // isolate the ping rule
    let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
    ready_inbound(&mut c, &clock, 1, 2);
    // The ping goes out after two minutes; the peer never answers.
    let out = run(&mut c, &clock, 120);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Send(1, Message::Ping(_)))));
    clock.jump_wall(-HOUR_MS);
    let out = run(&mut c, &clock, 20 * 60 - 1);
    assert!(disconnects(&out).is_empty());
    let out = run(&mut c, &clock, 1);
    assert_eq!(disconnects(&out), vec![(1, DisconnectReason::PingTimeout)]);
}

#[test]
fn a_backward_jump_does_not_switch_off_the_inactivity_timeout() {
    let clock = clock();
    let mut cfg = CoreConfig::new(node_id(0));
    cfg.connect_only = true;
    cfg.ping_interval_ms = u64::MAX / 2; // isolate the inactivity rule
    let mut c = Core::new(cfg, AddrMan::new([1; 32]), BanList::default());
    ready_inbound(&mut c, &clock, 1, 2);
    clock.jump_wall(-HOUR_MS);
    let out = run(&mut c, &clock, 20 * 60 - 1);
    assert!(disconnects(&out).is_empty());
    let out = run(&mut c, &clock, 1);
    assert_eq!(disconnects(&out), vec![(1, DisconnectReason::Inactivity)]);
}

#[test]
fn bans_expire_by_the_wall_clock_they_are_stored_in() {
    // Bans outlive restarts, so they are kept in wall time: a forward jump past the expiry
    // lifts them, monotonic time alone does not.
    let clock = clock();
    let mut c = core();
    let target = noded::protocol::bans::BanTarget::Ip("10.0.0.7".parse().unwrap());
    let ban = Command::Ban {
        target,
        duration_ms: Some(60_000),
        reason: "test".into(),
    };
    feed(&mut c, &clock, Input::Command(ban));
    let from: SocketAddr = "10.0.0.7:1".parse().unwrap();
    assert!(c.admit_inbound(clock.now(), from).is_err());
    clock.jump_wall(HOUR_MS);
    assert!(c.admit_inbound(clock.now(), from).is_ok());
}
