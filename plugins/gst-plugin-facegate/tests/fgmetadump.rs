// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgmetadump in a harness, on buffers carrying synthetic face metadata: one JSON line per buffer
//! in the shape facegate-meta documents, embeddings only when asked for, buffers untouched, bad locations.

mod common;

use std::path::Path;

use facegate_meta::{Match, PixelRect, Track};
use gst::prelude::*;
use gst_check::Harness;
use serde_json::{Value, json};

const SIZE: (u32, u32) = (320, 240);
const LANDMARKS: [[f32; 2]; 5] = [
    [110.5, 60.0],
    [130.5, 60.0],
    [120.0, 70.25],
    [112.0, 80.0],
    [128.0, 80.0],
];

fn dumper(location: &Path, embeddings: bool) -> Harness {
    let (mut h, _element, _bus) = common::harness(
        "fgmetadump",
        &[
            ("location", &location.to_str().unwrap()),
            ("embeddings", &embeddings),
        ],
    );
    h.set_src_caps(common::blank_frame("RGBx", SIZE.0, SIZE.1).caps);
    h
}

/// Three frames: no faces and no timestamp; one fully described face; a detection-only face
/// beside a face region another element added, and a region that is not a face.
fn frames() -> Vec<gst::Buffer> {
    let frame = common::blank_frame("RGBx", SIZE.0, SIZE.1);
    let empty = frame.buffer_at(None);

    let mut full = frame.buffer_at(common::pts(1));
    {
        let buf = full.get_mut().unwrap();
        facegate_meta::add_face(buf, (100, 50, 40, 45), 0.93, &LANDMARKS, "yunet@sha256:00");
        facegate_meta::for_each_face_mut(buf, |face| {
            face.set_track(Track { id: 7, age: 3 });
            face.set_embedding("sface@sha256:11", &[0.6, 0.8]);
            face.set_match(&Match {
                id: "p-001".into(),
                label: "Ada".into(),
                similarity: 0.71,
                generation: 4,
            });
        });
    }

    let mut mixed = frame.buffer_at(common::pts(2));
    {
        let buf = mixed.get_mut().unwrap();
        let detected: PixelRect = (10, 20, 30, 40);
        facegate_meta::add_face(buf, detected, 0.5, &LANDMARKS, "yunet@sha256:00");
        gst_video::VideoRegionOfInterestMeta::add(buf, "face", (200, 100, 50, 60));
        gst_video::VideoRegionOfInterestMeta::add(buf, "car", (0, 0, 100, 100));
    }
    vec![empty, full, mixed]
}

fn landmarks_json() -> Value {
    json!([
        [110.5, 60.0],
        [130.5, 60.0],
        [120.0, 70.25],
        [112.0, 80.0],
        [128.0, 80.0]
    ])
}

/// The lines facegate-meta documents for `frames()`.
fn expected(embeddings: bool) -> Vec<Value> {
    let mut full_face = json!({
        "bbox": [100, 50, 40, 45], "score": 0.93, "landmarks": landmarks_json(), "track_id": 7,
        "match": {"id": "p-001", "label": "Ada", "similarity": 0.71},
        "liveness": null
    });
    if embeddings {
        full_face["embedding"] = json!([0.6, 0.8]);
    }
    vec![
        json!({"pts_ns": null, "width": 320, "height": 240, "faces": []}),
        json!({"pts_ns": 33_333_333, "width": 320, "height": 240, "faces": [full_face]}),
        json!({"pts_ns": 66_666_666, "width": 320, "height": 240, "faces": [
            {"bbox": [10, 20, 30, 40], "score": 0.5, "landmarks": landmarks_json(), "track_id": null, "match": null, "liveness": null},
            {"bbox": [200, 100, 50, 60], "score": null, "landmarks": [], "track_id": null, "match": null, "liveness": null}
        ]}),
    ]
}

/// Pushes `frames()` and checks the file after each: one more complete line per buffer.
fn dump(embeddings: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().join("faces.jsonl");
    let mut h = dumper(&location, embeddings);
    for (n, buffer) in frames().into_iter().enumerate() {
        common::push_pull(&mut h, buffer);
        // Each line is flushed as its frame passes, so a follower of the file sees it at once.
        let text = std::fs::read_to_string(&location).unwrap();
        assert!(text.ends_with('\n'), "line {} is complete", n + 1);
        assert_eq!(text.lines().count(), n + 1, "{text}");
    }
    drop(h);
    let text = std::fs::read_to_string(&location).unwrap();
    text.lines().map(str::to_owned).collect()
}

fn check_lines(lines: &[String], embeddings: bool) {
    let expected = expected(embeddings);
    assert_eq!(
        lines.len(),
        expected.len(),
        "one line per buffer: {lines:?}"
    );
    for (n, (line, expected)) in lines.iter().zip(expected).enumerate() {
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}: {line}", n + 1));
        assert_eq!(parsed, expected, "line {}", n + 1);
    }
    // Keys in the documented order.
    let line = &lines[1];
    let order = [
        "\"pts_ns\"",
        "\"width\"",
        "\"height\"",
        "\"faces\"",
        "\"bbox\"",
        "\"score\"",
        "\"landmarks\"",
        "\"track_id\"",
    ]
    .into_iter()
    .chain(embeddings.then_some("\"embedding\""))
    .chain(["\"match\""])
    .map(|key| {
        line.find(key)
            .unwrap_or_else(|| panic!("{key} missing in {line}"))
    })
    .collect::<Vec<_>>();
    assert!(
        order.is_sorted(),
        "keys out of the documented order: {line}"
    );
}

#[test]
fn one_line_per_buffer_in_the_documented_shape() {
    let lines = dump(false);
    check_lines(&lines, false);
    assert!(!lines.iter().any(|l| l.contains("embedding")));
}

#[test]
fn embeddings_are_written_only_when_asked_for() {
    check_lines(&dump(true), true);
}

#[test]
fn buffers_pass_through_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = dumper(&dir.path().join("faces.jsonl"), false);
    for buffer in frames() {
        let before = common::faces(&buffer);
        let rois = common::rois(&buffer);
        let (pts, data) = (buffer.pts(), buffer.map_readable().unwrap().to_vec());
        let pointer = buffer.as_ptr();
        let out = common::push_pull(&mut h, buffer);
        assert_eq!(out.as_ptr(), pointer, "the very same buffer comes out");
        assert_eq!(out.pts(), pts);
        assert_eq!(*out.map_readable().unwrap(), *data);
        assert_eq!(common::faces(&out), before);
        assert_eq!(common::rois(&out), rois);
    }
}

#[test]
fn a_location_that_cannot_be_created_fails_the_state_change_naming_it() {
    let location = "/nonexistent-dir/x.json";
    let element = common::element("fgmetadump", &[("location", &location)]);
    let error = common::start_error(&element);
    assert!(error.contains(location), "{error}");
}

#[test]
fn properties_have_the_documented_defaults() {
    let element = common::element("fgmetadump", &[]);
    assert_eq!(element.property::<String>("location"), "-");
    assert!(!element.property::<bool>("embeddings"));
    assert!(!common::mutable_in_playing(&element, "location"));
    assert!(common::mutable_in_playing(&element, "embeddings"));
    // Unsetting the location means standard output again.
    element.set_property("location", "/tmp/x.json");
    element.set_property("location", None::<&str>);
    assert_eq!(element.property::<String>("location"), "-");
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fgmetadump");
}
