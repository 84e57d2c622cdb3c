use std::collections::BTreeSet;
use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use tempfile::TempDir;

use super::*;

const MODEL: &str = "sface-2021dec-test";
const DIM: u32 = 128;

/// A deterministic pseudo-random unit vector: different seeds give nearly orthogonal vectors in
/// 128 dimensions, so each person is unambiguously their own best match.
fn unit_vector(seed: u64) -> Vec<f32> {
    // xorshift64; the odd multiplier keeps small seeds apart and away from the all-zero state.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values: Vec<f32> = (0..DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    values.iter_mut().for_each(|v| *v /= norm);
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
    ]
    .map(String::from)
    .into();
    assert_eq!(file_names(gallery.dir()), expected);
}

/// Crashes the commit of generation 2 (which removes p-001 and adds p-003) at `step`, tearing the
/// file that step wrote when `torn`, then checks what a reader and a later writer see.
fn crash_during_commit(step: CommitStep, torn: bool) {
    let (_temp, mut gallery) = new_gallery();
    let dir = gallery.dir().to_path_buf();
    enroll_seeded(&mut gallery, "p-001", 1);
    enroll_seeded(&mut gallery, "p-002", 2);
    gallery.commit().unwrap();

    gallery.remove("p-001").unwrap();
    enroll_seeded(&mut gallery, "p-003", 3);
    gallery
        .commit_with(|reached| {
            if reached != step {
                return ControlFlow::Continue(());
            }
            let written = match step {
                CommitStep::IndexWritten => "index-2.faiss",
                CommitStep::IdentitiesWritten => "identities-2.json",
                CommitStep::ManifestTmpWritten => "manifest.json.tmp",
                CommitStep::Renamed => "manifest.json",
            };
            if torn {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join(written))
                    .unwrap();
                let half = file.metadata().unwrap().len() / 2;
                file.set_len(half).unwrap();
            }
            ControlFlow::Break(())
        })
        .unwrap();
    drop(gallery);

    let context = format!("crash after {step:?}, torn: {torn}");
    let mut survivor = Gallery::open(&dir).unwrap_or_else(|error| panic!("{context}: {error}"));
    let (expected_generation, expected_ids) = if step == CommitStep::Renamed {
        (2, ["p-002", "p-003"])
    } else {
        (1, ["p-001", "p-002"])
    };
    assert_eq!(survivor.generation(), expected_generation, "{context}");
    assert_eq!(ids(&survivor), expected_ids, "{context}");
    let best = &survivor.search(&unit_vector(3), 1).unwrap()[0];
    assert_eq!(
        best.id == "p-003",
        step == CommitStep::Renamed,
        "{context}: {best:?}"
    );

    // The next writer overwrites or removes whatever the crash left behind.
    enroll_seeded(&mut survivor, "p-004", 4);
    let generation = survivor.commit().unwrap();
    assert_eq!(generation, expected_generation + 1, "{context}");
    let reopened = Gallery::open(&dir).unwrap_or_else(|error| panic!("{context}: {error}"));
    assert_eq!(reopened.generation(), generation, "{context}");
    assert!(
        reopened.contains("p-004") && reopened.contains("p-002"),
        "{context}"
    );
    let previous = generation - 1;
    let expected_files: BTreeSet<String> = [
        format!("identities-{previous}.json"),
        format!("identities-{generation}.json"),
        format!("index-{previous}.faiss"),
        format!("index-{generation}.faiss"),
        "manifest.json".to_owned(),
    ]
    .into();
    assert_eq!(file_names(&dir), expected_files, "{context}");
}

#[test]
fn a_crash_at_any_commit_step_leaves_the_old_or_the_new_generation() {
    for step in [
        CommitStep::IndexWritten,
        CommitStep::IdentitiesWritten,
        CommitStep::ManifestTmpWritten,
        CommitStep::Renamed,
    ] {
        crash_during_commit(step, false);
        // The rename is atomic and follows an fsync of the temporary manifest, so no torn
        // manifest.json can exist after it.
        if step != CommitStep::Renamed {
            crash_during_commit(step, true);
        }
    }
}

#[test]
fn gallery_can_move_between_threads() {
    // The gate service hands the gallery to its matching thread and swaps it on reload.
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gallery>();
}
