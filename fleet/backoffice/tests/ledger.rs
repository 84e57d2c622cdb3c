// SPDX-License-Identifier: MIT OR Apache-2.0
//! The ledger against a real nats-server and a real PostgreSQL (facegate-fleet-servers): the
//! test publishes passages as a gate does (`Nats-Msg-Id` = the event id) and reads what the
//! ledger holds and confirms. A missing server binary fails the test with its message.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use facegate_backoffice::{
    CONFIRMED_BUCKET, CancellationToken, LEDGER_CONSUMER, LedgerConfig, LedgerError,
    PASSAGES_STREAM, gaps, ledger_rows, prepare_broker, rejected_rows,
};
use facegate_fleet::{
    Decision, DenyReason, GateId, PASSAGE_SCHEMA_VERSION, PassageData, PassageEvent,
    decode_confirmation,
};
use facegate_fleet_servers::{NatsServer, Postgres};
use tokio::task::{JoinHandle, block_in_place};

/// How long anything the ledger should do may take here.
const PATIENCE: Duration = Duration::from_secs(20);

const LEDGER_USER: &str = "ledger";
const LEDGER_PASSWORD: &str = "ledger-secret";
const GATE_USER: &str = "gate";
const GATE_PASSWORD: &str = "gate-secret";

/// The broker, the database, a gate's client, and the ledger running in this process.
struct Office {
    nats: NatsServer,
    postgres: Postgres,
    js: jetstream::Context,
    auth: bool,
    ledger: Option<(CancellationToken, JoinHandle<Result<(), LedgerError>>)>,
}

impl Office {
    async fn start() -> Office {
        Office::start_with(false).await
    }

    /// With `auth`, the broker has a user for the ledger and one for the gate.
    async fn start_with(auth: bool) -> Office {
        logs();
        let extra = match auth {
            true => format!(
                "authorization {{ users = [ {{ user: {LEDGER_USER}, password: {LEDGER_PASSWORD} }}, {{ user: {GATE_USER}, password: {GATE_PASSWORD} }} ] }}"
            ),
            false => String::new(),
        };
        let (nats, postgres) = block_in_place(|| {
            let nats = NatsServer::start(&extra).unwrap_or_else(|e| panic!("{e:#}"));
            let postgres = Postgres::start().unwrap_or_else(|e| panic!("{e:#}"));
            (nats, postgres)
        });
        let mut options = async_nats::ConnectOptions::new().name("test gate");
        if auth {
            options = options.user_and_password(GATE_USER.into(), GATE_PASSWORD.into());
        }
        let client = options.connect(nats.url()).await.expect("gate connects");
        // The stream must be there before a gate publishes; the ledger prepares it again.
        prepare_broker(&client).await.expect("prepare_broker");
        let mut office = Office {
            nats,
            postgres,
            js: jetstream::new(client),
            auth,
            ledger: None,
        };
        office.start_ledger();
        office
    }

    fn config(&self) -> LedgerConfig {
        LedgerConfig {
            nats_url: self.nats.url(),
            nats_user: self.auth.then(|| LEDGER_USER.into()),
            nats_password: self.auth.then(|| LEDGER_PASSWORD.into()),
            postgres: self.postgres.connection_string(),
            ..LedgerConfig::default()
        }
    }

    fn start_ledger(&mut self) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(facegate_backoffice::run(self.config(), shutdown.clone()));
        self.ledger = Some((shutdown, task));
    }

    /// Stops the ledger and checks it stopped cleanly and promptly.
    async fn stop_ledger(&mut self) {
        let (shutdown, task) = self.ledger.take().expect("the ledger runs");
        let asked = Instant::now();
        shutdown.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the ledger stops within 10 s")
            .expect("the ledger task does not panic");
        outcome.expect("the ledger returns Ok on shutdown");
        assert!(
            asked.elapsed() < Duration::from_secs(7),
            "{:?}",
            asked.elapsed()
        );
    }

    fn assert_ledger_runs(&self) {
        let (_, task) = self.ledger.as_ref().expect("the ledger was started");
        assert!(!task.is_finished(), "the ledger returned");
    }

    /// Publishes as a gate does, retrying (a broker being restarted) until the stream acks.
    async fn publish(&self, event: &PassageEvent) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        self.publish_raw(
            &event.data.gate.passages_subject(),
            event.to_json(),
            Some(headers),
        )
        .await;
    }

    async fn publish_raw(&self, subject: &str, payload: Vec<u8>, headers: Option<HeaderMap>) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sent = match headers.clone() {
                Some(headers) => {
                    self.js
                        .publish_with_headers(subject.to_owned(), headers, payload.clone().into())
                        .await
                }
                None => {
                    self.js
                        .publish(subject.to_owned(), payload.clone().into())
                        .await
                }
            };
            let acked = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match acked {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("publishing on {subject}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The gate's confirmation in the bucket, if there is one (None while the broker is away).
    async fn confirmation(&self, gate: &str) -> Option<u64> {
        let bucket = self.js.get_key_value(CONFIRMED_BUCKET).await.ok()?;
        let value = bucket.get(gate).await.ok()??;
        Some(decode_confirmation(&value).expect("a confirmation is a decimal sequence"))
    }

    /// What the ledger's consumer has not acknowledged, and not yet been given.
    async fn consumer_backlog(&self) -> (usize, u64) {
        let stream = self.js.get_stream(PASSAGES_STREAM).await.unwrap();
        let info = stream.consumer_info(LEDGER_CONSUMER).await.unwrap();
        (info.num_ack_pending, info.num_pending)
    }

    async fn wait_for_confirmations(&self, expected: &[(&str, u64)]) {
        for (gate, sequence) in expected {
            wait_until(&format!("{gate} confirmed {sequence}"), || async {
                self.confirmation(gate).await == Some(*sequence)
            })
            .await;
        }
    }

    async fn rows(&self) -> Vec<facegate_backoffice::LedgerRow> {
        ledger_rows(&self.postgres.connection_string())
            .await
            .expect("ledger_rows")
    }

    /// Waits until the broker has nothing for the ledger: all delivered and acknowledged.
    async fn wait_until_consumed(&self) {
        wait_until("the ledger's consumer has nothing pending", || async {
            let backlog = self.consumer_backlog().await;
            tracing::debug!("consumer backlog (unacknowledged, undelivered): {backlog:?}");
            backlog == (0, 0)
        })
        .await;
    }
}

/// The ledger's log lines in the test's output (shown for a failing test); RUST_LOG selects.
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Polls `condition` every 100 ms for [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A UUID-shaped id, distinct per gate and sequence (a gate's are UUID v7).
fn passage_id(gate: &str, sequence: u64) -> String {
    let mut hasher = DefaultHasher::new();
    gate.hash(&mut hasher);
    let h = hasher.finish();
    format!(
        "0193b3c4-{:04x}-7{:03x}-8000-{sequence:012x}",
        h & 0xffff,
        (h >> 16) & 0xfff
    )
}

fn time_of(sequence: u64) -> DateTime<Utc> {
    let base: DateTime<Utc> = "2026-12-02T08:00:00.000001Z".parse().unwrap();
    base + chrono::Duration::milliseconds(i64::try_from(sequence).unwrap())
}

/// Passage `sequence` of `gate`: odd ones granted, even ones denied for low confidence.
fn passage(gate: &str, sequence: u64) -> PassageEvent {
    let grant = sequence % 2 == 1;
    PassageEvent::new(
        passage_id(gate, sequence),
        time_of(sequence),
        PassageData {
            schema_version: PASSAGE_SCHEMA_VERSION,
            gate: gate.parse().unwrap(),
            sequence,
            decision: if grant {
                Decision::Grant
            } else {
                Decision::Deny
            },
            reason: (!grant).then_some(DenyReason::LowConfidence),
            identity: Some(format!("p-{}", sequence % 7)),
            similarity: Some(0.5 + (sequence % 40) as f64 / 100.0),
            gallery_generation: 3,
        },
    )
}

/// Checks that the ledger holds each of `expected` exactly once, as published, and nothing
/// else.
fn assert_holds_exactly(rows: &[facegate_backoffice::LedgerRow], expected: &[(&str, u64)]) {
    let ids: HashSet<&str> = rows.iter().map(|r| r.passage_id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "a passage id held twice");
    let mut held: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for row in rows {
        *held
            .entry((row.gate.to_string(), row.sequence))
            .or_default() += 1;
        let event = passage(row.gate.as_str(), row.sequence);
        assert_eq!(row.passage_id, event.id);
        assert_eq!(row.decision, event.data.decision);
        assert_eq!(row.reason, event.data.reason);
        assert_eq!(row.identity, event.data.identity);
        assert_eq!(row.similarity, event.data.similarity);
        assert_eq!(row.gallery_generation, event.data.gallery_generation);
        assert_eq!(row.time, event.time);
    }
    let wanted: BTreeMap<(String, u64), usize> = expected
        .iter()
        .map(|(gate, sequence)| ((gate.to_string(), *sequence), 1))
        .collect();
    assert_eq!(held, wanted);
}

fn sequences(gate: &str, range: std::ops::RangeInclusive<u64>) -> Vec<(&str, u64)> {
    range.map(|sequence| (gate, sequence)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_passage_lands_once_and_each_gate_is_confirmed() {
    let mut office = Office::start().await;
    let gates = ["north-1", "north-2", "south-1"];
    for sequence in 1..=20 {
        for gate in gates {
            office.publish(&passage(gate, sequence)).await;
        }
    }
    office
        .wait_for_confirmations(&[("north-1", 20), ("north-2", 20), ("south-1", 20)])
        .await;
    let expected: Vec<(&str, u64)> = gates.iter().flat_map(|g| sequences(g, 1..=20)).collect();
    assert_holds_exactly(&office.rows().await, &expected);

    // The same events again: within the duplicate window the broker drops them; without the
    // header (as after the window) the ledger's key does. Then one new passage behind them.
    for sequence in 1..=20 {
        for gate in gates {
            office.publish(&passage(gate, sequence)).await;
        }
    }
    for sequence in 1..=5 {
        let event = passage("north-2", sequence);
        office
            .publish_raw(&event.data.gate.passages_subject(), event.to_json(), None)
            .await;
    }
    office.publish(&passage("north-1", 21)).await;
    office.wait_for_confirmations(&[("north-1", 21)]).await;
    office.wait_until_consumed().await;
    let mut expected = expected;
    expected.push(("north-1", 21));
    assert_holds_exactly(&office.rows().await, &expected);
    assert_eq!(office.confirmation("north-2").await, Some(20));
    let connection = office.postgres.connection_string();
    for gate in gaps(&connection).await.unwrap() {
        assert_eq!(gate.contiguous, gate.highest, "{gate}");
        assert!(gate.missing.is_empty(), "{gate}");
    }
    assert!(
        facegate_backoffice::conflicts(&connection)
            .await
            .unwrap()
            .is_empty()
    );

    // A gate that missed its confirmation gets it again when the ledger starts.
    office.stop_ledger().await;
    let bucket = office.js.get_key_value(CONFIRMED_BUCKET).await.unwrap();
    bucket.delete("north-2").await.unwrap();
    assert_eq!(office.confirmation("north-2").await, None);
    office.start_ledger();
    office.wait_for_confirmations(&[("north-2", 20)]).await;
    office.stop_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_holds_the_confirmation_until_it_is_filled() {
    let office = Office::start().await;
    for sequence in [1, 2, 4, 5] {
        office.publish(&passage("east-1", sequence)).await;
    }
    office.wait_for_confirmations(&[("east-1", 2)]).await;
    office.wait_until_consumed().await;
    let connection = office.postgres.connection_string();
    let report = gaps(&connection).await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].gate, "east-1".parse::<GateId>().unwrap());
    assert_eq!((report[0].contiguous, report[0].highest), (2, 5));
    assert_eq!(
        report[0]
            .missing
            .iter()
            .map(|m| (m.first, m.last))
            .collect::<Vec<_>>(),
        vec![(3, 3)]
    );
    // The binary's report, as an operator reads it.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_facegate-backoffice"))
        .args(["gaps", "--postgres", &connection])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "east-1 2 5 missing=3\n"
    );
    assert_eq!(office.confirmation("east-1").await, Some(2));

    office.publish(&passage("east-1", 3)).await;
    office.wait_for_confirmations(&[("east-1", 5)]).await;
    let report = gaps(&connection).await.unwrap();
    assert_eq!((report[0].contiguous, report[0].highest), (5, 5));
    assert!(report[0].missing.is_empty());
    assert_holds_exactly(&office.rows().await, &sequences("east-1", 1..=5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passages_published_while_postgres_is_down_land_once_it_is_back() {
    let mut office = Office::start().await;
    for sequence in 1..=5 {
        office.publish(&passage("west-2", sequence)).await;
    }
    office.wait_for_confirmations(&[("west-2", 5)]).await;

    block_in_place(|| office.postgres.stop()).unwrap();
    for sequence in 6..=15 {
        office.publish(&passage("west-2", sequence)).await;
    }
    // The ledger tries, fails, waits; it neither exits nor confirms what it could not write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    office.assert_ledger_runs();
    assert_eq!(office.confirmation("west-2").await, Some(5));
    let (unacknowledged, _) = office.consumer_backlog().await;
    assert!(unacknowledged > 0, "a batch not written was acknowledged");

    block_in_place(|| office.postgres.start_again()).unwrap();
    office.wait_for_confirmations(&[("west-2", 15)]).await;
    office.wait_until_consumed().await;
    assert_holds_exactly(&office.rows().await, &sequences("west-2", 1..=15));
    office.assert_ledger_runs();
    office.stop_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_resumes_after_the_broker_is_killed_and_restarted() {
    // With users: the ledger's and the gate's.
    let mut office = Office::start_with(true).await;
    for sequence in 1..=5 {
        office.publish(&passage("central-7", sequence)).await;
    }
    office.wait_for_confirmations(&[("central-7", 5)]).await;

    office.nats.kill9().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    office.assert_ledger_runs();
    block_in_place(|| office.nats.restart()).unwrap();
    for sequence in 6..=10 {
        office.publish(&passage("central-7", sequence)).await;
    }
    office.wait_for_confirmations(&[("central-7", 10)]).await;
    // Not "all acknowledged": the broker may have lost acknowledgements with its kill (it
    // redelivers those after the ack wait, and the ledger drops them as duplicates).
    assert_eq!(office.consumer_backlog().await.1, 0, "all delivered");
    assert_holds_exactly(&office.rows().await, &sequences("central-7", 1..=10));
    office.assert_ledger_runs();
    office.stop_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_rejected_and_do_not_block_good_ones() {
    let office = Office::start().await;
    let subject = "facegate.passages.west-1";
    office
        .publish_raw(subject, b"{\"not\": \"a passage\"".to_vec(), None)
        .await;
    let foreign = passage("south-9", 1);
    office.publish_raw(subject, foreign.to_json(), None).await;
    office
        .publish_raw(
            "facegate.passages.a.b",
            passage("west-1", 1).to_json(),
            None,
        )
        .await;
    for sequence in 1..=3 {
        office.publish(&passage("west-1", sequence)).await;
    }
    office.wait_for_confirmations(&[("west-1", 3)]).await;
    office.wait_until_consumed().await;
    assert_holds_exactly(&office.rows().await, &sequences("west-1", 1..=3));

    let rejected = rejected_rows(&office.postgres.connection_string())
        .await
        .unwrap();
    let summary: Vec<(&str, Option<u64>)> = rejected
        .iter()
        .map(|r| (r.subject.as_str(), r.stream_sequence))
        .collect();
    assert_eq!(
        summary,
        vec![
            (subject, Some(1)),
            (subject, Some(2)),
            ("facegate.passages.a.b", Some(3))
        ]
    );
    assert!(
        rejected[0].error.starts_with("passage event:"),
        "{}",
        rejected[0].error
    );
    assert!(
        rejected[1].error.contains("gate south-9") && rejected[1].error.contains("west-1"),
        "{}",
        rejected[1].error
    );
    assert!(
        rejected[2].error.contains("subject"),
        "{}",
        rejected[2].error
    );
    assert_eq!(rejected[1].payload, foreign.to_json());
    assert_eq!(office.confirmation("south-9").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_passage_id_keeps_the_stored_passage() {
    let office = Office::start().await;
    for sequence in 1..=2 {
        office.publish(&passage("north-5", sequence)).await;
    }
    office.wait_for_confirmations(&[("north-5", 2)]).await;
    // Passage 1's id again, claiming sequence 3 (without the header, as the broker would have
    // dropped it), then a genuine 3.
    let mut reused = passage("north-5", 3);
    reused.id = passage_id("north-5", 1);
    office
        .publish_raw(&reused.data.gate.passages_subject(), reused.to_json(), None)
        .await;
    office.publish(&passage("north-5", 3)).await;
    office.wait_for_confirmations(&[("north-5", 3)]).await;
    office.wait_until_consumed().await;
    assert_holds_exactly(&office.rows().await, &sequences("north-5", 1..=3));
    let conflicts = facegate_backoffice::conflicts(&office.postgres.connection_string())
        .await
        .unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        (
            conflicts[0].passage_id.as_str(),
            conflicts[0].sequence,
            conflicts[0].stored_sequence
        ),
        (passage_id("north-5", 1).as_str(), 3, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_backlog_is_confirmed_without_rescanning() {
    let office = Office::start().await;
    // The ledger has migrated the schema once it confirms something.
    office.publish(&passage("other-1", 1)).await;
    office.wait_for_confirmations(&[("other-1", 1)]).await;
    // A week at a busy gate, all but its first passage already held.
    block_in_place(|| {
        office.postgres.psql(
            "INSERT INTO passages (passage_id, gate, sequence, decision, identity, similarity, gallery_generation, time)
             SELECT 'backlog-' || n, 'busy-1', n, 'grant', 'p-1', 0.9, 1, now()
             FROM generate_series(2, 100000) AS n",
        )
    })
    .unwrap();
    let started = Instant::now();
    office.publish(&passage("busy-1", 1)).await;
    office.wait_for_confirmations(&[("busy-1", 100_000)]).await;
    let filled = started.elapsed();
    // Then passage by passage, as the gate goes on: each costs a probe, not a scan.
    let started = Instant::now();
    for sequence in 100_001..=100_020 {
        office.publish(&passage("busy-1", sequence)).await;
        office.wait_for_confirmations(&[("busy-1", sequence)]).await;
    }
    let per_passage = started.elapsed() / 20;
    tracing::info!("a week of backlog: filled in {filled:?}, then {per_passage:?} per passage");
    assert!(filled < Duration::from_secs(10), "{filled:?}");
    assert!(per_passage < Duration::from_millis(500), "{per_passage:?}");
    let report = gaps(&office.postgres.connection_string()).await.unwrap();
    let busy = report.iter().find(|g| g.gate.as_str() == "busy-1").unwrap();
    assert_eq!((busy.contiguous, busy.highest), (100_020, 100_020));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_broker_is_idempotent_and_refuses_a_stream_that_loses_passages() {
    let nats = block_in_place(|| NatsServer::start("")).unwrap_or_else(|e| panic!("{e:#}"));
    let client = async_nats::connect(nats.url()).await.unwrap();
    prepare_broker(&client).await.unwrap();
    prepare_broker(&client).await.unwrap();
    let js = jetstream::new(client.clone());
    let info = js
        .get_stream(PASSAGES_STREAM)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(info.storage, stream::StorageType::File);
    assert_eq!(info.duplicate_window, Duration::from_secs(120));
    assert_eq!(info.max_age, Duration::from_secs(30 * 24 * 3600));
    let bucket = js.get_key_value(CONFIRMED_BUCKET).await.unwrap();
    let status = bucket.status().await.unwrap();
    assert_eq!(status.history(), 1);

    js.delete_stream(PASSAGES_STREAM).await.unwrap();
    js.create_stream(stream::Config {
        name: PASSAGES_STREAM.into(),
        subjects: vec!["facegate.passages.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = prepare_broker(&client).await.unwrap_err().to_string();
    assert!(error.contains("file storage"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_ledger_until_sigterm_and_fails_in_one_line() {
    let mut office = Office::start_with(true).await;
    office.stop_ledger().await;
    let binary = env!("CARGO_BIN_EXE_facegate-backoffice");
    let (url, connection) = (office.nats.url(), office.postgres.connection_string());
    let wrong = office.nats.dir().join("wrong.password");
    let right = office.nats.dir().join("ledger.password");
    std::fs::write(&wrong, "not-it\n").unwrap();
    std::fs::write(&right, format!("{LEDGER_PASSWORD}\n")).unwrap();
    let ledger = |password: &std::path::Path| {
        let mut command = std::process::Command::new(binary);
        command
            .args([
                "ledger",
                "--nats",
                &url,
                "--user",
                LEDGER_USER,
                "--password-file",
            ])
            .arg(password)
            .args(["--postgres", &connection]);
        command
    };

    let refused = block_in_place(|| ledger(&wrong).env("RUST_LOG", "off").output()).unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("facegate-backoffice: NATS at {url}")),
        "{stderr}"
    );

    let mut running = ledger(&right)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for sequence in 1..=3 {
        office.publish(&passage("bin-1", sequence)).await;
    }
    office.wait_for_confirmations(&[("bin-1", 3)]).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &running.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = running.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the ledger ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert_holds_exactly(&office.rows().await, &sequences("bin-1", 1..=3));
}
