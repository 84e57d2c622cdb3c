// SPDX-License-Identifier: MIT OR Apache-2.0
//! The journal as the fleet's outbox: the publisher reads passages in their gate's sequence and
//! records what the back office has confirmed, on a connection of its own so that it never
//! waits on the decider's (and the decider never on it for longer than one small write).
//!
//! Every passage gets the next number of `outbox.last_sequence` in the transaction that writes
//! it, so numbers are never reused; `outbox.confirmed` only grows, and with
//! [`Retention::AgeOnceConfirmed`](super::Retention::AgeOnceConfirmed) pruning deletes nothing
//! above it.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::{APPLICATION_ID, COLUMNS, JournalConfig, JournalError, Passage, SCHEMA_VERSION};

/// One passage with its sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    pub sequence: u64,
    pub passage: Passage,
}

/// Where the outbox stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxState {
    /// The last sequence given to a passage.
    pub last_sequence: u64,
    /// The back office holds every passage up to this one.
    pub confirmed: u64,
}

impl OutboxState {
    /// Passages the back office does not hold yet.
    pub fn depth(&self) -> u64 {
        self.last_sequence - self.confirmed
    }
}

/// What a confirmation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmed {
    /// `confirmed` moved up to it.
    Advanced,
    /// It was not above `confirmed` (a repeat, or an old value seen again): nothing changed.
    Unchanged,
    /// It named sequences this gate never gave (a back office that kept another gate's, or an
    /// older journal's, numbers): `confirmed` moved only to the last one given.
    BeyondLast,
}

/// The outbox side of a journal the service has already opened (and so created or upgraded).
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    pub fn open(config: &JournalConfig) -> Result<Outbox, JournalError> {
        let path = config.path.clone();
        let sql = |error| JournalError::Sqlite {
            path: path.clone(),
            error,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        let app_id: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(sql)?;
        if version != SCHEMA_VERSION || app_id != APPLICATION_ID {
            return Err(JournalError::Invalid {
                path,
                detail: format!(
                    "the outbox needs a FaceGate journal of schema {SCHEMA_VERSION} (found schema {version}, application_id {app_id:#x})"
                ),
            });
        }
        // As the journal's own connection: a confirmation must not be lost to a power cut
        // either, or retention would wait for it again (harmless) and the publisher resend.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        Ok(Outbox { conn, path })
    }

    fn sql_err(&self, error: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    pub fn state(&self) -> Result<OutboxState, JournalError> {
        self.conn
            .prepare_cached("SELECT last_sequence, confirmed FROM outbox")
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok(OutboxState {
                        last_sequence: r.get::<_, i64>(0)? as u64,
                        confirmed: r.get::<_, i64>(1)? as u64,
                    })
                })
            })
            .map_err(|e| self.sql_err(e))
    }

    /// Up to `limit` passages after `sequence`, in order. Rows pruned before the fleet was
    /// enabled are simply absent: the back office sees their numbers as a gap it reports.
    pub fn after(&self, sequence: u64, limit: usize) -> Result<Vec<OutboxRow>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, token, sequence FROM passages WHERE sequence > ?1
                 ORDER BY sequence LIMIT ?2"
            ))
            .map_err(|e| self.sql_err(e))?;
        stmt.query_map(params![sequence as i64, limit as i64], |r| {
            Ok(OutboxRow {
                passage: super::row_to_passage(r)?,
                sequence: r.get::<_, i64>(11)? as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql_err(e))
    }

    /// Records that the back office holds every passage up to `sequence`.
    pub fn confirm(&mut self, sequence: u64) -> Result<Confirmed, JournalError> {
        let state = self.state()?;
        let (to, result) = match sequence {
            s if s <= state.confirmed => return Ok(Confirmed::Unchanged),
            s if s > state.last_sequence => (state.last_sequence, Confirmed::BeyondLast),
            s => (s, Confirmed::Advanced),
        };
        // The decider may have added rows since `state`, never removed any: the bound holds.
        self.conn
            .prepare_cached("UPDATE outbox SET confirmed = ?1 WHERE confirmed < ?1")
            .and_then(|mut s| s.execute([to as i64]))
            .map_err(|e| self.sql_err(e))?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, NewPassage, Retention};
    use super::*;

    fn config(dir: &std::path::Path) -> JournalConfig {
        JournalConfig {
            path: dir.join("journal.sqlite"),
            retention_days: 90,
        }
    }

    fn grant(identity: &str) -> NewPassage {
        NewPassage {
            identity: Some(identity.into()),
            granted: true,
            generation: 1,
            ..NewPassage::default()
        }
    }

    #[test]
    fn passages_come_out_in_sequence_and_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut journal = Journal::open(&cfg).unwrap();
        let first = journal.record(&grant("a")).unwrap();
        let second = journal.record(&grant("b")).unwrap();
        let outbox = Outbox::open(&cfg).unwrap();
        let rows = outbox.after(0, 10).unwrap();
        assert_eq!(rows.iter().map(|r| r.sequence).collect::<Vec<_>>(), [1, 2]);
        assert_eq!((&rows[0].passage, &rows[1].passage), (&first, &second));
        assert_eq!(outbox.after(1, 10).unwrap()[0].passage, second);
        assert!(outbox.after(0, 1).unwrap().len() == 1);

        // An operator empties the table: the next passage is still number 3.
        journal.conn.execute("DELETE FROM passages", []).unwrap();
        let third = journal.record(&grant("c")).unwrap();
        let rows = outbox.after(0, 10).unwrap();
        assert_eq!((rows[0].sequence, &rows[0].passage), (3, &third));
        drop(journal);
        let mut journal = Journal::open(&cfg).unwrap();
        journal.record(&grant("d")).unwrap();
        assert_eq!(
            outbox.state().unwrap(),
            OutboxState {
                last_sequence: 4,
                confirmed: 0
            }
        );
    }

    #[test]
    fn confirmations_only_grow_and_stop_at_the_last_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut journal = Journal::open(&cfg).unwrap();
        for who in ["a", "b", "c"] {
            journal.record(&grant(who)).unwrap();
        }
        let mut outbox = Outbox::open(&cfg).unwrap();
        assert_eq!(outbox.confirm(2).unwrap(), Confirmed::Advanced);
        assert_eq!(outbox.confirm(1).unwrap(), Confirmed::Unchanged);
        assert_eq!(outbox.confirm(2).unwrap(), Confirmed::Unchanged);
        assert_eq!(outbox.state().unwrap().confirmed, 2);
        assert_eq!(outbox.confirm(9).unwrap(), Confirmed::BeyondLast);
        assert_eq!(
            outbox.state().unwrap(),
            OutboxState {
                last_sequence: 3,
                confirmed: 3
            }
        );
        assert_eq!(outbox.state().unwrap().depth(), 0);
    }

    #[test]
    fn retention_keeps_what_the_back_office_has_not_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut journal = Journal::open_with(&cfg, Retention::AgeOnceConfirmed).unwrap();
        let old = chrono::Utc::now() - chrono::Duration::days(120);
        for who in ["a", "b", "c"] {
            journal.record_at(&grant(who), old).unwrap();
        }
        assert_eq!(journal.prune().unwrap(), 0, "nothing is confirmed yet");
        let mut outbox = Outbox::open(&cfg).unwrap();
        outbox.confirm(2).unwrap();
        assert_eq!(journal.prune().unwrap(), 2);
        let left = outbox.after(0, 10).unwrap();
        assert_eq!(left.iter().map(|r| r.sequence).collect::<Vec<_>>(), [3]);

        // Without a fleet, age alone decides.
        drop(journal);
        let mut journal = Journal::open(&cfg).unwrap();
        assert_eq!(journal.prune().unwrap(), 0, "open() pruned already");
        assert!(journal.passages().unwrap().is_empty());
    }

    #[test]
    fn a_journal_of_an_older_schema_is_not_an_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let conn = Connection::open(&cfg.path).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        drop(conn);
        let error = Outbox::open(&cfg).err().unwrap().to_string();
        assert!(
            error.contains("journal.sqlite") && error.contains("schema 3"),
            "{error}"
        );
    }
}
