// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench fusion`: what matching a track on the fusion of its frames buys, on the
//! face corpus. Every usable person of the corpus walks up once in a video whose frames all
//! differ (walkup_video's `Motion::Approach`: the face growing, swaying, now and then blurred,
//! the exposure wandering): people with two photos or more with their second photo, the others
//! with their only one. Each person's template is their first photo's enrolment embedding.
//!
//! The same video goes through fgdetect ! fgtrack ! fgembed as the gate runs them, once with each
//! embedding alone (`fusion-frames=1`) and once fused. Every frame's embedding is scored against
//! every template: a walk-up's own template gives the genuine scores (second-photo walk-ups
//! only, so the template never is the photo walking up), every other person's the impostor
//! scores. A walk-up counts as granted at the threshold when the gate's rule would see
//! `agree_frames` consecutive frames match (its own template best and at or above the
//! threshold), as a false grant when that happens for somebody else's template.
//! Results go in docs/ACCURACY.md ("Fusing a track's frames").

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use facegate_dev_assets::AssetDir;
use facegate_meta::dump::FrameLine;
use facegate_vision::cosine;
use facegate_vision::fusion::DEFAULT_FUSION_FRAMES;
use facegate_vision::match_rule::DEFAULT_MIN_THRESHOLD;
use facegatectl::identify;
use facegatectl::output::Output;
use facegatectl::pipeline::Models;
use serde_json::json;

use crate::corpus_cast::{self, CorpusPerson};
use crate::walkup_video::{self, Motion, WalkupPhoto};

#[derive(Args, Debug)]
pub struct FusionArgs {
    /// The threshold at which misses and false grants are counted
    #[arg(long, default_value_t = DEFAULT_MIN_THRESHOLD)]
    pub threshold: f64,
    /// Machine-readable results (default: docs/bench/fusion.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// One walk-up's frames, scored.
#[derive(Debug, Default)]
struct Scored {
    /// Per frame with one embedded face: its score against the walker's own template (None for
    /// walkers whose only photo is their template) and its best against anybody else's.
    frames: Vec<(Option<f32>, f32, usize)>,
    /// The cosine of each new embedding of the track to the one before (unfused runs only).
    consecutive: Vec<f32>,
}

/// What one run gives.
#[derive(Debug)]
struct Outcome {
    genuine_frames: usize,
    genuine_mean: f64,
    genuine_p05: f64,
    frame_fnmr: f64,
    genuine_walkups: usize,
    granted: usize,
    impostor_frames: usize,
    impostor_mean: f64,
    impostor_max: f64,
    frame_fmr: f64,
    false_grants: usize,
    consecutive_min: Option<f64>,
}

pub fn run(args: &FusionArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    facegatectl::init()?;
    let people = corpus_cast::usable(&AssetDir::Corpus.path(), models)?;
    if people.iter().filter(|p| p.faces.len() >= 2).count() < 2 {
        bail!("the corpus has fewer than two people with two usable photos (run `make setup`)");
    }
    let agree_frames = facegated::config::ServiceConfig::default()
        .policy
        .agree_frames as usize;
    let walkups: Vec<WalkupPhoto> = people
        .iter()
        .map(|p| p.faces[1.min(p.faces.len() - 1)].walkup.clone())
        .collect();
    let scratch = tempfile::tempdir()?;
    let video = scratch.path().join("fusion_walkups.avi");
    let timeline = walkup_video::write_with(&video, &walkups, Motion::Approach)?;
    writeln!(
        out,
        "== fusion: {} walk-ups of the corpus ({} with a second photo), {} frames each, threshold {}",
        walkups.len(),
        people.iter().filter(|p| p.faces.len() >= 2).count(),
        timeline.walkups[0].last_frame + 1 - timeline.walkups[0].first_frame,
        args.threshold
    )?;

    let mut results = Vec::new();
    // The global --fusion-frames (default fgembed's) against 1, each embedding alone.
    let fused = models.fusion_frames.unwrap_or(DEFAULT_FUSION_FRAMES as u32);
    for frames in [1, fused] {
        let models = Models {
            fusion_frames: Some(frames),
            ..models.clone()
        };
        let lines = embedded_frames(&video, &models, scratch.path())?;
        let mut scored: Vec<Scored> = (0..people.len()).map(|_| Scored::default()).collect();
        let mut last: Vec<Option<Vec<f32>>> = vec![None; people.len()];
        for line in lines {
            let Some((index, _)) = line.pts_ns.and_then(|ns| timeline.walkup_at(ns)) else {
                continue;
            };
            let [face] = line.faces.as_slice() else {
                continue;
            };
            let Some(embedding) = &face.embedding else {
                continue;
            };
            let (own, other, other_index) = score(&people, index, embedding);
            scored[index].frames.push((own, other, other_index));
            if let Some(previous) = &last[index]
                && previous != embedding
            {
                scored[index].consecutive.push(cosine(previous, embedding));
            }
            last[index] = Some(embedding.clone());
        }
        let outcome = summarise(&scored, args.threshold as f32, agree_frames, frames == 1);
        print(out, frames, &outcome)?;
        results.push(json!({
            "fusion_frames": frames,
            "genuine": {
                "walkups": outcome.genuine_walkups,
                "frames": outcome.genuine_frames,
                "mean": outcome.genuine_mean,
                "p05": outcome.genuine_p05,
                "frame_fnmr": outcome.frame_fnmr,
                "granted": outcome.granted,
            },
            "impostor": {
                "frames": outcome.impostor_frames,
                "mean_best": outcome.impostor_mean,
                "max": outcome.impostor_max,
                "frame_fmr": outcome.frame_fmr,
                "false_grants": outcome.false_grants,
            },
            "consecutive_embeddings_min_cosine": outcome.consecutive_min,
        }));
    }
    let path = super::results_path(args.json.as_deref(), "fusion");
    super::write_json(
        &path,
        &json!({
            "walkups": walkups.len(),
            "threshold": args.threshold,
            "agree_frames": agree_frames,
            "results": results,
        }),
    )?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}

/// fgdetect ! fgtrack ! fgembed over `video`, every frame's faces with their embeddings.
fn embedded_frames(
    video: &std::path::Path,
    models: &Models,
    scratch: &std::path::Path,
) -> anyhow::Result<Vec<FrameLine>> {
    let dump = scratch.join("frames.jsonl");
    let options = identify::Options {
        gallery: None,
        models: models.clone(),
        max_false_grant_rate: None,
    };
    let file = std::fs::File::create(&dump)?;
    identify::dump(video, &options, Output::new(file), true)
        .with_context(|| format!("identify {}", video.display()))?;
    std::fs::read_to_string(&dump)?
        .lines()
        .map(|line| serde_json::from_str(line).context("identify's frame line"))
        .collect()
}

/// The frame's score against walker `index`'s own template (when it is another photo of them)
/// and its best against anybody else's, with whose.
fn score(people: &[CorpusPerson], index: usize, embedding: &[f32]) -> (Option<f32>, f32, usize) {
    let own = (people[index].faces.len() >= 2)
        .then(|| cosine(&people[index].faces[0].embedding, embedding));
    let (other_index, other) = people
        .iter()
        .enumerate()
        .filter(|(other, _)| *other != index)
        .map(|(other, p)| (other, cosine(&p.faces[0].embedding, embedding)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((index, f32::NEG_INFINITY));
    (own, other, other_index)
}

/// Whether `agree` consecutive frames match one and the same identity: `matches` gives whom a
/// frame matches, if anyone.
fn has_run(
    frames: &[(Option<f32>, f32, usize)],
    agree: usize,
    matches: impl Fn(&(Option<f32>, f32, usize)) -> Option<usize>,
) -> bool {
    let mut run: Option<(usize, usize)> = None;
    for frame in frames {
        run = match (matches(frame), run) {
            (Some(whom), Some((same, length))) if whom == same => Some((whom, length + 1)),
            (Some(whom), _) => Some((whom, 1)),
            (None, _) => None,
        };
        if run.is_some_and(|(_, length)| length >= agree) {
            return true;
        }
    }
    false
}

fn summarise(scored: &[Scored], threshold: f32, agree: usize, unfused: bool) -> Outcome {
    let mut genuine: Vec<f32> = Vec::new();
    let mut impostor: Vec<f32> = Vec::new();
    let (mut genuine_walkups, mut granted, mut false_grants) = (0, 0, 0);
    for walkup in scored {
        impostor.extend(walkup.frames.iter().map(|f| f.1));
        if walkup.frames.first().is_some_and(|f| f.0.is_some()) {
            genuine_walkups += 1;
            genuine.extend(walkup.frames.iter().filter_map(|f| f.0));
            // Their own template: any index no other person has.
            let own_id = usize::MAX;
            if has_run(&walkup.frames, agree, |(own, other, _)| {
                own.filter(|&own| own >= threshold && own > *other)
                    .map(|_| own_id)
            }) {
                granted += 1;
            }
        }
        if has_run(&walkup.frames, agree, |(own, other, whom)| {
            (*other >= threshold && own.is_none_or(|own| *other > own)).then_some(*whom)
        }) {
            false_grants += 1;
        }
    }
    genuine.sort_by(f32::total_cmp);
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64;
    let share_below = genuine.iter().filter(|&&s| s < threshold).count() as f64;
    let consecutive: Vec<f32> = scored.iter().flat_map(|s| s.consecutive.clone()).collect();
    Outcome {
        genuine_frames: genuine.len(),
        genuine_mean: mean(&genuine),
        genuine_p05: genuine
            .get(genuine.len() / 20)
            .map_or(f64::NAN, |&s| f64::from(s)),
        frame_fnmr: share_below / genuine.len().max(1) as f64,
        genuine_walkups,
        granted,
        impostor_frames: impostor.len(),
        impostor_mean: mean(&impostor),
        impostor_max: impostor
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
            .into(),
        frame_fmr: impostor.iter().filter(|&&s| s >= threshold).count() as f64
            / impostor.len().max(1) as f64,
        false_grants,
        consecutive_min: unfused
            .then(|| consecutive.iter().copied().fold(f32::INFINITY, f32::min))
            .filter(|m| m.is_finite())
            .map(f64::from),
    }
}

fn print(out: &mut impl Write, frames: u32, o: &Outcome) -> anyhow::Result<()> {
    writeln!(
        out,
        "  fusion-frames {frames}: genuine {} frames of {} walk-ups, mean {:.3}, 5th percentile {:.3}, \
         below the threshold {:.1} %, granted {} of {}",
        o.genuine_frames,
        o.genuine_walkups,
        o.genuine_mean,
        o.genuine_p05,
        100.0 * o.frame_fnmr,
        o.granted,
        o.genuine_walkups
    )?;
    writeln!(
        out,
        "      impostor (best other template) {} frames, mean {:.3}, max {:.3}, at or above the threshold {:.2} %, false grants {}",
        o.impostor_frames,
        o.impostor_mean,
        o.impostor_max,
        100.0 * o.frame_fmr,
        o.false_grants
    )?;
    if let Some(min) = o.consecutive_min {
        writeln!(
            out,
            "      consecutive embeddings of one walk-up: lowest cosine {min:.3}"
        )?;
    }
    Ok(())
}
