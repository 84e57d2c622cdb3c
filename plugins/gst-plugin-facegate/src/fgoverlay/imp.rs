// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use facegate_meta::PixelRect;
use facegate_vision::Rect;
use facegate_vision::canvas::{Canvas, Colour};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::subclass::prelude::*;
use gst_video::{
    CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION, VideoOverlayComposition,
    VideoOverlayCompositionMeta, VideoOverlayRectangle,
};

use super::caption::{self, Captions, Style};
use super::marks::{Mark, Marks, Parts};
use crate::video;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "fgoverlay",
        gst::DebugColorFlags::empty(),
        Some("FaceGate face overlay"),
    )
});

const DEFAULT_DRAW_LANDMARKS: bool = true;
const DEFAULT_DRAW_LABELS: bool = true;
const DEFAULT_THICKNESS: u32 = 2;
const DEFAULT_TEXT_SCALE: u32 = 2;

/// A face the gallery recognised.
const MATCHED_COLOUR: Colour = Colour::GREEN;
/// A face seen but not (yet) recognised.
const UNMATCHED_COLOUR: Colour = Colour::AMBER;

/// Room for the faces of a busy frame without growing.
const EXPECTED_FACES: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Settings {
    draw_landmarks: bool,
    draw_labels: bool,
    thickness: u32,
    text_scale: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            draw_landmarks: DEFAULT_DRAW_LANDMARKS,
            draw_labels: DEFAULT_DRAW_LABELS,
            thickness: DEFAULT_THICKNESS,
            text_scale: DEFAULT_TEXT_SCALE,
        }
    }
}

/// Where the captions go: GStreamer's own overlay machinery either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaptionOutput {
    /// Blended into the frame with `VideoOverlayComposition::blend`.
    Blend,
    /// Attached as a `VideoOverlayCompositionMeta` for downstream (a sink, a compositor) to draw.
    Attach,
}

#[derive(Default)]
struct State {
    /// Width and height of the negotiated frames.
    frame_size: Option<(u32, u32)>,
    /// The negotiated output caps carry `meta:GstVideoOverlayComposition`.
    caps_allow_meta: bool,
    /// Downstream's allocation answer lists the overlay composition meta.
    downstream_draws_meta: bool,
    marks: Marks,
    captions: Option<Captions>,
    /// Scratch for the current frame's caption rectangles, emptied once composed.
    rectangles: Vec<VideoOverlayRectangle>,
    /// The current frame's captions, composed before the frame is mapped and blended into it.
    to_blend: Option<VideoOverlayComposition>,
    /// Box thickness of the current frame, read with its marks.
    thickness: u32,
}

impl State {
    /// Attached only when downstream both negotiated the caps feature and said it draws the
    /// meta, as textoverlay decides: a sink that takes any caps but ignores the meta (appsink,
    /// fakesink, a file) still gets its captions.
    fn caption_output(&self) -> CaptionOutput {
        if self.caps_allow_meta && self.downstream_draws_meta {
            CaptionOutput::Attach
        } else {
            CaptionOutput::Blend
        }
    }
}

/// Top-left corner of a `size` caption for a face at `bbox`: above the box, else below it, else
/// inside its top where there is no room; moved left as far as needed to stay on the frame.
fn caption_origin(bbox: PixelRect, size: (u32, u32), frame: (u32, u32)) -> (i32, i32) {
    let (x, y, _, h) = bbox;
    let (x, y, h) = (i64::from(x), i64::from(y), i64::from(h));
    let (text_w, text_h) = (i64::from(size.0), i64::from(size.1));
    let (width, height) = (i64::from(frame.0), i64::from(frame.1));
    let top = if y >= text_h {
        y - text_h
    } else if y + h + text_h <= height {
        y + h
    } else {
        y
    };
    let left = x.min(width - text_w).max(0);
    // Both within 0..=frame size, which GStreamer keeps within i32.
    let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
    (clamp(left), clamp(top.min(height)))
}

/// Draws one face's box and landmarks.
fn draw(canvas: &mut Canvas<'_>, mark: &Mark, thickness: u32) {
    let colour = colour(mark);
    let (x, y, w, h) = mark.bbox;
    let rect = Rect {
        x: x as f32,
        y: y as f32,
        w: w as f32,
        h: h as f32,
    };
    canvas.rect_outline(rect, thickness, colour);
    if let Some(landmarks) = &mark.landmarks {
        for &[lx, ly] in landmarks {
            canvas.dot(lx, ly, thickness, colour);
        }
    }
}

fn colour(mark: &Mark) -> Colour {
    if mark.matched {
        MATCHED_COLOUR
    } else {
        UNMATCHED_COLOUR
    }
}

/// The overlay caps feature on `caps`' system-memory structures, each offered first with the
/// feature and then without.
fn with_meta_feature(caps: &gst::Caps) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut().expect("new caps are writable");
        for (structure, features) in caps.iter_with_features() {
            if !features.is_any()
                && !features.contains(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION)
            {
                let mut with_meta = features.to_owned();
                with_meta.add(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION);
                out.append_structure_full(structure.to_owned(), Some(with_meta));
            }
            out.append_structure_full(structure.to_owned(), Some(features.to_owned()));
        }
    }
    out
}

/// `caps` without the overlay caps feature: what the sink pad takes.
fn without_meta_feature(caps: &gst::Caps) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    for (structure, features) in caps.iter_with_features() {
        let mut features = features.to_owned();
        features.remove(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION);
        out.merge_structure_full(structure.to_owned(), Some(features));
    }
    out
}

#[derive(Default)]
pub struct FaceOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl FaceOverlay {
    /// Renders (or takes from the cache) and places the caption of every live mark, as one
    /// composition; none when no face has a caption.
    fn compose_captions(
        &self,
        state: &mut State,
        text_scale: u32,
    ) -> Option<VideoOverlayComposition> {
        let frame = state.frame_size?;
        let captions = state.captions.as_mut()?;
        captions.begin_frame(Style::new(text_scale, frame.0));
        for mark in state.marks.live() {
            if mark.caption.is_empty() {
                continue;
            }
            match captions.get(&mark.caption, colour(mark)) {
                Ok(caption) => {
                    let (x, y) = caption_origin(mark.bbox, caption.size(), frame);
                    state.rectangles.push(caption.placed_at(x, y));
                }
                Err(err) => gst::warning!(
                    CAT,
                    imp = self,
                    "caption {:?} left out: {err}",
                    mark.caption
                ),
            }
        }
        if state.rectangles.is_empty() {
            return None;
        }
        let composition = VideoOverlayComposition::new(state.rectangles.iter())
            .inspect_err(|err| gst::warning!(CAT, imp = self, "captions left out: {err}"))
            .ok();
        // The composition holds its own references; ours go, so that the next frame can move
        // the cached rectangles in place.
        state.rectangles.clear();
        composition
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FaceOverlay {
    const NAME: &'static str = "GstFgOverlay";
    type Type = super::FaceOverlay;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for FaceOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecBoolean::builder("draw-landmarks")
                    .nick("Draw landmarks")
                    .blurb("Mark each face's five landmarks (eyes, nose tip, mouth corners) with dots")
                    .default_value(DEFAULT_DRAW_LANDMARKS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Caption each face: the matched name and similarity (\"Ada 0.71\"), else its track id (\"#7\"), else its detection score (\"face 0.93\")")
                    .default_value(DEFAULT_DRAW_LABELS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("thickness")
                    .nick("Thickness")
                    .blurb("Width in pixels of the box lines, and radius of the landmark dots")
                    .minimum(1)
                    .maximum(16)
                    .default_value(DEFAULT_THICKNESS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("text-scale")
                    .nick("Text scale")
                    .blurb(&format!(
                        "Caption size in steps of {} pixels of text height (2: 16-pixel text)",
                        caption::PIXELS_PER_SCALE
                    ))
                    .minimum(1)
                    .maximum(8)
                    .default_value(DEFAULT_TEXT_SCALE)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "draw-landmarks" => {
                settings.draw_landmarks = value.get().expect("type checked upstream")
            }
            "draw-labels" => settings.draw_labels = value.get().expect("type checked upstream"),
            "thickness" => settings.thickness = value.get().expect("type checked upstream"),
            "text-scale" => settings.text_scale = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "draw-landmarks" => settings.draw_landmarks.to_value(),
            "draw-labels" => settings.draw_labels.to_value(),
            "thickness" => settings.thickness.to_value(),
            "text-scale" => settings.text_scale.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for FaceOverlay {}

impl ElementImpl for FaceOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FaceGate face overlay",
                "Filter/Effect/Video/Overlay",
                "Draws each face region's box (green when matched, amber otherwise) and its five landmarks into the frame, and captions it (name and similarity, track id or detection score, in any script) as a video overlay composition",
                "FaceGate developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = video::caps();
            let sink = gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("static pad template is valid");
            let src = gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &with_meta_feature(&caps),
            )
            .expect("static pad template is valid");
            vec![src, sink]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for FaceOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = Some(State {
            marks: Marks::with_capacity(EXPECTED_FACES),
            rectangles: Vec::with_capacity(EXPECTED_FACES),
            ..State::default()
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        // Downstream is offered the overlay meta first; upstream never sees it.
        let other = match direction {
            gst::PadDirection::Sink => with_meta_feature(caps),
            _ => without_meta_feature(caps),
        };
        gst::trace!(CAT, imp = self, "{direction:?} caps {caps} become {other}");
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
            None => other,
        })
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        // In place, the base class answers upstream's query by asking downstream: its answer
        // tells whether downstream draws overlay compositions itself.
        self.parent_propose_allocation(decide_query, query)?;
        let draws_meta = query
            .find_allocation_meta::<VideoOverlayCompositionMeta>()
            .is_some();
        gst::debug!(
            CAT,
            imp = self,
            "downstream draws overlay compositions: {draws_meta}"
        );
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.downstream_draws_meta = draws_meta;
        }
        Ok(())
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings.lock().unwrap();
        {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            state.to_blend = None;
            // The metadata is read before the frame is mapped for writing.
            state.marks.read(
                buffer,
                Parts {
                    landmarks: settings.draw_landmarks,
                    captions: settings.draw_labels,
                },
            );
            if state.marks.is_empty() {
                // Nothing to draw: the frame is not even mapped.
                return Ok(gst::FlowSuccess::Ok);
            }
            state.thickness = settings.thickness;
            if let Some(composition) = self.compose_captions(state, settings.text_scale) {
                match state.caption_output() {
                    CaptionOutput::Attach => {
                        VideoOverlayCompositionMeta::add(buffer, &composition);
                    }
                    CaptionOutput::Blend => state.to_blend = Some(composition),
                }
            }
        }
        // Maps the frame and calls transform_frame_ip.
        self.parent_transform_ip(buffer)
    }
}

impl VideoFilterImpl for FaceOverlay {
    fn set_info(
        &self,
        _incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        _out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let caps_allow_meta = outcaps.features(0).is_some_and(|features| {
            features.contains(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION)
        });
        let mut guard = self.state.lock().unwrap();
        let state = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps set before start"))?;
        let frame_size = (in_info.width(), in_info.height());
        let text_scale = self.settings.lock().unwrap().text_scale;
        state.frame_size = Some(frame_size);
        state.caps_allow_meta = caps_allow_meta;
        state.captions = Some(Captions::new(Style::new(text_scale, frame_size.0)));
        gst::debug!(
            CAT,
            imp = self,
            "{}x{} {:?}, overlay meta in caps: {caps_allow_meta}",
            frame_size.0,
            frame_size.1,
            in_info.format()
        );
        Ok(())
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (marks, thickness) = (state.marks.live(), state.thickness);
        video::with_frame_canvas(frame, |canvas| {
            for mark in marks {
                draw(canvas, mark, thickness);
            }
        })
        .map_err(|err| {
            gst::error!(CAT, imp = self, "cannot draw on the frame: {err}");
            gst::FlowError::from(err)
        })?;
        if let Some(composition) = state.to_blend.take() {
            composition.blend(frame).map_err(|err| {
                gst::error!(CAT, imp = self, "cannot blend the captions: {err}");
                gst::FlowError::Error
            })?;
        }
        gst::trace!(CAT, imp = self, "drew {} faces", marks.len());
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_go_above_else_below_else_inside_the_box() {
        let frame = (640, 480);
        assert_eq!(
            caption_origin((100, 50, 80, 80), (60, 20), frame),
            (100, 30)
        );
        assert_eq!(
            caption_origin((100, 10, 80, 80), (60, 20), frame),
            (100, 90)
        );
        assert_eq!(
            caption_origin((100, 10, 80, 460), (60, 20), frame),
            (100, 10)
        );
        // Kept on the frame at the right edge, and at the left when wider than the frame.
        assert_eq!(
            caption_origin((600, 50, 40, 40), (60, 20), frame),
            (580, 30)
        );
        assert_eq!(caption_origin((600, 50, 40, 40), (700, 20), frame), (0, 30));
    }

    #[test]
    fn only_downstream_sees_the_overlay_feature() {
        gst::init().unwrap();
        let plain = video::caps();
        let offered = with_meta_feature(&plain);
        assert_eq!(offered.size(), 2 * plain.size());
        let first = offered.features(0).unwrap();
        assert!(first.contains(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION));
        assert!(
            !offered
                .features(1)
                .unwrap()
                .contains(CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION)
        );
        let back = without_meta_feature(&offered);
        assert!(back.is_strictly_equal(&plain), "{back}");
    }
}
