// SPDX-License-Identifier: MIT OR Apache-2.0
//! Identification of every face in an image or video: the gate's elements, with or without a gallery.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use facegate_meta::FaceRecord;
use facegate_meta::dump::FrameLine;
use gst::prelude::*;
use thiserror::Error;

use crate::output::{Output, OutputError};
use crate::pipeline::{self, Models, PipelineError};

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub gallery: Option<PathBuf>,
    pub models: Models,
    /// The gate's `policy.max_false_grant_rate` to match as (unset: the gate's default).
    pub max_false_grant_rate: Option<f64>,
}

impl Options {
    /// fgdetect ! fgtrack ! fgembed [! fgmatch]: what the gate runs.
    fn elements(&self) -> Vec<gst::Element> {
        let mut ours: Vec<gst::Element> = vec![
            self.models.detector().upcast(),
            pipeline::tracker().upcast(),
            self.models.embedder(None).upcast(),
        ];
        if let Some(gallery) = &self.gallery {
            ours.push(pipeline::matcher(gallery, self.max_false_grant_rate).upcast());
        }
        ours
    }
}

#[derive(Debug, Error)]
pub enum IdentifyError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// Kept as the source, so that the program's edge can tell a closed output from the rest.
    #[error("{0}")]
    Output(#[from] OutputError),
    #[error("{file}: malformed face metadata: {message}")]
    Metadata { file: PathBuf, message: String },
    /// The file decoded to no picture at all (a truncated JPEG, say): no frame, no line.
    #[error("{}: no picture could be decoded from it{}", file.display(), warning.as_ref().map(|w| format!(" ({w})")).unwrap_or_default())]
    NoPicture {
        file: PathBuf,
        warning: Option<String>,
    },
    #[error("{}: {}", file.display(), crate::jpeg::TRUNCATED)]
    TruncatedJpeg { file: PathBuf },
}

/// What the sink did with the frames: how many it wrote, and why it stopped, if it did.
struct Written<W: Write> {
    out: Output<W>,
    frames: u64,
    failed: Option<IdentifyError>,
}

/// Writes one fgmetadump JSON line (`facegate_meta::dump::FrameLine`) per frame of `file` to
/// `out`, each flushed as its frame passes. A file with no picture in it is an error, and so is
/// a write that fails (`OutputError` tells a closed output from a full disk).
pub fn dump<W: Write + Send + 'static>(
    file: &Path,
    options: &Options,
    out: Output<W>,
    embeddings: bool,
) -> Result<(), IdentifyError> {
    // A missing or unreadable file is left to the pipeline, which names it.
    if crate::jpeg::is_truncated(file).unwrap_or(false) {
        return Err(IdentifyError::TruncatedJpeg {
            file: file.to_path_buf(),
        });
    }
    let written = Arc::new(Mutex::new(Written {
        out,
        frames: 0,
        failed: None,
    }));
    let sink_written = Arc::clone(&written);
    let sink_file = file.to_path_buf();
    let sink = gst_app::AppSink::builder()
        .sync(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let mut written = sink_written.lock().unwrap_or_else(|e| e.into_inner());
                    match write_line(&sample, &mut written.out, embeddings, &sink_file) {
                        Ok(()) => {
                            written.frames += 1;
                            Ok(gst::FlowSuccess::Ok)
                        }
                        Err(error) => {
                            written.failed = Some(error);
                            Err(gst::FlowError::Error)
                        }
                    }
                })
                .build(),
        )
        .build();
    let pipeline = pipeline::FilePipeline::new(file, options.elements(), sink.upcast())?;
    let ran = pipeline.run(|_| {});
    let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
    // The sink's own failure comes first: the pipeline's error is only its consequence.
    if let Some(failed) = written.failed.take() {
        return Err(failed);
    }
    ran?;
    if written.frames == 0 {
        return Err(IdentifyError::NoPicture {
            file: file.to_path_buf(),
            warning: pipeline.first_warning(),
        });
    }
    Ok(())
}

fn write_line<W: Write>(
    sample: &gst::Sample,
    out: &mut Output<W>,
    embeddings: bool,
    file: &Path,
) -> Result<(), IdentifyError> {
    let malformed = |message: String| IdentifyError::Metadata {
        file: file.to_path_buf(),
        message,
    };
    let buffer = sample
        .buffer()
        .ok_or_else(|| malformed("a sample without a buffer".into()))?;
    let info = sample
        .caps()
        .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok())
        .ok_or_else(|| malformed("a frame without video caps".into()))?;
    let line = FrameLine::from_buffer(buffer, info.width(), info.height(), embeddings)
        .map_err(|e| malformed(e.to_string()))?;
    let json = serde_json::to_string(&line).map_err(|e| malformed(e.to_string()))?;
    out.line(json)?;
    Ok(())
}

/// The face records of every frame of `file`.
pub fn records(file: &Path, options: &Options) -> Result<Vec<Vec<FaceRecord>>, PipelineError> {
    let (sink, frames) = pipeline::frame_sink(usize::MAX);
    let pipeline = pipeline::FilePipeline::new(file, options.elements(), sink)?;
    pipeline.run(|_| {})?;
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(frames)
}
