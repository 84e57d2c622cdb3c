// SPDX-License-Identifier: MIT OR Apache-2.0
//! Arbitrary bytes as one file of a real gallery generation (the manifest as it is, or the
//! identities sidecar, the index or the rescoring stage with the manifest's checksums rewritten
//! to match, so that the checks behind them are reached), then `Gallery::open` and, if it opens,
//! a search. Any panic, crash, hang or unbounded allocation is a finding; an error is the
//! expected answer. The seeds (`gallery_open_seeds`) are the unchanged files, so the fuzzer
//! starts from valid manifests, identities and FAISS headers.

#![no_main]

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use facegate_vision::gallery::Gallery;
use facegate_vision_fuzz::{Bases, MANIFEST, vector};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn bases() -> &'static Bases {
    static BASES: OnceLock<Bases> = OnceLock::new();
    BASES.get_or_init(Bases::new)
}

fn rewrite_checksums(dir: &Path) {
    let path = dir.join(MANIFEST);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
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
    let base = bases().chosen(choice);
    for (name, bytes) in &base.files {
        fs::write(base.dir.join(name), bytes).unwrap();
    }
    let (name, _) =
        &base.files[usize::from(choice & !facegate_vision_fuzz::COMPRESSED_BIT) % base.files.len()];
    fs::write(base.dir.join(name), content).unwrap();
    if name != MANIFEST {
        rewrite_checksums(&base.dir);
    }
    if let Ok(mut gallery) = Gallery::open(&base.dir) {
        gallery.search(&vector(1), 5).unwrap();
    }
});
