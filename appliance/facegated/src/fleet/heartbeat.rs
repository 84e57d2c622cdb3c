// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate's heartbeat: every `fleet.heartbeat_s`, its status (what D-Bus shows, plus the
//! outbox's depth and the office's lease) put under its id in the fleet's status bucket, for
//! the back office's metrics. A heartbeat the broker does not take is not retried: the next one
//! says more.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use facegate_dbus::Stats;
use facegate_fleet::GateId;
use facegate_fleet::gallery::Lease;
use facegate_fleet::health::{GateStatus, STATUS_BUCKET, STATUS_SCHEMA_VERSION};
use tokio::time::{MissedTickBehavior, interval};
use tracing::{info, warn};

use super::publisher::SharedOutbox;
use crate::journal::outbox::OutboxState;
use crate::service::StatusCell;

/// Puts the gate's status every `heartbeat_s` seconds until the task is dropped.
pub(super) async fn send_heartbeats(
    stream: jetstream::Context,
    gate: GateId,
    heartbeat_s: u32,
    status: StatusCell,
    outbox: SharedOutbox,
) {
    let mut tick = interval(Duration::from_secs(heartbeat_s.into()));
    // After a stall, one heartbeat now, not the ones missed.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut bucket = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        let sent = beat(&stream, &mut bucket, &gate, heartbeat_s, &status, &outbox).await;
        match (&sent, failing) {
            (Ok(()), true) => info!("fleet: heartbeats reach the broker again"),
            (Err(e), false) => warn!("fleet: heartbeat: {e}; tried again every beat"),
            _ => {}
        }
        failing = sent.is_err();
    }
}

async fn beat(
    stream: &jetstream::Context,
    bucket: &mut Option<kv::Store>,
    gate: &GateId,
    heartbeat_s: u32,
    status: &StatusCell,
    outbox: &SharedOutbox,
) -> Result<(), String> {
    let store = match bucket {
        Some(store) => store,
        None => bucket.insert(
            stream
                .get_key_value(STATUS_BUCKET)
                .await
                .map_err(|e| format!("bucket {STATUS_BUCKET}: {e}"))?,
        ),
    };
    let queued = outbox.with(|outbox| outbox.state()).await?;
    let heartbeat = gate_status(
        gate,
        heartbeat_s,
        status.published(),
        queued,
        Fleet {
            lease: status.lease(),
            generation: status.fleet_generation(),
        },
        Utc::now(),
    );
    store
        .put(gate.status_key(), heartbeat.to_json().into())
        .await
        .map_err(|e| format!("putting {STATUS_BUCKET}.{gate}: {e}"))?;
    Ok(())
}

/// What the gate holds of the office's gallery, if it follows it.
struct Fleet {
    lease: Option<Lease>,
    generation: Option<u64>,
}

fn gate_status(
    gate: &GateId,
    heartbeat_s: u32,
    stats: Stats,
    outbox: OutboxState,
    Fleet { lease, generation }: Fleet,
    now: DateTime<Utc>,
) -> GateStatus {
    GateStatus {
        schema_version: STATUS_SCHEMA_VERSION,
        gate: gate.clone(),
        sent_at: now,
        heartbeat_s,
        state: stats.state,
        mode: stats.mode,
        version: stats.version,
        uptime_s: stats.uptime_s,
        restarts: stats.restarts,
        fps: stats.fps,
        passages_today: stats.passages_today,
        denied_today: stats.denied_today,
        outbox_depth: outbox.depth(),
        last_sequence: outbox.last_sequence,
        gallery_generation: stats.gallery_generation,
        gallery_size: stats.gallery_size,
        fleet_generation: generation,
        lease_issued_at: lease.as_ref().map(|lease| lease.issued_at),
        lease_expires_at: lease.as_ref().map(|lease| lease.expires_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_dbus::{Mode, State};
    use facegate_fleet::gallery::GALLERY_SCHEMA_VERSION;

    #[test]
    fn the_heartbeat_carries_the_published_status_the_outbox_and_the_lease() {
        let now: DateTime<Utc> = "2026-12-03T09:00:00Z".parse().unwrap();
        let stats = Stats {
            state: State::Degraded,
            mode: Mode::Locked,
            gallery_generation: 12,
            gallery_size: 40,
            passages_today: 7,
            denied_today: 3,
            fps: 14.0,
            restarts: 2,
            ..Stats::default()
        };
        let lease = Lease {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation: 12,
            issued_at: now - chrono::Duration::seconds(30),
            expires_at: now + chrono::Duration::seconds(270),
        };
        let status = gate_status(
            &"north-3".parse().unwrap(),
            10,
            stats,
            OutboxState {
                last_sequence: 90,
                confirmed: 85,
            },
            Fleet {
                lease: Some(lease.clone()),
                generation: Some(14),
            },
            now,
        );
        assert_eq!(status.state, State::Degraded);
        assert_eq!(status.mode, Mode::Locked);
        assert_eq!(status.outbox_depth, 5);
        assert_eq!(status.last_sequence, 90);
        assert_eq!(status.gallery_generation, 12);
        assert_eq!(status.fleet_generation, Some(14));
        assert_eq!(status.passages_today, 7);
        assert_eq!(status.denied_today, 3);
        assert_eq!(status.restarts, 2);
        assert_eq!(status.lease_issued_at, Some(lease.issued_at));
        assert_eq!(status.lease_expires_at, Some(lease.expires_at));
        assert_eq!(
            GateStatus::from_json("north-3", &status.to_json()).unwrap(),
            status
        );
    }
}
