// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's wire: what a FaceGate gate and the back office exchange over NATS JetStream.
//!
//! - Passages flow gate → office on the stream [`PASSAGES_STREAM`], one subject per gate
//!   ([`GateId::passages_subject`]), each message a [`PassageEvent`] (CloudEvents 1.0, structured
//!   JSON) whose `Nats-Msg-Id` is the passage's UUID, so a republish within the broker's
//!   duplicate window is dropped by the broker and one after it by the ledger's key.
//! - Confirmations flow office → gate in the key-value bucket [`CONFIRMED_BUCKET`], one key per
//!   gate: the highest sequence the ledger holds with none missing below it. A gate deletes a
//!   journal row only once it is confirmed, so the journal is the outbox and nothing the broker
//!   loses (it acknowledges before it fsyncs) is lost for good.
//!
//! - The gallery flows office → gates: signed changes, snapshots and a lease ([`gallery`]).
//! - Each gate's status flows gate → office as a heartbeat in a key-value bucket ([`health`]).
//!
//! No names cross the wire: a passage carries the enrolment id the fare is charged to.

pub mod gallery;
pub mod health;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
pub use facegate_dbus::DenyReason;
use serde::{Deserialize, Serialize};

/// The JetStream stream of every gate's passages.
pub const PASSAGES_STREAM: &str = "FACEGATE_PASSAGES";
/// The subjects [`PASSAGES_STREAM`] holds: `facegate.passages.<gate id>`.
pub const PASSAGES_SUBJECTS: &str = "facegate.passages.>";
/// The key-value bucket of the ledger's confirmations, one key per gate.
pub const CONFIRMED_BUCKET: &str = "facegate_confirmed";
/// The CloudEvents `type` of a passage, version 1 of its data.
pub const PASSAGE_EVENT_TYPE: &str = "org.facegate.passage.v1";
/// The version of [`PassageData`]'s fields; a change that an old reader would misread bumps it
/// and [`PASSAGE_EVENT_TYPE`].
pub const PASSAGE_SCHEMA_VERSION: u32 = 1;

/// Everything the wire refuses; one line each.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FleetError {
    #[error(
        "gate id {0:?}: must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_' (it is a NATS subject token and a key)"
    )]
    GateId(String),
    #[error("passage event: {0}")]
    Event(String),
    #[error("confirmation {0:?}: not a sequence number")]
    Confirmation(String),
    #[error("gate status {0}: {1}")]
    Status(String, String),
}

/// A gate's name in the fleet: a single NATS subject token and a key-value key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GateId(String);

impl GateId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The subject this gate's passages are published on.
    pub fn passages_subject(&self) -> String {
        format!("facegate.passages.{}", self.0)
    }

    /// The gate a passage subject names, if it is one.
    pub fn from_passages_subject(subject: &str) -> Option<GateId> {
        subject
            .strip_prefix("facegate.passages.")
            .and_then(|gate| gate.parse().ok())
    }

    /// This gate's key in [`CONFIRMED_BUCKET`].
    pub fn confirmation_key(&self) -> &str {
        &self.0
    }

    /// This gate's key in [`health::STATUS_BUCKET`].
    pub fn status_key(&self) -> &str {
        &self.0
    }

    /// The subject a put of this gate's status is published on (what its broker user may
    /// publish).
    pub fn status_subject(&self) -> String {
        format!("$KV.{}.{}", health::STATUS_BUCKET, self.0)
    }
}

impl FromStr for GateId {
    type Err = FleetError;
    fn from_str(text: &str) -> Result<GateId, FleetError> {
        let valid = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match valid {
            true => Ok(GateId(text.to_owned())),
            false => Err(FleetError::GateId(text.to_owned())),
        }
    }
}

impl TryFrom<String> for GateId {
    type Error = FleetError;
    fn try_from(text: String) -> Result<GateId, FleetError> {
        text.parse()
    }
}

impl From<GateId> for String {
    fn from(gate: GateId) -> String {
        gate.0
    }
}

impl fmt::Display for GateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The gate's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Grant,
    Deny,
}

/// One journal row of a gate, as the back office receives it: the `data` of a [`PassageEvent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassageData {
    /// [`PASSAGE_SCHEMA_VERSION`].
    pub schema_version: u32,
    pub gate: GateId,
    /// The gate's own count of its journal rows, from 1, never reused (not even when the
    /// journal's table is emptied): the ledger finds what is missing by it.
    pub sequence: u64,
    pub decision: Decision,
    /// Why a denial was a denial; None for a grant.
    pub reason: Option<DenyReason>,
    /// The enrolment id the face matched (the one charged on a grant), if any. Never a name.
    pub identity: Option<String>,
    /// Cosine similarity of the best match, if any.
    pub similarity: Option<f64>,
    /// The gallery generation the gate decided with.
    pub gallery_generation: u64,
}

/// A passage as a CloudEvents 1.0 event in structured JSON mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassageEvent {
    pub specversion: String,
    /// The passage's UUID (v7): also the message's `Nats-Msg-Id` and the ledger's key.
    pub id: String,
    /// `facegate:gate/<gate id>`.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the gate journalled it.
    pub time: DateTime<Utc>,
    pub datacontenttype: String,
    pub data: PassageData,
}

impl PassageEvent {
    pub fn new(id: String, time: DateTime<Utc>, data: PassageData) -> PassageEvent {
        PassageEvent {
            specversion: "1.0".into(),
            id,
            source: format!("facegate:gate/{}", data.gate),
            event_type: PASSAGE_EVENT_TYPE.into(),
            time,
            datacontenttype: "application/json".into(),
            data,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a passage event always serialises")
    }

    /// Parses and checks one message's payload: the event type and schema version this build
    /// knows, and a source that names the gate in the data.
    pub fn from_json(payload: &[u8]) -> Result<PassageEvent, FleetError> {
        let event: PassageEvent =
            serde_json::from_slice(payload).map_err(|e| FleetError::Event(e.to_string()))?;
        if event.specversion != "1.0" {
            return Err(FleetError::Event(format!(
                "specversion {:?} is not 1.0",
                event.specversion
            )));
        }
        if event.event_type != PASSAGE_EVENT_TYPE
            || event.data.schema_version != PASSAGE_SCHEMA_VERSION
        {
            return Err(FleetError::Event(format!(
                "type {:?} schema {} is not {PASSAGE_EVENT_TYPE} schema {PASSAGE_SCHEMA_VERSION}",
                event.event_type, event.data.schema_version
            )));
        }
        if event.source != format!("facegate:gate/{}", event.data.gate) {
            return Err(FleetError::Event(format!(
                "source {:?} does not name gate {}",
                event.source, event.data.gate
            )));
        }
        if event.data.sequence == 0 {
            return Err(FleetError::Event("sequence 0 (they start at 1)".into()));
        }
        Ok(event)
    }
}

/// A confirmation's value in [`CONFIRMED_BUCKET`]: the sequence as decimal text, so `nats kv get`
/// shows it as it is.
pub fn encode_confirmation(sequence: u64) -> Vec<u8> {
    sequence.to_string().into_bytes()
}

pub fn decode_confirmation(value: &[u8]) -> Result<u64, FleetError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| FleetError::Confirmation(String::from_utf8_lossy(value).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PassageEvent {
        PassageEvent::new(
            "0193b3c4-0000-7000-8000-000000000001".into(),
            "2026-12-02T08:15:02.123456Z".parse().unwrap(),
            PassageData {
                schema_version: PASSAGE_SCHEMA_VERSION,
                gate: "north-3".parse().unwrap(),
                sequence: 42,
                decision: Decision::Deny,
                reason: Some(DenyReason::LowConfidence),
                identity: Some("p-17".into()),
                similarity: Some(0.41),
                gallery_generation: 7,
            },
        )
    }

    #[test]
    fn an_event_round_trips_and_reads_as_cloudevents() {
        let event = event();
        let json = event.to_json();
        assert_eq!(PassageEvent::from_json(&json).unwrap(), event);
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["type"], PASSAGE_EVENT_TYPE);
        assert_eq!(value["source"], "facegate:gate/north-3");
        assert_eq!(value["data"]["reason"], "low-confidence");
        assert_eq!(value["data"]["decision"], "deny");
    }

    #[test]
    fn a_foreign_or_inconsistent_event_is_refused() {
        let mut wrong_source = event();
        wrong_source.source = "facegate:gate/south-1".into();
        let mut newer = event();
        newer.data.schema_version = 2;
        let mut zero = event();
        zero.data.sequence = 0;
        for bad in [wrong_source, newer, zero] {
            let error = PassageEvent::from_json(&bad.to_json()).unwrap_err();
            assert!(matches!(error, FleetError::Event(_)), "{error}");
        }
        let mut extra: serde_json::Value = serde_json::from_slice(&event().to_json()).unwrap();
        extra["data"]["name"] = "Ada".into();
        let error = PassageEvent::from_json(&serde_json::to_vec(&extra).unwrap()).unwrap_err();
        assert!(error.to_string().contains("name"), "{error}");
    }

    #[test]
    fn gate_ids_are_single_subject_tokens() {
        let gate: GateId = "north_3-b".parse().unwrap();
        assert_eq!(gate.passages_subject(), "facegate.passages.north_3-b");
        assert_eq!(
            GateId::from_passages_subject("facegate.passages.north_3-b"),
            Some(gate)
        );
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<GateId>().is_err(), "{bad:?}");
        }
        assert_eq!(GateId::from_passages_subject("facegate.passages.a.b"), None);
    }

    #[test]
    fn confirmations_are_decimal_sequences() {
        assert_eq!(decode_confirmation(&encode_confirmation(912)).unwrap(), 912);
        assert!(decode_confirmation(b"-1").is_err());
        assert!(decode_confirmation(b"").is_err());
    }
}
