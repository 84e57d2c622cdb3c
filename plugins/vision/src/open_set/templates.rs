// SPDX-License-Identifier: MIT OR Apache-2.0
//! What enrolling several photos per person gains: genuine scores of a person's photo against a
//! template ([`crate::template::mean`]) of k of their other photos, for k = 1 (one enrolment
//! photo, the baseline) and more.
//!
//! Only identities with more photos than the largest k take part, so every k is measured on the
//! same people and probes. For a probe photo, its person's other photos in corpus order make
//! the templates: every run of k consecutive ones, wrapping around, so each other photo is in
//! exactly k templates.
//!
//! Impostor scores are measured again, not assumed: a mean of k photos is shorter than a unit
//! vector before it is normalised, so normalising stretches a stranger's score as well as a
//! genuine one. Each template of the person's photos (every run of k, wrapping) is compared with
//! every photo of every other identity of the input.

use serde::{Deserialize, Serialize};

use super::IdentityEmbeddings;
use super::rates::{self, RateRow};
use super::scores::ScoreSummary;
use crate::embedder::cosine;
use crate::template;

/// Photos per template the report compares.
pub const DEFAULT_TEMPLATE_SIZES: [usize; 3] = [1, 2, 3];

/// Genuine scores against templates of `photos` photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateGain {
    pub photos: usize,
    /// People measured (those with more than the largest template size's photos).
    pub identities: usize,
    /// Scores over every (probe, template) comparison; `pairs` counts the comparisons.
    pub genuine: ScoreSummary,
    /// The mean of each person's mean genuine score: every person weighed alike, however many
    /// photos they have.
    pub mean_per_identity: f64,
    /// Scores of other identities' photos against these templates.
    pub impostor: ScoreSummary,
    /// FMR and FNMR at each of the rate table's thresholds.
    pub rates: Vec<RateRow>,
}

/// Every run of `photos` consecutive embeddings of `all` (wrapping around), as templates.
fn templates(all: &[&[f32]], photos: usize) -> Vec<Vec<f32>> {
    (0..all.len())
        .filter_map(|start| {
            let members: Vec<&[f32]> = (0..photos).map(|k| all[(start + k) % all.len()]).collect();
            // Unit embeddings of one person never cancel out; a set that did makes no template.
            template::mean(&members).ok()
        })
        .collect()
}

/// The genuine score of each probe against each template of `photos` of its person's other
/// photos.
fn genuine_scores(identity: &IdentityEmbeddings, photos: usize) -> Vec<f32> {
    let all = &identity.embeddings;
    let mut scores = Vec::new();
    for (probe, embedding) in all.iter().enumerate() {
        let others: Vec<&[f32]> = all
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != probe)
            .map(|(_, e)| e.as_slice())
            .collect();
        scores.extend(
            templates(&others, photos)
                .iter()
                .map(|template| cosine(embedding, template)),
        );
    }
    scores
}

/// The score of every photo of the other identities against each template of `photos` of
/// `identity`'s photos.
fn impostor_scores(
    identity: &IdentityEmbeddings,
    everyone: &[IdentityEmbeddings],
    photos: usize,
) -> Vec<f32> {
    let own: Vec<&[f32]> = identity.embeddings.iter().map(Vec::as_slice).collect();
    let templates = templates(&own, photos);
    everyone
        .iter()
        .filter(|other| other.identity != identity.identity)
        .flat_map(|other| &other.embeddings)
        .flat_map(|stranger| templates.iter().map(|t| cosine(stranger, t)))
        .collect()
}

fn sorted(mut scores: Vec<f32>) -> Vec<f32> {
    scores.sort_by(f32::total_cmp);
    scores
}

/// For each of `sizes`, the genuine and impostor scores against templates of that many photos.
/// Empty when no identity has more photos than the largest size, or nobody else is there to be
/// a stranger.
pub fn template_gains(identities: &[IdentityEmbeddings], sizes: &[usize]) -> Vec<TemplateGain> {
    let Some(&largest) = sizes.iter().max() else {
        return Vec::new();
    };
    let people: Vec<&IdentityEmbeddings> = identities
        .iter()
        .filter(|i| i.embeddings.len() > largest)
        .collect();
    if people.is_empty() || sizes.contains(&0) {
        return Vec::new();
    }
    sizes
        .iter()
        .filter_map(|&photos| {
            let per_identity: Vec<Vec<f32>> =
                people.iter().map(|i| genuine_scores(i, photos)).collect();
            let genuine = sorted(per_identity.iter().flatten().copied().collect());
            let impostor = sorted(
                people
                    .iter()
                    .flat_map(|i| impostor_scores(i, identities, photos))
                    .collect(),
            );
            if impostor.is_empty() {
                return None;
            }
            let mean_per_identity = per_identity
                .iter()
                .map(|s| s.iter().map(|&x| f64::from(x)).sum::<f64>() / s.len() as f64)
                .sum::<f64>()
                / per_identity.len() as f64;
            Some(TemplateGain {
                photos,
                identities: people.len(),
                rates: rates::rate_table(&genuine, &impostor),
                genuine: ScoreSummary::of(&genuine),
                impostor: ScoreSummary::of(&impostor),
                mean_per_identity,
            })
        })
        .collect()
}
