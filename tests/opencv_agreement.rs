// SPDX-License-Identifier: MIT OR Apache-2.0
//! Our detector and embedder against OpenCV's FaceDetectorYN and FaceRecognizerSF on the real
//! development photos (tests/fixtures/opencv_reference.json, made by scripts/opencv-reference.py).
//!
//! Detections are compared box for box and landmark for landmark. Embeddings are compared on the
//! same faces: our aligner and embedder given OpenCV's landmarks must give OpenCV's embedding.
//! End to end (our landmarks, our embedding) the two differ by a little more, because SFace
//! amplifies sub-pixel landmark differences that come from the two JPEG decoders; that bound is
//! checked and reported separately.

mod common;

use common::{ReferenceFace, ReferencePhoto, iou};
use facegate_vision::cosine;
use facegate_vision::{Embedder, runtime};

/// Runs every photo at one input size and checks boxes and landmarks against OpenCV's; at most
/// `ties_allowed` photos may miss the landmark tolerance (see the 320 test for why).
fn detections_agree(
    input_size: u32,
    landmark_tolerance: f32,
    ties_allowed: usize,
    pick: impl Fn(&ReferencePhoto) -> &Vec<ReferenceFace>,
) {
    common::init();
    let reference = common::reference();
    assert_eq!(
        reference.photos.len(),
        10,
        "fixture covers the ten development photos"
    );
    let (mut worst_iou, mut worst_landmark) = (1.0f32, 0.0f32);
    let mut off_tolerance = Vec::new();
    for photo in &reference.photos {
        let expected = pick(photo);
        assert_eq!(expected.len(), 1, "{}: OpenCV found one face", photo.file);
        let faces = common::faces(&common::photo(&photo.file), input_size, None);
        assert_eq!(
            faces.len(),
            1,
            "{} at {input_size}: exactly one face, got {faces:?}",
            photo.file
        );
        let (ours, theirs) = (&faces[0], &expected[0]);

        let (x, y, w, h) = ours.bbox;
        let overlap = iou([x as f32, y as f32, w as f32, h as f32], theirs.bbox);
        assert!(
            overlap >= 0.9,
            "{} at {input_size}: box IoU {overlap:.3} with OpenCV",
            photo.file
        );
        worst_iou = worst_iou.min(overlap);

        let detection = ours.detection.as_ref().expect("detection param");
        let farthest = detection
            .landmarks
            .iter()
            .zip(&theirs.landmarks)
            .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
            .fold(0.0, f32::max);
        if farthest > landmark_tolerance {
            off_tolerance.push(format!("{} ({farthest:.2} px)", photo.file));
        }
        worst_landmark = worst_landmark.max(farthest);
    }
    assert!(
        off_tolerance.len() <= ties_allowed,
        "at {input_size}, landmarks more than {landmark_tolerance} px from OpenCV's: {off_tolerance:?}"
    );
    println!(
        "input {input_size}: worst box IoU {worst_iou:.3}, worst landmark {worst_landmark:.2} px, beyond {landmark_tolerance} px: {off_tolerance:?} (OpenCV {})",
        reference.opencv_version
    );
}

#[test]
fn detections_agree_with_opencv_at_640() {
    detections_agree(640, 2.0, 0, |photo| &photo.faces);
}

/// At half the input resolution a network pixel covers twice the photo, so twice the tolerance.
/// One photo may pick another anchor than OpenCV: on impostor_2.jpg OpenCV's own two best
/// anchors score 0.93828 and 0.93815, and the one-grey-level differences between GStreamer's and
/// OpenCV's JPEG decoders decide between them. Both boxes are the same face (IoU >= 0.9 is
/// still required of every photo).
#[test]
fn detections_agree_with_opencv_at_320() {
    detections_agree(320, 4.0, 1, |photo| &photo.faces_320);
}

#[test]
fn embeddings_agree_with_opencv_on_the_same_faces() {
    common::init();
    let reference = common::reference();
    let mut embedder =
        Embedder::load(&runtime::default_embedder_path(), 0).expect("embedder loads");
    let mut embedding = vec![0.0; embedder.dim()];
    let mut worst = 1.0f32;
    for photo in &reference.photos {
        let decoded = common::decode(&common::photo(&photo.file));
        for theirs in photo.faces.iter().chain(&photo.faces_320) {
            gstfacegate::video::with_frame(&decoded.info, &decoded.buffer, |frame| {
                embedder.embed(frame, &theirs.landmarks, &mut embedding)
            })
            .expect("frame maps")
            .expect("face embeds");
            let similarity = cosine(&embedding, &theirs.embedding);
            assert!(
                similarity >= 0.99,
                "{}: cosine {similarity:.4} with OpenCV's embedding",
                photo.file
            );
            worst = worst.min(similarity);
        }
    }
    println!("same faces: worst cosine with OpenCV's FaceRecognizerSF {worst:.4}");
}

/// End to end the landmarks differ slightly (see the module comment); the embeddings must still
/// be near-identical, far above any different-person similarity.
#[test]
fn pipeline_embeddings_stay_close_to_opencv() {
    common::init();
    let reference = common::reference();
    let mut worst = 1.0f32;
    for photo in &reference.photos {
        let faces = common::faces(&common::photo(&photo.file), 640, None);
        let embedding = &faces[0].embedding.as_ref().expect("embedding param").data;
        let similarity = cosine(embedding, &photo.faces[0].embedding);
        assert!(
            similarity >= 0.95,
            "{}: pipeline embedding cosine {similarity:.4} with OpenCV's",
            photo.file
        );
        worst = worst.min(similarity);
    }
    println!("end to end at 640: worst cosine with OpenCV {worst:.4}");
}

#[test]
fn same_person_pairs_match_and_different_people_do_not() {
    common::init();
    let threshold = common::match_threshold();
    let reference = common::reference();
    let embeddings: Vec<(String, Vec<f32>)> = reference
        .photos
        .iter()
        .map(|photo| {
            let faces = common::faces(&common::photo(&photo.file), 640, None);
            let embedding = faces[0].embedding.as_ref().expect("embedding").data.clone();
            (photo.file.clone(), embedding)
        })
        .collect();
    let (mut lowest_same, mut highest_different) = (f32::MAX, f32::MIN);
    for (i, (name_a, a)) in embeddings.iter().enumerate() {
        for (name_b, b) in &embeddings[i + 1..] {
            let similarity = cosine(a, b);
            if common::person(name_a) == common::person(name_b) {
                assert!(
                    similarity as f64 > threshold,
                    "{name_a} ~ {name_b}: {similarity:.3} <= {threshold}"
                );
                lowest_same = lowest_same.min(similarity);
            } else {
                assert!(
                    (similarity as f64) < threshold,
                    "{name_a} vs {name_b}: {similarity:.3} >= {threshold}"
                );
                highest_different = highest_different.max(similarity);
            }
        }
    }
    println!(
        "threshold {threshold}: lowest same-person {lowest_same:.3}, highest different-person {highest_different:.3}"
    );
}
