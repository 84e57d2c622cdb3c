// SPDX-License-Identifier: MIT OR Apache-2.0
//! The bezel cue: a phone or tablet shows the face inside a dark frame. Walking outwards from
//! the face along each row (for the left and right sides) and each column (top and bottom),
//! a bezel is a short dark run with brighter pixels on both sides: the screen inside, the
//! scene outside. A side has a bezel when most lines show such a run and the runs lie on one
//! straight line (a device's edge stays straight under any perspective); two sides veto.
//! A dark door frame or coat gives at most one side, and has no lit screen inside it.

use super::{FaceView, Grey, Reading};

/// Brightest a bezel pixel may be (0..255): a phone's body or an unlit screen border.
const DARK_MAX: u8 = 50;
/// How much brighter than the dark run the screen inside and the scene outside must be.
const INNER_STEP: f32 = 20.0;
const OUTER_STEP: f32 = 12.0;
/// The widest bezel, as a share of the face's width, and the narrowest in pixels.
const MAX_WIDTH_SHARE: f32 = 0.15;
const MIN_WIDTH: usize = 2;
/// How far from the face box a bezel is looked for, in face widths (a phone's screen is at most
/// about twice as wide as the face it shows).
const REACH: f32 = 1.2;
/// The part of the face's extent along a side whose lines are walked: its middle 80 % (a
/// phone's screen is little larger than the face it shows).
const ALONG: (f32, f32) = (0.1, 0.9);
/// Pixels of the face box's edge skipped before looking, as a share of the face width: the box
/// cuts through hair and cheeks.
const START_SHARE: f32 = 0.05;
/// Share of a side's lines that must show a run, and how far from one straight line (pixels,
/// plus a share of the face width) the runs may lie.
const LINE_SHARE: f32 = 0.6;
const LINE_SLACK: f32 = 1.5;
const LINE_SLACK_SHARE: f32 = 0.015;
/// Sides with a bezel that veto.
const SIDES: usize = 2;
/// Pixels of screen (inside) and scene (outside) averaged on each side of a run.
const SIDE_PIXELS: usize = 3;

/// The four ways out of the face box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Left,
    Right,
    Top,
    Bottom,
}

/// Reads one line of the frame walking away from the face: pixel `i` steps out.
pub(super) struct Line<'a> {
    grey: Grey<'a>,
    side: Side,
    /// The row (left, right) or column (top, bottom) walked along.
    across: usize,
    /// The first pixel outside the face box, along the walk.
    start: usize,
    pub(super) len: usize,
}

impl Line<'_> {
    pub(super) fn at(&self, i: usize) -> u8 {
        match self.side {
            Side::Left => self.grey.at(self.start - i, self.across),
            Side::Right => self.grey.at(self.start + i, self.across),
            Side::Top => self.grey.at(self.across, self.start - i),
            Side::Bottom => self.grey.at(self.across, self.start + i),
        }
    }

    pub(super) fn mean(&self, from: usize, to: usize) -> f32 {
        let sum: u32 = (from..to).map(|i| u32::from(self.at(i))).sum();
        sum as f32 / (to - from).max(1) as f32
    }

    /// Where the first bezel-like run starts (pixels from `start`), if any.
    fn bezel_at(&self, max_width: usize) -> Option<usize> {
        let mut i = SIDE_PIXELS;
        while i + SIDE_PIXELS < self.len {
            if self.at(i) > DARK_MAX {
                i += 1;
                continue;
            }
            let begin = i;
            while i < self.len && self.at(i) <= DARK_MAX {
                i += 1;
            }
            let width = i - begin;
            if i + SIDE_PIXELS > self.len {
                return None;
            }
            if (MIN_WIDTH..=max_width).contains(&width) {
                let run = self.mean(begin, i);
                let inside = self.mean(begin - SIDE_PIXELS, begin);
                let outside = self.mean(i, i + SIDE_PIXELS);
                if inside >= run + INNER_STEP && outside >= run + OUTER_STEP {
                    return Some(begin);
                }
            }
            // A dark region that is no bezel: the screen (if any) lies beyond it.
        }
        None
    }
}

/// Whether one side of the face shows a straight bezel; `None` when that side cannot be looked
/// at (the face is at the frame's edge, or too small for lines).
fn side_has_bezel(face: &FaceView<'_>, side: Side) -> Option<bool> {
    let max_width = ((MAX_WIDTH_SHARE * face.bbox.w).round() as usize).max(MIN_WIDTH + 1);
    side_shows(
        face,
        side,
        ALONG,
        REACH,
        2 * SIDE_PIXELS + MIN_WIDTH,
        |line| line.bezel_at(max_width).map(|at| [at as f32]),
    )
}

/// Whether one side of the face shows what `find` looks for on most of its lines, each of the
/// `N` edges it reports lying on one straight line; `None` when that side cannot be looked at
/// (the face is at the frame's edge, or fewer than `min_len` pixels of the walk are in the
/// frame). The lines walk up to `reach` face widths out, every second row or column across
/// `along` of the face's extent along the side (shares of it: 0 to 1 is the face box), as far
/// as the frame goes.
pub(super) fn side_shows<const N: usize>(
    face: &FaceView<'_>,
    side: Side,
    along: (f32, f32),
    reach: f32,
    min_len: usize,
    find: impl Fn(&Line<'_>) -> Option<[f32; N]>,
) -> Option<bool> {
    let grey = face.grey;
    let b = face.bbox;
    let skip = (START_SHARE * b.w).round();
    let reach = (reach * b.w).round() as usize;
    let (first, last) = along;
    let (from, to, start) = match side {
        Side::Left => (b.y + first * b.h, b.y + last * b.h, b.x - skip),
        Side::Right => (b.y + first * b.h, b.y + last * b.h, b.x + b.w + skip),
        Side::Top => (b.x + first * b.w, b.x + last * b.w, b.y - skip),
        Side::Bottom => (b.x + first * b.w, b.x + last * b.w, b.y + b.h + skip),
    };
    let (extent, limit) = match side {
        Side::Left | Side::Right => (grey.height, grey.width),
        Side::Top | Side::Bottom => (grey.width, grey.height),
    };
    if start < 0.0 || start >= limit as f32 {
        return None;
    }
    let start = start as usize;
    let room = match side {
        Side::Left | Side::Top => start,
        Side::Right | Side::Bottom => limit - 1 - start,
    };
    let len = reach.min(room);
    let from = from.max(0.0) as usize;
    let to = (to.max(0.0) as usize).min(extent);
    if to <= from + 4 || len < min_len {
        return None;
    }
    let mut hits: Vec<(f32, [f32; N])> = Vec::new();
    let mut lines = 0usize;
    for across in (from..to).step_by(2) {
        lines += 1;
        let line = Line {
            grey,
            side,
            across,
            start,
            len,
        };
        if let Some(at) = find(&line) {
            hits.push((across as f32, at));
        }
    }
    if (hits.len() as f32) < LINE_SHARE * lines as f32 || hits.len() < 4 {
        return Some(false);
    }
    let slack = LINE_SLACK + LINE_SLACK_SHARE * b.w;
    Some((0..N).all(|edge| {
        let points: Vec<(f32, f32)> = hits.iter().map(|(a, at)| (*a, at[edge])).collect();
        straight_enough(&points, slack, lines)
    }))
}

/// Whether at least [`LINE_SHARE`] of `lines` lie within `slack` of the least-squares line
/// through `points` (the runs found), refitted once without the farthest: a few runs may be
/// caught on something else.
fn straight_enough(points: &[(f32, f32)], slack: f32, lines: usize) -> bool {
    let fit = |points: &[(f32, f32)]| {
        let n = points.len() as f32;
        let (mx, my) = points
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
        let sxx: f32 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f32 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        move |x: f32| my + slope * (x - mx)
    };
    let line = fit(points);
    let residuals: Vec<f32> = points.iter().map(|p| (p.1 - line(p.0)).abs()).collect();
    let mut sorted = residuals.clone();
    sorted.sort_by(f32::total_cmp);
    let cut = sorted[(sorted.len() * 3) / 4];
    let kept: Vec<(f32, f32)> = points
        .iter()
        .zip(&residuals)
        .filter(|(_, r)| **r <= cut)
        .map(|(p, _)| *p)
        .collect();
    let line = fit(&kept);
    let on_line = points
        .iter()
        .filter(|p| (p.1 - line(p.0)).abs() <= slack)
        .count();
    on_line as f32 >= LINE_SHARE * lines as f32
}

/// The bezel cue's reading of one frame: veto when [`SIDES`] sides show one; clear when fewer
/// do although [`SIDES`] could be looked at (which proves nothing: a face without a bezel in
/// view may still be on a screen); abstain when fewer sides are in the frame.
pub fn bezel(face: &FaceView<'_>) -> Reading {
    framed_sides(face, side_has_bezel)
}

/// Veto when two sides show what `side_shows` looks for; clear when fewer do although two could
/// be looked at (which proves nothing); abstain when fewer than two are in the frame.
pub(super) fn framed_sides(
    face: &FaceView<'_>,
    side_shows: impl Fn(&FaceView<'_>, Side) -> Option<bool>,
) -> Reading {
    let sides =
        [Side::Left, Side::Right, Side::Top, Side::Bottom].map(|side| side_shows(face, side));
    let framed = sides.iter().filter(|s| **s == Some(true)).count();
    let looked = sides.iter().filter(|s| s.is_some()).count();
    if framed >= SIDES {
        Reading::Veto(framed as f32 / SIDES as f32)
    } else if looked >= SIDES {
        Reading::Clear
    } else {
        Reading::Abstain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;
    use crate::liveness::{ScenePart, framed_scene};

    const W: usize = 320;
    const H: usize = 240;

    /// A grey scene with a bright "screen" (x 100..220, y 30..210) framed by a dark bezel of
    /// `bezel` pixels, and a face box in its middle.
    fn scene(bezel: usize, rotated: bool) -> Vec<u8> {
        let b = bezel as i32;
        framed_scene(
            (W, H),
            [100 - b, 220 + b, 30 - b, 210 + b],
            b,
            // A slight slant, as a hand holds a phone.
            |y| if rotated { (y - 120) / 12 } else { 0 },
            |part, x, y| match part {
                ScenePart::Picture => 150 + ((x * 7 + y * 3) % 40) as u8,
                ScenePart::Frame => 14,
                ScenePart::Scene => 64,
            },
        )
    }

    fn view(pixels: &[u8]) -> FaceView<'_> {
        FaceView::boxed(pixels, W, [125.0, 70.0, 70.0, 90.0])
    }

    #[test]
    fn a_screen_in_a_dark_frame_is_vetoed_even_slanted() {
        for rotated in [false, true] {
            let pixels = scene(5, rotated);
            assert!(
                matches!(bezel(&view(&pixels)), Reading::Veto(_)),
                "rotated {rotated}"
            );
        }
    }

    #[test]
    fn a_photo_on_the_scene_without_a_frame_is_not() {
        let pixels = scene(0, false);
        assert_eq!(bezel(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_dark_region_wider_than_a_bezel_is_not() {
        let pixels = scene(40, false);
        assert_eq!(bezel(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_face_filling_the_frame_is_not_judged() {
        let pixels = scene(5, false);
        let mut face = view(&pixels);
        face.bbox = Rect {
            x: 2.0,
            y: 2.0,
            w: W as f32 - 4.0,
            h: H as f32 - 4.0,
        };
        assert_eq!(bezel(&face), Reading::Abstain);
    }
}
