// SPDX-License-Identifier: MIT OR Apache-2.0
//! Stable track ids for faces across frames: greedy matching on box overlap, with a centre-distance
//! fallback for faces that move fast relative to their size (someone walking up to the gate).

use crate::geometry::Rect;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerConfig {
    /// Minimum IoU for a face to continue a track by overlap.
    pub iou_threshold: f32,
    /// Frames a track survives without a face before its id is retired.
    pub max_age: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou_threshold: 0.3,
            max_age: 15,
        }
    }
}

/// A face's track as attached to the frame: its id and how many frames the track has lived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackLabel {
    pub id: u64,
    pub age: u32,
}

#[derive(Clone, Copy, Debug)]
struct Track {
    id: u64,
    bbox: Rect,
    age: u32,
    missed: u32,
}

#[derive(Debug)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    candidates: Vec<(f32, usize, usize)>,
    face_taken: Vec<bool>,
    track_taken: Vec<bool>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            tracks: Vec::with_capacity(32),
            next_id: 1,
            candidates: Vec::with_capacity(64),
            face_taken: Vec::with_capacity(32),
            track_taken: Vec::with_capacity(32),
        }
    }

    /// Forgets every track (a new stream), keeping ids unique.
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Assigns a track to each of this frame's `faces`, in order, into `labels`.
    pub fn update(&mut self, faces: &[Rect], config: &TrackerConfig, labels: &mut Vec<TrackLabel>) {
        self.candidates.clear();
        for (t, track) in self.tracks.iter().enumerate() {
            for (f, face) in faces.iter().enumerate() {
                let iou = track.bbox.iou(face);
                if iou >= config.iou_threshold {
                    self.candidates.push((1.0 + iou, t, f));
                } else if let Some(closeness) = centre_closeness(&track.bbox, face) {
                    // Below any overlap match, nearest first.
                    self.candidates.push((closeness, t, f));
                }
            }
        }
        self.candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        self.face_taken.clear();
        self.face_taken.resize(faces.len(), false);
        self.track_taken.clear();
        self.track_taken.resize(self.tracks.len(), false);
        labels.clear();
        labels.resize(faces.len(), TrackLabel { id: 0, age: 0 });
        for &(_, t, f) in &self.candidates {
            if self.track_taken[t] || self.face_taken[f] {
                continue;
            }
            self.track_taken[t] = true;
            self.face_taken[f] = true;
            let track = &mut self.tracks[t];
            track.bbox = faces[f];
            track.age += 1;
            track.missed = 0;
            labels[f] = TrackLabel {
                id: track.id,
                age: track.age,
            };
        }
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !self.track_taken[t] {
                track.missed += 1;
            }
        }
        self.tracks.retain(|track| track.missed <= config.max_age);
        for (f, face) in faces.iter().enumerate() {
            if !self.face_taken[f] {
                let track = Track {
                    id: self.next_id,
                    bbox: *face,
                    age: 0,
                    missed: 0,
                };
                self.next_id += 1;
                labels[f] = TrackLabel {
                    id: track.id,
                    age: 0,
                };
                self.tracks.push(track);
            }
        }
    }
}

/// How close two boxes' centres are, in (0, 1), when within half the larger box's size and of
/// similar size; `None` otherwise.
fn centre_closeness(a: &Rect, b: &Rect) -> Option<f32> {
    let (ax, ay) = a.centre();
    let (bx, by) = b.centre();
    let reach = 0.5 * a.w.max(a.h).max(b.w).max(b.h);
    let distance = ((ax - bx).powi(2) + (ay - by).powi(2)).sqrt();
    let size_ratio = a.w.max(b.w) / a.w.min(b.w).max(1e-3);
    (reach > 0.0 && distance < reach && size_ratio < 2.0).then(|| 1.0 - distance / reach)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: f32, y: f32, size: f32) -> Rect {
        Rect {
            x,
            y,
            w: size,
            h: size,
        }
    }

    fn ids(tracker: &mut Tracker, faces: &[Rect]) -> Vec<u64> {
        let mut labels = Vec::new();
        tracker.update(faces, &TrackerConfig::default(), &mut labels);
        labels.iter().map(|l| l.id).collect()
    }

    #[test]
    fn a_moving_face_keeps_its_id() {
        let mut tracker = Tracker::new();
        let first = ids(&mut tracker, &[rect(100.0, 100.0, 80.0)])[0];
        for step in 1..20 {
            // Walking toward the camera: grows and drifts.
            let face = rect(
                100.0 - step as f32 * 2.0,
                100.0 + step as f32,
                80.0 + step as f32 * 4.0,
            );
            assert_eq!(ids(&mut tracker, &[face]), vec![first]);
        }
    }

    #[test]
    fn fast_motion_matches_by_centre() {
        let mut tracker = Tracker::new();
        let first = ids(&mut tracker, &[rect(100.0, 100.0, 60.0)]);
        // Moved 45% of its size: IoU below 0.3, centre still within reach.
        assert_eq!(ids(&mut tracker, &[rect(127.0, 100.0, 60.0)]), first);
    }

    #[test]
    fn two_faces_get_two_ids_and_swap_order_safely() {
        let mut tracker = Tracker::new();
        let a = rect(50.0, 50.0, 60.0);
        let b = rect(300.0, 60.0, 60.0);
        let first = ids(&mut tracker, &[a, b]);
        assert_ne!(first[0], first[1]);
        assert_eq!(ids(&mut tracker, &[b, a]), vec![first[1], first[0]]);
    }

    #[test]
    fn tracks_survive_short_gaps_and_expire_after_max_age() {
        let mut tracker = Tracker::new();
        let face = rect(10.0, 10.0, 50.0);
        let id = ids(&mut tracker, &[face])[0];
        for _ in 0..TrackerConfig::default().max_age {
            ids(&mut tracker, &[]);
        }
        assert_eq!(ids(&mut tracker, &[face]), vec![id]);
        for _ in 0..=TrackerConfig::default().max_age {
            ids(&mut tracker, &[]);
        }
        assert_ne!(ids(&mut tracker, &[face]), vec![id]);
    }

    #[test]
    fn ages_count_frames() {
        let mut tracker = Tracker::new();
        let mut labels = Vec::new();
        for expected in 0..3 {
            tracker.update(
                &[rect(0.0, 0.0, 40.0)],
                &TrackerConfig::default(),
                &mut labels,
            );
            assert_eq!(labels[0].age, expected);
        }
    }
}
