//! `noded devnet`: five connected regtest nodes from one command, stopped by one SIGINT.

mod common;

use common::{wait_until, BIN, DEADLINE};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The devnet process, killed (with its nodes, by their parent-death signal) if a test fails.
struct Devnet(Child);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_devnet(root: &Path, nodes: &str) -> Devnet {
    let child = Command::new(BIN)
        .args([
            "devnet",
            "--nodes",
            nodes,
            "--topology",
            "line",
            "--datadir-root",
        ])
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn noded devnet");
    Devnet(child)
}

/// Processes whose command line mentions `root` (the devnet's nodes).
fn processes_under(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle) && !c.contains(" devnet "))
        .collect()
}

#[test]
fn devnet_brings_up_five_connected_nodes_and_stops_them_all_on_sigint() {
    let root = tempfile::tempdir().unwrap();
    let mut devnet = Command::new(BIN)
        .args([
            "devnet",
            "--nodes",
            "5",
            "--topology",
            "line",
            "--datadir-root",
        ])
        .arg(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn noded devnet");
    let mut lines = BufReader::new(devnet.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while !printed
        .last()
        .is_some_and(|l: &String| l.contains("Ctrl-C stops every node"))
    {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("devnet ended early: {printed:?}"))
            .unwrap();
        printed.push(line);
    }
    let summary = &printed[0];
    assert!(summary.contains("(line, 4 links)"), "{summary}");
    println!("{}", printed.join("\n"));
    // "devnet: 5 regtest nodes up and connected (line, 4 links) in 0.22 s"
    let seconds: f64 = summary
        .rsplit(" in ")
        .next()
        .and_then(|s| s.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("no start-up time in {summary:?}"));
    // The figure is printed for the record (0.2 s here); the bound only catches a devnet that
    // waits on something it should not, with room for a loaded CI machine.
    assert!(seconds < 10.0, "five nodes took {seconds} s to come up");

    // The table's datadirs work with `noded rpc`, and each node has its line neighbours.
    let datadirs: Vec<_> = (1..=5)
        .map(|i| root.path().join(format!("node{i}")))
        .collect();
    for (i, datadir) in datadirs.iter().enumerate() {
        assert!(
            printed
                .iter()
                .any(|l| l.contains(&format!("rpc --datadir {}", datadir.display()))),
            "a noded rpc line for node{}",
            i + 1
        );
        let peers = noded::rpc::client::call_datadir(datadir, "getpeers", serde_json::json!([]))
            .expect("getpeers");
        // Its line neighbours at least: address gossip may add links, as on any network.
        let want = if i == 0 || i == 4 { 1 } else { 2 };
        let have = peers.as_array().unwrap().len();
        assert!(have >= want, "node{} peers: {peers}", i + 1);
    }
    // A block mined at one end reaches the other.
    noded::rpc::client::call_datadir(&datadirs[0], "generate", serde_json::json!([2]))
        .expect("generate");
    wait_until(DEADLINE, "the block to cross the line", || {
        noded::rpc::client::call_datadir(&datadirs[4], "getblockcount", serde_json::json!([])).ok()
            == Some(serde_json::json!(2))
    });

    // SIGINT, as Ctrl-C sends: every node stops cleanly and the devnet exits 0.
    // SAFETY: kill(2) on the pid of the child spawned above, not yet reaped.
    unsafe {
        libc::kill(devnet.id() as libc::pid_t, libc::SIGINT);
    }
    let mut status = None;
    wait_until(DEADLINE, "the devnet to exit", || {
        status = devnet.try_wait().unwrap();
        status.is_some()
    });
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        status.unwrap().success(),
        "devnet exit: {status:?}, {rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("all nodes stopped")),
        "{rest:?}"
    );
    for datadir in &datadirs {
        // A node removes its RPC files when it shuts down cleanly.
        assert!(
            !datadir.join(".rpcaddr").exists(),
            "{} still up",
            datadir.display()
        );
        let log = std::fs::read_to_string(datadir.join("noded.log")).unwrap();
        assert!(
            log.contains("noded stopped"),
            "clean shutdown in the log: {log}"
        );
    }
}

#[test]
fn a_signal_during_start_up_leaves_no_node_running() {
    let root = tempfile::tempdir().unwrap();
    let mut guard = start_devnet(root.path(), "5");
    // As soon as the first node exists, before the network is up.
    wait_until(DEADLINE, "the first node to start", || {
        !processes_under(root.path()).is_empty()
    });
    // SAFETY: kill(2) on the pid of the child spawned above, not yet reaped.
    unsafe {
        libc::kill(guard.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let mut status = None;
    wait_until(DEADLINE, "the devnet to exit", || {
        status = guard.0.try_wait().unwrap();
        status.is_some()
    });
    wait_until(DEADLINE, "every node to be gone", || {
        processes_under(root.path()).is_empty()
    });
}

#[test]
fn killing_the_devnet_outright_takes_its_nodes_with_it() {
    let root = tempfile::tempdir().unwrap();
    let mut guard = start_devnet(root.path(), "3");
    wait_until(DEADLINE, "three nodes", || {
        processes_under(root.path()).len() == 3
    });
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    wait_until(DEADLINE, "every node to be gone", || {
        processes_under(root.path()).is_empty()
    });
}

#[test]
fn devnet_refuses_a_bad_node_count_in_one_line() {
    let out = common::run_to_exit(&["devnet", "--nodes", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--nodes must be between 1 and 50"),
        "{stderr}"
    );
}

#[test]
fn a_second_devnet_on_a_root_in_use_leaves_the_running_one_alone() {
    let root = tempfile::tempdir().unwrap();
    let _running = start_devnet(root.path(), "2");
    let node1 = root.path().join("node1");
    wait_until(DEADLINE, "node1 to answer over RPC", || {
        noded::rpc::client::call_datadir(&node1, "getblockcount", serde_json::json!([])).is_ok()
    });
    let log_before = std::fs::read_to_string(node1.join("noded.log")).unwrap();
    assert!(!log_before.is_empty());

    let out = Command::new(BIN)
        .args(["devnet", "--nodes", "2", "--datadir-root"])
        .arg(root.path())
        .stdin(Stdio::null())
        .output()
        .expect("run a second devnet");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("another devnet is running on"), "{stderr}");
    // The running node keeps its cookie (RPC still works) and its log.
    noded::rpc::client::call_datadir(&node1, "getblockcount", serde_json::json!([]))
        .expect("the running node still answers");
    let log_after = std::fs::read_to_string(node1.join("noded.log")).unwrap();
    assert!(
        log_after.starts_with(&log_before),
        "the running node's log was rewritten: {log_after}"
    );
}

#[test]
fn a_devnet_leaves_a_node_running_on_one_of_its_datadirs_alone() {
    let root = tempfile::tempdir().unwrap();
    let node2 = root.path().join("node2");
    // A node started by hand where the devnet's second node would live.
    let mut by_hand = common::TestNode::start_in(&node2, &[], |_| {});
    let out = Command::new(BIN)
        .args(["devnet", "--nodes", "3", "--datadir-root"])
        .arg(root.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the devnet");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("node 2's datadir") && stderr.contains("is in use"),
        "{stderr}"
    );
    assert!(
        processes_under(root.path()).len() == 1,
        "no devnet node was left running"
    );
    noded::rpc::client::call_datadir(&node2, "getblockcount", serde_json::json!([]))
        .expect("the node started by hand still answers");
    assert!(by_hand.stop().success());
}
