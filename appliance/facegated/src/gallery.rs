// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gallery as the gate follows it. At start it must hold embeddings of the model the
//! pipeline's fgembed runs (anything else would match no face); afterwards every new generation
//! must be of that same model and dimension and pass the gallery's file checks before the
//! status, or staff asking `ReloadGallery`, are told of it, as fgmatch requires before it
//! searches one. A refused generation is logged once, with its reason, and the last good one
//! stays in use.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use facegate_vision::gallery::{Gallery, GalleryError};
use facegate_vision::runtime;
use gst::prelude::*;
use thiserror::Error;
use tracing::{info, warn};

use crate::service::StatusCell;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(
        "{}: holds embeddings of model {gallery_model}, but the pipeline's fgembed embeds with {embedder_model} ({}): enrol the gallery again with the gate's model",
        dir.display(),
        embedder.display()
    )]
    OtherEmbedder {
        dir: PathBuf,
        gallery_model: String,
        embedder_model: String,
        embedder: PathBuf,
    },
}

/// The gallery the gate decides with, and what each of its generations must be.
#[derive(Debug)]
pub struct FollowedGallery {
    dir: PathBuf,
    model: String,
    dim: u32,
    /// The last problem logged (a refused generation, an unreadable manifest), so that each is
    /// logged once rather than once a poll.
    reported: Mutex<Option<String>>,
}

impl FollowedGallery {
    /// Opens the gallery in `dir` for `pipeline`, refusing one whose model is not that of every
    /// fgembed in the pipeline (the model files are hashed as fgembed identifies them). A
    /// pipeline without fgembed is refused elsewhere (it has no fgmatch to feed) or gets its
    /// embeddings from elsewhere: its gallery's own model is then the one required.
    pub fn open(
        dir: &Path,
        pipeline: &gst::Pipeline,
    ) -> Result<(FollowedGallery, Gallery), StartError> {
        let gallery = Gallery::open(dir)?;
        for embedder in embedder_models(pipeline) {
            // A model that cannot be read is reported, as fgembed words it, when the pipeline is
            // first tried.
            let Ok(embedder_model) = runtime::model_identity(&embedder) else {
                continue;
            };
            if embedder_model != gallery.model() {
                return Err(StartError::OtherEmbedder {
                    dir: dir.to_path_buf(),
                    gallery_model: gallery.model().to_owned(),
                    embedder_model,
                    embedder,
                });
            }
        }
        let followed = FollowedGallery {
            dir: dir.to_path_buf(),
            model: gallery.model().to_owned(),
            dim: gallery.dim(),
            reported: Mutex::new(None),
        };
        Ok((followed, gallery))
    }

    /// The generation on disk now, refused unless it is of the gate's model and dimension and
    /// passes every file check.
    pub fn open_current(&self) -> Result<Gallery, GalleryError> {
        Gallery::open_matching(&self.dir, &self.model, self.dim)
    }

    /// Takes a new generation into the status once it is checked (the supervisor calls this every
    /// second); a refused one is logged once and the status keeps the generation in use.
    pub fn refresh(&self, status: &StatusCell) {
        let in_use = status.snapshot().gallery_generation;
        let checked = Gallery::read_generation(&self.dir).and_then(|generation| {
            if generation == in_use {
                return Ok(None);
            }
            self.open_current().map(Some)
        });
        match checked {
            Ok(None) => self.clear_report(),
            Ok(Some(gallery)) => {
                self.clear_report();
                info!(
                    "gallery {}: generation {} ({} people)",
                    self.dir.display(),
                    gallery.generation(),
                    gallery.len()
                );
                status.update(|s| {
                    s.gallery_generation = gallery.generation();
                    s.gallery_size = gallery.len() as u64;
                });
            }
            Err(error) => {
                let problem = format!(
                    "{}: keeping gallery generation {in_use}: {error}",
                    self.dir.display()
                );
                let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
                if reported.as_deref() != Some(problem.as_str()) {
                    warn!("{problem}");
                    *reported = Some(problem);
                }
            }
        }
    }

    fn clear_report(&self) {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The model file of every fgembed in `pipeline`, as fgembed resolves it (its `model` property,
/// else the default model).
fn embedder_models(pipeline: &gst::Pipeline) -> Vec<PathBuf> {
    pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .filter_map(|element| element.downcast::<gstfacegate::FaceEmbed>().ok())
        .map(|embedder| {
            match embedder
                .property::<Option<String>>("model")
                .filter(|model| !model.is_empty())
            {
                Some(model) => PathBuf::from(model),
                None => runtime::default_embedder_path(),
            }
        })
        .collect()
}
