// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gallery: enrolled people's face embeddings in a FAISS inner-product index, kept in a
//! directory as numbered generations behind an atomically switched `manifest.json`.
//!
//! Writers stage enrolments and removals in memory and `commit` them as a new generation; readers
//! (the gate service) poll `Gallery::read_generation` and reopen when it moves. A crash at any
//! point of a commit leaves the old or the new generation, never a broken one. One writer at a
//! time: the first staged change takes the directory's lock (`lock.rs`) and re-reads the
//! committed generation if another writer moved it; the commit releases it. A reader checks
//! every file it reads against the manifest, FAISS files included (`index_file.rs`), before
//! anything searches them.
//!
//! The index type follows the gallery's size (`IndexPolicy`): exact search for small galleries,
//! from `COMPRESS_AT` people on a trained, compressed IVF index whose candidates are rescored
//! from 6-bit codes, so that similarities stay within about 0.002 of the true cosine. A
//! compressed gallery keeps the original embeddings in a vectors file that only writers read, so
//! that it can be retrained when it has grown well past the size it was trained for, or turned
//! back into an exact one. Both happen in `commit`, inside the new generation: a reader keeps its
//! old generation, whole, until it opens the new one.

mod build;
mod commit;
mod error;
mod files;
mod identities;
mod index_file;
mod limits;
mod lock;
mod manifest;
mod open;
mod openmp;
mod originals;
mod policy;
mod roster;
mod search;
mod staging;
#[cfg(test)]
pub(crate) mod tests;
mod vectors;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use faiss::index::IndexImpl;

pub use error::GalleryError;
pub use lock::DEFAULT_LOCK_WAIT;
pub use policy::{COMPRESS_AT, IndexPolicy, RETRAIN_FACTOR};

use lock::WriteLock;
use manifest::{FileRole, ManifestFiles};
use policy::Trained;
use roster::Roster;

/// One enrolled person, as stored in the identities sidecar.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The vector's id in the FAISS index. Never reused, so a stale index can never attribute a
    /// new person's face to an id it once gave someone else.
    pub faiss_id: i64,
    /// The operator's person id, e.g. "p-001".
    pub id: String,
    pub label: String,
    /// RFC 3339, UTC.
    pub enrolled_at: String,
    /// Identity of the embedding model that produced the vector.
    pub model: String,
}

/// A file of a gallery generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub name: String,
    pub bytes: u64,
    /// Whether `Gallery::open` reads it; the vectors file is read only by commits.
    pub read_on_open: bool,
}

/// A search hit. `similarity` is the cosine between the query and the enrolled embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub id: String,
    pub label: String,
    pub similarity: f32,
}

pub struct Gallery {
    dir: PathBuf,
    generation: u64,
    model: String,
    dim: u32,
    index_type: String,
    /// `None` while the index is exact.
    trained: Option<Trained>,
    policy: IndexPolicy,
    next_faiss_id: i64,
    /// See `upstream_generation()`; staged like an enrolment.
    upstream_generation: Option<u64>,
    /// Holds the staged state: enrolments and removals are applied at once, written at commit.
    index: IndexImpl,
    /// A compressed index's rescoring stage: position `i` holds the code of the roster's
    /// record `i` (removed people's codes stay until the roster is compacted, in step).
    rescore: Option<IndexImpl>,
    roster: Roster,
    /// The current generation's files, as its manifest lists them.
    files: ManifestFiles,
    /// Embeddings enrolled into a compressed index since the last commit, for the next vectors
    /// file; those removed again are skipped when it is written.
    pending_ids: Vec<i64>,
    pending_vectors: Vec<f32>,
    /// People were removed from the compressed index since the last commit (see `remove_vector`).
    lists_shrunk: bool,
    /// `identities()`, sorted by id, built when first asked for: the gate never lists people,
    /// so it never pays for a second copy of them.
    listing: OnceLock<Vec<Identity>>,
    has_staged_changes: bool,
    /// Held from the first staged change (or `open_for_write`) to the commit; staged changes
    /// exist only while it is held.
    lock: Option<WriteLock>,
    lock_wait: Duration,
}

impl fmt::Debug for Gallery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gallery")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("model", &self.model)
            .field("dim", &self.dim)
            .field("index_type", &self.index_type)
            .field("trained", &self.trained)
            .field("policy", &self.policy)
            .field("len", &self.roster.len())
            .field("has_staged_changes", &self.has_staged_changes)
            .field("holds_lock", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

impl Gallery {
    /// Replaces the size rules that the next commits follow (not stored in the gallery).
    pub fn set_index_policy(&mut self, policy: IndexPolicy) {
        self.policy = policy;
    }

    pub fn index_policy(&self) -> IndexPolicy {
        self.policy
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// For a gallery kept as a copy of another (a gate following the fleet's gallery): which
    /// generation of the source it holds, staged changes included. `None` for a gallery of its
    /// own. The number is written in the same manifest switch as the changes that brought it, so
    /// a crash never leaves one without the other.
    pub fn upstream_generation(&self) -> Option<u64> {
        self.upstream_generation
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The FAISS index factory string of this gallery's index, as its manifest records it
    /// (the type chosen at the last commit; staged enrolments do not change it).
    pub fn index_type(&self) -> &str {
        &self.index_type
    }

    /// Whether the index is the exact one rather than a trained, compressed one.
    pub fn is_exact(&self) -> bool {
        self.trained.is_none()
    }

    /// For a compressed index: the number of people it was trained for.
    pub fn trained_for(&self) -> Option<u64> {
        self.trained.map(|trained| trained.people)
    }

    /// For a compressed (IVF) index: how many cells a query searches.
    pub fn nprobe(&self) -> Option<u32> {
        self.trained.and_then(|trained| trained.nprobe)
    }

    pub fn dim(&self) -> u32 {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.roster.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roster.len() == 0
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enrolled people, sorted by id; staged changes included.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.listing
            .get_or_init(|| {
                let mut listing: Vec<Identity> = self
                    .roster
                    .iter()
                    .map(|person| Identity {
                        faiss_id: person.faiss_id,
                        id: person.id.to_owned(),
                        label: person.label.to_owned(),
                        enrolled_at: identities::rfc3339(person.enrolled_at),
                        model: self.model.clone(),
                    })
                    .collect();
                listing.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                listing
            })
            .iter()
    }

    /// The files of the current generation, as its manifest lists them.
    pub fn files(&self) -> Vec<StoredFile> {
        self.files
            .entries()
            .map(|(role, entry)| StoredFile {
                name: entry.name.clone(),
                bytes: entry.bytes,
                read_on_open: role != FileRole::Vectors,
            })
            .collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.roster.faiss_id_of(id).is_some()
    }

    /// The label of the person enrolled as `id`, staged changes included.
    pub fn label_of(&self, id: &str) -> Option<&str> {
        let faiss_id = self.roster.faiss_id_of(id)?;
        self.roster.by_faiss_id(faiss_id).map(|person| person.label)
    }

    fn faiss_error(&self, action: &'static str, error: faiss::error::Error) -> GalleryError {
        GalleryError::Faiss {
            path: self.dir.clone(),
            action,
            error,
        }
    }
}

/// FAISS takes file names as UTF-8 strings.
fn faiss_path(path: &Path) -> Result<&str, GalleryError> {
    path.to_str().ok_or_else(|| GalleryError::InvalidArgument {
        dir: path.to_path_buf(),
        problem: "path is not valid UTF-8, which FAISS file I/O requires".to_owned(),
    })
}
