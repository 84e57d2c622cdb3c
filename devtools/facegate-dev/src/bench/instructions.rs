// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-dev bench instructions`: one stage of the gate's per-frame work, run a fixed number
//! of times on one real frame inside [`measured`], for callgrind to count (scripts/pi4-budget.sh,
//! docs/bench/pi4-budget.json). Instruction counts, unlike timings, are the same on a loaded
//! machine as on an idle one, and they are what the Pi 4 budget scales by (docs/APPLIANCE.md).
//!
//! Everything a stage needs (models, the decoded frame, its face, the gallery, a warm-up run) is
//! prepared outside [`measured`], so that `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*instructions::measured*'` counts the stage's own runs and nothing else; one
//! stage per process keeps each count free of the others' state. Models run on one intra-op
//! thread by default: ONNX Runtime then runs on the calling thread, and the count is the work,
//! with no pool threads waking up or spinning. The detect and letterbox stages take the global
//! `--input-size` (default fgdetect's, the gate's 320; OpenCV Zoo publishes YuNet at 160).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use facegate_vision::align::{ALIGNED_SIZE, align_planar};
use facegate_vision::detector::DEFAULT_INPUT_SIZE;
use facegate_vision::embedding_cache::{EmbeddingCache, RefreshPolicy};
use facegate_vision::fusion::FrameQuality;
use facegate_vision::gallery::Gallery;
use facegate_vision::letterbox::Letterbox;
use facegate_vision::liveness::{Cues, Evidence, LivenessConfig};
use facegate_vision::tracker::{Tracker, TrackerConfig};
use facegate_vision::{Detector, DetectorConfig, Embedder, Face, Frame};
use gst::prelude::*;
use serde_json::{Value, json};

use super::synthetic_embedding;
use facegate_dev_assets::AssetDir;
use facegatectl::pipeline::Models;

#[derive(Args, Debug)]
pub struct InstructionsArgs {
    /// The stage to run
    #[arg(long, value_enum)]
    pub stage: Stage,
    /// Runs of the stage inside the counted function, after an uncounted warm-up
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// People in the gallery the match stage searches (below 50,000 a gallery is an exact,
    /// flat index, whose search cost grows with its size)
    #[arg(long, default_value_t = 1_000)]
    pub gallery_size: usize,
    /// A 640x480 walk-up video (default: the generated walkup_person_b.avi)
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// The frame of the video the stages run on (default: one of walkup_person_b's close-ups,
    /// the face at its largest, as `bench stages` picks)
    #[arg(long, default_value_t = 80)]
    pub frame: usize,
    /// Inference threads for the models (1: ONNX Runtime on the calling thread, a deterministic
    /// count; 0: one per core, as on the gate)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// The gate's per-frame work, element by element (pipelines/gate.pipeline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum Stage {
    /// fgdetect's scaling of the frame into the network's input (part of detect)
    Letterbox,
    /// fgdetect: letterbox, YuNet, decoding and suppression, on every frame
    Detect,
    /// fgtrack: the frame's face continuing its track, on every frame
    Track,
    /// fglive: the frame's brightness, the default cues and the track's evidence, every frame
    Liveness,
    /// fgembed's 112x112 warp of the face (part of embed)
    Align,
    /// fgembed: align and SFace, on a new track's first frame and on each refresh
    Embed,
    /// fgembed after an embedding: the frame's quality and the track's fused embedding
    Fuse,
    /// fgembed on the other frames: the track's cached, fused embedding
    CacheHit,
    /// fgmatch: the gallery's best candidates for the face, on every frame
    Match,
}

/// What the stages run on: one decoded frame and the face in it.
struct Scene {
    info: gst_video::VideoInfo,
    buffer: gst::Buffer,
    face: Face,
}

impl Scene {
    /// Runs `f` on the frame, mapped as the elements map it (done on every run: they do too).
    fn with_frame<R>(&self, f: impl FnOnce(&Frame) -> R) -> anyhow::Result<R> {
        gstfacegate::video::with_frame(&self.info, &self.buffer, f)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }
}

/// The counted region: `iterations` runs of one stage. Never inlined, so that callgrind finds
/// it by name; a `dyn` closure, so that it is one function whatever the stage (a generic would
/// be one copy per stage, named after closure types).
#[inline(never)]
pub fn measured(
    iterations: usize,
    run: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for _ in 0..iterations {
        run()?;
    }
    Ok(())
}

/// Runs that warm a stage up before it is counted: ONNX Runtime plans and allocates its
/// buffers on a session's first runs, the tracker and the caches fill.
const WARM_UP_RUNS: usize = 3;

/// Warms `run` up, then runs it `iterations` times inside [`measured`].
fn count(iterations: usize, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    for _ in 0..WARM_UP_RUNS {
        run()?;
    }
    measured(iterations, &mut run)
}

/// Frame `index` of `video`, decoded to I420 as the gate's elements receive it.
fn decoded_frame(
    video: &Path,
    index: usize,
) -> anyhow::Result<(gst_video::VideoInfo, gst::Buffer)> {
    let (pipeline, sink) = super::decoding(video)?;
    let mut found = None;
    let mut seen = 0;
    while let Ok(sample) = sink.pull_sample() {
        if seen == index {
            if let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer_owned()) {
                found = Some((gst_video::VideoInfo::from_caps(caps)?, buffer));
            }
            break;
        }
        seen += 1;
    }
    pipeline.set_state(gst::State::Null)?;
    found.with_context(|| format!("{} has no frame {index}", video.display()))
}

/// The frame, and its one face as the detector finds it at full resolution (input size 640,
/// as `bench stages` and enrolment take it): the landmarks the later stages start from.
fn scene(args: &InstructionsArgs, models: &Models) -> anyhow::Result<(Scene, Value)> {
    let video = args
        .video
        .clone()
        .unwrap_or_else(|| AssetDir::Videos.path().join("walkup_person_b.avi"));
    let (info, buffer) = decoded_frame(&video, args.frame)?;
    if (info.width(), info.height()) != (640, 480) {
        bail!(
            "{} is {}x{}; the benchmark wants 640x480, the gate camera's mode",
            video.display(),
            info.width(),
            info.height()
        );
    }
    let mut detector = Detector::load(&models.detector_path(), args.threads)?;
    let config = DetectorConfig {
        input_size: 640,
        ..DetectorConfig::default()
    };
    let mut faces = Vec::new();
    gstfacegate::video::with_frame(&info, &buffer, |frame| {
        detector.detect(frame, &config, &mut faces)
    })
    .map_err(|e| anyhow::anyhow!("{e:?}"))??;
    let [face] = faces.as_slice() else {
        bail!(
            "frame {} of {} shows {} faces; the benchmark wants one",
            args.frame,
            video.display(),
            faces.len()
        );
    };
    let described = json!({
        "video": video.file_name().map(|n| n.to_string_lossy()),
        "frame": args.frame,
        "size": [info.width(), info.height()],
        "format": "I420",
        "face_box": [face.bbox.x, face.bbox.y, face.bbox.w, face.bbox.h],
    });
    let face = *face;
    Ok((Scene { info, buffer, face }, described))
}

/// The detector input size of the detect and letterbox stages: `--input-size`, or the gate's.
fn input_size(models: &Models) -> usize {
    models
        .input_size
        .map_or(DEFAULT_INPUT_SIZE, |size| size as usize)
}

/// The file name of a model, as the budget names it.
fn file_name(path: &Path) -> Value {
    json!(path.file_name().map(|n| n.to_string_lossy()))
}

pub fn run(args: &InstructionsArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    let (scene, frame) = scene(args, models)?;
    let details = match args.stage {
        Stage::Letterbox => letterbox(args, models, &scene)?,
        Stage::Detect => detect(args, models, &scene)?,
        Stage::Track => track(args, &scene)?,
        Stage::Liveness => liveness(args, &scene)?,
        Stage::Align => align(args, models, &scene)?,
        Stage::Embed => embed(args, models, &scene)?,
        Stage::Fuse => fuse(args, models, &scene, false)?,
        Stage::CacheHit => fuse(args, models, &scene, true)?,
        Stage::Match => matching(args, models, &scene)?,
    };
    let report = json!({
        "stage": args.stage.to_string(),
        "iterations": args.iterations,
        "threads": args.threads,
        "frame": frame,
        "details": details,
    });
    writeln!(out, "{report}")?;
    Ok(())
}

fn letterbox(args: &InstructionsArgs, models: &Models, scene: &Scene) -> anyhow::Result<Value> {
    let input_size = input_size(models);
    let (width, height) = (scene.info.width() as usize, scene.info.height() as usize);
    let plan = Letterbox::new(width, height, input_size);
    let mut tensor = vec![0.0; plan.tensor_len()];
    count(args.iterations, || {
        scene.with_frame(|frame| plan.fill_bgr_planar(frame, &mut tensor))
    })?;
    let (net_width, net_height) = plan.net_size();
    Ok(json!({ "input_size": input_size, "network_input": [net_width, net_height] }))
}

fn detect(args: &InstructionsArgs, models: &Models, scene: &Scene) -> anyhow::Result<Value> {
    let path = models.detector_path();
    let mut detector = Detector::load(&path, args.threads)?;
    let input_size = input_size(models);
    detector.check_input_size(input_size)?;
    let config = DetectorConfig {
        input_size,
        refine_landmarks: models
            .refine_landmarks
            .unwrap_or(DetectorConfig::default().refine_landmarks),
        ..DetectorConfig::default()
    };
    let mut faces = Vec::new();
    count(args.iterations, || {
        scene.with_frame(|frame| detector.detect(frame, &config, &mut faces))??;
        Ok(())
    })?;
    let (width, height) = (scene.info.width() as usize, scene.info.height() as usize);
    let (net_width, net_height) = Letterbox::new(width, height, input_size).net_size();
    Ok(json!({
        "model": file_name(&path),
        "model_identity": detector.identity(),
        "input_size": input_size,
        "refine_landmarks": config.refine_landmarks,
        "network_input": [net_width, net_height],
        "faces": faces.len(),
    }))
}

fn track(args: &InstructionsArgs, scene: &Scene) -> anyhow::Result<Value> {
    let mut tracker = Tracker::new();
    let config = TrackerConfig::default();
    let boxes = [scene.face.bbox];
    let mut labels = Vec::new();
    count(args.iterations, || {
        tracker.update(&boxes, &config, &mut labels);
        Ok(())
    })?;
    Ok(json!({ "faces": boxes.len(), "track_age": labels.first().map(|l| l.age) }))
}

/// fglive's default cues on the face, as the element runs them: the frame's brightness once,
/// then every cue's reading and the track's evidence (its history kept across runs, as along a
/// track).
fn liveness(args: &InstructionsArgs, scene: &Scene) -> anyhow::Result<Value> {
    let config = LivenessConfig::default();
    let mut cues = Cues::new(None);
    let mut evidence = Evidence::default();
    let (mut grey, mut readings) = (Vec::new(), Vec::new());
    let face = scene.face;
    count(args.iterations, || {
        scene.with_frame(|frame| {
            super::read_liveness(
                frame,
                &face,
                &mut cues,
                &mut evidence,
                &config,
                &mut grey,
                &mut readings,
            )
        })??;
        Ok(())
    })?;
    Ok(json!({
        "cues": readings.iter().map(|(cue, _)| format!("{cue:?}")).collect::<Vec<_>>(),
        "verdict": format!("{:?}", evidence.judgement(&config).verdict),
    }))
}

fn align(args: &InstructionsArgs, models: &Models, scene: &Scene) -> anyhow::Result<Value> {
    // The embedder's card says how its input is normalised.
    let embedder = Embedder::load(&models.embedder_path(), args.threads)?;
    let normalisation = embedder.card().normalisation();
    let mut aligned = vec![0.0; 3 * ALIGNED_SIZE * ALIGNED_SIZE];
    count(args.iterations, || {
        if !scene.with_frame(|frame| {
            align_planar(frame, &scene.face.landmarks, &normalisation, &mut aligned)
        })? {
            bail!("the face's landmarks cannot be aligned");
        }
        Ok(())
    })?;
    Ok(json!({ "crop": [ALIGNED_SIZE, ALIGNED_SIZE] }))
}

fn embed(args: &InstructionsArgs, models: &Models, scene: &Scene) -> anyhow::Result<Value> {
    let path = models.embedder_path();
    let mut embedder = Embedder::load(&path, args.threads)?;
    let mut embedding = vec![0.0; embedder.dim()];
    count(args.iterations, || {
        scene
            .with_frame(|frame| embedder.embed(frame, &scene.face.landmarks, &mut embedding))??;
        Ok(())
    })?;
    Ok(json!({
        "model": file_name(&path),
        "model_identity": embedder.identity(),
        "crop": [ALIGNED_SIZE, ALIGNED_SIZE],
        "dim": embedder.dim(),
    }))
}

/// fgembed's bookkeeping around the model, with its default policy: after an embedding
/// (`hit` false) the frame's quality and the track's fused embedding; on the frames in between
/// (`hit` true) the cached one.
fn fuse(
    args: &InstructionsArgs,
    models: &Models,
    scene: &Scene,
    hit: bool,
) -> anyhow::Result<Value> {
    let mut embedder = Embedder::load(&models.embedder_path(), args.threads)?;
    let mut embedding = vec![0.0; embedder.dim()];
    scene.with_frame(|frame| embedder.embed(frame, &scene.face.landmarks, &mut embedding))??;
    let quality = FrameQuality::of(&scene.face.landmarks, embedder.crop_sharpness());
    let policy = RefreshPolicy::default();
    let mut cache = EmbeddingCache::new();
    let (track, width) = (1, scene.face.bbox.w);
    // The embedding frame of the track, then frames that find it fresh (well inside the
    // refresh interval: the counted runs do not advance the frame number).
    cache.store(track, 0, width, &embedding, quality, &policy);
    let mut fused = vec![0.0; embedding.len()];
    count(args.iterations, || {
        if hit {
            let cached = cache
                .fresh(track, 1, width, &policy)
                .context("the cached embedding is not fresh")?;
            fused.copy_from_slice(cached);
        } else {
            let quality = FrameQuality::of(&scene.face.landmarks, embedder.crop_sharpness());
            let stored = cache.store(track, 0, width, &embedding, quality, &policy);
            fused.copy_from_slice(stored);
        }
        Ok(())
    })?;
    Ok(json!({ "fusion_frames": policy.fusion_frames, "refresh_interval": policy.interval }))
}

/// Matches fgmatch searches for (`min(top-k, 2)`: the best and the best other identity).
const SEARCHED: usize = 2;

/// The face searched for in a gallery of `--gallery-size` people: the face itself (enrolled
/// from this frame) and synthetic people, who cost a search as much as real ones.
fn matching(args: &InstructionsArgs, models: &Models, scene: &Scene) -> anyhow::Result<Value> {
    if args.gallery_size == 0 {
        bail!("--gallery-size must be at least 1");
    }
    let mut embedder = Embedder::load(&models.embedder_path(), args.threads)?;
    let dim = embedder.dim();
    let mut embedding = vec![0.0; dim];
    scene.with_frame(|frame| embedder.embed(frame, &scene.face.landmarks, &mut embedding))??;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("gallery");
    let model = embedder.identity();
    let mut gallery = Gallery::create(&dir, model, dim as u32)?;
    gallery.enroll(
        "p-frame",
        "the benchmark frame's face",
        model,
        &embedding,
        false,
    )?;
    for n in 1..args.gallery_size as u64 {
        let id = format!("s-{n:07}");
        gallery.enroll(&id, "", model, &synthetic_embedding(n, dim), false)?;
    }
    gallery.commit()?;
    let mut best = None;
    count(args.iterations, || {
        let found = gallery.search(&embedding, SEARCHED)?;
        best = found.into_iter().next().map(|m| m.id);
        Ok(())
    })?;
    if best.as_deref() != Some("p-frame") {
        bail!("the gallery's best match for the frame's face is {best:?}, not the face itself");
    }
    Ok(json!({
        "gallery_size": gallery.len(),
        "index_type": gallery.index_type(),
        "searched": SEARCHED,
        "dim": dim,
    }))
}
