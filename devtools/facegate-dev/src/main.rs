// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegate-dev: the gate demo and the benchmarks (`facegatectl demo` and `facegatectl bench`
//! hand over to this program).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use facegate_dev_assets::AssetDir;
use facegate_devtools::recognition_demo::{self, DemoPaths};
use facegate_devtools::{bench, gate_rig, pad_trial, token_scene};
use facegatectl::pipeline::ModelArgs;

#[derive(Parser)]
#[command(
    name = "facegate-dev",
    version,
    about = "FaceGate's development tools: the gate demo and the benchmarks"
)]
struct Cli {
    #[command(flatten)]
    models: ModelArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The gate demo: facegated on a walk-up video with a simulated gate and a private D-Bus
    /// (--recognition: identification only, on the photos and the video; --token: passengers
    /// show signed QR tokens, no gallery on the gate)
    Demo {
        /// Identify the development photos and the video instead of running the gate
        #[arg(long, conflicts_with = "token")]
        recognition: bool,
        /// The gate in token mode: walk-ups holding up a phone with their QR token
        #[arg(long)]
        token: bool,
        #[arg(long, value_name = "DIR", requires = "recognition")]
        photos: Option<PathBuf>,
        #[arg(long, value_name = "DIR", requires = "recognition")]
        videos: Option<PathBuf>,
        /// Gallery to build (default: a fresh temporary one)
        #[arg(long, value_name = "DIR", requires = "recognition")]
        gallery: Option<PathBuf>,
    },
    /// Write the presentation-attack videos the liveness benchmark plays (every photo of the
    /// demo's enrolled passengers on a phone, as a print, and approaching in person), each with
    /// its timeline, into DIR
    AttackVideos {
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
    /// Measure speed, scale and decision latency (see docs/BENCHMARKS.md)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    facegatectl::init().context("GStreamer failed to initialise")?;
    let models = cli.models.models();
    let mut out = std::io::stdout();
    match cli.command {
        Command::Demo { token: true, .. } => token_scene::run_demo(&mut out),
        Command::Demo {
            recognition: false, ..
        } => gate_rig::run(&mut out),
        Command::Demo {
            recognition: true,
            photos,
            token: _,
            videos,
            gallery,
        } => {
            let scratch = tempfile::tempdir()?;
            let paths = DemoPaths {
                photos: photos.unwrap_or_else(|| AssetDir::Photos.path()),
                videos: videos.unwrap_or_else(|| AssetDir::Videos.path()),
                gallery: gallery.unwrap_or_else(|| scratch.path().join("gallery")),
            };
            recognition_demo::run(&paths, &models, &mut out)
        }
        Command::AttackVideos { out: dir } => pad_trial::write_videos(&dir, &mut out),
        Command::Bench(command) => bench::run(&command, &models, &mut out),
    }
}

fn main() -> ExitCode {
    facegatectl::run_main("facegate-dev", || run(Cli::parse()))
}
