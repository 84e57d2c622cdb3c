// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgmatch in a harness behind the real detector and embedder, against galleries built here from
//! real embeddings: matches and their bus messages, impostors, live reloads without dropping
//! frames, a broken manifest, missing galleries and a gallery of another model.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{HEIGHT, WIDTH};
use facegate_meta::{Embedding, FaceRecord, FrameMessage, Match};
use facegate_vision::gallery::Gallery;
use facegate_vision::match_rule::{self, MatchRule};
use gst::prelude::*;
use gst_check::Harness;

const FORMAT: &str = "I420";

/// A gallery in `dir` holding `people` (id, label, embedding), committed as generation 1.
fn gallery_with(dir: &Path, people: &[(&str, &str, &Embedding)]) -> Gallery {
    let model = &people[0].2.model;
    let mut gallery = Gallery::create(dir, model, 128).unwrap();
    for (id, label, embedding) in people {
        gallery
            .enroll(id, label, &embedding.model, &embedding.data, false)
            .unwrap();
    }
    assert_eq!(gallery.commit().unwrap(), 1);
    gallery
}

/// The gate's chain into fgmatch (with `options`) on `dir`, ready for 640x480 frames.
fn matcher(dir: &Path, options: &str) -> (Harness, gst::Bus) {
    common::init_with_models();
    let (mut h, bus) = common::harness_parse(&format!(
        "fgdetect ! fgembed ! fgmatch gallery=\"{}\" {options}",
        dir.display()
    ));
    h.set_src_caps(common::blank_frame(FORMAT, WIDTH, HEIGHT).caps);
    (h, bus)
}

fn photo(name: &str) -> common::Frame {
    common::photo_frame(name, FORMAT, WIDTH, HEIGHT)
}

/// Person B enrolled alone (generation 1) in a gallery, a matcher on it with `options`, and
/// person B's other photo, matched once already (as frame 0).
struct PersonBMatched {
    model: String,
    writer: Gallery,
    h: Harness,
    bus: gst::Bus,
    frame: common::Frame,
}

fn person_b_matched(dir: &Path, options: &str) -> PersonBMatched {
    let b = common::photo_embedding("person_b_1.jpg");
    let writer = gallery_with(dir, &[("p-b", "Person B", &b)]);
    let (mut h, bus) = matcher(dir, options);
    let frame = photo("person_b_2.jpg");
    assert!(push_and_match(&mut h, &frame, 0).is_some());
    PersonBMatched {
        model: b.model,
        writer,
        h,
        bus,
        frame,
    }
}

/// The one face of a matched frame; checks it was embedded (and so searched).
fn one_face(buffer: &gst::BufferRef) -> FaceRecord {
    let faces = common::faces(buffer);
    assert_eq!(faces.len(), 1, "{faces:?}");
    let face = faces.into_iter().next().unwrap();
    assert!(face.embedding.is_some(), "the face was embedded");
    face
}

fn generation(h: &mut Harness) -> u64 {
    h.find_element("fgmatch")
        .unwrap()
        .property::<u64>("generation")
}

/// Pushes `frame` (numbered from `n`) until fgmatch searches `wanted`; returns the next number.
fn push_until_generation(h: &mut Harness, frame: &common::Frame, mut n: u64, wanted: u64) -> u64 {
    let start = Instant::now();
    while generation(h) != wanted {
        assert!(
            start.elapsed() < common::PATIENCE,
            "generation {wanted} not taken"
        );
        push_and_match(h, frame, n);
        n += 1;
    }
    n
}

fn effective_threshold(h: &mut Harness) -> f64 {
    h.find_element("fgmatch")
        .unwrap()
        .property::<f64>("effective-threshold")
}

/// `count` made-up people of `model`: unit vectors spread over the sphere (seeded, so every run
/// enrols the same ones), as different from any real face as random directions are.
fn distractors(model: &str, count: usize) -> Vec<(String, Embedding)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64*: deterministic, no dependency for a test.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..count)
        .map(|n| {
            let mut data: Vec<f32> = (0..128).map(|_| next()).collect();
            let norm = data.iter().map(|v| v * v).sum::<f32>().sqrt();
            data.iter_mut().for_each(|v| *v /= norm);
            let embedding = Embedding {
                model: model.to_owned(),
                data,
            };
            (format!("d-{n:04}"), embedding)
        })
        .collect()
}

/// Enrols `count` [`distractors`] and commits; returns the new generation.
fn commit_distractors(writer: &mut Gallery, model: &str, count: usize) -> u64 {
    for (id, embedding) in distractors(model, count) {
        writer
            .enroll(&id, "Distractor", &embedding.model, &embedding.data, false)
            .unwrap();
    }
    writer.commit().unwrap()
}

/// What the shipped calibration of the default embedder gives for `size` people.
fn calibrated_threshold(model: &str, size: u64) -> f64 {
    let calibration = match_rule::find_calibration(&match_rule::calibration_dir(), model)
        .expect("the default embedder's calibration (models/calibration)");
    MatchRule::default()
        .standing(&calibration, size)
        .unwrap()
        .threshold
}

#[test]
fn the_threshold_follows_the_gallery_size_at_every_generation() {
    let dir = tempfile::tempdir().unwrap();
    let PersonBMatched {
        model,
        mut writer,
        mut h,
        frame,
        ..
    } = person_b_matched(dir.path(), "poll-interval=20");
    assert_eq!(effective_threshold(&mut h), calibrated_threshold(&model, 1));

    let alone = push_and_match(&mut h, &frame, 1).expect("person B matched among one");
    assert!(
        alone.similarity >= calibrated_threshold(&model, 1),
        "{alone:?}"
    );

    // A thousand more people: the threshold a stranger must not reach rises, past what person
    // B's other photo scores (0.77): the gate no longer takes it for them.
    assert_eq!(commit_distractors(&mut writer, &model, 1_000), 2);
    let n = push_until_generation(&mut h, &frame, 2, 2);
    let larger = effective_threshold(&mut h);
    assert_eq!(larger, calibrated_threshold(&model, 1_001));
    assert!(larger > alone.similarity, "{larger} against {alone:?}");
    let matched = push_and_match(&mut h, &frame, n);
    assert!(matched.is_none(), "{matched:?}");
}

#[test]
fn the_reload_action_takes_a_new_generation_without_waiting_for_the_poll() {
    let dir = tempfile::tempdir().unwrap();
    let PersonBMatched {
        model,
        mut writer,
        mut h,
        frame,
        ..
    } = person_b_matched(dir.path(), "poll-interval=3600000");
    assert_eq!(commit_distractors(&mut writer, &model, 3), 2);
    // An hour's poll: frames alone do not see it.
    for n in 1..4 {
        push_and_match(&mut h, &frame, n);
    }
    assert_eq!(generation(&mut h), 1);
    h.find_element("fgmatch")
        .unwrap()
        .emit_by_name::<()>("reload", &[]);
    let n = push_until_generation(&mut h, &frame, 4, 2);
    let matched = push_and_match(&mut h, &frame, n).expect("person B still matched");
    assert_eq!(matched.generation, 2);
}

#[test]
fn min_threshold_and_max_false_grant_rate_set_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &b)]);
    let (mut h, _bus) = matcher(dir.path(), "min-threshold=0.99");
    assert_eq!(effective_threshold(&mut h), 0.99);
    assert_eq!(push_and_match(&mut h, &photo("person_b_2.jpg"), 0), None);

    let (mut h, _bus) = matcher(
        dir.path(),
        "min-threshold=0.35 max-false-grant-rate=0.000001",
    );
    let calibration =
        match_rule::find_calibration(&match_rule::calibration_dir(), &b.model).unwrap();
    let strict = calibration.threshold_for(1, 1e-6).unwrap().threshold;
    assert_eq!(effective_threshold(&mut h), strict.max(0.35));
}

#[test]
fn a_face_two_enrolled_people_fit_equally_is_not_matched() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::photo_embedding("person_b_1.jpg");
    // The same photo enrolled twice under two ids (a duplicate enrolment, or twins).
    gallery_with(
        dir.path(),
        &[("p-b", "Person B", &b), ("p-b2", "Person B again", &b)],
    );
    common::init_with_models();
    let (mut h, bus) = common::harness_parse(&format!(
        "fgdetect ! fgembed ! fgmatch gallery=\"{}\" post-frames=true",
        dir.path().display()
    ));
    h.set_src_caps(common::blank_frame(FORMAT, WIDTH, HEIGHT).caps);
    assert_eq!(push_and_match(&mut h, &photo("person_b_2.jpg"), 0), None);
    let messages: Vec<gst::Structure> =
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
            .filter_map(|message| message.structure().map(|s| s.to_owned()))
            .collect();
    assert!(
        messages
            .iter()
            .all(|s| s.name() != facegate_meta::MATCH_MESSAGE),
        "no match message: {messages:?}"
    );
    let frame = messages
        .iter()
        .find(|s| s.name() == facegate_meta::FRAME_MESSAGE)
        .map(|s| FrameMessage::from_structure(s).unwrap())
        .expect("a frame message");
    let face = &frame.faces[0];
    let best = face.best.as_ref().unwrap().similarity;
    assert!(best > 0.6, "{face:?}");
    let runner_up = face
        .runner_up_similarity
        .expect("the other id is the runner-up");
    assert!((best - runner_up).abs() < 1e-6, "{face:?}");
    assert!(!face.matched);

    // min-margin=0 takes the best of the two, and says so on the bus.
    let (mut h, bus) = matcher(dir.path(), "min-margin=0");
    assert!(push_and_match(&mut h, &photo("person_b_2.jpg"), 0).is_some());
    assert_eq!(
        common::element_messages(&bus, facegate_meta::MATCH_MESSAGE).len(),
        1
    );
}

#[test]
fn a_gallery_whose_model_has_no_calibration_is_refused_at_start_unless_threshold_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut gallery = Gallery::create(dir.path(), SYNTHETIC_MODEL, 128).unwrap();
    let mut unit = vec![0.0f32; 128];
    unit[0] = 1.0;
    gallery
        .enroll("x-1", "X", SYNTHETIC_MODEL, &unit, false)
        .unwrap();
    gallery.commit().unwrap();
    let gallery_dir = dir.path().to_str().unwrap();
    let element = common::element("fgmatch", &[("gallery", &gallery_dir)]);
    let error = common::start_error(&element);
    assert!(
        error.contains("no calibration for model synthetic"),
        "{error}"
    );
    assert!(error.contains("set fgmatch's threshold"), "{error}");

    let fixed = common::element(
        "fgmatch",
        &[("gallery", &gallery_dir), ("threshold", &0.5f64)],
    );
    fixed.set_state(gst::State::Paused).unwrap();
    assert_eq!(fixed.property::<f64>("effective-threshold"), 0.5);
    fixed.set_state(gst::State::Null).unwrap();
}

#[test]
fn an_enrolled_face_matches_and_is_announced_on_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    let (mut h, bus) = matcher(dir.path(), "");
    assert_eq!(generation(&mut h), 1);
    let threshold = effective_threshold(&mut h);
    assert_eq!(threshold, calibrated_threshold(&enrolled.model, 1));
    assert!(
        threshold > match_rule::DEFAULT_MIN_THRESHOLD,
        "one person: the calibration asks for more than the floor"
    );

    let pts = common::pts(7);
    let out = common::push_pull(&mut h, photo("person_b_2.jpg").buffer_at(pts));
    let face = one_face(&out);
    let matched = face
        .matched
        .expect("person B is recognised in another photo");
    assert_eq!(
        (matched.id.as_str(), matched.label.as_str()),
        ("p-b", "Person B")
    );
    assert_eq!(matched.generation, 1);
    // OpenCV gives 0.77 for this pair; impostors stay below 0.27.
    assert!(matched.similarity > threshold, "{matched:?}");
    assert!(
        matched.similarity > 0.6 && matched.similarity <= 1.0,
        "{matched:?}"
    );

    let messages = common::element_messages(&bus, facegate_meta::MATCH_MESSAGE);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.get::<&str>("id").unwrap(), "p-b");
    assert_eq!(m.get::<&str>("label").unwrap(), "Person B");
    assert_eq!(m.get::<f64>("similarity").unwrap(), matched.similarity);
    assert_eq!(m.get::<u64>("generation").unwrap(), 1);
    let bbox = (
        m.get::<u32>("x").unwrap(),
        m.get::<u32>("y").unwrap(),
        m.get::<u32>("width").unwrap(),
        m.get::<u32>("height").unwrap(),
    );
    assert_eq!(bbox, face.bbox, "the message says where the face is");
    assert_eq!(m.get::<u64>("pts").unwrap(), pts.unwrap().nseconds());
    // The harness's segment starts at 0, so running time is the timestamp.
    assert_eq!(
        m.get::<u64>("running-time").unwrap(),
        pts.unwrap().nseconds()
    );
    assert!(!m.has_field("track-id"), "no fgtrack, no track id");
}

#[test]
fn an_impostor_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    let (mut h, bus) = matcher(dir.path(), "");
    let out = common::push_pull(&mut h, photo("impostor_2.jpg").buffer_at(common::pts(0)));
    assert_eq!(one_face(&out).matched, None);
    assert!(common::element_messages(&bus, facegate_meta::MATCH_MESSAGE).is_empty());
}

#[test]
fn only_the_enrolled_one_of_two_faces_matches() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    let (mut h, bus) = matcher(dir.path(), "");
    let frame = common::two_photo_frame("impostor_2.jpg", "person_b_2.jpg", FORMAT, WIDTH, HEIGHT);
    let out = common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
    let faces = common::faces(&out);
    assert_eq!(faces.len(), 2);
    let matched: Vec<&FaceRecord> = faces.iter().filter(|f| f.matched.is_some()).collect();
    assert_eq!(matched.len(), 1, "{faces:?}");
    let face = matched[0];
    assert!(
        face.bbox.0 >= WIDTH / 2,
        "the match is person B, on the right: {face:?}"
    );
    let messages = common::element_messages(&bus, facegate_meta::MATCH_MESSAGE);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].get::<u32>("x").unwrap(), face.bbox.0);
    assert_eq!(messages[0].get::<u32>("width").unwrap(), face.bbox.2);
}

#[test]
fn the_message_names_the_track() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    common::init_with_models();
    let (mut h, bus) = common::harness_parse(&format!(
        "fgdetect ! fgtrack ! fgembed ! fgmatch gallery=\"{}\"",
        dir.path().display()
    ));
    let frame = photo("person_b_2.jpg");
    h.set_src_caps(frame.caps.clone());
    let track = (0..2)
        .map(|n| {
            one_face(&common::push_pull(&mut h, frame.buffer_at(common::pts(n))))
                .track
                .unwrap()
        })
        .last()
        .unwrap();
    let messages = common::element_messages(&bus, facegate_meta::MATCH_MESSAGE);
    assert_eq!(messages.len(), 2, "one per matched frame");
    for m in &messages {
        assert_eq!(m.get::<u64>("track-id").unwrap(), track.id);
    }
}

#[test]
fn the_threshold_property_decides() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    let (mut h, bus) = matcher(dir.path(), "threshold=0.99");
    let out = common::push_pull(&mut h, photo("person_b_2.jpg").buffer_at(common::pts(0)));
    assert_eq!(one_face(&out).matched, None);
    assert!(common::element_messages(&bus, facegate_meta::MATCH_MESSAGE).is_empty());
}

#[test]
fn top_k_lists_the_runners_up() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::photo_embedding("person_b_1.jpg");
    let a = common::photo_embedding("person_a_1.jpg");
    gallery_with(
        dir.path(),
        &[("p-a", "Person A", &a), ("p-b", "Person B", &b)],
    );
    let (mut h, bus) = matcher(dir.path(), "top-k=5");
    common::push_pull(&mut h, photo("person_b_2.jpg").buffer_at(common::pts(0)));
    let messages = common::element_messages(&bus, facegate_meta::MATCH_MESSAGE);
    assert_eq!(messages.len(), 1);
    let ids: Vec<String> = messages[0]
        .get::<gst::Array>("candidate-ids")
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["p-b", "p-a"],
        "best first, capped at the gallery's size"
    );
    let similarities: Vec<f64> = messages[0]
        .get::<gst::Array>("candidate-similarities")
        .unwrap()
        .iter()
        .map(|v| v.get::<f64>().unwrap())
        .collect();
    assert!(similarities[0] > similarities[1], "{similarities:?}");
    assert!((similarities[0] - messages[0].get::<f64>("similarity").unwrap()).abs() < 1e-6);
}

/// Every `facegate-frame` message on the bus so far, read through the contract.
fn frame_messages(bus: &gst::Bus) -> Vec<FrameMessage> {
    common::element_messages(bus, facegate_meta::FRAME_MESSAGE)
        .iter()
        .map(|s| FrameMessage::from_structure(s).expect("a well-formed facegate-frame message"))
        .collect()
}

#[test]
fn no_frame_messages_unless_post_frames_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    let (mut h, bus) = matcher(dir.path(), "");
    one_face(&common::push_pull(
        &mut h,
        photo("person_b_2.jpg").buffer_at(common::pts(0)),
    ));
    assert_eq!(
        common::element_messages(&bus, facegate_meta::MATCH_MESSAGE).len(),
        1,
        "the match message is still posted"
    );
    assert!(common::element_messages(&bus, facegate_meta::FRAME_MESSAGE).is_empty());
}

#[test]
fn post_frames_posts_one_frame_message_per_frame_with_every_face() {
    let dir = tempfile::tempdir().unwrap();
    let enrolled = common::photo_embedding("person_b_1.jpg");
    gallery_with(dir.path(), &[("p-b", "Person B", &enrolled)]);
    common::init_with_models();
    let (mut h, bus) = common::harness_parse(&format!(
        "fgdetect ! fgtrack ! fgembed ! fgmatch gallery=\"{}\" post-frames=true",
        dir.path().display()
    ));
    let two = common::two_photo_frame("impostor_2.jpg", "person_b_2.jpg", FORMAT, WIDTH, HEIGHT);
    h.set_src_caps(two.caps.clone());
    let out = common::push_pull(&mut h, two.buffer_at(common::pts(3)));
    let grey = common::grey_frame(FORMAT, WIDTH, HEIGHT);
    common::push_pull(&mut h, grey.buffer_at(common::pts(4)));

    let frames = frame_messages(&bus);
    assert_eq!(frames.len(), 2, "one per frame, faces or not: {frames:?}");
    let first = &frames[0];
    assert_eq!((first.width, first.height), (WIDTH, HEIGHT));
    assert_eq!(first.generation, 1);
    assert_eq!(first.pts, common::pts(3));
    // The harness's segment starts at 0, so running time is the timestamp.
    assert_eq!(first.running_time, common::pts(3));

    let records = common::faces(&out);
    assert_eq!(first.faces.len(), 2, "{first:?}");
    for (face, record) in first.faces.iter().zip(&records) {
        assert_eq!(face.bbox, record.bbox);
        assert_eq!(face.track_id, record.track.map(|t| t.id));
        assert!(face.track_id.is_some(), "fgtrack runs upstream");
        assert_eq!(face.matched, record.matched.is_some());
        let best = face
            .best
            .as_ref()
            .expect("a one-person gallery always has a best candidate");
        assert_eq!(best.id, "p-b");
    }
    let matched: Vec<_> = first.faces.iter().filter(|f| f.matched).collect();
    assert_eq!(matched.len(), 1, "only person B matches: {first:?}");
    assert!(matched[0].bbox.0 >= WIDTH / 2, "person B is on the right");
    let impostor = first.faces.iter().find(|f| !f.matched).unwrap();
    assert!(
        impostor.best.as_ref().unwrap().similarity < matched[0].best.as_ref().unwrap().similarity,
        "{first:?}"
    );

    assert!(frames[1].faces.is_empty(), "nobody on the grey frame");
    assert_eq!(frames[1].pts, common::pts(4));
}

/// The match on a frame of `photo` pushed through `h` (which must give exactly one frame back).
fn push_and_match(h: &mut Harness, frame: &common::Frame, n: u64) -> Option<Match> {
    one_face(&common::push_pull(h, frame.buffer_at(common::pts(n)))).matched
}

#[test]
fn a_new_generation_is_taken_while_frames_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::photo_embedding("person_b_1.jpg");
    let a = common::photo_embedding("person_a_1.jpg");
    let mut writer = gallery_with(dir.path(), &[("p-b", "Person B", &b)]);
    let (mut h, _bus) = matcher(dir.path(), "poll-interval=20");
    let frame = photo("person_b_2.jpg");
    let mut pushed = 0u64;
    for _ in 0..3 {
        let matched = push_and_match(&mut h, &frame, pushed).expect("matches generation 1");
        assert_eq!((matched.id.as_str(), matched.generation), ("p-b", 1));
        pushed += 1;
    }

    // Commit generation 2 (B removed, A enrolled) from another thread while frames flow.
    let (done, commit) = std::sync::mpsc::channel();
    let committer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(writer.remove("p-b").unwrap());
        writer
            .enroll("p-a", "Person A", &a.model, &a.data, false)
            .unwrap();
        let generation = writer.commit().unwrap();
        done.send((generation, Instant::now())).unwrap();
    });
    let mut committed: Option<(u64, Instant)> = None;
    let mut switched_at = None;
    loop {
        let matched = push_and_match(&mut h, &frame, pushed);
        pushed += 1;
        match &matched {
            Some(m) if m.id == "p-b" => {
                assert!(switched_at.is_none(), "B matched again after the switch");
                assert_eq!(m.generation, 1);
            }
            Some(m) => panic!("person B's photo matched {m:?}"),
            None => {
                switched_at.get_or_insert(pushed);
            }
        }
        if committed.is_none() {
            committed = commit.try_recv().ok();
            assert!(
                committed.is_some() || !committer.is_finished(),
                "the commit failed"
            );
        }
        if let (Some((new_generation, at)), Some(_)) = (committed, switched_at) {
            assert_eq!(generation(&mut h), new_generation);
            assert!(at.elapsed() < common::PATIENCE);
            break;
        }
        if let Some((_, at)) = committed {
            assert!(
                at.elapsed() < common::PATIENCE,
                "still matching the removed person {:?} after the commit",
                at.elapsed()
            );
        }
    }
    committer.join().unwrap();
    assert_eq!(generation(&mut h), 2);
    // Every frame pushed came out (push_pull checks each), and nothing is left queued.
    assert_eq!(u64::from(h.buffers_received()), pushed);
    assert_eq!(h.buffers_in_queue(), 0);
    // The person enrolled in generation 2 is recognised.
    let a_frame = photo("person_a_2.jpg");
    let matched = push_and_match(&mut h, &a_frame, pushed).expect("person A is in generation 2");
    assert_eq!((matched.id.as_str(), matched.generation), ("p-a", 2));
}

#[test]
fn a_corrupt_manifest_keeps_the_last_good_generation() {
    let dir = tempfile::tempdir().unwrap();
    let PersonBMatched {
        mut writer,
        mut h,
        bus,
        frame,
        ..
    } = person_b_matched(dir.path(), "poll-interval=20");

    let manifest = dir.path().join("manifest.json");
    let good_manifest = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"{\"generation\": 2, truncated").unwrap();
    let start = Instant::now();
    let mut warnings = Vec::new();
    let mut n = 1;
    // Frames keep flowing and matching generation 1 until the broken manifest has been reported.
    while warnings.is_empty() || start.elapsed() < std::time::Duration::from_millis(300) {
        assert!(
            start.elapsed() < common::PATIENCE,
            "no warning about the manifest"
        );
        let matched = push_and_match(&mut h, &frame, n).expect("still matching");
        assert_eq!((matched.id.as_str(), matched.generation), ("p-b", 1));
        warnings.extend(common::message_texts(&bus, gst::MessageType::Warning));
        n += 1;
    }
    assert_eq!(generation(&mut h), 1);
    assert_eq!(u64::from(h.buffers_received()), n);
    assert!(
        warnings
            .iter()
            .all(|w| w.contains(manifest.to_str().unwrap())),
        "{warnings:?}"
    );
    assert!(common::message_texts(&bus, gst::MessageType::Error).is_empty());

    // Once the manifest is repaired (a writer refuses to change a gallery whose manifest it
    // cannot read), a good generation written after it is taken again.
    std::fs::write(&manifest, good_manifest).unwrap();
    assert!(writer.remove("p-b").unwrap());
    assert_eq!(writer.commit().unwrap(), 2);
    let start = Instant::now();
    while push_and_match(&mut h, &frame, n).is_some() {
        assert!(start.elapsed() < common::PATIENCE, "generation 2 not taken");
        n += 1;
    }
    assert_eq!(generation(&mut h), 2);
}

#[test]
fn a_generation_of_another_embedder_is_refused_at_reload_and_the_old_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let PersonBMatched {
        mut h, bus, frame, ..
    } = person_b_matched(dir.path(), "poll-interval=20");

    // Generation 2, enrolled with another embedder, swapped in the way a commit switches (its
    // manifest last).
    let elsewhere = tempfile::tempdir().unwrap();
    let other_model = "other-embedder@sha256:0";
    let mut other = Gallery::create(elsewhere.path(), other_model, 128).unwrap();
    for (n, id) in ["x-1", "x-2"].into_iter().enumerate() {
        let mut unit = vec![0.0f32; 128];
        unit[n] = 1.0;
        other.enroll(id, "X", other_model, &unit, false).unwrap();
        other.commit().unwrap();
    }
    for name in ["index-2.faiss", "identities-2.json", "manifest.json"] {
        std::fs::rename(elsewhere.path().join(name), dir.path().join(name)).unwrap();
    }

    let start = Instant::now();
    let mut warnings = Vec::new();
    let mut n = 1;
    while warnings.is_empty() {
        assert!(
            start.elapsed() < common::PATIENCE,
            "no warning about the model"
        );
        let matched = push_and_match(&mut h, &frame, n).expect("still matching generation 1");
        assert_eq!((matched.id.as_str(), matched.generation), ("p-b", 1));
        warnings.extend(common::message_texts(&bus, gst::MessageType::Warning));
        n += 1;
    }
    assert!(
        warnings[0].contains("keeping gallery generation 1") && warnings[0].contains(other_model),
        "{warnings:?}"
    );
    assert_eq!(generation(&mut h), 1);
    assert!(common::message_texts(&bus, gst::MessageType::Error).is_empty());
}

#[test]
fn poll_interval_zero_never_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let PersonBMatched {
        mut writer,
        mut h,
        frame,
        ..
    } = person_b_matched(dir.path(), "poll-interval=0");
    assert!(writer.remove("p-b").unwrap());
    assert_eq!(writer.commit().unwrap(), 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let matched = push_and_match(&mut h, &frame, 1).expect("still generation 1");
    assert_eq!(matched.generation, 1);
    assert_eq!(generation(&mut h), 1);
}

#[test]
fn no_gallery_fails_the_state_change() {
    let unset = common::start_error(&common::element("fgmatch", &[]));
    let empty = common::start_error(&common::element("fgmatch", &[("gallery", &"")]));
    for error in [unset, empty] {
        assert!(error.contains("no gallery set"), "{error}");
    }
}

#[test]
fn a_missing_gallery_fails_the_state_change_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-gallery-here");
    let element = common::element("fgmatch", &[("gallery", &missing.to_str().unwrap())]);
    let error = common::start_error(&element);
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
}

#[test]
fn a_gallery_of_another_model_is_an_error_naming_both_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut gallery = Gallery::create(dir.path(), "other@sha256:0", 128).unwrap();
    let mut unit = vec![0.0f32; 128];
    unit[0] = 1.0;
    gallery
        .enroll("x-1", "X", "other@sha256:0", &unit, false)
        .unwrap();
    gallery.commit().unwrap();
    let (mut h, bus) = matcher(dir.path(), "threshold=0.45");
    let result = h.push(photo("person_b_2.jpg").buffer_at(common::pts(0)));
    assert_eq!(result, Err(gst::FlowError::Error));
    let errors = common::message_texts(&bus, gst::MessageType::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let sface = common::embedder_model();
    let sface_stem = sface.file_stem().unwrap().to_str().unwrap();
    assert!(errors[0].contains("other@sha256:0"), "{}", errors[0]);
    assert!(errors[0].contains(sface_stem), "{}", errors[0]);
}

/// A 128-d gallery of a made-up model with one person, and fgmatch alone in a harness on it.
fn synthetic_matcher(dir: &Path) -> (Harness, gst::Bus) {
    let mut gallery = Gallery::create(dir, SYNTHETIC_MODEL, 128).unwrap();
    let mut unit = vec![0.0f32; 128];
    unit[0] = 1.0;
    gallery
        .enroll("x-1", "X", SYNTHETIC_MODEL, &unit, false)
        .unwrap();
    gallery.commit().unwrap();
    // A made-up model has no calibration: a fixed threshold.
    let (mut h, _element, bus) = common::harness(
        "fgmatch",
        &[("gallery", &dir.to_str().unwrap()), ("threshold", &0.45f64)],
    );
    h.set_src_caps(common::blank_frame(FORMAT, WIDTH, HEIGHT).caps);
    (h, bus)
}

const SYNTHETIC_MODEL: &str = "synthetic@sha256:0";

/// A blank frame with one face region whose `facegate-embedding` param is `embedding`.
fn frame_with_embedding(embedding: gst::Structure) -> gst::Buffer {
    let mut buffer = common::blank_frame(FORMAT, WIDTH, HEIGHT).buffer_at(common::pts(0));
    let mut roi = gst_video::VideoRegionOfInterestMeta::add(
        buffer.get_mut().unwrap(),
        facegate_meta::ROI_TYPE,
        (10, 10, 50, 50),
    );
    roi.add_param(embedding);
    buffer
}

/// Pushing `buffer` fails the stream; the one error message's text.
fn stream_error(h: &mut Harness, bus: &gst::Bus, buffer: gst::Buffer) -> String {
    assert_eq!(h.push(buffer), Err(gst::FlowError::Error));
    let errors = common::message_texts(bus, gst::MessageType::Error);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn an_embedding_of_another_dimension_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let (mut h, bus) = synthetic_matcher(dir.path());
    let mut short = vec![0.0f32; 64];
    short[0] = 1.0;
    let bytes: Vec<u8> = short.iter().flat_map(|v| v.to_le_bytes()).collect();
    let embedding = gst::Structure::builder(facegate_meta::EMBEDDING)
        .field("model", SYNTHETIC_MODEL)
        .field("dim", 64u32)
        .field("data", gst::glib::Bytes::from_owned(bytes))
        .build();
    let error = stream_error(&mut h, &bus, frame_with_embedding(embedding));
    assert!(error.contains("64-dimensional"), "{error}");
    assert!(error.contains("128-dimensional"), "{error}");
    assert!(error.contains(dir.path().to_str().unwrap()), "{error}");
}

#[test]
fn an_embedding_whose_dim_disagrees_with_its_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut h, bus) = synthetic_matcher(dir.path());
    let embedding = gst::Structure::builder(facegate_meta::EMBEDDING)
        .field("model", SYNTHETIC_MODEL)
        .field("dim", 128u32)
        .field("data", gst::glib::Bytes::from_owned(vec![0u8; 64 * 4]))
        .build();
    let error = stream_error(&mut h, &bus, frame_with_embedding(embedding));
    assert!(error.contains("64 values for dim 128"), "{error}");
}

#[test]
fn properties_have_the_documented_defaults_and_ranges() {
    let element = common::element("fgmatch", &[]);
    assert_eq!(element.property::<Option<String>>("gallery"), None);
    assert!(!common::mutable_in_playing(&element, "gallery"));
    assert_eq!(
        common::double_spec(&element, "threshold"),
        (-1.0, 1.0, -1.0),
        "negative: follow the calibration"
    );
    assert!(!common::mutable_in_playing(&element, "threshold"));
    assert_eq!(
        common::double_spec(&element, "min-threshold"),
        (-1.0, 1.0, match_rule::DEFAULT_MIN_THRESHOLD)
    );
    assert!(!common::mutable_in_playing(&element, "min-threshold"));
    assert_eq!(
        common::double_spec(&element, "max-false-grant-rate"),
        (1e-12, 0.5, match_rule::DEFAULT_MAX_FALSE_GRANT_RATE)
    );
    assert!(!common::mutable_in_playing(
        &element,
        "max-false-grant-rate"
    ));
    assert_eq!(
        common::double_spec(&element, "min-margin"),
        (0.0, 2.0, match_rule::DEFAULT_MIN_MARGIN)
    );
    assert!(common::mutable_in_playing(&element, "min-margin"));
    let effective = common::pspec(&element, "effective-threshold");
    assert!(
        !effective.flags().contains(gst::glib::ParamFlags::WRITABLE),
        "read-only"
    );
    assert_eq!(element.property::<f64>("effective-threshold"), 0.0);
    assert_eq!(common::uint_spec(&element, "top-k"), (1, 100, 1));
    assert!(common::mutable_in_playing(&element, "top-k"));
    assert_eq!(
        common::uint_spec(&element, "poll-interval"),
        (0, 3_600_000, 1000)
    );
    assert!(!common::mutable_in_playing(&element, "poll-interval"));
    assert!(!element.property::<bool>("post-frames"));
    assert!(common::mutable_in_playing(&element, "post-frames"));
    assert!(
        common::pspec(&element, "post-frames")
            .blurb()
            .is_some_and(|blurb| blurb.contains("gate service")),
        "post-frames says who sets it"
    );
    let generation = common::pspec(&element, "generation");
    assert!(
        !generation.flags().contains(gst::glib::ParamFlags::WRITABLE),
        "read-only"
    );
    assert_eq!(
        element.property::<u64>("generation"),
        0,
        "no gallery loaded yet"
    );
    common::assert_refused("fgmatch", "threshold", "1.5");
    common::assert_refused("fgmatch", "top-k", "0");
    common::assert_refused("fgmatch", "top-k", "101");
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fgmatch");
}
