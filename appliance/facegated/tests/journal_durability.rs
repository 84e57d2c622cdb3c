// SPDX-License-Identifier: MIT OR Apache-2.0
//! kill -9 durability of the journal: every passage whose record() returned is still there.
//!
//! The test re-runs its own executable as the writer (selected by an environment variable):
//! the child opens the journal, records passages in a loop and prints each id after record()
//! returns; the parent SIGKILLs it after about 50 acknowledged records, reopens the journal and
//! looks for every acknowledged id. Several rounds, so the later children also open a journal
//! left behind by a killed writer (with its WAL).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use facegated::journal::{Journal, JournalConfig, NewPassage};

const CHILD_ENV: &str = "FACEGATE_JOURNAL_DURABILITY_CHILD";
const CHILD_TEST: &str = "journal_writer_child";
const ACK: &str = "ACK ";

fn config(path: &Path) -> JournalConfig {
    JournalConfig {
        path: path.to_path_buf(),
        retention_days: 90,
    }
}

/// The child's body; a no-op in a normal test run.
#[test]
fn journal_writer_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut journal = Journal::open(&config(Path::new(&path))).expect("child: open the journal");
    // Straight to the file descriptor, past the test harness's output capture.
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let passage = NewPassage {
            track: Some(i),
            identity: (i % 3 != 0).then(|| format!("person-{}", i % 17)),
            label: None,
            similarity: Some(0.5 + (i % 40) as f64 / 100.0),
            granted: i % 3 != 0,
            reason: (i % 3 == 0).then(|| "unknown".to_string()),
            generation: 1,
            video_time_ns: Some(i * 33_333_333),
            token: None,
        };
        let recorded = journal.record(&passage).expect("child: record");
        writeln!(out, "{ACK}{}", recorded.id).expect("child: stdout");
        out.flush().expect("child: stdout");
    }
}

/// Runs one writer, kills it with SIGKILL after `acks` acknowledged records; returns their ids.
fn run_and_kill(path: &Path, acks: usize) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().unwrap();
    let mut ids = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the writer's output");
        if let Some(id) = line.strip_prefix(ACK) {
            ids.push(id.to_string());
            if ids.len() >= acks {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "writer too slow"
        );
    }
    assert_eq!(ids.len(), acks, "the writer stopped early (see its stderr)");
    // Child::kill sends SIGKILL: no destructor, no checkpoint, no clean close.
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    ids
}

#[test]
fn acknowledged_passages_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let ids = run_and_kill(&path, 50);
        acknowledged.extend(ids);

        let journal = Journal::open(&config(&path))
            .unwrap_or_else(|e| panic!("round {round}: the journal must reopen cleanly: {e}"));
        let passages = journal.passages().unwrap();
        let stored: HashSet<&str> = passages.iter().map(|p| p.id.as_str()).collect();
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !stored.contains(id.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged passages lost: {missing:?}",
            missing.len()
        );
        // Acknowledged ids appear in the journal in the order they were acknowledged. Stored
        // but unread ids are fine: the writer runs ahead of the reader by what the pipe holds.
        let order: Vec<&str> = passages
            .iter()
            .map(|p| p.id.as_str())
            .filter(|id| acknowledged.iter().any(|a| a == id))
            .collect();
        let expected: Vec<&str> = acknowledged.iter().map(String::as_str).collect();
        assert_eq!(order, expected, "round {round}");
        eprintln!(
            "round {round}: {} acknowledged, {} stored",
            acknowledged.len(),
            passages.len()
        );
    }
}
