// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared set-up for the element tests: GStreamer and the plugin, the real assets (models,
//! photos) from the set-up's environment variables, frames decoded by GStreamer itself, harnesses
//! with a bus, and reading the face metadata back.
//!
//! A missing asset fails the test with a hint to run `make setup`; nothing is skipped.
#![allow(dead_code)] // Each test file uses its own subset.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoRegionOfInterestMeta;

/// The frame size the photo tests run at: a camera's VGA.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
/// Every format the elements promise to read without a videoconvert (src/video.rs FORMATS).
pub const FORMATS: [&str; 8] = ["RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA", "I420", "NV12"];
pub const DETECTOR_FILE: &str = "facegate_yunet_2023mar.onnx";
pub const EMBEDDER_FILE: &str = "facegate_sface_2021dec.onnx";

/// Initialises GStreamer and registers the plugin statically, once per test binary.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        if let Err(e) = gstfacegate::plugin_register_static() {
            // Only acceptable if it is already there (e.g. found on GST_PLUGIN_PATH).
            assert!(
                gst::ElementFactory::find("fgdetect").is_some(),
                "cannot register the facegate plugin: {e}"
            );
        }
    });
}

/// `init`, plus the ONNX Runtime library and both default models the elements load from the
/// environment.
pub fn init_with_models() {
    init();
    facegate_dev_assets::onnx_runtime().unwrap();
    detector_model();
    embedder_model();
}

pub fn detector_model() -> PathBuf {
    facegate_dev_assets::model(DETECTOR_FILE).unwrap()
}

pub fn embedder_model() -> PathBuf {
    facegate_dev_assets::model(EMBEDDER_FILE).unwrap()
}

pub fn photo(name: &str) -> PathBuf {
    facegate_dev_assets::photo(name).unwrap()
}

/// One raw video frame and the caps describing it (default strides and offsets).
#[derive(Clone, Debug)]
pub struct Frame {
    pub buffer: gst::Buffer,
    pub caps: gst::Caps,
}

impl Frame {
    /// A fresh buffer with this frame's pixels (shared memory, no metas), stamped `pts`.
    pub fn buffer_at(&self, pts: Option<gst::ClockTime>) -> gst::Buffer {
        let mut buffer = self.buffer.copy();
        buffer.get_mut().unwrap().set_pts(pts);
        buffer
    }
}

fn raw_caps(format: &str, width: u32, height: u32) -> String {
    format!("video/x-raw,format={format},width={width},height={height},pixel-aspect-ratio=1/1")
}

/// Runs `{source} ! videoconvert ! videoscale ! caps ! appsink` and returns its first frame,
/// repacked with default strides. `source` is a gst-launch fragment ending in raw video.
pub fn render(source: &str, format: &str, width: u32, height: u32) -> Frame {
    init();
    let caps = raw_caps(format, width, height);
    let description = format!(
        "{source} ! videoconvert ! videoscale ! capsfilter caps=\"{caps}\" ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("helper pipeline `{description}`: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    pipeline
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| panic!("`{description}`: {e}"));
    // Bounded, so a helper pipeline that stalls fails the test instead of hanging it.
    let timeout = gst::ClockTime::from_seconds(20).nseconds();
    let sample = sink.emit_by_name::<Option<gst::Sample>>("try-pull-sample", &[&timeout]);
    let bus = pipeline.bus().unwrap();
    let error = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    if let Some(message) = error
        && let gst::MessageView::Error(e) = message.view()
    {
        panic!("`{description}` failed: {} ({:?})", e.error(), e.debug());
    }
    let sample = sample.unwrap_or_else(|| panic!("`{description}` gave no frame"));
    let caps = sample.caps().expect("sample caps").to_owned();
    let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
    // Repack: the frame the tests push must match the caps' default layout exactly.
    let source =
        gst_video::VideoFrame::from_buffer_readable(sample.buffer_owned().unwrap(), &info).unwrap();
    let mut packed = gst_video::VideoFrame::from_buffer_writable(
        gst::Buffer::with_size(info.size()).unwrap(),
        &info,
    )
    .unwrap();
    source.copy(&mut packed).unwrap();
    Frame {
        buffer: packed.into_buffer(),
        caps,
    }
}

fn photo_source(name: &str, width: u32, height: u32) -> String {
    let path = photo(name);
    // Scaled with the aspect kept (square pixels, borders) so faces keep their shape.
    format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1",
        path.display()
    )
}

/// A photo scaled into a `width` x `height` frame (aspect kept, black borders) in `format`.
pub fn photo_frame(name: &str, format: &str, width: u32, height: u32) -> Frame {
    render(&photo_source(name, width, height), format, width, height)
}

/// Two photos side by side, each in one half of a `width` x `height` frame.
pub fn two_photo_frame(left: &str, right: &str, format: &str, width: u32, height: u32) -> Frame {
    let half = width / 2;
    let source = format!(
        "{} ! imagefreeze num-buffers=1 ! mix.sink_0 \
         {} ! imagefreeze num-buffers=1 ! mix.sink_1 \
         compositor name=mix background=black sink_1::xpos={half}",
        photo_source(left, half, height),
        photo_source(right, half, height),
    );
    render(&source, format, width, height)
}

/// A flat mid-grey frame: nothing to find in it.
pub fn grey_frame(format: &str, width: u32, height: u32) -> Frame {
    render(
        "videotestsrc num-buffers=1 pattern=solid-color foreground-color=0xff808080",
        format,
        width,
        height,
    )
}

/// A frame of the given format whose pixels do not matter (elements that only read metadata).
pub fn blank_frame(format: &str, width: u32, height: u32) -> Frame {
    let format = format.parse::<gst_video::VideoFormat>().unwrap();
    let info = gst_video::VideoInfo::builder(format, width, height)
        .fps(30)
        .build()
        .unwrap();
    Frame {
        buffer: gst::Buffer::with_size(info.size()).unwrap(),
        caps: info.to_caps().unwrap(),
    }
}

/// `factory`'s sink and src templates take exactly the camera formats, and nothing else.
pub fn assert_camera_formats(factory: &str) {
    init();
    let factory = gst::ElementFactory::find(factory).unwrap();
    let templates = factory.static_pad_templates();
    assert_eq!(templates.len(), 2);
    for template in templates {
        let caps = template.caps();
        assert_eq!(caps.size(), 1, "{caps}");
        let structure = caps.structure(0).unwrap();
        assert_eq!(structure.name(), "video/x-raw");
        let formats: Vec<String> = structure
            .get::<gst::List>("format")
            .unwrap()
            .iter()
            .map(|v| v.get::<String>().unwrap())
            .collect();
        assert_eq!(formats, FORMATS, "{} template", template.name_template());
    }
}

/// A harness around one element made with `properties`, whose messages go to the returned bus.
pub fn harness(
    factory: &str,
    properties: &[(&str, &dyn ToValue)],
) -> (Harness, gst::Element, gst::Bus) {
    init();
    let element = element(factory, properties);
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let harness = Harness::with_element(&element, Some("sink"), Some("src"));
    (harness, element, bus)
}

/// A harness around a gst-launch chain (e.g. "fgdetect ! fgembed"), with a bus on its bin.
pub fn harness_parse(description: &str) -> (Harness, gst::Bus) {
    init();
    let harness = Harness::new_parse(description);
    let bus = gst::Bus::new();
    harness
        .element()
        .expect("harness has an element")
        .set_bus(Some(&bus));
    (harness, bus)
}

pub fn element(factory: &str, properties: &[(&str, &dyn ToValue)]) -> gst::Element {
    init();
    let element = gst::ElementFactory::make(factory)
        .build()
        .unwrap_or_else(|e| panic!("{factory}: {e}"));
    for (name, value) in properties {
        element.set_property_from_value(name, &value.to_value());
    }
    element
}

/// Pushes `buffer` and returns what comes out.
pub fn push_pull(harness: &mut Harness, buffer: gst::Buffer) -> gst::Buffer {
    harness.push(buffer).expect("buffer accepted");
    harness.try_pull().expect("one buffer out for each in")
}

/// Starting `element` must fail; returns the text of the error message it posted.
pub fn start_error(element: &gst::Element) -> String {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let result = element.set_state(gst::State::Playing);
    let message =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Error]);
    element.set_state(gst::State::Null).unwrap();
    assert!(
        result.is_err(),
        "{} started though it should have failed",
        element.name()
    );
    let message = message.unwrap_or_else(|| {
        panic!(
            "{} failed to start without an error message",
            element.name()
        )
    });
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    error.error().message().to_owned()
}

/// The text of every error or warning message (`kind`) on the bus so far.
pub fn message_texts(bus: &gst::Bus, kind: gst::MessageType) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[kind]))
        .map(|message| match message.view() {
            gst::MessageView::Error(e) => e.error().message().to_string(),
            gst::MessageView::Warning(w) => w.error().message().to_string(),
            _ => unreachable!("only errors and warnings"),
        })
        .collect()
}

/// Every element message named `name` on the bus so far.
pub fn element_messages(bus: &gst::Bus, name: &str) -> Vec<gst::Structure> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
        .filter_map(|message| {
            message
                .structure()
                .filter(|s| s.name() == name)
                .map(|s| s.to_owned())
        })
        .collect()
}

/// All faces on a buffer, read through the metadata contract.
pub fn faces(buffer: &gst::BufferRef) -> Vec<facegate_meta::FaceRecord> {
    facegate_meta::read_faces(buffer).expect("well-formed face metadata")
}

/// Every ROI meta on the buffer, whatever its type: (roi type, rect).
pub fn rois(buffer: &gst::BufferRef) -> Vec<(String, (u32, u32, u32, u32))> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .map(|meta| (meta.roi_type().to_owned(), meta.rect()))
        .collect()
}

/// The one face's embedding on a buffer, via the contract.
pub fn only_embedding(buffer: &gst::BufferRef) -> facegate_meta::Embedding {
    let faces = faces(buffer);
    assert_eq!(faces.len(), 1, "expected exactly one face, got {faces:?}");
    faces
        .into_iter()
        .next()
        .unwrap()
        .embedding
        .expect("the face is embedded")
}

/// The embedding fgdetect ! fgembed gives the face in `photo` (640x480 BGRx): what enrolment does.
pub fn photo_embedding(name: &str) -> facegate_meta::Embedding {
    init_with_models();
    let frame = photo_frame(name, "BGRx", WIDTH, HEIGHT);
    let (mut h, _bus) = harness_parse("fgdetect ! fgembed");
    h.set_src_caps(frame.caps.clone());
    only_embedding(&push_pull(
        &mut h,
        frame.buffer_at(gst::ClockTime::ZERO.into()),
    ))
}

/// Cosine of two embeddings (unit length, which the tests check with [`norm`]).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    f64::from(facegate_vision::cosine(a, b))
}

pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// Frame `n` of a 30 fps stream.
pub fn pts(n: u64) -> Option<gst::ClockTime> {
    Some(gst::ClockTime::from_nseconds(n * 33_333_333))
}

/// The paramspec of `element`'s property `name`, which must exist.
pub fn pspec(element: &gst::Element, name: &str) -> glib::ParamSpec {
    element
        .find_property(name)
        .unwrap_or_else(|| panic!("{} has no property {name}", element.name()))
}

pub fn uint_spec(element: &gst::Element, name: &str) -> (u32, u32, u32) {
    let spec = pspec(element, name);
    let spec = spec
        .downcast_ref::<glib::ParamSpecUInt>()
        .unwrap_or_else(|| panic!("{name} is not a uint"));
    (spec.minimum(), spec.maximum(), spec.default_value())
}

pub fn double_spec(element: &gst::Element, name: &str) -> (f64, f64, f64) {
    let spec = pspec(element, name);
    let spec = spec
        .downcast_ref::<glib::ParamSpecDouble>()
        .unwrap_or_else(|| panic!("{name} is not a double"));
    (spec.minimum(), spec.maximum(), spec.default_value())
}

/// Whether a property may be changed in PLAYING (else only up to READY), per its flags.
pub fn mutable_in_playing(element: &gst::Element, name: &str) -> bool {
    let flags = pspec(element, name).flags();
    assert!(
        flags.contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
            || flags.contains(gst::PARAM_FLAG_MUTABLE_READY),
        "{name} declares no mutability"
    );
    flags.contains(gst::PARAM_FLAG_MUTABLE_PLAYING)
}

/// An element made from the gst-launch fragment `{factory} {name}={value}`: setting the value
/// goes through `g_object_set_property`, as in an operator's pipeline.
pub fn launched(factory: &str, name: &str, value: &str) -> gst::Element {
    init();
    let description = format!("{factory} {name}={value}");
    gst::parse::launch(&description).unwrap_or_else(|e| panic!("`{description}`: {e}"))
}

/// Setting `name` to `value` (out of its range) is refused by GObject: the default stays.
pub fn assert_refused(factory: &str, name: &str, value: &str) {
    let default = serialise(pspec(&element(factory, &[]), name).default_value());
    let actual = serialise(&launched(factory, name, value).property_value(name));
    assert_eq!(actual, default, "{factory} {name}={value} was accepted");
}

fn serialise(value: &glib::Value) -> String {
    value
        .serialize()
        .expect("serialisable property value")
        .to_string()
}

/// A temporary file containing `bytes`, named `name`, in its own directory.
pub fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// How long a test waits for something asynchronous (a gallery reload) before failing.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// The entry of `photo` in tests/fixtures/opencv_reference.json (made by
/// scripts/opencv-reference.py from the full-size photos).
fn reference_entry(photo: &str) -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/opencv_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let photos = reference["photos"].as_array_mut().unwrap();
    let position = photos
        .iter()
        .position(|p| p["file"] == photo)
        .unwrap_or_else(|| panic!("{photo} is not in {}", path.display()));
    photos.swap_remove(position)
}

/// Where OpenCV's YuNet puts the face of `photo`, mapped into a `width` x `height` frame the photo
/// was scaled into with its aspect kept and centred.
pub fn reference_box(photo: &str, width: u32, height: u32) -> [f64; 4] {
    let entry = reference_entry(photo);
    let (w, h) = (
        entry["width"].as_f64().unwrap(),
        entry["height"].as_f64().unwrap(),
    );
    let faces = entry["faces"].as_array().unwrap();
    assert_eq!(
        faces.len(),
        1,
        "{photo}: the reference has {} faces",
        faces.len()
    );
    let b: Vec<f64> = faces[0]["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let scale = (f64::from(width) / w).min(f64::from(height) / h);
    let (dx, dy) = (
        (f64::from(width) - w * scale) / 2.0,
        (f64::from(height) - h * scale) / 2.0,
    );
    [
        b[0] * scale + dx,
        b[1] * scale + dy,
        b[2] * scale,
        b[3] * scale,
    ]
}

/// Largest difference between two boxes' coordinates, in pixels.
pub fn box_distance(a: (u32, u32, u32, u32), b: [f64; 4]) -> f64 {
    [a.0, a.1, a.2, a.3]
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

/// OpenCV's SFace embedding of the face in `photo` (tests/fixtures/opencv_reference.json).
pub fn reference_embedding(photo: &str) -> Vec<f32> {
    let entry = reference_entry(photo);
    entry["faces"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}
