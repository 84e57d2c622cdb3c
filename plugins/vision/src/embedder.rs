// SPDX-License-Identifier: MIT OR Apache-2.0
//! The face embedder on ONNX Runtime: align, infer, L2-normalise.  Which model, and how it is
//! fed, its model card says ([`crate::model_card`]); the default is SFace.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::align::{ALIGNED_SIZE, align_planar};
use crate::frame::Frame;
use crate::geometry::LANDMARKS;
use crate::model_card::{ModelCard, Normalisation};
use crate::runtime::{
    InferenceError, ModelError, expect_io, identity_of, input_dims, model_sha256, open_session,
};

pub struct Embedder {
    session: Session,
    path: PathBuf,
    identity: String,
    card: ModelCard,
    normalisation: Normalisation,
    input: Vec<f32>,
    crop_sharpness: f32,
}

impl Embedder {
    /// Loads the model at `path` and its card beside it, and checks that they agree.
    pub fn load(path: &Path, threads: usize) -> Result<Self, ModelError> {
        let session = open_session(path, threads)?;
        let card = ModelCard::load(path)?;
        let sha256 = model_sha256(path)?;
        if sha256 != card.model.sha256 {
            return Err(ModelError::Card {
                path: crate::model_card::card_path(path),
                reason: format!(
                    "describes the build of {} with sha256 {}, the file has {sha256}",
                    card.model.file, card.model.sha256
                ),
            });
        }
        let (input, output) = (card.input.tensor.as_str(), card.output.tensor.as_str());
        expect_io(&session, path, input, &[output])?;
        let wrong = |reason: String| ModelError::WrongShape {
            path: path.to_path_buf(),
            reason,
        };
        let [width, height] = card.input.size;
        let dims = input_dims(&session);
        let fits = |d: i64, want: usize| d < 0 || d == want as i64;
        let expected = matches!(dims.as_slice(),
            [n, 3, h, w] if fits(*n, 1) && fits(*h, height) && fits(*w, width));
        if !expected {
            return Err(wrong(format!(
                "input `{input}` should be [1, 3, {height}, {width}] as its card says, found {dims:?}"
            )));
        }
        let output_dims: Vec<i64> = session
            .outputs()
            .iter()
            .find(|o| o.name() == output)
            .and_then(|o| o.dtype().tensor_shape())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        match output_dims.as_slice() {
            [_, d] if *d == card.output.dim as i64 => {}
            other => {
                return Err(wrong(format!(
                    "output `{output}` should be [1, {}] as its card says, found {other:?}",
                    card.output.dim
                )));
            }
        }
        Ok(Embedder {
            session,
            path: path.to_path_buf(),
            identity: identity_of(path, &sha256),
            normalisation: card.normalisation(),
            card,
            input: vec![0.0; 3 * ALIGNED_SIZE * ALIGNED_SIZE],
            crop_sharpness: 0.0,
        })
    }

    /// Identity of the model ("file-stem@sha256:…"): embeddings from different models never mix.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn dim(&self) -> usize {
        self.card.output.dim
    }

    /// The model's card: its licence, and how it is fed.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How sharp the aligned crop of the last [`Self::embed`] was: the variance of the Laplacian
    /// of its channels' mean, in the model's input units (so comparable between frames embedded
    /// by one model, not between models). Blur, from motion or focus, lowers it.
    pub fn crop_sharpness(&self) -> f32 {
        self.crop_sharpness
    }

    /// Embeds the face with these landmarks into `embedding` (length [`Self::dim`]), unit length.
    pub fn embed(
        &mut self,
        frame: &Frame,
        landmarks: &[[f32; 2]; LANDMARKS],
        embedding: &mut [f32],
    ) -> Result<(), InferenceError> {
        let failure = |reason: String| InferenceError {
            model: self.path.clone(),
            reason,
        };
        let dim = self.dim();
        if embedding.len() != dim {
            return Err(failure(format!(
                "embedding buffer holds {} values, model gives {dim}",
                embedding.len(),
            )));
        }
        if !align_planar(frame, landmarks, &self.normalisation, &mut self.input) {
            return Err(failure(
                "landmarks are degenerate, the face cannot be aligned".into(),
            ));
        }
        self.crop_sharpness = laplacian_variance(&self.input);
        let tensor =
            TensorRef::from_array_view(([1usize, 3, ALIGNED_SIZE, ALIGNED_SIZE], &self.input[..]))
                .map_err(|e| failure(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.card.input.tensor.as_str() => tensor])
            .map_err(|e| failure(e.to_string()))?;
        let (_, raw) = outputs[self.card.output.tensor.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| failure(e.to_string()))?;
        if raw.len() != dim {
            return Err(failure(format!(
                "output has {} values, expected {dim}",
                raw.len(),
            )));
        }
        embedding.copy_from_slice(raw);
        if !normalise(embedding) {
            return Err(failure(
                "the model returned a zero or non-finite embedding".into(),
            ));
        }
        Ok(())
    }
}

/// The variance of the 4-neighbour Laplacian over the inside of a planar 3-channel aligned crop,
/// taken on the mean of its channels.
fn laplacian_variance(planar: &[f32]) -> f32 {
    let n = ALIGNED_SIZE;
    let (r, rest) = planar.split_at(n * n);
    let (g, b) = rest.split_at(n * n);
    let grey = |i: usize| (r[i] + g[i] + b[i]) / 3.0;
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    for y in 1..n - 1 {
        for x in 1..n - 1 {
            let i = y * n + x;
            let laplacian = grey(i - 1) + grey(i + 1) + grey(i - n) + grey(i + n) - 4.0 * grey(i);
            sum += f64::from(laplacian);
            sum_sq += f64::from(laplacian) * f64::from(laplacian);
        }
    }
    let count = ((n - 2) * (n - 2)) as f64;
    let mean = sum / count;
    (sum_sq / count - mean * mean).max(0.0) as f32
}

/// Scales `v` to unit length; false if it has none.
pub fn normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_and_cosine() {
        let mut v = [3.0, 4.0];
        assert!(normalise(&mut v));
        assert_eq!(v, [0.6, 0.8]);
        assert!((cosine(&v, &v) - 1.0).abs() < 1e-6);
        assert!(!normalise(&mut [0.0, 0.0]));
        assert!(!normalise(&mut [f32::NAN, 1.0]));
    }

    #[test]
    fn a_flat_crop_has_no_sharpness_and_a_checkered_one_has_much() {
        let n = ALIGNED_SIZE * ALIGNED_SIZE;
        assert_eq!(laplacian_variance(&vec![0.7; 3 * n]), 0.0);
        let checkered: Vec<f32> = (0..3 * n)
            .map(|i| {
                let (x, y) = (i % ALIGNED_SIZE, (i / ALIGNED_SIZE) % ALIGNED_SIZE);
                ((x + y) % 2) as f32
            })
            .collect();
        let smooth: Vec<f32> = (0..3 * n)
            .map(|i| (i % ALIGNED_SIZE) as f32 / ALIGNED_SIZE as f32)
            .collect();
        assert!(laplacian_variance(&checkered) > 1.0);
        assert!(
            laplacian_variance(&smooth) < 1e-6,
            "a ramp has no second derivative"
        );
    }
}
