#!/usr/bin/env bash
# Storage engine comparison: builds benches/storage.rs and the `noded` binary (release) for
# OLD_REV in a temporary git worktree and for this working tree, runs the old build, then the
# new one, one after the other, and prints their figures side by side with the storage
# issue's targets.
#
#   benches/storage_compare.sh [OLD_REV]     (default: DEFAULT_OLD_REV below, the last sled commit)
#   NODED_BENCH_SCALE=0.05 benches/storage_compare.sh    a quick trial (default scale 1.0)
#
# Both sides run this tree's benches/storage.rs and benches/support/ (copied into the old worktree, with its
# Cargo.toml entry if missing), so the same code measures both. The old worktree's target
# dir is seeded with a copy of this tree's target/release (dependencies need no rebuild);
# SEED_TARGET=<dir> seeds from another target dir instead. Run it on an otherwise idle
# machine: it warns when the load average is 1 or more. The bench's stores go to TMPDIR.
# Outputs are kept in target/storage-compare/ (old.txt, new.txt, table.txt);
# `benches/storage_compare.sh --table OLD.txt NEW.txt` prints the table again from two such
# outputs.
set -euo pipefail
# Prints the side-by-side table from two outputs of the bench (old, new), each starting with
# a `LABEL <engine> (<rev>)` line.
table() {
  awk '
  FNR == 1 { side++ }
  $1 == "LABEL" { sub(/^LABEL /, ""); label[side] = $0 }
  $1 == "RESULT" { v[side, $2] = $3 }
  function dashes(n,    s) { s = ""; while (n-- > 0) s = s "-"; return s }
  function num(x, unit) {
    if (x == "") return "-"
    if (unit == "tx/s") return sprintf("%.0f", x)
    if (unit == "ms" || unit == "MB") return sprintf("%.1f", x)
    return sprintf("%.2f", x)
  }
  # metric key unit target-kind target-value
  #   ratio_ge: new/old >= value;  lt: new < value;  "": no target
  function row(label, key, unit, kind, value,    o, n, ratio, met, target) {
    o = v[1, key]; n = v[2, key]
    ratio = (o != "" && n != "" && o + 0 != 0) ? sprintf("%.2f", n / o) : "-"
    met = "-"; target = ""
    if (kind == "ratio_ge") {
      target = (value == 1) ? "not slower than old" : sprintf(">= %.1fx old", value)
      if (ratio != "-") met = (n / o >= value) ? "yes" : "NO"
    } else if (kind == "lt") {
      target = "< " value " " unit
      if (n != "") met = (n + 0 < value) ? "yes" : "NO"
    }
    printf FMT, label " (" unit ")", num(o, unit), num(n, unit), ratio, (target == "" ? "-" : met " (" target ")")
    if (met == "yes") ok++
    if (met == "NO") bad++
  }
  END {
    txs = (v[2, "store_txs"] != "" ? v[2, "store_txs"] : v[1, "store_txs"]) + 0
    blocks = (v[2, "connect_blocks"] != "" ? v[2, "connect_blocks"] : v[1, "connect_blocks"]) + 0
    printf "\nstorage comparison at NODED_BENCH_SCALE=%s: %d-block connects of %d transfers, a store of %d transactions\n\n", v[2, "scale"] + 0, blocks, v[2, "txs_per_block"], txs
    old_label = label[1] != "" ? label[1] : "old"; new_label = label[2] != "" ? label[2] : "new"
    LW = 52; OW = length(old_label) < 10 ? 10 : length(old_label); NW = length(new_label) < 10 ? 10 : length(new_label)
    FMT = "| %-" LW "s | %" OW "s | %" NW "s | %6s | %-26s |\n"
    printf FMT, "metric", old_label, new_label, "ratio", "target met?"
    printf "|%s|%s|%s|--------|----------------------------|\n", dashes(LW + 2), dashes(OW + 2), dashes(NW + 2)
    row("(a) block connect, pipelined, median of 3", "connect_tx_per_s", "tx/s", "ratio_ge", 1)
    row("(b) same, every transfer a new account", "connect_new_accounts_tx_per_s", "tx/s", "ratio_ge", 1.5)
    row("(c) tx index catch-up, " txs " txs", "txindex_catchup_s", "s", "", 0)
    row("    import of that store (new accounts)", "store_import_tx_per_s", "tx/s", "", 0)
    row("    store on disk", "store_disk_mb", "MB", "", 0)
    row("(d) noded VmRSS once RPC-ready", "rss_ready_mb", "MB", "lt", 150)
    row("(d) noded VmRSS after getblockchaininfo", "rss_after_getblockchaininfo_mb", "MB", "lt", 150)
    row("    noded VmHWM (peak)", "rss_peak_mb", "MB", "", 0)
    row("(e) RPC ready, median of 3 starts", "rpc_ready_ms", "ms", "lt", 100)
    row("    RPC ready, first start", "rpc_ready_first_ms", "ms", "", 0)
    row("(f) reorg, " blocks " blocks out, " blocks + 1 " in", "reorg_s", "s", "", 0)
    printf "\n(ratio = new / old; RSS in MiB as /proc reports it; targets judge the new column)\n"
    printf "targets met: %d, missed: %d\n", ok, bad
  }
' "$1" "$2"
}

if [ "${1:-}" = "--table" ]; then
  [ $# -eq 3 ] || { echo "usage: $0 --table OLD.txt NEW.txt" >&2; exit 2; }
  table "$2" "$3"
  exit 0
fi


# The last commit on sled 0.34 (before the chain store moved to redb).
DEFAULT_OLD_REV=df51fa51ccd2a82e52827f30115ea50faae989a2

OLD_REV=${1:-$DEFAULT_OLD_REV}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"
OLD_SHA=$(git rev-parse --verify --quiet "$OLD_REV^{commit}") || {
  echo "storage_compare: unknown revision $OLD_REV" >&2
  exit 2
}
SCALE=${NODED_BENCH_SCALE:-1.0}
export NODED_BENCH_SCALE=$SCALE
OUT=$ROOT/target/storage-compare
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/storage-compare.XXXXXX")
OLD_TREE=$WORK/old

cleanup() {
  if [ -d "$OLD_TREE" ]; then
    git -C "$ROOT" worktree remove --force "$OLD_TREE" 2>/dev/null || rm -rf "$OLD_TREE"
  fi
  git -C "$ROOT" worktree prune 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The engine a chain store source (on stdin) uses.
engine() {
  local src e=""
  src=$(cat)
  grep -q 'sled::' <<<"$src" && e=sled
  grep -q 'redb::' <<<"$src" && e=${e:+$e+}redb
  echo "${e:-unknown}"
}

NEW_LABEL=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || NEW_LABEL="$NEW_LABEL+changes"
OLD_LABEL=$(git rev-parse --short "$OLD_SHA")
NEW_ENGINE=$(engine <src/chain/store.rs)
OLD_ENGINE=$(git show "$OLD_SHA:src/chain/store.rs" 2>/dev/null | engine)

echo "== storage_compare: $OLD_ENGINE ($OLD_LABEL) vs $NEW_ENGINE ($NEW_LABEL), NODED_BENCH_SCALE=$SCALE"

echo "== building the new side (this tree) in release"
cargo bench --bench storage --no-run

echo "== preparing the old side: worktree of $OLD_LABEL in $OLD_TREE"
git worktree add --detach --quiet "$OLD_TREE" "$OLD_SHA"
cp "$ROOT/benches/storage.rs" "$OLD_TREE/benches/storage.rs"
mkdir -p "$OLD_TREE/benches/support"
cp "$ROOT/benches/support/blocks.rs" "$OLD_TREE/benches/support/blocks.rs"
if ! grep -q '^name = "storage"' "$OLD_TREE/Cargo.toml"; then
  printf '\n[[bench]]\nname = "storage"\nharness = false\n' >>"$OLD_TREE/Cargo.toml"
fi
SEED=${SEED_TARGET:-$ROOT/target}
mkdir -p "$OLD_TREE/target"
if [ -d "$SEED/release" ]; then
  echo "== seeding its target dir from $SEED/release"
  cp -a "$SEED/release" "$OLD_TREE/target/release"
  for f in .rustc_info.json CACHEDIR.TAG; do
    [ -e "$SEED/$f" ] && cp -a "$SEED/$f" "$OLD_TREE/target/$f"
  done
fi
echo "== building the old side in release"
(cd "$OLD_TREE" && cargo bench --bench storage --no-run)

load() { cut -d' ' -f1-3 /proc/loadavg; }
check_idle() {
  local one
  one=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$one" 'BEGIN { exit !(l >= 1) }'; then
    echo "!! load average $(load) before the $1 run: the machine is not idle, figures will be noisy" >&2
  fi
}

run() { # name tree label
  check_idle "$1"
  echo "== running the $1 side ($2), load $(load)"
  local t0=$SECONDS
  echo "LABEL $3" >"$OUT/$1.txt"
  (cd "$2" && cargo bench --bench storage) | tee -a "$OUT/$1.txt"
  echo "== $1 side done in $((SECONDS - t0)) s"
}
run old "$OLD_TREE" "$OLD_ENGINE ($OLD_LABEL)"
run new "$ROOT" "$NEW_ENGINE ($NEW_LABEL)"

table "$OUT/old.txt" "$OUT/new.txt" | tee "$OUT/table.txt"

