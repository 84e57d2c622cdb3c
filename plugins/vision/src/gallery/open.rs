// SPDX-License-Identifier: MIT OR Apache-2.0
//! Opening a gallery: reading a generation and checking every file of it against its manifest
//! before anything searches it; and creating a new gallery.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use faiss::index::IndexImpl;
use faiss::index::io::read_index;

use super::build::{new_index, set_nprobe};
use super::index_file::{self, CheckedIndex, Expected};
use super::limits::{dim_problem, model_problem};
use super::lock::{DEFAULT_LOCK_WAIT, LOCK_NAME, WriteLock};
use super::manifest::{self, MANIFEST_NAME, Manifest, ManifestFiles};
use super::openmp::OneThread;
use super::policy::{EXACT_INDEX, IndexKind, IndexPolicy, Trained};
use super::roster::Roster;
use super::{Gallery, GalleryError, faiss_path, files, identities};

/// What an opener requires of the generation it opens.
#[derive(Clone, Copy)]
struct Requirement<'a> {
    model: &'a str,
    dim: u32,
}

impl Gallery {
    /// Opens an existing gallery for reading and searching: the manifest and every file the
    /// gate reads are checked (sizes, checksums, and the index files' layout against the
    /// manifest) before FAISS sees them. The vectors file of a compressed gallery is not read:
    /// only a commit needs it. Staging a change later takes the writer's lock (see `enroll`).
    pub fn open(dir: &Path) -> Result<Gallery, GalleryError> {
        Gallery::open_checked(dir, None)
    }

    /// `open`, refusing a generation of another model or dimension before reading its index
    /// (as a gate following a gallery must: its embedder's vectors would match nothing there).
    pub fn open_matching(dir: &Path, model: &str, dim: u32) -> Result<Gallery, GalleryError> {
        Gallery::open_checked(dir, Some(Requirement { model, dim }))
    }

    /// `open` with the writer's lock taken first (waiting up to `DEFAULT_LOCK_WAIT` for another
    /// writer), so that what is read is what the next commit changes; `commit` releases it.
    pub fn open_for_write(dir: &Path) -> Result<Gallery, GalleryError> {
        let lock = WriteLock::acquire(dir, DEFAULT_LOCK_WAIT)?;
        let mut gallery = Gallery::open(dir)?;
        gallery.lock = Some(lock);
        Ok(gallery)
    }

    /// Creates an empty gallery (generation 0 written to disk) for a given model and dim, in an
    /// empty or absent directory only: an existing gallery is an error, and so are the files of
    /// a damaged one (a gallery is never replaced by an empty one).
    pub fn create(dir: &Path, model: &str, dim: u32) -> Result<Gallery, GalleryError> {
        check_new(dir, model, dim)?;
        let lock = lock_new_dir(dir)?;
        Gallery::create_locked(dir, model, dim, lock)
    }

    /// `create` for a caller that holds the lock of `dir`.
    fn create_locked(
        dir: &Path,
        model: &str,
        dim: u32,
        lock: WriteLock,
    ) -> Result<Gallery, GalleryError> {
        check_empty(dir)?;
        let index = new_index(dir, dim, EXACT_INDEX)?;
        let mut gallery = Gallery::empty(dir, model, dim, index);
        gallery.lock = Some(lock);
        gallery.write_first_generation()?;
        Ok(gallery)
    }

    /// Opens if present, else creates. An existing gallery for another model or dim is an error
    /// rather than a gallery whose every enrolment and search would then be refused.
    pub fn open_or_create(dir: &Path, model: &str, dim: u32) -> Result<Gallery, GalleryError> {
        // Only a missing manifest in a directory without gallery files means "create": a
        // damaged gallery must never be silently replaced by an empty one.
        match Gallery::open_matching(dir, model, dim) {
            Err(GalleryError::NotFound { .. }) => match Gallery::create(dir, model, dim) {
                // Another writer created it meanwhile: open theirs.
                Err(GalleryError::AlreadyExists { .. }) => Gallery::open_matching(dir, model, dim),
                created => created,
            },
            other => other,
        }
    }

    /// `open_or_create` with the writer's lock taken first (waiting up to `DEFAULT_LOCK_WAIT`),
    /// so that what is read, or found absent, is what the next commit changes: two writers
    /// creating the same gallery at once both land in one gallery. `commit` releases the lock.
    pub fn open_or_create_for_write(
        dir: &Path,
        model: &str,
        dim: u32,
    ) -> Result<Gallery, GalleryError> {
        check_new(dir, model, dim)?;
        let lock = lock_new_dir(dir)?;
        match Gallery::open_matching(dir, model, dim) {
            Ok(mut gallery) => {
                gallery.lock = Some(lock);
                Ok(gallery)
            }
            Err(GalleryError::NotFound { .. }) => {
                // Writing the first generation is a commit, which lets go of the lock; the
                // creator holds on through a second handle, so that its first change builds on
                // what it created.
                let held_on = lock.try_clone()?;
                let mut gallery = Gallery::create_locked(dir, model, dim, lock)?;
                gallery.lock = Some(held_on);
                Ok(gallery)
            }
            Err(error) => Err(error),
        }
    }

    /// Cheap: reads only manifest.json's generation (used by a watcher polling for changes every
    /// second).
    pub fn read_generation(dir: &Path) -> Result<u64, GalleryError> {
        manifest::read_manifest(dir).map(|manifest| manifest.generation)
    }

    /// How long staging a change waits for another writer's commit before refusing
    /// (`DEFAULT_LOCK_WAIT` unless set).
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    fn open_checked(
        dir: &Path,
        required: Option<Requirement<'_>>,
    ) -> Result<Gallery, GalleryError> {
        let manifest = manifest::read_manifest(dir)?;
        if let Some(required) = required {
            check_requirement(dir, &manifest, required)?;
        }
        let kind = index_kind(dir, &manifest)?;
        let roster = read_roster(dir, &manifest)?;
        let index = read_main_index(dir, &manifest, kind, &roster)?;
        let rescore = match &manifest.files.rescore {
            Some(entry) => Some(read_rescore(dir, entry, &manifest, roster.len())?),
            None => None,
        };
        let gallery = Gallery::from_generation(dir, manifest, index, rescore, roster);
        tracing::debug!(dir = %dir.display(), generation = gallery.generation, people = gallery.len(), index_type = gallery.index_type, "opened gallery");
        Ok(gallery)
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
            upstream_generation: manifest.upstream_generation,
            index,
            rescore,
            roster,
            files: manifest.files,
            pending_ids: Vec::new(),
            pending_vectors: Vec::new(),
            lists_shrunk: false,
            listing: OnceLock::new(),
            has_staged_changes: false,
            lock: None,
            lock_wait: DEFAULT_LOCK_WAIT,
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
            upstream_generation: None,
            index,
            rescore: None,
            roster: Roster::default(),
            files: ManifestFiles::default(),
            pending_ids: Vec::new(),
            pending_vectors: Vec::new(),
            lists_shrunk: false,
            listing: OnceLock::new(),
            has_staged_changes: false,
            lock: None,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// Refuses a model or dimension no gallery can be created for.
fn check_new(dir: &Path, model: &str, dim: u32) -> Result<(), GalleryError> {
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
    Ok(())
}

/// Takes the lock of `dir`, creating the directory first if it is absent.
fn lock_new_dir(dir: &Path) -> Result<WriteLock, GalleryError> {
    std::fs::create_dir_all(dir).map_err(files::io_error(dir, "create the directory"))?;
    WriteLock::acquire(dir, DEFAULT_LOCK_WAIT)
}

/// Refuses to create a gallery where anything but a lock file is.
fn check_empty(dir: &Path) -> Result<(), GalleryError> {
    let manifest = dir.join(MANIFEST_NAME);
    if manifest
        .try_exists()
        .map_err(files::io_error(&manifest, "stat"))?
    {
        return Err(GalleryError::AlreadyExists { manifest });
    }
    let ours = files::gallery_files_in(dir)?;
    if !ours.is_empty() {
        return Err(GalleryError::Damaged {
            dir: dir.to_path_buf(),
            problem: format!(
                "{MANIFEST_NAME} is missing but gallery files are here ({})",
                files::name_list(&ours)
            ),
        });
    }
    let mut others = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(files::io_error(dir, "list"))? {
        let name = entry.map_err(files::io_error(dir, "list"))?.file_name();
        if name != LOCK_NAME {
            others.push(name.to_string_lossy().into_owned());
        }
    }
    if !others.is_empty() {
        others.sort_unstable();
        return Err(GalleryError::InvalidArgument {
            dir: dir.to_path_buf(),
            problem: format!(
                "not empty ({}); a gallery is created only in an empty or absent directory",
                files::name_list(&others)
            ),
        });
    }
    Ok(())
}

fn check_requirement(
    dir: &Path,
    manifest: &Manifest,
    required: Requirement<'_>,
) -> Result<(), GalleryError> {
    if manifest.model != required.model {
        return Err(GalleryError::ModelMismatch {
            dir: dir.to_path_buf(),
            gallery_model: manifest.model.clone(),
            embedding_model: required.model.to_owned(),
        });
    }
    if manifest.dim != required.dim {
        return Err(GalleryError::DimMismatch {
            dir: dir.to_path_buf(),
            expected: manifest.dim,
            actual: required.dim as usize,
        });
    }
    Ok(())
}

/// The manifest's index type, which must be one this build writes, with the files and search
/// parameters that type has.
fn index_kind(dir: &Path, manifest: &Manifest) -> Result<IndexKind, GalleryError> {
    let problem = |problem: String| GalleryError::Corrupt {
        path: dir.join(MANIFEST_NAME),
        problem,
    };
    let Some(kind) = IndexKind::parse(&manifest.index_type, manifest.dim) else {
        return Err(problem(format!(
            "index_type {:?} is not an index this build writes for {} dimensions",
            manifest.index_type, manifest.dim
        )));
    };
    let files = &manifest.files;
    match (kind, manifest.search) {
        (IndexKind::Exact, Some(search)) => Err(problem(format!(
            "search.nprobe {} is given for {}, an exact index, which has no nprobe",
            search.nprobe, files.index.name
        ))),
        (IndexKind::Exact, None) if files.rescore.is_some() || files.vectors.is_some() => Err(
            problem("files.rescore or files.vectors is listed for an exact index".to_owned()),
        ),
        (IndexKind::Compressed { nlist, .. }, search) => {
            let nprobe = search.map_or(0, |search| search.nprobe);
            if !(1..=nlist).contains(&nprobe) {
                return Err(problem(format!(
                    "search.nprobe {nprobe} is outside 1..={nlist} for {}",
                    manifest.index_type
                )));
            }
            if files.rescore.is_none() {
                return Err(problem(format!(
                    "index_type {} lists no files.rescore",
                    manifest.index_type
                )));
            }
            Ok(kind)
        }
        (IndexKind::Exact, None) => Ok(kind),
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

/// Checks the index file against the manifest and the roster, then has FAISS read it.
fn read_main_index(
    dir: &Path,
    manifest: &Manifest,
    kind: IndexKind,
    roster: &Roster,
) -> Result<IndexImpl, GalleryError> {
    let entry = &manifest.files.index;
    let people = roster.len() as u64;
    let checked = index_file::check(dir, entry, Expected::Main { kind }, manifest.dim, people)?;
    let path = dir.join(&entry.name);
    if !checked
        .ids
        .iter()
        .copied()
        .eq(roster.iter().map(|person| person.faiss_id))
    {
        return Err(GalleryError::Corrupt {
            path,
            problem: format!(
                "holds other FAISS ids than the {people} people {} lists",
                manifest.files.identities.name
            ),
        });
    }
    let index = read_checked(&checked, &path, "read the index")?;
    if let Some(search) = manifest.search {
        set_nprobe(&index, search.nprobe).map_err(|error| GalleryError::Corrupt {
            path: path.clone(),
            problem: format!(
                "cannot set search.nprobe {} from manifest.json: {error}",
                search.nprobe
            ),
        })?;
    }
    Ok(index)
}

/// Checks a compressed gallery's rescoring stage, then has FAISS read it.
fn read_rescore(
    dir: &Path,
    entry: &files::FileEntry,
    manifest: &Manifest,
    people: usize,
) -> Result<IndexImpl, GalleryError> {
    let checked = index_file::check(dir, entry, Expected::Rescore, manifest.dim, people as u64)?;
    read_checked(&checked, &dir.join(&entry.name), "read the rescoring stage")
}

fn read_checked(
    checked: &CheckedIndex,
    path: &Path,
    action: &'static str,
) -> Result<IndexImpl, GalleryError> {
    let faiss_file = checked.faiss_path();
    // Reading is sequential file I/O; the set-up FAISS runs in parallel after it (precomputed
    // tables) is small, and on busy cores waits for descheduled threads (see openmp.rs).
    let _one_thread = OneThread::new();
    read_index(faiss_path(&faiss_file)?).map_err(|error| GalleryError::Faiss {
        path: path.to_path_buf(),
        action,
        error,
    })
}
