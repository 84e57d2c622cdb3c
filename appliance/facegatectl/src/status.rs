// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl status`: the gate's `Stats()` as a few aligned lines for people.

use facegate_dbus::{LastDecision, Stats, Verdict};

/// A few aligned lines for people, e.g.
///
/// ```text
/// state:         running
/// mode:          normal
/// gallery:       1234 people (generation 7)
/// matching:      threshold 0.4920 for 1234 people, expected false grants per stranger passage …
/// today:         56 passages, 3 denied
/// fps:           14.5
/// uptime:        1d 02:03:04 (2 pipeline restarts)
/// last decision: {"decision":"grant",...}
/// version:       0.1.0
/// ```
pub fn format_status(status: &Stats) -> String {
    let last = format_decision(&status.last_decision);
    let restarts = match status.restarts {
        1 => "1 pipeline restart".to_string(),
        n => format!("{n} pipeline restarts"),
    };
    let rows = [
        ("state", status.state.to_string()),
        ("mode", status.mode.to_string()),
        (
            "gallery",
            format!(
                "{} {} (generation {})",
                status.gallery_size,
                if status.gallery_size == 1 {
                    "person"
                } else {
                    "people"
                },
                status.gallery_generation
            ),
        ),
        (
            "matching",
            crate::standing::format_matching(
                status.effective_threshold,
                status.gallery_size,
                (status.expected_false_grant_rate >= 0.0)
                    .then_some(status.expected_false_grant_rate),
                status.safe_gallery_size,
            ),
        ),
        (
            "today",
            format!(
                "{} passages, {} denied",
                status.passages_today, status.denied_today
            ),
        ),
        ("fps", format!("{:.1}", status.fps)),
        (
            "uptime",
            format!("{} ({restarts})", format_duration(status.uptime_s)),
        ),
        ("last decision", last),
        ("version", status.version.clone()),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (k, v) in rows {
        out.push_str(&format!("{:<width$}{v}\n", format!("{k}:")));
    }
    out
}

/// "granted Person A (p-001), similarity 0.71 at 2026-…", "denied (passback) p-001 at …".
fn format_decision(decision: &LastDecision) -> String {
    let Some(verdict) = decision.verdict else {
        return "none yet".into();
    };
    let mut text = verdict.to_string();
    if let Some(reason) = decision.reason {
        text += &format!(" ({reason})");
    }
    match (&decision.label, &decision.id) {
        (Some(label), Some(id)) if verdict == Verdict::Granted => {
            text += &format!(" {label} ({id})")
        }
        (_, Some(id)) => text += &format!(" {id}"),
        _ => {}
    }
    if let Some(similarity) = decision.similarity {
        text += &format!(", similarity {similarity:.2}");
    }
    if let Some(time) = &decision.time {
        text += &format!(" at {time}");
    }
    text
}

fn format_duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_aligned_lines() {
        let s = Stats {
            state: facegate_dbus::State::Running,
            mode: facegate_dbus::Mode::Normal,
            gallery_generation: 7,
            gallery_size: 1234,
            effective_threshold: 0.492,
            expected_false_grant_rate: 9.7e-5,
            safe_gallery_size: 0,
            passages_today: 56,
            denied_today: 3,
            fps: 14.46,
            last_decision: LastDecision {
                verdict: Some(Verdict::Granted),
                id: Some("p-001".into()),
                label: Some("Ada".into()),
                similarity: Some(0.714),
                time: Some("2026-12-01T10:00:00+00:00".into()),
                ..LastDecision::default()
            },
            uptime_s: 93_784,
            restarts: 2,
            stream_start_unix_ns: 0,
            version: "0.1.0".into(),
        };
        let text = format_status(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 9);
        assert_eq!(lines[0], "state:         running");
        assert_eq!(lines[2], "gallery:       1234 people (generation 7)");
        assert_eq!(
            lines[3],
            "matching:      threshold 0.4920 for 1234 people, expected false grants per stranger \
             passage 9.7e-5; safe up to 0 people: UNSAFE"
        );
        assert_eq!(lines[4], "today:         56 passages, 3 denied");
        assert_eq!(lines[5], "fps:           14.5");
        assert_eq!(lines[6], "uptime:        1d 02:03:04 (2 pipeline restarts)");
        assert_eq!(
            lines[7],
            "last decision: granted Ada (p-001), similarity 0.71 at 2026-12-01T10:00:00+00:00"
        );
        assert_eq!(lines[8], "version:       0.1.0");
        // Values start in the same column.
        for l in &lines {
            assert_eq!(&l[14..15], " ", "{l}");
            assert_ne!(&l[15..16], " ", "{l}");
        }
        let d = format_status(&Stats::default());
        assert!(d.contains("last decision: none yet"), "{d}");
        assert!(
            d.contains("uptime:        00:00:00 (0 pipeline restarts)"),
            "{d}"
        );
    }
}
