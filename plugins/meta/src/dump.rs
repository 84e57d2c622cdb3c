// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fgmetadump line (crate docs, "The fgmetadump line"): one JSON object per frame.
//!
//! `{"pts_ns": 123 | null, "width": 640, "height": 480, "faces": [{"bbox": [x, y, w, h], "score": 0.93,
//! "landmarks": [[x, y], ...5], "track_id": 7 | null, "embedding": [...] (only when asked for),
//! "match": {"id": "p-001", "label": "Ada", "similarity": 0.71} | null,
//! "liveness": {"score": 0.9, "verdict": "live", "cue": "none"} | null}]}`

use serde::{Deserialize, Serialize};

use crate::{FaceRef, LivenessCue, LivenessVerdict, MetaError, faces};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameLine {
    pub pts_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceLine>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceLine {
    pub bbox: [u32; 4],
    /// Detection score; null for a face region some other element added.
    pub score: Option<f64>,
    pub landmarks: Vec<[f32; 2]>,
    pub track_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    #[serde(rename = "match")]
    pub matched: Option<MatchLine>,
    /// fglive's verdict; null without fglive upstream.
    #[serde(default)]
    pub liveness: Option<LivenessLine>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LivenessLine {
    pub score: f64,
    pub verdict: LivenessVerdict,
    pub cue: LivenessCue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchLine {
    pub id: String,
    pub label: String,
    pub similarity: f64,
}

impl FrameLine {
    /// The line for one buffer of a `width` x `height` stream.
    pub fn from_buffer(
        buffer: &gst::BufferRef,
        width: u32,
        height: u32,
        with_embeddings: bool,
    ) -> Result<FrameLine, MetaError> {
        let faces = faces(buffer)
            .map(|face| FaceLine::from_face(&face, with_embeddings))
            .collect::<Result<_, _>>()?;
        Ok(FrameLine {
            pts_ns: buffer.pts().map(gst::ClockTime::nseconds),
            width,
            height,
            faces,
        })
    }
}

impl FaceLine {
    fn from_face(face: &FaceRef<'_>, with_embedding: bool) -> Result<FaceLine, MetaError> {
        let (x, y, w, h) = face.bbox();
        let detection = face.detection()?;
        let embedding = if with_embedding {
            let mut data = Vec::new();
            face.embedding_into(&mut data)?.map(|_| data)
        } else {
            None
        };
        Ok(FaceLine {
            bbox: [x, y, w, h],
            score: detection.as_ref().map(|d| d.score),
            landmarks: detection.map(|d| d.landmarks.to_vec()).unwrap_or_default(),
            track_id: face.track()?.map(|t| t.id),
            embedding,
            matched: face.matched()?.map(|m| MatchLine {
                id: m.id,
                label: m.label,
                similarity: m.similarity,
            }),
            liveness: face.liveness()?.map(|l| LivenessLine {
                score: l.score,
                verdict: l.verdict,
                cue: l.cue,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_documented_shape() {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        {
            let buf = buffer.get_mut().unwrap();
            buf.set_pts(gst::ClockTime::from_mseconds(40));
            crate::add_face(buf, (1, 2, 3, 4), 0.5, &[[1.0, 2.0]; 5], "m");
            crate::for_each_face_mut(buf, |f| {
                f.set_track(crate::Track { id: 7, age: 0 });
                f.set_embedding("e", &[1.0, 0.0]);
            });
        }
        let line = FrameLine::from_buffer(&buffer, 64, 48, false).unwrap();
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pts_ns": 40_000_000u64, "width": 64, "height": 48, "faces": [
                {"bbox": [1, 2, 3, 4], "score": 0.5, "landmarks": [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], "track_id": 7, "match": null, "liveness": null}
            ]})
        );
        let with = FrameLine::from_buffer(&buffer, 64, 48, true).unwrap();
        assert_eq!(with.faces[0].embedding.as_deref(), Some(&[1.0, 0.0][..]));
        let back: FrameLine = serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
        assert_eq!(back, line);
    }
}
