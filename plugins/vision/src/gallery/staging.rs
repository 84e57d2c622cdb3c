// SPDX-License-Identifier: MIT OR Apache-2.0
//! Enrolments and removals, staged in memory: applied to the index at once (so this process
//! sees them), written to disk by `commit`.

use std::sync::OnceLock;

use faiss::selector::IdSelector;
use faiss::{Idx, Index};

use super::limits::{UNIT_NORM_TOLERANCE, id_problem, label_problem, norm};
use super::lock::WriteLock;
use super::openmp::OneThread;
use super::{Gallery, GalleryError};

impl Gallery {
    /// Stages an enrolment in memory (not yet on disk). Refuses: embedding from another model
    /// (model string differs) or wrong dim or not unit length (|norm-1| > 1e-3) or non-finite
    /// values, empty/oversized id (allow [A-Za-z0-9._@-], 1..=64 chars), an id already enrolled
    /// unless `replace`. A replaced person gets a new FAISS id and enrolment time. A compressed
    /// index takes the new face without retraining; `commit` retrains when the gallery has
    /// outgrown it.
    ///
    /// The first change staged takes the writer's lock (see `begin_change`), which `commit`
    /// releases.
    pub fn enroll(
        &mut self,
        id: &str,
        label: &str,
        model: &str,
        embedding: &[f32],
        replace: bool,
    ) -> Result<(), GalleryError> {
        self.check_enrolment(id, label, model, embedding)?;
        self.begin_change()?;
        let replaced_faiss_id = self.roster.faiss_id_of(id);
        if replaced_faiss_id.is_some() && !replace {
            return Err(GalleryError::AlreadyEnrolled {
                dir: self.dir.clone(),
                id: id.to_owned(),
            });
        }
        if !self.roster.has_room_for(id, label) {
            return Err(self.invalid("the ids and labels of everyone enrolled exceed 4 GiB"));
        }
        let faiss_id = self.next_faiss_id;
        let next_faiss_id = faiss_id
            .checked_add(1)
            .ok_or_else(|| self.invalid("FAISS ids are exhausted"))?;

        self.add_vector(faiss_id, embedding)?;
        self.next_faiss_id = next_faiss_id;
        if let Some(old_faiss_id) = replaced_faiss_id {
            if let Err(error) = self.remove_vector(old_faiss_id) {
                // Keep the index and the roster in agreement: undo the add.
                if let Err(undo_error) = self.remove_vector(faiss_id) {
                    tracing::warn!(%undo_error, "cannot undo a half-done replacement");
                }
                return Err(error);
            }
            self.roster.remove(id);
        }
        let enrolled_at = chrono::Utc::now().timestamp();
        self.roster
            .push(faiss_id, id, label, enrolled_at)
            .map_err(|error| self.invalid(&format!("cannot list {id}: {error:?}")))?;
        if self.trained.is_some() {
            self.pending_ids.push(faiss_id);
            self.pending_vectors.extend_from_slice(embedding);
        }
        self.staged();
        Ok(())
    }

    /// Stages removal; Ok(false) if the id was not enrolled. The vector leaves the index, so the
    /// person stops matching at once in this process and, after commit, everywhere. Takes the
    /// writer's lock as `enroll` does, and answers for the gallery as it is under it.
    pub fn remove(&mut self, id: &str) -> Result<bool, GalleryError> {
        self.begin_change()?;
        let Some(faiss_id) = self.roster.faiss_id_of(id) else {
            return Ok(false);
        };
        self.remove_vector(faiss_id)?;
        self.roster.remove(id);
        self.staged();
        Ok(true)
    }

    /// Stages the source generation that the staged changes bring this copy to (see
    /// `upstream_generation`); a change of its own, so that a source generation that changed
    /// nobody here (a removal of someone never enrolled) is still committed. Takes the writer's
    /// lock as `enroll` does.
    pub fn set_upstream_generation(&mut self, generation: u64) -> Result<(), GalleryError> {
        self.begin_change()?;
        if self.upstream_generation != Some(generation) {
            self.upstream_generation = Some(generation);
            self.staged();
        }
        Ok(())
    }

    /// Takes the writer's lock, waiting up to `lock_wait` for another writer's commit, unless it
    /// is held already. If another writer committed since this gallery was read, it is read
    /// again first, so that the change is made to the generation the commit will replace: a
    /// removal is never undone, nor an enrolment lost, by a writer that read an older one.
    fn begin_change(&mut self) -> Result<(), GalleryError> {
        if self.lock.is_some() {
            return Ok(());
        }
        debug_assert!(
            !self.has_staged_changes,
            "changes are staged only under the lock"
        );
        let lock = WriteLock::acquire(&self.dir, self.lock_wait)?;
        let committed = Gallery::read_generation(&self.dir)?;
        if committed != self.generation {
            tracing::info!(dir = %self.dir.display(), read = self.generation, committed, "the gallery changed since it was read; reading it again");
            let (policy, lock_wait) = (self.policy, self.lock_wait);
            *self = Gallery::open(&self.dir)?;
            self.policy = policy;
            self.lock_wait = lock_wait;
        }
        self.lock = Some(lock);
        Ok(())
    }

    /// Refuses what `enroll` refuses regardless of who is enrolled.
    fn check_enrolment(
        &self,
        id: &str,
        label: &str,
        model: &str,
        embedding: &[f32],
    ) -> Result<(), GalleryError> {
        if let Some(problem) = id_problem(id) {
            return Err(GalleryError::InvalidId {
                dir: self.dir.clone(),
                id: id.to_owned(),
                problem,
            });
        }
        if let Some(problem) = label_problem(label) {
            return Err(GalleryError::InvalidLabel {
                dir: self.dir.clone(),
                id: id.to_owned(),
                problem,
            });
        }
        if model != self.model {
            return Err(GalleryError::ModelMismatch {
                dir: self.dir.clone(),
                gallery_model: self.model.clone(),
                embedding_model: model.to_owned(),
            });
        }
        self.check_vector(embedding)?;
        let norm = norm(embedding);
        if (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
            return Err(GalleryError::NotUnitLength {
                dir: self.dir.clone(),
                norm,
            });
        }
        Ok(())
    }

    /// Refuses a vector of the wrong dimension or with a non-finite value.
    pub(super) fn check_vector(&self, vector: &[f32]) -> Result<(), GalleryError> {
        if vector.len() != self.dim as usize {
            return Err(GalleryError::DimMismatch {
                dir: self.dir.clone(),
                expected: self.dim,
                actual: vector.len(),
            });
        }
        if let Some(position) = vector.iter().position(|value| !value.is_finite()) {
            return Err(GalleryError::NonFinite {
                dir: self.dir.clone(),
                position,
            });
        }
        Ok(())
    }

    /// Adds a vector to the index and, for a compressed one, to the rescoring stage, where it
    /// lands at position `roster.positions()`, the position the roster gives the person next.
    fn add_vector(&mut self, faiss_id: i64, embedding: &[f32]) -> Result<(), GalleryError> {
        let _one_thread = OneThread::new();
        self.index
            .add_with_ids(embedding, &[Idx::from(faiss_id)])
            .map_err(|error| self.faiss_error("add a vector", error))?;
        if let Some(rescore) = &mut self.rescore
            && let Err(error) = rescore.add(embedding)
        {
            let error = self.faiss_error("add a vector to the rescoring stage", error);
            if let Err(undo_error) = self.remove_vector(faiss_id) {
                tracing::warn!(%undo_error, "cannot undo a half-done enrolment");
            }
            return Err(error);
        }
        Ok(())
    }

    fn remove_vector(&mut self, faiss_id: i64) -> Result<(), GalleryError> {
        let _one_thread = OneThread::new();
        let selector = IdSelector::batch(&[Idx::from(faiss_id)])
            .map_err(|error| self.faiss_error("select a vector", error))?;
        let removed = self
            .index
            .remove_ids(&selector)
            .map_err(|error| self.faiss_error("remove a vector", error))?;
        if self.trained.is_some() {
            // FAISS 1.12's fast-scan lists drop the entry but report 0 removed and leave ntotal
            // as it was (BlockInvertedLists::remove_ids counts after resizing), so the count
            // says nothing here; `commit` refills the lists to set ntotal right.
            self.lists_shrunk = true;
        } else if removed != 1 {
            tracing::warn!(
                faiss_id,
                removed,
                "index and identities disagreed on a removal"
            );
        }
        Ok(())
    }

    /// Drops removed people from the roster and, at the same positions, from the rescoring stage.
    pub(super) fn compact(&mut self) -> Result<(), GalleryError> {
        if !self.roster.has_removed() {
            return Ok(());
        }
        if let Some(rescore) = &mut self.rescore {
            let positions: Vec<Idx> = self
                .roster
                .removed_positions()
                .into_iter()
                .map(|position| Idx::new(position as u64))
                .collect();
            let removed = IdSelector::batch(&positions)
                .and_then(|selector| rescore.remove_ids(&selector))
                .map_err(|error| GalleryError::Faiss {
                    path: self.dir.clone(),
                    action: "drop removed people from the rescoring stage",
                    error,
                })?;
            if removed != positions.len() {
                return Err(self.invalid(&format!(
                    "the rescoring stage dropped {removed} of {} removed people",
                    positions.len()
                )));
            }
        }
        self.roster.compact();
        Ok(())
    }

    /// Marks the in-memory state as differing from the committed generation.
    fn staged(&mut self) {
        self.listing = OnceLock::new();
        self.has_staged_changes = true;
    }

    pub(super) fn invalid(&self, problem: &str) -> GalleryError {
        GalleryError::InvalidArgument {
            dir: self.dir.clone(),
            problem: problem.to_owned(),
        }
    }
}
