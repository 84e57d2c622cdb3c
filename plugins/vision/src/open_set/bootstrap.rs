// SPDX-License-Identifier: MIT OR Apache-2.0
//! Confidence bounds for thresholds: a bootstrap over identities.
//!
//! Impostor pairs are not independent samples: each identity takes part in many of them, so an
//! unusual face lifts a whole row of scores.  Resampling *identities* with replacement (and
//! taking all impostor pairs among the drawn identities) keeps that dependence, which resampling
//! pairs would hide.  Two copies of one identity drawn together are not paired with each other
//! (their pairs would be genuine ones, or a photo with itself).  Each replicate gets the same
//! treatment as the data (empirical count or a fresh tail fit), and the bound is the `level`
//! quantile of the replicates' thresholds: a threshold that high meets the target in that share of
//! the resampled worlds.

use serde::{Deserialize, Serialize};

use super::operating::{FmrModel, fmr_needed};
use super::scores::{PairScores, pair_index, quantile, sorted};

/// Bootstrap replicates by default: enough for a stable 95th percentile at this corpus size.
pub const DEFAULT_RESAMPLES: usize = 200;
/// Any fixed seed makes the report reproducible; this one spells "face".
pub const DEFAULT_SEED: u64 = 0xFACE;
/// One-sided confidence level of the threshold's upper bound.
pub const DEFAULT_LEVEL: f64 = 0.95;

/// How a confidence bound is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfidenceMethod {
    /// Identities resampled with replacement (see the module docs).
    BootstrapOverIdentities,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    pub method: ConfidenceMethod,
    /// Replicates; 0 gives no bounds.
    pub resamples: usize,
    pub seed: u64,
    /// The quantile of the replicate thresholds reported as the upper bound.
    pub level: f64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            method: ConfidenceMethod::BootstrapOverIdentities,
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
            level: DEFAULT_LEVEL,
        }
    }
}

/// The bootstrap of one set of pair scores.
pub struct Bootstrap<'a> {
    scores: &'a PairScores,
    config: BootstrapConfig,
}

impl<'a> Bootstrap<'a> {
    pub fn new(scores: &'a PairScores, config: BootstrapConfig) -> Self {
        Self { scores, config }
    }

    /// The upper confidence bound of the threshold for each (gallery size, target FPIR); None
    /// where no replicate gave a threshold.
    pub fn threshold_uppers(&self, points: &[(u64, f64)]) -> Vec<Option<f64>> {
        let mut per_point: Vec<Vec<f64>> = vec![Vec::new(); points.len()];
        let mut rng = fastrand::Rng::with_seed(self.config.seed);
        for _ in 0..self.config.resamples {
            let Some(impostor) = self.replicate(&mut rng) else {
                continue;
            };
            let model = FmrModel::new(&impostor);
            for (found, &(n, target)) in per_point.iter_mut().zip(points) {
                if let Some((t, _)) = model.threshold_for(fmr_needed(n, target)) {
                    found.push(t);
                }
            }
        }
        per_point
            .into_iter()
            .map(|mut found| {
                (!found.is_empty()).then(|| {
                    found.sort_by(f64::total_cmp);
                    quantile(&found, self.config.level)
                })
            })
            .collect()
    }

    /// One replicate's impostor scores (ascending); None when fewer than two distinct
    /// identities were drawn.
    fn replicate(&self, rng: &mut fastrand::Rng) -> Option<Vec<f32>> {
        let n = self.scores.identities();
        let mut counts = vec![0usize; n];
        for _ in 0..n {
            counts[rng.usize(..n)] += 1;
        }
        if counts.iter().filter(|&&c| c > 0).count() < 2 {
            return None;
        }
        let mut impostor = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let copies = counts[a] * counts[b];
                let block = &self.scores.between[pair_index(a, b, n)];
                for _ in 0..copies {
                    impostor.extend_from_slice(block);
                }
            }
        }
        Some(sorted(impostor))
    }
}
