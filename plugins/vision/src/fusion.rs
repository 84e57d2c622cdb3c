// SPDX-License-Identifier: MIT OR Apache-2.0
//! A track's evidence: the embeddings of its good frames fused into one, so that a passenger is
//! matched on the best of what the camera saw of them while walking up rather than on whichever
//! frame was embedded last.
//!
//! Which frames are good is read from the frame itself: how much detail the aligned crop holds
//! (the eye distance against the crop's own), how frontal the face is (from the five landmarks),
//! and how sharp the crop is against the track's sharpest (motion blur, focus). The fused
//! embedding is the quality-weighted mean of the track's best frames, normalised, as a template
//! is the mean of its photos ([`crate::template`]): frames' own noise partly cancels and one
//! turned or blurred frame no longer decides.
//!
//! A track is one person only while the tracker keeps it so. An embedding that does not fit the
//! track's evidence closely ([`SAME_TRACK_SIMILARITY`]) means the track now shows somebody else
//! (or a frame too poor to judge): the evidence starts again from it. The newest frame always
//! counts, at least as a good frame does, and is never the one a full track drops: whoever the
//! track shows now is always in what it is matched on, and another person's earlier frames can
//! stay in it only when the two embed closer than different people do.

use crate::align::TEMPLATE;
use crate::embedder::{cosine, normalise};
use crate::geometry::LANDMARKS;

/// How many of a track's frames are fused by default: at the embedder's refresh interval (15
/// frames, earlier as the face grows) a walk-up to the gate gives about this many embeddings.
pub const DEFAULT_FUSION_FRAMES: usize = 8;

/// The lowest cosine an embedding may have to its track's fused one and still be the same
/// person: above any different-person pair seen (the development corpus's highest is 0.386, the
/// highest in group photos 0.68), so another person's frames never stay in the evidence. Below
/// it the evidence restarts, the safe side of a tracker's mistake; consecutive embeddings of one
/// synthetic walk-up reach 0.660 (docs/ACCURACY.md), so a same-person track sometimes restarts.
pub const SAME_TRACK_SIMILARITY: f32 = 0.75;

/// A frame counts towards the fusion when its weight is at least this share of the track's best
/// frame's: the best frames decide, and a distant, turned or blurred one adds nothing (but the
/// newest frame, which counts with at least this share).
const GOOD_FRAME_SHARE: f32 = 0.5;

/// The eye distance of the aligned crop (pixels): a face whose eyes are at least this far apart
/// in the camera frame is aligned without upsampling, with all the detail the embedder can use.
const FULL_DETAIL_EYE_DISTANCE: f32 = TEMPLATE[1][0] - TEMPLATE[0][0];

/// Nose offset from the eyes' midpoint along the eye line, in eye distances, at which a face is
/// treated as turned away (about 45 degrees of yaw).
const PROFILE_YAW: f32 = 0.5;

/// Departure of the nose's height between eyes and mouth from the template's at which a face is
/// treated as looking fully up or down.
const PROFILE_PITCH: f32 = 0.3;

/// What one frame offers the fusion, before it is weighed against the rest of its track.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameQuality {
    /// 0..1: the eye distance against the aligned crop's (1 at or above it).
    pub detail: f32,
    /// 0..1: 1 for a frontal face, 0 for a profile or a face looking fully up or down.
    pub frontal: f32,
    /// The aligned crop's sharpness (its Laplacian's variance, in the embedder's input units:
    /// comparable within one model, hence weighed against the track's own sharpest frame).
    pub sharpness: f32,
}

impl FrameQuality {
    /// The quality of a face with these landmarks (image pixels) whose aligned crop has this
    /// `sharpness` ([`crate::Embedder::crop_sharpness`]).
    pub fn of(landmarks: &[[f32; 2]; LANDMARKS], sharpness: f32) -> Self {
        let [right_eye, left_eye, nose, mouth_right, mouth_left] = *landmarks;
        let eyes = [left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]];
        let eye_distance = eyes[0].hypot(eyes[1]);
        let sharpness = if sharpness.is_finite() {
            sharpness.max(0.0)
        } else {
            0.0
        };
        if !(eye_distance.is_finite() && eye_distance > f32::EPSILON) {
            return FrameQuality {
                detail: 0.0,
                frontal: 0.0,
                sharpness,
            };
        }
        // Coordinates along the eye line and across it (downwards on an upright face), in eye
        // distances from the eyes' midpoint: roll does not count, alignment undoes it.
        let along = [eyes[0] / eye_distance, eyes[1] / eye_distance];
        let across = [-along[1], along[0]];
        let mid = [
            (right_eye[0] + left_eye[0]) / 2.0,
            (right_eye[1] + left_eye[1]) / 2.0,
        ];
        let project = |p: [f32; 2], axis: [f32; 2]| {
            ((p[0] - mid[0]) * axis[0] + (p[1] - mid[1]) * axis[1]) / eye_distance
        };
        let mouth = [
            (mouth_right[0] + mouth_left[0]) / 2.0,
            (mouth_right[1] + mouth_left[1]) / 2.0,
        ];
        let yaw = project(nose, along).abs();
        let mouth_down = project(mouth, across);
        let pitch = if mouth_down > f32::EPSILON {
            (project(nose, across) / mouth_down - template_nose_height()).abs()
        } else {
            f32::INFINITY
        };
        let frontal = ((1.0 - yaw / PROFILE_YAW).max(0.0) * (1.0 - pitch / PROFILE_PITCH).max(0.0))
            .clamp(0.0, 1.0);
        FrameQuality {
            detail: (eye_distance / FULL_DETAIL_EYE_DISTANCE).min(1.0),
            frontal: if frontal.is_finite() { frontal } else { 0.0 },
            sharpness,
        }
    }

    /// The weight the frame has among frames of which the sharpest has `sharpest`.
    fn weight(&self, sharpest: f32) -> f32 {
        let sharp = if sharpest > 0.0 {
            (self.sharpness / sharpest).min(1.0)
        } else {
            1.0
        };
        self.detail * self.frontal * sharp
    }

    /// What the frame is worth regardless of the others: which frames a full track keeps.
    fn standing(&self) -> f32 {
        self.detail * self.frontal
    }
}

/// The nose's height between the eyes and the mouth on the template, as a share of the mouth's.
fn template_nose_height() -> f32 {
    let eyes = (TEMPLATE[0][1] + TEMPLATE[1][1]) / 2.0;
    let mouth = (TEMPLATE[3][1] + TEMPLATE[4][1]) / 2.0;
    (TEMPLATE[2][1] - eyes) / (mouth - eyes)
}

#[derive(Clone, Debug)]
struct Observation {
    embedding: Vec<f32>,
    quality: FrameQuality,
    /// Order of arrival, so that among equals the older frame gives way.
    arrival: u64,
}

/// The fused evidence of one track.
#[derive(Clone, Debug)]
pub struct TrackEvidence {
    capacity: usize,
    observations: Vec<Observation>,
    fused: Vec<f32>,
    fused_frames: usize,
    arrivals: u64,
    restarts: u64,
    /// Buffers of dropped observations, reused so that a steady track does not allocate.
    spare: Vec<Vec<f32>>,
    /// Each observation's weight in the last fusion (a buffer, reused).
    weights: Vec<f32>,
}

impl TrackEvidence {
    /// Evidence of at most `capacity` frames (at least 1; 1 is each embedding on its own).
    pub fn new(capacity: usize) -> Self {
        TrackEvidence {
            capacity: capacity.max(1),
            observations: Vec::with_capacity(capacity.max(1) + 1),
            fused: Vec::new(),
            fused_frames: 0,
            arrivals: 0,
            restarts: 0,
            spare: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// How many frames are fused from the next one on.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Forgets every frame, keeping the buffers, for another track.
    pub fn clear(&mut self) {
        self.spare
            .extend(self.observations.drain(..).map(|o| o.embedding));
        self.fused.clear();
        self.fused_frames = 0;
        self.restarts = 0;
    }

    /// Adds a frame's unit `embedding` of this `quality`, and returns the fused embedding.
    pub fn add(&mut self, embedding: &[f32], quality: FrameQuality) -> &[f32] {
        let fits = self.fused.len() == embedding.len()
            && cosine(&self.fused, embedding) >= SAME_TRACK_SIMILARITY;
        if !self.observations.is_empty() && !fits {
            let restarts = self.restarts + 1;
            self.clear();
            self.restarts = restarts;
        }
        self.arrivals += 1;
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(embedding);
        self.observations.push(Observation {
            embedding: buffer,
            quality,
            arrival: self.arrivals,
        });
        // Observations stay in arrival order, the newest last; a full track drops its weakest
        // older frame, never the newest.
        while self.observations.len() > self.capacity {
            let older = &self.observations[..self.observations.len() - 1];
            let weakest = older
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.quality
                        .standing()
                        .total_cmp(&b.quality.standing())
                        .then(a.arrival.cmp(&b.arrival))
                })
                .map_or(0, |(index, _)| index);
            let dropped = self.observations.remove(weakest);
            self.spare.push(dropped.embedding);
        }
        self.fuse(embedding);
        &self.fused
    }

    fn fuse(&mut self, latest: &[f32]) {
        let sharpest = self
            .observations
            .iter()
            .map(|o| o.quality.sharpness)
            .fold(0.0, f32::max);
        self.weights.clear();
        self.weights
            .extend(self.observations.iter().map(|o| o.quality.weight(sharpest)));
        let best = self.weights.iter().copied().fold(0.0, f32::max);
        if let Some(newest) = self.weights.last_mut() {
            *newest = newest.max(GOOD_FRAME_SHARE * best);
        }
        self.fused.clear();
        self.fused.resize(latest.len(), 0.0);
        self.fused_frames = 0;
        let mut only = None;
        if best > 0.0 {
            for (observation, &weight) in self.observations.iter().zip(&self.weights) {
                if weight >= GOOD_FRAME_SHARE * best {
                    self.fused_frames += 1;
                    only = Some(&observation.embedding);
                    for (sum, x) in self.fused.iter_mut().zip(&observation.embedding) {
                        *sum += weight * x;
                    }
                }
            }
        }
        if let (1, Some(only)) = (self.fused_frames, only) {
            // One good frame is its own embedding, exactly: fusion of one changes nothing.
            self.fused.copy_from_slice(only);
        } else if self.fused_frames == 0 || !normalise(&mut self.fused) {
            // No frame has any standing (all in profile, say): the latest is all there is.
            self.fused.clear();
            self.fused.extend_from_slice(latest);
            self.fused_frames = 1;
        }
    }

    /// The fused embedding (empty before the first frame).
    pub fn fused(&self) -> &[f32] {
        &self.fused
    }

    /// How many frames the fused embedding is made of.
    pub fn fused_frames(&self) -> usize {
        self.fused_frames
    }

    /// How often the evidence started again on a frame that did not fit it.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The template's landmarks scaled by `scale` about the origin: a frontal face.
    fn frontal(scale: f32) -> [[f32; 2]; LANDMARKS] {
        TEMPLATE.map(|[x, y]| [x * scale, y * scale])
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        assert!(normalise(&mut v));
        v
    }

    #[test]
    fn a_frontal_face_at_full_detail_has_full_quality_and_a_small_one_less_detail() {
        let q = FrameQuality::of(&frontal(1.0), 5.0);
        assert!((q.detail - 1.0).abs() < 1e-6, "{q:?}");
        assert!((q.frontal - 1.0).abs() < 1e-4, "{q:?}");
        assert_eq!(q.sharpness, 5.0);
        let small = FrameQuality::of(&frontal(0.5), 5.0);
        assert!((small.detail - 0.5).abs() < 1e-4, "{small:?}");
        assert!(
            (small.frontal - 1.0).abs() < 1e-4,
            "rolling or scaling is not turning"
        );
    }

    #[test]
    fn rolled_faces_stay_frontal_and_turned_faces_do_not() {
        let (sin, cos) = 0.5f32.sin_cos();
        let rolled = TEMPLATE.map(|[x, y]| [cos * x - sin * y + 300.0, sin * x + cos * y]);
        assert!(FrameQuality::of(&rolled, 1.0).frontal > 0.999);

        let mut turned = TEMPLATE;
        let eye_distance = TEMPLATE[1][0] - TEMPLATE[0][0];
        turned[2][0] += 0.25 * eye_distance; // nose half-way to profile
        let q = FrameQuality::of(&turned, 1.0);
        assert!((q.frontal - 0.5).abs() < 0.01, "{q:?}");
        turned[2][0] += 0.3 * eye_distance;
        assert_eq!(FrameQuality::of(&turned, 1.0).frontal, 0.0);

        let mut looking_down = TEMPLATE;
        looking_down[2][1] += 0.2 * (TEMPLATE[3][1] - TEMPLATE[0][1]);
        assert!(FrameQuality::of(&looking_down, 1.0).frontal < 0.5);
    }

    #[test]
    fn degenerate_landmarks_have_no_quality() {
        let q = FrameQuality::of(&[[10.0, 10.0]; LANDMARKS], f32::NAN);
        assert_eq!((q.detail, q.frontal, q.sharpness), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_fusion_is_the_weighted_mean_of_the_good_frames() {
        let good = FrameQuality::of(&frontal(1.0), 4.0);
        let half_detail = FrameQuality::of(&frontal(0.6), 4.0);
        let poor = FrameQuality::of(&frontal(0.2), 4.0);
        let a = unit(&[1.0, 0.2, 0.0]);
        let b = unit(&[1.0, -0.1, 0.1]);
        let c = unit(&[1.0, 0.0, -0.2]);
        let mut evidence = TrackEvidence::new(8);
        assert_eq!(evidence.add(&c, poor), c.as_slice());
        assert_eq!(
            evidence.add(&a, good),
            a.as_slice(),
            "a fifth of the detail adds nothing"
        );
        evidence.add(&b, half_detail);
        assert_eq!(evidence.fused_frames(), 2);
        let expected: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + 0.6 * y).collect();
        let expected = unit(&expected);
        for (got, want) in evidence.fused().iter().zip(&expected) {
            assert!(
                (got - want).abs() < 1e-5,
                "{:?} {expected:?}",
                evidence.fused()
            );
        }
    }

    #[test]
    fn the_newest_frame_always_counts_and_is_never_the_one_dropped() {
        let good = FrameQuality::of(&frontal(1.0), 4.0);
        let poor = FrameQuality::of(&frontal(0.2), 4.0);
        let a = unit(&[1.0, 0.2, 0.0]);
        let b = unit(&[1.0, -0.1, 0.1]);
        let mut evidence = TrackEvidence::new(8);
        evidence.add(&a, good);
        evidence.add(&b, poor);
        assert_eq!(
            evidence.fused_frames(),
            2,
            "the newest counts as a good frame"
        );
        let expected = unit(
            &a.iter()
                .zip(&b)
                .map(|(x, y)| x + 0.5 * y)
                .collect::<Vec<_>>(),
        );
        for (got, want) in evidence.fused().iter().zip(&expected) {
            assert!(
                (got - want).abs() < 1e-5,
                "{:?} {expected:?}",
                evidence.fused()
            );
        }
        // A full track of one keeps the newest, however it stands against the one before.
        let mut one = TrackEvidence::new(1);
        one.add(&a, good);
        assert_eq!(one.add(&b, poor), b.as_slice());
    }

    #[test]
    fn a_blurred_frame_weighs_against_the_tracks_sharpest() {
        let sharp = FrameQuality::of(&frontal(1.0), 10.0);
        let blurred = FrameQuality::of(&frontal(1.0), 2.0);
        let a = unit(&[1.0, 0.3]);
        let b = unit(&[1.0, -0.3]);
        let mut evidence = TrackEvidence::new(8);
        evidence.add(&b, blurred);
        evidence.add(&a, sharp);
        assert_eq!(evidence.fused_frames(), 1);
        assert_eq!(evidence.fused(), a.as_slice());
    }

    #[test]
    fn an_embedding_that_does_not_fit_the_track_starts_the_evidence_again() {
        let q = FrameQuality::of(&frontal(1.0), 1.0);
        let person = unit(&[1.0, 0.1, 0.0]);
        // Cosine 0.70 to the person: closer than different people embed, not close enough.
        let somebody_else = unit(&[0.7, 0.0, 0.714]);
        assert!(cosine(&person, &somebody_else) < SAME_TRACK_SIMILARITY);
        let mut evidence = TrackEvidence::new(8);
        evidence.add(&person, q);
        evidence.add(&person, q);
        assert_eq!(evidence.add(&somebody_else, q), somebody_else.as_slice());
        assert_eq!((evidence.fused_frames(), evidence.restarts()), (1, 1));
    }

    #[test]
    fn a_full_track_keeps_its_best_frames() {
        let mut evidence = TrackEvidence::new(2);
        let e = unit(&[1.0, 0.0]);
        let f = unit(&[1.0, 0.1]);
        evidence.add(&e, FrameQuality::of(&frontal(1.0), 1.0));
        evidence.add(&e, FrameQuality::of(&frontal(0.3), 1.0));
        evidence.add(&f, FrameQuality::of(&frontal(0.9), 1.0));
        assert_eq!(evidence.observations.len(), 2);
        assert!(
            evidence
                .observations
                .iter()
                .all(|o| o.quality.detail > 0.85),
            "the distant frame gave way"
        );
    }

    #[test]
    fn one_frame_of_capacity_is_each_embedding_alone() {
        let q = FrameQuality::of(&frontal(1.0), 1.0);
        let mut evidence = TrackEvidence::new(1);
        let a = unit(&[1.0, 0.2]);
        let b = unit(&[1.0, -0.2]);
        evidence.add(&a, q);
        assert_eq!(evidence.add(&b, q), b.as_slice());
        let mut none = TrackEvidence::new(0);
        assert_eq!(none.add(&a, q), a.as_slice());
    }

    #[test]
    fn frames_without_standing_fall_back_to_the_latest() {
        let profile = FrameQuality {
            detail: 1.0,
            frontal: 0.0,
            sharpness: 1.0,
        };
        let mut evidence = TrackEvidence::new(4);
        let a = unit(&[1.0, 0.2]);
        let b = unit(&[1.0, 0.1]);
        evidence.add(&a, profile);
        assert_eq!(evidence.add(&b, profile), b.as_slice());
    }
}
