//! The `noded` command line: parse flags, resolve the config, run the node or the RPC client.

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use noded::config::{Config, LogFormat, NodeArgs};
use noded::rpc::client;
use noded::rpc::server::LogControl;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "noded",
    version,
    about = "A full node of a small Bitcoin-style proof-of-work chain",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Call a JSON-RPC method of a running noded, print the result
    Rpc {
        /// The running node's data directory, for its address and cookie [default: ~/.noded]
        #[arg(long, env = "NODED_DATADIR", value_name = "DIR")]
        datadir: Option<PathBuf>,
        /// Node to call: host, ip or host:port (as bitcoin-cli -rpcconnect) [default: 127.0.0.1]
        #[arg(long, value_name = "HOST")]
        rpcconnect: Option<String>,
        /// RPC port [default: the host:port given, else the datadir's, else 8332]
        #[arg(long, value_name = "PORT")]
        rpcport: Option<u16>,
        /// User name for --rpcpassword (instead of the datadir's cookie)
        #[arg(long, value_name = "USER", requires = "rpcpassword")]
        rpcuser: Option<String>,
        /// Password for --rpcuser
        #[arg(long, value_name = "PASSWORD", requires = "rpcuser")]
        rpcpassword: Option<String>,
        /// Method name, e.g. getinfo
        method: String,
        /// Parameters; each is read as JSON if it parses, else as a string
        params: Vec<String>,
    },
    /// Start N regtest nodes on free loopback ports, connected; Ctrl-C stops them all
    Devnet {
        /// How many nodes
        #[arg(long, default_value_t = 3, value_name = "N")]
        nodes: usize,
        /// How they are connected
        #[arg(long, value_enum, default_value = "line")]
        topology: noded::devnet::Topology,
        /// Where their datadirs (and logs, <root>/nodeK/noded.log) go [default: a new
        /// directory under the system temp dir]
        #[arg(long, value_name = "DIR")]
        datadir_root: Option<PathBuf>,
    },
    /// Make a new wallet key offline; print its secret (hex) and address
    Keygen {
        /// Write the secret key to this file (mode 0600) instead of printing it
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign a transfer offline with a key file; print the hex for sendrawtransaction
    Signtx {
        /// File whose first line is the sender's secret key (hex), e.g. from keygen --out
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Recipient address (40 hex characters)
        #[arg(long, value_name = "ADDRESS")]
        to: noded::types::Address,
        /// Amount in base units (1 coin = 100000000)
        #[arg(long, value_name = "UNITS")]
        amount: u64,
        /// Fee in base units
        #[arg(long, value_name = "UNITS")]
        fee: u64,
        /// The sender account's nonce this transfer uses
        #[arg(long, value_name = "N")]
        nonce: u64,
        /// Network the signature is for
        #[arg(long, value_enum, default_value = "main")]
        network: noded::params::Network,
    },
    /// Print a shell completion script to stdout (docs/OPERATIONS.md says where to put it)
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout, e.g. `noded manpage > noded.1 && man ./noded.1`
    Manpage,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Rpc {
            datadir,
            rpcconnect,
            rpcport,
            rpcuser,
            rpcpassword,
            method,
            params,
        }) => {
            let target = RpcTarget {
                datadir,
                connect: rpcconnect,
                port: rpcport,
                user: rpcuser.zip(rpcpassword),
            };
            run_rpc(target, &method, &params)
        }
        Some(Command::Devnet {
            nodes,
            topology,
            datadir_root,
        }) => noded::devnet::run(noded::devnet::DevnetOptions {
            nodes,
            topology,
            root: datadir_root,
        })
        .map_err(Into::into),
        Some(Command::Keygen { out }) => noded::wallet::keygen_command(out.as_deref())
            .map_err(Into::into)
            .and_then(|text| print_out(&text)),
        Some(Command::Signtx {
            key,
            to,
            amount,
            fee,
            nonce,
            network,
        }) => noded::wallet::signtx_command(
            &key,
            network,
            to,
            noded::types::Amount(amount),
            noded::types::Amount(fee),
            nonce,
        )
        .map_err(Into::into)
        .and_then(|hex| print_out(&hex)),
        Some(Command::Completions { shell }) => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "noded", &mut script);
            write_stdout(&script)
        }
        Some(Command::Manpage) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("cannot render the manual page")
                .and_then(|()| write_stdout(&page))
        }
        None => run_node(cli.node),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`noded rpc ... | head`): nothing more to say to anyone.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let report = error_report(&e);
            eprintln!("error: {report}");
            // The server may have given the usage already (a parameter of the wrong type).
            if let Some(usage) = usage_hint(&e).filter(|_| !report.contains("(usage: ")) {
                eprintln!("usage: noded rpc {usage}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once. thiserror messages often interpolate their source
/// (`"cannot listen on {addr}: {source}"`) while also reporting it as `source()`, so printing
/// the chain with `{:#}` said "Address already in use (os error 98)" twice; a cause whose
/// text the message already holds is left out.
fn error_report(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// The usage line of the method a params error came from.
fn usage_hint(e: &anyhow::Error) -> Option<String> {
    let failed = e.downcast_ref::<RpcFailed>()?;
    match &failed.error {
        client::ClientError::Rpc { code, .. } if *code == client::INVALID_PARAMS => {
            noded::rpc::server::method_help(&failed.method).map(|m| m.usage())
        }
        _ => None,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` and a newline to stdout; a closed pipe is an error the caller treats as a
/// quiet end (println! would panic on it).
fn print_out(text: &str) -> anyhow::Result<()> {
    write_stdout(text.as_bytes())?;
    write_stdout(b"\n")
}

/// Writes `bytes` to stdout, with `print_out`'s handling of a closed pipe.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// A failed call, with the method it was for (to show its usage).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
struct RpcFailed {
    method: String,
    error: client::ClientError,
}

/// Where `noded rpc` sends its call: bitcoin-cli's flags, else the datadir's files.
struct RpcTarget {
    datadir: Option<PathBuf>,
    connect: Option<String>,
    port: Option<u16>,
    user: Option<(String, String)>,
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let log = init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("noded")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(noded::node::run_with_log(config, Some(log)))?;
    Ok(())
}

fn init_logging(config: &Config) -> Arc<dyn LogControl> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&config.log_level)
        .expect("log level validated by Config");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The format is chosen before the filter is made reloadable: the reload handle's type
    // names the subscriber it filters.
    match config.log_format {
        LogFormat::Human => {
            let builder = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Arc::new(ReloadableFilter(handle))
        }
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Arc::new(ReloadableFilter(handle))
        }
    }
}

/// The `logging` RPC's hold on the process's log filter.
struct ReloadableFilter<S>(tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>);

impl<S: Send + Sync + 'static> LogControl for ReloadableFilter<S> {
    fn filter(&self) -> String {
        self.0
            .with_current(|f| f.to_string())
            .unwrap_or_else(|e| format!("(unavailable: {e})"))
    }

    fn set_filter(&self, filter: &str) -> Result<(), String> {
        // The rules --log-level follows: a bare word must be a level (`warning` is warn).
        let filter = noded::config::parse_log_filter(filter)?;
        let parsed = tracing_subscriber::EnvFilter::builder()
            .parse(&filter)
            .map_err(|e| e.to_string())?;
        self.0.reload(parsed).map_err(|e| e.to_string())
    }
}

fn run_rpc(target: RpcTarget, method: &str, params: &[String]) -> anyhow::Result<()> {
    let datadir = || -> anyhow::Result<PathBuf> {
        Ok(match &target.datadir {
            Some(d) => d.clone(),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set: pass --datadir")?)
                    .join(".noded")
            }
        })
    };
    let params = client::params_from_args(params);
    let flags_name_node = target.connect.is_some() || target.port.is_some();
    let result = match (&target.user, flags_name_node) {
        // bitcoin-cli style: everything on the command line, no datadir read.
        (Some((user, password)), _) => {
            let addr = client::resolve_addr(
                target.connect.as_deref(),
                target.port,
                noded::params::MAIN.default_rpc_port,
            )?;
            client::call(addr, &format!("{user}:{password}"), method, params)
        }
        (None, true) => {
            let (cookie, from_file) = noded::datadir::read_rpc_endpoint(&datadir()?)
                .map_err(client::ClientError::from)?;
            let addr =
                client::resolve_addr(target.connect.as_deref(), target.port, from_file.port())?;
            client::call(addr, &cookie, method, params)
        }
        (None, false) => client::call_datadir(&datadir()?, method, params),
    }
    .map_err(|error| RpcFailed {
        method: method.to_string(),
        error,
    })?;
    match result {
        serde_json::Value::String(s) => print_out(&s),
        other => print_out(&serde_json::to_string_pretty(&other)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:1: {source}")]
    struct Bind {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::from_raw_os_error(98);
        let e = anyhow::Error::from(Bind { source: io() });
        let text = error_report(&e);
        assert_eq!(text.matches("os error 98").count(), 1, "{text}");
        // A cause the message does not mention is still shown.
        let text = error_report(&anyhow::Error::from(Outer(io())));
        assert!(
            text.starts_with("outer: ") && text.contains("os error 98"),
            "{text}"
        );
    }
}
