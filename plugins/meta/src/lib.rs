// SPDX-License-Identifier: MIT OR Apache-2.0
//! FaceGate's face metadata contract: what the elements attach to buffers and post on the bus,
//! with typed read and write, so that the elements, the CLI and the gate service read and write
//! exactly the same fields. The names below are a public interface (operators' pipelines and
//! third-party ROI-aware elements see them): extend them, do not rename them.
//!
//! # Faces on a buffer
//!
//! Each face is one `GstVideoRegionOfInterestMeta` of roi type [`face`](ROI_TYPE), its rectangle
//! in whole frame pixels clipped to the frame ([`pixel_rect`]). fgdetect adds one per face
//! ([`add_face`]); each element downstream adds a param structure to it as it learns more
//! ([`FaceMut`]), and any ROI-aware element sees the faces. GStreamer 1.22 has no analytics meta;
//! Intel's DL Streamer carries its results the same way.
//!
//! | param | written by | fields |
//! |---|---|---|
//! | [`facegate-detection`](DETECTION) | fgdetect | `score` (f64, 0..1), `landmarks` (`GstValueArray` of 10 f32: x, y of the right eye, left eye, nose tip, right and left mouth corners, in image order), `model` (string: the detector's identity, `file-stem@sha256:…`) |
//! | [`facegate-track`](TRACK) | fgtrack | `id` (u64, from 1, stable while the face is tracked), `age` (u32: frames since the track began) |
//! | [`facegate-embedding`](EMBEDDING) | fgembed | `model` (string: the embedder's identity), `dim` (u32), `data` (`GBytes`: `dim` little-endian f32, L2-normalised) |
//! | [`facegate-match`](MATCH) | fgmatch | `id`, `label` (strings: the enrolled person), `similarity` (f64 cosine, at or above fgmatch's `threshold`), `generation` (u64: the gallery generation searched) |
//! | [`facegate-liveness`](LIVENESS) | fglive | `score` (f64, 0..1, 1 = surely live), `verdict` (string: `live`, `attack` or `undecided`, [`LivenessVerdict`]), `cue` (string: the cue that decided, or the strongest evidence: `bezel`, `moire`, `glare`, `paper-margin`, `paper-texture`, `planar-motion`, `depth-motion`, `model` or `none`) |
//!
//! A face without a param has not been through that element (or, for `facegate-match`, matched
//! nobody). Readers ([`faces`], [`FaceRef`], [`read_faces`]) return a [`MetaError`] naming the
//! param and field for a malformed param instead of guessing.
//!
//! # Bus messages (element messages from fgmatch)
//!
//! [`facegate-match`](MATCH_MESSAGE), one per matched face and frame
//! ([`match_message_structure`]): the `facegate-match` param's `id`, `label`, `similarity` and
//! `generation`; the face's `x`, `y`, `width`, `height` (u32); `track-id` (u64, absent without
//! fgtrack); `pts` and `running-time` (u64 ns, absent when unknown); and with `top-k` above 1,
//! `candidate-ids` (`GstValueArray` of strings) and `candidate-similarities` (of f64), best first.
//!
//! [`facegate-frame`](FRAME_MESSAGE), one per frame, only with fgmatch's `post-frames=true` (the
//! gate service sets it), so the service sees "nobody", "one face" and "several faces" alike.
//! Written and read only through [`FrameMessage`]:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `pts`, `running-time` | u64 ns, absent when unknown | the frame's timestamps |
//! | `width`, `height` | u32 | frame size |
//! | `generation` | u64 | the gallery generation the faces were matched against |
//! | `gallery-size` | u64 | the people in that generation (the threshold in force follows it) |
//! | `faces` | `GstValueArray` of [`facegate-face`](FRAME_FACE) structures | one per face region with an embedding, in buffer order |
//! | `token-verdict` | string, absent when no token was shown within fgmatch's `token-window` | `valid`, `invalid`, `expired` or `revoked` ([`TokenVerdict`]) |
//! | `token-id`, `passenger-id` | strings, absent until a token's signature verified | the token's ids (never its template) |
//! | `token-reason` | string, absent for a valid token | why it was refused, one line |
//!
//! Each `facegate-face`: `x`, `y`, `width`, `height` (u32), `matched` (bool: the best candidate
//! reached the threshold and beat every other identity by the margin), `track-id` (u64, absent
//! when untracked), the gallery's best candidate even below the threshold, absent for an empty
//! gallery: `best-id`, `best-label` (strings) and `best-similarity` (f64), all three or none; and
//! `runner-up-similarity` (f64), the best score of another identity, absent when there is none;
//! with fglive upstream, its `facegate-liveness` param as `liveness-verdict` (string),
//! `liveness-score` (f64) and `liveness-cue` (string), all three or none.
//!
//! [`facegate-revocations`](REVOCATIONS_MESSAGE), when fgmatch reloads the token revocation
//! list or refuses a changed one: `ok` (bool), `detail` (string, one line).
//!
//! With a valid token shown, each face's best candidate is the token's passenger (id and label
//! the passenger id), scored 1:1 against the token's template, and there is no runner-up.
//!
//! # QR codes on a buffer
//!
//! fgqr adds one `GstVideoRegionOfInterestMeta` of roi type [`qr-code`](CODE_ROI_TYPE) per
//! decoded code, with a [`facegate-code`](CODE) param: `text` (string). See [`code`].
//!
//! # The fgmetadump line
//!
//! fgmetadump writes one JSON object per frame ([`dump::FrameLine`]):
//!
//! ```text
//! {"pts_ns": 123 | null, "width": 640, "height": 480, "faces": [{"bbox": [x, y, w, h],
//!  "score": 0.93 | null, "landmarks": [[x, y], ...5], "track_id": 7 | null,
//!  "embedding": [...] (only with embeddings=true),
//!  "match": {"id": "p-001", "label": "Ada", "similarity": 0.71} | null,
//!  "liveness": {"score": 0.9, "verdict": "live" | "attack" | "undecided", "cue": "none"} | null}]}
//! ```
//!
//! `score` is null and `landmarks` empty for a face region some other element added;
//! `liveness` is null for a face fglive did not judge (no fglive upstream).

pub mod code;
pub mod dump;
pub mod frame_message;

use gst::glib;
use gst_video::VideoRegionOfInterestMeta;
use thiserror::Error;

pub use code::{CODE, CODE_ROI_TYPE, add_code, codes, remove_codes};
pub use frame_message::{
    Candidate, FrameFace, FrameMessage, FrameMessageError, Identification, TokenSighting,
    TokenVerdict,
};

/// The roi type of a face region.
pub const ROI_TYPE: &str = "face";
pub const DETECTION: &str = "facegate-detection";
pub const TRACK: &str = "facegate-track";
pub const EMBEDDING: &str = "facegate-embedding";
pub const MATCH: &str = "facegate-match";
pub const LIVENESS: &str = "facegate-liveness";
/// Name of the element message fgmatch posts for every matched face.
pub const MATCH_MESSAGE: &str = "facegate-match";
/// Name of the element message fgmatch posts once per frame with `post-frames=true`, listing
/// every embedded face ([`FrameMessage`]): what the gate service decides from.
pub const FRAME_MESSAGE: &str = "facegate-frame";
/// Structure name of one face in a `facegate-frame` message.
pub const FRAME_FACE: &str = "facegate-face";
/// Name of the element message fgmatch posts when it reloads the token revocation list, or
/// cannot: `ok` (bool: reloaded; false: refused, the last good list stays in force), `detail`
/// (string: one line, what the list holds now or why it was refused).
pub const REVOCATIONS_MESSAGE: &str = "facegate-revocations";

/// Landmarks per face: right eye, left eye, nose tip, right and left mouth corners (image order).
pub const LANDMARKS: usize = 5;

#[derive(Debug, Error, PartialEq)]
pub enum MetaError {
    #[error("{structure}.{field}: {reason}")]
    Field {
        structure: &'static str,
        field: &'static str,
        reason: String,
    },
}

fn field_error(structure: &'static str, field: &'static str, reason: impl ToString) -> MetaError {
    MetaError::Field {
        structure,
        field,
        reason: reason.to_string(),
    }
}

/// A face box in whole frame pixels: x, y, width, height.
pub type PixelRect = (u32, u32, u32, u32);

/// `facegate-detection`.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub score: f64,
    pub landmarks: [[f32; 2]; LANDMARKS],
    pub model: String,
}

/// `facegate-track`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Track {
    pub id: u64,
    pub age: u32,
}

/// `facegate-embedding`: a unit-length vector and the model that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    pub model: String,
    pub data: Vec<f32>,
}

/// `facegate-match` borrowed from the buffer, for per-frame readers that must not allocate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchRef<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub similarity: f64,
    pub generation: u64,
}

impl MatchRef<'_> {
    pub fn to_owned(&self) -> Match {
        Match {
            id: self.id.into(),
            label: self.label.into(),
            similarity: self.similarity,
            generation: self.generation,
        }
    }
}

/// `facegate-match`: who the gallery says this is.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub id: String,
    pub label: String,
    pub similarity: f64,
    pub generation: u64,
}

/// fglive's verdict on a tracked face (is it a live person or a presentation attack?) and the
/// cue that decided it, named in the param as `facegate_vision::liveness` names them.
pub use facegate_vision::liveness::{Cue as LivenessCue, Verdict as LivenessVerdict};

/// `facegate-liveness`.
#[derive(Clone, Debug, PartialEq)]
pub struct Liveness {
    pub verdict: LivenessVerdict,
    /// 0..1, 1 = surely live.
    pub score: f64,
    /// The cue that decided, or the strongest evidence.
    pub cue: LivenessCue,
}

/// Everything known about one face on a buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceRecord {
    /// The roi meta's id on this buffer, to address the face again.
    pub roi_id: i32,
    pub bbox: PixelRect,
    pub detection: Option<Detection>,
    pub track: Option<Track>,
    pub embedding: Option<Embedding>,
    pub matched: Option<Match>,
    pub liveness: Option<Liveness>,
}

/// Converts a box in float pixels to the whole-pixel region the meta carries, clipped to the frame.
pub fn pixel_rect(
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    frame_width: u32,
    frame_height: u32,
) -> PixelRect {
    let (fw, fh) = (frame_width as f32, frame_height as f32);
    let x0 = x.round().clamp(0.0, fw);
    let y0 = y.round().clamp(0.0, fh);
    let x1 = (x + w).round().clamp(0.0, fw);
    let y1 = (y + h).round().clamp(0.0, fh);
    (x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32)
}

/// Adds a detected face to the buffer; returns its roi id.
pub fn add_face(
    buffer: &mut gst::BufferRef,
    bbox: PixelRect,
    score: f64,
    landmarks: &[[f32; 2]; LANDMARKS],
    model: &str,
) -> i32 {
    let mut meta = VideoRegionOfInterestMeta::add(buffer, ROI_TYPE, bbox);
    meta.add_param(
        gst::Structure::builder(DETECTION)
            .field("score", score)
            .field(
                "landmarks",
                gst::Array::new(landmarks.iter().flatten().copied()),
            )
            .field("model", model)
            .build(),
    );
    meta.id()
}

fn is_face(meta: &VideoRegionOfInterestMeta) -> bool {
    meta.roi_type() == ROI_TYPE
}

/// The face regions on a buffer, with typed access to their params.
pub fn faces(buffer: &gst::BufferRef) -> impl Iterator<Item = FaceRef<'_>> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|meta| is_face(meta))
        .map(|meta| FaceRef {
            meta: FaceMeta::Shared(meta),
        })
}

/// Calls `f` with a writable view of every face region on the buffer, in order.
pub fn for_each_face_mut(buffer: &mut gst::BufferRef, mut f: impl FnMut(&mut FaceMut<'_>)) {
    for mut meta in buffer.iter_meta_mut::<VideoRegionOfInterestMeta>() {
        if is_face(&meta) {
            f(&mut FaceMut { meta: &mut meta });
        }
    }
}

/// Reads every face on the buffer into records (allocates: for dumps, tests and the CLI, not the hot path).
pub fn read_faces(buffer: &gst::BufferRef) -> Result<Vec<FaceRecord>, MetaError> {
    faces(buffer).map(|face| face.record()).collect()
}

enum FaceMeta<'a> {
    Shared(gst::MetaRef<'a, VideoRegionOfInterestMeta>),
    Borrowed(&'a VideoRegionOfInterestMeta),
}

/// A face region, read-only.
pub struct FaceRef<'a> {
    meta: FaceMeta<'a>,
}

impl FaceRef<'_> {
    fn meta(&self) -> &VideoRegionOfInterestMeta {
        match &self.meta {
            FaceMeta::Shared(meta) => meta,
            FaceMeta::Borrowed(meta) => meta,
        }
    }

    pub fn roi_id(&self) -> i32 {
        self.meta().id()
    }

    pub fn bbox(&self) -> PixelRect {
        self.meta().rect()
    }

    pub fn detection(&self) -> Result<Option<Detection>, MetaError> {
        read_param(self.meta(), DETECTION, read_detection)
    }

    /// Only the landmarks: what alignment needs, without allocating.
    pub fn landmarks(&self) -> Result<Option<[[f32; 2]; LANDMARKS]>, MetaError> {
        read_param(self.meta(), DETECTION, read_landmarks)
    }

    pub fn track(&self) -> Result<Option<Track>, MetaError> {
        read_param(self.meta(), TRACK, |s| {
            Ok(Track {
                id: s
                    .get::<u64>("id")
                    .map_err(|e| field_error(TRACK, "id", e))?,
                age: s
                    .get::<u32>("age")
                    .map_err(|e| field_error(TRACK, "age", e))?,
            })
        })
    }

    /// The embedding's model and raw little-endian bytes, without copying.
    pub fn embedding_bytes(&self) -> Result<Option<(&str, &[u8])>, MetaError> {
        let Some(s) = self.meta().param(EMBEDDING) else {
            return Ok(None);
        };
        let model = s
            .get::<&str>("model")
            .map_err(|e| field_error(EMBEDDING, "model", e))?;
        let dim = s
            .get::<u32>("dim")
            .map_err(|e| field_error(EMBEDDING, "dim", e))?;
        let bytes = s
            .get::<&glib::Bytes>("data")
            .map_err(|e| field_error(EMBEDDING, "data", e))?;
        let data: &[u8] = bytes.as_ref();
        if data.len() != dim as usize * 4 {
            let held = if data.len().is_multiple_of(4) {
                format!("{} values", data.len() / 4)
            } else {
                format!("{} bytes, not whole f32 values,", data.len())
            };
            return Err(field_error(
                EMBEDDING,
                "data",
                format!("{held} for dim {dim}"),
            ));
        }
        Ok(Some((model, data)))
    }

    /// Decodes the embedding into `out` (cleared first); returns its model.
    pub fn embedding_into(&self, out: &mut Vec<f32>) -> Result<Option<&str>, MetaError> {
        let Some((model, bytes)) = self.embedding_bytes()? else {
            return Ok(None);
        };
        out.clear();
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        Ok(Some(model))
    }

    /// The detection score, without reading the rest of the detection.
    pub fn score(&self) -> Result<Option<f64>, MetaError> {
        read_param(self.meta(), DETECTION, |s| {
            s.get::<f64>("score")
                .map_err(|e| field_error(DETECTION, "score", e))
        })
    }

    pub fn match_ref(&self) -> Result<Option<MatchRef<'_>>, MetaError> {
        let Some(s) = self.meta().param(MATCH) else {
            return Ok(None);
        };
        Ok(Some(MatchRef {
            id: s
                .get::<&str>("id")
                .map_err(|e| field_error(MATCH, "id", e))?,
            label: s
                .get::<&str>("label")
                .map_err(|e| field_error(MATCH, "label", e))?,
            similarity: s
                .get::<f64>("similarity")
                .map_err(|e| field_error(MATCH, "similarity", e))?,
            generation: s
                .get::<u64>("generation")
                .map_err(|e| field_error(MATCH, "generation", e))?,
        }))
    }

    pub fn matched(&self) -> Result<Option<Match>, MetaError> {
        Ok(self.match_ref()?.map(|m| m.to_owned()))
    }

    pub fn liveness(&self) -> Result<Option<Liveness>, MetaError> {
        read_param(self.meta(), LIVENESS, |s| {
            let verdict = s
                .get::<&str>("verdict")
                .map_err(|e| field_error(LIVENESS, "verdict", e))?;
            Ok(Liveness {
                verdict: verdict.parse().map_err(|_| {
                    field_error(
                        LIVENESS,
                        "verdict",
                        format!("{verdict:?} is not live, attack or undecided"),
                    )
                })?,
                score: s
                    .get::<f64>("score")
                    .map_err(|e| field_error(LIVENESS, "score", e))?,
                cue: {
                    let cue = s
                        .get::<&str>("cue")
                        .map_err(|e| field_error(LIVENESS, "cue", e))?;
                    cue.parse().map_err(|_| {
                        field_error(
                            LIVENESS,
                            "cue",
                            format!("{cue:?} is not one of fglive's cues"),
                        )
                    })?
                },
            })
        })
    }

    pub fn record(&self) -> Result<FaceRecord, MetaError> {
        let mut data = Vec::new();
        let embedding = self.embedding_into(&mut data)?.map(|model| Embedding {
            model: model.to_owned(),
            data,
        });
        Ok(FaceRecord {
            roi_id: self.roi_id(),
            bbox: self.bbox(),
            detection: self.detection()?,
            track: self.track()?,
            embedding,
            matched: self.matched()?,
            liveness: self.liveness()?,
        })
    }
}

fn read_param<T>(
    meta: &VideoRegionOfInterestMeta,
    name: &str,
    read: impl FnOnce(&gst::StructureRef) -> Result<T, MetaError>,
) -> Result<Option<T>, MetaError> {
    meta.param(name).map(read).transpose()
}

fn read_landmarks(s: &gst::StructureRef) -> Result<[[f32; 2]; LANDMARKS], MetaError> {
    let values = s
        .get::<gst::ArrayRef>("landmarks")
        .map_err(|e| field_error(DETECTION, "landmarks", e))?;
    if values.len() != 2 * LANDMARKS {
        return Err(field_error(
            DETECTION,
            "landmarks",
            format!("{} values, expected 10", values.len()),
        ));
    }
    let mut landmarks = [[0.0; 2]; LANDMARKS];
    for (i, value) in values.iter().enumerate() {
        landmarks[i / 2][i % 2] = value
            .get::<f32>()
            .map_err(|e| field_error(DETECTION, "landmarks", e))?;
    }
    Ok(landmarks)
}

fn read_detection(s: &gst::StructureRef) -> Result<Detection, MetaError> {
    Ok(Detection {
        score: s
            .get::<f64>("score")
            .map_err(|e| field_error(DETECTION, "score", e))?,
        landmarks: read_landmarks(s)?,
        model: s
            .get::<String>("model")
            .map_err(|e| field_error(DETECTION, "model", e))?,
    })
}

/// A face region that elements downstream of the detector add params to.
pub struct FaceMut<'m> {
    meta: &'m mut VideoRegionOfInterestMeta,
}

impl FaceMut<'_> {
    pub fn as_ref(&self) -> FaceRef<'_> {
        FaceRef {
            meta: FaceMeta::Borrowed(self.meta),
        }
    }

    pub fn set_track(&mut self, track: Track) {
        self.meta.add_param(
            gst::Structure::builder(TRACK)
                .field("id", track.id)
                .field("age", track.age)
                .build(),
        );
    }

    pub fn set_embedding(&mut self, model: &str, embedding: &[f32]) {
        let bytes: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.meta.add_param(
            gst::Structure::builder(EMBEDDING)
                .field("model", model)
                .field("dim", embedding.len() as u32)
                .field("data", glib::Bytes::from_owned(bytes))
                .build(),
        );
    }

    pub fn set_match(&mut self, matched: &Match) {
        self.meta.add_param(match_structure(MATCH, matched));
    }

    pub fn set_liveness(&mut self, liveness: &Liveness) {
        self.meta.add_param(
            gst::Structure::builder(LIVENESS)
                .field("score", liveness.score)
                .field("verdict", liveness.verdict.to_string())
                .field("cue", liveness.cue.to_string())
                .build(),
        );
    }
}

fn match_structure(name: &str, matched: &Match) -> gst::Structure {
    gst::Structure::builder(name)
        .field("id", matched.id.as_str())
        .field("label", matched.label.as_str())
        .field("similarity", matched.similarity)
        .field("generation", matched.generation)
        .build()
}

/// The `facegate-match` element message for one matched face: the match fields plus where and when.
pub fn match_message_structure(
    matched: &Match,
    bbox: PixelRect,
    track: Option<Track>,
    pts: Option<gst::ClockTime>,
    running_time: Option<gst::ClockTime>,
) -> gst::Structure {
    let mut s = match_structure(MATCH_MESSAGE, matched);
    s.set("x", bbox.0);
    s.set("y", bbox.1);
    s.set("width", bbox.2);
    s.set("height", bbox.3);
    if let Some(track) = track {
        s.set("track-id", track.id);
    }
    if let Some(pts) = pts {
        s.set("pts", pts.nseconds());
    }
    if let Some(running_time) = running_time {
        s.set("running-time", running_time.nseconds());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detection() -> Detection {
        Detection {
            score: 0.93,
            landmarks: [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]],
            model: "yunet@sha256:00".into(),
        }
    }

    #[test]
    fn writes_and_reads_back_every_param() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::with_size(16).unwrap();
        let buf = buffer.get_mut().unwrap();
        let d = detection();
        add_face(buf, (10, 20, 30, 40), d.score, &d.landmarks, &d.model);
        add_face(buf, (100, 20, 30, 40), d.score, &d.landmarks, &d.model);
        // Another kind of ROI is left alone.
        VideoRegionOfInterestMeta::add(buf, "car", (0, 0, 1, 1));
        let mut next_id = 7;
        for_each_face_mut(buf, |face| {
            face.set_track(Track {
                id: next_id,
                age: 3,
            });
            face.set_embedding("sface@sha256:11", &[0.6, 0.8]);
            next_id += 1;
        });
        for_each_face_mut(buf, |face| {
            if face.as_ref().track().unwrap().unwrap().id == 7 {
                face.set_match(&Match {
                    id: "p-001".into(),
                    label: "Ada".into(),
                    similarity: 0.71,
                    generation: 4,
                });
            }
        });
        let records = read_faces(&buffer).unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first.bbox, (10, 20, 30, 40));
        assert_eq!(first.detection.as_ref().unwrap(), &detection());
        assert_eq!(first.track, Some(Track { id: 7, age: 3 }));
        assert_eq!(first.embedding.as_ref().unwrap().data, vec![0.6, 0.8]);
        assert_eq!(first.matched.as_ref().unwrap().label, "Ada");
        assert_eq!(records[1].matched, None);
        assert_eq!(records[1].track.unwrap().id, 8);
        assert_eq!(first.liveness, None);
    }

    #[test]
    fn liveness_reads_back_and_a_verdict_of_another_name_is_an_error() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        let d = detection();
        add_face(buf, (10, 20, 30, 40), d.score, &d.landmarks, &d.model);
        let attack = Liveness {
            verdict: LivenessVerdict::Attack,
            score: 0.1,
            cue: LivenessCue::Bezel,
        };
        for_each_face_mut(buf, |face| face.set_liveness(&attack));
        assert_eq!(read_faces(&buffer).unwrap()[0].liveness, Some(attack));
        let mut meta =
            VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), ROI_TYPE, (0, 0, 4, 4));
        meta.add_param(
            gst::Structure::builder(LIVENESS)
                .field("score", 0.5)
                .field("verdict", "maybe")
                .field("cue", "none")
                .build(),
        );
        let err = faces(&buffer).nth(1).unwrap().liveness().unwrap_err();
        assert!(
            err.to_string().starts_with("facegate-liveness.verdict"),
            "{err}"
        );
        let mut meta =
            VideoRegionOfInterestMeta::add(buffer.get_mut().unwrap(), ROI_TYPE, (0, 0, 4, 4));
        meta.add_param(
            gst::Structure::builder(LIVENESS)
                .field("score", 0.5)
                .field("verdict", "attack")
                .field("cue", "hunch")
                .build(),
        );
        let err = faces(&buffer).nth(2).unwrap().liveness().unwrap_err();
        assert!(
            err.to_string().starts_with("facegate-liveness.cue")
                && err.to_string().contains("hunch"),
            "{err}"
        );
    }

    #[test]
    fn malformed_params_are_errors_not_panics() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        let mut meta = VideoRegionOfInterestMeta::add(buf, ROI_TYPE, (0, 0, 4, 4));
        meta.add_param(
            gst::Structure::builder(DETECTION)
                .field("score", "high")
                .build(),
        );
        let face = faces(&buffer).next().unwrap();
        let err = face.detection().unwrap_err();
        assert!(
            err.to_string().starts_with("facegate-detection.score"),
            "{err}"
        );
    }

    #[test]
    fn an_embedding_whose_dim_disagrees_with_its_data_is_an_error() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        let mut meta = VideoRegionOfInterestMeta::add(buf, ROI_TYPE, (0, 0, 4, 4));
        meta.add_param(
            gst::Structure::builder(EMBEDDING)
                .field("model", "m")
                .field("dim", 128u32)
                .field("data", glib::Bytes::from_owned(vec![0u8; 64 * 4]))
                .build(),
        );
        let face = faces(&buffer).next().unwrap();
        let err = face.embedding_into(&mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "facegate-embedding.data: 64 values for dim 128"
        );
    }

    #[test]
    fn pixel_rect_rounds_and_clips() {
        assert_eq!(
            pixel_rect(-3.2, 10.4, 20.0, 500.0, 100, 100),
            (0, 10, 17, 90)
        );
        assert_eq!(
            pixel_rect(200.0, 0.0, 10.0, 10.0, 100, 100),
            (100, 0, 0, 10)
        );
    }

    #[test]
    fn match_message_carries_position_and_track() {
        gst::init().unwrap();
        let m = Match {
            id: "p-1".into(),
            label: "L".into(),
            similarity: 0.5,
            generation: 2,
        };
        let s = match_message_structure(
            &m,
            (1, 2, 3, 4),
            Some(Track { id: 9, age: 1 }),
            Some(gst::ClockTime::SECOND),
            None,
        );
        assert_eq!(s.name(), MATCH_MESSAGE);
        assert_eq!(s.get::<u64>("track-id").unwrap(), 9);
        assert_eq!(s.get::<u64>("pts").unwrap(), 1_000_000_000);
        assert_eq!(s.get::<u32>("height").unwrap(), 4);
    }
}
