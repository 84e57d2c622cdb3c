// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench stages`: each stage alone on the real models and a real 640x480 frame of a
//! face (whole pipelines against the peers: `bench peers`; galleries at scale: `bench gallery`).
//! Results go in docs/BENCHMARKS.md.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{measure, ms};

use anyhow::{Context, bail};
use clap::Args;
use facegate_vision::align::{ALIGNED_SIZE, align_planar};
use facegate_vision::liveness::{Cues, Evidence, LivenessConfig};
use facegate_vision::{Detector, DetectorConfig, Embedder, Face};
use gst::prelude::*;

use facegate_dev_assets::AssetDir;
use facegatectl::pipeline::Models;

#[derive(Args, Debug)]
pub struct StagesArgs {
    /// Timed runs per stage (after a warm-up)
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// A 640x480 video of one face walking up (default: the generated walkup_person_b.avi)
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// Inference threads for every model (0: ONNX Runtime's choice, one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// OpenCV 5.0's speeds (opencv-python-headless, 2 threads) on the same kind of 2-core machine,
/// recorded in docs/BENCHMARKS.md, for the report.
const OPENCV_DETECT_640X480_MS: f64 = 8.1;
const OPENCV_DETECT_320X240_MS: f64 = 2.2;
const OPENCV_ALIGN_EMBED_MS: f64 = 8.7;

/// The decoded frame of a video with the largest face, as the gate's elements receive it.
fn frame_with_face(
    video: &Path,
    models: &Models,
) -> anyhow::Result<(gst_video::VideoInfo, gst::Buffer)> {
    let (pipeline, sink) = super::decoding(video)?;
    let detector_path = models.detector_path();
    let mut detector = Detector::load(&detector_path, 0)?;
    let mut faces = Vec::new();
    let mut best: Option<(f32, gst_video::VideoInfo, gst::Buffer)> = None;
    while let Ok(sample) = sink.pull_sample() {
        let (Some(caps), Some(buffer)) = (sample.caps(), sample.buffer_owned()) else {
            continue;
        };
        let info = gst_video::VideoInfo::from_caps(caps)?;
        gstfacegate::video::with_frame(&info, &buffer, |frame| {
            let config = DetectorConfig {
                input_size: facegatectl::enroll::ENROL_INPUT_SIZE as usize,
                ..DetectorConfig::default()
            };
            detector.detect(frame, &config, &mut faces)
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))??;
        if let [face] = faces.as_slice()
            && best.as_ref().is_none_or(|(width, ..)| face.bbox.w > *width)
        {
            best = Some((face.bbox.w, info, buffer));
        }
    }
    pipeline.set_state(gst::State::Null)?;
    best.map(|(_, info, buffer)| (info, buffer))
        .with_context(|| format!("no frame of {} shows one face", video.display()))
}

pub fn run(args: &StagesArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    let video = args
        .video
        .clone()
        .unwrap_or_else(|| AssetDir::Videos.path().join("walkup_person_b.avi"));
    let (info, buffer) = frame_with_face(&video, models)?;
    if (info.width(), info.height()) != (640, 480) {
        bail!(
            "{} is {}x{}; the benchmark wants 640x480",
            video.display(),
            info.width(),
            info.height()
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    writeln!(
        out,
        "facegatectl bench: {} iterations per stage, {cores} cores, model threads {} (0 = one per core)",
        args.iterations, args.threads
    )?;
    writeln!(out, "frame: 640x480 I420 from {}\n", video.display())?;

    writeln!(out, "| stage | median ms | p99 ms | OpenCV reference |")?;
    writeln!(out, "|---|---|---|---|")?;
    let detector_path = models.detector_path();
    let mut detector = Detector::load(&detector_path, args.threads)?;
    let mut faces: Vec<Face> = Vec::new();
    let mut face_at_640 = None;
    for input_size in [160usize, 320, 480, 640] {
        let config = DetectorConfig {
            input_size,
            ..DetectorConfig::default()
        };
        let stats = measure(args.iterations, || {
            gstfacegate::video::with_frame(&info, &buffer, |frame| {
                detector.detect(frame, &config, &mut faces)
            })
            .map_err(|e| anyhow::anyhow!("{e:?}"))??;
            Ok(())
        })?;
        let reference = match input_size {
            640 => format!("FaceDetectorYN 640x480: {OPENCV_DETECT_640X480_MS} ms"),
            320 => format!("FaceDetectorYN 320x240: {OPENCV_DETECT_320X240_MS} ms"),
            _ => String::new(),
        };
        writeln!(
            out,
            "| detect, input-size {input_size} ({} faces) | {:.2} | {:.2} | {reference} |",
            faces.len(),
            ms(stats.median),
            ms(stats.p99)
        )?;
        if input_size == 640 {
            face_at_640 = faces.first().copied();
        }
    }
    let face = face_at_640.context("the benchmark frame shows no face at input-size 640")?;

    let embedder_path = models.embedder_path();
    let mut embedder = Embedder::load(&embedder_path, args.threads)?;
    let normalisation = embedder.card().normalisation();
    let mut aligned = vec![0.0; 3 * ALIGNED_SIZE * ALIGNED_SIZE];
    let stats = measure(args.iterations, || {
        gstfacegate::video::with_frame(&info, &buffer, |frame| {
            align_planar(frame, &face.landmarks, &normalisation, &mut aligned)
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(())
    })?;
    writeln!(
        out,
        "| align (112x112 warp) | {:.3} | {:.3} | |",
        ms(stats.median),
        ms(stats.p99)
    )?;
    let mut embedding = vec![0.0; embedder.dim()];
    let stats = measure(args.iterations, || {
        gstfacegate::video::with_frame(&info, &buffer, |frame| {
            embedder.embed(frame, &face.landmarks, &mut embedding)
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))??;
        Ok(())
    })?;
    writeln!(
        out,
        "| align + embed, per face | {:.2} | {:.2} | FaceRecognizerSF (fp32): {OPENCV_ALIGN_EMBED_MS} ms |",
        ms(stats.median),
        ms(stats.p99)
    )?;

    // fglive's default cues on the same face, as the element runs them: the frame's brightness
    // once, then every cue's reading and the track's evidence (its history kept across runs,
    // as along a track).
    let config = LivenessConfig::default();
    let mut cues = Cues::new(None);
    let mut evidence = Evidence::default();
    let (mut grey, mut readings) = (Vec::new(), Vec::new());
    let stats = measure(args.iterations, || {
        gstfacegate::video::with_frame(&info, &buffer, |frame| {
            super::read_liveness(
                frame,
                &face,
                &mut cues,
                &mut evidence,
                &config,
                &mut grey,
                &mut readings,
            )
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))??;
        Ok(())
    })?;
    writeln!(
        out,
        "| liveness: grey frame + default cues, one face | {:.3} | {:.3} | |",
        ms(stats.median),
        ms(stats.p99)
    )?;

    Ok(())
}
