// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where a gallery stands under the threshold rule, said the same way by `facegatectl list` (from
//! the calibration) and `facegatectl status` (from the running gate).

use facegate_vision::match_rule::{self, MatchRule};

/// "threshold 0.4750 for 100 people, expected false grants per stranger passage 9.6e-5; safe up
/// to 0 people: UNSAFE". `expected` is `None` where the calibration does not model it,
/// `safe_size` `u64::MAX` for no limit.
pub fn format_matching(
    threshold: f64,
    gallery_size: u64,
    expected: Option<f64>,
    safe_size: u64,
) -> String {
    let threshold = if threshold.is_finite() && threshold <= 1.0 {
        format!("threshold {threshold:.4}")
    } else {
        "no threshold meets the target: nothing matches".to_owned()
    };
    let expected = expected.map_or_else(|| "not modelled".to_owned(), |rate| format!("{rate:.1e}"));
    let safe = match safe_size {
        u64::MAX => "no size limit".to_owned(),
        limit if gallery_size > limit => format!("safe up to {limit} people: UNSAFE"),
        limit => format!("safe up to {limit} people"),
    };
    format!(
        "{threshold} for {gallery_size} people, expected false grants per stranger passage \
         {expected}; {safe}"
    )
}

/// The threshold the gate's default rule applies to a gallery of `gallery_size` people of
/// `model`: the calibrated one, or the rule's floor where the model has no calibration here.
pub fn threshold_for(model: &str, gallery_size: u64) -> f64 {
    let rule = MatchRule::default();
    match_rule::find_calibration(&match_rule::calibration_dir(), model)
        .and_then(|calibration| rule.standing(&calibration, gallery_size))
        .map_or(rule.min_threshold, |standing| standing.threshold)
}

/// The `matching:` line of `facegatectl list`: the default rule (as the gate's default
/// configuration applies it) with the model's calibration from the calibration directory.
pub fn list_line(model: &str, gallery_size: u64) -> String {
    let rule = MatchRule::default();
    let standing = match_rule::find_calibration(&match_rule::calibration_dir(), model)
        .and_then(|calibration| rule.standing(&calibration, gallery_size));
    match standing {
        Ok(standing) => format!(
            "matching: {} (at most {:e} false grants per stranger passage, at most {} % false rejects)",
            format_matching(
                standing.threshold,
                gallery_size,
                standing.expected_false_grant_rate,
                standing.safe_gallery_size_or_max()
            ),
            rule.max_false_grant_rate,
            rule.max_false_reject_rate * 100.0
        ),
        Err(e) => format!("matching: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_the_threshold_the_rate_and_whether_the_gallery_is_safe() {
        assert_eq!(
            format_matching(0.475, 100, Some(9.6e-5), 0),
            "threshold 0.4750 for 100 people, expected false grants per stranger passage 9.6e-5; \
             safe up to 0 people: UNSAFE"
        );
        assert_eq!(
            format_matching(0.45, 3, None, 4),
            "threshold 0.4500 for 3 people, expected false grants per stranger passage not \
             modelled; safe up to 4 people"
        );
        assert!(format_matching(f64::INFINITY, 5, Some(0.0), u64::MAX).starts_with("no threshold"));
        assert!(format_matching(0.5, 5, Some(0.0), u64::MAX).ends_with("; no size limit"));
    }
}
