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

/// Labels are shown to staff and on the gate's overlay: on top of `text_problem`, one that is
/// not empty (empty means "no label": the id is shown) must show something, and bidirectional
/// controls are refused, since they reorder what is shown after them (a label that reads as
/// someone else's, or hides part of a log line). Checked when enrolling; a gallery written before
/// this rule still opens.
pub(super) fn label_problem(label: &str) -> Option<String> {
    if let Some(problem) = text_problem(label, MAX_LABEL_CHARS) {
        return Some(problem);
    }
    if let Some(control) = label.chars().find(|&c| is_bidi_control(c)) {
        return Some(format!(
            "contains the bidirectional control character U+{:04X}",
            u32::from(control)
        ));
    }
    if !label.is_empty() && !label.chars().any(is_visible) {
        return Some("has no visible character".to_owned());
    }
    None
}

/// Unicode's explicit directional marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether a terminal or a font draws something for `c`: not white space, not zero-width, and
/// not one of the fillers that have a width but no glyph.
fn is_visible(c: char) -> bool {
    const BLANK_FILLERS: [char; 5] = ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{2800}'];
    !c.is_whitespace()
        && unicode_width::UnicodeWidthChar::width(c).is_some_and(|width| width > 0)
        && !BLANK_FILLERS.contains(&c)
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
