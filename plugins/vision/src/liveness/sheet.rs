// SPDX-License-Identifier: MIT OR Apache-2.0
//! The paper-margin cue: a printed photo is a sheet, and a printer leaves the sheet's edge
//! unprinted. Walking outwards from the face along each row (left and right sides) and each
//! column (top and bottom), a margin is a bright, flat run with darker pixels on both sides:
//! the printed picture inside, the scene outside. A side has a margin when most lines show
//! such a run and both its edges lie on straight lines (the picture's edge and the sheet's
//! stay straight under any perspective); two sides veto. It is the bezel cue's counterpart
//! ([`super::screen`]), and uses its walk.
//!
//! What it does not see: a print trimmed to the picture, or a picture whose own background is
//! as white as the paper (the margin then has no inner edge). A photo on a wall, or a live
//! face before a bright door frame, shows one bright band at most, and rarely two straight
//! edges to it on two sides. What it cannot tell from a print is a picture with a white border
//! of its own on two sides, such as a photo cut from a collage: that is a margin.

use super::screen::{Line, Side, framed_sides, side_shows};
use super::{FaceView, Reading};

/// Dimmest a margin may be (0..255): white paper under the light a gate camera is exposed for.
const PAPER_MIN: f32 = 120.0;
/// How much brighter than the picture inside and the scene outside the margin must be.
const INNER_STEP: f32 = 15.0;
const OUTER_STEP: f32 = 25.0;
/// How far from the margin's own brightness (its first pixels) a margin pixel may be: paper
/// grain and the camera's noise, not printed detail.
const FLAT: f32 = 14.0;
/// The margin's width, as shares of the face's height: a few millimetres of a sheet printed
/// around a face, seen at a slant or straight on.
const MIN_WIDTH_SHARE: f32 = 0.06;
const MAX_WIDTH_SHARE: f32 = 0.35;
/// The narrowest margin judged (pixels): thinner is a line in the picture.
const MIN_WIDTH: usize = 4;
/// How far from the face box a margin is looked for, in face widths: a sheet is larger than a
/// phone's screen.
const REACH: f32 = 1.5;
/// The part of the face's extent along a side whose lines are walked (shares of it): from half
/// a face before it to half a face past it. A sheet's margin runs on past the face, where a
/// bright backdrop between a head and the edge of its photo ends at the neck and the crown.
const ALONG: (f32, f32) = (-0.5, 1.5);
/// Pixels averaged on each side of an edge; the pixel on the edge itself is skipped, since the
/// lens spreads it over both sides.
const SIDE_PIXELS: usize = 3;

impl Line<'_> {
    /// Where the first margin-like run starts and ends (pixels from the line's start), if any.
    fn margin_at(&self, min_width: usize, max_width: usize) -> Option<[f32; 2]> {
        let len = self.len;
        for begin in SIDE_PIXELS + 1..len.saturating_sub(SIDE_PIXELS) {
            let paper = self.mean(begin, begin + SIDE_PIXELS);
            if paper < PAPER_MIN
                || paper < self.mean(begin - 1 - SIDE_PIXELS, begin - 1) + INNER_STEP
            {
                continue;
            }
            let mut end = begin;
            while end < len && (f32::from(self.at(end)) - paper).abs() <= FLAT {
                end += 1;
            }
            let width = end - begin;
            if !(min_width..=max_width).contains(&width) || end + 1 + SIDE_PIXELS > len {
                continue;
            }
            if paper >= self.mean(end + 1, end + 1 + SIDE_PIXELS) + OUTER_STEP {
                return Some([begin as f32, end as f32]);
            }
        }
        None
    }
}

/// Whether one side of the face shows a sheet's straight margin; `None` when that side cannot
/// be looked at.
fn side_has_margin(face: &FaceView<'_>, side: Side) -> Option<bool> {
    let h = face.bbox.h;
    let min_width = ((MIN_WIDTH_SHARE * h).round() as usize).max(MIN_WIDTH);
    let max_width = ((MAX_WIDTH_SHARE * h).round() as usize).max(min_width);
    let min_len = 2 * SIDE_PIXELS + 2 + min_width;
    side_shows(face, side, ALONG, REACH, min_len, |line| {
        line.margin_at(min_width, max_width)
    })
}

/// The paper-margin cue's reading of one frame: veto when two sides show one, as
/// `framed_sides` counts them.
pub fn paper_margin(face: &FaceView<'_>) -> Reading {
    framed_sides(face, side_has_margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;
    use crate::liveness::{ScenePart, framed_scene};

    const W: usize = 400;
    const H: usize = 300;

    /// A dark grey scene with a sheet (x 110..290, y 20..280, slanted when `slanted`) whose
    /// picture leaves a white margin of `margin` pixels, the picture's background `backdrop`,
    /// and a face box in its middle.
    fn scene(margin: i32, backdrop: u8, slanted: bool) -> Vec<u8> {
        framed_scene(
            (W, H),
            [110, 290, 20, 280],
            margin,
            |y| if slanted { (y - 150) / 10 } else { 0 },
            |part, x, y| match part {
                ScenePart::Picture => backdrop.saturating_add(((x * 7 + y * 3) % 30) as u8),
                // Paper grain: a few levels, never printed detail.
                ScenePart::Frame => 206 + ((x * 13 + y * 7) % 9) as u8,
                ScenePart::Scene => 64,
            },
        )
    }

    fn view(pixels: &[u8]) -> FaceView<'_> {
        FaceView::boxed(pixels, W, [155.0, 90.0, 90.0, 110.0])
    }

    #[test]
    fn a_print_with_a_white_margin_is_vetoed_even_slanted() {
        for slanted in [false, true] {
            let pixels = scene(18, 90, slanted);
            assert!(
                matches!(paper_margin(&view(&pixels)), Reading::Veto(_)),
                "slanted {slanted}"
            );
        }
    }

    #[test]
    fn a_photo_on_the_scene_without_a_margin_is_not() {
        let pixels = scene(0, 90, false);
        assert_eq!(paper_margin(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_picture_as_white_as_its_paper_shows_no_inner_edge() {
        let pixels = scene(18, 200, false);
        assert_eq!(paper_margin(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_bright_region_wider_than_a_margin_is_not() {
        let pixels = scene(60, 90, false);
        assert_eq!(paper_margin(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_face_filling_the_frame_is_not_judged() {
        let pixels = scene(18, 90, false);
        let mut face = view(&pixels);
        face.bbox = Rect {
            x: 2.0,
            y: 2.0,
            w: W as f32 - 4.0,
            h: H as f32 - 4.0,
        };
        assert_eq!(paper_margin(&face), Reading::Abstain);
    }
}
