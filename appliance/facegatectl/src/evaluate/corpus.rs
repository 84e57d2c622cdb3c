// SPDX-License-Identifier: MIT OR Apache-2.0
//! A corpus on disk: one folder per identity, one or more photos in each.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The file name endings read as photos; other files are left alone.
pub const PHOTO_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "ppm", "pgm", "bmp"];

/// One identity's photos, sorted by file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The folder's name.
    pub name: String,
    pub photos: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("corpus {path}: a folder name that is not UTF-8")]
    BadName { path: PathBuf },
    #[error("corpus {0}: no identity folder with a photo (expected DIR/<identity>/<photo>)")]
    Empty(PathBuf),
}

/// The identities under `dir`, sorted by name; folders without photos are left out, and
/// loose files directly in `dir` are not photos of anyone.
pub fn read(dir: &Path) -> Result<Vec<Identity>, CorpusError> {
    let unreadable = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Unreadable { path, source }
    };
    let mut identities = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable(dir))? {
        let entry = entry.map_err(unreadable(dir))?;
        let path = entry.path();
        if !path.is_dir() || is_hidden(&path) {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| CorpusError::BadName { path: path.clone() })?;
        let photos = photos_in(&path).map_err(unreadable(&path))?;
        if !photos.is_empty() {
            identities.push(Identity { name, photos });
        }
    }
    if identities.is_empty() {
        return Err(CorpusError::Empty(dir.to_path_buf()));
    }
    identities.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(identities)
}

fn photos_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    photos.retain(|p| p.is_file() && !is_hidden(p) && is_photo(p));
    photos.sort();
    Ok(photos)
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

fn is_photo(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        let e = e.to_string_lossy().to_ascii_lowercase();
        PHOTO_EXTENSIONS.contains(&e.as_str())
    })
}

/// How a photo is named in reports: `identity/file`, never the corpus's place on disk.
pub fn display_name(identity: &str, photo: &Path) -> String {
    let file = photo
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    format!("{identity}/{file}")
}

/// The sha256 over the sorted lines "identity/file <sha256 of the file>" of `photos`: the
/// same photos under the same names give the same digest wherever the corpus lies.
pub fn digest(photos: &[(String, PathBuf)]) -> io::Result<String> {
    let mut lines = photos
        .iter()
        .map(|(identity, path)| {
            let mut hasher = Sha256::new();
            io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
            Ok(format!(
                "{} {}\n",
                display_name(identity, path),
                facegate_vision::calibration::hex(&hasher.finalize())
            ))
        })
        .collect::<io::Result<Vec<String>>>()?;
    lines.sort();
    Ok(facegate_vision::calibration::hex(&Sha256::digest(
        lines.concat().as_bytes(),
    )))
}
