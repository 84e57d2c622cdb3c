//! fgoverlay in a harness: boxes are drawn green for matched faces and amber otherwise, only
//! where the faces are, in every format the plugin accepts.

use std::sync::Once;

use gst::prelude::*;
use gst_check::Harness;
use gst_video::VideoInfo;

const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
/// Leaves room for a scale-2 caption (20 pixels high) above the box.
const BOX: (u32, u32, u32, u32) = (16, 24, 30, 20);
const LANDMARKS: [[f32; 2]; 5] = [
    [25.0, 30.0],
    [36.0, 30.0],
    [30.0, 35.0],
    [26.0, 39.0],
    [35.0, 39.0],
];
/// Pixels on the box's left, right, top and bottom edges, clear of the caption.
const EDGE: [(usize, usize); 4] = [(16, 34), (45, 34), (40, 24), (30, 43)];
/// Pixels well away from the box, its landmarks and its caption.
const FAR: [(usize, usize); 4] = [(2, 46), (60, 46), (50, 30), (20, 32)];

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstfacegate::plugin_register_static().unwrap();
    });
}

fn harness(format: &str) -> Harness {
    init();
    let mut h = Harness::new("fgoverlay");
    h.set_src_caps_str(&format!(
        "video/x-raw,format={format},width={WIDTH},height={HEIGHT},framerate=30/1"
    ));
    h
}

fn info(format: &str) -> VideoInfo {
    let format = format.parse::<gst_video::VideoFormat>().unwrap();
    VideoInfo::builder(format, WIDTH, HEIGHT).build().unwrap()
}

/// A black frame (YUV: limited-range black) with one face, matched to "Ada" if `matched`.
fn frame_with_face(format: &str, matched: bool, track: Option<u64>) -> gst::Buffer {
    let info = info(format);
    let mut data = vec![0u8; info.size()];
    if info.is_yuv() {
        let chroma = info.offset()[1];
        data[..chroma].fill(16);
        data[chroma..].fill(128);
    }
    let mut buffer = gst::Buffer::from_mut_slice(data);
    {
        let buf = buffer.get_mut().unwrap();
        gst_video::VideoMeta::add_full(
            buf,
            gst_video::VideoFrameFlags::empty(),
            info.format(),
            WIDTH,
            HEIGHT,
            info.offset(),
            info.stride(),
        )
        .unwrap();
        facegate_meta::add_face(buf, BOX, 0.93, &LANDMARKS, "yunet@test");
        facegate_meta::for_each_face_mut(buf, |face| {
            if let Some(id) = track {
                face.set_track(facegate_meta::Track { id, age: 1 });
            }
            if matched {
                face.set_match(&facegate_meta::Match {
                    id: "p-001".into(),
                    label: "Ada".into(),
                    similarity: 0.71,
                    generation: 1,
                });
            }
        });
    }
    buffer
}

fn bgrx_at(map: &[u8], x: usize, y: usize) -> [u8; 3] {
    let i = (y * WIDTH as usize + x) * 4;
    [map[i + 2], map[i + 1], map[i]]
}

/// Luma, U and V of an I420 frame at pixel (x, y).
fn i420_at(map: &[u8], info: &VideoInfo, x: usize, y: usize) -> [u8; 3] {
    let (offsets, strides) = (info.offset(), info.stride());
    [
        map[offsets[0] + y * strides[0] as usize + x],
        map[offsets[1] + y / 2 * strides[1] as usize + x / 2],
        map[offsets[2] + y / 2 * strides[2] as usize + x / 2],
    ]
}

#[test]
fn bgrx_boxes_are_amber_then_green_when_matched() {
    let mut h = harness("BGRx");
    h.push(frame_with_face("BGRx", false, None)).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    for (x, y) in EDGE {
        assert_eq!(
            bgrx_at(&map, x, y),
            [255, 176, 0],
            "amber edge at ({x}, {y})"
        );
    }
    for (x, y) in FAR {
        assert_eq!(bgrx_at(&map, x, y), [0, 0, 0], "untouched at ({x}, {y})");
    }
    // A landmark dot, and the caption's dark box above the face.
    assert_eq!(bgrx_at(&map, 30, 35), [255, 176, 0]);
    assert_eq!(bgrx_at(&map, 16, 4), [16, 16, 16]);
    // The metadata goes through untouched.
    assert_eq!(facegate_meta::read_faces(&out).unwrap().len(), 1);
    drop(map);

    h.push(frame_with_face("BGRx", true, Some(7))).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    for (x, y) in EDGE {
        assert_eq!(
            bgrx_at(&map, x, y),
            [0, 220, 60],
            "green edge at ({x}, {y})"
        );
    }
    for (x, y) in FAR {
        assert_eq!(bgrx_at(&map, x, y), [0, 0, 0], "untouched at ({x}, {y})");
    }
}

#[test]
fn i420_boxes_are_amber_then_green_when_matched() {
    let mut h = harness("I420");
    let info = info("I420");
    for (matched, v_above_neutral) in [(false, true), (true, false)] {
        h.push(frame_with_face("I420", matched, None)).unwrap();
        let out = h.pull().unwrap();
        let map = out.map_readable().unwrap();
        for (x, y) in EDGE {
            let [luma, u, v] = i420_at(&map, &info, x, y);
            // Amber and green are both bright and low in blue; red tells them apart.
            assert!(luma > 100, "luma {luma} at ({x}, {y})");
            assert!(u < 128, "U {u} at ({x}, {y})");
            assert_eq!(
                v > 128,
                v_above_neutral,
                "V {v} at ({x}, {y}), matched {matched}"
            );
        }
        for (x, y) in FAR {
            assert_eq!(
                i420_at(&map, &info, x, y),
                [16, 128, 128],
                "untouched at ({x}, {y})"
            );
        }
    }
}

#[test]
fn labels_and_landmarks_can_be_turned_off() {
    let mut h = harness("BGRx");
    let element = h.element().unwrap();
    assert!(element.property::<bool>("draw-labels"));
    assert!(element.property::<bool>("draw-landmarks"));
    assert_eq!(element.property::<u32>("thickness"), 2);
    assert_eq!(element.property::<u32>("text-scale"), 2);
    element.set_property("draw-labels", false);
    element.set_property("draw-landmarks", false);
    element.set_property("thickness", 1u32);
    h.push(frame_with_face("BGRx", true, None)).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    assert_eq!(bgrx_at(&map, 16, 34), [0, 220, 60]);
    // One pixel thick now, no dot on the nose, no caption.
    assert_eq!(bgrx_at(&map, 17, 34), [0, 0, 0]);
    assert_eq!(bgrx_at(&map, 30, 35), [0, 0, 0]);
    assert!(map[..24 * WIDTH as usize * 4].iter().all(|&b| b == 0));
}

#[test]
fn frames_without_faces_pass_untouched() {
    let mut h = harness("BGRx");
    let data = vec![9u8; (WIDTH * HEIGHT * 4) as usize];
    h.push(gst::Buffer::from_mut_slice(data)).unwrap();
    let out = h.pull().unwrap();
    assert!(out.map_readable().unwrap().iter().all(|&b| b == 9));
}

#[test]
fn every_listed_format_negotiates_and_draws() {
    for format in ["RGB", "BGR", "RGBx", "BGRx", "RGBA", "BGRA", "I420", "NV12"] {
        let mut h = harness(format);
        let input = frame_with_face(format, false, Some(3));
        let before = input.map_readable().unwrap().to_vec();
        h.push(input).unwrap();
        let out = h.pull().unwrap();
        let caps = h.sinkpad().unwrap().current_caps().unwrap();
        let structure = caps.structure(0).unwrap();
        assert_eq!(structure.get::<&str>("format").unwrap(), format);
        let after = out.map_readable().unwrap();
        assert_eq!(after.len(), before.len(), "{format}");
        assert_ne!(
            after.as_slice(),
            before.as_slice(),
            "{format}: nothing drawn"
        );
    }
}
