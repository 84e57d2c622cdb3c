// SPDX-License-Identifier: MIT OR Apache-2.0
//! The plugin as a GStreamer user meets it: gst-launch-1.0 with a file source, decodebin, our
//! elements and fgmetadump, checked line by line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use facegate_meta::dump::FrameLine;

/// A plugin directory holding only the libgstfacegate.so cargo built for this test run, and a
/// private registry, so gst-launch-1.0 can never pick up a stale copy.
fn plugin_env(scratch: &Path) -> Vec<(&'static str, PathBuf)> {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let library = deps.join("libgstfacegate.so");
    assert!(
        library.is_file(),
        "{} is missing: cargo builds it with the tests",
        library.display()
    );
    let plugins = scratch.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&library, plugins.join("libgstfacegate.so")).unwrap();
    vec![
        ("GST_PLUGIN_PATH", plugins),
        ("GST_REGISTRY", scratch.join("registry.bin")),
    ]
}

/// Runs gst-launch-1.0 `description` and returns the fgmetadump lines written to `dump`.
fn gst_launch(scratch: &Path, description: &str, dump: &Path) -> Vec<FrameLine> {
    let output = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .envs(plugin_env(scratch))
        .output()
        .expect("gst-launch-1.0 runs (Debian package gstreamer1.0-tools; run `make setup`)");
    assert!(
        output.status.success(),
        "gst-launch-1.0 {description} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(dump)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn photo_through_gst_launch_gives_the_expected_json() {
    common::init();
    let scratch = tempfile::tempdir().unwrap();
    let gallery = common::enroll(
        scratch.path(),
        &[
            ("obama", "Barack Obama", "obama.jpg"),
            ("person-b", "Person B", "person_b_1.jpg"),
        ],
    );
    let dump = scratch.path().join("faces.jsonl");
    let photo = common::photo("obama2.jpg");
    let description = format!(
        "filesrc location={} ! decodebin ! fgdetect input-size=640 ! fgtrack ! fgembed ! fgmatch gallery={} ! fgmetadump location={} ! fakesink",
        photo.display(),
        gallery.display(),
        dump.display()
    );
    let lines = gst_launch(scratch.path(), &description, &dump);

    let reference = common::reference();
    let expected = reference
        .photos
        .iter()
        .find(|p| p.file == "obama2.jpg")
        .unwrap();
    assert_eq!(lines.len(), 1, "one frame, one line");
    let line = &lines[0];
    assert_eq!(
        (line.pts_ns, line.width, line.height),
        (Some(0), expected.width, expected.height)
    );
    assert_eq!(line.faces.len(), 1);
    let face = &line.faces[0];
    let [x, y, w, h] = face.bbox;
    assert!(
        common::iou(
            [x as f32, y as f32, w as f32, h as f32],
            expected.faces[0].bbox
        ) >= 0.9
    );
    assert!(face.score.unwrap() > 0.9);
    assert_eq!(face.landmarks.len(), 5);
    assert_eq!(face.track_id, Some(1));
    assert_eq!(face.embedding, None, "embeddings only when asked for");
    let matched = face
        .matched
        .as_ref()
        .expect("obama2.jpg matches the enrolled obama.jpg");
    assert_eq!(
        (matched.id.as_str(), matched.label.as_str()),
        ("obama", "Barack Obama")
    );
    assert!(matched.similarity > common::match_threshold());
}

#[test]
fn a_face_that_enters_stays_and_leaves_keeps_one_track_id() {
    common::init();
    let scratch = tempfile::tempdir().unwrap();
    let gallery = common::enroll(
        scratch.path(),
        &[("person-b", "Person B", "person_b_1.jpg")],
    );
    let dump = scratch.path().join("faces.jsonl");
    let video = common::video("walkup_person_b.avi");
    let description = format!(
        "filesrc location={} ! decodebin ! fgdetect ! fgtrack ! fgembed ! fgmatch gallery={} ! fgmetadump location={} ! fakesink",
        video.display(),
        gallery.display(),
        dump.display()
    );
    let lines = gst_launch(scratch.path(), &description, &dump);
    let timeline = common::timeline("walkup_person_b.avi");
    let walkup = &timeline.walkups[0];
    assert_eq!(lines.len(), timeline.frames, "a line per frame");

    let mut track_ids = Vec::new();
    let mut matched_frames = 0;
    for (index, line) in lines.iter().enumerate() {
        let on_screen = (walkup.first_frame..=walkup.last_frame).contains(&index);
        if !on_screen {
            assert!(
                line.faces.is_empty(),
                "frame {index}: nobody is on screen, got {:?}",
                line.faces
            );
            continue;
        }
        assert_eq!(line.faces.len(), 1, "frame {index}: one face on screen");
        let face = &line.faces[0];
        track_ids.push(face.track_id.expect("tracked"));
        if let Some(m) = &face.matched {
            assert_eq!(m.id, "person-b", "frame {index}: never anyone else");
            matched_frames += 1;
        }
    }
    track_ids.dedup();
    assert_eq!(
        track_ids.len(),
        1,
        "one track id for the whole walk-up, got {track_ids:?}"
    );
    let on_screen = walkup.last_frame - walkup.first_frame + 1;
    assert!(
        matched_frames * 10 >= on_screen * 9,
        "recognised on {matched_frames} of {on_screen} frames"
    );
}

#[test]
fn a_malformed_description_is_reported_by_gst_launch() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new("gst-launch-1.0")
        .args([
            "fakesrc",
            "!",
            "fgdetect",
            "input-size=huge",
            "!",
            "fakesink",
        ])
        .envs(plugin_env(scratch.path()))
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("input-size"), "{stderr}");
}
