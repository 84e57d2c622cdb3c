// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the end-to-end tests share: finding the fetched assets (failing loudly when they are
//! missing), reading OpenCV's reference answers, and a little geometry.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use facegate_meta::FaceRecord;
use facegatectl::identify::{self, Options};
use facegatectl::pipeline::Models;
use gst::prelude::*;
use serde::Deserialize;

use facegate_dev_assets::SETUP_HINT as SETUP;

pub fn photo(name: &str) -> PathBuf {
    facegate_dev_assets::photo(name).unwrap()
}

pub fn video(name: &str) -> PathBuf {
    facegate_dev_assets::video(name).unwrap()
}

/// Points the elements at the fetched models and ONNX Runtime unless the environment already does.
pub fn init() {
    let models = facegate_dev_assets::dir(facegate_dev_assets::AssetDir::Models).unwrap();
    let runtime = facegate_dev_assets::onnx_runtime().unwrap();
    for (variable, path) in [("FACEGATE_MODEL_DIR", models), ("ORT_DYLIB_PATH", runtime)] {
        // SAFETY: set before any thread of this test reads the environment (GStreamer and ONNX
        // Runtime start on first use below), and to the value already in force.
        unsafe { std::env::set_var(variable, &path) };
    }
    facegatectl::init().expect("GStreamer initialises");
}

/// Every face of the first frame of `file`, detected at `input_size`, optionally matched.
pub fn faces(file: &Path, input_size: u32, gallery: Option<&Path>) -> Vec<FaceRecord> {
    let options = Options {
        gallery: gallery.map(Path::to_path_buf),
        models: Models {
            input_size: Some(input_size),
            ..Models::default()
        },
        max_false_grant_rate: None,
    };
    let frames = identify::records(file, &options)
        .unwrap_or_else(|e| panic!("identify {}: {e}", file.display()));
    frames.into_iter().next().unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub opencv_version: String,
    pub photos: Vec<ReferencePhoto>,
}

#[derive(Debug, Deserialize)]
pub struct ReferencePhoto {
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<ReferenceFace>,
    pub faces_320: Vec<ReferenceFace>,
}

#[derive(Debug, Deserialize)]
pub struct ReferenceFace {
    pub bbox: [f32; 4],
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
    pub embedding: Vec<f32>,
}

/// OpenCV's answers on the development photos, made by scripts/opencv-reference.py.
pub fn reference() -> Reference {
    let path = facegate_dev_assets::workspace_dir().join("tests/fixtures/opencv_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

/// Who is in a development photo.
pub fn person(photo: &str) -> &'static str {
    facegate_dev_assets::person_in(photo)
        .unwrap_or_else(|| panic!("unknown development photo {photo}"))
        .id
}

/// The threshold fgmatch's default rule puts in force for one enrolled person (a pair of photos
/// is a one-person gallery): the default embedder's calibration at the default target, or the
/// floor where that is higher.
pub fn match_threshold() -> f64 {
    let model = facegate_vision::runtime::model_identity(
        &facegate_vision::runtime::default_embedder_path(),
    )
    .expect("the default embedder (run `make setup`)");
    let calibration = facegate_vision::match_rule::find_calibration(
        &facegate_vision::match_rule::calibration_dir(),
        &model,
    )
    .expect("the default embedder's calibration (models/calibration)");
    facegate_vision::match_rule::MatchRule::default()
        .standing(&calibration, 1)
        .expect("the default rule")
        .threshold
}

/// A photo decoded the way the gate receives frames (I420 from the JPEG decoder).
pub struct Decoded {
    pub info: gst_video::VideoInfo,
    pub buffer: gst::Buffer,
}

pub fn decode(path: &Path) -> Decoded {
    let description = "filesrc name=source ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink";
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline
        .by_name("source")
        .unwrap()
        .set_property("location", path.to_str().unwrap());
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .pull_sample()
        .unwrap_or_else(|_| panic!("{} decodes", path.display()));
    pipeline.set_state(gst::State::Null).unwrap();
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    Decoded {
        info,
        buffer: sample.buffer_owned().unwrap(),
    }
}

/// A face's on-screen interval in a generated video (scripts/make-videos.sh writes the timeline).
#[derive(Debug, Deserialize)]
pub struct Walkup {
    pub photo: String,
    pub first_frame: usize,
    pub last_frame: usize,
}

#[derive(Debug, Deserialize)]
pub struct Timeline {
    pub frames: usize,
    pub walkups: Vec<Walkup>,
}

pub fn timeline(video_name: &str) -> Timeline {
    let path = video(video_name).with_extension("timeline.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: {SETUP}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Enrols (id, label, photo) into a fresh gallery under `dir` through the CLI's enrolment code.
pub fn enroll(dir: &Path, people: &[(&str, &str, &str)]) -> PathBuf {
    use facegatectl::enroll::{Request, enroll_all};
    let gallery = dir.join("gallery");
    let requests = people
        .iter()
        .map(|(id, label, file)| Request::one_photo(*id, Some((*label).into()), photo(file)))
        .collect();
    let report =
        enroll_all(&gallery, requests, false, &Models::default(), |_| {}).expect("gallery writes");
    assert_eq!(
        report.refused(),
        0,
        "development photos enrol: {:?}",
        report.outcomes
    );
    gallery
}
