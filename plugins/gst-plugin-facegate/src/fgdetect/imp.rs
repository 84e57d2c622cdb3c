// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use facegate_vision::{Detector, DetectorConfig, Face, detector, runtime};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::{model, video};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgdetect",
        gst::DebugColorFlags::empty(),
        Some("FaceGate face detector"),
    )
});

// One source for the detector's defaults: plugins/vision (the element, the service and the CLI agree).
const DEFAULT_SCORE_THRESHOLD: f64 = detector::DEFAULT_SCORE_THRESHOLD;
const DEFAULT_NMS_THRESHOLD: f64 = detector::DEFAULT_NMS_THRESHOLD;
const DEFAULT_INPUT_SIZE: u32 = detector::DEFAULT_INPUT_SIZE as u32;
const DEFAULT_MAX_FACES: u32 = detector::DEFAULT_MAX_FACES as u32;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_REFINE_LANDMARKS: bool = detector::DEFAULT_REFINE_LANDMARKS;

#[derive(Clone, Debug)]
struct Settings {
    model: Option<String>,
    score_threshold: f64,
    nms_threshold: f64,
    input_size: u32,
    max_faces: u32,
    interval: u32,
    threads: u32,
    refine_landmarks: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            nms_threshold: DEFAULT_NMS_THRESHOLD,
            input_size: DEFAULT_INPUT_SIZE,
            max_faces: DEFAULT_MAX_FACES,
            interval: DEFAULT_INTERVAL,
            threads: DEFAULT_THREADS,
            refine_landmarks: DEFAULT_REFINE_LANDMARKS,
        }
    }
}

impl Settings {
    fn detector_config(&self) -> DetectorConfig {
        DetectorConfig {
            score_threshold: self.score_threshold as f32,
            nms_threshold: self.nms_threshold as f32,
            input_size: self.input_size as usize,
            max_faces: self.max_faces as usize,
            refine_landmarks: self.refine_landmarks,
        }
    }
}

struct State {
    detector: Detector,
    /// The last detection pass's faces, re-attached on frames skipped by `interval`.
    faces: Vec<Face>,
    frames: u64,
}

impl State {
    /// Drops the carried faces; the next frame runs the detector.
    fn forget_faces(&mut self) {
        self.faces.clear();
        self.frames = 0;
    }
}

#[derive(Default)]
pub struct FaceDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceDetect {
    const NAME: &'static str = "GstFgDetect";
    type Type = super::FaceDetect;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(&format!(
                        "Path of the YuNet ONNX model; unset: ${}/{} (or {}/{})",
                        runtime::MODEL_DIR_ENV,
                        runtime::DEFAULT_DETECTOR_FILE,
                        runtime::SYSTEM_MODEL_DIR,
                        runtime::DEFAULT_DETECTOR_FILE
                    ))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("score-threshold")
                    .nick("Score threshold")
                    .blurb("Minimum face score (0..1) for a face to be reported")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_SCORE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("nms-threshold")
                    .nick("NMS threshold")
                    .blurb("Overlap (IoU) above which the weaker of two detections is dropped")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NMS_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("input-size")
                    .nick("Input size")
                    .blurb("Longer side of the network input in pixels (320, 640, 1280…); the frame is scaled to it, aspect kept, padded to a multiple of 32. Smaller is faster, larger finds smaller faces")
                    .minimum(32)
                    .maximum(4096)
                    .default_value(DEFAULT_INPUT_SIZE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-faces")
                    .nick("Maximum faces")
                    .blurb("At most this many faces per frame, best first")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(DEFAULT_MAX_FACES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Run the detector on every Nth frame; frames in between carry the last faces found")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("refine-landmarks")
                    .nick("Refine landmarks")
                    .blurb("When input-size scaled a face down, detect it again in a crop around it at up to full resolution and take its landmarks from there (one more, small, inference per such face); embeddings follow the landmarks' precision")
                    .default_value(DEFAULT_REFINE_LANDMARKS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Inference threads (0: ONNX Runtime's choice, one per core)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model = value.get().expect("type checked upstream"),
            "score-threshold" => {
                settings.score_threshold = value.get().expect("type checked upstream")
            }
            "nms-threshold" => settings.nms_threshold = value.get().expect("type checked upstream"),
            "input-size" => settings.input_size = value.get().expect("type checked upstream"),
            "max-faces" => settings.max_faces = value.get().expect("type checked upstream"),
            "interval" => settings.interval = value.get().expect("type checked upstream"),
            "threads" => settings.threads = value.get().expect("type checked upstream"),
            "refine-landmarks" => {
                settings.refine_landmarks = value.get().expect("type checked upstream")
            }
            name => unreachable!("unknown property {name}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model.to_value(),
            "score-threshold" => settings.score_threshold.to_value(),
            "nms-threshold" => settings.nms_threshold.to_value(),
            "input-size" => settings.input_size.to_value(),
            "max-faces" => settings.max_faces.to_value(),
            "interval" => settings.interval.to_value(),
            "threads" => settings.threads.to_value(),
            "refine-landmarks" => settings.refine_landmarks.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceDetect {}

impl ElementImpl for FaceDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate face detector",
                "Filter/Analyzer/Video",
                "Detects faces with YuNet and attaches a face region (GstVideoRegionOfInterestMeta, roi type \"face\") with score and five landmarks to each buffer",
                "FaceGate developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(video::filter_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for FaceDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let path = model::resolve(settings.model.as_deref(), runtime::default_detector_path);
        let detector = Detector::load(&path, settings.threads as usize)
            .map_err(|e| model::error_message(&e))?;
        detector
            .check_input_size(settings.input_size as usize)
            .map_err(|e| model::error_message(&e))?;
        gst::info!(CAT, imp = self, "loaded {}", detector.identity());
        *self.state.lock().unwrap() = Some(State {
            detector,
            faces: Vec::with_capacity(64),
            frames: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A new stream or a seek: faces carried over by `interval` belong to frames before it.
        if matches!(
            event.view(),
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
        ) && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            state.forget_faces();
        }
        self.parent_sink_event(event)
    }
}

impl VideoFilterImpl for FaceDetect {
    fn set_info(
        &self,
        _incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        _outcaps: &gst::Caps,
        _out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        gst::debug!(CAT, imp = self, "configured for {:?}", in_info);
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            // Faces found at another size would land in the wrong place on the new frames.
            state.forget_faces();
        }
        Ok(())
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (config, interval) = {
            let settings = self.settings.lock().unwrap();
            (settings.detector_config(), settings.interval.max(1) as u64)
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let run_now = state.frames % interval == 0;
        state.frames += 1;
        if run_now {
            let image = video::vision_frame(frame).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                gst::FlowError::from(e)
            })?;
            state
                .detector
                .detect(&image, &config, &mut state.faces)
                .map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                    gst::FlowError::Error
                })?;
            gst::trace!(CAT, imp = self, "{} faces", state.faces.len());
        }
        let (width, height) = (frame.width(), frame.height());
        let model = state.detector.identity();
        let buffer = video::buffer_mut(frame);
        for face in &state.faces {
            let b = face.bbox;
            let bbox = facegate_meta::pixel_rect(b.x, b.y, b.w, b.h, width, height);
            facegate_meta::add_face(buffer, bbox, face.score as f64, &face.landmarks, model);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
