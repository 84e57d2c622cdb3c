// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use facegate_vision::qr::{QrDecoder, QrReader};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgqr",
        gst::DebugColorFlags::empty(),
        Some("FaceGate QR code reader"),
    )
});

/// The decoders as a GEnum, for gst-inspect and gst-launch (`decoder=rqrr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, glib::Enum)]
#[enum_type(name = "GstFgQrDecoder")]
pub enum Decoder {
    #[default]
    #[enum_value(
        name = "zbar: Debian's libzbar (read the most codes, docs/BENCHMARKS.md)",
        nick = "zbar"
    )]
    Zbar,
    #[enum_value(
        name = "quircs: a pure-Rust port of the C library quirc",
        nick = "quircs"
    )]
    Quircs,
    #[enum_value(name = "rqrr: prepares a new image per frame", nick = "rqrr")]
    Rqrr,
}

impl From<Decoder> for QrDecoder {
    fn from(decoder: Decoder) -> QrDecoder {
        match decoder {
            Decoder::Zbar => QrDecoder::Zbar,
            Decoder::Quircs => QrDecoder::Quircs,
            Decoder::Rqrr => QrDecoder::Rqrr,
        }
    }
}

const DEFAULT_DECODER: Decoder = Decoder::Zbar;
const DEFAULT_INTERVAL: u32 = 1;

#[derive(Clone, Copy, Debug)]
struct Settings {
    decoder: Decoder,
    interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            decoder: DEFAULT_DECODER,
            interval: DEFAULT_INTERVAL,
        }
    }
}

#[derive(Default)]
struct State {
    reader: QrReader,
    frames: u64,
}

#[derive(Default)]
pub struct QrRead {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for QrRead {
    const NAME: &'static str = "GstFgQr";
    type Type = super::QrRead;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for QrRead {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecEnum::builder_with_default("decoder", DEFAULT_DECODER)
                    .nick("Decoder")
                    .blurb("Which QR decoder reads the codes (docs/BENCHMARKS.md measures both)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Interval")
                    .blurb("Read codes on every Nth frame only (1: every frame; 0: never, the frames pass untouched)")
                    .minimum(0)
                    .maximum(1000)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "decoder" => settings.decoder = value.get().expect("type checked upstream"),
            "interval" => settings.interval = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "decoder" => settings.decoder.to_value(),
            "interval" => settings.interval.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for QrRead {}

impl ElementImpl for QrRead {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate QR code reader",
                "Filter/Analyzer/Video",
                "Decodes QR codes (a passenger's token) and attaches each as a qr-code region with a facegate-code param (text)",
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

impl BaseTransformImpl for QrRead {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let decoder = self.settings.lock().unwrap().decoder;
        gst::debug!(CAT, imp = self, "reading QR codes with {:?}", decoder);
        *self.state.lock().unwrap() = Some(State {
            reader: QrReader::new(decoder.into()),
            frames: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }
}

impl VideoFilterImpl for QrRead {
    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let interval = u64::from(self.settings.lock().unwrap().interval);
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let read_now = interval != 0 && state.frames % interval == 0;
        state.frames += 1;
        if !read_now {
            return Ok(gst::FlowSuccess::Ok);
        }
        let image = video::vision_frame(frame).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
            gst::FlowError::from(e)
        })?;
        let (codes, unreadable) = state.reader.read(&image);
        gst::log!(
            CAT,
            imp = self,
            "{} codes read, {} found but unreadable",
            codes.len(),
            unreadable
        );
        let (width, height) = (frame.width(), frame.height());
        let buffer = video::buffer_mut(frame);
        for code in &codes {
            let (x, y, w, h) = code.bbox;
            let bbox =
                facegate_meta::pixel_rect(x as f32, y as f32, w as f32, h as f32, width, height);
            facegate_meta::add_code(buffer, bbox, &code.text);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
