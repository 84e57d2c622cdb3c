// SPDX-License-Identifier: MIT OR Apache-2.0
//! Everything the gallery refuses or fails at.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Each message is one complete line naming the path and what is wrong, so causes are folded into
/// it rather than chained as `source()`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GalleryError {
    #[error("{}: no gallery here (the file does not exist)", manifest.display())]
    NotFound { manifest: PathBuf },
    #[error("{}: a gallery already exists here", manifest.display())]
    AlreadyExists { manifest: PathBuf },
    /// Files of a gallery are here but not the manifest that says which are current.
    #[error("{}: gallery damaged, not replaced: {problem}", dir.display())]
    Damaged { dir: PathBuf, problem: String },
    /// Another writer holds the gallery's lock and did not commit within the wait.
    #[error("gallery {} is being changed by another process (pid {}); gave up after {} s", dir.display(), pid.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string()), waited.as_secs_f32())]
    Busy {
        dir: PathBuf,
        pid: Option<u32>,
        waited: Duration,
    },
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
