// SPDX-License-Identifier: MIT OR Apache-2.0
//! Presentation attacks at the gate: every photo of every passenger the demo enrols, held up to
//! the camera on a phone's screen and as a print (facegate_devtools::attack_video), is denied
//! `presentation-attack` and never granted, by the shipped pipeline with fglive's default cues;
//! and the same passengers walking up themselves (their photos approaching with sway, blur and
//! exposure changes) are never denied as an attack. The demo's own walk-ups are the gate_service
//! test's, which runs the same pipeline. docs/ACCURACY.md ("Presentation attacks") has the
//! figures of `facegate-dev bench liveness`, which plays these and the face corpus's walk-ups.

use std::path::Path;
use std::sync::Mutex;

use facegate_dbus::DenyReason;
use facegate_devtools::attack_video::Presentation;
use facegate_devtools::gate_rig::RigFiles;
use facegate_devtools::pad_trial::{self, Pad, WalkupOutcome};
use facegate_devtools::walkup_video::{Motion, WalkupPhoto};

/// The video plays in real time and the gate drops frames it sees late: one gate at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn trial(name: &str, motion: Motion) -> (Vec<WalkupPhoto>, Vec<WalkupOutcome>) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = tempfile::tempdir().unwrap();
    let files = RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated")))
        .expect("repository files");
    let walkups = pad_trial::enrolled_people_photos(&files).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        walkups.len() >= 6,
        "the enrolled people's photos: {walkups:?}"
    );
    let outcomes = pad_trial::run(
        &files,
        &scratch.path().join(name),
        &walkups,
        motion,
        Pad::On,
    )
    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    eprintln!("{name}: {outcomes:#?}");
    (walkups, outcomes)
}

#[test]
fn every_phone_attack_on_an_enrolled_passenger_is_denied_presentation_attack() {
    every_attack_is_denied(Presentation::Phone);
}

#[test]
fn every_print_attack_on_an_enrolled_passenger_is_denied_presentation_attack() {
    every_attack_is_denied(Presentation::Print);
}

fn every_attack_is_denied(presentation: Presentation) {
    let (walkups, outcomes) = trial(presentation.as_str(), Motion::Presented(presentation));
    assert_eq!(outcomes.len(), walkups.len());
    for outcome in &outcomes {
        assert!(
            outcome.granted.is_empty(),
            "{presentation} of {} granted: {outcome:?}",
            outcome.photo
        );
        assert!(
            outcome.denied_as_attack(),
            "{presentation} of {} not denied {}: {outcome:?}",
            outcome.photo,
            DenyReason::PresentationAttack
        );
    }
}

#[test]
fn the_same_passengers_walking_up_are_not_taken_for_attacks() {
    let (_, outcomes) = trial("genuine", Motion::Approach);
    for outcome in &outcomes {
        assert!(
            !outcome.denied_as_attack(),
            "{} walking up was denied {}: {outcome:?}",
            outcome.photo,
            DenyReason::PresentationAttack
        );
    }
    // Not a recognition test, but a gate that grants none of them would pass the line above
    // without judging anyone live.
    let granted = outcomes.iter().filter(|o| !o.granted.is_empty()).count();
    assert!(
        granted * 2 > outcomes.len(),
        "most enrolled passengers walking up are granted: {outcomes:#?}"
    );
}
