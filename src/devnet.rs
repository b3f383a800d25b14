//! `noded devnet`: a local regtest network of N nodes on loopback, for trying things out.
//!
//! Owns the child `noded` processes it starts: their datadirs under one root, their log
//! files, wiring them into a topology over RPC (`addnode … add`), and stopping them all
//! when it is interrupted. Must never touch a node's state other than through its command
//! line and its RPC, and never leave a node running when it exits.

use crate::datadir::{read_rpc_endpoint, COOKIE_FILE, RPC_ADDR_FILE};
use crate::rpc::client::{self, ClientError};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Nodes one devnet may run: plenty for a laptop, and a mesh of it is ~1,200 connections.
pub const MAX_NODES: usize = 50;
/// How long a node may take to open its RPC port, and the network to connect, before the
/// devnet gives up (a debug build on a loaded machine needs a few seconds).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the devnet looks at its nodes' files and processes while it waits.
const POLL: Duration = Duration::from_millis(10);
/// How often it asks every node over RPC whether its links are up: each round is one RPC
/// connection per node, so a 50-node mesh costs 500 connections a second, not thousands.
const LINK_POLL: Duration = Duration::from_millis(100);

/// Set by SIGINT, SIGTERM or SIGHUP: the devnet stops its nodes and exits, whether they are
/// still starting or running.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: all a signal handler may safely do.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches the signals that end the devnet, before any node is started, so none can be
/// left behind by a signal that comes during start-up.
fn catch_signals() -> Result<(), DevnetError> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
        let previous = unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
            )
        };
        if previous == libc::SIG_ERR {
            return Err(DevnetError::Signal(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// node1 – node2 – … – nodeN
    Line,
    /// a line whose ends are joined
    Ring,
    /// every node connected to every other
    Mesh,
}

impl Topology {
    /// The links to make, as (dialler, listener) indexes.
    pub fn links(self, nodes: usize) -> Vec<(usize, usize)> {
        let line = (1..nodes).map(|i| (i - 1, i));
        match self {
            Topology::Line => line.collect(),
            Topology::Ring if nodes > 2 => line.chain([(nodes - 1, 0)]).collect(),
            Topology::Ring => line.collect(),
            Topology::Mesh => (0..nodes)
                .flat_map(|i| (i + 1..nodes).map(move |j| (i, j)))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("--nodes must be between 1 and {MAX_NODES}, not {0}")]
    NodeCount(usize),
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node {index}'s datadir {datadir} is in use by a running noded (another devnet on this --datadir-root?); stop it or choose another --datadir-root")]
    InUse { index: usize, datadir: PathBuf },
    #[error(transparent)]
    Datadir(crate::datadir::DataDirError),
    #[error("another devnet is running on {0} (it holds {0}/{LOCK_FILE}); stop it or choose another --datadir-root", LOCK_FILE = crate::datadir::LOCK_FILE)]
    RootInUse(PathBuf),
    #[error("cannot find the noded executable to start nodes with: {0}")]
    Executable(std::io::Error),
    #[error("cannot start node {index}: {source}")]
    Spawn {
        index: usize,
        source: std::io::Error,
    },
    #[error("node {index} exited during start-up ({status}); its log: {log}")]
    Exited {
        index: usize,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("node {index} did not open its RPC port within {secs} s; its log: {log}", secs = START_TIMEOUT.as_secs())]
    RpcTimeout { index: usize, log: PathBuf },
    #[error("node {index} did not answer over RPC: {source}")]
    Rpc { index: usize, source: ClientError },
    #[error("node {index} has no P2P address")]
    NoP2p { index: usize },
    #[error("the nodes did not connect within {secs} s: {detail}", secs = START_TIMEOUT.as_secs())]
    ConnectTimeout { detail: String },
    #[error("cannot catch Ctrl-C: {0}")]
    Signal(std::io::Error),
    #[error("interrupted during start-up; every node was stopped")]
    Interrupted,
    #[error("node {index} stopped by itself ({status}); its log: {log}")]
    Died {
        index: usize,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("{0} node(s) did not stop cleanly")]
    UncleanStop(usize),
}

/// What `noded devnet` was asked for.
pub struct DevnetOptions {
    pub nodes: usize,
    pub topology: Topology,
    pub root: Option<PathBuf>,
}

/// One running node of the devnet.
struct DevNode {
    index: usize,
    child: Child,
    datadir: PathBuf,
    log: PathBuf,
    rpc: Option<(String, SocketAddr)>,
    p2p: Option<SocketAddr>,
}

impl DevNode {
    fn call(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, DevnetError> {
        let (cookie, addr) = self.rpc.as_ref().expect("RPC is up before calls");
        client::call(*addr, cookie, method, params).map_err(|source| DevnetError::Rpc {
            index: self.index,
            source,
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The devnet's nodes; whatever happens, they are stopped when this is dropped.
struct Nodes(Vec<DevNode>);

impl Drop for Nodes {
    fn drop(&mut self) {
        stop_all(&mut self.0);
    }
}

/// Sends SIGTERM to every node still running and waits for each (killing it after
/// `STOP_TIMEOUT`); returns how many did not exit 0.
fn stop_all(nodes: &mut [DevNode]) -> usize {
    for node in nodes.iter_mut() {
        if node.exited().is_none() {
            // SAFETY: kill(2) on the pid of a child this process spawned and has not reaped.
            unsafe {
                libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let mut unclean = 0;
    let deadline = Instant::now() + STOP_TIMEOUT;
    for node in nodes.iter_mut() {
        let status = loop {
            if let Some(status) = node.exited() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = node.child.kill();
                let _ = node.child.wait();
                break None;
            }
            std::thread::sleep(POLL);
        };
        if !status.is_some_and(|s| s.success()) {
            unclean += 1;
        }
    }
    unclean
}

/// Runs the devnet until SIGINT or SIGTERM, printing its table to stdout.
pub fn run(options: DevnetOptions) -> Result<(), DevnetError> {
    if options.nodes == 0 || options.nodes > MAX_NODES {
        return Err(DevnetError::NodeCount(options.nodes));
    }
    let started = Instant::now();
    catch_signals()?;
    let root = options.root.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("noded-devnet-{}", std::process::id()))
    });
    let exe = std::env::current_exe().map_err(DevnetError::Executable)?;
    // Held for the devnet's life: a second devnet on this root stops here, even one started
    // before this one's nodes have taken their own locks.
    let _root_lock = match crate::datadir::DataDir::open(&root) {
        Ok(lock) => lock,
        Err(crate::datadir::DataDirError::Locked(_)) => {
            return Err(DevnetError::RootInUse(root));
        }
        Err(other) => return Err(DevnetError::Datadir(other)),
    };
    // Before any node's files are touched: a node already running on one of the datadirs
    // (started by hand) keeps its cookie and log (starting a node clears the one and
    // truncates the other).
    for index in 1..=options.nodes {
        let datadir = node_datadir(&root, index);
        match crate::datadir::DataDir::open(&datadir) {
            Ok(_) => {} // free; its lock is released at once, for the node to take
            Err(crate::datadir::DataDirError::Locked(_)) => {
                return Err(DevnetError::InUse { index, datadir });
            }
            Err(other) => return Err(DevnetError::Datadir(other)),
        }
    }
    let mut nodes = Nodes(Vec::with_capacity(options.nodes));
    for index in 1..=options.nodes {
        nodes.0.push(spawn_node(&exe, &root, index, options.nodes)?);
    }
    for node in nodes.0.iter_mut() {
        wait_for_rpc(node)?;
    }
    for node in nodes.0.iter_mut() {
        let info = node.call("getinfo", serde_json::json!([]))?;
        node.p2p = info["p2p_addr"].as_str().and_then(|a| a.parse().ok());
        if node.p2p.is_none() {
            return Err(DevnetError::NoP2p { index: node.index });
        }
    }
    let links = options.topology.links(options.nodes);
    for &(from, to) in &links {
        let target = nodes.0[to].p2p.expect("read above").to_string();
        nodes.0[from].call("addnode", serde_json::json!([target, "add"]))?;
    }
    wait_for_links(&mut nodes.0, &links)?;
    let elapsed = started.elapsed();

    print_table(&nodes.0, options.topology, &links, &root, elapsed);
    wait_for_interrupt(&mut nodes.0)?;
    println!("stopping {} nodes…", nodes.0.len());
    let unclean = stop_all(&mut nodes.0);
    if unclean > 0 {
        return Err(DevnetError::UncleanStop(unclean));
    }
    println!(
        "all nodes stopped; datadirs and logs kept in {}",
        root.display()
    );
    Ok(())
}

/// Node `index`'s datadir under the devnet's root.
fn node_datadir(root: &Path, index: usize) -> PathBuf {
    root.join(format!("node{index}"))
}

fn spawn_node(exe: &Path, root: &Path, index: usize, nodes: usize) -> Result<DevNode, DevnetError> {
    let datadir = node_datadir(root, index);
    std::fs::create_dir_all(&datadir).map_err(|source| DevnetError::Create {
        path: datadir.clone(),
        source,
    })?;
    // A node killed earlier leaves these behind; the fresh ones say this run's node is up.
    for name in [COOKIE_FILE, RPC_ADDR_FILE] {
        let _ = std::fs::remove_file(datadir.join(name));
    }
    let log = datadir.join("noded.log");
    let log_file = File::create(&log).map_err(|source| DevnetError::Create {
        path: log.clone(),
        source,
    })?;
    let stderr = log_file.try_clone().map_err(|source| DevnetError::Create {
        path: log.clone(),
        source,
    })?;
    let mut command = Command::new(exe);
    // The devnet's own settings, not whatever the shell has for a real node.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NODED_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--network", "regtest", "--bind", "127.0.0.1", "--port", "0"])
        .args(["--rpcbind", "127.0.0.1", "--rpcport", "0"])
        .args(["--discover-lan", "false"])
        // Every node is on 127.0.0.1: a mesh needs an inbound slot per other node from it.
        .args(["--maxinboundperip", &nodes.max(16).to_string()])
        .arg("--datadir")
        .arg(&datadir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        // Its own process group: Ctrl-C reaches the devnet only, which stops the nodes in
        // order and reports how they ended.
        .process_group(0);
    // SAFETY: prctl in the child between fork and exec, touching no memory of the parent's.
    // A devnet killed outright (SIGKILL, a crash) takes its nodes with it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = command
        .spawn()
        .map_err(|source| DevnetError::Spawn { index, source })?;
    Ok(DevNode {
        index,
        child,
        datadir,
        log,
        rpc: None,
        p2p: None,
    })
}

fn wait_for_rpc(node: &mut DevNode) -> Result<(), DevnetError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if interrupted() {
            return Err(DevnetError::Interrupted);
        }
        if let Ok(endpoint) = read_rpc_endpoint(&node.datadir) {
            node.rpc = Some(endpoint);
            return Ok(());
        }
        if let Some(status) = node.exited() {
            return Err(DevnetError::Exited {
                index: node.index,
                status,
                log: node.log.clone(),
            });
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::RpcTimeout {
                index: node.index,
                log: node.log.clone(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until every node has as many handshaken peers as the topology gives it.
fn wait_for_links(nodes: &mut [DevNode], links: &[(usize, usize)]) -> Result<(), DevnetError> {
    let mut wanted = vec![0usize; nodes.len()];
    for &(a, b) in links {
        wanted[a] += 1;
        wanted[b] += 1;
    }
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if interrupted() {
            return Err(DevnetError::Interrupted);
        }
        let mut missing = Vec::new();
        for (node, &want) in nodes.iter().zip(&wanted) {
            let peers = node.call("getpeers", serde_json::json!([]))?;
            let ready = peers.as_array().map_or(0, |p| {
                p.iter().filter(|p| p["handshake_complete"] == true).count()
            });
            if ready < want {
                missing.push(format!("node{} has {ready} of {want} peers", node.index));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DevnetError::ConnectTimeout {
                detail: missing.join(", "),
            });
        }
        std::thread::sleep(LINK_POLL);
    }
}

fn print_table(
    nodes: &[DevNode],
    topology: Topology,
    links: &[(usize, usize)],
    root: &Path,
    elapsed: Duration,
) {
    println!(
        "devnet: {} regtest nodes up and connected ({}, {} links) in {:.2} s",
        nodes.len(),
        clap::ValueEnum::to_possible_value(&topology)
            .map_or_else(String::new, |v| v.get_name().to_string()),
        links.len(),
        elapsed.as_secs_f64()
    );
    println!();
    println!(
        "{:<7} {:<22} {:<22} {:<30} dashboard",
        "node", "P2P", "RPC", "datadir"
    );
    for node in nodes {
        let rpc = node
            .rpc
            .as_ref()
            .map(|(_, a)| a.to_string())
            .unwrap_or_default();
        println!(
            "{:<7} {:<22} {:<22} {:<30} http://{rpc}/",
            format!("node{}", node.index),
            node.p2p.map(|a| a.to_string()).unwrap_or_default(),
            rpc,
            node.datadir.display().to_string(),
        );
    }
    println!();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "noded".to_string());
    for node in nodes {
        println!("{exe} rpc --datadir {} getinfo", node.datadir.display());
    }
    println!();
    println!(
        "logs: {}/node*/noded.log; dashboards sign in with the node's .cookie",
        root.display()
    );
    println!("Ctrl-C stops every node.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Blocks until SIGINT, SIGTERM or SIGHUP; a node that stops by itself meanwhile ends the
/// devnet.
fn wait_for_interrupt(nodes: &mut [DevNode]) -> Result<(), DevnetError> {
    while !interrupted() {
        for node in nodes.iter_mut() {
            if let Some(status) = node.exited() {
                return Err(DevnetError::Died {
                    index: node.index,
                    status,
                    log: node.log.clone(),
                });
            }
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_link_as_named() {
        assert_eq!(Topology::Line.links(4), vec![(0, 1), (1, 2), (2, 3)]);
        assert_eq!(
            Topology::Ring.links(4),
            vec![(0, 1), (1, 2), (2, 3), (3, 0)]
        );
        assert_eq!(Topology::Ring.links(2), vec![(0, 1)], "no double link");
        assert_eq!(Topology::Mesh.links(4).len(), 6);
        assert!(Topology::Line.links(1).is_empty());
    }
}
