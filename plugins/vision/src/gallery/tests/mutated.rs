// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real generation files, mutated a few thousand ways from a fixed seed, most with the
//! manifest's checksums rewritten to match: opening each must give an error or a gallery that
//! can be searched, never a panic (nor a crash or an allocation without bound in FAISS, which
//! would end the test process). The cargo-fuzz target `gallery_open` (plugins/vision/fuzz)
//! explores the same path without the fixed budget.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use serde_json::Value;

use super::*;

const CASES_PER_GALLERY: usize = 1000;
const SEED: u64 = 0x0067_616c_6c65_7279;

/// The files `Gallery::open` reads, as committed.
struct Original {
    dir: PathBuf,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Original {
    fn of(gallery: &Gallery) -> Original {
        let dir = gallery.dir().to_path_buf();
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
                let path = dir.join(name);
                let bytes = fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        Original { dir, files }
    }

    fn restore(&self) {
        for (path, bytes) in &self.files {
            fs::write(path, bytes).unwrap();
        }
    }
}

/// Values that sit on the boundaries a reader must check: zero, one, counts of this gallery,
/// sign bits, all ones, and FAISS's own 2^40 limit.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    16,
    128,
    700,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX as u64,
    1 << 40,
    u64::MAX,
];

fn mutate_bytes(random: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    // Headers and counts sit near the start and around list boundaries; bias towards the start.
    let offset = |random: &mut fastrand::Rng| match len {
        0 => 0,
        _ if random.bool() => random.usize(..len.min(512)),
        _ => random.usize(..len),
    };
    match random.u8(..7) {
        0 if len > 0 => {
            let at = offset(random);
            bytes[at] ^= 1 << random.u8(..8);
        }
        1 if len > 0 => {
            let at = offset(random);
            bytes[at] = random.u8(..);
        }
        2 if len >= 8 => {
            let at = offset(random).min(len - 8);
            let value = INTERESTING[random.usize(..INTERESTING.len())];
            if random.bool() {
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            } else {
                bytes[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
            }
        }
        3 => bytes.truncate(random.usize(..=len)),
        4 => bytes.extend((0..random.usize(1..64)).map(|_| random.u8(..))),
        5 => {
            let at = offset(random);
            let inserted: Vec<u8> = (0..random.usize(1..16)).map(|_| random.u8(..)).collect();
            bytes.splice(at..at, inserted);
        }
        _ if len > 0 => {
            let at = offset(random);
            let end = (at + random.usize(1..64)).min(len);
            bytes.drain(at..end);
        }
        _ => bytes.push(random.u8(..)),
    }
}

/// Sets one of the manifest's fields to a value that is wrong for it, or right for another
/// gallery.
fn mutate_manifest(random: &mut fastrand::Rng, manifest: &mut Value) {
    const PATHS: [&str; 12] = [
        "/format",
        "/generation",
        "/model",
        "/dim",
        "/index_type",
        "/trained_for",
        "/search/nprobe",
        "/next_faiss_id",
        "/files/index/name",
        "/files/index/bytes",
        "/files/identities/name",
        "/files/rescore/name",
    ];
    let values: [Value; 14] = [
        Value::Null,
        0.into(),
        1.into(),
        (-1).into(),
        12.into(),
        16.into(),
        4097.into(),
        (1u64 << 53).into(),
        "".into(),
        "../index-1.faiss".into(),
        "IDMap2,Flat".into(),
        "IVF16,PQ32x4fs,Refine(SQ6)".into(),
        "IVF16,SQ4,Refine(SQ6)".into(),
        "rescore-1.faiss".into(),
    ];
    let path = PATHS[random.usize(..PATHS.len())];
    let value = values[random.usize(..values.len())].clone();
    if let Some(slot) = manifest.pointer_mut(path) {
        *slot = value;
    }
}

/// Opens the mutated gallery and, if it opens, searches it; false if that panicked.
fn opens_or_refuses(dir: &Path, query: &[f32], outcomes: &mut [usize; 2]) -> bool {
    let opened = catch_unwind(AssertUnwindSafe(|| match Gallery::open(dir) {
        Ok(mut gallery) => {
            if gallery.dim() as usize == query.len() {
                gallery.search(query, 5).unwrap();
            }
            true
        }
        Err(error) => {
            assert!(!error.to_string().contains('\n'), "{error}");
            false
        }
    }));
    match opened {
        Ok(ok) => {
            outcomes[usize::from(ok)] += 1;
            true
        }
        Err(_) => false,
    }
}

fn run_cases(gallery: &Gallery, random: &mut fastrand::Rng, outcomes: &mut [usize; 2]) {
    let original = Original::of(gallery);
    let mut query = unit_vector(100_003)[..gallery.dim() as usize].to_vec();
    assert!(normalise(&mut query));
    for case in 0..CASES_PER_GALLERY {
        let pick = random.usize(..original.files.len() + 1);
        let description = if pick == 0 {
            let mut manifest: Value = serde_json::from_slice(&original.files[0].1).unwrap();
            mutate_manifest(random, &mut manifest);
            fs::write(&original.files[0].0, manifest.to_string()).unwrap();
            format!("manifest fields: {manifest}")
        } else {
            let (path, bytes) = &original.files[pick - 1];
            let mut mutated = bytes.clone();
            mutate_bytes(random, &mut mutated);
            fs::write(path, &mutated).unwrap();
            let rewritten = path.file_name().unwrap() != "manifest.json" && random.f32() < 0.9;
            if rewritten {
                rewrite_checksums(&original.dir);
            }
            format!(
                "{} mutated, checksums rewritten: {rewritten}",
                path.display()
            )
        };
        assert!(
            opens_or_refuses(&original.dir, &query, outcomes),
            "case {case}: {description}: panicked"
        );
        original.restore();
    }
}

#[test]
fn mutated_generation_files_open_as_an_error_or_a_searchable_gallery() {
    let started = Instant::now();
    let mut random = fastrand::Rng::with_seed(SEED);
    let mut outcomes = [0usize; 2];

    let (_exact_temp, mut exact) = new_gallery();
    for seed in 1..=20 {
        enroll_seeded(&mut exact, &format!("p-{seed:03}"), seed);
    }
    exact.commit().unwrap();
    let (_compressed_temp, mut compressed) = new_gallery();
    compressed.set_index_policy(small_policy());
    enroll_fillers(&mut compressed, 0..SMALL_THRESHOLD);
    compressed.commit().unwrap();
    let scalar_temp = TempDir::new().unwrap();
    let mut scalar = Gallery::create(&scalar_temp.path().join("gallery"), MODEL, 12).unwrap();
    scalar.set_index_policy(small_policy());
    for n in 0..SMALL_THRESHOLD as u64 {
        let mut vector: Vec<f32> = unit_vector(n)[..12].to_vec();
        assert!(normalise(&mut vector));
        scalar
            .enroll(&format!("s-{n:04}"), "", MODEL, &vector, false)
            .unwrap();
    }
    scalar.commit().unwrap();
    assert_eq!(scalar.index_type(), "IVF16,SQ4,Refine(SQ6)");

    let set_up = started.elapsed();
    for gallery in [&exact, &compressed, &scalar] {
        run_cases(gallery, &mut random, &mut outcomes);
    }
    let [refused, opened] = outcomes;
    println!(
        "{} mutated generations: {refused} refused, {opened} opened and searched, in {:.1} s \
         (after {:.1} s building the galleries)",
        refused + opened,
        (started.elapsed() - set_up).as_secs_f32(),
        set_up.as_secs_f32()
    );
    assert_eq!(refused + opened, 3 * CASES_PER_GALLERY);
    // Both outcomes occur: changed vector values are still a valid gallery, changed structure
    // is not.
    assert!(refused > CASES_PER_GALLERY && opened > 100, "{outcomes:?}");
}
