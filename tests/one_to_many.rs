//! One-to-many identification: enrol one photo per development person, then identify each of
//! their other photos against the whole gallery.

mod common;

/// One enrolment photo per person.
const ENROLLED: [(&str, &str, &str); 5] = [
    ("person-a", "Person A", "person_a_1.jpg"),
    ("person-b", "Person B", "person_b_1.jpg"),
    ("obama", "Barack Obama", "obama.jpg"),
    ("biden", "Joe Biden", "biden.jpg"),
    ("impostor-2", "Impostor 2", "impostor_2.jpg"),
];

/// Their other photos (impostor_1.jpg is another photo of Barack Obama).
const PROBES: [&str; 5] = [
    "person_a_2.jpg",
    "person_b_2.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "impostor_1.jpg",
];

#[test]
fn every_other_photo_is_identified_as_the_right_person() {
    common::init();
    let scratch = tempfile::tempdir().unwrap();
    let gallery = common::enroll(scratch.path(), &ENROLLED);
    for probe in PROBES {
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
    let without_obama: Vec<_> = ENROLLED
        .iter()
        .copied()
        .filter(|(id, ..)| *id != "obama")
        .collect();
    let gallery = common::enroll(scratch.path(), &without_obama);
    for probe in ["obama.jpg", "obama2.jpg", "obama3.jpg", "impostor_1.jpg"] {
        let faces = common::faces(&common::photo(probe), 640, Some(&gallery));
        assert_eq!(faces.len(), 1, "{probe}: one face");
        assert_eq!(faces[0].matched, None, "{probe}: Obama is not enrolled");
    }
}
