// SPDX-License-Identifier: MIT OR Apache-2.0
//! FMR and FNMR at a threshold, the report's rate table and the DET curve.

use serde::{Deserialize, Serialize};

/// The rate table's thresholds, in hundredths: 0.30, 0.31, ..., 0.80 (integers, so that the
/// table has no accumulated floating-point drift).
pub const REPORT_THRESHOLDS: std::ops::RangeInclusive<u32> = 30..=80;

/// The share of impostor scores (ascending) at or above `threshold`: the false match rate.
pub fn fmr(impostor: &[f32], threshold: f64) -> f64 {
    at_or_above(impostor, threshold) as f64 / impostor.len() as f64
}

/// The share of genuine scores (ascending) below `threshold`: the false non-match rate.
pub fn fnmr(genuine: &[f32], threshold: f64) -> f64 {
    below(genuine, threshold) as f64 / genuine.len() as f64
}

/// How many of the ascending `scores` are below `threshold`.
pub fn below(scores: &[f32], threshold: f64) -> usize {
    scores.partition_point(|&s| f64::from(s) < threshold)
}

/// How many of the ascending `scores` are at or above `threshold` (match: score >= threshold).
pub fn at_or_above(scores: &[f32], threshold: f64) -> usize {
    scores.len() - below(scores, threshold)
}

/// One row of the rate table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateRow {
    pub threshold: f64,
    pub fmr: f64,
    pub fnmr: f64,
}

/// FMR and FNMR at each of [`REPORT_THRESHOLDS`].
pub fn rate_table(genuine: &[f32], impostor: &[f32]) -> Vec<RateRow> {
    REPORT_THRESHOLDS
        .map(|hundredths| {
            let threshold = f64::from(hundredths) / 100.0;
            RateRow {
                threshold,
                fmr: fmr(impostor, threshold),
                fnmr: fnmr(genuine, threshold),
            }
        })
        .collect()
}

/// One point of a detection error trade-off curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetPoint {
    pub threshold: f64,
    pub fmr: f64,
    pub fnmr: f64,
}

/// The DET curve: one point at every distinct score (genuine or impostor), highest threshold
/// first, so FMR rises and FNMR falls along it.  Plotted on probit (normal-deviate) axes by
/// convention; the points are the plain rates.
pub fn det_curve(genuine: &[f32], impostor: &[f32]) -> Vec<DetPoint> {
    let mut thresholds: Vec<f32> = genuine.iter().chain(impostor).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    thresholds
        .into_iter()
        .map(|t| {
            let threshold = f64::from(t);
            DetPoint {
                threshold,
                fmr: fmr(impostor, threshold),
                fnmr: fnmr(genuine, threshold),
            }
        })
        .collect()
}
