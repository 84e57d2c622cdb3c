// SPDX-License-Identifier: MIT OR Apache-2.0
//! Operating points: the threshold a gallery size needs for a target FPIR, and the largest gallery
//! a threshold can serve.

use serde::{Deserialize, Serialize};

use super::rates;
use super::tail::TailFit;

/// The rule of three: an FMR f is read off n impostor pairs only when n f >= 3, i.e. when seeing
/// no false match at all would already bound the FMR below f with 95 % confidence (3/n).
pub const RULE_OF_THREE: f64 = 3.0;

/// How an operating point's FMR was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Counted from the impostor pairs.
    Empirical,
    /// From the fitted impostor tail ([`TailFit`]).
    TailModel,
}

/// FPIR(N, t) = 1 - (1 - FMR(t))^N: the chance that a stranger matches at least one of N
/// enrolled people, the comparisons taken as independent.
pub fn fpir(gallery_size: u64, fmr: f64) -> f64 {
    -(gallery_size as f64 * (-fmr).ln_1p()).exp_m1()
}

/// The largest FMR with FPIR(N) <= target: 1 - (1 - target)^(1/N), computed without cancellation.
pub fn fmr_needed(gallery_size: u64, target_fpir: f64) -> f64 {
    -((-target_fpir).ln_1p() / gallery_size as f64).exp_m1()
}

/// FMR as a function of the threshold, and its inverse: counted where the impostor pairs suffice
/// ([`RULE_OF_THREE`]), modelled by the tail fit beyond.
#[derive(Debug, Clone)]
pub struct FmrModel<'a> {
    impostor: &'a [f32],
    tail: Option<TailFit>,
}

impl<'a> FmrModel<'a> {
    /// The model of ascending impostor scores (fits the tail).
    pub fn new(impostor: &'a [f32]) -> Self {
        Self {
            impostor,
            tail: TailFit::fit(impostor),
        }
    }

    pub fn tail(&self) -> Option<&TailFit> {
        self.tail.as_ref()
    }

    /// Which method serves an FMR of `fmr`.
    pub fn method_for(&self, fmr: f64) -> Method {
        if self.impostor.len() as f64 * fmr >= RULE_OF_THREE {
            Method::Empirical
        } else {
            Method::TailModel
        }
    }

    /// The lowest threshold whose FMR is at most `fmr`, and the method; None when the tail model
    /// is needed but could not be fitted.
    pub fn threshold_for(&self, fmr: f64) -> Option<(f64, Method)> {
        match self.method_for(fmr) {
            Method::Empirical => Some((self.empirical_threshold(fmr), Method::Empirical)),
            Method::TailModel => Some((self.tail.as_ref()?.threshold_for(fmr), Method::TailModel)),
        }
    }

    /// The lowest threshold letting at most floor(n fmr) impostor pairs match: just above the
    /// (floor(n fmr) + 1)-th highest score.
    fn empirical_threshold(&self, fmr: f64) -> f64 {
        let n = self.impostor.len();
        let allowed = (n as f64 * fmr).floor() as usize;
        if allowed >= n {
            return f64::from(self.impostor[0]);
        }
        f64::from(self.impostor[n - allowed - 1].next_up())
    }

    /// The FMR at `threshold`: counted while at least [`RULE_OF_THREE`] impostor pairs match,
    /// from the tail model above that (the count when there is no tail model).
    pub fn fmr_at(&self, threshold: f64) -> (f64, Method) {
        let count = rates::at_or_above(self.impostor, threshold);
        match &self.tail {
            Some(tail) if (count as f64) < RULE_OF_THREE && threshold > tail.u => {
                (tail.fmr(threshold), Method::TailModel)
            }
            _ => (count as f64 / self.impostor.len() as f64, Method::Empirical),
        }
    }

    /// The operating point for a gallery size and target FPIR; the FNMR from `genuine` (ascending).
    pub fn operating_point(
        &self,
        gallery_size: u64,
        target_fpir: f64,
        genuine: &[f32],
    ) -> OperatingPoint {
        let needed = fmr_needed(gallery_size, target_fpir);
        let found = self.threshold_for(needed);
        OperatingPoint {
            gallery_size,
            target_fpir,
            fmr_needed: needed,
            threshold: found.map(|f| f.0),
            fnmr: found.map(|f| rates::fnmr(genuine, f.0)),
            method: found.map_or(Method::TailModel, |f| f.1),
            threshold_upper: None,
            fnmr_at_upper: None,
        }
    }
}

/// The threshold one gallery size needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub gallery_size: u64,
    pub target_fpir: f64,
    /// The per-comparison FMR that gives the target FPIR at this gallery size.
    pub fmr_needed: f64,
    /// The lowest threshold meeting the target; None when it needs a tail model that could not be
    /// fitted.  Above 1, the largest cosine, it says that no threshold meets the target (a tail
    /// model without an endpoint below 1 keeps some FMR at every score); its FNMR is then 1.
    pub threshold: Option<f64>,
    /// FNMR at `threshold`.
    pub fnmr: Option<f64>,
    pub method: Method,
    /// The upper confidence bound of the threshold (see the report's `confidence`); above 1 when
    /// more than the bound's share of the replicates found no threshold meeting the target.
    pub threshold_upper: Option<f64>,
    /// FNMR at `threshold_upper`.
    pub fnmr_at_upper: Option<f64>,
}

/// The largest gallery a set-up can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GalleryLimit {
    /// The model puts the FMR at the needed threshold at 0 (beyond the fitted tail's endpoint).
    Unbounded,
    /// At most this many people (0: not even one).
    AtMost(u64),
}

/// [`safe_gallery_size`] for one target, as the report lists it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SafeGallerySize {
    pub target_fpir: f64,
    pub max_fnmr: f64,
    pub limit: GalleryLimit,
}

/// The largest gallery size N for which some threshold meets `target_fpir` while costing an FNMR
/// of at most `max_fnmr` (on ascending `genuine` scores).  FNMR rises with the threshold and the
/// needed threshold with N, so the answer is set by the highest threshold the FNMR budget allows:
/// N = floor(ln(1 - target) / ln(1 - FMR(t_max))).
pub fn safe_gallery_size(
    model: &FmrModel,
    genuine: &[f32],
    target_fpir: f64,
    max_fnmr: f64,
) -> GalleryLimit {
    let allowed = (max_fnmr * genuine.len() as f64).floor() as usize;
    if allowed >= genuine.len() {
        return GalleryLimit::Unbounded; // every genuine pair may fail: any threshold will do
    }
    // Thresholds up to the (allowed + 1)-th lowest genuine score leave at most `allowed` below.
    let t_max = f64::from(genuine[allowed]);
    let (fmr, _) = model.fmr_at(t_max);
    if fmr <= 0.0 {
        return GalleryLimit::Unbounded;
    }
    let n = (-target_fpir).ln_1p() / (-fmr).ln_1p();
    GalleryLimit::AtMost(if n >= u64::MAX as f64 {
        u64::MAX
    } else {
        n.floor() as u64
    })
}
