// SPDX-License-Identifier: MIT OR Apache-2.0
//! The model cue: a passive presentation-attack classifier of the MiniFASNet family, fed as its
//! card says (`<model>.card.toml` beside the ONNX file, models/cards/ in the repository): the
//! face box scaled by `crop_scale` about its centre (the scale capped so the crop fits the frame,
//! the crop shifted back inside rather than clipped), resized to the input size, in the card's
//! colour order and normalisation; the softmax of the outputs, `live_class` being "live".
//!
//! No such model with a clear licence is in reach (docs/MODELS.md): the one the set-up fetches
//! is opt-in at the gate, and loading a model whose card says `commercial_use = false` is
//! logged as a warning.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;

use super::Reading;
use crate::frame::Frame;
use crate::geometry::Rect;
use crate::model_card::{CardModel, ColourOrder, SCHEMA, card_path};
use crate::runtime::{
    InferenceError, ModelError, expect_io, input_dims, model_sha256, open_session,
};

/// Live probability below which a frame is vetoed, and at or above which it confirms.
const VETO_BELOW: f32 = 0.5;
const CONFIRM_FROM: f32 = 0.9;

/// A classifier's card.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadCard {
    pub schema: u32,
    pub model: CardModel,
    pub input: PadInput,
    pub output: PadOutput,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadInput {
    pub tensor: String,
    /// Width and height of the crop fed, in pixels.
    pub size: [usize; 2],
    /// The crop around the face: its box scaled this much about its centre.
    pub crop_scale: f32,
    pub colour: ColourOrder,
    /// Per plane, in the tensor's channel order: value = (pixel - mean) / std, pixels 0..255.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadOutput {
    pub tensor: String,
    /// Logits given; softmax is taken over them.
    pub classes: usize,
    /// The class that means "live".
    pub live_class: usize,
}

impl PadCard {
    /// Reads and checks the card of the model at `model`.
    pub fn load(model: &Path) -> Result<Self, ModelError> {
        let path = card_path(model);
        let problem = |reason: String| ModelError::Card {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            problem(if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist; a presentation-attack model needs its card beside it \
                 (models/cards/ has the shipped ones, docs/MODELS.md the format)"
                    .into()
            } else {
                e.to_string()
            })
        })?;
        let card: PadCard = toml::from_str(&text).map_err(|e| problem(e.message().to_owned()))?;
        if card.schema != SCHEMA {
            return Err(problem(format!(
                "schema {} is not the one this build reads ({SCHEMA})",
                card.schema
            )));
        }
        let file = model.file_name().map(|f| f.to_string_lossy());
        if file.as_deref() != Some(card.model.file.as_str()) {
            return Err(problem(format!(
                "describes {}, not {}",
                card.model.file,
                model.display()
            )));
        }
        if !(card.input.crop_scale.is_finite() && card.input.crop_scale >= 1.0) {
            return Err(problem(format!(
                "input crop_scale {} must be at least 1",
                card.input.crop_scale
            )));
        }
        if card.input.size.contains(&0) || card.input.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err(problem("input size and std must be positive".into()));
        }
        if card.output.live_class >= card.output.classes {
            return Err(problem(format!(
                "output live_class {} is not one of its {} classes",
                card.output.live_class, card.output.classes
            )));
        }
        Ok(card)
    }
}

/// A loaded classifier, with its input buffer.
pub struct PadModel {
    session: Session,
    card: PadCard,
    path: PathBuf,
    input: Vec<f32>,
}

impl PadModel {
    /// Loads the model at `path` and its card, and checks that they and the model agree.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let session = open_session(path, 1)?;
        let card = PadCard::load(path)?;
        let sha256 = model_sha256(path)?;
        if sha256 != card.model.sha256 {
            return Err(ModelError::Card {
                path: card_path(path),
                reason: format!(
                    "describes the build of {} with sha256 {}, the file has {sha256}",
                    card.model.file, card.model.sha256
                ),
            });
        }
        expect_io(
            &session,
            path,
            &card.input.tensor,
            &[card.output.tensor.as_str()],
        )?;
        let [width, height] = card.input.size;
        let dims = input_dims(&session);
        let fits = |d: i64, want: usize| d < 0 || d == want as i64;
        if !matches!(dims.as_slice(),
            [n, 3, h, w] if fits(*n, 1) && fits(*h, height) && fits(*w, width))
        {
            return Err(ModelError::WrongShape {
                path: path.to_path_buf(),
                reason: format!(
                    "input {} is {dims:?}, the card says [1, 3, {height}, {width}]",
                    card.input.tensor
                ),
            });
        }
        Ok(PadModel {
            session,
            input: vec![0.0; 3 * width * height],
            card,
            path: path.to_path_buf(),
        })
    }

    pub fn card(&self) -> &PadCard {
        &self.card
    }

    /// The crop the card asks for around `face` on a `width` x `height` frame: x, y, w, h.
    pub fn crop(&self, face: &Rect, width: usize, height: usize) -> Rect {
        crop(face, self.card.input.crop_scale, width, height)
    }

    /// The probability that `face` on `frame` is live.
    pub fn live_probability(&mut self, frame: &Frame, face: &Rect) -> Result<f32, InferenceError> {
        let failure = |reason: String| InferenceError {
            model: self.path.clone(),
            reason,
        };
        let [width, height] = self.card.input.size;
        let crop = self.crop(face, frame.width(), frame.height());
        let plane = width * height;
        let order = match self.card.input.colour {
            ColourOrder::Rgb => [0, 1, 2],
            ColourOrder::Bgr => [2, 1, 0],
        };
        let (mean, std) = (self.card.input.mean, self.card.input.std);
        for y in 0..height {
            let sy = crop.y + (y as f32 + 0.5) * crop.h / height as f32 - 0.5;
            for x in 0..width {
                let sx = crop.x + (x as f32 + 0.5) * crop.w / width as f32 - 0.5;
                let rgb = frame.sample_rgb(sx, sy).unwrap_or([0.0; 3]);
                for (channel, &source) in order.iter().enumerate() {
                    self.input[channel * plane + y * width + x] =
                        (rgb[source] - mean[channel]) / std[channel];
                }
            }
        }
        let tensor = TensorRef::from_array_view(([1usize, 3, height, width], &self.input[..]))
            .map_err(|e| failure(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.card.input.tensor.as_str() => tensor])
            .map_err(|e| failure(e.to_string()))?;
        let (_, logits) = outputs[self.card.output.tensor.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| failure(e.to_string()))?;
        if logits.len() != self.card.output.classes {
            return Err(failure(format!(
                "output has {} values, the card says {} classes",
                logits.len(),
                self.card.output.classes
            )));
        }
        let top = logits.iter().copied().fold(f32::MIN, f32::max);
        let total: f32 = logits.iter().map(|l| (l - top).exp()).sum();
        let live = (logits[self.card.output.live_class] - top).exp() / total;
        if !live.is_finite() {
            return Err(failure("the model returned non-finite scores".into()));
        }
        Ok(live)
    }

    /// The model cue's reading of a live probability.
    pub fn reading(live: f32) -> Reading {
        if live < VETO_BELOW {
            Reading::Veto(VETO_BELOW / live.max(1e-3))
        } else if live >= CONFIRM_FROM {
            Reading::Confirm(live / CONFIRM_FROM)
        } else {
            Reading::Clear
        }
    }
}

/// `face` scaled by `scale` about its centre, the scale capped so the crop fits a `width` x
/// `height` frame and the crop shifted back inside it.
fn crop(face: &Rect, scale: f32, width: usize, height: usize) -> Rect {
    let (fw, fh) = (width as f32, height as f32);
    let scale = scale
        .min((fw - 1.0) / face.w.max(1.0))
        .min((fh - 1.0) / face.h.max(1.0));
    let (w, h) = (face.w * scale, face.h * scale);
    let (cx, cy) = (face.x + face.w / 2.0, face.y + face.h / 2.0);
    Rect {
        x: (cx - w / 2.0).clamp(0.0, (fw - w).max(0.0)),
        y: (cy - h / 2.0).clamp(0.0, (fh - h).max(0.0)),
        w,
        h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_scaled_capped_and_shifted_inside() {
        let face = Rect {
            x: 10.0,
            y: 100.0,
            w: 100.0,
            h: 120.0,
        };
        let c = crop(&face, 2.7, 640, 480);
        // 2.7 would make it 324 high: fits 480; shifted right to start at 0.
        assert!((c.w - 270.0).abs() < 1e-3 && (c.h - 324.0).abs() < 1e-3);
        // Centred it would start at y = 160 - 162: shifted down to 0.
        assert_eq!((c.x, c.y), (0.0, 0.0));
        let big = Rect {
            x: 200.0,
            y: 50.0,
            w: 250.0,
            h: 300.0,
        };
        let c = crop(&big, 2.7, 640, 480);
        // Capped by the height: 479 / 300.
        assert!((c.h - 479.0).abs() < 1e-3, "{c:?}");
        assert!(c.x >= 0.0 && c.x + c.w <= 640.0 && c.y >= 0.0);
    }

    #[test]
    fn the_readings_follow_the_probability() {
        assert!(matches!(PadModel::reading(0.1), Reading::Veto(_)));
        assert_eq!(PadModel::reading(0.7), Reading::Clear);
        assert!(matches!(PadModel::reading(0.95), Reading::Confirm(_)));
    }
}
