// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use facegate_meta::Liveness;
use facegate_vision::Rect;
use facegate_vision::liveness::model::PadModel;
use facegate_vision::liveness::{
    Cue, Cues, FaceView, Grey, LivenessConfig, LivenessTracks, Reading,
};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::{model, video};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fglive",
        gst::DebugColorFlags::empty(),
        Some("FaceGate presentation-attack detection"),
    )
});

use facegate_vision::liveness::{
    DEFAULT_MIN_FRAMES, DEFAULT_MOTION, DEFAULT_PAPER_MARGIN, DEFAULT_PRINT, DEFAULT_SCREEN,
    DEFAULT_VETO_FRAMES,
};
/// Frames after which an unseen track's evidence is dropped (fgtrack's tracks are gone long
/// before).
const TRACK_IDLE_FRAMES: u64 = 300;

#[derive(Clone, Debug, Default)]
struct Settings {
    model: Option<String>,
    /// The cues and the evidence rule; the properties set its fields.
    liveness: LivenessConfig,
}

/// What the cues need of one tracked face, read before the verdicts are written.
#[derive(Clone, Copy, Debug)]
struct FaceInput {
    /// Its place among the buffer's faces.
    index: usize,
    track: u64,
    bbox: Rect,
    landmarks: [[f32; 2]; facegate_meta::LANDMARKS],
}

struct State {
    cues: Cues,
    tracks: LivenessTracks,
    frames: u64,
    grey: Vec<u8>,
    inputs: Vec<FaceInput>,
    readings: Vec<(Cue, Reading)>,
    verdicts: Vec<Option<Liveness>>,
}

#[derive(Default)]
pub struct FaceLive {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceLive {
    const NAME: &'static str = "GstFgLive";
    type Type = super::FaceLive;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceLive {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("A passive presentation-attack classifier (ONNX, MiniFASNet family) with its model card beside it; unset: the model-free cues only")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("screen")
                    .nick("Screen cues")
                    .blurb("Look for a device's bezel, a screen's moire and glare on glass")
                    .default_value(DEFAULT_SCREEN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("paper-margin")
                    .nick("Paper-margin cue")
                    .blurb("Look for a print's unprinted margin: a bright flat band with straight edges on two sides of the face")
                    .default_value(DEFAULT_PAPER_MARGIN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("print")
                    .nick("Print cue")
                    .blurb("Look for paper grain strong against a faded print's contrast (off by default: a gate camera rarely resolves paper, and live faces trip it)")
                    .default_value(DEFAULT_PRINT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("motion")
                    .nick("Motion cue")
                    .blurb("Look at whether the five landmarks move as one plane (a photo) or not (a head)")
                    .default_value(DEFAULT_MOTION)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-frames")
                    .nick("Minimum frames")
                    .blurb("Frames the cues must have judged a track on before it can be live: the frames they have to catch an attack (at least the frames a veto needs)")
                    .minimum(DEFAULT_VETO_FRAMES)
                    .maximum(300)
                    .default_value(DEFAULT_MIN_FRAMES)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model = value.get().expect("type checked upstream"),
            "screen" => settings.liveness.screen = value.get().expect("type checked upstream"),
            "paper-margin" => {
                settings.liveness.paper_margin = value.get().expect("type checked upstream")
            }
            "print" => settings.liveness.print = value.get().expect("type checked upstream"),
            "motion" => settings.liveness.motion = value.get().expect("type checked upstream"),
            "min-frames" => {
                settings.liveness.min_frames = value.get().expect("type checked upstream")
            }
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model.to_value(),
            "screen" => settings.liveness.screen.to_value(),
            "paper-margin" => settings.liveness.paper_margin.to_value(),
            "print" => settings.liveness.print.to_value(),
            "motion" => settings.liveness.motion.to_value(),
            "min-frames" => settings.liveness.min_frames.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceLive {}

impl ElementImpl for FaceLive {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate presentation-attack detection",
                "Filter/Analyzer/Video",
                "Judges each tracked face live or a presentation attack (phone, print) over its frames and attaches a facegate-liveness param (verdict, score, cue)",
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

impl BaseTransformImpl for FaceLive {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let model_path = self.settings.lock().unwrap().model.clone();
        let model = match model_path.as_deref() {
            Some(path) if !path.is_empty() => {
                let model =
                    PadModel::load(Path::new(path)).map_err(|e| model::error_message(&e))?;
                let card = &model.card().model;
                gst::info!(CAT, imp = self, "loaded {} ({})", path, card.name);
                if !card.commercial_use {
                    // On the bus, not only in the debug log: whoever runs the pipeline must hear it.
                    gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        (
                            "presentation-attack model {path} is not cleared for commercial use ({}): for evaluation, never on a gate that charges fares",
                            card.licence
                        )
                    );
                }
                Some(model)
            }
            _ => None,
        };
        *self.state.lock().unwrap() = Some(State {
            cues: Cues::new(model),
            tracks: LivenessTracks::new(),
            frames: 0,
            grey: Vec::new(),
            inputs: Vec::with_capacity(8),
            readings: Vec::with_capacity(8),
            verdicts: Vec::with_capacity(8),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A new stream or a flush renumbers the tracks upstream: the old evidence is nobody's.
        if matches!(
            event.view(),
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
        ) && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            state.tracks = LivenessTracks::new();
        }
        self.parent_sink_event(event)
    }
}

impl VideoFilterImpl for FaceLive {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let config = self.settings.lock().unwrap().liveness;
        let mut guard = self.state.lock().unwrap();
        let State {
            cues,
            tracks,
            frames,
            grey,
            inputs,
            readings,
            verdicts,
        } = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let frame_number = *frames;
        *frames += 1;

        inputs.clear();
        verdicts.clear();
        for (index, face) in facegate_meta::faces(frame.buffer()).enumerate() {
            let (x, y, w, h) = face.bbox();
            let track = face.track().ok().flatten();
            let landmarks = face.landmarks().ok().flatten();
            verdicts.push(None);
            // Untracked faces have no history to judge: they get no verdict, and the gate
            // service grants nobody without one.
            if let (Some(track), Some(landmarks)) = (track, landmarks) {
                inputs.push(FaceInput {
                    index,
                    track: track.id,
                    bbox: Rect {
                        x: x as f32,
                        y: y as f32,
                        w: w as f32,
                        h: h as f32,
                    },
                    landmarks,
                });
            }
        }
        if inputs.is_empty() {
            tracks.forget_before(frame_number.saturating_sub(TRACK_IDLE_FRAMES));
            return Ok(gst::FlowSuccess::Ok);
        }

        let image = video::vision_frame(frame).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
            gst::FlowError::from(e)
        })?;
        image.grey_into(grey);
        let grey_view = Grey {
            pixels: grey,
            width: image.width(),
            height: image.height(),
        };
        for input in inputs.iter() {
            let evidence = tracks.evidence(input.track, frame_number);
            let face = FaceView {
                grey: grey_view,
                bbox: input.bbox,
                landmarks: input.landmarks,
            };
            readings.clear();
            if let Err(e) = cues.read(&image, &face, evidence, &config, readings) {
                gst::element_imp_error!(self, gst::LibraryError::Failed, ("{}", e));
                return Err(gst::FlowError::Error);
            }
            if CAT.threshold() >= gst::DebugLevel::Trace {
                gst::trace!(
                    CAT,
                    imp = self,
                    "track {}: {:?}",
                    input.track,
                    cues.measures(&face)
                );
            }
            evidence.add(readings, &config);
            let judgement = evidence.judgement(&config);
            gst::log!(
                CAT,
                imp = self,
                "track {}: {:?} -> {} ({:.2}, {})",
                input.track,
                readings,
                judgement.verdict,
                judgement.score,
                judgement.cue
            );
            verdicts[input.index] = Some(Liveness {
                verdict: judgement.verdict,
                score: judgement.score,
                cue: judgement.cue,
            });
        }
        tracks.forget_before(frame_number.saturating_sub(TRACK_IDLE_FRAMES));

        let mut verdicts = verdicts.iter();
        facegate_meta::for_each_face_mut(video::buffer_mut(frame), |face| {
            if let Some(Some(liveness)) = verdicts.next() {
                face.set_liveness(liveness);
            }
        });
        Ok(gst::FlowSuccess::Ok)
    }
}
