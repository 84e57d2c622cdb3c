// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the gallery accepts as ids, labels, model names, dimensions and embeddings.

/// Tolerance on an embedding's norm: embedders normalise in f32, so real ones land far inside it.
pub(super) const UNIT_NORM_TOLERANCE: f64 = 1e-3;
const MAX_ID_CHARS: usize = 64;
pub(super) const MAX_LABEL_CHARS: usize = 256;
const MAX_MODEL_CHARS: usize = 256;
/// Face embedders produce 128 to 512 values; far beyond that is a caller's mistake, not a model.
pub(super) const MAX_DIM: u32 = 4096;

pub(super) fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Some("must be 1 to 64 characters");
    }
    let is_allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !id.chars().all(is_allowed) {
        return Some("may contain only A-Z a-z 0-9 . _ @ -");
    }
    None
}

/// Labels and model names end up in logs and terminals, so control characters are refused.
pub(super) fn text_problem(text: &str, max_chars: usize) -> Option<String> {
    if text.chars().count() > max_chars {
        return Some(format!("longer than {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Some("contains control characters".to_owned());
    }
    None
}

pub(super) fn model_problem(model: &str) -> Option<String> {
    if model.is_empty() {
        return Some("empty".to_owned());
    }
    text_problem(model, MAX_MODEL_CHARS)
}

pub(super) fn dim_problem(dim: u32) -> Option<String> {
    if dim == 0 || dim > MAX_DIM {
        return Some(format!("{dim} is outside 1..={MAX_DIM}"));
    }
    None
}

/// The embedding's Euclidean norm, in f64 so that the tolerance check is not itself rounded.
pub(super) fn norm(embedding: &[f32]) -> f64 {
    embedding
        .iter()
        .map(|&value| f64::from(value) * f64::from(value))
        .sum::<f64>()
        .sqrt()
}
