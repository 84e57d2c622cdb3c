// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate demo, and the rig the end-to-end tests share with it: a work directory with an
//! enrolled gallery, a private dbus-daemon, and facegated started on the shipped demo
//! configuration with `FACEGATE_…` overrides pointing it at them.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;

use facegate_dbus::{DenyReason, GateProxy};
use facegate_dev_assets::{AssetDir, DEMO_ENROLLED};
use facegatectl::enroll::{self, Request};
use facegatectl::pipeline::Models;
use facegated::gate::{self, Action, Inputs};
use facegated::journal::{Journal, JournalConfig, ModeChange, OutcomeRecord, Passage};

use crate::private_bus::PrivateBus;

/// Who the gate demo enrols, with their first photo: (id, label, photo). The other people in its
/// video are strangers.
pub fn enrolled() -> Vec<(&'static str, &'static str, &'static str)> {
    DEMO_ENROLLED
        .iter()
        .filter_map(|id| facegate_dev_assets::person(id))
        .map(|person| (person.id, person.label, person.photos[0]))
        .collect()
}

/// The enrolled passenger a walk-up photo shows, if it shows one.
fn enrolled_in(photo: &str) -> Option<&'static str> {
    facegate_dev_assets::person_in(photo)
        .map(|person| person.id)
        .filter(|id| DEMO_ENROLLED.contains(id))
}

/// Where the rig finds what it runs.
#[derive(Clone, Debug)]
pub struct RigFiles {
    /// The base configuration (config/demo.toml).
    pub config: PathBuf,
    pub pipeline: PathBuf,
    pub video: PathBuf,
    pub photos: PathBuf,
    pub models: PathBuf,
    pub ort_library: PathBuf,
    /// The embedders' calibrations (models/calibration).
    pub calibrations: PathBuf,
    pub facegated: PathBuf,
}

impl RigFiles {
    /// The repository's demo configuration and pipeline, the fetched assets, and facegated next
    /// to the running executable.
    pub fn repository_defaults() -> anyhow::Result<RigFiles> {
        let workspace = facegate_dev_assets::workspace_dir();
        let facegated = std::env::current_exe()?.with_file_name("facegated");
        Ok(RigFiles {
            config: workspace.join("config/demo.toml"),
            pipeline: workspace.join("pipelines/demo.pipeline"),
            video: AssetDir::Videos.path().join("demo_walkups.avi"),
            photos: AssetDir::Photos.path(),
            models: AssetDir::Models.path(),
            ort_library: facegate_dev_assets::onnx_runtime()?,
            calibrations: workspace.join("models/calibration"),
            facegated,
        })
    }

    /// The default detector and embedder in the rig's model directory, for facegatectl's
    /// commands (enrol, identify) as the gate runs them.
    pub fn models(&self) -> Models {
        let file = |name: &str| Some(self.models.join(name).to_string_lossy().into_owned());
        Models {
            detector: file(facegate_vision::runtime::DEFAULT_DETECTOR_FILE),
            embedder: file(facegate_vision::runtime::DEFAULT_EMBEDDER_FILE),
            ..Models::default()
        }
    }

    /// The repository defaults with the given facegated (a test's `CARGO_BIN_EXE_facegated`),
    /// refused with how to get them when the fetched assets are missing.
    pub fn for_facegated(facegated: &Path) -> anyhow::Result<RigFiles> {
        let files = RigFiles {
            facegated: facegated.to_path_buf(),
            ..RigFiles::repository_defaults()?
        };
        for path in [
            &files.video,
            &files.photos,
            &files.models,
            &files.ort_library,
        ] {
            anyhow::ensure!(
                path.exists(),
                "{} is missing: run `make setup`",
                path.display()
            );
        }
        Ok(files)
    }
}

pub struct GateRig {
    pub files: RigFiles,
    pub dir: PathBuf,
    pub gallery: PathBuf,
    pub journal: PathBuf,
    pub actions: PathBuf,
    /// The simulated gate's inputs file ([`GateRig::set_inputs`]).
    pub inputs: PathBuf,
    pub log: PathBuf,
    pub bus: PrivateBus,
    /// Overrides on top of the rig's own, for tests that change one thing.
    pub extra_env: Vec<(String, String)>,
}

impl GateRig {
    /// Enrols `people` into a fresh gallery under `dir` and starts a private bus.
    pub fn new(
        files: RigFiles,
        dir: &Path,
        people: &[(&str, &str, &str)],
    ) -> anyhow::Result<GateRig> {
        facegatectl::init().context("GStreamer failed to initialise")?;
        for (what, path) in [
            ("configuration", &files.config),
            ("pipeline", &files.pipeline),
            ("video", &files.video),
            ("facegated", &files.facegated),
        ] {
            if !path.exists() {
                bail!(
                    "{what} {} is missing (run `make setup` and `make build`)",
                    path.display()
                );
            }
        }
        let gallery = dir.join("gallery");
        let requests = people
            .iter()
            .map(|(id, label, photo)| {
                Request::one_photo(*id, Some((*label).into()), files.photos.join(photo))
            })
            .collect();
        let report = enroll::enroll_all(&gallery, requests, true, &files.models(), |_| {})?;
        if report.refused() > 0 {
            bail!(
                "enrolment refused {} photos: {:?}",
                report.refused(),
                report.outcomes
            );
        }
        Ok(GateRig {
            gallery,
            journal: dir.join("journal.sqlite"),
            actions: dir.join("gate-actions.jsonl"),
            inputs: dir.join("gate-inputs.json"),
            log: dir.join("facegated.log"),
            dir: dir.to_path_buf(),
            bus: PrivateBus::start()?,
            files,
            extra_env: Vec::new(),
        })
    }

    /// The `FACEGATE_SECTION__KEY` overrides that point facegated at the rig.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut env = vec![
            ("FACEGATE_PIPELINE__FILE".into(), path(&self.files.pipeline)),
            (
                "FACEGATE_PIPELINE__VARIABLES__VIDEO".into(),
                path(&self.files.video),
            ),
            ("FACEGATE_MODELS__DIR".into(), path(&self.files.models)),
            (
                "FACEGATE_MODELS__ORT_LIBRARY".into(),
                path(&self.files.ort_library),
            ),
            (
                "FACEGATE_MODELS__CALIBRATION_DIR".into(),
                path(&self.files.calibrations),
            ),
            ("FACEGATE_GALLERY__DIR".into(), path(&self.gallery)),
            ("FACEGATE_JOURNAL__PATH".into(), path(&self.journal)),
            ("FACEGATE_GATE__ACTIONS_LOG".into(), path(&self.actions)),
            ("FACEGATE_GATE__SIMULATED_INPUTS".into(), path(&self.inputs)),
            ("FACEGATE_DBUS__BUS".into(), self.bus.address().to_owned()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Points the rig at a copy of its pipeline (written to `DIR/NAME.pipeline`) in which
    /// fgmatch also gets `properties` (`"threshold=0.99"`); returns the copy's path.
    pub fn set_fgmatch_properties(
        &mut self,
        name: &str,
        properties: &str,
    ) -> anyhow::Result<PathBuf> {
        const FGMATCH: &str = "fgmatch name=match";
        let text = std::fs::read_to_string(&self.files.pipeline)
            .with_context(|| format!("reading {}", self.files.pipeline.display()))?;
        if !text.contains(FGMATCH) {
            bail!(
                "{}: no `{FGMATCH}` to set properties on",
                self.files.pipeline.display()
            );
        }
        let pipeline = self.dir.join(format!("{name}.pipeline"));
        std::fs::write(
            &pipeline,
            text.replacen(FGMATCH, &format!("{FGMATCH} {properties}"), 1),
        )?;
        self.extra_env.push((
            "FACEGATE_PIPELINE__FILE".into(),
            pipeline.to_string_lossy().into_owned(),
        ));
        Ok(pipeline)
    }

    /// Starts facegated; its log goes to `self.log` (appended, so restarts keep the history).
    pub fn spawn(&self) -> anyhow::Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        Command::new(&self.files.facegated)
            .arg("--config")
            .arg(&self.files.config)
            .envs(self.env())
            .env("FACEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map(Service)
            .with_context(|| format!("starting {}", self.files.facegated.display()))
    }

    /// What facegated has logged so far (empty before it first ran).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for `service` to end (the demo configuration stops at the video's
    /// end); an exit that is not a success, or none in time, is an error carrying the log.
    pub fn wait_for_exit(&self, service: &mut Service, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = service.try_wait()? {
                if !status.success() {
                    bail!("facegated exited with {status}; log:\n{}", self.log_text());
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "facegated did not finish its video within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `facegated safe-state` (what the unit's `ExecStopPost=` runs) on the rig's gate.
    pub fn safe_state(&self) -> anyhow::Result<()> {
        let output = Command::new(&self.files.facegated)
            .arg("--config")
            .arg(&self.files.config)
            .arg("safe-state")
            .envs(self.env())
            .output()
            .with_context(|| format!("starting {}", self.files.facegated.display()))?;
        if !output.status.success() {
            bail!(
                "facegated safe-state failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A connection to the rig's bus and a proxy of the gate, once facegated owns its name.
    pub async fn gate(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(zbus::Connection, GateProxy<'static>)> {
        let connection = facegate_dbus::connect(&self.bus.bus_address()).await?;
        let proxy = GateProxy::builder(&connection)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let deadline = Instant::now() + timeout;
        while proxy.state().await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "facegated did not appear on the bus within {timeout:?} (log: {})",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((connection, proxy))
    }

    /// [`GateRig::gate`] for a `service` just spawned: fails as soon as it exits instead of
    /// waiting out `timeout` (a configuration it refuses ends it at once), with its last words.
    pub async fn gate_of(
        &self,
        service: &mut Service,
        timeout: Duration,
    ) -> anyhow::Result<(zbus::Connection, GateProxy<'static>)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = service.try_wait()? {
                let log = self.log_text();
                bail!(
                    "facegated exited ({status}) before it appeared on the bus: {}",
                    log.lines().last().unwrap_or("(it logged nothing)")
                );
            }
            let attempt =
                Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now()));
            match self.gate(attempt).await {
                Ok(gate) => return Ok(gate),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {}
            }
        }
    }

    pub fn passages(&self) -> anyhow::Result<Vec<Passage>> {
        Ok(self.journal()?.passages()?)
    }

    pub fn actions(&self) -> anyhow::Result<Vec<Action>> {
        Ok(gate::read_actions(&self.actions)?)
    }

    /// Sets the simulated gate's inputs (replacing the file at once, as the gate expects).
    pub fn set_inputs(&self, inputs: Inputs) -> anyhow::Result<()> {
        let partial = self.inputs.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(&inputs)?)?;
        std::fs::rename(&partial, &self.inputs)?;
        Ok(())
    }

    fn journal(&self) -> anyhow::Result<Journal> {
        Ok(Journal::open(&JournalConfig {
            path: self.journal.clone(),
            ..JournalConfig::default()
        })?)
    }

    pub fn outcomes(&self) -> anyhow::Result<Vec<OutcomeRecord>> {
        Ok(self.journal()?.outcomes()?)
    }

    pub fn mode_changes(&self) -> anyhow::Result<Vec<ModeChange>> {
        Ok(self.journal()?.mode_changes()?)
    }
}

/// A decision as facegated announced it on the bus.
#[derive(Clone, Debug, PartialEq)]
pub enum Announced {
    Granted {
        passage_id: String,
        id: String,
        similarity: f64,
    },
    Denied {
        reason: DenyReason,
    },
}

/// How a followed run ended.
pub struct Followed {
    pub status: ExitStatus,
    /// The stream's start on the wall clock, as `Stats()` gave it (0 if never seen).
    pub stream_start_unix_ns: u64,
}

/// Follows facegated's decisions as they are announced on the bus, until it exits or
/// `on_decision` answers `Break` (then it is killed).
pub async fn follow(
    rig: &GateRig,
    service: &mut Service,
    mut on_decision: impl FnMut(Announced) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<Followed> {
    let (_connection, gate) = rig.gate_of(service, Duration::from_secs(60)).await?;
    let mut granted = gate.receive_passage_granted().await?;
    let mut denied = gate.receive_passage_denied().await?;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut stream_start_unix_ns = 0;
    loop {
        let decision = tokio::select! {
            Some(signal) = granted.next() => {
                let args = signal.args()?;
                Announced::Granted {
                    passage_id: args.passage_id().to_string(),
                    id: args.id().to_string(),
                    similarity: *args.similarity(),
                }
            }
            Some(signal) = denied.next() => Announced::Denied { reason: *signal.args()?.reason() },
            _ = poll.tick() => {
                if stream_start_unix_ns == 0
                    && let Ok(stats) = gate.stats().await
                {
                    stream_start_unix_ns = stats.stream_start_unix_ns;
                }
                if let Some(status) = service.try_wait()? {
                    return Ok(Followed { status, stream_start_unix_ns });
                }
                continue;
            }
        };
        if on_decision(decision)?.is_break() {
            service.kill()?;
            let status = service.wait()?;
            return Ok(Followed {
                status,
                stream_start_unix_ns,
            });
        }
    }
}

/// A facegated process that is killed if it is still running when dropped, so a failed demo or
/// test never leaves a gate service behind.
pub struct Service(Child);

impl std::ops::Deref for Service {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Service {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `facegatectl demo`: the gate on the demo video, every decision printed as it happens.
pub fn run(out: &mut impl Write) -> anyhow::Result<()> {
    let files = RigFiles::repository_defaults()?;
    let scratch = tempfile::Builder::new().prefix("facegate-demo").tempdir()?;
    writeln!(
        out,
        "== enrolling {} people; strangers walk up too",
        enrolled().len()
    )?;
    let rig = GateRig::new(files, scratch.path(), &enrolled())?;
    for (id, label, photo) in enrolled() {
        writeln!(out, "   {id:<9} {label:<14} from {photo}")?;
    }
    writeln!(out, "== private D-Bus at {}", rig.bus.address())?;
    writeln!(
        out,
        "   try: busctl --address={} introspect org.facegate.Gate /org/facegate/Gate",
        rig.bus.address()
    )?;
    let mut child = rig.spawn()?;
    let started = Instant::now();
    writeln!(
        out,
        "== facegated starting; the video plays in real time ({})",
        rig.files.video.display()
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let followed = runtime.block_on(follow(&rig, &mut child, |decision| {
        print_decision(out, started, decision)?;
        Ok(ControlFlow::Continue(()))
    }))?;
    if !followed.status.success() {
        bail!(
            "facegated failed ({}); its log: {}",
            followed.status,
            std::fs::read_to_string(&rig.log).unwrap_or_default()
        );
    }
    let stream_start = followed.stream_start_unix_ns;
    summarise(&rig, out)?;
    let latencies = decision_latencies(&rig, stream_start)?;
    if let (Some(median), Some(worst)) = (
        crate::bench::percentile(&latencies, 0.5),
        latencies.iter().max(),
    ) {
        writeln!(
            out,
            "== decision latency, face fully visible to unlock: median {median} ms, worst {worst} ms over {} grants ({})",
            latencies.len(),
            latencies
                .iter()
                .map(|ms| format!("{ms} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}

/// One line per decision as the demos print them, `started` being when facegated was.
pub fn print_decision(
    out: &mut impl Write,
    started: Instant,
    decision: Announced,
) -> std::io::Result<()> {
    let at = started.elapsed().as_secs_f64();
    match decision {
        Announced::Granted {
            passage_id,
            id,
            similarity,
        } => writeln!(
            out,
            "   {at:6.2} s  GRANTED  {id:<10} similarity {similarity:.2}  passage {passage_id}"
        ),
        Announced::Denied { reason } => writeln!(out, "   {at:6.2} s  DENIED   {reason}"),
    }
}

fn summarise(rig: &GateRig, out: &mut impl Write) -> anyhow::Result<()> {
    let passages = rig.passages()?;
    let unlocks = rig.actions()?.into_iter().filter(is_unlock).count();
    let granted = passages.iter().filter(|p| p.granted).count();
    writeln!(
        out,
        "== journal ({}): {} decisions",
        rig.journal.display(),
        passages.len()
    )?;
    for passage in &passages {
        let who = passage
            .label
            .as_deref()
            .or(passage.identity.as_deref())
            .unwrap_or("-");
        let what = if passage.granted {
            "granted".to_owned()
        } else {
            format!("denied: {}", passage.reason.as_deref().unwrap_or("?"))
        };
        let video = passage.video_time_ns.map_or(String::new(), |ns| {
            format!("video {:5.2} s", ns as f64 / 1e9)
        });
        writeln!(
            out,
            "   {}  {video}  {what:<22} {who}",
            passage.time.format("%H:%M:%S%.3f")
        )?;
    }
    writeln!(
        out,
        "== the simulated gate unlocked {unlocks} times for {granted} grants ({})",
        rig.actions.display()
    )?;
    if unlocks != granted {
        bail!("the gate unlocked {unlocks} times but {granted} passages were granted");
    }
    Ok(())
}

/// A relay switching on for a passage.
pub fn is_unlock(action: &Action) -> bool {
    action.output == gate::Output::Relay
        && action.level == gate::Level::On
        && action.cause == gate::Cause::Grant
}

/// When a face is on screen in a generated video (scripts/make-videos.sh and
/// [`crate::walkup_video`] write the timeline).
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Walkup {
    pub photo: String,
    pub first_frame: u64,
    pub last_frame: u64,
}

#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Timeline {
    pub fps: u64,
    #[serde(default)]
    pub frames: u64,
    pub walkups: Vec<Walkup>,
}

impl Timeline {
    /// The timeline beside a generated video (`NAME.timeline.json` for `NAME.avi`).
    pub fn for_video(video: &Path) -> anyhow::Result<Timeline> {
        let file = video.with_extension("timeline.json");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{}: cannot read the video's timeline", file.display()))?;
        let timeline: Timeline =
            serde_json::from_str(&text).with_context(|| format!("{}", file.display()))?;
        if timeline.fps == 0 {
            bail!("{}: fps is 0", file.display());
        }
        Ok(timeline)
    }

    /// The start of `frame` in video time.
    pub fn frame_ns(&self, frame: u64) -> u64 {
        frame * 1_000_000_000 / self.fps
    }

    /// The walk-up (index and entry) whose face is on screen at video time `ns`.
    pub fn walkup_at(&self, ns: u64) -> Option<(usize, &Walkup)> {
        self.walkups.iter().enumerate().find(|(_, w)| {
            (self.frame_ns(w.first_frame)..self.frame_ns(w.last_frame + 1)).contains(&ns)
        })
    }

    /// The walk-ups the gate should grant, with whom: every enrolled passenger's, except a return
    /// within `passback_window` of their last grant. The video plays in real time, so its clock
    /// stands in for the gate's wall clock.
    pub fn expected_grants(&self, passback_window: Duration) -> Vec<(usize, &'static str)> {
        let window_ns = passback_window.as_nanos() as u64;
        let mut last_grant: Vec<(&str, u64)> = Vec::new();
        let mut expected = Vec::new();
        for (index, walkup) in self.walkups.iter().enumerate() {
            let Some(id) = enrolled_in(&walkup.photo) else {
                continue;
            };
            let at = self.frame_ns(walkup.first_frame);
            match last_grant.iter_mut().find(|(who, _)| *who == id) {
                Some((_, last)) if at - *last < window_ns => continue,
                Some((_, last)) => *last = at,
                None => last_grant.push((id, at)),
            }
            expected.push((index, id));
        }
        expected
    }
}

/// One grant on one clock, split where the time goes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TimedGrant {
    /// Index of the walk-up in the video's timeline.
    pub walkup: usize,
    pub photo: String,
    pub identity: String,
    /// The decision latency: first frame with the face fully visible to the relay switching on.
    pub latency_ms: f64,
    /// Video time from that first frame to the frame the decision was taken on: `agree_frames`
    /// frames at best (67 ms at 30 fps for 3), more when early frames do not match.
    pub frames_ms: f64,
    /// From that frame's due time (it is released at its running time) to the journal's
    /// timestamp: detection, tracking, embedding, matching, the bus and the policy.
    pub analysis_ms: f64,
    /// From the journal's timestamp to the relay: the fsync'd journal commit and the gate command.
    pub commit_ms: f64,
}

/// Every grant of a run that falls in a walk-up of the video, with its timings: the video's
/// timeline put on the wall clock through the stream's start, the journal and the gate's log.
pub fn timed_grants(rig: &GateRig, stream_start_unix_ns: u64) -> anyhow::Result<Vec<TimedGrant>> {
    let timeline = Timeline::for_video(&rig.files.video)?;
    if stream_start_unix_ns == 0 {
        bail!("the stream's start time is unknown: no latency to report");
    }
    let unlocks: Vec<u64> = rig
        .actions()?
        .iter()
        .filter(|a| is_unlock(a))
        .map(|a| a.unix_ns)
        .collect();
    let ms = |ns: i128| ns as f64 / 1e6;
    let mut grants = Vec::new();
    for passage in rig.passages()?.iter().filter(|p| p.granted) {
        let (Some(decided_at), Some(journalled)) =
            (passage.video_time_ns, passage.time.timestamp_nanos_opt())
        else {
            continue;
        };
        let Some((walkup, entry)) = timeline.walkup_at(decided_at) else {
            continue;
        };
        let Some(&unlock) = unlocks.iter().find(|&&u| u >= journalled as u64) else {
            continue;
        };
        let visible = (stream_start_unix_ns + timeline.frame_ns(entry.first_frame)) as i128;
        let decided = (stream_start_unix_ns + decided_at) as i128;
        let (journalled, unlock) = (journalled as i128, unlock as i128);
        grants.push(TimedGrant {
            walkup,
            photo: entry.photo.clone(),
            identity: passage.identity.clone().unwrap_or_default(),
            latency_ms: ms(unlock - visible),
            frames_ms: ms(decided - visible),
            analysis_ms: ms(journalled - decided),
            commit_ms: ms(unlock - journalled),
        });
    }
    Ok(grants)
}

/// Milliseconds from the first frame on which each granted face was fully visible to the relay
/// switching on for it, sorted.
pub fn decision_latencies(rig: &GateRig, stream_start_unix_ns: u64) -> anyhow::Result<Vec<u64>> {
    let mut latencies: Vec<u64> = timed_grants(rig, stream_start_unix_ns)?
        .iter()
        .map(|g| g.latency_ms.max(0.0) as u64)
        .collect();
    latencies.sort_unstable();
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(photos: &[&str]) -> Timeline {
        // Walk-ups 102 frames apart at 30 fps, as scripts/make-videos.sh makes them: 3.4 s.
        let walkups = photos
            .iter()
            .enumerate()
            .map(|(i, photo)| Walkup {
                photo: (*photo).into(),
                first_frame: 15 + 102 * i as u64,
                last_frame: 101 + 102 * i as u64,
            })
            .collect();
        Timeline {
            fps: 30,
            frames: 15 + 102 * photos.len() as u64,
            walkups,
        }
    }

    #[test]
    fn the_demo_expects_three_grants_with_its_passback_window() {
        let demo = timeline(&[
            "person_a_2.jpg",
            "impostor_2.jpg",
            "person_b_2.jpg",
            "biden.jpg",
            "obama2.jpg",
            "person_a_2.jpg",
            "obama2.jpg",
        ]);
        assert_eq!(
            demo.expected_grants(Duration::from_secs(120)),
            [(0, "person-a"), (2, "person-b"), (4, "obama")]
        );
        // Obama returns after 6.8 s, person A after 17 s.
        assert_eq!(demo.expected_grants(Duration::from_secs(10)).len(), 4);
        assert_eq!(demo.expected_grants(Duration::from_secs(5)).len(), 5);
    }

    #[test]
    fn a_denied_return_does_not_restart_the_window() {
        let t = timeline(&["obama2.jpg", "obama2.jpg", "obama2.jpg"]);
        // Returns after 3.4 s (passback) and 6.8 s after the grant (granted again).
        assert_eq!(
            t.expected_grants(Duration::from_secs(5)),
            [(0, "obama"), (2, "obama")]
        );
    }

    #[test]
    fn a_decision_time_falls_in_the_walkup_on_screen() {
        let t = timeline(&["obama2.jpg", "biden.jpg"]);
        assert_eq!(t.frame_ns(30), 1_000_000_000);
        assert_eq!(t.walkup_at(t.frame_ns(15)).map(|(i, _)| i), Some(0));
        assert_eq!(t.walkup_at(t.frame_ns(101) + 1).map(|(i, _)| i), Some(0));
        assert_eq!(t.walkup_at(t.frame_ns(110)).map(|(i, _)| i), None);
        assert_eq!(t.walkup_at(t.frame_ns(117)).map(|(i, _)| i), Some(1));
    }
}
