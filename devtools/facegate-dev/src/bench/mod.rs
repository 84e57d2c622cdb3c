//! `facegate-dev bench` (also `facegatectl bench`): the measurements behind docs/BENCHMARKS.md. Each benchmark is its own
//! subcommand; tests never assert timings, these commands record them.

pub mod gallery;
pub mod latency;
pub mod peers;
pub mod stages;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;

use facegatectl::pipeline::Models;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Each stage alone (detect, align, embed) on one real 640x480 frame
    Stages(stages::StagesArgs),
    /// Our pipeline against OpenCV and ONNX Runtime's Python API on the same video, in one run
    Peers(peers::PeersArgs),
    /// Galleries of 10k to 1M identities: build time, memory, query latency, recall@1
    Gallery(gallery::GalleryArgs),
    /// Decision latency at the gate, face fully visible to unlock, on the demo and soak videos
    Latency(latency::LatencyArgs),
}

pub fn run(
    command: &BenchCommand,
    models: &Models,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    match command {
        BenchCommand::Stages(args) => stages::run(args, models, out),
        BenchCommand::Peers(args) => peers::run(args, models, out),
        BenchCommand::Gallery(args) => gallery::run(args, models, out),
        BenchCommand::Latency(args) => latency::run(args, models, out),
    }
}

/// Median and 99th percentile of a set of timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: Duration,
    pub p99: Duration,
}

impl Stats {
    /// `None` for no samples. Percentiles by nearest rank on the sorted samples.
    pub fn of(mut samples: Vec<Duration>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Stats {
            median: at(0.5),
            p99: at(0.99),
        })
    }
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

/// A deterministic unit vector, for filling galleries with people who are nobody.
pub fn synthetic_embedding(seed: u64, dim: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        })
        .collect();
    facegate_vision::embedder::normalise(&mut v);
    v
}

/// Writes a benchmark's machine-readable results (read by scripts/plot-benchmarks.py).
/// `/proc/<pid>/status` of a process (`"self"` for this one).
pub fn proc_status(pid: impl std::fmt::Display) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
}

/// A numeric field of a `/proc/<pid>/status` text: `VmRSS` and `VmHWM` are in KiB, `Threads` a
/// count.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{}: cannot create the directory", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("{}: cannot write", path.display()))
}
