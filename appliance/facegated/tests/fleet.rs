// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet with real parts: three facegated (each on its own private bus, a simulated gate and
//! the demo video), a nats-server with JetStream where each gate has its own user allowed to
//! publish only its own passages, PostgreSQL, and the back office's ledger. Every journal row of
//! every gate must be in the ledger exactly once, through a gate killed with SIGKILL mid-video,
//! the broker killed with SIGKILL and restarted, and the ledger stopped for a while; and a gate
//! cut off for longer than the broker's duplicate window, then back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use facegate_backoffice::users::{self, BrokerUser, Role};
use facegate_backoffice::{
    LedgerConfig, LedgerRow, PASSAGES_STREAM, PASSAGES_SUBJECTS, ledger_rows,
};
use facegate_devtools::gate_rig::{GateRig, RigFiles, Service, enrolled};
use facegate_fleet_servers::{NatsServer, Postgres};
use facegated::journal::JournalConfig;
use facegated::journal::outbox::{Outbox, OutboxState};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

const GATES: [&str; 3] = ["gate-1", "gate-2", "gate-3"];
const LEDGER_USER: &str = "ledger";
const LEDGER_PASSWORD: &str = "ledger-secret";

fn password(gate: &str) -> String {
    format!("{gate}-secret")
}

/// The ledger's user may do anything; each gate's only what `facegate_backoffice::users` allows
/// a gate (its own passages, reading its confirmations and the office's gallery and lease).
fn authorization() -> String {
    let mut users = vec![BrokerUser {
        name: LEDGER_USER.into(),
        password: LEDGER_PASSWORD.into(),
        role: Role::BackOffice,
    }];
    users.extend(GATES.iter().map(|gate| BrokerUser {
        name: (*gate).into(),
        password: password(gate),
        role: Role::Gate(gate.parse().unwrap()),
    }));
    users::authorization(&users)
}

struct Gate {
    id: &'static str,
    rig: GateRig,
}

impl Gate {
    fn new(id: &'static str, files: &RigFiles, scratch: &Path, nats: &NatsServer) -> Gate {
        let dir = scratch.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let password_file = dir.join("fleet.password");
        std::fs::write(&password_file, format!("{}\n", password(id))).unwrap();
        let mut rig = GateRig::new(files.clone(), &dir, &enrolled()).expect("rig starts");
        rig.extra_env.extend([
            ("FACEGATE_FLEET__ENABLED".into(), "true".into()),
            ("FACEGATE_FLEET__GATE_ID".into(), id.into()),
            (
                "FACEGATE_FLEET__SERVERS".into(),
                format!("[\"{}\"]", nats.url()),
            ),
            ("FACEGATE_FLEET__USER".into(), id.into()),
            (
                "FACEGATE_FLEET__PASSWORD_FILE".into(),
                password_file.to_string_lossy().into_owned(),
            ),
            // Short, so that passages the broker lost are sent again within the test.
            ("FACEGATE_FLEET__RESEND_AFTER_S".into(), "2".into()),
        ]);
        Gate { id, rig }
    }

    fn outbox(&self) -> OutboxState {
        Outbox::open(&JournalConfig {
            path: self.rig.journal.clone(),
            ..JournalConfig::default()
        })
        .and_then(|outbox| outbox.state())
        .unwrap_or_else(|e| panic!("{}: {e}", self.id))
    }

    /// The journal's passages: (passage id, sequence).
    fn journal_rows(&self) -> BTreeMap<String, u64> {
        let outbox = Outbox::open(&JournalConfig {
            path: self.rig.journal.clone(),
            ..JournalConfig::default()
        })
        .unwrap();
        outbox
            .after(0, usize::MAX >> 1)
            .unwrap()
            .into_iter()
            .map(|row| (row.passage.id, row.sequence))
            .collect()
    }
}

/// The ledger, run in-process on its own runtime thread so that the test can stop it.
struct Ledger {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ledger {
    fn start(nats: &NatsServer, postgres: &Postgres) -> Ledger {
        let config = LedgerConfig {
            nats_url: nats.url(),
            nats_user: Some(LEDGER_USER.into()),
            nats_password: Some(LEDGER_PASSWORD.into()),
            postgres: postgres.connection_string(),
            ..LedgerConfig::default()
        };
        let stop = CancellationToken::new();
        let token = stop.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime
                .block_on(facegate_backoffice::run(config, token))
                .expect("the ledger runs until it is stopped");
        });
        Ledger {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the ledger stops cleanly");
        }
    }
}

fn signal(service: &Service, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(service.id() as i32), signal).unwrap();
}

fn kill9(service: &mut Service) {
    signal(service, Signal::SIGKILL);
    service.wait().unwrap();
}

/// Waits for every passage of `gate`'s journal to be confirmed by the ledger.
fn until_confirmed(gate: &Gate, nats: &NatsServer, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let state = gate.outbox();
        if state.depth() == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the ledger confirmed {} of {} passages; gate log:\n{}\nbroker log:\n{}",
            gate.id,
            state.confirmed,
            state.last_sequence,
            gate.rig.log_text(),
            nats.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The ledger's rows of `gate`, checked to hold each of its journal's passages once and nothing
/// else; returns how many.
fn assert_ledger_is_the_journal(rows: &[LedgerRow], gate: &Gate) -> usize {
    let journal = gate.journal_rows();
    assert!(
        journal.len() >= 5,
        "{}: only {} passages journalled; log:\n{}",
        gate.id,
        journal.len(),
        gate.rig.log_text()
    );
    let in_ledger: Vec<(String, u64)> = rows
        .iter()
        .filter(|row| row.gate.as_str() == gate.id)
        .map(|row| (row.passage_id.clone(), row.sequence))
        .collect();
    let unique: BTreeMap<String, u64> = in_ledger.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        in_ledger.len(),
        "{}: a passage twice",
        gate.id
    );
    assert_eq!(
        unique, journal,
        "{}: the ledger differs from the journal",
        gate.id
    );
    if std::env::var_os("FLEET_TEST_LOGS").is_some() {
        eprintln!("{}", gate.rig.log_text());
    }
    journal.len()
}

fn ledger_rows_of(postgres: &Postgres) -> Vec<LedgerRow> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ledger_rows(&postgres.connection_string()))
        .expect("the ledger's rows")
}

#[test]
fn every_journal_row_of_three_gates_is_in_the_ledger_once_through_crashes_and_outages() {
    let scratch = tempfile::tempdir().unwrap();
    let files =
        RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("assets");
    let mut nats = NatsServer::start(&authorization()).expect("nats-server starts");
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let ledger = Ledger::start(&nats, &postgres);
    let gates: Vec<Gate> = GATES
        .iter()
        .map(|id| Gate::new(id, &files, scratch.path(), &nats))
        .collect();

    let mut services: Vec<Service> = gates.iter().map(|g| g.rig.spawn().unwrap()).collect();
    // The first walk-ups are decided within seconds of the start.
    std::thread::sleep(Duration::from_secs(6));
    // gate-2 dies mid-video with whatever it had in flight, and comes back.
    kill9(&mut services[1]);
    services[1] = gates[1].rig.spawn().unwrap();
    // The ledger is away for a while; the broker keeps what the gates send meanwhile.
    ledger.stop();
    std::thread::sleep(Duration::from_secs(3));
    // The broker dies with what it had not fsynced, and comes back on the same store.
    nats.kill9().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    nats.restart().unwrap();
    let ledger = Ledger::start(&nats, &postgres);

    for (service, gate) in services.iter_mut().zip(&gates) {
        gate.rig
            .wait_for_exit(service, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{}: {e}", gate.id));
    }
    // Each gate publishes its last passages as it stops (and gate-2's second run those its first
    // had not got acknowledged): once the ledger has caught up, every journal is confirmed to its
    // last row.
    for gate in &gates {
        until_confirmed(gate, &nats, Duration::from_secs(60));
    }
    let rows = ledger_rows_of(&postgres);
    ledger.stop();
    for gate in &gates {
        let passages = assert_ledger_is_the_journal(&rows, gate);
        eprintln!("{}: {passages} passages, each once in the ledger", gate.id);
    }
}

/// The passages stream's message count, read as the ledger's user.
async fn stream_messages(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream(PASSAGES_STREAM).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// A gate cut off (SIGSTOP: it neither publishes nor answers the broker's pings, and the broker
/// drops its connection as stale) for longer than the broker's duplicate window comes back and
/// publishes again every passage the ledger has not confirmed. The broker no longer knows those
/// message ids and stores each a second time; the ledger's key keeps each passage once. Scaled
/// down in time: a duplicate window of 1 s (the shipped one is 2 min), the broker pinging every
/// second, the gate cut off for 8 s.
#[test]
fn a_gate_cut_off_past_the_duplicate_window_lands_each_passage_once() {
    use async_nats::jetstream::stream::{Config, StorageType};

    let scratch = tempfile::tempdir().unwrap();
    let files =
        RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("assets");
    let nats = NatsServer::start(&format!(
        // Debug logging, for the broker's word that it dropped the gate.
        "{}ping_interval: \"1s\"\nping_max: 2\ndebug: true\n",
        authorization()
    ))
    .expect("nats-server starts");
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The stream made before the ledger prepares the broker, which keeps an existing stream's
    // window (and says so).
    let js = runtime.block_on(async {
        let client = async_nats::ConnectOptions::with_user_and_password(
            LEDGER_USER.into(),
            LEDGER_PASSWORD.into(),
        )
        .connect(nats.url())
        .await
        .expect("the ledger's user connects");
        let js = async_nats::jetstream::new(client);
        js.create_stream(Config {
            name: PASSAGES_STREAM.into(),
            subjects: vec![PASSAGES_SUBJECTS.into()],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(1),
            ..Config::default()
        })
        .await
        .expect("the passages stream");
        js
    });
    let gate = Gate::new("gate-1", &files, scratch.path(), &nats);
    let mut service = gate.rig.spawn().unwrap();

    // Passages reach the broker; with no ledger yet, none is confirmed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime.block_on(stream_messages(&js)) < 3 {
        assert!(
            Instant::now() < deadline,
            "no passage reached the broker; gate log:\n{}",
            gate.rig.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&service, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(8));
    signal(&service, Signal::SIGCONT);
    assert!(
        nats.log().contains("Stale Client Connection"),
        "the broker never dropped the stopped gate; broker log:\n{}",
        nats.log()
    );

    // Back, the gate publishes again what was never confirmed, and the broker stores the repeats.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime.block_on(stream_messages(&js)) <= gate.outbox().last_sequence {
        assert!(
            Instant::now() < deadline,
            "the gate published nothing again after it was cut off; gate log:\n{}",
            gate.rig.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ledger = Ledger::start(&nats, &postgres);
    gate.rig
        .wait_for_exit(&mut service, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{}: {e}", gate.id));
    // The gate may stop before it hears the ledger's confirmation (a request it made as it was
    // cut off waits out its timeout): the next start hears it, and confirms that run's passages.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_rows_of(&postgres).len() < gate.journal_rows().len() {
        assert!(
            Instant::now() < deadline,
            "the ledger never caught up with the gate"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut service = gate.rig.spawn().unwrap();
    gate.rig
        .wait_for_exit(&mut service, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{}: {e}", gate.id));
    until_confirmed(&gate, &nats, Duration::from_secs(60));
    let rows = ledger_rows_of(&postgres);
    let stored = runtime.block_on(stream_messages(&js));
    ledger.stop();
    let passages = assert_ledger_is_the_journal(&rows, &gate) as u64;
    assert!(
        stored > passages,
        "the broker stored {stored} messages for {passages} passages: no repeat reached the ledger"
    );
    eprintln!(
        "gate-1: {passages} passages, {stored} messages on the broker, each passage once in the ledger"
    );
}
