// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated: the gate service. Runs the recognition pipeline, decides, journals every passage,
//! drives the gate and reports over D-Bus (docs/GATE-SERVICE.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use facegate_dbus::{State, Stats};
use facegated::config::ServiceConfig;
use facegated::service::{self, SharedGate, StatusCell};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

const DEFAULT_CONFIG: &str = "/etc/facegate/facegate.toml";

#[derive(Parser)]
#[command(name = "facegated", version, about = "The FaceGate gate service")]
struct Args {
    /// Configuration file (FACEGATE_SECTION__KEY environment variables override its keys)
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

fn init_logging() {
    // Under systemd, journald stamps each line itself and shows no colours.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
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

/// On a panic anywhere, the gate's outputs go to their safe state before the process dies.
fn install_panic_hook(gate: SharedGate) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut gate) = gate.try_lock() {
            let _ = gate.safe_state();
        }
        default(info);
    }));
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

fn run(args: Args) -> anyhow::Result<()> {
    let config = ServiceConfig::load(&args.config)?;
    gst::init().context("GStreamer failed to initialise")?;
    gstfacegate::plugin_register_static().context("registering the facegate elements")?;
    let prepared = service::prepare(config)?;
    let gate = prepared.gate.clone();
    install_panic_hook(gate.clone());
    let bus_config = prepared.config.dbus.clone();
    let status = StatusCell::new(Stats {
        version: env!("CARGO_PKG_VERSION").into(),
        ..Stats::default()
    });
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let running = service::start(prepared, status.clone(), events)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let heartbeat = running.heartbeat.clone();
        let watchdog = tokio::spawn(async move {
            let Some(timeout) = sd_notify::watchdog_enabled() else {
                return;
            };
            let mut tick = tokio::time::interval(timeout / 2);
            loop {
                tick.tick().await;
                // Only a supervisor that is still turning over keeps systemd's watchdog fed.
                let alive = heartbeat
                    .lock()
                    .map(|at| at.elapsed() < timeout)
                    .unwrap_or(false);
                if alive {
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
    // The panic hook holds the gate too, so it is never dropped: put it in its safe state here.
    if let Ok(mut gate) = gate.lock() {
        gate.safe_state()
            .context("putting the gate in its safe state")?;
    }
    let bus = served?;
    let mut final_status = status.snapshot();
    final_status.state = State::Stopped;
    runtime.block_on(bus.update(final_status));
    info!("stopped; the gate is in its safe state");
    Ok(())
}

fn main() -> ExitCode {
    facegated::memory::limit_allocator_arenas();
    init_logging();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, on stderr, which journald keeps under the unit.
            eprintln!("facegated: {e:#}");
            ExitCode::FAILURE
        }
    }
}
