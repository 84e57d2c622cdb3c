//! Building and running short-lived pipelines around the facegate elements.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use facegate_meta::FaceRecord;
use gst::prelude::*;
use thiserror::Error;

/// Formats our elements read; a videoconvert in front maps anything else (grey or 4:4:4 JPEGs) onto them.
pub const ELEMENT_FORMATS: &str = "video/x-raw,format={I420,NV12,RGB,BGR,RGBx,BGRx,RGBA,BGRA}";

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("pipeline description is invalid: {0}")]
    Parse(String),
    #[error("{file}: {message}")]
    Failed { file: String, message: String },
    /// One of our elements failed (a missing or corrupt model or gallery): a set-up problem,
    /// not a problem of the file being processed.
    #[error("{message}")]
    Setup { element: String, message: String },
}

/// Names the CLI gives our elements in its pipelines.
const OUR_ELEMENTS: [&str; 3] = ["detect", "embed", "match"];

/// Options shared by the pipelines the CLI builds.
#[derive(Clone, Debug, Default)]
pub struct Models {
    pub detector: Option<String>,
    pub embedder: Option<String>,
    pub input_size: Option<u32>,
}

impl Models {
    pub fn detect_element(&self) -> String {
        let mut element = String::from("fgdetect name=detect");
        if let Some(size) = self.input_size {
            element += &format!(" input-size={size}");
        }
        element
    }

    /// Sets model paths on the elements by name, so paths never go through the parser's quoting.
    pub fn apply(&self, pipeline: &gst::Pipeline) {
        for (name, path) in [("detect", &self.detector), ("embed", &self.embedder)] {
            if let (Some(element), Some(path)) = (pipeline.by_name(name), path) {
                element.set_property("model", path);
            }
        }
    }
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
}

impl ModelArgs {
    pub fn models(&self) -> Models {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        Models {
            detector: path(&self.detector_model),
            embedder: path(&self.embedder_model),
            input_size: self.input_size,
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
        args
    }
}

/// Parses a description of elements between a decoded file source and the sink the caller adds.
pub fn file_pipeline(
    file: &Path,
    middle: &str,
    sink: &str,
) -> Result<gst::Pipeline, PipelineError> {
    let description = format!(
        "filesrc name=source ! decodebin ! videoconvert ! {ELEMENT_FORMATS} ! {middle} ! {sink}"
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| PipelineError::Parse(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| PipelineError::Parse("not a pipeline".into()))?;
    if let Some(source) = pipeline.by_name("source") {
        source.set_property("location", file.to_string_lossy().as_ref());
    }
    Ok(pipeline)
}

/// Runs `pipeline` to the end of stream, calling `on_message` for every element message.
pub fn run(
    pipeline: &gst::Pipeline,
    file: &Path,
    mut on_message: impl FnMut(&gst::StructureRef),
) -> Result<(), PipelineError> {
    let failed = |message: String| PipelineError::Failed {
        file: file.display().to_string(),
        message,
    };
    let bus = pipeline
        .bus()
        .ok_or_else(|| failed("pipeline has no bus".into()))?;
    let started = pipeline.set_state(gst::State::Playing);
    let mut outcome = Ok(());
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => {
                let element = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                let message = err.error().to_string();
                outcome = Err(if OUR_ELEMENTS.contains(&element.as_str()) {
                    PipelineError::Setup { element, message }
                } else {
                    failed(message)
                });
                break;
            }
            gst::MessageView::Element(element) => {
                if let Some(structure) = element.structure() {
                    on_message(structure);
                }
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    if outcome.is_ok() && started.is_err() {
        outcome = Err(failed("the pipeline did not start".into()));
    }
    outcome
}

/// The face records of every frame reaching an appsink named `sink`, up to `max_frames`
/// (the stream is ended there).
pub fn collect_faces(
    pipeline: &gst::Pipeline,
    max_frames: usize,
) -> Arc<Mutex<Vec<Vec<FaceRecord>>>> {
    let frames = Arc::new(Mutex::new(Vec::new()));
    if let Some(sink) = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
    {
        let sink_frames = Arc::clone(&frames);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let records = sample
                        .buffer()
                        .map(|b| facegate_meta::read_faces(b).unwrap_or_default())
                        .unwrap_or_default();
                    let mut frames = sink_frames.lock().unwrap();
                    frames.push(records);
                    if frames.len() >= max_frames {
                        Err(gst::FlowError::Eos)
                    } else {
                        Ok(gst::FlowSuccess::Ok)
                    }
                })
                .build(),
        );
    }
    frames
}
