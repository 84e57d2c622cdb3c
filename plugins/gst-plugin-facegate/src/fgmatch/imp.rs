// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use facegate_meta::{
    Candidate as FrameCandidate, FrameFace, FrameMessage, Identification, Liveness, Match,
    PixelRect, TokenSighting, TokenVerdict, Track,
};
use facegate_vision::calibration::Calibration;
use facegate_vision::gallery::{Gallery, Match as Candidate};
use facegate_vision::gallery_watch::GalleryWatcher;
use facegate_vision::match_rule::{self, Judgement, MatchRule};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use super::tokens::{IdentificationMode, TokenSide};
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgmatch",
        gst::DebugColorFlags::empty(),
        Some("FaceGate gallery matcher"),
    )
});

/// Negative: follow the gallery model's calibration (the rule of facegate_vision::match_rule).
const DEFAULT_THRESHOLD: f64 = -1.0;
const DEFAULT_MIN_THRESHOLD: f64 = match_rule::DEFAULT_MIN_THRESHOLD;
const DEFAULT_MAX_FALSE_GRANT_RATE: f64 = match_rule::DEFAULT_MAX_FALSE_GRANT_RATE;
const DEFAULT_MIN_MARGIN: f64 = match_rule::DEFAULT_MIN_MARGIN;
const DEFAULT_TOP_K: u32 = 1;
/// The search always looks at two candidates, so that the margin to the best other identity is
/// known even with `top-k=1`.
const MIN_SEARCHED: usize = 2;
const DEFAULT_POLL_INTERVAL_MS: u32 = 1000;
const DEFAULT_POST_FRAMES: bool = false;
const DEFAULT_IDENTIFICATION: IdentificationMode = IdentificationMode::Gallery;
/// How long a token stays shown after its code was last read: a passenger lowers the phone to
/// walk on. One source with facegated's `policy.token_window_s`.
const DEFAULT_TOKEN_WINDOW_MS: u32 = facegate_token::DEFAULT_TOKEN_WINDOW_MS;

#[derive(Clone, Debug)]
struct Settings {
    gallery: Option<String>,
    threshold: f64,
    min_threshold: f64,
    max_false_grant_rate: f64,
    min_margin: f64,
    top_k: u32,
    poll_interval_ms: u32,
    post_frames: bool,
    identification: IdentificationMode,
    trusted_keys: Option<String>,
    revocations: Option<String>,
    token_window_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gallery: None,
            threshold: DEFAULT_THRESHOLD,
            min_threshold: DEFAULT_MIN_THRESHOLD,
            max_false_grant_rate: DEFAULT_MAX_FALSE_GRANT_RATE,
            min_margin: DEFAULT_MIN_MARGIN,
            top_k: DEFAULT_TOP_K,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            post_frames: DEFAULT_POST_FRAMES,
            identification: DEFAULT_IDENTIFICATION,
            trusted_keys: None,
            revocations: None,
            token_window_ms: DEFAULT_TOKEN_WINDOW_MS,
        }
    }
}

/// What one frame's pass reads of the settings, copied out so the lock is not held.
#[derive(Clone, Copy, Debug)]
struct MatchSettings {
    /// Set (not negative): overrides the calibrated threshold.
    fixed_threshold: Option<f64>,
    min_margin: f64,
    top_k: usize,
    post_frames: bool,
}

impl Settings {
    fn for_frame(&self) -> MatchSettings {
        MatchSettings {
            fixed_threshold: (self.threshold >= 0.0).then_some(self.threshold),
            min_margin: self.min_margin,
            top_k: self.top_k as usize,
            post_frames: self.post_frames,
        }
    }

    fn rule(&self) -> MatchRule {
        MatchRule {
            min_threshold: self.min_threshold,
            max_false_grant_rate: self.max_false_grant_rate,
            ..MatchRule::default()
        }
    }
}

/// Where the threshold comes from.
enum Thresholding {
    /// The `threshold` property was set at start: no calibration is read.
    Fixed,
    /// The gallery model's calibration under the rule, the threshold for the current gallery.
    Calibrated {
        calibration: Box<Calibration>,
        rule: MatchRule,
        threshold: f64,
    },
}

/// One embedded face of the current frame, read before the buffer is written.
struct Query {
    bbox: PixelRect,
    track: Option<Track>,
    /// fglive's verdict, passed on to the service in the frame message. A malformed one is
    /// dropped with a warning, as if fglive had not judged the face: under `[liveness] required`
    /// (the default) the service grants no such face.
    liveness: Option<Liveness>,
    /// Offset and length of its embedding in `State::embeddings`.
    offset: usize,
    dim: usize,
}

/// The gallery, for identification `gallery` and `token-or-gallery`.
struct GallerySide {
    gallery: Gallery,
    watcher: Option<GalleryWatcher>,
    thresholding: Thresholding,
}

struct State {
    gallery: Option<GallerySide>,
    /// The passenger tokens, for identification `token` and `token-or-gallery`.
    tokens: Option<TokenSide>,
    /// The identity of the model the faces arrive embedded by (kept between frames).
    face_model: String,
    queries: Vec<Query>,
    embeddings: Vec<f32>,
    scratch: Vec<f32>,
    /// Per query, the gallery's candidates, best first.
    found: Vec<Vec<Candidate>>,
}

#[derive(Default)]
pub struct FaceMatch {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceMatch {
    const NAME: &'static str = "GstFgMatch";
    type Type = super::FaceMatch;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceMatch {
    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                // "reload": look for a new gallery generation now instead of at the next poll.
                glib::subclass::Signal::builder("reload")
                    .action()
                    .class_handler(|args| {
                        let element = args[0]
                            .get::<super::FaceMatch>()
                            .expect("the signal's instance is an fgmatch");
                        element.imp().reload();
                        None
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("gallery")
                    .nick("Gallery")
                    .blurb("Gallery directory (made by `facegatectl enroll`); required for identification gallery and token-or-gallery, unused for token")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Minimum cosine similarity for a face to be matched to an enrolled person; negative: follow the gallery model's calibration (the larger of min-threshold and the threshold that keeps false grants per stranger at max-false-grant-rate for the gallery's size, recomputed at every generation)")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-threshold")
                    .nick("Minimum threshold")
                    .blurb("The lowest threshold the calibration may give (when threshold is negative)")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MIN_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("max-false-grant-rate")
                    .nick("Maximum false-grant rate")
                    .blurb("Target false matches per stranger passage the calibrated threshold keeps under, for the gallery's current size (when threshold is negative)")
                    .minimum(1e-12)
                    .maximum(0.5)
                    .default_value(DEFAULT_MAX_FALSE_GRANT_RATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("min-margin")
                    .nick("Minimum margin")
                    .blurb("How far the best identity's similarity must lie above the best other identity's for a match; a face two people fit about equally is not matched")
                    .minimum(0.0)
                    .maximum(2.0)
                    .default_value(DEFAULT_MIN_MARGIN)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("effective-threshold")
                    .nick("Effective threshold")
                    .blurb("The threshold in force for the gallery in use (above 1: no threshold meets max-false-grant-rate at its size, nothing matches); 0 before start")
                    .minimum(f64::MIN)
                    .maximum(f64::MAX)
                    .default_value(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecUInt::builder("top-k")
                    .nick("Top k")
                    .blurb("Candidates searched per face; above 1 the match message also lists the runners-up (candidate-ids, candidate-similarities)")
                    .minimum(1)
                    .maximum(100)
                    .default_value(DEFAULT_TOP_K)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("poll-interval")
                    .nick("Poll interval")
                    .blurb("Milliseconds between checks for a new gallery generation, which is loaded in the background and switched to between frames; 0 never reloads")
                    .maximum(3_600_000)
                    .default_value(DEFAULT_POLL_INTERVAL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("post-frames")
                    .nick("Post frames")
                    .blurb("Post a facegate-frame element message per frame listing every embedded face, matched or not, with the gallery's best candidate (the gate service sets it)")
                    .default_value(DEFAULT_POST_FRAMES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("generation")
                    .nick("Generation")
                    .blurb("Generation of the gallery in use (0 without a gallery)")
                    .read_only()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("identification", DEFAULT_IDENTIFICATION)
                    .nick("Identification")
                    .blurb("gallery: 1:N against the gallery; token: 1:1 against the template of a signed token the passenger shows (read by fgqr upstream), no gallery; token-or-gallery: a token when one is shown, else the gallery")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("trusted-keys")
                    .nick("Trusted keys")
                    .blurb("Directory of the enrolment offices' public keys (*.pub.pem from `facegatectl token keygen`) whose tokens verify; required for identification token and token-or-gallery")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("revocations")
                    .nick("Revocations")
                    .blurb("The signed revocation list (`facegatectl token revoke`), reloaded when it changes (checked every poll-interval ms); absent: nothing revoked until it appears")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("token-window")
                    .nick("Token window")
                    .blurb("Milliseconds a token stays shown after its code was last read")
                    .minimum(100)
                    .maximum(600_000)
                    .default_value(DEFAULT_TOKEN_WINDOW_MS)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "gallery" => settings.gallery = value.get().expect("type checked upstream"),
            "threshold" => settings.threshold = value.get().expect("type checked upstream"),
            "min-threshold" => settings.min_threshold = value.get().expect("type checked upstream"),
            "max-false-grant-rate" => {
                settings.max_false_grant_rate = value.get().expect("type checked upstream")
            }
            "min-margin" => settings.min_margin = value.get().expect("type checked upstream"),
            "top-k" => settings.top_k = value.get().expect("type checked upstream"),
            "poll-interval" => {
                settings.poll_interval_ms = value.get().expect("type checked upstream")
            }
            "post-frames" => settings.post_frames = value.get().expect("type checked upstream"),
            "identification" => {
                settings.identification = value.get().expect("type checked upstream")
            }
            "trusted-keys" => settings.trusted_keys = value.get().expect("type checked upstream"),
            "revocations" => settings.revocations = value.get().expect("type checked upstream"),
            "token-window" => {
                settings.token_window_ms = value.get().expect("type checked upstream")
            }
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "generation" => self
                .state
                .lock()
                .unwrap()
                .as_ref()
                .and_then(|s| s.gallery.as_ref())
                .map_or(0, |side| side.gallery.generation())
                .to_value(),
            "effective-threshold" => {
                let fixed = self.settings.lock().unwrap().for_frame().fixed_threshold;
                self.state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map_or(0.0, |s| match (&s.gallery, &s.tokens) {
                        (None, Some(tokens)) => tokens.threshold(),
                        _ => s.threshold(fixed),
                    })
                    .to_value()
            }
            name => {
                let settings = self.settings.lock().unwrap();
                match name {
                    "gallery" => settings.gallery.to_value(),
                    "threshold" => settings.threshold.to_value(),
                    "min-threshold" => settings.min_threshold.to_value(),
                    "max-false-grant-rate" => settings.max_false_grant_rate.to_value(),
                    "min-margin" => settings.min_margin.to_value(),
                    "top-k" => settings.top_k.to_value(),
                    "poll-interval" => settings.poll_interval_ms.to_value(),
                    "post-frames" => settings.post_frames.to_value(),
                    "identification" => settings.identification.to_value(),
                    "trusted-keys" => settings.trusted_keys.to_value(),
                    "revocations" => settings.revocations.to_value(),
                    "token-window" => settings.token_window_ms.to_value(),
                    name => unreachable!("unknown property {name}"),
                }
            }
        }
    }
}

impl GstObjectImpl for FaceMatch {}

impl ElementImpl for FaceMatch {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate gallery matcher",
                "Filter/Analyzer/Video",
                "Searches the FAISS gallery for each embedded face, or compares it 1:1 with the template of a passenger token read by fgqr, attaches identity and similarity (facegate-match param) and posts a facegate-match element message per matched face (and, with post-frames, a facegate-frame message per frame)",
                "FaceGate developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(video::filter_pad_templates);
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for FaceMatch {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let identification = Identification::from(settings.identification);
        let gallery = match identification {
            Identification::Token => None,
            Identification::Gallery | Identification::TokenOrGallery => {
                Some(self.open_gallery(&settings)?)
            }
        };
        let tokens = match identification {
            Identification::Gallery => None,
            Identification::Token | Identification::TokenOrGallery => Some(
                TokenSide::open(
                    settings.trusted_keys.as_deref(),
                    settings.revocations.as_deref(),
                    Duration::from_millis(u64::from(settings.token_window_ms)),
                    Duration::from_millis(u64::from(settings.poll_interval_ms)),
                    settings.rule(),
                    (settings.threshold >= 0.0).then_some(settings.threshold),
                )
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)))?,
            ),
        };
        gst::info!(CAT, imp = self, "identification {}", identification);
        *self.state.lock().unwrap() = Some(State {
            gallery,
            tokens,
            face_model: String::new(),
            queries: Vec::with_capacity(16),
            embeddings: Vec::new(),
            scratch: Vec::new(),
            found: Vec::with_capacity(16),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the state joins the watcher thread.
        *self.state.lock().unwrap() = None;
        Ok(())
    }
}

impl VideoFilterImpl for FaceMatch {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().for_frame();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        if let Some(side) = state.gallery.as_mut() {
            self.take_new_generation(side);
        }
        let running_time = self.running_time(frame.buffer().pts());
        if let Some(tokens) = state.tokens.as_mut() {
            if let Some(report) = tokens.poll_revocations() {
                let (ok, detail) = match report {
                    Ok(note) => {
                        gst::info!(CAT, imp = self, "{}", note);
                        (true, note)
                    }
                    Err(e) => {
                        gst::warning!(CAT, imp = self, "{}", e);
                        (false, e.to_string())
                    }
                };
                self.post(
                    gst::Structure::builder(facegate_meta::REVOCATIONS_MESSAGE)
                        .field("ok", ok)
                        .field("detail", detail)
                        .build(),
                );
            }
            tokens.take_codes(video::buffer_mut(frame), running_time);
        }

        self.read_queries(frame.buffer(), state)?;
        // A token counts only on frames with a face: its model must be the faces' embedder.
        let sighting = match (&mut state.tokens, state.queries.is_empty()) {
            (Some(tokens), false) => {
                tokens.shown(running_time, &state.face_model).map_err(|e| {
                    gst::element_imp_error!(self, gst::LibraryError::Settings, ("{}", e));
                    gst::FlowError::Error
                })?
            }
            _ => None,
        };
        let by_token = sighting
            .as_ref()
            .is_some_and(|s| s.verdict == TokenVerdict::Valid);
        state.found.clear();
        if let (true, Some(tokens)) = (by_token, &state.tokens) {
            for query in &state.queries {
                let embedding = &state.embeddings[query.offset..query.offset + query.dim];
                state
                    .found
                    .push(tokens.candidate(embedding).into_iter().collect());
            }
        } else if let (Some(side), true) = (&mut state.gallery, sighting.is_none()) {
            let dim = side.gallery.dim() as usize;
            for query in &state.queries {
                // In range: every query's embedding was checked to have the gallery's dimension.
                let embedding = &state.embeddings[query.offset..query.offset + dim];
                let found = side
                    .gallery
                    .search(embedding, settings.top_k.max(MIN_SEARCHED))
                    .map_err(|e| {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("gallery search failed: {}", e)
                        );
                        gst::FlowError::Error
                    })?;
                gst::trace!(
                    CAT,
                    imp = self,
                    "best {:?}",
                    found.first().map(|m| (&m.id, m.similarity))
                );
                state.found.push(found);
            }
        } else {
            // A refused token, or no token and no gallery: nobody to match against.
            state.found.extend(state.queries.iter().map(|_| Vec::new()));
        }

        let generation = state.generation();
        let threshold = match (by_token, &state.tokens) {
            (true, Some(tokens)) => tokens.threshold(),
            _ => state.threshold(settings.fixed_threshold),
        };
        let mut results = state.found.iter();
        facegate_meta::for_each_face_mut(video::buffer_mut(frame), |face| {
            if face.as_ref().embedding_bytes().ok().flatten().is_none() {
                return;
            }
            if let Some(best) = results
                .next()
                .and_then(|found| matched(found, threshold, settings.min_margin))
            {
                face.set_match(&as_match(best, generation));
            }
        });
        self.post_messages(frame, state, &settings, threshold, running_time, sighting);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl FaceMatch {
    /// Opens the `gallery` directory with its thresholding and watcher.
    fn open_gallery(&self, settings: &Settings) -> Result<GallerySide, gst::ErrorMessage> {
        let dir = settings
            .gallery
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("no gallery set: set fgmatch's gallery property to a gallery directory (or identification=token)")
                )
            })?;
        let gallery = Gallery::open(&dir)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)))?;
        let mut thresholding = if settings.threshold >= 0.0 {
            Thresholding::Fixed
        } else {
            let rule = settings.rule();
            let calibration =
                match_rule::find_calibration(&match_rule::calibration_dir(), gallery.model())
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::ResourceError::NotFound,
                            ("{e}; or set fgmatch's threshold")
                        )
                    })?;
            Thresholding::Calibrated {
                calibration: Box::new(calibration),
                rule,
                threshold: f64::INFINITY,
            }
        };
        self.follow_gallery_size(&mut thresholding, &gallery)?;
        gst::info!(
            CAT,
            imp = self,
            "gallery {} generation {}: {} people",
            dir.display(),
            gallery.generation(),
            gallery.len()
        );
        let watcher = match settings.poll_interval_ms {
            0 => None,
            ms => Some(
                GalleryWatcher::follow(&gallery, Duration::from_millis(ms as u64)).map_err(
                    |e| {
                        gst::error_msg!(
                            gst::CoreError::Thread,
                            ("cannot start the gallery watcher: {}", e)
                        )
                    },
                )?,
            ),
        };
        Ok(GallerySide {
            gallery,
            watcher,
            thresholding,
        })
    }

    /// The running time of a buffer at `pts` in the current segment.
    fn running_time(&self, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
        pts.and_then(|pts| {
            self.obj()
                .segment()
                .downcast_ref::<gst::ClockTime>()
                .and_then(|segment| segment.to_running_time(pts))
        })
    }

    /// Reads every embedded face of the buffer into `state.queries` and `state.embeddings`;
    /// `state.face_model` keeps the embedder's identity. With a gallery, an embedding of
    /// another model or dimension is a broken upstream, not a face to skip.
    fn read_queries(
        &self,
        buffer: &gst::BufferRef,
        state: &mut State,
    ) -> Result<(), gst::FlowError> {
        state.queries.clear();
        state.embeddings.clear();
        for face in facegate_meta::faces(buffer) {
            let model = match face.embedding_into(&mut state.scratch) {
                Ok(Some(model)) => model,
                Ok(None) => continue,
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("malformed face embedding from upstream: {}", e)
                    );
                    return Err(gst::FlowError::Error);
                }
            };
            if let Some(side) = &state.gallery {
                if model != side.gallery.model() {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::WrongType,
                        (
                            "gallery {} holds embeddings of model {}, but faces arrive embedded by {}: enrol with the gate's model",
                            side.gallery.dir().display(),
                            side.gallery.model(),
                            model
                        )
                    );
                    return Err(gst::FlowError::Error);
                }
                let dim = side.gallery.dim() as usize;
                if state.scratch.len() != dim {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "a face arrives with a {}-dimensional embedding of model {}, but gallery {} holds {}-dimensional embeddings",
                            state.scratch.len(),
                            model,
                            side.gallery.dir().display(),
                            dim
                        )
                    );
                    return Err(gst::FlowError::Error);
                }
            }
            if state.face_model != model {
                state.face_model.clear();
                state.face_model.push_str(model);
            }
            state.queries.push(Query {
                bbox: face.bbox(),
                track: face.track().ok().flatten(),
                liveness: face.liveness().unwrap_or_else(|err| {
                    gst::warning!(CAT, imp = self, "face without a liveness verdict: {err}");
                    None
                }),
                offset: state.embeddings.len(),
                dim: state.scratch.len(),
            });
            state.embeddings.extend_from_slice(&state.scratch);
        }
        Ok(())
    }

    /// The `reload` action: the watcher looks at the gallery now; a new generation is switched
    /// to between frames once loaded, as after a poll. Without a watcher (`poll-interval=0`, or
    /// not started) there is nothing to reload.
    fn reload(&self) {
        let guard = self.state.lock().unwrap();
        match guard
            .as_ref()
            .and_then(|state| state.gallery.as_ref())
            .and_then(|side| side.watcher.as_ref())
        {
            Some(watcher) => {
                gst::debug!(CAT, imp = self, "reload: checking the gallery now");
                watcher.check_now();
            }
            _ => gst::info!(
                CAT,
                imp = self,
                "reload: the gallery is not followed (not started, or poll-interval=0)"
            ),
        }
    }

    /// Switches to a generation the watcher has loaded; a broken one is reported and the last
    /// good gallery stays in use.
    fn take_new_generation(&self, state: &mut GallerySide) {
        let Some(update) = state.watcher.as_ref().and_then(GalleryWatcher::try_update) else {
            return;
        };
        match update {
            Ok(gallery) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "switched to gallery generation {} ({} people)",
                    gallery.generation(),
                    gallery.len()
                );
                if let Err(e) = self.follow_gallery_size(&mut state.thresholding, &gallery) {
                    // The rule was checked at start; nothing matches rather than a guess.
                    gst::warning!(CAT, imp = self, "{}: nothing will match", e);
                    if let Thresholding::Calibrated { threshold, .. } = &mut state.thresholding {
                        *threshold = f64::INFINITY;
                    }
                }
                state.gallery = gallery;
            }
            Err(e) => {
                // In the debug log at WARNING too: a bus message is gone once an application
                // has popped it.
                gst::warning!(
                    CAT,
                    imp = self,
                    "keeping gallery generation {}: {}",
                    state.gallery.generation(),
                    e
                );
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Read,
                    (
                        "keeping gallery generation {}: {}",
                        state.gallery.generation(),
                        e
                    )
                );
            }
        }
    }

    /// Recomputes the calibrated threshold for `gallery`'s size.
    fn follow_gallery_size(
        &self,
        thresholding: &mut Thresholding,
        gallery: &Gallery,
    ) -> Result<(), gst::ErrorMessage> {
        let Thresholding::Calibrated {
            calibration,
            rule,
            threshold,
        } = thresholding
        else {
            return Ok(());
        };
        let standing = rule
            .standing(calibration, gallery.len() as u64)
            .map_err(|e| {
                gst::error_msg!(
                    gst::LibraryError::Settings,
                    ("max-false-grant-rate {}: {}", rule.max_false_grant_rate, e)
                )
            })?;
        if standing.threshold != *threshold {
            gst::info!(
                CAT,
                imp = self,
                "threshold {:.4} for {} people (expected false grants per stranger {:?}, target {})",
                standing.threshold,
                gallery.len(),
                standing.expected_false_grant_rate,
                rule.max_false_grant_rate
            );
        }
        *threshold = standing.threshold;
        Ok(())
    }

    /// A `facegate-match` message per matched face, then, with `post-frames`, one
    /// `facegate-frame` message with every embedded face of the frame (matched or not).
    fn post_messages(
        &self,
        frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
        state: &State,
        settings: &MatchSettings,
        threshold: f64,
        running_time: Option<gst::ClockTime>,
        token: Option<TokenSighting>,
    ) {
        let pts = frame.buffer().pts();
        let generation = state.generation();
        for (query, found) in state.queries.iter().zip(&state.found) {
            let Some(best) = matched(found, threshold, settings.min_margin) else {
                continue;
            };
            let mut structure = facegate_meta::match_message_structure(
                &as_match(best, generation),
                query.bbox,
                query.track,
                pts,
                running_time,
            );
            if settings.top_k > 1 {
                let listed = || found.iter().take(settings.top_k);
                structure.set(
                    "candidate-ids",
                    gst::Array::new(listed().map(|c| c.id.as_str())),
                );
                structure.set(
                    "candidate-similarities",
                    gst::Array::new(listed().map(|c| c.similarity as f64)),
                );
            }
            self.post(structure);
        }
        if !settings.post_frames {
            return;
        }
        let faces = state
            .queries
            .iter()
            .zip(&state.found)
            .map(|(query, found)| FrameFace {
                track_id: query.track.map(|track| track.id),
                bbox: query.bbox,
                best: found.first().map(|best| FrameCandidate {
                    id: best.id.clone(),
                    label: best.label.clone(),
                    similarity: best.similarity as f64,
                }),
                runner_up_similarity: runner_up(found).map(|c| c.similarity as f64),
                matched: matched(found, threshold, settings.min_margin).is_some(),
                liveness: query.liveness.clone(),
            })
            .collect();
        let message = FrameMessage {
            running_time,
            pts,
            width: frame.width(),
            height: frame.height(),
            generation,
            gallery_size: state
                .gallery
                .as_ref()
                .map_or(0, |side| side.gallery.len() as u64),
            faces,
            token,
        };
        let _ = self.obj().post_message(message.to_message(&*self.obj()));
    }

    fn post(&self, structure: gst::Structure) {
        let message = gst::message::Element::builder(structure)
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(message);
    }
}

impl State {
    /// The gallery's threshold in force: the property's when set, else the calibrated one;
    /// without a gallery nothing matches by it.
    fn threshold(&self, fixed: Option<f64>) -> f64 {
        match (self.gallery.as_ref().map(|side| &side.thresholding), fixed) {
            (None, _) => f64::INFINITY,
            (_, Some(fixed)) => fixed,
            (Some(Thresholding::Calibrated { threshold, .. }), None) => *threshold,
            // Started with a threshold that was unset since: match nobody until restarted.
            (Some(Thresholding::Fixed), None) => f64::INFINITY,
        }
    }

    /// The gallery generation in use; 0 without a gallery.
    fn generation(&self) -> u64 {
        self.gallery
            .as_ref()
            .map_or(0, |side| side.gallery.generation())
    }
}

/// The best candidate when it clears the threshold and the margin (the rule the gate applies).
fn matched(found: &[Candidate], threshold: f64, min_margin: f64) -> Option<&Candidate> {
    let best = found.first()?;
    let judgement = match_rule::judge(
        Some(best.similarity as f64),
        runner_up(found).map(|c| c.similarity as f64),
        threshold,
        min_margin,
    );
    (judgement == Judgement::Matched).then_some(best)
}

/// The best candidate of another identity than the best's.
fn runner_up(found: &[Candidate]) -> Option<&Candidate> {
    let best = found.first()?;
    found.iter().skip(1).find(|c| c.id != best.id)
}

fn as_match(candidate: &Candidate, generation: u64) -> Match {
    Match {
        id: candidate.id.clone(),
        label: candidate.label.clone(),
        similarity: candidate.similarity as f64,
        generation,
    }
}
