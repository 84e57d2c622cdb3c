// SPDX-License-Identifier: MIT OR Apache-2.0
use super::tail::{Gpd, TAIL_MODEL};
use super::*;

fn person(identity: &str, embeddings: &[&[f32]]) -> IdentityEmbeddings {
    IdentityEmbeddings {
        identity: identity.to_owned(),
        embeddings: embeddings.iter().map(|e| e.to_vec()).collect(),
    }
}

/// Three people in 3-D, chosen so that every cosine is a short decimal:
/// A = (1,0,0), (0.8,0.6,0); B = (0,1,0), (0,0.6,0.8); C = (0,0,1).
fn hand_made() -> Vec<IdentityEmbeddings> {
    vec![
        person("A", &[&[1.0, 0.0, 0.0], &[0.8, 0.6, 0.0]]),
        person("B", &[&[0.0, 1.0, 0.0], &[0.0, 0.6, 0.8]]),
        person("C", &[&[0.0, 0.0, 1.0]]),
    ]
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn hand_made_pairs_and_rates() {
    let scores = PairScores::from_identities(&hand_made()).unwrap();
    // Genuine: A1.A2 = 0.8, B1.B2 = 0.6.  Impostor (2*2 + 2*1 + 2*1 = 8 pairs):
    // A1.B1 = 0, A1.B2 = 0, A2.B1 = 0.6, A2.B2 = 0.36, A1.C = 0, A2.C = 0, B1.C = 0, B2.C = 0.8.
    assert_eq!(scores.genuine().len(), 2);
    assert_eq!(scores.impostor().len(), 8);
    assert_eq!((scores.identities(), scores.images()), (3, 5));
    let g = ScoreSummary::of(scores.genuine());
    assert!(close(g.mean, 0.7, 1e-6) && close(g.min, 0.6, 1e-6) && close(g.max, 0.8, 1e-6));
    assert!(close(g.sd, (0.02f64).sqrt(), 1e-6), "{}", g.sd); // ((0.1^2 + 0.1^2) / 1)^0.5
    let i = ScoreSummary::of(scores.impostor());
    assert_eq!(i.pairs, 8);
    assert!(close(i.mean, 1.76 / 8.0, 1e-6) && close(i.max, 0.8, 1e-6) && i.min == 0.0);
    // Type 7 on [0,0,0,0,0,0.36,0.6,0.8]: median h = 3.5 -> 0; p = 0.75: h = 5.25 -> 0.36 + 0.25 * 0.24.
    let q = |p: f64| i.quantiles.iter().find(|q| q.p == p).unwrap().value;
    assert!(close(q(0.5), 0.0, 1e-9));
    assert!(close(q(0.75), 0.42, 1e-6), "{}", q(0.75));
    assert!(close(scores::quantile(scores.impostor(), 1.0), 0.8, 1e-6));

    let rates = rate_table(scores.genuine(), scores.impostor());
    assert_eq!(rates.len(), 51);
    assert!(close(rates[0].threshold, 0.30, 1e-12) && close(rates[50].threshold, 0.80, 1e-12));
    let at = |t: f64| *rates.iter().find(|r| close(r.threshold, t, 1e-9)).unwrap();
    // 0.30: impostors 0.36, 0.6, 0.8 match (3/8); no genuine pair falls below.
    assert_eq!((at(0.30).fmr, at(0.30).fnmr), (3.0 / 8.0, 0.0));
    assert_eq!((at(0.50).fmr, at(0.50).fnmr), (2.0 / 8.0, 0.0));
    // 0.61: only the 0.8 impostor matches; the 0.6 genuine pair fails.
    assert_eq!((at(0.61).fmr, at(0.61).fnmr), (1.0 / 8.0, 0.5));
    assert_eq!(
        (
            rates::fmr(scores.impostor(), 0.81),
            rates::fnmr(scores.genuine(), 0.81)
        ),
        (0.0, 1.0)
    );
}

#[test]
fn hand_made_report_has_the_agreed_json_keys() {
    let input = EvaluationInput {
        model: "hand-made".into(),
        identities: hand_made(),
        skipped: 2,
    };
    let report = evaluate(&input, &EvaluationConfig::default()).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "model",
        "identities",
        "images",
        "skipped",
        "genuine",
        "impostor",
        "rates",
        "operating_points",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json}");
    }
    assert_eq!(json["identities"], 3);
    assert_eq!(json["images"], 5);
    assert_eq!(json["skipped"], 2);
    assert_eq!(json["impostor"]["pairs"], 8);
    assert!(json["genuine"]["quantiles"][0]["p"].is_number());
    assert!(json["rates"][0]["fnmr"].is_number());
    let point = &json["operating_points"][0];
    for key in ["gallery_size", "target_fpir", "threshold", "fnmr", "method"] {
        assert!(point.get(key).is_some(), "no {key} in {point}");
    }
    // 8 impostor pairs see no FMR below 3/8: every point needs the tail model, which 8 pairs
    // cannot support.
    assert_eq!(point["method"], "tail-model");
    assert!(point["threshold"].is_null());
    assert!(report.tail_model.is_none());
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn bad_input_is_named() {
    let mut wrong_len = hand_made();
    wrong_len[1].embeddings[1] = vec![0.0, 1.0];
    let e = PairScores::from_identities(&wrong_len).unwrap_err();
    assert_eq!(
        e.to_string(),
        "identity \"B\", embedding 1: 2 values where the first embedding has 3"
    );
    let mut not_unit = hand_made();
    not_unit[2].embeddings[0] = vec![0.0, 0.0, 2.0];
    let e = PairScores::from_identities(&not_unit).unwrap_err();
    assert!(matches!(e, OpenSetError::NotUnit { ref identity, index: 0, .. } if identity == "C"));
    let mut nan = hand_made();
    nan[0].embeddings[0][1] = f32::NAN;
    assert!(matches!(
        PairScores::from_identities(&nan).unwrap_err(),
        OpenSetError::NotFinite { index: 0, .. }
    ));
    let mut twice = hand_made();
    twice[2].identity = "A".into();
    assert_eq!(
        PairScores::from_identities(&twice).unwrap_err(),
        OpenSetError::DuplicateIdentity("A".into())
    );
    let one = vec![hand_made().remove(0), person("empty", &[])];
    assert_eq!(
        PairScores::from_identities(&one).unwrap_err(),
        OpenSetError::TooFewIdentities(1)
    );
    let singles = vec![person("x", &[&[1.0, 0.0]]), person("y", &[&[0.0, 1.0]])];
    assert_eq!(
        PairScores::from_identities(&singles).unwrap_err(),
        OpenSetError::NoGenuinePairs
    );
    let input = EvaluationInput {
        model: "m".into(),
        identities: hand_made(),
        skipped: 0,
    };
    let bad_target = EvaluationConfig {
        target_fpirs: vec![0.0],
        ..Default::default()
    };
    assert_eq!(
        evaluate(&input, &bad_target).unwrap_err(),
        OpenSetError::BadTargetFpir(0.0)
    );
    let bad_size = EvaluationConfig {
        gallery_sizes: vec![10, 0],
        ..Default::default()
    };
    assert_eq!(
        evaluate(&input, &bad_size).unwrap_err(),
        OpenSetError::BadGallerySize
    );
}

#[test]
fn fpir_and_fmr_needed_are_inverse() {
    for &n in &DEFAULT_GALLERY_SIZES {
        for &target in &DEFAULT_TARGET_FPIRS {
            let f = fmr_needed(n, target);
            assert!(
                close(fpir(n, f), target, target * 1e-9),
                "N={n} target={target}"
            );
            // For small rates FPIR ~ N FMR.
            assert!(close(f * n as f64, target, target * 1e-3), "N={n}: {f}");
        }
    }
    assert!(close(fmr_needed(1, 0.25), 0.25, 1e-15));
    // By hand: 1 - (1 - 0.1)^2 = 0.19.
    assert!(close(fpir(2, 0.1), 0.19, 1e-12));
}

/// Inverse-CDF draws from a GPD.
fn gpd_sample(rng: &mut fastrand::Rng, gpd: Gpd, n: usize) -> Vec<f64> {
    (0..n)
        .map(|_| gpd.inverse_survival(1.0 - rng.f64()))
        .collect()
}

#[test]
fn gpd_fit_recovers_known_parameters() {
    let mut rng = fastrand::Rng::with_seed(7);
    for truth in [
        Gpd {
            shape: -0.25,
            scale: 0.05,
        },
        Gpd {
            shape: 0.2,
            scale: 0.1,
        },
        Gpd {
            shape: -0.6,
            scale: 0.3,
        },
    ] {
        let sample = gpd_sample(&mut rng, truth, 20_000);
        let fit = Gpd::fit(&sample).unwrap();
        // Standard errors at n = 20 000 are about (1 + shape) / sqrt(n) < 0.01 for the shape.
        assert!(close(fit.shape, truth.shape, 0.03), "{truth:?} -> {fit:?}");
        assert!(
            close(fit.scale / truth.scale, 1.0, 0.04),
            "{truth:?} -> {fit:?}"
        );
    }
    assert!(Gpd::fit(&[0.0, 0.0, 0.0]).is_none());
    assert!(Gpd::fit(&[0.1]).is_none());
}

/// 50,000 ascending scores: `u` plus draws from `truth`.
fn scores_above(u: f64, truth: Gpd) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(11);
    let scores = gpd_sample(&mut rng, truth, 50_000)
        .into_iter()
        .map(|y| (u + y) as f32)
        .collect();
    scores::sorted(scores)
}

#[test]
fn tail_fit_predicts_fmr_beyond_the_data() {
    // Scores 0.2 + GPD(shape 0.1, scale 0.05): a GPD is threshold-stable, so the top tenth is a
    // GPD again and the true FMR is known in closed form everywhere above 0.2.
    let truth = Gpd {
        shape: 0.1,
        scale: 0.05,
    };
    let scores = scores_above(0.2, truth);
    let tail = TailFit::fit(&scores).unwrap();
    assert_eq!(tail.exceedances, 5_000);
    assert_eq!(tail.model, TAIL_MODEL);
    assert!(close(tail.shape, truth.shape, 0.05), "{tail:?}");
    assert_eq!(tail.endpoint, None);
    // At FMR 1e-6 (20x beyond the 50 000 scores' reach) the threshold is within 0.02 of the truth.
    let want = 0.2 + truth.inverse_survival(1e-6);
    assert!(
        close(tail.threshold_for(1e-6), want, 0.02),
        "{} vs {want}",
        tail.threshold_for(1e-6)
    );
    assert!(close(tail.fmr(tail.threshold_for(1e-5)), 1e-5, 1e-9));
}

#[test]
fn a_tail_that_would_end_is_held_at_the_exponential_and_errs_high() {
    // Scores 0.2 + GPD(shape -0.3, scale 0.08): a tail that ends at 0.467.
    let truth = Gpd {
        shape: -0.3,
        scale: 0.08,
    };
    let scores = scores_above(0.2, truth);
    let tail = TailFit::fit(&scores).unwrap();
    let fitted = tail.fitted_shape.unwrap();
    assert!(close(fitted, truth.shape, 0.05), "the fit saw {fitted}");
    assert_eq!((tail.shape, tail.endpoint), (0.0, None), "{tail:?}");
    // The exponential of the same excesses: their mean is its scale.
    let u = tail.u;
    let excesses: Vec<f64> = scores[scores.len() - tail.exceedances..]
        .iter()
        .map(|&s| f64::from(s) - u)
        .collect();
    let mean = excesses.iter().sum::<f64>() / excesses.len() as f64;
    assert!(close(tail.scale, mean, 1e-12), "{tail:?} mean {mean}");
    // Beyond the data it asks for higher thresholds than the truth, never lower.
    for fmr in [1e-5, 1e-6, 1e-8] {
        let truth_threshold = 0.2 + truth.inverse_survival(fmr);
        assert!(
            tail.threshold_for(fmr) > truth_threshold,
            "at {fmr}: {} against the truth's {truth_threshold}",
            tail.threshold_for(fmr)
        );
    }
}

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

/// `people` identities of `photos` embeddings each, in 128-D like SFace: a random centre per
/// person plus noise, so genuine cosines are around 0.5 and impostor ones around 0 (sd ~0.09).
fn synthetic(people: usize, photos: usize, seed: u64) -> Vec<IdentityEmbeddings> {
    const DIM: usize = 128;
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..people)
        .map(|p| {
            let centre = unit((0..DIM).map(|_| normal(&mut rng)).collect());
            IdentityEmbeddings {
                identity: format!("person{p}"),
                embeddings: (0..photos)
                    .map(|_| unit(centre.iter().map(|c| c + 0.09 * normal(&mut rng)).collect()))
                    .collect(),
            }
        })
        .collect()
}

fn synthetic_report(resamples: usize) -> Report {
    let input = EvaluationInput {
        model: "synthetic".into(),
        identities: synthetic(80, 3, 5),
        skipped: 0,
    };
    let config = EvaluationConfig {
        bootstrap: BootstrapConfig {
            resamples,
            ..Default::default()
        },
        ..Default::default()
    };
    evaluate(&input, &config).unwrap()
}

#[test]
fn thresholds_rise_with_gallery_size() {
    let report = synthetic_report(40);
    assert_eq!(report.impostor.pairs, 80 * 79 / 2 * 9);
    assert_eq!(report.genuine.pairs, 80 * 3);
    assert!(report.tail_model.is_some());
    for &target in &DEFAULT_TARGET_FPIRS {
        let points: Vec<&OperatingPoint> = report
            .operating_points
            .iter()
            .filter(|p| p.target_fpir == target)
            .collect();
        assert_eq!(points.len(), DEFAULT_GALLERY_SIZES.len());
        for pair in points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!(a.gallery_size < b.gallery_size);
            assert!(
                a.threshold.unwrap() <= b.threshold.unwrap(),
                "{a:?} then {b:?}"
            );
            assert!(a.fnmr.unwrap() <= b.fnmr.unwrap(), "{a:?} then {b:?}");
            // Once the tail model is needed, it stays needed.
            assert!(!(a.method == Method::TailModel && b.method == Method::Empirical));
            assert!(a.threshold_upper.unwrap() <= b.threshold_upper.unwrap());
        }
        // 28 440 impostor pairs show an FMR down to 3 / 28 440 ~ 1.05e-4: N = 1 at FPIR 1e-3 is
        // read off the data, but not at 1e-4 (n f = 2.8 < 3), and N = 1M never.
        let first = if target == 1e-3 {
            Method::Empirical
        } else {
            Method::TailModel
        };
        assert_eq!(points[0].method, first, "target {target}");
        assert_eq!(points.last().unwrap().method, Method::TailModel);
    }
    // A stricter target never needs a lower threshold.
    let at = |n: u64, t: f64| {
        report
            .operating_points
            .iter()
            .find(|p| p.gallery_size == n && p.target_fpir == t)
            .unwrap()
            .threshold
            .unwrap()
    };
    for &n in &DEFAULT_GALLERY_SIZES {
        assert!(at(n, 1e-4) >= at(n, 1e-3), "N={n}");
    }
}

#[test]
fn empirical_threshold_counts_by_hand() {
    let scores = PairScores::from_identities(&synthetic(80, 3, 5)).unwrap();
    let imp = scores.impostor();
    let model = FmrModel::new(imp);
    // FMR 1e-3 of 28 440 pairs allows floor(28.44) = 28 false matches: the threshold sits just
    // above the 29th highest score, so exactly 28 scores reach it.
    let (t, method) = model.threshold_for(1e-3).unwrap();
    assert_eq!(method, Method::Empirical);
    assert_eq!(rates::at_or_above(imp, t), 28);
    assert_eq!(f64::from(imp[imp.len() - 29].next_up()), t);
}

#[test]
fn safe_gallery_size_matches_the_operating_points() {
    let scores = PairScores::from_identities(&synthetic(80, 3, 5)).unwrap();
    let model = FmrModel::new(scores.impostor());
    let g = scores.genuine();
    for &target in &DEFAULT_TARGET_FPIRS {
        let GalleryLimit::AtMost(n) = operating::safe_gallery_size(&model, g, target, 0.05) else {
            panic!("unbounded on synthetic data");
        };
        assert!(n >= 1, "target {target}: {n}");
        let fnmr_at = |n: u64| model.operating_point(n, target, g).fnmr.unwrap();
        assert!(fnmr_at(n) <= 0.05 + 1e-9, "N={n}: {}", fnmr_at(n));
        assert!(
            fnmr_at(n * 10 + 10) > 0.05,
            "N={}: {}",
            n * 10 + 10,
            fnmr_at(n * 10 + 10)
        );
    }
    // A looser FNMR budget serves at least as many people.
    let size = |max: f64| match operating::safe_gallery_size(&model, g, 1e-3, max) {
        GalleryLimit::AtMost(n) => n,
        GalleryLimit::Unbounded => u64::MAX,
    };
    assert!(size(0.01) <= size(0.05) && size(0.05) <= size(0.2));
    assert_eq!(
        operating::safe_gallery_size(&model, g, 1e-3, 1.0),
        GalleryLimit::Unbounded
    );
}

#[test]
fn bootstrap_is_reproducible_and_bounds_from_above() {
    let (a, b) = (synthetic_report(30), synthetic_report(30));
    assert_eq!(a, b);
    // The 95 % bound is not below the point estimate at the large galleries, where the tail model
    // and its uncertainty matter.
    let big = a
        .operating_points
        .iter()
        .find(|p| p.gallery_size == 1_000_000 && p.target_fpir == 1e-3)
        .unwrap();
    assert!(
        big.threshold_upper.unwrap() >= big.threshold.unwrap(),
        "{big:?}"
    );
    assert!(big.fnmr_at_upper.unwrap() >= big.fnmr.unwrap());
    let none = synthetic_report(0);
    assert!(
        none.operating_points
            .iter()
            .all(|p| p.threshold_upper.is_none())
    );
}

#[test]
fn det_curve_trades_fmr_for_fnmr() {
    let scores = PairScores::from_identities(&hand_made()).unwrap();
    let det = det_curve(scores.genuine(), scores.impostor());
    // Distinct scores: 0.8, 0.6, 0.36, 0.
    assert_eq!(det.len(), 4);
    assert!(close(det[0].threshold, 0.8, 1e-6));
    assert_eq!((det[0].fmr, det[0].fnmr), (1.0 / 8.0, 0.5));
    assert_eq!((det[3].fmr, det[3].fnmr), (1.0, 0.0));
    for w in det.windows(2) {
        assert!(w[0].threshold > w[1].threshold);
        assert!(w[0].fmr <= w[1].fmr && w[0].fnmr >= w[1].fnmr);
    }
}

#[test]
fn templates_of_two_photos_against_one_by_hand() {
    // A's three photos in 2-D: a0 = (1,0), a1 = (0.8,0.6), a2 = (0.8,-0.6); B = (0,1) is the
    // stranger. B has one photo, so only A is measured.
    let people = [
        person("A", &[&[1.0, 0.0], &[0.8, 0.6], &[0.8, -0.6]]),
        person("B", &[&[0.0, 1.0]]),
    ];
    let gains = template_gains(&people, &[1, 2]);
    let [one, two] = gains.as_slice() else {
        panic!("{gains:?}")
    };
    assert_eq!((one.photos, one.identities), (1, 1));
    // k = 1: each probe against each other photo: a0 0.8, 0.8; a1 0.8, 0.28; a2 0.8, 0.28.
    assert_eq!(one.genuine.pairs, 6);
    assert!(close(
        one.genuine.mean,
        (4.0 * 0.8 + 2.0 * 0.28) / 6.0,
        1e-6
    ));
    // k = 2: a0 against mean(a1, a2) = (1,0): 1.0 twice (both orders of the run); a1 against
    // mean(a0, a2) = (1.8,-0.6)/sqrt(3.6): (1.44 - 0.36)/sqrt(3.6) = 0.5692 twice; a2 alike.
    let a1_score = 1.08 / 3.6f64.sqrt();
    assert_eq!(two.genuine.pairs, 6);
    assert!(close(two.genuine.mean, (2.0 + 4.0 * a1_score) / 6.0, 1e-6));
    assert!(close(two.mean_per_identity, two.genuine.mean, 1e-9));
    // Impostors: B against a0, a1, a2 (0, 0.6, -0.6); against the runs {a0,a1}, {a1,a2},
    // {a2,a0}: 0.6/sqrt(3.6) = 0.3162, 0, -0.3162.
    assert_eq!((one.impostor.pairs, two.impostor.pairs), (3, 3));
    assert!(close(one.impostor.max, 0.6, 1e-6));
    assert!(close(two.impostor.max, 0.6 / 3.6f64.sqrt(), 1e-6));
    let at = |gain: &TemplateGain, t: f64| {
        *gain
            .rates
            .iter()
            .find(|r| close(r.threshold, t, 1e-9))
            .unwrap()
    };
    // At 0.30: one photo misses a1's and a2's 0.28 (2 of 6), two miss nothing; both let B's
    // best score through (1 of 3). At 0.40 the template also shuts B out.
    assert!(close(at(one, 0.30).fnmr, 2.0 / 6.0, 1e-12) && close(at(two, 0.30).fnmr, 0.0, 1e-12));
    assert!(
        close(at(one, 0.30).fmr, 1.0 / 3.0, 1e-12) && close(at(two, 0.30).fmr, 1.0 / 3.0, 1e-12)
    );
    assert!(close(at(one, 0.40).fmr, 1.0 / 3.0, 1e-12) && close(at(two, 0.40).fmr, 0.0, 1e-12));
}

#[test]
fn no_template_gains_without_enough_photos_or_strangers() {
    assert!(
        template_gains(&hand_made(), &[1, 2]).is_empty(),
        "nobody has three photos"
    );
    let alone = [person("A", &[&[1.0, 0.0], &[0.8, 0.6], &[0.8, -0.6]])];
    assert!(template_gains(&alone, &[1, 2]).is_empty(), "no stranger");
    assert!(template_gains(&alone, &[]).is_empty());
}
