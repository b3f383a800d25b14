//! RPC server figures of a real `noded` process on loopback: time from spawn to the first
//! answered `getinfo` on an empty datadir, idle resident memory, `getinfo` throughput over
//! HTTP/1.1 keep-alive (and pipelined) connections driven by a small load generator in this
//! process, and a clean exit on `stop`.
//!
//! Run: `cargo bench --bench rpc`. Figures are printed next to their targets; nothing here
//! fails on a slow machine. The load generator shares the machine's cores with the server, so
//! throughput is a lower bound of what the server alone could do.

#[path = "support/cpu.rs"]
mod cpu;

use base64::Engine;
use cpu::clock_ticks_per_second;
use noded::datadir::read_rpc_endpoint;
use noded::rpc::client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_noded");
/// Timed starts for the RPC-ready figure (after one untimed start that warms the page cache).
const READY_RUNS: usize = 20;
/// Longest wait for anything the node should do.
const DEADLINE: Duration = Duration::from_secs(10);
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);
/// Threads of the load generator's runtime (override: `RPC_BENCH_LOADER_THREADS`); the
/// server's runtime has one per core (tokio's default; `TOKIO_WORKER_THREADS` is passed on).
const LOADER_THREADS: usize = 1;
const KEEPALIVE_CONNS: &[usize] = &[16, 32, 64];
/// (connections, requests in flight per connection)
const PIPELINED: &[(usize, usize)] = &[(16, 8), (32, 16)];
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `noded` and its datadir; the process is killed when this is dropped, whatever
/// path the bench takes (panic included), and only then is the datadir removed.
struct Node {
    child: Child,
    rpc_addr: SocketAddr,
    cookie: String,
    startup_ms: mpsc::Receiver<u64>,
    datadir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Spawns a node on a fresh datadir and waits until `getinfo` answers; returns it and the
    /// time from just before spawn to that first answer.
    fn start() -> (Node, Duration) {
        let datadir = tempfile::tempdir().expect("tempdir");
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
            "--log-level",
            "info",
        ])
        .arg("--datadir")
        .arg(datadir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NODED_") {
                cmd.env_remove(key);
            }
        }

        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn noded");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, startup_ms) = mpsc::channel();
        // Reads the log for `startup_ms=` and drains it so the node never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("startup_ms=").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(ms) = digits.parse() {
                        let _ = tx.send(ms);
                    }
                }
            }
        });
        let mut node = Node {
            child,
            rpc_addr: "127.0.0.1:0".parse().unwrap(),
            cookie: String::new(),
            startup_ms,
            datadir,
        };
        loop {
            if let Ok((cookie, addr)) = read_rpc_endpoint(node.datadir.path()) {
                if client::call(addr, &cookie, "getinfo", serde_json::json!([])).is_ok() {
                    let ready = started.elapsed();
                    node.rpc_addr = addr;
                    node.cookie = cookie;
                    return (node, ready);
                }
            }
            if let Some(status) = node.child.try_wait().expect("try_wait") {
                panic!("noded exited with {status} before RPC was ready");
            }
            assert!(
                started.elapsed() < DEADLINE,
                "noded not ready after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `startup_ms` the node logged, if it did within a short wait.
    fn logged_startup_ms(&self) -> Option<u64> {
        self.startup_ms.recv_timeout(Duration::from_secs(1)).ok()
    }

    /// Calls `stop` and waits for the process to exit; returns its status and the time from the
    /// call to the exit.
    fn stop(mut self) -> (Result<ExitStatus, String>, Duration) {
        let t = Instant::now();
        match client::call(self.rpc_addr, &self.cookie, "stop", serde_json::json!([])) {
            Ok(reply) if reply == "noded stopping" => {}
            Ok(other) => return (Err(format!("unexpected stop reply {other}")), t.elapsed()),
            Err(e) => return (Err(format!("stop failed: {e}")), t.elapsed()),
        }
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return (Ok(status), t.elapsed()),
                Ok(None) if t.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(1)),
                Ok(None) => return (Err(format!("no exit after {DEADLINE:?}")), t.elapsed()),
                Err(e) => return (Err(format!("wait failed: {e}")), t.elapsed()),
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (min, median, max) of a non-empty list.
fn spread<T: PartialOrd + Copy>(mut v: Vec<T>) -> (T, T, T) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// `VmRSS` and `VmHWM` of a process, in MB.
fn memory_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Context switches (voluntary and not) of all threads of a process.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// User plus system CPU time of this process, in seconds.
fn own_cpu_seconds() -> f64 {
    cpu::stat_cpu(Path::new("/proc/self/stat")).map_or(0.0, |(_, s)| s)
}

fn machine_cpu_seconds() -> [f64; 3] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    // user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .chain(std::iter::repeat(0.0))
        .take(8)
        .collect();
    let hz = clock_ticks_per_second();
    [(f[3] + f[4]) / hz, (f[5] + f[6]) / hz, f[7] / hz]
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A complete `getinfo` request as bytes, keep-alive (HTTP/1.1 default), with credentials.
fn getinfo_request(addr: SocketAddr, cookie: &str) -> Vec<u8> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo","params":[]}"#;
    let auth = base64::engine::general_purpose::STANDARD.encode(cookie);
    format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one HTTP response at the start of `data`: `Ok(None)` if incomplete, else its length
/// and whether it is a 200 whose body holds a JSON-RPC `"result"`.
fn parse_response(data: &[u8]) -> std::io::Result<Option<(usize, bool)>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let Some(head_len) = find(data, b"\r\n\r\n") else {
        return if data.len() > 64 * 1024 {
            Err(bad("no end of HTTP header in 64 KiB"))
        } else {
            Ok(None)
        };
    };
    let head = &data[..head_len];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or(b"");
    let status_ok = status_line.starts_with(b"HTTP/1.1 200");
    let mut content_length = None;
    for line in lines {
        const NAME: &[u8] = b"content-length:";
        if line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            content_length = std::str::from_utf8(&line[NAME.len()..])
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        }
    }
    let body_len = content_length.ok_or_else(|| bad("response without Content-Length"))?;
    let total = head_len + 4 + body_len;
    if data.len() < total {
        return Ok(None);
    }
    let body = &data[head_len + 4..total];
    Ok(Some((
        total,
        status_ok && find(body, b"\"result\"").is_some(),
    )))
}

/// One persistent connection of the load generator with its receive buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        })
    }

    /// Reads the next full response; `Ok(true)` if it was a successful `getinfo` answer.
    async fn response(&mut self) -> std::io::Result<bool> {
        loop {
            if let Some((len, ok)) = parse_response(&self.buf[self.start..self.end])? {
                self.start += len;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                return Ok(ok);
            }
            if self.buf.len() - self.end < 16 * 1024 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() - self.end < 16 * 1024 {
                    self.buf.resize(self.buf.len() * 2, 0);
                }
            }
            let read = self.stream.read(&mut self.buf[self.end..]);
            let n = tokio::time::timeout(IO_TIMEOUT, read)
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.end += n;
        }
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

#[derive(Default, Clone, Copy)]
struct Tally {
    ok: u64,
    errors: u64,
}

/// One connection's loop: send `depth` requests in one write, read `depth` responses, repeat
/// until `DONE`; counts what completes while `MEASURING`. Reconnects after an I/O error.
async fn drive(addr: SocketAddr, batch: Arc<Vec<u8>>, depth: usize, phase: Arc<AtomicU8>) -> Tally {
    let mut tally = Tally::default();
    let mut conn = None;
    while phase.load(Ordering::Relaxed) != DONE {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(addr).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let result = async {
            c.stream.write_all(&batch).await?;
            let mut ok = 0;
            for _ in 0..depth {
                ok += u64::from(c.response().await?);
            }
            Ok::<_, std::io::Error>(ok)
        }
        .await;
        match result {
            Ok(ok) => {
                if phase.load(Ordering::Relaxed) == MEASURING {
                    tally.ok += ok;
                }
                tally.errors += depth as u64 - ok;
            }
            Err(_) => {
                tally.errors += 1;
                conn = None;
            }
        }
    }
    tally
}

struct LoadResult {
    rps: f64,
    errors: u64,
    server_cores: f64,
    loader_cores: f64,
    /// Machine-wide idle, irq+softirq and steal, in cores.
    machine_cores: [f64; 3],
    server_switches_per_req: f64,
    server_cpu_s_per_100k: f64,
}

/// Runs `conns` connections with `depth` requests in flight each for `WARMUP` then `MEASURE`.
fn load(
    rt: &tokio::runtime::Runtime,
    node: &Node,
    request: &[u8],
    conns: usize,
    depth: usize,
) -> LoadResult {
    let batch = Arc::new(request.repeat(depth));
    let phase = Arc::new(AtomicU8::new(WARMING));
    let tasks: Vec<_> = (0..conns)
        .map(|_| rt.spawn(drive(node.rpc_addr, batch.clone(), depth, phase.clone())))
        .collect();
    std::thread::sleep(WARMUP);
    let server_pid = node.pid();
    let switches0 = context_switches(node.pid());
    let (server0, loader0, machine0) = (
        cpu::process_cpu(server_pid),
        own_cpu_seconds(),
        machine_cpu_seconds(),
    );
    let t0 = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    std::thread::sleep(MEASURE);
    phase.store(DONE, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let switches1 = context_switches(node.pid());
    let (server1, loader1, machine1) = (
        cpu::process_cpu(server_pid),
        own_cpu_seconds(),
        machine_cpu_seconds(),
    );
    let mut total = Tally::default();
    rt.block_on(async {
        for task in tasks {
            match tokio::time::timeout(IO_TIMEOUT * 2, task).await {
                Ok(Ok(t)) => {
                    total.ok += t.ok;
                    total.errors += t.errors;
                }
                _ => total.errors += 1,
            }
        }
    });
    let rps = total.ok as f64 / elapsed;
    LoadResult {
        rps,
        errors: total.errors,
        server_cores: (server1 - server0) / elapsed,
        loader_cores: (loader1 - loader0) / elapsed,
        machine_cores: [0, 1, 2].map(|i| (machine1[i] - machine0[i]) / elapsed),
        server_switches_per_req: (switches1 - switches0) as f64 / total.ok.max(1) as f64,
        server_cpu_s_per_100k: if total.ok > 0 {
            (server1 - server0) / total.ok as f64 * 1e5
        } else {
            f64::NAN
        },
    }
}

fn print_load(label: &str, r: &LoadResult) {
    let [idle, irq, steal] = r.machine_cores;
    // Softirq time is partly charged to the processes too, so this is approximate.
    let other = (cores() as f64 - r.server_cores - r.loader_cores - idle - irq - steal).max(0.0);
    // What the server and loader cost per request, extrapolated to all cores busy with them.
    let both_per_req = (r.server_cores + r.loader_cores) / r.rps;
    println!(
        "{label}: {:.0} req/s, {} errors (target >= 100,000 req/s; loader shares the {} cores)\n    \
         CPU in cores: server {:.2}, loader {:.2}, softirq {irq:.2}, steal {steal:.2}, \
         other processes {other:.2}, idle {idle:.2}\n    \
         server {:.2} CPU-s per 100k req (= {:.0} req/s per server core), {:.2} context switches \
         per req; if server and loader had all {} cores: ~{:.0} req/s",
        r.rps,
        r.errors,
        cores(),
        r.server_cores,
        r.loader_cores,
        r.server_cpu_s_per_100k,
        1e5 / r.server_cpu_s_per_100k,
        r.server_switches_per_req,
        cores(),
        cores() as f64 / both_per_req,
    );
    if other > 0.2 {
        println!(
            "    note: other processes used {other:.2} cores during this measurement; req/s is \
             understated"
        );
    }
}

/// Runs `wrk` against the node if it is installed; prints its requests/s.
fn wrk(node: &Node, dir: &Path, conns: usize) {
    let Ok(out) = Command::new("which").arg("wrk").output() else {
        println!("wrk: not available, skipped");
        return;
    };
    if !out.status.success() {
        println!("wrk: not installed, skipped");
        return;
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(&node.cookie);
    let script = dir.join("getinfo.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getinfo\",\"params\":[]}}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Basic {auth}\"\n"
    );
    if std::fs::write(&script, lua).is_err() {
        println!("wrk: cannot write its script, skipped");
        return;
    }
    let output = Command::new("wrk")
        .args(["-t", "1", "-c", &conns.to_string(), "-d", "3s", "-s"])
        .arg(&script)
        .arg(format!("http://{}/", node.rpc_addr))
        .stdin(Stdio::null())
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .map(str::trim);
    let non2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or("0", str::trim);
    match rps {
        Some(rps) => println!(
            "getinfo wrk -t1 -c{conns}: {rps} req/s, {non2xx} non-2xx (target >= 100,000 req/s)"
        ),
        None => println!("wrk: no figure in its output, skipped"),
    }
}

fn main() {
    println!(
        "noded RPC bench: {} cores shared by the node and this load generator",
        cores()
    );

    // 1. RPC-ready latency on an empty datadir.
    let (warm, warm_ready) = Node::start();
    let _ = warm.stop();
    let mut ready = Vec::new();
    let mut logged = Vec::new();
    let mut stop_times = Vec::new();
    let mut stop_failures = Vec::new();
    for _ in 0..READY_RUNS {
        let (node, t) = Node::start();
        ready.push(ms(t));
        if let Some(startup) = node.logged_startup_ms() {
            logged.push(startup);
        }
        let (status, took) = node.stop();
        stop_times.push(ms(took));
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => stop_failures.push(s.to_string()),
            Err(e) => stop_failures.push(e),
        }
    }
    let (lo, mid, hi) = spread(ready);
    println!(
        "rpc-ready: min {lo:.1} ms, median {mid:.1} ms, max {hi:.1} ms over {READY_RUNS} starts \
         (target < 100 ms; first, untimed start: {:.1} ms)",
        ms(warm_ready)
    );
    if logged.is_empty() {
        println!("node startup_ms (logged): not found in its log");
    } else {
        let (lo, mid, hi) = spread(logged);
        println!("node startup_ms (logged): min {lo} ms, median {mid} ms, max {hi} ms");
    }
    let (lo, mid, hi) = spread(stop_times);
    println!(
        "stop-to-exit: min {lo:.1} ms, median {mid:.1} ms, max {hi:.1} ms; {} of {READY_RUNS} \
         exits not status 0 {stop_failures:?}",
        stop_failures.len()
    );

    // 2. Idle resident memory.
    let (node, _) = Node::start();
    std::thread::sleep(Duration::from_secs(1));
    let (rss, hwm) = memory_mb(node.pid());
    println!(
        "idle memory: VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB, {} threads (target < 20 MB)",
        thread_count(node.pid())
    );

    // 3. getinfo throughput.
    let loader_threads = std::env::var("RPC_BENCH_LOADER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LOADER_THREADS);
    println!(
        "load generator: {loader_threads} thread(s), {WARMUP:?} warm-up then {MEASURE:?} per line; \
         node process: {} threads",
        thread_count(node.pid())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(loader_threads)
        .enable_all()
        .build()
        .expect("loader runtime");
    let request = getinfo_request(node.rpc_addr, &node.cookie);
    for &conns in KEEPALIVE_CONNS {
        let r = load(&rt, &node, &request, conns, 1);
        print_load(&format!("getinfo keep-alive, {conns} conns"), &r);
    }
    for &(conns, depth) in PIPELINED {
        let r = load(&rt, &node, &request, conns, depth);
        print_load(
            &format!(
                "getinfo pipelined x{depth}, {conns} conns ({} in flight)",
                conns * depth
            ),
            &r,
        );
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    wrk(&node, node.datadir.path(), 32);
    let (rss, hwm) = memory_mb(node.pid());
    println!("memory after load: VmRSS {rss:.1} MB, VmHWM {hwm:.1} MB");

    // 4. Clean stop.
    let (status, took) = node.stop();
    match status {
        Ok(s) => println!(
            "stop: exited with {s} after {:.1} ms (expected status 0: {})",
            ms(took),
            if s.success() { "ok" } else { "NOT OK" }
        ),
        Err(e) => println!("stop: FAILED: {e} (process killed)"),
    }
}
