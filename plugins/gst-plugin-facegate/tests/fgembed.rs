// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgembed in a harness behind the real detector: unit-length SFace embeddings on every face,
//! the per-track cache counted through `faces-embedded`, a track's frames fused (and never two
//! people's), format independence, bad model files.

mod common;

use common::{HEIGHT, WIDTH};
use gst::prelude::*;
use gst_check::Harness;

const PHOTO: &str = "person_b_1.jpg";

/// A harness around `chain` (fgdetect ... fgembed ...) with `frame`'s caps set.
fn chain(description: &str, frame: &common::Frame) -> Harness {
    common::init_with_models();
    let (mut h, _bus) = common::harness_parse(description);
    h.set_src_caps(frame.caps.clone());
    h
}

fn faces_embedded(h: &mut Harness) -> u64 {
    h.find_element("fgembed")
        .expect("an fgembed in the chain")
        .property::<u64>("faces-embedded")
}

/// Checks the embedding param of every face on `buffer` against the contract; returns the vectors.
fn checked_embeddings(buffer: &gst::BufferRef, what: &str) -> Vec<Vec<f32>> {
    let mut vectors = Vec::new();
    for meta in buffer.iter_meta::<gst_video::VideoRegionOfInterestMeta>() {
        let param = meta
            .param(facegate_meta::EMBEDDING)
            .unwrap_or_else(|| panic!("{what}: face {:?} has no embedding", meta.rect()));
        assert_eq!(param.get::<u32>("dim").unwrap(), 128, "{what}: dim");
        let data = param.get::<gst::glib::Bytes>("data").unwrap();
        assert_eq!(data.len(), 128 * 4, "{what}: dim little-endian f32");
        let model = param.get::<&str>("model").unwrap();
        assert!(model.contains("sface"), "{what}: model {model:?}");
        let vector: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let norm = common::norm(&vector);
        assert!((norm - 1.0).abs() < 1e-3, "{what}: norm {norm}");
        vectors.push(vector);
    }
    vectors
}

#[test]
fn every_face_gets_a_unit_length_sface_embedding() {
    let frame = common::two_photo_frame(PHOTO, "impostor_2.jpg", "BGRx", WIDTH, HEIGHT);
    let mut h = chain("fgdetect ! fgtrack ! fgembed", &frame);
    let out = common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
    let vectors = checked_embeddings(&out, "two faces");
    assert_eq!(vectors.len(), 2);
    let faces = common::faces(&out);
    assert!(
        faces
            .iter()
            .all(|f| f.track.is_some() && f.detection.is_some())
    );
    // Two different people: far apart (OpenCV: 0.13 for this pair).
    let between = common::cosine(&vectors[0], &vectors[1]);
    assert!(between < 0.3, "different people at cosine {between}");
    assert_eq!(faces_embedded(&mut h), 2);
}

#[test]
fn the_embedding_agrees_with_opencv() {
    let frame = common::photo_frame(PHOTO, "BGRx", WIDTH, HEIGHT);
    let mut h = chain("fgdetect ! fgembed", &frame);
    let out = common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
    let vectors = checked_embeddings(&out, PHOTO);
    assert_eq!(vectors.len(), 1);
    // OpenCV embedded the full-size photo; this is the same face at about half the size.
    let reference = common::reference_embedding(PHOTO);
    let agreement = common::cosine(&vectors[0], &reference);
    assert!(
        agreement > 0.9,
        "cosine {agreement} with OpenCV's embedding"
    );
}

/// Pushes the same photo frame `frames` times through `description`; returns `faces-embedded`,
/// after checking every frame came out embedded.
fn embed_runs(description: &str, frames: u64) -> u64 {
    let frame = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let mut h = chain(description, &frame);
    let mut first: Option<Vec<f32>> = None;
    for n in 0..frames {
        let out = common::push_pull(&mut h, frame.buffer_at(common::pts(n)));
        let vector = common::only_embedding(&out).data;
        // Identical frames: cached or recomputed, the vector is the same.
        let first = first.get_or_insert_with(|| vector.clone());
        let similarity = common::cosine(first, &vector);
        assert!(similarity > 0.9999, "frame {}: cosine {similarity}", n + 1);
    }
    faces_embedded(&mut h)
}

#[test]
fn a_track_is_embedded_once_per_refresh_interval() {
    // Frames 1, 5 and 9.
    let runs = embed_runs("fgdetect ! fgtrack ! fgembed refresh-interval=4", 10);
    assert_eq!(runs, 3);
}

#[test]
fn refresh_interval_zero_embeds_every_frame() {
    let runs = embed_runs("fgdetect ! fgtrack ! fgembed refresh-interval=0", 10);
    assert_eq!(runs, 10);
}

#[test]
fn untracked_faces_are_embedded_on_every_frame() {
    let runs = embed_runs("fgdetect ! fgembed refresh-interval=4", 10);
    assert_eq!(runs, 10);
}

/// A face's embedding and its track.
type Tracked = (Vec<f32>, u64);

/// `name` scaled to `scale` of the frame, centred on black: the same face nearer or further.
fn scaled_photo_frame(name: &str, scale: f64) -> common::Frame {
    let (w, h) = (
        (f64::from(WIDTH) * scale).round() as u32,
        (f64::from(HEIGHT) * scale).round() as u32,
    );
    let (x, y) = ((WIDTH - w) / 2, (HEIGHT - h) / 2);
    let source = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1 \
         ! videobox fill=black left=-{x} right=-{} top=-{y} bottom=-{}",
        common::photo(name).display(),
        WIDTH - w - x,
        HEIGHT - h - y,
    );
    common::render(&source, "I420", WIDTH, HEIGHT)
}

/// Each frame's face on its own (untracked: nothing fused), and the embeddings `description`
/// attaches to the one face of each frame pushed in turn, with its track.
fn embedded_in_turn(description: &str, frames: &[common::Frame]) -> (Vec<Vec<f32>>, Vec<Tracked>) {
    let alone = frames
        .iter()
        .map(|frame| {
            let mut h = chain("fgdetect ! fgembed", frame);
            common::only_embedding(&common::push_pull(&mut h, frame.buffer_at(common::pts(0)))).data
        })
        .collect();
    let mut h = chain(description, &frames[0]);
    let tracked = frames
        .iter()
        .enumerate()
        .map(|(n, frame)| {
            let out = common::push_pull(&mut h, frame.buffer_at(common::pts(n as u64)));
            let faces = common::faces(&out);
            let [face] = faces.as_slice() else {
                panic!("frame {n}: {} faces", faces.len());
            };
            let track = face.track.as_ref().expect("tracked").id;
            (common::only_embedding(&out).data, track)
        })
        .collect();
    (alone, tracked)
}

#[test]
fn a_track_is_matched_on_the_fusion_of_its_frames() {
    // One person, near then a little further: two frames that differ, of one face.
    let frames = [
        scaled_photo_frame(PHOTO, 1.0),
        scaled_photo_frame(PHOTO, 0.75),
    ];
    let (alone, fused) = embedded_in_turn(
        "fgdetect ! fgtrack ! fgembed refresh-interval=0 fusion-frames=8",
        &frames,
    );
    assert_eq!(fused[0].1, fused[1].1, "one track for both frames");
    assert!(
        common::cosine(&fused[0].0, &alone[0]) > 0.9999,
        "one frame is itself"
    );
    let norm = common::norm(&fused[1].0);
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "the fusion is unit length: {norm}"
    );
    // Between the two frames: closer to each than they are to each other.
    let between = common::cosine(&alone[0], &alone[1]);
    for (frame, own) in alone.iter().enumerate() {
        let to_fused = common::cosine(&fused[1].0, own);
        assert!(
            to_fused > between && to_fused < 0.9999,
            "frame {frame}: cosine {to_fused} to the fusion, {between} between the frames"
        );
    }

    let (_, each_alone) = embedded_in_turn(
        "fgdetect ! fgtrack ! fgembed refresh-interval=0 fusion-frames=1",
        &frames,
    );
    let second = common::cosine(&each_alone[1].0, &alone[1]);
    assert!(
        second > 0.9999,
        "fusion-frames=1: the frame's own embedding ({second})"
    );
}

#[test]
fn somebody_else_under_the_same_track_is_not_fused_with_the_one_before() {
    let frames = [
        common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT),
        common::photo_frame("impostor_2.jpg", "I420", WIDTH, HEIGHT),
    ];
    let (alone, tracked) = embedded_in_turn(
        "fgdetect ! fgtrack ! fgembed refresh-interval=0 fusion-frames=8",
        &frames,
    );
    assert_eq!(
        tracked[0].1, tracked[1].1,
        "the tracker kept one track for two people"
    );
    let second = common::cosine(&tracked[1].0, &alone[1]);
    assert!(
        second > 0.9999,
        "the second person's own embedding, nothing of the first ({second})"
    );
}

#[test]
fn the_pixel_format_does_not_change_the_embedding() {
    let embedding = |format: &str| {
        let frame = common::photo_frame(PHOTO, format, WIDTH, HEIGHT);
        let mut h = chain("fgdetect ! fgembed", &frame);
        common::only_embedding(&common::push_pull(&mut h, frame.buffer_at(common::pts(0))))
    };
    let bgrx = embedding("BGRx");
    let i420 = embedding("I420");
    assert_eq!(bgrx.model, i420.model);
    let similarity = common::cosine(&bgrx.data, &i420.data);
    assert!(similarity >= 0.99, "BGRx vs I420: cosine {similarity}");
    // And every other camera format.
    for format in common::FORMATS
        .into_iter()
        .filter(|f| !["BGRx", "I420"].contains(f))
    {
        let similarity = common::cosine(&bgrx.data, &embedding(format).data);
        assert!(similarity >= 0.99, "BGRx vs {format}: cosine {similarity}");
    }
}

#[test]
fn a_face_without_landmarks_is_passed_on_unembedded() {
    let frame = common::photo_frame(PHOTO, "RGB", WIDTH, HEIGHT);
    let (mut h, _element, _bus) = common::harness("fgembed", &[]);
    h.set_src_caps(frame.caps.clone());
    let mut buffer = frame.buffer_at(common::pts(0));
    // A face region some other element added, without facegate-detection.
    gst_video::VideoRegionOfInterestMeta::add(
        buffer.get_mut().unwrap(),
        "face",
        (250, 80, 140, 200),
    );
    let out = common::push_pull(&mut h, buffer);
    let faces = common::faces(&out);
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0].embedding, None);
    assert_eq!(h.element().unwrap().property::<u64>("faces-embedded"), 0);
}

#[test]
fn properties_have_the_documented_defaults_and_ranges() {
    let element = common::element("fgembed", &[]);
    assert_eq!(element.property::<Option<String>>("model"), None);
    assert!(!common::mutable_in_playing(&element, "model"));
    assert_eq!(
        common::uint_spec(&element, "refresh-interval"),
        (0, 100_000, 15)
    );
    assert!(common::mutable_in_playing(&element, "refresh-interval"));
    assert_eq!(common::uint_spec(&element, "fusion-frames"), (1, 64, 8));
    assert!(common::mutable_in_playing(&element, "fusion-frames"));
    assert_eq!(common::uint_spec(&element, "threads"), (0, 256, 0));
    assert!(!common::mutable_in_playing(&element, "threads"));
    let counter = common::pspec(&element, "faces-embedded");
    assert!(counter.flags().contains(gst::glib::ParamFlags::READABLE));
    assert!(
        !counter.flags().contains(gst::glib::ParamFlags::WRITABLE),
        "faces-embedded is read-only"
    );
    assert_eq!(element.property::<u64>("faces-embedded"), 0);
    common::assert_refused("fgembed", "refresh-interval", "100001");
    common::assert_refused("fgembed", "threads", "257");
    common::assert_refused("fgembed", "fusion-frames", "0");
}

fn start_error_with_model(path: &std::path::Path) -> String {
    common::init_with_models();
    let element = common::element("fgembed", &[("model", &path.to_str().unwrap())]);
    common::start_error(&element)
}

#[test]
fn a_missing_model_fails_the_state_change_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-sface.onnx");
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn a_corrupt_model_fails_the_state_change_naming_the_file() {
    let (_dir, path) = common::temp_file("garbage.onnx", b"not an onnx model at all");
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("could not be loaded"), "{error}");
}

#[test]
fn a_model_without_its_card_fails_the_state_change_naming_the_card() {
    common::init_with_models();
    let yunet = common::detector_model();
    let error = start_error_with_model(&yunet);
    let card = yunet.with_extension("card.toml");
    assert!(error.contains(card.to_str().unwrap()), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

/// The default embedder linked into a directory of its own, beside its card as `edit` rewrites it.
fn sface_with_card(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    common::init_with_models();
    let model = common::embedder_model();
    let card = std::fs::read_to_string(model.with_extension("card.toml"))
        .expect("set-up installs the card beside the model");
    let dir = tempfile::tempdir().unwrap();
    let linked = dir.path().join(model.file_name().unwrap());
    std::os::unix::fs::symlink(&model, &linked).unwrap();
    let edited = edit(&card);
    std::fs::write(linked.with_extension("card.toml"), edited).unwrap();
    (dir, linked)
}

#[test]
fn a_card_that_disagrees_with_its_model_fails_the_state_change_naming_both() {
    let (_dir, model) = sface_with_card(|card| card.replace("dim = 128", "dim = 512"));
    let error = start_error_with_model(&model);
    assert!(error.contains(model.to_str().unwrap()), "{error}");
    assert!(error.contains("[1, 512] as its card says"), "{error}");

    let (_dir, model) =
        sface_with_card(|card| card.replace("tensor = \"data\"", "tensor = \"input.1\""));
    let error = start_error_with_model(&model);
    assert!(error.contains("input `input.1`"), "{error}");

    let (_dir, model) = sface_with_card(|card| {
        let sha = card.lines().find(|l| l.starts_with("sha256")).unwrap();
        card.replace(sha, &format!("sha256 = \"{}\"", "0".repeat(64)))
    });
    let error = start_error_with_model(&model);
    assert!(
        error.contains("card.toml") && error.contains("the file has"),
        "{error}"
    );
}

#[test]
fn the_card_says_how_the_face_is_fed() {
    let frame = common::photo_frame(PHOTO, "BGRx", WIDTH, HEIGHT);
    let embed = |model: &std::path::Path| {
        let mut h = chain(
            &format!("fgdetect ! fgembed model={}", model.display()),
            &frame,
        );
        common::only_embedding(&common::push_pull(&mut h, frame.buffer_at(common::pts(0))))
    };
    let (_dir, as_shipped) = sface_with_card(str::to_owned);
    let shipped = embed(&as_shipped);
    assert!(common::cosine(&shipped.data, &common::photo_embedding(PHOTO).data) > 0.9999);

    let (_dir, bgr) = sface_with_card(|card| card.replace("colour = \"rgb\"", "colour = \"bgr\""));
    let swapped = common::cosine(&shipped.data, &embed(&bgr).data);
    assert!(
        (0.5..0.99).contains(&swapped),
        "BGR planes should give another embedding of the same face: cosine {swapped}"
    );
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fgembed");
}

#[test]
fn a_model_not_for_commercial_use_says_so_on_the_bus() {
    let frame = common::photo_frame(PHOTO, "BGRx", WIDTH, HEIGHT);
    let (_dir, restricted) = sface_with_card(|card| {
        card.replace("commercial_use = true", "commercial_use = false")
            .replace("licence = \"Apache-2.0\"", "licence = \"research only\"")
    });
    let (_dir2, shipped) = sface_with_card(str::to_owned);
    for (model, warned) in [(restricted, true), (shipped, false)] {
        common::init_with_models();
        // The warning comes at start, which the harness does as it is made: the bus must be there first.
        let (mut h, _element, bus) =
            common::harness("fgembed", &[("model", &model.to_str().unwrap())]);
        h.set_src_caps(frame.caps.clone());
        common::push_pull(&mut h, frame.buffer_at(common::pts(0)));
        let warnings = common::message_texts(&bus, gst::MessageType::Warning);
        let says = warnings
            .iter()
            .any(|w| w.contains("non-commercial use only (research only)"));
        assert_eq!(says, warned, "{}: {warnings:?}", model.display());
    }
}
