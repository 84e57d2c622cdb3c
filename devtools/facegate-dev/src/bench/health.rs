// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench health`: the fleet's health at metro scale, with a real nats-server on
//! loopback and the back office's own metrics server in-process:
//!
//! - `--gates` heartbeats put in the status bucket at once (one round of every gate's beat), and
//!   how fast the broker takes them from one client;
//! - the metrics server started on that bucket: the time until its `/metrics` holds every gate
//!   (its catch-up from the bucket after a restart);
//! - `--scrapes` scrapes of `/metrics`: their time and size, and the broker's CPU and memory.
//!
//! Results go in docs/BENCHMARKS.md ("Fleet").

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use facegate_backoffice::CancellationToken;
use facegate_fleet::health::{GateStatus, Mode, STATUS_BUCKET, STATUS_SCHEMA_VERSION, State};
use facegate_fleet_servers::{NatsServer, scrape_metrics};
use futures_util::future::try_join_all;
use serde_json::json;

use super::{Stats, ms};

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Gates in the fleet, each with one heartbeat in the bucket
    #[arg(long, default_value_t = 5_000)]
    pub gates: usize,
    /// Scrapes of /metrics timed
    #[arg(long, default_value_t = 20)]
    pub scrapes: usize,
    /// Machine-readable results (default: docs/bench/health.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Heartbeats in flight at once from the one client.
const IN_FLIGHT: usize = 256;

fn heartbeat(gate: usize) -> GateStatus {
    GateStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        gate: format!("gate-{gate:05}").parse().expect("a gate id"),
        sent_at: Utc::now(),
        heartbeat_s: 10,
        state: State::Running,
        mode: Mode::Normal,
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: 86_400,
        restarts: 0,
        fps: 15.0,
        passages_today: 4_000,
        denied_today: 120,
        outbox_depth: 0,
        last_sequence: 1_000_000,
        gallery_generation: 40,
        gallery_size: 100_000,
        fleet_generation: Some(5_000),
        lease_issued_at: Some(Utc::now()),
        lease_expires_at: Some(Utc::now() + chrono::Duration::seconds(300)),
    }
}

pub fn run(args: &HealthArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    if args.gates == 0 || args.scrapes == 0 {
        bail!("--gates and --scrapes must be at least 1");
    }
    let nats = NatsServer::start("")?;
    let nats_pid = nats.pid().context("nats-server's pid")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    writeln!(
        out,
        "== health: {} gates' heartbeats, the back office's /metrics",
        args.gates
    )?;
    let client = runtime.block_on(async_nats::connect(nats.url()))?;
    runtime.block_on(facegate_backoffice::prepare_broker(&client))?;
    let (cpu_before, _) = super::fleet::usage(nats_pid)?;

    let put_start = Instant::now();
    let bytes = runtime.block_on(async {
        let bucket = async_nats::jetstream::new(client.clone())
            .get_key_value(STATUS_BUCKET)
            .await?;
        let mut bytes = 0;
        let gates: Vec<usize> = (0..args.gates).collect();
        for chunk in gates.chunks(IN_FLIGHT) {
            let puts = chunk.iter().map(|&gate| {
                let status = heartbeat(gate);
                let value = status.to_json();
                bytes += value.len();
                let bucket = bucket.clone();
                async move { bucket.put(status.gate.status_key(), value.into()).await }
            });
            try_join_all(puts).await?;
        }
        anyhow::Ok(bytes)
    })?;
    let put = put_start.elapsed();
    writeln!(
        out,
        "  {} heartbeats put in {:.2} s ({:.0}/s), {} B each",
        args.gates,
        put.as_secs_f64(),
        args.gates as f64 / put.as_secs_f64(),
        bytes / args.gates
    )?;

    let stop = CancellationToken::new();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let metrics = listener.local_addr()?;
    let server_start = Instant::now();
    let server = runtime.spawn(facegate_backoffice::health::serve_metrics(
        listener,
        client,
        stop.clone(),
    ));
    let every_gate = format!("facegate_fleet_gates {}\n", args.gates);
    loop {
        if scrape_metrics(metrics).is_ok_and(|body| body.contains(&every_gate)) {
            break;
        }
        if server_start.elapsed() > Duration::from_secs(120) {
            bail!("/metrics never held the {} gates", args.gates);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let catch_up = server_start.elapsed();
    writeln!(
        out,
        "  /metrics holds every gate {:.2} s after the server starts",
        catch_up.as_secs_f64()
    )?;

    let mut times = Vec::with_capacity(args.scrapes);
    let mut size = 0;
    for _ in 0..args.scrapes {
        let start = Instant::now();
        size = scrape_metrics(metrics)?.len();
        times.push(start.elapsed());
    }
    let scrapes = Stats::of(times.clone()).context("no scrape")?;
    let (cpu_after, rss) = super::fleet::usage(nats_pid)?;
    stop.cancel();
    runtime.block_on(server)??;
    writeln!(
        out,
        "  a scrape: median {:.1} ms, p99 {:.1} ms, {:.1} MiB of text; nats-server {:.2} s CPU, {} MiB resident",
        ms(scrapes.median),
        ms(scrapes.p99),
        size as f64 / (1 << 20) as f64,
        (cpu_after - cpu_before).as_secs_f64(),
        rss / 1024
    )?;

    let json = super::results_path(args.json.as_deref(), "health");
    super::write_json(
        &json,
        &json!({
            "gates": args.gates,
            "put_s": put.as_secs_f64(),
            "heartbeat_bytes": bytes / args.gates,
            "catch_up_s": catch_up.as_secs_f64(),
            "scrape_ms": times.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "scrape_bytes": size,
            "nats_cpu_s": (cpu_after - cpu_before).as_secs_f64(),
            "nats_rss_kib": rss,
        }),
    )?;
    writeln!(out, "\n(written to {})", json.display())?;
    Ok(())
}
