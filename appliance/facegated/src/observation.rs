//! From fgmatch's `facegate-frame` bus message to the policy's view of a frame.

use std::time::Duration;

use crate::policy::{Candidate, FaceObservation, FrameObservation};

/// The observation a `facegate-frame` message carries; `None` for any other message. Faces
/// without a track id are dropped: the policy decides per track.
pub fn from_message(structure: &gst::StructureRef) -> Option<FrameObservation> {
    if structure.name() != facegate_meta::FRAME_MESSAGE {
        return None;
    }
    let faces = structure
        .get::<gst::ArrayRef>("faces")
        .ok()?
        .iter()
        .filter_map(|value| value.get::<gst::Structure>().ok())
        .filter_map(|face| {
            let track = face.get::<u64>("track-id").ok()?;
            let pixels = |field: &str| face.get::<u32>(field).map(|v| v as f32).unwrap_or(0.0);
            let best = match (
                face.get::<String>("best-id"),
                face.get::<String>("best-label"),
                face.get::<f64>("best-similarity"),
            ) {
                (Ok(id), Ok(label), Ok(similarity)) => Some(Candidate {
                    id,
                    label,
                    similarity,
                }),
                _ => None,
            };
            Some(FaceObservation {
                track,
                bbox: [pixels("x"), pixels("y"), pixels("width"), pixels("height")],
                best,
            })
        })
        .collect();
    Some(FrameObservation {
        running_time: Duration::from_nanos(structure.get::<u64>("running-time").unwrap_or(0)),
        width: structure.get::<u32>("width").unwrap_or(0),
        height: structure.get::<u32>("height").unwrap_or(0),
        faces,
    })
}

/// The gallery generation the frame was matched against.
pub fn generation(structure: &gst::StructureRef) -> Option<u64> {
    structure.get::<u64>("generation").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

    #[test]
    fn reads_every_tracked_face_with_its_best_candidate() {
        gst::init().unwrap();
        let matched = gst::Structure::builder(facegate_meta::FRAME_FACE)
            .field("track-id", 7u64)
            .field("x", 10u32)
            .field("y", 20u32)
            .field("width", 100u32)
            .field("height", 120u32)
            .field("matched", true)
            .field("best-id", "p-1")
            .field("best-label", "Ada")
            .field("best-similarity", 0.71f64)
            .build();
        let stranger = gst::Structure::builder(facegate_meta::FRAME_FACE)
            .field("track-id", 8u64)
            .field("x", 300u32)
            .field("y", 20u32)
            .field("width", 90u32)
            .field("height", 110u32)
            .field("matched", false)
            .build();
        let untracked = gst::Structure::builder(facegate_meta::FRAME_FACE)
            .field("x", 1u32)
            .build();
        let message = gst::Structure::builder(facegate_meta::FRAME_MESSAGE)
            .field("width", 640u32)
            .field("height", 480u32)
            .field("running-time", 2_000_000_000u64)
            .field("generation", 3u64)
            .field(
                "faces",
                gst::Array::from_values([
                    matched.to_send_value(),
                    stranger.to_send_value(),
                    untracked.to_send_value(),
                ]),
            )
            .build();
        let frame = from_message(&message).unwrap();
        assert_eq!(frame.running_time, Duration::from_secs(2));
        assert_eq!((frame.width, frame.height), (640, 480));
        assert_eq!(frame.faces.len(), 2);
        assert_eq!(frame.faces[0].track, 7);
        assert_eq!(frame.faces[0].bbox, [10.0, 20.0, 100.0, 120.0]);
        assert_eq!(
            frame.faces[0]
                .best
                .as_ref()
                .map(|c| (c.id.as_str(), c.similarity)),
            Some(("p-1", 0.71))
        );
        assert!(frame.faces[1].best.is_none());
        assert_eq!(generation(&message), Some(3));
        assert!(from_message(&gst::Structure::new_empty("facegate-match")).is_none());
    }
}
