//! Opening a gallery: reading a generation and checking every file of it against its manifest
//! before anything searches it; and creating a new gallery.

use std::path::Path;
use std::sync::OnceLock;

use faiss::index::IndexImpl;
use faiss::index::io::read_index;
use faiss::{Index, MetricType};

use super::build::{new_index, set_nprobe};
use super::limits::{dim_problem, model_problem};
use super::manifest::{self, MANIFEST_NAME, Manifest, ManifestFiles, SearchParams};
use super::policy::{EXACT_INDEX, IndexPolicy, Trained};
use super::roster::Roster;
use super::{Gallery, GalleryError, faiss_path, files, identities};

impl Gallery {
    /// Opens an existing gallery (verifies manifest + checksums). The vectors file of a
    /// compressed gallery is not read: only a commit needs it.
    pub fn open(dir: &Path) -> Result<Gallery, GalleryError> {
        let manifest = manifest::read_manifest(dir)?;
        let index_path = files::verify_file(dir, &manifest.files.index)?;
        let roster = read_roster(dir, &manifest)?;
        let index = read_main_index(&index_path, &manifest, roster.len())?;
        let rescore = match &manifest.files.rescore {
            Some(entry) => Some(read_rescore(dir, entry, &manifest, roster.len())?),
            None if manifest.index_type == EXACT_INDEX => None,
            None => {
                return Err(GalleryError::Corrupt {
                    path: dir.join(MANIFEST_NAME),
                    problem: format!("index_type {} lists no files.rescore", manifest.index_type),
                });
            }
        };
        let gallery = Gallery::from_generation(dir, manifest, index, rescore, roster);
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
        let manifest = dir.join(MANIFEST_NAME);
        if manifest
            .try_exists()
            .map_err(files::io_error(&manifest, "stat"))?
        {
            return Err(GalleryError::AlreadyExists { manifest });
        }
        let index = new_index(dir, dim, EXACT_INDEX)?;
        let mut gallery = Gallery::empty(dir, model, dim, index);
        gallery.write_first_generation()?;
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
        manifest::read_manifest(dir).map(|manifest| manifest.generation)
    }

    fn from_generation(
        dir: &Path,
        manifest: Manifest,
        index: IndexImpl,
        rescore: Option<IndexImpl>,
        roster: Roster,
    ) -> Gallery {
        let trained = (manifest.index_type != EXACT_INDEX).then(|| Trained {
            people: manifest.trained_for.unwrap_or(0),
            nprobe: manifest.search.map(|search| search.nprobe),
        });
        Gallery {
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
        }
    }

    fn empty(dir: &Path, model: &str, dim: u32, index: IndexImpl) -> Gallery {
        Gallery {
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
        }
    }
}

/// Reads and checks the identities sidecar.
fn read_roster(dir: &Path, manifest: &Manifest) -> Result<Roster, GalleryError> {
    let entry = &manifest.files.identities;
    let json = files::read_verified(dir, entry)?;
    identities::load_roster(&json, manifest).map_err(|error| GalleryError::Corrupt {
        path: dir.join(&entry.name),
        problem: format!("not a valid identities list: {error}"),
    })
}

/// Reads the (verified) index and checks it against the manifest and the `people` its sidecar
/// lists.
fn read_main_index(
    path: &Path,
    manifest: &Manifest,
    people: usize,
) -> Result<IndexImpl, GalleryError> {
    let path = path.to_path_buf();
    let index = read_index(faiss_path(&path)?).map_err(|error| GalleryError::Faiss {
        path: path.clone(),
        action: "read the index",
        error,
    })?;
    let problem = if index.d() != manifest.dim {
        Some(format!(
            "index has {} dimensions, manifest.json says {}",
            index.d(),
            manifest.dim
        ))
    } else if index.metric_type() != MetricType::InnerProduct {
        Some("index does not use the inner-product metric".to_owned())
    } else if index.ntotal() != people as u64 {
        Some(format!(
            "index holds {} vectors but {} lists {people} people",
            index.ntotal(),
            manifest.files.identities.name,
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(GalleryError::Corrupt { path, problem });
    }
    // FAISS stores nprobe in the index file too; the manifest's value is the one this build
    // chose, and setting it also proves the index is the IVF index the manifest says.
    if let Some(SearchParams { nprobe }) = manifest.search {
        set_nprobe(&index, nprobe).map_err(|error| GalleryError::Corrupt {
            path: path.clone(),
            problem: format!("cannot set search.nprobe {nprobe} from manifest.json: {error}"),
        })?;
    }
    Ok(index)
}

/// Reads and checks a compressed gallery's rescoring stage.
fn read_rescore(
    dir: &Path,
    entry: &files::FileEntry,
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
