// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegatectl as an operator uses it: enrolment verdicts, listing, removal, identification and
//! clear errors for bad input, on real photos.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facegate_meta::dump::FrameLine;
use facegate_vision::gallery::Gallery;
use gst::prelude::*;

fn photo(name: &str) -> PathBuf {
    facegate_dev_assets::photo(name).unwrap()
}

fn facegatectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegatectl"))
        .args(args)
        .output()
        .expect("facegatectl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a gst-launch style description that writes a test picture.
fn render(description: &str) {
    facegatectl::init().unwrap();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(
            message.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{description}: {message:?}"
    );
}

/// A folder with one good portrait and one photo for each way enrolment can refuse.
fn awkward_photos(dir: &Path) {
    let (a, b) = (photo("person_a_2.jpg"), photo("person_b_2.jpg"));
    let scaled = |p: &Path, caps: &str| {
        format!(
            "filesrc location={} ! decodebin ! videoconvert ! videoscale ! {caps}",
            p.display()
        )
    };
    std::fs::copy(photo("person_b_1.jpg"), dir.join("good.jpg")).unwrap();
    render(&format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=320,height=240 ! jpegenc ! filesink location={}",
        dir.join("noface.jpg").display()
    ));
    render(&format!(
        "compositor name=mix sink_1::xpos=360 ! videoconvert ! jpegenc ! filesink location={} \
         {} ! imagefreeze num-buffers=1 ! mix. {} ! imagefreeze num-buffers=1 ! mix.",
        dir.join("two.jpg").display(),
        scaled(&a, "video/x-raw,width=360,height=450"),
        scaled(&b, "video/x-raw,width=360,height=450"),
    ));
    render(&format!(
        "{} ! jpegenc ! filesink location={}",
        scaled(&photo("person_b_1.jpg"), "video/x-raw,width=64,height=80"),
        dir.join("tiny.jpg").display()
    ));
    std::fs::write(dir.join("broken.jpg"), "not a picture\n").unwrap();
}

/// The threshold the gate's default rule sets for `people` enrolled, from the shipped
/// calibration of the default embedder.
fn gate_threshold(people: u64) -> f64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/calibration");
    let calibration =
        facegate_vision::calibration::Calibration::load(&dir.join("facegate_sface_2021dec.toml"))
            .expect("the shipped calibration");
    facegate_vision::match_rule::MatchRule::default()
        .standing(&calibration, people)
        .expect("a standing at the default rates")
        .threshold
}

#[test]
fn enrolment_gives_each_photo_its_verdict_and_keeps_the_good_ones() {
    let scratch = tempfile::tempdir().unwrap();
    let photos = scratch.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    awkward_photos(&photos);
    let gallery = scratch.path().join("gallery");
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        gallery.to_str().unwrap(),
        "--dir",
        photos.to_str().unwrap(),
    ]);
    let out = stdout(&output);
    assert!(
        !output.status.success(),
        "refusals make the exit status non-zero"
    );
    assert!(
        stderr(&output).contains("4 of 5 photos refused"),
        "{}",
        stderr(&output)
    );
    for (photo, verdict) in [
        ("good.jpg", "enrolled good (good)"),
        ("noface.jpg", "no face found"),
        ("two.jpg", "2 faces found"),
        ("tiny.jpg", "face too small"),
        ("broken.jpg", "cannot read it as an image"),
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(photo))
            .unwrap_or_else(|| panic!("no line for {photo}:\n{out}"));
        assert!(line.contains(verdict), "{photo}: {line}");
    }
    let opened = Gallery::open(&gallery).unwrap();
    assert_eq!(
        opened
            .identities()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
}

#[test]
fn enrol_list_replace_remove_and_reopen() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let enrol = |id: &str, label: &str, file: &str, extra: &[&str]| {
        let p = photo(file);
        let mut args = vec!["enroll", "--gallery", g, "--id", id, "--label", label];
        args.extend_from_slice(extra);
        args.push(p.to_str().unwrap());
        facegatectl(&args)
    };
    assert!(
        enrol("p-001", "Ada", "person_a_1.jpg", &[])
            .status
            .success()
    );
    assert!(
        enrol("p-002", "Bea", "person_b_1.jpg", &[])
            .status
            .success()
    );

    let again = enrol("p-001", "Ada", "person_a_2.jpg", &[]);
    assert!(!again.status.success());
    assert!(stdout(&again).contains("p-001"), "{}", stdout(&again));
    assert!(
        enrol("p-001", "Ada L.", "person_a_2.jpg", &["--replace"])
            .status
            .success()
    );

    let listed = stdout(&facegatectl(&["list", "--gallery", g]));
    assert!(listed.contains("generation 3, 2 people"), "{listed}");
    // Where the gallery stands under the gate's default rule, from the model's calibration.
    let matching = format!(
        "matching: threshold {:.4} for 2 people, expected false grants per stranger passage ",
        gate_threshold(2)
    );
    assert!(
        listed.contains(&matching)
            && listed.contains("safe up to 0 people: UNSAFE (at most 1e-4 false grants"),
        "{listed}"
    );
    // The British spelling the operator guides use is the same command.
    let british = facegatectl(&["enrol", "--help"]);
    assert!(
        stdout(&british).contains("Enrol passengers"),
        "{}",
        stderr(&british)
    );
    assert!(
        listed.contains("p-001\tAda L.") && listed.contains("p-002\tBea"),
        "{listed}"
    );

    let removed = facegatectl(&["remove", "--gallery", g, "--id", "p-002"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let reopened = Gallery::open(&gallery).unwrap();
    assert_eq!((reopened.generation(), reopened.len()), (4, 1));
    assert!(!reopened.contains("p-002"));

    let unknown = facegatectl(&["remove", "--gallery", g, "--id", "p-999"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no person with id p-999"),
        "{}",
        stderr(&unknown)
    );

    // The removed person is no longer recognised.
    let identified = stdout(&facegatectl(&[
        "identify",
        "--gallery",
        g,
        photo("person_b_2.jpg").to_str().unwrap(),
    ]));
    let line: FrameLine = serde_json::from_str(identified.lines().next().unwrap()).unwrap();
    assert_eq!(line.faces.len(), 1);
    assert_eq!(line.faces[0].matched, None);
}

#[test]
fn a_person_enrolled_from_several_photos_gets_one_template_and_mixed_photos_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let (b1, b2) = (photo("person_b_1.jpg"), photo("person_b_2.jpg"));
    let (b1, b2) = (b1.to_str().unwrap(), b2.to_str().unwrap());
    let both = facegatectl(&[
        "enroll",
        "--gallery",
        g,
        "--id",
        "p-b",
        "--label",
        "Bea",
        b1,
        "--photo",
        b2,
    ]);
    assert!(both.status.success(), "{}", stderr(&both));
    assert!(
        stdout(&both).contains(&format!("enrolled p-b (Bea) from {b1}, {b2}")),
        "{}",
        stdout(&both)
    );
    // The gallery holds one template: the normalised mean of the two photos' embeddings.
    facegatectl::init().unwrap();
    let models = facegatectl::pipeline::Models::default();
    let embedded: Vec<Vec<f32>> = [b1, b2]
        .iter()
        .map(|p| {
            facegatectl::enroll::embed_photo(Path::new(p), &models)
                .unwrap()
                .embedding
        })
        .collect();
    let expected =
        facegate_vision::template::mean(&[embedded[0].as_slice(), embedded[1].as_slice()]).unwrap();
    let mut opened = Gallery::open(&gallery).unwrap();
    assert_eq!(opened.len(), 1);
    let hits = opened.search(&expected, 1).unwrap();
    assert_eq!(hits[0].id, "p-b");
    assert!(hits[0].similarity > 0.9999, "{hits:?}");

    // Two people's photos under one id: refused, naming the photo that does not fit; the
    // gallery is as it was.
    let a1 = photo("person_a_1.jpg");
    let mixed = facegatectl(&[
        "enroll",
        "--gallery",
        g,
        "--id",
        "p-x",
        a1.to_str().unwrap(),
        b1,
    ]);
    assert!(!mixed.status.success());
    let line = stdout(&mixed);
    assert!(
        line.contains(&format!(
            "refused  p-x: {}: photo 1 does not look like the others",
            a1.display()
        )),
        "{line}"
    );
    assert!(
        stderr(&mixed).contains("1 of 1 people refused"),
        "{}",
        stderr(&mixed)
    );
    let none = facegatectl(&["enroll", "--gallery", g, "--id", "p-y"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("--id p-y: give at least one PHOTO"),
        "{}",
        stderr(&none)
    );
    let reopened = Gallery::open(&gallery).unwrap();
    assert_eq!((reopened.generation(), reopened.len()), (1, 1));
}

#[test]
fn enrolling_someone_already_enrolled_under_another_id_warns_and_enrols() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let enrol = |id: &str, file: &str| {
        let output = facegatectl(&[
            "enroll",
            "--gallery",
            g,
            "--id",
            id,
            photo(file).to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert!(!enrol("p-b", "person_b_1.jpg").contains("warning"));
    assert!(
        !enrol("p-a", "person_a_1.jpg").contains("warning"),
        "another person"
    );
    // Person B again, from their other photo, under a new id: enrolled, with a warning naming
    // whom they match (under the rule the gate applies to 3 people).
    let again = enrol("p-b-again", "person_b_2.jpg");
    assert!(
        again.contains("enrolled p-b-again")
            && again.contains("; warning: matches p-b (similarity 0.")
            && again.contains(&format!("the gate's threshold {:.4}", gate_threshold(3))),
        "{again}"
    );
    assert_eq!(Gallery::open(&gallery).unwrap().len(), 3);
}

#[test]
fn identify_prints_a_json_line_per_frame() {
    let output = facegatectl(&[
        "identify",
        "--embeddings",
        photo("person_b_1.jpg").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<FrameLine> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let face = &lines[0].faces[0];
    assert_eq!(face.embedding.as_ref().map(Vec::len), Some(128));
    assert_eq!(face.matched, None, "no gallery, no match");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let good = photo("person_a_1.jpg");
    assert!(
        facegatectl(&[
            "enroll",
            "--gallery",
            g,
            "--id",
            "p-1",
            good.to_str().unwrap()
        ])
        .status
        .success()
    );
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&gallery)
        .unwrap()
        .map(|e| e.unwrap().path())
        // The writer's lock file holds whoever last took the lock: it is not the gallery.
        .filter(|p| !p.ends_with("writer.lock"))
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();

    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "enroll",
                "--gallery",
                g,
                "--id",
                "p-2",
                "/no/such/photo.jpg",
            ],
            "no such file",
        ),
        (
            &[
                "--embedder-model",
                "/no/such/model.onnx",
                "enroll",
                "--gallery",
                g,
                "--id",
                "p-2",
                good.to_str().unwrap(),
            ],
            "/no/such/model.onnx",
        ),
        (
            &[
                "enroll",
                "--gallery",
                g,
                "--id",
                "bad id!",
                good.to_str().unwrap(),
            ],
            "bad id!",
        ),
        (
            &["list", "--gallery", "/no/such/gallery"],
            "/no/such/gallery",
        ),
        (&["identify", "/no/such/video.avi"], "/no/such/video.avi"),
    ];
    for (args, expected) in cases {
        let output = facegatectl(args);
        let said = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(said.contains(expected), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
    for (path, bytes) in before {
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} unchanged",
            path.display()
        );
    }

    // A corrupt gallery is named, and enrolment refuses to touch it.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gallery.join("manifest.json")).unwrap()).unwrap();
    let index = gallery.join(manifest["files"]["index"]["name"].as_str().unwrap());
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&index, &bytes).unwrap();
    let output = facegatectl(&[
        "enroll",
        "--gallery",
        g,
        "--id",
        "p-3",
        good.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(
        said.contains(index.file_name().unwrap().to_str().unwrap()) && said.lines().count() == 1,
        "{said}"
    );
}

#[test]
fn a_gallery_that_follows_the_enrolment_office_is_not_changed_here() {
    let scratch = tempfile::tempdir().unwrap();
    let gallery = scratch.path().join("gallery");
    let g = gallery.to_str().unwrap();
    let enrolled = facegatectl(&[
        "enroll",
        "--gallery",
        g,
        "--id",
        "p-1",
        photo("person_a_1.jpg").to_str().unwrap(),
    ]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    // What a fleet gate's follower leaves: the office's generation in the manifest.
    let mut followed = Gallery::open_for_write(&gallery).unwrap();
    followed.set_upstream_generation(7).unwrap();
    let local = followed.commit().unwrap();

    let removal = facegatectl(&["remove", "--gallery", g, "--id", "p-1"]);
    let enrolment = facegatectl(&[
        "enroll",
        "--gallery",
        g,
        "--id",
        "p-2",
        photo("person_b_1.jpg").to_str().unwrap(),
    ]);
    for refused in [&removal, &enrolment] {
        assert!(!refused.status.success());
        let text = stderr(refused);
        assert!(
            text.contains("follows the enrolment office (fleet generation 7)"),
            "{text}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
    }
    let after = Gallery::open(&gallery).unwrap();
    assert_eq!(after.generation(), local);
    assert!(after.contains("p-1") && !after.contains("p-2"));
}

#[test]
fn a_false_grant_rate_outside_fgmatchs_range_is_refused_naming_it() {
    let photo = photo("person_b_1.jpg");
    for rate in ["0.9", "zero"] {
        let output = facegatectl(&[
            "identify",
            "--max-false-grant-rate",
            rate,
            photo.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{rate}");
        let said = stderr(&output);
        assert!(
            said.contains("--max-false-grant-rate") && said.contains(rate),
            "{rate}: {said}"
        );
        assert!(stdout(&output).is_empty(), "nothing identified: {rate}");
    }
}
