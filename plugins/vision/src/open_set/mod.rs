// SPDX-License-Identifier: MIT OR Apache-2.0
//! Open-set evaluation statistics: how often a gate that compares a stranger with every enrolled
//! person grants the wrong one, and what threshold keeps that rare at a given gallery size.
//!
//! Input: per identity a list of unit embeddings.  Every pair of embeddings of one identity is a
//! genuine pair, every pair of embeddings of two different identities an impostor pair; a pair's
//! score is its cosine ([`crate::embedder::cosine`]).  A comparison *matches* when
//! `score >= threshold`, the gate's rule, so
//!
//! * FMR(t), the false match rate, is the share of impostor pairs with score >= t, and
//! * FNMR(t), the false non-match rate, the share of genuine pairs with score < t.
//!
//! A stranger is compared with all N enrolled people, so the false-positive identification rate
//! per stranger passage is FPIR(N, t) = 1 - (1 - FMR(t))^N, treating the N comparisons as
//! independent.  For each gallery size and target FPIR the [`Report`] gives the lowest threshold
//! meeting it, the FNMR that threshold costs, and how the FMR was known:
//!
//! * `empirical` when the impostor pairs can show an FMR that small, by the rule of three: with
//!   n pairs an FMR of f is measured only if n * f >= 3 ([`RULE_OF_THREE`]), the count at which
//!   zero observed false matches bounds the FMR below f with 95 % confidence;
//! * `tail-model` below that, from a generalized Pareto distribution fitted to the upper tail of
//!   the impostor scores (see [`tail`]).
//!
//! Impostor pairs that share an identity are not independent, so each threshold also gets an
//! upper confidence bound from a bootstrap over identities (see [`bootstrap`]).

pub mod bootstrap;
pub mod operating;
pub mod rates;
pub mod scores;
pub mod tail;
pub mod templates;

use serde::{Deserialize, Serialize};

pub use bootstrap::{Bootstrap, BootstrapConfig, ConfidenceMethod};
pub use operating::{
    FmrModel, GalleryLimit, Method, OperatingPoint, RULE_OF_THREE, SafeGallerySize, fmr_needed,
    fpir,
};
pub use rates::{DetPoint, RateRow, det_curve, rate_table};
pub use scores::{PairScores, Quantile, ScoreSummary};
pub use tail::TailFit;
pub use templates::{DEFAULT_TEMPLATE_SIZES, TemplateGain, template_gains};

/// Gallery sizes the report gives operating points for: a door, a station, a line, a city.
pub const DEFAULT_GALLERY_SIZES: [u64; 7] = [1, 100, 1_000, 10_000, 100_000, 700_000, 1_000_000];
/// Target false-positive identification rates per stranger passage.
pub const DEFAULT_TARGET_FPIRS: [f64; 2] = [1e-4, 1e-3];
/// The largest false non-match rate a threshold may cost in [`operating::safe_gallery_size`].
pub const DEFAULT_MAX_FNMR: f64 = 0.05;

/// One person's embeddings (the photos in which a face was found).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityEmbeddings {
    pub identity: String,
    pub embeddings: Vec<Vec<f32>>,
}

/// What [`evaluate`] is given: the embeddings and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationInput {
    /// The embedder's name, copied into the report.
    pub model: String,
    pub identities: Vec<IdentityEmbeddings>,
    /// Images the caller could not embed (no face found, unreadable), copied into the report.
    pub skipped: usize,
}

/// What the report is computed for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationConfig {
    pub gallery_sizes: Vec<u64>,
    pub target_fpirs: Vec<f64>,
    pub max_fnmr: f64,
    pub bootstrap: BootstrapConfig,
    /// Photos per enrolment template compared in [`Report::templates`].
    pub template_sizes: Vec<usize>,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            gallery_sizes: DEFAULT_GALLERY_SIZES.to_vec(),
            target_fpirs: DEFAULT_TARGET_FPIRS.to_vec(),
            max_fnmr: DEFAULT_MAX_FNMR,
            bootstrap: BootstrapConfig::default(),
            template_sizes: DEFAULT_TEMPLATE_SIZES.to_vec(),
        }
    }
}

/// The open-set evaluation of one embedder on one set of identities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    /// Identities with at least one embedding.
    pub identities: usize,
    /// Embeddings (images) used.
    pub images: usize,
    pub skipped: usize,
    pub genuine: ScoreSummary,
    pub impostor: ScoreSummary,
    /// FMR and FNMR at the thresholds of [`rates::REPORT_THRESHOLDS`].
    pub rates: Vec<RateRow>,
    /// The impostor tail model, absent when there are too few impostor pairs to fit one.
    pub tail_model: Option<TailFit>,
    /// How the operating points' `threshold_upper` bounds were obtained.
    pub confidence: BootstrapConfig,
    pub operating_points: Vec<OperatingPoint>,
    pub safe_gallery_sizes: Vec<SafeGallerySize>,
    /// What enrolling several photos per person gains (see [`templates`]); empty when no
    /// identity has enough photos.
    pub templates: Vec<TemplateGain>,
}

/// Why an evaluation could not be made: the input is named precisely.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenSetError {
    #[error("identity {identity:?}, embedding {index}: empty")]
    EmptyEmbedding { identity: String, index: usize },
    #[error(
        "identity {identity:?}, embedding {index}: {len} values where the first embedding has {expected}"
    )]
    DimensionMismatch {
        identity: String,
        index: usize,
        len: usize,
        expected: usize,
    },
    #[error("identity {identity:?}, embedding {index}: holds a NaN or infinite value")]
    NotFinite { identity: String, index: usize },
    #[error(
        "identity {identity:?}, embedding {index}: not a unit vector (norm {norm}); normalise embeddings first"
    )]
    NotUnit {
        identity: String,
        index: usize,
        norm: f32,
    },
    #[error("identity {0:?} is listed twice")]
    DuplicateIdentity(String),
    #[error("no impostor pairs: embeddings of at least two identities are needed, got {0}")]
    TooFewIdentities(usize),
    #[error("no genuine pairs: no identity has two embeddings")]
    NoGenuinePairs,
    #[error("target FPIR {0} must lie strictly between 0 and 1")]
    BadTargetFpir(f64),
    #[error("gallery size 0: a gallery holds at least one person")]
    BadGallerySize,
    #[error("maximum FNMR {0} must lie between 0 and 1")]
    BadMaxFnmr(f64),
}

/// The whole evaluation: score distributions, the rate table, the tail model, operating points
/// with bootstrap bounds, and the safe gallery sizes.
pub fn evaluate(
    input: &EvaluationInput,
    config: &EvaluationConfig,
) -> Result<Report, OpenSetError> {
    check_config(config)?;
    let scores = PairScores::from_identities(&input.identities)?;
    let model = FmrModel::new(scores.impostor());
    let wanted: Vec<(u64, f64)> = config
        .target_fpirs
        .iter()
        .flat_map(|&target| config.gallery_sizes.iter().map(move |&n| (n, target)))
        .collect();
    let uppers = Bootstrap::new(&scores, config.bootstrap.clone()).threshold_uppers(&wanted);
    let operating_points = wanted
        .iter()
        .zip(uppers)
        .map(|(&(n, target), upper)| {
            let mut point = model.operating_point(n, target, scores.genuine());
            point.threshold_upper = upper;
            point.fnmr_at_upper = upper.map(|t| rates::fnmr(scores.genuine(), t));
            point
        })
        .collect();
    let safe_gallery_sizes = config
        .target_fpirs
        .iter()
        .map(|&target| SafeGallerySize {
            target_fpir: target,
            max_fnmr: config.max_fnmr,
            limit: operating::safe_gallery_size(&model, scores.genuine(), target, config.max_fnmr),
        })
        .collect();
    Ok(Report {
        model: input.model.clone(),
        identities: scores.identities(),
        images: scores.images(),
        skipped: input.skipped,
        genuine: ScoreSummary::of(scores.genuine()),
        impostor: ScoreSummary::of(scores.impostor()),
        rates: rate_table(scores.genuine(), scores.impostor()),
        tail_model: model.tail().cloned(),
        confidence: config.bootstrap.clone(),
        operating_points,
        safe_gallery_sizes,
        templates: template_gains(&input.identities, &config.template_sizes),
    })
}

fn check_config(config: &EvaluationConfig) -> Result<(), OpenSetError> {
    if let Some(&bad) = config
        .target_fpirs
        .iter()
        .find(|t| !(**t > 0.0 && **t < 1.0))
    {
        return Err(OpenSetError::BadTargetFpir(bad));
    }
    if config.gallery_sizes.contains(&0) {
        return Err(OpenSetError::BadGallerySize);
    }
    if !(0.0..=1.0).contains(&config.max_fnmr) {
        return Err(OpenSetError::BadMaxFnmr(config.max_fnmr));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
