// SPDX-License-Identifier: MIT OR Apache-2.0
//! Synthetic people for gallery benchmarks that score against real faces the way real strangers
//! do, and the test that they do.
//!
//! Random unit vectors are no stand-in for distractors: real embeddings share a mean direction
//! (different SFace faces average cosine 0.07, not 0) and spread unevenly over the dimensions.
//! [`DistractorModel`] is a Gaussian fitted to real embeddings: their mean, and their covariance
//! shrunk towards a multiple of the identity by Ledoit and Wolf's rule (2004), since a corpus of
//! tens of faces cannot fill a 128- or 512-dimensional covariance.  A synthetic person is a draw,
//! normalised to unit length.  [`validate`] checks the model out of sample: fitted on half of the
//! corpus's identities, its people's scores against the other half's faces are compared with the
//! real scores between the halves by the two-sample Kolmogorov-Smirnov statistic.

use anyhow::bail;
use facegate_vision::embedder::{cosine, normalise};
use facegate_vision::open_set::IdentityEmbeddings;
use serde::Serialize;

use super::synthetic_embedding;

/// A Gaussian over embeddings: `mean + sqrt(1 - shrinkage) * S^(1/2) z + sqrt(shrinkage * m) z'`,
/// where S is the sample covariance and m its mean variance per dimension.
#[derive(Debug, Clone)]
pub struct DistractorModel {
    mean: Vec<f32>,
    /// The centred real embeddings, each scaled by sqrt((1 - shrinkage) / n): a sum of them
    /// with standard normal weights has covariance (1 - shrinkage) S.
    deviations: Vec<Vec<f32>>,
    /// sqrt(shrinkage * m): the isotropic part's standard deviation per dimension.
    isotropic_sd: f32,
    /// Ledoit-Wolf's weight on the isotropic target, 0..1.
    pub shrinkage: f64,
}

impl DistractorModel {
    /// Fits the model to `embeddings` (unit vectors of one length; at least two).
    pub fn fit(embeddings: &[&[f32]]) -> anyhow::Result<Self> {
        let n = embeddings.len();
        let Some(dim) = embeddings.first().map(|e| e.len()) else {
            bail!("no embeddings to fit a distractor model to");
        };
        if n < 2 || embeddings.iter().any(|e| e.len() != dim) {
            bail!("a distractor model needs two embeddings or more, all of one length");
        }
        let mut mean = vec![0.0f64; dim];
        for e in embeddings {
            for (m, v) in mean.iter_mut().zip(*e) {
                *m += f64::from(*v) / n as f64;
            }
        }
        let centred: Vec<Vec<f64>> = embeddings
            .iter()
            .map(|e| {
                e.iter()
                    .zip(&mean)
                    .map(|(v, m)| f64::from(*v) - m)
                    .collect()
            })
            .collect();
        // Everything Ledoit-Wolf needs comes from the n x n Gram matrix G of the centred data:
        // S = X'X / n, ||S||^2 = ||G||^2 / n^2, x_k' S x_k = sum_j G_kj^2 / n, ||x_k||^2 = G_kk.
        let gram: Vec<Vec<f64>> = centred
            .iter()
            .map(|a| {
                centred
                    .iter()
                    .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum())
                    .collect()
            })
            .collect();
        let (nf, df) = (n as f64, dim as f64);
        let trace: f64 = (0..n).map(|k| gram[k][k]).sum::<f64>() / nf;
        let m = trace / df;
        let s_norm2 = gram.iter().flatten().map(|g| g * g).sum::<f64>() / (nf * nf);
        // Squared Frobenius norms below are divided by the dimension, as in the paper.
        let d2 = s_norm2 / df - m * m;
        let b_bar2 = (0..n)
            .map(|k| {
                let quadratic = gram[k].iter().map(|g| g * g).sum::<f64>() / nf;
                gram[k][k] * gram[k][k] - 2.0 * quadratic + s_norm2
            })
            .sum::<f64>()
            / (df * nf * nf);
        let shrinkage = if d2 > 0.0 {
            (b_bar2.min(d2) / d2).clamp(0.0, 1.0)
        } else {
            1.0
        };
        // The sample mean's squared length overstates the true mean's by tr(S) / (n - 1) (each
        // vector's own noise is in it): two synthetic people would share that noise and resemble
        // each other more than real strangers do.  Scaled to the unbiased length.
        let mean_norm2: f64 = mean.iter().map(|m| m * m).sum();
        let unbiased = (mean_norm2 - trace / (nf - 1.0)).max(0.0);
        let mean_scale = if mean_norm2 > 0.0 {
            (unbiased / mean_norm2).sqrt()
        } else {
            0.0
        };
        let scale = ((1.0 - shrinkage) / nf).sqrt();
        Ok(DistractorModel {
            mean: mean.iter().map(|m| (m * mean_scale) as f32).collect(),
            deviations: centred
                .iter()
                .map(|c| c.iter().map(|v| (v * scale) as f32).collect())
                .collect(),
            isotropic_sd: (shrinkage * m).sqrt() as f32,
            shrinkage,
        })
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Synthetic person `seed`: the same vector for the same seed, unit length.
    pub fn person(&self, seed: u64) -> Vec<f32> {
        let mut random = fastrand::Rng::with_seed(seed);
        let mut v: Vec<f32> = self
            .mean
            .iter()
            .map(|m| m + self.isotropic_sd * standard_normal(&mut random))
            .collect();
        for deviation in &self.deviations {
            let weight = standard_normal(&mut random);
            v.iter_mut()
                .zip(deviation)
                .for_each(|(x, d)| *x += weight * d);
        }
        normalise(&mut v);
        v
    }
}

/// A standard normal deviate (Box-Muller; one of the pair is enough here).
fn standard_normal(random: &mut fastrand::Rng) -> f32 {
    let u = 1.0 - random.f64(); // in (0, 1]: the logarithm stays finite
    let v = random.f64();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// The two-sample Kolmogorov-Smirnov test of two score samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KolmogorovSmirnov {
    /// The largest distance between the two empirical distribution functions, 0..1.
    pub statistic: f64,
    /// The asymptotic probability of a distance this large between samples of one distribution.
    pub p_value: f64,
    pub sizes: (usize, usize),
}

/// The two-sample KS test of `a` and `b` (both non-empty; sorted in place).
pub fn kolmogorov_smirnov(a: &mut [f32], b: &mut [f32]) -> KolmogorovSmirnov {
    a.sort_by(f32::total_cmp);
    b.sort_by(f32::total_cmp);
    let (na, nb) = (a.len(), b.len());
    let (mut i, mut j, mut statistic) = (0, 0, 0.0f64);
    while i < na && j < nb {
        let x = a[i].min(b[j]);
        while i < na && a[i] <= x {
            i += 1;
        }
        while j < nb && b[j] <= x {
            j += 1;
        }
        statistic = statistic.max((i as f64 / na as f64 - j as f64 / nb as f64).abs());
    }
    let effective = ((na * nb) as f64 / (na + nb) as f64).sqrt();
    let lambda = (effective + 0.12 + 0.11 / effective) * statistic;
    KolmogorovSmirnov {
        statistic,
        p_value: kolmogorov_q(lambda),
        sizes: (na, nb),
    }
}

/// Kolmogorov's survival function Q(λ) = 2 Σ (-1)^(k-1) exp(-2 k² λ²).
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// A score sample, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreShape {
    pub pairs: usize,
    pub mean: f64,
    pub sd: f64,
    pub p99: f64,
    pub max: f64,
    /// Share of scores at 0.30 or more: the tail the gate's thresholds live in.
    pub at_least_030: f64,
}

fn shape(scores: &[f32]) -> ScoreShape {
    let n = scores.len().max(1) as f64;
    let mean = scores.iter().map(|s| f64::from(*s)).sum::<f64>() / n;
    let var = scores
        .iter()
        .map(|s| (f64::from(*s) - mean).powi(2))
        .sum::<f64>()
        / n;
    let mut sorted = scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    let p99 = sorted
        .get(((sorted.len() as f64 * 0.99) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(f64::NAN, |s| f64::from(*s));
    ScoreShape {
        pairs: scores.len(),
        mean,
        sd: var.sqrt(),
        p99,
        max: sorted.last().map_or(f64::NAN, |s| f64::from(*s)),
        at_least_030: scores.iter().filter(|s| **s >= 0.30).count() as f64 / n,
    }
}

/// How well synthetic people stand in for real strangers (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Real different-person scores between the two halves of the corpus.
    pub real: ScoreShape,
    /// Scores of each half's model people against the other half's faces.
    pub model: ScoreShape,
    pub model_ks: KolmogorovSmirnov,
    /// Scores between the model's people (fitted on each half), against the same real scores:
    /// what a gallery of synthetic people and synthetic strangers amounts to.
    pub model_pairs: ScoreShape,
    pub model_pairs_ks: KolmogorovSmirnov,
    /// The same for random unit vectors (the old distractors), for comparison.
    pub random: ScoreShape,
    pub random_ks: KolmogorovSmirnov,
    /// Ledoit-Wolf shrinkage of the two half models.
    pub shrinkage: [f64; 2],
}

/// One vector per person: the template of each identity's photos.  Fitting photos instead lets
/// a person with many photos (the corpus has one with 22) pull every synthetic person towards
/// them, and synthetic people then resemble each other far more than real strangers do.
pub fn templates<'a>(
    identities: impl IntoIterator<Item = &'a IdentityEmbeddings>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    identities
        .into_iter()
        .filter(|identity| !identity.embeddings.is_empty())
        .map(|identity| {
            let photos: Vec<&[f32]> = identity.embeddings.iter().map(Vec::as_slice).collect();
            Ok(facegate_vision::template::mean(&photos)?)
        })
        .collect()
}

/// Validates the model on `identities` out of sample, with `people` synthetic people per half.
pub fn validate(identities: &[IdentityEmbeddings], people: u64) -> anyhow::Result<Validation> {
    let half = |parity: usize| {
        identities
            .iter()
            .enumerate()
            .filter(move |(n, _)| n % 2 == parity)
            .map(|(_, identity)| identity)
    };
    let halves: [Vec<&[f32]>; 2] = [0, 1].map(|parity| {
        half(parity)
            .flat_map(|identity| identity.embeddings.iter().map(Vec::as_slice))
            .collect()
    });
    let half_templates = [templates(half(0))?, templates(half(1))?];
    let mut real: Vec<f32> = halves[0]
        .iter()
        .flat_map(|a| halves[1].iter().map(|b| cosine(a, b)))
        .collect();
    let mut model_scores = Vec::new();
    let mut model_pairs = Vec::new();
    let mut random_scores = Vec::new();
    let mut shrinkage = [0.0; 2];
    for (fitted, other) in [(0, 1), (1, 0)] {
        let fit: Vec<&[f32]> = half_templates[fitted].iter().map(Vec::as_slice).collect();
        let model = DistractorModel::fit(&fit)?;
        shrinkage[fitted] = model.shrinkage;
        let pair_people: Vec<Vec<f32>> = (0..PAIR_PEOPLE)
            .map(|seed| model.person(VALIDATION_SEEDS / 2 + seed))
            .collect();
        for (n, a) in pair_people.iter().enumerate() {
            model_pairs.extend(pair_people[n + 1..].iter().map(|b| cosine(a, b)));
        }
        for seed in 0..people {
            // Seeds of their own: not the gallery's people.
            let person = model.person(VALIDATION_SEEDS + seed);
            let random = synthetic_embedding(VALIDATION_SEEDS + seed, model.dim());
            for face in &halves[other] {
                model_scores.push(cosine(&person, face));
                random_scores.push(cosine(&random, face));
            }
        }
    }
    let (real_shape, model_shape, random_shape) =
        (shape(&real), shape(&model_scores), shape(&random_scores));
    let model_ks = kolmogorov_smirnov(&mut real.clone(), &mut model_scores);
    let model_pairs_shape = shape(&model_pairs);
    let model_pairs_ks = kolmogorov_smirnov(&mut real.clone(), &mut model_pairs);
    let random_ks = kolmogorov_smirnov(&mut real, &mut random_scores);
    Ok(Validation {
        real: real_shape,
        model: model_shape,
        model_ks,
        model_pairs: model_pairs_shape,
        model_pairs_ks,
        random: random_shape,
        random_ks,
        shrinkage,
    })
}

/// Where validation's synthetic people start numbering.
const VALIDATION_SEEDS: u64 = 1 << 61;
/// Synthetic people per half whose scores among themselves are compared (about 125,000 pairs).
const PAIR_PEOPLE: u64 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_of_a_sample_with_itself_is_zero_and_of_disjoint_samples_one() {
        let mut a = vec![0.1, 0.2, 0.3, 0.4];
        let same = kolmogorov_smirnov(&mut a.clone(), &mut a);
        assert_eq!(same.statistic, 0.0);
        assert_eq!(same.p_value, 1.0);
        let apart = kolmogorov_smirnov(&mut [0.1, 0.2, 0.3], &mut [0.5, 0.6]);
        assert_eq!(apart.statistic, 1.0);
    }

    #[test]
    fn ks_as_by_hand() {
        // F_a steps at 1, 2, 3 (thirds); F_b at 2.5, 3.5 (halves): the largest gap is after 2,
        // where F_a = 2/3 and F_b = 0.
        let ks = kolmogorov_smirnov(&mut [1.0, 2.0, 3.0], &mut [2.5, 3.5]);
        assert!((ks.statistic - 2.0 / 3.0).abs() < 1e-12, "{ks:?}");
        assert_eq!(ks.sizes, (3, 2));
    }

    #[test]
    fn kolmogorov_q_matches_its_table() {
        // Q(1.36) = 0.049, the 5 % critical value; Q(1.63) = 0.010.
        assert!((kolmogorov_q(1.36) - 0.049).abs() < 0.001);
        assert!((kolmogorov_q(1.63) - 0.010).abs() < 0.001);
    }

    #[test]
    fn the_model_reproduces_the_mean_direction_and_is_deterministic() {
        // Embeddings around a shared direction: their draws must share it too.
        let shared = synthetic_embedding(1, 32);
        let faces: Vec<Vec<f32>> = (2..60)
            .map(|seed| {
                let mut v: Vec<f32> = synthetic_embedding(seed, 32)
                    .iter()
                    .zip(&shared)
                    .map(|(r, s)| 0.6 * r + 0.8 * s)
                    .collect();
                normalise(&mut v);
                v
            })
            .collect();
        let refs: Vec<&[f32]> = faces.iter().map(Vec::as_slice).collect();
        let model = DistractorModel::fit(&refs).unwrap();
        assert!((0.0..=1.0).contains(&model.shrinkage));
        assert_eq!(model.person(7), model.person(7));
        let people: Vec<Vec<f32>> = (0..500).map(|s| model.person(s)).collect();
        let along = people.iter().map(|p| cosine(p, &shared)).sum::<f32>() / 500.0;
        let real_along = faces.iter().map(|f| cosine(f, &shared)).sum::<f32>() / faces.len() as f32;
        assert!(
            (along - real_along).abs() < 0.05,
            "model {along}, real {real_along}"
        );
        let random_along = (0..500)
            .map(|s| cosine(&synthetic_embedding(1000 + s, 32), &shared))
            .sum::<f32>()
            / 500.0;
        assert!(
            random_along.abs() < 0.05,
            "random vectors have no shared direction"
        );
    }

    #[test]
    fn fitting_nothing_is_an_error() {
        assert!(DistractorModel::fit(&[]).is_err());
        assert!(DistractorModel::fit(&[&[1.0, 0.0]]).is_err());
        assert!(DistractorModel::fit(&[&[1.0, 0.0], &[1.0]]).is_err());
    }
}
