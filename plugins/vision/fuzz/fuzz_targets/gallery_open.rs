// SPDX-License-Identifier: MIT OR Apache-2.0
//! Arbitrary bytes as one file of a real gallery generation (the manifest as it is, or the
//! identities sidecar, the index or the rescoring stage with the manifest's checksums rewritten
//! to match, so that the checks behind them are reached), then `Gallery::open` and, if it opens,
//! a search. Any panic or crash is a finding; an error is the expected answer.

#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use facegate_vision::embedder::normalise;
use facegate_vision::gallery::{Gallery, IndexPolicy};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const MODEL: &str = "fuzz-model";
const DIM: u32 = 16;

/// A generation's files as committed, kept to restore the directory between inputs.
struct Base {
    dir: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

struct Bases {
    _temp: tempfile::TempDir,
    exact: Base,
    compressed: Base,
}

fn vector(seed: u64) -> Vec<f32> {
    let mut random = fastrand::Rng::with_seed(seed);
    let mut values: Vec<f32> = (0..DIM).map(|_| random.f32() * 2.0 - 1.0).collect();
    assert!(normalise(&mut values));
    values
}

fn base(dir: &Path, people: u64, policy: IndexPolicy) -> Base {
    let mut gallery = Gallery::create(dir, MODEL, DIM).unwrap();
    gallery.set_index_policy(policy);
    for n in 0..people {
        gallery
            .enroll(&format!("p-{n}"), "", MODEL, &vector(n), false)
            .unwrap();
    }
    gallery.commit().unwrap();
    let mut names = vec!["manifest.json".to_owned()];
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
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    Base {
        dir: dir.to_path_buf(),
        files,
    }
}

fn bases() -> &'static Bases {
    static BASES: OnceLock<Bases> = OnceLock::new();
    BASES.get_or_init(|| {
        let temp = tempfile::tempdir().unwrap();
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
    })
}

fn rewrite_checksums(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for entry in manifest["files"].as_object_mut().unwrap().values_mut() {
        let bytes = fs::read(dir.join(entry["name"].as_str().unwrap())).unwrap();
        entry["sha256"] = format!("{:x}", Sha256::digest(&bytes)).into();
        entry["bytes"] = bytes.len().into();
    }
    fs::write(&path, manifest.to_string()).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, content)) = data.split_first() else {
        return;
    };
    let bases = bases();
    let base = if choice & 0x80 == 0 {
        &bases.exact
    } else {
        &bases.compressed
    };
    for (name, bytes) in &base.files {
        fs::write(base.dir.join(name), bytes).unwrap();
    }
    let (name, _) = &base.files[usize::from(choice & 0x7f) % base.files.len()];
    fs::write(base.dir.join(name), content).unwrap();
    if name != "manifest.json" {
        rewrite_checksums(&base.dir);
    }
    if let Ok(mut gallery) = Gallery::open(&base.dir) {
        gallery.search(&vector(1), 5).unwrap();
    }
});
