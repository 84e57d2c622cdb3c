// SPDX-License-Identifier: MIT OR Apache-2.0
//! The gate's decision policy: grant or deny from per-frame face observations.
//!
//! Plain, deterministic Rust: no GStreamer and no I/O. The service turns each `facegate-frame`
//! bus message into a [`FrameObservation`] and feeds it to [`Policy::observe`] together with the
//! wall-clock time; the returned [`Decision`]s go to the journal, the gate and D-Bus.
//!
//! # Rules
//!
//! - **At the gate.** A face is at the gate when the centre of its bounding box lies inside
//!   [`PolicyConfig::zone`] (fractions `x, y, w, h` of the frame, bounds inclusive) and its height
//!   is at least `min_face_height` × the frame height. All other faces (people further back in the
//!   queue, passers-by) are ignored.
//! - **One decision per track.** A passage is charged once: each track gets at most one decision,
//!   and decided tracks are remembered. Memory is bounded: a track not seen at all (in or out of
//!   the zone) for [`TRACK_TTL`] of running time is forgotten, and beyond [`MAX_TRACKS`] tracks
//!   the least recently seen are forgotten first. When the running time goes backwards the
//!   pipeline has restarted and its track ids start again, so all track state is dropped
//!   (anti-passback, kept in wall time, survives).
//! - **Several faces.** More than one face at the gate denies `several-faces` once for that
//!   group, with `track: None`; the individual tracks are not marked decided, so when one person
//!   remains they are still decided normally. The denial is not repeated while the same people
//!   stand there: it is repeated only when a face joins that was not in the group last denied.
//!   A group made only of tracks that are already decided (people walking through after their
//!   own decision) is not denied. Frames with several faces at the gate neither advance nor break
//!   any track's agreement or frame count (like frames outside the zone).
//! - **The threshold in force** is the larger of `threshold` (the floor) and the threshold the
//!   embedder's calibration gives for the gallery's current size at `max_false_grant_rate`
//!   (facegate_vision::match_rule, the rule fgmatch applies too); the service sets it with
//!   [`Policy::set_threshold`] whenever the gallery size changes.
//! - **Agreement.** With exactly one face at the gate and its track undecided, the policy counts
//!   consecutive frames on which the track's best candidate is matched (similarity ≥ the
//!   threshold in force, and at least `min_margin` above the best other identity) to the *same*
//!   identity; the count restarts when the identity changes and drops to zero on a
//!   frame with no match. When it reaches `agree_frames`:
//!   - mode [`Mode::Locked`] → deny `disabled`;
//!   - mode [`Mode::Free`] or [`Mode::Emergency`] → no decision, but the track is marked
//!     decided (free passage, nothing charged, nothing recorded for anti-passback);
//!   - identity listed in `disabled` → deny `disabled`;
//!   - the same identity granted less than `passback_window_s` seconds from `now` → deny
//!     `passback` (the distance is taken both ways, so a wall clock stepped backwards cannot
//!     reopen the gate to someone just granted, nor lock anyone out for longer than the window);
//!   - otherwise grant, and record `now` as the identity's last grant.
//!
//!   Grants, passback and disabled denials carry the best-scoring candidate of the agreeing run.
//! - **No agreement.** A track that has been alone at the gate for `decide_after_frames` frames
//!   without reaching agreement is denied `ambiguous` if on any of those frames its best candidate
//!   cleared the threshold but another identity scored within `min_margin` of it (with that best
//!   candidate); else `low-confidence` if any of those frames had a best
//!   similarity ≥ `low_confidence` or a match at all (which covers a face flickering between two
//!   identities above the threshold), with the best candidate seen; otherwise `unknown` (no id,
//!   the best similarity seen if there was any candidate). Agreement is checked first, so with
//!   `decide_after_frames == agree_frames` a track agreeing on its last frame is still granted.
//! - **Leaving and returning.** A track that leaves the zone before a decision keeps its counts
//!   but is not decided; when it comes back it continues where it stopped.
//! - **Free mode** produces no decisions at all: the gate is open, so nobody is charged or denied.
//!   Tracks reaching agreement or `decide_after_frames` are still marked decided.
//! - **Tokens** (`identification` `token` or `token-or-gallery`). A frame may carry the token a
//!   passenger showed within `token_window_s` ([`TokenShown`]):
//!   - a refused token (invalid, expired, revoked) denies the lone face at the gate at once with
//!     that reason (`token-invalid`, `token-expired`, `token-revoked`);
//!   - with a valid token the face's only candidate is the token's passenger, scored 1:1 against
//!     its template; agreement works as above but against the 1:1 threshold
//!     ([`Policy::set_token_threshold`]), and no agreement after `decide_after_frames` denies
//!     `token-mismatch`. Passback is kept per token id;
//!   - with no token, identification `token` does not count the frame at all (the passenger may
//!     still be reaching for the phone): a face without a token is never granted nor denied,
//!     unless fglive judged it an attack. `token-or-gallery` decides such a face by the gallery.
//! - **Presentation attacks** (fglive's verdict per track, [`FaceObservation::liveness`]):
//!   - a face fglive judged `attack` (a phone or a print held up) is denied
//!     `presentation-attack` at once, in every identification mode, naming whom it resembles
//!     most so far;
//!   - with [`LivenessConfig::required`] (the default) a track that agreed on an identity is
//!     granted only once fglive judges it `live`: agreement waits for that, and a track that
//!     agreed (at any time) but is still not `live` after `decide_after_frames` is denied
//!     `presentation-attack` too (nothing proved it a person). Without `required`, a face with
//!     no verdict (no fglive in the pipeline) is decided as if live; an `attack` still denies.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

pub use facegate_meta::{Identification, LivenessVerdict};
pub use facegate_vision::match_rule::Judgement;
use facegate_vision::match_rule::{self, MatchRule};

/// Tracks not seen for this long (pipeline running time) are forgotten.
pub const TRACK_TTL: Duration = Duration::from_secs(10 * 60);
/// At most this many tracks are remembered; the least recently seen are forgotten first.
pub const MAX_TRACKS: usize = 10_000;

/// The lowest `policy.threshold` the service accepts. Measured with the development corpus
/// (models/corpus.toml: 2906 pairs of photos of different people, the default embedder SFace):
/// strangers score 0.074 on average with a standard deviation of 0.090 and at most 0.487. The
/// floor is that mean plus three standard deviations, rounded up: below it strangers pass as
/// someone else (a threshold of 0 granted one at 0.12).
pub const THRESHOLD_FLOOR: f64 = 0.35;
/// Why: said with every refusal of a threshold under [`THRESHOLD_FLOOR`].
const IMPOSTOR_SCORES: &str = "strangers score 0.07 on average (sd 0.09, up to 0.49) against \
    the default model on the development corpus, so a lower threshold grants them as someone else";

/// How often (running time) tracks older than [`TRACK_TTL`] are swept out.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds of `policy.max_frame_age_ms`: below two frame intervals at 30 fps every frame would be
/// stale; above 10 s the bound no longer keeps a decision with the person it was made for.
const MIN_FRAME_AGE_MS: u64 = 67;
const MAX_FRAME_AGE_MS: u64 = 10_000;
/// Bounds of `policy.token_window_s`: a phone is lowered within seconds of the code being read;
/// beyond ten minutes a token would stay shown for the next passengers.
const MIN_TOKEN_WINDOW_S: u64 = 1;
const MAX_TOKEN_WINDOW_S: u64 = 600;
/// Slack for sums of `f32` fractions such as `0.3 + 0.7`.
const ZONE_EPSILON: f32 = 1e-6;

/// The gallery's best candidate for one face (possibly below the threshold).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub label: String,
    pub similarity: f64,
}

/// One face on one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceObservation {
    pub track: u64,
    /// x, y, w, h in frame pixels.
    pub bbox: [f32; 4],
    /// The gallery's best candidate, even below the threshold.
    pub best: Option<Candidate>,
    /// The best similarity of another identity than `best`'s.
    pub runner_up: Option<f64>,
    /// fgmatch's own verdict on the face (it carries a `facegate-match` param): the gate decides
    /// by its rule, and the service checks that the two agree.
    pub element_matched: bool,
    /// fglive's verdict on the face's track; `None` when no fglive judged it.
    pub liveness: Option<LivenessVerdict>,
}

/// Every face on one frame (an empty `faces` means nobody is in view).
#[derive(Clone, Debug, PartialEq)]
pub struct FrameObservation {
    /// Pipeline running time of the frame.
    pub running_time: Duration,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceObservation>,
    /// The token shown within the token window, if any (then each face's `best` is the token's
    /// passenger when it is valid).
    pub token: Option<TokenShown>,
}

/// A passenger token shown at the gate, as fgmatch judged it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenShown {
    /// 32 hex digits, once its signature verified.
    pub token_id: Option<String>,
    pub passenger_id: Option<String>,
    /// `None` for a valid token; else `token-invalid`, `token-expired` or `token-revoked`.
    pub refusal: Option<DenyReason>,
}

/// Passback for a grant on a token is kept under this prefix and the token id (the journal's
/// [`crate::journal::Journal::recent_grants`] keys such grants the same way).
pub const TOKEN_PASSBACK_PREFIX: &str = "token:";

pub use facegate_dbus::{DenyReason, Mode};

/// What the policy decided on a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Grant {
        track: u64,
        id: String,
        label: String,
        similarity: f64,
        running_time: Duration,
    },
    Deny {
        /// `None` for a group (`several-faces`).
        track: Option<u64>,
        reason: DenyReason,
        id: Option<String>,
        similarity: Option<f64>,
        running_time: Duration,
    },
}

impl Decision {
    /// Running time of the frame that produced the decision.
    pub fn running_time(&self) -> Duration {
        match self {
            Decision::Grant { running_time, .. } | Decision::Deny { running_time, .. } => {
                *running_time
            }
        }
    }
}

/// The `[policy]` section of `facegate.toml`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The lowest match threshold (cosine similarity), fgmatch's `min-threshold`: the threshold
    /// in force is this or the calibrated one for the gallery's size, whichever is higher.
    pub threshold: f64,
    /// Target false grants per stranger passage (fgmatch's `max-false-grant-rate`).
    pub max_false_grant_rate: f64,
    /// The share of enrolled passengers' comparisons the threshold may reject; with the target,
    /// it bounds the gallery size the model serves safely.
    pub max_false_reject_rate: f64,
    /// Start even when the gallery is beyond that safe size (logged loudly).
    pub allow_unsafe_gallery: bool,
    /// How far the best identity must score above the best other one (fgmatch's `min-margin`).
    pub min_margin: f64,
    /// Best similarity in `[low_confidence, threshold)` denies `low-confidence` rather than `unknown`.
    pub low_confidence: f64,
    /// Gate zone: x, y, w, h as fractions of the frame; a face's centre must be inside.
    pub zone: [f32; 4],
    /// Fraction of the frame height below which a face is not yet at the gate.
    pub min_face_height: f32,
    /// Consecutive frames a track must match the same identity.
    pub agree_frames: u32,
    /// Frames at the gate after which a track without agreement is denied.
    pub decide_after_frames: u32,
    /// An identity granted within this many seconds is denied `passback`.
    pub passback_window_s: u64,
    /// Identities refused with `disabled`.
    pub disabled: Vec<String>,
    /// Oldest a deciding frame may be, in milliseconds from its capture (on the pipeline clock)
    /// to the decision: a decision on an older frame is dropped (journalled `stale-frame`, the
    /// gate does not move), and tracks are forgotten after a gap this long.
    pub max_frame_age_ms: u64,
    /// How a face is identified: `gallery` (1:N), `token` (1:1 against a signed token the
    /// passenger shows, no gallery) or `token-or-gallery`.
    pub identification: Identification,
    /// Seconds a token stays shown after its code was last read (fgmatch's `token-window`).
    pub token_window_s: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            threshold: match_rule::DEFAULT_MIN_THRESHOLD,
            max_false_grant_rate: match_rule::DEFAULT_MAX_FALSE_GRANT_RATE,
            max_false_reject_rate: match_rule::DEFAULT_MAX_FALSE_REJECT_RATE,
            allow_unsafe_gallery: false,
            min_margin: match_rule::DEFAULT_MIN_MARGIN,
            low_confidence: 0.30,
            zone: [0.15, 0.0, 0.7, 1.0],
            min_face_height: 0.20,
            agree_frames: 3,
            decide_after_frames: 10,
            passback_window_s: 120,
            disabled: Vec::new(),
            max_frame_age_ms: 500,
            identification: Identification::default(),
            token_window_s: u64::from(facegate_token::DEFAULT_TOKEN_WINDOW_MS / 1000),
        }
    }
}

impl PolicyConfig {
    /// Checks every key; the message starts with the offending key (`policy.zone: …`).
    pub fn validate(&self) -> Result<(), String> {
        if !(THRESHOLD_FLOOR..=1.0).contains(&self.threshold) {
            return Err(format!(
                "policy.threshold: must lie within {THRESHOLD_FLOOR}..1 (got {}): {IMPOSTOR_SCORES}",
                self.threshold
            ));
        }
        self.match_rule()
            .check()
            .map_err(|problem| format!("policy.{problem}"))?;
        if !(0.0..=1.0).contains(&self.min_margin) {
            return Err(format!(
                "policy.min_margin: must lie within 0..1 (got {})",
                self.min_margin
            ));
        }
        if !(-1.0..=1.0).contains(&self.low_confidence) {
            return Err(format!(
                "policy.low_confidence: must lie within -1..1 (got {})",
                self.low_confidence
            ));
        }
        if self.low_confidence > self.threshold {
            return Err(format!(
                "policy.low_confidence: must not exceed policy.threshold ({} > {})",
                self.low_confidence, self.threshold
            ));
        }
        let [x, y, w, h] = self.zone;
        let inside = self.zone.iter().all(|v| (0.0..=1.0).contains(v))
            && x + w <= 1.0 + ZONE_EPSILON
            && y + h <= 1.0 + ZONE_EPSILON;
        if !inside {
            return Err(format!(
                "policy.zone: must lie within 0..1 (x + w and y + h at most 1, got {:?})",
                self.zone
            ));
        }
        if w <= 0.0 || h <= 0.0 {
            return Err(format!(
                "policy.zone: width and height must be greater than 0 (got {:?})",
                self.zone
            ));
        }
        if !(0.0..=1.0).contains(&self.min_face_height) {
            return Err(format!(
                "policy.min_face_height: must lie within 0..1 (got {})",
                self.min_face_height
            ));
        }
        if self.agree_frames < 1 {
            return Err("policy.agree_frames: must be at least 1".to_owned());
        }
        if self.decide_after_frames < self.agree_frames {
            return Err(format!(
                "policy.decide_after_frames: must be at least policy.agree_frames ({} < {})",
                self.decide_after_frames, self.agree_frames
            ));
        }
        if !(MIN_FRAME_AGE_MS..=MAX_FRAME_AGE_MS).contains(&self.max_frame_age_ms) {
            return Err(format!(
                "policy.max_frame_age_ms: must be {MIN_FRAME_AGE_MS}..{MAX_FRAME_AGE_MS} (got {})",
                self.max_frame_age_ms
            ));
        }
        if !(MIN_TOKEN_WINDOW_S..=MAX_TOKEN_WINDOW_S).contains(&self.token_window_s) {
            return Err(format!(
                "policy.token_window_s: must be {MIN_TOKEN_WINDOW_S}..{MAX_TOKEN_WINDOW_S} (got {})",
                self.token_window_s
            ));
        }
        if let Some(index) = self.disabled.iter().position(|id| id.is_empty()) {
            return Err(format!(
                "policy.disabled: entry {index} is an empty identity"
            ));
        }
        Ok(())
    }

    /// The threshold rule these keys make, as fgmatch applies it.
    pub fn match_rule(&self) -> MatchRule {
        MatchRule {
            min_threshold: self.threshold,
            max_false_grant_rate: self.max_false_grant_rate,
            max_false_reject_rate: self.max_false_reject_rate,
        }
    }

    /// [`PolicyConfig::max_frame_age_ms`] as a duration.
    pub fn max_frame_age(&self) -> Duration {
        Duration::from_millis(self.max_frame_age_ms)
    }

    fn passback_window(&self) -> Duration {
        Duration::from_secs(self.passback_window_s)
    }

    /// Whether `face` is at the gate on a `width` × `height` frame.
    fn at_gate(&self, face: &FaceObservation, width: u32, height: u32) -> bool {
        if width == 0 || height == 0 {
            return false;
        }
        let (width, height) = (width as f32, height as f32);
        let [x, y, w, h] = face.bbox;
        let cx = (x + w / 2.0) / width;
        let cy = (y + h / 2.0) / height;
        let [zx, zy, zw, zh] = self.zone;
        (zx..=zx + zw).contains(&cx)
            && (zy..=zy + zh).contains(&cy)
            && h >= self.min_face_height * height
    }
}

/// The `[liveness]` section of `facegate.toml`: what the gate asks of fglive's verdicts.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LivenessConfig {
    /// Grant only a face fglive judged `live`; the service refuses to start a pipeline without
    /// fglive. `false` lets a face without a verdict through as before fglive existed (a photo
    /// of a passenger may then open the gate): for pipelines that cannot run it.
    pub required: bool,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig { required: true }
    }
}

/// What the policy remembers about one track.
#[derive(Debug)]
struct TrackState {
    /// Running time the track was last seen anywhere on a frame.
    last_seen: Duration,
    decided: bool,
    /// Frames alone at the gate so far.
    frames_at_gate: u32,
    /// The identity of the current run of matching frames, and its length.
    run_id: Option<String>,
    run_len: u32,
    /// Best-scoring candidate of the current run.
    run_best: Option<Candidate>,
    /// Best candidate over all frames alone at the gate.
    best_seen: Option<Candidate>,
    /// Whether any frame alone at the gate had a match.
    ever_matched: bool,
    /// Whether any frame alone at the gate had a best candidate another identity nearly equalled.
    ever_ambiguous: bool,
    /// Whether a run of matching frames ever reached `agree_frames`.
    ever_agreed: bool,
}

impl TrackState {
    fn new(now: Duration) -> Self {
        TrackState {
            last_seen: now,
            decided: false,
            frames_at_gate: 0,
            run_id: None,
            run_len: 0,
            run_best: None,
            best_seen: None,
            ever_matched: false,
            ever_ambiguous: false,
            ever_agreed: false,
        }
    }
}

/// Keeps `slot` holding the higher-scoring of itself and `candidate`.
fn keep_best(slot: &mut Option<Candidate>, candidate: &Candidate) {
    if slot
        .as_ref()
        .is_none_or(|best| candidate.similarity > best.similarity)
    {
        *slot = Some(candidate.clone());
    }
}

/// What a frame's token means for its lone face, under the identification mode.
#[derive(Clone, Copy, Debug)]
enum TokenClaim<'f> {
    /// Decided by the gallery (identification `gallery`, or no token in `token-or-gallery`).
    Gallery,
    /// Identification `token` and no token shown: the frame does not count.
    Waiting,
    Refused(&'f TokenShown, DenyReason),
    Valid(&'f TokenShown),
}

/// The key passback is kept under for a grant of `id` under `claim`: the token's when it was
/// valid, else the identity.
fn passback_key(id: &str, claim: TokenClaim<'_>) -> String {
    match claim {
        TokenClaim::Valid(TokenShown {
            token_id: Some(token),
            ..
        }) => format!("{TOKEN_PASSBACK_PREFIX}{token}"),
        _ => id.to_owned(),
    }
}

/// The decision policy; see the module documentation for the rules.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    /// The threshold in force: at least `config.threshold`.
    threshold: f64,
    /// The 1:1 threshold for a face against a token's template: at least `config.threshold`.
    token_threshold: f64,
    mode: Mode,
    liveness: LivenessConfig,
    tracks: HashMap<u64, TrackState>,
    /// Last grant per identity (wall time), for anti-passback.
    grants: HashMap<String, SystemTime>,
    /// The group of tracks last denied `several-faces`.
    denied_group: BTreeSet<u64>,
    last_running_time: Option<Duration>,
    last_sweep: Duration,
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Self {
        Policy {
            threshold: config.threshold,
            token_threshold: config.threshold,
            config,
            mode: Mode::Normal,
            liveness: LivenessConfig::default(),
            tracks: HashMap::new(),
            grants: HashMap::new(),
            denied_group: BTreeSet::new(),
            last_running_time: None,
            last_sweep: Duration::ZERO,
        }
    }

    /// What fglive's verdicts must be for a grant (default: [`LivenessConfig::default`]).
    pub fn with_liveness(mut self, liveness: LivenessConfig) -> Self {
        self.liveness = liveness;
        self
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sets the threshold in force for the gallery's current size (never below the configured
    /// floor).
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold.max(self.config.threshold);
    }

    /// The threshold in force.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Sets the 1:1 threshold against a token's template (never below the configured floor).
    pub fn set_token_threshold(&mut self, threshold: f64) {
        self.token_threshold = threshold.max(self.config.threshold);
    }

    pub fn token_threshold(&self) -> f64 {
        self.token_threshold
    }

    /// What the policy's rule makes of a face on `frame`: matched, ambiguous or not matched,
    /// against the token's threshold when a valid token was shown.
    pub fn judge_on(&self, face: &FaceObservation, frame: &FrameObservation) -> Judgement {
        self.judge_against(face, self.threshold_for(self.token_claim(frame)))
    }

    /// The threshold a face is judged against under `claim`.
    fn threshold_for(&self, claim: TokenClaim<'_>) -> f64 {
        match claim {
            TokenClaim::Valid(_) => self.token_threshold,
            _ => self.threshold,
        }
    }

    fn judge_against(&self, face: &FaceObservation, threshold: f64) -> Judgement {
        match_rule::judge(
            face.best.as_ref().map(|c| c.similarity),
            face.runner_up,
            threshold,
            self.config.min_margin,
        )
    }

    /// What the frame's token means under the identification mode.
    fn token_claim<'f>(&self, frame: &'f FrameObservation) -> TokenClaim<'f> {
        match (self.config.identification, &frame.token) {
            (Identification::Gallery, _) => TokenClaim::Gallery,
            (_, Some(shown)) => match shown.refusal {
                Some(reason) => TokenClaim::Refused(shown, reason),
                None => TokenClaim::Valid(shown),
            },
            (Identification::Token, None) => TokenClaim::Waiting,
            (Identification::TokenOrGallery, None) => TokenClaim::Gallery,
        }
    }

    /// The configuration the policy decides with.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The key passback is kept under for a grant of `id` on `frame`: the token's when a valid
    /// token was shown, else the identity.
    pub fn grant_key(&self, id: &str, frame: &FrameObservation) -> String {
        passback_key(id, self.token_claim(frame))
    }

    /// Takes back the grant [`Policy::observe`] just recorded for `id`: the service dropped it
    /// (its frame was stale), so it must not count for anti-passback. An earlier grant of `id`
    /// still inside the window would have made that decision a passback denial, so there is
    /// nothing older to keep.
    pub fn withdraw_grant(&mut self, id: &str) {
        self.grants.remove(id);
    }

    /// Seeds anti-passback with a grant recorded earlier (e.g. from the journal after a restart).
    pub fn remember_grant(&mut self, id: &str, at: SystemTime) {
        match self.grants.get_mut(id) {
            Some(last) => *last = (*last).max(at),
            None => {
                self.grants.insert(id.to_owned(), at);
            }
        }
    }

    /// Forgets every track (their counts and decisions), keeping anti-passback. For a pipeline
    /// restart, whose tracker numbers tracks afresh; [`Policy::observe`] also does this by
    /// itself when the running time goes backwards.
    pub fn forget_tracks(&mut self) {
        self.tracks.clear();
        self.denied_group.clear();
        self.last_sweep = Duration::ZERO;
    }

    /// One frame; `now` is wall-clock time (passback is in wall time, because pipeline running
    /// time restarts with the pipeline). Returns the decisions this frame produced (usually none,
    /// at most one per track).
    pub fn observe(&mut self, frame: &FrameObservation, now: SystemTime) -> Vec<Decision> {
        let running_time = frame.running_time;
        if self
            .last_running_time
            .is_some_and(|last| running_time < last)
        {
            self.forget_tracks();
        }
        self.last_running_time = Some(running_time);

        for face in &frame.faces {
            if let Some(state) = self.tracks.get_mut(&face.track) {
                state.last_seen = running_time;
            }
        }

        let mut at_gate = frame
            .faces
            .iter()
            .filter(|face| self.config.at_gate(face, frame.width, frame.height));
        let mut decisions = Vec::new();
        match (at_gate.next(), at_gate.next()) {
            (None, _) => {}
            (Some(face), None) => {
                let claim = self.token_claim(frame);
                if let Some(decision) = self.observe_alone(face, claim, running_time, now) {
                    decisions.push(decision);
                }
            }
            (Some(first), Some(second)) => {
                let group: BTreeSet<u64> = [first, second]
                    .into_iter()
                    .chain(at_gate)
                    .map(|face| face.track)
                    .collect();
                if let Some(decision) = self.observe_group(group, running_time) {
                    decisions.push(decision);
                }
            }
        }

        self.sweep(running_time);
        decisions
    }

    fn is_decided(&self, track: u64) -> bool {
        self.tracks.get(&track).is_some_and(|state| state.decided)
    }

    fn observe_group(&mut self, group: BTreeSet<u64>, running_time: Duration) -> Option<Decision> {
        if self.mode.is_free_passage()
            || group.is_subset(&self.denied_group)
            || group.iter().all(|&track| self.is_decided(track))
        {
            return None;
        }
        self.denied_group = group;
        Some(Decision::Deny {
            track: None,
            reason: DenyReason::SeveralFaces,
            id: None,
            similarity: None,
            running_time,
        })
    }

    fn observe_alone(
        &mut self,
        face: &FaceObservation,
        claim: TokenClaim<'_>,
        running_time: Duration,
        now: SystemTime,
    ) -> Option<Decision> {
        let judgement = self.judge_against(face, self.threshold_for(claim));
        let free = self.mode.is_free_passage();
        let live = match face.liveness {
            Some(LivenessVerdict::Live) => true,
            Some(LivenessVerdict::Attack | LivenessVerdict::Undecided) => false,
            None => !self.liveness.required,
        };
        let config = &self.config;
        let state = self
            .tracks
            .entry(face.track)
            .or_insert_with(|| TrackState::new(running_time));
        state.last_seen = running_time;
        if state.decided {
            return None;
        }
        match claim {
            // A face without a token is not counted, unless it is an attack: that is denied
            // at once whatever the identification (below, before anything could grant).
            TokenClaim::Waiting if face.liveness != Some(LivenessVerdict::Attack) => return None,
            TokenClaim::Refused(shown, reason) => {
                state.decided = true;
                return (!free).then(|| Decision::Deny {
                    track: Some(face.track),
                    reason,
                    id: shown.passenger_id.clone(),
                    similarity: None,
                    running_time,
                });
            }
            TokenClaim::Valid(_) | TokenClaim::Gallery | TokenClaim::Waiting => {}
        }
        state.frames_at_gate = state.frames_at_gate.saturating_add(1);

        match &face.best {
            Some(candidate) => {
                keep_best(&mut state.best_seen, candidate);
                if judgement == Judgement::Matched {
                    state.ever_matched = true;
                    if state.run_id.as_deref() == Some(candidate.id.as_str()) {
                        state.run_len = state.run_len.saturating_add(1);
                    } else {
                        state.run_id = Some(candidate.id.clone());
                        state.run_len = 1;
                        state.run_best = None;
                    }
                    keep_best(&mut state.run_best, candidate);
                } else {
                    state.ever_ambiguous |= judgement == Judgement::Ambiguous;
                    state.run_id = None;
                    state.run_len = 0;
                    state.run_best = None;
                }
            }
            None => {
                state.run_id = None;
                state.run_len = 0;
                state.run_best = None;
            }
        }

        let agreed = state.run_len >= config.agree_frames;
        state.ever_agreed |= agreed;
        let presentation_attack = |state: &TrackState| Decision::Deny {
            track: Some(face.track),
            reason: DenyReason::PresentationAttack,
            id: state.best_seen.as_ref().map(|c| c.id.clone()),
            similarity: state.best_seen.as_ref().map(|c| c.similarity),
            running_time,
        };
        if face.liveness == Some(LivenessVerdict::Attack) {
            state.decided = true;
            return (!free).then(|| presentation_attack(state));
        }
        if agreed && live {
            state.decided = true;
            let matched = state
                .run_best
                .clone()
                .expect("a run of matching frames has a best candidate");
            let key = passback_key(&matched.id, claim);
            return self.decide_matched(face.track, matched, &key, running_time, now);
        }
        if state.frames_at_gate >= config.decide_after_frames {
            state.decided = true;
            if self.mode.is_free_passage() {
                return None;
            }
            if state.ever_agreed {
                // Agreed on someone, and never judged live in all that time.
                return Some(presentation_attack(state));
            }
            let best = state.best_seen.as_ref();
            let low_confidence =
                state.ever_matched || best.is_some_and(|c| c.similarity >= config.low_confidence);
            if let TokenClaim::Valid(shown) = claim {
                return Some(Decision::Deny {
                    track: Some(face.track),
                    reason: DenyReason::TokenMismatch,
                    id: shown.passenger_id.clone(),
                    similarity: best.map(|c| c.similarity),
                    running_time,
                });
            }
            return Some(if state.ever_ambiguous {
                Decision::Deny {
                    track: Some(face.track),
                    reason: DenyReason::Ambiguous,
                    id: best.map(|c| c.id.clone()),
                    similarity: best.map(|c| c.similarity),
                    running_time,
                }
            } else if low_confidence {
                Decision::Deny {
                    track: Some(face.track),
                    reason: DenyReason::LowConfidence,
                    id: best.map(|c| c.id.clone()),
                    similarity: best.map(|c| c.similarity),
                    running_time,
                }
            } else {
                Decision::Deny {
                    track: Some(face.track),
                    reason: DenyReason::Unknown,
                    id: None,
                    similarity: best.map(|c| c.similarity),
                    running_time,
                }
            });
        }
        None
    }

    /// The decision for a track that agreed on `matched`.
    fn decide_matched(
        &mut self,
        track: u64,
        matched: Candidate,
        passback_key: &str,
        running_time: Duration,
        now: SystemTime,
    ) -> Option<Decision> {
        let deny = |reason, matched: Candidate| Decision::Deny {
            track: Some(track),
            reason,
            id: Some(matched.id),
            similarity: Some(matched.similarity),
            running_time,
        };
        match self.mode {
            Mode::Locked => return Some(deny(DenyReason::Disabled, matched)),
            Mode::Free | Mode::Emergency => return None,
            Mode::Normal => {}
        }
        if self.config.disabled.contains(&matched.id) {
            return Some(deny(DenyReason::Disabled, matched));
        }
        let window = self.config.passback_window();
        if let Some(&last) = self.grants.get(passback_key) {
            let distance = now
                .duration_since(last)
                .unwrap_or_else(|early| early.duration());
            if distance < window {
                return Some(deny(DenyReason::Passback, matched));
            }
        }
        self.record_grant(passback_key, now);
        Some(Decision::Grant {
            track,
            id: matched.id,
            label: matched.label,
            similarity: matched.similarity,
            running_time,
        })
    }

    fn record_grant(&mut self, id: &str, now: SystemTime) {
        // Grants are rare: drop the ones that can no longer cause a passback while here.
        let window = self.config.passback_window();
        self.grants.retain(|_, &mut at| {
            let distance = now
                .duration_since(at)
                .unwrap_or_else(|early| early.duration());
            distance < window
        });
        self.grants.insert(id.to_owned(), now);
    }

    /// Forgets tracks not seen for [`TRACK_TTL`], and the least recently seen beyond [`MAX_TRACKS`].
    fn sweep(&mut self, running_time: Duration) {
        if running_time.saturating_sub(self.last_sweep) >= SWEEP_INTERVAL {
            self.last_sweep = running_time;
            self.tracks
                .retain(|_, state| running_time.saturating_sub(state.last_seen) < TRACK_TTL);
        }
        if self.tracks.len() > MAX_TRACKS {
            let mut seen: Vec<(Duration, u64)> = self
                .tracks
                .iter()
                .map(|(&track, state)| (state.last_seen, track))
                .collect();
            // Keep a margin so that this runs once per many new tracks, not on every frame.
            let keep = MAX_TRACKS * 9 / 10;
            let cut = seen.len() - keep;
            seen.select_nth_unstable(cut - 1);
            for &(_, track) in &seen[..cut] {
                self.tracks.remove(&track);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTH: u32 = 640;
    const HEIGHT: u32 = 480;
    /// 25 frames per second.
    const FRAME: Duration = Duration::from_millis(40);

    /// A face centred in the frame, large enough to be at the gate, with no candidate.
    fn face(track: u64) -> FaceObservation {
        FaceObservation {
            track,
            bbox: [270.0, 140.0, 100.0, 200.0],
            best: None,
            runner_up: None,
            element_matched: false,
            liveness: Some(LivenessVerdict::Live),
        }
    }

    trait FaceExt {
        /// Best candidate `id` (label "Label of id") at `similarity`.
        fn best(self, id: &str, similarity: f64) -> Self;
        /// The best other identity at `similarity`.
        fn runner_up(self, similarity: f64) -> Self;
        fn bbox(self, bbox: [f32; 4]) -> Self;
        /// fglive's verdict (`None`: no fglive).
        fn liveness(self, verdict: Option<LivenessVerdict>) -> Self;
    }

    impl FaceExt for FaceObservation {
        fn best(mut self, id: &str, similarity: f64) -> Self {
            self.best = Some(Candidate {
                id: id.to_owned(),
                label: format!("Label of {id}"),
                similarity,
            });
            self
        }

        fn runner_up(mut self, similarity: f64) -> Self {
            self.runner_up = Some(similarity);
            self
        }

        fn bbox(mut self, bbox: [f32; 4]) -> Self {
            self.bbox = bbox;
            self
        }

        fn liveness(mut self, verdict: Option<LivenessVerdict>) -> Self {
            self.liveness = verdict;
            self
        }
    }

    /// A synthetic camera in front of a policy: frames at 25 fps, wall clock moving with them.
    struct Gate {
        policy: Policy,
        running_time: Duration,
        now: SystemTime,
        /// The token every frame carries (as fgmatch reports one shown within its window).
        token: Option<TokenShown>,
    }

    impl Gate {
        fn new() -> Self {
            Gate::with(PolicyConfig::default())
        }

        fn with(config: PolicyConfig) -> Self {
            config.validate().unwrap();
            Gate {
                policy: Policy::new(config),
                running_time: Duration::ZERO,
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                token: None,
            }
        }

        /// One frame with `faces`; its full decisions.
        fn frame<const N: usize>(&mut self, faces: [FaceObservation; N]) -> Vec<Decision> {
            self.observe(faces.into())
        }

        fn observe(&mut self, faces: Vec<FaceObservation>) -> Vec<Decision> {
            self.running_time += FRAME;
            self.now += FRAME;
            let frame = FrameObservation {
                running_time: self.running_time,
                width: WIDTH,
                height: HEIGHT,
                faces,
                token: self.token.clone(),
            };
            self.policy.observe(&frame, self.now)
        }

        /// `n` identical frames; each decision summarised, with the 1-based frame it came on.
        fn frames<const N: usize>(
            &mut self,
            n: u32,
            faces: [FaceObservation; N],
        ) -> Vec<(u32, String)> {
            self.script((0..n).map(|_| faces.to_vec()))
        }

        /// One frame per item; each decision summarised, with the 1-based frame it came on.
        fn script(
            &mut self,
            frames: impl IntoIterator<Item = Vec<FaceObservation>>,
        ) -> Vec<(u32, String)> {
            let mut out = Vec::new();
            for (index, faces) in frames.into_iter().enumerate() {
                for decision in self.observe(faces) {
                    out.push((index as u32 + 1, summary(&decision)));
                }
            }
            out
        }

        /// Time passes with nobody in view (wall clock and running time).
        fn wait(&mut self, duration: Duration) {
            self.running_time += duration;
            self.now += duration;
        }
    }

    /// "grant t1 p-ada", "deny t1 unknown", "deny - several-faces".
    fn summary(decision: &Decision) -> String {
        match decision {
            Decision::Grant { track, id, .. } => format!("grant t{track} {id}"),
            Decision::Deny { track, reason, .. } => match track {
                Some(track) => format!("deny t{track} {reason}"),
                None => format!("deny - {reason}"),
            },
        }
    }

    fn at(frame: u32, summary: &str) -> (u32, String) {
        (frame, summary.to_owned())
    }

    #[test]
    fn lone_enrolled_passenger_is_granted_once_after_agree_frames() {
        let mut gate = Gate::new();
        let ada = face(1).best("p-ada", 0.72);
        let start = gate.running_time;
        let mut decisions = Vec::new();
        for _ in 0..3 {
            decisions.push(gate.frame([ada.clone()]));
        }
        assert!(decisions[0].is_empty() && decisions[1].is_empty());
        assert_eq!(
            decisions[2],
            vec![Decision::Grant {
                track: 1,
                id: "p-ada".into(),
                label: "Label of p-ada".into(),
                similarity: 0.72,
                running_time: start + FRAME * 3,
            }]
        );
        // Never again, however long she stays.
        assert_eq!(gate.frames(100, [ada]), vec![]);
    }

    #[test]
    fn grant_carries_the_best_similarity_of_the_agreeing_run() {
        let mut gate = Gate::new();
        let decisions: Vec<Decision> = [0.50, 0.81, 0.60]
            .into_iter()
            .flat_map(|similarity| gate.frame([face(4).best("p-ada", similarity)]))
            .collect();
        assert!(matches!(
            decisions.as_slice(),
            [Decision::Grant { similarity, track: 4, .. }] if *similarity == 0.81
        ));
    }

    #[test]
    fn stranger_is_denied_unknown_once_after_decide_after_frames() {
        let mut gate = Gate::new();
        let stranger = face(2).best("p-bob", 0.12);
        let decisions: Vec<Decision> = (0..10)
            .flat_map(|_| gate.frame([stranger.clone()]))
            .collect();
        assert_eq!(
            decisions,
            vec![Decision::Deny {
                track: Some(2),
                reason: DenyReason::Unknown,
                id: None,
                similarity: Some(0.12),
                running_time: FRAME * 10,
            }]
        );
        assert_eq!(gate.frames(100, [stranger]), vec![]);

        // Without any candidate at all (empty gallery).
        let mut gate = Gate::new();
        assert_eq!(gate.frames(50, [face(3)]), vec![at(10, "deny t3 unknown")]);
    }

    #[test]
    fn low_similarity_is_denied_low_confidence() {
        let mut gate = Gate::new();
        let unsure = face(5).best("p-ada", 0.38);
        let decisions: Vec<Decision> = (0..30).flat_map(|_| gate.frame([unsure.clone()])).collect();
        assert_eq!(
            decisions,
            vec![Decision::Deny {
                track: Some(5),
                reason: DenyReason::LowConfidence,
                id: Some("p-ada".into()),
                similarity: Some(0.38),
                running_time: FRAME * 10,
            }]
        );

        // Just below low_confidence is unknown.
        let mut gate = Gate::new();
        assert_eq!(
            gate.frames(30, [face(6).best("p-ada", 0.29)]),
            vec![at(10, "deny t6 unknown")]
        );
    }

    #[test]
    fn a_face_two_enrolled_people_fit_almost_equally_is_denied_ambiguous() {
        let mut gate = Gate::new();
        let between = face(8).best("p-ada", 0.70).runner_up(0.68);
        let decisions: Vec<Decision> = (0..30)
            .flat_map(|_| gate.frame([between.clone()]))
            .collect();
        assert_eq!(
            decisions,
            vec![Decision::Deny {
                track: Some(8),
                reason: DenyReason::Ambiguous,
                id: Some("p-ada".into()),
                similarity: Some(0.70),
                running_time: FRAME * 10,
            }]
        );

        // A runner-up the margin clears does not stand in the way.
        let mut gate = Gate::new();
        assert_eq!(
            gate.frames(3, [face(9).best("p-ada", 0.70).runner_up(0.64)]),
            vec![at(3, "grant t9 p-ada")]
        );
    }

    #[test]
    fn the_threshold_in_force_follows_the_gallery_and_never_drops_below_the_floor() {
        let mut gate = Gate::new();
        gate.policy.set_threshold(0.60);
        assert_eq!(gate.policy.threshold(), 0.60);
        // 0.55 clears the floor (0.45) but not the threshold a larger gallery needs.
        assert_eq!(
            gate.frames(10, [face(1).best("p-ada", 0.55)]),
            vec![at(10, "deny t1 low-confidence")]
        );
        gate.policy.set_threshold(0.10);
        assert_eq!(gate.policy.threshold(), PolicyConfig::default().threshold);
        assert_eq!(
            gate.frames(3, [face(2).best("p-ada", 0.55)]),
            vec![at(3, "grant t2 p-ada")]
        );
    }

    #[test]
    fn flickering_between_two_identities_is_never_granted() {
        let mut gate = Gate::new();
        let a = face(7).best("p-ada", 0.70);
        let b = face(7).best("p-bob", 0.68);
        let decisions =
            gate.script((0..40).map(|i| vec![if i % 2 == 0 { a.clone() } else { b.clone() }]));
        assert_eq!(decisions, vec![at(10, "deny t7 low-confidence")]);
    }

    #[test]
    fn agreement_needs_consecutive_matching_frames() {
        let mut gate = Gate::new();
        let ada = face(8).best("p-ada", 0.70);
        let below = face(8).best("p-ada", 0.40);
        let nobody = face(8);
        let decisions = gate.script([
            vec![ada.clone()],
            vec![ada.clone()],
            vec![below],
            vec![ada.clone()],
            vec![ada.clone()],
            vec![nobody],
            vec![ada.clone()],
            vec![ada.clone()],
            vec![ada],
        ]);
        assert_eq!(decisions, vec![at(9, "grant t8 p-ada")]);
    }

    #[test]
    fn two_people_at_the_gate_are_denied_once_then_the_one_left_is_granted() {
        let mut gate = Gate::new();
        let ada = face(1)
            .best("p-ada", 0.75)
            .bbox([150.0, 140.0, 100.0, 200.0]);
        let bob = face(2)
            .best("p-bob", 0.74)
            .bbox([390.0, 140.0, 100.0, 200.0]);
        assert_eq!(
            gate.frames(30, [ada.clone(), bob.clone()]),
            vec![at(1, "deny - several-faces")]
        );
        // Bob steps back out of view: Ada is decided on her own frames.
        assert_eq!(
            gate.frames(10, [ada.clone()]),
            vec![at(3, "grant t1 p-ada")]
        );
        // Ada walks through while Bob comes forward again: the same group, no new denial.
        assert_eq!(gate.frames(5, [ada.clone(), bob.clone()]), vec![]);
        // Carol joins them: a new group.
        let carol = face(3)
            .best("p-carol", 0.7)
            .bbox([270.0, 100.0, 100.0, 200.0]);
        assert_eq!(
            gate.frames(5, [ada, bob.clone(), carol]),
            vec![at(1, "deny - several-faces")]
        );
        // Bob alone is still undecided and gets his own decision.
        assert_eq!(gate.frames(10, [bob]), vec![at(3, "grant t2 p-bob")]);
    }

    #[test]
    fn several_faces_that_are_all_decided_are_not_denied() {
        let mut gate = Gate::new();
        let ada = face(1).best("p-ada", 0.75);
        let bob = face(2).best("p-bob", 0.74);
        assert_eq!(gate.frames(3, [ada.clone()]), vec![at(3, "grant t1 p-ada")]);
        assert_eq!(gate.frames(3, [bob.clone()]), vec![at(3, "grant t2 p-bob")]);
        assert_eq!(gate.frames(10, [ada, bob]), vec![]);
    }

    #[test]
    fn faces_outside_the_zone_or_too_small_are_ignored() {
        let mut gate = Gate::new();
        // Centre at x = 50 / 640 = 0.08: left of the zone (0.15..0.85).
        let aside = face(1).best("p-ada", 0.8).bbox([0.0, 140.0, 100.0, 200.0]);
        // 60 px high = 0.125 of the frame: further back in the queue.
        let small = face(2).best("p-bob", 0.8).bbox([300.0, 200.0, 40.0, 60.0]);
        assert_eq!(gate.frames(50, [aside.clone(), small.clone()]), vec![]);

        // They do not count as "several faces" next to the passenger at the gate either.
        let carol = face(3).best("p-carol", 0.8);
        assert_eq!(
            gate.frames(20, [aside, carol, small]),
            vec![at(3, "grant t3 p-carol")]
        );

        // Just inside the zone's right edge (centre at x = 0.84) and just outside (0.86).
        let mut gate = Gate::new();
        let outside = face(5)
            .best("p-eve", 0.8)
            .bbox([500.4, 140.0, 100.0, 200.0]);
        assert_eq!(gate.frames(20, [outside]), vec![]);
        let inside = face(4)
            .best("p-dan", 0.8)
            .bbox([487.6, 140.0, 100.0, 200.0]);
        assert_eq!(gate.frames(3, [inside]), vec![at(3, "grant t4 p-dan")]);
        // Tall enough exactly at min_face_height (96 px of 480).
        let mut gate = Gate::new();
        let just = face(6).best("p-fay", 0.8).bbox([270.0, 200.0, 60.0, 96.0]);
        assert_eq!(gate.frames(3, [just]), vec![at(3, "grant t6 p-fay")]);
    }

    #[test]
    fn a_track_leaving_the_zone_keeps_its_counts() {
        let mut gate = Gate::new();
        let at_gate = face(1).best("p-ada", 0.7);
        let away = at_gate.clone().bbox([0.0, 140.0, 100.0, 200.0]);
        let decisions = gate.script(
            [vec![at_gate.clone()], vec![at_gate.clone()]]
                .into_iter()
                .chain((0..20).map(|_| vec![away.clone()]))
                .chain([vec![at_gate.clone()]]),
        );
        assert_eq!(decisions, vec![at(23, "grant t1 p-ada")]);

        // Frames at the gate toward decide_after_frames also add up across absences.
        let mut gate = Gate::new();
        let stranger = face(2);
        let away = face(2).bbox([0.0, 140.0, 100.0, 200.0]);
        let decisions = gate.script(
            (0..6)
                .map(|_| vec![stranger.clone()])
                .chain((0..20).map(|_| vec![away.clone()]))
                .chain((0..6).map(|_| vec![stranger.clone()])),
        );
        assert_eq!(decisions, vec![at(30, "deny t2 unknown")]);
    }

    #[test]
    fn returning_within_the_window_is_passback_and_after_it_granted() {
        let mut gate = Gate::new();
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "grant t1 p-ada")]
        );
        gate.wait(Duration::from_secs(60));
        let decisions: Vec<Decision> = (0..10)
            .flat_map(|_| gate.frame([face(2).best("p-ada", 0.66)]))
            .collect();
        assert!(matches!(
            decisions.as_slice(),
            [Decision::Deny { track: Some(2), reason: DenyReason::Passback, id: Some(id), similarity: Some(s), .. }]
                if id == "p-ada" && *s == 0.66
        ));
        // The refusal does not restart the window: 120 s after the grant she may pass.
        gate.wait(Duration::from_secs(60));
        assert_eq!(
            gate.frames(3, [face(3).best("p-ada", 0.7)]),
            vec![at(3, "grant t3 p-ada")]
        );
        // Someone else is not affected by her passback.
        assert_eq!(
            gate.frames(3, [face(4).best("p-bob", 0.7)]),
            vec![at(3, "grant t4 p-bob")]
        );
    }

    #[test]
    fn remember_grant_seeds_passback() {
        let mut gate = Gate::new();
        let now = gate.now;
        gate.policy
            .remember_grant("p-ada", now - Duration::from_secs(30));
        gate.policy
            .remember_grant("p-bob", now - Duration::from_secs(200));
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "deny t1 passback")]
        );
        assert_eq!(
            gate.frames(3, [face(2).best("p-bob", 0.7)]),
            vec![at(3, "grant t2 p-bob")]
        );
        // An older record does not replace a newer one.
        gate.policy
            .remember_grant("p-carol", now - Duration::from_secs(10));
        gate.policy
            .remember_grant("p-carol", now - Duration::from_secs(500));
        assert_eq!(
            gate.frames(3, [face(3).best("p-carol", 0.7)]),
            vec![at(3, "deny t3 passback")]
        );
    }

    #[test]
    fn a_clock_stepped_back_does_not_reopen_passback() {
        let mut gate = Gate::new();
        let now = gate.now;
        gate.policy
            .remember_grant("p-ada", now + Duration::from_secs(30));
        gate.policy
            .remember_grant("p-bob", now + Duration::from_secs(600));
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "deny t1 passback")]
        );
        assert_eq!(
            gate.frames(3, [face(2).best("p-bob", 0.7)]),
            vec![at(3, "grant t2 p-bob")]
        );
    }

    #[test]
    fn disabled_identity_is_denied_disabled() {
        let mut gate = Gate::with(PolicyConfig {
            disabled: vec!["p-eve".into()],
            ..PolicyConfig::default()
        });
        assert_eq!(
            gate.frames(20, [face(1).best("p-eve", 0.9)]),
            vec![at(3, "deny t1 disabled")]
        );
        assert_eq!(
            gate.frames(20, [face(2).best("p-ada", 0.9)]),
            vec![at(3, "grant t2 p-ada")]
        );
    }

    #[test]
    fn locked_mode_denies_disabled() {
        let mut gate = Gate::new();
        gate.policy.set_mode(Mode::Locked);
        assert_eq!(gate.policy.mode(), Mode::Locked);
        assert_eq!(
            gate.frames(20, [face(1).best("p-ada", 0.9)]),
            vec![at(3, "deny t1 disabled")]
        );
        // Nothing was charged: back in normal mode she passes on a new track.
        gate.policy.set_mode(Mode::Normal);
        assert_eq!(
            gate.frames(20, [face(2).best("p-ada", 0.9)]),
            vec![at(3, "grant t2 p-ada")]
        );
    }

    #[test]
    fn free_mode_grants_nothing_and_charges_nothing() {
        let mut gate = Gate::new();
        gate.policy.set_mode(Mode::Free);
        assert_eq!(gate.policy.mode(), Mode::Free);
        let ada = face(1).best("p-ada", 0.9);
        assert_eq!(gate.frames(30, [ada.clone()]), vec![]);
        assert_eq!(gate.frames(30, [face(2)]), vec![]);
        assert_eq!(gate.frames(30, [face(3), face(4)]), vec![]);
        gate.policy.set_mode(Mode::Normal);
        // Her free passage was decided (not charged later on the same track) ...
        assert_eq!(gate.frames(30, [ada]), vec![]);
        // ... and left no passback behind.
        assert_eq!(
            gate.frames(3, [face(5).best("p-ada", 0.9)]),
            vec![at(3, "grant t5 p-ada")]
        );
    }

    #[test]
    fn a_pipeline_restart_forgets_tracks_but_not_passback() {
        let mut gate = Gate::new();
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "grant t1 p-ada")]
        );
        // Running time restarts; the new pipeline's tracker numbers tracks from 1 again.
        gate.running_time = Duration::ZERO;
        assert_eq!(
            gate.frames(3, [face(1).best("p-bob", 0.7)]),
            vec![at(3, "grant t1 p-bob")]
        );
        assert_eq!(
            gate.frames(3, [face(2).best("p-ada", 0.7)]),
            vec![at(3, "deny t2 passback")]
        );
    }

    #[test]
    fn a_withdrawn_grant_leaves_no_passback_behind() {
        let mut gate = Gate::new();
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "grant t1 p-ada")]
        );
        // The service dropped that grant (its frame was stale) and decides afresh.
        gate.policy.withdraw_grant("p-ada");
        gate.policy.forget_tracks();
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "grant t1 p-ada")]
        );
    }

    #[test]
    fn max_frame_age_is_bounded_on_both_sides() {
        assert_eq!(
            PolicyConfig::default().max_frame_age(),
            Duration::from_millis(500)
        );
        for bad in [0, MIN_FRAME_AGE_MS - 1, MAX_FRAME_AGE_MS + 1] {
            let error = PolicyConfig {
                max_frame_age_ms: bad,
                ..Default::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                error,
                format!("policy.max_frame_age_ms: must be 67..10000 (got {bad})")
            );
        }
        for fine in [MIN_FRAME_AGE_MS, MAX_FRAME_AGE_MS] {
            PolicyConfig {
                max_frame_age_ms: fine,
                ..Default::default()
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn track_memory_is_bounded() {
        // A decided track still in view (out of the zone) is remembered past the TTL ...
        let mut gate = Gate::new();
        let ada = face(1).best("p-ada", 0.7);
        let away = ada.clone().bbox([0.0, 140.0, 100.0, 200.0]);
        assert_eq!(gate.frames(3, [ada.clone()]), vec![at(3, "grant t1 p-ada")]);
        let frames = (TRACK_TTL.as_millis() / FRAME.as_millis()) as u32 + 100;
        assert_eq!(gate.frames(frames, [away]), vec![]);
        assert_eq!(gate.frames(10, [ada.clone()]), vec![]);
        // ... and forgotten once out of view for longer than the TTL.
        gate.wait(TRACK_TTL + Duration::from_secs(2));
        gate.frame([]);
        assert!(gate.policy.tracks.is_empty());

        // Never more than MAX_TRACKS, the least recently seen dropped first.
        let mut gate = Gate::new();
        for track in 0..(MAX_TRACKS as u64 + 500) {
            gate.frame([face(track)]);
            assert!(gate.policy.tracks.len() <= MAX_TRACKS);
        }
        let last = MAX_TRACKS as u64 + 499;
        assert!(gate.policy.tracks.contains_key(&last));
        assert!(!gate.policy.tracks.contains_key(&0));
    }

    #[test]
    fn config_validation_names_the_key() {
        assert_eq!(PolicyConfig::default().validate(), Ok(()));
        let cases: Vec<(PolicyConfig, &str)> = vec![
            (
                PolicyConfig {
                    threshold: 1.5,
                    ..Default::default()
                },
                "policy.threshold:",
            ),
            (
                PolicyConfig {
                    threshold: f64::NAN,
                    ..Default::default()
                },
                "policy.threshold:",
            ),
            (
                PolicyConfig {
                    low_confidence: -2.0,
                    ..Default::default()
                },
                "policy.low_confidence:",
            ),
            (
                PolicyConfig {
                    max_false_grant_rate: 0.0,
                    ..Default::default()
                },
                "policy.max_false_grant_rate: must lie strictly between 0 and 1",
            ),
            (
                PolicyConfig {
                    max_false_reject_rate: 1.0,
                    ..Default::default()
                },
                "policy.max_false_reject_rate: must lie strictly between 0 and 1",
            ),
            (
                PolicyConfig {
                    min_margin: -0.1,
                    ..Default::default()
                },
                "policy.min_margin: must lie within 0..1",
            ),
            (
                PolicyConfig {
                    low_confidence: 0.5,
                    threshold: 0.4,
                    ..Default::default()
                },
                "policy.low_confidence: must not exceed policy.threshold",
            ),
            (
                PolicyConfig {
                    zone: [0.5, 0.0, 0.7, 1.0],
                    ..Default::default()
                },
                "policy.zone: must lie within 0..1",
            ),
            (
                PolicyConfig {
                    zone: [-0.1, 0.0, 0.5, 1.0],
                    ..Default::default()
                },
                "policy.zone: must lie within 0..1",
            ),
            (
                PolicyConfig {
                    zone: [0.2, 0.0, 0.0, 1.0],
                    ..Default::default()
                },
                "policy.zone:",
            ),
            (
                PolicyConfig {
                    min_face_height: 1.2,
                    ..Default::default()
                },
                "policy.min_face_height:",
            ),
            (
                PolicyConfig {
                    agree_frames: 0,
                    ..Default::default()
                },
                "policy.agree_frames:",
            ),
            (
                PolicyConfig {
                    agree_frames: 5,
                    decide_after_frames: 4,
                    ..Default::default()
                },
                "policy.decide_after_frames:",
            ),
            (
                PolicyConfig {
                    disabled: vec!["p-eve".into(), String::new()],
                    ..Default::default()
                },
                "policy.disabled:",
            ),
        ];
        for (config, prefix) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(prefix), "{error:?} for {config:?}");
        }
        // Edges that are fine: the whole frame, agreement on the last allowed frame.
        PolicyConfig {
            zone: [0.3, 0.0, 0.7, 1.0],
            min_face_height: 0.0,
            agree_frames: 4,
            decide_after_frames: 4,
            threshold: THRESHOLD_FLOOR,
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn a_threshold_below_the_floor_is_refused_with_the_measured_reason() {
        for threshold in [0.0, -0.5, THRESHOLD_FLOOR - 0.01] {
            let error = PolicyConfig {
                threshold,
                low_confidence: -1.0,
                ..Default::default()
            }
            .validate()
            .unwrap_err();
            assert!(
                error.starts_with("policy.threshold: must lie within 0.35..1"),
                "{error}"
            );
            assert!(error.contains("strangers score"), "{error}");
        }
    }

    #[test]
    fn agreement_on_the_last_allowed_frame_still_grants() {
        let mut gate = Gate::with(PolicyConfig {
            agree_frames: 3,
            decide_after_frames: 3,
            ..PolicyConfig::default()
        });
        assert_eq!(
            gate.frames(10, [face(1).best("p-ada", 0.7)]),
            vec![at(3, "grant t1 p-ada")]
        );
    }

    #[test]
    fn config_deserialises_with_defaults_and_refuses_unknown_keys() {
        let config: PolicyConfig =
            serde_json::from_str(r#"{"threshold": 0.5, "disabled": ["p-eve"]}"#).unwrap();
        assert_eq!(
            config,
            PolicyConfig {
                threshold: 0.5,
                disabled: vec!["p-eve".into()],
                ..PolicyConfig::default()
            }
        );
        let error = serde_json::from_str::<PolicyConfig>(r#"{"treshold": 0.5}"#).unwrap_err();
        assert!(error.to_string().contains("treshold"), "{error}");
    }

    #[test]
    fn names_round_trip() {
        for mode in [Mode::Normal, Mode::Locked, Mode::Free] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(Mode::Free.to_string(), "free");
        assert!("open".parse::<Mode>().is_err());
        let reasons = [
            (DenyReason::Unknown, "unknown"),
            (DenyReason::LowConfidence, "low-confidence"),
            (DenyReason::SeveralFaces, "several-faces"),
            (DenyReason::Passback, "passback"),
            (DenyReason::Disabled, "disabled"),
            (DenyReason::PresentationAttack, "presentation-attack"),
        ];
        for (reason, name) in reasons {
            assert_eq!(reason.to_string(), name);
            assert_eq!(name.parse::<DenyReason>(), Ok(reason));
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert!("tailgate".parse::<DenyReason>().is_err());
    }

    fn token_gate(identification: Identification) -> Gate {
        let mut gate = Gate::with(PolicyConfig {
            identification,
            ..PolicyConfig::default()
        });
        gate.policy.set_token_threshold(0.5);
        gate
    }

    fn valid(token: &str, passenger: &str) -> Option<TokenShown> {
        Some(TokenShown {
            token_id: Some(token.into()),
            passenger_id: Some(passenger.into()),
            refusal: None,
        })
    }

    #[test]
    fn a_face_matching_its_token_is_granted_once_and_passback_is_by_token() {
        let mut gate = token_gate(Identification::Token);
        gate.token = valid("t-1", "P-1");
        // Below the gallery's floor would not matter: the 1:1 threshold decides.
        let decisions = gate.frames(5, [face(1).best("P-1", 0.55)]);
        assert_eq!(decisions, [at(3, "grant t1 P-1")]);
        // The same token on another walk-up within the window: passback.
        let decisions = gate.frames(5, [face(2).best("P-1", 0.55)]);
        assert_eq!(decisions, [at(3, "deny t2 passback")]);
        // Another token of the same passenger is another fare.
        gate.token = valid("t-2", "P-1");
        let decisions = gate.frames(5, [face(3).best("P-1", 0.55)]);
        assert_eq!(decisions, [at(3, "grant t3 P-1")]);
    }

    #[test]
    fn a_face_that_does_not_match_the_token_shown_is_denied_token_mismatch() {
        let mut gate = token_gate(Identification::Token);
        gate.token = valid("t-1", "P-1");
        let decisions = gate.frames(12, [face(1).best("P-1", 0.30)]);
        assert_eq!(decisions, [at(10, "deny t1 token-mismatch")]);
    }

    #[test]
    fn a_refused_token_denies_at_once_with_its_reason() {
        for reason in [
            DenyReason::TokenInvalid,
            DenyReason::TokenExpired,
            DenyReason::TokenRevoked,
        ] {
            let mut gate = token_gate(Identification::Token);
            gate.token = Some(TokenShown {
                token_id: None,
                passenger_id: None,
                refusal: Some(reason),
            });
            let decisions = gate.frames(5, [face(1).best("P-1", 0.9)]);
            assert_eq!(decisions, [at(1, &format!("deny t1 {reason}"))]);
        }
    }

    #[test]
    fn without_a_token_token_mode_decides_nothing_and_token_or_gallery_uses_the_gallery() {
        let mut gate = token_gate(Identification::Token);
        assert_eq!(gate.frames(30, [face(1).best("p-ada", 0.9)]), []);
        // The face shows its token at last: its frames count from then.
        gate.token = valid("t-1", "p-ada");
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.9)]),
            [at(3, "grant t1 p-ada")]
        );

        let mut gate = token_gate(Identification::TokenOrGallery);
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.9)]),
            [at(3, "grant t1 p-ada")]
        );
    }

    #[test]
    fn in_gallery_mode_a_token_changes_nothing() {
        let mut gate = Gate::new();
        gate.token = Some(TokenShown {
            token_id: None,
            passenger_id: None,
            refusal: Some(DenyReason::TokenInvalid),
        });
        assert_eq!(
            gate.frames(3, [face(1).best("p-ada", 0.9)]),
            [at(3, "grant t1 p-ada")]
        );
    }

    fn liveness_gate(required: bool) -> Gate {
        let mut gate = Gate::new();
        gate.policy =
            Policy::new(PolicyConfig::default()).with_liveness(LivenessConfig { required });
        gate
    }

    #[test]
    fn an_attack_verdict_denies_presentation_attack_at_once_naming_whom_it_resembles() {
        let mut gate = liveness_gate(true);
        let photo = |verdict| face(1).best("p-ada", 0.72).liveness(Some(verdict));
        let frames = [
            vec![photo(LivenessVerdict::Undecided)],
            vec![photo(LivenessVerdict::Undecided)],
            vec![photo(LivenessVerdict::Undecided)],
            vec![photo(LivenessVerdict::Attack)],
            vec![photo(LivenessVerdict::Live)],
        ];
        assert_eq!(gate.script(frames), [at(4, "deny t1 presentation-attack")]);
        // The denial names whom the photo shows: the journal and the back office see it.
        let mut gate = liveness_gate(true);
        let decisions = gate.frame([face(2)
            .best("p-ada", 0.72)
            .liveness(Some(LivenessVerdict::Attack))]);
        assert!(
            matches!(&decisions[..], [Decision::Deny { reason: DenyReason::PresentationAttack, id: Some(id), similarity: Some(s), .. }] if id == "p-ada" && *s == 0.72),
            "{decisions:?}"
        );
    }

    #[test]
    fn agreement_waits_for_a_live_verdict() {
        let mut gate = liveness_gate(true);
        let ada = |verdict| vec![face(1).best("p-ada", 0.72).liveness(Some(verdict))];
        let mut frames: Vec<_> = (0..5).map(|_| ada(LivenessVerdict::Undecided)).collect();
        frames.push(ada(LivenessVerdict::Live));
        frames.push(ada(LivenessVerdict::Live));
        assert_eq!(gate.script(frames), [at(6, "grant t1 p-ada")]);
    }

    #[test]
    fn agreed_but_never_live_is_denied_presentation_attack_when_the_track_is_decided() {
        let mut gate = liveness_gate(true);
        let decide_after = PolicyConfig::default().decide_after_frames;
        let undecided = face(1)
            .best("p-ada", 0.72)
            .liveness(Some(LivenessVerdict::Undecided));
        assert_eq!(
            gate.frames(decide_after + 5, [undecided]),
            [at(decide_after, "deny t1 presentation-attack")]
        );
        // Nothing proved a stranger live either, but a stranger is a stranger.
        let stranger = face(2)
            .best("p-ada", 0.1)
            .liveness(Some(LivenessVerdict::Undecided));
        assert_eq!(
            gate.frames(decide_after, [stranger]),
            [at(decide_after, "deny t2 unknown")]
        );
    }

    #[test]
    fn without_a_verdict_required_liveness_never_grants_and_optional_decides_as_before() {
        let ada = face(1).best("p-ada", 0.72).liveness(None);
        let decide_after = PolicyConfig::default().decide_after_frames;
        assert_eq!(
            liveness_gate(true).frames(decide_after, [ada.clone()]),
            [at(decide_after, "deny t1 presentation-attack")]
        );
        assert_eq!(
            liveness_gate(false).frames(decide_after, [ada]),
            [at(3, "grant t1 p-ada")]
        );
        // An attack fglive saw still denies when the verdict is not required.
        let photo = face(2)
            .best("p-ada", 0.72)
            .liveness(Some(LivenessVerdict::Attack));
        assert_eq!(
            liveness_gate(false).frames(3, [photo]),
            [at(1, "deny t2 presentation-attack")]
        );
    }

    #[test]
    fn an_attack_without_a_token_is_denied_at_once_in_token_mode_too() {
        let mut gate = token_gate(Identification::Token);
        let photo = face(1)
            .best("p-ada", 0.72)
            .liveness(Some(LivenessVerdict::Attack));
        assert_eq!(
            gate.frames(3, [photo]),
            [at(1, "deny t1 presentation-attack")]
        );
    }

    #[test]
    fn agreed_once_then_never_live_is_a_presentation_attack_even_if_the_run_broke() {
        let mut gate = liveness_gate(true);
        let decide_after = PolicyConfig::default().decide_after_frames;
        let undecided = |similarity| {
            vec![
                face(1)
                    .best("p-ada", similarity)
                    .liveness(Some(LivenessVerdict::Undecided)),
            ]
        };
        let mut frames: Vec<_> = (0..4).map(|_| undecided(0.72)).collect();
        frames.extend((4..decide_after).map(|_| undecided(0.2)));
        assert_eq!(
            gate.script(frames),
            [at(decide_after, "deny t1 presentation-attack")]
        );
    }

    #[test]
    fn an_attack_in_free_passage_is_decided_without_a_denial() {
        let mut gate = liveness_gate(true);
        gate.policy.set_mode(Mode::Free);
        let photo = face(1)
            .best("p-ada", 0.72)
            .liveness(Some(LivenessVerdict::Attack));
        assert_eq!(gate.frames(20, [photo]), vec![]);
    }

    #[test]
    fn liveness_config_requires_a_verdict_by_default_and_refuses_unknown_keys() {
        assert!(LivenessConfig::default().required);
        let off: LivenessConfig = toml::from_str("required = false").unwrap();
        assert!(!off.required);
        let error = toml::from_str::<LivenessConfig>("requird = false").unwrap_err();
        assert!(error.to_string().contains("requird"), "{error}");
    }
}
