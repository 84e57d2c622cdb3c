// SPDX-License-Identifier: MIT OR Apache-2.0
//! Committing: the in-memory state written as a new generation beside the current one, then
//! switched to by renaming the manifest. A crash at any step leaves the old or the new
//! generation, whole.

use std::ops::ControlFlow;
use std::path::Path;

use faiss::index::IndexImpl;
use faiss::index::io::write_index;

use super::build::Rebuilt;
use super::files::{self, FileEntry};
use super::manifest::{self, FORMAT_VERSION, Manifest, ManifestFiles, SearchParams};
use super::policy::{Rebuild, Trained};
use super::vectors::VectorsWriter;
use super::{Gallery, GalleryError, faiss_path, identities};

/// A point in a commit where a test can stop it as a crash would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CommitStep {
    /// Only in generations of a compressed gallery, as is `RescoreWritten`.
    VectorsWritten,
    IndexWritten,
    RescoreWritten,
    IdentitiesWritten,
    ManifestTmpWritten,
    Renamed,
}

/// Why a commit stopped before its end.
enum Halt {
    Failed(GalleryError),
    /// The test hook asked for a stop where a crash would have been.
    Crashed,
}

impl From<GalleryError> for Halt {
    fn from(error: GalleryError) -> Halt {
        Halt::Failed(error)
    }
}

/// The hook a commit calls after each step, with the file that step wrote.
struct Steps<F>(F);

impl<F: FnMut(CommitStep, &Path) -> ControlFlow<()>> Steps<F> {
    fn reached(&mut self, step: CommitStep, written: &Path) -> Result<(), Halt> {
        match (self.0)(step, written) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Halt::Crashed),
        }
    }
}

/// What the new generation's index is: the one in memory or one rebuilt for it.
struct NextIndex<'a> {
    index: &'a IndexImpl,
    rescore: Option<&'a IndexImpl>,
    index_type: &'a str,
    trained: Option<Trained>,
}

impl Gallery {
    /// Writes staged changes as generation+1, atomically; returns the new generation. No-op (same
    /// generation) when nothing was staged. This is where the index type follows the size: the
    /// new generation gets a trained, compressed index when the gallery reaches
    /// `compress_at` people or has outgrown its training, and an exact one when it falls below.
    /// Releases the writer's lock, except when the commit fails: the staged changes then stay,
    /// under the lock, for another try.
    pub fn commit(&mut self) -> Result<u64, GalleryError> {
        self.commit_with(|_, _| ControlFlow::Continue(()))
    }

    /// `commit`, with a hook called after each step; a `Break` stops there and leaves the files
    /// exactly as a crash at that point would, which is how the tests exercise recovery.
    pub(super) fn commit_with(
        &mut self,
        after_step: impl FnMut(CommitStep, &Path) -> ControlFlow<()>,
    ) -> Result<u64, GalleryError> {
        if !self.has_staged_changes {
            self.lock = None;
            return Ok(self.generation);
        }
        let generation = self
            .generation
            .checked_add(1)
            .ok_or_else(|| self.invalid("generation numbers are exhausted"))?;
        let committed = Gallery::read_generation(&self.dir)?;
        if committed != self.generation {
            return Err(self.invalid(&format!(
                "generation {committed} was committed by a writer that did not take {}, over generation {} this commit would replace; nothing written",
                super::lock::LOCK_NAME,
                self.generation
            )));
        }
        self.write_generation(generation, after_step)?;
        Ok(self.generation)
    }

    /// Writes the empty generation 0 of a new gallery.
    pub(super) fn write_first_generation(&mut self) -> Result<(), GalleryError> {
        self.write_generation(0, |_, _| ControlFlow::Continue(()))
    }

    /// Writes the in-memory state as `generation` and switches the manifest to it. The files go
    /// beside the previous generation's, so until the rename a reader keeps seeing the old one;
    /// an index rebuilt here replaces the one in memory only once the switch has happened.
    fn write_generation(
        &mut self,
        generation: u64,
        after_step: impl FnMut(CommitStep, &Path) -> ControlFlow<()>,
    ) -> Result<(), GalleryError> {
        debug_assert!(self.lock.is_some(), "only the lock holder writes");
        match self.write_generation_steps(generation, &mut Steps(after_step)) {
            // A crash releases the lock too.
            Ok(()) | Err(Halt::Crashed) => {
                self.lock = None;
                Ok(())
            }
            Err(Halt::Failed(error)) => Err(error),
        }
    }

    fn write_generation_steps(
        &mut self,
        generation: u64,
        steps: &mut Steps<impl FnMut(CommitStep, &Path) -> ControlFlow<()>>,
    ) -> Result<(), Halt> {
        // Removed people's records and rescoring codes go first, in step, so that the files
        // written below hold everyone present at consecutive positions, as `open` expects.
        self.compact()?;
        let plan = self
            .policy
            .rebuild(self.trained, self.roster.len(), self.dim);
        let compressed = match &plan {
            Rebuild::Keep => self.trained.is_some(),
            Rebuild::Exact => false,
            Rebuild::Compressed(_) => true,
        };
        let dir = self.dir.clone();
        // Leftovers of a crashed commit of this same generation are simply overwritten: no
        // manifest has ever named them, and only the lock holder writes.
        let vectors = if compressed {
            let entry = self.write_vectors_file(generation)?;
            steps.reached(CommitStep::VectorsWritten, &dir.join(&entry.name))?;
            Some(entry)
        } else {
            None
        };
        let rebuilt = self.rebuild(&plan, vectors.as_ref(), generation)?;
        let next = self.next_index(rebuilt.as_ref());
        let index = write_index_file(&dir, files::INDEX_FILE.name(generation), next.index)?;
        steps.reached(CommitStep::IndexWritten, &dir.join(&index.name))?;
        let rescore = match next.rescore {
            Some(rescore) => {
                let entry = write_index_file(&dir, files::RESCORE_FILE.name(generation), rescore)?;
                steps.reached(CommitStep::RescoreWritten, &dir.join(&entry.name))?;
                Some(entry)
            }
            None => None,
        };
        let identities = self.write_identities_file(generation)?;
        steps.reached(CommitStep::IdentitiesWritten, &dir.join(&identities.name))?;

        let files = ManifestFiles {
            index,
            identities,
            rescore,
            vectors,
        };
        let manifest = self.manifest(generation, &next, files);
        let manifest_tmp = manifest::write_manifest_tmp(&dir, &manifest)?;
        steps.reached(CommitStep::ManifestTmpWritten, &manifest_tmp)?;

        // The new files' directory entries must be durable before the manifest naming them is.
        files::sync_dir(&dir)?;
        manifest::switch_manifest(&dir, &manifest_tmp)?;
        // From here readers see the new generation, so this gallery takes it on even if the
        // final fsync fails.
        self.adopt(generation, rebuilt, manifest.files);
        steps.reached(CommitStep::Renamed, &dir.join(manifest::MANIFEST_NAME))?;
        files::sync_dir(&dir)?;
        files::remove_stale_files(&dir, generation);
        tracing::debug!(dir = %dir.display(), generation, people = self.len(), index_type = self.index_type, "committed gallery generation");
        Ok(())
    }

    fn manifest(&self, generation: u64, next: &NextIndex<'_>, files: ManifestFiles) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            generation,
            model: self.model.clone(),
            dim: self.dim,
            index_type: next.index_type.to_owned(),
            trained_for: next.trained.map(|trained| trained.people),
            search: next
                .trained
                .and_then(|trained| trained.nprobe)
                .map(|nprobe| SearchParams { nprobe }),
            next_faiss_id: self.next_faiss_id,
            upstream_generation: self.upstream_generation,
            files,
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// Everyone's original embedding, as the new generation's vectors file.
    fn write_vectors_file(&self, generation: u64) -> Result<FileEntry, GalleryError> {
        let name = files::VECTORS_FILE.name(generation);
        let mut writer = VectorsWriter::create(&self.dir, name, self.dim)?;
        self.for_each_vector(|ids, vectors| {
            ids.iter()
                .zip(vectors.chunks_exact(self.dim as usize))
                .try_for_each(|(&id, vector)| writer.push(id, vector))
        })?;
        writer.finish()
    }

    /// Builds the index `plan` asks for, or refills the compressed one after removals.
    fn rebuild(
        &self,
        plan: &Rebuild,
        vectors: Option<&FileEntry>,
        generation: u64,
    ) -> Result<Option<Rebuilt>, GalleryError> {
        let vectors = || vectors.expect("a compressed gallery has vectors");
        Ok(match plan {
            Rebuild::Keep if self.trained.is_some() && self.lists_shrunk => {
                let scratch = self.dir.join(files::INDEX_FILE.name(generation));
                Some(self.refill_compressed(&scratch, vectors())?)
            }
            Rebuild::Keep => None,
            Rebuild::Compressed(layout) => Some(self.build_compressed(layout, vectors())?),
            Rebuild::Exact => Some(self.build_exact()?),
        })
    }

    fn next_index<'a>(&'a self, rebuilt: Option<&'a Rebuilt>) -> NextIndex<'a> {
        let current = NextIndex {
            index: &self.index,
            rescore: self.rescore.as_ref(),
            index_type: &self.index_type,
            trained: self.trained,
        };
        match rebuilt {
            None => current,
            Some(Rebuilt {
                index,
                stages: None,
            }) => NextIndex { index, ..current },
            Some(Rebuilt {
                index,
                stages: Some(stages),
            }) => NextIndex {
                index,
                rescore: stages.rescore.as_ref(),
                index_type: &stages.index_type,
                trained: stages.trained,
            },
        }
    }

    fn write_identities_file(&self, generation: u64) -> Result<FileEntry, GalleryError> {
        let name = files::IDENTITIES_FILE.name(generation);
        let path = self.dir.join(&name);
        let json = identities::to_json(&self.roster, &self.model).map_err(|error| {
            GalleryError::Corrupt {
                path: path.clone(),
                problem: format!("cannot serialise the identities: {error}"),
            }
        })?;
        files::write_durably(&path, &json)?;
        Ok(files::entry_for_bytes(name, &json))
    }

    /// Takes on the generation just switched to.
    fn adopt(&mut self, generation: u64, rebuilt: Option<Rebuilt>, files: ManifestFiles) {
        self.generation = generation;
        if let Some(rebuilt) = rebuilt {
            self.index = rebuilt.index;
            if let Some(stages) = rebuilt.stages {
                self.rescore = stages.rescore;
                self.index_type = stages.index_type;
                self.trained = stages.trained;
            }
        }
        self.lists_shrunk = false;
        self.files = files;
        self.pending_ids = Vec::new();
        self.pending_vectors = Vec::new();
        self.has_staged_changes = false;
    }
}

/// Writes an index as a generation's file, durably, and returns its manifest entry.
fn write_index_file(
    dir: &Path,
    name: String,
    index: &IndexImpl,
) -> Result<FileEntry, GalleryError> {
    let path = dir.join(&name);
    write_index(index, faiss_path(&path)?).map_err(|error| GalleryError::Faiss {
        path: path.clone(),
        action: "write the index",
        error,
    })?;
    files::sync_file(&path)?;
    files::entry_for_file(dir, name)
}
