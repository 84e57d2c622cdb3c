// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-backoffice`: the back office's ledger daemon and its reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use facegate_backoffice::{CancellationToken, LedgerConfig};
use tracing::info;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "facegate-backoffice",
    version,
    about = "FaceGate's back office: the passages ledger"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the broker is, and as whom the ledger logs in.
#[derive(clap::Args)]
struct Broker {
    /// The broker, nats://host:port (comma-separated for several).
    #[arg(long, value_name = "URL")]
    nats: String,
    /// The ledger's NATS user.
    #[arg(long, requires = "password_file")]
    user: Option<String>,
    /// A file holding that user's password (its first line), so it is not in `ps`.
    #[arg(long, value_name = "FILE", requires = "user")]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Consume every gate's passages into PostgreSQL and confirm them to the gates, until
    /// SIGINT or SIGTERM.
    Ledger {
        #[command(flatten)]
        broker: Broker,
        /// The ledger database: a libpq connection string ("host=... dbname=ledger").
        #[arg(long, value_name = "CONNSTR")]
        postgres: String,
        /// Messages written per transaction.
        #[arg(long, default_value_t = LedgerConfig::default().batch)]
        batch: usize,
    },
    /// Create (or check) the passages stream and the confirmations bucket, then exit.
    Prepare {
        #[command(flatten)]
        broker: Broker,
    },
    /// Print one line per gate: `gate contiguous highest missing=a-b,c`.
    Gaps {
        #[arg(long, value_name = "CONNSTR")]
        postgres: String,
        /// One JSON document instead.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("facegate-backoffice: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("facegate-backoffice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ledger {
            broker:
                Broker {
                    nats,
                    user,
                    password_file,
                },
            postgres,
            batch,
        } => {
            let config = LedgerConfig {
                nats_url: nats,
                nats_user: user,
                nats_password: password_file.as_deref().map(read_password).transpose()?,
                postgres,
                batch,
            };
            let shutdown = CancellationToken::new();
            let signal = wait_for_signal().await?;
            let stop = shutdown.clone();
            tokio::spawn(async move {
                signal.await;
                info!("stopping: signal received");
                stop.cancel();
            });
            facegate_backoffice::run(config, shutdown).await?;
        }
        Command::Prepare {
            broker:
                Broker {
                    nats,
                    user,
                    password_file,
                },
        } => {
            let mut options = async_nats_options(user, password_file.as_deref())?;
            options = options.name("facegate-backoffice prepare");
            let client = options
                .connect(nats.as_str())
                .await
                .with_context(|| format!("NATS at {nats}"))?;
            facegate_backoffice::prepare_broker(&client).await?;
            println!(
                "{} and bucket {} are ready",
                facegate_backoffice::PASSAGES_STREAM,
                facegate_backoffice::CONFIRMED_BUCKET
            );
        }
        Command::Gaps { postgres, json } => {
            let gaps = facegate_backoffice::gaps(&postgres).await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&gaps)?),
                false => gaps.iter().for_each(|gate| println!("{gate}")),
            }
        }
    }
    Ok(())
}

fn async_nats_options(
    user: Option<String>,
    password_file: Option<&Path>,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let options = async_nats::ConnectOptions::new();
    Ok(match (user, password_file) {
        (Some(user), Some(file)) => options.user_and_password(user, read_password(file)?),
        _ => options,
    })
}

/// The first line of the password file.
fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("password file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("password file {}: its first line is empty", path.display());
    }
    Ok(password)
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal during start-up is not lost) and
/// returns what resolves at the first of them.
async fn wait_for_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
