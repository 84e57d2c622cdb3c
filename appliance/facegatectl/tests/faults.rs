// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl under faults, as real processes: writers racing on one gallery, a damaged or
//! crafted gallery, a closed or full standard output, and the input an operator gets wrong.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use facegate_vision::gallery::Gallery;
use facegatectl::enroll::{Request, enroll_all};
use facegatectl::pipeline::Models;
use sha2::{Digest, Sha256};

fn photo(name: &str) -> PathBuf {
    facegate_dev_assets::photo(name).unwrap()
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_facegatectl"));
    command.args(args);
    command
}

fn facegatectl(args: &[&str]) -> Output {
    command(args).output().expect("facegatectl runs")
}

fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("facegatectl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that a failed run said why in exactly one line on stderr, without a panic.
fn one_line_error(output: &Output) -> String {
    let said = stderr(output);
    assert!(!output.status.success(), "should fail: {said}");
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(
        said.starts_with("facegatectl: ") && !said.contains("panicked"),
        "{said}"
    );
    said.trim_end().to_owned()
}

/// A gallery in `dir`/gallery with real faces, enrolled in-process (not the code under test).
fn enrolled_gallery(dir: &Path, people: &[(&str, &str)]) -> PathBuf {
    facegatectl::init().unwrap();
    let gallery = dir.join("gallery");
    let requests = people
        .iter()
        .map(|(id, file)| Request::one_photo(*id, Some(format!("Label of {id}")), photo(file)))
        .collect();
    let report = enroll_all(&gallery, requests, false, &Models::default(), |_| {}).unwrap();
    assert_eq!(report.refused(), 0, "{:?}", report.outcomes);
    gallery
}

const SYNTHETIC_MODEL: &str = "synthetic@sha256:0";
const SYNTHETIC_DIM: usize = 8;

/// A gallery of `people` made-up people ("s-0000" …) of a made-up model, for the commands that
/// read no photo.
fn synthetic_gallery(dir: &Path, people: usize) -> PathBuf {
    let gallery = dir.join("gallery");
    let mut writer = Gallery::create(&gallery, SYNTHETIC_MODEL, SYNTHETIC_DIM as u32).unwrap();
    for n in 0..people {
        let mut vector = vec![0.0f32; SYNTHETIC_DIM];
        vector[n % SYNTHETIC_DIM] = 1.0;
        writer
            .enroll(
                &format!("s-{n:04}"),
                &format!("Person {n}"),
                SYNTHETIC_MODEL,
                &vector,
                false,
            )
            .unwrap();
    }
    writer.commit().unwrap();
    gallery
}

fn ids(gallery: &Path) -> Vec<String> {
    Gallery::open(gallery)
        .unwrap()
        .identities()
        .map(|person| person.id.clone())
        .collect()
}

/// Every file of the gallery in `dir` and its bytes (the lock file, which each writer stamps
/// with its pid, aside).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && !path.ends_with("writer.lock"))
        .map(|path| (path.clone(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    files
}

/// Makes manifest.json's sizes and checksums agree with the files as they are now, as anyone
/// who can write the directory can.
fn rewrite_checksums(gallery: &Path) {
    let manifest_path = gallery.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for entry in manifest["files"].as_object_mut().unwrap().values_mut() {
        if entry.is_null() {
            continue;
        }
        let bytes = std::fs::read(gallery.join(entry["name"].as_str().unwrap())).unwrap();
        entry["sha256"] = format!("{:x}", Sha256::digest(&bytes)).into();
        entry["bytes"] = bytes.len().into();
    }
    std::fs::write(manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

// Finding 3: concurrent writers.

#[test]
fn an_enrolment_and_a_removal_a_moment_apart_both_take_effect() {
    for delay_ms in [100, 200, 300] {
        let scratch = tempfile::tempdir().unwrap();
        let gallery = enrolled_gallery(
            scratch.path(),
            &[("p-a", "person_a_1.jpg"), ("p-b", "person_b_1.jpg")],
        );
        let g = gallery.to_str().unwrap();
        let obama = photo("obama.jpg");
        let enrol = spawn(&[
            "enroll",
            "--gallery",
            g,
            "--id",
            "p-o",
            obama.to_str().unwrap(),
        ]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let remove = spawn(&["remove", "--gallery", g, "--id", "p-b"]);
        for (what, child) in [("enroll", enrol), ("remove", remove)] {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{what}: {}", stderr(&output));
        }
        assert_eq!(ids(&gallery), ["p-a", "p-o"], "{delay_ms} ms apart");
    }
}

#[test]
fn two_enrolments_at_once_are_both_kept() {
    let scratch = tempfile::tempdir().unwrap();
    // No gallery yet: both writers find none and must land in one gallery, not one each.
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let (obama, biden) = (photo("obama.jpg"), photo("biden.jpg"));
    let children = [
        spawn(&[
            "enroll",
            "--gallery",
            g,
            "--id",
            "p-o",
            obama.to_str().unwrap(),
        ]),
        spawn(&[
            "enroll",
            "--gallery",
            g,
            "--id",
            "p-j",
            biden.to_str().unwrap(),
        ]),
    ];
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_eq!(ids(&gallery), ["p-j", "p-o"]);
    let opened = Gallery::open(&gallery).unwrap();
    assert_eq!(opened.generation(), 2, "two commits, one after the other");
}

#[test]
fn twelve_removals_at_once_leave_a_gallery_that_opens_without_them() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = synthetic_gallery(scratch.path(), 14);
    let g = gallery.to_str().unwrap();
    let removed: Vec<String> = (0..12).map(|n| format!("s-{n:04}")).collect();
    let children: Vec<_> = removed
        .iter()
        .map(|id| spawn(&["remove", "--gallery", g, "--id", id]))
        .collect();
    let mut refused = Vec::new();
    for (id, child) in removed.iter().zip(children) {
        let output = child.wait_with_output().unwrap();
        if !output.status.success() {
            let said = one_line_error(&output);
            assert!(said.contains("being changed by another process"), "{said}");
            refused.push(id.clone());
        }
    }
    let mut left: Vec<String> = ["s-0012", "s-0013"].map(String::from).to_vec();
    left.extend(refused.iter().cloned());
    left.sort();
    assert_eq!(ids(&gallery), left, "refused: {refused:?}");
    let opened = Gallery::open(&gallery).unwrap();
    assert_eq!(opened.generation() as usize, 1 + 12 - refused.len());
}

// Finding 4: a missing manifest.

#[test]
fn enrolling_beside_generation_files_without_a_manifest_is_refused_and_deletes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = enrolled_gallery(scratch.path(), &[("p-a", "person_a_1.jpg")]);
    std::fs::remove_file(gallery.join("manifest.json")).unwrap();
    let before = snapshot(&gallery);
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-b",
        photo("person_b_1.jpg").to_str().unwrap(),
    ]);
    let said = one_line_error(&output);
    assert!(said.contains("damaged, not replaced"), "{said}");
    assert_eq!(snapshot(&gallery), before, "every file kept, none added");
}

// Finding 7: a crafted generation.

#[test]
fn list_refuses_a_crafted_index_in_one_line() {
    // An unknown metric (FAISS's Rust binding panicked on it) and a wrong dimension, each with
    // the manifest's checksums rewritten to match.
    const OUTER_METRIC: usize = 33;
    const INNER_DIM: usize = 41;
    type Craft = fn(&mut Vec<u8>);
    let crafts: [(&str, Craft); 2] = [
        ("metric type 2", |bytes| {
            bytes[OUTER_METRIC..OUTER_METRIC + 4].copy_from_slice(&2i32.to_le_bytes());
            bytes.splice(OUTER_METRIC + 4..OUTER_METRIC + 4, 0f32.to_le_bytes());
        }),
        ("dimension", |bytes| {
            bytes[INNER_DIM..INNER_DIM + 4].copy_from_slice(&16i32.to_le_bytes());
        }),
    ];
    for (problem, craft) in crafts {
        let scratch = tempfile::tempdir().unwrap();
        let gallery = synthetic_gallery(scratch.path(), 3);
        let index = gallery.join("index-1.faiss");
        let mut bytes = std::fs::read(&index).unwrap();
        craft(&mut bytes);
        std::fs::write(&index, bytes).unwrap();
        rewrite_checksums(&gallery);
        let output = facegatectl(&["list", "--gallery", gallery.to_str().unwrap()]);
        let said = one_line_error(&output);
        assert!(
            said.contains("index-1.faiss") && said.contains(problem),
            "{problem}: {said}"
        );
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    }
}

// Finding 8: a closed or full standard output.

#[test]
fn list_into_a_pipe_its_reader_closes_ends_quietly_with_141() {
    let scratch = tempfile::tempdir().unwrap();
    // Far more than a pipe holds, so that facegatectl is still writing when the reader leaves.
    let gallery = synthetic_gallery(scratch.path(), 3000);
    let mut child = spawn(&["list", "--gallery", gallery.to_str().unwrap()]);
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("3000 people"), "{first}");
    // The reader is dropped: `facegatectl list | head -1`.
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(141),
        "stderr: {}",
        stderr(&output)
    );
    assert_eq!(
        stderr(&output),
        "",
        "a closed output is not an error to report"
    );
}

#[test]
fn list_onto_a_full_disk_fails_in_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = synthetic_gallery(scratch.path(), 3);
    let output = command(&["list", "--gallery", gallery.to_str().unwrap()])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let said = one_line_error(&output);
    assert_eq!(
        said,
        "facegatectl: cannot write to standard output: No space left on device (os error 28)"
    );
}

#[test]
fn an_enrol_batch_whose_reader_has_gone_is_committed_all_the_same() {
    let scratch = tempfile::tempdir().unwrap();
    let photos = scratch.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for name in ["person_a_1.jpg", "person_b_1.jpg"] {
        std::fs::copy(photo(name), photos.join(name)).unwrap();
    }
    let gallery = scratch.path().join("gallery");
    let mut child = spawn(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--dir",
        photos.to_str().unwrap(),
    ]);
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(141), "{}", stderr(&output));
    assert_eq!(ids(&gallery), ["person_a_1", "person_b_1"]);
}

// Finding 13: messages.

#[test]
fn an_error_on_the_enrol_path_and_in_status_is_said_once() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = enrolled_gallery(scratch.path(), &[("p-a", "person_a_1.jpg")]);
    let index = gallery.join("index-1.faiss");
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&index, bytes).unwrap();
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-b",
        photo("person_b_1.jpg").to_str().unwrap(),
    ]);
    let said = one_line_error(&output);
    assert_eq!(said.matches("index-1.faiss").count(), 1, "{said}");
    assert_eq!(said.matches("sha256").count(), 1, "{said}");

    let socket = scratch.path().join("no-bus-here");
    let address = format!("unix:path={}", socket.display());
    let output = facegatectl(&["status", "--bus", &address]);
    let said = one_line_error(&output);
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
}

#[test]
fn nothing_is_printed_enrolled_when_the_commit_then_fails() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = enrolled_gallery(scratch.path(), &[("p-a", "person_a_1.jpg")]);
    // The next generation's index file cannot be written: a directory holds its name.
    std::fs::create_dir(gallery.join("index-2.faiss")).unwrap();
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-b",
        photo("person_b_1.jpg").to_str().unwrap(),
    ]);
    let said = one_line_error(&output);
    assert!(said.contains("index-2.faiss"), "{said}");
    assert!(!stdout(&output).contains("enrolled"), "{}", stdout(&output));
    assert_eq!(Gallery::open(&gallery).unwrap().generation(), 1);
}

#[test]
fn a_directory_given_as_a_photo_is_called_a_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("photo.jpg");
    std::fs::create_dir(&folder).unwrap();
    let gallery = scratch.path().join("gallery");
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-1",
        folder.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let line = stdout(&output);
    assert!(line.contains("is a directory, not a photo"), "{line}");
    assert!(!line.contains("no such file"), "{line}");
}

#[test]
fn an_empty_csv_or_folder_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let csv = scratch.path().join("people.csv");
    std::fs::write(&csv, "id,label,photo\n").unwrap();
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    for (flag, path) in [("--csv", &csv), ("--dir", &empty)] {
        let output = facegatectl(&["enroll", "--gallery", g, flag, path.to_str().unwrap()]);
        let said = one_line_error(&output);
        assert!(
            said.contains(path.to_str().unwrap()) && said.contains("no one to enrol"),
            "{flag}: {said}"
        );
    }
    assert!(!gallery.exists(), "no gallery created for nobody");
}

#[test]
fn labels_with_a_bidi_control_or_nothing_visible_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = enrolled_gallery(scratch.path(), &[("p-a", "person_a_1.jpg")]);
    let before = snapshot(&gallery);
    let good = photo("person_b_1.jpg");
    for (label, reason) in [
        ("\u{202E}Ada", "bidirectional control character U+202E"),
        ("\u{200B}\u{200D}\u{FEFF}", "has no visible character"),
        ("", "the label is empty"),
    ] {
        let output = facegatectl(&[
            "enroll",
            "--gallery",
            gallery.to_str().unwrap(),
            "--id",
            "p-b",
            "--label",
            label,
            good.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{label:?} accepted");
        assert!(
            stdout(&output).contains(reason),
            "{label:?}: {}",
            stdout(&output)
        );
    }
    assert_eq!(snapshot(&gallery), before, "the gallery is unchanged");
}

#[test]
fn replace_without_a_label_keeps_the_label() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = enrolled_gallery(scratch.path(), &[("p-a", "person_a_1.jpg")]);
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-a",
        "--replace",
        photo("person_a_2.jpg").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("enrolled p-a (Label of p-a)"),
        "{}",
        stdout(&output)
    );
    let opened = Gallery::open(&gallery).unwrap();
    assert_eq!(
        (opened.generation(), opened.label_of("p-a")),
        (2, Some("Label of p-a"))
    );
}

#[test]
fn a_truncated_jpeg_is_refused_by_identify_and_by_enrolment() {
    let scratch = tempfile::tempdir().unwrap();
    let whole = std::fs::read(photo("person_a_1.jpg")).unwrap();
    // Cut to a third: libjpeg still decodes the top of the picture from such a file.
    let cut = scratch.path().join("cut.jpg");
    std::fs::write(&cut, &whole[..whole.len() / 3]).unwrap();

    let said = one_line_error(&facegatectl(&["identify", cut.to_str().unwrap()]));
    assert!(
        said.contains("cut.jpg") && said.contains("end-of-image marker"),
        "{said}"
    );

    let gallery = scratch.path().join("gallery");
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--id",
        "p-1",
        cut.to_str().unwrap(),
    ]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("end-of-image marker"),
        "{}",
        stdout(&output)
    );
    assert!(
        !gallery.join("manifest.json").exists() || ids(&gallery).is_empty(),
        "nothing enrolled"
    );

    // The same photo whole is identified, so the refusal is the cut's.
    let output = facegatectl(&["identify", photo("person_a_1.jpg").to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
}
