//! What an operator sees through the binary: a bad `--log-level` is a one-line error, one
//! `new tip` line per block and one line per reorg, `--mine`'s regtest brake, shell
//! completions and the man page.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// Blocks the default regtest `--mine` may find in the ~2 s after its first: one a second
/// gives 2 or 3; the unbraked miner (thousands a second) would be far past this.
const MAX_BRAKED_BLOCKS: u64 = 20;

/// How long the braked miner is watched after its first block.
const BRAKE_WATCH: Duration = Duration::from_secs(2);

/// Blocks `--mineinterval 0` must reach within `DEADLINE`: 200 s of mining at the default
/// one a second, a fraction of a second unbraked.
const UNBRAKED_BLOCKS: u64 = 200;

fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

fn block_count(node: &TestNode) -> u64 {
    node.rpc("getblockcount", json!([]))
        .expect("getblockcount")
        .as_u64()
        .expect("a count")
}

/// Starts a regtest node whose log (stderr) goes to a file the test reads.
fn start_logged(dir: &Path, extra: &[&str]) -> (TestNode, std::path::PathBuf) {
    let datadir = dir.join("data");
    let log = dir.join("noded.log");
    let file = std::fs::File::create(&log).unwrap();
    let node = TestNode::start_in(&datadir, extra, |cmd| {
        cmd.stderr(file);
    });
    (node, log)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn an_unknown_log_level_is_a_one_line_error_naming_the_accepted_words() {
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--datadir",
        "/nonexistent/never-created",
        "--log-level",
        "foo",
    ]);
    let err = one_line_error(&out);
    assert!(
        err.starts_with("error: invalid --log-level 'foo': 'foo' is not a level"),
        "{err}"
    );
    assert!(
        err.contains("trace, debug, info, warn (or warning), error, off"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("noded.toml");
    std::fs::write(&config, "log_level = \"verbose\"\n").unwrap();
    let out = run_to_exit(&[
        "--network",
        "regtest",
        "--datadir",
        "/nonexistent/never-created",
        "--config",
        config.to_str().unwrap(),
    ]);
    let err = one_line_error(&out);
    assert!(
        err.starts_with(&format!(
            "error: invalid 'log_level' in {} 'verbose'",
            config.display()
        )),
        "{err}"
    );
}

#[test]
fn warning_and_directive_lists_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, log) = start_logged(dir.path(), &["--log-level", "warning"]);
    assert!(node.stop().success());
    let text = read(&log);
    assert!(!text.contains(" INFO "), "warning hides INFO lines: {text}");

    // Invalidating the tip is a reorg (INFO) that disconnects a block (DEBUG).
    let dir = tempfile::tempdir().unwrap();
    let (mut node, log) = start_logged(dir.path(), &["--log-level", "info,noded=debug"]);
    let hashes = node.rpc("generate", json!([1])).expect("generate 1");
    node.rpc("invalidateblock", json!([hashes[0]]))
        .expect("invalidateblock");
    assert!(node.stop().success());
    let text = read(&log);
    let line = |what: &str| text.lines().find(|l| l.contains(what)).map(str::to_string);
    let reorg = line("chain reorganised").unwrap_or_else(|| panic!("no reorg line: {text}"));
    assert!(reorg.contains(" INFO "), "{reorg}");
    for field in [
        "fork_height=0 ",
        "disconnected=1 ",
        "connected=0 ",
        "old_height=1 ",
        "new_height=0 ",
    ] {
        assert!(reorg.contains(field), "{field}: {reorg}");
    }
    let disconnected = line("block disconnected").unwrap_or_else(|| panic!("{text}"));
    assert!(disconnected.contains(" DEBUG "), "{disconnected}");

    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = start_logged(dir.path(), &["--log-level", "noded::net=trace"]);
    assert!(node.stop().success());
}

#[test]
fn generate_logs_one_new_tip_info_line_per_block() {
    let dir = tempfile::tempdir().unwrap();
    let (node, log) = start_logged(dir.path(), &[]);
    let hashes = node.rpc("generate", json!([3])).expect("generate 3");
    let hashes: Vec<String> = serde_json::from_value(hashes).unwrap();
    let tip_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(" INFO ") && l.contains("new tip"))
            .map(str::to_string)
            .collect()
    };
    wait_until(DEADLINE, "three new tip lines", || {
        tip_lines(&read(&log)).len() >= 3
    });
    let lines = tip_lines(&read(&log));
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (i, line) in lines.iter().enumerate() {
        let height = i + 1;
        assert!(line.contains(&format!("height={height} ")), "{line}");
        assert!(line.contains(&format!("hash={}", hashes[i])), "{line}");
        assert!(
            line.contains("txs=1 ") && line.contains("connect_ms="),
            "{line}"
        );
    }
}

#[test]
fn mine_on_regtest_is_braked_to_about_a_block_a_second_by_default() {
    let payee = "00112233445566778899aabbccddeeff00112233";
    let node = TestNode::start(&["--mine", "--mineraddress", payee, "--minethreads", "1"]);
    wait_until(DEADLINE, "the first mined block", || {
        block_count(&node) >= 1
    });
    let first_seen = Instant::now();
    let first = block_count(&node);
    wait_until(DEADLINE, "two more mined blocks", || {
        block_count(&node) >= first + 2
    });
    assert!(
        first_seen.elapsed() >= BRAKE_WATCH / 2,
        "two blocks within {:?} of the first",
        first_seen.elapsed()
    );
    wait_until(DEADLINE, "the watch to end", || {
        first_seen.elapsed() >= BRAKE_WATCH
    });
    let mined = block_count(&node);
    assert!(
        mined < MAX_BRAKED_BLOCKS,
        "{mined} blocks within {BRAKE_WATCH:?} of the first"
    );
}

#[test]
fn mine_interval_zero_mines_as_fast_as_the_work_allows() {
    let payee = "00112233445566778899aabbccddeeff00112233";
    let node = TestNode::start(&[
        "--mine",
        "--mineraddress",
        payee,
        "--minethreads",
        "1",
        "--mineinterval",
        "0",
    ]);
    wait_until(DEADLINE, "many mined blocks", || {
        block_count(&node) >= UNBRAKED_BLOCKS
    });
}

#[test]
fn completions_and_the_man_page_cover_the_flags() {
    let out = run_to_exit(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("--datadir") && script.contains("--mineinterval"));
    assert!(script.contains("complete -F"), "a bash completion script");

    let out = run_to_exit(&["completions", "nosuchshell"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");

    let out = run_to_exit(&["manpage"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH noded"),
        "roff"
    );
    assert!(page.contains("datadir") && page.contains("mineinterval"));
}
