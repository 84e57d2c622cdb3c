// SPDX-License-Identifier: MIT OR Apache-2.0
//! The vision library's `tracing` events reach the GStreamer debug log in the `fgvision`
//! category once the plugin is registered in a program without a subscriber of its own (this
//! test binary, like gst-launch-1.0), at the matching level and only above the threshold.

mod common;

use std::sync::{Arc, Mutex};

use facegate_vision::gallery::Gallery;
use gstfacegate::log::CATEGORY;

/// One line the GStreamer log received in the `fgvision` category.
#[derive(Clone, Debug)]
struct Line {
    level: gst::DebugLevel,
    function: String,
    message: String,
}

/// Runs `f` with `fgvision` at `threshold` and returns the lines logged in it meanwhile.
fn logged_during(threshold: gst::DebugLevel, f: impl FnOnce()) -> Vec<Line> {
    // The category and the log are process-wide: one test at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::init();
    let category = gst::DebugCategory::get(CATEGORY)
        .expect("the plugin registers the fgvision category when it is registered");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let log_function = gst::log::add_log_function(
        move |cat, level, _file, function, _line, _object, message| {
            if cat.name() == CATEGORY {
                sink.lock().unwrap().push(Line {
                    level,
                    function: function.to_string(),
                    message: message.get().map(|m| m.to_string()).unwrap_or_default(),
                });
            }
        },
    );
    category.set_threshold(threshold);
    f();
    category.reset_threshold();
    gst::log::remove_log_function(log_function);
    lines.lock().unwrap().clone()
}

#[test]
fn tracing_events_arrive_with_their_level_target_and_fields() {
    let lines = logged_during(gst::DebugLevel::Debug, || {
        tracing::warn!(target: "facegate_vision::gallery", dir = "/srv/g", people = 3, "cannot list the gallery");
        tracing::debug!(target: "facegate_vision::gallery", "debug detail");
        // LOG is above the DEBUG threshold: dropped.
        tracing::trace!(target: "facegate_vision::gallery", "trace detail");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let warning = &lines[0];
    assert_eq!(warning.level, gst::DebugLevel::Warning);
    assert_eq!(warning.function, "facegate_vision::gallery");
    assert_eq!(
        warning.message,
        "cannot list the gallery dir=/srv/g people=3"
    );
    assert_eq!(lines[1].level, gst::DebugLevel::Debug);
    assert_eq!(lines[1].message, "debug detail");
}

#[test]
fn events_from_vision_code_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let lines = logged_during(gst::DebugLevel::Debug, || {
        let mut gallery = Gallery::create(dir.path(), "synthetic@sha256:0", 4).unwrap();
        gallery
            .enroll(
                "p-1",
                "P",
                "synthetic@sha256:0",
                &[1.0, 0.0, 0.0, 0.0],
                false,
            )
            .unwrap();
        gallery.commit().unwrap();
    });
    // Creating the gallery commits generation 0 (empty), the enrolment generation 1.
    let committed = lines
        .iter()
        .find(|line| {
            line.message.starts_with("committed gallery generation")
                && line.message.contains(" generation=1 people=1")
        })
        .unwrap_or_else(|| panic!("no event for committing generation 1 in {lines:?}"));
    assert_eq!(committed.level, gst::DebugLevel::Debug);
    // The event's target is the module that emitted it, somewhere in the gallery.
    assert!(
        committed.function.starts_with("facegate_vision::gallery"),
        "{}",
        committed.function
    );
    assert!(
        committed.message.contains(dir.path().to_str().unwrap()),
        "{committed:?}"
    );
}

#[test]
fn nothing_arrives_below_the_threshold() {
    let lines = logged_during(gst::DebugLevel::Error, || {
        tracing::warn!(target: "facegate_vision::gallery", "only a warning");
    });
    assert!(lines.is_empty(), "{lines:?}");
}
