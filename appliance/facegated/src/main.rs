// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated: the gate service. Runs the recognition pipeline, decides, journals every passage,
//! drives the gate and reports over D-Bus (docs/GATE-SERVICE.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use facegate_dbus::{State, Stats};
use facegated::config::ServiceConfig;
use facegated::gate;
use facegated::service::{self, SharedGate, StatusCell};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

const DEFAULT_CONFIG: &str = "/etc/facegate/facegate.toml";
/// How long a stopping service goes on publishing the journal's last passages (well inside
/// systemd's stop timeout).
const PUBLISH_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Parser)]
#[command(name = "facegated", version, about = "The FaceGate gate service")]
struct Args {
    /// Configuration file (FACEGATE_SECTION__KEY environment variables override its keys)
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Open the gate backend, put its outputs in their safe state (relay released with
    /// gate.safe_state = "locked") and exit: the unit's ExecStopPost=, so that a service that
    /// crashed during a grant's pulse does not leave the turnstile unlocked
    SafeState,
    /// Read and validate the configuration file (and its FACEGATE_ environment overrides) and
    /// exit: 0 and one line if the gate would start with it, else the one-line error. The
    /// appliance's first boot checks an operator's file with it before taking it.
    CheckConfig,
}

fn init_logging() {
    // Under systemd, journald stamps each line itself and shows no colours.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
                // async-nats says every failed reconnection attempt at info; the fleet module
                // says an outage once, and its end.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM: stopping"),
        _ = interrupt.recv() => info!("SIGINT: stopping"),
    }
}

/// `facegated check-config`: the configuration as the service would load it, nothing started.
fn check_config(config_file: &Path) -> anyhow::Result<()> {
    ServiceConfig::load(config_file)?;
    println!("{}: valid", config_file.display());
    Ok(())
}

/// `facegated safe-state`: the gate's outputs to their safe state, nothing else.
fn safe_state(config_file: &Path) -> anyhow::Result<()> {
    let config = ServiceConfig::load(config_file)?;
    // Opening writes the safe state; dropping writes it once more and leaves it there.
    drop(gate::open(&config.gate)?);
    info!("the gate is in its safe state");
    Ok(())
}

fn run(args: Args) -> anyhow::Result<()> {
    // Uptime counts from the start, start-up checks included.
    let status = StatusCell::new(Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        ..Stats::default()
    });
    let config = ServiceConfig::load(&args.config)?;
    // The configuration names the backend; everything else is checked after the outputs are
    // safe, so a start that fails (a damaged gallery, a missing model) never leaves the relay
    // as a crashed run left it.
    let gate = gate::open(&config.gate)?;
    service::fail_safe_on_panic(gate.safe_state_handle());
    let gate: SharedGate = Arc::new(Mutex::new(gate));
    gst::init().context("GStreamer failed to initialise")?;
    gstfacegate::plugin_register_static().context("registering the facegate elements")?;
    let prepared = service::prepare(config, Arc::clone(&gate))?;
    let bus_config = prepared.config.dbus.clone();
    let fleet = (prepared.config.fleet.enabled).then(|| {
        (
            prepared.config.fleet.clone(),
            prepared.config.journal.clone(),
        )
    });
    let fleet_gallery = prepared.office_keys.clone().map(|keys| {
        (
            prepared.config.fleet.clone(),
            keys,
            prepared.config.gallery.dir.clone(),
            prepared.lease.clone(),
            Arc::clone(&prepared.gallery),
        )
    });
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let running = service::start(prepared, status.clone(), events)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The journal to the back office, for as long as the service runs.
    let (stop_publishing, stopping) = tokio::sync::watch::channel(false);
    // The office's gallery and lease, until the service stops.
    let _follower = fleet_gallery.map(|(fleet, keys, dir, lease, matching)| {
        runtime.spawn(facegated::fleet::follow_gallery(
            fleet,
            keys,
            dir,
            lease,
            Some(matching),
            stopping.clone(),
        ))
    });
    let publisher = fleet.map(|(fleet, journal)| {
        runtime.spawn(facegated::fleet::publish_journal(
            fleet,
            journal,
            status.clone(),
            stopping,
        ))
    });
    let served = runtime.block_on(async {
        let liveness = Arc::clone(&running.liveness);
        let watchdog = tokio::spawn(async move {
            let Some(timeout) = sd_notify::watchdog_enabled() else {
                return;
            };
            let mut tick = tokio::time::interval(timeout / 2);
            loop {
                tick.tick().await;
                // Fed only if, since the last tick, frames were decided on time (or, with no
                // pipeline running, the supervisor turned over while restarting it).
                if liveness.alive(timeout / 2) {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
            }
        });
        let result = service::serve_until(
            &bus_config,
            &running,
            status.clone(),
            received,
            shutdown_signal(),
        )
        .await;
        watchdog.abort();
        result
    });
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    running.shutdown();
    if let Ok(mut gate) = gate.lock() {
        gate.safe_state()
            .context("putting the gate in its safe state")?;
    }
    if let Some(publisher) = publisher {
        // No passage comes after the decider's stop, and the gate is safe already: what the
        // broker takes within the grace is in the back office now, the rest waits in the
        // journal for the next start.
        let _ = stop_publishing.send(true);
        let flushed =
            runtime.block_on(async { tokio::time::timeout(PUBLISH_GRACE, publisher).await });
        if flushed.is_err() {
            info!("fleet: stopping with passages not yet acknowledged: they wait in the journal");
        }
    }
    let bus = served?;
    let mut final_status = status.snapshot();
    final_status.state = State::Stopped;
    runtime.block_on(bus.update(final_status));
    info!("stopped; the gate is in its safe state");
    Ok(())
}

/// The error and its causes, each said once: a cause whose text its parent already carries
/// (a library error that prints its source and also returns it as `source()`) is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    facegated::memory::limit_allocator_arenas();
    init_logging();
    let args = Args::parse();
    let result = match args.command {
        Some(Command::SafeState) => safe_state(&args.config),
        Some(Command::CheckConfig) => check_config(&args.config),
        None => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, on stderr, which journald keeps under the unit.
            eprintln!("facegated: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}
