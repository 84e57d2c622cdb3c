use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

use facegate_meta::{LANDMARKS, PixelRect};
use facegate_vision::Rect;
use facegate_vision::canvas::{self, Canvas, Colour};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::VideoInfo;

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

/// One face as drawn, read from the metadata before the frame is mapped for writing.
#[derive(Debug, Default)]
struct Mark {
    bbox: PixelRect,
    landmarks: Option<[[f32; 2]; LANDMARKS]>,
    matched: bool,
    /// Kept across frames: cleared and rewritten, so that captions stop allocating once warm.
    caption: String,
}

#[derive(Default)]
struct State {
    info: Option<VideoInfo>,
    /// Scratch for the faces of the current frame; only the first `count` are live.
    marks: Vec<Mark>,
    count: usize,
}

impl State {
    /// Reads the face regions on `buffer` into `marks`.
    ///
    /// Reads the params borrowed, straight from the ROI metas by the contract's names: the owned
    /// records of `facegate_meta::FaceRef::detection`/`matched` would allocate on every frame.
    /// A param that is missing or malformed is left out; the box is drawn all the same.
    fn read_faces(&mut self, buffer: &gst::BufferRef, settings: &Settings) {
        self.count = 0;
        for face in facegate_meta::faces(buffer) {
            if self.count == self.marks.len() {
                self.marks.push(Mark::default());
            }
            let mark = &mut self.marks[self.count];
            self.count += 1;
            mark.bbox = face.bbox();
            mark.landmarks = if settings.draw_landmarks {
                face.landmarks().ok().flatten()
            } else {
                None
            };
            let matched = face.match_ref().ok().flatten();
            mark.matched = matched.is_some();
            mark.caption.clear();
            if !settings.draw_labels {
                continue;
            }
            let track = face.track().ok().flatten().map(|t| t.id);
            let score = face.score().ok().flatten();
            let _ = match (matched, track, score) {
                (Some(m), _, _) => {
                    let name = if m.label.is_empty() { m.id } else { m.label };
                    write!(mark.caption, "{name} {:.2}", m.similarity)
                }
                (None, Some(id), _) => write!(mark.caption, "#{id}"),
                (None, None, Some(score)) => write!(mark.caption, "face {score:.2}"),
                (None, None, None) => write!(mark.caption, "face"),
            };
        }
    }
}

/// Draws one face: box, landmarks, then the caption above the box (below it, or inside its top,
/// where there is no room), kept within the frame.
fn draw(canvas: &mut Canvas<'_>, mark: &Mark, settings: &Settings) {
    let colour = if mark.matched {
        MATCHED_COLOUR
    } else {
        UNMATCHED_COLOUR
    };
    let (x, y, w, h) = mark.bbox;
    let rect = Rect {
        x: x as f32,
        y: y as f32,
        w: w as f32,
        h: h as f32,
    };
    canvas.rect_outline(rect, settings.thickness, colour);
    if let Some(landmarks) = &mark.landmarks {
        for &[lx, ly] in landmarks {
            canvas.dot(lx, ly, settings.thickness, colour);
        }
    }
    if mark.caption.is_empty() {
        return;
    }
    let (text_w, text_h) = canvas::text_size(&mark.caption, settings.text_scale);
    let (width, height) = (canvas.width() as i64, canvas.height() as i64);
    let (x, y, h) = (i64::from(x), i64::from(y), i64::from(h));
    let (text_w, text_h) = (i64::from(text_w), i64::from(text_h));
    let top = if y >= text_h {
        y - text_h
    } else if y + h + text_h <= height {
        y + h
    } else {
        y
    };
    let left = x.min(width - text_w).max(0);
    // Both within 0..=frame size, so within i32.
    let top = top.min(height);
    canvas.text(
        left as i32,
        top as i32,
        &mark.caption,
        settings.text_scale,
        colour,
    );
}

#[derive(Default)]
pub struct FaceOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for FaceOverlay {
    const NAME: &'static str = "GstFgOverlay";
    type Type = super::FaceOverlay;
    type ParentType = gst_base::BaseTransform;
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
                    .blurb("Magnification of the 8x8-pixel caption font (2: 16 pixels high)")
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
                "Filter/Effect/Video",
                "Draws each face region's box (green when matched, amber otherwise), its five landmarks and a caption (name and similarity, track id or detection score) into the frame",
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

impl BaseTransformImpl for FaceOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = Some(State {
            info: None,
            marks: Vec::with_capacity(16),
            count: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "unusable caps {incaps}"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn transform_ip(
        &self,
        buffer: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings.lock().unwrap();
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        // The metadata is read before the frame is mapped for writing, which borrows the buffer.
        state.read_faces(buffer, &settings);
        if state.count == 0 {
            return Ok(gst::FlowSuccess::Ok);
        }
        let info = state.info.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
        let marks = &state.marks[..state.count];
        video::with_canvas(info, buffer, |canvas| {
            for mark in marks {
                draw(canvas, mark, &settings);
            }
        })
        .inspect_err(|err| gst::error!(CAT, imp = self, "cannot draw on the frame: {err:?}"))?;
        gst::trace!(CAT, imp = self, "drew {} faces", state.count);
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANDMARKS_AT: [[f32; 2]; LANDMARKS] =
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]];

    /// A buffer with four faces: matched and tracked, tracked, detected only, and matched with an empty label.
    fn buffer() -> gst::Buffer {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().unwrap();
        for x in [0, 10, 20, 30] {
            facegate_meta::add_face(buf, (x, 0, 8, 8), 0.934, &LANDMARKS_AT, "yunet@test");
        }
        gst_video::VideoRegionOfInterestMeta::add(buf, "car", (0, 0, 4, 4));
        let mut index = 0;
        facegate_meta::for_each_face_mut(buf, |face| {
            if index < 2 {
                face.set_track(facegate_meta::Track {
                    id: 7 + index,
                    age: 1,
                });
            }
            if index == 0 || index == 3 {
                let label = if index == 0 { "Ada" } else { "" };
                face.set_match(&facegate_meta::Match {
                    id: "p-001".into(),
                    label: label.into(),
                    similarity: 0.7149,
                    generation: 1,
                });
            }
            index += 1;
        });
        buffer
    }

    #[test]
    fn captions_name_the_match_else_the_track_else_the_score() {
        let buffer = buffer();
        let mut state = State::default();
        state.read_faces(&buffer, &Settings::default());
        let marks = &state.marks[..state.count];
        let captions: Vec<&str> = marks.iter().map(|m| m.caption.as_str()).collect();
        assert_eq!(captions, ["Ada 0.71", "#8", "face 0.93", "p-001 0.71"]);
        let matched: Vec<bool> = marks.iter().map(|m| m.matched).collect();
        assert_eq!(matched, [true, false, false, true]);
        assert_eq!(marks[1].bbox, (10, 0, 8, 8));
        assert_eq!(marks[2].landmarks, Some(LANDMARKS_AT));
    }

    #[test]
    fn settings_leave_out_captions_and_landmarks() {
        let buffer = buffer();
        let mut state = State::default();
        let settings = Settings {
            draw_landmarks: false,
            draw_labels: false,
            ..Settings::default()
        };
        state.read_faces(&buffer, &settings);
        assert_eq!(state.count, 4);
        assert!(
            state
                .marks
                .iter()
                .all(|m| m.caption.is_empty() && m.landmarks.is_none())
        );
        // Still green for the matched face.
        assert!(state.marks[0].matched);
    }

    #[test]
    fn scratch_is_reused_across_frames() {
        let buffer = buffer();
        let mut state = State::default();
        state.read_faces(&buffer, &Settings::default());
        let before: Vec<(*const u8, usize)> = state
            .marks
            .iter()
            .map(|m| (m.caption.as_ptr(), m.caption.capacity()))
            .collect();
        let marks_ptr = state.marks.as_ptr();
        for _ in 0..3 {
            state.read_faces(&buffer, &Settings::default());
        }
        let after: Vec<(*const u8, usize)> = state
            .marks
            .iter()
            .map(|m| (m.caption.as_ptr(), m.caption.capacity()))
            .collect();
        assert_eq!(before, after);
        assert_eq!(marks_ptr, state.marks.as_ptr());
        // Fewer faces on a later frame: the extra marks are kept, not dropped.
        state.read_faces(&gst::Buffer::new(), &Settings::default());
        assert_eq!((state.count, state.marks.len()), (0, 4));
    }
}
