// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use facegate_vision::embedding_cache::{EmbeddingCache, RefreshPolicy};
use facegate_vision::fusion::{self, FrameQuality};
use facegate_vision::{Embedder, runtime};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::{model, video};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgembed",
        gst::DebugColorFlags::empty(),
        Some("FaceGate face embedder"),
    )
});

const DEFAULT_REFRESH_INTERVAL: u32 = 15;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_FUSION_FRAMES: u32 = fusion::DEFAULT_FUSION_FRAMES as u32;
/// Frames after which an unseen track's cached embedding is dropped.
const TRACK_IDLE_FRAMES: u64 = 300;

#[derive(Clone, Debug)]
struct Settings {
    model: Option<String>,
    refresh_interval: u32,
    fusion_frames: u32,
    threads: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: None,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            fusion_frames: DEFAULT_FUSION_FRAMES,
            threads: DEFAULT_THREADS,
        }
    }
}

/// What the embedding pass needs of one face, read before the embeddings are written.
#[derive(Clone, Copy, Debug)]
struct FaceInput {
    landmarks: Option<[[f32; 2]; facegate_meta::LANDMARKS]>,
    track: Option<u64>,
    width: f32,
}

struct State {
    embedder: Embedder,
    cache: EmbeddingCache,
    frames: u64,
    inputs: Vec<FaceInput>,
    /// One embedding per face, back to back.
    embeddings: Vec<f32>,
    ready: Vec<bool>,
}

#[derive(Default)]
pub struct FaceEmbed {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Model runs since start, readable as `faces-embedded`.
    faces_embedded: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceEmbed {
    const NAME: &'static str = "GstFgEmbed";
    type Type = super::FaceEmbed;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceEmbed {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(&format!(
                        "Path of the ONNX face embedder, its model card <stem>.card.toml beside it; unset: ${}/{} (SFace; or {}/{})",
                        runtime::MODEL_DIR_ENV,
                        runtime::DEFAULT_EMBEDDER_FILE,
                        runtime::SYSTEM_MODEL_DIR,
                        runtime::DEFAULT_EMBEDDER_FILE
                    ))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("refresh-interval")
                    .nick("Refresh interval")
                    .blurb("Frames after which a tracked face is embedded again (also early when it has grown by 30%); 0 embeds every face on every frame. Untracked faces are always embedded")
                    .maximum(100_000)
                    .default_value(DEFAULT_REFRESH_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("fusion-frames")
                    .nick("Fusion frames")
                    .blurb("A tracked face is matched with the fusion of its best embeddings: the quality-weighted mean of up to this many, weighed by eye distance, how frontal and how sharp the face is; an embedding unlike the track's restarts it. 1: each embedding alone")
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_FUSION_FRAMES)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Inference threads (0: ONNX Runtime's choice, one per core)")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("faces-embedded")
                    .nick("Faces embedded")
                    .blurb("How many times the embedding model has run since the element started")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model = value.get().expect("type checked upstream"),
            "refresh-interval" => {
                settings.refresh_interval = value.get().expect("type checked upstream")
            }
            "fusion-frames" => settings.fusion_frames = value.get().expect("type checked upstream"),
            "threads" => settings.threads = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "model" => settings.model.to_value(),
            "refresh-interval" => settings.refresh_interval.to_value(),
            "fusion-frames" => settings.fusion_frames.to_value(),
            "threads" => settings.threads.to_value(),
            "faces-embedded" => self.faces_embedded.load(Ordering::Relaxed).to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceEmbed {}

impl ElementImpl for FaceEmbed {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate face embedder",
                "Filter/Analyzer/Video",
                "Aligns each face region from its five landmarks and attaches a unit-length SFace embedding (facegate-embedding param)",
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

impl BaseTransformImpl for FaceEmbed {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let path = model::resolve(settings.model.as_deref(), runtime::default_embedder_path);
        let embedder = Embedder::load(&path, settings.threads as usize)
            .map_err(|e| model::error_message(&e))?;
        gst::info!(
            CAT,
            imp = self,
            "loaded {} ({} dimensions)",
            embedder.identity(),
            embedder.dim()
        );
        let card = &embedder.card().model;
        if !card.commercial_use {
            // On the bus, not only in the debug log: whoever runs the pipeline must hear it.
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "embedder {} is licensed for non-commercial use only ({}): for evaluation, never on a gate that charges fares",
                    embedder.identity(),
                    card.licence
                )
            );
        }
        self.faces_embedded.store(0, Ordering::Relaxed);
        *self.state.lock().unwrap() = Some(State {
            embedder,
            cache: EmbeddingCache::new(),
            frames: 0,
            inputs: Vec::with_capacity(16),
            embeddings: Vec::new(),
            ready: Vec::with_capacity(16),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // Track ids restart with a new stream; their cached embeddings must not leak across.
        if matches!(
            event.view(),
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
        ) && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            state.cache.clear();
        }
        self.parent_sink_event(event)
    }
}

impl VideoFilterImpl for FaceEmbed {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let policy = {
            let settings = self.settings.lock().unwrap();
            RefreshPolicy {
                interval: u64::from(settings.refresh_interval),
                fusion_frames: settings.fusion_frames as usize,
                ..RefreshPolicy::default()
            }
        };
        let mut guard = self.state.lock().unwrap();
        let State {
            embedder,
            cache,
            frames,
            inputs,
            embeddings,
            ready,
        } = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let frame_number = *frames;
        *frames += 1;

        inputs.clear();
        for face in facegate_meta::faces(frame.buffer()) {
            let landmarks = face.landmarks().unwrap_or_else(|e| {
                gst::warning!(CAT, imp = self, "face without usable landmarks: {e}");
                None
            });
            let track = face.track().ok().flatten().map(|t| t.id);
            inputs.push(FaceInput {
                landmarks,
                track,
                width: face.bbox().2 as f32,
            });
        }
        let dim = embedder.dim();
        embeddings.resize(inputs.len() * dim, 0.0);
        ready.clear();
        ready.resize(inputs.len(), false);

        let image = video::vision_frame(frame).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
            gst::FlowError::from(e)
        })?;
        let mut computed = 0;
        for ((input, slot), done) in inputs
            .iter()
            .zip(embeddings.chunks_exact_mut(dim))
            .zip(ready.iter_mut())
        {
            let Some(landmarks) = input.landmarks else {
                continue;
            };
            if let Some(cached) = input
                .track
                .and_then(|t| cache.fresh(t, frame_number, input.width, &policy))
            {
                slot.copy_from_slice(cached);
                *done = true;
                continue;
            }
            match embedder.embed(&image, &landmarks, slot) {
                Ok(()) => {
                    computed += 1;
                    *done = true;
                    if let Some(track) = input.track {
                        let quality = FrameQuality::of(&landmarks, embedder.crop_sharpness());
                        let fused =
                            cache.store(track, frame_number, input.width, slot, quality, &policy);
                        slot.copy_from_slice(fused);
                        if let Some(evidence) = cache.evidence(track) {
                            gst::trace!(
                                CAT,
                                imp = self,
                                "track {track}: {} frames fused, {} restarts, {quality:?}",
                                evidence.fused_frames(),
                                evidence.restarts()
                            );
                        }
                    }
                }
                Err(e) => gst::warning!(CAT, imp = self, "face not embedded: {e}"),
            }
        }
        cache.evict_idle(frame_number, TRACK_IDLE_FRAMES);
        self.faces_embedded.fetch_add(computed, Ordering::Relaxed);
        gst::trace!(
            CAT,
            imp = self,
            "{} faces, {computed} embedded",
            inputs.len()
        );

        let model = embedder.identity();
        let mut slots = embeddings.chunks_exact(dim).zip(ready.iter());
        facegate_meta::for_each_face_mut(video::buffer_mut(frame), |face| {
            if let Some((embedding, true)) = slots.next() {
                face.set_embedding(model, embedding);
            }
        });
        Ok(gst::FlowSuccess::Ok)
    }
}
