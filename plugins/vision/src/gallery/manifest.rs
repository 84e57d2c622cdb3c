// SPDX-License-Identifier: MIT OR Apache-2.0
//! `manifest.json`: the only pointer to the current generation; replacing it is what switches
//! generations.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GalleryError;
use super::files::{self, FileEntry, corrupt, io_error};
use super::limits::{dim_problem, model_problem};

pub(super) const MANIFEST_NAME: &str = "manifest.json";
pub(super) const FORMAT_VERSION: u32 = 1;

/// A real manifest is well under a kilobyte; a large file there is something else and is not read.
const MANIFEST_MAX_BYTES: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub format: u32,
    pub generation: u64,
    pub model: String,
    pub dim: u32,
    pub index_type: String,
    /// How many people a compressed index was trained for; absent for the exact index (and in
    /// manifests written before compressed indexes existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_for: Option<u64>,
    /// Search parameters set on the index when it is opened; absent for the exact index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchParams>,
    pub next_faiss_id: i64,
    /// For a gallery that mirrors another (a gate's copy of the fleet's gallery): the
    /// generation of the source that this generation holds, written in the same switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_generation: Option<u64>,
    pub files: ManifestFiles,
    pub written_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SearchParams {
    /// IVF cells searched per query.
    pub nprobe: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManifestFiles {
    pub index: FileEntry,
    pub identities: FileEntry,
    /// A compressed index's second stage: everyone's embedding at 6 bits a value, in FAISS id
    /// order, to rescore the candidates the first stage finds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescore: Option<FileEntry>,
    /// The original embeddings, kept for retraining; only compressed galleries have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vectors: Option<FileEntry>,
}

/// What a file of a generation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileRole {
    Index,
    Identities,
    Rescore,
    Vectors,
}

impl FileRole {
    /// The file's key under `files` in the manifest.
    pub fn key(self) -> &'static str {
        match self {
            FileRole::Index => "index",
            FileRole::Identities => "identities",
            FileRole::Rescore => "rescore",
            FileRole::Vectors => "vectors",
        }
    }
}

impl ManifestFiles {
    /// Every file listed, with its role.
    pub fn entries(&self) -> impl Iterator<Item = (FileRole, &FileEntry)> {
        [
            Some((FileRole::Index, &self.index)),
            Some((FileRole::Identities, &self.identities)),
            self.rescore
                .as_ref()
                .map(|entry| (FileRole::Rescore, entry)),
            self.vectors
                .as_ref()
                .map(|entry| (FileRole::Vectors, entry)),
        ]
        .into_iter()
        .flatten()
    }
}

/// Reads and sanity-checks `dir/manifest.json`; it does not look at the files it names.
pub(super) fn read_manifest(dir: &Path) -> Result<Manifest, GalleryError> {
    let path = dir.join(MANIFEST_NAME);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(missing(dir, path)?),
        Err(error) => return Err(io_error(&path, "open")(error)),
    };
    let mut bytes = Vec::new();
    file.take(MANIFEST_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(&path, "read"))?;
    if bytes.len() as u64 > MANIFEST_MAX_BYTES {
        return Err(corrupt(
            &path,
            format!("larger than {MANIFEST_MAX_BYTES} bytes, so not a gallery manifest"),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|error| corrupt(&path, format!("not a valid gallery manifest: {error}")))?;
    if let Some(problem) = manifest_problem(&manifest) {
        return Err(corrupt(&path, problem));
    }
    Ok(manifest)
}

/// A missing manifest: no gallery, or a damaged one if files of one are here.
fn missing(dir: &Path, manifest: PathBuf) -> Result<GalleryError, GalleryError> {
    let found = files::gallery_files_in(dir)?;
    if found.is_empty() {
        return Ok(GalleryError::NotFound { manifest });
    }
    Ok(GalleryError::Damaged {
        dir: dir.to_path_buf(),
        problem: format!(
            "{MANIFEST_NAME} is missing but gallery files are here ({})",
            files::name_list(&found)
        ),
    })
}

fn manifest_problem(manifest: &Manifest) -> Option<String> {
    if manifest.format != FORMAT_VERSION {
        return Some(format!(
            "format {} is not supported (this build reads format {FORMAT_VERSION})",
            manifest.format
        ));
    }
    if let Some(problem) = model_problem(&manifest.model) {
        return Some(format!("model: {problem}"));
    }
    if let Some(problem) = dim_problem(manifest.dim) {
        return Some(format!("dim: {problem}"));
    }
    if manifest.next_faiss_id < 0 {
        return Some(format!(
            "next_faiss_id {} is negative",
            manifest.next_faiss_id
        ));
    }
    manifest
        .files
        .entries()
        .find_map(|(role, entry)| entry_problem(role, entry))
}

fn entry_problem(role: FileRole, entry: &FileEntry) -> Option<String> {
    let role = role.key();
    // The name is joined to the gallery directory, so it must not be able to point elsewhere.
    let is_plain_name = !entry.name.is_empty()
        && entry.name != "."
        && entry.name != ".."
        && !entry.name.contains(['/', '\\', '\0']);
    if !is_plain_name {
        return Some(format!(
            "files.{role}.name {:?} is not a plain file name",
            entry.name
        ));
    }
    let is_sha256_hex =
        entry.sha256.len() == 64 && entry.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_sha256_hex {
        return Some(format!("files.{role}.sha256 is not 64 hex digits"));
    }
    None
}

/// Writes the manifest beside the live one, durably, under a name no other writer can have
/// chosen, and returns its path; `switch_manifest` makes it the live one.
pub(super) fn write_manifest_tmp(dir: &Path, manifest: &Manifest) -> Result<PathBuf, GalleryError> {
    let mut text = serde_json::to_vec_pretty(manifest).map_err(|error| {
        corrupt(
            &dir.join(MANIFEST_NAME),
            format!("cannot serialise the manifest: {error}"),
        )
    })?;
    text.push(b'\n');
    let (mut file, path) = tempfile::Builder::new()
        .prefix(files::MANIFEST_TMP_PREFIX)
        .suffix(files::MANIFEST_TMP_SUFFIX)
        .tempfile_in(dir)
        .and_then(|file| file.keep().map_err(|error| error.error))
        .map_err(io_error(dir, "create a temporary manifest"))?;
    let written = file
        .write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error(&path, "write"));
    if written.is_err() {
        let _ = fs::remove_file(&path);
    }
    written.map(|()| path)
}

/// The commit point: after this rename a reader sees the new generation.
pub(super) fn switch_manifest(dir: &Path, tmp: &Path) -> Result<(), GalleryError> {
    fs::rename(tmp, dir.join(MANIFEST_NAME)).map_err(io_error(tmp, "rename over manifest.json"))
}
