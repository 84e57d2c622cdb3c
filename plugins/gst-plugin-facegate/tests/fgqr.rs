// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgqr in a harness: a QR code in a camera frame comes out as a `qr-code` region with its text,
//! in every camera format and with each decoder; `interval` skips frames; a frame without a
//! code gets no region.

mod common;

use std::path::Path;

use gst::prelude::*;

const SIZE: (u32, u32) = (640, 480);
const TEXT: &str = "FGT1:A TOKEN AS A PHONE SHOWS IT 0123456789";

/// `text` as a QR code PNG: 6 px a module, a white quiet zone of 4 modules.
fn code_png(text: &str, path: &Path) {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let (modules, px, quiet) = (code.width(), 6, 4);
    let side = (modules + 2 * quiet) * px;
    let mut pixels = vec![255u8; side * side];
    for (i, colour) in code.to_colors().iter().enumerate() {
        if *colour == qrcode::Color::Dark {
            let (mx, my) = (i % modules + quiet, i / modules + quiet);
            for y in my * px..(my + 1) * px {
                pixels[y * side + mx * px..y * side + (mx + 1) * px].fill(0);
            }
        }
    }
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(file, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
}

/// A frame showing the code at its top left, on white.
fn code_frame(format: &str) -> common::Frame {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("code.png");
    code_png(TEXT, &png);
    common::render(
        &format!(
            "filesrc location=\"{}\" ! pngdec ! videoconvert ! videoscale ! video/x-raw,width=300,height=300 \
             ! imagefreeze num-buffers=1 ! mix.sink_0 \
             compositor name=mix background=white ! video/x-raw,width={},height={}",
            png.display(),
            SIZE.0,
            SIZE.1
        ),
        format,
        SIZE.0,
        SIZE.1,
    )
}

/// What fgqr made with `properties` (gst-launch syntax) reads on `frames` pushes of `frame`.
fn read(properties: &str, frame: &common::Frame, frames: u64) -> Vec<Vec<String>> {
    let (mut h, _bus) = common::harness_parse(&format!("fgqr {properties}"));
    h.set_src_caps(frame.caps.clone());
    (0..frames)
        .map(|n| {
            let out = common::push_pull(&mut h, frame.buffer_at(common::pts(n)));
            facegate_meta::codes(&out).map(Result::unwrap).collect()
        })
        .collect()
}

#[test]
fn a_code_in_any_camera_format_comes_out_as_a_region_with_its_text() {
    for format in common::FORMATS {
        let frame = code_frame(format);
        for decoder in ["zbar", "quircs", "rqrr"] {
            let read = read(&format!("decoder={decoder}"), &frame, 1);
            assert_eq!(read, [vec![TEXT.to_owned()]], "{format}, {decoder}");
        }
    }
}

#[test]
fn interval_reads_every_nth_frame_and_zero_reads_none() {
    let frame = code_frame("NV12");
    let counts = |interval: u32| -> Vec<usize> {
        read(&format!("interval={interval}"), &frame, 4)
            .iter()
            .map(Vec::len)
            .collect()
    };
    assert_eq!(counts(1), [1, 1, 1, 1]);
    assert_eq!(counts(2), [1, 0, 1, 0]);
    assert_eq!(counts(0), [0, 0, 0, 0]);
}

#[test]
fn a_frame_without_a_code_gets_no_region_and_the_faces_are_untouched() {
    let frame = common::grey_frame("I420", SIZE.0, SIZE.1);
    let (mut h, _element, _bus) = common::harness("fgqr", &[]);
    h.set_src_caps(frame.caps.clone());
    let mut buffer = frame.buffer_at(common::pts(0));
    facegate_meta::add_face(
        buffer.get_mut().unwrap(),
        (10, 10, 100, 120),
        0.9,
        &[[20.0, 20.0]; facegate_meta::LANDMARKS],
        "yunet@test",
    );
    let out = common::push_pull(&mut h, buffer);
    assert_eq!(facegate_meta::codes(&out).count(), 0);
    assert_eq!(common::faces(&out).len(), 1);
}

#[test]
fn fgqr_takes_exactly_the_camera_formats() {
    common::assert_camera_formats("fgqr");
}

#[test]
fn the_decoder_is_an_enum_gst_inspect_lists() {
    common::init();
    let element = gst::ElementFactory::make("fgqr").build().unwrap();
    let spec = element.find_property("decoder").unwrap();
    let enum_class = gst::glib::EnumClass::with_type(spec.value_type()).unwrap();
    let nicks: Vec<&str> = enum_class.values().iter().map(|v| v.nick()).collect();
    assert_eq!(nicks, ["zbar", "quircs", "rqrr"]);
    let default = element.property_value("decoder");
    let (_, value) = gst::glib::EnumValue::from_value(&default).unwrap();
    assert_eq!(value.nick(), "zbar", "the default decoder");
}
