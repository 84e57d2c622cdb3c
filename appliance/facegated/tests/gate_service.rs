// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated end to end: the real service on real video, a real private dbus-daemon, a real
//! SQLite journal and the simulated gate, checked from the outside as an operator would.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facegate_dbus::{GateProxy, State};
use facegate_devtools::gate_rig::{
    Announced, GateRig, RigFiles, Service, Timeline, enrolled, follow, is_unlock,
};
use facegated::gate::{Action, Cause, Level, Output};
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The service tests play video in real time; two at once on two cores would starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn files() -> RigFiles {
    RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("repository files")
}

fn video(name: &str) -> PathBuf {
    files().video.with_file_name(name)
}

fn rig(scratch: &tempfile::TempDir) -> GateRig {
    GateRig::new(files(), scratch.path(), &enrolled()).expect("rig starts")
}

/// Decisions as D-Bus signals, in order.
#[derive(Debug, Default)]
struct Heard {
    signals: Vec<Announced>,
}

impl Heard {
    fn granted(&self) -> Vec<&str> {
        self.signals
            .iter()
            .filter_map(|s| match s {
                Announced::Granted { id, .. } => Some(id.as_str()),
                Announced::Denied { .. } => None,
            })
            .collect()
    }

    fn granted_passages(&self) -> Vec<&str> {
        self.signals
            .iter()
            .filter_map(|s| match s {
                Announced::Granted { passage_id, .. } => Some(passage_id.as_str()),
                Announced::Denied { .. } => None,
            })
            .collect()
    }

    fn denied(&self) -> Vec<String> {
        self.signals
            .iter()
            .filter_map(|s| match s {
                Announced::Denied { reason } => Some(reason.to_string()),
                Announced::Granted { .. } => None,
            })
            .collect()
    }
}

/// Listens to the gate's signals until facegated exits or `stop_after` signals have arrived
/// (then it is killed with SIGKILL).
fn listen(rig: &GateRig, child: &mut Service, stop_after: Option<usize>) -> Heard {
    let mut heard = Heard::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The timeout's timer must be made inside the runtime.
    let followed = runtime.block_on(async {
        let run = follow(rig, child, |decision| {
            heard.signals.push(decision);
            let enough = stop_after.is_some_and(|n| heard.signals.len() >= n);
            Ok(if enough {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        });
        tokio::time::timeout(Duration::from_secs(180), run).await
    });
    let followed =
        followed.unwrap_or_else(|_| panic!("facegated ran for 3 minutes; log: {}", rig.log_text()));
    followed.unwrap_or_else(|e| panic!("{e:#}; log: {}", rig.log_text()));
    heard
}

#[test]
fn the_demo_video_grants_each_enrolled_passenger_once_and_denies_the_rest() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = rig(&scratch);
    let mut child = rig.spawn().unwrap();
    // A second, independent listener: gdbus, as an integrator's script would.
    let monitor = Command::new("gdbus")
        .args([
            "monitor",
            "--address",
            rig.bus.address(),
            "--dest",
            "org.facegate.Gate",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("gdbus runs (Debian package libglib2.0-bin; run `make setup`)");
    let heard = listen(&rig, &mut child, None);
    assert!(
        child.wait().unwrap().success(),
        "facegated exits 0 at the end of the video; log: {}",
        rig.log_text()
    );

    // fgmatch and the gate's policy judged every face of the video alike (the same rule).
    assert!(!rig.log_text().contains("disagree"), "{}", rig.log_text());

    // Person A, Person B and Obama walk up once each before anyone returns.
    assert_eq!(
        heard.granted(),
        ["person-a", "person-b", "obama"],
        "{heard:?}"
    );
    // Two strangers, then Person A and Obama come back within the anti-passback window.
    assert_eq!(
        heard.denied(),
        ["unknown", "unknown", "passback", "passback"],
        "{heard:?}"
    );

    let passages = rig.passages().unwrap();
    assert_eq!(
        passages.len(),
        7,
        "every decision is journalled: {passages:?}"
    );
    for (id, passage) in heard
        .granted_passages()
        .into_iter()
        .zip(passages.iter().filter(|p| p.granted))
    {
        assert_eq!(
            passage.id, id,
            "the signal carries the journal's passage id"
        );
    }
    let unlocks: Vec<_> = rig
        .actions()
        .unwrap()
        .into_iter()
        .filter(is_unlock)
        .collect();
    assert_eq!(
        unlocks.len(),
        3,
        "the gate opened exactly for the three grants"
    );
    for (unlock, passage) in unlocks.iter().zip(passages.iter().filter(|p| p.granted)) {
        let journalled = passage.time.timestamp_nanos_opt().unwrap() as u64;
        assert!(
            journalled <= unlock.unix_ns,
            "passage {} was journalled before the gate opened",
            passage.id
        );
    }

    let mut monitor = monitor;
    let _ = monitor.kill();
    let output = monitor.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        seen.matches("org.facegate.Gate1.PassageGranted").count(),
        3,
        "{seen}"
    );
    assert_eq!(
        seen.matches("org.facegate.Gate1.PassageDenied").count(),
        4,
        "{seen}"
    );
}

#[test]
fn a_passenger_two_enrolled_ids_fit_equally_is_denied_ambiguous_not_charged() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    // Person B enrolled a second time under another id, from the same photo: a duplicate
    // enrolment, or a twin.
    let mut people = enrolled();
    let (_, _, photo_b) = *people.iter().find(|(id, _, _)| *id == "person-b").unwrap();
    people.push(("person-b-again", "Person B again", photo_b));
    let rig = GateRig::new(files(), scratch.path(), &people).expect("rig starts");
    let mut child = rig.spawn().unwrap();
    let heard = listen(&rig, &mut child, None);
    assert!(child.wait().unwrap().success(), "{}", rig.log_text());

    assert_eq!(heard.granted(), ["person-a", "obama"], "{heard:?}");
    assert_eq!(
        heard.denied(),
        ["unknown", "ambiguous", "unknown", "passback", "passback"],
        "{heard:?}"
    );
    let passages = rig.passages().unwrap();
    let ambiguous: Vec<_> = passages
        .iter()
        .filter(|p| p.reason.as_deref() == Some("ambiguous"))
        .collect();
    assert_eq!(ambiguous.len(), 1, "{passages:?}");
    assert!(!ambiguous[0].granted);
    assert!(
        matches!(
            ambiguous[0].identity.as_deref(),
            Some("person-b" | "person-b-again")
        ),
        "the journal names the best candidate: {:?}",
        ambiguous[0]
    );
}

#[test]
fn the_gate_decides_by_its_rule_and_says_when_fgmatch_is_set_to_another() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    rig.set_fgmatch_properties("fixed-threshold", "threshold=0.99")
        .unwrap();
    rig.extra_env.push((
        "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
        video("walkup_person_b.avi").to_string_lossy().into(),
    ));
    let mut child = rig.spawn().unwrap();
    let heard = listen(&rig, &mut child, None);
    assert!(child.wait().unwrap().success(), "{}", rig.log_text());
    assert_eq!(heard.granted(), ["person-b"], "{heard:?}");
    let log = rig.log_text();
    assert!(
        log.contains("fgmatch and the gate disagree on track")
            && log.contains("fgmatch says not matched"),
        "{log}"
    );
}

#[test]
fn a_killed_service_keeps_every_acknowledged_decision_and_restarts_safe() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let mut child = rig.spawn().unwrap();
    // Person A granted, a stranger denied, Person B granted: then SIGKILL mid-run.
    let heard = listen(&rig, &mut child, Some(3));
    let passages = rig.passages().unwrap();
    for id in heard.granted_passages() {
        assert!(
            passages.iter().any(|p| p.id == id),
            "acknowledged passage {id} survived SIGKILL"
        );
    }
    assert!(
        passages.len() >= heard.signals.len(),
        "{} journalled, {} acknowledged",
        passages.len(),
        heard.signals.len()
    );
    let actions_before = rig.actions().unwrap().len();

    // Restarted on Person B walking up again: the journal remembers the grant, so it is passback.
    rig.extra_env.push((
        "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
        video("walkup_person_b.avi").to_string_lossy().into(),
    ));
    let mut child = rig.spawn().unwrap();
    let heard_after = listen(&rig, &mut child, None);
    assert!(child.wait().unwrap().success(), "log: {}", rig.log_text());
    assert_eq!(heard_after.denied(), ["passback"], "{heard_after:?}");
    let actions = rig.actions().unwrap();
    let first_after_restart = &actions[actions_before..];
    assert!(
        first_after_restart
            .iter()
            .take(3)
            .all(|a| a.cause == Cause::SafeState),
        "the restarted gate first writes its safe state: {first_after_restart:?}"
    );
    assert!(
        !actions[actions_before..].iter().any(is_unlock),
        "passback opens nothing"
    );
}

async fn wait_for_state(gate: &GateProxy<'_>, what: State) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gate.state().await.unwrap() != what {
        assert!(Instant::now() < deadline, "State never became {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A camera on TCP (MJPEG parts) playing a walk-up video in real time.
fn camera(port: u16, video: &std::path::Path) -> Child {
    Command::new("gst-launch-1.0")
        .args([
            "-q",
            "filesrc",
            &format!("location={}", video.display()),
            "!",
            "avidemux",
            "!",
            "multipartmux",
            "!",
        ])
        .args([
            "tcpserversink",
            "host=127.0.0.1",
            &format!("port={port}"),
            "sync=true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs")
}

#[test]
fn a_camera_that_goes_away_degrades_the_gate_until_it_is_back() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let port = free_port();
    let walkup = video("walkup_person_b.avi");
    let pipeline =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tcp-camera.pipeline");
    rig.extra_env.extend([
        (
            "FACEGATE_PIPELINE__FILE".into(),
            pipeline.to_string_lossy().into(),
        ),
        (
            "FACEGATE_PIPELINE__VARIABLES__PORT".into(),
            port.to_string(),
        ),
        ("FACEGATE_PIPELINE__EXIT_ON_EOS".into(), "false".into()),
        ("FACEGATE_PIPELINE__RESTART_MAX_MS".into(), "1000".into()),
    ]);
    let mut feeder = camera(port, &walkup);
    std::thread::sleep(Duration::from_millis(300));
    let mut child = rig.spawn().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        let mut granted = gate.receive_passage_granted().await.unwrap();
        let mut denied = gate.receive_passage_denied().await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(30), granted.next())
            .await
            .expect("Person B granted");
        assert_eq!(first.unwrap().args().unwrap().id().to_string(), "person-b");
        wait_for_state(&gate, State::Running).await;

        // The cable is pulled.
        feeder.kill().unwrap();
        feeder.wait().unwrap();
        wait_for_state(&gate, State::Degraded).await;
        let actions = rig.actions().unwrap();
        assert_eq!(
            actions.last().map(|a| a.cause),
            Some(Cause::SafeState),
            "degraded means safe: {actions:?}"
        );

        // Plugged back in: the pipeline comes back and decisions resume (a return: passback).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut feeder = camera(port, &walkup);
        wait_for_state(&gate, State::Running).await;
        // The first frames after a restart may reach the decider late (the models warm up):
        // those decisions are dropped as stale-frame, which the gate may say as often as it must.
        let again = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let reason = denied.next().await?.args().ok()?.reason().to_string();
                if reason != "stale-frame" {
                    return Some(reason);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no decision after recovery; log: {}", rig.log_text()));
        assert_eq!(
            again.as_deref(),
            Some("passback"),
            "log: {}",
            rig.log_text()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(200), granted.next())
                .await
                .is_err(),
            "nobody is granted twice across a restart"
        );
        let stats = gate.stats().await.unwrap();
        assert!(stats.restarts >= 1, "the pipeline was restarted: {stats:?}");
        feeder.kill().unwrap();
        feeder.wait().unwrap();
    });
    // SIGTERM: a clean stop that leaves the gate safe.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM is a clean stop; log: {}",
        rig.log_text()
    );
    let actions = rig.actions().unwrap();
    let relay = actions
        .iter()
        .rev()
        .find(|a| a.output == Output::Relay)
        .unwrap();
    assert_eq!(
        relay.level,
        facegated::gate::Level::Off,
        "locked after SIGTERM: {actions:?}"
    );
}

#[test]
fn privileged_callers_may_open_the_gate_and_others_are_refused() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    rig.extra_env.push((
        "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
        video("walkup_person_b.avi").to_string_lossy().into(),
    ));
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Person B's grant first; staff open once its pulse is over (an opening during a pulse
    // only extends it).
    runtime.block_on(async {
        let (_connection, gate) = rig
            .gate(Duration::from_secs(60))
            .await
            .expect("facegated on the bus");
        let mut granted = gate.receive_passage_granted().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), granted.next())
            .await
            .expect("Person B granted");
        tokio::time::sleep(Duration::from_millis(1200)).await;
    });
    let busctl = |as_nobody: bool, method: &str, arg: &str| {
        let mut command = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"]);
            c
        } else {
            Command::new("busctl")
        };
        command
            .arg(format!("--address={}", rig.bus.address()))
            .args([
                "call",
                "org.facegate.Gate",
                "/org/facegate/Gate",
                "org.facegate.Gate1",
                method,
                "s",
                arg,
            ])
            .output()
            .expect("setpriv and busctl run (Debian packages util-linux, systemd)")
    };
    for (method, arg) in [("Open", "a stranger's request"), ("SetMode", "free")] {
        let refused = busctl(true, method, arg);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.to_lowercase().contains("access denied") || said.contains("AccessDenied"),
            "{method}: {said}"
        );
    }
    let opened = busctl(false, "Open", "staff: wheelchair");
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert!(child.wait().unwrap().success(), "log: {}", rig.log_text());

    let passages = rig.passages().unwrap();
    let staff: Vec<_> = passages
        .iter()
        .filter(|p| p.reason.as_deref().is_some_and(|r| r.starts_with("staff")))
        .collect();
    assert_eq!(
        staff.len(),
        1,
        "only root's opening is journalled: {passages:?}"
    );
    assert_eq!(
        rig.passages().unwrap().iter().filter(|p| p.granted).count(),
        rig.actions()
            .unwrap()
            .iter()
            .filter(|a| is_unlock(a))
            .count()
    );
}

#[test]
fn bad_configuration_pipeline_gallery_or_model_stop_the_start_with_one_line() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let broken_pipeline = scratch.path().join("broken.pipeline");
    std::fs::write(
        &broken_pipeline,
        "videotestsrc ! nosuchelement ! fakesink\n",
    )
    .unwrap();
    let cases: [(&str, &str, &str); 5] = [
        ("FACEGATE_GATE__PULSE_MS", "soon", "pulse_ms"),
        ("FACEGATE_POLICY__ZONE", "2", "zone"),
        (
            "FACEGATE_PIPELINE__FILE",
            broken_pipeline.to_str().unwrap(),
            "broken.pipeline",
        ),
        (
            "FACEGATE_GALLERY__DIR",
            "/no/such/gallery",
            "/no/such/gallery",
        ),
        ("FACEGATE_MODELS__DIR", "/no/such/models", "/no/such/models"),
    ];
    for (variable, value, named) in cases {
        let mut rig = rig(&scratch);
        rig.extra_env.push((variable.into(), value.into()));
        let output = Command::new(&rig.files.facegated)
            .arg("--config")
            .arg(&rig.files.config)
            .envs(rig.env())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{variable}={value} must stop the start"
        );
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("facegated: ") && last.contains(named),
            "{variable}={value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!rig.actions.exists() || rig.actions().unwrap().iter().all(|a| !is_unlock(a)));
    }
    let output = Command::new(env!("CARGO_BIN_EXE_facegated"))
        .args(["--config", "/no/such.toml"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "facegated: /no/such.toml: no such configuration file"
    );
}

fn signal(child: &Service, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The stream's start on the wall clock, once facegated publishes it.
async fn stream_start(gate: &GateProxy<'_>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let start = gate.stats().await.unwrap().stream_start_unix_ns;
        if start != 0 {
            return start;
        }
        assert!(Instant::now() < deadline, "frames never flowed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn last_relay(actions: &[Action]) -> &Action {
    actions
        .iter()
        .rev()
        .find(|a| a.output == Output::Relay)
        .expect("the relay was written")
}

#[test]
fn a_stalled_service_never_grants_on_a_stale_frame_and_journals_the_dropped_decisions() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let max_age = Duration::from_millis(500);
    rig.extra_env.push((
        "FACEGATE_POLICY__MAX_FRAME_AGE_MS".into(),
        max_age.as_millis().to_string(),
    ));
    let timeline = Timeline::for_video(&rig.files.video).unwrap();
    // Person B's walk-up, the third: the service is stopped just before it and resumed 4 s later,
    // so the frames of the walk-up reach the decider seconds after they were captured.
    let walkup = &timeline.walkups[2];
    assert_eq!(walkup.photo, "person_b_2.jpg", "{timeline:?}");
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        stream_start(&gate).await
    });
    let stop_at = start + timeline.frame_ns(walkup.first_frame) - 700_000_000;
    std::thread::sleep(Duration::from_nanos(stop_at.saturating_sub(unix_now_ns())));
    signal(&child, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, Signal::SIGCONT);
    assert!(
        child.wait().unwrap().success(),
        "facegated runs to the end of the video; log: {}",
        rig.log_text()
    );

    let passages = rig.passages().unwrap();
    // The age is taken before the journal commit, whose timestamp is what this reads.
    let commit_slack = Duration::from_millis(50);
    for grant in passages.iter().filter(|p| p.granted) {
        let frame_at = start + grant.video_time_ns.expect("a grant has its frame's time");
        let age = Duration::from_nanos(
            (grant.time.timestamp_nanos_opt().unwrap() as u64).saturating_sub(frame_at),
        );
        assert!(
            age <= max_age + commit_slack,
            "granted {:?} on a frame {} ms old: {passages:#?}",
            grant.identity,
            age.as_millis()
        );
    }
    let dropped: Vec<_> = passages
        .iter()
        .filter(|p| p.reason.as_deref() == Some("stale-frame"))
        .collect();
    assert!(
        !dropped.is_empty(),
        "the decisions taken on stale frames are journalled as dropped: {passages:#?}; log: {}",
        rig.log_text()
    );
    assert!(dropped.iter().all(|p| !p.granted));
    // Once frames are on time again the gate decides as before: Obama's walk-up is granted.
    assert!(
        passages
            .iter()
            .any(|p| p.granted && p.identity.as_deref() == Some("obama")),
        "{passages:#?}"
    );
    let unlocks = rig.actions().unwrap().into_iter().filter(is_unlock).count();
    assert_eq!(
        unlocks,
        passages.iter().filter(|p| p.granted).count(),
        "the relay moved for the journalled grants only"
    );
}

#[test]
fn a_relay_left_energised_by_kill_9_is_released_by_a_failing_start_and_by_safe_state() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    // A long pulse, so the kill surely lands inside it.
    rig.extra_env
        .push(("FACEGATE_GATE__PULSE_MS".into(), "5000".into()));
    let killed_during_a_pulse = |rig: &GateRig| {
        let mut child = rig.spawn().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
            gate.open("staff: kill test").await.unwrap();
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let actions = rig.actions().unwrap();
        let relay = last_relay(&actions);
        assert_eq!(
            (relay.level, relay.cause),
            (Level::On, Cause::Grant),
            "like GPIO, the simulated relay keeps its level when the process is killed: {actions:?}"
        );
    };

    killed_during_a_pulse(&rig);
    let manifest = rig.gallery.join("manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"{ damaged").unwrap();
    let output = Command::new(&rig.files.facegated)
        .arg("--config")
        .arg(&rig.files.config)
        .envs(rig.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a damaged gallery stops the start"
    );
    assert!(stderr.contains("manifest.json"), "{stderr}");
    let actions = rig.actions().unwrap();
    assert_eq!(last_relay(&actions).level, Level::Off, "{actions:?}");
    // The start wrote the safe state before it looked at the gallery (then, failing, dropped
    // the gate, which writes it once more).
    let granted = actions.iter().rposition(is_unlock).unwrap();
    assert!(
        actions[granted..]
            .iter()
            .any(|a| a.output == Output::Relay && a.cause == Cause::SafeState),
        "the failed start released the relay first: {actions:?}"
    );

    std::fs::write(&manifest, good).unwrap();
    killed_during_a_pulse(&rig);
    rig.safe_state().unwrap();
    let actions = rig.actions().unwrap();
    assert_eq!(
        last_relay(&actions).level,
        Level::Off,
        "facegated safe-state released the relay: {actions:?}"
    );
    assert!(actions.iter().rev().take(3).all(|a| a.level == Level::Off));
}

/// The rig's models in a directory of their own: the detector linked, the embedder linked or,
/// with `weights`, written anew, and the embedder's card as `edit` rewrites it (it is handed the
/// card and the embedder's path there). Returns that path.
fn models_with_card(
    models: &Path,
    into: &Path,
    weights: Option<&[u8]>,
    edit: impl FnOnce(&str, &Path) -> String,
) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let name = facegate_vision::runtime::DEFAULT_EMBEDDER_FILE;
    let embedder = into.join(name);
    match weights {
        Some(bytes) => std::fs::write(&embedder, bytes).unwrap(),
        None => std::os::unix::fs::symlink(models.join(name), &embedder).unwrap(),
    }
    let detector = facegate_vision::runtime::DEFAULT_DETECTOR_FILE;
    std::os::unix::fs::symlink(models.join(detector), into.join(detector)).unwrap();
    let card = facegate_vision::model_card::card_path(Path::new(name));
    let text = std::fs::read_to_string(models.join(&card)).unwrap();
    std::fs::write(into.join(&card), edit(&text, &embedder)).unwrap();
    embedder
}

/// The demo's embedder with its largest weight tensor overwritten by NaNs: same size, still a
/// valid model that loads, but no face embeds any more.
fn rotted_embedder(models: &Path, into: &Path) -> PathBuf {
    let name = facegate_vision::runtime::DEFAULT_EMBEDDER_FILE;
    let mut bytes = std::fs::read(models.join(name)).unwrap();
    let (start, len) = largest_weights(&bytes);
    assert!(
        len > 100_000,
        "the embedder's largest tensor is {len} bytes"
    );
    for chunk in bytes[start..start + len].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    // The shipped card would refuse these weights at start (its sha256 is the good file's); a
    // card that vouches for them leaves the failure to the embeddings, as with a model that was
    // broken when it was published.
    let good = facegate_vision::runtime::model_sha256(&models.join(name)).unwrap();
    models_with_card(models, into, Some(&bytes), |card, embedder| {
        let rotted = facegate_vision::runtime::model_sha256(embedder).unwrap();
        card.replace(&good, &rotted)
    })
}

/// Where the largest initializer's weights lie in an ONNX file (ModelProto.graph = 7,
/// GraphProto.initializer = 5, TensorProto.float_data = 4 (packed) or raw_data = 9).
fn largest_weights(model: &[u8]) -> (usize, usize) {
    let mut best = (0, 0);
    for (field, graph) in fields(model, 0..model.len()) {
        if field != 7 {
            continue;
        }
        for (field, tensor) in fields(model, graph) {
            if field != 5 {
                continue;
            }
            for (field, data) in fields(model, tensor) {
                if (field == 4 || field == 9) && data.len() > best.1 {
                    best = (data.start, data.len());
                }
            }
        }
    }
    best
}

/// The length-delimited fields of the protobuf message in `bytes[range]`: (field number, range).
fn fields(bytes: &[u8], range: std::ops::Range<usize>) -> Vec<(u64, std::ops::Range<usize>)> {
    let varint = |at: &mut usize| {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    };
    let mut found = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let key = varint(&mut at);
        match key & 7 {
            0 => {
                varint(&mut at);
            }
            1 => at += 8,
            2 => {
                let len = varint(&mut at) as usize;
                found.push((key >> 3, at..at + len));
                at += len;
            }
            5 => at += 4,
            wire => panic!("protobuf wire type {wire} at byte {at}"),
        }
    }
    found
}

#[test]
fn an_embedder_that_embeds_nothing_degrades_the_gate() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let models = scratch.path().join("models");
    let embedder = rotted_embedder(&rig.files.models, &models);
    // A gallery for the damaged model, so nothing refuses it for being another embedder's.
    let model = facegate_vision::runtime::model_identity(&embedder).unwrap();
    let gallery_dir = scratch.path().join("rotted-gallery");
    let mut gallery = facegate_vision::gallery::Gallery::create(&gallery_dir, &model, 128).unwrap();
    let mut embedding = vec![0.0f32; 128];
    embedding[0] = 1.0;
    gallery
        .enroll("person-b", "Person B", &model, &embedding, false)
        .unwrap();
    gallery.commit().unwrap();
    drop(gallery);
    // And a calibration, as if the model had been evaluated before its weights rotted.
    let calibrations = scratch.path().join("calibration");
    std::fs::create_dir(&calibrations).unwrap();
    let mut calibration = facegate_vision::match_rule::find_calibration(
        &rig.files.calibrations,
        &facegate_vision::runtime::model_identity(
            &rig.files
                .models
                .join(facegate_vision::runtime::DEFAULT_EMBEDDER_FILE),
        )
        .unwrap(),
    )
    .unwrap();
    calibration.model.identity = model.clone();
    calibration.model.sha256 = facegate_vision::calibration::file_sha256(&embedder).unwrap();
    calibration
        .save(&facegate_vision::match_rule::calibration_path(
            &calibrations,
            &model,
        ))
        .unwrap();
    rig.extra_env.extend([
        (
            "FACEGATE_MODELS__DIR".into(),
            models.to_string_lossy().into(),
        ),
        (
            "FACEGATE_MODELS__CALIBRATION_DIR".into(),
            calibrations.to_string_lossy().into(),
        ),
        (
            "FACEGATE_GALLERY__DIR".into(),
            gallery_dir.to_string_lossy().into(),
        ),
        (
            "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
            video("walkup_person_b.avi").to_string_lossy().into(),
        ),
    ]);
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let states = runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        let mut states = Vec::new();
        // The video ends (exit_on_eos) a few seconds in: every State seen until then.
        while child.try_wait().unwrap().is_none() {
            if let Ok(state) = gate.state().await
                && states.last() != Some(&state)
            {
                states.push(state);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        states
    });
    assert!(
        states.contains(&State::Degraded),
        "the gate said {states:?}; log: {}",
        rig.log_text()
    );
    assert!(
        rig.log_text().contains("none embedded"),
        "the reason is logged: {}",
        rig.log_text()
    );
    assert!(rig.passages().unwrap().is_empty());
}

#[test]
fn an_embedder_not_licensed_for_commercial_use_is_named_in_the_log() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    // The gate's own models, beside a card that withholds commercial use: same weights, so the
    // gallery and the calibration still fit.
    let models = scratch.path().join("models");
    models_with_card(&rig.files.models, &models, None, |card, _| {
        assert!(card.contains("commercial_use = true"), "{card}");
        card.replace("commercial_use = true", "commercial_use = false")
    });
    rig.extra_env.extend([
        (
            "FACEGATE_MODELS__DIR".into(),
            models.to_string_lossy().into(),
        ),
        (
            "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
            video("walkup_person_b.avi").to_string_lossy().into(),
        ),
    ]);
    let mut child = rig.spawn().unwrap();
    // The video ends (exit_on_eos) a few seconds in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "facegated did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = rig.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("licensed for non-commercial use only"))
        .unwrap_or_else(|| panic!("no licence warning in the log: {log}"));
    assert!(
        warning.contains("WARN") && warning.contains("fgembed"),
        "{warning}"
    );
}

#[test]
fn a_missing_video_is_logged_with_its_path() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let missing = scratch.path().join("no-such-walkups.avi");
    rig.extra_env.push((
        "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
        missing.to_string_lossy().into(),
    ));
    let child = rig.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        if let Some(line) = rig
            .log_text()
            .lines()
            .find(|line| line.contains("pipeline failed"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no failure logged: {}",
            rig.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    assert!(
        line.contains(&*missing.to_string_lossy()),
        "the failure names the video: {line}"
    );
}
