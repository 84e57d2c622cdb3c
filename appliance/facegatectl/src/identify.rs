// SPDX-License-Identifier: MIT OR Apache-2.0
//! Identification of every face in an image or video: the gate's elements, with or without a gallery.

use std::path::{Path, PathBuf};

use facegate_meta::FaceRecord;
use gst::prelude::*;

use crate::pipeline::{self, Models, PipelineError};

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub gallery: Option<PathBuf>,
    pub models: Models,
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
            ours.push(pipeline::matcher(gallery).upcast());
        }
        ours
    }
}

/// Writes one fgmetadump JSON line per frame of `file` to `location` ("-" for standard output).
pub fn dump(
    file: &Path,
    options: &Options,
    location: &str,
    embeddings: bool,
) -> Result<(), PipelineError> {
    let mut ours = options.elements();
    ours.push(pipeline::metadump(location, embeddings).upcast());
    let pipeline = pipeline::FilePipeline::new(file, ours, pipeline::discard_sink()?)?;
    pipeline.run(|_| {})
}

/// The face records of every frame of `file`.
pub fn records(file: &Path, options: &Options) -> Result<Vec<Vec<FaceRecord>>, PipelineError> {
    let (sink, frames) = pipeline::frame_sink(usize::MAX);
    let pipeline = pipeline::FilePipeline::new(file, options.elements(), sink)?;
    pipeline.run(|_| {})?;
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(frames)
}
