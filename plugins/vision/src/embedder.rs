// SPDX-License-Identifier: MIT OR Apache-2.0
//! The SFace face embedder on ONNX Runtime: align, infer, L2-normalise.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;

use crate::align::{ALIGNED_SIZE, align_rgb_planar};
use crate::frame::Frame;
use crate::geometry::LANDMARKS;
use crate::runtime::{
    InferenceError, ModelError, expect_io, input_dims, model_identity, open_session,
};

const INPUT: &str = "data";
const OUTPUT: &str = "fc1";

pub struct Embedder {
    session: Session,
    path: PathBuf,
    identity: String,
    dim: usize,
    input: Vec<f32>,
}

impl Embedder {
    pub fn load(path: &Path, threads: usize) -> Result<Self, ModelError> {
        let session = open_session(path, threads)?;
        expect_io(&session, path, INPUT, &[OUTPUT])?;
        let wrong = |reason: String| ModelError::WrongShape {
            path: path.to_path_buf(),
            reason,
        };
        let dims = input_dims(&session);
        let size = ALIGNED_SIZE as i64;
        if dims.len() != 4 || dims[1] != 3 || dims[2] != size || dims[3] != size {
            return Err(wrong(format!(
                "input `{INPUT}` should be [1, 3, 112, 112], found {dims:?}"
            )));
        }
        let output_dims: Vec<i64> = session.outputs()[0]
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let dim = match output_dims.as_slice() {
            [_, d] if *d > 0 => *d as usize,
            other => {
                return Err(wrong(format!(
                    "output `{OUTPUT}` should be [1, D], found {other:?}"
                )));
            }
        };
        Ok(Embedder {
            session,
            path: path.to_path_buf(),
            identity: model_identity(path)?,
            dim,
            input: vec![0.0; 3 * ALIGNED_SIZE * ALIGNED_SIZE],
        })
    }

    /// Identity of the model ("file-stem@sha256:…"): embeddings from different models never mix.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn path(&self) -> &Path {
        &self.path
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
        if embedding.len() != self.dim {
            return Err(failure(format!(
                "embedding buffer holds {} values, model gives {}",
                embedding.len(),
                self.dim
            )));
        }
        if !align_rgb_planar(frame, landmarks, &mut self.input) {
            return Err(failure(
                "landmarks are degenerate, the face cannot be aligned".into(),
            ));
        }
        let tensor =
            TensorRef::from_array_view(([1usize, 3, ALIGNED_SIZE, ALIGNED_SIZE], &self.input[..]))
                .map_err(|e| failure(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT => tensor])
            .map_err(|e| failure(e.to_string()))?;
        let (_, raw) = outputs[OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| failure(e.to_string()))?;
        if raw.len() != self.dim {
            return Err(failure(format!(
                "output has {} values, expected {}",
                raw.len(),
                self.dim
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
}
