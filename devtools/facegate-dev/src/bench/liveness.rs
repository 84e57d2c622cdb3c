// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-dev bench liveness`: how the gate fares against presentation attacks, in the
//! figures of ISO/IEC 30107-3, measured at the gate's decision (facegated with the demo's
//! configuration and gallery, the video in real time: pad_trial).
//!
//! Attacks: every photo of every passenger the demo enrols, held up on a phone and as a print
//! (attack_video), played to the gate with presentation-attack detection on (the shipped
//! pipeline, `[liveness] required = true`) and off (fglive taken out, `required = false`).
//! Attacks and bona fide presentations are played once more with fglive's opt-in classifier
//! (`fglive model=…/fr_liveness.onnx`, not cleared for commercial use: docs/MODELS.md).
//! Bona fide presentations: the demo video's walk-ups, the same passengers' photos approaching
//! (walkup_video's `Motion::Approach`), and every usable photo of the face corpus approaching,
//! all with detection on.
//!
//! - APCER (per attack type): the share of attacks the gate did not deny `presentation-attack`;
//! - BPCER: the share of bona fide walk-ups it did deny `presentation-attack`;
//! - IAPMR (per attack type, detection off and on): the share of attacks that ended in a grant.
//!
//! Results go in docs/ACCURACY.md ("Presentation attacks").

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use facegate_dev_assets::AssetDir;
use facegatectl::pipeline::Models;
use serde_json::json;

use crate::attack_video::Presentation;
use crate::corpus_cast;
use crate::gate_rig::RigFiles;
use crate::pad_trial::{self, Pad, WalkupOutcome};
use crate::walkup_video::{self, Motion, WalkupPhoto};

#[derive(Args, Debug)]
pub struct LivenessArgs {
    /// Leave out the corpus's bona fide walk-ups (a few minutes of video)
    #[arg(long)]
    pub no_corpus: bool,
    /// Machine-readable results (default: docs/bench/liveness.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `count` of `of` as a share, with both kept for the report.
fn share(count: usize, of: usize) -> serde_json::Value {
    json!({"count": count, "of": of, "rate": if of == 0 { 0.0 } else { count as f64 / of as f64 }})
}

fn percent(count: usize, of: usize) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.1} % ({count}/{of})", 100.0 * count as f64 / of as f64)
    }
}

fn granted(outcomes: &[WalkupOutcome]) -> usize {
    outcomes.iter().filter(|o| !o.granted.is_empty()).count()
}

fn denied_as_attack(outcomes: &[WalkupOutcome]) -> usize {
    outcomes.iter().filter(|o| o.denied_as_attack()).count()
}

pub fn run(args: &LivenessArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    facegatectl::init()?;
    let files = RigFiles::repository_defaults()?;
    let scratch = tempfile::tempdir()?;
    let dir = |name: &str| -> PathBuf { scratch.path().join(name) };
    let enrolled = pad_trial::enrolled_people_photos(&files)?;
    writeln!(
        out,
        "== liveness: {} photos of the demo's {} enrolled passengers, the gate in real time",
        enrolled.len(),
        facegate_dev_assets::DEMO_ENROLLED.len()
    )?;

    let mut attacks = Vec::new();
    for presentation in Presentation::ALL {
        let motion = Motion::Presented(presentation);
        let name = presentation.as_str();
        let video = dir(&format!("{name}_attacks.avi"));
        walkup_video::write_with(&video, &enrolled, motion)?;
        let play =
            |pad: Pad| pad_trial::run_video(&files, &dir(&format!("{name}-{pad:?}")), &video, pad);
        let (off, on, model) = (play(Pad::Off)?, play(Pad::On)?, play(Pad::WithModel)?);
        let missed = on.len() - denied_as_attack(&on);
        let missed_with_model = model.len() - denied_as_attack(&model);
        writeln!(
            out,
            "{name:>6} attacks: APCER {}, IAPMR without detection {}, with {}; with the opt-in model APCER {}, IAPMR {}",
            percent(missed, on.len()),
            percent(granted(&off), off.len()),
            percent(granted(&on), on.len()),
            percent(missed_with_model, model.len()),
            percent(granted(&model), model.len()),
        )?;
        for outcome in &on {
            let denied: Vec<&str> = outcome.denied.iter().map(<&str>::from).collect();
            writeln!(
                out,
                "    {:<18} granted {:?} denied {denied:?}",
                outcome.photo, outcome.granted
            )?;
        }
        attacks.push(json!({
            "attack": name,
            "apcer": share(missed, on.len()),
            "iapmr_without_detection": share(granted(&off), off.len()),
            "iapmr": share(granted(&on), on.len()),
            "apcer_with_model": share(missed_with_model, model.len()),
            "iapmr_with_model": share(granted(&model), model.len()),
            "outcomes": on,
            "outcomes_with_model": model,
            "outcomes_without_detection": off,
        }));
    }

    let mut videos: Vec<(&str, PathBuf)> = vec![(
        "demo video",
        AssetDir::Videos.path().join("demo_walkups.avi"),
    )];
    let approach = dir("enrolled_approach.avi");
    walkup_video::write_with(&approach, &enrolled, Motion::Approach)?;
    videos.push(("enrolled passengers approaching", approach));
    if !args.no_corpus {
        let corpus = dir("corpus_approach.avi");
        walkup_video::write_with(&corpus, &corpus_walkups(models)?, Motion::Approach)?;
        videos.push(("face corpus approaching", corpus));
    }
    let mut genuine = Vec::new();
    // Per detection setting: bona fide walk-ups denied as attacks, and walk-ups.
    let mut totals = [(0, 0); 2];
    for (index, (name, video)) in videos.iter().enumerate() {
        let mut row = serde_json::Map::new();
        row.insert("walkups".into(), json!(name));
        for (pad, total) in [Pad::On, Pad::WithModel].into_iter().zip(&mut totals) {
            let outcomes = pad_trial::run_video(
                &files,
                &dir(&format!("bona-fide-{index}-{pad:?}")),
                video,
                pad,
            )?;
            let denied = denied_as_attack(&outcomes);
            total.0 += denied;
            total.1 += outcomes.len();
            let what = match pad {
                Pad::WithModel => "with the opt-in model",
                _ => "default cues",
            };
            writeln!(
                out,
                "bona fide, {name}, {what}: BPCER {}, granted {}",
                percent(denied, outcomes.len()),
                granted(&outcomes)
            )?;
            let denied_photos: Vec<&str> = outcomes
                .iter()
                .filter(|o| o.denied_as_attack())
                .map(|o| o.photo.as_str())
                .collect();
            if !denied_photos.is_empty() {
                writeln!(out, "    denied as attacks: {denied_photos:?}")?;
            }
            let key = if pad == Pad::WithModel {
                "_with_model"
            } else {
                ""
            };
            row.insert(format!("bpcer{key}"), share(denied, outcomes.len()));
            row.insert(format!("granted{key}"), json!(granted(&outcomes)));
            row.insert(format!("denied_as_attack{key}"), json!(denied_photos));
        }
        genuine.push(serde_json::Value::Object(row));
    }
    let [(denied_total, walkups_total), (denied_model, walkups_model)] = totals;
    writeln!(
        out,
        "BPCER over every bona fide walk-up: {}; with the opt-in model {}",
        percent(denied_total, walkups_total),
        percent(denied_model, walkups_model)
    )?;

    let path = super::results_path(args.json.as_deref(), "liveness");
    super::write_json(
        &path,
        &json!({
            "command": "facegate-dev bench liveness",
            "gate": "facegated, config/demo.toml, pipelines/demo.pipeline, the demo's gallery, passback off",
            "attacks": attacks,
            "bona_fide": genuine,
            "bpcer": share(denied_total, walkups_total),
            "bpcer_with_model": share(denied_model, walkups_model),
        }),
    )?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}

/// Every usable photo of the face corpus, once.
fn corpus_walkups(models: &Models) -> anyhow::Result<Vec<WalkupPhoto>> {
    let people = corpus_cast::usable(&AssetDir::Corpus.path(), models)?;
    Ok(people
        .into_iter()
        .flat_map(|person| person.faces.into_iter().map(|face| face.walkup))
        .collect())
}
