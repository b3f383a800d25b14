//! Helpers for tests that run real `noded` processes on 127.0.0.1 with temporary datadirs
//! and drive them over JSON-RPC, as a user would.
#![allow(dead_code)]

pub mod ws;

use noded::rpc::client::{self, ClientError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_noded");
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A `noded` command on regtest with ephemeral loopback ports and the given datadir.
pub fn noded_command(datadir: &Path) -> Command {
    noded_command_bound(datadir, "127.0.0.1")
}

/// Like `noded_command`, with the P2P listener on `bind` (a loopback address in some form).
pub fn noded_command_bound(datadir: &Path, bind: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--network",
        "regtest",
        "--bind",
        bind,
        "--port",
        "0",
        "--rpcport",
        "0",
    ])
    .arg("--datadir")
    .arg(datadir)
    .env_remove("NODED_NETWORK")
    .env_remove("NODED_DATADIR")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// Runs `noded` with `args` to completion (for start-up failures) and returns its output.
pub fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("NODED_NETWORK")
        .env_remove("NODED_DATADIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn noded");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("noded {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub struct TestNode {
    pub child: Child,
    pub datadir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    pub rpc_addr: SocketAddr,
    pub cookie: String,
}

impl TestNode {
    /// Starts a regtest node on a fresh temporary datadir.
    pub fn start(extra: &[&str]) -> TestNode {
        let tempdir = tempfile::tempdir().unwrap();
        let datadir = tempdir.path().to_path_buf();
        let mut node = TestNode::start_in(&datadir, extra, |_| {});
        node._tempdir = Some(tempdir);
        node
    }

    /// Starts a node on `datadir`, after `customise` adjusts the command.
    pub fn start_in(
        datadir: &Path,
        extra: &[&str],
        customise: impl FnOnce(&mut Command),
    ) -> TestNode {
        TestNode::start_bound(datadir, "127.0.0.1", extra, customise)
    }

    /// Like `start_in`, with the P2P listener on `bind`.
    pub fn start_bound(
        datadir: &Path,
        bind: &str,
        extra: &[&str],
        customise: impl FnOnce(&mut Command),
    ) -> TestNode {
        let mut cmd = noded_command_bound(datadir, bind);
        cmd.args(extra);
        customise(&mut cmd);
        let mut child = cmd.spawn().expect("spawn noded");
        let rpc_file = datadir.join(".rpcaddr");
        let start = Instant::now();
        let (cookie, rpc_addr) = loop {
            if let Ok((cookie, addr)) = noded::datadir::read_rpc_endpoint(datadir) {
                break (cookie, addr);
            }
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                if let Some(mut stderr) = child.stderr.take() {
                    stderr.read_to_string(&mut err).unwrap();
                }
                panic!("noded exited with {status} before RPC was ready: {err}");
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {} after {DEADLINE:?}",
                rpc_file.display()
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        // Drain stderr so a chatty node never blocks on a full pipe (unless `customise` sent
        // it elsewhere, say to a file a test reads). With NODED_TEST_LOGS=<dir> it is kept
        // there, one file per node named by its RPC port, for debugging a test or benchmark.
        if let Some(mut stderr) = child.stderr.take() {
            let kept = std::env::var_os("NODED_TEST_LOGS").and_then(|dir| {
                let path = Path::new(&dir).join(format!("node-{}.log", rpc_addr.port()));
                std::fs::File::create(path).ok()
            });
            std::thread::spawn(move || match kept {
                Some(mut file) => std::io::copy(&mut stderr, &mut file),
                None => std::io::copy(&mut stderr, &mut std::io::sink()),
            });
        }
        TestNode {
            child,
            datadir: datadir.to_path_buf(),
            _tempdir: None,
            rpc_addr,
            cookie,
        }
    }

    pub fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        client::call(self.rpc_addr, &self.cookie, method, params)
    }

    pub fn getinfo(&self) -> serde_json::Value {
        self.rpc("getinfo", serde_json::json!([])).expect("getinfo")
    }

    /// Where the node listens for peers.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.getinfo()["p2p_addr"]
            .as_str()
            .expect("a listening node")
            .parse()
            .expect("an address")
    }

    /// `getpeers`, every connection.
    pub fn peers(&self) -> Vec<serde_json::Value> {
        let reply = self
            .rpc("getpeers", serde_json::json!([]))
            .expect("getpeers");
        reply.as_array().expect("a list").clone()
    }

    /// `getpeers`, only connections past the VERSION/VERACK handshake.
    pub fn ready_peers(&self) -> Vec<serde_json::Value> {
        self.peers()
            .into_iter()
            .filter(|p| p["handshake_complete"] == true)
            .collect()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "noded did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop(&mut self) -> ExitStatus {
        let reply = self.rpc("stop", serde_json::json!([])).expect("stop");
        assert_eq!(reply, "noded stopping");
        self.wait_exit()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `method`'s result on `node`; panics, naming the method, on any error.
pub fn rpc(node: &TestNode, method: &str, params: serde_json::Value) -> serde_json::Value {
    node.rpc(method, params)
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// The error code and message `method` fails with on `node`; panics if it succeeds.
pub fn rpc_error(node: &TestNode, method: &str, params: serde_json::Value) -> (i64, String) {
    match node.rpc(method, params) {
        Err(ClientError::Rpc { code, message, .. }) => (code, message),
        other => panic!("{method}: expected an error, got {other:?}"),
    }
}

/// One JSON-RPC call to `node` returning the whole reply object, so a test can read an
/// error's `data` as well as its code and message.
pub fn rpc_reply(node: &TestNode, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    rpc_post(node, &body)
}

/// A JSON-RPC batch of `calls` (method, params) to `node`; the answers in id order.
pub fn rpc_batch(node: &TestNode, calls: &[(&str, serde_json::Value)]) -> Vec<serde_json::Value> {
    let body: Vec<serde_json::Value> = calls
        .iter()
        .enumerate()
        .map(|(id, (method, params))| {
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        })
        .collect();
    let reply = rpc_post(node, &serde_json::Value::Array(body));
    let mut answers = reply.as_array().expect("a batch answer").clone();
    answers.sort_by_key(|a| a["id"].as_u64());
    answers
}

/// POSTs `body` to `node`'s RPC with its cookie; the parsed JSON answer.
fn rpc_post(node: &TestNode, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let (_, json) = http_post(
        node.rpc_addr,
        Some(&node.cookie),
        "application/json",
        body.as_bytes(),
    );
    serde_json::from_str(&json).expect("a JSON-RPC reply")
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with Basic
/// `credentials` when given; returns the reply's status and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    credentials: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to RPC");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let auth = credentials
        .map(|c| {
            let token = base64::engine::general_purpose::STANDARD.encode(c);
            format!("Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before it has read a large body.
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// `http_request` POST to `/`.
pub fn http_post(
    addr: SocketAddr,
    credentials: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    http_request(addr, "POST", "/", credentials, content_type, body)
}

/// Removes the `.cookie` and `.rpcaddr` a killed node left behind, so the next start waits for
/// the fresh ones instead of reading stale ones.
pub fn remove_stale_rpc_files(datadir: &Path) {
    let _ = std::fs::remove_file(datadir.join(noded::datadir::COOKIE_FILE));
    let _ = std::fs::remove_file(datadir.join(noded::datadir::RPC_ADDR_FILE));
}

impl TestNode {
    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap noded")
    }

    /// `submitblock` with the block's canonical encoding.
    pub fn submit_block(
        &self,
        block: &noded::types::Block,
    ) -> Result<serde_json::Value, ClientError> {
        let hex = hex::encode(noded::encoding::encode(block));
        self.rpc("submitblock", serde_json::json!([hex]))
    }
}
