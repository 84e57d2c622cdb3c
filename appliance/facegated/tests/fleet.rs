// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet with real parts: three facegated (each on its own private bus, a simulated gate and
//! the demo video), a nats-server with JetStream where each gate has its own user allowed to
//! publish only its own passages, PostgreSQL, and the back office's ledger. Every journal row of
//! every gate must be in the ledger exactly once, through a gate killed with SIGKILL mid-video,
//! the broker killed with SIGKILL and restarted, and the ledger stopped for a while.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use facegate_backoffice::users::{self, BrokerUser, Role};
use facegate_backoffice::{LedgerConfig, ledger_rows};
use facegate_devtools::gate_rig::{GateRig, RigFiles, Service, enrolled};
use facegate_fleet_servers::{NatsServer, Postgres};
use facegated::journal::JournalConfig;
use facegated::journal::outbox::{Outbox, OutboxState};
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

fn kill9(service: &mut Service) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    service.wait().unwrap();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    for gate in &gates {
        loop {
            let state = gate.outbox();
            if state.depth() == 0 {
                break;
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
    let rows = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ledger_rows(&postgres.connection_string()))
        .expect("the ledger's rows");
    ledger.stop();

    for gate in &gates {
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
        eprintln!(
            "{}: {} passages, each once in the ledger",
            gate.id,
            journal.len()
        );
        if std::env::var_os("FLEET_TEST_LOGS").is_some() {
            eprintln!("{}", gate.rig.log_text());
        }
    }
}
