// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's gallery with real parts: a nats-server with JetStream, TLS required as shipped,
//! where each gate has its own user (allowed to read the gallery, the lease and the snapshot, and nothing else of the
//! office's), the enrolment office in-process, and three facegated on the demo video, each on
//! its own private bus with a simulated gate and a gallery it only ever gets from the office.
//! gate-3 reaches the broker through a link the test cuts for a while.
//!
//! While the video plays: a passenger is removed at the office before their walk-up (no gate may
//! grant them), a stranger is enrolled before theirs (the gates online grant them), and gate-3,
//! cut off meanwhile, stops matching when its lease runs out and, once back, holds every change
//! before it matches again. Each gate's heartbeat reaches the back office's `/metrics`: up while
//! the gate is online at the office's generation, down while gate-3 is cut off, up again once
//! it is back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use facegate_backoffice::office::Office;
use facegate_backoffice::users::{self, BrokerUser, Role};
use facegate_devtools::gate_rig::{GateRig, RigFiles, Service, enrolled};
use facegate_fleet::gallery::{Embedding, Person};
use facegate_fleet_servers::NatsServer;
use facegate_vision::gallery::Gallery;
use facegated::fleet::gallery::held_generation;
use facegated::journal::Passage;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const OFFICE_USER: &str = "office";
const OFFICE_PASSWORD: &str = "office-secret";
/// Short, so that a gate cut off stops matching within the video.
const LEASE: Duration = Duration::from_secs(3);
/// The demo passenger removed before their walk-up (7.3 s into the video).
const REMOVED: &str = "person-b";

fn password(gate: &str) -> String {
    format!("{gate}-secret")
}

/// The office's user may do anything; each gate's only what `facegate_backoffice::users`
/// allows a gate (its own passages, reading the gallery, the lease and the confirmations).
fn authorization(gates: &[&str]) -> String {
    let mut users = vec![BrokerUser {
        name: OFFICE_USER.into(),
        password: OFFICE_PASSWORD.into(),
        role: Role::BackOffice,
    }];
    users.extend(gates.iter().map(|gate| BrokerUser {
        name: (*gate).into(),
        password: password(gate),
        role: Role::Gate(gate.parse().unwrap()),
    }));
    users::authorization(&users)
}

/// A TCP link to the broker that the test can cut (every connection dropped, new ones closed at
/// once) and restore, as a gate's network would be.
struct Link {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Link {
    async fn to(upstream: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let generation = Arc::new(generation);
        let (accepting_cut, cuts) = (Arc::clone(&cut), Arc::clone(&generation));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if accepting_cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_now = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_now.changed() => {}
                    }
                });
            }
        });
        Link {
            address,
            cut,
            generation,
        }
    }

    /// TLS end to end: the link only carries the bytes.
    fn url(&self) -> String {
        format!("tls://{}", self.address)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

struct Gate {
    id: &'static str,
    rig: GateRig,
}

impl Gate {
    fn new(
        id: &'static str,
        files: &RigFiles,
        scratch: &Path,
        server: &str,
        ca: &Path,
        keys: &Path,
    ) -> Gate {
        let dir = scratch.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let password_file = dir.join("fleet.password");
        std::fs::write(&password_file, format!("{}\n", password(id))).unwrap();
        let mut rig = GateRig::new(files.clone(), &dir, &[]).expect("rig starts");
        rig.extra_env.extend([
            ("FACEGATE_FLEET__ENABLED".into(), "true".into()),
            ("FACEGATE_FLEET__GATE_ID".into(), id.into()),
            ("FACEGATE_FLEET__SERVERS".into(), format!("[\"{server}\"]")),
            ("FACEGATE_FLEET__USER".into(), id.into()),
            (
                "FACEGATE_FLEET__PASSWORD_FILE".into(),
                password_file.to_string_lossy().into_owned(),
            ),
            (
                "FACEGATE_FLEET__TLS_CA_FILE".into(),
                ca.to_string_lossy().into_owned(),
            ),
            (
                "FACEGATE_FLEET__GALLERY_KEYS".into(),
                keys.to_string_lossy().into_owned(),
            ),
            // Short, so that a gate cut off is down within the test.
            ("FACEGATE_FLEET__HEARTBEAT_S".into(), "1".into()),
        ]);
        Gate { id, rig }
    }

    fn held(&self) -> u64 {
        held_generation(&self.rig.gallery).unwrap_or(0)
    }

    fn passages(&self) -> Vec<Passage> {
        self.rig
            .passages()
            .unwrap_or_else(|e| panic!("{}: {e}", self.id))
    }

    fn granted(&self, id: &str) -> bool {
        self.passages()
            .iter()
            .any(|p| p.granted && p.identity.as_deref() == Some(id))
    }
}

/// A back-office connection (the office's user), over TLS as the shipped broker requires.
async fn back_office(nats: &NatsServer, ca: &Path) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(OFFICE_USER.into(), OFFICE_PASSWORD.into())
        .add_root_certificates(ca.to_owned())
        .require_tls(true)
        .connect(nats.url())
        .await
        .expect("the back office connects")
}

/// One scrape of the back office's `/metrics`.
fn scrape(metrics: SocketAddr) -> String {
    facegate_fleet_servers::scrape_metrics(metrics).expect("the metrics server answers")
}

/// The value of one series in a scrape, if it is there.
fn sample(scraped: &str, series: &str) -> Option<f64> {
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes until `holds` is true of the metrics, or panics with the last scrape.
fn until_scraped(metrics: SocketAddr, within: Duration, what: &str, holds: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let scraped = scrape(metrics);
        if holds(&scraped) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; /metrics:\n{scraped}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn gate_sample(scraped: &str, metric: &str, gate: &str) -> Option<f64> {
    sample(scraped, &format!("{metric}{{gate=\"{gate}\"}}"))
}

/// Waits until every gate in `gates` holds `generation`; returns how long each took.
fn until_held(gates: &[&Gate], generation: u64, within: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut took = vec![None; gates.len()];
    while took.iter().any(Option::is_none) {
        for (gate, took) in gates.iter().zip(&mut took) {
            if took.is_none() && gate.held() >= generation {
                *took = Some(start.elapsed());
            }
        }
        assert!(
            start.elapsed() < within,
            "generation {generation} did not reach every gate within {within:?}: {:?}; logs:\n{}",
            gates.iter().map(|g| (g.id, g.held())).collect::<Vec<_>>(),
            gates
                .iter()
                .filter(|g| g.held() < generation)
                .map(|g| format!("== {}\n{}", g.id, g.rig.log_text()))
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    took.into_iter().map(Option::unwrap).collect()
}

fn embed(files: &RigFiles, photo: &str, id: &str, label: &str) -> Person {
    let face = facegatectl::enroll::embed_person(&[files.photos.join(photo)], &files.models())
        .unwrap_or_else(|refusal| panic!("{photo}: {refusal}"));
    Person {
        id: id.into(),
        label: label.into(),
        model: face.model,
        embedding: Embedding(face.embedding),
    }
}

#[test]
fn the_offices_enrolments_and_removals_reach_every_gate_and_a_gate_cut_off_stops_matching() {
    let scratch = tempfile::tempdir().unwrap();
    let files =
        RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("assets");
    let gate_ids = ["gate-1", "gate-2", "gate-3"];
    // The broker as shipped: TLS required, one user per gate.
    let nats = NatsServer::start_tls(&authorization(&gate_ids)).expect("nats-server starts");
    let ca = nats.ca_file().expect("a TLS broker has a CA");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let link = runtime.block_on(Link::to(
        format!("127.0.0.1:{}", nats.port()).parse().unwrap(),
    ));

    // The office's key pair; the gates trust its public half.
    let keys = scratch.path().join("office-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (secret, _, _) = facegate_token::generate_key(&keys, "office").unwrap();
    let secret_dir = scratch.path().join("office-secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let moved = secret_dir.join("office.key.pem");
    std::fs::rename(&secret, &moved).unwrap();
    let key: SigningKey = facegate_token::load_signing_key(&moved).unwrap();

    let office = runtime.block_on(async {
        let client = back_office(&nats, &ca).await;
        facegate_backoffice::prepare_broker(&client)
            .await
            .expect("the broker is prepared");
        Arc::new(Office::new(client, key))
    });

    facegatectl::init().unwrap();
    let passengers: Vec<Person> = enrolled()
        .iter()
        .map(|(id, label, photo)| embed(&files, photo, id, label))
        .collect();
    let stranger = embed(&files, "biden.jpg", "late-enrolment", "Enrolled mid-video");

    // The office enrols the demo's passengers and snapshots: the gates start from the snapshot.
    runtime.block_on(async {
        for person in &passengers {
            office.enrol(person.clone()).await.unwrap();
        }
        assert_eq!(office.snapshot().await.unwrap(), passengers.len() as u64);
    });
    let enrolled_generation = passengers.len() as u64;

    let gates: Vec<Gate> = gate_ids
        .iter()
        .map(|id| {
            let server = match *id {
                "gate-3" => link.url(),
                _ => nats.url(),
            };
            let gate = Gate::new(id, &files, scratch.path(), &server, &ca, &keys);
            // A gate's gallery starts empty, of the model the office enrols with.
            let dim = passengers[0].embedding.0.len() as u32;
            Gallery::create(&gate.rig.gallery, &passengers[0].model, dim).unwrap();
            gate
        })
        .collect();

    let stop_office = CancellationToken::new();
    // The back office's metrics, from the gates' heartbeats.
    let metrics = runtime.block_on(async {
        let client = back_office(&nats, &ca).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = stop_office.clone();
        tokio::spawn(facegate_backoffice::health::serve_metrics(
            listener, client, stop,
        ));
        address
    });

    // The office renews the lease while the test runs.
    let lease_task = {
        let (office, stop) = (Arc::clone(&office), stop_office.clone());
        runtime.spawn(async move { office.run(LEASE, Duration::from_secs(3600), stop).await })
    };

    // Provisioning: each gate follows the office before it decides (a gate put into service
    // syncs first); facegated itself is the follower.
    let mut services: Vec<Service> = gates.iter().map(|g| g.rig.spawn().unwrap()).collect();
    let started = Instant::now();
    let all: Vec<&Gate> = gates.iter().collect();
    let first_sync = until_held(&all, enrolled_generation, Duration::from_secs(20));
    eprintln!("snapshot of {enrolled_generation} people applied after {first_sync:?}");

    // gate-3 loses its network just after the first walk-up.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    link.cut();
    let cut_at = Instant::now();

    // The office removes a passenger before their walk-up, and enrols a stranger before theirs.
    let removal = runtime.block_on(office.remove(REMOVED)).unwrap();
    let removed_in = until_held(&all[..2], removal, Duration::from_secs(10));
    let enrolment = runtime.block_on(office.enrol(stranger.clone())).unwrap();
    let enrolled_in = until_held(&all[..2], enrolment, Duration::from_secs(10));
    eprintln!("remove-to-switch on the gates online: {removed_in:?}");
    eprintln!("enrol-to-switch on the gates online: {enrolled_in:?}");
    assert_eq!(gates[2].held(), enrolled_generation, "gate-3 is cut off");

    // gate-3 stays away past the stranger's walk-up (10.7 s), then comes back.
    std::thread::sleep(Duration::from_millis(15_500).saturating_sub(started.elapsed()));
    assert_eq!(
        gates[2].held(),
        enrolled_generation,
        "gate-3 is still cut off"
    );
    // The gates online are up at the office's generation; gate-3 is down, at the generation it
    // last said.
    let scraped = scrape(metrics);
    let office_generation = sample(&scraped, "facegate_fleet_gallery_generation");
    assert_eq!(office_generation, Some(enrolment as f64), "{scraped}");
    for gate in ["gate-1", "gate-2"] {
        assert_eq!(
            gate_sample(&scraped, "facegate_gate_up", gate),
            Some(1.0),
            "{scraped}"
        );
        assert_eq!(
            gate_sample(&scraped, "facegate_gate_fleet_generation", gate),
            office_generation,
            "{scraped}"
        );
        assert!(
            gate_sample(&scraped, "facegate_gate_lease_age_seconds", gate)
                .is_some_and(|age| age <= LEASE.as_secs_f64()),
            "{scraped}"
        );
    }
    assert_eq!(
        gate_sample(&scraped, "facegate_gate_up", "gate-3"),
        Some(0.0),
        "{scraped}"
    );
    assert_eq!(
        gate_sample(&scraped, "facegate_gate_fleet_generation", "gate-3"),
        Some(enrolled_generation as f64),
        "{scraped}"
    );
    assert_eq!(
        sample(&scraped, "facegate_fleet_gates_up"),
        Some(2.0),
        "{scraped}"
    );
    link.restore();
    let restored_at = Instant::now();
    let back_in = until_held(&all[2..], enrolment, Duration::from_secs(20));
    eprintln!(
        "gate-3, back after {:?} away, caught up in {back_in:?}",
        restored_at - cut_at
    );
    until_scraped(
        metrics,
        Duration::from_secs(10),
        "gate-3 never showed up again at the office's generation",
        |scraped| {
            gate_sample(scraped, "facegate_gate_up", "gate-3") == Some(1.0)
                && gate_sample(scraped, "facegate_gate_fleet_generation", "gate-3")
                    == Some(enrolment as f64)
        },
    );

    for (service, gate) in services.iter_mut().zip(&gates) {
        gate.rig
            .wait_for_exit(service, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{}: {e}", gate.id));
    }
    stop_office.cancel();
    runtime.block_on(lease_task).unwrap();

    for gate in &gates {
        assert!(
            !gate.granted(REMOVED),
            "{} granted {REMOVED}, removed before their walk-up; log:\n{}",
            gate.id,
            gate.rig.log_text()
        );
    }
    for gate in &gates[..2] {
        assert!(
            gate.granted(&stranger.id),
            "{} did not grant {}, enrolled before their walk-up; log:\n{}",
            gate.id,
            stranger.id,
            gate.rig.log_text()
        );
        assert!(
            gate.granted("person-a"),
            "{}: no grant of person-a",
            gate.id
        );
    }
    let cut_off = &gates[2];
    assert!(
        !cut_off.granted(&stranger.id),
        "gate-3 granted someone while cut off"
    );
    let stale = cut_off
        .passages()
        .iter()
        .filter(|p| p.reason.as_deref() == Some("gallery-stale"))
        .count();
    assert!(
        stale >= 1,
        "gate-3 never denied gallery-stale while cut off; log:\n{}",
        cut_off.rig.log_text()
    );
    // It matched again only at a generation holding the removal and the enrolment.
    let log = cut_off.rig.log_text();
    let stopped = log
        .find("1:N matching stops: the office's lease ran out")
        .unwrap_or_else(|| panic!("gate-3's lease never ran out; log:\n{log}"));
    let resumed = log[stopped..]
        .find("1:N matching under the office's lease, gallery generation ")
        .map(|at| stopped + at);
    if let Some(at) = resumed {
        let line = log[at..].lines().next().unwrap();
        let generation: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            generation >= enrolment,
            "gate-3 matched again at generation {generation}, before the removal and enrolment ({removal}, {enrolment}); log:\n{log}"
        );
    }
    eprintln!(
        "gate-3: {stale} gallery-stale denials while cut off, matching again: {}",
        resumed.is_some()
    );
    if std::env::var_os("FLEET_TEST_LOGS").is_some() {
        for gate in &gates {
            eprintln!("== {}\n{}", gate.id, gate.rig.log_text());
        }
    }
}
