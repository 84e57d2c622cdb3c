// SPDX-License-Identifier: MIT OR Apache-2.0
//! fgtrack in a harness, on buffers carrying synthetic face regions: ids stay with moving faces,
//! distinct faces get distinct ids, a face gone longer than max-age comes back as a new track.

mod common;

use facegate_meta::{PixelRect, Track};
use gst::prelude::*;
use gst_check::Harness;

const SIZE: (u32, u32) = (640, 480);

fn tracker(properties: &[(&str, &dyn ToValue)]) -> (Harness, common::Frame) {
    let (mut h, _element, _bus) = common::harness("fgtrack", properties);
    let frame = common::blank_frame("I420", SIZE.0, SIZE.1);
    h.set_src_caps(frame.caps.clone());
    (h, frame)
}

/// Landmarks inside a box, as a detector would put them.
fn landmarks(b: PixelRect) -> [[f32; 2]; 5] {
    let (x, y, w, h) = (b.0 as f32, b.1 as f32, b.2 as f32, b.3 as f32);
    [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]
        .map(|[fx, fy]| [x + fx * w, y + fy * h])
}

/// Pushes frame `n` with faces at `boxes` (in that order) and returns each face's track, in order.
fn track(h: &mut Harness, frame: &common::Frame, n: u64, boxes: &[PixelRect]) -> Vec<Track> {
    let mut buffer = frame.buffer_at(common::pts(n));
    for &b in boxes {
        facegate_meta::add_face(
            buffer.get_mut().unwrap(),
            b,
            0.9,
            &landmarks(b),
            "yunet@test",
        );
    }
    let out = common::push_pull(h, buffer);
    let faces = common::faces(&out);
    assert_eq!(
        faces.iter().map(|f| f.bbox).collect::<Vec<_>>(),
        boxes,
        "frame {n}: the regions pass unchanged"
    );
    faces
        .iter()
        .map(|f| {
            f.track
                .unwrap_or_else(|| panic!("frame {n}: face {:?} has no track", f.bbox))
        })
        .collect()
}

#[test]
fn a_moving_face_keeps_one_id_and_ages() {
    let (mut h, frame) = tracker(&[]);
    let tracks: Vec<Track> = (0..20u32)
        .map(|n| {
            track(
                &mut h,
                &frame,
                n.into(),
                &[(100 + 12 * n, 120 + 3 * n, 120, 150)],
            )[0]
        })
        .collect();
    let id = tracks[0].id;
    for (n, t) in tracks.iter().enumerate() {
        assert_eq!(*t, Track { id, age: n as u32 }, "frame {n}");
    }
}

#[test]
fn two_faces_keep_two_distinct_ids_whatever_their_order() {
    let (mut h, frame) = tracker(&[]);
    let mut ids: Option<(u64, u64)> = None;
    for n in 0..12u32 {
        let a = (40 + 10 * n, 100, 100, 130);
        let b = (480 - 10 * n, 140 + 2 * n, 100, 130);
        // The detector lists faces best first, so their order changes from frame to frame.
        let swapped = n % 3 == 1;
        let tracks = track(
            &mut h,
            &frame,
            n.into(),
            &if swapped { [b, a] } else { [a, b] },
        );
        let (ta, tb) = if swapped {
            (tracks[1], tracks[0])
        } else {
            (tracks[0], tracks[1])
        };
        assert_ne!(ta.id, tb.id, "frame {n}");
        let ids = *ids.get_or_insert((ta.id, tb.id));
        assert_eq!((ta.id, tb.id), ids, "frame {n}: ids follow the faces");
        assert_eq!((ta.age, tb.age), (n, n), "frame {n}");
    }
}

#[test]
fn a_face_gone_longer_than_max_age_comes_back_with_a_new_id() {
    let (mut h, frame) = tracker(&[("max-age", &3u32)]);
    let face = (200, 150, 120, 150);
    let mut n = 0u64;
    let mut push = |boxes: &[PixelRect]| {
        n += 1;
        track(&mut h, &frame, n, boxes)
    };
    let first = push(&[face])[0].id;
    push(&[face]);
    // Missing for exactly max-age frames: the track survives.
    for _ in 0..3 {
        assert!(push(&[]).is_empty());
    }
    let after_short_gap = push(&[face])[0];
    assert_eq!(after_short_gap.id, first, "back within max-age");
    assert_eq!(
        after_short_gap.age, 2,
        "age counts the frames the face was seen"
    );
    // Missing for max-age + 1 frames: the id is retired.
    for _ in 0..4 {
        push(&[]);
    }
    let after_long_gap = push(&[face])[0];
    assert_ne!(
        after_long_gap.id, first,
        "a new track after more than max-age frames"
    );
    assert_eq!(after_long_gap.age, 0);
}

#[test]
fn a_flush_starts_new_tracks() {
    let (mut h, frame) = tracker(&[]);
    let face = (200, 150, 120, 150);
    let before = track(&mut h, &frame, 0, &[face])[0].id;
    assert_eq!(track(&mut h, &frame, 1, &[face])[0].id, before);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    let after = track(&mut h, &frame, 0, &[face])[0];
    assert_ne!(after.id, before, "tracks do not survive a seek");
    assert_eq!(after.age, 0);
}

#[test]
fn other_regions_are_left_alone() {
    let (mut h, frame) = tracker(&[]);
    let mut buffer = frame.buffer_at(common::pts(0));
    {
        let buf = buffer.get_mut().unwrap();
        gst_video::VideoRegionOfInterestMeta::add(buf, "car", (0, 0, 300, 200));
        let face = (200, 150, 120, 150);
        facegate_meta::add_face(buf, face, 0.9, &landmarks(face), "yunet@test");
    }
    let out = common::push_pull(&mut h, buffer);
    let rois: Vec<_> = out
        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .collect();
    assert_eq!(rois.len(), 2);
    let car = rois.iter().find(|m| m.roi_type() == "car").unwrap();
    assert_eq!(car.params().count(), 0, "the car got no params");
    assert!(common::faces(&out)[0].track.is_some());
}

#[test]
fn properties_have_the_documented_defaults_and_ranges() {
    let element = common::element("fgtrack", &[]);
    assert_eq!(common::uint_spec(&element, "max-age"), (0, 10_000, 15));
    assert_eq!(
        common::double_spec(&element, "iou-threshold"),
        (0.0, 1.0, 0.3)
    );
    assert_eq!(element.property::<u32>("max-age"), 15);
    assert_eq!(element.property::<f64>("iou-threshold"), 0.3);
    assert!(common::mutable_in_playing(&element, "max-age"));
    assert!(common::mutable_in_playing(&element, "iou-threshold"));
    common::assert_refused("fgtrack", "max-age", "10001");
    common::assert_refused("fgtrack", "iou-threshold", "1.5");
    common::assert_refused("fgtrack", "iou-threshold", "-0.5");
    assert_eq!(
        common::launched("fgtrack", "max-age", "0").property::<u32>("max-age"),
        0
    );
}

#[test]
fn pad_templates_offer_exactly_the_camera_formats() {
    common::assert_camera_formats("fgtrack");
}
