// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegate-dev bench` (also `facegatectl bench`): the measurements behind docs/BENCHMARKS.md. Each benchmark is its own
//! subcommand; tests never assert timings, these commands record them.

pub mod distractors;
pub mod enrol;
pub mod fleet;
pub mod fusion;
pub mod gallery;
pub mod health;
pub mod instructions;
pub mod latency;
pub mod liveness;
pub mod peers;
pub mod qr;
pub mod stages;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use facegate_vision::liveness::{Cue, Cues, Evidence, FaceView, Grey, LivenessConfig, Reading};
use facegate_vision::runtime::InferenceError;
use facegate_vision::{Face, Frame};
use gst::prelude::*;

use facegatectl::pipeline::Models;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Each stage alone (detect, align, embed) on one real 640x480 frame
    Stages(stages::StagesArgs),
    /// One stage run a fixed number of times in a function of its own, for callgrind to count
    /// (scripts/pi4-budget.sh: the Pi 4 budget)
    Instructions(instructions::InstructionsArgs),
    /// Our pipeline against OpenCV and ONNX Runtime's Python API on the same video, in one run
    Peers(peers::PeersArgs),
    /// Galleries of 10k to 1M identities: build time, memory, query latency, recall@1
    Gallery(gallery::GalleryArgs),
    /// Decision latency at the gate, face fully visible to unlock, on the demo and soak videos
    Latency(latency::LatencyArgs),
    /// What fusing a track's frames buys: genuine and impostor scores, grants, on corpus walk-ups
    Fusion(fusion::FusionArgs),
    /// Central enrolment's photos per second: one by one against the batch, on the corpus
    Enrol(enrol::EnrolArgs),
    /// The fleet on loopback servers: a gate's backlog into the ledger, gallery changes to every gate
    Fleet(fleet::FleetArgs),
    /// The fleet's health at metro scale: heartbeats of thousands of gates, /metrics scrapes
    Health(health::HealthArgs),
    /// Presentation attacks (phone, print) at the gate: APCER, BPCER, IAPMR with detection off and on
    Liveness(liveness::LivenessArgs),
    /// Reading passengers' QR tokens in video: decode rate and cost per frame of each decoder
    Qr(qr::QrArgs),
}

pub fn run(
    command: &BenchCommand,
    models: &Models,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Stages(args) => stages::run(args, models, out),
        BenchCommand::Instructions(args) => instructions::run(args, models, out),
        BenchCommand::Peers(args) => peers::run(args, models, out),
        BenchCommand::Gallery(args) => gallery::run(args, models, out),
        BenchCommand::Latency(args) => latency::run(args, models, out),
        BenchCommand::Fleet(args) => fleet::run(args, out),
        BenchCommand::Health(args) => health::run(args, out),
        BenchCommand::Enrol(args) => enrol::run(args, models, out),
        BenchCommand::Fusion(args) => fusion::run(args, models, out),
        BenchCommand::Qr(args) => qr::run(args, out),
        BenchCommand::Liveness(args) => liveness::run(args, models, out),
    }
}

/// Median and 99th percentile of a set of timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: Duration,
    pub p99: Duration,
}

impl Stats {
    /// `None` for no samples.
    pub fn of(samples: Vec<Duration>) -> Option<Stats> {
        let nanos: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        Some(Stats {
            median: Duration::from_nanos(percentile(&nanos, 0.5)?),
            p99: Duration::from_nanos(percentile(&nanos, 0.99)?),
        })
    }
}

/// The `q` quantile of `samples` (any order), `None` for none. An HDR histogram at three
/// significant digits: exact enough for timings, and the benchmarks' one way of taking them.
pub fn percentile(samples: &[u64], q: f64) -> Option<u64> {
    // Auto-resizing: it grows to the largest sample (saturating would clamp to its first range).
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).ok()?;
    for &sample in samples {
        histogram.record(sample).ok()?;
    }
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q))
}

/// Runs `run` for a warm-up, then `iterations` timed times.
pub fn measure(
    iterations: usize,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Stats> {
    for _ in 0..iterations.div_ceil(10).max(3) {
        run()?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations.max(1) {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed());
    }
    Ok(Stats::of(times).expect("at least one timed run"))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// fglive's work on one frame with one face, as the element runs it: the frame's brightness, then
/// every default cue's reading, added to the track's evidence.
fn read_liveness(
    frame: &Frame<'_>,
    face: &Face,
    cues: &mut Cues,
    evidence: &mut Evidence,
    config: &LivenessConfig,
    grey: &mut Vec<u8>,
    readings: &mut Vec<(Cue, Reading)>,
) -> Result<(), InferenceError> {
    frame.grey_into(grey);
    let view = FaceView {
        grey: Grey {
            pixels: grey,
            width: frame.width(),
            height: frame.height(),
        },
        bbox: face.bbox,
        landmarks: face.landmarks,
    };
    readings.clear();
    cues.read(frame, &view, evidence, config, readings)?;
    evidence.add(readings, config);
    Ok(())
}

/// `video` playing into an appsink, decoded to I420 as the gate's elements receive it; the caller
/// pulls its frames and sets the pipeline to Null when done.
fn decoding(video: &Path) -> anyhow::Result<(gst::Pipeline, gst_app::AppSink)> {
    let description = "filesrc name=source ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false";
    let pipeline = gst::parse::launch(description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    pipeline
        .by_name("source")
        .context("source")?
        .set_property("location", video.to_string_lossy().as_ref());
    let sink = pipeline
        .by_name("sink")
        .context("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    Ok((pipeline, sink))
}

/// A deterministic unit vector, for filling galleries with people who are nobody.
pub fn synthetic_embedding(seed: u64, dim: usize) -> Vec<f32> {
    let mut random = fastrand::Rng::with_seed(seed);
    let mut v: Vec<f32> = (0..dim).map(|_| random.f32() - 0.5).collect();
    facegate_vision::embedder::normalise(&mut v);
    v
}

/// Memory of a process from `/proc/<pid>/status`: (VmRSS, VmHWM) in KiB.
pub fn memory_kib(process: &procfs::process::Process) -> anyhow::Result<(u64, u64)> {
    let status = process.status().context("reading /proc/<pid>/status")?;
    match (status.vmrss, status.vmhwm) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => anyhow::bail!("/proc/{}/status has no VmRSS/VmHWM", process.pid),
    }
}

/// Writes a benchmark's machine-readable results (read by scripts/plot-benchmarks.py).
/// Where a benchmark writes its results: the file asked for, or docs/bench/<name>.json in the
/// repository (what scripts/plot-benchmarks.py reads).
pub fn results_path(chosen: Option<&Path>, name: &str) -> std::path::PathBuf {
    chosen.map_or_else(
        || facegate_dev_assets::workspace_dir().join(format!("docs/bench/{name}.json")),
        Path::to_path_buf,
    )
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the directory", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_timings_keep_their_size() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let stats = Stats::of(samples).unwrap();
        let close = |d: Duration, ms: f64| (d.as_secs_f64() * 1e3 - ms).abs() < ms * 0.01;
        assert!(close(stats.median, 50.0), "{stats:?}");
        assert!(close(stats.p99, 99.0), "{stats:?}");
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.99), Some(7));
    }
}
