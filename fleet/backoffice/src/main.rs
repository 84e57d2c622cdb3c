// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-backoffice`: the back office's ledger daemon and its reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::time::Duration;

use facegate_backoffice::office::Office;
use facegate_backoffice::{CancellationToken, LedgerConfig};
use facegate_fleet::gallery::{Embedding, Person};
use tracing::info;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "facegate-backoffice",
    version,
    about = "FaceGate's back office: the passages ledger and the enrolment office"
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
    /// The CA certificate the broker's must chain to; given, TLS is required (the shipped
    /// broker requires it).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
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
    /// Create (or check) the passages stream, the confirmations bucket and the office's gallery
    /// stream, lease bucket and snapshot store, then exit.
    Prepare {
        #[command(flatten)]
        broker: Broker,
    },
    /// The enrolment office's daemon: renew the gates' lease every third of --lease-s and
    /// snapshot the gallery every --snapshot-every-s, until SIGINT or SIGTERM.
    Office {
        #[command(flatten)]
        broker: Broker,
        /// The office's Ed25519 signing key (PKCS#8 PEM, `facegatectl token keygen` makes one).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// How long a lease lets a gate match without hearing from the office.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(3..=86_400))]
        lease_s: u64,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        snapshot_every_s: u64,
    },
    /// Change the fleet's gallery: every gate applies the change, in order.
    Gallery {
        #[command(flatten)]
        broker: Broker,
        /// The office's Ed25519 signing key (PKCS#8 PEM).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(subcommand)]
        change: GalleryCommand,
    },
    /// Print the broker's users as nats-server's `authorization` block (for its
    /// configuration's `include`): the back office's users, allowed everything, and one user
    /// per gate, allowed only its own passages and reading the gallery, the lease and its
    /// confirmations.
    BrokerUsers {
        /// A back-office user (the ledger, the office) and the file holding its password.
        #[arg(long = "back-office", value_name = "NAME=FILE", required = true)]
        back_office: Vec<String>,
        /// A directory of `<gate id>.password` files, one per gate.
        #[arg(long, value_name = "DIR")]
        gates: PathBuf,
    },
    /// Serve the fleet's health at http://LISTEN/metrics for Prometheus (each gate's latest
    /// heartbeat: up, State, Mode, fps, passages, denials, outbox depth, lease, gallery
    /// generation), until SIGINT or SIGTERM.
    Metrics {
        #[command(flatten)]
        broker: Broker,
        /// The address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
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

#[derive(Subcommand)]
enum GalleryCommand {
    /// Enrol someone from their photos (one face each), embedded with the gates' own elements.
    Enrol {
        #[arg(long)]
        id: String,
        #[arg(long)]
        label: Option<String>,
        #[arg(long = "photo", value_name = "PHOTO", required = true)]
        photos: Vec<PathBuf>,
        #[command(flatten)]
        models: facegatectl::pipeline::ModelArgs,
    },
    /// Remove someone from every gate for good.
    Remove {
        #[arg(long)]
        id: String,
    },
    /// Stop every gate recognising someone; the office keeps their embedding for `enable`.
    Disable {
        #[arg(long)]
        id: String,
    },
    /// Let every gate recognise a disabled person again.
    Enable {
        #[arg(long)]
        id: String,
    },
    /// Write a snapshot now and purge the changes it covers.
    Snapshot,
    /// Print the gallery (generation, then `id label [disabled]` per person).
    List,
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
                    tls_ca,
                },
            postgres,
            batch,
        } => {
            let config = LedgerConfig {
                nats_url: nats,
                nats_user: user,
                nats_password: password_file.as_deref().map(read_password).transpose()?,
                nats_tls_ca: tls_ca,
                postgres,
                batch,
            };
            let shutdown = cancelled_on_signal().await?;
            facegate_backoffice::run(config, shutdown).await?;
        }
        Command::Prepare { broker } => {
            let client = connect(&broker, "prepare").await?;
            facegate_backoffice::prepare_broker(&client).await?;
            println!(
                "{} and bucket {}, the office's {}, {} and {}, and the gates' {} are ready",
                facegate_backoffice::PASSAGES_STREAM,
                facegate_backoffice::CONFIRMED_BUCKET,
                facegate_fleet::gallery::GALLERY_STREAM,
                facegate_fleet::gallery::LEASE_BUCKET,
                facegate_fleet::gallery::SNAPSHOT_BUCKET,
                facegate_fleet::health::STATUS_BUCKET,
            );
        }
        Command::Metrics { broker, listen } => {
            let client = connect(&broker, "metrics").await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("--listen {listen}"))?;
            info!("serving the fleet's health at http://{listen}/metrics");
            let shutdown = cancelled_on_signal().await?;
            facegate_backoffice::health::serve_metrics(listener, client, shutdown).await?;
        }
        Command::Office {
            broker,
            key,
            lease_s,
            snapshot_every_s,
        } => {
            let office = Office::new(connect(&broker, "office").await?, load_key(&key)?);
            let shutdown = cancelled_on_signal().await?;
            office
                .run(
                    Duration::from_secs(lease_s),
                    Duration::from_secs(snapshot_every_s),
                    shutdown,
                )
                .await;
        }
        Command::Gallery {
            broker,
            key,
            change,
        } => {
            let office = Office::new(connect(&broker, "gallery").await?, load_key(&key)?);
            let generation = match change {
                GalleryCommand::Enrol {
                    id,
                    label,
                    photos,
                    models,
                } => {
                    facegatectl::init().context("GStreamer failed to initialise")?;
                    let models = models.models();
                    let face = tokio::task::spawn_blocking(move || {
                        facegatectl::enroll::embed_person(&photos, &models)
                    })
                    .await?
                    .map_err(|refusal| anyhow::anyhow!("{id}: {refusal}"))?;
                    office
                        .enrol(Person {
                            label: label.unwrap_or_else(|| id.clone()),
                            id,
                            model: face.model,
                            embedding: Embedding(face.embedding),
                        })
                        .await?
                }
                GalleryCommand::Remove { id } => office.remove(&id).await?,
                GalleryCommand::Disable { id } => office.disable(&id).await?,
                GalleryCommand::Enable { id } => office.enable(&id).await?,
                GalleryCommand::Snapshot => office.snapshot().await?,
                GalleryCommand::List => {
                    let folded = office.gallery().await?;
                    println!("generation {}", folded.gallery.generation());
                    for person in folded.gallery.people() {
                        let disabled = if person.disabled { " disabled" } else { "" };
                        println!("{} {}{disabled}", person.person.id, person.person.label);
                    }
                    for (generation, why) in folded.unreadable {
                        println!("unreadable generation {generation}: {why}");
                    }
                    return Ok(());
                }
            };
            println!("gallery generation {generation}");
        }
        Command::BrokerUsers { back_office, gates } => {
            print!("{}", broker_users(&back_office, &gates)?);
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

fn broker_users(back_office: &[String], gates: &Path) -> anyhow::Result<String> {
    use facegate_backoffice::users::{BrokerUser, Role};
    let mut users = Vec::new();
    for entry in back_office {
        let Some((name, file)) = entry.split_once('=') else {
            bail!("--back-office {entry:?}: expected NAME=FILE");
        };
        users.push(BrokerUser {
            name: name.to_owned(),
            password: read_password(Path::new(file))?,
            role: Role::BackOffice,
        });
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(gates)
        .with_context(|| format!("--gates {}", gates.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "password"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--gates {}: no <gate id>.password file", gates.display());
    }
    for file in files {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let gate: facegate_fleet::GateId = stem
            .parse()
            .with_context(|| format!("{}: the file name is not a gate id", file.display()))?;
        users.push(BrokerUser {
            name: gate.to_string(),
            password: read_password(&file)?,
            role: Role::Gate(gate),
        });
    }
    Ok(facegate_backoffice::users::authorization(&users))
}

async fn connect(broker: &Broker, what: &str) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new().name(format!("facegate-backoffice {what}"));
    if let (Some(user), Some(file)) = (&broker.user, &broker.password_file) {
        options = options.user_and_password(user.clone(), read_password(file)?);
    }
    if let Some(ca) = &broker.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .connect(broker.nats.as_str())
        .await
        .with_context(|| format!("NATS at {}", broker.nats))
}

fn load_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    Ok(facegate_token::load_signing_key(path)?)
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
/// returns a token cancelled at the first of them.
async fn cancelled_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        info!("stopping: signal received");
        stop.cancel();
    });
    Ok(shutdown)
}
