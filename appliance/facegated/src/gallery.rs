// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gallery as the gate follows it. At start it must hold embeddings of the model the
//! pipeline's fgembed runs (anything else would match no face); afterwards every new generation
//! must be of that same model and dimension and pass the gallery's file checks before the
//! status, or staff asking `ReloadGallery`, are told of it, as fgmatch requires before it
//! searches one. A refused generation is logged once, with its reason, and the last good one
//! stays in use.
//!
//! The gallery's size sets the threshold in force (facegate_vision::match_rule): the gallery is
//! followed with its model's calibration, and a gallery beyond the size the model serves safely
//! is refused at start unless `policy.allow_unsafe_gallery`.
//!
//! In identification `token` the gate keeps no gallery ([`FollowedGallery::for_tokens`]): only
//! the embedder's calibration is followed, for the 1:1 threshold against a token's template.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use facegate_vision::calibration::{Calibration, CalibrationError};
use facegate_vision::gallery::{Gallery, GalleryError};
use facegate_vision::match_rule::{self, MatchRule, Standing};
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
    #[error("{0}")]
    Calibration(#[from] CalibrationError),
    #[error(
        "identification token compares faces from fgembed with tokens, but the pipeline has no fgembed"
    )]
    NoEmbedder,
    #[error(
        "{}: {size} people is beyond what model {model} serves safely: at most {limit} at policy.max_false_grant_rate {target} within policy.max_false_reject_rate {budget} (docs/ACCURACY.md); shrink the gallery, or set policy.allow_unsafe_gallery = true to accept more false grants",
        dir.display()
    )]
    Unsafe {
        dir: PathBuf,
        size: u64,
        model: String,
        limit: u64,
        target: f64,
        budget: f64,
    },
}

/// The gallery the gate decides with, and what each of its generations must be.
#[derive(Debug)]
pub struct FollowedGallery {
    /// `None` in identification `token`: no gallery is kept.
    dir: Option<PathBuf>,
    model: String,
    dim: u32,
    calibration: Calibration,
    rule: MatchRule,
    /// The last problem logged (a refused generation, an unreadable manifest), so that each is
    /// logged once rather than once a poll.
    reported: Mutex<Option<String>>,
    /// The fgmatch elements of the running pipeline (none while it is being restarted), which
    /// [`FollowedGallery::reload`] asks to switch now.
    matchers: Mutex<Vec<gstfacegate::FaceMatch>>,
}

impl FollowedGallery {
    /// Opens the gallery in `dir` for `pipeline`, refusing one whose model is not that of every
    /// fgembed in the pipeline (the model files are hashed as fgembed identifies them). A
    /// pipeline without fgembed is refused elsewhere (it has no fgmatch to feed) or gets its
    /// embeddings from elsewhere: its gallery's own model is then the one required. The model's
    /// calibration is read from `calibrations`; a gallery beyond its safe size under `rule` is
    /// refused unless `allow_unsafe`.
    pub fn open(
        dir: &Path,
        pipeline: &gst::Pipeline,
        calibrations: &Path,
        rule: MatchRule,
        allow_unsafe: bool,
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
        let calibration = match_rule::find_calibration(calibrations, gallery.model())?;
        let followed = FollowedGallery {
            dir: Some(dir.to_path_buf()),
            model: gallery.model().to_owned(),
            dim: gallery.dim(),
            calibration,
            rule,
            reported: Mutex::new(None),
            matchers: Mutex::new(Vec::new()),
        };
        let standing = followed.standing(gallery.len() as u64)?;
        if !standing.is_safe() {
            let unsafe_gallery = StartError::Unsafe {
                dir: dir.to_path_buf(),
                size: standing.gallery_size,
                model: followed.model.clone(),
                limit: standing.safe_gallery_size_or_max(),
                target: rule.max_false_grant_rate,
                budget: rule.max_false_reject_rate,
            };
            if !allow_unsafe {
                return Err(unsafe_gallery);
            }
            warn!(
                "UNSAFE GALLERY, started because policy.allow_unsafe_gallery = true: {unsafe_gallery}"
            );
        }
        info!(
            "gallery {}: {} people, threshold {:.4} (expected false grants per stranger passage {})",
            dir.display(),
            gallery.len(),
            standing.threshold,
            standing
                .expected_false_grant_rate
                .map_or_else(|| "not modelled".to_owned(), |rate| format!("{rate:.1e}"))
        );
        Ok((followed, gallery))
    }

    /// For identification `token`: no gallery, the calibration of the pipeline's embedder (every
    /// fgembed must run the same model).
    pub fn for_tokens(
        pipeline: &gst::Pipeline,
        calibrations: &Path,
        rule: MatchRule,
    ) -> Result<FollowedGallery, StartError> {
        let models: Vec<(PathBuf, String)> = embedder_models(pipeline)
            .into_iter()
            .filter_map(|path| runtime::model_identity(&path).ok().map(|id| (path, id)))
            .collect();
        let Some((_, model)) = models.first().cloned() else {
            return Err(StartError::NoEmbedder);
        };
        if let Some((embedder, other)) = models.iter().find(|(_, id)| *id != model) {
            return Err(StartError::OtherEmbedder {
                dir: PathBuf::from("(token mode)"),
                gallery_model: model,
                embedder_model: other.clone(),
                embedder: embedder.clone(),
            });
        }
        let calibration = match_rule::find_calibration(calibrations, &model)?;
        let followed = FollowedGallery {
            dir: None,
            model,
            dim: 0,
            calibration,
            rule,
            reported: Mutex::new(None),
            matchers: Mutex::new(Vec::new()),
        };
        let standing = followed.standing(1)?;
        info!(
            "identification token: no gallery; 1:1 threshold {:.4} for model {} (expected false grants per stranger passage {})",
            standing.threshold,
            followed.model,
            standing
                .expected_false_grant_rate
                .map_or_else(|| "not modelled".to_owned(), |rate| format!("{rate:.1e}"))
        );
        Ok(followed)
    }

    /// Whether a gallery is kept (not in identification `token`).
    pub fn keeps_gallery(&self) -> bool {
        self.dir.is_some()
    }

    /// Where a gallery of `size` people stands under the gate's rule. Fails only for a rule the
    /// calibration cannot answer, which the start already refused.
    pub fn standing(&self, size: u64) -> Result<Standing, CalibrationError> {
        self.rule.standing(&self.calibration, size)
    }

    /// Puts where a gallery of `size` people stands into the status.
    pub fn publish(&self, size: u64, status: &StatusCell) {
        let Ok(standing) = self.standing(size) else {
            return;
        };
        status.update(|s| {
            s.effective_threshold = standing.threshold;
            s.expected_false_grant_rate = standing.expected_false_grant_rate.unwrap_or(-1.0);
            s.safe_gallery_size = standing.safe_gallery_size_or_max();
        });
    }

    /// The generation on disk now, refused unless it is of the gate's model and dimension and
    /// passes every file check.
    pub fn open_current(&self) -> Result<Gallery, GalleryError> {
        let dir = self
            .dir
            .as_ref()
            .ok_or_else(|| GalleryError::InvalidArgument {
                dir: PathBuf::from("(token mode)"),
                problem: "policy.identification is token: the gate keeps no gallery".into(),
            })?;
        Gallery::open_matching(dir, &self.model, self.dim)
    }

    /// The pipeline whose fgmatch elements [`FollowedGallery::reload`] drives from now on (None:
    /// it stopped).
    pub fn attach(&self, pipeline: Option<&gst::Pipeline>) {
        let matchers = pipeline.map_or_else(Vec::new, |pipeline| {
            pipeline
                .iterate_recurse()
                .into_iter()
                .flatten()
                .filter_map(|element| element.downcast::<gstfacegate::FaceMatch>().ok())
                .collect()
        });
        *self.matchers.lock().unwrap_or_else(|e| e.into_inner()) = matchers;
    }

    /// Tells every fgmatch of the running pipeline to look at the gallery now rather than at
    /// its next poll (they switch between frames, after their own checks); returns them.
    pub fn nudge(&self) -> Vec<gstfacegate::FaceMatch> {
        let matchers = self
            .matchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for matcher in &matchers {
            matcher.emit_by_name::<()>("reload", &[]);
        }
        matchers
    }

    /// Staff's `ReloadGallery`: the generation on disk is checked as fgmatch checks it (a refusal
    /// is the error, and the generation in use stays), then every fgmatch of the running pipeline
    /// is told to look now, and this waits up to `patience` for them to switch (they do between
    /// frames). Returns the generation on disk; with no frames flowing the switch happens at the
    /// first frame, which is logged.
    pub fn reload(&self, patience: Duration) -> Result<u64, GalleryError> {
        let generation = self.open_current()?.generation();
        let matchers = self.nudge();
        let deadline = Instant::now() + patience;
        let behind = || {
            matchers
                .iter()
                .filter(|m| m.property::<u64>("generation") != generation)
                .count()
        };
        while behind() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        match behind() {
            0 if !matchers.is_empty() => info!("ReloadGallery: searching generation {generation}"),
            0 => info!(
                "ReloadGallery: generation {generation} is sound; no pipeline runs: it is searched when one starts"
            ),
            n => info!(
                "ReloadGallery: generation {generation} is sound; {n} fgmatch have not switched yet (no frames?): they do at their next frame"
            ),
        }
        Ok(generation)
    }

    /// Takes a new generation into the status once it is checked (the supervisor calls this every
    /// second); a refused one is logged once and the status keeps the generation in use.
    pub fn refresh(&self, status: &StatusCell) {
        let Some(dir) = &self.dir else {
            return;
        };
        let in_use = status.snapshot().gallery_generation;
        let checked = Gallery::read_generation(dir).and_then(|generation| {
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
                    dir.display(),
                    gallery.generation(),
                    gallery.len()
                );
                status.update(|s| {
                    s.gallery_generation = gallery.generation();
                    s.gallery_size = gallery.len() as u64;
                });
                self.publish(gallery.len() as u64, status);
                if let Ok(standing) = self.standing(gallery.len() as u64)
                    && !standing.is_safe()
                {
                    warn!(
                        "UNSAFE GALLERY: generation {} holds {} people, beyond the {} model {} serves at policy.max_false_grant_rate {} within policy.max_false_reject_rate {}",
                        gallery.generation(),
                        gallery.len(),
                        standing.safe_gallery_size_or_max(),
                        self.model,
                        self.rule.max_false_grant_rate,
                        self.rule.max_false_reject_rate
                    );
                }
            }
            Err(error) => {
                let problem = format!(
                    "{}: keeping gallery generation {in_use}: {error}",
                    dir.display()
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
