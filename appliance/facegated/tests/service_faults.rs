// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated under faults, run as a process on a private dbus-daemon with the simulated gate: a
//! journal on a full disk, mode changes, staff openings with bad reasons, a gallery deleted under
//! the running gate, and what D-Bus says meanwhile (State, Mode, Stats uptime).
//!
//! The full disk is a real one: a 512 KiB tmpfs mounted for the test (tests run as root) and
//! filled to the last byte after the journal is created on it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facegate_dbus::{GateProxy, INTERFACE, Mode, State};
use facegate_devtools::gate_rig::{GateRig, RigFiles, enrolled, is_unlock};
use facegated::gate::{Cause, Level, Output};
use facegated::journal::{Journal, JournalConfig};
use futures_util::StreamExt;

/// Each test runs a pipeline in real time; two at once on two cores would starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn files() -> RigFiles {
    RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated"))).expect("repository files")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A rig whose gate runs on a live test pattern (nobody in view) until it is stopped.
fn pattern_rig(scratch: &tempfile::TempDir) -> GateRig {
    let mut rig = GateRig::new(files(), scratch.path(), &enrolled()).expect("rig starts");
    rig.extra_env.extend([
        (
            "FACEGATE_PIPELINE__FILE".into(),
            fixture("test-pattern.pipeline"),
        ),
        ("FACEGATE_PIPELINE__EXIT_ON_EOS".into(), "false".into()),
    ]);
    rig
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn wait_for_state(gate: &GateProxy<'_>, what: State, rig: &GateRig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = gate.state().await.unwrap();
        if state == what {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "State stayed {state}, never {what}; log: {}",
            rig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stop(service: &mut facegate_devtools::gate_rig::Service, rig: &GateRig) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        service.wait().unwrap().success(),
        "SIGTERM is a clean stop; log: {}",
        rig.log_text()
    );
}

/// A tmpfs of `size` mounted on `dir` until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount runs (util-linux)");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Writes a file until the file system refuses with ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = [0u8; 4096];
        loop {
            match filler.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = filler.sync_all();
        let probe = std::fs::write(self.0.join("probe"), [1u8; 4096]);
        assert!(probe.is_err(), "the tmpfs is full");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_journal_disk_refuses_the_passenger_with_the_red_lamp_and_says_so_on_dbus() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = GateRig::new(files(), scratch.path(), &enrolled()).expect("rig starts");
    let disk = Tmpfs::mount(&scratch.path().join("journal-disk"), "512k");
    let journal_path = disk.0.join("journal.sqlite");
    // Created while there is room, and held open so its WAL index stays: the service opens it
    // as it would after a restart, and its first row needs space that is no longer there.
    let held = Journal::open(&JournalConfig {
        path: journal_path.clone(),
        ..JournalConfig::default()
    })
    .unwrap();
    disk.fill();
    rig.journal = journal_path.clone();
    let walkup = files().video.with_file_name("walkup_person_b.avi");
    rig.extra_env.extend([
        (
            "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
            walkup.to_string_lossy().into_owned(),
        ),
        // Keep the gate up after the walk-up, to ask it things.
        ("FACEGATE_PIPELINE__EXIT_ON_EOS".into(), "false".into()),
    ]);

    let runtime = runtime();
    // Subscribed before the service exists, so the first failure's signal cannot be missed.
    let connection = runtime
        .block_on(facegate_dbus::connect(&rig.bus.bus_address()))
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(INTERFACE)
        .member("JournalFailed")
        .build()
        .unwrap();
    let mut failures = runtime
        .block_on(zbus::MessageStream::for_match_rule(rule, &connection, None))
        .unwrap();
    let mut service = rig.spawn().unwrap();
    runtime.block_on(async {
        let signal = tokio::time::timeout(Duration::from_secs(60), failures.next())
            .await
            .unwrap_or_else(|_| panic!("no JournalFailed signal; log: {}", rig.log_text()))
            .unwrap()
            .unwrap();
        let detail: String = signal.body().deserialize().unwrap();
        assert!(detail.contains("full"), "{detail}");
        assert!(detail.contains("journal.sqlite"), "{detail}");

        let (_connection, gate) = rig.gate(Duration::from_secs(10)).await.unwrap();
        wait_for_state(&gate, State::JournalFailed, &rig).await;
        // Free mode would hold the gate open with no row: refused, the mode stays.
        let refused = gate.set_mode(Mode::Free).await.unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");
        assert_eq!(gate.mode().await.unwrap(), Mode::Normal);
        let refused = gate.open("wheelchair").await.unwrap_err();
        assert!(refused.to_string().contains("full"), "{refused}");
    });
    stop(&mut service, &rig);

    let actions = rig.actions().unwrap();
    assert!(
        !actions.iter().any(is_unlock),
        "nothing opened without its row: {actions:?}"
    );
    assert!(
        !actions
            .iter()
            .any(|a| a.output == Output::Relay && a.level == Level::On),
        "the relay never moved: {actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.output == Output::Red && a.level == Level::On && a.cause == Cause::Deny),
        "Person B, refused for want of a row, saw the red lamp: {actions:?}"
    );
    assert!(held.passages().unwrap().is_empty());
    assert!(held.mode_changes().unwrap().is_empty());
    let log = rig.log_text();
    assert!(
        log.contains("the journal cannot be written"),
        "logged: {log}"
    );
}

#[test]
fn set_mode_free_is_journalled_before_the_relay_is_held() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = pattern_rig(&scratch);
    let mut service = rig.spawn().unwrap();
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        wait_for_state(&gate, State::Running, &rig).await;
        gate.set_mode(Mode::Free).await.unwrap();
        gate.set_mode(Mode::Normal).await.unwrap();
    });
    stop(&mut service, &rig);
    let journal = Journal::open(&JournalConfig {
        path: rig.journal.clone(),
        ..JournalConfig::default()
    })
    .unwrap();
    let changes = journal.mode_changes().unwrap();
    let modes: Vec<Mode> = changes.iter().map(|c| c.mode).collect();
    assert_eq!(modes, [Mode::Free, Mode::Normal]);
    let actions = rig.actions().unwrap();
    let held = actions
        .iter()
        .find(|a| a.output == Output::Relay && a.level == Level::On)
        .unwrap_or_else(|| panic!("free mode held the relay: {actions:?}"));
    assert_eq!(held.cause, Cause::HoldOpen);
    assert!(
        changes[0].time.timestamp_nanos_opt().unwrap() as u64 <= held.unix_ns,
        "the row for free mode ({}) was written before the relay moved ({})",
        changes[0].time,
        held.time
    );
}

#[test]
fn mode_reads_the_new_value_as_soon_as_set_mode_returns() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = pattern_rig(&scratch);
    let mut service = rig.spawn().unwrap();
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        wait_for_state(&gate, State::Running, &rig).await;
        for mode in [
            Mode::Locked,
            Mode::Free,
            Mode::Normal,
            Mode::Locked,
            Mode::Normal,
        ] {
            gate.set_mode(mode).await.unwrap();
            assert_eq!(gate.mode().await.unwrap(), mode, "Mode right after SetMode");
            assert_eq!(
                gate.stats().await.unwrap().mode,
                mode,
                "Stats right after SetMode"
            );
        }
    });
    stop(&mut service, &rig);
}

#[test]
fn stats_uptime_counts_the_seconds_since_the_start() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = pattern_rig(&scratch);
    let started = Instant::now();
    let mut service = rig.spawn().unwrap();
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let uptime = gate.stats().await.unwrap().uptime_s;
        let bound = started.elapsed().as_secs();
        assert!(
            (2..=bound).contains(&uptime),
            "uptime {uptime} s after more than 2.5 s (at most {bound} s)"
        );
    });
    stop(&mut service, &rig);
}

#[test]
fn open_refuses_an_empty_overlong_or_multiline_reason_naming_the_rule() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = pattern_rig(&scratch);
    let mut service = rig.spawn().unwrap();
    let long = "x".repeat(facegate_dbus::OPEN_REASON_MAX_CHARS + 1);
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        wait_for_state(&gate, State::Running, &rig).await;
        for (reason, rule) in [
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            (long.as_str(), "at most 200 characters"),
            ("lift\nERROR forged log line", "control characters"),
        ] {
            let refused = gate.open(reason).await.unwrap_err();
            let said = refused.to_string();
            assert!(said.contains("InvalidArgs"), "{reason:?}: {said}");
            assert!(said.contains(rule), "{reason:?}: {said}");
        }
        gate.open("lift out of order").await.unwrap();
    });
    stop(&mut service, &rig);
    let passages = rig.passages().unwrap();
    let reasons: Vec<_> = passages
        .iter()
        .filter_map(|p| p.reason.as_deref())
        .collect();
    assert_eq!(
        reasons,
        ["staff: lift out of order"],
        "only the good one journalled"
    );
    assert!(!rig.log_text().contains("\nERROR forged"), "no forged line");
}

#[test]
fn a_gallery_deleted_under_the_running_gate_is_logged_once() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = pattern_rig(&scratch);
    let mut service = rig.spawn().unwrap();
    runtime().block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        wait_for_state(&gate, State::Running, &rig).await;
        std::fs::remove_dir_all(&rig.gallery).unwrap();
        // Several of the service's once-a-second checks.
        tokio::time::sleep(Duration::from_millis(3500)).await;
    });
    stop(&mut service, &rig);
    let log = rig.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keeping gallery generation"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {log}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains(&rig.gallery.display().to_string()),
        "{}",
        warnings[0]
    );
}
