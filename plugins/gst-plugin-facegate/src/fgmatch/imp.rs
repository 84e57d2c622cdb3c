// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use facegate_meta::{
    Candidate as FrameCandidate, FrameFace, FrameMessage, Match, PixelRect, Track,
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
    /// Offset of its embedding in `State::embeddings`.
    offset: usize,
}

struct State {
    gallery: Gallery,
    watcher: Option<GalleryWatcher>,
    thresholding: Thresholding,
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
                    .blurb("Gallery directory (made by `facegatectl enroll`); required")
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
                    .blurb("Generation of the gallery in use")
                    .read_only()
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
                .map_or(0, |s| s.gallery.generation())
                .to_value(),
            "effective-threshold" => {
                let fixed = self.settings.lock().unwrap().for_frame().fixed_threshold;
                self.state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map_or(0.0, |s| s.threshold(fixed))
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
                "Searches the FAISS gallery for each embedded face, attaches identity and similarity (facegate-match param) and posts a facegate-match element message per matched face (and, with post-frames, a facegate-frame message per frame)",
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
        let dir = settings
            .gallery
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("no gallery set: set fgmatch's gallery property to a gallery directory")
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
        *self.state.lock().unwrap() = Some(State {
            gallery,
            watcher,
            thresholding,
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
        self.take_new_generation(state);

        state.queries.clear();
        state.embeddings.clear();
        for face in facegate_meta::faces(frame.buffer()) {
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
            if model != state.gallery.model() {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::WrongType,
                    (
                        "gallery {} holds embeddings of model {}, but faces arrive embedded by {}: enrol with the gate's model",
                        state.gallery.dir().display(),
                        state.gallery.model(),
                        model
                    )
                );
                return Err(gst::FlowError::Error);
            }
            // The gallery's search takes exactly its own dimension: anything else is a broken
            // upstream, not a face to skip.
            let dim = state.gallery.dim() as usize;
            if state.scratch.len() != dim {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "a face arrives with a {}-dimensional embedding of model {}, but gallery {} holds {}-dimensional embeddings",
                        state.scratch.len(),
                        model,
                        state.gallery.dir().display(),
                        dim
                    )
                );
                return Err(gst::FlowError::Error);
            }
            state.queries.push(Query {
                bbox: face.bbox(),
                track: face.track().ok().flatten(),
                offset: state.embeddings.len(),
            });
            state.embeddings.extend_from_slice(&state.scratch);
        }

        state.found.clear();
        let dim = state.gallery.dim() as usize;
        for query in &state.queries {
            // In range: every query's embedding was checked to have the gallery's dimension.
            let embedding = &state.embeddings[query.offset..query.offset + dim];
            let found = state
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

        let generation = state.gallery.generation();
        let threshold = state.threshold(settings.fixed_threshold);
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
        self.post_messages(frame, state, &settings);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl FaceMatch {
    /// The `reload` action: the watcher looks at the gallery now; a new generation is switched
    /// to between frames once loaded, as after a poll. Without a watcher (`poll-interval=0`, or
    /// not started) there is nothing to reload.
    fn reload(&self) {
        match self.state.lock().unwrap().as_ref() {
            Some(State {
                watcher: Some(watcher),
                ..
            }) => {
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
    fn take_new_generation(&self, state: &mut State) {
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
    ) {
        let pts = frame.buffer().pts();
        let running_time = pts.and_then(|pts| {
            self.obj()
                .segment()
                .downcast_ref::<gst::ClockTime>()
                .and_then(|segment| segment.to_running_time(pts))
        });
        let generation = state.gallery.generation();
        let threshold = state.threshold(settings.fixed_threshold);
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
            })
            .collect();
        let message = FrameMessage {
            running_time,
            pts,
            width: frame.width(),
            height: frame.height(),
            generation,
            gallery_size: state.gallery.len() as u64,
            faces,
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
    /// The threshold in force: the property's when set, else the calibrated one.
    fn threshold(&self, fixed: Option<f64>) -> f64 {
        match (&self.thresholding, fixed) {
            (_, Some(fixed)) => fixed,
            (Thresholding::Calibrated { threshold, .. }, None) => *threshold,
            // Started with a threshold that was unset since: match nobody until restarted.
            (Thresholding::Fixed, None) => f64::INFINITY,
        }
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
