//! The `noded` command line: parse flags, resolve the config, run the node or the RPC client.

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use noded::config::{Config, LogFormat, NodeArgs};
use noded::rpc::client;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Call a JSON-RPC method of the noded running on a datadir, print the result
    Rpc {
        /// The running node's data directory [default: ~/.noded]
        #[arg(long, env = "NODED_DATADIR", value_name = "DIR")]
        datadir: Option<PathBuf>,
        /// Method name, e.g. getinfo
        method: String,
        /// Parameters; each is read as JSON if it parses, else as a string
        params: Vec<String>,
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
            method,
            params,
        }) => run_rpc(datadir, &method, &params),
        Some(Command::Keygen { out }) => noded::wallet::keygen_command(out.as_deref())
            .map(|text| println!("{text}"))
            .map_err(Into::into),
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
        .map(|hex| println!("{hex}"))
        .map_err(Into::into),
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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes generated text to stdout. A reader that stopped early (`| head`) is not an error,
/// and no write failure panics as `println!` would.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("noded")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(noded::node::run(config))?;
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&config.log_level)
        .expect("log level validated by Config");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run_rpc(datadir: Option<PathBuf>, method: &str, params: &[String]) -> anyhow::Result<()> {
    let datadir = match datadir {
        Some(d) => d,
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: pass --datadir")?)
            .join(".noded"),
    };
    let result = client::call_datadir(&datadir, method, client::params_from_args(params))?;
    match result {
        serde_json::Value::String(s) => println!("{s}"),
        other => println!("{}", serde_json::to_string_pretty(&other)?),
    }
    Ok(())
}
