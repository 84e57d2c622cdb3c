// SPDX-License-Identifier: MIT OR Apache-2.0
//! The back office's ledger: every gate's passages, consumed from the JetStream stream
//! [`PASSAGES_STREAM`] into PostgreSQL exactly once, and each gate told in the key-value bucket
//! [`CONFIRMED_BUCKET`] the highest sequence the ledger holds with none missing below it.
//!
//! Exactly once, from at-least-once parts: the broker redelivers what the ledger has not
//! acknowledged, and a gate republishes what has not been confirmed, so the same passage can
//! arrive many times. The passage's UUID is the table's primary key and an insert of a known
//! one does nothing; a batch is committed before any of its messages is acknowledged, and a
//! confirmation is put only after the commit, so nothing confirmed can be missing.
//!
//! The wire (subjects, the event, the confirmation's encoding) is facegate-fleet's.

mod broker;
pub mod health;
mod ledger;
pub mod office;
mod store;
pub mod users;

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
pub use facegate_fleet::{
    CONFIRMED_BUCKET, Decision, DenyReason, GateId, PASSAGES_STREAM, PASSAGES_SUBJECTS,
};
use serde::Serialize;
pub use tokio_util::sync::CancellationToken;

pub use broker::{LEDGER_CONSUMER, prepare_broker};
pub use ledger::run;
pub use store::{SCHEMA_VERSION, conflicts, gaps, ledger_rows, rejected_rows};

/// What [`run`] needs. Its `Debug` leaves the password out (configs end up in logs).
#[derive(Clone, PartialEq)]
pub struct LedgerConfig {
    /// The broker, `nats://host:port` (several, comma-separated, for a cluster).
    pub nats_url: String,
    /// The ledger's NATS user, if the broker has users.
    pub nats_user: Option<String>,
    pub nats_password: Option<String>,
    /// The CA certificate the broker's must chain to; set, TLS is required (the shipped broker
    /// requires it).
    pub nats_tls_ca: Option<PathBuf>,
    /// A tokio-postgres (libpq keyword or URL) connection string to the ledger's database.
    pub postgres: String,
    /// Messages fetched, written in one transaction and acknowledged together: larger batches
    /// amortise the commit's fsync when a week of backlog arrives at once.
    pub batch: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_user: None,
            nats_password: None,
            nats_tls_ca: None,
            postgres: "host=127.0.0.1 dbname=ledger".into(),
            batch: 256,
        }
    }
}

impl fmt::Debug for LedgerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerConfig")
            .field("nats_url", &self.nats_url)
            .field("nats_user", &self.nats_user)
            .field(
                "nats_password",
                &self.nats_password.as_ref().map(|_| "<hidden>"),
            )
            .field("nats_tls_ca", &self.nats_tls_ca)
            .field("postgres", &self.postgres)
            .field("batch", &self.batch)
            .finish()
    }
}

/// Everything the ledger fails with; one line each, naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger configuration: {0}")]
    Config(String),
    #[error("NATS at {url}: {detail}")]
    Nats { url: String, detail: String },
    /// The broker did not answer as it should (it may be restarting): retried by [`run`].
    #[error("JetStream: {0}")]
    Broker(String),
    /// The broker holds a stream the ledger cannot use as it is: [`run`] stops.
    #[error("JetStream: {0}")]
    Incompatible(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("ledger schema: {0}")]
    Schema(String),
}

/// One passage as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRow {
    /// The passage's UUID (the event's id).
    pub passage_id: String,
    pub gate: GateId,
    pub sequence: u64,
    pub decision: Decision,
    pub reason: Option<DenyReason>,
    pub identity: Option<String>,
    pub similarity: Option<f64>,
    pub gallery_generation: u64,
    /// When the gate journalled it.
    pub time: DateTime<Utc>,
    /// When the ledger stored it.
    pub received: DateTime<Utc>,
}

/// A message the ledger could not take as a passage (kept, with why, so nothing vanishes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RejectedRow {
    pub subject: String,
    /// Its sequence in [`PASSAGES_STREAM`], to find it there.
    pub stream_sequence: Option<u64>,
    pub error: String,
    pub payload: Vec<u8>,
    pub received: DateTime<Utc>,
}

/// A passage whose UUID the ledger already holds for another gate or sequence: the stored row
/// is kept; this records the other claim.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConflictRow {
    pub passage_id: String,
    pub gate: String,
    pub sequence: u64,
    pub stored_gate: String,
    pub stored_sequence: u64,
    pub received: DateTime<Utc>,
}

/// What the ledger holds of one gate's sequences.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateGaps {
    pub gate: GateId,
    /// The highest sequence with none missing from 1: what the gate is confirmed.
    pub contiguous: u64,
    /// The highest sequence seen.
    pub highest: u64,
    /// The sequences missing between them, in order.
    pub missing: Vec<Missing>,
}

/// A run of missing sequences, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub first: u64,
    pub last: u64,
}

impl fmt::Display for Missing {
    /// `a-b`, or `a` alone when it is one sequence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.first == self.last {
            true => write!(f, "{}", self.first),
            false => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

impl fmt::Display for GateGaps {
    /// `gate contiguous highest missing=a-b,c` (`missing=` with nothing when none is).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let missing: Vec<String> = self.missing.iter().map(Missing::to_string).collect();
        write!(
            f,
            "{} {} {} missing={}",
            self.gate,
            self.contiguous,
            self.highest,
            missing.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_does_not_show_its_password() {
        let config = LedgerConfig {
            nats_password: Some("s3cret".into()),
            ..LedgerConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<hidden>"),
            "{shown}"
        );
    }

    #[test]
    fn gaps_print_as_one_line() {
        let gaps = GateGaps {
            gate: "north-3".parse().unwrap(),
            contiguous: 2,
            highest: 9,
            missing: vec![Missing { first: 3, last: 4 }, Missing { first: 7, last: 7 }],
        };
        assert_eq!(gaps.to_string(), "north-3 2 9 missing=3-4,7");
        let none = GateGaps {
            missing: vec![],
            contiguous: 9,
            ..gaps
        };
        assert_eq!(none.to_string(), "north-3 9 9 missing=");
    }
}
