// SPDX-License-Identifier: MIT OR Apache-2.0
use std::collections::BTreeSet;
use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use tempfile::TempDir;

use super::commit::CommitStep;
use super::*;
use crate::embedder::{cosine, normalise};

const MODEL: &str = "sface-2021dec-test";
const DIM: u32 = 128;

/// A deterministic pseudo-random unit vector: different seeds give nearly orthogonal vectors in
/// 128 dimensions, so each person is unambiguously their own best match.
fn unit_vector(seed: u64) -> Vec<f32> {
    let mut random = fastrand::Rng::with_seed(seed);
    let mut values: Vec<f32> = (0..DIM).map(|_| random.f32() * 2.0 - 1.0).collect();
    assert!(normalise(&mut values));
    values
}

fn new_gallery() -> (TempDir, Gallery) {
    let temp = TempDir::new().unwrap();
    let gallery = Gallery::create(&temp.path().join("gallery"), MODEL, DIM).unwrap();
    (temp, gallery)
}

fn enroll_seeded(gallery: &mut Gallery, id: &str, seed: u64) {
    gallery
        .enroll(
            id,
            &format!("Person {id}"),
            MODEL,
            &unit_vector(seed),
            false,
        )
        .unwrap();
}

fn ids(gallery: &Gallery) -> Vec<String> {
    gallery
        .identities()
        .map(|identity| identity.id.clone())
        .collect()
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Makes manifest.json's sizes and checksums match the files as they are now, as someone
/// crafting a gallery would, so that what a file holds is what gets checked.
pub(crate) fn rewrite_checksums(dir: &Path) {
    use sha2::{Digest, Sha256};
    let mut manifest = manifest_json(dir);
    let files = manifest["files"].as_object_mut().unwrap();
    for entry in files.values_mut() {
        let name = entry["name"].as_str().unwrap().to_owned();
        let bytes = fs::read(dir.join(&name)).unwrap();
        entry["sha256"] = format!("{:x}", Sha256::digest(&bytes)).into();
        entry["bytes"] = bytes.len().into();
    }
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

fn assert_one_line_naming(error: &GalleryError, file: &str) {
    let message = error.to_string();
    assert!(message.contains(file), "{message:?} should name {file}");
    assert!(!message.contains('\n'), "{message:?} should be one line");
}

#[test]
fn create_enroll_commit_reopen() {
    let (_temp, mut gallery) = new_gallery();
    assert_eq!(gallery.generation(), 0);
    assert!(gallery.is_empty());
    assert_eq!(Gallery::open(gallery.dir()).unwrap().generation(), 0);

    enroll_seeded(&mut gallery, "p-002", 2);
    enroll_seeded(&mut gallery, "p-001", 1);
    assert_eq!(gallery.commit().unwrap(), 1);

    let reopened = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(reopened.generation(), 1);
    assert_eq!(reopened.model(), MODEL);
    assert_eq!(reopened.dim(), DIM);
    assert_eq!(reopened.len(), 2);
    assert_eq!(ids(&reopened), ["p-001", "p-002"], "listed sorted by id");
    assert!(reopened.contains("p-001"));
    let identity = reopened.identities().next().unwrap();
    assert_eq!(identity.label, "Person p-001");
    assert_eq!(identity.model, MODEL);
    assert!(
        identity.enrolled_at.ends_with('Z') && identity.enrolled_at.len() == 20,
        "RFC 3339 UTC to the second: {}",
        identity.enrolled_at
    );
}

#[test]
fn commit_without_staged_changes_keeps_the_generation() {
    let (_temp, mut gallery) = new_gallery();
    assert_eq!(gallery.commit().unwrap(), 0);
    assert!(
        !gallery.remove("nobody").unwrap(),
        "nothing to remove stages nothing"
    );
    assert_eq!(gallery.commit().unwrap(), 0);
    assert_eq!(Gallery::read_generation(gallery.dir()).unwrap(), 0);
}

#[test]
fn read_generation_follows_commits() {
    let (_temp, mut gallery) = new_gallery();
    assert_eq!(Gallery::read_generation(gallery.dir()).unwrap(), 0);
    enroll_seeded(&mut gallery, "p-001", 1);
    assert_eq!(
        Gallery::read_generation(gallery.dir()).unwrap(),
        0,
        "staging does not touch the disk"
    );
    gallery.commit().unwrap();
    assert_eq!(Gallery::read_generation(gallery.dir()).unwrap(), 1);
    gallery.remove("p-001").unwrap();
    gallery.commit().unwrap();
    assert_eq!(Gallery::read_generation(gallery.dir()).unwrap(), 2);
}

#[test]
fn search_finds_own_vector_first_with_similarity_one() {
    let (_temp, mut gallery) = new_gallery();
    for seed in 1..=20 {
        enroll_seeded(&mut gallery, &format!("p-{seed:03}"), seed);
    }
    gallery.commit().unwrap();
    let mut reopened = Gallery::open(gallery.dir()).unwrap();

    for seed in 1..=20 {
        let matches = reopened.search(&unit_vector(seed), 3).unwrap();
        assert_eq!(matches.len(), 3);
        assert_eq!(matches[0].id, format!("p-{seed:03}"));
        assert_eq!(matches[0].label, format!("Person p-{seed:03}"));
        assert!(
            (matches[0].similarity - 1.0).abs() < 1e-4,
            "{:?}",
            matches[0]
        );
        assert!(
            matches[1].similarity < 0.5,
            "random vectors are far apart: {matches:?}"
        );
        assert!(
            matches
                .windows(2)
                .all(|pair| pair[0].similarity >= pair[1].similarity)
        );
    }
    assert_eq!(reopened.search(&unit_vector(1), 100).unwrap().len(), 20);
    assert!(reopened.search(&unit_vector(1), 0).unwrap().is_empty());
}

#[test]
fn search_of_an_empty_gallery_finds_nothing() {
    let (_temp, mut gallery) = new_gallery();
    assert!(gallery.search(&unit_vector(1), 5).unwrap().is_empty());
}

#[test]
fn removed_person_is_no_longer_found() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    enroll_seeded(&mut gallery, "p-002", 2);
    gallery.commit().unwrap();

    assert!(gallery.remove("p-001").unwrap());
    assert!(!gallery.remove("p-001").unwrap(), "already gone");
    assert!(!gallery.contains("p-001"));
    let matches = gallery.search(&unit_vector(1), 5).unwrap();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].id, "p-002", "removal acts before the commit too");
    gallery.commit().unwrap();

    let mut reopened = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(reopened.len(), 1);
    assert_eq!(ids(&reopened), ["p-002"]);
    let matches = reopened.search(&unit_vector(1), 5).unwrap();
    assert!(
        matches.iter().all(|found| found.id != "p-001"),
        "{matches:?}"
    );
}

#[test]
fn enroll_refuses_another_model() {
    let (_temp, mut gallery) = new_gallery();
    let error = gallery
        .enroll("p-001", "A", "arcface-w600k", &unit_vector(1), false)
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::ModelMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("arcface-w600k"), "{error}");
    assert!(gallery.is_empty());
}

#[test]
fn wrong_dim_is_refused_by_enroll_and_search() {
    let (_temp, mut gallery) = new_gallery();
    let short = vec![1.0; 64];
    let error = gallery
        .enroll("p-001", "A", MODEL, &short, false)
        .unwrap_err();
    assert!(
        matches!(
            error,
            GalleryError::DimMismatch {
                expected: 128,
                actual: 64,
                ..
            }
        ),
        "{error}"
    );
    let error = gallery.search(&short, 1).unwrap_err();
    assert!(matches!(error, GalleryError::DimMismatch { .. }), "{error}");
    assert!(gallery.search(&[], 1).is_err());
}

#[test]
fn enroll_refuses_vectors_that_are_not_unit_or_not_finite() {
    let (_temp, mut gallery) = new_gallery();
    let doubled: Vec<f32> = unit_vector(1).iter().map(|v| v * 2.0).collect();
    let error = gallery
        .enroll("p-001", "A", MODEL, &doubled, false)
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::NotUnitLength { .. }),
        "{error}"
    );
    let zero = vec![0.0; DIM as usize];
    assert!(gallery.enroll("p-001", "A", MODEL, &zero, false).is_err());
    let mut with_nan = unit_vector(1);
    with_nan[5] = f32::NAN;
    let error = gallery
        .enroll("p-001", "A", MODEL, &with_nan, false)
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::NonFinite { position: 5, .. }),
        "{error}"
    );
    assert!(gallery.search(&with_nan, 1).is_err());
    assert!(gallery.is_empty());
}

#[test]
fn enroll_refuses_bad_ids_and_labels() {
    let (_temp, mut gallery) = new_gallery();
    let vector = unit_vector(1);
    for bad_id in ["", "p 001", "p/001", "../x", "pé", &"x".repeat(65)] {
        let error = gallery
            .enroll(bad_id, "A", MODEL, &vector, false)
            .unwrap_err();
        assert!(
            matches!(error, GalleryError::InvalidId { .. }),
            "{bad_id:?}: {error}"
        );
    }
    for good_id in ["p-001", "a.b_c@d-E9", &"x".repeat(64)] {
        gallery.enroll(good_id, "A", MODEL, &vector, false).unwrap();
    }
    let error = gallery
        .enroll("p-002", "two\nlines", MODEL, &vector, false)
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::InvalidLabel { .. }),
        "{error}"
    );
}

#[test]
fn labels_with_a_bidi_control_or_nothing_visible_are_refused() {
    let (_temp, mut gallery) = new_gallery();
    let vector = unit_vector(1);
    for (bad, problem) in [
        ("\u{202E}gnp.exe", "U+202E"),
        ("Ada\u{2066}", "U+2066"),
        ("\u{200B}\u{200D}\u{FEFF}", "no visible character"),
        (" \u{3164} ", "no visible character"),
    ] {
        let error = gallery
            .enroll("p-001", bad, MODEL, &vector, false)
            .unwrap_err();
        assert!(
            matches!(error, GalleryError::InvalidLabel { .. })
                && error.to_string().contains(problem),
            "{bad:?}: {error}"
        );
    }
    // Empty is "no label"; scripts without Latin letters and emoji are labels.
    for (n, good) in ["", "Ада", "李明", "مريم", "🙂"].into_iter().enumerate() {
        gallery
            .enroll(
                &format!("p-{n}"),
                good,
                MODEL,
                &unit_vector(n as u64),
                false,
            )
            .unwrap();
    }
    assert_eq!(gallery.label_of("p-1"), Some("Ада"));
}

#[test]
fn open_or_create_for_write_holds_the_lock_from_before_it_looks() {
    let temp = TempDir::new().unwrap();
    let dir = temp.path().join("gallery");
    let mut first = Gallery::open_or_create_for_write(&dir, MODEL, DIM).unwrap();
    // A second writer waits for the first's commit, then opens what it committed.
    let second = std::thread::spawn({
        let dir = dir.clone();
        move || Gallery::open_or_create_for_write(&dir, MODEL, DIM)
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        !second.is_finished(),
        "the second writer waits for the lock"
    );
    enroll_seeded(&mut first, "p-001", 1);
    assert_eq!(first.commit().unwrap(), 1);
    let mut second = second.join().unwrap().unwrap();
    assert_eq!(
        (second.generation(), ids(&second)),
        (1, vec!["p-001".to_owned()])
    );
    enroll_seeded(&mut second, "p-002", 2);
    assert_eq!(second.commit().unwrap(), 2);
    let error = Gallery::open_or_create_for_write(&dir, "another-model", DIM).unwrap_err();
    assert!(
        matches!(error, GalleryError::ModelMismatch { .. }),
        "{error}"
    );
}

#[test]
fn duplicate_id_is_refused_unless_replace() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();

    let error = gallery
        .enroll("p-001", "Again", MODEL, &unit_vector(2), false)
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::AlreadyEnrolled { .. }),
        "{error}"
    );

    gallery
        .enroll("p-001", "Renewed", MODEL, &unit_vector(2), true)
        .unwrap();
    gallery.commit().unwrap();
    let mut reopened = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(reopened.len(), 1);
    let best = &reopened.search(&unit_vector(2), 1).unwrap()[0];
    assert_eq!(
        (best.id.as_str(), best.label.as_str()),
        ("p-001", "Renewed")
    );
    assert!((best.similarity - 1.0).abs() < 1e-4);
    let old_face = &reopened.search(&unit_vector(1), 1).unwrap()[0];
    assert!(
        old_face.similarity < 0.5,
        "the old vector is gone: {old_face:?}"
    );
}

#[test]
fn corrupt_index_file_is_named_by_open() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();
    let index_file = gallery.dir().join("index-1.faiss");
    let mut bytes = fs::read(&index_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&index_file, bytes).unwrap();

    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert!(matches!(error, GalleryError::Corrupt { .. }), "{error}");
    assert_one_line_naming(&error, "index-1.faiss");
    assert!(error.to_string().contains("sha256"), "{error}");
}

#[test]
fn missing_or_truncated_identities_file_is_named_by_open() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();
    let identities_file = gallery.dir().join("identities-1.json");

    let bytes = fs::read(&identities_file).unwrap();
    fs::write(&identities_file, &bytes[..bytes.len() - 3]).unwrap();
    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert_one_line_naming(&error, "identities-1.json");
    assert!(error.to_string().contains("bytes"), "{error}");

    fs::remove_file(&identities_file).unwrap();
    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert_one_line_naming(&error, "identities-1.json");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn missing_manifest_is_a_clear_error() {
    let temp = TempDir::new().unwrap();
    let error = Gallery::open(temp.path()).unwrap_err();
    assert!(matches!(error, GalleryError::NotFound { .. }), "{error}");
    assert_one_line_naming(&error, "manifest.json");
    assert!(Gallery::read_generation(temp.path()).is_err());
}

#[test]
fn garbage_manifest_is_a_clear_error_naming_manifest_json() {
    let (_temp, gallery) = new_gallery();
    let manifest = gallery.dir().join("manifest.json");
    for garbage in ["{not json", "[]", "{\"format\": 1}", ""] {
        fs::write(&manifest, garbage).unwrap();
        let error = Gallery::open(gallery.dir()).unwrap_err();
        assert!(
            matches!(error, GalleryError::Corrupt { .. }),
            "{garbage:?}: {error}"
        );
        assert_one_line_naming(&error, "manifest.json");
        assert!(Gallery::read_generation(gallery.dir()).is_err());
    }
}

#[test]
fn manifest_naming_a_file_outside_the_gallery_is_refused() {
    let (_temp, gallery) = new_gallery();
    let path = gallery.dir().join("manifest.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("index-0.faiss", "../index-0.faiss")).unwrap();
    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert_one_line_naming(&error, "manifest.json");
    assert!(error.to_string().contains("plain file name"), "{error}");
}

#[test]
fn manifest_of_an_unknown_format_is_refused() {
    let (_temp, gallery) = new_gallery();
    let path = gallery.dir().join("manifest.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("\"format\": 1", "\"format\": 2")).unwrap();
    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert!(error.to_string().contains("format 2"), "{error}");
}

#[test]
fn create_refuses_an_existing_gallery_and_bad_parameters() {
    let (temp, gallery) = new_gallery();
    let error = Gallery::create(gallery.dir(), MODEL, DIM).unwrap_err();
    assert!(
        matches!(error, GalleryError::AlreadyExists { .. }),
        "{error}"
    );
    for (model, dim) in [("", DIM), (MODEL, 0), (MODEL, 1 << 20)] {
        let error = Gallery::create(&temp.path().join("other"), model, dim).unwrap_err();
        assert!(
            matches!(error, GalleryError::InvalidArgument { .. }),
            "{error}"
        );
    }
}

#[test]
fn open_or_create_creates_once_then_opens() {
    let temp = TempDir::new().unwrap();
    let dir = temp.path().join("gallery");
    let mut gallery = Gallery::open_or_create(&dir, MODEL, DIM).unwrap();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();

    let reopened = Gallery::open_or_create(&dir, MODEL, DIM).unwrap();
    assert_eq!((reopened.generation(), reopened.len()), (1, 1));
    let error = Gallery::open_or_create(&dir, "another-model", DIM).unwrap_err();
    assert!(
        matches!(error, GalleryError::ModelMismatch { .. }),
        "{error}"
    );
    let error = Gallery::open_or_create(&dir, MODEL, 512).unwrap_err();
    assert!(matches!(error, GalleryError::DimMismatch { .. }), "{error}");
}

#[test]
fn open_or_create_never_replaces_a_damaged_gallery() {
    let (_temp, gallery) = new_gallery();
    fs::write(gallery.dir().join("manifest.json"), "garbage").unwrap();
    assert!(Gallery::open_or_create(gallery.dir(), MODEL, DIM).is_err());
    assert_eq!(
        fs::read_to_string(gallery.dir().join("manifest.json")).unwrap(),
        "garbage"
    );
}

#[test]
fn only_the_current_and_previous_generations_stay_on_disk() {
    let (_temp, mut gallery) = new_gallery();
    for seed in 1..=4 {
        enroll_seeded(&mut gallery, &format!("p-{seed:03}"), seed);
        gallery.commit().unwrap();
    }
    assert_eq!(gallery.generation(), 4);
    let expected: BTreeSet<String> = [
        "identities-3.json",
        "identities-4.json",
        "index-3.faiss",
        "index-4.faiss",
        "manifest.json",
        "writer.lock",
    ]
    .map(String::from)
    .into();
    assert_eq!(file_names(gallery.dir()), expected);
}

/// Galleries in these tests turn compressed at this size, which FAISS trains without complaint.
const SMALL_THRESHOLD: usize = 700;

fn small_policy() -> IndexPolicy {
    IndexPolicy {
        compress_at: SMALL_THRESHOLD,
        ..IndexPolicy::default()
    }
}

/// People nobody looks for, to bring a gallery to a size: `f-00000`, `f-00001`...
fn enroll_fillers(gallery: &mut Gallery, numbers: std::ops::Range<usize>) {
    for n in numbers {
        enroll_seeded(gallery, &format!("f-{n:05}"), 100_000 + n as u64);
    }
}

fn filler_seed(id: &str) -> u64 {
    100_000 + id.trim_start_matches("f-").parse::<u64>().unwrap()
}

fn seed_of(id: &str) -> u64 {
    match id.strip_prefix("p-") {
        Some(number) => number.parse().unwrap(),
        None => filler_seed(id),
    }
}

/// Every person's own vector finds them first, at a similarity of 1 within `tolerance`.
fn assert_everyone_found(gallery: &mut Gallery, tolerance: f32, context: &str) {
    let people: Vec<String> = ids(gallery);
    for id in &people {
        let best = &gallery.search(&unit_vector(seed_of(id)), 1).unwrap()[0];
        assert_eq!(&best.id, id, "{context}");
        assert!(
            (best.similarity - 1.0).abs() <= tolerance,
            "{context}: {id} at {}",
            best.similarity
        );
    }
}

fn manifest_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The files a committed generation consists of.
fn generation_files(generation: u64, compressed: bool) -> Vec<String> {
    let mut names = vec![
        format!("identities-{generation}.json"),
        format!("index-{generation}.faiss"),
    ];
    if compressed {
        names.push(format!("rescore-{generation}.faiss"));
        names.push(format!("vectors-{generation}.f32"));
    }
    names
}

/// What generations 1 and 2 of a crash test hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sizes {
    /// Both exact.
    Exact,
    /// Both compressed.
    Compressed,
    /// Exact, then compressed: generation 2 trains the index.
    Crossing,
}

/// Crashes the commit of generation 2 (which removes p-001 and adds p-003 and p-005) at `step`,
/// tearing the file that step wrote when `torn`, then checks what a reader and a later writer see.
fn crash_during_commit(sizes: Sizes, step: CommitStep, torn: bool) {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    let dir = gallery.dir().to_path_buf();
    enroll_seeded(&mut gallery, "p-001", 1);
    enroll_seeded(&mut gallery, "p-002", 2);
    let fillers = match sizes {
        Sizes::Exact => 0,
        Sizes::Compressed => SMALL_THRESHOLD,
        Sizes::Crossing => SMALL_THRESHOLD - 3,
    };
    enroll_fillers(&mut gallery, 0..fillers);
    gallery.commit().unwrap();
    assert_eq!(gallery.is_exact(), sizes != Sizes::Compressed);

    gallery.remove("p-001").unwrap();
    enroll_seeded(&mut gallery, "p-003", 3);
    enroll_seeded(&mut gallery, "p-005", 5);
    let mut reached = Vec::new();
    gallery
        .commit_with(|at, written| {
            reached.push(at);
            if at != step {
                return ControlFlow::Continue(());
            }
            if torn {
                let file = fs::OpenOptions::new().write(true).open(written).unwrap();
                let half = file.metadata().unwrap().len() / 2;
                file.set_len(half).unwrap();
            }
            ControlFlow::Break(())
        })
        .unwrap();
    drop(gallery);
    let context = format!("{sizes:?} gallery, crash after {step:?}, torn: {torn}");
    assert_eq!(reached.last(), Some(&step), "{context}: step never reached");

    let mut survivor = Gallery::open(&dir).unwrap_or_else(|error| panic!("{context}: {error}"));
    let committed = step == CommitStep::Renamed;
    let (expected_generation, expected_ids) = if committed {
        (2, vec!["p-002", "p-003", "p-005"])
    } else {
        (1, vec!["p-001", "p-002"])
    };
    assert_eq!(survivor.generation(), expected_generation, "{context}");
    let named: Vec<String> = ids(&survivor)
        .into_iter()
        .filter(|id| id.starts_with("p-"))
        .collect();
    assert_eq!(named, expected_ids, "{context}");
    let survivor_compressed = match sizes {
        Sizes::Exact => false,
        Sizes::Compressed => true,
        Sizes::Crossing => committed,
    };
    assert_eq!(!survivor.is_exact(), survivor_compressed, "{context}");
    let best = &survivor.search(&unit_vector(3), 1).unwrap()[0];
    assert_eq!(best.id == "p-003", committed, "{context}: {best:?}");

    // The next writer overwrites or removes whatever the crash left behind.
    survivor.set_index_policy(small_policy());
    enroll_seeded(&mut survivor, "p-004", 4);
    let generation = survivor.commit().unwrap();
    assert_eq!(generation, expected_generation + 1, "{context}");
    let mut reopened = Gallery::open(&dir).unwrap_or_else(|error| panic!("{context}: {error}"));
    assert_eq!(reopened.generation(), generation, "{context}");
    assert!(
        reopened.contains("p-004") && reopened.contains("p-002"),
        "{context}"
    );
    assert_everyone_found(&mut reopened, 0.01, &context);
    let mut expected_files: BTreeSet<String> =
        generation_files(generation - 1, survivor_compressed)
            .into_iter()
            .chain(generation_files(generation, sizes != Sizes::Exact))
            .collect();
    expected_files.insert("manifest.json".to_owned());
    expected_files.insert("writer.lock".to_owned());
    assert_eq!(file_names(&dir), expected_files, "{context}");
}

#[test]
fn a_crash_at_any_commit_step_leaves_the_old_or_the_new_generation() {
    for sizes in [Sizes::Exact, Sizes::Compressed, Sizes::Crossing] {
        let compressed_steps = [CommitStep::VectorsWritten, CommitStep::RescoreWritten];
        for step in [
            CommitStep::VectorsWritten,
            CommitStep::IndexWritten,
            CommitStep::RescoreWritten,
            CommitStep::IdentitiesWritten,
            CommitStep::ManifestTmpWritten,
            CommitStep::Renamed,
        ] {
            if sizes == Sizes::Exact && compressed_steps.contains(&step) {
                continue;
            }
            crash_during_commit(sizes, step, false);
            // The rename is atomic and follows an fsync of the temporary manifest, so no torn
            // manifest.json can exist after it.
            if step != CommitStep::Renamed {
                crash_during_commit(sizes, step, true);
            }
        }
    }
}

#[test]
fn index_type_follows_the_size_and_is_written_in_the_manifest() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD - 1);
    gallery.commit().unwrap();
    assert!(gallery.is_exact());
    assert_eq!(gallery.index_type(), "IDMap2,Flat");
    assert_eq!((gallery.trained_for(), gallery.nprobe()), (None, None));
    // An exact gallery's manifest is the format older builds wrote and read.
    let manifest = manifest_json(gallery.dir());
    assert_eq!(manifest["index_type"], "IDMap2,Flat");
    for key in ["trained_for", "search"] {
        assert!(manifest.get(key).is_none(), "{key} in {manifest}");
    }
    for key in ["vectors", "rescore"] {
        assert!(manifest["files"].get(key).is_none(), "{key} in {manifest}");
    }

    enroll_fillers(&mut gallery, SMALL_THRESHOLD - 1..SMALL_THRESHOLD);
    assert!(gallery.is_exact(), "the type changes at commit");
    gallery.commit().unwrap();
    // 700 people: as many cells as have 39 training points each (17.9), rounded down to a power
    // of two; half of them probed.
    let compressed = "IVF16,PQ32x4fs,Refine(SQ6)";
    assert!(!gallery.is_exact());
    assert_eq!(gallery.index_type(), compressed);
    assert_eq!(
        (gallery.trained_for(), gallery.nprobe()),
        (Some(700), Some(8))
    );
    let manifest = manifest_json(gallery.dir());
    assert_eq!(manifest["index_type"], compressed);
    assert_eq!(manifest["trained_for"], 700);
    assert_eq!(manifest["search"]["nprobe"], 8);
    assert_eq!(manifest["files"]["vectors"]["name"], "vectors-2.f32");
    assert_eq!(manifest["files"]["rescore"]["name"], "rescore-2.faiss");

    let mut reopened = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(reopened.index_type(), compressed);
    assert_eq!(
        (reopened.trained_for(), reopened.nprobe(), reopened.len()),
        (Some(700), Some(8), 700)
    );
    assert_eq!(
        reopened.index_policy(),
        IndexPolicy::default(),
        "the policy is the opener's, not stored"
    );
    assert_everyone_found(&mut reopened, 0.01, "reopened");
}

#[test]
fn compressed_search_reports_similarities_close_to_the_true_cosine() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD);
    gallery.commit().unwrap();
    assert!(!gallery.is_exact());

    // Queries as the gate sees them: cosine 0.75 to the enrolled face.
    let mut checked = 0;
    for n in 0..50 {
        let enrolled = unit_vector(100_000 + n);
        let noise = unit_vector(900_000 + n);
        let along = cosine(&noise, &enrolled);
        let mut query: Vec<f32> = noise
            .iter()
            .zip(&enrolled)
            .map(|(w, e)| w - along * e)
            .collect();
        assert!(normalise(&mut query));
        query
            .iter_mut()
            .zip(&enrolled)
            .for_each(|(q, e)| *q = 0.75 * e + (1.0f32 - 0.75 * 0.75).sqrt() * *q);
        let best = &gallery.search(&query, 1).unwrap()[0];
        if best.id == format!("f-{n:05}") {
            // The 4-bit codes alone are off by about 0.25 here.
            assert!(
                (best.similarity - 0.75).abs() < 0.01,
                "f-{n:05}: {}",
                best.similarity
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} of 50 found");
}

#[test]
fn growth_across_the_threshold_retrains_and_keeps_everyone_findable() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    let mut previous_index_type = String::new();
    // (people, trained for after the commit)
    for (people, trained_for) in [
        (600, None),
        (700, Some(700)),
        // Growth within 4x of the training size is added to the trained index as it is.
        (2000, Some(700)),
        (2801, Some(2801)),
    ] {
        let before = gallery.len();
        enroll_fillers(&mut gallery, before..people);
        let context = format!("{people} people, staged");
        // Staged enrolments are searchable at once, without retraining.
        for n in [before, people - 1] {
            let best = &gallery.search(&unit_vector(100_000 + n as u64), 1).unwrap()[0];
            assert_eq!(best.id, format!("f-{n:05}"), "{context}");
        }
        gallery.commit().unwrap();
        let context = format!("{people} people, committed");
        assert_eq!(gallery.trained_for(), trained_for, "{context}");
        if trained_for == Some(700) && people == 2000 {
            assert_eq!(gallery.index_type(), previous_index_type, "{context}");
        }
        previous_index_type = gallery.index_type().to_owned();
        let mut reopened = Gallery::open(gallery.dir()).unwrap();
        assert_eq!(reopened.len(), people, "{context}");
        assert_eq!(reopened.index_type(), gallery.index_type(), "{context}");
        assert_everyone_found(&mut reopened, 0.01, &context);
    }
    // Retrained for 2801 people: 2801 / 39 = 71.8 cells, rounded down to 64.
    assert_eq!(gallery.index_type(), "IVF64,PQ32x4fs,Refine(SQ6)");
    assert_eq!(gallery.nprobe(), Some(32));
}

#[test]
fn shrinking_below_the_threshold_returns_to_exact_search_of_the_original_vectors() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD);
    gallery.commit().unwrap();
    assert!(!gallery.is_exact());
    for n in 0..10 {
        assert!(gallery.remove(&format!("f-{n:05}")).unwrap());
    }
    let generation = gallery.commit().unwrap();
    assert!(gallery.is_exact());
    assert_eq!(gallery.index_type(), "IDMap2,Flat");
    let names = file_names(gallery.dir());
    assert!(
        !names.contains(&format!("vectors-{generation}.f32"))
            && !names.contains(&format!("rescore-{generation}.faiss")),
        "{names:?}"
    );
    // Similarity 1 to within float rounding: the vectors are the originals, not decoded codes.
    let mut reopened = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(reopened.len(), SMALL_THRESHOLD - 10);
    assert!(!reopened.contains("f-00000"));
    assert_everyone_found(&mut reopened, 1e-5, "exact again");
}

#[test]
fn remove_and_replace_on_the_compressed_index() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD + 100);
    gallery.commit().unwrap();
    assert!(!gallery.is_exact());

    assert!(gallery.remove("f-00010").unwrap());
    assert!(!gallery.contains("f-00010"));
    gallery
        .enroll("f-00020", "Renewed", MODEL, &unit_vector(7), true)
        .unwrap();
    for context in ["staged", "committed", "reopened"] {
        match context {
            "committed" => {
                gallery.commit().unwrap();
            }
            "reopened" => gallery = Gallery::open(gallery.dir()).unwrap(),
            _ => {}
        }
        assert_eq!(gallery.len(), SMALL_THRESHOLD + 99, "{context}");
        let removed = gallery
            .search(&unit_vector(filler_seed("f-00010")), 3)
            .unwrap();
        assert!(
            removed.iter().all(|found| found.id != "f-00010"),
            "{context}: {removed:?}"
        );
        assert!(removed[0].similarity < 0.5, "{context}: {removed:?}");
        let renewed = &gallery.search(&unit_vector(7), 1).unwrap()[0];
        assert_eq!(
            (renewed.id.as_str(), renewed.label.as_str()),
            ("f-00020", "Renewed"),
            "{context}"
        );
        let old_face = &gallery
            .search(&unit_vector(filler_seed("f-00020")), 1)
            .unwrap()[0];
        assert!(old_face.similarity < 0.5, "{context}: {old_face:?}");
        // Everyone else is still found, at their true similarity: the rescoring codes stayed
        // in step with the people through removal and compaction.
        for n in (0..SMALL_THRESHOLD + 100)
            .step_by(7)
            .filter(|&n| n != 10 && n != 20)
        {
            let best = &gallery.search(&unit_vector(100_000 + n as u64), 1).unwrap()[0];
            assert_eq!(best.id, format!("f-{n:05}"), "{context}");
            assert!((best.similarity - 1.0).abs() < 0.01, "{context}: {best:?}");
        }
    }
}

#[test]
fn a_damaged_vectors_file_fails_the_commit_and_keeps_the_generation() {
    let (_temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD);
    let generation = gallery.commit().unwrap();
    let vectors = gallery.dir().join(format!("vectors-{generation}.f32"));
    let mut bytes = fs::read(&vectors).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&vectors, bytes).unwrap();

    enroll_seeded(&mut gallery, "p-001", 1);
    let error = gallery.commit().unwrap_err();
    assert_one_line_naming(&error, &format!("vectors-{generation}.f32"));
    assert!(error.to_string().contains("sha256"), "{error}");
    assert_eq!(Gallery::read_generation(gallery.dir()).unwrap(), generation);
    // The gate never reads the vectors file, so it keeps working.
    let mut reader = Gallery::open(gallery.dir()).unwrap();
    assert_eq!(
        reader.search(&unit_vector(100_000), 1).unwrap()[0].id,
        "f-00000"
    );
}

#[test]
fn a_reader_keeps_its_generation_while_a_writer_retrains() {
    let (_temp, mut writer) = new_gallery();
    writer.set_index_policy(small_policy());
    enroll_fillers(&mut writer, 0..SMALL_THRESHOLD);
    let old = writer.commit().unwrap();
    let mut reader = Gallery::open(writer.dir()).unwrap();
    let old_type = reader.index_type().to_owned();

    enroll_fillers(&mut writer, SMALL_THRESHOLD..4 * SMALL_THRESHOLD + 1);
    let new = writer.commit().unwrap();
    assert_ne!(writer.index_type(), old_type, "retrained");
    // The reader still serves its generation, whose files stay until the one after next.
    assert_eq!((reader.generation(), reader.len()), (old, SMALL_THRESHOLD));
    assert_eq!(
        reader.search(&unit_vector(100_005), 1).unwrap()[0].id,
        "f-00005"
    );
    let names = file_names(writer.dir());
    for name in generation_files(old, true) {
        assert!(names.contains(&name), "{name} gone: {names:?}");
    }
    let reopened = Gallery::open(writer.dir()).unwrap();
    assert_eq!(
        (reopened.generation(), reopened.index_type()),
        (new, writer.index_type())
    );
}

#[test]
fn search_parameters_from_the_manifest_are_applied_on_open() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();
    // An exact index has no nprobe: a manifest giving one must be refused, not ignored.
    let path = gallery.dir().join("manifest.json");
    let mut manifest = manifest_json(gallery.dir());
    manifest["search"] = serde_json::json!({ "nprobe": 4 });
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let error = Gallery::open(gallery.dir()).unwrap_err();
    assert_one_line_naming(&error, "index-1.faiss");
    assert!(error.to_string().contains("nprobe"), "{error}");
}

#[test]
fn gallery_can_move_between_threads() {
    // The gate service hands the gallery to its matching thread and swaps it on reload.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gallery>();
}

mod concurrent;
mod crafted;
mod damage;
mod mutated;
