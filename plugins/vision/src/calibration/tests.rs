// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::Path;

use super::*;
use crate::open_set::IdentityEmbeddings;

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f32 {
    let (u, v) = (1.0 - rng.f64(), rng.f64());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// People in 128-D: a random centre each plus noise (genuine cosines ~0.5, impostor ~0).
fn synthetic(people: usize, photos: usize, seed: u64) -> Vec<IdentityEmbeddings> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..people)
        .map(|p| {
            let centre = unit((0..128).map(|_| normal(&mut rng)).collect());
            IdentityEmbeddings {
                identity: format!("person{p}"),
                embeddings: (0..photos)
                    .map(|_| unit(centre.iter().map(|c| c + 0.09 * normal(&mut rng)).collect()))
                    .collect(),
            }
        })
        .collect()
}

fn calibration() -> Calibration {
    let input = EvaluationInput {
        model: "synthetic@sha256:0123456789abcdef".into(),
        identities: synthetic(60, 3, 3),
        skipped: 1,
    };
    let model = CalibratedModel {
        identity: input.model.clone(),
        file: "synthetic.onnx".into(),
        sha256: "ab".repeat(32),
    };
    let corpus = CorpusProvenance {
        name: "synthetic".into(),
        digest: "cd".repeat(32),
        identities: 60,
        images: 180,
        skipped: 1,
        genuine_pairs: 180,
        impostor_pairs: 60 * 59 / 2 * 9,
    };
    let bootstrap = BootstrapConfig {
        resamples: 20,
        ..BootstrapConfig::default()
    };
    Calibration::measure(&input, bootstrap, model, corpus).unwrap()
}

#[test]
fn measure_fills_the_grids_and_survives_toml() {
    let c = calibration();
    assert_eq!(
        c.operating_points.len(),
        GALLERY_SIZES.len() * TARGET_FPIRS.len()
    );
    assert_eq!(
        c.safe_gallery_sizes.len(),
        TARGET_FPIRS.len() * MAX_FNMRS.len()
    );
    assert!(c.impostor_tail.is_some());
    // Thresholds never fall as the gallery grows or the target tightens (see make_monotone).
    for &n in &GALLERY_SIZES {
        for pair in TARGET_FPIRS.windows(2) {
            let strict = c.threshold_for(n, pair[0]).unwrap().threshold;
            let loose = c.threshold_for(n, pair[1]).unwrap().threshold;
            assert!(
                strict >= loose,
                "{n} people: {strict} at {} < {loose}",
                pair[0]
            );
        }
    }
    let text = c.to_toml().unwrap();
    assert!(text.contains("[[operating_point]]"), "{text}");
    let back = Calibration::parse(&text, Path::new("synthetic.toml")).unwrap();
    assert_eq!(back, c);
}

#[test]
fn lookups_are_conservative_between_rows() {
    let c = calibration();
    let row = |n: u64, t: f64| {
        c.operating_points
            .iter()
            .find(|p| p.gallery_size == n && p.target_fpir == t)
            .unwrap()
            .threshold
            .unwrap()
    };
    // A tabulated size and target give their own row.
    let exact = c.threshold_for(1_000, 1e-4).unwrap();
    assert_eq!(
        (exact.threshold, exact.gallery_size),
        (row(1_000, 1e-4), 1_000)
    );
    // 150 people take the row of 200, a target of 3e-4 the row of 1e-4.
    let between = c.threshold_for(150, 3e-4).unwrap();
    assert_eq!((between.gallery_size, between.target_fpir), (200, 1e-4));
    assert_eq!(between.threshold, row(200, 1e-4));
    assert!(between.threshold >= row(100, 1e-3));
    // The threshold rises with the gallery.
    let thresholds: Vec<f64> = GALLERY_SIZES
        .iter()
        .map(|&n| c.threshold_for(n, 1e-4).unwrap().threshold)
        .collect();
    assert!(
        thresholds.windows(2).all(|w| w[0] <= w[1]),
        "{thresholds:?}"
    );
    assert!(c.threshold_for(1, 1e-2).unwrap().meets_target());
}

#[test]
fn lookups_outside_the_table_are_refused() {
    let c = calibration();
    assert!(matches!(
        c.threshold_for(0, 1e-4),
        Err(CalibrationError::NoGallery)
    ));
    assert!(matches!(
        c.threshold_for(20_000_000, 1e-4),
        Err(CalibrationError::GalleryBeyondTable {
            largest: 10_000_000,
            ..
        })
    ));
    assert!(matches!(
        c.threshold_for(10, 1e-7),
        Err(CalibrationError::TargetBelowTable { .. })
    ));
    assert!(matches!(
        c.safe_gallery_size(1e-4, 0.001),
        Err(CalibrationError::FnmrBelowTable { .. })
    ));
}

#[test]
fn safe_gallery_size_takes_the_smaller_budget() {
    let c = calibration();
    let at = |t: f64, m: f64| {
        c.safe_gallery_sizes
            .iter()
            .find(|s| s.target_fpir == t && s.max_fnmr == m)
            .unwrap()
            .limit
    };
    assert_eq!(c.safe_gallery_size(1e-4, 0.05).unwrap(), at(1e-4, 0.05));
    // A budget of 7 % is served by the 5 % row, a target of 5e-4 by the 1e-4 row.
    assert_eq!(c.safe_gallery_size(5e-4, 0.07).unwrap(), at(1e-4, 0.05));
}

#[test]
fn bad_files_are_named() {
    let c = calibration();
    let text = c.to_toml().unwrap();
    let path = Path::new("models/calibration/x.toml");
    let newer = text.replacen("schema = 1", "schema = 2", 1);
    let error = Calibration::parse(&newer, path).unwrap_err().to_string();
    assert!(
        error.contains("x.toml") && error.contains("schema 2"),
        "{error}"
    );
    let unknown = format!("{text}\nextra = 1\n");
    assert!(Calibration::parse(&unknown, path).is_err());
    let bad_sha = text.replacen(&"ab".repeat(32), "not-a-sha", 1);
    let error = Calibration::parse(&bad_sha, path).unwrap_err().to_string();
    assert!(error.contains("model.sha256"), "{error}");
    let error = Calibration::parse("schema = 1\n", path)
        .unwrap_err()
        .to_string();
    assert!(error.contains("x.toml"), "{error}");
}

#[test]
fn verify_model_compares_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.onnx");
    std::fs::write(&file, b"model bytes").unwrap();
    let mut c = calibration();
    c.model = CalibratedModel::of_file(&file, "m@sha256:x").unwrap();
    // sha256("model bytes"), from coreutils' sha256sum.
    assert_eq!(
        c.model.sha256,
        "9cb7487000bc86ac36ce83c4acfabe8878552be99572a6770f65ab1d048a5c48"
    );
    c.verify_model(&file).unwrap();
    std::fs::write(&file, b"other bytes").unwrap();
    let error = c.verify_model(&file).unwrap_err().to_string();
    assert!(
        error.contains("m.onnx") && error.contains("evaluate this model"),
        "{error}"
    );
    assert!(c.verify_model(&dir.path().join("missing.onnx")).is_err());
}
