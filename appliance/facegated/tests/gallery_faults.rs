// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated and a gallery it must not take: a crafted generation (index bytes changed, the
//! manifest's checksums rewritten to match) or one enrolled with another embedder, at start and
//! committed under a running gate; a pipeline property out of its range; and a gallery beyond the
//! size its model serves safely. And a removal staff reload, taken at once.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facegate_dbus::State;
use facegate_devtools::gate_rig::{GateRig, RigFiles, enrolled};
use facegate_vision::gallery::Gallery;
use facegate_vision::match_rule::{self, MatchRule};
use sha2::{Digest, Sha256};

/// The running-service test plays video in real time; two at once would starve each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Offsets in an `IDMap2,Flat` index file: the outer header's metric type.
const OUTER_METRIC: usize = 33;

fn rig(scratch: &tempfile::TempDir) -> GateRig {
    let files = RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated")))
        .expect("repository files");
    GateRig::new(files, scratch.path(), &enrolled()).expect("rig starts")
}

/// Runs facegated to its end (a start that fails) and returns its output.
fn start(rig: &GateRig) -> Output {
    Command::new(&rig.files.facegated)
        .arg("--config")
        .arg(&rig.files.config)
        .envs(rig.env())
        .output()
        .unwrap()
}

/// The last stderr line of a start that must have failed, checked to be one clean line.
fn refusal(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the start must fail: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("facegated: "), "{stderr}");
    last
}

fn manifest(gallery: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(gallery.join("manifest.json")).unwrap()).unwrap()
}

/// Makes manifest.json's sizes and checksums agree with the files as they are now.
fn rewrite_checksums(gallery: &Path) {
    let mut manifest = manifest(gallery);
    for entry in manifest["files"].as_object_mut().unwrap().values_mut() {
        if entry.is_null() {
            continue;
        }
        let bytes = std::fs::read(gallery.join(entry["name"].as_str().unwrap())).unwrap();
        entry["sha256"] = format!("{:x}", Sha256::digest(&bytes)).into();
        entry["bytes"] = bytes.len().into();
    }
    std::fs::write(
        gallery.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

/// Gives the current generation's index in `gallery` an unknown metric type (FAISS's Rust
/// binding panicked on it), with checksums to match; returns the index file's name.
fn craft_current_index(gallery: &Path) -> String {
    let name = manifest(gallery)["files"]["index"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = gallery.join(&name);
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[OUTER_METRIC..OUTER_METRIC + 4].copy_from_slice(&2i32.to_le_bytes());
    bytes.splice(OUTER_METRIC + 4..OUTER_METRIC + 4, 0f32.to_le_bytes());
    std::fs::write(&index, bytes).unwrap();
    rewrite_checksums(gallery);
    name
}

const OTHER_MODEL: &str = "other-embedder@sha256:0";

/// A gallery of another embedder (128 values, as SFace's), committed up to `generation`.
fn foreign_gallery(dir: &Path, generation: u64) {
    let mut gallery = Gallery::create(dir, OTHER_MODEL, 128).unwrap();
    for n in 0..generation {
        let mut unit = vec![0.0f32; 128];
        unit[n as usize] = 1.0;
        gallery
            .enroll(&format!("x-{n}"), "X", OTHER_MODEL, &unit, false)
            .unwrap();
        gallery.commit().unwrap();
    }
}

/// Moves generation `generation` from `from` into `to`, its manifest last, as a commit switches.
fn swap_in(from: &Path, to: &Path, generation: u64) {
    for name in [
        format!("index-{generation}.faiss"),
        format!("identities-{generation}.json"),
        "manifest.json".to_owned(),
    ] {
        std::fs::rename(from.join(&name), to.join(&name)).unwrap();
    }
}

#[test]
fn a_crafted_gallery_generation_stops_the_start_in_one_line() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = rig(&scratch);
    let index = craft_current_index(&rig.gallery);
    let last = refusal(&start(&rig));
    assert!(
        last.contains(&index) && last.contains("metric type 2"),
        "{last}"
    );
}

#[test]
fn a_gallery_of_another_embedder_stops_the_start_in_one_line() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let foreign = scratch.path().join("foreign");
    foreign_gallery(&foreign, 1);
    rig.extra_env.push((
        "FACEGATE_GALLERY__DIR".into(),
        foreign.to_string_lossy().into(),
    ));
    let last = refusal(&start(&rig));
    assert!(
        last.contains(OTHER_MODEL)
            && last.contains("facegate_sface_2021dec@sha256:")
            && last.contains("enrol the gallery again with the gate's model"),
        "{last}"
    );
}

#[test]
fn an_out_of_range_property_of_our_elements_stops_the_start_in_one_line() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let pipeline = rig.set_fgmatch_properties("top-k-0", "top-k=0").unwrap();
    let last = refusal(&start(&rig));
    assert_eq!(
        last,
        format!(
            "facegated: {}: fgmatch: property top-k: 0 is outside 1..=100",
            pipeline.display()
        )
    );
}

/// Waits until the log has a line containing every one of `parts`; returns that line.
fn wait_for_log(rig: &GateRig, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = rig.log_text();
        if let Some(line) = log
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_gate_keeps_its_generation_when_a_crafted_or_foreign_one_is_committed() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let rig = rig(&scratch);
    let in_use = Gallery::open(&rig.gallery).unwrap().generation();
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while gate.state().await.unwrap() != State::Running {
            assert!(Instant::now() < deadline, "never running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A crafted next generation, made in a copy and switched to as a commit would.
        let staging = scratch.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        for entry in std::fs::read_dir(&rig.gallery).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, staging.join(path.file_name().unwrap())).unwrap();
        }
        let mut writer = Gallery::open(&staging).unwrap();
        assert!(writer.remove("person-b").unwrap());
        let crafted = writer.commit().unwrap();
        drop(writer);
        let index = craft_current_index(&staging);
        swap_in(&staging, &rig.gallery, crafted);
        let line = wait_for_log(
            &rig,
            &[
                &format!("keeping gallery generation {in_use}"),
                &index,
                "metric type 2",
            ],
        );
        let reload = gate.reload_gallery().await.unwrap_err().to_string();
        assert!(reload.contains("metric type 2"), "{reload}");
        let stats = gate.stats().await.unwrap();
        assert_eq!(stats.gallery_generation, in_use, "{line}");

        // Then a generation enrolled with another embedder.
        let foreign = scratch.path().join("foreign");
        foreign_gallery(&foreign, crafted + 1);
        swap_in(&foreign, &rig.gallery, crafted + 1);
        wait_for_log(
            &rig,
            &[&format!("keeping gallery generation {in_use}"), OTHER_MODEL],
        );
        let reload = gate.reload_gallery().await.unwrap_err().to_string();
        assert!(reload.contains(OTHER_MODEL), "{reload}");
        let stats = gate.stats().await.unwrap();
        assert_eq!(stats.gallery_generation, in_use);
        assert_eq!(gate.state().await.unwrap(), State::Running);
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "facegated still runs: {}",
        rig.log_text()
    );
    let log = std::fs::read_to_string(&rig.log).unwrap();
    assert_eq!(
        log.matches("metric type 2").count(),
        1,
        "a refusal is logged once: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_removal_reloaded_by_staff_is_searched_at_once_though_fgmatch_polls_hourly() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    rig.set_fgmatch_properties("hourly", "poll-interval=3600000")
        .unwrap();
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let removed_in = runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        // Person B walks up 7 s into the video, long before fgmatch's next poll.
        let mut writer = Gallery::open(&rig.gallery).unwrap();
        assert!(writer.remove("person-b").unwrap());
        let generation = writer.commit().unwrap();
        drop(writer);
        assert_eq!(gate.reload_gallery().await.unwrap(), generation);
        generation
    });
    assert!(child.wait().unwrap().success(), "{}", rig.log_text());
    let passages = rig.passages().unwrap();
    let granted: Vec<_> = passages
        .iter()
        .filter(|p| p.granted)
        .filter_map(|p| p.identity.as_deref())
        .collect();
    assert!(!granted.contains(&"person-b"), "{passages:#?}");
    assert!(
        granted.contains(&"obama"),
        "the others still pass: {passages:#?}"
    );
    let last = passages.last().expect("decisions were made");
    assert_eq!(
        last.generation, removed_in,
        "decided with the reloaded generation"
    );
    let log = std::fs::read_to_string(&rig.log).unwrap();
    assert!(
        log.contains(&format!("ReloadGallery: searching generation {removed_in}")),
        "{log}"
    );
}

#[test]
fn a_gallery_beyond_the_models_safe_size_stops_the_start_in_one_line_unless_allowed() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = rig(&scratch);
    let gallery = Gallery::open(&rig.gallery).unwrap();
    let people = gallery.len() as u64;
    let calibration =
        match_rule::find_calibration(&rig.files.calibrations, gallery.model()).unwrap();
    let standing = MatchRule::default().standing(&calibration, people).unwrap();
    // At the gate's default rates (the demo configuration the rig starts from accepts more).
    rig.extra_env.push((
        "FACEGATE_POLICY__MAX_FALSE_GRANT_RATE".into(),
        match_rule::DEFAULT_MAX_FALSE_GRANT_RATE.to_string(),
    ));
    assert!(
        !standing.is_safe(),
        "the default model serves no gallery at the default rates: {standing:?}"
    );

    rig.extra_env.push((
        "FACEGATE_POLICY__ALLOW_UNSAFE_GALLERY".into(),
        "false".into(),
    ));
    let last = refusal(&start(&rig));
    assert!(
        last.contains(&format!(
            "{people} people is beyond what model {} serves safely: at most {} at \
             policy.max_false_grant_rate 0.0001 within policy.max_false_reject_rate 0.05",
            gallery.model(),
            standing.safe_gallery_size_or_max()
        )) && last.contains("policy.allow_unsafe_gallery = true"),
        "{last}"
    );

    // Allowed, it starts, says so loudly, and D-Bus says where the gallery stands.
    rig.extra_env.pop();
    rig.extra_env.push((
        "FACEGATE_POLICY__ALLOW_UNSAFE_GALLERY".into(),
        "true".into(),
    ));
    let mut child = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (_connection, gate) = rig.gate(Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            gate.effective_threshold().await.unwrap(),
            standing.threshold
        );
        assert_eq!(
            gate.expected_false_grant_rate().await.unwrap(),
            standing.expected_false_grant_rate.unwrap()
        );
        assert_eq!(
            gate.safe_gallery_size().await.unwrap(),
            standing.safe_gallery_size_or_max()
        );
        let stats = gate.stats().await.unwrap();
        assert_eq!(stats.effective_threshold, standing.threshold);
        assert_eq!(stats.gallery_size, people);
    });
    wait_for_log(
        &rig,
        &["UNSAFE GALLERY", "policy.allow_unsafe_gallery = true"],
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "facegated runs: {}",
        rig.log_text()
    );
}
