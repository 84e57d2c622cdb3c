// SPDX-License-Identifier: MIT OR Apache-2.0
//! One-to-many identification: enrol one photo per development person, then identify each of
//! their other photos against the whole gallery.

mod common;

use facegate_dev_assets::DEV_PEOPLE;

/// Every development person by their first photo: (id, label, photo).
fn enrolled() -> Vec<(&'static str, &'static str, &'static str)> {
    DEV_PEOPLE
        .iter()
        .map(|p| (p.id, p.label, p.photos[0]))
        .collect()
}

/// Their other photos.
fn probes() -> impl Iterator<Item = &'static str> {
    DEV_PEOPLE
        .iter()
        .flat_map(|p| p.photos[1..].iter().copied())
}

#[test]
fn every_other_photo_is_identified_as_the_right_person() {
    common::init();
    let scratch = tempfile::tempdir().unwrap();
    let gallery = common::enroll(scratch.path(), &enrolled());
    for probe in probes() {
        let faces = common::faces(&common::photo(probe), 640, Some(&gallery));
        assert_eq!(faces.len(), 1, "{probe}: one face");
        let matched = faces[0]
            .matched
            .as_ref()
            .unwrap_or_else(|| panic!("{probe}: not recognised"));
        assert_eq!(matched.id, common::person(probe), "{probe}: top-1 identity");
        println!("{probe}: {} ({:.3})", matched.id, matched.similarity);
    }
}

#[test]
fn people_who_are_not_enrolled_are_not_matched() {
    common::init();
    let scratch = tempfile::tempdir().unwrap();
    // Everyone but Obama: none of his four photos may match anybody.
    let without_obama: Vec<_> = enrolled()
        .into_iter()
        .filter(|(id, ..)| *id != "obama")
        .collect();
    let gallery = common::enroll(scratch.path(), &without_obama);
    let obama = facegate_dev_assets::person("obama").unwrap();
    for &probe in obama.photos {
        let faces = common::faces(&common::photo(probe), 640, Some(&gallery));
        assert_eq!(faces.len(), 1, "{probe}: one face");
        assert_eq!(faces[0].matched, None, "{probe}: Obama is not enrolled");
    }
}
