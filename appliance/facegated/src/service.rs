// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's moving parts and how they meet (docs/GATE-SERVICE.md):
//!
//! - the **supervisor** thread runs the pipeline, restarts it with back-off when the source fails
//!   (the gate stays in its safe state meanwhile) and turns `facegate-frame` messages into
//!   observations;
//! - the **decider** thread owns the policy, the journal and the gate: every decision is committed
//!   to the journal before the gate moves;
//! - the async side serves D-Bus and relays decisions and status to it.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use gst::prelude::*;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use facegate_dbus::{
    ControlError, GateBus, GateControl, LastDecision, Mode, State, Stats, Verdict,
};

use crate::bus::{self, BusConfig};
use crate::config::ServiceConfig;
use crate::gallery::FollowedGallery;
use crate::gate::{self, Gate};
use crate::journal::{Journal, NewPassage, Passage};
use crate::policy::{Decision, FrameObservation, Policy};
use crate::{description, observation};

/// The gate, shared with the panic hook so a crash still leaves the outputs safe.
pub type SharedGate = Arc<Mutex<Box<dyn Gate>>>;

/// What the decider is told.
enum Input {
    /// A frame, and the gallery generation it was matched against.
    Frame(FrameObservation, u64),
    Open {
        reason: String,
        reply: Sender<Result<String, ControlError>>,
    },
    SetMode {
        mode: Mode,
        reply: Sender<Result<(), ControlError>>,
    },
    /// The pipeline started delivering frames (true) or failed (false): the gate leaves or
    /// returns to its safe state.
    Pipeline(bool),
    /// Ends the decider even while D-Bus still holds a sender.
    Stop,
}

/// What the async side is told.
#[derive(Debug)]
pub enum Event {
    Decided(Box<(Passage, Decision)>),
    /// The stream ended and the configuration says to stop there (the demo's file source).
    StreamEnded,
    /// The pipeline can never run (it does not parse): stop with this message.
    Fatal(String),
}

/// Everything checked before the service reports ready: a bad configuration, pipeline, gallery,
/// model or gate fails here, with one line, before anything moves.
pub struct Prepared {
    pub config: ServiceConfig,
    pub journal: Journal,
    pub gate: SharedGate,
    pub gallery: Arc<FollowedGallery>,
    pub gallery_generation: u64,
    pub gallery_size: u64,
}

pub fn prepare(config: ServiceConfig) -> anyhow::Result<Prepared> {
    // The configuration names the ONNX Runtime library; the elements find it through this variable.
    // SAFETY: called from main before any other thread exists.
    unsafe {
        std::env::set_var(
            facegate_vision::runtime::ORT_LIBRARY_ENV,
            &config.models.ort_library,
        )
    };
    let pipeline_file = &config.pipeline.file;
    let text = description::load(pipeline_file, &config.pipeline_variables())?;
    let pipeline = description::parse(pipeline_file, &text)?;
    // Before the pipeline starts: fgmatch would take any gallery, and then fail on every face
    // embedded by another model than the gallery's.
    let (followed, gallery) =
        FollowedGallery::open(&config.gallery.dir, &pipeline).context("gallery")?;
    // Models are loaded when the pipeline starts: try it once so a missing model is reported now.
    check_pipeline_starts(&pipeline, pipeline_file)?;
    let journal = Journal::open(&config.journal)?;
    let gate = gate::open(&config.gate)?;
    Ok(Prepared {
        gallery_generation: gallery.generation(),
        gallery_size: gallery.len() as u64,
        config,
        journal,
        gate: Arc::new(Mutex::new(gate)),
        gallery: Arc::new(followed),
    })
}

/// Starts the pipeline once (to PAUSED: our elements load their models and gallery there) and
/// stops it again. A failure of one of our elements is a configuration error and stops the start;
/// a source that cannot open yet (a camera still booting) is left to the supervisor's retries.
fn check_pipeline_starts(pipeline: &gst::Pipeline, file: &std::path::Path) -> anyhow::Result<()> {
    let _ = pipeline.set_state(gst::State::Paused);
    // Waits for preroll or failure; a live source answers NO_PREROLL at once.
    let _ = pipeline.state(gst::ClockTime::from_seconds(30));
    let ours = pipeline.bus().and_then(|bus| {
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error])).find_map(|message| {
            match message.view() {
                gst::MessageView::Error(e) if is_ours(e.src()) => Some(e.error().to_string()),
                _ => None,
            }
        })
    });
    let _ = pipeline.set_state(gst::State::Null);
    match ours {
        Some(message) => anyhow::bail!("{}: {message}", file.display()),
        None => Ok(()),
    }
}

/// Whether a message comes from one of the facegate elements (fgdetect, fgembed, fgmatch…).
fn is_ours(source: Option<&gst::Object>) -> bool {
    source
        .and_then(|s| s.downcast_ref::<gst::Element>())
        .and_then(|e| e.factory())
        .is_some_and(|factory| factory.name().starts_with("fg"))
}

/// Shared, cheaply cloned status that both threads update and the async side publishes.
#[derive(Clone)]
pub struct StatusCell(Arc<Mutex<Stats>>);

impl StatusCell {
    pub fn new(status: Stats) -> Self {
        StatusCell(Arc::new(Mutex::new(status)))
    }

    pub fn update(&self, change: impl FnOnce(&mut Stats)) {
        if let Ok(mut status) = self.0.lock() {
            change(&mut status);
        }
    }

    pub fn snapshot(&self) -> Stats {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The running service's threads.
pub struct Running {
    stop: Arc<std::sync::atomic::AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
    decider: Option<JoinHandle<()>>,
    inputs: Sender<Input>,
    gallery: Arc<FollowedGallery>,
    pub heartbeat: Arc<Mutex<Instant>>,
}

impl Running {
    /// Stops the pipeline and the decider; the gate goes to its safe state.
    pub fn shutdown(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.supervisor.take() {
            let _ = thread.join();
        }
        let _ = self.inputs.send(Input::Stop);
        if let Some(thread) = self.decider.take() {
            let _ = thread.join();
        }
    }

    /// The D-Bus side's handle on the gate; members of `privileged_group` (and root) may act.
    pub fn control(&self, privileged_group: &str) -> Arc<dyn GateControl> {
        Arc::new(Control {
            inputs: Mutex::new(self.inputs.clone()),
            gallery: Arc::clone(&self.gallery),
            privileged_group: privileged_group.to_string(),
        })
    }
}

pub fn start(
    prepared: Prepared,
    status: StatusCell,
    events: UnboundedSender<Event>,
) -> anyhow::Result<Running> {
    let Prepared {
        config,
        journal,
        gate,
        gallery,
        gallery_generation,
        gallery_size,
    } = prepared;
    status.update(|s| {
        s.state = State::Starting;
        s.mode = Mode::Normal;
        s.gallery_generation = gallery_generation;
        s.gallery_size = gallery_size;
    });
    let (inputs, received) = mpsc::channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heartbeat = Arc::new(Mutex::new(Instant::now()));

    let decider = {
        let (status, events, gate) = (status.clone(), events.clone(), Arc::clone(&gate));
        let mut policy = Policy::new(config.policy.clone());
        let window = Duration::from_secs(config.policy.passback_window_s);
        for (id, at) in journal.recent_grants(window)? {
            policy.remember_grant(&id, at);
        }
        let generation = gallery_generation;
        std::thread::Builder::new()
            .name("fg-decider".into())
            .spawn(move || decide(received, policy, journal, gate, generation, status, events))?
    };
    let supervisor = {
        let (config, status, stop, heartbeat) = (
            config.clone(),
            status.clone(),
            Arc::clone(&stop),
            Arc::clone(&heartbeat),
        );
        let (inputs, gallery) = (inputs.clone(), Arc::clone(&gallery));
        std::thread::Builder::new()
            .name("fg-supervisor".into())
            .spawn(move || {
                supervise(
                    &config, &gallery, &status, &stop, &heartbeat, &inputs, &events,
                )
            })?
    };
    Ok(Running {
        stop,
        supervisor: Some(supervisor),
        decider: Some(decider),
        inputs,
        gallery,
        heartbeat,
    })
}

fn decide(
    inputs: Receiver<Input>,
    mut policy: Policy,
    mut journal: Journal,
    gate: SharedGate,
    mut generation: u64,
    status: StatusCell,
    events: UnboundedSender<Event>,
) {
    let refresh_counts = |journal: &Journal| {
        if let Ok((granted, denied)) = journal.counts_today() {
            status.update(|s| {
                s.passages_today = granted;
                s.denied_today = denied;
            });
        }
    };
    refresh_counts(&journal);
    let mut last_prune = Instant::now();
    for input in inputs {
        match input {
            Input::Frame(frame, frame_generation) => {
                generation = frame_generation;
                for decision in policy.observe(&frame, SystemTime::now()) {
                    let passage = passage_for(&decision, generation);
                    // The journal first: a gate that opened must have its passage on disk.
                    let recorded = match journal.record(&passage) {
                        Ok(recorded) => recorded,
                        Err(e) => {
                            error!("journal write failed, the gate stays shut: {e}");
                            continue;
                        }
                    };
                    let moved = match &decision {
                        Decision::Grant { .. } => gate.lock().map(|mut g| g.grant()),
                        Decision::Deny { .. } => gate.lock().map(|mut g| g.deny()),
                    };
                    if let Ok(Err(e)) = moved {
                        error!("gate did not move for passage {}: {e}", recorded.id);
                    }
                    log_decision(&decision, &recorded);
                    status.update(|s| s.last_decision = last_decision(&decision, &recorded));
                    refresh_counts(&journal);
                    let _ = events.send(Event::Decided(Box::new((recorded, decision))));
                }
            }
            Input::Open { reason, reply } => {
                let passage = NewPassage {
                    track: None,
                    identity: None,
                    label: None,
                    similarity: None,
                    granted: true,
                    reason: Some(format!("staff: {reason}")),
                    generation,
                    video_time_ns: None,
                };
                let result = journal
                    .record(&passage)
                    .map_err(|e| ControlError::Failed(e.to_string()))
                    .and_then(|recorded| {
                        gate.lock()
                            .map_err(|_| ControlError::Failed("gate unavailable".into()))?
                            .grant()
                            .map_err(|e| ControlError::Failed(e.to_string()))?;
                        info!(passage = %recorded.id, "staff opening: {reason}");
                        Ok(recorded.id)
                    });
                refresh_counts(&journal);
                let _ = reply.send(result);
            }
            Input::Stop => break,
            Input::Pipeline(running) => {
                // A new pipeline numbers its tracks from 1 again: earlier decisions belong to
                // other people. Anti-passback history is kept.
                if running {
                    policy.forget_tracks();
                }
                let moved = gate.lock().map(|mut g| {
                    if running {
                        g.hold_open(policy.mode() == Mode::Free)
                    } else {
                        g.safe_state()
                    }
                });
                if let Ok(Err(e)) = moved {
                    error!("gate did not follow the pipeline state: {e}");
                }
            }
            Input::SetMode { mode, reply } => {
                policy.set_mode(mode);
                let result = gate
                    .lock()
                    .map_err(|_| ControlError::Failed("gate unavailable".into()))
                    .and_then(|mut g| {
                        g.hold_open(mode == Mode::Free)
                            .map_err(|e| ControlError::Failed(e.to_string()))
                    });
                status.update(|s| s.mode = mode);
                info!("mode set to {mode}");
                let _ = reply.send(result);
            }
        }
        if last_prune.elapsed() > Duration::from_secs(24 * 3600) {
            last_prune = Instant::now();
            if let Err(e) = journal.prune() {
                warn!("journal pruning failed: {e}");
            }
        }
    }
}

fn passage_for(decision: &Decision, generation: u64) -> NewPassage {
    match decision {
        Decision::Grant {
            track,
            id,
            label,
            similarity,
            running_time,
        } => NewPassage {
            track: Some(*track),
            identity: Some(id.clone()),
            label: Some(label.clone()),
            similarity: Some(*similarity),
            granted: true,
            reason: None,
            generation,
            video_time_ns: Some(running_time.as_nanos() as u64),
        },
        Decision::Deny {
            track,
            reason,
            id,
            similarity,
            running_time,
        } => NewPassage {
            track: *track,
            identity: id.clone(),
            label: None,
            similarity: *similarity,
            granted: false,
            reason: Some(reason.to_string()),
            generation,
            video_time_ns: Some(running_time.as_nanos() as u64),
        },
    }
}

fn log_decision(decision: &Decision, passage: &Passage) {
    match decision {
        Decision::Grant {
            id,
            label,
            similarity,
            track,
            ..
        } => {
            info!(passage = %passage.id, track, "granted {label} ({id}), similarity {similarity:.2}")
        }
        Decision::Deny { reason, track, .. } => {
            info!(passage = %passage.id, track, "denied: {reason}")
        }
    }
}

fn last_decision(decision: &Decision, passage: &Passage) -> LastDecision {
    let recorded = LastDecision {
        passage_id: Some(passage.id.clone()),
        time: Some(passage.time.to_rfc3339()),
        ..LastDecision::default()
    };
    match decision {
        Decision::Grant {
            id,
            label,
            similarity,
            ..
        } => LastDecision {
            verdict: Some(Verdict::Granted),
            id: Some(id.clone()),
            label: Some(label.clone()),
            similarity: Some(*similarity),
            ..recorded
        },
        Decision::Deny {
            reason,
            id,
            similarity,
            ..
        } => LastDecision {
            verdict: Some(Verdict::Denied),
            reason: Some(*reason),
            id: id.clone(),
            similarity: *similarity,
            ..recorded
        },
    }
}

/// Runs the pipeline until `stop`, restarting it with doubling back-off after failures.
fn supervise(
    config: &ServiceConfig,
    gallery: &FollowedGallery,
    status: &StatusCell,
    stop: &std::sync::atomic::AtomicBool,
    heartbeat: &Mutex<Instant>,
    inputs: &Sender<Input>,
    events: &UnboundedSender<Event>,
) {
    let min_backoff = Duration::from_millis(config.pipeline.restart_min_ms);
    let max_backoff = Duration::from_millis(config.pipeline.restart_max_ms);
    let mut backoff = min_backoff;
    let mut first = true;
    let stopping = || stop.load(std::sync::atomic::Ordering::SeqCst);
    while !stopping() {
        if !first {
            status.update(|s| s.restarts += 1);
        }
        first = false;
        let started = Instant::now();
        let outcome = run_pipeline_once(config, gallery, status, stop, heartbeat, inputs);
        match outcome {
            Outcome::Stopped => break,
            Outcome::Ended if config.pipeline.exit_on_eos => {
                status.update(|s| s.state = State::Stopped);
                let _ = events.send(Event::StreamEnded);
                break;
            }
            Outcome::Unparsable(message) => {
                error!("{message}");
                status.update(|s| s.state = State::Degraded);
                let _ = events.send(Event::Fatal(message));
                break;
            }
            Outcome::Ended | Outcome::Failed(_) => {
                if let Outcome::Failed(message) = &outcome {
                    warn!(
                        "pipeline failed: {message}; restarting in {} ms",
                        backoff.as_millis()
                    );
                } else {
                    warn!("stream ended; restarting in {} ms", backoff.as_millis());
                }
                status.update(|s| {
                    s.state = State::Degraded;
                    s.fps = 0.0;
                });
                let _ = inputs.send(Input::Pipeline(false));
                // A pipeline that ran a while before failing earns a fresh, short back-off.
                if started.elapsed() > max_backoff {
                    backoff = min_backoff;
                }
                let deadline = Instant::now() + backoff;
                while Instant::now() < deadline && !stopping() {
                    *heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

enum Outcome {
    Stopped,
    Ended,
    Failed(String),
    Unparsable(String),
}

fn run_pipeline_once(
    config: &ServiceConfig,
    gallery: &FollowedGallery,
    status: &StatusCell,
    stop: &std::sync::atomic::AtomicBool,
    heartbeat: &Mutex<Instant>,
    inputs: &Sender<Input>,
) -> Outcome {
    let file: &PathBuf = &config.pipeline.file;
    // Re-read each time: an operator's fix to the description is picked up on the next restart.
    let pipeline = match description::load(file, &config.pipeline_variables())
        .and_then(|text| description::parse(file, &text))
    {
        Ok(pipeline) => pipeline,
        Err(e) => return Outcome::Unparsable(e.to_string()),
    };
    let Some(bus) = pipeline.bus() else {
        return Outcome::Failed("pipeline has no bus".into());
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        let message = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "the pipeline did not start".into());
        let _ = pipeline.set_state(gst::State::Null);
        return Outcome::Failed(message);
    }
    let mut frames_in_second = 0u32;
    let mut second = Instant::now();
    let mut last_generation_check = Instant::now();
    let outcome = loop {
        *heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break Outcome::Stopped;
        }
        if second.elapsed() >= Duration::from_secs(1) {
            let fps = frames_in_second as f64 / second.elapsed().as_secs_f64();
            status.update(|s| s.fps = (fps * 10.0).round() / 10.0);
            frames_in_second = 0;
            second = Instant::now();
        }
        if last_generation_check.elapsed() >= Duration::from_secs(1) {
            last_generation_check = Instant::now();
            gallery.refresh(status);
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Element(element) => {
                let Some(structure) = element.structure() else {
                    continue;
                };
                let (frame, generation) = match observation::from_message(structure) {
                    Ok(Some(observed)) => observed,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!("frame message refused, frame skipped: {e}");
                        continue;
                    }
                };
                if frames_in_second == 0 && status.snapshot().state != State::Running {
                    let stream_start = stream_start_unix_ns(&pipeline);
                    status.update(|s| {
                        s.state = State::Running;
                        s.stream_start_unix_ns = stream_start;
                    });
                    let _ = inputs.send(Input::Pipeline(true));
                    info!("pipeline running");
                }
                frames_in_second += 1;
                if inputs.send(Input::Frame(frame, generation)).is_err() {
                    break Outcome::Stopped;
                }
            }
            gst::MessageView::Eos(_) => break Outcome::Ended,
            gst::MessageView::Error(err) => {
                let source = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                break Outcome::Failed(format!("{source}: {}", err.error()));
            }
            _ => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

/// The wall-clock time at which the pipeline's running time was zero.
fn stream_start_unix_ns(pipeline: &gst::Pipeline) -> u64 {
    let (Some(clock), Some(base)) = (pipeline.clock(), pipeline.base_time()) else {
        return 0;
    };
    let running = clock.time().saturating_sub(base);
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(Duration::from_nanos(running.nseconds()))
        .as_nanos() as u64
}

/// D-Bus methods that act, forwarded to the decider, which owns the gate and the journal.
struct Control {
    inputs: Mutex<Sender<Input>>,
    gallery: Arc<FollowedGallery>,
    privileged_group: String,
}

impl Control {
    fn ask<T>(
        &self,
        make: impl FnOnce(Sender<Result<T, ControlError>>) -> Input,
    ) -> Result<T, ControlError> {
        let (reply, answer) = mpsc::channel();
        self.inputs
            .lock()
            .map_err(|_| ControlError::Failed("service is shutting down".into()))?
            .send(make(reply))
            .map_err(|_| ControlError::Failed("service is shutting down".into()))?;
        match answer.recv_timeout(Duration::from_secs(5)) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ControlError::Failed(
                "the gate did not answer in time".into(),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(ControlError::Failed("service is shutting down".into()))
            }
        }
    }
}

impl GateControl for Control {
    fn authorize(&self, uid: u32) -> Result<(), String> {
        bus::authorize(uid, &self.privileged_group)
    }

    fn open(&self, reason: &str) -> Result<String, ControlError> {
        self.ask(|reply| Input::Open {
            reason: reason.to_owned(),
            reply,
        })
    }

    fn set_mode(&self, mode: Mode) -> Result<(), ControlError> {
        self.ask(|reply| Input::SetMode { mode, reply })
    }

    /// fgmatch follows the gallery's generation by itself (within its poll interval) and keeps
    /// the last good one if a new one is broken or of another model; this checks the generation
    /// on disk as fgmatch does and answers with it, or with why it is refused, so staff learn at
    /// once whether a change will be taken.
    fn reload_gallery(&self) -> Result<u64, ControlError> {
        self.gallery
            .open_current()
            .map(|gallery| gallery.generation())
            .map_err(|e| ControlError::Failed(e.to_string()))
    }
}

/// Serves D-Bus and relays events until the stream ends or `shutdown` resolves.
pub async fn serve_until(
    bus_config: &BusConfig,
    running: &Running,
    status: StatusCell,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<GateBus> {
    let control = running.control(&bus_config.privileged_group);
    let bus = facegate_dbus::serve(&bus_config.bus, control, env!("CARGO_PKG_VERSION")).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let mut publish = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = publish.tick() => bus.update(status.snapshot()).await,
            event = events.recv() => match event {
                Some(Event::Decided(decided)) => {
                    let (passage, decision) = *decided;
                    bus.update(status.snapshot()).await;
                    match decision {
                        Decision::Grant { id, similarity, .. } => bus.passage_granted(&passage.id, &id, similarity).await,
                        Decision::Deny { reason, .. } => bus.passage_denied(reason).await,
                    }
                }
                Some(Event::StreamEnded) | None => break,
                Some(Event::Fatal(message)) => anyhow::bail!(message),
            },
        }
    }
    Ok(bus)
}
