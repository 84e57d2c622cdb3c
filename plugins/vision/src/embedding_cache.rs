// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track embeddings, so a passenger's face is embedded once when first seen and refreshed
//! rarely, instead of on every frame.

use std::collections::HashMap;

/// When a tracked face is embedded again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefreshPolicy {
    /// Frames after which a track's embedding is recomputed; 0 embeds on every frame.
    pub interval: u64,
    /// Re-embed early when the face's width has grown by this factor since the last embedding:
    /// someone walking up gives a better crop as they come closer.
    pub growth: f32,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            interval: 15,
            growth: 1.3,
        }
    }
}

#[derive(Debug)]
struct Entry {
    embedding: Vec<f32>,
    embedded_at: u64,
    face_width: f32,
    last_seen: u64,
}

#[derive(Debug, Default)]
pub struct EmbeddingCache {
    entries: HashMap<u64, Entry>,
    /// Buffers of retired entries, reused so steady state does not allocate.
    spare: Vec<Vec<f32>>,
}

impl EmbeddingCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The track's embedding if it is still fresh for a face of `face_width` at `frame`.
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
        (!stale).then_some(entry.embedding.as_slice())
    }

    /// Records a new embedding for the track.
    pub fn store(&mut self, track: u64, frame: u64, face_width: f32, embedding: &[f32]) {
        let spare = &mut self.spare;
        let entry = self.entries.entry(track).or_insert_with(|| Entry {
            embedding: spare.pop().unwrap_or_default(),
            embedded_at: frame,
            face_width,
            last_seen: frame,
        });
        entry.embedding.clear();
        entry.embedding.extend_from_slice(embedding);
        entry.embedded_at = frame;
        entry.face_width = face_width;
        entry.last_seen = frame;
    }

    /// Drops tracks not seen for more than `max_idle` frames.
    pub fn evict_idle(&mut self, frame: u64, max_idle: u64) {
        let spare = &mut self.spare;
        self.entries.retain(|_, entry| {
            let keep = frame.saturating_sub(entry.last_seen) <= max_idle;
            if !keep {
                spare.push(std::mem::take(&mut entry.embedding));
            }
            keep
        });
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

    #[test]
    fn embeds_once_then_refreshes_on_interval_or_growth() {
        let policy = RefreshPolicy {
            interval: 10,
            growth: 1.5,
        };
        let mut cache = EmbeddingCache::new();
        assert!(cache.fresh(7, 0, 100.0, &policy).is_none());
        cache.store(7, 0, 100.0, &[1.0, 0.0]);
        for frame in 1..10 {
            assert_eq!(cache.fresh(7, frame, 110.0, &policy), Some(&[1.0, 0.0][..]));
        }
        assert!(cache.fresh(7, 10, 110.0, &policy).is_none());
        cache.store(7, 10, 110.0, &[0.0, 1.0]);
        assert!(
            cache.fresh(7, 11, 170.0, &policy).is_none(),
            "grown by more than 1.5x"
        );
    }

    #[test]
    fn zero_interval_embeds_every_frame() {
        let policy = RefreshPolicy {
            interval: 0,
            growth: 10.0,
        };
        let mut cache = EmbeddingCache::new();
        cache.store(1, 5, 50.0, &[1.0]);
        assert!(cache.fresh(1, 5, 50.0, &policy).is_none());
    }

    #[test]
    fn idle_tracks_are_evicted() {
        let policy = RefreshPolicy::default();
        let mut cache = EmbeddingCache::new();
        cache.store(1, 0, 50.0, &[1.0]);
        cache.store(2, 0, 50.0, &[1.0]);
        cache.fresh(2, 20, 50.0, &policy);
        cache.evict_idle(25, 10);
        assert_eq!(cache.len(), 1);
        assert!(cache.fresh(1, 25, 50.0, &policy).is_none());
        cache.clear();
        assert!(cache.is_empty());
    }
}
