// SPDX-License-Identifier: MIT OR Apache-2.0
//! When a face is matched to an enrolled person: the one rule fgmatch, the gate service and the
//! operator's CLI all apply, so that they never disagree.
//!
//! A stranger is compared with everyone enrolled, so the chance of a false match grows with the
//! gallery (FPIR = 1 - (1 - FMR)^N). The threshold in force is therefore the larger of a
//! configured floor and the threshold the embedder's calibration gives for the gallery's current
//! size at the target false-grant rate per stranger passage ([`MatchRule::standing`]). A match
//! must also beat the best *other* identity by a margin ([`judge`]): a face two enrolled people
//! fit about equally well is not evidence of either.
//!
//! Calibrations are found by the embedder model's identity ([`find_calibration`]) in
//! `$FACEGATE_CALIBRATION_DIR`, else in [`SYSTEM_CALIBRATION_DIR`].

use std::path::{Path, PathBuf};

use crate::calibration::{Calibration, CalibrationError};
use crate::open_set::{GalleryLimit, fpir};

/// The lowest threshold by default: what the gate used before thresholds followed the gallery,
/// and above the calibrated threshold for galleries of up to about ten people at the default
/// target, so that small galleries keep their behaviour.
pub const DEFAULT_MIN_THRESHOLD: f64 = 0.45;
/// False grants per stranger passage the threshold is chosen to keep under.
pub const DEFAULT_MAX_FALSE_GRANT_RATE: f64 = 1e-4;
/// The share of enrolled passengers' comparisons a gallery may reject and still count as safe.
pub const DEFAULT_MAX_FALSE_REJECT_RATE: f64 = 0.05;
/// How far the best identity must score above the best other one. The development corpus's
/// highest different-person score is 0.49 against a genuine median near 0.6: a runner-up within
/// 0.05 of the best means the face sits between two people, not on one.
pub const DEFAULT_MIN_MARGIN: f64 = 0.05;

/// Environment variable naming the directory of calibration files (`<model>.toml`).
pub const CALIBRATION_DIR_ENV: &str = "FACEGATE_CALIBRATION_DIR";
/// Where the appliance image installs the calibrations.
pub const SYSTEM_CALIBRATION_DIR: &str = "/usr/share/facegate/calibration";

/// The directory calibrations are read from: `$FACEGATE_CALIBRATION_DIR` or the system one.
pub fn calibration_dir() -> PathBuf {
    std::env::var_os(CALIBRATION_DIR_ENV)
        .map_or_else(|| PathBuf::from(SYSTEM_CALIBRATION_DIR), PathBuf::from)
}

/// The calibration file of the model named `model_identity` ("file-stem@sha256:…") in `dir`.
pub fn calibration_path(dir: &Path, model_identity: &str) -> PathBuf {
    let stem = model_identity
        .split_once('@')
        .map_or(model_identity, |(stem, _)| stem);
    dir.join(format!("{stem}.toml"))
}

/// Loads the calibration of `model_identity` from `dir`, refusing a file made for another model.
pub fn find_calibration(dir: &Path, model_identity: &str) -> Result<Calibration, CalibrationError> {
    let path = calibration_path(dir, model_identity);
    if !path.exists() {
        return Err(CalibrationError::Missing {
            path,
            model: model_identity.to_owned(),
        });
    }
    let calibration = Calibration::load(&path)?;
    if calibration.model.identity != model_identity {
        return Err(CalibrationError::OtherModel {
            path,
            found: calibration.model.identity,
            expected: model_identity.to_owned(),
        });
    }
    Ok(calibration)
}

/// What a gate asks of its matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchRule {
    /// No threshold below this, whatever the calibration allows.
    pub min_threshold: f64,
    /// Target false grants per stranger passage.
    pub max_false_grant_rate: f64,
    /// The false-reject budget that bounds the safe gallery size.
    pub max_false_reject_rate: f64,
}

impl Default for MatchRule {
    fn default() -> Self {
        MatchRule {
            min_threshold: DEFAULT_MIN_THRESHOLD,
            max_false_grant_rate: DEFAULT_MAX_FALSE_GRANT_RATE,
            max_false_reject_rate: DEFAULT_MAX_FALSE_REJECT_RATE,
        }
    }
}

/// Where a gallery of a given size stands under a [`MatchRule`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub gallery_size: u64,
    /// The similarity a match needs. Infinite (nothing matches) when the calibration has no
    /// threshold meeting the target at this size.
    pub threshold: f64,
    /// Expected false grants per stranger passage at `threshold`, from the calibration's fitted
    /// impostor tail; `None` where the threshold lies below the tail (not modelled) or the
    /// calibration has no tail.
    pub expected_false_grant_rate: Option<f64>,
    /// The largest gallery that meets the target within the false-reject budget.
    pub safe_gallery_size: GalleryLimit,
}

impl Standing {
    /// Whether the gallery is within the safe size.
    pub fn is_safe(&self) -> bool {
        match self.safe_gallery_size {
            GalleryLimit::Unbounded => true,
            GalleryLimit::AtMost(limit) => self.gallery_size <= limit,
        }
    }

    /// The safe size as one number: `u64::MAX` for no limit.
    pub fn safe_gallery_size_or_max(&self) -> u64 {
        match self.safe_gallery_size {
            GalleryLimit::Unbounded => u64::MAX,
            GalleryLimit::AtMost(limit) => limit,
        }
    }
}

impl MatchRule {
    /// Checks the rule's values; the message starts with the setting (`max_false_grant_rate: …`).
    pub fn check(&self) -> Result<(), String> {
        if !(-1.0..=1.0).contains(&self.min_threshold) {
            return Err(format!(
                "min_threshold: must lie within -1..1 (got {})",
                self.min_threshold
            ));
        }
        if !(self.max_false_grant_rate > 0.0 && self.max_false_grant_rate < 1.0) {
            return Err(format!(
                "max_false_grant_rate: must lie strictly between 0 and 1 (got {})",
                self.max_false_grant_rate
            ));
        }
        if !(self.max_false_reject_rate > 0.0 && self.max_false_reject_rate < 1.0) {
            return Err(format!(
                "max_false_reject_rate: must lie strictly between 0 and 1 (got {})",
                self.max_false_reject_rate
            ));
        }
        Ok(())
    }

    /// The threshold and limits for a gallery of `gallery_size` people. An empty gallery matches
    /// nobody whatever the threshold: it gets the floor. Fails only when the rule asks for a
    /// target or budget below the calibration's table.
    pub fn standing(
        &self,
        calibration: &Calibration,
        gallery_size: u64,
    ) -> Result<Standing, CalibrationError> {
        let safe_gallery_size =
            calibration.safe_gallery_size(self.max_false_grant_rate, self.max_false_reject_rate)?;
        let threshold = match calibration.threshold_for(gallery_size, self.max_false_grant_rate) {
            Ok(calibrated) => calibrated.threshold.max(self.min_threshold),
            Err(CalibrationError::NoGallery) => self.min_threshold,
            // Beyond the table, or no tail to model it: no threshold is known to be safe.
            Err(
                CalibrationError::GalleryBeyondTable { .. } | CalibrationError::NoThreshold { .. },
            ) => f64::INFINITY,
            Err(other) => return Err(other),
        };
        let expected_false_grant_rate = calibration
            .impostor_tail
            .as_ref()
            .filter(|tail| threshold >= tail.u)
            .map(|tail| {
                if threshold.is_finite() {
                    fpir(gallery_size, tail.fmr(threshold))
                } else {
                    0.0
                }
            });
        Ok(Standing {
            gallery_size,
            threshold,
            expected_false_grant_rate,
            safe_gallery_size,
        })
    }
}

/// What one face's gallery search amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// The best candidate clears the threshold and the margin.
    Matched,
    /// The best candidate clears the threshold, but another identity scores within the margin.
    Ambiguous,
    /// The best candidate is below the threshold (or there is none).
    NoMatch,
}

/// Judges a face whose best candidate scored `best` and whose best candidate of another identity
/// scored `runner_up`.
pub fn judge(
    best: Option<f64>,
    runner_up: Option<f64>,
    threshold: f64,
    min_margin: f64,
) -> Judgement {
    match best {
        Some(best) if best >= threshold => {
            if runner_up.is_some_and(|other| best - other < min_margin) {
                Judgement::Ambiguous
            } else {
                Judgement::Matched
            }
        }
        _ => Judgement::NoMatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Calibration {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/calibration/facegate_sface_2021dec.toml");
        Calibration::load(&path).unwrap()
    }

    #[test]
    fn the_threshold_is_the_floor_or_the_calibrated_one_whichever_is_higher() {
        let calibration = shipped();
        let rule = MatchRule::default();
        let mut last = 0.0;
        for size in [1, 5, 10, 40, 1_000, 100_000, 1_000_000] {
            let standing = rule.standing(&calibration, size).unwrap();
            let calibrated = calibration
                .threshold_for(size, rule.max_false_grant_rate)
                .unwrap()
                .threshold;
            assert_eq!(
                standing.threshold,
                calibrated.max(rule.min_threshold),
                "{size}"
            );
            assert!(standing.threshold >= last, "the threshold falls at {size}");
            last = standing.threshold;
        }
        // A gallery of a thousand needs more than the floor: the whole point.
        assert!(rule.standing(&calibration, 1_000).unwrap().threshold > DEFAULT_MIN_THRESHOLD);
        assert_eq!(
            rule.standing(&calibration, 0).unwrap().threshold,
            DEFAULT_MIN_THRESHOLD
        );
    }

    #[test]
    fn the_expected_false_grant_rate_meets_the_target_and_grows_with_the_gallery() {
        let calibration = shipped();
        let rule = MatchRule::default();
        let small = rule.standing(&calibration, 2).unwrap();
        let large = rule.standing(&calibration, 1_000).unwrap();
        let (small_rate, large_rate) = (
            small.expected_false_grant_rate.unwrap(),
            large.expected_false_grant_rate.unwrap(),
        );
        // At the calibrated threshold the rate is the target, to rounding.
        assert!(
            small_rate <= rule.max_false_grant_rate * (1.0 + 1e-9),
            "{small_rate}"
        );
        assert!(
            large_rate <= rule.max_false_grant_rate * 1.01,
            "{large_rate}"
        );
        // At a fixed threshold the rate grows with the size: the floor for 2 people at 40.
        let at_floor_40 = fpir(
            40,
            calibration
                .impostor_tail
                .as_ref()
                .unwrap()
                .fmr(small.threshold),
        );
        assert!(at_floor_40 > small_rate);
    }

    #[test]
    fn a_gallery_beyond_the_table_matches_nobody() {
        let standing = MatchRule::default()
            .standing(&shipped(), 20_000_000)
            .unwrap();
        assert_eq!(standing.threshold, f64::INFINITY);
        assert_eq!(standing.expected_false_grant_rate, Some(0.0));
        assert_eq!(
            judge(Some(1.0), None, standing.threshold, 0.0),
            Judgement::NoMatch
        );
    }

    #[test]
    fn the_safe_size_is_the_calibrations_at_the_rules_rates() {
        let calibration = shipped();
        let rule = MatchRule {
            max_false_grant_rate: 1e-2,
            max_false_reject_rate: 0.2,
            ..MatchRule::default()
        };
        let limit = calibration.safe_gallery_size(1e-2, 0.2).unwrap();
        let GalleryLimit::AtMost(n) = limit else {
            panic!("the shipped calibration has a limit at 1e-2 / 20 %: {limit:?}");
        };
        assert!(rule.standing(&calibration, n).unwrap().is_safe());
        assert!(!rule.standing(&calibration, n + 1).unwrap().is_safe());
    }

    #[test]
    fn a_target_below_the_table_is_an_error() {
        let rule = MatchRule {
            max_false_grant_rate: 1e-9,
            ..MatchRule::default()
        };
        let error = rule.standing(&shipped(), 10).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("below the calibration's smallest"),
            "{error}"
        );
    }

    #[test]
    fn judging_needs_the_threshold_and_the_margin() {
        assert_eq!(
            judge(Some(0.60), Some(0.30), 0.45, 0.05),
            Judgement::Matched
        );
        assert_eq!(judge(Some(0.60), None, 0.45, 0.05), Judgement::Matched);
        assert_eq!(
            judge(Some(0.60), Some(0.58), 0.45, 0.05),
            Judgement::Ambiguous
        );
        assert_eq!(
            judge(Some(0.44), Some(0.10), 0.45, 0.05),
            Judgement::NoMatch
        );
        assert_eq!(judge(None, None, 0.45, 0.05), Judgement::NoMatch);
    }

    #[test]
    fn a_calibration_is_found_by_the_models_identity() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/calibration");
        let identity = shipped().model.identity;
        assert_eq!(
            find_calibration(&dir, &identity).unwrap().model.identity,
            identity
        );

        let missing = find_calibration(&dir, "other_model@sha256:0123").unwrap_err();
        assert!(
            matches!(&missing, CalibrationError::Missing { path, .. } if path.ends_with("other_model.toml")),
            "{missing}"
        );
        let stem = identity.split_once('@').unwrap().0;
        let other = find_calibration(&dir, &format!("{stem}@sha256:0000000000000000")).unwrap_err();
        assert!(
            matches!(other, CalibrationError::OtherModel { .. }),
            "{other}"
        );
    }
}
