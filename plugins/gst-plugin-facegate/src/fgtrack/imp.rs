// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use facegate_vision::Rect;
use facegate_vision::tracker::{TrackLabel, Tracker, TrackerConfig};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgtrack",
        gst::DebugColorFlags::empty(),
        Some("FaceGate face tracker"),
    )
});

const DEFAULT_MAX_AGE: u32 = 15;
const DEFAULT_IOU_THRESHOLD: f64 = 0.3;

#[derive(Clone, Copy, Debug)]
struct Settings {
    max_age: u32,
    iou_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_age: DEFAULT_MAX_AGE,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
        }
    }
}

#[derive(Default)]
struct State {
    tracker: Tracker,
    boxes: Vec<Rect>,
    labels: Vec<TrackLabel>,
}

#[derive(Default)]
pub struct FaceTrack {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceTrack {
    const NAME: &'static str = "GstFgTrack";
    type Type = super::FaceTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FaceTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("max-age")
                    .nick("Maximum age")
                    .blurb("Frames a track survives without its face (occlusion, a missed detection) before its id is retired")
                    .maximum(10_000)
                    .default_value(DEFAULT_MAX_AGE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("iou-threshold")
                    .nick("IoU threshold")
                    .blurb("Minimum box overlap (IoU) for a face to continue a track; below it, a face whose centre is within half a face of the track's still continues it")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_IOU_THRESHOLD)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "max-age" => settings.max_age = value.get().expect("type checked upstream"),
            "iou-threshold" => settings.iou_threshold = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "max-age" => settings.max_age.to_value(),
            "iou-threshold" => settings.iou_threshold.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceTrack {}

impl ElementImpl for FaceTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate face tracker",
                "Filter/Analyzer/Video",
                "Gives each face region a stable track id across frames (facegate-track param: id, age)",
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

impl BaseTransformImpl for FaceTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.state.lock().unwrap().tracker.reset();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A new stream or a seek: faces before it say nothing about faces after it.
        if matches!(
            event.view(),
            gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
        ) {
            gst::debug!(CAT, imp = self, "resetting tracks on {:?}", event.type_());
            self.state.lock().unwrap().tracker.reset();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings.lock().unwrap();
        let config = TrackerConfig {
            iou_threshold: settings.iou_threshold as f32,
            max_age: settings.max_age,
        };
        let mut guard = self.state.lock().unwrap();
        let State {
            tracker,
            boxes,
            labels,
        } = &mut *guard;
        boxes.clear();
        boxes.extend(facegate_meta::faces(buffer).map(|face| {
            let (x, y, w, h) = face.bbox();
            Rect {
                x: x as f32,
                y: y as f32,
                w: w as f32,
                h: h as f32,
            }
        }));
        tracker.update(boxes, &config, labels);
        let mut next = labels.iter();
        facegate_meta::for_each_face_mut(buffer, |face| {
            if let Some(label) = next.next() {
                face.set_track(facegate_meta::Track {
                    id: label.id,
                    age: label.age,
                });
            }
        });
        gst::trace!(CAT, imp = self, "tracks {:?}", labels);
        Ok(gst::FlowSuccess::Ok)
    }
}
