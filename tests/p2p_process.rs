//! Real nodes on 127.0.0.1 connected over TLS 1.3, driven over JSON-RPC as a user would.

mod common;
#[path = "common/peer.rs"]
mod peer;

use common::*;
use noded::params::REGTEST;
use noded::wire::Message;
use peer::TestPeer;
use serde_json::{json, Value};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_nodes_connect_with_addnode_over_tls13_and_list_each_other() {
    let a = TestNode::start(&[]);
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    wait_until(DEADLINE, "both sides to complete the handshake", || {
        a.ready_peers().len() == 1 && b.ready_peers().len() == 1
    });
    let (a_id, b_id) = (a.getinfo()["nodeid"].clone(), b.getinfo()["nodeid"].clone());
    let from_a = &a.ready_peers()[0];
    let from_b = &b.ready_peers()[0];
    assert_eq!(from_a["nodeid"], b_id);
    assert_eq!(from_b["nodeid"], a_id);
    assert_eq!(from_a["tls_version"], "TLSv1.3");
    assert_eq!(from_b["tls_version"], "TLSv1.3");
    assert_eq!(from_a["inbound"], true);
    assert_eq!(from_b["connection_type"], "manual");

    let info = b.rpc("getpeerinfo", json!([])).unwrap();
    let p = &info[0];
    for field in [
        "id",
        "nodeid",
        "addr",
        "inbound",
        "connection_type",
        "version",
        "subver",
        "services",
        "startingheight",
        "synced_headers",
        "synced_blocks",
        "conntime",
        "lastsend",
        "lastrecv",
        "bytessent",
        "bytesrecv",
        "bytessent_per_msg",
        "bytesrecv_per_msg",
        "pingtime",
        "minping",
        "banscore",
        "tls_version",
        "tls_cipher",
    ] {
        assert!(p.get(field).is_some(), "getpeerinfo lacks {field}: {p}");
    }
    assert!(p["bytessent_per_msg"]["version"].as_u64().unwrap() > 24);
    assert!(p["bytesrecv_per_msg"]["verack"].as_u64().unwrap() == 24);
    assert_eq!(p["msgsrecv_per_msg"]["verack"], 1);
    assert_eq!(p["msgssent_per_msg"]["version"], 1);
    assert!(p["tls_cipher"].as_str().unwrap().starts_with("TLS13_"));

    // `ping` measures a round trip.
    b.rpc("ping", json!([])).unwrap();
    wait_until(DEADLINE, "a ping time", || {
        !b.rpc("getpeerinfo", json!([])).unwrap()[0]["pingtime"].is_null()
    });
    let info = b.getinfo();
    assert_eq!(
        (info["connections"].clone(), info["connections_out"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(a.getinfo()["connections_in"], 1);
    assert_eq!(b.rpc("getconnectioncount", json!([])).unwrap(), 1);
    let added = b.rpc("getaddednodeinfo", json!([])).unwrap();
    assert_eq!(added[0]["connected"], true);
    assert_eq!(
        added[0]["nodeid"], a_id,
        "trust on first use remembers the id"
    );
    let totals = b.rpc("getnettotals", json!([])).unwrap();
    assert!(totals["totalbytessent"].as_u64().unwrap() > 0);
}

#[test]
fn a_pinned_node_id_that_does_not_match_is_refused() {
    let a = TestNode::start(&[]);
    let addr = a.p2p_addr();
    let wrong = "ab".repeat(32);
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("noded.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let c = TestNode::start_in(
        data.path(),
        &["--addnode", &format!("{wrong}@{addr}")],
        |cmd| {
            cmd.stderr(log_file);
        },
    );
    wait_until(DEADLINE, "a refused connection attempt", || {
        let entry = &c.rpc("getaddednodeinfo", json!([])).unwrap()[0];
        entry["last_attempt"].as_u64().unwrap() > 0 && entry["connected"] == false
    });
    // The operator is told, at the default level, which id the peer has.
    let right = a.getinfo()["nodeid"].as_str().unwrap().to_string();
    wait_until(DEADLINE, "a WARN line naming both ids", || {
        std::fs::read_to_string(&log_path).is_ok_and(|log| {
            log.lines().any(|l| {
                l.contains("WARN")
                    && l.contains("dial failed: wrong node id")
                    && l.contains(&right)
                    && l.contains(&wrong)
            })
        })
    });
    assert!(
        a.peers().is_empty(),
        "A accepted nothing from the mis-pinned dial"
    );
    // The right id connects (positive control), the wrong one never does.
    c.rpc("addnode", json!([format!("{right}@{addr}"), "add"]))
        .unwrap();
    wait_until(DEADLINE, "the correctly pinned connection", || {
        c.ready_peers().len() == 1
    });
    let peers = c.ready_peers();
    assert_eq!(peers[0]["nodeid"], right);
    let added = c.rpc("getaddednodeinfo", json!([])).unwrap();
    let wrong_entry = added
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["addednode"].as_str().unwrap().starts_with(&wrong))
        .unwrap();
    assert_eq!(wrong_entry["connected"], false);
    assert!(wrong_entry["nodeid"].as_str() == Some(wrong.as_str()));
}

#[test]
fn a_plaintext_client_gets_no_protocol() {
    use std::io::{ErrorKind, Read, Write};
    let a = TestNode::start(&[]);
    let mut s = std::net::TcpStream::connect(a.p2p_addr()).unwrap();
    // A well-formed plaintext VERACK frame: the node must not treat it as protocol.
    let frame = noded::wire::frame_bytes(REGTEST.magic, &Message::Verack).unwrap();
    s.write_all(&frame).unwrap();
    // The node must close the connection (EOF, or a reset since it leaves our bytes unread)
    // well within this deadline; one that kept the socket open fails here.
    let deadline = Duration::from_secs(30);
    let start = std::time::Instant::now();
    let mut received = Vec::new();
    let closed_by = loop {
        let left = deadline.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "the node kept a plaintext connection open for {deadline:?}, having sent {received:02x?}"
        );
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break "EOF",
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset",
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading from the node: {e}"),
        }
    };
    // Before closing it, the node sent at most TLS alert records (content type 21, a TLS
    // version, a 2-byte alert), never a noded frame or anything else.
    let mut rest = &received[..];
    while !rest.is_empty() {
        assert!(
            rest.len() >= 7
                && rest[0] == 21
                && rest[1] == 3
                && u16::from_be_bytes([rest[3], rest[4]]) == 2,
            "not a TLS alert record: {received:02x?}"
        );
        rest = &rest[7..];
    }
    println!(
        "closed ({closed_by}) after {:?}, having sent {received:02x?}",
        start.elapsed()
    );
    assert!(a.peers().is_empty());
}

#[test]
fn a_malformed_frame_gets_the_peer_banned_and_the_ban_survives_restart() {
    let a = TestNode::start(&[]);
    let addr = a.p2p_addr();
    let rt = runtime();
    let peer_id = rt.block_on(async {
        let mut p = TestPeer::connect(addr, REGTEST.magic).await.unwrap();
        p.handshake().await;
        // A frame with a bad checksum.
        let mut frame = noded::wire::frame_bytes(REGTEST.magic, &Message::Ping(7)).unwrap();
        frame[20] ^= 0xff;
        use tokio::io::AsyncWriteExt;
        p.framed.get_mut().write_all(&frame).await.unwrap();
        p.framed.get_mut().flush().await.unwrap();
        p.until_closed().await;
        p.node_id.to_string()
    });
    wait_until(DEADLINE, "the ban", || {
        a.rpc("listbanned", json!([]))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let banned: Vec<String> = a
        .rpc("listbanned", json!([]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect();
    assert!(banned.contains(&"127.0.0.1".to_string()), "{banned:?}");
    assert!(banned.contains(&peer_id), "{banned:?}");

    // While banned, a new connection from 127.0.0.1 is refused before TLS completes.
    let refused = rt.block_on(async { TestPeer::connect(addr, REGTEST.magic).await.is_err() });
    assert!(refused);

    // Restart: the ban list (and the address book) come back from the datadir.
    let datadir = a.datadir.clone();
    let mut a = a;
    a.stop();
    let a2 = TestNode::start_in(&datadir, &[], |_| {});
    let after: Vec<Value> = a2
        .rpc("listbanned", json!([]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(after.len(), 2);
    a2.rpc("setban", json!(["127.0.0.1", "remove"])).unwrap();
    a2.rpc("clearbanned", json!([])).unwrap();
    assert!(a2
        .rpc("listbanned", json!([]))
        .unwrap()
        .as_array()
        .unwrap()
        .is_empty());
    drop(a);
}

#[test]
fn the_address_book_survives_a_restart() {
    let a = TestNode::start(&[]);
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    let b_listen = b.p2p_addr();
    // B advertises its listen address to A after the handshake.
    let knows_b = |node: &TestNode| {
        node.rpc("getnodeaddresses", json!([100]))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["port"] == b_listen.port() && e["address"] == b_listen.ip().to_string())
    };
    wait_until(DEADLINE, "A to learn B's address", || knows_b(&a));
    let datadir = a.datadir.clone();
    let mut a = a;
    a.stop();
    let a2 = TestNode::start_in(&datadir, &["--nolisten"], |_| {});
    assert!(knows_b(&a2), "the address book was reloaded");
    drop(a);
}

#[test]
fn setban_by_node_id_disconnects_and_disconnectnode_works() {
    let a = TestNode::start(&[]);
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    wait_until(DEADLINE, "connection", || a.ready_peers().len() == 1);
    let b_id = b.getinfo()["nodeid"].as_str().unwrap().to_string();
    let peer_id = a.ready_peers()[0]["id"].as_u64().unwrap();
    a.rpc("disconnectnode", json!(["", peer_id])).unwrap();
    // B reconnects (it is an added node); then A bans it by node id.
    wait_until(DEADLINE, "reconnection", || {
        a.ready_peers()
            .iter()
            .any(|p| p["id"].as_u64() != Some(peer_id))
    });
    a.rpc("setban", json!([b_id, "add", 600])).unwrap();
    wait_until(DEADLINE, "the banned node to be gone", || {
        a.peers().is_empty()
    });
    let bans = a.rpc("listbanned", json!([])).unwrap();
    assert_eq!(bans[0]["address"], b_id);
    assert!(bans[0]["time_remaining"].as_u64().unwrap() <= 600);
    match a.rpc("setban", json!(["not-an-ip", "add"])) {
        Err(noded::rpc::client::ClientError::Rpc { code, .. }) => assert_eq!(code, -8),
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_advertises_the_chain_height() {
    let a = TestNode::start(&[]);
    a.rpc("generate", json!([5])).unwrap();
    let b = TestNode::start(&["--addnode", &a.p2p_addr().to_string()]);
    wait_until(DEADLINE, "the connection", || b.ready_peers().len() == 1);
    let info = b.rpc("getpeerinfo", json!([])).unwrap();
    assert_eq!(info[0]["startingheight"], 5);
}

/// The key the peer store gives a ban (net::store's private `BanKey`, mirrored: the encoding
/// of an IPv4 ban is the enum tag and the IPv4-mapped IPv6 octets).
#[derive(bincode::Encode)]
enum BanKey {
    Ip([u8; 16]),
    #[allow(dead_code)]
    Node([u8; 32]),
}

#[test]
fn a_sled_peer_store_of_an_earlier_version_is_migrated_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path();
    let sled_dir = datadir.join("peers");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    {
        let db = sled::Config::new()
            .path(&sled_dir)
            .flush_every_ms(None)
            .open()
            .unwrap();
        let ip: std::net::Ipv4Addr = "10.1.2.3".parse().unwrap();
        let entry = noded::protocol::bans::BanEntry {
            created_ms: now_ms,
            until_ms: now_ms + 3_600_000,
            reason: "from sled".into(),
        };
        db.open_tree("bans")
            .unwrap()
            .insert(
                noded::encoding::encode(&BanKey::Ip(ip.to_ipv6_mapped().octets())),
                noded::encoding::encode(&entry),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let node = TestNode::start_in(datadir, &["--nolisten"], |_| {});
    let bans = node.rpc("listbanned", json!([])).unwrap();
    assert_eq!(bans.as_array().unwrap().len(), 1, "{bans}");
    assert_eq!(bans[0]["address"], "10.1.2.3");
    assert_eq!(bans[0]["reason"], "from sled");
    assert!(!sled_dir.exists());
    assert!(datadir.join("peers.sled-old").join("db").is_file());
    assert!(datadir.join("peers.redb").is_file());
}

/// A peer that announces a chain's headers and never serves the blocks: the node holds the
/// headers (getblockchaininfo `headers`), and getchaintips lists the branch as headers-only
/// beside the active genesis tip.
#[test]
fn headers_without_blocks_show_as_a_headers_only_chain_tip() {
    use noded::chain::testkit::TestChainBuilder;
    use noded::encoding::BoundedVec;
    use noded::types::Address;
    let a = TestNode::start(&[]);
    let mut builder = TestChainBuilder::new(&REGTEST);
    let headers: Vec<_> = (0..5)
        .map(|_| builder.build(Address([7; 20]), vec![]).header)
        .collect();
    let tip = headers[4].hash().to_string();
    let rt = runtime();
    rt.block_on(async {
        let mut p = TestPeer::connect(a.p2p_addr(), REGTEST.magic)
            .await
            .unwrap();
        p.handshake().await;
        p.send(Message::Headers(BoundedVec::new(headers).unwrap()))
            .await
            .unwrap();
        // Stay connected (answering nothing) until the node shows the branch.
        let shown = async {
            loop {
                let tips = a.rpc("getchaintips", json!([])).unwrap();
                if tips
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t["hash"] == tip.as_str())
                {
                    return tips;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let tips = tokio::time::timeout(Duration::from_secs(30), shown)
            .await
            .expect("the header-only branch within 30 s");
        let tips = tips.as_array().unwrap();
        assert_eq!(tips.len(), 2, "{tips:?}");
        assert_eq!(tips[0]["status"], "active");
        assert_eq!(tips[0]["height"], 0);
        assert_eq!(tips[1]["status"], "headers-only");
        assert_eq!(tips[1]["height"], 5);
        assert_eq!(tips[1]["branchlen"], 5);
        let info = a.rpc("getblockchaininfo", json!([])).unwrap();
        assert_eq!(info["headers"], 5);
        assert_eq!(info["blocks"], 0);
        assert_eq!(info["initialblockdownload"], true);
    });
}
