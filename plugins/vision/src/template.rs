// SPDX-License-Identifier: MIT OR Apache-2.0
//! A person's template from several enrolment photos: the normalised mean of their unit
//! embeddings, one vector that serves every photo, so the gallery keeps one entry per person and
//! the threshold arithmetic (one comparison per enrolled person) is unchanged.
//!
//! The mean is what a cosine matcher gains most from cheaply: each photo's own pose, light and
//! expression partly cancel, so a new photo of the same person lands closer to the template than
//! to a typical single photo (docs/ACCURACY.md measures by how much). Photos that are not of one
//! person are refused before they are averaged: a template of two people would match both.

use crate::embedder::{cosine, normalise};

/// The lowest cosine a photo may have to the template of the person's other photos. On the
/// development corpus (docs/ACCURACY.md) fewer than 2 % of same-person pairs score below it
/// (the lowest 0.22), and 99 % of different-person pairs score below 0.30: a mixed-up photo is
/// caught almost always, and a person's own photo rarely refused.
pub const MIN_SAME_PERSON_SIMILARITY: f32 = 0.25;

/// Why no template was made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("no embeddings to make a template of")]
    Empty,
    #[error("embedding {index} has {len} values where the first has {expected}")]
    DimensionMismatch {
        index: usize,
        len: usize,
        expected: usize,
    },
    #[error("the embeddings cancel out: no direction is left")]
    Degenerate,
    /// Photo `index` does not look like the others: it scores `similarity` against their
    /// template, below [`MIN_SAME_PERSON_SIMILARITY`].
    #[error(
        "photo {} does not look like the others (similarity {similarity:.2} to their template, \
         at least {MIN_SAME_PERSON_SIMILARITY} expected of one person)",
        index + 1
    )]
    NotOnePerson { index: usize, similarity: f32 },
}

/// The normalised mean of `embeddings` (unit vectors of one length).
pub fn mean(embeddings: &[&[f32]]) -> Result<Vec<f32>, TemplateError> {
    let first = embeddings.first().ok_or(TemplateError::Empty)?;
    let mut sum = vec![0.0f32; first.len()];
    for (index, embedding) in embeddings.iter().enumerate() {
        if embedding.len() != first.len() {
            return Err(TemplateError::DimensionMismatch {
                index,
                len: embedding.len(),
                expected: first.len(),
            });
        }
        sum.iter_mut()
            .zip(embedding.iter())
            .for_each(|(s, x)| *s += x);
    }
    if normalise(&mut sum) {
        Ok(sum)
    } else {
        Err(TemplateError::Degenerate)
    }
}

/// The template of one person's photos: their [`mean`], once every photo has been found to fit
/// the template of the others (leave-one-out; with two photos, each other).
pub fn of_one_person(embeddings: &[&[f32]]) -> Result<Vec<f32>, TemplateError> {
    let template = mean(embeddings)?;
    if embeddings.len() >= 2 {
        for index in 0..embeddings.len() {
            let others: Vec<&[f32]> = embeddings
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, e)| *e)
                .collect();
            let similarity = cosine(embeddings[index], &mean(&others)?);
            if similarity < MIN_SAME_PERSON_SIMILARITY {
                return Err(TemplateError::NotOnePerson { index, similarity });
            }
        }
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        assert!(normalise(&mut v));
        v
    }

    #[test]
    fn one_embedding_is_its_own_template() {
        let a = unit(&[0.6, 0.8, 0.0]);
        assert_eq!(of_one_person(&[&a]).unwrap(), a);
    }

    #[test]
    fn the_template_is_the_normalised_mean() {
        let (a, b) = (unit(&[1.0, 0.0]), unit(&[0.0, 1.0]));
        let t = mean(&[&a, &b]).unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((t[0] - h).abs() < 1e-6 && (t[1] - h).abs() < 1e-6, "{t:?}");
        // 90 degrees apart is cosine 0: not one person.
        assert_eq!(
            of_one_person(&[&a, &b]),
            Err(TemplateError::NotOnePerson {
                index: 0,
                similarity: 0.0
            })
        );
    }

    #[test]
    fn the_photo_that_does_not_fit_is_named() {
        let close = [
            unit(&[1.0, 0.1, 0.0]),
            unit(&[1.0, -0.1, 0.0]),
            unit(&[1.0, 0.0, 0.1]),
        ];
        let stranger = unit(&[0.1, 0.0, 1.0]);
        let mut photos: Vec<&[f32]> = close.iter().map(Vec::as_slice).collect();
        assert!(of_one_person(&photos).is_ok());
        photos.insert(1, &stranger);
        match of_one_person(&photos) {
            Err(TemplateError::NotOnePerson { index: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(mean(&[]), Err(TemplateError::Empty));
        let (a, b) = (unit(&[1.0, 0.0]), unit(&[1.0, 0.0, 0.0]));
        assert_eq!(
            mean(&[&a, &b]),
            Err(TemplateError::DimensionMismatch {
                index: 1,
                len: 3,
                expected: 2
            })
        );
        let c = unit(&[-1.0, 0.0]);
        assert_eq!(mean(&[&a, &c]), Err(TemplateError::Degenerate));
    }
}
