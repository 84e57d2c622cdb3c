// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track embeddings, so a passenger's face is embedded once when first seen and refreshed
//! rarely, instead of on every frame; each track's embeddings are fused into its evidence
//! ([`crate::fusion`]), which is what the track is matched with.

use std::collections::HashMap;

use crate::fusion::{DEFAULT_FUSION_FRAMES, FrameQuality, TrackEvidence};

/// When a tracked face is embedded again, and how many of its embeddings are fused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefreshPolicy {
    /// Frames after which a track's embedding is recomputed; 0 embeds on every frame.
    pub interval: u64,
    /// Re-embed early when the face's width has grown by this factor since the last embedding:
    /// someone walking up gives a better crop as they come closer.
    pub growth: f32,
    /// The most embeddings of a track fused into its evidence; 1 keeps only the latest.
    pub fusion_frames: usize,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            interval: 15,
            growth: 1.3,
            fusion_frames: DEFAULT_FUSION_FRAMES,
        }
    }
}

#[derive(Debug)]
struct Entry {
    evidence: TrackEvidence,
    embedded_at: u64,
    face_width: f32,
    last_seen: u64,
}

#[derive(Debug, Default)]
pub struct EmbeddingCache {
    entries: HashMap<u64, Entry>,
    /// Evidence of retired tracks, reused so steady state does not allocate.
    spare: Vec<TrackEvidence>,
}

impl EmbeddingCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The track's fused embedding if it is still fresh for a face of `face_width` at `frame`.
    pub fn fresh(
        &mut self,
        track: u64,
        frame: u64,
        face_width: f32,
        policy: &RefreshPolicy,
    ) -> Option<&[f32]> {
        let entry = self.entries.get_mut(&track)?;
        entry.last_seen = frame;
        let stale = frame.saturating_sub(entry.embedded_at) >= policy.interval
            || face_width >= entry.face_width * policy.growth;
        (!stale).then_some(entry.evidence.fused())
    }

    /// Adds a new embedding of the track, of this quality, to its evidence; returns the fused
    /// embedding the track is now matched with.
    pub fn store(
        &mut self,
        track: u64,
        frame: u64,
        face_width: f32,
        embedding: &[f32],
        quality: FrameQuality,
        policy: &RefreshPolicy,
    ) -> &[f32] {
        let spare = &mut self.spare;
        let entry = self.entries.entry(track).or_insert_with(|| Entry {
            evidence: spare
                .pop()
                .unwrap_or_else(|| TrackEvidence::new(policy.fusion_frames)),
            embedded_at: frame,
            face_width,
            last_seen: frame,
        });
        entry.evidence.set_capacity(policy.fusion_frames);
        entry.embedded_at = frame;
        entry.face_width = face_width;
        entry.last_seen = frame;
        entry.evidence.add(embedding, quality)
    }

    /// The track's evidence, if it has any.
    pub fn evidence(&self, track: u64) -> Option<&TrackEvidence> {
        self.entries.get(&track).map(|entry| &entry.evidence)
    }

    /// Drops tracks not seen for more than `max_idle` frames.
    pub fn evict_idle(&mut self, frame: u64, max_idle: u64) {
        let idle = self
            .entries
            .extract_if(|_, entry| frame.saturating_sub(entry.last_seen) > max_idle);
        for (_, mut entry) in idle {
            entry.evidence.clear();
            self.spare.push(entry.evidence);
        }
    }

    pub fn clear(&mut self) {
        self.evict_idle(u64::MAX, 0);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::TEMPLATE;

    fn quality() -> FrameQuality {
        FrameQuality::of(&TEMPLATE, 1.0)
    }

    fn policy(interval: u64, growth: f32, fusion_frames: usize) -> RefreshPolicy {
        RefreshPolicy {
            interval,
            growth,
            fusion_frames,
        }
    }

    #[test]
    fn embeds_once_then_refreshes_on_interval_or_growth() {
        let policy = policy(10, 1.5, 1);
        let mut cache = EmbeddingCache::new();
        assert!(cache.fresh(7, 0, 100.0, &policy).is_none());
        cache.store(7, 0, 100.0, &[1.0, 0.0], quality(), &policy);
        for frame in 1..10 {
            assert_eq!(cache.fresh(7, frame, 110.0, &policy), Some(&[1.0, 0.0][..]));
        }
        assert!(cache.fresh(7, 10, 110.0, &policy).is_none());
        cache.store(7, 10, 110.0, &[0.0, 1.0], quality(), &policy);
        assert!(
            cache.fresh(7, 11, 170.0, &policy).is_none(),
            "grown by more than 1.5x"
        );
    }

    #[test]
    fn a_tracks_embeddings_are_fused_and_the_fusion_is_what_stays_fresh() {
        let policy = policy(10, 1.5, 8);
        let mut cache = EmbeddingCache::new();
        let s = 0.6f32.sqrt();
        cache.store(3, 0, 100.0, &[1.0, 0.0], quality(), &policy);
        let fused = cache
            .store(3, 10, 100.0, &[s, 0.4f32.sqrt()], quality(), &policy)
            .to_vec();
        assert!(fused[0] > s && fused[0] < 1.0, "{fused:?}");
        assert_eq!(cache.fresh(3, 11, 100.0, &policy), Some(fused.as_slice()));
        assert_eq!(cache.evidence(3).map(|e| e.fused_frames()), Some(2));
    }

    #[test]
    fn zero_interval_embeds_every_frame() {
        let policy = policy(0, 10.0, 1);
        let mut cache = EmbeddingCache::new();
        cache.store(1, 5, 50.0, &[1.0], quality(), &policy);
        assert!(cache.fresh(1, 5, 50.0, &policy).is_none());
    }

    #[test]
    fn idle_tracks_are_evicted_and_a_new_track_starts_without_their_evidence() {
        let policy = RefreshPolicy::default();
        let mut cache = EmbeddingCache::new();
        cache.store(1, 0, 50.0, &[1.0, 0.0], quality(), &policy);
        cache.store(2, 0, 50.0, &[1.0, 0.0], quality(), &policy);
        cache.fresh(2, 20, 50.0, &policy);
        cache.evict_idle(25, 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.fresh(1, 25, 50.0, &policy).is_none());
        cache.clear();
        assert!(cache.is_empty());
        // An embedding the retired tracks' would have fitted: nothing of theirs is fused with it.
        let fused = cache.store(9, 30, 50.0, &[0.8, 0.6], quality(), &policy);
        assert_eq!(fused, &[0.8, 0.6][..], "nothing of the retired tracks");
        let evidence = cache.evidence(9).unwrap();
        assert_eq!((evidence.fused_frames(), evidence.restarts()), (1, 0));
    }
}
