// SPDX-License-Identifier: MIT OR Apache-2.0
//! An embedder's model card: how to feed the model and what it may be used for, read from
//! `<model>.card.toml` beside the ONNX file (the repository keeps them in models/cards/, set-up
//! installs them beside the models).  With a card, another ONNX face embedder is a matter of
//! configuration: the card names its tensors, input size, colour order and normalisation, and
//! [`crate::Embedder`] checks them against the model when it loads it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::ModelError;

/// The format version [`ModelCard::load`] reads.
pub const SCHEMA: u32 = 1;

/// What a card's file name adds to the model's stem: `facegate_sface_2021dec.onnx` has its
/// card in `facegate_sface_2021dec.card.toml`.
pub const CARD_EXTENSION: &str = "card.toml";

/// The card of the model at `model`: the file beside it, named after its stem.
pub fn card_path(model: &Path) -> PathBuf {
    model.with_extension(CARD_EXTENSION)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub schema: u32,
    pub model: CardModel,
    pub input: CardInput,
    pub output: CardOutput,
}

/// What the model is, where it comes from and under which terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardModel {
    /// A human name ("SFace 2021dec").
    pub name: String,
    /// The model file the card describes; a card copied beside another file is refused.
    pub file: String,
    /// sha256 of the model file, in hex.
    pub sha256: String,
    /// The licence of the weights (not of the package they came in).
    pub licence: String,
    /// Whether the licence allows commercial use.  A gate that charges fares is commercial use:
    /// a model without it is for evaluation only, and says so when it is loaded.
    pub commercial_use: bool,
    /// Where the weights come from.
    pub source: String,
}

/// How an aligned face becomes the model's input tensor (f32, NCHW, batch 1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    /// The input tensor's name.
    pub tensor: String,
    /// Width and height of the aligned crop, in pixels.
    pub size: [usize; 2],
    /// Where the five landmarks are placed in the crop.
    pub alignment: Alignment,
    /// The channel order of the tensor's three planes.
    pub colour: ColourOrder,
    /// Per plane, in the tensor's channel order: value = (pixel - mean) / std, pixels 0..255.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The embedding the model gives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardOutput {
    /// The output tensor's name.
    pub tensor: String,
    /// Length of the embedding.
    pub dim: usize,
}

/// The landmark templates an aligned crop can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alignment {
    /// The five-point ArcFace template on a 112x112 crop ([`crate::align::TEMPLATE`]), which
    /// SFace and InsightFace's recognition models were trained on.
    Arcface,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    Rgb,
    Bgr,
}

/// The per-pixel arithmetic between a camera pixel and a tensor value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub colour: ColourOrder,
    pub mean: [f32; 3],
    /// 1 / std per plane, so the warp multiplies.
    pub inverse_std: [f32; 3],
}

impl Normalisation {
    /// Raw 0..255 RGB.
    pub const RAW_RGB: Normalisation = Normalisation {
        colour: ColourOrder::Rgb,
        mean: [0.0; 3],
        inverse_std: [1.0; 3],
    };
}

impl ModelCard {
    /// Reads and checks the card of the model at `model` (see [`card_path`]).
    pub fn load(model: &Path) -> Result<Self, ModelError> {
        let path = card_path(model);
        let problem = |reason: String| ModelError::Card {
            path: path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(problem(
                    "does not exist; an embedder needs its card beside it to say how it is fed \
                     (models/cards/ has the shipped ones, docs/MODELS.md the format)"
                        .into(),
                ));
            }
            Err(e) => return Err(problem(e.to_string())),
        };
        let card: ModelCard = toml::from_str(&text).map_err(|e| problem(one_line(&e)))?;
        card.check(model).map_err(problem)?;
        Ok(card)
    }

    fn check(&self, model: &Path) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!(
                "schema {} is not the one this build reads ({SCHEMA})",
                self.schema
            ));
        }
        let file = model.file_name().map(|f| f.to_string_lossy());
        if file.as_deref() != Some(self.model.file.as_str()) {
            return Err(format!(
                "describes {}, not {}",
                self.model.file,
                model.display()
            ));
        }
        match self.input.alignment {
            Alignment::Arcface if self.input.size != [112, 112] => {
                return Err(format!(
                    "alignment arcface places the landmarks on a 112x112 crop, the card says {}x{}",
                    self.input.size[0], self.input.size[1]
                ));
            }
            Alignment::Arcface => {}
        }
        if let Some(std) = self
            .input
            .std
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(format!("input std {std} must be a positive number"));
        }
        if self.input.mean.iter().any(|m| !m.is_finite()) {
            return Err("input mean must be finite".into());
        }
        if self.output.dim == 0 {
            return Err("output dim must be at least 1".into());
        }
        Ok(())
    }

    pub fn normalisation(&self) -> Normalisation {
        Normalisation {
            colour: self.input.colour,
            mean: self.input.mean,
            inverse_std: self.input.std.map(|s| 1.0 / s),
        }
    }
}

/// toml's messages point into the file over several lines; a journal wants one.
fn one_line(error: &toml::de::Error) -> String {
    let message = error.message();
    match error.span() {
        Some(span) => format!("{message} (at byte {})", span.start),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SFACE: &str = r#"
schema = 1
[model]
name = "SFace 2021dec"
file = "m.onnx"
sha256 = "00"
licence = "Apache-2.0"
commercial_use = true
source = "test"
[input]
tensor = "data"
size = [112, 112]
alignment = "arcface"
colour = "rgb"
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
[output]
tensor = "fc1"
dim = 128
"#;

    fn write_card(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(card_path(&model), text).unwrap();
        (dir, model)
    }

    #[test]
    fn a_card_reads_and_gives_its_normalisation() {
        let (_dir, model) = write_card(&SFACE.replace("[1.0, 1.0, 1.0]", "[127.5, 127.5, 2.0]"));
        let card = ModelCard::load(&model).unwrap();
        assert_eq!(card.output.dim, 128);
        assert!(card.model.commercial_use);
        let n = card.normalisation();
        assert_eq!(n.colour, ColourOrder::Rgb);
        assert_eq!(n.inverse_std, [1.0 / 127.5, 1.0 / 127.5, 0.5]);
    }

    #[test]
    fn the_card_is_the_file_beside_the_model() {
        assert_eq!(
            card_path(Path::new("/m/facegate_sface_2021dec.onnx")),
            Path::new("/m/facegate_sface_2021dec.card.toml")
        );
    }

    #[test]
    fn a_bad_card_is_one_line_naming_the_card_and_the_problem() {
        let cases = [
            (
                SFACE.replace("file = \"m.onnx\"", "file = \"other.onnx\""),
                "describes other.onnx",
            ),
            (SFACE.replace("[112, 112]", "[112, 96]"), "112x112 crop"),
            (SFACE.replace("\"rgb\"", "\"grey\""), "unknown variant"),
            (
                SFACE.replace("[1.0, 1.0, 1.0]", "[1.0, 0.0, 1.0]"),
                "positive",
            ),
            (SFACE.replace("dim = 128", "dim = 0"), "dim"),
            (SFACE.replace("schema = 1", "schema = 2"), "schema 2"),
            (SFACE.replace("licence", "license"), "unknown field"),
        ];
        for (text, expected) in cases {
            let (_dir, model) = write_card(&text);
            let error = ModelCard::load(&model).unwrap_err().to_string();
            assert!(
                error.contains("m.card.toml") && error.contains(expected) && !error.contains('\n'),
                "{expected}: {error}"
            );
        }
    }

    #[test]
    fn a_missing_card_says_where_cards_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let error = ModelCard::load(&dir.path().join("m.onnx"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("m.card.toml") && error.contains("models/cards/"),
            "{error}"
        );
    }
}
