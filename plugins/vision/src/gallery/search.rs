// SPDX-License-Identifier: MIT OR Apache-2.0
//! Searching: the index's candidates, rescored from the 6-bit codes when it is compressed.

use faiss::index::IndexImpl;
use faiss::{Idx, Index};

use super::openmp::OneThread;
use super::roster::Person;
use super::{Gallery, GalleryError, Match};
use crate::embedder::cosine;

/// Candidates the compressed index passes to rescoring per result asked for. Its 4-bit codes
/// (one per 4 values) nearly always rank the enrolled face among the first 8 when its cell is
/// probed (recall@1 99.50 % with 8 candidates, 99.57 % with 16, at 1M), but underestimate
/// similarities by about 0.25, far too much for the gate's threshold; the 6-bit codes of the
/// second stage are off by 0.002 on average (0.01 at most over 3,000 benchmark queries).
const RESCORE_CANDIDATES_PER_RESULT: usize = 8;

/// Rescoring decodes into a stack buffer of this many values (every face embedder fits).
const MAX_STACK_DIM: usize = 1024;

impl Gallery {
    /// Top-k by cosine, best first; refuses a query of the wrong dim. Returns fewer than k if the
    /// gallery is smaller. Staged changes are included. The similarity is the inner product, which
    /// is the cosine only for a unit-length query such as the embedder produces; a compressed
    /// index returns it as estimated from the codes.
    pub fn search(&mut self, embedding: &[f32], k: usize) -> Result<Vec<Match>, GalleryError> {
        self.check_vector(embedding)?;
        // FAISS allocates k results per query whatever the gallery size, so k is capped first.
        let k = k.min(self.roster.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let _one_thread = OneThread::new();
        let candidates = match self.rescore {
            Some(_) => (k * RESCORE_CANDIDATES_PER_RESULT).min(self.roster.len()),
            None => k,
        };
        let result = self
            .index
            .search(embedding, candidates)
            .map_err(|error| self.faiss_error("search", error))?;
        let mut found: Vec<(f32, Person<'_>)> = Vec::with_capacity(candidates);
        for (label, &similarity) in result.labels.iter().zip(&result.distances) {
            let Some(person) = self.roster.by_faiss_id(label.to_native()) else {
                continue;
            };
            let similarity = match &self.rescore {
                Some(rescore) => self.rescored(rescore, embedding, person.position)?,
                None => similarity,
            };
            found.push((similarity, person));
        }
        if self.rescore.is_some() {
            found.sort_by(|a, b| b.0.total_cmp(&a.0));
            found.truncate(k);
        }
        Ok(found
            .into_iter()
            .map(|(similarity, person)| Match {
                id: person.id.to_owned(),
                label: person.label.to_owned(),
                similarity,
            })
            .collect())
    }

    /// The cosine of `query` with the rescoring code at `position`.
    fn rescored(
        &self,
        rescore: &IndexImpl,
        query: &[f32],
        position: usize,
    ) -> Result<f32, GalleryError> {
        // Decoding is a few hundred nanoseconds for 8 candidates; the buffer is not worth keeping.
        let mut decoded = [0.0f32; MAX_STACK_DIM];
        let mut heap = Vec::new();
        let decoded: &mut [f32] = if query.len() <= MAX_STACK_DIM {
            &mut decoded[..query.len()]
        } else {
            heap.resize(query.len(), 0.0);
            &mut heap
        };
        rescore
            .reconstruct(Idx::new(position as u64), decoded)
            .map_err(|error| self.faiss_error("decode a rescoring code", error))?;
        Ok(cosine(query, decoded))
    }
}
