// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated refuses a bad configuration at start, as a process: one line on stderr, said once,
//! naming the key and where its value came from (the file, or the environment variable), and
//! a foreign journal file is refused without being touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facegate_devtools::gate_rig::{GateRig, RigFiles, enrolled};

/// Runs facegated on a configuration file holding `text`, with `env` added; it must fail.
fn refused(text: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("facegate.toml");
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_facegated"))
        .arg("--config")
        .arg(&file)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    the_one_line(&output, &format!("{text:?} {env:?}"))
}

/// The failure's message: one line on stderr, starting "facegated: ", and nothing else.
fn the_one_line(output: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} must stop the start");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("facegated: "))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one error line: {stderr}");
    lines[0].to_string()
}

#[test]
fn a_value_too_large_for_its_key_names_the_key() {
    let said = refused("[gate]\npulse_ms = 99999999999999999999\n", &[]);
    assert!(said.contains("facegate.toml"), "{said}");
    assert!(said.contains("gate.pulse_ms"), "{said}");
}

#[test]
fn a_negative_threshold_is_blamed_on_the_threshold() {
    let said = refused("[policy]\nthreshold = -0.5\n", &[]);
    assert!(said.contains("policy.threshold"), "{said}");
    assert!(!said.contains("low_confidence"), "{said}");
}

#[test]
fn a_threshold_of_zero_is_refused_with_the_measured_reason() {
    let said = refused("[policy]\nthreshold = 0\nlow_confidence = 0\n", &[]);
    assert!(
        said.contains("policy.threshold: must lie within 0.35..1"),
        "{said}"
    );
    assert!(said.contains("strangers score"), "{said}");
}

#[test]
fn an_unknown_facegate_variable_is_named_as_a_variable() {
    let said = refused("", &[("FACEGATE_GATE__PULSE_MSEC", "900")]);
    assert!(
        said.starts_with("facegated: environment variable FACEGATE_GATE__PULSE_MSEC: "),
        "{said}"
    );
    assert!(said.contains("pulse_msec"), "{said}");
    assert!(
        !said.contains("facegate.toml"),
        "not blamed on the file: {said}"
    );
}

#[test]
fn the_zone_is_read_from_the_environment_as_a_toml_array() {
    // Out of the frame, so the start stops at the zone's check: it was read as a zone.
    let said = refused("", &[("FACEGATE_POLICY__ZONE", "[0.5, 0.0, 0.7, 1.0]")]);
    assert!(
        said.contains(
            "environment variable FACEGATE_POLICY__ZONE: policy.zone: must lie within 0..1"
        ),
        "{said}"
    );
    let said = refused("", &[("FACEGATE_POLICY__ZONE", "0.5,0,0.7,1")]);
    assert!(said.contains("FACEGATE_POLICY__ZONE"), "{said}");
    assert!(said.contains("an array in TOML syntax"), "{said}");
}

#[test]
fn wrong_types_in_the_file_are_refused_naming_the_key() {
    for (text, key) in [
        ("[gate]\npulse_ms = 800.5\n", "gate.pulse_ms"),
        (
            "[pipeline]\nexit_on_eos = \"yes\"\n",
            "pipeline.exit_on_eos",
        ),
        (
            "[policy]\nzone = [0.1, 0.0, 0.5, 1.0, 0.2]\n",
            "policy.zone",
        ),
        ("[policy]\ndisabled = [1, 2]\n", "policy.disabled"),
    ] {
        let said = refused(text, &[]);
        assert!(said.contains("facegate.toml: "), "{text:?}: {said}");
        assert!(said.contains(key), "{text:?}: {said}");
    }
    for (variable, value) in [
        ("FACEGATE_GATE__PULSE_MS", "800.5"),
        ("FACEGATE_PIPELINE__EXIT_ON_EOS", "yes"),
    ] {
        let said = refused("", &[(variable, value)]);
        assert!(said.contains(variable), "{variable}={value}: {said}");
    }
}

fn rig_files() -> RigFiles {
    let mut files = RigFiles::repository_defaults().expect("repository files");
    files.facegated = PathBuf::from(env!("CARGO_BIN_EXE_facegated"));
    for path in [&files.models, &files.ort_library] {
        assert!(
            path.exists(),
            "{} is missing: run `make setup`",
            path.display()
        );
    }
    files
}

/// Starts facegated of `rig` with its journal at `journal`; it must fail.
fn start_with_journal(rig: &GateRig, journal: &Path) -> String {
    let output = Command::new(&rig.files.facegated)
        .arg("--config")
        .arg(&rig.files.config)
        .envs(rig.env())
        .env("FACEGATE_JOURNAL__PATH", journal)
        .output()
        .unwrap();
    the_one_line(&output, &journal.display().to_string())
}

#[test]
fn a_foreign_sqlite_file_is_refused_before_anything_is_written_to_it() {
    let scratch = tempfile::tempdir().unwrap();
    let rig = GateRig::new(rig_files(), scratch.path(), &enrolled()).expect("rig starts");
    let foreign = scratch.path().join("inventory.sqlite");
    let other = rusqlite::Connection::open(&foreign).unwrap();
    other
        .execute_batch("CREATE TABLE stock (item TEXT); INSERT INTO stock VALUES ('tickets');")
        .unwrap();
    drop(other);
    let before = std::fs::read(&foreign).unwrap();
    let said = start_with_journal(&rig, &foreign);
    assert!(said.contains("not a FaceGate journal"), "{said}");
    assert!(said.contains("inventory.sqlite"), "{said}");
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        before,
        "the file is as it was (not switched to WAL)"
    );
    for side in ["inventory.sqlite-wal", "inventory.sqlite-shm"] {
        assert!(!scratch.path().join(side).exists(), "{side} was made");
    }
}

#[test]
fn a_journal_that_is_not_a_database_is_said_once() {
    let scratch = tempfile::tempdir().unwrap();
    let rig = GateRig::new(rig_files(), scratch.path(), &enrolled()).expect("rig starts");
    let garbage = scratch.path().join("journal.sqlite");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let said = start_with_journal(&rig, &garbage);
    assert_eq!(said.matches("not a database").count(), 1, "{said}");
    assert!(said.contains("journal.sqlite"), "{said}");
}

/// `facegated check-config` on `text`: its output, and whether it succeeded.
fn checked(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("facegate.toml");
    std::fs::write(&file, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_facegated"))
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .output()
        .unwrap()
}

#[test]
fn check_config_refuses_what_the_start_refuses_with_the_same_line() {
    let text = "[policy]\nthreshold = -0.5\n";
    let said = the_one_line(&checked(text), "check-config on a bad threshold");
    // The same words after each run's own temporary path.
    let after_file = |line: &str| line.split_once("facegate.toml: ").unwrap().1.to_string();
    assert_eq!(after_file(&said), after_file(&refused(text, &[])));
}

#[test]
fn check_config_accepts_the_shipped_configuration_without_starting_anything() {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/facegate.toml"),
    )
    .unwrap();
    let output = checked(&shipped);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.trim_end().ends_with("facegate.toml: valid"),
        "{stdout}"
    );
}
