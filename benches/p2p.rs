//! P2P benchmarks against real `noded --network regtest` processes on 127.0.0.1:
//!
//! 1. TLS handshakes per second a node accepts (TCP connect + TLS 1.3 with mutual
//!    authentication, then close), next to a plain rustls server with the same TLS settings.
//! 2. Resident memory per idle peer that completed VERSION/VERACK, next to a plain rustls echo
//!    server (this binary re-run with `--echo-server`) holding the same number of sessions.
//! 3. JSON-RPC `getinfo` latency while 200 connections hit the P2P port at once.
//!
//! Run with `cargo bench --bench p2p`. Every child process is killed by a drop guard; the whole
//! run takes well under 90 s.

#[path = "support/cpu.rs"]
mod cpu;
#[path = "../tests/common/peer.rs"]
mod peer;

use cpu::{clock_ticks_per_second, process_cpu, stat_cpu};
use futures::StreamExt;
use noded::net::identity::Identity;
use noded::net::tls::{self, TlsIdentity};
use noded::params::REGTEST;
use noded::wire::Message;
use peer::TestPeer;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_noded");
/// How long a node or the echo server may take to come up, and a peer count to be reached.
const DEADLINE: Duration = Duration::from_secs(20);
/// Timeout of one bench connection's I/O.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshake rate: client identities, connections in flight, warm-up and measured time.
const CLIENT_IDENTITIES: usize = 16;
const HS_IN_FLIGHT: usize = 16;
/// The servers are measured in turns, `HS_ROUNDS` slices each, so that load from other
/// processes on the machine falls on all of them alike.
const HS_ROUNDS: u32 = 3;
const HS_SLICE_WARMUP: Duration = Duration::from_millis(200);
const HS_SLICE: Duration = Duration::from_secs(1);
const HS_TARGET: f64 = 2_000.0;

/// Memory: peer counts and the per-peer target.
const PEERS_A: usize = 100;
const PEERS_B: usize = 125;
const MEM_TARGET_BYTES: f64 = 64.0 * 1024.0;
/// Buffer of the plain echo server's connection task.
const ECHO_BUF: usize = 1024;

/// Flood: connections opened at once (half TLS + VERSION/VERACK, a quarter silent TCP, a
/// quarter garbage), and the RPC latency target.
const FLOOD_CONNS: usize = 200;
const FLOOD_DEADLINE: Duration = Duration::from_secs(25);
const RPC_TARGET: Duration = Duration::from_millis(50);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn kib(bytes: f64) -> f64 {
    bytes / 1024.0
}

// ----- processes --------------------------------------------------------------------------------

/// Kills and reaps a child process when dropped (also on panic).
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `noded` on a temporary datadir.
struct Node {
    child: ChildGuard,
    _dir: tempfile::TempDir,
    rpc_addr: SocketAddr,
    cookie: String,
    p2p_addr: SocketAddr,
    /// Bytes the node wrote to stderr (its log) so far.
    log_bytes: Arc<AtomicU64>,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("temp datadir");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--network",
            "regtest",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--rpcport",
            "0",
        ])
        .arg("--datadir")
        .arg(dir.path())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NODED_") {
                cmd.env_remove(key);
            }
        }
        let mut child = ChildGuard(cmd.spawn().expect("spawn noded"));
        let start = Instant::now();
        let (cookie, rpc_addr) = loop {
            if let Ok(endpoint) = noded::datadir::read_rpc_endpoint(dir.path()) {
                break endpoint;
            }
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                let mut err = String::new();
                let _ = child
                    .0
                    .stderr
                    .take()
                    .map(|mut e| e.read_to_string(&mut err));
                panic!("noded exited with {status} before RPC was ready: {err}");
            }
            assert!(start.elapsed() < DEADLINE, "noded RPC not ready in time");
            std::thread::sleep(Duration::from_millis(2));
        };
        // Drain (and count) the log so a chatty node never blocks on a full pipe.
        let log_bytes = Arc::new(AtomicU64::new(0));
        let mut stderr = child.0.stderr.take().expect("stderr");
        let counter = log_bytes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        let mut node = Node {
            child,
            _dir: dir,
            rpc_addr,
            cookie,
            p2p_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_bytes,
        };
        let info = node.getinfo().expect("getinfo after start");
        node.p2p_addr = info["p2p_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("getinfo p2p_addr");
        node
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn getinfo(&self) -> Result<serde_json::Value, noded::rpc::client::ClientError> {
        noded::rpc::client::call(
            self.rpc_addr,
            &self.cookie,
            "getinfo",
            serde_json::json!([]),
        )
    }

    fn connections_in(&self) -> Option<u64> {
        self.getinfo().ok()?["connections_in"].as_u64()
    }

    /// Polls getinfo until `connections_in == n`; false at the deadline.
    fn wait_connections_in(&self, n: usize) -> bool {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if self.connections_in() == Some(n as u64) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// This binary re-run as a plain rustls echo server (see [`echo_server_main`]).
struct EchoChild {
    child: ChildGuard,
    /// Closing it tells the child to exit.
    _stdin: ChildStdin,
    addr: SocketAddr,
}

impl EchoChild {
    /// `framed`: run each session like the node's peer task does (see [`framed_session`]).
    fn start(framed: bool) -> EchoChild {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = ChildGuard(
            Command::new(exe)
                .arg(if framed {
                    "--echo-server=framed"
                } else {
                    "--echo-server"
                })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn the echo server"),
        );
        let stdin = child.0.stdin.take().expect("stdin");
        let stdout = child.0.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("echo server port");
        let port: u16 = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("echo server said {line:?}"));
        EchoChild {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

// ----- /proc ------------------------------------------------------------------------------------

/// The number in a field of /proc/<pid>/status (`kB` fields in KiB).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// VmRSS in bytes.
fn rss(pid: u32) -> u64 {
    status_field(pid, "VmRSS:") * 1024
}

/// Machine-wide busy and idle CPU seconds (all cores) from /proc/stat.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .chain(std::iter::repeat(0.0))
        .take(8)
        .collect();
    let hz = clock_ticks_per_second();
    // user nice system idle iowait irq softirq steal
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    (busy / hz, (f[3] + f[4]) / hz)
}

/// CPU seconds of this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| stat_cpu(&t.path().join("stat")))
        .filter(|(comm, _)| comm.starts_with(prefix))
        .map(|(_, s)| s)
        .sum()
}

// ----- TLS --------------------------------------------------------------------------------------

fn make_tls_identity() -> TlsIdentity {
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = Identity::load_or_create(dir.path()).expect("identity");
    TlsIdentity::new(&identity).expect("tls identity")
}

/// The plain server: TLS accept, then echo until the client closes, then close_notify. Same
/// TLS configuration as the node (the library's acceptor), none of the node's protocol.
/// `framed`: echo whole messages through the node's per-connection structures instead.
async fn plain_server(listener: TcpListener, acceptor: TlsAcceptor, framed: bool) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(mut tls)) = tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            if framed {
                framed_session(tls).await;
                return;
            }
            let mut buf = [0u8; ECHO_BUF];
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tokio::time::timeout(IO_TIMEOUT, tls.shutdown()).await;
        });
    }
}

/// An echo session built like the node's peer task: tokio-util `Framed` with the message codec
/// and a 512-slot outbox of `Message`s in a `select!` loop, none of the node's protocol state.
async fn framed_session<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::SinkExt;
    let mut framed =
        tokio_util::codec::Framed::new(stream, noded::wire::MessageCodec::new(REGTEST.magic));
    let (outbox_tx, mut outbox) = tokio::sync::mpsc::channel::<Message>(512);
    loop {
        tokio::select! {
            queued = outbox.recv() => {
                let Some(message) = queued else { break };
                if framed.send(message).await.is_err() {
                    break;
                }
            }
            frame = framed.next() => match frame {
                Some(Ok(message)) => {
                    if outbox_tx.try_send(message).is_err() {
                        break;
                    }
                }
                _ => break,
            },
        }
    }
    let _ = tokio::time::timeout(IO_TIMEOUT, SinkExt::<Message>::close(&mut framed)).await;
}

/// `--echo-server`: the plain server in a process of its own, with the node's runtime settings.
/// Prints `port N`, serves until its stdin closes.
fn echo_server_main(framed: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("echo-tls")
        .build()
        .expect("runtime");
    let tls = make_tls_identity();
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let mut out = std::io::stdout();
        let _ = writeln!(out, "port {port}");
        let _ = out.flush();
        plain_server(listener, tls.acceptor(), framed).await;
    });
}

/// One accepted handshake: TCP connect, full TLS 1.3 handshake with client certificate, then
/// close_notify; done when the server's close arrives (so the server finished its side too).
async fn handshake_once(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(tls::server_name(), tcp).await?;
    tls.shutdown().await?;
    let mut buf = [0u8; 256];
    while tls.read(&mut buf).await? != 0 {}
    Ok(())
}

/// The cost of one `tls::peer_node_id` (webpki parse + ed25519 `verify_strict` of the
/// self-signature) on an established session; the node's verifier runs the same check.
async fn peer_node_id_cost(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<Duration> {
    const BATCHES: u32 = 40;
    const CALLS: u32 = 50;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect(tls::server_name(), tcp).await?;
    // The best batch: the machine is shared, and preemption only ever adds time.
    let mut cost = Duration::MAX;
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(tls::peer_node_id(std::hint::black_box(tls.get_ref().1)).ok());
        }
        cost = cost.min(t.elapsed() / CALLS);
    }
    tls.shutdown().await?;
    Ok(cost)
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn handshake_worker(
    addr: SocketAddr,
    connector: TlsConnector,
    phase: Arc<AtomicU8>,
) -> Tally {
    let mut tally = Tally::default();
    while phase.load(Ordering::Relaxed) != DONE {
        let error = match tokio::time::timeout(IO_TIMEOUT, handshake_once(addr, &connector)).await {
            Ok(Ok(())) => {
                if phase.load(Ordering::Relaxed) == MEASURING {
                    tally.ok += 1;
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tally.errors += 1;
        tally.first_error.get_or_insert(error);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tally
}

/// Totals of one or more measured slices against one server.
#[derive(Default)]
struct HandshakeRate {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
    machine_busy: f64,
    machine_idle: f64,
}

impl HandshakeRate {
    fn add(&mut self, other: HandshakeRate) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.seconds += other.seconds;
        self.server_cpu += other.server_cpu;
        self.client_cpu += other.client_cpu;
        self.machine_busy += other.machine_busy;
        self.machine_idle += other.machine_idle;
    }

    fn per_second(&self) -> f64 {
        self.ok as f64 / self.seconds.max(1e-9)
    }

    fn server_us_per_handshake(&self) -> f64 {
        self.server_cpu / self.ok.max(1) as f64 * 1e6
    }
}

/// One slice: `HS_IN_FLIGHT` handshake loops against `addr` for `HS_SLICE_WARMUP` then
/// `HS_SLICE`; `server_cpu` reads the server's CPU seconds.
fn handshake_slice(
    rt: &Runtime,
    addr: SocketAddr,
    connectors: &[TlsConnector],
    server_cpu: &dyn Fn() -> f64,
) -> HandshakeRate {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let tasks: Vec<_> = (0..HS_IN_FLIGHT)
        .map(|i| {
            let connector = connectors[i % connectors.len()].clone();
            rt.spawn(handshake_worker(addr, connector, phase.clone()))
        })
        .collect();
    std::thread::sleep(HS_SLICE_WARMUP);
    let (server0, client0, machine0) = (server_cpu(), threads_cpu("bench-client"), machine_cpu());
    let t0 = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    std::thread::sleep(HS_SLICE);
    phase.store(DONE, Ordering::Relaxed);
    let seconds = t0.elapsed().as_secs_f64();
    let (server1, client1, machine1) = (server_cpu(), threads_cpu("bench-client"), machine_cpu());
    let mut total = HandshakeRate {
        seconds,
        server_cpu: server1 - server0,
        client_cpu: client1 - client0,
        machine_busy: machine1.0 - machine0.0,
        machine_idle: machine1.1 - machine0.1,
        ..HandshakeRate::default()
    };
    rt.block_on(async {
        for task in tasks {
            match tokio::time::timeout(IO_TIMEOUT * 2, task).await {
                Ok(Ok(t)) => {
                    total.ok += t.ok;
                    total.errors += t.errors;
                    if total.first_error.is_none() {
                        total.first_error = t.first_error;
                    }
                }
                _ => total.errors += 1,
            }
        }
    });
    total
}

fn print_rate(label: &str, r: &HandshakeRate) {
    let per_s = |cpu: f64| cpu / r.seconds.max(1e-9);
    println!(
        "    {label}: {:.0} handshakes/s, {} errors{}; server CPU {:.2} cores = {:.0} us per \
         handshake (~{:.0}/s if it had all {} cores); client CPU {:.2} cores; other processes \
         {:.2} cores, idle {:.2} cores",
        r.per_second(),
        r.errors,
        r.first_error
            .as_ref()
            .map_or(String::new(), |e| format!(" (first: {e})")),
        per_s(r.server_cpu),
        r.server_us_per_handshake(),
        cores() as f64 / r.server_us_per_handshake() * 1e6,
        cores(),
        per_s(r.client_cpu),
        per_s((r.machine_busy - r.server_cpu - r.client_cpu).max(0.0)),
        per_s(r.machine_idle),
    );
}

// ----- peers ------------------------------------------------------------------------------------

/// Connects `n` TestPeers that complete VERSION/VERACK, 16 at a time.
async fn handshaked_peers(addr: SocketAddr, n: usize) -> Vec<TestPeer> {
    futures::stream::iter(0..n)
        .map(|_| async move {
            let mut peer = TestPeer::connect(addr, REGTEST.magic)
                .await
                .expect("TLS to the node");
            peer.try_handshake()
                .await
                .unwrap_or_else(|e| panic!("VERSION/VERACK: {e}"));
            peer
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Connects `n` TLS sessions to the echo server and has one message echoed on each.
async fn echo_peers(addr: SocketAddr, n: usize) -> Vec<TestPeer> {
    futures::stream::iter(0..n)
        .map(|_| async move {
            let mut peer = TestPeer::connect(addr, REGTEST.magic)
                .await
                .expect("TLS to the echo server");
            let version = peer.version();
            peer.send(version).await.expect("send to the echo server");
            match peer.recv().await {
                Some(Ok(Message::Version(_))) => {}
                other => panic!("echo server answered {other:?}"),
            }
            peer
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// RSS of a fresh echo server child idle, then holding `PEERS_A` and `PEERS_B` sessions.
fn echo_memory(rt: &Runtime, framed: bool) -> Memory {
    let echo = EchoChild::start(framed);
    std::thread::sleep(Duration::from_secs(1));
    let pid = echo.pid();
    let rss0 = rss(pid);
    let mut sessions = rt.block_on(echo_peers(echo.addr, PEERS_A));
    std::thread::sleep(Duration::from_secs(1));
    let rss_a = rss(pid);
    sessions.extend(rt.block_on(echo_peers(echo.addr, PEERS_B - PEERS_A)));
    std::thread::sleep(Duration::from_secs(1));
    let rss_b = rss(pid);
    {
        let _guard = rt.enter();
        drop(sessions);
    }
    Memory { rss0, rss_a, rss_b }
}

struct Memory {
    rss0: u64,
    rss_a: u64,
    rss_b: u64,
}

impl Memory {
    fn per_peer_a(&self) -> f64 {
        (self.rss_a as f64 - self.rss0 as f64) / PEERS_A as f64
    }
    fn per_peer_b(&self) -> f64 {
        (self.rss_b as f64 - self.rss0 as f64) / PEERS_B as f64
    }
    fn print(&self, label: &str) {
        println!(
            "    {label}: VmRSS {:.0} KiB at 0, {:.0} KiB at {PEERS_A}, {:.0} KiB at {PEERS_B} \
             -> {:.1} KiB per peer at {PEERS_B} ((rss{PEERS_B}-rss0)/{PEERS_B}), {:.1} KiB at \
             {PEERS_A}",
            kib(self.rss0 as f64),
            kib(self.rss_a as f64),
            kib(self.rss_b as f64),
            kib(self.per_peer_b()),
            kib(self.per_peer_a()),
        );
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// ----- main -------------------------------------------------------------------------------------

fn main() {
    if let Some(mode) = std::env::args().find(|a| a.starts_with("--echo-server")) {
        echo_server_main(mode == "--echo-server=framed");
        return;
    }
    let started = Instant::now();
    println!(
        "noded P2P bench: {} cores shared by the node(s), the plain server and this load \
         generator",
        cores()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .thread_name("bench-client")
        .build()
        .expect("client runtime");

    // ---- 1. TLS handshakes per second ----
    let identities: Vec<TlsIdentity> = (0..CLIENT_IDENTITIES)
        .map(|_| make_tls_identity())
        .collect();
    let connectors: Vec<TlsConnector> = identities.iter().map(|t| t.connector(None)).collect();
    let node = Node::start(&["--maxinboundperip", "1000"]);
    let quiet = Node::start(&["--maxinboundperip", "1000", "--log-level", "warn"]);
    let plain_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .thread_name("plain-tls")
        .build()
        .expect("plain server runtime");
    let plain_tls = make_tls_identity();
    let plain_listener = plain_rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind plain server");
    let plain_addr = plain_listener.local_addr().expect("plain addr");
    plain_rt.spawn(plain_server(plain_listener, plain_tls.acceptor(), false));
    std::thread::sleep(Duration::from_millis(300));
    let (node_pid, quiet_pid) = (node.pid(), quiet.pid());
    let (mut node_rate, mut quiet_rate, mut plain_rate) = Default::default();
    let mut node_log = 0;
    for _ in 0..HS_ROUNDS {
        let log0 = node.log_bytes.load(Ordering::Relaxed);
        HandshakeRate::add(
            &mut node_rate,
            handshake_slice(&rt, node.p2p_addr, &connectors, &|| process_cpu(node_pid)),
        );
        // Let the log drain before counting it.
        std::thread::sleep(Duration::from_millis(50));
        node_log += node.log_bytes.load(Ordering::Relaxed) - log0;
        HandshakeRate::add(
            &mut quiet_rate,
            handshake_slice(&rt, quiet.p2p_addr, &connectors, &|| process_cpu(quiet_pid)),
        );
        HandshakeRate::add(
            &mut plain_rate,
            handshake_slice(&rt, plain_addr, &connectors, &|| threads_cpu("plain-tls")),
        );
    }
    // Handshakes during warm-up are logged too but not counted: scale up by the time share.
    let node_handshakes =
        node_rate.ok as f64 * (HS_SLICE + HS_SLICE_WARMUP).as_secs_f64() / HS_SLICE.as_secs_f64();
    let log_per_hs = node_log as f64 / node_handshakes.max(1.0);
    drop(node);
    drop(quiet);
    let id_check = rt
        .block_on(peer_node_id_cost(plain_addr, &connectors[0]))
        .ok();
    plain_rt.shutdown_timeout(Duration::from_millis(200));
    let hs_ratio = node_rate.per_second() / plain_rate.per_second().max(1.0);

    println!(
        "\n[1] TLS handshakes accepted per second ({HS_IN_FLIGHT} in flight, \
         {CLIENT_IDENTITIES} client identities; each = TCP connect + TLS 1.3 mutual auth + \
         close_notify both ways; servers measured in turns, {HS_ROUNDS} x {:?} each after \
         {:?} warm-up):",
        HS_SLICE, HS_SLICE_WARMUP
    );
    print_rate("noded (default log level)", &node_rate);
    println!("        the node logged {log_per_hs:.0} bytes per handshake");
    print_rate("noded --log-level warn   ", &quiet_rate);
    print_rate("plain rustls server      ", &plain_rate);
    println!(
        "    node/plain: {:.2} in handshakes/s; {:.2} in handshakes per server CPU-second \
         (steadier on a shared machine) (target: node >= {HS_TARGET:.0}/s)",
        hs_ratio,
        plain_rate.server_us_per_handshake() / node_rate.server_us_per_handshake().max(1e-9)
    );
    if let Some(cost) = id_check {
        println!(
            "    one tls::peer_node_id (cert parse + ed25519 verify_strict): {:.1} us; the node \
             runs it in the verifier and again in run_inbound, the plain server only in the \
             verifier",
            cost.as_secs_f64() * 1e6
        );
    }

    // ---- 2. Memory per idle peer ----
    let node = Node::start(&["--maxinboundperip", "1000", "--maxconnections", "200"]);
    std::thread::sleep(Duration::from_secs(1));
    let pid = node.pid();
    let rss0 = rss(pid);
    let mut peers = rt.block_on(handshaked_peers(node.p2p_addr, PEERS_A));
    let reached_a = node.wait_connections_in(PEERS_A);
    std::thread::sleep(Duration::from_secs(1));
    let rss_a = rss(pid);
    peers.extend(rt.block_on(handshaked_peers(node.p2p_addr, PEERS_B - PEERS_A)));
    let reached_b = node.wait_connections_in(PEERS_B);
    std::thread::sleep(Duration::from_secs(1));
    let rss_b = rss(pid);
    let node_hwm = status_field(pid, "VmHWM:") * 1024;
    let node_threads = status_field(pid, "Threads:");
    let node_mem = Memory { rss0, rss_a, rss_b };
    {
        let _guard = rt.enter();
        drop(peers);
    }
    drop(node);

    let echo_mem = echo_memory(&rt, false);
    let framed_mem = echo_memory(&rt, true);

    println!(
        "\n[2] Resident memory per idle peer (VERSION/VERACK done, then idle; RSS read 1 s after \
         the count is reached):"
    );
    if !(reached_a && reached_b) {
        println!(
            "    WARNING: getinfo connections_in did not reach {PEERS_A} / {PEERS_B} in time \
             ({reached_a} / {reached_b})"
        );
    }
    node_mem.print("noded            ");
    println!(
        "        node VmHWM {:.0} KiB, {node_threads} threads",
        kib(node_hwm as f64)
    );
    echo_mem.print(&format!("plain echo server ({ECHO_BUF} B task buffer)"));
    framed_mem.print("echo with Framed + 512-slot outbox");
    println!(
        "    node - plain: {:.1} KiB per peer at {PEERS_B}, of which Framed + outbox {:.1} KiB \
         (target: node <= {:.0} KiB per peer)",
        kib(node_mem.per_peer_b() - echo_mem.per_peer_b()),
        kib(framed_mem.per_peer_b() - echo_mem.per_peer_b()),
        kib(MEM_TARGET_BYTES)
    );
    println!(
        "    for scale: size_of::<Message>() = {} B, so a tokio mpsc block (32 slots) of the \
         512-slot outbox = {} B; tokio-util Framed starts with 8 KiB read + 8 KiB write buffers",
        std::mem::size_of::<Message>(),
        32 * std::mem::size_of::<Message>()
    );

    // ---- 3. RPC latency during a connection flood ----
    let node = Node::start(&["--maxinboundperip", "1000"]);
    std::thread::sleep(Duration::from_millis(300));
    let flooding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // getinfo latencies before and during the flood, and failed calls.
    let poller = {
        let (addr, cookie) = (node.rpc_addr, node.cookie.clone());
        let (flooding, stop) = (flooding.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut before, mut during, mut errors) = (Vec::new(), Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let flood = flooding.load(Ordering::Relaxed);
                let t = Instant::now();
                let ok = noded::rpc::client::call(addr, &cookie, "getinfo", serde_json::json!([]))
                    .is_ok();
                let took = t.elapsed();
                errors += u64::from(!ok);
                if flood {
                    during.push(took);
                } else {
                    before.push(took);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (before, during, errors)
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    let release = CancellationToken::new();
    let p2p = node.p2p_addr;
    let flood_start = Instant::now();
    flooding.store(true, Ordering::Relaxed);
    let tls_tasks: Vec<_> = (0..FLOOD_CONNS / 2)
        .map(|_| {
            let release = release.clone();
            rt.spawn(async move {
                let t = Instant::now();
                let result = tokio::time::timeout(FLOOD_DEADLINE, async {
                    let mut peer = TestPeer::connect(p2p, REGTEST.magic)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    peer.try_handshake().await?;
                    Ok::<_, String>(peer)
                })
                .await
                .unwrap_or_else(|_| Err("timed out".to_string()));
                let outcome = result
                    .as_ref()
                    .map(|_| t.elapsed())
                    .map_err(|e| (t.elapsed(), e.clone()));
                tokio::spawn(async move {
                    let _held = result;
                    release.cancelled().await;
                });
                outcome
            })
        })
        .collect();
    let raw_tasks: Vec<_> = (0..FLOOD_CONNS / 2)
        .map(|i| {
            let release = release.clone();
            rt.spawn(async move {
                let Ok(mut tcp) = TcpStream::connect(p2p).await else {
                    return None;
                };
                if i % 2 == 1 {
                    let garbage: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
                    let _ = tcp.write_all(&garbage).await;
                }
                let t = Instant::now();
                let mut buf = [0u8; 1024];
                tokio::select! {
                    _ = release.cancelled() => None,
                    _ = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} } => {
                        Some(t.elapsed())
                    }
                }
            })
        })
        .collect();
    let tls_results: Vec<Result<Duration, (Duration, String)>> = rt.block_on(async {
        let mut out = Vec::new();
        for task in tls_tasks {
            out.push(
                task.await
                    .unwrap_or_else(|e| Err((flood_start.elapsed(), e.to_string()))),
            );
        }
        out
    });
    std::thread::sleep(Duration::from_secs(1));
    let flood_time = flood_start.elapsed();
    let connections_in = node.connections_in();
    flooding.store(false, Ordering::Relaxed);
    release.cancel();
    let raw_closed: Vec<Option<Duration>> = rt.block_on(async {
        let mut out = Vec::new();
        for task in raw_tasks {
            out.push(task.await.ok().flatten());
        }
        out
    });
    stop.store(true, Ordering::Relaxed);
    let (mut base, mut during, rpc_errors) = poller.join().expect("getinfo poller");
    drop(node);

    base.sort();
    during.sort();
    let mut done: Vec<Duration> = tls_results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    done.sort();
    let failed: Vec<&(Duration, String)> = tls_results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    let within_1s = done
        .iter()
        .filter(|d| **d <= Duration::from_secs(1))
        .count();
    let silent_closed = raw_closed.iter().step_by(2).flatten().count();
    let garbage_closed = raw_closed.iter().skip(1).step_by(2).flatten().count();
    let rpc_max = during.last().copied().unwrap_or_default();
    let rpc_p99 = quantile(&during, 0.99);
    println!(
        "\n[3] getinfo latency while {FLOOD_CONNS} connections hit the P2P port at once \
         ({} TLS + VERSION/VERACK, {} silent TCP, {} TCP + 1 KiB garbage); flood phase {:.1} s:",
        FLOOD_CONNS / 2,
        FLOOD_CONNS / 4,
        FLOOD_CONNS / 4,
        flood_time.as_secs_f64()
    );
    println!(
        "    during: {} calls, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; before: {} calls, p99 \
         {:.2} ms, max {:.2} ms; {rpc_errors} RPC errors (target: within {} ms)",
        during.len(),
        ms(quantile(&during, 0.5)),
        ms(rpc_p99),
        ms(rpc_max),
        base.len(),
        ms(quantile(&base, 0.99)),
        ms(base.last().copied().unwrap_or_default()),
        RPC_TARGET.as_millis()
    );
    println!(
        "    TLS peers: {} of {} completed VERSION/VERACK ({within_1s} within 1 s; median {:.0} \
         ms, max {:.0} ms after the flood began); {} failed{}",
        done.len(),
        FLOOD_CONNS / 2,
        ms(quantile(&done, 0.5)),
        ms(done.last().copied().unwrap_or_default()),
        failed.len(),
        failed.first().map_or(String::new(), |(t, e)| format!(
            " (first: after {:.0} ms: {e})",
            ms(*t)
        )),
    );
    println!(
        "    node closed {silent_closed} of {} silent and {garbage_closed} of {} garbage \
         connections before the end; getinfo connections_in at the end: {}",
        FLOOD_CONNS / 4,
        FLOOD_CONNS / 4,
        connections_in.map_or("?".to_string(), |c| c.to_string())
    );
    let slow = tls_results.len() - within_1s;
    if slow > 0 {
        println!(
            "    note: {slow} TLS peers took over 1 s or failed: the node takes a TLS slot (a \
             semaphore, acquired before the ClientHello arrives) for each accepted connection, \
             and silent ones keep theirs until the TLS handshake timeout"
        );
    }

    rt.shutdown_timeout(Duration::from_secs(1));

    // ---- summary ----
    let verdict = |ok: bool| if ok { "ok  " } else { "MISS" };
    let mem_ok =
        node_mem.per_peer_b() <= MEM_TARGET_BYTES && node_mem.per_peer_a() <= MEM_TARGET_BYTES;
    let rpc_ok = rpc_max <= RPC_TARGET && rpc_errors == 0;
    println!(
        "\n==== summary ({:.1} s) ====",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{} TLS handshakes/s accepted by noded: {:.0}/s (target >= {HS_TARGET:.0}/s); plain \
         rustls {:.0}/s; node/plain {:.2}",
        verdict(node_rate.per_second() >= HS_TARGET),
        node_rate.per_second(),
        plain_rate.per_second(),
        hs_ratio
    );
    println!(
        "{} memory per idle peer: {:.1} KiB at {PEERS_B}, {:.1} KiB at {PEERS_A} (target <= {:.0} \
         KiB); plain echo {:.1} KiB at {PEERS_B}",
        verdict(mem_ok),
        kib(node_mem.per_peer_b()),
        kib(node_mem.per_peer_a()),
        kib(MEM_TARGET_BYTES),
        kib(echo_mem.per_peer_b())
    );
    println!(
        "{} getinfo during a {FLOOD_CONNS}-connection flood: p99 {:.2} ms, max {:.2} ms \
         (target <= {} ms); {} of {} TLS peers got through, {within_1s} within 1 s",
        verdict(rpc_ok),
        ms(rpc_p99),
        ms(rpc_max),
        RPC_TARGET.as_millis(),
        done.len(),
        FLOOD_CONNS / 2
    );
}
