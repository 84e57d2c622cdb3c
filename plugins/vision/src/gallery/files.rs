// SPDX-License-Identifier: MIT OR Apache-2.0
//! The checksummed files of each generation, and the durable-write steps that let a generation
//! switch survive a crash at any point.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::GalleryError;

/// A file of a generation as the manifest lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A kind of generation file: its name is the prefix, the generation number and the suffix.
#[derive(Clone, Copy)]
pub(super) struct GenerationFile {
    prefix: &'static str,
    suffix: &'static str,
}

pub(super) const INDEX_FILE: GenerationFile = GenerationFile {
    prefix: "index-",
    suffix: ".faiss",
};
pub(super) const IDENTITIES_FILE: GenerationFile = GenerationFile {
    prefix: "identities-",
    suffix: ".json",
};
pub(super) const RESCORE_FILE: GenerationFile = GenerationFile {
    prefix: "rescore-",
    suffix: ".faiss",
};
pub(super) const VECTORS_FILE: GenerationFile = GenerationFile {
    prefix: "vectors-",
    suffix: ".f32",
};

impl GenerationFile {
    pub fn name(self, generation: u64) -> String {
        format!("{}{generation}{}", self.prefix, self.suffix)
    }
}

/// Temporary manifests are named `manifest.json.<random>.tmp`.
pub(super) const MANIFEST_TMP_PREFIX: &str = "manifest.json.";
pub(super) const MANIFEST_TMP_SUFFIX: &str = ".tmp";

fn is_manifest_tmp(file_name: &str) -> bool {
    file_name.starts_with(MANIFEST_TMP_PREFIX) && file_name.ends_with(MANIFEST_TMP_SUFFIX)
}

/// The generation a file of ours belongs to; `None` for anything else in the directory.
fn generation_of(file_name: &str) -> Option<u64> {
    [INDEX_FILE, IDENTITIES_FILE, RESCORE_FILE, VECTORS_FILE]
        .iter()
        .find_map(|kind| {
            file_name
                .strip_prefix(kind.prefix)?
                .strip_suffix(kind.suffix)
        })?
        .parse()
        .ok()
}

pub(super) fn io_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> GalleryError {
    let path = path.to_path_buf();
    move |error| GalleryError::Io {
        path,
        action,
        error,
    }
}

pub(super) fn corrupt(path: &Path, problem: impl Into<String>) -> GalleryError {
    GalleryError::Corrupt {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Writes a whole file and forces it to disk before returning, so that a manifest written later
/// can never name data that a power cut could still take away.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), GalleryError> {
    let mut file = File::create(path).map_err(io_error(path, "create"))?;
    file.write_all(bytes).map_err(io_error(path, "write"))?;
    file.sync_all().map_err(io_error(path, "fsync"))
}

/// Forces a file written by someone else (FAISS) to disk.
pub(super) fn sync_file(path: &Path) -> Result<(), GalleryError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(io_error(path, "fsync"))
}

/// Makes created, renamed and deleted directory entries durable; file fsyncs do not cover them.
pub(super) fn sync_dir(dir: &Path) -> Result<(), GalleryError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir, "fsync the directory"))
}

pub(super) fn entry_for_bytes(name: String, bytes: &[u8]) -> FileEntry {
    FileEntry {
        name,
        sha256: format!("{:x}", Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    }
}

/// Hashes a file as it is on disk now, streaming, since an index may be far larger than memory
/// should hold twice.
pub(super) fn entry_for_file(dir: &Path, name: String) -> Result<FileEntry, GalleryError> {
    let path = dir.join(&name);
    let mut file = File::open(&path).map_err(io_error(&path, "open"))?;
    let mut hasher = Sha256::new();
    let bytes = io::copy(&mut file, &mut hasher).map_err(io_error(&path, "read"))?;
    Ok(FileEntry {
        name,
        sha256: format!("{:x}", hasher.finalize()),
        bytes,
    })
}

/// Reads a file named by the manifest, for a caller that needs it in memory anyway, and checks
/// its size and checksum.
pub(super) fn read_verified(dir: &Path, expected: &FileEntry) -> Result<Vec<u8>, GalleryError> {
    let path = dir.join(&expected.name);
    // Checking the size first keeps a swapped-in huge file from being read into memory.
    let mut file = open_listed(&path, expected)?;
    let mut bytes = Vec::with_capacity(usize::try_from(expected.bytes).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(io_error(&path, "read"))?;
    check_sha256(
        &path,
        expected,
        &entry_for_bytes(String::new(), &bytes).sha256,
    )?;
    Ok(bytes)
}

/// Opens a file named by the manifest and checks that it has the size recorded there.
pub(super) fn open_listed(path: &Path, expected: &FileEntry) -> Result<File, GalleryError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(corrupt(path, "missing, but manifest.json names it"));
        }
        Err(error) => return Err(io_error(path, "open")(error)),
    };
    let actual = file.metadata().map_err(io_error(path, "stat"))?.len();
    if actual != expected.bytes {
        return Err(corrupt(
            path,
            format!("{actual} bytes, but manifest.json says {}", expected.bytes),
        ));
    }
    Ok(file)
}

pub(super) fn check_sha256(
    path: &Path,
    expected: &FileEntry,
    actual: &str,
) -> Result<(), GalleryError> {
    if !actual.eq_ignore_ascii_case(&expected.sha256) {
        return Err(corrupt(
            path,
            format!(
                "sha256 {actual} does not match manifest.json's {}",
                expected.sha256
            ),
        ));
    }
    Ok(())
}

/// Names of the gallery's own files in `dir` (generation files and temporary manifests) other
/// than the manifest itself, sorted; empty for a directory that does not exist.
pub(super) fn gallery_files_in(dir: &Path) -> Result<Vec<String>, GalleryError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(dir, "list")(error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if generation_of(&name).is_some() || is_manifest_tmp(&name) {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// A few of `names`, for a one-line message.
pub(super) fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut list = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Deletes the files of generations older than the one before `current`, and temporary
/// manifests that crashed writers left. The one before stays because a reader may have read the
/// old manifest just before the switch and still be loading its files; newer ones are never
/// touched. Only the lock holder calls this, so no temporary manifest is another writer's work
/// in progress. Failures only cost disk space, so they are logged rather than returned.
pub(super) fn remove_stale_files(dir: &Path, current: u64) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot list the gallery to remove old generations");
            return;
        }
    };
    let keep_from = current.saturating_sub(1);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let is_stale = match generation_of(name) {
            Some(generation) => generation < keep_from,
            None => is_manifest_tmp(name),
        };
        if !is_stale {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed stale gallery file"),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot remove stale gallery file")
            }
        }
    }
}
