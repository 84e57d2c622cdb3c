// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgdetect in a harness, on real photos: every camera format, the properties as gst-inspect shows
//! them, model files that cannot work, `interval`, empty frames and network input sizes.

mod common;

use common::{FORMATS, HEIGHT, WIDTH};
use gst::prelude::*;

const PHOTO: &str = "person_b_1.jpg";

/// Runs fgdetect (with `properties`) on one frame and returns the buffer that comes out.
fn detect(frame: &common::Frame, properties: &[(&str, &dyn ToValue)]) -> gst::Buffer {
    common::init_with_models();
    let (mut h, _element, _bus) = common::harness("fgdetect", properties);
    h.set_src_caps(frame.caps.clone());
    common::push_pull(&mut h, frame.buffer_at(common::pts(0)))
}

/// The one face region on `buffer`, checked against the metadata contract.
fn one_face(buffer: &gst::BufferRef, what: &str) -> facegate_meta::FaceRecord {
    let rois = common::rois(buffer);
    assert_eq!(rois.len(), 1, "{what}: expected one region, got {rois:?}");
    assert_eq!(rois[0].0, "face", "{what}: roi type");
    let face = common::faces(buffer).remove(0);
    let detection = face
        .detection
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no facegate-detection param"));
    assert!(
        detection.score > 0.6 && detection.score <= 1.0,
        "{what}: score {}",
        detection.score
    );
    assert!(
        detection.model.contains("yunet"),
        "{what}: model {:?}",
        detection.model
    );
    // Landmarks lie in or near the box: eyes in the upper half, mouth corners in the lower.
    let (x, y, w, h) = face.bbox;
    let (x, y, w, h) = (x as f32, y as f32, w as f32, h as f32);
    for (i, [lx, ly]) in detection.landmarks.iter().enumerate() {
        assert!(
            (x..x + w).contains(lx) && (y..y + h).contains(ly),
            "{what}: landmark {i} ({lx}, {ly}) outside {:?}",
            face.bbox
        );
    }
    let [right_eye, left_eye, _, right_mouth, left_mouth] = detection.landmarks;
    assert!(
        right_eye[0] < left_eye[0] && right_mouth[0] < left_mouth[0],
        "{what}: landmark order {:?}",
        detection.landmarks
    );
    assert!(
        right_eye[1] < right_mouth[1] && left_eye[1] < left_mouth[1],
        "{what}: eyes above the mouth"
    );
    face
}

/// The raw param structure, to check its wire format rather than the typed reader's view.
fn detection_param(buffer: &gst::BufferRef) -> gst::Structure {
    let meta = buffer
        .meta::<gst_video::VideoRegionOfInterestMeta>()
        .expect("a region");
    meta.param(facegate_meta::DETECTION)
        .expect("facegate-detection param")
        .to_owned()
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fgdetect");
}

#[test]
fn every_format_gives_the_same_one_face() {
    let reference = common::reference_box(PHOTO, WIDTH, HEIGHT);
    let mut boxes = Vec::new();
    for format in FORMATS {
        let frame = common::photo_frame(PHOTO, format, WIDTH, HEIGHT);
        let out = detect(&frame, &[]);
        let face = one_face(&out, format);
        let param = detection_param(&out);
        assert_eq!(
            param.get::<gst::ArrayRef>("landmarks").unwrap().len(),
            10,
            "{format}"
        );
        assert!(param.get::<f64>("score").unwrap() > 0.6, "{format}");
        assert!(
            param.get::<&str>("model").unwrap().contains("yunet"),
            "{format}"
        );
        // Within 8% of the face's width of where OpenCV finds it in the full-size photo (at 640).
        let distance = common::box_distance(face.bbox, reference);
        assert!(
            distance < 0.08 * reference[2],
            "{format}: {:?} vs OpenCV {reference:?}",
            face.bbox
        );
        boxes.push((format, face.bbox));
    }
    let (first_format, first) = boxes[0];
    for (format, bbox) in &boxes {
        let distance =
            common::box_distance(*bbox, [first.0, first.1, first.2, first.3].map(f64::from));
        assert!(
            distance <= 4.0,
            "{format} box {bbox:?} vs {first_format} {first:?}"
        );
    }
}

#[test]
fn properties_have_the_documented_defaults_and_ranges() {
    let element = common::element("fgdetect", &[]);
    assert_eq!(element.property::<Option<String>>("model"), None);
    assert!(!common::mutable_in_playing(&element, "model"));
    assert_eq!(
        common::double_spec(&element, "score-threshold"),
        (0.0, 1.0, 0.6)
    );
    assert_eq!(
        common::double_spec(&element, "nms-threshold"),
        (0.0, 1.0, 0.3)
    );
    assert_eq!(common::uint_spec(&element, "input-size"), (32, 4096, 320));
    assert_eq!(common::uint_spec(&element, "max-faces"), (1, 1024, 16));
    assert_eq!(common::uint_spec(&element, "interval"), (1, 1000, 1));
    assert_eq!(common::uint_spec(&element, "threads"), (0, 256, 0));
    assert!(
        !element.property::<bool>("refine-landmarks"),
        "off by default"
    );
    for name in [
        "refine-landmarks",
        "score-threshold",
        "nms-threshold",
        "input-size",
        "max-faces",
        "interval",
    ] {
        assert!(
            common::mutable_in_playing(&element, name),
            "{name} can change while playing"
        );
    }
    assert!(!common::mutable_in_playing(&element, "threads"));
    // The getters agree with the specs.
    assert_eq!(element.property::<f64>("score-threshold"), 0.6);
    assert_eq!(element.property::<f64>("nms-threshold"), 0.3);
    assert_eq!(element.property::<u32>("input-size"), 320);
    assert_eq!(element.property::<u32>("max-faces"), 16);
    assert_eq!(element.property::<u32>("interval"), 1);
    assert_eq!(element.property::<u32>("threads"), 0);
}

#[test]
fn out_of_range_values_are_refused() {
    for (name, value) in [
        ("input-size", "16"),
        ("input-size", "5000"),
        ("max-faces", "0"),
        ("max-faces", "1025"),
        ("interval", "0"),
        ("interval", "1001"),
        ("threads", "257"),
        ("score-threshold", "1.5"),
        ("score-threshold", "-0.1"),
        ("nms-threshold", "2.0"),
    ] {
        common::assert_refused("fgdetect", name, value);
    }
    // In range is taken, limits included.
    assert_eq!(
        common::launched("fgdetect", "input-size", "4096").property::<u32>("input-size"),
        4096
    );
    assert_eq!(
        common::launched("fgdetect", "input-size", "32").property::<u32>("input-size"),
        32
    );
    assert_eq!(
        common::launched("fgdetect", "interval", "1000").property::<u32>("interval"),
        1000
    );
    assert_eq!(
        common::launched("fgdetect", "score-threshold", "0.8").property::<f64>("score-threshold"),
        0.8
    );
}

fn start_error_with_model(path: &std::path::Path) -> String {
    common::init_with_models();
    let element = common::element("fgdetect", &[("model", &path.to_str().unwrap())]);
    common::start_error(&element)
}

#[test]
fn a_missing_model_fails_the_state_change_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-yunet.onnx");
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("does not exist"), "{error}");
}

#[test]
fn a_corrupt_model_fails_the_state_change_naming_the_file() {
    let (_dir, path) = common::temp_file("garbage.onnx", &[0x5a; 4096]);
    let error = start_error_with_model(&path);
    assert!(error.contains(path.to_str().unwrap()), "{error}");
    assert!(error.contains("could not be loaded"), "{error}");
}

#[test]
fn a_model_of_the_wrong_kind_fails_the_state_change_naming_the_file() {
    common::init_with_models();
    let sface = common::embedder_model();
    let error = start_error_with_model(&sface);
    assert!(error.contains(sface.to_str().unwrap()), "{error}");
    assert!(error.contains("not the expected kind"), "{error}");
}

#[test]
fn interval_carries_the_last_faces_on_skipped_frames() {
    common::init_with_models();
    let photo = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let grey = common::grey_frame("I420", WIDTH, HEIGHT);
    let (mut h, _element, _bus) = common::harness("fgdetect", &[("interval", &3u32)]);
    h.set_src_caps(photo.caps.clone());
    // The detector runs on frames 1, 4 and 7 only.
    let sequence = [&photo, &grey, &photo, &grey, &photo, &photo, &photo];
    let outputs: Vec<_> = sequence
        .iter()
        .enumerate()
        .map(|(n, frame)| {
            common::faces(&common::push_pull(
                &mut h,
                frame.buffer_at(common::pts(n as u64)),
            ))
        })
        .collect();
    let first = &outputs[0];
    assert_eq!(first.len(), 1, "frame 1 runs: {first:?}");
    // Frames 2 and 3 carry frame 1's face exactly, even though frame 2 is empty.
    for n in [1, 2] {
        assert_eq!(outputs[n], *first, "frame {} carries frame 1's face", n + 1);
    }
    // Frame 4 (grey) runs again and finds nothing; 5 and 6 carry that, photo or not.
    for n in [3, 4, 5] {
        assert!(outputs[n].is_empty(), "frame {}: {:?}", n + 1, outputs[n]);
    }
    assert_eq!(outputs[6].len(), 1, "frame 7 runs again");
    assert_eq!(outputs[6][0].bbox, first[0].bbox);
}

#[test]
fn a_frame_without_faces_gets_no_regions() {
    for format in ["BGRx", "NV12"] {
        let out = detect(&common::grey_frame(format, WIDTH, HEIGHT), &[]);
        assert_eq!(common::rois(&out), vec![], "{format}");
    }
}

#[test]
fn every_input_size_finds_the_face() {
    let frame = common::photo_frame(PHOTO, "BGR", WIDTH, HEIGHT);
    let reference = common::reference_box(PHOTO, WIDTH, HEIGHT);
    for size in [160u32, 320, 640] {
        let out = detect(&frame, &[("input-size", &size)]);
        let face = one_face(&out, &format!("input-size {size}"));
        let distance = common::box_distance(face.bbox, reference);
        assert!(
            distance < 0.12 * reference[2],
            "input-size {size}: {:?} vs OpenCV {reference:?}",
            face.bbox
        );
    }
}

#[test]
fn refine_landmarks_finds_them_again_where_input_size_scaled_the_face_down() {
    let frame = common::photo_frame(PHOTO, "BGR", WIDTH, HEIGHT);
    let landmarks = |size: u32, refine: bool| {
        let out = detect(
            &frame,
            &[("input-size", &size), ("refine-landmarks", &refine)],
        );
        let face = one_face(&out, &format!("input-size {size}, refine {refine}"));
        (face.bbox, face.detection.unwrap().landmarks)
    };
    let (_, full) = landmarks(640, false);
    // At 160 the 640x480 frame is scaled by a quarter: refinement runs, and lands near what the
    // full-resolution pass found.
    let (bbox, coarse) = landmarks(160, false);
    let (_, refined) = landmarks(160, true);
    assert_ne!(coarse, refined, "refinement ran");
    let tolerance = 0.08 * bbox.2 as f32;
    for (i, (r, f)) in refined.iter().zip(&full).enumerate() {
        let distance = ((r[0] - f[0]).powi(2) + (r[1] - f[1]).powi(2)).sqrt();
        assert!(
            distance < tolerance,
            "landmark {i}: {r:?} vs {f:?} at full resolution"
        );
    }
    // At 640 the frame is seen whole: nothing to refine, the same faces.
    assert_eq!(landmarks(640, true), landmarks(640, false));
}

#[test]
fn two_faces_give_two_regions_and_max_faces_keeps_the_best() {
    let frame = common::two_photo_frame(PHOTO, "impostor_2.jpg", "RGBx", WIDTH, HEIGHT);
    let out = detect(&frame, &[]);
    let faces = common::faces(&out);
    assert_eq!(faces.len(), 2, "{faces:?}");
    let centre_x = |f: &facegate_meta::FaceRecord| f.bbox.0 + f.bbox.2 / 2;
    let mut centres: Vec<u32> = faces.iter().map(centre_x).collect();
    centres.sort();
    assert!(
        centres[0] < WIDTH / 2 && centres[1] > WIDTH / 2,
        "one face per half: {faces:?}"
    );
    let best = faces
        .iter()
        .max_by(|a, b| {
            a.detection
                .as_ref()
                .unwrap()
                .score
                .total_cmp(&b.detection.as_ref().unwrap().score)
        })
        .unwrap();

    let out = detect(&frame, &[("max-faces", &1u32)]);
    let kept = common::faces(&out);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].bbox, best.bbox, "the best-scoring face is kept");
}

#[test]
fn a_flush_forgets_the_faces_carried_by_interval() {
    common::init_with_models();
    let photo = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let grey = common::grey_frame("I420", WIDTH, HEIGHT);
    let (mut h, _element, _bus) = common::harness("fgdetect", &[("interval", &3u32)]);
    h.set_src_caps(photo.caps.clone());
    let out = common::push_pull(&mut h, photo.buffer_at(common::pts(0)));
    assert_eq!(common::faces(&out).len(), 1);
    // A seek: what was in front of the camera before it says nothing about the frames after.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    let out = common::push_pull(&mut h, grey.buffer_at(common::pts(0)));
    assert_eq!(
        common::faces(&out),
        vec![],
        "the first frame after a flush is detected afresh"
    );
}

#[test]
fn new_caps_forget_the_faces_carried_by_interval() {
    common::init_with_models();
    let photo = common::photo_frame(PHOTO, "I420", WIDTH, HEIGHT);
    let small = common::grey_frame("I420", WIDTH / 2, HEIGHT / 2);
    let (mut h, _element, _bus) = common::harness("fgdetect", &[("interval", &3u32)]);
    h.set_src_caps(photo.caps.clone());
    let out = common::push_pull(&mut h, photo.buffer_at(common::pts(0)));
    assert_eq!(common::faces(&out).len(), 1);
    // The camera switches mode: boxes found at 640x480 mean nothing at 320x240.
    h.set_src_caps(small.caps.clone());
    let out = common::push_pull(&mut h, small.buffer_at(common::pts(1)));
    assert_eq!(
        common::faces(&out),
        vec![],
        "the first frame after new caps is detected afresh"
    );
}
