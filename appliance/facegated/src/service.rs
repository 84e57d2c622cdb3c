// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's moving parts and how they meet (docs/GATE-SERVICE.md):
//!
//! - the **supervisor** thread runs the pipeline, restarts it with back-off when the source fails
//!   (the gate stays in its safe state meanwhile) and turns `facegate-frame` messages into
//!   observations;
//! - the **decider** thread owns the policy, the journal and the gate: every decision is committed
//!   to the journal before the gate moves;
//! - the **input watcher** thread reads the gate's inputs every control cycle: it puts the
//!   outputs in emergency release at once, and hands every reading to the decider, which
//!   journals what the passage sensor and the emergency contact mean ([`crate::turnstile`]);
//! - the async side serves D-Bus and relays decisions and status to it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use gst::prelude::*;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use facegate_dbus::{
    ControlError, DenyReason, GateBus, GateControl, LastDecision, Mode, PassageOutcome, State,
    Stats, Verdict,
};

use crate::bus::{self, BusConfig};
use crate::config::ServiceConfig;
use crate::description;
use crate::fleet::GalleryLease;
use crate::gallery::FollowedGallery;
use crate::gate::{Gate, Inputs, SafeStateHandle};
use crate::journal::{Journal, NewPassage, Passage};
use crate::observation::{self, SearchedGallery};
use crate::policy::{Decision, FrameObservation, Identification, Judgement, Policy};
use crate::turnstile::{Happening, Turnstile};
use facegate_fleet::gallery::TrustedKeys;

/// The gate, shared with the panic hook so a crash still leaves the outputs safe.
pub type SharedGate = Arc<Mutex<Box<dyn Gate>>>;

/// A frame for the decider: what fgmatch saw, the gallery generation it was matched against
/// (whose size sets the threshold), and when the frame was captured.
struct TimedFrame {
    frame: FrameObservation,
    gallery: SearchedGallery,
    /// The frame's capture on the monotonic clock (see [`captured_at`]).
    captured: Instant,
}

/// Frames the decider has not taken yet. A decider that falls behind must not work through a
/// backlog of the past: the queue holds [`FRAME_QUEUE_CAPACITY`] frames, and a full queue drops
/// its oldest frame (counted, and logged by the decider).
#[derive(Default)]
struct FrameQueue {
    frames: Mutex<VecDeque<TimedFrame>>,
    dropped: AtomicU64,
}

/// A quarter of a second at 30 fps: room for a decider's journal commit, not for a stall.
const FRAME_QUEUE_CAPACITY: usize = 8;

impl FrameQueue {
    /// Queues a frame; true when the queue was empty, so the decider needs waking
    /// ([`Input::Frames`]). A decider that is not woken is still taking frames until the queue
    /// is empty.
    fn push(&self, frame: TimedFrame) -> bool {
        let mut frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = frames.is_empty();
        if frames.len() >= FRAME_QUEUE_CAPACITY {
            frames.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        frames.push_back(frame);
        was_empty
    }

    fn pop(&self) -> Option<TimedFrame> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Frames dropped since the last call.
    fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

/// What keeps systemd's watchdog fed: while the pipeline runs, frames decided on time (a stalled
/// or backlogged service starves it); while the pipeline is being started or restarted, the
/// supervisor turning over.
pub struct Liveness(Mutex<LivenessState>);

struct LivenessState {
    supervisor: Instant,
    decided_on_time: Instant,
    frames_expected: bool,
}

impl Liveness {
    fn new() -> Liveness {
        let now = Instant::now();
        Liveness(Mutex::new(LivenessState {
            supervisor: now,
            decided_on_time: now,
            frames_expected: false,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LivenessState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn supervisor_turned(&self) {
        self.lock().supervisor = Instant::now();
    }

    fn decided_on_time(&self) {
        self.lock().decided_on_time = Instant::now();
    }

    /// The pipeline started (true: from now on frames must be decided on time) or stopped.
    fn frames_expected(&self, expected: bool) {
        let mut state = self.lock();
        state.frames_expected = expected;
        state.decided_on_time = Instant::now();
        state.supervisor = Instant::now();
    }

    /// Whether the service did its work within the last `within`.
    pub fn alive(&self, within: Duration) -> bool {
        let state = self.lock();
        if state.frames_expected {
            state.decided_on_time.elapsed() < within
        } else {
            state.supervisor.elapsed() < within
        }
    }
}

/// What the decider is told.
enum Input {
    /// Frames are waiting in the [`FrameQueue`].
    Frames,
    Open {
        reason: String,
        uid: u32,
        reply: Sender<Result<String, ControlError>>,
    },
    /// One reading of the gate's inputs (every control cycle).
    GateInputs(Inputs),
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
    /// A journal write failed; what the decision it was for did instead (nothing opened).
    JournalFailed(String),
    /// Someone passed with no grant of their own: the grant they followed, if one passed lately,
    /// and the journal row ("" when it could not be written).
    Tailgating {
        following: Option<String>,
        outcome: String,
    },
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
    /// Whether the gate may match now (always, unless it follows the fleet's gallery).
    pub lease: GalleryLease,
    /// The office's keys, when the gate follows the fleet's gallery.
    pub office_keys: Option<TrustedKeys>,
}

/// `gate` is already open and in its safe state: nothing here may fail with the relay left as a
/// crashed run left it.
pub fn prepare(config: ServiceConfig, gate: SharedGate) -> anyhow::Result<Prepared> {
    // The configuration names the ONNX Runtime library; the elements find it through this variable.
    // SAFETY: called from main before any other thread exists.
    unsafe {
        std::env::set_var(
            facegate_vision::runtime::ORT_LIBRARY_ENV,
            &config.models.ort_library,
        );
        // fgmatch finds the calibration that sets its threshold here, as the service does.
        std::env::set_var(
            facegate_vision::match_rule::CALIBRATION_DIR_ENV,
            &config.models.calibration_dir,
        );
    };
    let pipeline_file = &config.pipeline.file;
    let text = description::load(pipeline_file, &config.pipeline_variables())?;
    let pipeline = description::parse(pipeline_file, &text)?;
    if config.liveness.required {
        description::require_liveness(pipeline_file, &pipeline)?;
    }
    check_identification(&pipeline, pipeline_file, config.policy.identification)?;
    // Before the pipeline starts: fgmatch would take any gallery, and then fail on every face
    // embedded by another model than the gallery's. In token mode no gallery is opened at all.
    let (followed, generation, size) = match config.policy.identification {
        Identification::Token => (
            FollowedGallery::for_tokens(
                &pipeline,
                &config.models.calibration_dir,
                config.policy.match_rule(),
            )
            .context("tokens")?,
            0,
            0,
        ),
        Identification::Gallery | Identification::TokenOrGallery => {
            let (followed, gallery) = FollowedGallery::open(
                &config.gallery.dir,
                &pipeline,
                &config.models.calibration_dir,
                config.policy.match_rule(),
                config.policy.allow_unsafe_gallery,
            )
            .context("gallery")?;
            (followed, gallery.generation(), gallery.len() as u64)
        }
    };
    // Models are loaded when the pipeline starts: try it once so a missing model is reported now.
    check_pipeline_starts(&pipeline, pipeline_file)?;
    let journal = Journal::open_with(&config.journal, config.fleet.retention())?;
    let office_keys = config
        .fleet
        .trusted_office_keys()
        .map_err(anyhow::Error::msg)?;
    Ok(Prepared {
        gallery_generation: generation,
        gallery_size: size,
        lease: config.fleet.lease(),
        office_keys,
        config,
        journal,
        gate,
        gallery: Arc::new(followed),
    })
}

/// Every fgmatch of the pipeline must identify as the configuration says: a pipeline whose
/// fgmatch searches the gallery while `policy.identification` is `token` (an operator's copy
/// without `identification=${identification}`) would decide on what the service does not expect.
fn check_identification(
    pipeline: &gst::Pipeline,
    file: &std::path::Path,
    configured: Identification,
) -> anyhow::Result<()> {
    for matcher in pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .filter_map(|element| element.downcast::<gstfacegate::FaceMatch>().ok())
    {
        let value = matcher.property_value("identification");
        let nick = gst::glib::EnumValue::from_value(&value).map(|(_, v)| v.nick().to_owned());
        if nick.as_deref() != Some(configured.to_string().as_str()) {
            anyhow::bail!(
                "{}: fgmatch {} has identification={}, but policy.identification is {configured}: set identification=${{identification}} on it",
                file.display(),
                matcher.name(),
                nick.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// On a panic in any thread: the gate's outputs go to their safe state, the panic is logged, and
/// the process aborts. A service with a dead thread must not go on answering D-Bus as if it ran;
/// systemd restarts an aborted service (Restart=on-failure), and the unit's ExecStopPost= puts
/// the gate safe once more.
pub fn fail_safe_on_panic(gate: SafeStateHandle) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let safe = gate.apply();
        default(info);
        match safe {
            Ok(()) => error!("a thread panicked: the gate is in its safe state; aborting"),
            Err(e) => {
                error!("a thread panicked and the gate could not be made safe ({e}); aborting")
            }
        }
        std::process::abort();
    }));
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
pub struct StatusCell {
    stats: Arc<Mutex<Stats>>,
    /// Why the last journal write failed, until one succeeds again.
    journal_failure: Arc<Mutex<Option<String>>>,
    /// The fleet's lease, once the service has started: without one in force, not running.
    lease: Arc<std::sync::OnceLock<GalleryLease>>,
    started: Instant,
}

impl StatusCell {
    /// Uptime counts from here: make it when the service starts.
    pub fn new(status: Stats) -> Self {
        StatusCell {
            stats: Arc::new(Mutex::new(status)),
            journal_failure: Arc::new(Mutex::new(None)),
            lease: Arc::default(),
            started: Instant::now(),
        }
    }

    pub fn update(&self, change: impl FnOnce(&mut Stats)) {
        if let Ok(mut status) = self.stats.lock() {
            change(&mut status);
        }
    }

    /// The status as the threads set it (State is the pipeline's).
    pub fn snapshot(&self) -> Stats {
        let mut stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        stats.uptime_s = self.started.elapsed().as_secs();
        stats
    }

    /// The status as D-Bus shows it: a failing journal overrides the pipeline's State, since
    /// nobody can be let through whatever the pipeline does; so, less strongly, does a fleet
    /// lease that is not in force (nobody is matched): a running gate is then degraded.
    pub fn published(&self) -> Stats {
        let mut stats = self.snapshot();
        let failing = self
            .journal_failure
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(true);
        if failing && stats.state != State::Stopped {
            stats.state = State::JournalFailed;
        }
        let unleased = self
            .lease
            .get()
            .is_some_and(|lease| lease.refusal(chrono::Utc::now()).is_some());
        if unleased && stats.state == State::Running {
            stats.state = State::Degraded;
        }
        stats
    }

    /// The fleet's lease the gate holds, if it follows the office's gallery and has one.
    pub fn lease(&self) -> Option<facegate_fleet::gallery::Lease> {
        self.lease.get().and_then(GalleryLease::lease)
    }

    /// The office's gallery generation the gate holds, if it follows the office's gallery.
    pub fn fleet_generation(&self) -> Option<u64> {
        self.lease.get().and_then(GalleryLease::generation)
    }

    /// Records the outcome of a journal write; logs when the journal starts or stops failing.
    fn journal_written(&self, outcome: Result<(), &str>) {
        let Ok(mut failure) = self.journal_failure.lock() else {
            return;
        };
        match (outcome, failure.is_some()) {
            (Ok(()), true) => info!("the journal is written again"),
            (Err(detail), false) => error!("the journal cannot be written: {detail}"),
            _ => {}
        }
        *failure = outcome.err().map(str::to_owned);
    }
}

/// The running service's threads.
pub struct Running {
    stop: Arc<std::sync::atomic::AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
    input_watcher: Option<JoinHandle<()>>,
    decider: Option<JoinHandle<()>>,
    inputs: Sender<Input>,
    gallery: Arc<FollowedGallery>,
    pub liveness: Arc<Liveness>,
}

impl Running {
    /// Stops the pipeline and the decider; the gate goes to its safe state.
    pub fn shutdown(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for thread in [self.supervisor.take(), self.input_watcher.take()]
            .into_iter()
            .flatten()
        {
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
        lease,
        office_keys: _,
    } = prepared;
    let _ = status.lease.set(lease.clone());
    status.update(|s| {
        s.state = State::Starting;
        s.mode = Mode::Normal;
        s.gallery_generation = gallery_generation;
        s.gallery_size = gallery_size;
    });
    // Without a gallery, where the gate stands is where one comparison stands.
    gallery.publish(
        if gallery.keeps_gallery() {
            gallery_size
        } else {
            1
        },
        &status,
    );
    let (inputs, received) = mpsc::channel();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let liveness = Arc::new(Liveness::new());
    let frames = Arc::new(FrameQueue::default());

    let decider = {
        let (status, events, gate) = (status.clone(), events.clone(), Arc::clone(&gate));
        let (frames, liveness) = (Arc::clone(&frames), Arc::clone(&liveness));
        let mut policy = Policy::new(config.policy.clone()).with_liveness(config.liveness.clone());
        let window = Duration::from_secs(config.policy.passback_window_s);
        for (id, at) in journal.recent_grants(window)? {
            policy.remember_grant(&id, at);
        }
        let searched = SearchedGallery {
            generation: gallery_generation,
            size: gallery_size,
        };
        let followed = Arc::clone(&gallery);
        let turnstile = Turnstile::new(
            config.gate.passage_sensor,
            Duration::from_millis(config.gate.pass_timeout_ms),
        );
        std::thread::Builder::new()
            .name("fg-decider".into())
            .spawn(move || {
                let inputs = DeciderInputs {
                    inputs: received,
                    lease,
                    frames: &frames,
                    liveness: &liveness,
                    gallery: &followed,
                    turnstile,
                };
                decide(inputs, policy, journal, gate, searched, status, events)
            })?
    };
    let supervisor = {
        let (config, status, stop, liveness) = (
            config.clone(),
            status.clone(),
            Arc::clone(&stop),
            Arc::clone(&liveness),
        );
        let (inputs, gallery) = (inputs.clone(), Arc::clone(&gallery));
        std::thread::Builder::new()
            .name("fg-supervisor".into())
            .spawn(move || {
                let feed = Feed {
                    inputs: &inputs,
                    frames: &frames,
                    liveness: &liveness,
                };
                supervise(&config, &gallery, &status, &stop, &feed, &events)
            })?
    };
    let input_watcher = {
        let (gate, stop, inputs) = (Arc::clone(&gate), Arc::clone(&stop), inputs.clone());
        let every = Duration::from_millis(config.gate.input_poll_ms);
        std::thread::Builder::new()
            .name("fg-inputs".into())
            .spawn(move || watch_inputs(&gate, every, &stop, &inputs))?
    };
    Ok(Running {
        stop,
        supervisor: Some(supervisor),
        input_watcher: Some(input_watcher),
        decider: Some(decider),
        inputs,
        gallery,
        liveness,
    })
}

/// What the decider reads: its inputs, the frames they announce, where it reports keeping up,
/// the gallery whose size sets the threshold, and what the turnstile's inputs have said so far.
struct DeciderInputs<'a> {
    inputs: Receiver<Input>,
    lease: GalleryLease,
    frames: &'a FrameQueue,
    liveness: &'a Liveness,
    gallery: &'a FollowedGallery,
    turnstile: Turnstile,
}

/// Reads the gate's inputs every control cycle until `stop`. The emergency input moves the
/// outputs from here, at once, whatever the decider is doing; every reading then goes to the
/// decider. A reading that fails is said once and the last good levels stand in for it.
fn watch_inputs(
    gate: &SharedGate,
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
    decider: &Sender<Input>,
) {
    let mut levels = Inputs::default();
    let mut failing = false;
    // None: not yet written by this thread (the gate was opened following the input already).
    let mut emergency_written = None;
    while !stop.load(Ordering::SeqCst) {
        match gate.lock().map(|mut g| g.inputs()) {
            Ok(Ok(read)) => {
                if std::mem::take(&mut failing) {
                    info!("the gate inputs read again");
                }
                levels = read;
            }
            Ok(Err(e)) if !failing => {
                error!("{e}; the last good input levels stand");
                failing = true;
            }
            Ok(Err(_)) | Err(_) => {}
        }
        if emergency_written != Some(levels.emergency) {
            match gate.lock().map(|mut g| g.set_emergency(levels.emergency)) {
                Ok(Ok(())) => emergency_written = Some(levels.emergency),
                // Tried again next cycle.
                Ok(Err(e)) => error!("the gate did not follow the emergency input: {e}"),
                Err(_) => {}
            }
        }
        if decider.send(Input::GateInputs(levels)).is_err() {
            return;
        }
        std::thread::sleep(every);
    }
}

/// What the supervisor feeds: the decider's inputs and frame queue, and its own liveness.
struct Feed<'a> {
    inputs: &'a Sender<Input>,
    frames: &'a FrameQueue,
    liveness: &'a Liveness,
}

/// Whether the frames reach the decider on time: frames older than the bound, or a gap between
/// frames longer than it, make what the tracks hold out of date.
struct Freshness {
    max_age: Duration,
    last_captured: Option<Instant>,
    stale: bool,
}

impl Freshness {
    /// Takes a frame's capture time; answers whether the policy must forget its tracks first.
    fn observe(&mut self, captured: Instant) -> bool {
        let age = captured.elapsed();
        let stale = age > self.max_age;
        let gap = self
            .last_captured
            .is_some_and(|last| captured.saturating_duration_since(last) > self.max_age);
        let changed = stale != self.stale;
        if stale && changed {
            warn!(
                "frames reach the decider {} ms after capture (policy.max_frame_age_ms = {}): \
                 decisions on them are dropped",
                age.as_millis(),
                self.max_age.as_millis()
            );
        } else if changed {
            info!("frames reach the decider on time again");
        } else if gap {
            warn!(
                "{} ms without a frame: the tracks are forgotten",
                captured
                    .saturating_duration_since(self.last_captured.unwrap_or(captured))
                    .as_millis()
            );
        }
        self.stale = stale;
        self.last_captured = Some(captured);
        // Decisions built on stale frames are dropped; the tracks they marked decided must not
        // keep the same people from a decision on frames that are on time (and the reverse).
        gap || changed
    }
}

/// Whether fgmatch's verdict on each face is the one the gate's rule gives: they apply the same
/// rule (facegate_vision::match_rule) from the same configuration, so a disagreement means the
/// pipeline sets fgmatch's own threshold or margin. The gate decides by its rule either way; the
/// operator is told, on the first disagreement and then on every thousandth.
#[derive(Default)]
struct Agreement {
    disagreements: u64,
}

impl Agreement {
    fn check(&mut self, policy: &Policy, frame: &FrameObservation) {
        for face in &frame.faces {
            let judgement = policy.judge_on(face, frame);
            if (judgement == Judgement::Matched) == face.element_matched {
                continue;
            }
            self.disagreements += 1;
            if self.disagreements == 1 || self.disagreements.is_multiple_of(1000) {
                warn!(
                    "fgmatch and the gate disagree on track {} (best {}, runner-up {:?}): fgmatch \
                     says {}, the gate's rule at threshold {:.4} says {judgement:?}; does the \
                     pipeline set fgmatch's threshold or min-margin? The gate decides by its \
                     rule ({} faces so far)",
                    face.track,
                    face.best.as_ref().map_or_else(
                        || "none".to_owned(),
                        |c| format!("{} at {:.4}", c.id, c.similarity)
                    ),
                    face.runner_up,
                    if face.element_matched {
                        "matched"
                    } else {
                        "not matched"
                    },
                    policy.threshold(),
                    self.disagreements
                );
            }
        }
    }
}

/// `decision` as a denial for `reason`, keeping whom and which track it was about.
fn denied_for(decision: Decision, reason: DenyReason) -> Decision {
    match decision {
        Decision::Grant {
            track,
            id,
            similarity,
            running_time,
            ..
        } => Decision::Deny {
            track: Some(track),
            reason,
            id: Some(id),
            similarity: Some(similarity),
            running_time,
        },
        Decision::Deny {
            track,
            id,
            similarity,
            running_time,
            ..
        } => Decision::Deny {
            track,
            reason,
            id,
            similarity,
            running_time,
        },
    }
}

/// A decision on a frame older than the bound, as it is journalled instead: a `stale-frame`
/// denial keeping who it was about. Never a grant.
fn dropped_as_stale(decision: Decision) -> Decision {
    denied_for(decision, DenyReason::StaleFrame)
}

/// A decision taken while the fleet's lease is not in force, as it is journalled instead: a
/// `gallery-stale` denial of whoever was matched (the gallery may hold someone the office has
/// removed since). Denials that need no gallery (several faces, a stale frame) stand.
fn unleased(decision: Decision) -> Decision {
    match decision {
        Decision::Deny {
            reason: DenyReason::SeveralFaces | DenyReason::StaleFrame,
            ..
        } => decision,
        other => denied_for(other, DenyReason::GalleryStale),
    }
}

fn decide(
    inputs: DeciderInputs<'_>,
    mut policy: Policy,
    mut journal: Journal,
    gate: SharedGate,
    mut searched: SearchedGallery,
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
    let max_age = policy.config().max_frame_age();
    let mut freshness = Freshness {
        max_age,
        last_captured: None,
        stale: false,
    };
    let DeciderInputs {
        inputs,
        lease,
        frames,
        liveness,
        gallery,
        mut turnstile,
    } = inputs;
    // The mode to return to when the emergency input is released.
    let mut before_emergency = Mode::Normal;
    let follow_gallery_size = |policy: &mut Policy, size: u64| {
        match gallery.standing(size) {
            Ok(standing) => policy.set_threshold(standing.threshold),
            // The rule was checked at start; without an answer nobody is matched.
            Err(e) => {
                error!("no threshold for {size} people ({e}): nobody is matched");
                policy.set_threshold(f64::INFINITY);
            }
        }
        info!(
            "deciding with threshold {:.4} for {size} people",
            policy.threshold()
        );
    };
    follow_gallery_size(&mut policy, searched.size);
    if policy.config().identification != Identification::Gallery {
        match gallery.standing(1) {
            Ok(standing) => policy.set_token_threshold(standing.threshold),
            Err(e) => {
                error!("no 1:1 threshold ({e}): no face matches a token");
                policy.set_token_threshold(f64::INFINITY);
            }
        }
        info!(
            "deciding on tokens with the 1:1 threshold {:.4}",
            policy.token_threshold()
        );
    }
    let mut agreement = Agreement::default();
    for input in inputs {
        match input {
            Input::Frames => {
                while let Some(TimedFrame {
                    frame,
                    gallery: frame_gallery,
                    captured,
                }) = frames.pop()
                {
                    if frame_gallery.size != searched.size {
                        follow_gallery_size(&mut policy, frame_gallery.size);
                    }
                    searched = frame_gallery;
                    let generation = searched.generation;
                    agreement.check(&policy, &frame);
                    if freshness.observe(captured) {
                        policy.forget_tracks();
                    }
                    for decision in policy.observe(&frame, SystemTime::now()) {
                        // The frame's age at the moment of deciding, not when it was queued.
                        let age = captured.elapsed();
                        let decision = if age > max_age {
                            if let Decision::Grant { id, .. } = &decision {
                                policy.withdraw_grant(&policy.grant_key(id, &frame));
                            }
                            let dropped = match &decision {
                                Decision::Grant { label, .. } => format!("a grant of {label}"),
                                Decision::Deny { reason, .. } => format!("a {reason} denial"),
                            };
                            warn!(
                                "{dropped} dropped: its frame was {} ms old (policy.max_frame_age_ms \
                             = {})",
                                age.as_millis(),
                                max_age.as_millis()
                            );
                            dropped_as_stale(decision)
                        } else {
                            decision
                        };
                        // The token, when the decision was made on one.
                        let token = frame.token.as_ref().and_then(|t| t.token_id.clone());
                        // A decision on a token needs no gallery, so no lease on one.
                        let by_token = policy.config().identification != Identification::Gallery
                            && frame.token.is_some();
                        let decision = match lease.refusal(chrono::Utc::now()) {
                            Some(_) if !by_token => {
                                if let Decision::Grant { id, .. } = &decision {
                                    policy.withdraw_grant(&policy.grant_key(id, &frame));
                                }
                                unleased(decision)
                            }
                            _ => decision,
                        };
                        let passage = passage_for(&decision, generation, token);
                        // The journal first: a gate that opened must have its passage on disk.
                        let recorded = match journal.record(&passage) {
                            Ok(recorded) => {
                                status.journal_written(Ok(()));
                                recorded
                            }
                            Err(e) => {
                                // Nobody passes without a row; the passenger sees a refusal, and
                                // a grant nobody received must not count against anti-passback.
                                if let Decision::Grant { id, .. } = &decision {
                                    policy.withdraw_grant(&policy.grant_key(id, &frame));
                                }
                                let detail = format!("{e}; the gate stays shut");
                                error!("journal write failed: {detail}");
                                if let Ok(Err(e)) = gate.lock().map(|mut g| g.deny()) {
                                    error!("the red lamp did not light: {e}");
                                }
                                status.journal_written(Err(&detail));
                                let _ = events.send(Event::JournalFailed(detail));
                                continue;
                            }
                        };
                        let moved = match &decision {
                            Decision::Grant { .. } => gate.lock().map(|mut g| g.grant()),
                            // Whoever stands at the gate now may not be the person decided on.
                            Decision::Deny {
                                reason: DenyReason::StaleFrame,
                                ..
                            } => Ok(Ok(())),
                            Decision::Deny { .. } => gate.lock().map(|mut g| g.deny()),
                        };
                        if let Ok(Err(e)) = moved {
                            error!("gate did not move for passage {}: {e}", recorded.id);
                        }
                        if matches!(decision, Decision::Grant { .. }) {
                            turnstile.granted(&recorded.id, Instant::now());
                        }
                        log_decision(&decision, &recorded);
                        status.update(|s| s.last_decision = last_decision(&decision, &recorded));
                        refresh_counts(&journal);
                        let _ = events.send(Event::Decided(Box::new((recorded, decision))));
                    }
                    if captured.elapsed() <= max_age {
                        liveness.decided_on_time();
                    }
                }
                let dropped = frames.take_dropped();
                if dropped > 0 {
                    warn!(
                        "{dropped} frames dropped unseen: the decider fell behind (it queues \
                         {FRAME_QUEUE_CAPACITY})"
                    );
                }
            }
            Input::Open { reason, uid, reply } => {
                let passage = NewPassage {
                    track: None,
                    identity: None,
                    label: None,
                    similarity: None,
                    granted: true,
                    reason: Some(format!("staff: {reason}")),
                    generation: searched.generation,
                    video_time_ns: None,
                    token: None,
                };
                let result =
                    record_or_report(&mut journal, &status, &events, |j| j.record(&passage))
                        .and_then(|recorded| {
                            gate.lock()
                                .map_err(|_| ControlError::Failed("gate unavailable".into()))?
                                .grant()
                                .map_err(|e| ControlError::Failed(e.to_string()))?;
                            info!(passage = %recorded.id, uid, "staff opening: {reason}");
                            turnstile.granted(&recorded.id, Instant::now());
                            Ok(recorded.id)
                        });
                refresh_counts(&journal);
                let _ = reply.send(result);
            }
            Input::GateInputs(levels) => {
                let mut turnout = Turnout {
                    journal: &mut journal,
                    gate: &gate,
                    policy: &mut policy,
                    status: &status,
                    events: &events,
                    before_emergency: &mut before_emergency,
                };
                for happening in turnstile.read(levels, Instant::now()) {
                    turnout.carry_out(happening);
                }
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
            Input::SetMode { mode, reply } if turnstile.emergency() => {
                warn!("refused SetMode {mode}: the emergency input is active");
                let _ = reply.send(Err(ControlError::Failed(
                    "the emergency input is active: the gate stays free until it is released"
                        .into(),
                )));
            }
            Input::SetMode { mode, reply } => {
                // Free mode unlocks: journalled before the relay moves, and no row, no change.
                let result =
                    record_or_report(&mut journal, &status, &events, |j| j.record_mode(mode))
                        .and_then(|recorded| {
                            policy.set_mode(mode);
                            status.update(|s| s.mode = mode);
                            info!(change = %recorded.id, "mode set to {mode}");
                            gate.lock()
                                .map_err(|_| ControlError::Failed("gate unavailable".into()))?
                                .hold_open(mode == Mode::Free)
                                .map_err(|e| ControlError::Failed(e.to_string()))
                        });
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

/// What the decider needs to carry out what the turnstile's inputs meant.
struct Turnout<'a> {
    journal: &'a mut Journal,
    gate: &'a SharedGate,
    policy: &'a mut Policy,
    status: &'a StatusCell,
    events: &'a UnboundedSender<Event>,
    before_emergency: &'a mut Mode,
}

impl Turnout<'_> {
    fn carry_out(&mut self, happening: Happening) {
        match happening {
            Happening::EmergencyStarted => {
                // The outputs are already held open (the input watcher); no journal failure may
                // hold them back, so the row comes after.
                warn!("the emergency input is active: the gate is held open, nothing is charged");
                *self.before_emergency = self.policy.mode();
                self.enter_mode(Mode::Emergency);
            }
            Happening::EmergencyEnded => {
                let mode = *self.before_emergency;
                info!("the emergency input is released: back to mode {mode}");
                self.enter_mode(mode);
                self.move_gate("return to the mode before the emergency", |g| {
                    g.hold_open(mode == Mode::Free)
                });
            }
            Happening::Passed { grant, relock } => {
                if relock {
                    self.move_gate("relock after a passage", |g| g.end_grant());
                }
                info!(passage = %grant, "passed");
                self.record(PassageOutcome::Passed, Some(&grant));
            }
            Happening::NotPassed { grant } => {
                info!(passage = %grant, "not passed: nobody went through on the grant");
                self.record(PassageOutcome::NotPassed, Some(&grant));
            }
            Happening::Tailgating { following } => {
                self.move_gate("light red for a tailgating", |g| g.deny());
                warn!(
                    following = following.as_deref().unwrap_or("none"),
                    "tailgating: someone went through with no grant of their own"
                );
                // Signalled even when its row could not be written (then with no row id).
                let row = self.record(PassageOutcome::Tailgating, following.as_deref());
                let _ = self.events.send(Event::Tailgating {
                    following,
                    outcome: row.unwrap_or_default(),
                });
            }
            Happening::Free => {
                self.record(PassageOutcome::Free, None);
            }
        }
    }

    fn enter_mode(&mut self, mode: Mode) {
        self.policy.set_mode(mode);
        self.status.update(|s| s.mode = mode);
        if let Err(e) = record_or_report(self.journal, self.status, self.events, |j| {
            j.record_mode(mode)
        }) {
            error!("mode {mode} is not journalled: {e}");
        }
    }

    /// Journals an outcome; returns its row id.
    fn record(&mut self, outcome: PassageOutcome, grant: Option<&str>) -> Option<String> {
        match record_or_report(self.journal, self.status, self.events, |j| {
            j.record_outcome(outcome, grant)
        }) {
            Ok(row) => Some(row.id),
            Err(e) => {
                error!("passage outcome {outcome} is not journalled: {e}");
                None
            }
        }
    }

    fn move_gate(
        &self,
        what: &str,
        change: impl FnOnce(&mut Box<dyn Gate>) -> Result<(), crate::gate::GateError>,
    ) {
        if let Ok(Err(e)) = self.gate.lock().map(|mut g| change(&mut g)) {
            error!("the gate did not {what}: {e}");
        }
    }
}

/// A journal write for a D-Bus call: a failure is the caller's error and is reported like any
/// other journal failure (State, signal).
fn record_or_report<T>(
    journal: &mut Journal,
    status: &StatusCell,
    events: &UnboundedSender<Event>,
    write: impl FnOnce(&mut Journal) -> Result<T, crate::journal::JournalError>,
) -> Result<T, ControlError> {
    match write(journal) {
        Ok(written) => {
            status.journal_written(Ok(()));
            Ok(written)
        }
        Err(e) => {
            let detail = format!("{e}; nothing changed");
            status.journal_written(Err(&detail));
            let _ = events.send(Event::JournalFailed(detail.clone()));
            Err(ControlError::Failed(detail))
        }
    }
}

fn passage_for(decision: &Decision, generation: u64, token: Option<String>) -> NewPassage {
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
            token,
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
            token,
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
    feed: &Feed<'_>,
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
        let outcome = run_pipeline_once(config, gallery, status, stop, feed);
        feed.liveness.frames_expected(false);
        crate::memory::release_freed_memory();
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
                let _ = feed.inputs.send(Input::Pipeline(false));
                // A pipeline that ran a while before failing earns a fresh, short back-off.
                if started.elapsed() > max_backoff {
                    backoff = min_backoff;
                }
                let deadline = Instant::now() + backoff;
                while Instant::now() < deadline && !stopping() {
                    feed.liveness.supervisor_turned();
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
    feed: &Feed<'_>,
) -> Outcome {
    let file: &PathBuf = &config.pipeline.file;
    // Re-read each time: an operator's fix to the description is picked up on the next restart.
    let pipeline = match description::load(file, &config.pipeline_variables())
        .and_then(|text| description::parse(file, &text))
        .and_then(|pipeline| {
            if config.liveness.required {
                description::require_liveness(file, &pipeline)?;
            }
            Ok(pipeline)
        }) {
        Ok(pipeline) => pipeline,
        Err(e) => return Outcome::Unparsable(e.to_string()),
    };
    let Some(bus) = pipeline.bus() else {
        return Outcome::Failed("pipeline has no bus".into());
    };
    let embeddings = Arc::new(EmbeddingWatch::default());
    embeddings.watch(&pipeline);
    // Before fgmatch starts: a ReloadGallery from now on reaches it, whether it comes before
    // fgmatch opens the gallery (it then opens the new generation) or after.
    gallery.attach(Some(&pipeline));
    if pipeline.set_state(gst::State::Playing).is_err() {
        gallery.attach(None);
        let message = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(describe_error(e)),
                _ => None,
            })
            .unwrap_or_else(|| "the pipeline did not start".into());
        let _ = pipeline.set_state(gst::State::Null);
        return Outcome::Failed(message);
    }
    let mut frames_in_second = 0u32;
    let mut second = Instant::now();
    let mut last_generation_check = Instant::now();
    let mut shown = None;
    let outcome = loop {
        feed.liveness.supervisor_turned();
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
                if structure.name() == facegate_meta::REVOCATIONS_MESSAGE {
                    let detail = structure.get::<&str>("detail").unwrap_or_default();
                    match structure.get::<bool>("ok") {
                        Ok(true) => info!("tokens: {detail}"),
                        _ => warn!("tokens: {detail}"),
                    }
                    continue;
                }
                let (frame, searched) = match observation::from_message(structure) {
                    Ok(Some(observed)) => observed,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!("frame message refused, frame skipped: {e}");
                        continue;
                    }
                };
                let captured = captured_at(&pipeline, frame.running_time);
                // A pipeline that detects faces but embeds none can decide nothing: not running.
                let state = match embeddings.unembedded_run() {
                    run if run >= UNEMBEDDED_FACES_DEGRADED => State::Degraded,
                    _ => State::Running,
                };
                if (frames_in_second == 0 || shown != Some(state))
                    && status.snapshot().state != state
                {
                    if state == State::Running {
                        let stream_start = stream_start_unix_ns(&pipeline);
                        status.update(|s| {
                            s.state = State::Running;
                            s.stream_start_unix_ns = stream_start;
                        });
                        feed.liveness.frames_expected(true);
                        info!("pipeline running");
                    } else {
                        status.update(|s| s.state = State::Degraded);
                        error!(
                            "degraded: {UNEMBEDDED_FACES_DEGRADED} faces in a row were detected \
                             and none embedded (is the embedder model damaged?); no decision can \
                             be made"
                        );
                    }
                    let _ = feed.inputs.send(Input::Pipeline(state == State::Running));
                }
                shown = Some(state);
                frames_in_second += 1;
                let frame = TimedFrame {
                    frame,
                    gallery: searched,
                    captured,
                };
                if feed.frames.push(frame) && feed.inputs.send(Input::Frames).is_err() {
                    break Outcome::Stopped;
                }
            }
            gst::MessageView::Eos(_) => break Outcome::Ended,
            gst::MessageView::Error(err) => {
                let source = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                break Outcome::Failed(format!("{source}: {}", describe_error(err)));
            }
            // What the elements want an operator to hear (a model not licensed for a fare
            // gate, a camera hiccup) goes to the journal. Not fgmatch's: the service watches
            // the gallery itself and reports each generation it keeps or refuses, once.
            gst::MessageView::Warning(warning) => {
                let from_matcher = warning
                    .src()
                    .is_some_and(|s| s.is::<gstfacegate::FaceMatch>());
                if !from_matcher {
                    let source = warning
                        .src()
                        .map(|s| s.name().to_string())
                        .unwrap_or_default();
                    warn!("{source}: {}", warning.error());
                }
            }
            _ => {}
        }
    };
    gallery.attach(None);
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

/// GStreamer's error with the last line of its debug string, which names what failed (a missing
/// video: "Resource not found. (No such file "/srv/walkups.avi")").
fn describe_error(error: &gst::message::Error) -> String {
    let detail = error.debug().and_then(|debug| {
        debug
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .map(str::to_owned)
    });
    match detail {
        Some(detail) => format!("{} ({detail})", error.error()),
        None => error.error().to_string(),
    }
}

/// When the frame at `running_time` was captured, as an [`Instant`]: the pipeline clock's time
/// minus the base time is the running time of the present, and the frame is older by the
/// difference. Both clocks are monotonic and advance together (a stopped process does not
/// stop them), so the decider can take the frame's age at any later moment from the
/// `Instant`. A frame without a clock to place it on counts as captured at the start of the
/// stream, which makes it stale.
fn captured_at(pipeline: &gst::Pipeline, running_time: Duration) -> Instant {
    let now = Instant::now();
    let present = match (pipeline.clock(), pipeline.base_time()) {
        (Some(clock), Some(base)) => {
            Duration::from_nanos(clock.time().saturating_sub(base).nseconds())
        }
        _ => return now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
    };
    let age = present.saturating_sub(running_time);
    now.checked_sub(age).unwrap_or(now)
}

/// Faces in a row that reached fgmatch without an embedding (reset by any embedded face): an
/// embedder that loads but whose weights are damaged embeds nothing, and the service would
/// otherwise look as if nobody came to the gate.
#[derive(Default)]
struct EmbeddingWatch {
    unembedded_run: AtomicU64,
}

/// About a second of one face at 30 fps. fgembed gives every face with landmarks an embedding
/// on every frame (a tracked face's from its cache between refreshes), so a working pipeline
/// never gets near this.
const UNEMBEDDED_FACES_DEGRADED: u64 = 30;

impl EmbeddingWatch {
    /// Counts the faces on every buffer going into each fgmatch.
    fn watch(self: &Arc<Self>, pipeline: &gst::Pipeline) {
        let matchers = pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .filter_map(|element| element.downcast::<gstfacegate::FaceMatch>().ok());
        for matcher in matchers {
            let Some(pad) = matcher.static_pad("sink") else {
                continue;
            };
            let watch = Arc::clone(self);
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    watch.count(buffer);
                }
                gst::PadProbeReturn::Ok
            });
        }
    }

    fn count(&self, buffer: &gst::BufferRef) {
        let (mut faces, mut embedded) = (0, 0);
        for face in facegate_meta::faces(buffer) {
            faces += 1;
            if matches!(face.embedding_bytes(), Ok(Some(_))) {
                embedded += 1;
            }
        }
        if embedded > 0 {
            self.unembedded_run.store(0, Ordering::Relaxed);
        } else {
            self.unembedded_run.fetch_add(faces, Ordering::Relaxed);
        }
    }

    fn unembedded_run(&self) -> u64 {
        self.unembedded_run.load(Ordering::Relaxed)
    }
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

/// How long `ReloadGallery` waits for fgmatch to switch (a few frames, and a large gallery's
/// load), within the bus client's usual 25 s.
const RELOAD_PATIENCE: Duration = Duration::from_secs(5);

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

    fn open(&self, reason: &str, uid: u32) -> Result<String, ControlError> {
        self.ask(|reply| Input::Open {
            reason: reason.to_owned(),
            uid,
            reply,
        })
    }

    fn set_mode(&self, mode: Mode) -> Result<(), ControlError> {
        if mode == Mode::Emergency {
            return Err(ControlError::InvalidArgs(
                "mode \"emergency\" follows the emergency input only".into(),
            ));
        }
        self.ask(|reply| Input::SetMode { mode, reply })
    }

    /// fgmatch follows the gallery's generation by itself (within its poll interval) and keeps
    /// the last good one if a new one is broken or of another model; this checks the generation
    /// on disk as fgmatch does, refuses it with the reason, or makes fgmatch switch to it now.
    fn reload_gallery(&self) -> Result<u64, ControlError> {
        self.gallery
            .reload(RELOAD_PATIENCE)
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
            _ = publish.tick() => bus.update_from(|| status.published()).await,
            event = events.recv() => match event {
                Some(Event::Decided(decided)) => {
                    let (passage, decision) = *decided;
                    bus.update_from(|| status.published()).await;
                    match decision {
                        Decision::Grant { id, similarity, .. } => bus.passage_granted(&passage.id, &id, similarity).await,
                        Decision::Deny { reason, .. } => bus.passage_denied(reason).await,
                    }
                }
                Some(Event::StreamEnded) | None => break,
                Some(Event::Fatal(message)) => anyhow::bail!(message),
                Some(Event::JournalFailed(detail)) => {
                    bus.update_from(|| status.published()).await;
                    bus.journal_failed(&detail).await;
                }
                Some(Event::Tailgating { following, outcome }) => {
                    bus.tailgating(following.as_deref().unwrap_or(""), &outcome).await;
                }
            },
        }
    }
    Ok(bus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(running_ms: u64) -> TimedFrame {
        TimedFrame {
            frame: FrameObservation {
                running_time: Duration::from_millis(running_ms),
                width: 640,
                height: 480,
                faces: Vec::new(),
                token: None,
            },
            gallery: SearchedGallery {
                generation: 1,
                size: 1,
            },
            captured: Instant::now(),
        }
    }

    #[test]
    fn a_full_frame_queue_drops_the_oldest_frame_and_counts_it() {
        let queue = FrameQueue::default();
        assert!(queue.push(frame(0)), "the first frame wakes the decider");
        for ms in 1..FRAME_QUEUE_CAPACITY as u64 + 3 {
            assert!(!queue.push(frame(ms)));
        }
        assert_eq!(queue.take_dropped(), 3);
        assert_eq!(queue.take_dropped(), 0);
        let kept: Vec<u64> = std::iter::from_fn(|| queue.pop())
            .map(|f| f.frame.running_time.as_millis() as u64)
            .collect();
        assert_eq!(
            kept,
            (3..FRAME_QUEUE_CAPACITY as u64 + 3).collect::<Vec<_>>()
        );
        assert!(
            queue.push(frame(99)),
            "an emptied queue wakes the decider again"
        );
    }

    #[test]
    fn a_decision_on_a_stale_frame_becomes_a_stale_frame_denial() {
        let grant = Decision::Grant {
            track: 4,
            id: "p-ada".into(),
            label: "Ada".into(),
            similarity: 0.8,
            running_time: Duration::from_secs(3),
        };
        assert_eq!(
            dropped_as_stale(grant),
            Decision::Deny {
                track: Some(4),
                reason: DenyReason::StaleFrame,
                id: Some("p-ada".into()),
                similarity: Some(0.8),
                running_time: Duration::from_secs(3),
            }
        );
        let passback = Decision::Deny {
            track: Some(5),
            reason: DenyReason::Passback,
            id: Some("p-bob".into()),
            similarity: Some(0.7),
            running_time: Duration::from_secs(4),
        };
        let Decision::Deny { reason, .. } = dropped_as_stale(passback) else {
            panic!("a denial stays a denial");
        };
        assert_eq!(reason, DenyReason::StaleFrame);
    }

    #[test]
    fn without_the_fleets_lease_every_match_is_a_gallery_stale_denial() {
        let grant = Decision::Grant {
            track: 4,
            id: "p-ada".into(),
            label: "Ada".into(),
            similarity: 0.8,
            running_time: Duration::from_secs(3),
        };
        assert_eq!(
            unleased(grant),
            Decision::Deny {
                track: Some(4),
                reason: DenyReason::GalleryStale,
                id: Some("p-ada".into()),
                similarity: Some(0.8),
                running_time: Duration::from_secs(3),
            }
        );
        let deny = |reason| Decision::Deny {
            track: Some(5),
            reason,
            id: None,
            similarity: None,
            running_time: Duration::from_secs(4),
        };
        let reason_of = |decision| match decision {
            Decision::Deny { reason, .. } => reason,
            Decision::Grant { .. } => panic!("a denial stays a denial"),
        };
        for matched in [
            DenyReason::Unknown,
            DenyReason::LowConfidence,
            DenyReason::Ambiguous,
            DenyReason::Passback,
            DenyReason::Disabled,
        ] {
            assert_eq!(reason_of(unleased(deny(matched))), DenyReason::GalleryStale);
        }
        // What needs no gallery stands.
        for standing in [DenyReason::SeveralFaces, DenyReason::StaleFrame] {
            assert_eq!(reason_of(unleased(deny(standing))), standing);
        }
    }
    #[test]
    fn tracks_are_forgotten_when_frames_turn_stale_or_fresh_or_after_a_gap() {
        let mut freshness = Freshness {
            max_age: Duration::from_millis(500),
            last_captured: None,
            stale: false,
        };
        let now = Instant::now();
        let ago = |ms| now - Duration::from_millis(ms);
        assert!(!freshness.observe(ago(40)), "the first frame, on time");
        assert!(!freshness.observe(ago(7)), "on time, 33 ms later");
        assert!(freshness.observe(ago(2000)), "stale: forget");
        assert!(!freshness.observe(ago(1967)), "still stale: keep");
        assert!(freshness.observe(ago(10)), "on time again: forget");
        assert!(!freshness.observe(ago(5)));
        // The next frame comes 605 ms after the last one (no frames in between).
        assert!(
            freshness.observe(now + Duration::from_millis(600)),
            "a gap: forget"
        );
    }

    #[test]
    fn the_watchdog_is_fed_only_while_frames_are_decided_on_time() {
        let liveness = Liveness::new();
        assert!(liveness.alive(Duration::from_secs(1)), "starting");
        liveness.frames_expected(true);
        std::thread::sleep(Duration::from_millis(30));
        liveness.supervisor_turned();
        assert!(
            !liveness.alive(Duration::from_millis(20)),
            "a supervisor turning over is not enough once frames are expected"
        );
        liveness.decided_on_time();
        assert!(liveness.alive(Duration::from_millis(20)));
        liveness.frames_expected(false);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!liveness.alive(Duration::from_millis(20)));
        liveness.supervisor_turned();
        assert!(liveness.alive(Duration::from_millis(20)), "restarting");
    }
}
