// SPDX-License-Identifier: MIT OR Apache-2.0
//! A gallery directory that lost its manifest, or holds files it does not expect.

use super::*;

#[test]
fn a_missing_manifest_beside_generation_files_is_damage_never_a_new_gallery() {
    let (_temp, mut gallery) = new_gallery();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();
    let dir = gallery.dir().to_path_buf();
    drop(gallery);
    fs::remove_file(dir.join("manifest.json")).unwrap();

    let error = Gallery::open(&dir).unwrap_err();
    assert!(matches!(error, GalleryError::Damaged { .. }), "{error}");
    assert_one_line_naming(&error, &dir.display().to_string());
    assert!(
        error.to_string().contains("manifest.json is missing")
            && error.to_string().contains("index-1.faiss"),
        "{error}"
    );
    assert!(Gallery::read_generation(&dir).is_err());
    for attempt in [
        Gallery::open_or_create(&dir, MODEL, DIM),
        Gallery::create(&dir, MODEL, DIM),
    ] {
        let error = attempt.unwrap_err();
        assert!(matches!(error, GalleryError::Damaged { .. }), "{error}");
    }
    assert!(!dir.join("manifest.json").exists(), "nothing was created");
    assert!(
        dir.join("identities-1.json").exists(),
        "nothing was deleted"
    );
}

#[test]
fn a_gallery_is_created_only_in_an_empty_or_absent_directory() {
    let temp = TempDir::new().unwrap();
    let occupied = temp.path().join("occupied");
    fs::create_dir(&occupied).unwrap();
    fs::write(occupied.join("notes.txt"), "not a gallery").unwrap();
    let error = Gallery::create(&occupied, MODEL, DIM).unwrap_err();
    assert!(
        matches!(error, GalleryError::InvalidArgument { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert!(!occupied.join("manifest.json").exists());

    let empty = temp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(Gallery::create(&empty, MODEL, DIM).unwrap().generation(), 0);
    let absent = temp.path().join("absent/gallery");
    assert_eq!(
        Gallery::create(&absent, MODEL, DIM).unwrap().generation(),
        0
    );
}

#[test]
fn no_file_of_a_generation_newer_than_the_committed_one_is_deleted() {
    let (_temp, mut gallery) = new_gallery();
    for seed in 1..=2 {
        enroll_seeded(&mut gallery, &format!("p-{seed:03}"), seed);
        gallery.commit().unwrap();
    }
    // As another writer in the middle of writing generations 3 and 9 would have left them.
    for name in ["index-3.faiss", "identities-9.json"] {
        fs::write(gallery.dir().join(name), "in progress").unwrap();
    }
    enroll_seeded(&mut gallery, "p-003", 3);
    // Generation 3's own files are this commit's to write; 9's are left alone.
    assert_eq!(gallery.commit().unwrap(), 3);
    enroll_seeded(&mut gallery, "p-004", 4);
    assert_eq!(gallery.commit().unwrap(), 4);
    let names = file_names(gallery.dir());
    assert!(names.contains("identities-9.json"), "{names:?}");
    assert!(
        !names.contains("index-2.faiss"),
        "old ones still go: {names:?}"
    );
    assert_eq!(Gallery::open(gallery.dir()).unwrap().len(), 4);
}

#[test]
fn temporary_manifests_of_crashed_writers_are_removed_by_the_next_commit() {
    let (_temp, mut gallery) = new_gallery();
    let leftover = gallery.dir().join("manifest.json.a1b2c3.tmp");
    fs::write(&leftover, "{").unwrap();
    enroll_seeded(&mut gallery, "p-001", 1);
    gallery.commit().unwrap();
    assert!(!leftover.exists());
    assert_eq!(Gallery::open(gallery.dir()).unwrap().len(), 1);
}
