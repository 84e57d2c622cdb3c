// SPDX-License-Identifier: MIT OR Apache-2.0
//! Presentation-attack trials: the gate (facegated on a [`GateRig`], the demo's configuration and
//! gallery) watching a video of walk-ups that are either passengers' own approaches or their
//! photos held up on a phone or as a print ([`attack_video`](crate::attack_video)), and what it
//! decided in each walk-up. `facegate-dev bench liveness` turns these into ISO/IEC 30107-3
//! figures; the presentation-attack test asserts on them.
//!
//! The videos are made here, from the development photos, into the trial's scratch directory:
//! they are never committed, and a changed renderer is measured on its next run.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use facegate_dbus::DenyReason;
use facegatectl::enroll;
use facegatectl::photo_embedder::PhotoEmbedder;
use facegatectl::pipeline::Models;
use serde::Serialize;

use crate::attack_video::Presentation;
use crate::gate_rig::{self, GateRig, RigFiles, Timeline, follow};
use crate::walkup_video::{self, Motion, WalkupPhoto};

/// The opt-in classifier fglive loads for [`Pad::WithModel`], in the gate's model directory.
pub const PAD_MODEL_FILE: &str = "fr_liveness.onnx";

/// Whether the gate runs with presentation-attack detection: the shipped pipeline and
/// `[liveness] required = true`; that pipeline without fglive and `required = false`, which is
/// the gate before fglive existed; or the shipped one with fglive's opt-in classifier added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pad {
    On,
    Off,
    WithModel,
}

/// What the gate decided during one walk-up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalkupOutcome {
    /// The photo shown (the timeline's name for the walk-up).
    pub photo: String,
    /// Identities granted.
    pub granted: Vec<String>,
    /// Deny reasons, in order.
    pub denied: Vec<DenyReason>,
}

impl WalkupOutcome {
    pub fn denied_as_attack(&self) -> bool {
        self.denied.contains(&DenyReason::PresentationAttack)
    }
}

/// Every photo of every passenger the demo enrols, with its face box as enrolment finds it,
/// ordered so that the same person never walks up twice in a row.
pub fn enrolled_people_photos(files: &RigFiles) -> anyhow::Result<Vec<WalkupPhoto>> {
    facegatectl::init().context("GStreamer failed to initialise")?;
    let models: Models = files.models();
    let mut embedder = PhotoEmbedder::new(&models, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    let people: Vec<&facegate_dev_assets::DevPerson> = facegate_dev_assets::DEMO_ENROLLED
        .iter()
        .filter_map(|id| facegate_dev_assets::person(id))
        .collect();
    let most = people.iter().map(|p| p.photos.len()).max().unwrap_or(0);
    let mut walkups = Vec::new();
    for round in 0..most {
        for person in &people {
            let Some(name) = person.photos.get(round) else {
                continue;
            };
            let photo = files.photos.join(name);
            let face = enroll::embed_photo_with(&mut embedder, &photo)
                .map_err(|e| anyhow::anyhow!("{}: {e}", photo.display()))?;
            walkups.push(WalkupPhoto {
                photo,
                face: face.bbox,
                name: (*name).to_owned(),
            });
        }
    }
    Ok(walkups)
}

/// The videos a trial plays, by file stem: each attack type's and the genuine approach's.
pub fn videos() -> [(&'static str, Motion); 3] {
    [
        ("phone_attacks", Motion::Presented(Presentation::Phone)),
        ("print_attacks", Motion::Presented(Presentation::Print)),
        ("enrolled_approach", Motion::Approach),
    ]
}

/// Writes [`videos`] of [`enrolled_people_photos`] into `dir` (`facegate-dev attack-videos`), to
/// look at or to play through a pipeline by hand.
pub fn write_videos(dir: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let files = RigFiles::repository_defaults()?;
    let walkups = enrolled_people_photos(&files)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (stem, motion) in videos() {
        let video = dir.join(stem).with_extension("avi");
        let timeline = walkup_video::write_with(&video, &walkups, motion)?;
        writeln!(
            out,
            "{}: {} walk-ups, {} frames",
            video.display(),
            timeline.walkups.len(),
            timeline.frames
        )?;
    }
    Ok(())
}

/// Plays `walkups`, moving as `motion` says, to a gate enrolled as the demo's, and returns what
/// it decided in each ([`run_video`]). `scratch` receives the video too.
pub fn run(
    files: &RigFiles,
    scratch: &Path,
    walkups: &[WalkupPhoto],
    motion: Motion,
    pad: Pad,
) -> anyhow::Result<Vec<WalkupOutcome>> {
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let video = scratch.join("walkups.avi");
    walkup_video::write_with(&video, walkups, motion)?;
    run_video(files, scratch, &video, pad)
}

/// Plays `video` (with its timeline beside it) to a gate enrolled as the demo's, and returns
/// what it decided in each walk-up. `scratch` receives the gallery and the journal. The rig's
/// passback window is off: a passenger shown twice is judged twice.
pub fn run_video(
    files: &RigFiles,
    scratch: &Path,
    video: &Path,
    pad: Pad,
) -> anyhow::Result<Vec<WalkupOutcome>> {
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let timeline = Timeline::for_video(video)?;
    let mut files = files.clone();
    files.video = video.to_path_buf();
    let fglive = match pad {
        Pad::On => None,
        Pad::Off => Some(String::new()),
        Pad::WithModel => Some(format!("  ! fglive model=${{models}}/{PAD_MODEL_FILE}")),
    };
    if let Some(replacement) = fglive {
        files.pipeline = with_fglive_as(
            &files.pipeline,
            &replacement,
            &scratch.join("trial.pipeline"),
        )?;
    }
    let mut rig = GateRig::new(files, scratch, &gate_rig::enrolled())?;
    rig.extra_env
        .push(("FACEGATE_POLICY__PASSBACK_WINDOW_S".into(), "0".into()));
    if pad == Pad::Off {
        rig.extra_env
            .push(("FACEGATE_LIVENESS__REQUIRED".into(), "false".into()));
    }
    let mut service = rig.spawn()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The video plays in real time; a stalled gate must not hang the trial.
    let budget = Duration::from_secs(60 + timeline.frames / timeline.fps.max(1) * 4);
    let followed = runtime
        .block_on(async {
            let run = follow(&rig, &mut service, |_| Ok(ControlFlow::Continue(())));
            tokio::time::timeout(budget, run).await
        })
        .with_context(|| format!("the video did not play out within {budget:?}"))??;
    if !followed.status.success() {
        bail!(
            "facegated exited with {}; its log: {}",
            followed.status,
            rig.log_text()
        );
    }
    outcomes(&timeline, &rig)
}

fn outcomes(timeline: &Timeline, rig: &GateRig) -> anyhow::Result<Vec<WalkupOutcome>> {
    let mut outcomes: Vec<WalkupOutcome> = timeline
        .walkups
        .iter()
        .map(|w| WalkupOutcome {
            photo: w.photo.clone(),
            ..WalkupOutcome::default()
        })
        .collect();
    for passage in rig.passages()? {
        let Some((index, _)) = passage.video_time_ns.and_then(|ns| timeline.walkup_at(ns)) else {
            bail!("a decision outside every walk-up: {passage:?}");
        };
        let outcome = &mut outcomes[index];
        if passage.granted {
            outcome.granted.push(passage.identity.unwrap_or_default());
        } else {
            let reason = passage.reason.as_deref().unwrap_or_default();
            outcome.denied.push(reason.parse().map_err(|_| {
                anyhow::anyhow!("a denial journalled with no reason the gate gives: {passage:?}")
            })?);
        }
    }
    Ok(outcomes)
}

/// Writes `pipeline` to `out` with its one `! fglive` line replaced by `replacement` (empty:
/// taken out).
fn with_fglive_as(
    pipeline: &Path,
    replacement: &str,
    out: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(pipeline)
        .with_context(|| format!("cannot read {}", pipeline.display()))?;
    if text
        .lines()
        .filter(|line| line.trim() == "! fglive")
        .count()
        != 1
    {
        bail!("{}: expected one `! fglive` line", pipeline.display());
    }
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| match line.trim() {
            "! fglive" => (!replacement.is_empty()).then_some(replacement),
            _ => Some(line),
        })
        .collect();
    std::fs::write(out, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out.to_path_buf())
}
