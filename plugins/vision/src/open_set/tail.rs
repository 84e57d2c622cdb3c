// SPDX-License-Identifier: MIT OR Apache-2.0
//! The impostor tail model: a generalized Pareto distribution (GPD) over a high threshold.
//!
//! Why this model: by the Pickands-Balkema-de Haan theorem the excesses of almost any continuous
//! distribution over a high enough threshold u approach a GPD, whatever the body looks like, and
//! the impostor cosine distribution's body (mean ~0.1) says little about its tail (the heavy tail
//! the team measured).  The assumption is that the top [`TAIL_FRACTION`] of impostor scores is
//! already in that limit regime, and that pairs are exchangeable enough for a likelihood fit (they
//! are not independent: identities repeat, which the bootstrap over identities accounts for).
//! Cosines are bounded by 1, so the maximum-likelihood shape often comes out negative: a finite
//! endpoint, beyond which the model allows no stranger at all. On the development corpus that
//! endpoint (0.53) lies below different-person scores seen in other photos (0.68), and its FMR
//! at 0.45 is 40 times below what 6,696 real portrait pairs gave (docs/ACCURACY.md). A gate must
//! not rely on a tail that ends where its sample did, so the shape is held at 0 or above
//! ([`Gpd::fit_not_ending`]): when the data would have it negative, the tail is the exponential
//! fitted to the same excesses, the lightest tail that never ends. The unconstrained shape is
//! kept beside it ([`TailFit::fitted_shape`]), for the report.
//!
//! The fit is maximum likelihood through Grimshaw's (1993) reduction to one dimension: with
//! theta = shape / scale, the likelihood's maximum over the shape for fixed theta is at
//! shape = mean(ln(1 + theta y)), leaving a profile likelihood in theta, which is maximised on a
//! grid and refined by golden-section search.  Shapes below -1, where the likelihood is unbounded,
//! are excluded.

use serde::{Deserialize, Serialize};

/// The share of the (highest) impostor scores the tail model is fitted to.
pub const TAIL_FRACTION: f64 = 0.10;
/// The fewest exceedances a tail model is fitted from.
pub const MIN_EXCEEDANCES: usize = 50;
/// What [`TailFit::model`] says: a GPD by maximum likelihood, its shape held at 0 or above.
pub const TAIL_MODEL: &str = "generalized-pareto-ml-shape-at-least-0";

/// Grid points per side (negative and positive theta) of the profile-likelihood search.
const GRID_POINTS: usize = 200;
/// Golden-section iterations after the grid; each shrinks the bracket by 0.618.
const REFINE_STEPS: usize = 60;
/// |shape| below this is treated as the exponential limit (shape 0).
const SHAPE_ZERO: f64 = 1e-9;

/// A generalized Pareto distribution of excesses y >= 0:
/// P(Y > y) = (1 + shape y / scale)^(-1 / shape), or exp(-y / scale) for shape 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gpd {
    pub shape: f64,
    pub scale: f64,
}

impl Gpd {
    /// P(Y > y).
    pub fn survival(&self, y: f64) -> f64 {
        if y <= 0.0 {
            return 1.0;
        }
        if self.shape.abs() < SHAPE_ZERO {
            return (-y / self.scale).exp();
        }
        let base = 1.0 + self.shape * y / self.scale;
        if base <= 0.0 {
            0.0 // beyond the endpoint of a negative shape
        } else {
            base.powf(-1.0 / self.shape)
        }
    }

    /// The excess y with P(Y > y) = q, for q in (0, 1].
    pub fn inverse_survival(&self, q: f64) -> f64 {
        if self.shape.abs() < SHAPE_ZERO {
            -self.scale * q.ln()
        } else {
            self.scale / self.shape * (q.powf(-self.shape) - 1.0)
        }
    }

    /// The largest possible excess: finite for a negative shape.
    pub fn endpoint(&self) -> Option<f64> {
        (self.shape < -SHAPE_ZERO).then(|| -self.scale / self.shape)
    }

    /// [`Self::fit`] with the shape held at 0 or above: the likelihood's maximum over shapes of
    /// at least 0, which for a negative unconstrained shape is on that bound, the exponential.
    pub fn fit_not_ending(excesses: &[f64]) -> Option<Self> {
        Self::fit(excesses).and_then(|fit| fit.not_ending(excesses))
    }

    /// This fit of `excesses`, or, when its shape is negative, the exponential of the same
    /// excesses: what [`Self::fit_not_ending`] gives, without fitting again.
    pub fn not_ending(self, excesses: &[f64]) -> Option<Self> {
        if self.shape >= 0.0 {
            Some(self)
        } else {
            exponential_fit(excesses).map(|(exponential, _)| exponential)
        }
    }

    /// Maximum-likelihood fit to excesses (all >= 0, not all 0).  None when there are fewer than
    /// two distinct values or no finite maximum.
    pub fn fit(excesses: &[f64]) -> Option<Self> {
        let y_max = excesses.iter().copied().fold(0.0, f64::max);
        if excesses.len() < 2 || y_max <= 0.0 || excesses.iter().any(|y| y.is_nan() || *y < 0.0) {
            return None;
        }
        // Search in omega = theta * y_max, which must exceed -1 (1 + theta y > 0 for every y).
        // Negative side: omega = -1 + exp(-a), a in (0, 20]; positive side: omega = exp(b).
        let negative = |a: f64| (-1.0 + (-a).exp()) / y_max;
        let positive = |b: f64| b.exp() / y_max;
        let mut best: Option<(f64, f64)> = exponential_fit(excesses).map(|g| (0.0, g.1));
        let mut bracket: Option<(bool, f64, f64)> = None;
        for (is_negative, lo, hi) in [(true, 0.0, 20.0), (false, -12.0, 12.0)] {
            let step = (hi - lo) / GRID_POINTS as f64;
            for i in 1..=GRID_POINTS {
                let s = lo + step * i as f64;
                let theta = if is_negative {
                    negative(s)
                } else {
                    positive(s)
                };
                if let Some((ll, _)) = profile(excesses, theta)
                    && best.is_none_or(|(_, b)| ll > b)
                {
                    best = Some((theta, ll));
                    bracket = Some((is_negative, (s - step).max(lo), (s + step).min(hi)));
                }
            }
        }
        let (mut theta, _) = best?;
        if let Some((is_negative, mut lo, mut hi)) = bracket {
            let at = |s: f64| {
                if is_negative {
                    negative(s)
                } else {
                    positive(s)
                }
            };
            let value = |s: f64| profile(excesses, at(s)).map_or(f64::NEG_INFINITY, |p| p.0);
            let golden = (5f64.sqrt() - 1.0) / 2.0;
            for _ in 0..REFINE_STEPS {
                let (c, d) = (hi - golden * (hi - lo), lo + golden * (hi - lo));
                if value(c) >= value(d) {
                    hi = d;
                } else {
                    lo = c;
                }
            }
            let s = (lo + hi) / 2.0;
            if value(s) >= profile(excesses, theta).map_or(f64::NEG_INFINITY, |p| p.0) {
                theta = at(s);
            }
        }
        if theta == 0.0 {
            return exponential_fit(excesses).map(|g| g.0);
        }
        let (_, shape) = profile(excesses, theta)?;
        Some(Self {
            shape,
            scale: shape / theta,
        })
    }
}

/// The shape-0 (exponential) fit and its log-likelihood.
fn exponential_fit(excesses: &[f64]) -> Option<(Gpd, f64)> {
    let n = excesses.len() as f64;
    let mean = excesses.iter().sum::<f64>() / n;
    (mean > 0.0).then(|| {
        (
            Gpd {
                shape: 0.0,
                scale: mean,
            },
            -n * (mean.ln() + 1.0),
        )
    })
}

/// Grimshaw's profile log-likelihood at theta (!= 0) and the shape maximising it there; None
/// outside the support or for shapes below -1.
fn profile(excesses: &[f64], theta: f64) -> Option<(f64, f64)> {
    let n = excesses.len() as f64;
    let mut sum = 0.0;
    for &y in excesses {
        let base = 1.0 + theta * y;
        if base <= 0.0 {
            return None;
        }
        sum += base.ln();
    }
    let shape = sum / n;
    let scale = shape / theta;
    if shape < -1.0 || scale.is_nan() || scale <= 0.0 || scale.is_infinite() {
        return None;
    }
    Some((-n * (scale.ln() + shape + 1.0), shape))
}

/// The fitted tail: P(score >= t) = exceedance_rate * P(Y > t - u) for t >= u.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailFit {
    /// The model and how it was fitted: [`TAIL_MODEL`].
    pub model: String,
    /// The tail threshold: the score below the top exceedances.
    pub u: f64,
    /// How many scores were above u (the fit's sample).
    pub exceedances: usize,
    /// The share of all impostor scores above u.
    pub exceedance_rate: f64,
    pub shape: f64,
    pub scale: f64,
    /// The highest score the model allows (u + endpoint of the GPD), for a negative shape:
    /// never, with the shape held at 0 or above.
    pub endpoint: Option<f64>,
    /// The shape maximum likelihood gives without the bound (negative: a tail that would end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_shape: Option<f64>,
}

impl TailFit {
    /// Fits the top [`TAIL_FRACTION`] (at least [`MIN_EXCEEDANCES`]) of the ascending `impostor`
    /// scores; None when there are too few scores or the fit fails.
    pub fn fit(impostor: &[f32]) -> Option<Self> {
        let n = impostor.len();
        let k = ((TAIL_FRACTION * n as f64).ceil() as usize).max(MIN_EXCEEDANCES);
        if k >= n {
            return None;
        }
        let u = f64::from(impostor[n - k - 1]);
        let excesses: Vec<f64> = impostor[n - k..]
            .iter()
            .map(|&s| f64::from(s) - u)
            .collect();
        let fitted = Gpd::fit(&excesses)?;
        let gpd = fitted.not_ending(&excesses)?;
        Some(Self {
            model: TAIL_MODEL.to_owned(),
            u,
            exceedances: k,
            exceedance_rate: k as f64 / n as f64,
            shape: gpd.shape,
            scale: gpd.scale,
            endpoint: gpd.endpoint().map(|e| u + e),
            fitted_shape: Some(fitted.shape),
        })
    }

    fn gpd(&self) -> Gpd {
        Gpd {
            shape: self.shape,
            scale: self.scale,
        }
    }

    /// The modelled FMR at `threshold` (meant for thresholds above u).
    pub fn fmr(&self, threshold: f64) -> f64 {
        self.exceedance_rate * self.gpd().survival(threshold - self.u)
    }

    /// The threshold whose modelled FMR is `fmr` (meant for fmr below the exceedance rate).
    pub fn threshold_for(&self, fmr: f64) -> f64 {
        let q = (fmr / self.exceedance_rate).min(1.0);
        self.u + self.gpd().inverse_survival(q)
    }
}
