// SPDX-License-Identifier: MIT OR Apache-2.0
//! Building the index a commit's new generation gets: training a compressed one, refilling it,
//! or going back to exact search.

use std::path::Path;

use faiss::index::IndexImpl;
use faiss::index::autotune::ParameterSpace;
use faiss::index::io::{read_index, write_index};
use faiss::{Idx, Index, MetricType, index_factory};

use super::files::FileEntry;
use super::policy::{CompressedLayout, EXACT_INDEX, RESCORE_INDEX, Trained};
use super::{Gallery, GalleryError, faiss_path};

/// Each dimension's quantisation range extends this share of the training sample's span beyond
/// it on both sides (see `stretch_ranges`). A quarter covers the extremes of 4x as many people as
/// the sample (about 4.9 rather than 4.3 standard deviations at a million) and costs 1.5x the
/// quantisation step, which the 0.002 average error of rescoring already includes.
const RESCORE_RANGE_MARGIN: f32 = 0.25;

/// k-means needs a sample, not everyone: FAISS itself caps training at 256 points per centroid.
const TRAIN_POINTS_PER_LIST: usize = 256;

/// An index built by a commit, which replaces the one in memory once the manifest names it.
pub(super) struct Rebuilt {
    pub index: IndexImpl,
    /// `None` when only the index was refilled and the rest stays as it is.
    pub stages: Option<Stages>,
}

pub(super) struct Stages {
    pub rescore: Option<IndexImpl>,
    pub index_type: String,
    pub trained: Option<Trained>,
}

impl Gallery {
    /// Trains a compressed index on a sample of the vectors file just written and adds everyone.
    pub(super) fn build_compressed(
        &self,
        layout: &CompressedLayout,
        entry: &FileEntry,
    ) -> Result<Rebuilt, GalleryError> {
        let people = self.roster.len();
        let mut index = new_index(&self.dir, self.dim, &layout.factory())?;
        let mut rescore = new_index(&self.dir, self.dim, RESCORE_INDEX)?;
        let mut sample = self.training_sample(layout, entry)?;
        index
            .train(&sample)
            .map_err(|error| self.faiss_error("train the compressed index", error))?;
        stretch_ranges(&mut sample, self.dim as usize);
        rescore
            .train(&sample)
            .map_err(|error| self.faiss_error("train the rescoring stage", error))?;
        drop(sample);
        // The file is in FAISS id order, as the (compacted) roster is: rescoring code `i` is
        // record `i`'s.
        self.read_vectors_file(entry, |ids, vectors| {
            self.add_people(&mut index, ids, vectors)?;
            rescore
                .add(vectors)
                .map_err(|error| self.faiss_error("add vectors to the rescoring stage", error))
        })?;
        debug_assert_eq!(rescore.ntotal(), self.roster.positions() as u64);
        set_nprobe(&index, layout.nprobe).map_err(|error| self.faiss_error("set nprobe", error))?;
        let index_type = layout.index_type();
        tracing::info!(dir = %self.dir.display(), people, index_type, nprobe = layout.nprobe, "trained a compressed gallery index");
        Ok(Rebuilt {
            index,
            stages: Some(Stages {
                rescore: Some(rescore),
                index_type,
                trained: Some(Trained {
                    people: people as u64,
                    nprobe: Some(layout.nprobe),
                }),
            }),
        })
    }

    /// An even spread over enrolment order, so that no era of enrolments dominates training.
    fn training_sample(
        &self,
        layout: &CompressedLayout,
        entry: &FileEntry,
    ) -> Result<Vec<f32>, GalleryError> {
        let people = self.roster.len();
        let sample_size = people
            .min(TRAIN_POINTS_PER_LIST * layout.nlist as usize)
            .max(1);
        let stride = people.div_ceil(sample_size).max(1);
        let mut sample = Vec::with_capacity(sample_size * self.dim as usize);
        let mut position = 0;
        self.read_vectors_file(entry, |_, vectors| {
            for vector in vectors.chunks_exact(self.dim as usize) {
                if position % stride == 0 {
                    sample.extend_from_slice(vector);
                }
                position += 1;
            }
            Ok(())
        })?;
        Ok(sample)
    }

    /// The compressed index emptied and given everyone again, training kept, so that its ntotal
    /// is right after removals (see `remove_vector`). FAISS cannot clone a fast-scan IVF index
    /// (clone_index does not know it), so the copy goes through its file format, at `scratch`,
    /// which the commit overwrites with the final index next.
    pub(super) fn refill_compressed(
        &self,
        scratch: &Path,
        entry: &FileEntry,
    ) -> Result<Rebuilt, GalleryError> {
        let scratch_str = faiss_path(scratch)?;
        let faiss_error = |action, error| GalleryError::Faiss {
            path: scratch.to_path_buf(),
            action,
            error,
        };
        write_index(&self.index, scratch_str)
            .map_err(|error| faiss_error("write a copy of the index", error))?;
        let mut index = read_index(scratch_str)
            .map_err(|error| faiss_error("read a copy of the index", error))?;
        index
            .reset()
            .map_err(|error| faiss_error("empty the copy of the index", error))?;
        self.read_vectors_file(entry, |ids, vectors| {
            self.add_people(&mut index, ids, vectors)
        })?;
        if let Some(nprobe) = self.nprobe() {
            set_nprobe(&index, nprobe).map_err(|error| self.faiss_error("set nprobe", error))?;
        }
        Ok(Rebuilt {
            index,
            stages: None,
        })
    }

    /// An exact index with everyone, for a compressed gallery that has shrunk below the threshold.
    pub(super) fn build_exact(&self) -> Result<Rebuilt, GalleryError> {
        let mut index = new_index(&self.dir, self.dim, EXACT_INDEX)?;
        self.for_each_vector(|ids, vectors| self.add_people(&mut index, ids, vectors))?;
        Ok(Rebuilt {
            index,
            stages: Some(Stages {
                rescore: None,
                index_type: EXACT_INDEX.to_owned(),
                trained: None,
            }),
        })
    }

    /// Adds a chunk of people, FAISS ids and their vectors, to an index being built.
    fn add_people(
        &self,
        index: &mut IndexImpl,
        ids: &[i64],
        vectors: &[f32],
    ) -> Result<(), GalleryError> {
        let ids: Vec<Idx> = ids.iter().map(|&id| Idx::from(id)).collect();
        index
            .add_with_ids(vectors, &ids)
            .map_err(|error| self.faiss_error("add vectors", error))
    }
}

pub(super) fn new_index(dir: &Path, dim: u32, factory: &str) -> Result<IndexImpl, GalleryError> {
    index_factory(dim, factory, MetricType::InnerProduct).map_err(|error| GalleryError::Faiss {
        path: dir.to_path_buf(),
        action: "create the index",
        error,
    })
}

/// Sets an IVF index's probe count; an error for any other index.
pub(super) fn set_nprobe(index: &IndexImpl, nprobe: u32) -> Result<(), faiss::error::Error> {
    ParameterSpace::new()?.set_index_parameter(index, "nprobe", nprobe)
}

/// Appends two points to a training sample that widen each dimension's range by
/// `RESCORE_RANGE_MARGIN` of its span on both sides. The rescoring stage quantises each value
/// within the range its training saw and clips what falls outside, and people enrolled after
/// training (up to `RETRAIN_FACTOR` times as many) will fall outside the sample's extremes; FAISS's
/// factory cannot set the quantiser's own range margin.
fn stretch_ranges(sample: &mut Vec<f32>, dim: usize) {
    let mut low = vec![f32::INFINITY; dim];
    let mut high = vec![f32::NEG_INFINITY; dim];
    for vector in sample.chunks_exact(dim) {
        for ((value, low), high) in vector.iter().zip(&mut low).zip(&mut high) {
            *low = low.min(*value);
            *high = high.max(*value);
        }
    }
    for (low, high) in low.iter_mut().zip(&mut high) {
        let margin = (*high - *low) * RESCORE_RANGE_MARGIN;
        *low -= margin;
        *high += margin;
    }
    sample.extend_from_slice(&low);
    sample.extend_from_slice(&high);
}
