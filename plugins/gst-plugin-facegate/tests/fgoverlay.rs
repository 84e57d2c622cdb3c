// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgoverlay in a harness: boxes are drawn green for matched faces and amber otherwise, only
//! where the faces are, in every format the plugin accepts; captions in any script are drawn as
//! letters, blended into the frame or attached for downstream to draw.

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
    let label = matched.then_some("Ada");
    frame_with(&info(format), BOX, label, track)
}

/// A black frame (YUV: limited-range black) with one face at `bbox`, matched to `label`.
fn frame_with(
    info: &VideoInfo,
    bbox: (u32, u32, u32, u32),
    label: Option<&str>,
    track: Option<u64>,
) -> gst::Buffer {
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
            info.width(),
            info.height(),
            info.offset(),
            info.stride(),
        )
        .unwrap();
        facegate_meta::add_face(buf, bbox, 0.93, &LANDMARKS, "yunet@test");
        facegate_meta::for_each_face_mut(buf, |face| {
            if let Some(id) = track {
                face.set_track(facegate_meta::Track { id, age: 1 });
            }
            if let Some(label) = label {
                face.set_match(&facegate_meta::Match {
                    id: "p-001".into(),
                    label: label.into(),
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

/// A frame wide enough for whole names at the default text scale.
const WIDE: (u32, u32) = (320, 120);
/// A face low on the wide frame, so that its caption goes above it, within rows 0..60.
const LOW_BOX: (u32, u32, u32, u32) = (20, 60, 100, 50);
const CAPTION_ROWS: std::ops::Range<usize> = 0..60;
const CAPTION_BACKGROUND: [u8; 3] = [16, 16, 16];

fn wide_info() -> VideoInfo {
    VideoInfo::builder(gst_video::VideoFormat::Bgrx, WIDE.0, WIDE.1)
        .build()
        .unwrap()
}

/// Without landmark dots: the test faces' landmarks would fall in the caption area.
fn wide_harness() -> Harness {
    init();
    let mut h = Harness::new("fgoverlay");
    h.element().unwrap().set_property("draw-landmarks", false);
    h.set_src_caps(wide_info().to_caps().unwrap());
    h
}

/// The caption area of BGRx `map`: its RGB pixels, row by row.
fn caption_area(map: &[u8]) -> Vec<[u8; 3]> {
    let width = WIDE.0 as usize;
    CAPTION_ROWS
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| {
            let i = (y * width + x) * 4;
            [map[i + 2], map[i + 1], map[i]]
        })
        .collect()
}

/// The caption area of the frame fgoverlay makes of a face matched to `label`.
fn caption_of(label: &str) -> Vec<[u8; 3]> {
    let mut h = wide_harness();
    h.push(frame_with(&wide_info(), LOW_BOX, Some(label), None))
        .unwrap();
    let out = h.pull().unwrap();
    caption_area(&out.map_readable().unwrap())
}

/// Pixels of the caption's text: neither the untouched black frame nor the caption's box.
fn ink(area: &[[u8; 3]]) -> usize {
    area.iter()
        .filter(|&&px| px != [0, 0, 0] && px != CAPTION_BACKGROUND)
        .count()
}

/// Columns the caption's box spans.
fn caption_width(area: &[[u8; 3]]) -> usize {
    let width = WIDE.0 as usize;
    (0..width)
        .filter(|&x| {
            area.iter()
                .skip(x)
                .step_by(width)
                .any(|&px| px != [0, 0, 0])
        })
        .count()
}

#[test]
fn cyrillic_names_are_drawn_as_letters() {
    let name = "Анна Каренина";
    let caption = caption_of(name);
    let question_marks: String = name
        .chars()
        .map(|c| if c == ' ' { ' ' } else { '?' })
        .collect();
    let fallback = caption_of(&question_marks);
    let (letters, marks) = (ink(&caption), ink(&fallback));
    // The old bitmap font drew this name as its row of question marks; letters take more ink
    // (about 1.4 times, the similarity after the name being the same in both).
    assert!(
        letters > marks * 5 / 4,
        "{name:?}: {letters} text pixels, {question_marks:?}: {marks}"
    );
    // Another name of the same length is another picture: the glyphs are the letters'.
    let other = caption_of("Лев Толстойев");
    assert_ne!(caption, other, "two Cyrillic names drew the same caption");
    assert!(ink(&other) > marks * 5 / 4);
}

#[test]
fn cjk_names_are_drawn_as_letters() {
    let caption = caption_of("张伟");
    let fallback = caption_of("??");
    let (letters, marks) = (ink(&caption), ink(&fallback));
    assert!(
        letters > marks * 3 / 2,
        "张伟: {letters} text pixels, ??: {marks}"
    );
    assert_ne!(caption, caption_of("王芳"));
}

#[test]
fn arabic_names_are_shaped() {
    // Joined, the letters take their connected forms and the word is narrower than the same
    // letters kept apart by zero-width non-joiners, which a glyph-by-glyph rasteriser would
    // draw the same.
    let joined = caption_of("محمد");
    let apart = caption_of("م\u{200c}ح\u{200c}م\u{200c}د");
    assert_ne!(
        joined, apart,
        "the joined and the separate letters look the same"
    );
    let (joined_w, apart_w) = (caption_width(&joined), caption_width(&apart));
    assert!(
        joined_w < apart_w,
        "joined {joined_w} columns, apart {apart_w}"
    );
}

#[test]
fn captions_are_blended_unless_downstream_draws_them() {
    // The harness's sink takes any caps, so the overlay feature is negotiated; without the meta
    // in its allocation answer the captions are still blended.
    let mut h = wide_harness();
    h.push(frame_with(&wide_info(), LOW_BOX, Some("Анна"), None))
        .unwrap();
    let out = h.pull().unwrap();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert!(
        caps.features(0)
            .unwrap()
            .contains(gst_video::CAPS_FEATURE_META_GST_VIDEO_OVERLAY_COMPOSITION),
        "{caps}"
    );
    assert!(
        out.meta::<gst_video::VideoOverlayCompositionMeta>()
            .is_none()
    );
    assert!(ink(&caption_area(&out.map_readable().unwrap())) > 0);
}

#[test]
fn captions_are_attached_when_downstream_draws_them() {
    let mut h = wide_harness();
    h.add_propose_allocation_meta(gst_video::VideoOverlayCompositionMeta::meta_api(), None);
    // Upstream asks for allocation, as a real source does; fgoverlay passes the question on.
    let caps = wide_info().to_caps().unwrap();
    let mut query = gst::query::Allocation::new(Some(&caps), true);
    assert!(h.srcpad().unwrap().peer_query(&mut query));

    h.push(frame_with(
        &wide_info(),
        LOW_BOX,
        Some("Анна Каренина"),
        None,
    ))
    .unwrap();
    let out = h.pull().unwrap();
    let meta = out
        .meta::<gst_video::VideoOverlayCompositionMeta>()
        .expect("captions attached as an overlay composition");
    let overlay = meta.overlay();
    assert_eq!(overlay.n_rectangles(), 1);
    let (x, y, w, h_) = overlay.rectangle(0).unwrap().render_rectangle();
    // Above the box, at its left edge.
    assert_eq!(x, LOW_BOX.0 as i32);
    assert_eq!(y + h_ as i32, LOW_BOX.1 as i32);
    assert!(w > 100, "caption {w} pixels wide");
    // The frame has the box but no caption blended into it.
    let map = out.map_readable().unwrap();
    assert!(caption_area(&map).iter().all(|&px| px == [0, 0, 0]));
    let box_left = (80 * WIDE.0 as usize + 20) * 4;
    assert_eq!(
        &map[box_left..box_left + 3],
        &[60, 220, 0],
        "green box, in BGRx"
    );
    let first = overlay.rectangle(0).unwrap().seqnum();
    drop(map);
    drop(out);

    // The face moves: its caption is the one rendered before, moved, not rendered again.
    let seqnum_of = |h: &mut Harness, x: u32, label: &str| {
        h.push(frame_with(
            &wide_info(),
            (x, 60, 100, 50),
            Some(label),
            None,
        ))
        .unwrap();
        let out = h.pull().unwrap();
        let meta = out
            .meta::<gst_video::VideoOverlayCompositionMeta>()
            .unwrap();
        let rectangle = meta.overlay().rectangle(0).unwrap();
        assert_eq!(rectangle.render_rectangle().0, x as i32);
        rectangle.seqnum()
    };
    assert_eq!(seqnum_of(&mut h, 120, "Анна Каренина"), first);
    assert_ne!(seqnum_of(&mut h, 120, "Лев Толстой"), first);
}

#[test]
fn captions_follow_their_face_from_frame_to_frame() {
    let mut h = wide_harness();
    let info = wide_info();
    let mut lefts = Vec::new();
    for x in [20, 180, 20] {
        h.push(frame_with(&info, (x, 60, 100, 50), Some("Анна"), Some(1)))
            .unwrap();
        let out = h.pull().unwrap();
        let area = caption_area(&out.map_readable().unwrap());
        let width = WIDE.0 as usize;
        let left = (0..width)
            .find(|&x| {
                area.iter()
                    .skip(x)
                    .step_by(width)
                    .any(|&px| px != [0, 0, 0])
            })
            .unwrap();
        lefts.push(left);
    }
    assert_eq!(lefts, [20, 180, 20]);
}
