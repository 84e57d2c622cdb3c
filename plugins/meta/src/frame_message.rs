// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `facegate-frame` element message: every embedded face of one frame, matched or not, with
//! the gallery's best candidate for each. fgmatch writes it (with `post-frames=true`) and the gate
//! service reads it; both go through [`FrameMessage`], so the two sides cannot drift apart.

use std::fmt;

use gst::glib::value::FromValue;
use gst::prelude::*;
use thiserror::Error;

use crate::{FRAME_FACE, FRAME_MESSAGE, Liveness, PixelRect};

// Field names on the wire.
const PTS: &str = "pts";
const RUNNING_TIME: &str = "running-time";
const WIDTH: &str = "width";
const HEIGHT: &str = "height";
const GENERATION: &str = "generation";
const GALLERY_SIZE: &str = "gallery-size";
const FACES: &str = "faces";
const TRACK_ID: &str = "track-id";
const X: &str = "x";
const Y: &str = "y";
const MATCHED: &str = "matched";
const BEST_ID: &str = "best-id";
const BEST_LABEL: &str = "best-label";
const BEST_SIMILARITY: &str = "best-similarity";
const RUNNER_UP_SIMILARITY: &str = "runner-up-similarity";
const LIVENESS_VERDICT: &str = "liveness-verdict";
const LIVENESS_SCORE: &str = "liveness-score";
const LIVENESS_CUE: &str = "liveness-cue";
const TOKEN_VERDICT: &str = "token-verdict";
const TOKEN_ID: &str = "token-id";
const PASSENGER_ID: &str = "passenger-id";
const TOKEN_REASON: &str = "token-reason";

/// One `facegate-frame` message.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameMessage {
    /// The frame's running time; `None` when its timestamp or segment is unknown.
    pub running_time: Option<gst::ClockTime>,
    pub pts: Option<gst::ClockTime>,
    /// Frame size in pixels.
    pub width: u32,
    pub height: u32,
    /// The gallery generation the faces were matched against.
    pub generation: u64,
    /// People in that generation: the threshold in force follows it.
    pub gallery_size: u64,
    /// One per face region that carries an embedding, in buffer order.
    pub faces: Vec<FrameFace>,
    /// The passenger token shown within fgmatch's `token-window` (identification `token` or
    /// `token-or-gallery`); `None` when none was. With a valid one, every face's `best` is the
    /// token's passenger, scored 1:1 against its template.
    pub token: Option<TokenSighting>,
}

/// What fgmatch made of the token last shown: never its template.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSighting {
    pub verdict: TokenVerdict,
    /// 32 hex digits; known once its signature verified.
    pub token_id: Option<String>,
    /// Opaque, from the token; known once its signature verified.
    pub passenger_id: Option<String>,
    /// Why it was refused (one line), for anything but `valid`.
    pub reason: Option<String>,
}

/// A token's verdict; each refusal is one of the gate's deny reasons (`token-invalid`, …).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::Display, strum::EnumString, strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub enum TokenVerdict {
    Valid,
    Invalid,
    Expired,
    Revoked,
}

/// How fgmatch identifies a face (its `identification` property, facegated's
/// `policy.identification`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum Identification {
    /// 1:N against the gallery.
    #[default]
    Gallery,
    /// 1:1 against the template of a signed token the passenger shows; no gallery.
    Token,
    /// A token when one is shown, else the gallery.
    TokenOrGallery,
}

/// One face of a `facegate-frame` message (a `facegate-face` structure).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameFace {
    /// `None` when no fgtrack runs upstream.
    pub track_id: Option<u64>,
    /// x, y, width, height in frame pixels.
    pub bbox: PixelRect,
    /// The gallery's best candidate, even below the threshold; `None` for an empty gallery.
    pub best: Option<Candidate>,
    /// The similarity of the best candidate of another identity than `best`'s; `None` when the
    /// gallery offered no other.
    pub runner_up_similarity: Option<f64>,
    /// Whether `best` reached fgmatch's threshold and margin (the face carries a
    /// `facegate-match` param).
    pub matched: bool,
    /// fglive's verdict on the face; `None` when no fglive judged it.
    pub liveness: Option<Liveness>,
}

/// An enrolled person the gallery offers for a face.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub label: String,
    pub similarity: f64,
}

/// Where in a `facegate-frame` message a field sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A field of the message itself.
    Message(&'static str),
    /// Entry `index` of `faces`, which must be a `facegate-face` structure.
    Face(usize),
    /// A field of face `index`.
    OfFace { index: usize, name: &'static str },
}

impl Field {
    /// The structure field this is read from (a face entry lives in `faces`).
    fn key(self) -> &'static str {
        match self {
            Field::Message(name) | Field::OfFace { name, .. } => name,
            Field::Face(_) => FACES,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Message(name) => f.write_str(name),
            Field::Face(index) => write!(f, "{FACES}[{index}]"),
            Field::OfFace { index, name } => write!(f, "{FACES}[{index}].{name}"),
        }
    }
}

#[derive(Clone, Debug, Error, PartialEq)]
pub enum FrameMessageError {
    /// Another message (a `facegate-match`, anything on the bus): not an error for a reader
    /// that sees every element message, just not this one.
    #[error("a {name} structure is not a {FRAME_MESSAGE} message")]
    NotAFrameMessage { name: String },
    #[error("{FRAME_MESSAGE} message: {field} is missing")]
    Missing { field: Field },
    #[error("{FRAME_MESSAGE} message: {field} is a {found}, not a {expected}")]
    WrongType {
        field: Field,
        expected: &'static str,
        found: &'static str,
    },
}

impl FrameMessage {
    /// The message's structure, as fgmatch posts it.
    pub fn to_structure(&self) -> gst::Structure {
        let faces = self
            .faces
            .iter()
            .map(|face| face.to_structure().to_send_value());
        let mut s = gst::Structure::builder(FRAME_MESSAGE)
            .field(WIDTH, self.width)
            .field(HEIGHT, self.height)
            .field(GENERATION, self.generation)
            .field(GALLERY_SIZE, self.gallery_size)
            .field(FACES, gst::Array::from_values(faces))
            .build();
        if let Some(token) = &self.token {
            s.set(TOKEN_VERDICT, token.verdict.to_string());
            for (name, value) in [
                (TOKEN_ID, &token.token_id),
                (PASSENGER_ID, &token.passenger_id),
                (TOKEN_REASON, &token.reason),
            ] {
                if let Some(value) = value {
                    s.set(name, value.as_str());
                }
            }
        }
        if let Some(pts) = self.pts {
            s.set(PTS, pts.nseconds());
        }
        if let Some(running_time) = self.running_time {
            s.set(RUNNING_TIME, running_time.nseconds());
        }
        s
    }

    /// The element message from `src`.
    pub fn to_message(&self, src: &impl IsA<gst::Object>) -> gst::Message {
        gst::message::Element::builder(self.to_structure())
            .src(src.upcast_ref::<gst::Object>())
            .build()
    }

    /// Reads a message's structure; any other structure is [`FrameMessageError::NotAFrameMessage`],
    /// and a missing or mistyped field is an error naming it.
    pub fn from_structure(s: &gst::StructureRef) -> Result<FrameMessage, FrameMessageError> {
        if s.name() != FRAME_MESSAGE {
            return Err(FrameMessageError::NotAFrameMessage {
                name: s.name().to_string(),
            });
        }
        let faces = required::<gst::Array>(s, Field::Message(FACES))?
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let face = value.get::<&gst::StructureRef>().map_err(|_| {
                    FrameMessageError::WrongType {
                        field: Field::Face(index),
                        expected: gst::Structure::static_type().name(),
                        found: value.type_().name(),
                    }
                })?;
                FrameFace::from_structure(face, index)
            })
            .collect::<Result<_, _>>()?;
        let at = Field::Message;
        let token = match optional::<String>(s, at(TOKEN_VERDICT))? {
            None => None,
            Some(verdict) => Some(TokenSighting {
                verdict: verdict.parse().map_err(|_| FrameMessageError::WrongType {
                    field: at(TOKEN_VERDICT),
                    expected: "token verdict (valid, invalid, expired or revoked)",
                    found: "other string",
                })?,
                token_id: optional(s, at(TOKEN_ID))?,
                passenger_id: optional(s, at(PASSENGER_ID))?,
                reason: optional(s, at(TOKEN_REASON))?,
            }),
        };
        Ok(FrameMessage {
            token,
            running_time: optional::<u64>(s, at(RUNNING_TIME))?.map(gst::ClockTime::from_nseconds),
            pts: optional::<u64>(s, at(PTS))?.map(gst::ClockTime::from_nseconds),
            width: required(s, at(WIDTH))?,
            height: required(s, at(HEIGHT))?,
            generation: required(s, at(GENERATION))?,
            gallery_size: required(s, at(GALLERY_SIZE))?,
            faces,
        })
    }
}

impl FrameFace {
    fn to_structure(&self) -> gst::Structure {
        let (x, y, width, height) = self.bbox;
        let mut s = gst::Structure::builder(FRAME_FACE)
            .field(X, x)
            .field(Y, y)
            .field(WIDTH, width)
            .field(HEIGHT, height)
            .field(MATCHED, self.matched)
            .build();
        if let Some(track_id) = self.track_id {
            s.set(TRACK_ID, track_id);
        }
        if let Some(best) = &self.best {
            s.set(BEST_ID, best.id.as_str());
            s.set(BEST_LABEL, best.label.as_str());
            s.set(BEST_SIMILARITY, best.similarity);
        }
        if let Some(similarity) = self.runner_up_similarity {
            s.set(RUNNER_UP_SIMILARITY, similarity);
        }
        if let Some(liveness) = &self.liveness {
            s.set(LIVENESS_VERDICT, liveness.verdict.to_string());
            s.set(LIVENESS_SCORE, liveness.score);
            s.set(LIVENESS_CUE, liveness.cue.to_string());
        }
        s
    }

    fn from_structure(s: &gst::StructureRef, index: usize) -> Result<FrameFace, FrameMessageError> {
        let at = |name| Field::OfFace { index, name };
        // The candidate's three fields come together or not at all.
        let best = match (
            optional::<String>(s, at(BEST_ID))?,
            optional::<String>(s, at(BEST_LABEL))?,
            optional::<f64>(s, at(BEST_SIMILARITY))?,
        ) {
            (None, None, None) => None,
            (id, label, similarity) => Some(Candidate {
                id: id.ok_or(FrameMessageError::Missing { field: at(BEST_ID) })?,
                label: label.ok_or(FrameMessageError::Missing {
                    field: at(BEST_LABEL),
                })?,
                similarity: similarity.ok_or(FrameMessageError::Missing {
                    field: at(BEST_SIMILARITY),
                })?,
            }),
        };
        // The verdict's three fields come together or not at all, too.
        let liveness = match (
            optional::<String>(s, at(LIVENESS_VERDICT))?,
            optional::<f64>(s, at(LIVENESS_SCORE))?,
            optional::<String>(s, at(LIVENESS_CUE))?,
        ) {
            (None, None, None) => None,
            (verdict, score, cue) => Some(Liveness {
                verdict: verdict
                    .ok_or(FrameMessageError::Missing {
                        field: at(LIVENESS_VERDICT),
                    })?
                    .parse()
                    .map_err(|_| FrameMessageError::WrongType {
                        field: at(LIVENESS_VERDICT),
                        expected: "liveness verdict (live, attack or undecided)",
                        found: "other string",
                    })?,
                score: score.ok_or(FrameMessageError::Missing {
                    field: at(LIVENESS_SCORE),
                })?,
                cue: cue
                    .ok_or(FrameMessageError::Missing {
                        field: at(LIVENESS_CUE),
                    })?
                    .parse()
                    .map_err(|_| FrameMessageError::WrongType {
                        field: at(LIVENESS_CUE),
                        expected: "one of fglive's cues (bezel, moire, glare, ...)",
                        found: "other string",
                    })?,
            }),
        };
        Ok(FrameFace {
            liveness,
            track_id: optional(s, at(TRACK_ID))?,
            bbox: (
                required(s, at(X))?,
                required(s, at(Y))?,
                required(s, at(WIDTH))?,
                required(s, at(HEIGHT))?,
            ),
            best,
            runner_up_similarity: optional(s, at(RUNNER_UP_SIMILARITY))?,
            matched: required(s, at(MATCHED))?,
        })
    }
}

/// The field's value, `None` when absent; a value of another type is an error.
fn optional<'a, T>(s: &'a gst::StructureRef, field: Field) -> Result<Option<T>, FrameMessageError>
where
    T: FromValue<'a> + StaticType,
{
    let Ok(value) = s.value(field.key()) else {
        return Ok(None);
    };
    value
        .get::<T>()
        .map(Some)
        .map_err(|_| FrameMessageError::WrongType {
            field,
            expected: T::static_type().name(),
            found: value.type_().name(),
        })
}

fn required<'a, T>(s: &'a gst::StructureRef, field: Field) -> Result<T, FrameMessageError>
where
    T: FromValue<'a> + StaticType,
{
    optional(s, field)?.ok_or(FrameMessageError::Missing { field })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::glib;

    fn message() -> FrameMessage {
        FrameMessage {
            running_time: Some(gst::ClockTime::from_seconds(2)),
            pts: Some(gst::ClockTime::from_mseconds(2040)),
            width: 640,
            height: 480,
            generation: 3,
            gallery_size: 40,
            faces: vec![
                FrameFace {
                    track_id: Some(7),
                    bbox: (10, 20, 100, 120),
                    best: Some(Candidate {
                        id: "p-1".into(),
                        label: "Ada".into(),
                        similarity: 0.71,
                    }),
                    runner_up_similarity: Some(0.33),
                    matched: true,
                    liveness: Some(Liveness {
                        verdict: crate::LivenessVerdict::Live,
                        score: 0.9,
                        cue: crate::LivenessCue::None,
                    }),
                },
                FrameFace {
                    track_id: None,
                    bbox: (300, 20, 90, 110),
                    best: None,
                    runner_up_similarity: None,
                    matched: false,
                    liveness: None,
                },
            ],
            token: None,
        }
    }

    #[test]
    fn round_trips_through_its_structure() {
        gst::init().unwrap();
        let original = message();
        let s = original.to_structure();
        assert_eq!(s.name(), FRAME_MESSAGE);
        assert_eq!(FrameMessage::from_structure(&s), Ok(original));

        for token in [
            TokenSighting {
                verdict: TokenVerdict::Valid,
                token_id: Some("0123456789abcdef0123456789abcdef".into()),
                passenger_id: Some("P-42".into()),
                reason: None,
            },
            TokenSighting {
                verdict: TokenVerdict::Invalid,
                token_id: None,
                passenger_id: None,
                reason: Some("token signature does not verify".into()),
            },
        ] {
            let shown = FrameMessage {
                token: Some(token),
                ..message()
            };
            assert_eq!(
                FrameMessage::from_structure(&shown.to_structure()),
                Ok(shown)
            );
        }

        let untimed = FrameMessage {
            running_time: None,
            pts: None,
            faces: Vec::new(),
            ..message()
        };
        let s = untimed.to_structure();
        assert!(!s.has_field(PTS) && !s.has_field(RUNNING_TIME), "{s}");
        assert_eq!(FrameMessage::from_structure(&s), Ok(untimed));
    }

    #[test]
    fn keeps_the_wire_names() {
        gst::init().unwrap();
        let s = message().to_structure();
        assert_eq!(s.get::<u64>("running-time").unwrap(), 2_000_000_000);
        assert_eq!(s.get::<u64>("pts").unwrap(), 2_040_000_000);
        assert_eq!(s.get::<u32>("width").unwrap(), 640);
        assert_eq!(s.get::<u64>("generation").unwrap(), 3);
        assert_eq!(s.get::<u64>("gallery-size").unwrap(), 40);
        let faces = s.get::<gst::Array>("faces").unwrap();
        let face = faces[0].get::<gst::Structure>().unwrap();
        assert_eq!(face.name(), "facegate-face");
        assert_eq!(face.get::<u64>("track-id").unwrap(), 7);
        assert_eq!(face.get::<u32>("height").unwrap(), 120);
        assert!(face.get::<bool>("matched").unwrap());
        assert_eq!(face.get::<&str>("best-label").unwrap(), "Ada");
        assert_eq!(face.get::<f64>("best-similarity").unwrap(), 0.71);
        assert_eq!(face.get::<f64>("runner-up-similarity").unwrap(), 0.33);
        let stranger = faces[1].get::<gst::Structure>().unwrap();
        assert!(
            !stranger.has_field("track-id")
                && !stranger.has_field("best-id")
                && !stranger.has_field("runner-up-similarity")
        );
    }

    #[test]
    fn another_structure_is_not_a_frame_message() {
        gst::init().unwrap();
        let other = gst::Structure::new_empty(crate::MATCH_MESSAGE);
        assert_eq!(
            FrameMessage::from_structure(&other),
            Err(FrameMessageError::NotAFrameMessage {
                name: crate::MATCH_MESSAGE.into()
            })
        );
    }

    #[test]
    fn each_missing_message_field_is_named() {
        gst::init().unwrap();
        for name in [WIDTH, HEIGHT, GENERATION, GALLERY_SIZE, FACES] {
            let mut s = message().to_structure();
            s.remove_field(name);
            let err = FrameMessage::from_structure(&s).unwrap_err();
            assert_eq!(
                err,
                FrameMessageError::Missing {
                    field: Field::Message(name)
                }
            );
            assert_eq!(
                err.to_string(),
                format!("facegate-frame message: {name} is missing")
            );
        }
    }

    /// The message with face 0's structure changed by `edit`.
    fn with_first_face(edit: impl FnOnce(&mut gst::Structure)) -> gst::Structure {
        let mut s = message().to_structure();
        let faces = s.get::<gst::Array>(FACES).unwrap();
        let mut values: Vec<glib::SendValue> = faces.iter().cloned().collect();
        let mut face = values[0].get::<gst::Structure>().unwrap();
        edit(&mut face);
        values[0] = face.to_send_value();
        s.set(FACES, gst::Array::from_values(values));
        s
    }

    #[test]
    fn each_missing_face_field_is_named() {
        gst::init().unwrap();
        for name in [
            X,
            Y,
            WIDTH,
            HEIGHT,
            MATCHED,
            BEST_ID,
            BEST_LABEL,
            BEST_SIMILARITY,
        ] {
            let s = with_first_face(|face| face.remove_field(name));
            let err = FrameMessage::from_structure(&s).unwrap_err();
            assert_eq!(
                err,
                FrameMessageError::Missing {
                    field: Field::OfFace { index: 0, name }
                }
            );
            assert_eq!(
                err.to_string(),
                format!("facegate-frame message: faces[0].{name} is missing")
            );
        }
    }

    #[test]
    fn a_mistyped_field_is_named_with_both_types() {
        gst::init().unwrap();
        let mut s = message().to_structure();
        s.set(WIDTH, "wide");
        assert_eq!(
            FrameMessage::from_structure(&s).unwrap_err().to_string(),
            "facegate-frame message: width is a gchararray, not a guint"
        );

        let s = with_first_face(|face| face.set(TRACK_ID, -7i32));
        assert_eq!(
            FrameMessage::from_structure(&s).unwrap_err().to_string(),
            "facegate-frame message: faces[0].track-id is a gint, not a guint64"
        );

        let mut s = message().to_structure();
        s.set(FACES, gst::Array::new([1u32]));
        assert_eq!(
            FrameMessage::from_structure(&s).unwrap_err().to_string(),
            "facegate-frame message: faces[0] is a guint, not a GstStructure"
        );
    }
}
