// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real gallery generations for the `gallery_open` fuzz target, made by the gallery's own writer:
//! the target restores one of them before each input, and `gallery_open_seeds` writes their files
//! out as the target's seed inputs, so that the fuzzer starts from valid manifests, identities and
//! FAISS headers instead of having to discover their formats.

use std::fs;
use std::path::{Path, PathBuf};

use facegate_vision::embedder::normalise;
use facegate_vision::gallery::{Gallery, IndexPolicy};

pub const MODEL: &str = "fuzz-model";
pub const DIM: u32 = 16;
pub const MANIFEST: &str = "manifest.json";

/// The input's first byte chooses the generation (its high bit) and the file of it that the
/// rest of the input replaces (the low bits, modulo the number of files).
pub const COMPRESSED_BIT: u8 = 0x80;

/// A generation's files as committed, kept to restore the directory between inputs.
pub struct Base {
    pub dir: PathBuf,
    /// The manifest first, then every file `Gallery::open` reads.
    pub files: Vec<(String, Vec<u8>)>,
}

/// An exact gallery of a few people and a compressed (trained IVF, rescored) one.
pub struct Bases {
    _temp: tempfile::TempDir,
    pub exact: Base,
    pub compressed: Base,
}

/// A unit vector, the same for the same seed.
pub fn vector(seed: u64) -> Vec<f32> {
    let mut random = fastrand::Rng::with_seed(seed);
    let mut values: Vec<f32> = (0..DIM).map(|_| random.f32() * 2.0 - 1.0).collect();
    assert!(normalise(&mut values), "a random vector has no direction");
    values
}

fn base(dir: &Path, people: u64, policy: IndexPolicy) -> Base {
    let mut gallery = Gallery::create(dir, MODEL, DIM).expect("create a gallery");
    gallery.set_index_policy(policy);
    for n in 0..people {
        gallery
            .enroll(&format!("p-{n}"), "", MODEL, &vector(n), false)
            .expect("enrol");
    }
    gallery.commit().expect("commit");
    let mut names = vec![MANIFEST.to_owned()];
    names.extend(
        gallery
            .files()
            .into_iter()
            .filter(|file| file.read_on_open)
            .map(|file| file.name),
    );
    let files = names
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).expect("read a committed file");
            (name, bytes)
        })
        .collect();
    Base {
        dir: dir.to_path_buf(),
        files,
    }
}

impl Bases {
    /// Writes both generations into a new temporary directory.
    pub fn new() -> Bases {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let exact = base(&temp.path().join("exact"), 3, IndexPolicy::default());
        let compressed = base(
            &temp.path().join("compressed"),
            700,
            IndexPolicy {
                compress_at: 700,
                ..IndexPolicy::default()
            },
        );
        Bases {
            _temp: temp,
            exact,
            compressed,
        }
    }

    pub fn chosen(&self, choice: u8) -> &Base {
        if choice & COMPRESSED_BIT == 0 {
            &self.exact
        } else {
            &self.compressed
        }
    }

    /// One input per file of each generation, that file unchanged: (a name for it, the input).
    pub fn seeds(&self) -> Vec<(String, Vec<u8>)> {
        let mut seeds = Vec::new();
        for (kind, bit, base) in [
            ("exact", 0, &self.exact),
            ("compressed", COMPRESSED_BIT, &self.compressed),
        ] {
            for (position, (name, bytes)) in base.files.iter().enumerate() {
                let choice = bit | u8::try_from(position).expect("a generation has few files");
                let mut input = vec![choice];
                input.extend_from_slice(bytes);
                seeds.push((format!("{kind}-{name}"), input));
            }
        }
        seeds
    }
}

impl Default for Bases {
    fn default() -> Self {
        Bases::new()
    }
}
