//! The mining and mempool settings: flags over config-file keys over defaults, and bad values
//! named by the flag or the file key.

use noded::config::{Config, FileConfig, NodeArgs};
use std::path::Path;

fn args() -> NodeArgs {
    NodeArgs {
        datadir: Some("/tmp/x".into()),
        ..Default::default()
    }
}

fn file(text: &str) -> FileConfig {
    toml::from_str(text).unwrap()
}

const ADDRESS: &str = "00112233445566778899aabbccddeeff00112233";

#[test]
fn defaults_mine_nothing_and_keep_32_mib_for_14_days() {
    let c = Config::merge(args(), FileConfig::default(), None).unwrap();
    assert!(!c.mine);
    assert_eq!(c.miner_address, None);
    assert_eq!(c.mine_threads, None);
    assert_eq!(c.max_mempool_bytes, 32 << 20);
    assert_eq!(c.mempool_expiry_secs, 14 * 24 * 3600);
}

#[test]
fn file_keys_apply_and_flags_win() {
    let f = file(&format!(
        "mine = true\nmineraddress = \"{ADDRESS}\"\nminethreads = 3\nmaxmempool = 5\nmempoolexpiry = 2"
    ));
    let c = Config::merge(args(), f, None).unwrap();
    assert!(c.mine);
    assert_eq!(c.miner_address.unwrap().to_string(), ADDRESS);
    assert_eq!(c.mine_threads, Some(3));
    assert_eq!(c.max_mempool_bytes, 5 << 20);
    assert_eq!(c.mempool_expiry_secs, 7200);

    let mut a = args();
    a.mine = Some(false);
    a.maxmempool = Some(7);
    let c = Config::merge(a, file("mine = true\nmaxmempool = 5"), None).unwrap();
    assert!(!c.mine, "--mine=false beats the file");
    assert_eq!(c.max_mempool_bytes, 7 << 20);
}

#[test]
fn bad_values_are_named() {
    let mut a = args();
    a.mineraddress = Some("nope".into());
    let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid --mineraddress 'nope'"),
        "{err}"
    );
    let err = Config::merge(
        args(),
        file("mineraddress = \"zz\""),
        Some(Path::new("/etc/n.toml")),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid 'mineraddress' in /etc/n.toml"),
        "{err}"
    );
    let mut a = args();
    a.maxmempool = Some(0);
    let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
    assert!(err.to_string().contains("--maxmempool"), "{err}");
    let mut a = args();
    a.minethreads = Some(0);
    let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
    assert!(err.to_string().contains("--minethreads"), "{err}");
}

#[test]
fn the_example_config_names_the_mining_and_mempool_keys() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/noded.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for key in [
        "maxmempool",
        "mempoolexpiry",
        "mine",
        "mineraddress",
        "minethreads",
        "mineinterval",
    ] {
        assert!(text.contains(&format!("# {key} = ")), "{key} missing");
    }
    FileConfig::load(Path::new(path)).unwrap();
}

#[test]
fn the_example_config_names_every_key_the_file_takes() {
    // The parser's own list of keys: what it says of a key it does not know.
    let err = toml::from_str::<FileConfig>("no_such_key = 1").unwrap_err();
    let message = err.message();
    let (_, expected) = message
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("{message}"));
    let keys: Vec<&str> = expected
        .split(", ")
        .map(|k| k.trim().trim_matches('`').trim_matches('\''))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/noded.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !text.contains(&format!("# {k} = ")))
        .collect();
    assert!(missing.is_empty(), "config/noded.toml lacks {missing:?}");
}
