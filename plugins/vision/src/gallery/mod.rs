//! The gallery: enrolled people's face embeddings in a FAISS inner-product index, kept in a
//! directory as numbered generations behind an atomically switched `manifest.json`.
//!
//! Writers stage enrolments and removals in memory and `commit` them as a new generation; readers
//! (the gate service) poll `Gallery::read_generation` and reopen when it moves. A crash at any
//! point of a commit leaves the old or the new generation, never a broken one.

mod files;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use faiss::index::IndexImpl;
use faiss::index::io::{read_index, write_index};
use faiss::selector::IdSelector;
use faiss::{Idx, Index, MetricType, index_factory};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use files::{Manifest, ManifestFiles};

/// Exact search; fine up to some hundred thousand people, which covers every gate we know of.
const INDEX_TYPE: &str = "IDMap2,Flat";
/// Tolerance on an embedding's norm: embedders normalise in f32, so real ones land far inside it.
const UNIT_NORM_TOLERANCE: f64 = 1e-3;
const MAX_ID_CHARS: usize = 64;
const MAX_LABEL_CHARS: usize = 256;
const MAX_MODEL_CHARS: usize = 256;
/// Face embedders produce 128 to 512 values; far beyond that is a caller's mistake, not a model.
const MAX_DIM: u32 = 4096;

/// Everything the gallery refuses or fails at. Each message is one complete line naming the path
/// and what is wrong, so causes are folded into it rather than chained as `source()`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GalleryError {
    #[error("{}: no gallery here (the file does not exist)", manifest.display())]
    NotFound { manifest: PathBuf },
    #[error("{}: a gallery already exists here", manifest.display())]
    AlreadyExists { manifest: PathBuf },
    #[error("{}: cannot {action}: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    /// A file of the gallery is missing, damaged or inconsistent with the manifest.
    #[error("{}: {problem}", path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("{}: FAISS could not {action}: {error}", path.display())]
    Faiss {
        path: PathBuf,
        action: &'static str,
        error: faiss::error::Error,
    },
    #[error("{}: {problem}", dir.display())]
    InvalidArgument { dir: PathBuf, problem: String },
    #[error("{}: invalid person id {id:?}: {problem}", dir.display())]
    InvalidId {
        dir: PathBuf,
        id: String,
        problem: &'static str,
    },
    #[error("{}: invalid label for {id}: {problem}", dir.display())]
    InvalidLabel {
        dir: PathBuf,
        id: String,
        problem: String,
    },
    #[error("{}: embedding is from model {embedding_model:?} but the gallery holds model {gallery_model:?}", dir.display())]
    ModelMismatch {
        dir: PathBuf,
        gallery_model: String,
        embedding_model: String,
    },
    #[error("{}: vector has {actual} dimensions but the gallery holds {expected}", dir.display())]
    DimMismatch {
        dir: PathBuf,
        expected: u32,
        actual: usize,
    },
    #[error("{}: vector has a non-finite value at position {position}", dir.display())]
    NonFinite { dir: PathBuf, position: usize },
    #[error("{}: embedding is not unit length (norm {norm:.6}); normalise it before enrolling", dir.display())]
    NotUnitLength { dir: PathBuf, norm: f64 },
    #[error("{}: {id} is already enrolled (enrol with replace to update it)", dir.display())]
    AlreadyEnrolled { dir: PathBuf, id: String },
}

/// One enrolled person, as stored in the identities sidecar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// A search hit. `similarity` is the cosine between the query and the enrolled embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub id: String,
    pub label: String,
    pub similarity: f32,
}

/// A point in `write_generation` where a test can stop the commit as a crash would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitStep {
    IndexWritten,
    IdentitiesWritten,
    ManifestTmpWritten,
    Renamed,
}

pub struct Gallery {
    dir: PathBuf,
    generation: u64,
    model: String,
    dim: u32,
    index_type: String,
    next_faiss_id: i64,
    /// Holds the staged state: enrolments and removals are applied at once, written at commit.
    index: IndexImpl,
    /// Keyed by person id, so listing comes out sorted.
    identities: BTreeMap<String, Identity>,
    id_by_faiss_id: HashMap<i64, String>,
    has_staged_changes: bool,
}

impl fmt::Debug for Gallery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gallery")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("model", &self.model)
            .field("dim", &self.dim)
            .field("index_type", &self.index_type)
            .field("len", &self.identities.len())
            .field("has_staged_changes", &self.has_staged_changes)
            .finish_non_exhaustive()
    }
}

impl Gallery {
    /// Opens an existing gallery (verifies manifest + checksums).
    pub fn open(dir: &Path) -> Result<Gallery, GalleryError> {
        let manifest = files::read_manifest(dir)?;
        let index_path = files::verify_file(dir, &manifest.files.index)?;
        let identities_path = dir.join(&manifest.files.identities.name);
        let identities_json = files::read_verified(dir, &manifest.files.identities)?;
        let identities: Vec<Identity> =
            serde_json::from_slice(&identities_json).map_err(|error| GalleryError::Corrupt {
                path: identities_path.clone(),
                problem: format!("not a valid identities list: {error}"),
            })?;

        let index = read_index(faiss_path(&index_path)?).map_err(|error| GalleryError::Faiss {
            path: index_path.clone(),
            action: "read the index",
            error,
        })?;
        let index_problem = if index.d() != manifest.dim {
            Some(format!(
                "index has {} dimensions, manifest.json says {}",
                index.d(),
                manifest.dim
            ))
        } else if index.metric_type() != MetricType::InnerProduct {
            Some("index does not use the inner-product metric".to_owned())
        } else if index.ntotal() != identities.len() as u64 {
            Some(format!(
                "index holds {} vectors but {} lists {} people",
                index.ntotal(),
                manifest.files.identities.name,
                identities.len()
            ))
        } else {
            None
        };
        if let Some(problem) = index_problem {
            return Err(GalleryError::Corrupt {
                path: index_path,
                problem,
            });
        }

        let mut gallery = Gallery {
            dir: dir.to_path_buf(),
            generation: manifest.generation,
            model: manifest.model,
            dim: manifest.dim,
            index_type: manifest.index_type,
            next_faiss_id: manifest.next_faiss_id,
            index,
            identities: BTreeMap::new(),
            id_by_faiss_id: HashMap::new(),
            has_staged_changes: false,
        };
        for (position, identity) in identities.into_iter().enumerate() {
            if let Some(problem) = gallery.stored_identity_problem(&identity) {
                return Err(GalleryError::Corrupt {
                    path: identities_path,
                    problem: format!("entry {position} ({:?}): {problem}", identity.id),
                });
            }
            gallery
                .id_by_faiss_id
                .insert(identity.faiss_id, identity.id.clone());
            gallery.identities.insert(identity.id.clone(), identity);
        }
        tracing::debug!(dir = %dir.display(), generation = gallery.generation, people = gallery.len(), "opened gallery");
        Ok(gallery)
    }

    /// Creates an empty gallery (generation 0 written to disk) for a given model and dim; error if
    /// one exists already.
    pub fn create(dir: &Path, model: &str, dim: u32) -> Result<Gallery, GalleryError> {
        let invalid = |problem: String| GalleryError::InvalidArgument {
            dir: dir.to_path_buf(),
            problem,
        };
        if let Some(problem) = model_problem(model) {
            return Err(invalid(format!("model: {problem}")));
        }
        if let Some(problem) = dim_problem(dim) {
            return Err(invalid(format!("dim: {problem}")));
        }
        std::fs::create_dir_all(dir).map_err(files::io_error(dir, "create the directory"))?;
        let manifest = dir.join(files::MANIFEST_NAME);
        if manifest
            .try_exists()
            .map_err(files::io_error(&manifest, "stat"))?
        {
            return Err(GalleryError::AlreadyExists { manifest });
        }

        let index = index_factory(dim, INDEX_TYPE, MetricType::InnerProduct).map_err(|error| {
            GalleryError::Faiss {
                path: dir.to_path_buf(),
                action: "create the index",
                error,
            }
        })?;
        let mut gallery = Gallery {
            dir: dir.to_path_buf(),
            generation: 0,
            model: model.to_owned(),
            dim,
            index_type: INDEX_TYPE.to_owned(),
            next_faiss_id: 0,
            index,
            identities: BTreeMap::new(),
            id_by_faiss_id: HashMap::new(),
            has_staged_changes: false,
        };
        gallery.write_generation(0, |_| ControlFlow::Continue(()))?;
        Ok(gallery)
    }

    /// Opens if present, else creates. An existing gallery for another model or dim is an error
    /// rather than a gallery whose every enrolment and search would then be refused.
    pub fn open_or_create(dir: &Path, model: &str, dim: u32) -> Result<Gallery, GalleryError> {
        // Only a missing manifest means "create": a damaged gallery must never be silently
        // replaced by an empty one.
        let gallery = match Gallery::open(dir) {
            Err(GalleryError::NotFound { .. }) => return Gallery::create(dir, model, dim),
            other => other?,
        };
        if gallery.model != model {
            return Err(GalleryError::ModelMismatch {
                dir: dir.to_path_buf(),
                gallery_model: gallery.model,
                embedding_model: model.to_owned(),
            });
        }
        if gallery.dim != dim {
            return Err(GalleryError::DimMismatch {
                dir: dir.to_path_buf(),
                expected: gallery.dim,
                actual: dim as usize,
            });
        }
        Ok(gallery)
    }

    /// Cheap: reads only manifest.json's generation (used by a watcher polling for changes every
    /// second).
    pub fn read_generation(dir: &Path) -> Result<u64, GalleryError> {
        files::read_manifest(dir).map(|manifest| manifest.generation)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The FAISS index factory string of this gallery's index, as its manifest records it.
    pub fn index_type(&self) -> &str {
        &self.index_type
    }

    pub fn dim(&self) -> u32 {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Enrolled people, sorted by id; staged changes included.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.identities.values()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.identities.contains_key(id)
    }

    /// Stages an enrolment in memory (not yet on disk). Refuses: embedding from another model
    /// (model string differs) or wrong dim or not unit length (|norm-1| > 1e-3) or non-finite
    /// values, empty/oversized id (allow [A-Za-z0-9._@-], 1..=64 chars), an id already enrolled
    /// unless `replace`. A replaced person gets a new FAISS id and enrolment time.
    pub fn enroll(
        &mut self,
        id: &str,
        label: &str,
        model: &str,
        embedding: &[f32],
        replace: bool,
    ) -> Result<(), GalleryError> {
        if let Some(problem) = id_problem(id) {
            return Err(GalleryError::InvalidId {
                dir: self.dir.clone(),
                id: id.to_owned(),
                problem,
            });
        }
        if let Some(problem) = text_problem(label, MAX_LABEL_CHARS) {
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
        let norm = embedding
            .iter()
            .map(|&value| f64::from(value) * f64::from(value))
            .sum::<f64>()
            .sqrt();
        if (norm - 1.0).abs() > UNIT_NORM_TOLERANCE {
            return Err(GalleryError::NotUnitLength {
                dir: self.dir.clone(),
                norm,
            });
        }
        let replaced_faiss_id = self.identities.get(id).map(|identity| identity.faiss_id);
        if replaced_faiss_id.is_some() && !replace {
            return Err(GalleryError::AlreadyEnrolled {
                dir: self.dir.clone(),
                id: id.to_owned(),
            });
        }
        let faiss_id = self.next_faiss_id;
        let next_faiss_id =
            faiss_id
                .checked_add(1)
                .ok_or_else(|| GalleryError::InvalidArgument {
                    dir: self.dir.clone(),
                    problem: "FAISS ids are exhausted".to_owned(),
                })?;

        self.index
            .add_with_ids(embedding, &[Idx::from(faiss_id)])
            .map_err(|error| self.faiss_error("add a vector", error))?;
        self.next_faiss_id = next_faiss_id;
        if let Some(old_faiss_id) = replaced_faiss_id {
            if let Err(error) = self.remove_vector(old_faiss_id) {
                // Keep the index and the identities in agreement: undo the add.
                if let Err(undo_error) = self.remove_vector(faiss_id) {
                    tracing::warn!(%undo_error, "cannot undo a half-done replacement");
                }
                return Err(error);
            }
            self.id_by_faiss_id.remove(&old_faiss_id);
        }
        self.id_by_faiss_id.insert(faiss_id, id.to_owned());
        self.identities.insert(
            id.to_owned(),
            Identity {
                faiss_id,
                id: id.to_owned(),
                label: label.to_owned(),
                enrolled_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                model: model.to_owned(),
            },
        );
        self.has_staged_changes = true;
        Ok(())
    }

    /// Stages removal; Ok(false) if the id was not enrolled. The vector leaves the index, so the
    /// person stops matching at once in this process and, after commit, everywhere.
    pub fn remove(&mut self, id: &str) -> Result<bool, GalleryError> {
        let Some(faiss_id) = self.identities.get(id).map(|identity| identity.faiss_id) else {
            return Ok(false);
        };
        self.remove_vector(faiss_id)?;
        self.identities.remove(id);
        self.id_by_faiss_id.remove(&faiss_id);
        self.has_staged_changes = true;
        Ok(true)
    }

    /// Writes staged changes as generation+1, atomically; returns the new generation. No-op (same
    /// generation) when nothing was staged.
    pub fn commit(&mut self) -> Result<u64, GalleryError> {
        self.commit_with(|_| ControlFlow::Continue(()))
    }

    /// `commit`, with a hook called after each step; a `Break` stops there and leaves the files
    /// exactly as a crash at that point would, which is how the tests exercise recovery.
    fn commit_with(
        &mut self,
        after_step: impl FnMut(CommitStep) -> ControlFlow<()>,
    ) -> Result<u64, GalleryError> {
        if !self.has_staged_changes {
            return Ok(self.generation);
        }
        let generation =
            self.generation
                .checked_add(1)
                .ok_or_else(|| GalleryError::InvalidArgument {
                    dir: self.dir.clone(),
                    problem: "generation numbers are exhausted".to_owned(),
                })?;
        self.write_generation(generation, after_step)?;
        Ok(self.generation)
    }

    /// Top-k by cosine, best first; refuses a query of the wrong dim. Returns fewer than k if the
    /// gallery is smaller. Staged changes are included. The similarity is the inner product, which
    /// is the cosine only for a unit-length query such as the embedder produces.
    pub fn search(&mut self, embedding: &[f32], k: usize) -> Result<Vec<Match>, GalleryError> {
        self.check_vector(embedding)?;
        // FAISS allocates k results per query whatever the gallery size, so k is capped first.
        let k = k.min(self.identities.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let result = self
            .index
            .search(embedding, k)
            .map_err(|error| self.faiss_error("search", error))?;
        let matches = result
            .labels
            .iter()
            .zip(&result.distances)
            .filter_map(|(label, &similarity)| {
                let id = self.id_by_faiss_id.get(&label.to_native())?;
                let identity = self.identities.get(id)?;
                Some(Match {
                    id: identity.id.clone(),
                    label: identity.label.clone(),
                    similarity,
                })
            })
            .collect();
        Ok(matches)
    }

    /// Writes the in-memory state as `generation` and switches the manifest to it. The files go
    /// beside the previous generation's, so until the rename a reader keeps seeing the old one.
    fn write_generation(
        &mut self,
        generation: u64,
        mut after_step: impl FnMut(CommitStep) -> ControlFlow<()>,
    ) -> Result<(), GalleryError> {
        let dir = self.dir.clone();
        // Leftovers of a crashed commit of this same generation are simply overwritten: no
        // manifest has ever named them.
        let index_name = files::index_file_name(generation);
        let index_path = dir.join(&index_name);
        write_index(&self.index, faiss_path(&index_path)?).map_err(|error| {
            GalleryError::Faiss {
                path: index_path.clone(),
                action: "write the index",
                error,
            }
        })?;
        files::sync_file(&index_path)?;
        let index_entry = files::entry_for_file(&dir, index_name)?;
        if after_step(CommitStep::IndexWritten).is_break() {
            return Ok(());
        }

        let identities_name = files::identities_file_name(generation);
        let identities_path = dir.join(&identities_name);
        let sorted: Vec<&Identity> = self.identities.values().collect();
        let mut identities_json =
            serde_json::to_vec_pretty(&sorted).map_err(|error| GalleryError::Corrupt {
                path: identities_path.clone(),
                problem: format!("cannot serialise the identities: {error}"),
            })?;
        identities_json.push(b'\n');
        files::write_durably(&identities_path, &identities_json)?;
        let identities_entry = files::entry_for_bytes(identities_name, &identities_json);
        if after_step(CommitStep::IdentitiesWritten).is_break() {
            return Ok(());
        }

        let manifest = Manifest {
            format: files::FORMAT_VERSION,
            generation,
            model: self.model.clone(),
            dim: self.dim,
            index_type: self.index_type.clone(),
            next_faiss_id: self.next_faiss_id,
            files: ManifestFiles {
                index: index_entry,
                identities: identities_entry,
            },
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        files::write_manifest_tmp(&dir, &manifest)?;
        if after_step(CommitStep::ManifestTmpWritten).is_break() {
            return Ok(());
        }

        // The new files' directory entries must be durable before the manifest naming them is.
        files::sync_dir(&dir)?;
        files::switch_manifest(&dir)?;
        // From here readers see the new generation, so this gallery reports it even if the final
        // fsync fails.
        self.generation = generation;
        self.has_staged_changes = false;
        if after_step(CommitStep::Renamed).is_break() {
            return Ok(());
        }
        files::sync_dir(&dir)?;
        files::remove_stale_generations(&dir, generation);
        tracing::debug!(dir = %dir.display(), generation, people = self.len(), "committed gallery generation");
        Ok(())
    }

    fn check_vector(&self, vector: &[f32]) -> Result<(), GalleryError> {
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

    fn remove_vector(&mut self, faiss_id: i64) -> Result<(), GalleryError> {
        let selector = IdSelector::batch(&[Idx::from(faiss_id)])
            .map_err(|error| self.faiss_error("select a vector", error))?;
        let removed = self
            .index
            .remove_ids(&selector)
            .map_err(|error| self.faiss_error("remove a vector", error))?;
        if removed != 1 {
            tracing::warn!(
                faiss_id,
                removed,
                "index and identities disagreed on a removal"
            );
        }
        Ok(())
    }

    fn faiss_error(&self, action: &'static str, error: faiss::error::Error) -> GalleryError {
        GalleryError::Faiss {
            path: self.dir.clone(),
            action,
            error,
        }
    }

    /// What is wrong with an identity read from disk, given the ones accepted before it.
    fn stored_identity_problem(&self, identity: &Identity) -> Option<String> {
        if let Some(problem) = id_problem(&identity.id) {
            return Some(problem.to_owned());
        }
        if let Some(problem) = text_problem(&identity.label, MAX_LABEL_CHARS) {
            return Some(format!("label: {problem}"));
        }
        if identity.model != self.model {
            return Some(format!(
                "model {:?} differs from manifest.json's {:?}",
                identity.model, self.model
            ));
        }
        if !(0..self.next_faiss_id).contains(&identity.faiss_id) {
            return Some(format!(
                "faiss_id {} is outside 0..{} (manifest.json's next_faiss_id)",
                identity.faiss_id, self.next_faiss_id
            ));
        }
        if self.identities.contains_key(&identity.id) {
            return Some("id listed twice".to_owned());
        }
        if self.id_by_faiss_id.contains_key(&identity.faiss_id) {
            return Some(format!("faiss_id {} listed twice", identity.faiss_id));
        }
        None
    }
}

/// FAISS takes file names as UTF-8 strings.
fn faiss_path(path: &Path) -> Result<&str, GalleryError> {
    path.to_str().ok_or_else(|| GalleryError::InvalidArgument {
        dir: path.to_path_buf(),
        problem: "path is not valid UTF-8, which FAISS file I/O requires".to_owned(),
    })
}

fn id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Some("must be 1 to 64 characters");
    }
    let is_allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !id.chars().all(is_allowed) {
        return Some("may contain only A-Z a-z 0-9 . _ @ -");
    }
    None
}

/// Labels and model names end up in logs and terminals, so control characters are refused.
fn text_problem(text: &str, max_chars: usize) -> Option<String> {
    if text.chars().count() > max_chars {
        return Some(format!("longer than {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Some("contains control characters".to_owned());
    }
    None
}

fn model_problem(model: &str) -> Option<String> {
    if model.is_empty() {
        return Some("empty".to_owned());
    }
    text_problem(model, MAX_MODEL_CHARS)
}

fn dim_problem(dim: u32) -> Option<String> {
    if dim == 0 || dim > MAX_DIM {
        return Some(format!("{dim} is outside 1..={MAX_DIM}"));
    }
    None
}
