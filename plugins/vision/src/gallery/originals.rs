// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every enrolled person's original embedding, for rebuilding an index: read back from the exact
//! index, or from a compressed gallery's vectors file plus what was enrolled since.

use faiss::{Idx, Index};

use super::files::FileEntry;
use super::manifest::MANIFEST_NAME;
use super::vectors::VectorsReader;
use super::{Gallery, GalleryError};

/// Vectors moved per FAISS call when rebuilding an index or copying the vectors file.
pub(super) const CHUNK: usize = 16_384;

impl Gallery {
    /// Calls `each` with every enrolled person's original embedding, in FAISS id order, in
    /// chunks.
    pub(super) fn for_each_vector(
        &self,
        each: impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<(), GalleryError> {
        let delivered = match self.trained {
            None => self.for_each_exact_vector(each)?,
            Some(_) => self.for_each_stored_vector(each)?,
        };
        debug_assert_eq!(delivered, self.roster.len());
        Ok(())
    }

    /// From the exact index itself; returns how many were delivered.
    fn for_each_exact_vector(
        &self,
        mut each: impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<usize, GalleryError> {
        let dim = self.dim as usize;
        let mut ids = Vec::with_capacity(CHUNK);
        let mut chunk = Vec::with_capacity(CHUNK * dim);
        let mut delivered = 0;
        let mut vector = vec![0.0; dim];
        for person in self.roster.iter() {
            self.index
                .reconstruct(Idx::from(person.faiss_id), &mut vector)
                .map_err(|error| self.faiss_error("read back a vector", error))?;
            ids.push(person.faiss_id);
            chunk.extend_from_slice(&vector);
            if ids.len() == CHUNK {
                each(&ids, &chunk)?;
                delivered += ids.len();
                ids.clear();
                chunk.clear();
            }
        }
        if !ids.is_empty() {
            each(&ids, &chunk)?;
            delivered += ids.len();
        }
        Ok(delivered)
    }

    /// From the vectors file of a compressed gallery plus the embeddings enrolled since, skipping
    /// those removed; returns how many were delivered.
    fn for_each_stored_vector(
        &self,
        mut each: impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<usize, GalleryError> {
        let dim = self.dim as usize;
        let entry = self
            .files
            .vectors
            .as_ref()
            .ok_or_else(|| GalleryError::Corrupt {
                path: self.dir.join(MANIFEST_NAME),
                problem: format!(
                    "index {} is compressed but no vectors file is listed, so it cannot be rebuilt",
                    self.index_type
                ),
            })?;
        let mut delivered = 0;
        // The checksum is known only at the end; nothing built from this is published before
        // the commit's last step, which follows that.
        self.read_vectors_file(entry, |ids, vectors| {
            delivered += self.deliver_present(ids, vectors, &mut each)?;
            Ok(())
        })?;
        for (ids, vectors) in self
            .pending_ids
            .chunks(CHUNK)
            .zip(self.pending_vectors.chunks(CHUNK * dim))
        {
            delivered += self.deliver_present(ids, vectors, &mut each)?;
        }
        if delivered != self.roster.len() {
            return Err(GalleryError::Corrupt {
                path: self.dir.join(&entry.name),
                problem: format!(
                    "holds the embeddings of {delivered} of the {} people enrolled",
                    self.roster.len()
                ),
            });
        }
        Ok(delivered)
    }

    /// Passes on the vectors of people still enrolled, skipping those removed since.
    fn deliver_present(
        &self,
        ids: &[i64],
        vectors: &[f32],
        each: &mut impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<usize, GalleryError> {
        let dim = self.dim as usize;
        if ids.iter().all(|&id| self.roster.contains_faiss_id(id)) {
            each(ids, vectors)?;
            return Ok(ids.len());
        }
        let (mut kept_ids, mut kept) = (Vec::new(), Vec::new());
        for (&id, vector) in ids.iter().zip(vectors.chunks_exact(dim)) {
            if self.roster.contains_faiss_id(id) {
                kept_ids.push(id);
                kept.extend_from_slice(vector);
            }
        }
        if !kept_ids.is_empty() {
            each(&kept_ids, &kept)?;
        }
        Ok(kept_ids.len())
    }

    /// Calls `each` with the vectors file's records in chunks, in FAISS id order.
    pub(super) fn read_vectors_file(
        &self,
        entry: &FileEntry,
        mut each: impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<(), GalleryError> {
        let mut reader = VectorsReader::open(&self.dir, entry, self.dim)?;
        let (mut ids, mut vectors) = (Vec::new(), Vec::new());
        loop {
            ids.clear();
            vectors.clear();
            if reader.next_chunk(CHUNK, &mut ids, &mut vectors)? == 0 {
                return Ok(());
            }
            each(&ids, &vectors)?;
        }
    }
}
