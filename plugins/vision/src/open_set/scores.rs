// SPDX-License-Identifier: MIT OR Apache-2.0
//! Genuine and impostor pair scores, and their summary statistics.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{IdentityEmbeddings, OpenSetError};
use crate::embedder::cosine;

/// How far from 1 an embedding's norm may be: a few f32 rounding steps over 128-512 values.
const UNIT_NORM_TOLERANCE: f32 = 1e-3;

/// The quantile levels every [`ScoreSummary`] reports; the upper ones matter for impostors.
pub const SUMMARY_QUANTILES: [f64; 11] = [
    0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999, 0.9999, 0.99999,
];

/// All pair scores of a set of identities, each list sorted ascending.  Keeps the embeddings'
/// identity blocks too, which the bootstrap over identities resamples.
#[derive(Debug, Clone)]
pub struct PairScores {
    genuine: Vec<f32>,
    impostor: Vec<f32>,
    images: usize,
    /// Per identity, the scores of its genuine pairs.
    pub(super) within: Vec<Vec<f32>>,
    /// Per pair of identities (a < b, in [`pair_index`] order), the scores of their impostor pairs.
    pub(super) between: Vec<Vec<f32>>,
}

impl PairScores {
    /// Checks the embeddings (same length, finite, unit norm, identities unique) and scores every
    /// pair.  Identities without embeddings are left out.
    pub fn from_identities(identities: &[IdentityEmbeddings]) -> Result<Self, OpenSetError> {
        let used: Vec<&IdentityEmbeddings> = identities
            .iter()
            .filter(|i| !i.embeddings.is_empty())
            .collect();
        check(&used)?;
        if used.len() < 2 {
            return Err(OpenSetError::TooFewIdentities(used.len()));
        }
        let within: Vec<Vec<f32>> = used.iter().map(|i| pairs_within(&i.embeddings)).collect();
        let mut between = Vec::with_capacity(used.len() * (used.len() - 1) / 2);
        for (a, first) in used.iter().enumerate() {
            for second in &used[a + 1..] {
                between.push(pairs_between(&first.embeddings, &second.embeddings));
            }
        }
        let genuine = sorted(within.iter().flatten().copied().collect());
        if genuine.is_empty() {
            return Err(OpenSetError::NoGenuinePairs);
        }
        let impostor = sorted(between.iter().flatten().copied().collect());
        Ok(Self {
            genuine,
            impostor,
            images: used.iter().map(|i| i.embeddings.len()).sum(),
            within,
            between,
        })
    }

    /// Genuine scores, ascending.
    pub fn genuine(&self) -> &[f32] {
        &self.genuine
    }

    /// Impostor scores, ascending.
    pub fn impostor(&self) -> &[f32] {
        &self.impostor
    }

    pub fn identities(&self) -> usize {
        self.within.len()
    }

    pub fn images(&self) -> usize {
        self.images
    }
}

/// Index of the identity pair (a, b), a < b < n, in [`PairScores::between`].
pub(super) fn pair_index(a: usize, b: usize, n: usize) -> usize {
    debug_assert!(a < b && b < n);
    a * (2 * n - a - 1) / 2 + (b - a - 1)
}

fn check(identities: &[&IdentityEmbeddings]) -> Result<(), OpenSetError> {
    let mut names = HashSet::new();
    let mut expected = None;
    for person in identities {
        if !names.insert(person.identity.as_str()) {
            return Err(OpenSetError::DuplicateIdentity(person.identity.clone()));
        }
        for (index, e) in person.embeddings.iter().enumerate() {
            let at = || (person.identity.clone(), index);
            if e.is_empty() {
                let (identity, index) = at();
                return Err(OpenSetError::EmptyEmbedding { identity, index });
            }
            let expected = *expected.get_or_insert(e.len());
            if e.len() != expected {
                let (identity, index) = at();
                return Err(OpenSetError::DimensionMismatch {
                    identity,
                    index,
                    len: e.len(),
                    expected,
                });
            }
            if e.iter().any(|v| !v.is_finite()) {
                let (identity, index) = at();
                return Err(OpenSetError::NotFinite { identity, index });
            }
            let norm = cosine(e, e).sqrt();
            if (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
                let (identity, index) = at();
                return Err(OpenSetError::NotUnit {
                    identity,
                    index,
                    norm,
                });
            }
        }
    }
    Ok(())
}

fn pairs_within(embeddings: &[Vec<f32>]) -> Vec<f32> {
    let mut out = Vec::with_capacity(embeddings.len() * embeddings.len().saturating_sub(1) / 2);
    for (i, a) in embeddings.iter().enumerate() {
        out.extend(embeddings[i + 1..].iter().map(|b| cosine(a, b)));
    }
    out
}

fn pairs_between(first: &[Vec<f32>], second: &[Vec<f32>]) -> Vec<f32> {
    first
        .iter()
        .flat_map(|a| second.iter().map(move |b| cosine(a, b)))
        .collect()
}

pub(super) fn sorted(mut scores: Vec<f32>) -> Vec<f32> {
    scores.sort_by(f32::total_cmp);
    scores
}

/// One quantile of a score distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    /// The level, in (0, 1).
    pub p: f64,
    pub value: f64,
}

/// A score distribution in numbers.  `sd` is the sample standard deviation (divisor n - 1; 0 for
/// one pair); quantiles are Hyndman and Fan's type 7 ([`quantile`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub pairs: u64,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub max: f64,
    pub quantiles: Vec<Quantile>,
}

impl ScoreSummary {
    /// The summary of `sorted` (ascending, not empty).
    pub fn of(sorted: &[f32]) -> Self {
        assert!(!sorted.is_empty(), "ScoreSummary of no scores");
        let n = sorted.len() as f64;
        let mean = sorted.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let ss: f64 = sorted.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum();
        let sd = if sorted.len() > 1 {
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self {
            pairs: sorted.len() as u64,
            mean,
            sd,
            min: f64::from(sorted[0]),
            max: f64::from(sorted[sorted.len() - 1]),
            quantiles: SUMMARY_QUANTILES
                .iter()
                .map(|&p| Quantile {
                    p,
                    value: quantile(sorted, p),
                })
                .collect(),
        }
    }
}

/// The p-quantile of ascending `sorted` by Hyndman and Fan's definition 7 (R's and NumPy's
/// default): with h = (n - 1) p, linear interpolation between the order statistics x[floor h] and
/// x[floor h + 1] (0-based).  Levels outside [0, 1] are clamped.
pub fn quantile<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo].into(), sorted[hi].into());
    a + (h - lo as f64) * (b - a)
}
