// SPDX-License-Identifier: MIT OR Apache-2.0
//! The ledger in PostgreSQL: its schema (versioned), the batch transaction, and the reports.
//!
//! `gates.contiguous` is advanced from where it stood, one index probe per sequence (a
//! recursive walk that stops at the first gap), so a gate with a week of backlog costs the same
//! per batch as one with none: nothing is ever rescanned from 1.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use facegate_fleet::{Decision, DenyReason, GateId};
use tokio_postgres::{Client, NoTls, Statement};
use tracing::{debug, warn};

use crate::{ConflictRow, GateGaps, LedgerError, LedgerRow, Missing, RejectedRow};

/// The schema this build writes; a database at a newer version is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Each version's migration from the one before, applied in one transaction with its row in
/// `schema_version`.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE passages (
         passage_id text PRIMARY KEY,
         gate text NOT NULL,
         sequence bigint NOT NULL CHECK (sequence > 0),
         decision text NOT NULL,
         reason text,
         identity text,
         similarity double precision,
         gallery_generation bigint NOT NULL,
         time timestamptz NOT NULL,
         received timestamptz NOT NULL DEFAULT now()
     );
     COMMENT ON TABLE passages IS 'Every gate passage, once: passage_id is the event id (UUID)';
     CREATE INDEX passages_gate_sequence ON passages (gate, sequence);
     CREATE TABLE gates (
         gate text PRIMARY KEY,
         contiguous bigint NOT NULL DEFAULT 0
     );
     COMMENT ON TABLE gates IS 'Per gate: the highest sequence held with none missing from 1 (its confirmation)';
     CREATE TABLE rejected (
         id bigserial PRIMARY KEY,
         subject text NOT NULL,
         stream_sequence bigint,
         error text NOT NULL,
         payload bytea NOT NULL,
         received timestamptz NOT NULL DEFAULT now()
     );
     COMMENT ON TABLE rejected IS 'Messages on the passages stream that are not a passage of the gate their subject names';
     CREATE TABLE conflicts (
         passage_id text NOT NULL,
         gate text NOT NULL,
         sequence bigint NOT NULL,
         stored_gate text NOT NULL,
         stored_sequence bigint NOT NULL,
         received timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (passage_id, gate, sequence)
     );
     COMMENT ON TABLE conflicts IS 'A passage id arriving again for another gate or sequence: the stored passage is kept';",
)];

/// A connection without its own timeout gets this one, so a database that does not answer
/// is retried rather than waited for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A passage, checked and ready for its row.
pub(crate) struct Passage {
    pub(crate) id: String,
    pub(crate) gate: GateId,
    pub(crate) sequence: i64,
    pub(crate) decision: Decision,
    pub(crate) reason: Option<DenyReason>,
    pub(crate) identity: Option<String>,
    pub(crate) similarity: Option<f64>,
    pub(crate) generation: i64,
    pub(crate) time: DateTime<Utc>,
}

/// A message that is not a passage, for `rejected`. That table is a log, not a ledger: a
/// rejected message delivered again (its term lost with a broker crash) is recorded again.
pub(crate) struct Rejection {
    pub(crate) subject: String,
    pub(crate) stream_sequence: Option<i64>,
    pub(crate) error: String,
    pub(crate) payload: Vec<u8>,
}

/// What one committed batch did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) inserted: usize,
    pub(crate) duplicates: usize,
    /// Each touched gate's contiguous sequence after the batch.
    pub(crate) contiguous: BTreeMap<GateId, u64>,
}

/// One connection to the ledger's database, schema migrated, statements prepared.
pub(crate) struct Store {
    client: Client,
    statements: Statements,
}

struct Statements {
    insert_rejected: Statement,
    insert_passages: Statement,
    insert_conflicts: Statement,
    add_gate: Statement,
    lock_gate: Statement,
    walk: Statement,
    set_contiguous: Statement,
}

/// Parses a connection string (libpq keywords or a URL), adding [`CONNECT_TIMEOUT`].
pub(crate) fn parse_connection(text: &str) -> Result<tokio_postgres::Config, LedgerError> {
    let mut config: tokio_postgres::Config = text.parse().map_err(|e| {
        LedgerError::Config(format!("postgres connection string: {}", describe(&e)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// One connection; its driver task ends when the connection does.
async fn connect(config: &tokio_postgres::Config) -> Result<Client, LedgerError> {
    let (client, connection) = config.connect(NoTls).await.map_err(postgres)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            // The next statement fails and the ledger logs that line; this one only for detail.
            debug!("PostgreSQL: connection lost: {}", describe(&e));
        }
    });
    Ok(client)
}

impl Store {
    /// Connects, brings the schema to [`SCHEMA_VERSION`] and prepares the batch's statements.
    pub(crate) async fn open(config: &tokio_postgres::Config) -> Result<Store, LedgerError> {
        let mut client = connect(config).await?;
        migrate(&mut client).await?;
        let prepare = |sql: &'static str| {
            let client = &client;
            async move { client.prepare(sql).await.map_err(postgres) }
        };
        let statements = Statements {
            insert_rejected: prepare(
                "INSERT INTO rejected (subject, stream_sequence, error, payload) VALUES ($1, $2, $3, $4)",
            )
            .await?,
            // DO NOTHING also skips the second of two rows with one id in the same batch.
            insert_passages: prepare(
                "INSERT INTO passages (passage_id, gate, sequence, decision, reason, identity,
                                       similarity, gallery_generation, time)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[],
                                      $6::text[], $7::float8[], $8::int8[], $9::timestamptz[])
                 ON CONFLICT (passage_id) DO NOTHING
                 RETURNING passage_id",
            )
            .await?,
            insert_conflicts: prepare(
                "INSERT INTO conflicts (passage_id, gate, sequence, stored_gate, stored_sequence)
                 SELECT b.id, b.gate, b.sequence, p.gate, p.sequence
                 FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS b(id, gate, sequence)
                 JOIN passages p ON p.passage_id = b.id
                 WHERE (p.gate, p.sequence) IS DISTINCT FROM (b.gate, b.sequence)
                 ON CONFLICT DO NOTHING
                 RETURNING passage_id, gate, sequence, stored_gate, stored_sequence",
            )
            .await?,
            add_gate: prepare("INSERT INTO gates (gate) VALUES ($1) ON CONFLICT (gate) DO NOTHING")
                .await?,
            // Two ledgers on one database take turns per gate.
            lock_gate: prepare("SELECT contiguous FROM gates WHERE gate = $1 FOR UPDATE").await?,
            walk: prepare(
                "WITH RECURSIVE walk(n) AS (
                     SELECT $2::int8
                     UNION ALL
                     SELECT walk.n + 1 FROM walk
                     WHERE EXISTS (SELECT 1 FROM passages p WHERE p.gate = $1 AND p.sequence = walk.n + 1)
                 )
                 SELECT max(n) FROM walk",
            )
            .await?,
            set_contiguous: prepare("UPDATE gates SET contiguous = $2 WHERE gate = $1").await?,
        };
        Ok(Store { client, statements })
    }

    /// Whether the connection is gone (the database went away): the store must be reopened.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Every gate the ledger knows, with its contiguous sequence.
    pub(crate) async fn gates(&self) -> Result<Vec<(GateId, u64)>, LedgerError> {
        let rows = self
            .client
            .query("SELECT gate, contiguous FROM gates ORDER BY gate", &[])
            .await
            .map_err(postgres)?;
        let mut gates = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.get(0);
            match text.parse::<GateId>() {
                Ok(gate) => gates.push((gate, to_u64(row.get(1)))),
                Err(e) => warn!("ledger table gates: {e}; skipped"),
            }
        }
        Ok(gates)
    }

    /// Writes one batch in one transaction: the rejections, the passages (a known id is a
    /// no-op; one claimed by another gate or sequence is recorded in `conflicts`), and each
    /// touched gate's contiguous sequence. Nothing is written unless all of it is.
    pub(crate) async fn write(
        &mut self,
        passages: &[Passage],
        rejections: &[Rejection],
    ) -> Result<Written, LedgerError> {
        let s = &self.statements;
        let tx = self.client.transaction().await.map_err(postgres)?;
        for rejection in rejections {
            tx.execute(
                &s.insert_rejected,
                &[
                    &rejection.subject,
                    &rejection.stream_sequence,
                    &rejection.error,
                    &rejection.payload,
                ],
            )
            .await
            .map_err(postgres)?;
        }
        let mut written = Written::default();
        if !passages.is_empty() {
            let ids: Vec<&str> = passages.iter().map(|p| p.id.as_str()).collect();
            let gates: Vec<&str> = passages.iter().map(|p| p.gate.as_str()).collect();
            let sequences: Vec<i64> = passages.iter().map(|p| p.sequence).collect();
            let decisions: Vec<&str> = passages.iter().map(|p| decision_text(p.decision)).collect();
            let reasons: Vec<Option<String>> = passages
                .iter()
                .map(|p| p.reason.map(|r| r.to_string()))
                .collect();
            let identities: Vec<Option<&str>> =
                passages.iter().map(|p| p.identity.as_deref()).collect();
            let similarities: Vec<Option<f64>> = passages.iter().map(|p| p.similarity).collect();
            let generations: Vec<i64> = passages.iter().map(|p| p.generation).collect();
            let times: Vec<DateTime<Utc>> = passages.iter().map(|p| p.time).collect();
            let inserted: HashSet<String> = tx
                .query(
                    &s.insert_passages,
                    &[
                        &ids,
                        &gates,
                        &sequences,
                        &decisions,
                        &reasons,
                        &identities,
                        &similarities,
                        &generations,
                        &times,
                    ],
                )
                .await
                .map_err(postgres)?
                .iter()
                .map(|row| row.get(0))
                .collect();
            written.inserted = inserted.len();
            // The first row of each inserted id is the one stored; every other row is a
            // duplicate, or a conflict if it says another gate or sequence.
            let mut first = HashSet::new();
            let others: Vec<&Passage> = passages
                .iter()
                .filter(|p| !(inserted.contains(&p.id) && first.insert(p.id.as_str())))
                .collect();
            written.duplicates = others.len();
            if !others.is_empty() {
                let ids: Vec<&str> = others.iter().map(|p| p.id.as_str()).collect();
                let gates: Vec<&str> = others.iter().map(|p| p.gate.as_str()).collect();
                let sequences: Vec<i64> = others.iter().map(|p| p.sequence).collect();
                let conflicts = tx
                    .query(&s.insert_conflicts, &[&ids, &gates, &sequences])
                    .await
                    .map_err(postgres)?;
                for row in &conflicts {
                    let (id, gate, sequence): (String, String, i64) =
                        (row.get(0), row.get(1), row.get(2));
                    let (stored_gate, stored_sequence): (String, i64) = (row.get(3), row.get(4));
                    warn!(
                        "passage {id}: arrived as {gate} sequence {sequence}, held as {stored_gate} sequence {stored_sequence}; the held one is kept (see table conflicts)"
                    );
                }
                written.duplicates -= conflicts.len();
            }
            // In name order, so two ledgers never wait for each other's gates in a cycle.
            let touched: BTreeSet<&GateId> = passages.iter().map(|p| &p.gate).collect();
            for gate in touched {
                let name = gate.as_str();
                tx.execute(&s.add_gate, &[&name]).await.map_err(postgres)?;
                let before: i64 = tx
                    .query_one(&s.lock_gate, &[&name])
                    .await
                    .map_err(postgres)?
                    .get(0);
                let after: i64 = tx
                    .query_one(&s.walk, &[&name, &before])
                    .await
                    .map_err(postgres)?
                    .get(0);
                if after != before {
                    tx.execute(&s.set_contiguous, &[&name, &after])
                        .await
                        .map_err(postgres)?;
                }
                written.contiguous.insert(gate.clone(), to_u64(after));
            }
        }
        tx.commit().await.map_err(postgres)?;
        Ok(written)
    }
}

/// Brings the schema to [`SCHEMA_VERSION`]; the table lock serialises two ledgers starting at
/// once.
async fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    client
        .batch_execute(
            // Notices ("already exists, skipping") are not worth a log line each start.
            "SET client_min_messages TO warning;
             CREATE TABLE IF NOT EXISTS schema_version (
                 version integer PRIMARY KEY,
                 applied timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(postgres)?;
    let tx = client.transaction().await.map_err(postgres)?;
    tx.batch_execute("LOCK TABLE schema_version IN EXCLUSIVE MODE")
        .await
        .map_err(postgres)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(postgres)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(LedgerError::Schema(format!(
            "the database is at version {current}, this build knows up to {SCHEMA_VERSION}: upgrade facegate-backoffice"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(|e| {
            LedgerError::Schema(format!("migrating to version {version}: {}", describe(&e)))
        })?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(postgres)?;
    }
    tx.commit().await.map_err(postgres)?;
    Ok(())
}

/// Connects for one report (no retry: the caller is a person or a test).
async fn connect_for_report(postgres_text: &str) -> Result<Client, LedgerError> {
    let config = parse_connection(postgres_text)?;
    let client = connect(&config).await?;
    let exists: bool = client
        .query_one("SELECT to_regclass('passages') IS NOT NULL", &[])
        .await
        .map_err(postgres)?
        .get(0);
    if !exists {
        return Err(LedgerError::Schema(
            "no ledger here (table passages is missing): has `facegate-backoffice ledger` run on this database?".into(),
        ));
    }
    Ok(client)
}

/// Every passage row, by gate and sequence.
pub async fn ledger_rows(postgres_text: &str) -> Result<Vec<LedgerRow>, LedgerError> {
    let client = connect_for_report(postgres_text).await?;
    let rows = client
        .query(
            "SELECT passage_id, gate, sequence, decision, reason, identity, similarity,
                    gallery_generation, time, received
             FROM passages ORDER BY gate, sequence, passage_id",
            &[],
        )
        .await
        .map_err(postgres)?;
    rows.iter()
        .map(|row| {
            let id: String = row.get(0);
            let bad = |what: String| LedgerError::Postgres(format!("passage {id}: {what}"));
            let gate: String = row.get(1);
            let decision: String = row.get(3);
            let reason: Option<String> = row.get(4);
            Ok(LedgerRow {
                gate: gate
                    .parse()
                    .map_err(|e: facegate_fleet::FleetError| bad(e.to_string()))?,
                sequence: to_u64(row.get(2)),
                decision: parse_decision(&decision)
                    .ok_or_else(|| bad(format!("decision {decision:?} is not grant or deny")))?,
                reason: reason
                    .map(|text| {
                        text.parse()
                            .map_err(|_| bad(format!("reason {text:?} is not a deny reason")))
                    })
                    .transpose()?,
                identity: row.get(5),
                similarity: row.get(6),
                gallery_generation: to_u64(row.get(7)),
                time: row.get(8),
                received: row.get(9),
                passage_id: id.clone(),
            })
        })
        .collect()
}

/// Per gate: its contiguous sequence, the highest seen and the runs missing between them.
pub async fn gaps(postgres_text: &str) -> Result<Vec<GateGaps>, LedgerError> {
    let client = connect_for_report(postgres_text).await?;
    let gates = client
        .query(
            "SELECT g.gate, g.contiguous,
                    coalesce((SELECT max(p.sequence) FROM passages p WHERE p.gate = g.gate), 0)
             FROM gates g ORDER BY g.gate",
            &[],
        )
        .await
        .map_err(postgres)?;
    let runs = client
        .prepare(
            "SELECT n + 1, next - 1 FROM (
                 SELECT n, lead(n) OVER (ORDER BY n) AS next FROM (
                     SELECT $2::int8 AS n
                     UNION SELECT sequence FROM passages WHERE gate = $1 AND sequence > $2
                 ) AS held
             ) AS steps
             WHERE next > n + 1 ORDER BY n",
        )
        .await
        .map_err(postgres)?;
    let mut report = Vec::with_capacity(gates.len());
    for row in gates {
        let name: String = row.get(0);
        let Ok(gate) = name.parse::<GateId>() else {
            warn!("ledger table gates: gate {name:?} is not a gate id; skipped");
            continue;
        };
        let (contiguous, highest): (i64, i64) = (row.get(1), row.get(2));
        let missing = match highest > contiguous {
            true => client
                .query(&runs, &[&name, &contiguous])
                .await
                .map_err(postgres)?
                .iter()
                .map(|run| Missing {
                    first: to_u64(run.get(0)),
                    last: to_u64(run.get(1)),
                })
                .collect(),
            false => Vec::new(),
        };
        report.push(GateGaps {
            gate,
            contiguous: to_u64(contiguous),
            highest: to_u64(highest.max(contiguous)),
            missing,
        });
    }
    Ok(report)
}

/// Every rejected message, oldest first.
pub async fn rejected_rows(postgres_text: &str) -> Result<Vec<RejectedRow>, LedgerError> {
    let client = connect_for_report(postgres_text).await?;
    let rows = client
        .query(
            "SELECT subject, stream_sequence, error, payload, received FROM rejected ORDER BY id",
            &[],
        )
        .await
        .map_err(postgres)?;
    Ok(rows
        .iter()
        .map(|row| RejectedRow {
            subject: row.get(0),
            stream_sequence: row.get::<_, Option<i64>>(1).map(to_u64),
            error: row.get(2),
            payload: row.get(3),
            received: row.get(4),
        })
        .collect())
}

/// Every conflicting claim on a held passage id, oldest first.
pub async fn conflicts(postgres_text: &str) -> Result<Vec<ConflictRow>, LedgerError> {
    let client = connect_for_report(postgres_text).await?;
    let rows = client
        .query(
            "SELECT passage_id, gate, sequence, stored_gate, stored_sequence, received
             FROM conflicts ORDER BY received, passage_id",
            &[],
        )
        .await
        .map_err(postgres)?;
    Ok(rows
        .iter()
        .map(|row| ConflictRow {
            passage_id: row.get(0),
            gate: row.get(1),
            sequence: to_u64(row.get(2)),
            stored_gate: row.get(3),
            stored_sequence: to_u64(row.get(4)),
            received: row.get(5),
        })
        .collect())
}

/// The wire name of a decision (its serde name), as stored.
fn decision_text(decision: Decision) -> &'static str {
    match decision {
        Decision::Grant => "grant",
        Decision::Deny => "deny",
    }
}

fn parse_decision(text: &str) -> Option<Decision> {
    [Decision::Grant, Decision::Deny]
        .into_iter()
        .find(|d| decision_text(*d) == text)
}

/// Sequences and generations are stored as bigint from checked u64s, and are never negative
/// (a CHECK and the ledger's own writes); a negative one written by hand reads as 0.
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn postgres(e: tokio_postgres::Error) -> LedgerError {
    LedgerError::Postgres(describe(&e))
}

/// An error and its causes on one line (tokio-postgres's own message is only its kind, and a
/// server error's detail comes on lines of its own).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_stored_by_their_wire_names() {
        for decision in [Decision::Grant, Decision::Deny] {
            let wire = serde_json::to_value(decision).unwrap();
            assert_eq!(wire, decision_text(decision));
            assert_eq!(parse_decision(decision_text(decision)), Some(decision));
        }
        assert_eq!(parse_decision("maybe"), None);
    }

    #[test]
    fn a_bad_connection_string_is_one_line() {
        let error = parse_connection("host=127.0.0.1 port=notaport").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("ledger configuration: postgres connection string"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
