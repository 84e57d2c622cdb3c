//! The gallery: enrolled people's face embeddings in a FAISS inner-product index, kept in a
//! directory as numbered generations behind an atomically switched `manifest.json`.
//!
//! Writers stage enrolments and removals in memory and `commit` them as a new generation; readers
//! (the gate service) poll `Gallery::read_generation` and reopen when it moves. A crash at any
//! point of a commit leaves the old or the new generation, never a broken one.
//!
//! The index type follows the gallery's size (`IndexPolicy`): exact search for small galleries,
//! from `COMPRESS_AT` people on a trained, compressed IVF index whose candidates are rescored
//! from 6-bit codes, so that similarities stay within about 0.002 of the true cosine. A
//! compressed gallery keeps the original embeddings in a vectors file that only writers read, so
//! that it can be retrained when it has grown well past the size it was trained for, or turned
//! back into an exact one. Both happen in `commit`, inside the new generation: a reader keeps its
//! old generation, whole, until it opens the new one.

mod files;
mod openmp;
mod roster;
#[cfg(test)]
mod tests;
mod vectors;

use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use faiss::index::IndexImpl;
use faiss::index::autotune::ParameterSpace;
use faiss::index::io::{read_index, write_index};
use faiss::selector::IdSelector;
use faiss::{Idx, Index, MetricType, index_factory};
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use files::{FileEntry, Manifest, ManifestFiles, SearchParams};
use openmp::OneThread;
use roster::Roster;
use vectors::{VectorsReader, VectorsWriter};

/// Exact search: every query is compared with every enrolled face.
const EXACT_INDEX: &str = "IDMap2,Flat";

/// From this many people on, `commit` trains a compressed index. Below it exact search is cheap
/// enough to keep, and loses no recall: measured (`facegatectl bench gallery`) at about 9 ns per
/// person per query with AVX2 (18 ns without; so 0.45 to 0.9 ms at 50,000) and 670 bytes per
/// person in memory (33 MB). Both grow linearly, to 9-18 ms and 670 MB at a million, against
/// 0.5 ms (with AVX2) and 165 bytes for the compressed index.
pub const COMPRESS_AT: usize = 50_000;

/// A compressed index is retrained once the gallery is this many times larger, or smaller, than
/// the size it was trained for. Its cell count was chosen for that size, and new people are
/// encoded with codebooks that stay valid (they were trained on the same kind of embeddings), so
/// only the per-cell scan length drifts, and by 4x it is worth a rebuild.
pub const RETRAIN_FACTOR: usize = 4;

/// IVF cells per square root of the people trained for: 1M people get 256 cells of about 4,000,
/// 4M get 512. Few, long cells suit the 4-bit fast-scan codes, which are scanned in SIMD blocks of
/// 32 and pay a per-cell set-up cost; measured at 1M on uniform synthetic embeddings (the worst
/// case for IVF), 256 cells with half of them probed were faster than 1,024 or 4,096 cells at the
/// same recall.
const LISTS_PER_SQRT_PEOPLE: f64 = 0.25;
/// Smaller galleries still get 256 cells: at a given share probed, more cells find more (100k
/// people, half probed: 64 cells 98.7 %, 256 cells 99.7 %), and below 1M every query is cheap.
const MIN_LISTS: u32 = 256;
const MAX_LISTS: u32 = 4096;
/// k-means wants this many training points per cell (FAISS warns below it), which caps the cells
/// of the smallest compressed galleries (tests lower the threshold to a few hundred people).
const MIN_POINTS_PER_LIST: usize = 39;

/// The share of IVF cells searched per query. A face seen at the gate has cosine 0.6 to 0.85 with
/// its enrolment photo, far enough that its nearest cells are often not the enrolment's: among 1M
/// uniform embeddings in 256 cells, probing 3/8 of them found exact search's best match 98.6 % of
/// the time and probing 1/2 of them 99.5 %. Real embeddings cluster, which only helps.
const PROBE_SHARE: f64 = 0.5;

/// Candidates the compressed index passes to rescoring per result asked for. Its 4-bit codes
/// (one per 4 values) nearly always rank the enrolled face among the first 8 when its cell is
/// probed (recall@1 99.50 % with 8 candidates, 99.57 % with 16, at 1M), but underestimate
/// similarities by about 0.25, far too much for the gate's threshold; the 6-bit codes of the
/// second stage are off by 0.002 on average (0.01 at most over 3,000 benchmark queries).
const RESCORE_CANDIDATES_PER_RESULT: usize = 8;
/// The second stage: 96 bytes a face for SFace. 8 bits (128 bytes) would take a million-person
/// gallery from 165 to about 200 bytes a person, for an error of 0.001 rather than 0.002 that no
/// threshold needs.
const RESCORE_INDEX: &str = "SQ6";
/// Each dimension's quantisation range extends this share of the training sample's span beyond
/// it on both sides (see `stretch_ranges`). A quarter covers the extremes of 4x as many people as
/// the sample (about 4.9 rather than 4.3 standard deviations at a million) and costs 1.5x the
/// quantisation step, which the 0.002 average error above already includes.
const RESCORE_RANGE_MARGIN: f32 = 0.25;

/// k-means needs a sample, not everyone: FAISS itself caps training at 256 points per centroid.
const TRAIN_POINTS_PER_LIST: usize = 256;

/// Vectors moved per FAISS call when rebuilding an index or copying the vectors file.
const CHUNK: usize = 16_384;

/// Tolerance on an embedding's norm: embedders normalise in f32, so real ones land far inside it.
const UNIT_NORM_TOLERANCE: f64 = 1e-3;
const MAX_ID_CHARS: usize = 64;
const MAX_LABEL_CHARS: usize = 256;
const MAX_MODEL_CHARS: usize = 256;
/// Face embedders produce 128 to 512 values; far beyond that is a caller's mistake, not a model.
const MAX_DIM: u32 = 4096;
/// Rescoring decodes into a stack buffer of this many values (every face embedder fits).
const MAX_STACK_DIM: usize = 1024;

/// When a gallery switches index type and retrains: `COMPRESS_AT` and `RETRAIN_FACTOR` by
/// default; tests lower the threshold to exercise compressed galleries quickly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPolicy {
    /// From this many people on, the gallery uses a trained, compressed index.
    pub compress_at: usize,
    /// A compressed index is retrained once the gallery is this many times larger or smaller
    /// than the size it was trained for.
    pub retrain_factor: usize,
}

impl Default for IndexPolicy {
    fn default() -> Self {
        IndexPolicy {
            compress_at: COMPRESS_AT,
            retrain_factor: RETRAIN_FACTOR,
        }
    }
}

/// The compressed index for a given size: its factory strings and search parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CompressedLayout {
    /// The first stage, which finds candidates.
    factory: String,
    nlist: u32,
    nprobe: u32,
}

impl CompressedLayout {
    /// What the manifest records: FAISS's own notation for an index with a rescoring stage.
    fn index_type(&self) -> String {
        format!("{},Refine({RESCORE_INDEX})", self.factory)
    }

    fn for_size(dim: u32, people: usize) -> CompressedLayout {
        let wanted = (people as f64).sqrt() * LISTS_PER_SQRT_PEOPLE;
        // Powers of two keep the sizes few and the factory strings recognisable.
        let by_size = 2f64
            .powf(wanted.max(1.0).log2().round())
            .clamp(f64::from(MIN_LISTS), f64::from(MAX_LISTS)) as u32;
        let trainable = (people / MIN_POINTS_PER_LIST).max(1);
        let nlist = by_size.min(1 << trainable.ilog2());
        let nprobe = ((f64::from(nlist) * PROBE_SHARE).round() as u32).clamp(1, nlist);
        // 4-bit product quantisation of every 4 dimensions: dim/8 bytes a face (16 for SFace's
        // 128), scanned with SIMD table look-ups. Its sub-quantiser count must be even; a
        // dimension that does not allow that, which no face embedder has, falls back to 4-bit
        // scalar quantisation.
        let codes = if dim.is_multiple_of(8) {
            format!("PQ{}x4fs", dim / 4)
        } else {
            "SQ4".to_owned()
        };
        CompressedLayout {
            factory: format!("IVF{nlist},{codes}"),
            nlist,
            nprobe,
        }
    }
}

/// What a compressed gallery's manifest says about its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Trained {
    /// People when the index was trained; 0 if a manifest did not say.
    people: u64,
    nprobe: Option<u32>,
}

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

/// A point in `write_generation` where a test can stop the commit as a crash would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitStep {
    /// Only in generations of a compressed gallery, as is `RescoreWritten`.
    VectorsWritten,
    IndexWritten,
    RescoreWritten,
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
    /// `None` while the index is exact.
    trained: Option<Trained>,
    policy: IndexPolicy,
    next_faiss_id: i64,
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
            .finish_non_exhaustive()
    }
}

impl Gallery {
    /// Opens an existing gallery (verifies manifest + checksums). The vectors file of a
    /// compressed gallery is not read: only a commit needs it.
    pub fn open(dir: &Path) -> Result<Gallery, GalleryError> {
        let manifest = files::read_manifest(dir)?;
        let index_path = files::verify_file(dir, &manifest.files.index)?;
        let identities_path = dir.join(&manifest.files.identities.name);
        let identities_json = files::read_verified(dir, &manifest.files.identities)?;
        let roster =
            load_roster(&identities_json, &manifest).map_err(|error| GalleryError::Corrupt {
                path: identities_path.clone(),
                problem: format!("not a valid identities list: {error}"),
            })?;
        drop(identities_json);

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
        } else if index.ntotal() != roster.len() as u64 {
            Some(format!(
                "index holds {} vectors but {} lists {} people",
                index.ntotal(),
                manifest.files.identities.name,
                roster.len()
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
        let is_exact = manifest.index_type == EXACT_INDEX;
        let rescore = match &manifest.files.rescore {
            Some(entry) => Some(read_rescore(dir, entry, &manifest, roster.len())?),
            None if is_exact => None,
            None => {
                return Err(GalleryError::Corrupt {
                    path: dir.join(files::MANIFEST_NAME),
                    problem: format!("index_type {} lists no files.rescore", manifest.index_type),
                });
            }
        };
        // FAISS stores nprobe in the index file too; the manifest's value is the one this build
        // chose, and setting it also proves the index is the IVF index the manifest says.
        if let Some(SearchParams { nprobe }) = manifest.search {
            set_nprobe(&index, nprobe).map_err(|error| GalleryError::Corrupt {
                path: index_path.clone(),
                problem: format!("cannot set search.nprobe {nprobe} from manifest.json: {error}"),
            })?;
        }

        let trained = (!is_exact).then(|| Trained {
            people: manifest.trained_for.unwrap_or(0),
            nprobe: manifest.search.map(|search| search.nprobe),
        });
        let gallery = Gallery {
            dir: dir.to_path_buf(),
            generation: manifest.generation,
            model: manifest.model,
            dim: manifest.dim,
            index_type: manifest.index_type,
            trained,
            policy: IndexPolicy::default(),
            next_faiss_id: manifest.next_faiss_id,
            index,
            rescore,
            roster,
            files: manifest.files,
            pending_ids: Vec::new(),
            pending_vectors: Vec::new(),
            lists_shrunk: false,
            listing: OnceLock::new(),
            has_staged_changes: false,
        };
        tracing::debug!(dir = %dir.display(), generation = gallery.generation, people = gallery.len(), index_type = gallery.index_type, "opened gallery");
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

        let index = new_index(dir, dim, EXACT_INDEX)?;
        let mut gallery = Gallery {
            dir: dir.to_path_buf(),
            generation: 0,
            model: model.to_owned(),
            dim,
            index_type: EXACT_INDEX.to_owned(),
            trained: None,
            policy: IndexPolicy::default(),
            next_faiss_id: 0,
            index,
            rescore: None,
            roster: Roster::default(),
            files: ManifestFiles::default(),
            pending_ids: Vec::new(),
            pending_vectors: Vec::new(),
            lists_shrunk: false,
            listing: OnceLock::new(),
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
                        enrolled_at: rfc3339(person.enrolled_at),
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
        let ManifestFiles {
            index,
            identities,
            rescore,
            vectors,
        } = &self.files;
        [Some(index), Some(identities), rescore.as_ref()]
            .into_iter()
            .flatten()
            .map(|entry| (entry, true))
            .chain(vectors.iter().map(|entry| (entry, false)))
            .map(|(entry, read_on_open)| StoredFile {
                name: entry.name.clone(),
                bytes: entry.bytes,
                read_on_open,
            })
            .collect()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.roster.faiss_id_of(id).is_some()
    }

    /// Stages an enrolment in memory (not yet on disk). Refuses: embedding from another model
    /// (model string differs) or wrong dim or not unit length (|norm-1| > 1e-3) or non-finite
    /// values, empty/oversized id (allow [A-Za-z0-9._@-], 1..=64 chars), an id already enrolled
    /// unless `replace`. A replaced person gets a new FAISS id and enrolment time. A compressed
    /// index takes the new face without retraining; `commit` retrains when the gallery has
    /// outgrown it.
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
        let replaced_faiss_id = self.roster.faiss_id_of(id);
        if replaced_faiss_id.is_some() && !replace {
            return Err(GalleryError::AlreadyEnrolled {
                dir: self.dir.clone(),
                id: id.to_owned(),
            });
        }
        if !self.roster.has_room_for(id, label) {
            return Err(GalleryError::InvalidArgument {
                dir: self.dir.clone(),
                problem: "the ids and labels of everyone enrolled exceed 4 GiB".to_owned(),
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

        let _one_thread = OneThread::new();
        self.index
            .add_with_ids(embedding, &[Idx::from(faiss_id)])
            .map_err(|error| self.faiss_error("add a vector", error))?;
        if let Some(rescore) = &mut self.rescore {
            // Lands at position `roster.positions()`, where the roster puts the person below.
            if let Err(error) = rescore.add(embedding) {
                let error = self.faiss_error("add a vector to the rescoring stage", error);
                if let Err(undo_error) = self.remove_vector(faiss_id) {
                    tracing::warn!(%undo_error, "cannot undo a half-done enrolment");
                }
                return Err(error);
            }
        }
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
            .map_err(|error| GalleryError::InvalidArgument {
                dir: self.dir.clone(),
                problem: format!("cannot list {id}: {error:?}"),
            })?;
        if self.trained.is_some() {
            self.pending_ids.push(faiss_id);
            self.pending_vectors.extend_from_slice(embedding);
        }
        self.listing = OnceLock::new();
        self.has_staged_changes = true;
        Ok(())
    }

    /// Stages removal; Ok(false) if the id was not enrolled. The vector leaves the index, so the
    /// person stops matching at once in this process and, after commit, everywhere.
    pub fn remove(&mut self, id: &str) -> Result<bool, GalleryError> {
        let Some(faiss_id) = self.roster.faiss_id_of(id) else {
            return Ok(false);
        };
        self.remove_vector(faiss_id)?;
        self.roster.remove(id);
        self.listing = OnceLock::new();
        self.has_staged_changes = true;
        Ok(true)
    }

    /// Writes staged changes as generation+1, atomically; returns the new generation. No-op (same
    /// generation) when nothing was staged. This is where the index type follows the size: the
    /// new generation gets a trained, compressed index when the gallery reaches
    /// `compress_at` people or has outgrown its training, and an exact one when it falls below.
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
        let mut found = Vec::with_capacity(candidates);
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

    /// The inner product of `query` with the rescoring code at `position`.
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
        Ok(query.iter().zip(decoded.iter()).map(|(q, v)| q * v).sum())
    }

    /// The index the next generation should have, if not the one in memory.
    fn rebuild_plan(&self) -> Option<Option<CompressedLayout>> {
        let people = self.roster.len();
        let want_compressed = people >= self.policy.compress_at;
        match (self.trained, want_compressed) {
            (None, false) => None,
            (Some(_), false) => Some(None),
            (None, true) => Some(Some(CompressedLayout::for_size(self.dim, people))),
            (Some(trained), true) => {
                let factor = self.policy.retrain_factor.max(1) as u64;
                let (now, then) = (people as u64, trained.people);
                let outgrown =
                    now > then.saturating_mul(factor) || now.saturating_mul(factor) < then;
                outgrown.then(|| Some(CompressedLayout::for_size(self.dim, people)))
            }
        }
    }

    /// Writes the in-memory state as `generation` and switches the manifest to it. The files go
    /// beside the previous generation's, so until the rename a reader keeps seeing the old one;
    /// an index rebuilt here replaces the one in memory only once the switch has happened.
    fn write_generation(
        &mut self,
        generation: u64,
        mut after_step: impl FnMut(CommitStep) -> ControlFlow<()>,
    ) -> Result<(), GalleryError> {
        let dir = self.dir.clone();
        // Removed people's records and rescoring codes go first, in step, so that the files
        // written below hold everyone present at consecutive positions, as `open` expects.
        self.compact()?;
        let plan = self.rebuild_plan();
        let compressed = match &plan {
            Some(layout) => layout.is_some(),
            None => self.trained.is_some(),
        };
        // Leftovers of a crashed commit of this same generation are simply overwritten: no
        // manifest has ever named them.
        let vectors_entry = if compressed {
            let name = files::VECTORS_FILE.name(generation);
            let mut writer = VectorsWriter::create(&dir, name, self.dim)?;
            self.for_each_vector(|ids, vectors| {
                ids.iter()
                    .zip(vectors.chunks_exact(self.dim as usize))
                    .try_for_each(|(&id, vector)| writer.push(id, vector))
            })?;
            let entry = writer.finish()?;
            if after_step(CommitStep::VectorsWritten).is_break() {
                return Ok(());
            }
            Some(entry)
        } else {
            None
        };

        let rebuilt = match &plan {
            None if compressed && self.lists_shrunk => {
                let entry = vectors_entry
                    .as_ref()
                    .expect("a compressed gallery has vectors");
                Some(self.refill_compressed(&dir.join(files::INDEX_FILE.name(generation)), entry)?)
            }
            None => None,
            Some(Some(layout)) => {
                let entry = vectors_entry
                    .as_ref()
                    .expect("a compressed gallery has vectors");
                Some(self.build_compressed(layout, entry)?)
            }
            Some(None) => Some(self.build_exact()?),
        };
        let (index, rescore, index_type, trained) = match &rebuilt {
            Some(Rebuilt {
                index,
                stages: Some(stages),
            }) => (
                index,
                stages.rescore.as_ref(),
                stages.index_type.as_str(),
                stages.trained,
            ),
            Some(Rebuilt {
                index,
                stages: None,
            }) => (
                index,
                self.rescore.as_ref(),
                self.index_type.as_str(),
                self.trained,
            ),
            None => (
                &self.index,
                self.rescore.as_ref(),
                self.index_type.as_str(),
                self.trained,
            ),
        };
        let index_entry = write_index_file(&dir, files::INDEX_FILE.name(generation), index)?;
        if after_step(CommitStep::IndexWritten).is_break() {
            return Ok(());
        }
        let rescore_entry = match rescore {
            Some(rescore) => {
                let entry = write_index_file(&dir, files::RESCORE_FILE.name(generation), rescore)?;
                if after_step(CommitStep::RescoreWritten).is_break() {
                    return Ok(());
                }
                Some(entry)
            }
            None => None,
        };

        let identities_name = files::IDENTITIES_FILE.name(generation);
        let identities_path = dir.join(&identities_name);
        let identities_json = self.identities_json(&identities_path)?;
        files::write_durably(&identities_path, &identities_json)?;
        let identities_entry = files::entry_for_bytes(identities_name, &identities_json);
        drop(identities_json);
        if after_step(CommitStep::IdentitiesWritten).is_break() {
            return Ok(());
        }

        let manifest = Manifest {
            format: files::FORMAT_VERSION,
            generation,
            model: self.model.clone(),
            dim: self.dim,
            index_type: index_type.to_owned(),
            trained_for: trained.map(|trained| trained.people),
            search: trained
                .and_then(|trained| trained.nprobe)
                .map(|nprobe| SearchParams { nprobe }),
            next_faiss_id: self.next_faiss_id,
            files: ManifestFiles {
                index: index_entry,
                identities: identities_entry,
                rescore: rescore_entry,
                vectors: vectors_entry,
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
        // From here readers see the new generation, so this gallery takes it on even if the
        // final fsync fails.
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
        self.files = manifest.files;
        self.pending_ids = Vec::new();
        self.pending_vectors = Vec::new();
        self.has_staged_changes = false;
        if after_step(CommitStep::Renamed).is_break() {
            return Ok(());
        }
        files::sync_dir(&dir)?;
        files::remove_stale_generations(&dir, generation);
        tracing::debug!(dir = %dir.display(), generation, people = self.len(), index_type = self.index_type, "committed gallery generation");
        Ok(())
    }

    /// Calls `each` with every enrolled person's original embedding, in FAISS id order, in
    /// chunks: from the exact index itself, or from the vectors file of a compressed gallery
    /// plus the embeddings enrolled since.
    fn for_each_vector(
        &self,
        mut each: impl FnMut(&[i64], &[f32]) -> Result<(), GalleryError>,
    ) -> Result<(), GalleryError> {
        let dim = self.dim as usize;
        let mut ids = Vec::with_capacity(CHUNK);
        let mut chunk = Vec::with_capacity(CHUNK * dim);
        let mut delivered = 0;
        if self.trained.is_none() {
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
        } else {
            let entry = self.files.vectors.as_ref().ok_or_else(|| GalleryError::Corrupt {
                path: self.dir.join(files::MANIFEST_NAME),
                problem: format!(
                    "index {} is compressed but no vectors file is listed, so it cannot be rebuilt",
                    self.index_type
                ),
            })?;
            // The checksum is known only at the end; nothing built from this is published
            // before the commit's last step, which follows that.
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
        }
        debug_assert_eq!(delivered, self.roster.len());
        Ok(())
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

    /// Drops removed people from the roster and, at the same positions, from the rescoring stage.
    fn compact(&mut self) -> Result<(), GalleryError> {
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
                return Err(GalleryError::InvalidArgument {
                    dir: self.dir.clone(),
                    problem: format!(
                        "the rescoring stage dropped {removed} of {} removed people",
                        positions.len()
                    ),
                });
            }
        }
        self.roster.compact();
        Ok(())
    }

    /// Trains a compressed index on a sample of the vectors file just written and adds everyone.
    fn build_compressed(
        &self,
        layout: &CompressedLayout,
        entry: &FileEntry,
    ) -> Result<Rebuilt, GalleryError> {
        let people = self.roster.len();
        let mut index = new_index(&self.dir, self.dim, &layout.factory)?;
        let mut rescore = new_index(&self.dir, self.dim, RESCORE_INDEX)?;
        // An even spread over enrolment order, so that no era of enrolments dominates training.
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

    /// The compressed index emptied and given everyone again, training kept, so that its ntotal
    /// is right after removals (see `remove_vector`). FAISS cannot clone a fast-scan IVF index
    /// (clone_index does not know it), so the copy goes through its file format, at `scratch`,
    /// which the commit overwrites with the final index next.
    fn refill_compressed(
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
    fn build_exact(&self) -> Result<Rebuilt, GalleryError> {
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

    /// Calls `each` with the vectors file's records in chunks, in FAISS id order.
    fn read_vectors_file(
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

    /// The identities sidecar: a JSON array sorted by id, one person per line, so that a
    /// million people cost about 150 bytes each on disk rather than twice that pretty-printed.
    fn identities_json(&self, path: &Path) -> Result<Vec<u8>, GalleryError> {
        let mut people: Vec<roster::Person<'_>> = self.roster.iter().collect();
        people.sort_unstable_by(|a, b| a.id.cmp(b.id));
        let mut json = Vec::with_capacity(people.len() * 160 + 4);
        json.push(b'[');
        for (position, person) in people.iter().enumerate() {
            json.extend_from_slice(if position == 0 { b"\n" } else { b",\n" });
            let stored = StoredIdentity {
                faiss_id: person.faiss_id,
                id: person.id,
                label: person.label,
                enrolled_at: &rfc3339(person.enrolled_at),
                model: &self.model,
            };
            serde_json::to_writer(&mut json, &stored).map_err(|error| GalleryError::Corrupt {
                path: path.to_path_buf(),
                problem: format!("cannot serialise the identities: {error}"),
            })?;
        }
        json.extend_from_slice(b"\n]\n");
        Ok(json)
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

    fn faiss_error(&self, action: &'static str, error: faiss::error::Error) -> GalleryError {
        GalleryError::Faiss {
            path: self.dir.clone(),
            action,
            error,
        }
    }
}

/// An index built by a commit, which replaces the one in memory once the manifest names it.
struct Rebuilt {
    index: IndexImpl,
    /// `None` when only the index was refilled and the rest stays as it is.
    stages: Option<Stages>,
}

struct Stages {
    rescore: Option<IndexImpl>,
    index_type: String,
    trained: Option<Trained>,
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

/// Reads and checks a compressed gallery's rescoring stage.
fn read_rescore(
    dir: &Path,
    entry: &FileEntry,
    manifest: &Manifest,
    people: usize,
) -> Result<IndexImpl, GalleryError> {
    let path = files::verify_file(dir, entry)?;
    let rescore = read_index(faiss_path(&path)?).map_err(|error| GalleryError::Faiss {
        path: path.clone(),
        action: "read the rescoring stage",
        error,
    })?;
    if rescore.d() != manifest.dim || rescore.ntotal() != people as u64 {
        return Err(GalleryError::Corrupt {
            path,
            problem: format!(
                "holds {} vectors of {} dimensions, but the gallery has {people} people of {}",
                rescore.ntotal(),
                rescore.d(),
                manifest.dim
            ),
        });
    }
    Ok(rescore)
}

/// One entry of the identities sidecar as written; `Identity` is the same with owned fields.
#[derive(Serialize)]
struct StoredIdentity<'a> {
    faiss_id: i64,
    id: &'a str,
    label: &'a str,
    enrolled_at: &'a str,
    model: &'a str,
}

/// One entry as read, borrowing from the file's bytes where it can: a million people then cost
/// no allocations beyond the roster's own.
#[derive(Deserialize)]
struct LoadedIdentity<'a> {
    faiss_id: i64,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    label: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    enrolled_at: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
}

/// Reads the identities sidecar straight into a roster, checking each entry against the manifest.
fn load_roster(json: &[u8], manifest: &Manifest) -> Result<Roster, serde_json::Error> {
    struct Loader<'m> {
        manifest: &'m Manifest,
        /// A guess from the file size, to spare the roster most of its regrowth.
        expected_people: usize,
    }
    impl<'de> DeserializeSeed<'de> for Loader<'_> {
        type Value = Roster;
        fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Roster, D::Error> {
            de.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Loader<'_> {
        type Value = Roster;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of identities")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Roster, A::Error> {
            let mut roster = Roster::with_capacity(self.expected_people, self.expected_people * 24);
            let mut position = 0;
            while let Some(identity) = seq.next_element::<LoadedIdentity<'de>>()? {
                if let Err(problem) = add_loaded(&mut roster, &identity, self.manifest) {
                    return Err(A::Error::custom(format!(
                        "entry {position} ({:?}): {problem}",
                        identity.id
                    )));
                }
                position += 1;
            }
            roster.finish_unsorted().map_err(|faiss_id| {
                A::Error::custom(format!("faiss_id {faiss_id} listed twice"))
            })?;
            Ok(roster)
        }
    }
    let loader = Loader {
        manifest,
        expected_people: json.len() / 150,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let roster = loader.deserialize(&mut de)?;
    de.end()?;
    Ok(roster)
}

/// Adds one stored identity to the roster, or says what is wrong with it.
fn add_loaded(
    roster: &mut Roster,
    identity: &LoadedIdentity<'_>,
    manifest: &Manifest,
) -> Result<(), String> {
    if let Some(problem) = id_problem(&identity.id) {
        return Err(problem.to_owned());
    }
    if let Some(problem) = text_problem(&identity.label, MAX_LABEL_CHARS) {
        return Err(format!("label: {problem}"));
    }
    if identity.model != manifest.model {
        return Err(format!(
            "model {:?} differs from manifest.json's {:?}",
            identity.model, manifest.model
        ));
    }
    if !(0..manifest.next_faiss_id).contains(&identity.faiss_id) {
        return Err(format!(
            "faiss_id {} is outside 0..{} (manifest.json's next_faiss_id)",
            identity.faiss_id, manifest.next_faiss_id
        ));
    }
    let enrolled_at = chrono::DateTime::parse_from_rfc3339(&identity.enrolled_at)
        .map_err(|error| format!("enrolled_at {:?}: {error}", identity.enrolled_at))?
        .timestamp();
    roster
        .push_unsorted(
            identity.faiss_id,
            &identity.id,
            &identity.label,
            enrolled_at,
        )
        .map_err(|error| match error {
            roster::RosterError::IdTaken => "id listed twice".to_owned(),
            other => format!("cannot be listed: {other:?}"),
        })
}

fn rfc3339(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_index(dir: &Path, dim: u32, factory: &str) -> Result<IndexImpl, GalleryError> {
    index_factory(dim, factory, MetricType::InnerProduct).map_err(|error| GalleryError::Faiss {
        path: dir.to_path_buf(),
        action: "create the index",
        error,
    })
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

/// Sets an IVF index's probe count; an error for any other index.
fn set_nprobe(index: &IndexImpl, nprobe: u32) -> Result<(), faiss::error::Error> {
    ParameterSpace::new()?.set_index_parameter(index, "nprobe", nprobe)
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
