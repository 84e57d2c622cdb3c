// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's health as Prometheus metrics: every gate's latest heartbeat, followed from the
//! status bucket [`STATUS_BUCKET`], rendered at each scrape of `/metrics`.
//!
//! Each metric of a gate is labelled `gate`; a gate that stopped sending keeps its last values
//! with `facegate_gate_up 0`, so a dashboard shows what it said last and an alert fires on
//! `up == 0`. Up or down goes by the broker's clock (it stamps each put), not the gate's.
//! The fleet's own gallery generation (the office's gallery stream) stands beside the gates',
//! so a gate behind the office shows as a difference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::extract::State as Shared;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use facegate_fleet::GateId;
use facegate_fleet::gallery::GALLERY_STREAM;
use facegate_fleet::health::{GateStatus, Mode, STATUS_BUCKET, State};
use futures_util::StreamExt;
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};
use strum::VariantNames;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Wait between attempts to follow the bucket while the broker is away.
const RETRY: Duration = Duration::from_secs(2);
/// A scrape waits this long at most for the office's gallery generation.
const GENERATION_GUARD: Duration = Duration::from_secs(1);

/// The latest heartbeat of each gate, as the status bucket holds them.
#[derive(Default)]
pub struct FleetHealth {
    gates: Mutex<BTreeMap<GateId, Heard>>,
}

#[derive(Clone)]
struct Heard {
    status: GateStatus,
    /// When the broker stored it.
    stored: DateTime<Utc>,
}

impl FleetHealth {
    /// Takes in the value the bucket holds under `key`, stored at `stored`; a value that is not
    /// a gate's status is said once and leaves what was known of the gate as it was.
    pub fn heard(&self, key: &str, value: &[u8], stored: DateTime<Utc>) {
        match GateStatus::from_json(key, value) {
            Ok(status) => {
                if let Ok(mut gates) = self.gates.lock() {
                    gates.insert(status.gate.clone(), Heard { status, stored });
                }
            }
            Err(e) => warn!("health: {e}; ignored"),
        }
    }

    /// A key deleted from the bucket: a gate taken out of the fleet.
    pub fn forget(&self, key: &str) {
        if let (Ok(gate), Ok(mut gates)) = (key.parse::<GateId>(), self.gates.lock()) {
            gates.remove(&gate);
        }
    }

    /// The metrics at `now`, in Prometheus's text format; `fleet_generation` is the office's.
    pub fn render(&self, now: DateTime<Utc>, fleet_generation: Option<u64>) -> String {
        let gates: Vec<Heard> = self
            .gates
            .lock()
            .map(|gates| gates.values().cloned().collect())
            .unwrap_or_default();
        render(&gates, now, fleet_generation)
    }
}

/// A gauge family registered in `registry`.
fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let family = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name");
    registry
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

/// A per-gate gauge read off the heartbeat at a time: its name, its help, and its value, if the
/// heartbeat has one.
type GateValue = (
    &'static str,
    &'static str,
    fn(&GateStatus, DateTime<Utc>) -> Option<f64>,
);

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

const GATE_VALUES: &[GateValue] = &[
    (
        "facegate_gate_fps",
        "Frames per second the gate's pipeline delivers",
        |s, _| Some(s.fps),
    ),
    (
        "facegate_gate_passages_today",
        "Passages the gate granted today",
        |s, _| Some(s.passages_today as f64),
    ),
    (
        "facegate_gate_denials_today",
        "Passages the gate refused today",
        |s, _| Some(s.denied_today as f64),
    ),
    (
        "facegate_gate_outbox_depth",
        "The gate's journal rows the ledger has not confirmed",
        |s, _| Some(s.outbox_depth as f64),
    ),
    (
        "facegate_gate_last_sequence",
        "The gate's last passage sequence",
        |s, _| Some(s.last_sequence as f64),
    ),
    (
        "facegate_gate_gallery_generation",
        "The local gallery generation the gate searches (its D-Bus GalleryGeneration)",
        |s, _| Some(s.gallery_generation as f64),
    ),
    (
        "facegate_gate_gallery_size",
        "People in the gallery the gate searches",
        |s, _| Some(s.gallery_size as f64),
    ),
    (
        "facegate_gate_fleet_generation",
        "The office's gallery generation the gate holds (gates following the fleet's gallery)",
        |s, _| s.fleet_generation.map(|g| g as f64),
    ),
    (
        "facegate_gate_lease_age_seconds",
        "Seconds since the office issued the lease the gate holds (gates following the fleet's gallery)",
        |s, now| s.lease_issued_at.map(|issued| seconds(now - issued)),
    ),
    (
        "facegate_gate_lease_remaining_seconds",
        "Seconds until the gate's lease runs out (negative: run out, the gate matches nobody)",
        |s, now| s.lease_expires_at.map(|expires| seconds(expires - now)),
    ),
    (
        "facegate_gate_uptime_seconds",
        "Seconds since the gate's service started",
        |s, _| Some(s.uptime_s as f64),
    ),
    (
        "facegate_gate_pipeline_restarts",
        "Pipeline restarts since the gate's service started",
        |s, _| Some(s.restarts as f64),
    ),
];

/// One family per name of a wire enum (State, Mode): 1 for the gate's, 0 for each other.
struct OneHot {
    family: GaugeVec,
    names: &'static [&'static str],
}

impl OneHot {
    fn new(
        registry: &Registry,
        name: &str,
        help: &str,
        label: &str,
        names: &'static [&'static str],
    ) -> OneHot {
        OneHot {
            family: gauge(registry, name, help, &["gate", label]),
            names,
        }
    }

    fn set(&self, gate: &str, current: &str) {
        for name in self.names {
            self.family
                .with_label_values(&[gate, name])
                .set(f64::from(u8::from(*name == current)));
        }
    }
}

fn render(gates: &[Heard], now: DateTime<Utc>, fleet_generation: Option<u64>) -> String {
    let registry = Registry::new();
    let up = gauge(
        &registry,
        "facegate_gate_up",
        "1 while the gate's heartbeats arrive (none missed three times over), else 0",
        &["gate"],
    );
    let heartbeat_age = gauge(
        &registry,
        "facegate_gate_heartbeat_age_seconds",
        "Seconds since the broker stored the gate's latest heartbeat",
        &["gate"],
    );
    let state = OneHot::new(
        &registry,
        "facegate_gate_state",
        "1 for the gate's State (D-Bus), 0 for the others",
        "state",
        State::VARIANTS,
    );
    let mode = OneHot::new(
        &registry,
        "facegate_gate_mode",
        "1 for the gate's Mode (D-Bus), 0 for the others",
        "mode",
        Mode::VARIANTS,
    );
    let info = gauge(
        &registry,
        "facegate_gate_info",
        "1, labelled with the gate's facegated version",
        &["gate", "version"],
    );
    let values: Vec<(GaugeVec, _)> = GATE_VALUES
        .iter()
        .map(|(name, help, value)| (gauge(&registry, name, help, &["gate"]), value))
        .collect();

    let mut count_up = 0;
    for Heard { status, stored } in gates {
        let gate = status.gate.as_str();
        let is_up = status.is_up(*stored, now);
        count_up += usize::from(is_up);
        up.with_label_values(&[gate])
            .set(f64::from(u8::from(is_up)));
        heartbeat_age
            .with_label_values(&[gate])
            .set(seconds(now - *stored));
        state.set(gate, status.state.into());
        mode.set(gate, status.mode.into());
        info.with_label_values(&[gate, &status.version]).set(1.0);
        for (family, value) in &values {
            if let Some(value) = value(status, now) {
                family.with_label_values(&[gate]).set(value);
            }
        }
    }
    let fleet = |name: &str, help: &str, value: f64| {
        let gauge = Gauge::new(name, help).expect("a valid metric name");
        gauge.set(value);
        registry
            .register(Box::new(gauge))
            .expect("each metric registered once");
    };
    fleet(
        "facegate_fleet_gates",
        "Gates whose heartbeat the office holds",
        gates.len() as f64,
    );
    fleet(
        "facegate_fleet_gates_up",
        "Gates whose heartbeats arrive",
        count_up as f64,
    );
    // Absent, not 0, when the broker did not say: 0 would read as every gate being ahead.
    if let Some(fleet_generation) = fleet_generation {
        fleet(
            "facegate_fleet_gallery_generation",
            "The office's gallery generation, which every gate should reach",
            fleet_generation as f64,
        );
    }
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("gauges encode as text");
    String::from_utf8(text).expect("the text format is UTF-8")
}

/// Follows the status bucket into `health` (each gate's latest value first, then every
/// heartbeat as it is put) until `shutdown`; a broker away is said once and waited out.
pub async fn follow_status(
    js: jetstream::Context,
    health: Arc<FleetHealth>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let outcome = tokio::select! {
            outcome = watch_status(&js, &health) => outcome,
            _ = shutdown.cancelled() => return,
        };
        match (outcome, failing) {
            (Err(e), false) => {
                warn!("health: {e}; retrying");
                failing = true;
            }
            (Ok(()), _) => failing = false,
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn watch_status(js: &jetstream::Context, health: &FleetHealth) -> Result<(), String> {
    let bucket = js
        .get_key_value(STATUS_BUCKET)
        .await
        .map_err(|e| format!("bucket {STATUS_BUCKET}: {e}"))?;
    let mut watch = bucket
        .watch_with_history(">")
        .await
        .map_err(|e| format!("watching {STATUS_BUCKET}: {e}"))?;
    info!("health: following the gates' heartbeats in {STATUS_BUCKET}");
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| format!("watching {STATUS_BUCKET}: {e}"))?;
        match entry.operation {
            kv::Operation::Put => {
                let stored = DateTime::from_timestamp_nanos(
                    i64::try_from(entry.created.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                );
                health.heard(&entry.key, &entry.value, stored);
            }
            kv::Operation::Delete | kv::Operation::Purge => health.forget(&entry.key),
        }
    }
    Ok(())
}

/// The office's gallery generation: the last sequence of its changes' stream.
async fn office_generation(js: &jetstream::Context) -> Option<u64> {
    let info = async {
        let mut stream = js.get_stream(GALLERY_STREAM).await.ok()?;
        stream
            .info()
            .await
            .ok()
            .map(|info| info.state.last_sequence)
    };
    tokio::time::timeout(GENERATION_GUARD, info)
        .await
        .ok()
        .flatten()
}

#[derive(Clone)]
struct Scrape {
    health: Arc<FleetHealth>,
    js: jetstream::Context,
}

async fn metrics(Shared(scrape): Shared<Scrape>) -> impl IntoResponse {
    let generation = office_generation(&scrape.js).await;
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        scrape.health.render(Utc::now(), generation),
    )
}

/// Serves `/metrics` on `listener` from the gates' heartbeats, until `shutdown`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    client: async_nats::Client,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let js = jetstream::new(client);
    let health = Arc::new(FleetHealth::default());
    let follower = tokio::spawn(follow_status(
        js.clone(),
        Arc::clone(&health),
        shutdown.clone(),
    ));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Scrape { health, js });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = follower.await;
    served
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_fleet::health::STATUS_SCHEMA_VERSION;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn status(gate: &str, state: State) -> GateStatus {
        GateStatus {
            schema_version: STATUS_SCHEMA_VERSION,
            gate: gate.parse().unwrap(),
            sent_at: at(0),
            heartbeat_s: 10,
            state,
            mode: Mode::Normal,
            version: "0.1.0".into(),
            uptime_s: 60,
            restarts: 0,
            fps: 15.0,
            passages_today: 12,
            denied_today: 3,
            outbox_depth: 4,
            last_sequence: 15,
            gallery_generation: 7,
            gallery_size: 40,
            fleet_generation: Some(9),
            lease_issued_at: Some(at(-20)),
            lease_expires_at: Some(at(280)),
        }
    }

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn each_gate_is_up_until_three_heartbeats_are_missed_and_keeps_its_last_values() {
        let health = FleetHealth::default();
        health.heard("gate-1", &status("gate-1", State::Running).to_json(), at(0));
        health.heard(
            "gate-2",
            &status("gate-2", State::JournalFailed).to_json(),
            at(-31),
        );
        let text = health.render(at(0), Some(9));
        assert_eq!(
            sample(&text, r#"facegate_gate_up{gate="gate-1"}"#),
            Some("1")
        );
        assert_eq!(
            sample(&text, r#"facegate_gate_up{gate="gate-2"}"#),
            Some("0")
        );
        assert_eq!(
            sample(
                &text,
                r#"facegate_gate_heartbeat_age_seconds{gate="gate-2"}"#
            ),
            Some("31")
        );
        assert_eq!(
            sample(
                &text,
                r#"facegate_gate_state{gate="gate-2",state="journal-failed"}"#
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"facegate_gate_state{gate="gate-2",state="running"}"#
            ),
            Some("0")
        );
        assert_eq!(
            sample(&text, r#"facegate_gate_outbox_depth{gate="gate-1"}"#),
            Some("4")
        );
        assert_eq!(
            sample(&text, r#"facegate_gate_lease_age_seconds{gate="gate-1"}"#),
            Some("20")
        );
        assert_eq!(
            sample(
                &text,
                r#"facegate_gate_lease_remaining_seconds{gate="gate-1"}"#
            ),
            Some("280")
        );
        assert_eq!(
            sample(&text, r#"facegate_gate_fleet_generation{gate="gate-1"}"#),
            Some("9")
        );
        assert_eq!(sample(&text, "facegate_fleet_gates"), Some("2"));
        assert_eq!(sample(&text, "facegate_fleet_gates_up"), Some("1"));
        assert_eq!(
            sample(&text, "facegate_fleet_gallery_generation"),
            Some("9")
        );
        assert!(text.contains("# TYPE facegate_gate_up gauge"), "{text}");
    }

    #[test]
    fn a_value_that_is_not_the_keys_status_leaves_the_gate_as_it_was_and_a_delete_forgets_it() {
        let health = FleetHealth::default();
        health.heard("gate-1", &status("gate-1", State::Running).to_json(), at(0));
        health.heard("gate-1", b"not json", at(5));
        health.heard("gate-1", &status("gate-9", State::Stopped).to_json(), at(5));
        let text = health.render(at(6), None);
        assert_eq!(
            sample(
                &text,
                r#"facegate_gate_state{gate="gate-1",state="running"}"#
            ),
            Some("1")
        );
        assert!(!text.contains("gate-9"), "{text}");
        assert!(
            !text.contains("facegate_fleet_gallery_generation "),
            "{text}"
        );
        health.forget("gate-1");
        let text = health.render(at(6), None);
        assert!(!text.contains("gate-1"), "{text}");
        assert_eq!(sample(&text, "facegate_fleet_gates"), Some("0"));
    }
}
