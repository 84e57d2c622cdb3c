// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench peers`: FaceGate's pipeline, with and without tracking, against what an
//! integrator would write without it (OpenCV's FaceDetectorYN + FaceRecognizerSF, and the same
//! models through ONNX Runtime's Python API), on the same video with the same thread budget, in
//! one invocation.
//!
//! Every run is its own process, so CPU time and peak memory are each run's own: FaceGate's
//! variants re-run this command with the hidden `--run-ours`, the peers run
//! scripts/peer-bench.py in a virtual environment this command makes (or `--python`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use facegate_vision::gallery::Gallery;
use gst::prelude::*;
use serde_json::{Value, json};

use super::{Stats, ms, write_json};
use facegate_dev_assets::AssetDir;
use facegatectl::enroll;
use facegatectl::pipeline::{self, Models};

use crate::gate_rig::enrolled;

/// fgdetect's default input size, used when `--input-size` is not given.
const DEFAULT_INPUT_SIZE: u32 = 320;
/// scripts/peer-bench.py's peers, and what the report calls them.
const PEERS: [(&str, &str); 2] = [("opencv", "OpenCV"), ("onnxruntime", "ONNX Runtime Python")];
/// The SFace form OpenCV runs best (scripts/prepare-models.py keeps it beside ours).
const PRELU_EMBEDDER_FILE: &str = "facegate_sface_2021dec_prelu.onnx";

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// A 640x480 video of real faces (default: the generated demo_walkups.avi)
    #[arg(long, value_name = "FILE")]
    pub video: Option<PathBuf>,
    /// Threads for every engine: ONNX Runtime intra-op, OpenCV, OpenMP (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
    /// A Python with scripts/requirements-peers.txt installed (default: a throwaway virtual
    /// environment made for this run)
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// Rounds: every run once per round, rounds one after another, and each run's median round
    /// reported. Interleaving spreads whatever else the machine does over all the runs alike.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub rounds: u32,
    /// Where to write the results as JSON (for scripts/plot-benchmarks.py)
    #[arg(long, value_name = "FILE", default_value = "docs/bench/peers.json")]
    pub json: PathBuf,
    /// Run one FaceGate variant in this process and print its JSON (used by the benchmark itself)
    #[arg(long, hide = true, value_name = "VARIANT", requires = "gallery")]
    pub run_ours: Option<Variant>,
    /// The gallery for --run-ours
    #[arg(long, hide = true, value_name = "DIR")]
    pub gallery: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// fgdetect ! fgtrack ! queue ! fgembed ! fgmatch: a tracked face is embedded once, then refreshed
    Tracking,
    /// fgdetect ! queue ! fgembed ! fgmatch: every face embedded on every frame, as the peers do
    NoTracking,
}

impl Variant {
    /// The analysis chain as the gate pipelines (pipelines/*.pipeline) lay it out: a queue puts
    /// decoding in its own thread and another lets the next frame's detection run while this
    /// frame's faces are embedded. Neither is leaky here, so every frame is analysed.
    fn chain(self, models: &Models, gallery: &Path, threads: u32) -> anyhow::Result<Chain> {
        let queue = || -> anyhow::Result<gst::Element> {
            Ok(gst::ElementFactory::make("queue")
                .property("max-size-buffers", 2u32)
                .property("max-size-bytes", 0u32)
                .property("max-size-time", 0u64)
                .build()?)
        };
        let detect: gst::Element = models.detector().upcast();
        let embed: gst::Element = models.embedder(None).upcast();
        for element in [&detect, &embed] {
            element.set_property("threads", threads);
        }
        let track = match self {
            Variant::Tracking => Some(pipeline::tracker().upcast::<gst::Element>()),
            Variant::NoTracking => None,
        };
        let matcher: gst::Element = pipeline::matcher(gallery, None).upcast();
        Ok(Chain {
            queues: [queue()?, queue()?],
            detect,
            track,
            embed,
            matcher,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Tracking => "FaceGate, tracking on",
            Variant::NoTracking => "FaceGate, tracking off",
        }
    }
}

pub fn run(args: &PeersArgs, models: &Models, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let video = args
        .video
        .clone()
        .unwrap_or_else(|| AssetDir::Videos.path().join("demo_walkups.avi"));
    if !video.is_file() {
        bail!("{}: no such video (make setup makes it)", video.display());
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Some(variant) = args.run_ours {
        let gallery = args
            .gallery
            .as_deref()
            .context("--run-ours needs --gallery")?;
        let result = run_ours(variant, &video, gallery, threads, models)?;
        writeln!(out, "{result}")?;
        return Ok(());
    }
    compare(args, &video, threads, models, out)
}

/// Everything one run measured; peers and FaceGate write the same shape.
fn run_summary(value: &Value) -> anyhow::Result<(f64, f64, f64, u64)> {
    let number = |key: &str| {
        value[key]
            .as_f64()
            .with_context(|| format!("a run's result has no {key}: {value}"))
    };
    Ok((
        number("fps")?,
        number("cpu_seconds")?,
        number("frames")?,
        value["peak_rss_kib"]
            .as_u64()
            .context("a run's result has no peak_rss_kib")?,
    ))
}

fn compare(
    args: &PeersArgs,
    video: &Path,
    threads: usize,
    models: &Models,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let input_size = models.input_size.unwrap_or(DEFAULT_INPUT_SIZE);
    let models = Models {
        input_size: Some(input_size),
        ..models.clone()
    };
    let detector = models.detector_path();
    let embedder = models.embedder_path();
    let prelu_embedder = embedder.with_file_name(PRELU_EMBEDDER_FILE);
    for file in [&detector, &embedder, &prelu_embedder] {
        if !file.is_file() {
            bail!("{}: no such model (make setup makes it)", file.display());
        }
    }

    let scratch = tempfile::tempdir()?;
    let (gallery, gallery_json) = enrol_demo_people(scratch.path(), &models)?;
    let python = match &args.python {
        Some(python) => python.clone(),
        None => make_peer_venv(scratch.path(), out)?,
    };

    writeln!(
        out,
        "facegatectl bench peers: {} | detector input {input_size} px (long side) for everyone | \
         {threads} threads for every engine (ONNX Runtime intra-op without spin-waiting, OpenCV, \
         OpenMP); GStreamer adds its streaming threads | {} cores",
        video.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    let mut jobs: Vec<(String, Command)> = Vec::new();
    for variant in [Variant::Tracking, Variant::NoTracking] {
        let mut command = Command::new(std::env::current_exe()?);
        if let Some(path) = &models.detector {
            command.args(["--detector-model", path]);
        }
        if let Some(path) = &models.embedder {
            command.args(["--embedder-model", path]);
        }
        command
            .args(["--input-size", &input_size.to_string(), "bench", "peers"])
            .arg("--video")
            .arg(video)
            .args(["--threads", &threads.to_string()])
            .args([
                "--run-ours",
                variant.to_possible_value().unwrap().get_name(),
            ])
            .arg("--gallery")
            .arg(&gallery)
            .env("OMP_NUM_THREADS", threads.to_string());
        jobs.push((variant.label().to_string(), command));
    }
    let script = facegate_dev_assets::workspace_dir().join("scripts/peer-bench.py");
    for (peer, peer_name) in PEERS {
        for (sface, form) in [(&prelu_embedder, "PRelu"), (&embedder, "rewritten")] {
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args(["--peer", peer])
                .arg("--video")
                .arg(video)
                .arg("--detector")
                .arg(&detector)
                .arg("--embedder")
                .arg(sface)
                .arg("--gallery")
                .arg(&gallery_json)
                .args(["--input-size", &input_size.to_string()])
                .args(["--threads", &threads.to_string()])
                .env("OMP_NUM_THREADS", threads.to_string());
            jobs.push((format!("{peer_name}, SFace {form}"), command));
        }
    }

    let mut rounds: Vec<Vec<Value>> = vec![Vec::new(); jobs.len()];
    for round in 1..=args.rounds {
        for ((label, command), results) in jobs.iter_mut().zip(&mut rounds) {
            writeln!(out, "round {round}/{}: {label} ...", args.rounds)?;
            results.push(json_of(command, label)?);
        }
    }
    let runs = rounds
        .into_iter()
        .map(median_round)
        .collect::<anyhow::Result<Vec<_>>>()?;

    report(&runs, out)?;
    write_json(
        &args.json,
        &json!({
            "video": video.display().to_string(),
            "input_size": input_size,
            "threads": threads,
            "rounds": args.rounds,
            "runs": runs,
        }),
    )?;
    writeln!(out, "\nwrote {}", args.json.display())?;
    Ok(())
}

/// The round with the median frames per second (the lower one of an even count), with every
/// round's rate beside it, so the table's stage times and CPU all come from one real run.
fn median_round(results: Vec<Value>) -> anyhow::Result<Value> {
    let mut rounds = results
        .into_iter()
        .map(|value| Ok((run_summary(&value)?.0, value)))
        .collect::<anyhow::Result<Vec<(f64, Value)>>>()?;
    let fps_by_round: Vec<f64> = rounds.iter().map(|(fps, _)| *fps).collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, mut median) = rounds
        .into_iter()
        .nth(fps_by_round.len().saturating_sub(1) / 2)
        .context("a run without rounds")?;
    median["fps_rounds"] = json!(fps_by_round);
    Ok(median)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Runs `command` and parses the one JSON object it prints last.
fn json_of(command: &mut Command, label: &str) -> anyhow::Result<Value> {
    let output = command
        .output()
        .with_context(|| format!("{label}: cannot start {:?}", command.get_program()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("{label}: failed ({}): {last}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{label}: printed no result"))?;
    let mut value: Value =
        serde_json::from_str(line).with_context(|| format!("{label}: result is not JSON"))?;
    value["label"] = json!(label);
    Ok(value)
}

/// Enrols the demo's people into a gallery for fgmatch, and writes their embeddings as JSON for
/// the peers, so every run matches against the same people.
fn enrol_demo_people(dir: &Path, models: &Models) -> anyhow::Result<(PathBuf, PathBuf)> {
    let photos = AssetDir::Photos.path();
    let gallery_dir = dir.join("gallery");
    let mut gallery: Option<Gallery> = None;
    let mut people = Vec::new();
    for (id, label, photo) in enrolled() {
        let face = enroll::embed_photo(&photos.join(photo), models)
            .map_err(|refusal| anyhow::anyhow!("{photo}: {refusal}"))?;
        let gallery = match &mut gallery {
            Some(gallery) => gallery,
            None => gallery.insert(Gallery::create(
                &gallery_dir,
                &face.model,
                face.embedding.len() as u32,
            )?),
        };
        gallery.enroll(id, label, &face.model, &face.embedding, false)?;
        people.push(json!({ "id": id, "embedding": face.embedding }));
    }
    gallery.context("nobody to enrol")?.commit()?;
    let json_path = dir.join("gallery.json");
    std::fs::write(&json_path, serde_json::to_string(&people)?)?;
    Ok((gallery_dir, json_path))
}

/// A throwaway virtual environment with the peers' packages, as an integrator would install them.
fn make_peer_venv(dir: &Path, out: &mut impl std::io::Write) -> anyhow::Result<PathBuf> {
    let venv = dir.join("venv-peers");
    let requirements = facegate_dev_assets::workspace_dir().join("scripts/requirements-peers.txt");
    writeln!(
        out,
        "making a throwaway virtual environment for the peers ({}) ...",
        file_name(&requirements)
    )?;
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("cannot run python3 -m venv (apt-get install python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status})", venv.display());
    }
    let output = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .output()
        .context("cannot run pip")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("pip install -r {} failed: {last}", requirements.display());
    }
    Ok(venv.join("bin/python"))
}

/// Per-element timings, taken by pad probes: the time from a buffer entering an element's sink
/// pad to it leaving its source pad. Our elements work in place on the streaming thread, so that
/// is the element's work on the frame.
#[derive(Default)]
struct StageClock {
    entered: Option<Instant>,
    frames: Vec<Duration>,
    /// For fgembed: frames on which the model ran, and their time divided among those faces.
    embedding_frames: Vec<Duration>,
    per_face: Vec<Duration>,
    faces_embedded: u64,
}

fn time_element(element: &gst::Element, clock: Arc<Mutex<StageClock>>) -> anyhow::Result<()> {
    let sink = element
        .static_pad("sink")
        .context("element without a sink pad")?;
    let src = element
        .static_pad("src")
        .context("element without a src pad")?;
    let entering = Arc::clone(&clock);
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if let Ok(mut clock) = entering.lock() {
            clock.entered = Some(Instant::now());
        }
        gst::PadProbeReturn::Ok
    });
    let counts_faces = element.find_property("faces-embedded").is_some();
    let weak = element.downgrade();
    src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        let left = Instant::now();
        let embedded = if counts_faces {
            weak.upgrade().map(|e| e.property::<u64>("faces-embedded"))
        } else {
            None
        };
        if let Ok(mut clock) = clock.lock()
            && let Some(entered) = clock.entered.take()
        {
            let spent = left - entered;
            clock.frames.push(spent);
            if let Some(total) = embedded {
                let new = total.saturating_sub(clock.faces_embedded);
                clock.faces_embedded = total;
                if new > 0 {
                    clock.embedding_frames.push(spent);
                    let per_face = spent / new as u32;
                    clock
                        .per_face
                        .extend(std::iter::repeat_n(per_face, new as usize));
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn stage_json(samples: &[Duration]) -> Value {
    match Stats::of(samples.to_vec()) {
        Some(stats) => json!({
            "count": samples.len(),
            "median_ms": ms(stats.median),
            "p99_ms": ms(stats.p99),
            "total_ms": ms(samples.iter().sum()),
        }),
        None => Value::Null,
    }
}

/// CPU seconds (user + system) and peak RSS in KiB of this process. The peak is VmHWM, not
/// getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child would report its
/// parent's peak.
fn process_usage() -> anyhow::Result<(f64, u64)> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    let (_, peak_kib) = super::memory_kib(&procfs::process::Process::myself()?)?;
    Ok((
        seconds(usage.user_time()) + seconds(usage.system_time()),
        peak_kib,
    ))
}

/// Our elements of one variant, as handles.
struct Chain {
    queues: [gst::Element; 2],
    detect: gst::Element,
    track: Option<gst::Element>,
    embed: gst::Element,
    matcher: gst::Element,
}

impl Chain {
    fn in_order(&self) -> Vec<gst::Element> {
        let [first, second] = self.queues.clone();
        [Some(first), Some(self.detect.clone()), self.track.clone()]
            .into_iter()
            .flatten()
            .chain([second, self.embed.clone(), self.matcher.clone()])
            .collect()
    }
}

/// One FaceGate variant over the video, in this process.
fn run_ours(
    variant: Variant,
    video: &Path,
    gallery: &Path,
    threads: usize,
    models: &Models,
) -> anyhow::Result<Value> {
    let chain = variant.chain(models, gallery, threads as u32)?;
    let (sink, frames) = pipeline::frame_sink(usize::MAX);
    let run = pipeline::FilePipeline::new(video, chain.in_order(), sink)?;
    let pipeline = run.pipeline();

    let mut clocks = BTreeMap::new();
    for (stage, element) in [
        ("detect", Some(&chain.detect)),
        ("track", chain.track.as_ref()),
        ("embed (frames with faces)", Some(&chain.embed)),
        ("match", Some(&chain.matcher)),
    ] {
        if let Some(element) = element {
            let clock = Arc::new(Mutex::new(StageClock::default()));
            time_element(element, Arc::clone(&clock))?;
            clocks.insert(stage, clock);
        }
    }
    // The decoder lives inside decodebin; time it the same way once decodebin has made it.
    let decode = Arc::new(Mutex::new(StageClock::default()));
    if let Some(decodebin) = pipeline
        .iterate_elements()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == "decodebin"))
    {
        let decode = Arc::clone(&decode);
        decodebin.connect("deep-element-added", false, move |values| {
            let element = values[2].get::<gst::Element>().ok()?;
            let is_decoder = element.factory().is_some_and(|f| {
                f.metadata(gst::ELEMENT_METADATA_KLASS)
                    .unwrap_or("")
                    .contains("Decoder")
            });
            if is_decoder {
                let _ = time_element(&element, Arc::clone(&decode));
            }
            None
        });
    }
    // The frame loop starts at the first decoded frame, so model loading is left out, as the
    // peers leave it out.
    let first_frame: Arc<Mutex<Option<(Instant, f64)>>> = Arc::default();
    {
        let first_frame = Arc::clone(&first_frame);
        chain
            .detect
            .static_pad("sink")
            .context("fgdetect without a sink pad")?
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if let Ok(mut first) = first_frame.lock()
                    && first.is_none()
                {
                    *first = process_usage().ok().map(|(cpu, _)| (Instant::now(), cpu));
                }
                gst::PadProbeReturn::Ok
            });
    }
    run.run(|_| {})?;
    let finished = Instant::now();
    let (cpu_end, peak_rss_kib) = process_usage()?;
    let (started, cpu_start) = first_frame
        .lock()
        .ok()
        .and_then(|f| *f)
        .context("no frame reached fgdetect")?;
    let frames = frames.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let faces: usize = frames.iter().map(Vec::len).sum();
    let identified = frames
        .iter()
        .flatten()
        .filter(|face| face.matched.is_some())
        .count();
    let seconds = (finished - started).as_secs_f64();

    let mut stages = serde_json::Map::new();
    let lock = |clock: &Arc<Mutex<StageClock>>| {
        clock
            .lock()
            .map(|c| {
                (
                    c.frames.clone(),
                    c.embedding_frames.clone(),
                    c.per_face.clone(),
                    c.faces_embedded,
                )
            })
            .map_err(|_| anyhow::anyhow!("poisoned"))
    };
    let (decode_frames, ..) = lock(&decode)?;
    stages.insert("decode".into(), stage_json(&decode_frames));
    let mut faces_embedded = 0;
    for (stage, clock) in &clocks {
        let (frame_times, embedding_frames, per_face, embedded) = lock(clock)?;
        if *stage == "embed (frames with faces)" {
            // Frames the embedder passes through (no face, or a tracked face not due a
            // refresh) are not embedding work; per face is what compares across engines.
            stages.insert((*stage).into(), stage_json(&embedding_frames));
            stages.insert("embed per face".into(), stage_json(&per_face));
            faces_embedded = embedded;
        } else {
            stages.insert((*stage).into(), stage_json(&frame_times));
        }
    }
    Ok(json!({
        "peer": "facegate",
        "variant": format!("{variant:?}"),
        "engine": format!("FaceGate {} (GStreamer {}, ONNX Runtime via ort, FAISS)", env!("CARGO_PKG_VERSION"), gst::version_string()),
        "detector": models.detector_path().display().to_string(),
        "embedder": models.embedder_path().display().to_string(),
        "threads": threads,
        "input_size": models.input_size,
        "frames": frames.len(),
        "faces": faces,
        "faces_embedded": faces_embedded,
        "faces_identified": identified,
        "seconds": seconds,
        "fps": frames.len() as f64 / seconds,
        "cpu_seconds": cpu_end - cpu_start,
        "peak_rss_kib": peak_rss_kib,
        "stages": stages,
    }))
}

fn stage_cell(run: &Value, stage: &str) -> String {
    let s = &run["stages"][stage];
    match (s["median_ms"].as_f64(), s["p99_ms"].as_f64()) {
        (Some(median), Some(p99)) => format!("{median:.2} / {p99:.2}"),
        _ => "-".into(),
    }
}

fn report(runs: &[Value], out: &mut impl std::io::Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "\n| run | SFace file | frames | fps (rounds) | decode | detect | embed per face | match | faces embedded | CPU s (per frame ms) | peak RSS MiB |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for run in runs {
        let (fps, cpu, frames, rss) = run_summary(run)?;
        let match_stage = if run["stages"]["match"].is_null() {
            "match (frames with faces)"
        } else {
            "match"
        };
        writeln!(
            out,
            "| {} | {} | {frames} | {fps:.1} ({}) | {} | {} | {} | {} | {} | {cpu:.1} ({:.1}) | {:.0} |",
            run["label"].as_str().unwrap_or("?"),
            Path::new(run["embedder"].as_str().unwrap_or("?"))
                .file_name()
                .map_or("?".into(), |n| n.to_string_lossy()),
            run["fps_rounds"]
                .as_array()
                .map(|rounds| rounds
                    .iter()
                    .filter_map(|fps| Some(format!("{:.1}", fps.as_f64()?)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            stage_cell(run, "decode"),
            stage_cell(run, "detect"),
            stage_cell(run, "embed per face"),
            stage_cell(run, match_stage),
            run["faces_embedded"],
            cpu * 1e3 / frames,
            rss as f64 / 1024.0,
        )?;
    }
    writeln!(
        out,
        "\nfps: the median round (every round's in brackets); the other cells are that round's. \
         Stage cells: median / p99 ms per frame (embed: per face). SFace PRelu: the PRelu form \
         OpenCV runs best; rewritten: the form FaceGate runs (scripts/prepare-models.py)"
    )?;
    let fps_of = |label_prefix: &str| -> Option<(f64, String)> {
        runs.iter()
            .filter(|r| {
                r["label"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(label_prefix))
            })
            .filter_map(|r| Some((r["fps"].as_f64()?, r["label"].as_str()?.to_string())))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let (Some((tracking, _)), Some((no_tracking, _))) = (
        fps_of(Variant::Tracking.label()),
        fps_of(Variant::NoTracking.label()),
    ) else {
        bail!("FaceGate's runs are missing");
    };
    for (_, peer_name) in PEERS {
        if let Some((fps, label)) = fps_of(peer_name) {
            writeln!(
                out,
                "against the faster {peer_name} run ({label}, {fps:.1} fps): tracking on {:.2}x, tracking off {:.2}x",
                tracking / fps,
                no_tracking / fps
            )?;
        }
    }
    Ok(())
}
