//! Typed configuration: command-line flags, environment, config file and built-in defaults,
//! merged in that order of precedence (flags > environment > file > defaults).
//!
//! Owns parsing and validation only; every bad value becomes a `ConfigError` naming the flag
//! or file key to fix. Nothing here touches the network or the datadir's contents.

use crate::params::Network;
use crate::protocol::netgroup::Subnet;
use crate::types::NodeId;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Name of the config file looked for in the datadir when `--config` is not given.
pub const CONFIG_FILE_NAME: &str = "noded.toml";

/// Highest `--rpcmaxbatch`: a batch's answers are held until its last call is done, and the
/// response body is capped at 10 MB by the server anyway.
pub const MAX_RPC_BATCH_SETTING: u32 = 100_000;

pub const DEFAULT_MAX_CONNECTIONS: u32 = 125;
pub const DEFAULT_MAX_INBOUND_PER_IP: u32 = 16;
pub const DEFAULT_BAN_TIME_SECS: u64 = 24 * 60 * 60;

/// `--mine`'s default pause between its blocks on regtest: its trivial work would otherwise
/// give thousands of blocks a second, more than a person following a devnet can watch.
pub const DEFAULT_REGTEST_MINE_INTERVAL_MS: u64 = 1_000;

/// Highest `--mineinterval`: an hour between blocks is already slower than any test wants.
pub const MAX_MINE_INTERVAL_MS: u64 = 3_600_000;

/// Parses a DNS seed: `name` or `name:port`.
/// A bootstrap node: an IP address and port. A host name would be silently unusable (the
/// address fetch dials addresses), so it is refused with what to use instead.
fn parse_bootstrap(text: &str) -> Result<PeerSpec, String> {
    let spec = PeerSpec::parse(text)?;
    if spec.socket_addr().is_none() {
        return Err(format!(
            "a bootstrap node is IP:PORT; '{}' is a host name (give DNS seeds with --dnsseed)",
            spec.host
        ));
    }
    Ok(spec)
}

fn parse_seed(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (
            name,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port '{port}' is not a number from 1 to 65535"))?,
        ),
        None => (text, default_port),
    };
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err("expected a DNS name, optionally with :port".into());
    }
    Ok((name.to_string(), port))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {key} '{value}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{0}")]
    Rule(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// The node's flags. Every option is also read from a `NODED_*` environment variable.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct NodeArgs {
    /// P2P listen port [default: the network's, 8333 on main]
    #[arg(long, env = "NODED_PORT", value_name = "PORT")]
    pub port: Option<u16>,
    /// P2P listen address [default: 0.0.0.0]
    #[arg(long, env = "NODED_BIND", value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Data directory, created if missing [default: ~/.noded]
    #[arg(long, env = "NODED_DATADIR", value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// Keep a connection to this peer: host:port, or <nodeid>@host:port to pin its identity
    #[arg(
        long,
        env = "NODED_ADDNODE",
        value_delimiter = ',',
        value_name = "PEER"
    )]
    pub addnode: Vec<String>,
    /// Grant inbound peers from an address or subnet a permission: [noban@]<addr>[/prefix].
    /// noban (the only one, and the default): scored and disconnected for misbehaviour, never
    /// banned, and let in while their IP is banned
    #[arg(
        long,
        env = "NODED_WHITELIST",
        value_delimiter = ',',
        value_name = "[noban@]SUBNET"
    )]
    pub whitelist: Vec<String>,
    /// Connect only to these peers (same forms as --addnode); no other outbound connections
    #[arg(
        long,
        env = "NODED_CONNECT",
        value_delimiter = ',',
        value_name = "PEER"
    )]
    pub connect: Vec<String>,
    /// JSON-RPC port [default: the network's, 8332 on main]
    #[arg(long, env = "NODED_RPCPORT", value_name = "PORT")]
    pub rpcport: Option<u16>,
    /// JSON-RPC bind address; anything but loopback requires --rpcuser/--rpcpassword
    #[arg(long, env = "NODED_RPCBIND", value_name = "IP")]
    pub rpcbind: Option<IpAddr>,
    /// JSON-RPC user name (cookie authentication works alongside)
    #[arg(long, env = "NODED_RPCUSER", value_name = "USER")]
    pub rpcuser: Option<String>,
    /// JSON-RPC password
    #[arg(
        long,
        env = "NODED_RPCPASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub rpcpassword: Option<String>,
    /// Most calls one JSON-RPC batch may hold; a longer batch gets error -32010 [default: 1000]
    #[arg(long, env = "NODED_RPCMAXBATCH", value_name = "N")]
    pub rpcmaxbatch: Option<u32>,
    /// Network to join
    #[arg(long, env = "NODED_NETWORK", value_enum)]
    pub network: Option<Network>,
    /// Config file (TOML) [default: <datadir>/noded.toml when present]
    #[arg(long, env = "NODED_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Accept no inbound connections
    #[arg(long, env = "NODED_NOLISTEN", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub nolisten: Option<bool>,
    /// Maximum peer connections, inbound and outbound together [default: 125]
    #[arg(long, env = "NODED_MAXCONNECTIONS", value_name = "N")]
    pub maxconnections: Option<u32>,
    /// Inbound connections allowed from one IP address [default: 16]
    #[arg(long, env = "NODED_MAXINBOUNDPERIP", value_name = "N")]
    pub maxinboundperip: Option<u32>,
    /// How long a misbehaving peer stays banned, in seconds [default: 86400]
    #[arg(long, env = "NODED_BANTIME", value_name = "SECONDS")]
    pub bantime: Option<u64>,
    /// DNS seed to ask for peer addresses: name, or name:port [default port: the network's]
    #[arg(
        long,
        env = "NODED_DNSSEED",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub dnsseed: Vec<String>,
    /// DNS server for seed lookups, IP:port [default: the system's resolver]
    #[arg(long, env = "NODED_DNS_RESOLVER", value_name = "ADDR")]
    pub dns_resolver: Option<SocketAddr>,
    /// Announce this node and find others on the local network with mDNS
    #[arg(long, env = "NODED_DISCOVER_LAN", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub discover_lan: Option<bool>,
    /// Bootstrap node (IP:port): asked once for peer addresses over a short connection, then
    /// kept in the address book; unlike --addnode, not kept connected
    #[arg(
        long,
        env = "NODED_BOOTSTRAP",
        value_delimiter = ',',
        value_name = "PEER"
    )]
    pub bootstrap: Vec<String>,
    /// Log filter: trace, debug, info, warn (or warning), error, off, or tracing directives
    /// such as info,noded::net=debug
    #[arg(long, env = "NODED_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log output format
    #[arg(long, env = "NODED_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Mine blocks continuously, paying --mineraddress (or the wallet's address)
    #[arg(long, env = "NODED_MINE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub mine: Option<bool>,
    /// Address that blocks mined by --mine pay [default: the wallet's address]
    #[arg(long, env = "NODED_MINERADDRESS", value_name = "ADDRESS")]
    pub mineraddress: Option<String>,
    /// Threads the --mine nonce search uses [default: all cores]
    #[arg(long, env = "NODED_MINETHREADS", value_name = "N")]
    pub minethreads: Option<usize>,
    /// Least time between two blocks --mine finds, in milliseconds; 0 = as fast as the work
    /// allows [default: 1000 on regtest, 0 elsewhere]
    #[arg(long, env = "NODED_MINEINTERVAL", value_name = "MS")]
    pub mineinterval: Option<u64>,
    /// Mempool size limit in MiB of encoded transactions [default: 32]
    #[arg(long, env = "NODED_MAXMEMPOOL", value_name = "MIB")]
    pub maxmempool: Option<u64>,
    /// Hours a transaction may wait in the mempool before it is dropped [default: 336]
    #[arg(long, env = "NODED_MEMPOOLEXPIRY", value_name = "HOURS")]
    pub mempoolexpiry: Option<u64>,
    /// Testing aid (like bitcoind's hidden -dbcrashratio): write the pending account state to
    /// the chain store every N blocks instead of every 500, so crash tests cross state
    /// flushes [default: 500]
    #[arg(long, hide = true, value_name = "N")]
    pub debug_state_flush_blocks: Option<usize>,
}

/// The config file's keys: the flags' names (with `_` for `-`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub datadir: Option<PathBuf>,
    pub addnode: Option<Vec<String>>,
    pub whitelist: Option<Vec<String>>,
    pub connect: Option<Vec<String>>,
    pub rpcport: Option<u16>,
    pub rpcbind: Option<IpAddr>,
    pub rpcuser: Option<String>,
    pub rpcpassword: Option<String>,
    pub rpcmaxbatch: Option<u32>,
    pub network: Option<Network>,
    pub nolisten: Option<bool>,
    pub maxconnections: Option<u32>,
    pub maxinboundperip: Option<u32>,
    pub bantime: Option<u64>,
    pub dnsseed: Option<Vec<String>>,
    pub dns_resolver: Option<SocketAddr>,
    pub discover_lan: Option<bool>,
    pub bootstrap: Option<Vec<String>>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub mine: Option<bool>,
    pub mineraddress: Option<String>,
    pub minethreads: Option<usize>,
    pub mineinterval: Option<u64>,
    pub maxmempool: Option<u64>,
    pub mempoolexpiry: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            // toml's message spans several lines with a source excerpt; keep it to one.
            message: e.message().to_string()
                + &e.span().map(|s| at(&text, s.start)).unwrap_or_default(),
        })
    }
}

/// Where in the file a parse error is: its line, and the key set there when the line is a
/// `key = value` (a bad value's message names the type it wanted, not the key).
fn at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_text = text[start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    match key {
        Some(key) => format!(" (key '{key}', at line {line})"),
        None => format!(" (at line {line})"),
    }
}

/// One `--whitelist` entry: `[noban@]<addr>[/prefix]` (noban is the one permission, and the
/// default).
fn parse_whitelist(text: &str) -> Result<Subnet, String> {
    let range = match text.split_once('@') {
        Some(("noban", range)) => range,
        Some((permission, _)) => {
            return Err(format!(
                "unknown permission '{permission}' (the one permission is noban)"
            ))
        }
        None => text,
    };
    Subnet::parse(range)
}

/// The words `--log-level` takes alone, as a list for error messages.
pub const LOG_LEVEL_WORDS: &str = "trace, debug, info, warn (or warning), error, off";

/// A level word (any case; `warning` is `warn`) in the form `EnvFilter` reads.
fn level_word(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "error" => Some("error"),
        "off" => Some("off"),
        _ => None,
    }
}

/// Checks a `--log-level` value and returns it as the `EnvFilter` directive list to install.
///
/// `EnvFilter` reads a bare word as a target name (`foo` = "everything from target foo"), so
/// a mistyped level would silently log nothing; here a bare word must be a level. Directives
/// with a target (`noded::net=trace`, `info,noded=debug`) pass through, with `warning`
/// accepted for `warn` on either side of `=`.
pub fn parse_log_filter(text: &str) -> Result<String, String> {
    let mut directives = Vec::new();
    for directive in text.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let normalised = match directive.rsplit_once('=') {
            Some((target, level)) => match level_word(level.trim()) {
                Some(level) => format!("{target}={level}"),
                None => {
                    return Err(format!(
                        "'{}' in '{directive}' is not a level: give {LOG_LEVEL_WORDS}",
                        level.trim()
                    ))
                }
            },
            // A span filter (`[span]`) or a path (`noded::net`) names a target on purpose.
            None if directive.contains('[') || directive.contains("::") => directive.to_string(),
            None => match level_word(directive) {
                Some(level) => level.to_string(),
                None => {
                    return Err(format!(
                        "'{directive}' is not a level: give {LOG_LEVEL_WORDS}, or directives like info,noded::net=debug"
                    ))
                }
            },
        };
        directives.push(normalised);
    }
    if directives.is_empty() {
        return Err(format!("empty: give {LOG_LEVEL_WORDS}"));
    }
    let filter = directives.join(",");
    tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| e.to_string())?;
    Ok(filter)
}

/// A peer to dial, as given by --addnode or --connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The identity the peer must present, when pinned.
    pub node_id: Option<NodeId>,
    pub host: String,
    pub port: u16,
}

impl PeerSpec {
    /// The socket address, when the host is an IP address (a host name needs resolving).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// Parses `host:port`, `[v6]:port` or `<nodeid>@host:port`.
    pub fn parse(text: &str) -> Result<PeerSpec, String> {
        let (node_id, endpoint) = match text.split_once('@') {
            Some((id, rest)) => (Some(id.parse::<NodeId>().map_err(|e| e.to_string())?), rest),
            None => (None, text),
        };
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or("expected host:port or <nodeid>@host:port")?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("port '{port}' is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err("port 0 cannot be dialled".into());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        Ok(PeerSpec {
            node_id,
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.node_id {
            write!(f, "{id}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The resolved, validated configuration the node runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub network: Network,
    pub datadir: PathBuf,
    /// Where the P2P listener binds; `None` with --nolisten.
    pub listen: Option<SocketAddr>,
    pub addnode: Vec<PeerSpec>,
    /// Inbound peers from these ranges are never banned (`--whitelist noban@...`).
    pub noban: Vec<Subnet>,
    pub connect: Vec<PeerSpec>,
    pub rpc_addr: SocketAddr,
    /// Configured user and password, in addition to the cookie.
    pub rpc_credentials: Option<(String, String)>,
    /// Most calls in one JSON-RPC batch.
    pub rpc_max_batch: u32,
    pub max_connections: u32,
    pub max_inbound_per_ip: u32,
    pub ban_time_secs: u64,
    /// DNS seed names with the port their nodes listen on.
    pub dns_seeds: Vec<(String, u16)>,
    pub dns_resolver: Option<SocketAddr>,
    pub discover_lan: bool,
    pub bootstrap: Vec<PeerSpec>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Mine continuously (--mine).
    pub mine: bool,
    /// Where mined blocks pay; `None`: the wallet's address.
    pub miner_address: Option<crate::types::Address>,
    /// Nonce-search threads of --mine; `None`: all cores.
    pub mine_threads: Option<usize>,
    /// Least time between two blocks of --mine (zero: no pause).
    pub mine_interval: std::time::Duration,
    /// Mempool byte cap (encoded transactions).
    pub max_mempool_bytes: usize,
    pub mempool_expiry_secs: u64,
    /// Blocks whose account changes may stay pending before a state flush.
    pub state_flush_blocks: usize,
}

/// Names a value's origin in errors: the flag (which the env var mirrors) or the file key.
struct Origin<'a> {
    file: Option<&'a Path>,
}

impl Origin<'_> {
    fn name(&self, key: &str, from_file: bool) -> String {
        match (from_file, self.file) {
            (true, Some(path)) => format!("'{key}' in {}", path.display()),
            _ => format!("--{}", key.replace('_', "-")),
        }
    }

    /// A list setting: the flag's entries if any were given, else the file's; each parsed by
    /// `parse`, the first bad one an error naming the flag or the file key.
    fn list<T>(
        &self,
        flag: Vec<String>,
        from_file: Option<Vec<String>>,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let (list, in_file) = if flag.is_empty() {
            (from_file.unwrap_or_default(), true)
        } else {
            (flag, false)
        };
        list.iter()
            .map(|text| {
                parse(text).map_err(|reason| ConfigError::Invalid {
                    key: self.name(key, in_file),
                    value: text.clone(),
                    reason,
                })
            })
            .collect()
    }
}

fn default_datadir() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".noded"))
        .ok_or_else(|| ConfigError::Rule("HOME is not set: pass --datadir".into()))
}

impl Config {
    /// Resolves flags (clap already folded the environment into them) against the config
    /// file: the one named by --config, else `<datadir>/noded.toml` if it exists.
    pub fn resolve(args: NodeArgs) -> Result<Config, ConfigError> {
        let (file, file_path) = match &args.config {
            Some(path) => (FileConfig::load(path)?, Some(path.clone())),
            None => {
                let datadir = match &args.datadir {
                    Some(d) => d.clone(),
                    None => default_datadir()?,
                };
                let path = datadir.join(CONFIG_FILE_NAME);
                if path.is_file() {
                    (FileConfig::load(&path)?, Some(path))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        Self::merge(args, file, file_path.as_deref())
    }

    /// Merges flags over a parsed config file over the defaults, then validates.
    pub fn merge(
        args: NodeArgs,
        file: FileConfig,
        file_path: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let origin = Origin { file: file_path };
        let network = args.network.or(file.network).unwrap_or(Network::Main);
        let params = network.params();
        let datadir = match args.datadir.or(file.datadir) {
            Some(d) => d,
            None => default_datadir()?,
        };

        let port = args.port.or(file.port).unwrap_or(params.default_p2p_port);
        let bind = args
            .bind
            .or(file.bind)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let nolisten = args.nolisten.or(file.nolisten).unwrap_or(false);
        let listen = (!nolisten).then_some(SocketAddr::new(bind, port));

        let addnode = origin.list(args.addnode, file.addnode, "addnode", PeerSpec::parse)?;
        let connect = origin.list(args.connect, file.connect, "connect", PeerSpec::parse)?;
        let noban = origin.list(args.whitelist, file.whitelist, "whitelist", parse_whitelist)?;
        let bootstrap =
            origin.list(args.bootstrap, file.bootstrap, "bootstrap", parse_bootstrap)?;
        let dns_seeds = origin.list(args.dnsseed, file.dnsseed, "dnsseed", |text| {
            parse_seed(text, params.default_p2p_port)
        })?;

        let rpc_port = args
            .rpcport
            .or(file.rpcport)
            .unwrap_or(params.default_rpc_port);
        let rpc_bind = args
            .rpcbind
            .or(file.rpcbind)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let rpc_credentials = match (
            args.rpcuser.or(file.rpcuser),
            args.rpcpassword.or(file.rpcpassword),
        ) {
            (Some(user), Some(password)) => {
                if user.is_empty() || user.contains(':') {
                    return Err(ConfigError::Invalid {
                        key: "--rpcuser".into(),
                        value: user,
                        reason: "must be non-empty and contain no ':'".into(),
                    });
                }
                if password.is_empty() {
                    return Err(ConfigError::Rule("--rpcpassword must not be empty".into()));
                }
                Some((user, password))
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Rule(
                    "--rpcuser is set but --rpcpassword is not: set both or neither".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::Rule(
                    "--rpcpassword is set but --rpcuser is not: set both or neither".into(),
                ))
            }
        };
        if !rpc_bind.is_loopback() && rpc_credentials.is_none() {
            return Err(ConfigError::Rule(format!(
                "--rpcbind {rpc_bind} is not a loopback address: set --rpcuser and --rpcpassword before exposing RPC"
            )));
        }

        let (log_level, in_file) = match args.log_level {
            Some(level) => (level, false),
            None => (file.log_level.unwrap_or_else(|| "info".into()), true),
        };
        let log_level = parse_log_filter(&log_level).map_err(|reason| ConfigError::Invalid {
            key: origin.name("log_level", in_file),
            value: log_level.clone(),
            reason,
        })?;

        let (mineraddress, in_file) = match args.mineraddress {
            Some(a) => (Some(a), false),
            None => (file.mineraddress, true),
        };
        let miner_address = mineraddress
            .map(|text| {
                text.parse().map_err(|_| ConfigError::Invalid {
                    key: origin.name("mineraddress", in_file),
                    value: text.clone(),
                    reason: "an address is 40 hex characters".into(),
                })
            })
            .transpose()?;
        let rpc_max_batch = args
            .rpcmaxbatch
            .or(file.rpcmaxbatch)
            .unwrap_or(crate::rpc::server::MAX_BATCH_REQUESTS);
        if !(1..=MAX_RPC_BATCH_SETTING).contains(&rpc_max_batch) {
            return Err(ConfigError::Rule(format!(
                "--rpcmaxbatch {rpc_max_batch} is out of range: give 1 to {MAX_RPC_BATCH_SETTING}"
            )));
        }
        let mine_threads = args.minethreads.or(file.minethreads);
        if mine_threads == Some(0) {
            return Err(ConfigError::Rule("--minethreads must be at least 1".into()));
        }
        let mine_interval_ms =
            args.mineinterval
                .or(file.mineinterval)
                .unwrap_or(if network == Network::Regtest {
                    DEFAULT_REGTEST_MINE_INTERVAL_MS
                } else {
                    0
                });
        if mine_interval_ms > MAX_MINE_INTERVAL_MS {
            return Err(ConfigError::Rule(format!(
                "--mineinterval {mine_interval_ms} is out of range: give 0 to {MAX_MINE_INTERVAL_MS} ms"
            )));
        }
        let max_mempool_mib = args.maxmempool.or(file.maxmempool).unwrap_or(32);
        if !(1..=65_536).contains(&max_mempool_mib) {
            return Err(ConfigError::Rule(format!(
                "--maxmempool {max_mempool_mib} is out of range: give 1 to 65536 MiB"
            )));
        }
        let state_flush_blocks = args
            .debug_state_flush_blocks
            .unwrap_or(crate::chain::store::MAX_PENDING_BLOCKS);
        if !(1..=100_000).contains(&state_flush_blocks) {
            return Err(ConfigError::Rule(format!(
                "--debug-state-flush-blocks {state_flush_blocks} is out of range: give 1 to 100000"
            )));
        }
        let mempool_expiry_hours = args.mempoolexpiry.or(file.mempoolexpiry).unwrap_or(336);
        if !(1..=100_000).contains(&mempool_expiry_hours) {
            return Err(ConfigError::Rule(format!(
                "--mempoolexpiry {mempool_expiry_hours} is out of range: give 1 to 100000 hours"
            )));
        }

        Ok(Config {
            network,
            datadir,
            listen,
            addnode,
            noban,
            connect,
            rpc_addr: SocketAddr::new(rpc_bind, rpc_port),
            rpc_credentials,
            rpc_max_batch,
            max_connections: args
                .maxconnections
                .or(file.maxconnections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_inbound_per_ip: args
                .maxinboundperip
                .or(file.maxinboundperip)
                .unwrap_or(DEFAULT_MAX_INBOUND_PER_IP),
            ban_time_secs: args
                .bantime
                .or(file.bantime)
                .unwrap_or(DEFAULT_BAN_TIME_SECS),
            dns_seeds,
            dns_resolver: args.dns_resolver.or(file.dns_resolver),
            discover_lan: args.discover_lan.or(file.discover_lan).unwrap_or(false),
            bootstrap,
            log_level,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            mine: args.mine.or(file.mine).unwrap_or(false),
            miner_address,
            mine_threads,
            mine_interval: std::time::Duration::from_millis(mine_interval_ms),
            max_mempool_bytes: (max_mempool_mib as usize) << 20,
            mempool_expiry_secs: mempool_expiry_hours * 3600,
            state_flush_blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeArgs {
        NodeArgs {
            datadir: Some("/tmp/x".into()),
            ..Default::default()
        }
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_follow_the_network() {
        let c = Config::merge(args(), FileConfig::default(), None).unwrap();
        assert_eq!(c.network, Network::Main);
        assert_eq!(c.listen, Some("0.0.0.0:8333".parse().unwrap()));
        assert_eq!(c.rpc_addr, "127.0.0.1:8332".parse().unwrap());
        assert_eq!(c.max_connections, 125);
        let mut a = args();
        a.network = Some(Network::Regtest);
        let c = Config::merge(a, FileConfig::default(), None).unwrap();
        assert_eq!(c.rpc_addr.port(), 18443);
    }

    #[test]
    fn flags_beat_file_beats_default() {
        let f = file("port = 1000\nrpcport = 2000\nmaxconnections = 7\nnetwork = \"regtest\"");
        let mut a = args();
        a.port = Some(3000);
        let c = Config::merge(a, f, None).unwrap();
        assert_eq!(c.listen.unwrap().port(), 3000, "flag wins over file");
        assert_eq!(c.rpc_addr.port(), 2000, "file wins over default");
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.network, Network::Regtest);
    }

    #[test]
    fn nolisten_from_file_can_be_overridden_by_flag() {
        let f = file("nolisten = true");
        assert_eq!(Config::merge(args(), f, None).unwrap().listen, None);
        let mut a = args();
        a.nolisten = Some(false);
        assert!(Config::merge(a, file("nolisten = true"), None)
            .unwrap()
            .listen
            .is_some());
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let err = toml::from_str::<FileConfig>("prot = 1").unwrap_err();
        assert!(err.message().contains("prot"), "{err}");
    }

    #[test]
    fn bad_addnode_names_the_flag_or_the_file_key() {
        let mut a = args();
        a.addnode = vec!["nohost".into()];
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid --addnode 'nohost'"),
            "{err}"
        );
        let f = file("addnode = [\"h:99999\"]");
        let err = Config::merge(args(), f, Some(Path::new("/etc/n.toml"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid 'addnode' in /etc/n.toml"),
            "{err}"
        );
    }

    #[test]
    fn bootstrap_nodes_are_ip_addresses_and_a_host_name_is_refused_by_name() {
        let mut a = args();
        a.bootstrap = vec!["127.0.0.1:8333".into(), "[::1]:8333".into()];
        let c = Config::merge(a, FileConfig::default(), None).unwrap();
        assert_eq!(c.bootstrap.len(), 2);
        let mut a = args();
        a.bootstrap = vec!["seed.example.com:8333".into()];
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid --bootstrap 'seed.example.com:8333'"),
            "{text}"
        );
        assert!(text.contains("--dnsseed"), "{text}");
    }

    #[test]
    fn whitelist_entries_parse_from_flag_or_file_and_bad_ones_name_the_key() {
        let mut a = args();
        a.whitelist = vec!["noban@127.0.0.1".into(), "10.0.0.0/8".into()];
        let c = Config::merge(a, FileConfig::default(), None).unwrap();
        assert_eq!(c.noban.len(), 2);
        assert!(c.noban[1].contains("10.9.9.9".parse().unwrap()));
        let f = file("whitelist = [\"noban@192.168.0.0/16\"]");
        let c = Config::merge(args(), f, None).unwrap();
        assert!(c.noban[0].contains("192.168.3.4".parse().unwrap()));
        let mut a = args();
        a.whitelist = vec!["relay@1.2.3.4".into()];
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid --whitelist 'relay@1.2.3.4': unknown permission 'relay'"),
            "{err}"
        );
        let f = file("whitelist = [\"noban@10.1.2.3/8\"]");
        let err = Config::merge(args(), f, Some(Path::new("/etc/n.toml"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid 'whitelist' in /etc/n.toml"),
            "{err}"
        );
    }

    #[test]
    fn peer_specs_parse() {
        let p = PeerSpec::parse("127.0.0.1:8333").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.node_id),
            ("127.0.0.1", 8333, None)
        );
        let id = "ab".repeat(32);
        let p = PeerSpec::parse(&format!("{id}@example.org:1")).unwrap();
        assert_eq!(p.node_id.unwrap().to_string(), id);
        assert_eq!(p.to_string(), format!("{id}@example.org:1"));
        let p = PeerSpec::parse("[::1]:5").unwrap();
        assert_eq!(p.host, "::1");
        assert_eq!(p.to_string(), "[::1]:5");
        assert!(PeerSpec::parse("zz@h:1").is_err());
        assert!(PeerSpec::parse("h:0").is_err());
        assert!(PeerSpec::parse(":1").is_err());
    }

    #[test]
    fn rpcmaxbatch_defaults_reads_the_file_and_is_range_checked() {
        let c = Config::merge(NodeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(c.rpc_max_batch, crate::rpc::server::MAX_BATCH_REQUESTS);
        let c = Config::merge(NodeArgs::default(), file("rpcmaxbatch = 7"), None).unwrap();
        assert_eq!(c.rpc_max_batch, 7);
        let a = NodeArgs {
            rpcmaxbatch: Some(0),
            ..NodeArgs::default()
        };
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("--rpcmaxbatch 0"), "{err}");
    }

    #[test]
    fn exposing_rpc_requires_credentials() {
        let mut a = args();
        a.rpcbind = Some("0.0.0.0".parse().unwrap());
        let err = Config::merge(a.clone(), FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("--rpcbind 0.0.0.0"), "{err}");
        a.rpcuser = Some("u".into());
        a.rpcpassword = Some("p".into());
        assert!(Config::merge(a, FileConfig::default(), None).is_ok());
    }

    #[test]
    fn half_configured_credentials_are_refused() {
        let mut a = args();
        a.rpcuser = Some("u".into());
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("--rpcpassword"), "{err}");
    }

    #[test]
    fn log_level_words_directives_and_warning_are_accepted() {
        for (given, installed) in [
            ("info", "info"),
            ("WARNING", "warn"),
            ("warning", "warn"),
            ("off", "off"),
            ("info,noded=debug", "info,noded=debug"),
            ("noded::net=trace", "noded::net=trace"),
            ("info, noded=warning", "info,noded=warn"),
            ("noded::net", "noded::net"),
        ] {
            assert_eq!(parse_log_filter(given).as_deref(), Ok(installed), "{given}");
        }
    }

    #[test]
    fn a_bare_word_that_is_not_a_level_is_refused_with_the_accepted_words() {
        for bad in ["foo", "noded", "info,verbose", "noded=loud", "", " , "] {
            let err = parse_log_filter(bad).unwrap_err();
            assert!(err.contains("trace, debug, info, warn"), "{bad}: {err}");
        }
        let mut a = args();
        a.log_level = Some("foo".into());
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid --log-level 'foo': 'foo' is not a level"),
            "{err}"
        );
        let f = file("log_level = \"verbose\"");
        let err = Config::merge(args(), f, Some(Path::new("/etc/n.toml"))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid 'log_level' in /etc/n.toml 'verbose'"),
            "{err}"
        );
        let c = Config::merge(args(), file("log_level = \"warning\""), None).unwrap();
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn mine_interval_defaults_per_network_reads_the_file_and_is_range_checked() {
        let c = Config::merge(args(), FileConfig::default(), None).unwrap();
        assert_eq!(c.mine_interval, std::time::Duration::ZERO, "main: no brake");
        let regtest = file("network = \"regtest\"");
        let c = Config::merge(args(), regtest, None).unwrap();
        assert_eq!(c.mine_interval.as_millis(), 1_000);
        let c = Config::merge(
            args(),
            file("network = \"regtest\"\nmineinterval = 0"),
            None,
        );
        assert_eq!(c.unwrap().mine_interval, std::time::Duration::ZERO);
        let mut a = args();
        a.mineinterval = Some(250);
        let c = Config::merge(a, file("mineinterval = 0"), None).unwrap();
        assert_eq!(c.mine_interval.as_millis(), 250, "flag wins over file");
        let mut a = args();
        a.mineinterval = Some(MAX_MINE_INTERVAL_MS + 1);
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("--mineinterval"), "{err}");
    }

    #[test]
    fn every_flag_has_a_help_text() {
        use clap::Args;
        let command = NodeArgs::augment_args(clap::Command::new("noded"));
        for arg in command.get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.trim().is_empty(), "--{} has no help", arg.get_id());
        }
    }

    #[test]
    fn bad_log_level_is_named() {
        let mut a = args();
        a.log_level = Some("=[".into());
        let err = Config::merge(a, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().starts_with("invalid --log-level"), "{err}");
    }
}
