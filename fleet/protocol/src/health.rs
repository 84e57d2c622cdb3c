// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's health, gates → office: each gate puts its [`GateStatus`] (what its D-Bus
//! properties say, plus what only the fleet needs: the outbox's depth, the lease) in the
//! key-value bucket [`STATUS_BUCKET`] under its id, every `heartbeat_s` seconds. The bucket
//! holds the latest of each; the back office turns it into Prometheus metrics. A gate whose
//! latest status is older than [`MISSED_BEATS_DOWN`] heartbeats (by the broker's clock, which
//! stamps each put) is down.

use chrono::{DateTime, Duration, Utc};
pub use facegate_dbus::{Mode, State};
use serde::{Deserialize, Serialize};

use crate::{FleetError, GateId};

/// The key-value bucket of the gates' statuses, one key per gate ([`GateId::status_key`]).
pub const STATUS_BUCKET: &str = "facegate_status";
/// The version of [`GateStatus`]'s fields.
pub const STATUS_SCHEMA_VERSION: u32 = 1;
/// Heartbeats a gate may miss before it counts as down: one lost to a reconnect is not an
/// outage.
pub const MISSED_BEATS_DOWN: u32 = 3;

/// One gate's heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateStatus {
    /// [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub gate: GateId,
    /// The gate's clock when it sent this.
    pub sent_at: DateTime<Utc>,
    /// Seconds until the next heartbeat: how the office tells a quiet gate from a gone one.
    pub heartbeat_s: u32,
    pub state: State,
    pub mode: Mode,
    /// facegated's version.
    pub version: String,
    pub uptime_s: u64,
    /// Pipeline restarts since the service started.
    pub restarts: u64,
    /// Frames per second the pipeline delivers.
    pub fps: f64,
    /// Passages granted today (the gate's day).
    pub passages_today: u64,
    /// Refusals today.
    pub denied_today: u64,
    /// Journal rows the ledger has not confirmed yet.
    pub outbox_depth: u64,
    /// The gate's last passage sequence.
    pub last_sequence: u64,
    /// The local gallery generation being searched (D-Bus's GalleryGeneration), and its people.
    pub gallery_generation: u64,
    pub gallery_size: u64,
    /// The office's gallery generation the gate's gallery holds, if it follows the office's
    /// gallery: comparable with the office's own, unlike the local generation.
    pub fleet_generation: Option<u64>,
    /// The office's lease the gate holds, if it follows the fleet's gallery and has one.
    pub lease_issued_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

impl GateStatus {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a gate status always serialises")
    }

    /// Parses the value found under `key`: a status of this schema, of the gate the key names.
    pub fn from_json(key: &str, payload: &[u8]) -> Result<GateStatus, FleetError> {
        let status: GateStatus = serde_json::from_slice(payload)
            .map_err(|e| FleetError::Status(key.to_owned(), e.to_string()))?;
        if status.schema_version != STATUS_SCHEMA_VERSION {
            return Err(FleetError::Status(
                key.to_owned(),
                format!(
                    "schema {} is not {STATUS_SCHEMA_VERSION}",
                    status.schema_version
                ),
            ));
        }
        if status.gate.status_key() != key {
            return Err(FleetError::Status(
                key.to_owned(),
                format!("the status is gate {}'s", status.gate),
            ));
        }
        Ok(status)
    }

    /// Whether a gate whose status the broker stored at `stored` is up at `now`.
    pub fn is_up(&self, stored: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - stored <= Duration::seconds(i64::from(self.heartbeat_s * MISSED_BEATS_DOWN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> GateStatus {
        GateStatus {
            schema_version: STATUS_SCHEMA_VERSION,
            gate: "north-3".parse().unwrap(),
            sent_at: "2026-12-03T09:00:00Z".parse().unwrap(),
            heartbeat_s: 10,
            state: State::Running,
            mode: Mode::Normal,
            version: "0.1.0".into(),
            uptime_s: 3600,
            restarts: 1,
            fps: 14.5,
            passages_today: 412,
            denied_today: 9,
            outbox_depth: 2,
            last_sequence: 9120,
            gallery_generation: 77,
            gallery_size: 40,
            fleet_generation: Some(80),
            lease_issued_at: Some("2026-12-03T08:59:00Z".parse().unwrap()),
            lease_expires_at: Some("2026-12-03T09:04:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn a_status_round_trips_with_its_enums_as_wire_names() {
        let json = status().to_json();
        assert_eq!(GateStatus::from_json("north-3", &json).unwrap(), status());
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["state"], "running");
        assert_eq!(value["mode"], "normal");
    }

    #[test]
    fn a_status_under_another_gates_key_or_of_another_schema_is_refused() {
        let error = GateStatus::from_json("south-1", &status().to_json()).unwrap_err();
        assert!(error.to_string().contains("north-3"), "{error}");
        let newer = GateStatus {
            schema_version: 2,
            ..status()
        };
        let error = GateStatus::from_json("north-3", &newer.to_json()).unwrap_err();
        assert!(error.to_string().contains("schema 2"), "{error}");
        let error = GateStatus::from_json("north-3", b"{}").unwrap_err();
        assert!(
            error.to_string().starts_with("gate status north-3:"),
            "{error}"
        );
    }

    #[test]
    fn a_gate_is_down_after_three_missed_heartbeats() {
        let stored: DateTime<Utc> = "2026-12-03T09:00:00Z".parse().unwrap();
        let status = status();
        assert!(status.is_up(stored, stored + Duration::seconds(30)));
        assert!(!status.is_up(stored, stored + Duration::seconds(31)));
    }
}
