// SPDX-License-Identifier: MIT OR Apache-2.0
//! From fgmatch's `facegate-frame` bus message (facegate-meta's typed [`FrameMessage`]) to the
//! policy's view of a frame.

use std::time::Duration;

use facegate_meta::{FrameMessage, FrameMessageError, TokenSighting, TokenVerdict};

use crate::policy::{Candidate, DenyReason, FaceObservation, FrameObservation, TokenShown};

/// The gallery generation a frame was matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchedGallery {
    pub generation: u64,
    /// People in that generation.
    pub size: u64,
}

/// The frame a bus element message describes, with the gallery generation it was matched
/// against; `Ok(None)` for any other message. Faces without a track id are dropped: the policy
/// decides per track. A frame message with a missing or mistyped field is refused, never read
/// with zeros in its place.
pub fn from_message(
    structure: &gst::StructureRef,
) -> Result<Option<(FrameObservation, SearchedGallery)>, FrameMessageError> {
    let message = match FrameMessage::from_structure(structure) {
        Ok(message) => message,
        Err(FrameMessageError::NotAFrameMessage { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let faces = message
        .faces
        .into_iter()
        .filter_map(|face| {
            let (x, y, w, h) = face.bbox;
            Some(FaceObservation {
                track: face.track_id?,
                bbox: [x as f32, y as f32, w as f32, h as f32],
                best: face.best.map(|best| Candidate {
                    id: best.id,
                    label: best.label,
                    similarity: best.similarity,
                }),
                runner_up: face.runner_up_similarity,
                element_matched: face.matched,
                liveness: face.liveness.map(|liveness| liveness.verdict),
            })
        })
        .collect();
    let frame = FrameObservation {
        running_time: Duration::from_nanos(message.running_time.map_or(0, |t| t.nseconds())),
        width: message.width,
        height: message.height,
        faces,
        token: message.token.map(token_shown),
    };
    let gallery = SearchedGallery {
        generation: message.generation,
        size: message.gallery_size,
    };
    Ok(Some((frame, gallery)))
}

/// fgmatch's verdict on a token as the policy's view of it: each refusal is its deny reason.
fn token_shown(sighting: TokenSighting) -> TokenShown {
    TokenShown {
        token_id: sighting.token_id,
        passenger_id: sighting.passenger_id,
        refusal: match sighting.verdict {
            TokenVerdict::Valid => None,
            TokenVerdict::Invalid => Some(DenyReason::TokenInvalid),
            TokenVerdict::Expired => Some(DenyReason::TokenExpired),
            TokenVerdict::Revoked => Some(DenyReason::TokenRevoked),
        },
    }
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
            .field("runner-up-similarity", 0.21f64)
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
            .field("y", 2u32)
            .field("width", 30u32)
            .field("height", 40u32)
            .field("matched", false)
            .build();
        let message = gst::Structure::builder(facegate_meta::FRAME_MESSAGE)
            .field("width", 640u32)
            .field("height", 480u32)
            .field("running-time", 2_000_000_000u64)
            .field("generation", 3u64)
            .field("gallery-size", 40u64)
            .field(
                "faces",
                gst::Array::from_values([
                    matched.to_send_value(),
                    stranger.to_send_value(),
                    untracked.to_send_value(),
                ]),
            )
            .build();
        let (frame, gallery) = from_message(&message).unwrap().unwrap();
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
        assert_eq!(frame.faces[0].runner_up, Some(0.21));
        assert!(frame.faces[0].element_matched && !frame.faces[1].element_matched);
        assert!(frame.faces[1].best.is_none() && frame.faces[1].runner_up.is_none());
        assert_eq!(frame.token, None);
        assert_eq!(
            gallery,
            SearchedGallery {
                generation: 3,
                size: 40
            }
        );
        assert!(
            from_message(&gst::Structure::new_empty("facegate-match"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_frame_message_missing_a_field_is_refused() {
        gst::init().unwrap();
        let message = gst::Structure::builder(facegate_meta::FRAME_MESSAGE)
            .field("height", 480u32)
            .field("generation", 3u64)
            .field("faces", gst::Array::from_values([]))
            .build();
        let error = from_message(&message).unwrap_err();
        assert!(error.to_string().contains("width"), "{error}");
    }
}
