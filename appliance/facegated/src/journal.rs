// SPDX-License-Identifier: MIT OR Apache-2.0
//! The journal: every gate decision, recorded durably in SQLite before the gate moves.
//!
//! Four tables: `outbox`, the fleet's count of passages (see [`outbox`]); `passages`, one row per
//! decision; `mode_changes`, one row per `SetMode` (free mode holds the gate open, so it is
//! journalled before the relay moves, like a grant) and per emergency release and its end;
//! `passage_outcomes`, one row per thing the passage sensor judged (a grant passed or not passed, a
//! tailgating, a free passage in an emergency). Rows have a UUID v7 id (time-ordered) and the time
//! as RFC 3339 UTC text with microseconds (fixed width, so text order is time order and operators
//! can read it with `sqlite3`). The schema is versioned with `PRAGMA user_version` and marked with
//! `PRAGMA application_id` so a foreign database is refused, before anything is written to it,
//! instead of written into.

pub mod outbox;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, NaiveDate, SecondsFormat, TimeZone, Utc};
use facegate_dbus::{Mode, PassageOutcome};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// `[journal]` in facegate.toml.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// The SQLite file; its directory must exist.
    pub path: PathBuf,
    /// Passages older than this many days are deleted (at open and daily).
    pub retention_days: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            path: PathBuf::from("/var/lib/facegate/journal.sqlite"),
            retention_days: 90,
        }
    }
}

impl JournalConfig {
    /// Checks every value; the message names the key.
    pub fn validate(&self) -> Result<(), JournalError> {
        if self.retention_days < 1 {
            return Err(JournalError::Config(
                "journal.retention_days: must be at least 1".into(),
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(JournalError::Config(
                "journal.path: must not be empty".into(),
            ));
        }
        Ok(())
    }
}

/// One decision to record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewPassage {
    pub track: Option<u64>,
    pub identity: Option<String>,
    pub label: Option<String>,
    pub similarity: Option<f64>,
    pub granted: bool,
    /// Deny reason (a DenyReason wire name: "unknown", "low-confidence", "ambiguous", …).
    pub reason: Option<String>,
    /// Gallery generation the decision was made with.
    pub generation: u64,
    /// Pipeline running time of the deciding frame.
    pub video_time_ns: Option<u64>,
    /// The passenger token the decision was made on (its id: 32 hex digits), if any.
    pub token: Option<String>,
}

/// One recorded decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    /// UUID v7, hyphenated lower case.
    pub id: String,
    /// When it was recorded (microsecond precision).
    pub time: DateTime<Utc>,
    pub track: Option<u64>,
    pub identity: Option<String>,
    pub label: Option<String>,
    pub similarity: Option<f64>,
    pub granted: bool,
    pub reason: Option<String>,
    pub generation: u64,
    pub video_time_ns: Option<u64>,
    /// The passenger token the decision was made on (its id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// One recorded `SetMode`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModeChange {
    /// UUID v7, hyphenated lower case.
    pub id: String,
    pub time: DateTime<Utc>,
    pub mode: Mode,
}

/// One recorded passage outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// UUID v7, hyphenated lower case.
    pub id: String,
    pub time: DateTime<Utc>,
    pub outcome: PassageOutcome,
    /// The grant (a `passages` id) it is about: the one passed or not passed, or the one a
    /// tailgater followed; None when there is none.
    pub passage: Option<String>,
}

/// Everything that can go wrong with the journal; one line each, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A configuration value, with its key.
    #[error("{0}")]
    Config(String),
    #[error("journal {}: directory {} does not exist", path.display(), dir.display())]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    /// SQLite refused (a file that is not a database says "file is not a database"). The
    /// SQLite message is part of this one's text, not a `source` to be printed again.
    #[error("journal {}: {error}", path.display())]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// The file is a database but not a sound FaceGate journal.
    #[error("journal {}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
}

/// `PRAGMA user_version` of the schema below (1 had no `mode_changes`, 2 no `passage_outcomes`
/// and no mode `emergency`, 3 no fleet sequence and no `outbox`).
const SCHEMA_VERSION: i64 = 5;
/// `PRAGMA application_id`: "FGJ1".
const APPLICATION_ID: i64 = 0x4647_4a31;

const SCHEMA: &str = "
CREATE TABLE passages (
    seq           INTEGER PRIMARY KEY,  -- insertion order
    id            TEXT NOT NULL UNIQUE, -- UUID v7
    time          TEXT NOT NULL,        -- RFC 3339 UTC, microseconds: 2025-01-31T08:15:02.123456Z
    track         INTEGER,
    identity      TEXT,
    label         TEXT,
    similarity    REAL,
    granted       INTEGER NOT NULL CHECK (granted IN (0, 1)),
    reason        TEXT,
    generation    INTEGER NOT NULL,
    video_time_ns INTEGER
);
CREATE INDEX passages_time ON passages (time);
CREATE INDEX passages_grants ON passages (identity, time) WHERE granted = 1;
";

/// What version 2 added to version 1 (version 3 allows mode `emergency`).
const MODE_CHANGES: &str = "
CREATE TABLE mode_changes (
    seq   INTEGER PRIMARY KEY,   -- insertion order
    id    TEXT NOT NULL UNIQUE,  -- UUID v7
    time  TEXT NOT NULL,         -- as in passages
    mode  TEXT NOT NULL CHECK (mode IN ('normal', 'locked', 'free', 'emergency'))
);
CREATE INDEX mode_changes_time ON mode_changes (time);
";

/// Version 2's `mode_changes` rebuilt with version 3's CHECK (SQLite cannot alter one).
const MODE_CHANGES_FROM_2: &str = "
DROP INDEX mode_changes_time;
ALTER TABLE mode_changes RENAME TO mode_changes_2;
";
const MODE_CHANGES_COPY: &str = "
INSERT INTO mode_changes (seq, id, time, mode) SELECT seq, id, time, mode FROM mode_changes_2;
DROP TABLE mode_changes_2;
";

/// What version 3 added.
const PASSAGE_OUTCOMES: &str = "
CREATE TABLE passage_outcomes (
    seq      INTEGER PRIMARY KEY,   -- insertion order
    id       TEXT NOT NULL UNIQUE,  -- UUID v7
    time     TEXT NOT NULL,         -- as in passages
    outcome  TEXT NOT NULL CHECK (outcome IN ('passed', 'not-passed', 'tailgating', 'free')),
    passage  TEXT                   -- the grant (passages.id) it is about, if any
);
CREATE INDEX passage_outcomes_time ON passage_outcomes (time);
";

/// Version 4: every passage gets the gate's fleet sequence, counted in `outbox` so that a number
/// is never given twice, not even after the table was emptied; rows of an older journal keep
/// their order. `confirmed` is the highest sequence the back office holds with none missing.
const OUTBOX: &str = "
ALTER TABLE passages ADD COLUMN sequence INTEGER;
UPDATE passages SET sequence = seq;
CREATE UNIQUE INDEX passages_sequence ON passages (sequence);
CREATE TABLE outbox (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_sequence INTEGER NOT NULL,
    confirmed     INTEGER NOT NULL CHECK (confirmed <= last_sequence)
);
INSERT INTO outbox (singleton, last_sequence, confirmed)
    VALUES (1, (SELECT coalesce(max(seq), 0) FROM passages), 0);
";

/// Version 5: the token a passage was decided on (its id, never its template), for the
/// identification modes with passenger tokens.
const TOKENS: &str = "
ALTER TABLE passages ADD COLUMN token TEXT;
";

const COLUMNS: &str =
    "id, time, track, identity, label, similarity, granted, reason, generation, video_time_ns";

/// The SQLite journal of every decision.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    retention_days: u32,
    retention: Retention,
}

/// What the daily pruning may delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Rows older than `retention_days`.
    Age,
    /// Passages older than `retention_days` that the back office has confirmed: the journal is
    /// the fleet's outbox, and a gate offline for longer than its retention keeps its backlog.
    AgeOnceConfirmed,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("retention_days", &self.retention_days)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens or creates the journal. The directory must exist; a file that is not a sound
    /// FaceGate journal is an error naming the path. Prunes old passages.
    pub fn open(config: &JournalConfig) -> Result<Journal, JournalError> {
        Journal::open_with(config, Retention::Age)
    }

    /// As [`Journal::open`], pruning as `retention` says.
    pub fn open_with(
        config: &JournalConfig,
        retention: Retention,
    ) -> Result<Journal, JournalError> {
        config.validate()?;
        let path = config.path.clone();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(JournalError::MissingDirectory { path, dir });
        }
        let sql = |error| JournalError::Sqlite {
            path: config.path.clone(),
            error,
        };
        let invalid = |detail: String| JournalError::Invalid {
            path: config.path.clone(),
            detail,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        // facegatectl or a backup may hold the lock for a moment.
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let mut journal = Journal {
            conn,
            path,
            retention_days: config.retention_days,
            retention,
        };
        // Before any setting is changed: a foreign database is refused as it was found (switching
        // it to WAL first would rewrite its header).
        journal.check_and_migrate()?;
        let conn = &journal.conn;

        // A decision is acknowledged (and the gate opens) only after record() returns, so a
        // committed passage must survive power loss and kill -9: write-ahead log, and
        // synchronous=FULL so every commit fsyncs the WAL (NORMAL would only sync at
        // checkpoints in WAL mode and could lose the last commits on power loss). Both are
        // read back: a file system or build that silently refuses them must not pass.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(invalid(format!(
                "cannot use write-ahead logging (journal_mode is {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(sql)?;
        if sync != 2 {
            return Err(invalid(format!(
                "cannot set synchronous=FULL (synchronous is {sync})"
            )));
        }

        journal.prune()?;
        Ok(journal)
    }

    /// Schema: create it in a new file, accept ours, refuse anything else; then a quick
    /// integrity check so a damaged file is reported at start, not at the first passage.
    fn check_and_migrate(&mut self) -> Result<(), JournalError> {
        let path = self.path.clone();
        let sql = |error| JournalError::Sqlite {
            path: path.clone(),
            error,
        };
        let invalid = |detail: String| JournalError::Invalid {
            path: path.clone(),
            detail,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        let app_id: i64 = tx
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(sql)?;
        match version {
            0 => {
                let objects: i64 = tx
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                    .map_err(sql)?;
                if objects != 0 || (app_id != 0 && app_id != APPLICATION_ID) {
                    return Err(invalid(
                        "not a FaceGate journal (a database with other contents)".into(),
                    ));
                }
                tx.execute_batch(SCHEMA).map_err(sql)?;
                tx.execute_batch(MODE_CHANGES).map_err(sql)?;
                tx.execute_batch(PASSAGE_OUTCOMES).map_err(sql)?;
                tx.execute_batch(OUTBOX).map_err(sql)?;
                tx.execute_batch(TOKENS).map_err(sql)?;
                tx.pragma_update(None, "application_id", APPLICATION_ID)
                    .map_err(sql)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
                tracing::info!(path = %path.display(), "journal created");
            }
            SCHEMA_VERSION if app_id == APPLICATION_ID => {}
            old @ 1..=4 if app_id == APPLICATION_ID => {
                if old < 3 {
                    if old == 2 {
                        tx.execute_batch(MODE_CHANGES_FROM_2).map_err(sql)?;
                    }
                    tx.execute_batch(MODE_CHANGES).map_err(sql)?;
                    if old == 2 {
                        tx.execute_batch(MODE_CHANGES_COPY).map_err(sql)?;
                    }
                    tx.execute_batch(PASSAGE_OUTCOMES).map_err(sql)?;
                }
                if old < 4 {
                    tx.execute_batch(OUTBOX).map_err(sql)?;
                }
                tx.execute_batch(TOKENS).map_err(sql)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
                tracing::info!(path = %path.display(), "journal schema upgraded from version {old} to {SCHEMA_VERSION}");
            }
            1..=SCHEMA_VERSION => {
                return Err(invalid(format!(
                    "not a FaceGate journal (application_id {app_id:#x})"
                )));
            }
            v => {
                return Err(invalid(format!(
                    "schema version {v} is not supported by this facegated (it knows {SCHEMA_VERSION})"
                )));
            }
        }
        tx.commit().map_err(sql)?;
        let problems: Vec<String> = self
            .conn
            .prepare("PRAGMA quick_check(4)")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(sql)?
            .into_iter()
            .filter(|p| p != "ok" && !p.starts_with("*** in database"))
            .map(|p| p.replace('\n', " "))
            .collect();
        if !problems.is_empty() {
            return Err(invalid(format!(
                "damaged database: {}",
                problems.join("; ")
            )));
        }
        Ok(())
    }

    /// The file this journal writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql_err(&self, error: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    /// Durably records one decision; returns only once it is committed (the gate moves after
    /// this).
    pub fn record(&mut self, passage: &NewPassage) -> Result<Passage, JournalError> {
        self.insert(passage, Utc::now())
    }

    fn insert(
        &mut self,
        passage: &NewPassage,
        time: DateTime<Utc>,
    ) -> Result<Passage, JournalError> {
        let time = truncate_micros(time);
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        // The sequence and the row in one transaction: when commit() returns, both are durable
        // (one fsync of the WAL). Immediate: the outbox's own connection also writes.
        let path = self.path.clone();
        let sql = |error| JournalError::Sqlite {
            path: path.clone(),
            error,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let sequence: i64 = tx
            .prepare_cached(
                "UPDATE outbox SET last_sequence = last_sequence + 1 RETURNING last_sequence",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql)?;
        tx.prepare_cached(&format!(
            "INSERT INTO passages ({COLUMNS}, sequence, token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                time_text(time),
                passage.track.map(|t| t as i64),
                passage.identity,
                passage.label,
                passage.similarity,
                passage.granted,
                passage.reason,
                passage.generation as i64,
                passage.video_time_ns.map(|t| t as i64),
                sequence,
                passage.token,
            ])
        })
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Passage {
            id,
            time,
            track: passage.track,
            identity: passage.identity.clone(),
            label: passage.label.clone(),
            similarity: passage.similarity,
            granted: passage.granted,
            reason: passage.reason.clone(),
            generation: passage.generation,
            video_time_ns: passage.video_time_ns,
            token: passage.token.clone(),
        })
    }

    /// Test-only: records a passage at an explicit time (to age rows).
    #[cfg(test)]
    pub(crate) fn record_at(
        &mut self,
        passage: &NewPassage,
        time: DateTime<Utc>,
    ) -> Result<Passage, JournalError> {
        self.insert(passage, time)
    }

    /// Durably records a mode change; returns only once it is committed (the gate follows the
    /// mode after this).
    pub fn record_mode(&mut self, mode: Mode) -> Result<ModeChange, JournalError> {
        let time = truncate_micros(Utc::now());
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        self.conn
            .prepare_cached("INSERT INTO mode_changes (id, time, mode) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![id, time_text(time), mode.to_string()]))
            .map_err(|e| self.sql_err(e))?;
        Ok(ModeChange { id, time, mode })
    }

    /// Durably records what the passage sensor made of a passage.
    pub fn record_outcome(
        &mut self,
        outcome: PassageOutcome,
        passage: Option<&str>,
    ) -> Result<OutcomeRecord, JournalError> {
        let time = truncate_micros(Utc::now());
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        self.conn
            .prepare_cached(
                "INSERT INTO passage_outcomes (id, time, outcome, passage) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![id, time_text(time), outcome.to_string(), passage]))
            .map_err(|e| self.sql_err(e))?;
        Ok(OutcomeRecord {
            id,
            time,
            outcome,
            passage: passage.map(str::to_string),
        })
    }

    /// Every passage outcome, oldest first.
    pub fn outcomes(&self) -> Result<Vec<OutcomeRecord>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, time, outcome, passage FROM passage_outcomes ORDER BY seq")
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], |r| {
            Ok(OutcomeRecord {
                id: r.get(0)?,
                time: parse_time(r, 1)?,
                outcome: parse_name_column(r, 2)?,
                passage: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql_err(e))
    }

    /// Every mode change, oldest first.
    pub fn mode_changes(&self) -> Result<Vec<ModeChange>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, time, mode FROM mode_changes ORDER BY seq")
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], |r| {
            Ok(ModeChange {
                id: r.get(0)?,
                time: parse_time(r, 1)?,
                mode: parse_name_column(r, 2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql_err(e))
    }

    /// Granted and denied passages of the local calendar day.
    pub fn counts_today(&self) -> Result<(u64, u64), JournalError> {
        let today = Local::now().date_naive();
        let start = local_midnight(today);
        let end = local_midnight(today.succ_opt().unwrap_or(today));
        let (granted, denied): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(granted), 0), coalesce(sum(1 - granted), 0)
                 FROM passages WHERE time >= ?1 AND time < ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![time_text(start), time_text(end)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(|e| self.sql_err(e))?;
        Ok((granted as u64, denied as u64))
    }

    /// The latest grant of each identity within `window` before now, oldest first (to seed
    /// anti-passback after a restart). A grant on a token is keyed `token:<token id>`, as the
    /// policy keys passback by token.
    pub fn recent_grants(
        &self,
        window: Duration,
    ) -> Result<Vec<(String, SystemTime)>, JournalError> {
        let since = chrono::Duration::from_std(window)
            .ok()
            .and_then(|w| Utc::now().checked_sub_signed(w))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, max(time) AS last FROM (
                   SELECT CASE WHEN token IS NULL THEN identity
                               ELSE 'token:' || token END AS key, time
                   FROM passages WHERE granted = 1 AND time >= ?1)
                 WHERE key IS NOT NULL
                 GROUP BY key ORDER BY last, key",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![time_text(since)], |r| {
                Ok((r.get::<_, String>(0)?, parse_time(r, 1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_err(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, t)| (id, SystemTime::from(t)))
            .collect())
    }

    /// Deletes passages older than `retention_days`; returns how many.
    pub fn prune(&mut self) -> Result<usize, JournalError> {
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(self.retention_days));
        let n = match self.retention {
            Retention::Age => self.conn.execute(
                "DELETE FROM passages WHERE time < ?1",
                params![time_text(cutoff)],
            ),
            Retention::AgeOnceConfirmed => self.conn.execute(
                "DELETE FROM passages
                 WHERE time < ?1 AND sequence <= (SELECT confirmed FROM outbox)",
                params![time_text(cutoff)],
            ),
        }
        .map_err(|e| self.sql_err(e))?;
        for table in ["mode_changes", "passage_outcomes"] {
            self.conn
                .execute(
                    &format!("DELETE FROM {table} WHERE time < ?1"),
                    params![time_text(cutoff)],
                )
                .map_err(|e| self.sql_err(e))?;
        }
        if n > 0 {
            tracing::info!(
                deleted = n,
                retention_days = self.retention_days,
                "journal pruned"
            );
        }
        Ok(n)
    }

    /// Every passage, oldest first.
    pub fn passages(&self) -> Result<Vec<Passage>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, token FROM passages ORDER BY seq"
            ))
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map([], row_to_passage)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql_err(e))
    }

    /// The passage with this id, if recorded.
    pub fn passage(&self, id: &str) -> Result<Option<Passage>, JournalError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, token FROM passages WHERE id = ?1"
            ))
            .and_then(|mut s| s.query_row([id], row_to_passage).optional())
            .map_err(|e| self.sql_err(e))
    }
}

fn row_to_passage(r: &rusqlite::Row<'_>) -> rusqlite::Result<Passage> {
    Ok(Passage {
        id: r.get(0)?,
        time: parse_time(r, 1)?,
        track: r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
        identity: r.get(3)?,
        label: r.get(4)?,
        similarity: r.get(5)?,
        granted: r.get(6)?,
        reason: r.get(7)?,
        generation: r.get::<_, i64>(8)? as u64,
        video_time_ns: r.get::<_, Option<i64>>(9)?.map(|t| t as u64),
        token: r.get(10)?,
    })
}

fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Fixed-width RFC 3339 UTC with microseconds: text order is time order.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A column holding a wire name (a mode, an outcome).
fn parse_name_column<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = strum::ParseError>,
{
    let name: String = r.get(i)?;
    name.parse().map_err(|e: strum::ParseError| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

fn parse_time(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(i)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
}

/// The first instant of a local calendar day (the day may not start at 00:00 across a DST gap).
fn local_midnight(day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("00:00:00 exists");
    (0..=3)
        .find_map(|h| {
            Local
                .from_local_datetime(&(midnight + chrono::Duration::hours(h)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> JournalConfig {
        JournalConfig {
            path: dir.join("journal.sqlite"),
            retention_days: 90,
        }
    }

    fn grant(identity: &str) -> NewPassage {
        NewPassage {
            track: Some(7),
            identity: Some(identity.into()),
            label: Some(format!("Label {identity}")),
            similarity: Some(0.71),
            granted: true,
            reason: None,
            generation: 3,
            video_time_ns: Some(1_234_567_890),
            token: None,
        }
    }

    fn deny(reason: &str) -> NewPassage {
        NewPassage {
            track: Some(8),
            granted: false,
            reason: Some(reason.into()),
            generation: 3,
            ..NewPassage::default()
        }
    }

    #[test]
    fn record_then_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        let a = j.record(&grant("alice")).unwrap();
        let b = j.record(&deny("unknown")).unwrap();
        let c = j
            .record(&NewPassage {
                track: Some(u64::MAX),
                generation: u64::MAX,
                video_time_ns: Some(u64::MAX - 1),
                token: None,
                ..grant("bob")
            })
            .unwrap();
        assert!(a.granted && !b.granted);
        assert_eq!(a.identity.as_deref(), Some("alice"));
        assert_eq!(b.reason.as_deref(), Some("unknown"));
        drop(j);
        let j = Journal::open(&cfg).unwrap();
        assert_eq!(j.passages().unwrap(), vec![a.clone(), b, c.clone()]);
        assert_eq!(c.track, Some(u64::MAX));
        assert_eq!(j.passage(&a.id).unwrap(), Some(a));
        assert_eq!(j.passage("nope").unwrap(), None);
    }

    #[test]
    fn durability_pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&config(dir.path())).unwrap();
        let mode: String = j
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = j
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        let version: i64 = j
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), sync, version), ("wal", 2, SCHEMA_VERSION));
    }

    #[test]
    fn ids_unique_and_time_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&config(dir.path())).unwrap();
        let recorded: Vec<Passage> = (0..200)
            .map(|i| j.record(&grant(&format!("p{}", i % 5))).unwrap())
            .collect();
        let ids: Vec<&str> = recorded.iter().map(|p| p.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "unique, and in recording order");
        for p in &recorded {
            let u = uuid::Uuid::parse_str(&p.id).unwrap();
            assert_eq!(u.get_version_num(), 7);
        }
        assert!(recorded.windows(2).all(|w| w[0].time <= w[1].time));
        let stored = j.passages().unwrap();
        assert_eq!(stored, recorded);
    }

    #[test]
    fn counts_today_counts_only_today() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&config(dir.path())).unwrap();
        assert_eq!(j.counts_today().unwrap(), (0, 0));
        for who in ["a", "b", "c"] {
            j.record(&grant(who)).unwrap();
        }
        j.record(&deny("unknown")).unwrap();
        j.record(&deny("passback")).unwrap();
        let two_days_ago = Utc::now() - chrono::Duration::days(2);
        j.record_at(&grant("old"), two_days_ago).unwrap();
        j.record_at(&deny("old"), two_days_ago).unwrap();
        assert_eq!(j.counts_today().unwrap(), (3, 2));
    }

    #[test]
    fn recent_grants_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&config(dir.path())).unwrap();
        let now = Utc::now();
        j.record_at(&grant("alice"), now - chrono::Duration::minutes(10))
            .unwrap();
        j.record_at(&grant("bob"), now - chrono::Duration::minutes(5))
            .unwrap();
        let bob_last = j
            .record_at(&grant("bob"), now - chrono::Duration::seconds(30))
            .unwrap();
        j.record(&NewPassage {
            identity: Some("carol".into()),
            ..deny("passback")
        })
        .unwrap();
        j.record(&NewPassage {
            identity: None,
            ..grant("x")
        })
        .unwrap();
        let dave = j.record(&grant("dave")).unwrap();

        let recent = j.recent_grants(Duration::from_secs(120)).unwrap();
        assert_eq!(
            recent,
            vec![
                ("bob".to_string(), SystemTime::from(bob_last.time)),
                ("dave".to_string(), SystemTime::from(dave.time)),
            ]
        );
        let names: Vec<String> = j
            .recent_grants(Duration::from_secs(3600))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(names, ["alice", "bob", "dave"]);
        assert_eq!(j.recent_grants(Duration::MAX).unwrap().len(), 3);
        assert!(j.recent_grants(Duration::ZERO).unwrap().len() <= 1);
    }

    #[test]
    fn prune_deletes_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        let now = Utc::now();
        j.record_at(&grant("old"), now - chrono::Duration::days(91))
            .unwrap();
        let kept = j
            .record_at(&grant("recent"), now - chrono::Duration::days(89))
            .unwrap();
        let fresh = j.record(&grant("new")).unwrap();
        assert_eq!(j.prune().unwrap(), 1);
        assert_eq!(j.prune().unwrap(), 0);
        assert_eq!(j.passages().unwrap(), vec![kept.clone(), fresh.clone()]);

        // open() prunes as well.
        j.record_at(&grant("old2"), now - chrono::Duration::days(100))
            .unwrap();
        drop(j);
        let j = Journal::open(&cfg).unwrap();
        assert_eq!(j.passages().unwrap(), vec![kept, fresh]);
    }

    #[test]
    fn missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            path: dir.path().join("no/such/journal.sqlite"),
            retention_days: 90,
        };
        let msg = Journal::open(&cfg).unwrap_err().to_string();
        assert!(msg.contains("no/such/journal.sqlite"), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn corrupt_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(&cfg.path, &garbage).unwrap();
        let msg = Journal::open(&cfg).unwrap_err().to_string();
        assert!(msg.contains(&cfg.path.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        eprintln!("{msg}");
        // The file is left as it was for an operator to look at.
        assert_eq!(std::fs::read(&cfg.path).unwrap(), garbage);
    }

    #[test]
    fn damaged_pages_are_reported_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        for i in 0..500 {
            j.record(&grant(&format!("person-{i}"))).unwrap();
        }
        // Fold the WAL into the main file so the damage below is what SQLite reads.
        j.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(j);
        let mut bytes = std::fs::read(&cfg.path).unwrap();
        assert!(bytes.len() > 4 * 4096);
        // Keep the header page, scribble over the rest.
        for b in &mut bytes[4096..] {
            *b = 0x5a;
        }
        std::fs::write(&cfg.path, &bytes).unwrap();
        let msg = Journal::open(&cfg).unwrap_err().to_string();
        assert!(msg.contains(&cfg.path.display().to_string()), "{msg}");
        eprintln!("{msg}");
    }

    /// A journal path holding another program's SQLite database.
    fn foreign_database() -> (tempfile::TempDir, JournalConfig) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let other = Connection::open(&cfg.path).unwrap();
        other
            .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(other);
        (dir, cfg)
    }

    #[test]
    fn foreign_database_is_refused() {
        let (_dir, cfg) = foreign_database();
        let msg = Journal::open(&cfg).unwrap_err().to_string();
        assert!(msg.contains("not a FaceGate journal"), "{msg}");
        assert!(msg.contains("journal.sqlite"), "{msg}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        drop(Journal::open(&cfg).unwrap());
        let other = Connection::open(&cfg.path).unwrap();
        other
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(other);
        let msg = Journal::open(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{msg}"
        );
    }

    #[test]
    fn a_version_3_journal_numbers_its_passages_in_order_for_the_fleet() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        {
            let conn = Connection::open(&cfg.path).unwrap();
            for part in [SCHEMA, MODE_CHANGES, PASSAGE_OUTCOMES] {
                conn.execute_batch(part).unwrap();
            }
            conn.execute_batch(&format!(
                "INSERT INTO passages ({COLUMNS}) VALUES
                   ('0193-a', '2026-11-30T08:00:00.000000Z', 1, 'p-1', 'A', 0.8, 1, NULL, 3, NULL),
                   ('0193-b', '2026-11-30T08:00:01.000000Z', 2, NULL, NULL, NULL, 0, 'unknown', 3, NULL);"
            ))
            .unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let mut j = Journal::open(&cfg).unwrap();
        let newest = j.record(&grant("alice")).unwrap();
        let outbox = outbox::Outbox::open(&cfg).unwrap();
        let rows = outbox.after(0, 10).unwrap();
        let numbered: Vec<(u64, &str)> = rows
            .iter()
            .map(|r| (r.sequence, r.passage.id.as_str()))
            .collect();
        assert_eq!(
            numbered,
            [(1, "0193-a"), (2, "0193-b"), (3, newest.id.as_str())]
        );
    }

    #[test]
    fn a_foreign_database_is_refused_untouched() {
        let (dir, cfg) = foreign_database();
        let before = std::fs::read(&cfg.path).unwrap();
        Journal::open(&cfg).unwrap_err();
        assert_eq!(
            std::fs::read(&cfg.path).unwrap(),
            before,
            "not switched to WAL"
        );
        assert!(!dir.path().join("journal.sqlite-wal").exists());
    }

    #[test]
    fn mode_changes_are_recorded_and_a_version_1_journal_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        let kept = j.record(&grant("alice")).unwrap();
        let free = j.record_mode(Mode::Free).unwrap();
        assert_eq!(j.mode_changes().unwrap(), vec![free]);
        // Back to what version 1 was.
        j.conn
            .execute_batch(
                "DROP TABLE mode_changes; DROP TABLE passage_outcomes; DROP TABLE outbox;
                 DROP INDEX passages_sequence; ALTER TABLE passages DROP COLUMN sequence;
                 ALTER TABLE passages DROP COLUMN token;
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        drop(j);
        let mut j = Journal::open(&cfg).unwrap();
        assert_eq!(j.passages().unwrap(), vec![kept]);
        assert_eq!(j.mode_changes().unwrap(), vec![]);
        let locked = j.record_mode(Mode::Locked).unwrap();
        assert_eq!(j.mode_changes().unwrap(), vec![locked]);
        assert_eq!(j.outcomes().unwrap(), vec![]);
    }

    #[test]
    fn a_version_4_journal_learns_tokens_and_keys_token_grants_for_passback() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        let kept = j.record(&grant("alice")).unwrap();
        j.conn
            .execute_batch("ALTER TABLE passages DROP COLUMN token; PRAGMA user_version = 4;")
            .unwrap();
        drop(j);
        let mut j = Journal::open(&cfg).unwrap();
        assert_eq!(j.passages().unwrap(), vec![kept]);
        let on_token = j
            .record(&NewPassage {
                token: Some("0123456789abcdef0123456789abcdef".into()),
                ..grant("P-7")
            })
            .unwrap();
        assert_eq!(j.passage(&on_token.id).unwrap(), Some(on_token));
        let keys: Vec<String> = j
            .recent_grants(Duration::from_secs(60))
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["alice", "token:0123456789abcdef0123456789abcdef"]);
    }

    #[test]
    fn a_version_2_journal_keeps_its_mode_changes_and_learns_emergency_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        {
            // Version 2 exactly as it was created.
            let conn = Connection::open(&cfg.path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "CREATE TABLE mode_changes (
                    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
                    mode TEXT NOT NULL CHECK (mode IN ('normal', 'locked', 'free')));
                 CREATE INDEX mode_changes_time ON mode_changes (time);
                 INSERT INTO mode_changes (id, time, mode)
                     VALUES ('0193-a', '2026-11-30T08:00:00.000000Z', 'free');",
            )
            .unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let mut j = Journal::open(&cfg).unwrap();
        let kept = j.mode_changes().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].id.as_str(), kept[0].mode), ("0193-a", Mode::Free));
        let emergency = j.record_mode(Mode::Emergency).unwrap();
        assert_eq!(j.mode_changes().unwrap()[1], emergency);
        let passed = j
            .record_outcome(PassageOutcome::Passed, Some("0193-b"))
            .unwrap();
        assert_eq!(j.outcomes().unwrap(), vec![passed]);
        let version: i64 = j
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn passage_outcomes_are_recorded_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut j = Journal::open(&cfg).unwrap();
        let grant = j.record(&grant("alice")).unwrap();
        let written = vec![
            j.record_outcome(PassageOutcome::Passed, Some(&grant.id))
                .unwrap(),
            j.record_outcome(PassageOutcome::Tailgating, Some(&grant.id))
                .unwrap(),
            j.record_outcome(PassageOutcome::Tailgating, None).unwrap(),
            j.record_outcome(PassageOutcome::Free, None).unwrap(),
        ];
        drop(j);
        let j = Journal::open(&cfg).unwrap();
        assert_eq!(j.outcomes().unwrap(), written);
        assert_eq!(written[1].passage.as_deref(), Some(grant.id.as_str()));
    }

    #[test]
    fn a_sqlite_error_is_said_once() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::write(&cfg.path, vec![0x42; 8192]).unwrap();
        let error = anyhow::Error::from(Journal::open(&cfg).unwrap_err());
        let message = format!("{error:#}");
        assert_eq!(message.matches("not a database").count(), 1, "{message}");
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: JournalConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(c, JournalConfig::default());
        assert_eq!(c.retention_days, 90);
        assert_eq!(c.path, PathBuf::from("/var/lib/facegate/journal.sqlite"));
        c.validate().unwrap();
        let bad = JournalConfig {
            retention_days: 0,
            ..c.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "journal.retention_days: must be at least 1"
        );
        assert!(
            serde_json::from_value::<JournalConfig>(serde_json::json!({"retention": 3})).is_err()
        );
    }

    #[test]
    fn local_day_bounds_are_a_day_apart() {
        let today = Local::now().date_naive();
        let start = local_midnight(today);
        let end = local_midnight(today.succ_opt().unwrap());
        let hours = (end - start).num_hours();
        assert!((23..=25).contains(&hours), "{hours}");
        assert!(start <= Utc::now() && Utc::now() < end);
    }
}
