// SPDX-License-Identifier: MIT OR Apache-2.0
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{LazyLock, Mutex};

use facegate_meta::dump::FrameLine;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgmetadump",
        gst::DebugColorFlags::empty(),
        Some("FaceGate metadata dump"),
    )
});

const DEFAULT_LOCATION: &str = "-";
const DEFAULT_EMBEDDINGS: bool = false;

#[derive(Clone, Debug)]
struct Settings {
    location: String,
    embeddings: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: DEFAULT_LOCATION.into(),
            embeddings: DEFAULT_EMBEDDINGS,
        }
    }
}

struct State {
    out: BufWriter<Box<dyn Write + Send>>,
}

#[derive(Default)]
pub struct FaceMetaDump {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceMetaDump {
    const NAME: &'static str = "GstFgMetaDump";
    type Type = super::FaceMetaDump;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceMetaDump {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("File to write the JSON lines to (created or truncated); \"-\" writes to standard output")
                    .default_value(Some(DEFAULT_LOCATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("embeddings")
                    .nick("Embeddings")
                    .blurb("Include each face's embedding vector in its record")
                    .default_value(DEFAULT_EMBEDDINGS)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => {
                let location: Option<String> = value.get().expect("type checked upstream");
                settings.location = location.unwrap_or_else(|| DEFAULT_LOCATION.into());
            }
            "embeddings" => settings.embeddings = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => settings.location.to_value(),
            "embeddings" => settings.embeddings.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceMetaDump {}

impl ElementImpl for FaceMetaDump {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate metadata dump",
                "Filter/Analyzer/Video",
                "Passes video through and writes each frame's face records (box, score, landmarks, track, match) as one JSON line",
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

impl BaseTransformImpl for FaceMetaDump {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let location = self.settings.lock().unwrap().location.clone();
        let sink: Box<dyn Write + Send> = if location == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(File::create(&location).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ("cannot write metadata to {}: {}", location, e)
                )
            })?)
        };
        gst::debug!(CAT, imp = self, "writing face metadata to {location}");
        *self.state.lock().unwrap() = Some(State {
            out: BufWriter::new(sink),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(mut state) = self.state.lock().unwrap().take() {
            state.out.flush().map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Write,
                    ("flushing metadata failed: {}", e)
                )
            })?;
        }
        Ok(())
    }
}

impl VideoFilterImpl for FaceMetaDump {
    /// Only reached if passthrough were turned off: the frame is written all the same.
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.transform_frame_ip_passthrough(frame)
    }

    fn transform_frame_ip_passthrough(
        &self,
        frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let embeddings = self.settings.lock().unwrap().embeddings;
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let line =
            FrameLine::from_buffer(frame.buffer(), frame.width(), frame.height(), embeddings)
                .map_err(|e| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Decode,
                        ("malformed face metadata: {}", e)
                    );
                    gst::FlowError::Error
                })?;
        // One line per frame, flushed, so a reader following the file sees each frame as it passes.
        let written = serde_json::to_writer(&mut state.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| state.out.write_all(b"\n"))
            .and_then(|()| state.out.flush());
        written.map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("writing metadata failed: {}", e)
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
