//! The node's Prometheus metrics: one `Registry` per node, the handles the other layers update,
//! and the text encoding `GET /metrics` serves.
//!
//! Owns the metric definitions (names, help, labels, buckets) only. Must never take a lock or
//! allocate on a per-message path (every label value's handle is made up front, so an update
//! is one atomic add), never hold a lock across `.await`, and never accept a label value from
//! outside a fixed set (peer commands, disconnect reasons and RPC methods are all closed sets).
//! Values that are costly to keep current (mempool bytes, RSS, the tip) are read at scrape
//! time by the refreshers registered with `on_scrape`, not on the paths that change them.

use crate::wire::message::Command;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The Content-Type of `encode`'s output (prometheus-client writes OpenMetrics text, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label value for RPC calls to a method the server does not have: keeps a caller from
/// creating a series per made-up name.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Label value for the whole of a JSON-RPC batch in the latency histogram (its calls are
/// counted one by one under their methods).
pub const BATCH_METHOD: &str = "batch";

/// Why a peer connection ended, as the `reason` label of `noded_peer_disconnects_total`: a
/// fixed set, so a peer cannot grow the label space. `connection_lost` is an end the node did
/// not ask for (the remote closed, an I/O error); anything unlisted counts as `other`.
pub const DISCONNECT_REASONS: &[&str] = &[
    "handshake_timeout",
    "ping_timeout",
    "inactivity",
    "self_connection",
    "duplicate",
    "banned",
    "misbehaviour",
    "obsolete_version",
    "wrong_network",
    "evicted",
    "too_many_connections",
    "too_many_from_ip",
    "requested",
    "node_id_mismatch",
    "feeler_done",
    "stalling",
    "mutated_block",
    "headers_changed",
    "addr_fetch_done",
    "slow_peer",
    "closed",
    "network_off",
    "connection_lost",
    "other",
];

/// Connection types, as the `type` label of `noded_peers` (the protocol's `ConnType` names).
pub const CONN_TYPES: &[(&str, &str)] = &[
    ("inbound", "inbound"),
    ("outbound", "outbound-full-relay"),
    ("outbound", "manual"),
    ("outbound", "onetry"),
    ("outbound", "feeler"),
    ("outbound", "addr-fetch"),
];

/// Reorganisation depth buckets (blocks disconnected): most reorgs are one block; deeper
/// ones are what an operator needs to see.
const REORG_DEPTH_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0];
/// Signature batch size buckets: 1 up to 4096 (a block's transfers split over the cores).
const SIG_BATCH_FIRST: f64 = 1.0;
const SIG_BATCH_BUCKETS: u16 = 13;
/// RPC latency buckets: 100 µs up to about 26 s (a long `generate`), factor 4.
const RPC_LATENCY_FIRST_SECS: f64 = 0.0001;
const RPC_LATENCY_BUCKETS: u16 = 10;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

/// A scrape-time refresher: sets gauges from their sources just before encoding.
type Refresher = Box<dyn Fn() + Send + Sync>;

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    pub net: NetMetrics,
    pub chain: ChainMetrics,
    pub mempool: MempoolMetrics,
    /// Shared on its own: the mempool holds it, and the registry's refreshers hold a pool.
    pub signatures: Arc<SignatureMetrics>,
    pub rpc: RpcMetrics,
    rss_bytes: Gauge,
    /// Locked only by `on_scrape` and `encode`, never on an update path.
    refreshers: Mutex<Vec<Refresher>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The network's counters: peers, handshakes, bans, disconnects, traffic per command.
pub struct NetMetrics {
    /// `noded_peers`' handles in `CONN_TYPES` order.
    peers_by_type: Vec<Gauge>,
    pub handshakes: Counter,
    pub bans: Counter,
    /// In `DISCONNECT_REASONS` order.
    disconnects: Vec<Counter>,
    /// Indexed by `Command as usize` (the order of `Command::ALL`).
    sent_bytes: Vec<Counter>,
    received_bytes: Vec<Counter>,
    sent_messages: Vec<Counter>,
    received_messages: Vec<Counter>,
}

impl NetMetrics {
    fn new(registry: &mut Registry) -> NetMetrics {
        let peers = Family::<Labels2, Gauge>::default();
        let peers_by_type = CONN_TYPES
            .iter()
            .map(|&(direction, kind)| {
                peers
                    .get_or_create(&[("direction", direction), ("type", kind)])
                    .clone()
            })
            .collect();
        registry.register(
            "noded_peers",
            "Connected peers by direction and connection type",
            peers,
        );
        let handshakes = Counter::default();
        registry.register(
            "noded_peer_handshakes",
            "VERSION/VERACK handshakes completed",
            handshakes.clone(),
        );
        let bans = Counter::default();
        registry.register(
            "noded_peer_bans",
            "Bans imposed (misbehaviour or setban)",
            bans.clone(),
        );
        let disconnect_family = Family::<Labels1, Counter>::default();
        let disconnects = DISCONNECT_REASONS
            .iter()
            .map(|&reason| {
                disconnect_family
                    .get_or_create(&[("reason", reason)])
                    .clone()
            })
            .collect();
        registry.register(
            "noded_peer_disconnects",
            "Peer connections ended, by reason",
            disconnect_family,
        );
        let per_command = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels1, Counter>::default();
            let handles = Command::ALL
                .iter()
                .map(|c| family.get_or_create(&[("command", c.name())]).clone())
                .collect();
            registry.register(name, help, family);
            handles
        };
        NetMetrics {
            peers_by_type,
            handshakes,
            bans,
            disconnects,
            sent_bytes: per_command(
                registry,
                "noded_net_sent_bytes",
                "Frame bytes sent to peers (headers included), by command",
            ),
            received_bytes: per_command(
                registry,
                "noded_net_received_bytes",
                "Frame bytes received from peers (headers included), by command",
            ),
            sent_messages: per_command(
                registry,
                "noded_net_sent_messages",
                "Messages sent to peers, by command",
            ),
            received_messages: per_command(
                registry,
                "noded_net_received_messages",
                "Messages received from peers, by command",
            ),
        }
    }

    /// One message of `bytes` frame bytes sent: two atomic adds.
    pub fn sent(&self, command: Command, bytes: u64) {
        self.sent_bytes[command as usize].inc_by(bytes);
        self.sent_messages[command as usize].inc();
    }

    /// One message of `bytes` frame bytes received: two atomic adds.
    pub fn received(&self, command: Command, bytes: u64) {
        self.received_bytes[command as usize].inc_by(bytes);
        self.received_messages[command as usize].inc();
    }

    fn peer_gauge(&self, conn_type: &str) -> Option<&Gauge> {
        CONN_TYPES
            .iter()
            .position(|&(_, name)| name == conn_type)
            .map(|i| &self.peers_by_type[i])
    }

    /// A peer of `conn_type` (a `ConnType::name`) joined the peer table.
    pub fn peer_connected(&self, conn_type: &str) {
        if let Some(gauge) = self.peer_gauge(conn_type) {
            gauge.inc();
        }
    }

    /// A peer of `conn_type` left the peer table.
    pub fn peer_gone(&self, conn_type: &str) {
        if let Some(gauge) = self.peer_gauge(conn_type) {
            gauge.dec();
        }
    }

    /// A connection ended for `reason` (one of `DISCONNECT_REASONS`; others count as `other`).
    pub fn disconnected(&self, reason: &str) {
        let i = DISCONNECT_REASONS
            .iter()
            .position(|&r| r == reason)
            .unwrap_or(DISCONNECT_REASONS.len() - 1);
        self.disconnects[i].inc();
    }

    /// Peers connected now, of every type.
    pub fn peers_total(&self) -> i64 {
        self.peers_by_type.iter().map(Gauge::get).sum()
    }
}

/// The chain's progress and reorganisations.
pub struct ChainMetrics {
    pub tip_height: Gauge,
    pub header_height: Gauge,
    pub blocks_connected: Counter,
    pub blocks_disconnected: Counter,
    pub transactions_connected: Counter,
    pub reorgs: Counter,
    pub reorg_depth: Histogram,
    pub orphan_blocks: Gauge,
}

impl ChainMetrics {
    fn new(registry: &mut Registry) -> ChainMetrics {
        let m = ChainMetrics {
            tip_height: Gauge::default(),
            header_height: Gauge::default(),
            blocks_connected: Counter::default(),
            blocks_disconnected: Counter::default(),
            transactions_connected: Counter::default(),
            reorgs: Counter::default(),
            reorg_depth: Histogram::new(REORG_DEPTH_BUCKETS),
            orphan_blocks: Gauge::default(),
        };
        registry.register(
            "noded_chain_tip_height",
            "Height of the active chain's tip",
            m.tip_height.clone(),
        );
        registry.register(
            "noded_chain_header_height",
            "Height of the best known header (above the tip while blocks are to come)",
            m.header_height.clone(),
        );
        registry.register(
            "noded_chain_blocks_connected",
            "Blocks connected to the active chain",
            m.blocks_connected.clone(),
        );
        registry.register(
            "noded_chain_blocks_disconnected",
            "Blocks disconnected from the active chain (reorgs, invalidateblock)",
            m.blocks_disconnected.clone(),
        );
        registry.register(
            "noded_chain_transactions_connected",
            "Transactions (coinbases included) in blocks connected to the active chain",
            m.transactions_connected.clone(),
        );
        registry.register(
            "noded_chain_reorgs",
            "Reorganisations: moves to a heavier branch that disconnected blocks",
            m.reorgs.clone(),
        );
        registry.register(
            "noded_chain_reorg_depth_blocks",
            "Blocks disconnected by each reorganisation",
            m.reorg_depth.clone(),
        );
        registry.register(
            "noded_chain_orphan_blocks",
            "Blocks held whose parent is not known yet",
            m.orphan_blocks.clone(),
        );
        m
    }
}

/// The mempool's size, set at scrape time.
pub struct MempoolMetrics {
    pub transactions: Gauge,
    pub bytes: Gauge,
    pub future_transactions: Gauge,
}

impl MempoolMetrics {
    fn new(registry: &mut Registry) -> MempoolMetrics {
        let m = MempoolMetrics {
            transactions: Gauge::default(),
            bytes: Gauge::default(),
            future_transactions: Gauge::default(),
        };
        registry.register(
            "noded_mempool_transactions",
            "Transactions in the mempool (ready and future)",
            m.transactions.clone(),
        );
        registry.register(
            "noded_mempool_bytes",
            "Encoded bytes of the transactions in the mempool",
            m.bytes.clone(),
        );
        registry.register(
            "noded_mempool_future_transactions",
            "Mempool transactions waiting for an earlier nonce (the account model's orphans)",
            m.future_transactions.clone(),
        );
        m
    }
}

/// Signature verification: signatures checked and the size of each batch equation.
pub struct SignatureMetrics {
    checked: Counter,
    batch_size: Histogram,
    failed_batches: Counter,
}

impl SignatureMetrics {
    fn new(registry: &mut Registry) -> SignatureMetrics {
        let m = SignatureMetrics {
            checked: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(
                SIG_BATCH_FIRST,
                2.0,
                SIG_BATCH_BUCKETS,
            )),
            failed_batches: Counter::default(),
        };
        registry.register(
            "noded_signatures_checked",
            "Transfer signatures verified (blocks and mempool; each once, cached ones skipped)",
            m.checked.clone(),
        );
        registry.register(
            "noded_signature_batch_size",
            "Signatures per verification batch (one per thread's chunk; 1 is an individual check)",
            m.batch_size.clone(),
        );
        registry.register(
            "noded_signature_failed_batches",
            "Verification batches that held an invalid signature",
            m.failed_batches.clone(),
        );
        m
    }

    /// One batch of `size` signatures verified (`valid`: all of them passed). One lock-free
    /// add and one short histogram lock per batch, not per signature.
    pub fn batch(&self, size: usize, valid: bool) {
        self.checked.inc_by(size as u64);
        self.batch_size.observe(size as f64);
        if !valid {
            self.failed_batches.inc();
        }
    }
}

/// RPC calls per method and their latency. Method handles are made once the server knows
/// its methods (`register_methods`); until then, and for names it does not have, calls
/// count under `UNKNOWN_METHOD`.
pub struct RpcMetrics {
    requests: Family<Labels1, Counter>,
    latency: Family<Labels1, Histogram, fn() -> Histogram>,
    by_method: OnceLock<HashMap<&'static str, (Counter, Histogram)>>,
    unknown: (Counter, Histogram),
}

fn rpc_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        RPC_LATENCY_FIRST_SECS,
        4.0,
        RPC_LATENCY_BUCKETS,
    ))
}

impl RpcMetrics {
    fn new(registry: &mut Registry) -> RpcMetrics {
        let requests = Family::<Labels1, Counter>::default();
        let latency = Family::<Labels1, Histogram, fn() -> Histogram>::new_with_constructor(
            rpc_latency_histogram,
        );
        let unknown = Self::handles(&requests, &latency, UNKNOWN_METHOD);
        registry.register(
            "noded_rpc_requests",
            "JSON-RPC calls by method (calls inside a batch counted one by one)",
            requests.clone(),
        );
        registry.register(
            "noded_rpc_request_duration_seconds",
            "JSON-RPC call latency by method (a batch as a whole under method=\"batch\")",
            latency.clone(),
        );
        RpcMetrics {
            requests,
            latency,
            by_method: OnceLock::new(),
            unknown,
        }
    }

    fn handles(
        requests: &Family<Labels1, Counter>,
        latency: &Family<Labels1, Histogram, fn() -> Histogram>,
        method: &'static str,
    ) -> (Counter, Histogram) {
        let labels = [("method", method)];
        (
            requests.get_or_create(&labels).clone(),
            latency.get_or_create(&labels).clone(),
        )
    }

    /// Makes the handles of the server's methods (and of `BATCH_METHOD`); only the first
    /// call counts, so the label set is fixed from then on.
    pub fn register_methods(&self, methods: impl IntoIterator<Item = &'static str>) {
        let _ = self.by_method.get_or_init(|| {
            methods
                .into_iter()
                .chain([BATCH_METHOD])
                .map(|m| (m, Self::handles(&self.requests, &self.latency, m)))
                .collect()
        });
    }

    fn method(&self, method: &str) -> &(Counter, Histogram) {
        self.by_method
            .get()
            .and_then(|m| m.get(method))
            .unwrap_or(&self.unknown)
    }

    /// The counter and latency histogram of `method` (`UNKNOWN_METHOD`'s if it is not
    /// registered), for a caller to keep across the call: cloning them costs two reference
    /// counts, not a copy of the name.
    pub fn method_handles(&self, method: &str) -> (Counter, Histogram) {
        self.method(method).clone()
    }

    /// One call to `method` (counted; latency observed when it has finished).
    pub fn called(&self, method: &str) {
        self.method(method).0.inc();
    }

    /// How long a call to `method` (or a whole batch, `BATCH_METHOD`) took.
    pub fn finished(&self, method: &str, elapsed: Duration) {
        self.method(method).1.observe(elapsed.as_secs_f64());
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let net = NetMetrics::new(&mut registry);
        let chain = ChainMetrics::new(&mut registry);
        let mempool = MempoolMetrics::new(&mut registry);
        let signatures = Arc::new(SignatureMetrics::new(&mut registry));
        let rpc = RpcMetrics::new(&mut registry);
        let rss_bytes = Gauge::default();
        registry.register(
            "noded_process_resident_memory_bytes",
            "Resident set size of the process (Linux: /proc/self/statm; 0 elsewhere)",
            rss_bytes.clone(),
        );
        Metrics {
            registry,
            net,
            chain,
            mempool,
            signatures,
            rpc,
            rss_bytes,
            refreshers: Mutex::new(Vec::new()),
        }
    }

    /// Runs `refresh` before every scrape, to set gauges whose sources are costly to follow
    /// on their own paths. It must be quick and must not block on the network or disk.
    pub fn on_scrape(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.lock_refreshers().push(Box::new(refresh));
    }

    fn lock_refreshers(&self) -> std::sync::MutexGuard<'_, Vec<Refresher>> {
        // A refresher that panicked left nothing half-written: keep scraping.
        self.refreshers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every metric in the text exposition format, after the scrape-time refreshers ran.
    pub fn encode(&self) -> Result<String, MetricsError> {
        for refresh in self.lock_refreshers().iter() {
            refresh();
        }
        if let Some(rss) = resident_memory_bytes() {
            self.rss_bytes.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The process's resident set size from `/proc/self/statm` (its second field, in pages).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page_size = u64::try_from(page_size).ok().filter(|&p| p > 0)?;
    pages.checked_mul(page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name` whose labels include every pair of `labels`.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, rest) = match series.split_once('{') {
                    Some((m, rest)) => (m, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let wanted = labels
                    .iter()
                    .all(|(k, v)| rest.split(',').any(|pair| pair == format!("{k}=\"{v}\"")));
                (metric == name && wanted).then(|| value.parse().ok())?
            })
    }

    #[test]
    fn command_indices_follow_command_all() {
        for (i, command) in Command::ALL.iter().enumerate() {
            assert_eq!(*command as usize, i, "{command}");
        }
    }

    #[test]
    fn traffic_is_counted_per_command_and_encoded() {
        let m = Metrics::new();
        m.net.sent(Command::Block, 1000);
        m.net.sent(Command::Block, 24);
        m.net.received(Command::Ping, 32);
        let text = m.encode().unwrap();
        let block = [("command", "block")];
        assert_eq!(
            sample(&text, "noded_net_sent_bytes_total", &block),
            Some(1024.0)
        );
        assert_eq!(
            sample(&text, "noded_net_sent_messages_total", &block),
            Some(2.0)
        );
        let ping = [("command", "ping")];
        assert_eq!(
            sample(&text, "noded_net_received_bytes_total", &ping),
            Some(32.0)
        );
        assert_eq!(
            sample(&text, "noded_net_sent_bytes_total", &ping),
            Some(0.0)
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn peers_follow_connects_and_disconnects_by_type() {
        let m = Metrics::new();
        m.net.peer_connected("inbound");
        m.net.peer_connected("manual");
        m.net.peer_connected("manual");
        m.net.peer_gone("manual");
        m.net.peer_connected("not-a-type");
        assert_eq!(m.net.peers_total(), 2);
        let text = m.encode().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("noded_peers{"))
            .count();
        assert_eq!(series, CONN_TYPES.len(), "no new series");
        let manual = [("direction", "outbound"), ("type", "manual")];
        assert_eq!(sample(&text, "noded_peers", &manual), Some(1.0));
        let inbound = [("direction", "inbound"), ("type", "inbound")];
        assert_eq!(sample(&text, "noded_peers", &inbound), Some(1.0));
    }

    #[test]
    fn disconnect_reasons_are_a_fixed_set() {
        let m = Metrics::new();
        m.net.disconnected("ping_timeout");
        m.net.disconnected("something a peer made up");
        let text = m.encode().unwrap();
        let count = |r| sample(&text, "noded_peer_disconnects_total", &[("reason", r)]);
        assert_eq!(count("ping_timeout"), Some(1.0));
        assert_eq!(count("other"), Some(1.0));
        assert_eq!(count("something a peer made up"), None);
    }

    #[test]
    fn rpc_methods_outside_the_registered_set_share_one_label() {
        let m = Metrics::new();
        m.rpc.register_methods(["getinfo", "getblock"]);
        m.rpc.register_methods(["late"]);
        m.rpc.called("getinfo");
        m.rpc.finished("getinfo", Duration::from_millis(3));
        m.rpc.called("no_such_method");
        m.rpc.called("late");
        let text = m.encode().unwrap();
        let count = |method| sample(&text, "noded_rpc_requests_total", &[("method", method)]);
        assert_eq!(count("getinfo"), Some(1.0));
        assert_eq!(count(UNKNOWN_METHOD), Some(2.0));
        assert_eq!(count("no_such_method"), None);
        assert_eq!(
            count("late"),
            None,
            "the method set is fixed at the first registration"
        );
        let getinfo = [("method", "getinfo")];
        assert_eq!(
            sample(&text, "noded_rpc_request_duration_seconds_count", &getinfo),
            Some(1.0)
        );
        let le = [("method", "getinfo"), ("le", "0.0064")];
        assert_eq!(
            sample(&text, "noded_rpc_request_duration_seconds_bucket", &le),
            Some(1.0)
        );
    }

    #[test]
    fn signature_batches_count_signatures_and_sizes() {
        let m = Metrics::new();
        m.signatures.batch(64, true);
        m.signatures.batch(1, false);
        let text = m.encode().unwrap();
        assert_eq!(
            sample(&text, "noded_signatures_checked_total", &[]),
            Some(65.0)
        );
        assert_eq!(
            sample(&text, "noded_signature_batch_size_count", &[]),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "noded_signature_batch_size_sum", &[]),
            Some(65.0)
        );
        assert_eq!(
            sample(&text, "noded_signature_failed_batches_total", &[]),
            Some(1.0)
        );
    }

    #[test]
    fn refreshers_run_at_scrape_time() {
        let m = Arc::new(Metrics::new());
        let height = Arc::new(std::sync::atomic::AtomicI64::new(7));
        let (gauge, source) = (m.chain.tip_height.clone(), height.clone());
        m.on_scrape(move || {
            gauge.set(source.load(std::sync::atomic::Ordering::Relaxed));
        });
        let tip = |text: &str| sample(text, "noded_chain_tip_height", &[]);
        assert_eq!(tip(&m.encode().unwrap()), Some(7.0));
        height.store(9, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(tip(&m.encode().unwrap()), Some(9.0));
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory_bytes().is_some_and(|b| b > 0));
            let text = Metrics::new().encode().unwrap();
            let rss = sample(&text, "noded_process_resident_memory_bytes", &[]);
            assert!(rss.is_some_and(|b| b > 0.0));
        }
    }

    /// Every `noded_*` name in `text`, as written.
    fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("noded_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_dashboard_and_the_operations_doc_use_only_metrics_that_exist() {
        let exposed = metric_names(&Metrics::new().encode().unwrap());
        let dashboard = include_str!("../../config/grafana-dashboard.json");
        let json: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
        assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()));
        let doc = include_str!("../../docs/OPERATIONS.md");
        for (what, text) in [("dashboard", dashboard), ("OPERATIONS.md", doc)] {
            let unknown: Vec<String> = metric_names(text)
                .into_iter()
                .filter(|n| !exposed.contains(n))
                .collect();
            assert!(
                unknown.is_empty(),
                "{what} names unknown metrics: {unknown:?}"
            );
        }
        // And the doc's table lists every family (counters by their `_total` name).
        let text = Metrics::new().encode().unwrap();
        let families = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next());
        for family in families {
            let listed = [format!("`{family}`"), format!("`{family}_total`")]
                .iter()
                .any(|cell| doc.contains(&format!("| {cell} |")));
            assert!(listed, "OPERATIONS.md has no row for {family}");
        }
    }

    #[test]
    fn two_nodes_do_not_share_metrics() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.chain.blocks_connected.inc();
        let text = b.encode().unwrap();
        assert_eq!(
            sample(&text, "noded_chain_blocks_connected_total", &[]),
            Some(0.0)
        );
    }
}
