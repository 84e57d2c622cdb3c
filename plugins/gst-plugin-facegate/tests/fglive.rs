// SPDX-License-Identifier: MIT OR Apache-2.0
//! fglive in a harness: buffers without faces pass untouched, untracked faces get no verdict, a
//! tracked face on a real photo is `undecided` until `min-frames` and `live` after, and
//! fgmetadump writes the verdict; a missing model, one without its card, or a model of another
//! kind fails the state change naming the file; the shipped classifier warns that it is not
//! cleared for commercial use.

mod common;

use std::path::{Path, PathBuf};

use facegate_meta::{LivenessVerdict, Track};
use gst::prelude::*;
use serde_json::Value;

const PHOTO: &str = "person_b_1.jpg";
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const PAD_MODEL_FILE: &str = "fr_liveness.onnx";
const LANDMARKS: [[f32; 2]; 5] = [
    [300.0, 200.0],
    [340.0, 200.0],
    [320.0, 225.0],
    [305.0, 250.0],
    [335.0, 250.0],
];

fn pad_model() -> PathBuf {
    facegate_dev_assets::model(PAD_MODEL_FILE).unwrap()
}

fn start_error_with_model(path: &Path) -> String {
    common::init_with_models();
    let element = common::element("fglive", &[("model", &path.to_str().unwrap())]);
    common::start_error(&element)
}

/// A copy of `model` in a scratch directory as `file`, with `card` (a card's text) beside it.
fn model_with_card(model: &Path, file: &str, card: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::copy(model, &path).unwrap();
    if let Some(card) = card {
        std::fs::write(path.with_extension("card.toml"), card).unwrap();
    }
    (dir, path)
}

fn shipped_card() -> String {
    std::fs::read_to_string(pad_model().with_extension("card.toml"))
        .expect("the set-up installs the classifier's card beside it")
}

#[test]
fn a_buffer_without_faces_passes_untouched() {
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let (mut h, _element, bus) = common::harness("fglive", &[]);
    h.set_src_caps(frame.caps.clone());
    let out = common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
    assert!(common::faces(&out).is_empty());
    let (input, output) = (
        frame.buffer.map_readable().unwrap(),
        out.map_readable().unwrap(),
    );
    assert!(
        input.as_slice() == output.as_slice(),
        "the pixels are not changed"
    );
    assert!(common::message_texts(&bus, gst::MessageType::Error).is_empty());
}

#[test]
fn an_untracked_face_gets_no_verdict() {
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let (mut h, _element, _bus) = common::harness("fglive", &[("min-frames", &3u32)]);
    h.set_src_caps(frame.caps.clone());
    for n in 0..3 {
        let mut buffer = frame.buffer_at(common::pts(n));
        facegate_meta::add_face(
            buffer.get_mut().unwrap(),
            (280, 170, 80, 100),
            0.9,
            &LANDMARKS,
            "yunet@test",
        );
        let faces = common::faces(&common::push_pull(&mut h, buffer));
        assert_eq!(faces.len(), 1);
        assert_eq!(
            faces[0].liveness, None,
            "frame {n}: no track, no history to judge"
        );
    }
}

#[test]
fn a_tracked_face_is_undecided_until_min_frames_then_live_and_fgmetadump_says_so() {
    common::init_with_models();
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("faces.jsonl");
    let (mut h, bus) = common::harness_parse(&format!(
        "fgdetect model={} ! fgtrack ! fglive min-frames=3 ! fgmetadump location={}",
        common::detector_model().display(),
        dump.display()
    ));
    h.set_src_caps(frame.caps.clone());
    let verdicts: Vec<_> = (0..6)
        .map(|n| {
            let faces = common::faces(&common::push_pull(&mut h, frame.buffer_at(common::pts(n))));
            assert_eq!(faces.len(), 1, "frame {n}: the photo's one face");
            let liveness = faces[0]
                .liveness
                .clone()
                .unwrap_or_else(|| panic!("frame {n}: a tracked face carries facegate-liveness"));
            assert!((0.0..=1.0).contains(&liveness.score), "{liveness:?}");
            liveness.verdict
        })
        .collect();
    use LivenessVerdict::{Live, Undecided};
    assert_eq!(verdicts, [Undecided, Undecided, Live, Live, Live, Live]);
    assert!(common::message_texts(&bus, gst::MessageType::Error).is_empty());
    drop(h);

    let lines: Vec<Value> = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for (n, line) in lines.iter().enumerate() {
        let liveness = &line["faces"][0]["liveness"];
        let expected = if n < 2 { "undecided" } else { "live" };
        assert_eq!(liveness["verdict"], expected, "line {n}: {line}");
        assert!(liveness["score"].is_f64(), "line {n}: {line}");
        assert!(liveness["cue"].is_string(), "line {n}: {line}");
    }
}

#[test]
fn a_track_renumbered_by_a_new_stream_starts_over() {
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let (mut h, _element, _bus) = common::harness("fglive", &[("min-frames", &3u32)]);
    h.set_src_caps(frame.caps.clone());
    let push = |h: &mut gst_check::Harness, n: u64| {
        let mut buffer = frame.buffer_at(common::pts(n));
        let buf = buffer.get_mut().unwrap();
        facegate_meta::add_face(buf, (280, 170, 80, 100), 0.9, &LANDMARKS, "yunet@test");
        facegate_meta::for_each_face_mut(buf, |face| {
            face.set_track(Track {
                id: 1,
                age: n as u32,
            })
        });
        common::faces(&common::push_pull(h, buffer))[0]
            .liveness
            .clone()
            .unwrap()
            .verdict
    };
    assert_eq!(push(&mut h, 0), LivenessVerdict::Undecided);
    assert_eq!(push(&mut h, 1), LivenessVerdict::Undecided);
    assert_eq!(push(&mut h, 2), LivenessVerdict::Live);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    assert_eq!(
        push(&mut h, 3),
        LivenessVerdict::Undecided,
        "track 1 after a flush is somebody else"
    );
}

#[test]
fn a_missing_model_fails_the_state_change_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-pad.onnx");
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn a_model_without_its_card_fails_naming_the_card() {
    let (_dir, path) = model_with_card(&pad_model(), PAD_MODEL_FILE, None);
    let error = start_error_with_model(&path);
    let card = path.with_extension("card.toml");
    assert!(error.contains(card.to_str().unwrap()), "{error}");
    assert!(error.contains("needs its card beside it"), "{error}");
}

#[test]
fn a_model_of_another_kind_fails_naming_the_file() {
    common::init_with_models();
    let detector = common::detector_model();
    let sha256 = facegate_vision::runtime::model_sha256(&detector).unwrap();
    let shipped = shipped_card();
    let card = shipped
        .lines()
        .map(|line| {
            if line.starts_with("file = ") {
                "file = \"pad.onnx\"".to_owned()
            } else if line.starts_with("sha256 = ") {
                format!("sha256 = \"{sha256}\"")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let (_dir, path) = model_with_card(&detector, "pad.onnx", Some(&card));
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("not the expected kind"), "{error}");
}

#[test]
fn a_card_for_another_build_fails_naming_the_card() {
    let card = shipped_card().replace("sha256 = \"afa783b7", "sha256 = \"00000000");
    let (_dir, path) = model_with_card(&pad_model(), PAD_MODEL_FILE, Some(&card));
    let error = start_error_with_model(&path);
    assert!(
        error.contains(path.with_extension("card.toml").to_str().unwrap()),
        "{error}"
    );
    assert!(error.contains("the file has afa783b7"), "{error}");
}

#[test]
fn the_shipped_classifier_warns_it_is_not_cleared_for_fares() {
    common::init_with_models();
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let model = pad_model();
    for (model, warned) in [(Some(model.to_str().unwrap()), true), (None, false)] {
        let properties: Vec<(&str, &dyn ToValue)> = match &model {
            Some(path) => vec![("model", path)],
            None => vec![],
        };
        let (mut h, _element, bus) = common::harness("fglive", &properties);
        h.set_src_caps(frame.caps.clone());
        common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
        let warnings = common::message_texts(&bus, gst::MessageType::Warning);
        let says = warnings
            .iter()
            .any(|w| w.contains("not cleared for commercial use"));
        assert_eq!(says, warned, "model {model:?}: {warnings:?}");
    }
}

#[test]
fn properties_are_documented_with_their_defaults() {
    let element = common::element("fglive", &[]);
    assert_eq!(common::uint_spec(&element, "min-frames"), (3, 300, 5));
    for (cue, on) in [
        ("screen", true),
        ("paper-margin", true),
        ("print", false),
        ("motion", true),
    ] {
        assert_eq!(element.property::<bool>(cue), on, "{cue}'s default");
        assert!(common::mutable_in_playing(&element, cue), "{cue}");
    }
    assert!(common::mutable_in_playing(&element, "min-frames"));
    assert_eq!(element.property::<Option<String>>("model"), None);
    assert!(!common::mutable_in_playing(&element, "model"));
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fglive");
}
