//! Holds docs/OPERATIONS.md to the RPC server: every method `help` lists has a row in one of
//! the document's method tables.

use std::collections::BTreeSet;

const DOC: &str = include_str!("../docs/OPERATIONS.md");

/// The method of each table row whose first cell starts with a backticked word, e.g.
/// "| `getblock blockhash [verbosity=1]` | ..." gives `getblock`.
fn documented_methods() -> BTreeSet<&'static str> {
    DOC.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|cell| cell.split([' ', '`']).next())
        .filter(|word| !word.is_empty())
        .collect()
}

/// `help` answers with `all_methods()`, one line each (src/rpc/server.rs); the unit tests
/// there hold every registered method to that list.
#[test]
fn every_method_help_lists_has_a_row_in_operations_md() {
    let documented = documented_methods();
    let listed: Vec<&str> = noded::rpc::server::all_methods().map(|m| m.name).collect();
    assert!(listed.len() > 40, "help lists {} methods", listed.len());
    let missing: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|name| !documented.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "methods `help` lists without a row in docs/OPERATIONS.md: {missing:?}"
    );
}
