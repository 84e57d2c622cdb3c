// SPDX-License-Identifier: MIT OR Apache-2.0
//! Photos through the gate's own elements, with the models loaded once: `appsrc ! fgdetect !
//! fgembed ! appsink` stays playing, and each photo, decoded by a small pipeline of its own
//! (`filesrc ! decodebin ! videoconvert`), goes through it as one frame. A batch of enrolments
//! runs one of these per core.

use std::path::Path;
use std::sync::{Arc, Mutex};

use facegate_meta::FaceRecord;
use gst::prelude::*;

use crate::enroll::{ENROL_INPUT_SIZE, Refusal};
use crate::pipeline::{self, Models, PipelineError};

/// How long one photo may take through the models before the embedder is taken to be stuck.
const PHOTO_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(60);

pub struct PhotoEmbedder {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    sink: gst_app::AppSink,
    /// The next photo's timestamp: a second apart, so that no element takes two for one moment.
    next_pts: gst::ClockTime,
}

impl PhotoEmbedder {
    /// Loads the models (fgdetect at the enrolment input size unless `models` names one);
    /// `threads` is each model's inference threads (0: one per core).
    pub fn new(models: &Models, threads: u32) -> Result<PhotoEmbedder, Refusal> {
        let models = Models {
            input_size: models.input_size.or(Some(ENROL_INPUT_SIZE)),
            ..models.clone()
        };
        let setup = |e: &dyn std::fmt::Display| Refusal::Setup(e.to_string());
        // Each photo's sample carries its own caps (sizes differ from photo to photo).
        let source = gst_app::AppSrc::builder().format(gst::Format::Time).build();
        let detector = models.detector();
        detector.set_property("threads", threads);
        let embedder = models.embedder(Some(0));
        embedder.set_property("threads", threads);
        let sink = gst_app::AppSink::builder().sync(false).build();
        let pipeline = gst::Pipeline::new();
        let chain: [&gst::Element; 4] = [
            source.upcast_ref(),
            detector.upcast_ref(),
            embedder.upcast_ref(),
            sink.upcast_ref(),
        ];
        pipeline
            .add_many(chain)
            .and_then(|()| gst::Element::link_many(chain))
            .map_err(|e| setup(&e))?;
        let embedder = PhotoEmbedder {
            pipeline,
            source,
            sink,
            next_pts: gst::ClockTime::ZERO,
        };
        // The elements load their models within this state change (READY to PAUSED, before any
        // frame: the pipeline prerolls on the first photo); a model that cannot be loaded is
        // their error on the bus by the time it returns.
        let started = embedder.pipeline.set_state(gst::State::Playing);
        if let Some(error) = embedder.bus_error() {
            return Err(Refusal::Setup(error));
        }
        started.map_err(|e| setup(&e))?;
        Ok(embedder)
    }

    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error])).find_map(|message| {
            match message.view() {
                gst::MessageView::Error(error) => Some(match error.src() {
                    Some(source) => format!("{}: {}", source.name(), error.error()),
                    None => error.error().to_string(),
                }),
                _ => None,
            }
        })
    }

    /// The face records of `photo`'s one frame.
    pub fn faces(&mut self, photo: &Path) -> Result<Vec<FaceRecord>, Refusal> {
        let decoded = decode(photo)?;
        let pts = self.next_pts;
        self.next_pts += gst::ClockTime::SECOND;
        let mut buffer = decoded
            .buffer_owned()
            .ok_or_else(|| Refusal::Unreadable("no picture in the file".into()))?;
        buffer.make_mut().set_pts(pts);
        let caps = decoded.caps_owned();
        let sample = gst::Sample::builder()
            .buffer(&buffer)
            .caps_if_some(caps.as_ref())
            .build();
        self.source
            .push_sample(&sample)
            .map_err(|e| Refusal::Setup(format!("the embedder refused a photo: {e:?}")))?;
        let Some(out) = self.sink.try_pull_sample(PHOTO_TIMEOUT) else {
            return Err(Refusal::Setup(self.bus_error().unwrap_or_else(|| {
                format!("no result for {} within {PHOTO_TIMEOUT}", photo.display())
            })));
        };
        Ok(out
            .buffer()
            .map(|b| facegate_meta::read_faces(b).unwrap_or_default())
            .unwrap_or_default())
    }
}

impl Drop for PhotoEmbedder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The photo's first picture, in the formats the elements read.
fn decode(photo: &Path) -> Result<gst::Sample, Refusal> {
    let kept: Arc<Mutex<Option<gst::Sample>>> = Arc::default();
    let keeper = Arc::clone(&kept);
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    *keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(sample);
                    Err(gst::FlowError::Eos)
                })
                .build(),
        )
        .build();
    let decoder = pipeline::FilePipeline::new(photo, Vec::new(), sink.upcast())
        .map_err(|e| Refusal::Setup(e.to_string()))?;
    decoder.run(|_| {}).map_err(|e| match e {
        PipelineError::Failed { message, .. } => Refusal::Unreadable(message),
        other => Refusal::Setup(other.to_string()),
    })?;
    kept.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| Refusal::Unreadable("no picture in the file".into()))
}
