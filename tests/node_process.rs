//! The binary as a user runs it: start-up, JSON-RPC with cookie auth, clean stop, and the
//! one-line errors for bad flags, busy ports and a locked datadir.

mod common;

use common::*;
use noded::rpc::client::{self, ClientError};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A start-up failure prints exactly one line, starting with "error:", and exits 1.
fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn getinfo_answers_with_the_cookie_and_stop_exits_zero() {
    let mut node = TestNode::start(&[]);
    let info = node.getinfo();
    assert_eq!(info["network"], "regtest");
    assert_eq!(info["blocks"], 0);
    assert_eq!(
        info["bestblockhash"],
        noded::params::REGTEST.genesis_hash().to_string()
    );
    assert_eq!(info["rpc_addr"], node.rpc_addr.to_string());
    assert_eq!(info["connections"], 0);
    assert_eq!(info["protocolversion"], noded::wire::PROTOCOL_VERSION);
    let p2p: std::net::SocketAddr = info["p2p_addr"].as_str().unwrap().parse().unwrap();
    assert!(p2p.ip().is_loopback() && p2p.port() != 0);

    // The node id is the public key of the identity key in the datadir.
    let seed_hex = std::fs::read_to_string(node.datadir.join("identity.key")).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex.trim(), &mut seed).unwrap();
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    assert_eq!(info["nodeid"], hex::encode(public.to_bytes()));

    assert!(node.rpc("uptime", json!([])).unwrap().as_u64().is_some());

    let status = node.stop();
    assert!(status.success(), "{status}");
    assert!(
        !node.datadir.join(".cookie").exists(),
        "cookie removed at clean shutdown"
    );
    assert!(!node.datadir.join(".rpcaddr").exists());
}

#[test]
fn requests_without_valid_credentials_get_http_401() {
    let node = TestNode::start(&[]);
    for creds in ["", "__cookie__:wrong", "alice:pw"] {
        match client::call(node.rpc_addr, creds, "getinfo", json!([])) {
            Err(ClientError::Http(401, _)) => {}
            other => panic!("credentials {creds:?} gave {other:?}"),
        }
    }
    // No Authorization header at all, with curl's default form content type.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
    let mut s = TcpStream::connect(node.rpc_addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("www-authenticate: Basic"), "{reply}");
}

#[test]
fn configured_user_and_password_work_alongside_the_cookie() {
    let node = TestNode::start(&["--rpcuser", "alice", "--rpcpassword", "s3cret"]);
    let info = client::call(node.rpc_addr, "alice:s3cret", "getinfo", json!([])).unwrap();
    assert_eq!(info["network"], "regtest");
    assert!(node.rpc("getinfo", json!([])).is_ok());
}

#[test]
fn websocket_upgrade_requires_auth_too() {
    let node = TestNode::start(&[]);
    let upgrade = |auth: Option<&str>| {
        let mut s = TcpStream::connect(node.rpc_addr).unwrap();
        let auth_header = auth
            .map(|a| {
                use base64::Engine;
                format!(
                    "Authorization: Basic {}\r\n",
                    base64::engine::general_purpose::STANDARD.encode(a)
                )
            })
            .unwrap_or_default();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth_header}\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    assert_eq!(upgrade(None), "HTTP/1.1 401");
    assert_eq!(upgrade(Some(&node.cookie)), "HTTP/1.1 101");
}

#[test]
fn unknown_method_and_bad_params_are_json_rpc_errors() {
    let node = TestNode::start(&[]);
    match node.rpc("nosuchmethod", json!([])) {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, -32601),
        other => panic!("{other:?}"),
    }
    match node.rpc("help", json!(["nosuchmethod"])) {
        Err(ClientError::Rpc { code, message, .. }) => {
            assert_eq!(code, -8);
            assert!(message.contains("nosuchmethod"));
        }
        other => panic!("{other:?}"),
    }
    match node.rpc("help", json!([1, 2, 3])) {
        Err(ClientError::Rpc { code, .. }) => assert_eq!(code, -32602),
        other => panic!("{other:?}"),
    }
    let help = node.rpc("help", json!([])).unwrap();
    for method in ["getinfo", "help", "stop", "uptime"] {
        assert!(help.as_str().unwrap().contains(method));
    }
}

#[test]
fn every_method_in_help_is_served() {
    let node = TestNode::start(&[]);
    let help = node.rpc("help", json!([])).unwrap();
    let names: Vec<String> = help
        .as_str()
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.len() > 40, "{names:?}");
    for name in names.iter().filter(|n| *n != "stop") {
        // Wrong or missing params are fine; "method not found" is not.
        if let Err(noded::rpc::client::ClientError::Rpc { code, message, .. }) =
            node.rpc(name, json!(["x", "y", "z", "w"]))
        {
            assert_ne!(code, -32601, "{name} is in help but not served: {message}");
        }
    }
}

#[test]
fn a_second_node_on_the_same_datadir_exits_with_a_clear_error() {
    let node = TestNode::start(&[]);
    let dir = node.datadir.to_str().unwrap();
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--rpcport",
        "0",
        "--datadir",
        dir,
    ]);
    assert_one_line_error(&out, "in use by another noded");
    // The first node is untouched.
    assert_eq!(node.getinfo()["network"], "regtest");
}

#[test]
fn busy_ports_are_one_line_errors_naming_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--bind",
        "127.0.0.1",
        "--port",
        &port,
        "--rpcport",
        "0",
        "--datadir",
        d,
    ]);
    assert_one_line_error(&out, "--port");
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--rpcport",
        &port,
        "--datadir",
        d,
    ]);
    assert_one_line_error(&out, "--rpcport");
    assert!(
        !dir.path().join(".cookie").exists(),
        "no cookie left behind"
    );
}

#[test]
fn bad_values_are_errors_naming_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run_to_exit(&["--port", "notaport", "--datadir", d]);
    assert_eq!(out.status.code(), Some(2));
    let first = stderr_of(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(first.contains("--port"), "{first}");

    let out = run_to_exit(&["--network", "moon", "--datadir", d]);
    assert!(stderr_of(&out)
        .lines()
        .next()
        .unwrap()
        .contains("--network"));

    let out = run_to_exit(&["--addnode", "no-port-here", "--datadir", d]);
    assert_one_line_error(&out, "invalid --addnode 'no-port-here'");

    let out = run_to_exit(&["--rpcbind", "0.0.0.0", "--datadir", d]);
    assert_one_line_error(&out, "--rpcbind 0.0.0.0 is not a loopback address");

    std::fs::write(dir.path().join("noded.toml"), "port = 1\nrpcprot = 5\n").unwrap();
    let out = run_to_exit(&["--datadir", d]);
    assert_one_line_error(&out, "rpcprot");
    assert!(stderr_of(&out).contains("line 2"), "{}", stderr_of(&out));

    // A bad value: the message names the key, not only the type it wanted.
    std::fs::write(
        dir.path().join("noded.toml"),
        "bantime = 5\nport = \"abc\"\n",
    )
    .unwrap();
    let out = run_to_exit(&["--datadir", d]);
    assert_one_line_error(&out, "key 'port', at line 2");

    let out = run_to_exit(&["--config", "/nonexistent/noded.toml", "--datadir", d]);
    assert_one_line_error(&out, "/nonexistent/noded.toml");
}

#[test]
fn flags_beat_environment_beats_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("noded.toml"),
        "network = \"main\"\nport = 0\nrpcport = 0\nbind = \"127.0.0.1\"\n",
    )
    .unwrap();
    let start = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--datadir")
            .arg(dir.path())
            .env_remove("NODED_NETWORK");
        if let Some(n) = env {
            cmd.env("NODED_NETWORK", n);
        }
        if let Some(n) = flag {
            cmd.args(["--network", n]);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().unwrap();
        wait_until(DEADLINE, "rpc address", || {
            noded::datadir::read_rpc_endpoint(dir.path()).is_ok()
        });
        let (cookie, addr) = noded::datadir::read_rpc_endpoint(dir.path()).unwrap();
        let network = client::call(addr, &cookie, "getinfo", json!([])).unwrap()["network"].clone();
        client::call(addr, &cookie, "stop", json!([])).unwrap();
        let mut child = child;
        assert!(child.wait().unwrap().success());
        network
    };
    assert_eq!(start(None, None), "main", "config file over default");
    assert_eq!(
        start(Some("regtest"), None),
        "regtest",
        "environment over file"
    );
    assert_eq!(
        start(Some("regtest"), Some("test")),
        "test",
        "flag over environment"
    );
}

#[test]
fn the_builtin_client_reads_the_datadir() {
    let node = TestNode::start(&[]);
    let dir = node.datadir.to_str().unwrap();
    let out = run_to_exit(&["rpc", "--datadir", dir, "getinfo"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["nodeid"], node.getinfo()["nodeid"]);

    let out = run_to_exit(&["rpc", "--datadir", dir, "help", "stop"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("stop"));

    let empty = tempfile::tempdir().unwrap();
    let out = run_to_exit(&[
        "rpc",
        "--datadir",
        empty.path().to_str().unwrap(),
        "getinfo",
    ]);
    assert_one_line_error(&out, "is noded running");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut node = TestNode::start(&[]);
    let pid = node.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(node.wait_exit().success());
    assert!(!node.datadir.join(".cookie").exists());
}

#[test]
fn nolisten_runs_without_a_p2p_socket() {
    let node = TestNode::start(&["--nolisten"]);
    assert!(node.getinfo()["p2p_addr"].is_null());
}

#[test]
fn the_log_accounts_for_every_block_up_to_the_stop() {
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("noded.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut node = TestNode::start_in(data.path(), &[], |cmd| {
        cmd.stderr(log_file);
    });
    // More blocks than the per-second share of `new tip` lines: the rest of the second is
    // held for one summary line, and the stop comes before that second is over.
    rpc(&node, "generate", json!([40]));
    assert!(node.stop().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    let last_tip = log
        .lines()
        .rfind(|l| l.contains("new tip"))
        .unwrap_or_else(|| panic!("no new tip line: {log}"));
    assert!(last_tip.contains("height=40"), "{last_tip}");
    let ready = log.lines().find(|l| l.contains("noded ready")).unwrap();
    assert!(ready.contains("height=0"), "{ready}");
    let stopped = log.lines().find(|l| l.contains("noded stopped")).unwrap();
    assert!(stopped.contains("height=40"), "{stopped}");
}

#[test]
fn a_damaged_chain_store_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::create_dir_all(dir.path().join("chain")).unwrap();
    let store = dir.path().join("chain").join("regtest.redb");
    std::fs::write(&store, vec![0x5a; 4096]).unwrap();
    let out = run_to_exit(&["--network", "regtest", "--datadir", d]);
    assert_one_line_error(
        &out,
        &format!("cannot open the chain store {}", store.display()),
    );
    assert!(
        stderr_of(&out).contains("move it away"),
        "{}",
        stderr_of(&out)
    );
}
