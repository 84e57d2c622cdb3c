use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use facegate_meta::{Match, PixelRect, Track};
use facegate_vision::gallery::{Gallery, Match as Candidate};
use facegate_vision::gallery_watch::GalleryWatcher;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgmatch",
        gst::DebugColorFlags::empty(),
        Some("FaceGate gallery matcher"),
    )
});

/// Between the highest different-person similarity (about 0.27) and the lowest same-person one
/// (about 0.60) measured on the development photos, and above OpenCV's published 0.363 for
/// SFace: a gate must not open for the wrong person.
const DEFAULT_THRESHOLD: f64 = 0.45;
const DEFAULT_TOP_K: u32 = 1;
const DEFAULT_POLL_INTERVAL_MS: u32 = 1000;

#[derive(Clone, Debug)]
struct Settings {
    gallery: Option<String>,
    threshold: f64,
    top_k: u32,
    poll_interval_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gallery: None,
            threshold: DEFAULT_THRESHOLD,
            top_k: DEFAULT_TOP_K,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
        }
    }
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
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FaceMatch {
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
                    .blurb("Minimum cosine similarity for a face to be matched to an enrolled person")
                    .minimum(-1.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_THRESHOLD)
                    .mutable_playing()
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
            "top-k" => settings.top_k = value.get().expect("type checked upstream"),
            "poll-interval" => {
                settings.poll_interval_ms = value.get().expect("type checked upstream")
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
                .map_or(0, |s| s.gallery.generation())
                .to_value(),
            name => {
                let settings = self.settings.lock().unwrap();
                match name {
                    "gallery" => settings.gallery.to_value(),
                    "threshold" => settings.threshold.to_value(),
                    "top-k" => settings.top_k.to_value(),
                    "poll-interval" => settings.poll_interval_ms.to_value(),
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
                "Searches the FAISS gallery for each embedded face, attaches identity and similarity (facegate-match param) and posts a facegate-match element message per matched face",
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

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (threshold, top_k) = {
            let settings = self.settings.lock().unwrap();
            (settings.threshold, settings.top_k as usize)
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        self.take_new_generation(state);

        state.queries.clear();
        state.embeddings.clear();
        for face in facegate_meta::faces(buffer) {
            let model = match face.embedding_into(&mut state.scratch) {
                Ok(Some(model)) => model,
                Ok(None) => continue,
                Err(e) => {
                    gst::warning!(CAT, imp = self, "unreadable embedding: {e}");
                    continue;
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
            let embedding = &state.embeddings[query.offset..query.offset + dim];
            let found = state.gallery.search(embedding, top_k).map_err(|e| {
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
        let mut results = state.found.iter();
        facegate_meta::for_each_face_mut(buffer, |face| {
            if face.as_ref().embedding_bytes().ok().flatten().is_none() {
                return;
            }
            if let Some(best) = results.next().and_then(|found| matched(found, threshold)) {
                face.set_match(&as_match(best, generation));
            }
        });
        self.post_messages(buffer, state, threshold, top_k);
        Ok(gst::FlowSuccess::Ok)
    }
}

impl FaceMatch {
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
                state.gallery = gallery;
            }
            Err(e) => {
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

    /// A `facegate-match` message per matched face, then one `facegate-frame` message with
    /// every embedded face of the frame (matched or not) for the gate service.
    fn post_messages(&self, buffer: &gst::BufferRef, state: &State, threshold: f64, top_k: usize) {
        let pts = buffer.pts();
        let running_time = pts.and_then(|pts| {
            self.obj()
                .segment()
                .downcast_ref::<gst::ClockTime>()
                .and_then(|segment| segment.to_running_time(pts))
        });
        let generation = state.gallery.generation();
        let mut faces = Vec::with_capacity(state.queries.len());
        for (query, found) in state.queries.iter().zip(&state.found) {
            let best = found.first();
            let mut face = gst::Structure::builder(facegate_meta::FRAME_FACE)
                .field("x", query.bbox.0)
                .field("y", query.bbox.1)
                .field("width", query.bbox.2)
                .field("height", query.bbox.3)
                .field("matched", matched(found, threshold).is_some())
                .build();
            if let Some(track) = query.track {
                face.set("track-id", track.id);
            }
            if let Some(best) = best {
                face.set("best-id", best.id.as_str());
                face.set("best-label", best.label.as_str());
                face.set("best-similarity", best.similarity as f64);
            }
            faces.push(face.to_send_value());
            let Some(best) = matched(found, threshold) else {
                continue;
            };
            let mut structure = facegate_meta::match_message_structure(
                &as_match(best, generation),
                query.bbox,
                query.track,
                pts,
                running_time,
            );
            if top_k > 1 {
                structure.set(
                    "candidate-ids",
                    gst::Array::new(found.iter().map(|c| c.id.as_str())),
                );
                structure.set(
                    "candidate-similarities",
                    gst::Array::new(found.iter().map(|c| c.similarity as f64)),
                );
            }
            self.post(structure);
        }
        let (width, height) = self.frame_size();
        let mut frame = gst::Structure::builder(facegate_meta::FRAME_MESSAGE)
            .field("width", width)
            .field("height", height)
            .field("generation", generation)
            .field("faces", gst::Array::from_values(faces))
            .build();
        if let Some(pts) = pts {
            frame.set("pts", pts.nseconds());
        }
        if let Some(running_time) = running_time {
            frame.set("running-time", running_time.nseconds());
        }
        self.post(frame);
    }

    fn post(&self, structure: gst::Structure) {
        let message = gst::message::Element::builder(structure)
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(message);
    }

    fn frame_size(&self) -> (u32, u32) {
        self.obj()
            .sink_pad()
            .current_caps()
            .and_then(|caps| gst_video::VideoInfo::from_caps(&caps).ok())
            .map_or((0, 0), |info| (info.width(), info.height()))
    }
}

/// The best candidate when it clears the threshold.
fn matched(found: &[Candidate], threshold: f64) -> Option<&Candidate> {
    found
        .first()
        .filter(|best| best.similarity as f64 >= threshold)
}

fn as_match(candidate: &Candidate, generation: u64) -> Match {
    Match {
        id: candidate.id.clone(),
        label: candidate.label.clone(),
        similarity: candidate.similarity as f64,
        generation,
    }
}
