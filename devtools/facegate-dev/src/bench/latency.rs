// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench latency`: decision latency at the gate, from the first frame on which an
//! enrolled face is fully visible to the simulated gate's relay switching on, with the real
//! facegated (the one next to this executable, so `--release` measures the release build) playing
//! the demo video a few times and the 10-minute soak video in real time, on a private bus.
//! facegated's memory and CPU are read from /proc throughout; results go to a markdown table and
//! a JSON file (docs/bench/latency.json) with every sample and every grant, for plotting.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::{Stats, ms};
use facegatectl::pipeline::Models;

use crate::gate_rig::{self, GateRig, RigFiles, TimedGrant, Timeline, enrolled};

/// The target for the decision latency's 99th percentile at 30 fps.
const TARGET_P99_MS: f64 = 150.0;
/// The demo's anti-passback window (config/demo.toml's), set explicitly so the expected
/// decisions do not depend on that file.
const DEMO_PASSBACK_S: u64 = 120;

#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// Runs over the demo video (0: none)
    #[arg(long, default_value_t = 3)]
    pub demo_runs: usize,
    /// Also run the soak video (the default; made by scripts/make-videos.sh on first use)
    #[arg(long, overrides_with = "no_soak")]
    pub soak: bool,
    /// Skip the soak video
    #[arg(long, overrides_with = "soak")]
    pub no_soak: bool,
    /// Stop the soak after this many minutes (default: the whole video, about 10)
    #[arg(long, value_name = "MINUTES")]
    pub soak_minutes: Option<f64>,
    /// Anti-passback window for the soak: shorter than any return in the video (6.8 s at the
    /// soonest), so every enrolled walk-up is granted
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub soak_passback_s: u64,
    /// facegated's memory and CPU are read this often
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub sample_every: f64,
    /// "Start" memory is the first sample this long after facegated started (models, gallery
    /// and pipeline loaded, first people decided)
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub warm_up: f64,
    /// Machine-readable results (default: docs/bench/latency.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(args: &LatencyArgs, _models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    if !args.sample_every.is_finite() || args.sample_every <= 0.0 {
        bail!("--sample-every must be a positive number of seconds");
    }
    let files = RigFiles::repository_defaults()?;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    // facegated inherits the environment: these change its CPU use (FAISS's OpenMP threads spin
    // after each search unless told otherwise), so a run records them.
    let openmp: BTreeMap<&str, String> = ["OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT"]
        .into_iter()
        .filter_map(|name| Some((name, std::env::var(name).ok()?)))
        .collect();
    writeln!(
        out,
        "== decision latency: {} ({build} build), {} cores, load average {}{}",
        files.facegated.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        openmp
            .iter()
            .map(|(name, value)| format!(", {name}={value}"))
            .collect::<String>()
    )?;
    let mut runs = Vec::new();
    let demo = Spec {
        video: files.video.clone(),
        passback_window_s: DEMO_PASSBACK_S,
        stop_after: None,
    };
    for number in 1..=args.demo_runs {
        let run = measure(&files, &demo, number, args)?;
        writeln!(out, "   {}", run.one_line())?;
        runs.push(run);
    }
    if args.soak || !args.no_soak {
        let soak = Spec {
            video: ensure_video(&files, "soak_walkups", out)?,
            passback_window_s: args.soak_passback_s,
            stop_after: args
                .soak_minutes
                .map(|m| Duration::from_secs_f64(m.max(0.0) * 60.0)),
        };
        writeln!(
            out,
            "== soak: {} in real time ({}), anti-passback {} s",
            soak.video.display(),
            soak.stop_after
                .map_or("the whole video".into(), |d| format!(
                    "stopped after {:.1} min",
                    d.as_secs_f64() / 60.0
                )),
            soak.passback_window_s
        )?;
        let run = measure(&files, &soak, 1, args)?;
        writeln!(out, "   {}", run.one_line())?;
        runs.push(run);
    }
    let summaries: Vec<Summary> = ["demo_walkups", "soak_walkups"]
        .into_iter()
        .filter_map(|video| Summary::of(video, &runs))
        .collect();
    report(&runs, &summaries, build, out)?;
    let json = super::results_path(args.json.as_deref(), "latency");
    super::write_json(
        &json,
        &serde_json::json!({
            "benchmark": "latency",
            "measured_unix_s": unix_s(),
            "facegated": files.facegated,
            "build": build,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "target_p99_ms": TARGET_P99_MS,
            "openmp_environment": openmp,
            "summaries": summaries,
            "videos": plot_series(&summaries, &runs),
            "runs": runs,
        }),
    )?;
    writeln!(out, "\n(written to {})", json.display())?;
    Ok(())
}

/// One run to make: a video, the anti-passback window, and when to stop early.
struct Spec {
    video: PathBuf,
    passback_window_s: u64,
    stop_after: Option<Duration>,
}

/// One run of facegated over one video.
#[derive(Serialize)]
struct Run {
    video: String,
    run: usize,
    passback_window_s: u64,
    /// Whether it was stopped before the end of the video (`--soak-minutes`).
    stopped_early: bool,
    /// Video time of the last decision: walk-ups after it are not counted.
    decided_until_s: f64,
    walkups: usize,
    grants_expected: usize,
    grants: usize,
    /// Grants for the walk-up's own passenger, where one was expected.
    grants_correct: usize,
    denials: BTreeMap<String, usize>,
    latency: Option<Latency>,
    grants_timed: Vec<TimedGrant>,
    process: ProcessReport,
    /// Load average of the machine (1, 5, 15 min) when the run started and ended.
    load_start: String,
    load_end: String,
}

#[derive(Clone, Copy, Serialize)]
struct Latency {
    median_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(values: impl IntoIterator<Item = f64>) -> Option<Latency> {
        let values: Vec<f64> = values.into_iter().collect();
        let max_ms = values.iter().copied().reduce(f64::max)?;
        let stats = Stats::of(
            values
                .iter()
                .map(|v| Duration::from_secs_f64(v.max(0.0) / 1e3))
                .collect(),
        )?;
        Some(Latency {
            median_ms: ms(stats.median),
            p99_ms: ms(stats.p99),
            max_ms,
        })
    }
}

impl Run {
    fn name(&self) -> &str {
        self.video.trim_end_matches(".avi")
    }

    fn one_line(&self) -> String {
        let latency = self.latency.map_or("no grants".into(), |l| {
            format!(
                "latency median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                l.median_ms, l.p99_ms, l.max_ms
            )
        });
        format!(
            "{} run {}: {}/{} grants correct ({} in all), {latency}; RSS end {:.0} MiB, CPU {:.0} %",
            self.name(),
            self.run,
            self.grants_correct,
            self.grants_expected,
            self.grants,
            mib(self.process.rss_end_kib),
            self.process.cpu_percent
        )
    }
}

/// Enrols the demo's passengers, runs facegated over the spec's video and reads the outcome.
fn measure(
    files: &RigFiles,
    spec: &Spec,
    number: usize,
    args: &LatencyArgs,
) -> anyhow::Result<Run> {
    let scratch = tempfile::Builder::new()
        .prefix("facegate-latency")
        .tempdir()?;
    let mut files = files.clone();
    files.video = spec.video.clone();
    let timeline = Timeline::for_video(&files.video)?;
    let mut rig = GateRig::new(files, scratch.path(), &enrolled())?;
    rig.extra_env.push((
        "FACEGATE_POLICY__PASSBACK_WINDOW_S".into(),
        spec.passback_window_s.to_string(),
    ));
    let load_start = load_average();
    let mut service = rig.spawn()?;
    let started = Instant::now();
    let sampler = Sampler::start(service.id(), Duration::from_secs_f64(args.sample_every));
    let deadline = spec.stop_after.map(|d| started + d);
    let video_length = Duration::from_nanos(timeline.frame_ns(timeline.frames));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The timeout's timer must be made inside the runtime.
    let followed = runtime.block_on(async {
        let follow = gate_rig::follow(&rig, &mut service, |_| {
            Ok(match deadline {
                Some(deadline) if Instant::now() >= deadline => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            })
        });
        tokio::time::timeout(video_length + Duration::from_secs(120), follow).await
    });
    let samples = sampler.finish();
    let log_tail = || tail(&rig.log, 20);
    let followed = followed
        .map_err(|_| {
            anyhow::anyhow!(
                "facegated ran 2 minutes past the end of the video; its log ends:\n{}",
                log_tail()
            )
        })?
        .with_context(|| format!("following facegated; its log ends:\n{}", log_tail()))?;
    let stopped_early = deadline.is_some() && !followed.status.success();
    if !stopped_early && !followed.status.success() {
        bail!(
            "facegated failed ({}); its log ends:\n{}",
            followed.status,
            log_tail()
        );
    }
    let grants_timed = gate_rig::timed_grants(&rig, followed.stream_start_unix_ns)?;
    let passages = rig.passages()?;
    let decided_until = passages
        .iter()
        .filter_map(|p| p.video_time_ns)
        .max()
        .unwrap_or(0);
    // Walk-ups the gate had the time to decide: all of them, or up to the last decision.
    let seen = |walkup: usize| {
        !stopped_early || timeline.frame_ns(timeline.walkups[walkup].first_frame) <= decided_until
    };
    let expected: Vec<(usize, &str)> = timeline
        .expected_grants(Duration::from_secs(spec.passback_window_s))
        .into_iter()
        .filter(|&(walkup, _)| seen(walkup))
        .collect();
    let grants_correct = grants_timed
        .iter()
        .filter(|g| expected.contains(&(g.walkup, g.identity.as_str())))
        .count();
    let mut denials = BTreeMap::new();
    for passage in passages.iter().filter(|p| !p.granted) {
        *denials
            .entry(passage.reason.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    Ok(Run {
        video: file_name(&spec.video),
        run: number,
        passback_window_s: spec.passback_window_s,
        stopped_early,
        decided_until_s: decided_until as f64 / 1e9,
        walkups: (0..timeline.walkups.len()).filter(|&w| seen(w)).count(),
        grants_expected: expected.len(),
        grants: passages.iter().filter(|p| p.granted).count(),
        grants_correct,
        denials,
        latency: Latency::of(grants_timed.iter().map(|g| g.latency_ms)),
        grants_timed,
        process: ProcessReport::of(samples, args.warm_up),
        load_start,
        load_end: load_average(),
    })
}

/// All runs over one video together.
#[derive(Serialize)]
struct Summary {
    video: String,
    runs: usize,
    grants_expected: usize,
    grants: usize,
    grants_correct: usize,
    latency: Option<Latency>,
    /// Medians and 99th percentiles of the parts of the latency (they do not add up).
    frames: Option<Latency>,
    analysis: Option<Latency>,
    commit: Option<Latency>,
}

impl Summary {
    fn of(video: &str, runs: &[Run]) -> Option<Summary> {
        let runs: Vec<&Run> = runs.iter().filter(|r| r.name() == video).collect();
        if runs.is_empty() {
            return None;
        }
        let grants = || runs.iter().flat_map(|r| &r.grants_timed);
        Some(Summary {
            video: video.to_owned(),
            runs: runs.len(),
            grants_expected: runs.iter().map(|r| r.grants_expected).sum(),
            grants: runs.iter().map(|r| r.grants).sum(),
            grants_correct: runs.iter().map(|r| r.grants_correct).sum(),
            latency: Latency::of(grants().map(|g| g.latency_ms)),
            frames: Latency::of(grants().map(|g| g.frames_ms)),
            analysis: Latency::of(grants().map(|g| g.analysis_ms)),
            commit: Latency::of(grants().map(|g| g.commit_ms)),
        })
    }
}

/// What scripts/plot-benchmarks.py draws, per video: every grant's latency over all runs, and
/// facegated's memory over the last run (the soak's only one).
fn plot_series(summaries: &[Summary], runs: &[Run]) -> serde_json::Value {
    summaries
        .iter()
        .map(|s| {
            let runs: Vec<&Run> = runs.iter().filter(|r| r.name() == s.video).collect();
            let latencies: Vec<f64> = runs
                .iter()
                .flat_map(|r| r.grants_timed.iter().map(|g| g.latency_ms))
                .collect();
            let rss: Vec<serde_json::Value> = runs.last().map_or_else(Vec::new, |r| {
                r.process
                    .samples
                    .iter()
                    .map(|x| serde_json::json!({"t_s": x.t_s, "rss_kib": x.rss_kib}))
                    .collect()
            });
            serde_json::json!({
                "name": s.video,
                "runs": s.runs,
                "latencies_ms": latencies,
                "rss_samples": rss,
            })
        })
        .collect()
}

fn report(
    runs: &[Run],
    summaries: &[Summary],
    build: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let cell = |l: Option<Latency>, f: fn(&Latency) -> f64| {
        l.map_or("-".into(), |l| format!("{:.0}", f(&l)))
    };
    writeln!(
        out,
        "\n### Decision latency, face fully visible to unlock (facegated {build} build)\n"
    )?;
    writeln!(
        out,
        "| video | run | grants correct / expected (all grants) | median ms | p99 ms | max ms | RSS start → end MiB | peak RSS MiB | CPU s (avg % of a core) | machine busy % |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
    for run in runs {
        let p = &run.process;
        writeln!(
            out,
            "| {} | {}{} | {} / {} ({}) | {} | {} | {} | {} → {:.0} | {:.0} | {:.1} ({:.0}) | {:.0} |",
            run.name(),
            run.run,
            if run.stopped_early { " (stopped)" } else { "" },
            run.grants_correct,
            run.grants_expected,
            run.grants,
            cell(run.latency, |l| l.median_ms),
            cell(run.latency, |l| l.p99_ms),
            cell(run.latency, |l| l.max_ms),
            p.rss_start_kib
                .map_or("-".into(), |k| format!("{:.0}", mib(k))),
            mib(p.rss_end_kib),
            mib(p.rss_peak_kib),
            p.cpu_s,
            p.cpu_percent,
            p.machine_busy_percent,
        )?;
    }
    for s in summaries {
        writeln!(
            out,
            "| **{}, all runs** | {} | {} / {} ({}) | {} | {} | {} | | | | |",
            s.video,
            s.runs,
            s.grants_correct,
            s.grants_expected,
            s.grants,
            cell(s.latency, |l| l.median_ms),
            cell(s.latency, |l| l.p99_ms),
            cell(s.latency, |l| l.max_ms),
        )?;
    }
    writeln!(out)?;
    for s in summaries {
        let part = |l: Option<Latency>| {
            l.map_or("-".into(), |l| {
                format!("{:.0} / {:.0} / {:.0}", l.median_ms, l.p99_ms, l.max_ms)
            })
        };
        writeln!(
            out,
            "{}: where the time goes (median / p99 / max ms): frames until the deciding one {}, \
             analysis lag behind that frame {}, journal commit + gate {}",
            s.video,
            part(s.frames),
            part(s.analysis),
            part(s.commit)
        )?;
        if let Some(latency) = s.latency {
            let verdict = if latency.p99_ms <= TARGET_P99_MS {
                format!("met ({:.0} ms to spare)", TARGET_P99_MS - latency.p99_ms)
            } else {
                format!("missed by {:.0} ms", latency.p99_ms - TARGET_P99_MS)
            };
            writeln!(
                out,
                "{}: target p99 <= {TARGET_P99_MS:.0} ms {verdict}",
                s.video
            )?;
        }
    }
    for run in runs.iter().filter(|r| r.process.rss_start_kib.is_some()) {
        let p = &run.process;
        writeln!(
            out,
            "{} run {}: RSS after {:.0} s warm-up {:.1} MiB, at the end {:.1} MiB ({:+.1} MiB; trend {:+.0} KiB/min), \
             VmHWM {:.1} MiB; threads {} → {}, fds {} → {}",
            run.name(),
            run.run,
            p.warm_up_s,
            mib(p.rss_start_kib.unwrap_or(0)),
            mib(p.rss_end_kib),
            (p.rss_end_kib as f64 - p.rss_start_kib.unwrap_or(0) as f64) / 1024.0,
            p.rss_trend_kib_per_min.unwrap_or(0.0),
            mib(p.rss_peak_kib),
            p.threads_start,
            p.threads_end,
            p.fds_start,
            p.fds_end,
        )?;
    }
    for run in runs {
        let mut worst: Vec<&TimedGrant> = run.grants_timed.iter().collect();
        worst.sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
        for g in worst.iter().take(3) {
            writeln!(
                out,
                "{} run {} slowest: walk-up {} ({}) {:.0} ms = frames {:.0} + analysis {:.0} + commit {:.0}",
                run.name(),
                run.run,
                g.walkup,
                g.photo,
                g.latency_ms,
                g.frames_ms,
                g.analysis_ms,
                g.commit_ms
            )?;
        }
    }
    Ok(())
}

/// `VIDEO_DIR/NAME.avi`, made by scripts/make-videos.sh when it is missing or older than the
/// script (the soak is too big for `make setup` to make for everyone).
fn ensure_video(files: &RigFiles, name: &str, out: &mut impl Write) -> anyhow::Result<PathBuf> {
    let video = files.video.with_file_name(format!("{name}.avi"));
    let timeline = video.with_extension("timeline.json");
    let script = facegate_dev_assets::workspace_dir().join("scripts/make-videos.sh");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let script_time = modified(&script)
        .with_context(|| format!("{}: cannot read the video script", script.display()))?;
    if [&video, &timeline]
        .iter()
        .all(|p| modified(p).is_some_and(|t| t >= script_time))
    {
        return Ok(video);
    }
    let dir = video.parent().context("the video directory")?;
    writeln!(
        out,
        "== making {} (about a minute and 800 MB, once)",
        video.display()
    )?;
    out.flush()?;
    let status = Command::new("bash")
        .arg(&script)
        .arg(&files.photos)
        .arg(dir)
        .arg(name)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} could not make {name}.avi ({status})", script.display());
    }
    Ok(video)
}

/// One reading of facegated from /proc.
#[derive(Clone, Copy, Serialize)]
struct Sample {
    /// Seconds since facegated was started.
    t_s: f64,
    rss_kib: u64,
    hwm_kib: u64,
    /// User plus system CPU time so far, all threads.
    cpu_s: f64,
    threads: u64,
    fds: u64,
    /// Busy CPU time of the whole machine so far (all cores, since boot).
    machine_busy_s: f64,
}

/// Reads a process's memory and CPU every `every` on its own thread until stopped or the
/// process is gone.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut next = started;
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        // A process that has exited (a zombie has no VmRSS) ends the series.
                        let Some(sample) = read_process(pid, started.elapsed()) else {
                            break;
                        };
                        samples.push(sample);
                        next += every;
                    }
                    // Short sleeps: the last reading before exit matters (VmHWM, CPU time).
                    std::thread::sleep(every.min(Duration::from_millis(100)));
                }
                samples
            })
        };
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn read_process(pid: u32, elapsed: Duration) -> Option<Sample> {
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let status = process.status().ok()?;
    let stat = process.stat().ok()?;
    let ticks_per_s = procfs::ticks_per_second() as f64;
    Some(Sample {
        t_s: elapsed.as_secs_f64(),
        rss_kib: status.vmrss?,
        hwm_kib: status.vmhwm?,
        cpu_s: (stat.utime + stat.stime) as f64 / ticks_per_s,
        threads: status.threads,
        fds: process.fd_count().unwrap_or(0) as u64,
        machine_busy_s: machine_busy_s().unwrap_or(0.0),
    })
}

/// Busy time of all cores since boot (all but idle and iowait), from /proc/stat.
fn machine_busy_s() -> Option<f64> {
    use procfs::CurrentSI;
    let total = procfs::KernelStats::current().ok()?.total;
    let busy_ms = total.user_ms()
        + total.nice_ms()
        + total.system_ms()
        + total.irq_ms().unwrap_or(0)
        + total.softirq_ms().unwrap_or(0)
        + total.steal_ms().unwrap_or(0);
    Some(busy_ms as f64 / 1e3)
}

/// facegated's memory and CPU over a run.
#[derive(Serialize)]
struct ProcessReport {
    warm_up_s: f64,
    /// VmRSS at the first sample after the warm-up (none if the run was shorter).
    rss_start_kib: Option<u64>,
    rss_end_kib: u64,
    /// VmHWM at the last sample.
    rss_peak_kib: u64,
    /// Least-squares slope of VmRSS after the warm-up.
    rss_trend_kib_per_min: Option<f64>,
    cpu_s: f64,
    /// CPU time over wall time since start, in % of one core (200 % is both cores).
    cpu_percent: f64,
    /// The same after the warm-up (steady state).
    cpu_percent_after_warm_up: Option<f64>,
    /// Busy time of the whole machine over the run in % of one core: facegated plus everything
    /// else (this benchmark, the bus, other users of the machine).
    machine_busy_percent: f64,
    threads_start: u64,
    threads_end: u64,
    fds_start: u64,
    fds_end: u64,
    samples: Vec<Sample>,
}

impl ProcessReport {
    fn of(samples: Vec<Sample>, warm_up_s: f64) -> ProcessReport {
        let first = samples.first().copied();
        let last = samples.last().copied();
        let warm = samples.iter().position(|s| s.t_s >= warm_up_s);
        let steady = warm.map_or(&[][..], |i| &samples[i..]);
        let start = steady.first().copied();
        let per_core = |cpu: f64, wall: f64| if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };
        let (Some(first), Some(last)) = (first, last) else {
            return ProcessReport::empty(warm_up_s);
        };
        ProcessReport {
            warm_up_s,
            rss_start_kib: start.map(|s| s.rss_kib),
            rss_end_kib: last.rss_kib,
            rss_peak_kib: samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0),
            rss_trend_kib_per_min: slope(steady).map(|per_s| per_s * 60.0),
            cpu_s: last.cpu_s,
            cpu_percent: per_core(last.cpu_s, last.t_s),
            cpu_percent_after_warm_up: start
                .filter(|s| last.t_s > s.t_s)
                .map(|s| per_core(last.cpu_s - s.cpu_s, last.t_s - s.t_s)),
            machine_busy_percent: per_core(
                last.machine_busy_s - first.machine_busy_s,
                last.t_s - first.t_s,
            ),
            threads_start: start.unwrap_or(first).threads,
            threads_end: last.threads,
            fds_start: start.unwrap_or(first).fds,
            fds_end: last.fds,
            samples,
        }
    }

    fn empty(warm_up_s: f64) -> ProcessReport {
        ProcessReport {
            warm_up_s,
            rss_start_kib: None,
            rss_end_kib: 0,
            rss_peak_kib: 0,
            rss_trend_kib_per_min: None,
            cpu_s: 0.0,
            cpu_percent: 0.0,
            cpu_percent_after_warm_up: None,
            machine_busy_percent: 0.0,
            threads_start: 0,
            threads_end: 0,
            fds_start: 0,
            fds_end: 0,
            samples: Vec::new(),
        }
    }
}

/// KiB per second, by least squares over the samples (at least two).
fn slope(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.t_s).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for s in samples {
        cov += (s.t_s - mean_t) * (s.rss_kib as f64 - mean_r);
        var += (s.t_s - mean_t).powi(2);
    }
    (var > 0.0).then(|| cov / var)
}

fn load_average() -> String {
    use procfs::Current;
    procfs::LoadAverage::current()
        .map(|l| format!("{} {} {}", l.one, l.five, l.fifteen))
        .unwrap_or_default()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, rss_kib: u64) -> Sample {
        Sample {
            t_s,
            rss_kib,
            hwm_kib: rss_kib,
            cpu_s: t_s / 2.0,
            threads: 10,
            fds: 20,
            machine_busy_s: t_s,
        }
    }

    #[test]
    fn rss_trend_is_the_least_squares_slope() {
        let flat: Vec<Sample> = (0..10).map(|i| sample(i as f64, 1000)).collect();
        assert_eq!(slope(&flat), Some(0.0));
        let growing: Vec<Sample> = (0..10).map(|i| sample(i as f64, 1000 + 3 * i)).collect();
        assert!((slope(&growing).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&growing[..1]), None);
    }

    #[test]
    fn start_memory_is_read_after_the_warm_up() {
        let samples: Vec<Sample> = (0..60).map(|i| sample(i as f64, 1000 + i)).collect();
        let report = ProcessReport::of(samples, 30.0);
        assert_eq!(report.rss_start_kib, Some(1030));
        assert_eq!(report.rss_end_kib, 1059);
        assert_eq!(report.rss_peak_kib, 1059);
        assert!((report.cpu_percent - 50.0).abs() < 1e-9);
        assert!((report.machine_busy_percent - 100.0).abs() < 1e-9);
        let short = ProcessReport::of((0..20).map(|i| sample(i as f64, 1000)).collect(), 30.0);
        assert_eq!(short.rss_start_kib, None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read_process(std::process::id(), Duration::ZERO).expect("/proc/self");
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib && me.threads >= 1);
    }
}
