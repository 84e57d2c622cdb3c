// SPDX-License-Identifier: MIT OR Apache-2.0
//! An embedder's calibration: the thresholds an open-set evaluation found for it, per gallery
//! size and target false-positive identification rate (FPIR), written once by
//! `facegatectl evaluate --write-calibration` and read by whatever decides matches.
//!
//! The file is TOML (models/calibration/<model>.toml): the model it belongs to (its identity as
//! the elements name it and the sha256 of the whole file), the corpus it was measured on, the
//! fitted impostor tail, a table of operating points over [`GALLERY_SIZES`] x [`TARGET_FPIRS`],
//! and the safe gallery sizes over [`TARGET_FPIRS`] x [`MAX_FNMRS`].
//!
//! Lookups between the table's rows are conservative: a gallery size takes the row of the next
//! larger tabulated size (the threshold rises with the size), a target the row of the next smaller
//! tabulated target (the threshold rises as the target falls).  So the threshold returned meets
//! at least the target asked for, at the price of being slightly stricter than needed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::open_set::{
    self, BootstrapConfig, EvaluationConfig, EvaluationInput, FmrModel, GalleryLimit, Method,
    OpenSetError, OperatingPoint, PairScores, SafeGallerySize, TailFit,
};

/// The format version [`Calibration::load`] reads.
pub const SCHEMA: u32 = 1;

/// The tabulated gallery sizes: 1-2-5 steps from one person to ten million.
pub const GALLERY_SIZES: [u64; 22] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 700_000, 1_000_000, 5_000_000, 10_000_000,
];
/// The tabulated targets, false grants per stranger passage.
pub const TARGET_FPIRS: [f64; 5] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2];
/// The tabulated false non-match budgets of the safe gallery sizes.
pub const MAX_FNMRS: [f64; 5] = [0.01, 0.02, 0.05, 0.10, 0.20];

/// Relative slack when a requested target is compared with a tabulated one: 1e-4 written in a
/// configuration file and 1e-4 in the table are the same target.
const TARGET_SLACK: f64 = 1e-9;

/// The embedder a calibration belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedModel {
    /// The model's identity as fgembed and the gallery name it ("file-stem@sha256:…").
    pub identity: String,
    /// The model's file name.
    pub file: String,
    /// The sha256 of the whole model file, in hex.
    pub sha256: String,
}

impl CalibratedModel {
    /// The description of the model file at `path`, `identity` as the embedder reports it.
    pub fn of_file(path: &Path, identity: &str) -> Result<Self, CalibrationError> {
        Ok(Self {
            identity: identity.to_owned(),
            file: path
                .file_name()
                .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            sha256: file_sha256(path)?,
        })
    }
}

/// Where the scores came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusProvenance {
    /// What the corpus is (e.g. "FaceGate development corpus, models/corpus.toml").
    pub name: String,
    /// sha256 over the sorted "identity/file sha256" lines of the images used.
    pub digest: String,
    pub identities: usize,
    pub images: usize,
    /// Images that were not used (no face, several faces, too small, unreadable).
    pub skipped: usize,
    pub genuine_pairs: u64,
    pub impostor_pairs: u64,
}

/// An embedder's calibration (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub schema: u32,
    pub model: CalibratedModel,
    pub corpus: CorpusProvenance,
    /// The fitted impostor tail beyond which the thresholds are modelled, not counted; absent
    /// when the corpus had too few impostor pairs for a fit.
    pub impostor_tail: Option<TailFit>,
    /// How the operating points' upper bounds were obtained.
    pub confidence: BootstrapConfig,
    /// Over [`GALLERY_SIZES`] x [`TARGET_FPIRS`], sorted by target, then size.
    #[serde(rename = "operating_point")]
    pub operating_points: Vec<OperatingPoint>,
    /// Over [`TARGET_FPIRS`] x [`MAX_FNMRS`].
    #[serde(rename = "safe_gallery_size")]
    pub safe_gallery_sizes: Vec<SafeGallerySize>,
}

/// The threshold for one gallery size and target, as the table gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibratedThreshold {
    /// The lowest similarity that may match.  Above 1 (the largest cosine) when no threshold
    /// meets the target: see [`CalibratedThreshold::meets_target`].
    pub threshold: f64,
    /// The upper confidence bound of the threshold, where the bootstrap gave one.
    pub threshold_upper: Option<f64>,
    /// The share of genuine comparisons the threshold rejects, on the calibration corpus.
    pub fnmr: f64,
    pub method: Method,
    /// The table row used: its gallery size (at least the one asked for) and target (at most
    /// the one asked for).
    pub gallery_size: u64,
    pub target_fpir: f64,
}

impl CalibratedThreshold {
    /// Whether some similarity (at most 1) meets the target at all.
    pub fn meets_target(&self) -> bool {
        self.threshold <= 1.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("calibration {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("calibration {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("calibration {path}: schema {found}, this program reads schema {SCHEMA}")]
    Schema { path: PathBuf, found: u32 },
    #[error("calibration {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("cannot write the calibration: {0}")]
    Serialize(#[from] toml::ser::Error),
    #[error("model file {path}: {source}")]
    ModelFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "model file {path} has sha256 {found}, the calibration is for {expected} ({file}): evaluate this model first"
    )]
    WrongModel {
        path: PathBuf,
        found: String,
        expected: String,
        file: String,
    },
    #[error(
        "no calibration for model {model}: {path} does not exist (set {env} to the directory of calibrations, or make one with `facegatectl evaluate --write-calibration`)",
        env = crate::match_rule::CALIBRATION_DIR_ENV
    )]
    Missing { path: PathBuf, model: String },
    #[error("calibration {path} is for model {found}, not {expected}: evaluate this model first")]
    OtherModel {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("gallery size 0: a gallery holds at least one person")]
    NoGallery,
    #[error("gallery size {size} is beyond the calibration's largest, {largest}")]
    GalleryBeyondTable { size: u64, largest: u64 },
    #[error("target FPIR {target} is below the calibration's smallest, {smallest}")]
    TargetBelowTable { target: f64, smallest: f64 },
    #[error("maximum FNMR {max_fnmr} is below the calibration's smallest, {smallest}")]
    FnmrBelowTable { max_fnmr: f64, smallest: f64 },
    #[error(
        "no threshold for gallery size {gallery_size} at FPIR {target_fpir}: the corpus was too small for a tail model"
    )]
    NoThreshold { gallery_size: u64, target_fpir: f64 },
    #[error("{0}")]
    Evaluation(#[from] OpenSetError),
}

impl Calibration {
    /// Evaluates `input` over the calibration's grids (operating points with bootstrap bounds,
    /// safe gallery sizes for every FNMR budget).
    pub fn measure(
        input: &EvaluationInput,
        bootstrap: BootstrapConfig,
        model: CalibratedModel,
        corpus: CorpusProvenance,
    ) -> Result<Self, CalibrationError> {
        let config = EvaluationConfig {
            gallery_sizes: GALLERY_SIZES.to_vec(),
            target_fpirs: TARGET_FPIRS.to_vec(),
            bootstrap,
            ..EvaluationConfig::default()
        };
        let report = open_set::evaluate(input, &config)?;
        let scores = PairScores::from_identities(&input.identities)?;
        let fmr_model = FmrModel::new(scores.impostor());
        let safe_gallery_sizes = TARGET_FPIRS
            .iter()
            .flat_map(|&target_fpir| MAX_FNMRS.iter().map(move |&m| (target_fpir, m)))
            .map(|(target_fpir, max_fnmr)| SafeGallerySize {
                target_fpir,
                max_fnmr,
                limit: storable(open_set::operating::safe_gallery_size(
                    &fmr_model,
                    scores.genuine(),
                    target_fpir,
                    max_fnmr,
                )),
            })
            .collect();
        let mut operating_points = report.operating_points;
        make_monotone(&mut operating_points, scores.genuine());
        Ok(Self {
            schema: SCHEMA,
            model,
            corpus,
            impostor_tail: report.tail_model,
            confidence: report.confidence,
            operating_points,
            safe_gallery_sizes,
        })
    }

    /// Reads and checks a calibration file.
    pub fn load(path: &Path) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks calibration text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CalibrationError> {
        // The schema first, so that a newer file says so rather than naming an unknown field.
        #[derive(Deserialize)]
        struct Version {
            schema: u32,
        }
        let parse_error = |e: toml::de::Error| CalibrationError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let version: Version = toml::from_str(text).map_err(parse_error)?;
        if version.schema != SCHEMA {
            return Err(CalibrationError::Schema {
                path: path.to_path_buf(),
                found: version.schema,
            });
        }
        let calibration: Self = toml::from_str(text).map_err(parse_error)?;
        calibration
            .check()
            .map_err(|problem| CalibrationError::Invalid {
                path: path.to_path_buf(),
                problem,
            })?;
        Ok(calibration)
    }

    /// The calibration as TOML.
    pub fn to_toml(&self) -> Result<String, CalibrationError> {
        Ok(toml::to_string(self)?)
    }

    /// Writes the calibration to `path`.
    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        std::fs::write(path, self.to_toml()?).map_err(|source| CalibrationError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks that the model file at `path` is the one calibrated (by its sha256).
    pub fn verify_model(&self, path: &Path) -> Result<(), CalibrationError> {
        let found = file_sha256(path)?;
        if found != self.model.sha256 {
            return Err(CalibrationError::WrongModel {
                path: path.to_path_buf(),
                found,
                expected: self.model.sha256.clone(),
                file: self.model.file.clone(),
            });
        }
        Ok(())
    }

    /// The threshold that keeps the FPIR at most `target_fpir` for a gallery of `gallery_size`
    /// people (conservative between table rows, see the module docs).
    pub fn threshold_for(
        &self,
        gallery_size: u64,
        target_fpir: f64,
    ) -> Result<CalibratedThreshold, CalibrationError> {
        if gallery_size == 0 {
            return Err(CalibrationError::NoGallery);
        }
        let target = self.tabulated_target(target_fpir)?;
        let row = self
            .operating_points
            .iter()
            .filter(|p| p.target_fpir == target && p.gallery_size >= gallery_size)
            .min_by_key(|p| p.gallery_size)
            .ok_or(CalibrationError::GalleryBeyondTable {
                size: gallery_size,
                largest: self.largest_gallery(),
            })?;
        match (row.threshold, row.fnmr) {
            (Some(threshold), Some(fnmr)) => Ok(CalibratedThreshold {
                threshold,
                threshold_upper: row.threshold_upper,
                fnmr,
                method: row.method,
                gallery_size: row.gallery_size,
                target_fpir: row.target_fpir,
            }),
            _ => Err(CalibrationError::NoThreshold {
                gallery_size: row.gallery_size,
                target_fpir: row.target_fpir,
            }),
        }
    }

    /// The largest gallery for which some threshold keeps the FPIR at most `target_fpir` while
    /// rejecting at most `max_fnmr` of genuine comparisons (conservative between table rows).
    pub fn safe_gallery_size(
        &self,
        target_fpir: f64,
        max_fnmr: f64,
    ) -> Result<GalleryLimit, CalibrationError> {
        let target = self.tabulated_target(target_fpir)?;
        self.safe_gallery_sizes
            .iter()
            .filter(|s| s.target_fpir == target && s.max_fnmr <= max_fnmr * (1.0 + TARGET_SLACK))
            .max_by(|a, b| a.max_fnmr.total_cmp(&b.max_fnmr))
            .map(|s| s.limit)
            .ok_or(CalibrationError::FnmrBelowTable {
                max_fnmr,
                smallest: self
                    .safe_gallery_sizes
                    .iter()
                    .map(|s| s.max_fnmr)
                    .fold(f64::INFINITY, f64::min),
            })
    }

    /// The largest tabulated target at most `target_fpir`.
    fn tabulated_target(&self, target_fpir: f64) -> Result<f64, CalibrationError> {
        self.operating_points
            .iter()
            .map(|p| p.target_fpir)
            .filter(|&t| t <= target_fpir * (1.0 + TARGET_SLACK))
            .max_by(f64::total_cmp)
            .ok_or(CalibrationError::TargetBelowTable {
                target: target_fpir,
                smallest: self
                    .operating_points
                    .iter()
                    .map(|p| p.target_fpir)
                    .fold(f64::INFINITY, f64::min),
            })
    }

    fn largest_gallery(&self) -> u64 {
        self.operating_points
            .iter()
            .map(|p| p.gallery_size)
            .max()
            .unwrap_or(0)
    }

    /// What a hand-edited or truncated file could get wrong.
    fn check(&self) -> Result<(), String> {
        if self.operating_points.is_empty() {
            return Err("no operating_point rows".into());
        }
        if self.model.sha256.len() != 64
            || !self.model.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(format!(
                "model.sha256 {:?} is not 64 hex digits",
                self.model.sha256
            ));
        }
        for (index, p) in self.operating_points.iter().enumerate() {
            let row = || format!("operating_point {}", index + 1);
            if p.gallery_size == 0 {
                return Err(format!("{}: gallery_size 0", row()));
            }
            if !(p.target_fpir > 0.0 && p.target_fpir < 1.0) {
                return Err(format!(
                    "{}: target_fpir {} is not between 0 and 1",
                    row(),
                    p.target_fpir
                ));
            }
            if let Some(t) = p.threshold.filter(|t| !t.is_finite()) {
                return Err(format!("{}: threshold {t} is not a number", row()));
            }
            if let Some(f) = p.fnmr.filter(|f| !(0.0..=1.0).contains(f)) {
                return Err(format!("{}: fnmr {f} is not between 0 and 1", row()));
            }
        }
        // Conservative lookups rely on the threshold rising with the gallery size.
        for pair in self.operating_points.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.target_fpir == b.target_fpir
                && a.gallery_size < b.gallery_size
                && matches!((a.threshold, b.threshold), (Some(x), Some(y)) if y < x)
            {
                return Err(format!(
                    "at FPIR {}, the threshold for {} people ({:?}) is below the one for {} ({:?})",
                    a.target_fpir, b.gallery_size, b.threshold, a.gallery_size, a.threshold
                ));
            }
        }
        Ok(())
    }
}

/// Raises each threshold (and upper bound) to the largest of any smaller gallery at the same
/// target and of the same gallery at any larger target, recomputing the FNMR there, then sorts
/// the rows by target and size.  The counted FMR and the tail model do not join exactly where
/// one hands over to the other, so a raw table can dip by a few hundredths at that size; a
/// threshold that dips would let a growing gallery match more strangers, never fewer.  The
/// adjustment only ever raises thresholds.
fn make_monotone(points: &mut [OperatingPoint], genuine: &[f32]) {
    // Larger targets first (they need the lowest thresholds), sizes ascending within each.
    points.sort_by(|a, b| {
        b.target_fpir
            .total_cmp(&a.target_fpir)
            .then(a.gallery_size.cmp(&b.gallery_size))
    });
    let raise = |value: &mut Option<f64>, fnmr: &mut Option<f64>, floor: Option<f64>| {
        if let (Some(v), Some(f)) = (*value, floor)
            && f > v
        {
            *value = Some(f);
            *fnmr = Some(open_set::rates::fnmr(genuine, f));
        }
    };
    for i in 0..points.len() {
        let floors = points[..i]
            .iter()
            .filter(|p| {
                p.gallery_size <= points[i].gallery_size && p.target_fpir >= points[i].target_fpir
            })
            .fold((None, None), |(t, u): (Option<f64>, Option<f64>), p| {
                (max_option(t, p.threshold), max_option(u, p.threshold_upper))
            });
        let point = &mut points[i];
        raise(&mut point.threshold, &mut point.fnmr, floors.0);
        raise(
            &mut point.threshold_upper,
            &mut point.fnmr_at_upper,
            floors.1,
        );
    }
    points.sort_by(|a, b| {
        a.target_fpir
            .total_cmp(&b.target_fpir)
            .then(a.gallery_size.cmp(&b.gallery_size))
    });
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// TOML integers are signed 64-bit: a limit beyond that is as good as none.
fn storable(limit: GalleryLimit) -> GalleryLimit {
    match limit {
        GalleryLimit::AtMost(n) if n > i64::MAX as u64 => GalleryLimit::Unbounded,
        other => other,
    }
}

/// The sha256 of a file, in hex.
pub fn file_sha256(path: &Path) -> Result<String, CalibrationError> {
    let mut file = std::fs::File::open(path).map_err(|source| CalibrationError::ModelFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| CalibrationError::ModelFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
