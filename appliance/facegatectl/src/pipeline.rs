// SPDX-License-Identifier: MIT OR Apache-2.0
//! Short-lived pipelines around the facegate elements: a decoded file, our elements as typed
//! handles (a property that does not exist fails loudly, never silently unset), then a sink.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use facegate_meta::FaceRecord;
use gst::glib;
use gst::prelude::*;
use gstfacegate::{FaceDetect, FaceEmbed, FaceMatch, FaceTrack};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    /// A GStreamer element we need is not installed (a plugin package is missing).
    #[error("cannot create {0}: {1} (is its GStreamer plugin package installed?)")]
    Element(&'static str, glib::BoolError),
    #[error("{file}: {message}")]
    Failed { file: String, message: String },
    /// One of our elements failed (a missing or corrupt model or gallery): a set-up problem,
    /// not a problem of the file being processed.
    #[error("{message}")]
    Setup { element: String, message: String },
}

/// Options shared by the pipelines the CLI builds.
#[derive(Clone, Debug, Default)]
pub struct Models {
    pub detector: Option<String>,
    pub embedder: Option<String>,
    pub input_size: Option<u32>,
    pub refine_landmarks: Option<bool>,
    /// fgembed's `fusion-frames`: how many of a track's embeddings it is matched on.
    pub fusion_frames: Option<u32>,
}

impl Models {
    /// The detector model file fgdetect loads: the one named, or the default.
    pub fn detector_path(&self) -> PathBuf {
        self.detector.as_ref().map_or_else(
            facegate_vision::runtime::default_detector_path,
            PathBuf::from,
        )
    }

    /// The embedder model file fgembed loads: the one named, or the default.
    pub fn embedder_path(&self) -> PathBuf {
        self.embedder.as_ref().map_or_else(
            facegate_vision::runtime::default_embedder_path,
            PathBuf::from,
        )
    }

    /// fgdetect with these models.
    pub fn detector(&self) -> FaceDetect {
        glib::Object::builder()
            .property_if_some("model", self.detector.as_deref())
            .property_if_some("input-size", self.input_size)
            .property_if_some("refine-landmarks", self.refine_landmarks)
            .build()
    }

    /// fgembed with these models; `refresh_interval` 0 embeds every frame (photos).
    pub fn embedder(&self, refresh_interval: Option<u32>) -> FaceEmbed {
        glib::Object::builder()
            .property_if_some("model", self.embedder.as_deref())
            .property_if_some("refresh-interval", refresh_interval)
            .property_if_some("fusion-frames", self.fusion_frames)
            .build()
    }
}

/// fgtrack with its defaults.
pub fn tracker() -> FaceTrack {
    glib::Object::builder().build()
}

/// fgmatch on `gallery`, reading it once (a short run does not watch for new generations), its
/// threshold following the gallery at `max_false_grant_rate` (unset: fgmatch's default, the
/// gate's).
pub fn matcher(gallery: &Path, max_false_grant_rate: Option<f64>) -> FaceMatch {
    glib::Object::builder()
        .property("gallery", gallery.to_string_lossy().as_ref())
        .property("poll-interval", 0u32)
        .property_if_some("max-false-grant-rate", max_false_grant_rate)
        .build()
}

/// The model options every command that runs the elements takes (`--detector-model` …).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ModelArgs {
    /// Face detector model (default: $FACEGATE_MODEL_DIR/facegate_yunet_2023mar.onnx)
    #[arg(long, global = true, value_name = "ONNX")]
    pub detector_model: Option<PathBuf>,
    /// Face embedder model (default: $FACEGATE_MODEL_DIR/facegate_sface_2021dec.onnx)
    #[arg(long, global = true, value_name = "ONNX")]
    pub embedder_model: Option<PathBuf>,
    /// Detector input size (longer side, pixels); enrolment defaults to 640, identification to fgdetect's default
    #[arg(long, global = true, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(32..=4096))]
    pub input_size: Option<u32>,
    /// Detect each face again at up to full resolution for its landmarks when input-size scaled it down (fgdetect refine-landmarks)
    #[arg(long, global = true)]
    pub refine_landmarks: bool,
    /// Embeddings of a tracked face fused into the one it is matched with (fgembed fusion-frames; 1: each alone)
    #[arg(long, global = true, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fusion_frames: Option<u32>,
}

impl ModelArgs {
    pub fn models(&self) -> Models {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        Models {
            detector: path(&self.detector_model),
            embedder: path(&self.embedder_model),
            input_size: self.input_size,
            refine_landmarks: self.refine_landmarks.then_some(true),
            fusion_frames: self.fusion_frames,
        }
    }

    /// The same options as command-line arguments, to hand to another program.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        for (flag, value) in [
            ("--detector-model", &self.detector_model),
            ("--embedder-model", &self.embedder_model),
        ] {
            if let Some(path) = value {
                args.extend([flag.into(), path.into()]);
            }
        }
        if let Some(size) = self.input_size {
            args.extend(["--input-size".into(), size.to_string().into()]);
        }
        if self.refine_landmarks {
            args.push("--refine-landmarks".into());
        }
        if let Some(frames) = self.fusion_frames {
            args.extend(["--fusion-frames".into(), frames.to_string().into()]);
        }
        args
    }
}

/// A decoded file, then `ours` in order, then `sink`.
pub struct FilePipeline {
    pipeline: gst::Pipeline,
    ours: Vec<gst::Element>,
    file: PathBuf,
    /// The first warning of the last run (a decoder's "corrupt data", say).
    first_warning: Mutex<Option<String>>,
}

fn make(factory: &'static str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|e| PipelineError::Element(factory, e))
}

impl FilePipeline {
    pub fn new(
        file: &Path,
        ours: Vec<gst::Element>,
        sink: gst::Element,
    ) -> Result<FilePipeline, PipelineError> {
        let failed = |message: String| PipelineError::Failed {
            file: file.display().to_string(),
            message,
        };
        let source = make("filesrc")?;
        source.set_property("location", file.to_string_lossy().as_ref());
        let decode = make("decodebin")?;
        // Maps anything the decoder gives (grey or 4:4:4 JPEGs) onto the formats our elements read.
        let convert = make("videoconvert")?;
        let formats = make("capsfilter")?;
        formats.set_property("caps", gstfacegate::video::caps());
        let pipeline = gst::Pipeline::new();
        let chain: Vec<&gst::Element> = [&convert, &formats]
            .into_iter()
            .chain(&ours)
            .chain([&sink])
            .collect();
        pipeline
            .add_many([&source, &decode])
            .and_then(|()| pipeline.add_many(chain.iter().copied()))
            .and_then(|()| source.link(&decode))
            .and_then(|()| gst::Element::link_many(chain.iter().copied()))
            .map_err(|e| failed(format!("cannot build the pipeline: {e}")))?;
        let convert_sink = convert.static_pad("sink");
        decode.connect_pad_added(move |_, pad| {
            if let Some(sink) = convert_sink.as_ref().filter(|sink| !sink.is_linked()) {
                // Only a video pad links; an audio track of a video file is left unlinked.
                let _ = pad.link(sink);
            }
        });
        Ok(FilePipeline {
            pipeline,
            ours,
            file: file.to_path_buf(),
            first_warning: Mutex::new(None),
        })
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    /// The first warning the last `run` saw, with the element that gave it.
    pub fn first_warning(&self) -> Option<String> {
        self.first_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs to the end of stream, calling `on_message` for every element message.
    pub fn run(&self, mut on_message: impl FnMut(&gst::StructureRef)) -> Result<(), PipelineError> {
        let failed = |message: String| PipelineError::Failed {
            file: self.file.display().to_string(),
            message,
        };
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| failed("pipeline has no bus".into()))?;
        let started = self.pipeline.set_state(gst::State::Playing);
        let mut outcome = Ok(());
        for message in bus.iter_timed(gst::ClockTime::NONE) {
            match message.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(err) => {
                    let ours = err.src().filter(|src| {
                        self.ours
                            .iter()
                            .any(|e| e.upcast_ref::<gst::Object>() == *src)
                    });
                    let message = err.error().to_string();
                    outcome = Err(match ours {
                        Some(element) => PipelineError::Setup {
                            element: element.name().to_string(),
                            message,
                        },
                        None => failed(message),
                    });
                    break;
                }
                gst::MessageView::Element(element) => {
                    if let Some(structure) = element.structure() {
                        on_message(structure);
                    }
                }
                gst::MessageView::Warning(warning) => {
                    let mut first = self.first_warning.lock().unwrap_or_else(|e| e.into_inner());
                    if first.is_none() {
                        let source = warning.src().map(|s| s.name().to_string());
                        *first = Some(match source {
                            Some(source) => format!("{source}: {}", warning.error()),
                            None => warning.error().to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        if outcome.is_ok() && started.is_err() {
            outcome = Err(failed("the pipeline did not start".into()));
        }
        outcome
    }
}

/// What a frame sink collected: the face records of each frame.
pub type Frames = Arc<Mutex<Vec<Vec<FaceRecord>>>>;

/// An appsink that keeps the face records of every frame, up to `max_frames` (the stream is
/// ended there).
pub fn frame_sink(max_frames: usize) -> (gst::Element, Frames) {
    let frames: Frames = Arc::default();
    let sink_frames = Arc::clone(&frames);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let records = sample
                        .buffer()
                        .map(|b| facegate_meta::read_faces(b).unwrap_or_default())
                        .unwrap_or_default();
                    let mut frames = sink_frames.lock().unwrap_or_else(|e| e.into_inner());
                    frames.push(records);
                    if frames.len() >= max_frames {
                        Err(gst::FlowError::Eos)
                    } else {
                        Ok(gst::FlowSuccess::Ok)
                    }
                })
                .build(),
        )
        .build();
    (sink.upcast(), frames)
}

/// A sink that drops what reaches it, as fast as it comes.
pub fn discard_sink() -> Result<gst::Element, PipelineError> {
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    Ok(sink)
}
