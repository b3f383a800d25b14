//! Defects a stranger or an operator could hit from outside, each reproduced against a real
//! `noded` on 127.0.0.1 (other loopback addresses stand in for other hosts).

mod common;
#[path = "common/peer.rs"]
mod peer;

use common::*;
use noded::params::REGTEST;
use noded::wire::Message;
use peer::TestPeer;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A real TLS ClientHello record, as a client of ours sends it: captured from a client talking
/// to a listener that never answers.
async fn capture_client_hello() -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(async move {
        let _ = TestPeer::connect(addr, REGTEST.magic).await;
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], 22, "a TLS handshake record");
    let len = u16::from_be_bytes([head[3], head[4]]) as usize;
    let mut record = head.to_vec();
    record.resize(5 + len, 0);
    s.read_exact(&mut record[5..]).await.unwrap();
    client.abort();
    record
}

/// Connects to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Defect 1: a connection took a TLS slot when its ClientHello arrived and kept it for up to
/// 10 s; 64 replayed ClientHellos followed by silence held every slot and the honest peer's
/// handshake waited (or failed). Now the rest of the handshake has a short deadline, no slot
/// is held while waiting on a client, and a full table drops its oldest pending connection.
#[test]
fn half_open_handshakes_cannot_starve_an_honest_peer() {
    let node = TestNode::start(&[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], node.p2p_addr().port()));
    let rt = runtime();
    rt.block_on(async {
        let hello = capture_client_hello().await;
        // 64 connections from eight other /16s (8 addresses each), each replaying the hello.
        let mut attackers = Vec::new();
        for range in 1..=8u8 {
            for host in 1..=8u8 {
                let from = IpAddr::from([127, range, 0, host]);
                let mut s = connect_from(from, addr).await;
                s.write_all(&hello).await.unwrap();
                attackers.push(s);
            }
        }
        // Wait until the node has answered at least 32 hellos (its ServerHello flight): those
        // attackers are past the ClientHello and hold whatever a handshake in progress holds
        // (before the fix, all 32 TLS slots).
        let mut answers: futures::stream::FuturesUnordered<_> = attackers
            .iter()
            .map(|s| async move {
                let mut first = [0u8; 1];
                matches!(s.peek(&mut first).await, Ok(1))
            })
            .collect();
        let mut answered = 0;
        while answered < 32 {
            use futures::StreamExt;
            let next = tokio::time::timeout(DEADLINE, answers.next()).await;
            match next.expect("the node answers ClientHellos") {
                Some(true) => answered += 1,
                Some(false) => {}
                None => panic!("only {answered} hellos were answered"),
            }
        }
        drop(answers);
        let start = Instant::now();
        let mut honest = TestPeer::connect(addr, REGTEST.magic)
            .await
            .expect("the honest peer's TLS handshake completes");
        honest.handshake().await;
        let took = start.elapsed();
        println!("honest TLS + VERSION handshake took {took:?} beside 64 half-open handshakes");
        assert!(
            took < Duration::from_secs(1),
            "the honest handshake took {took:?}"
        );
        drop(attackers);
    });
}

/// Defect 1 (the table's bound): more half-open connections than the table holds, from many
/// ranges; the node drops the oldest rather than refusing the newest, so the honest peer that
/// arrives last is still served.
#[test]
fn a_full_pending_table_drops_the_oldest_not_the_newcomer() {
    let node = TestNode::start(&[]);
    let addr = SocketAddr::from(([127, 0, 0, 1], node.p2p_addr().port()));
    let rt = runtime();
    rt.block_on(async {
        let mut silent = Vec::new();
        // 300 silent TCP connections (no ClientHello) from 20 /16s of 15 hosts each.
        for range in 1..=20u8 {
            for host in 1..=15u8 {
                silent.push(connect_from(IpAddr::from([127, range, 1, host]), addr).await);
            }
        }
        let start = Instant::now();
        let mut honest = TestPeer::connect(addr, REGTEST.magic)
            .await
            .expect("the newcomer is admitted");
        honest.handshake().await;
        assert!(
            start.elapsed() < noded::net::peer::CLIENT_HELLO_TIMEOUT,
            "the newcomer did not wait for silent connections to time out"
        );
        // The oldest silent connections were the ones dropped (closed by the node).
        let mut buf = [0u8; 1];
        let first = tokio::time::timeout(DEADLINE, silent[0].read(&mut buf)).await;
        assert!(
            matches!(first, Ok(Ok(0)) | Ok(Err(_))),
            "the oldest pending connection was closed"
        );
        drop(silent);
    });
}

fn banned_addresses(node: &TestNode) -> Vec<String> {
    node.rpc("listbanned", json!([]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect()
}

/// Defect 3: on a dual-stack listener IPv4 peers arrived as `::ffff:a.b.c.d`, so
/// `setban 127.0.0.1` never matched them, and automatic bans (stored as IPv4) stopped matching
/// after a restart. Addresses are now canonical at accept.
#[test]
fn ipv4_peers_on_a_dual_stack_listener_match_ipv4_bans() {
    let tempdir = tempfile::tempdir().unwrap();
    let datadir = tempdir.path().to_path_buf();
    let node = TestNode::start_bound(&datadir, "::ffff:127.0.0.1", &[], |_| {});
    let addr = SocketAddr::from(([127, 0, 0, 1], node.p2p_addr().port()));
    let rt = runtime();

    // getpeerinfo shows the peer as plain IPv4, and `setban 127.0.0.1` drops it.
    let mut p = rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.unwrap();
        p.handshake().await;
        p
    });
    wait_until(DEADLINE, "the node to list the peer", || {
        node.ready_peers().len() == 1
    });
    let shown = node.ready_peers()[0]["addr"].as_str().unwrap().to_string();
    assert!(shown.starts_with("127.0.0.1:"), "shown as {shown}");
    node.rpc("setban", json!(["127.0.0.1", "add"])).unwrap();
    rt.block_on(p.until_closed());
    let refused = rt.block_on(async { TestPeer::connect(addr, REGTEST.magic).await.is_err() });
    assert!(
        refused,
        "a banned IPv4 address is refused on a dual-stack listener"
    );
    node.rpc("setban", json!(["127.0.0.1", "remove"])).unwrap();

    // An automatic ban (a malformed frame) is stored as 127.0.0.1 and still matches after a
    // restart.
    rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.unwrap();
        p.handshake().await;
        let mut frame = noded::wire::frame_bytes(REGTEST.magic, &Message::Ping(7)).unwrap();
        frame[20] ^= 0xff;
        p.framed.get_mut().write_all(&frame).await.unwrap();
        p.framed.get_mut().flush().await.unwrap();
        p.until_closed().await;
    });
    wait_until(DEADLINE, "the automatic ban", || {
        banned_addresses(&node).contains(&"127.0.0.1".to_string())
    });
    let mut node = node;
    node.stop();
    let node = TestNode::start_bound(&datadir, "::ffff:127.0.0.1", &[], |_| {});
    let addr = SocketAddr::from(([127, 0, 0, 1], node.p2p_addr().port()));
    assert!(banned_addresses(&node).contains(&"127.0.0.1".to_string()));
    let refused = rt.block_on(async { TestPeer::connect(addr, REGTEST.magic).await.is_err() });
    assert!(refused, "the reloaded ban still refuses 127.0.0.1");
    let peers: Vec<Value> = node.peers();
    assert!(peers.is_empty(), "{peers:?}");
}

/// The docs issue's noban permission: with `--whitelist noban@127.0.0.1` a misbehaving local
/// client is disconnected but 127.0.0.1 is not banned (without it, every local peer of a test
/// network would be locked out for 24 hours), and a whitelisted peer is let in while its IP is
/// banned by hand.
#[test]
fn a_noban_whitelisted_peer_is_disconnected_but_never_banned() {
    let node = TestNode::start(&["--whitelist", "noban@127.0.0.1"]);
    let addr = node.p2p_addr();
    let rt = runtime();
    rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.unwrap();
        p.handshake().await;
        let mut frame = noded::wire::frame_bytes(REGTEST.magic, &Message::Ping(7)).unwrap();
        frame[20] ^= 0xff; // a bad checksum: misbehaviour worth a ban
        p.framed.get_mut().write_all(&frame).await.unwrap();
        p.framed.get_mut().flush().await.unwrap();
        p.until_closed().await;
    });
    // The score reached the ban threshold in the same step that closed the connection.
    assert!(banned_addresses(&node).is_empty(), "nothing banned");
    let reconnected = rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.ok()?;
        p.try_handshake().await.ok()?;
        Some(p)
    });
    assert!(
        reconnected.is_some(),
        "the whitelisted address still connects"
    );
    drop(reconnected);
    // Banned by hand, a noban address is still let in.
    node.rpc("setban", json!(["127.0.0.1", "add"])).unwrap();
    let while_banned = rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.ok()?;
        p.try_handshake().await.ok()?;
        Some(p)
    });
    assert!(
        while_banned.is_some(),
        "noban lets the peer in while its IP is banned"
    );
}
