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
    fn elements(&self) -> String {
        let mut middle = format!(
            "{} ! fgtrack ! fgembed name=embed",
            self.models.detect_element()
        );
        if self.gallery.is_some() {
            middle += " ! fgmatch name=match poll-interval=0";
        }
        middle
    }

    fn configure(&self, pipeline: &gst::Pipeline) {
        self.models.apply(pipeline);
        if let (Some(gallery), Some(matcher)) = (&self.gallery, pipeline.by_name("match")) {
            matcher.set_property("gallery", gallery.to_string_lossy().as_ref());
        }
    }
}

/// Writes one fgmetadump JSON line per frame of `file` to `location` ("-" for standard output).
pub fn dump(
    file: &Path,
    options: &Options,
    location: &str,
    embeddings: bool,
) -> Result<(), PipelineError> {
    let middle = format!(
        "{} ! fgmetadump name=dump embeddings={embeddings}",
        options.elements()
    );
    let pipeline = pipeline::file_pipeline(file, &middle, "fakesink sync=false")?;
    options.configure(&pipeline);
    if let Some(dump) = pipeline.by_name("dump") {
        dump.set_property("location", location);
    }
    pipeline::run(&pipeline, file, |_| {})
}

/// The face records of every frame of `file`.
pub fn records(file: &Path, options: &Options) -> Result<Vec<Vec<FaceRecord>>, PipelineError> {
    let pipeline =
        pipeline::file_pipeline(file, &options.elements(), "appsink name=sink sync=false")?;
    options.configure(&pipeline);
    let frames = pipeline::collect_faces(&pipeline, usize::MAX);
    pipeline::run(&pipeline, file, |_| {})?;
    let frames = std::mem::take(&mut *frames.lock().unwrap());
    Ok(frames)
}
