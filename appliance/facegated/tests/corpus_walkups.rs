// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate on the face corpus (models/corpus.toml): half its people enrolled, and everyone,
//! enrolled or stranger, walking up once in a video made from their photos. Where the corpus
//! has a second photo of an enrolled person, they walk up with that one, not the one enrolled.
//! The gate must grant no stranger and nobody as someone else, and decide as
//! `facegatectl identify` sees the same video: both apply facegate_vision::match_rule.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use facegate_dev_assets::AssetDir;
use facegate_devtools::corpus_cast;
use facegate_devtools::gate_rig::{GateRig, RigFiles, follow};
use facegate_devtools::walkup_video::{self, WalkupPhoto};
use facegate_meta::dump::FrameLine;
use facegatectl::identify;
use facegatectl::output::Output;
use facegatectl::pipeline::Models;

/// What happened in each walk-up (by index in the timeline).
#[derive(Debug, Default)]
struct Walkup {
    /// Identities the gate granted.
    granted: Vec<String>,
    /// Decisions the gate journalled.
    decisions: usize,
    /// Per frame with a face, whom identify matched it to.
    identified: Vec<Option<String>>,
}

/// identify's frames on `video`, matching as the gate whose rate is `max_false_grant_rate`.
fn identified_frames(
    video: &Path,
    gallery: &Path,
    models: &Models,
    max_false_grant_rate: f64,
    scratch: &Path,
) -> Vec<FrameLine> {
    let dump = scratch.join("identify.jsonl");
    let options = identify::Options {
        gallery: Some(gallery.to_path_buf()),
        models: models.clone(),
        max_false_grant_rate: Some(max_false_grant_rate),
    };
    let out = std::fs::File::create(&dump).unwrap();
    identify::dump(video, &options, Output::new(out), false).expect("identify runs on the video");
    std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("identify writes frame lines"))
        .collect()
}

#[test]
fn half_the_corpus_enrolled_grants_no_stranger_and_decides_as_identify_sees() {
    let scratch = tempfile::tempdir().unwrap();
    let mut files = RigFiles::for_facegated(Path::new(env!("CARGO_BIN_EXE_facegated")))
        .expect("repository files");
    facegatectl::init().unwrap();
    let models = files.models();
    let usable =
        corpus_cast::usable(&AssetDir::Corpus.path(), &models).unwrap_or_else(|e| panic!("{e:#}"));
    let people = corpus_cast::half_enrolled(&usable);
    let enrolled: Vec<&corpus_cast::Cast> = people
        .iter()
        .filter(|p| p.enrolled_with.is_some())
        .collect();
    let strangers = people.len() - enrolled.len();
    assert!(
        enrolled.len() >= 10 && strangers >= 10,
        "the corpus gives {} enrolled and {strangers} strangers; expected ten or more of each",
        enrolled.len()
    );

    files.video = scratch.path().join("corpus_walkups.avi");
    let walkups: Vec<WalkupPhoto> = people.iter().map(|p| p.walkup.clone()).collect();
    let timeline = walkup_video::write(&files.video, &walkups).expect("walk-up video");
    let gallery_people: Vec<(&str, &str, String)> = enrolled
        .iter()
        .map(|p| {
            let photo = p.enrolled_with.as_ref().unwrap().to_string_lossy();
            (p.id.as_str(), p.id.as_str(), photo.into_owned())
        })
        .collect();
    let gallery_people: Vec<(&str, &str, &str)> = gallery_people
        .iter()
        .map(|(id, label, photo)| (*id, *label, photo.as_str()))
        .collect();
    let rig = GateRig::new(files, scratch.path(), &gallery_people).expect("rig starts");

    let mut service = rig.spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let followed = runtime
        .block_on(async {
            let run = follow(&rig, &mut service, |_| Ok(ControlFlow::Continue(())));
            tokio::time::timeout(Duration::from_secs(300), run).await
        })
        .expect("the video plays within 5 minutes")
        .expect("facegated runs");
    let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
    assert!(
        followed.status.success(),
        "facegated exits 0 at the end; log: {log}"
    );
    assert!(
        !log.contains("disagree"),
        "fgmatch and the gate's rule agree: {log}"
    );

    let mut seen: Vec<Walkup> = (0..timeline.walkups.len())
        .map(|_| Walkup::default())
        .collect();
    let at = |ns: Option<u64>| {
        ns.and_then(|ns| timeline.walkup_at(ns))
            .map(|(index, _)| index)
    };
    for passage in rig.passages().unwrap() {
        let Some(index) = at(passage.video_time_ns) else {
            panic!("a decision outside every walk-up: {passage:?}");
        };
        seen[index].decisions += 1;
        if passage.granted {
            seen[index]
                .granted
                .push(passage.identity.unwrap_or_default());
        }
    }
    // identify matches by the same rule at the rate the rig's gate runs at.
    let max_false_grant_rate = facegated::config::ServiceConfig::load(&rig.files.config)
        .expect("the rig's configuration")
        .policy
        .max_false_grant_rate;
    let frames = identified_frames(
        &rig.files.video,
        &rig.gallery,
        &models,
        max_false_grant_rate,
        scratch.path(),
    );
    for frame in frames {
        if let (Some(index), [face]) = (at(frame.pts_ns), frame.faces.as_slice()) {
            seen[index]
                .identified
                .push(face.matched.as_ref().map(|m| m.id.clone()));
        }
    }

    let mut not_granted = Vec::new();
    for ((person, walkup), entry) in people.iter().zip(&seen).zip(&timeline.walkups) {
        let what = format!("{} walking up ({entry:?}): {walkup:?}", person.walkup.name);
        assert!(walkup.decisions >= 1, "no decision on {what}");
        let matched_as = |id: &str| {
            walkup
                .identified
                .iter()
                .filter(|m| m.as_deref() == Some(id))
                .count()
        };
        let matched_at_all = walkup.identified.iter().flatten().count();
        if person.enrolled_with.is_none() {
            assert!(walkup.granted.is_empty(), "a stranger was granted: {what}");
            assert_eq!(matched_at_all, 0, "identify matched a stranger: {what}");
            continue;
        }
        assert_eq!(
            matched_as(&person.id),
            matched_at_all,
            "identify matched someone else: {what}"
        );
        assert!(
            walkup.granted.iter().all(|id| *id == person.id) && walkup.granted.len() <= 1,
            "granted as someone else, or twice: {what}"
        );
        let granted = walkup.granted.len() == 1;
        if !granted {
            not_granted.push(person.walkup.name.as_str());
        }
        // Where identify is unanimous, the gate decides the same; in between, the gate's track
        // rule (agree_frames running matches within decide_after_frames) decides.
        if matched_at_all == 0 {
            assert!(!granted, "granted what identify never matched: {what}");
        }
        if matched_at_all == walkup.identified.len() && !walkup.identified.is_empty() {
            assert!(
                granted,
                "not granted though identify matched every frame: {what}"
            );
        }
    }
    // Per comparison the rule misses about a fifth of genuine faces at this gallery's threshold
    // (docs/ACCURACY.md); over a walk-up's frames a working gate grants far more than half.
    assert!(
        not_granted.len() * 2 < enrolled.len(),
        "fewer than half the enrolled granted: not {not_granted:?}"
    );
    eprintln!(
        "{} of {} enrolled granted (not: {not_granted:?}), 0 of {strangers} strangers",
        enrolled.len() - not_granted.len(),
        enrolled.len()
    );
}
