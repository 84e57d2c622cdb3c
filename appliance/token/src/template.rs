// SPDX-License-Identifier: MIT OR Apache-2.0
//! The face template in a token: an L2-normalised embedding quantised to int8 with one scale,
//! four times smaller than f32 and what keeps the QR code small enough for a gate camera.

/// An int8 template: value `i` is `values[i] × scale`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantised {
    pub scale: f32,
    pub values: Vec<i8>,
}

/// Quantises `embedding` symmetrically: the largest magnitude maps to ±127.
pub fn quantise(embedding: &[f32]) -> Quantised {
    let largest = embedding.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
    let values = embedding
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    Quantised { scale, values }
}

impl Quantised {
    /// Back to f32, L2-normalised again (what the gate compares with the live face).
    pub fn embedding(&self) -> Vec<f32> {
        let mut v: Vec<f32> = self
            .values
            .iter()
            .map(|&q| f32::from(q) * self.scale)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// The cosine similarity between `embedding` (unit length) and this template: how much
    /// the quantisation costs, 1.0 being nothing.
    pub fn cosine_to(&self, embedding: &[f32]) -> f64 {
        self.embedding()
            .iter()
            .zip(embedding)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn quantising_a_unit_embedding_costs_little_cosine_and_keeps_the_largest_at_127() {
        let v = unit(128, 3);
        let q = quantise(&v);
        assert_eq!(q.values.len(), 128);
        assert!(q.values.iter().any(|&x| x.abs() == 127));
        let cosine = q.cosine_to(&v);
        assert!(cosine > 0.999 && cosine <= 1.0 + 1e-9, "{cosine}");
        let back = q.embedding();
        let norm: f32 = back.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_zero_vector_quantises_to_zeros_without_dividing_by_zero() {
        let q = quantise(&[0.0; 4]);
        assert_eq!(q.values, [0; 4]);
        assert!(q.embedding().iter().all(|x| *x == 0.0));
    }
}
