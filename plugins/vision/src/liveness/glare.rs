// SPDX-License-Identifier: MIT OR Apache-2.0
//! The glare cue: glass in front of a face (a phone's, a framed photo's) reflects the lights as
//! a large, flat, saturated patch over the face. Skin's own highlights are small (the tip of the
//! nose, the forehead). An overexposed camera can burn a real face out flatly too, so the patch
//! must also cover a sizeable share of the face's middle, which a gate's lighting keeps exposed.

use super::{FaceView, Reading};

/// Brightness at which a pixel counts as saturated (0..255).
const SATURATED: u8 = 240;
/// Largest step to a neighbour for a saturated pixel to count as flat.
const FLAT_STEP: u8 = 6;
/// Share of the face's middle that must be flat and saturated to veto.
const SHARE: f32 = 0.06;
/// The face's middle: the box shrunk by this share on every side (hair and background out).
const INSET: f32 = 0.15;

/// The share of the face's middle that is flat and saturated; `None` for a face too small.
pub fn glare_share(face: &FaceView<'_>) -> Option<f32> {
    let grey = face.grey;
    let (x0, y0, x1, y1) = grey.inner(&face.bbox, INSET, 8)?;
    let mut flat = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            let centre = grey.at(x, y);
            if centre < SATURATED {
                continue;
            }
            let steps = [
                grey.at(x - 1, y),
                grey.at(x + 1, y),
                grey.at(x, y - 1),
                grey.at(x, y + 1),
            ];
            if steps.iter().all(|&n| centre.abs_diff(n) <= FLAT_STEP) {
                flat += 1;
            }
        }
    }
    Some(flat as f32 / ((x1 - x0) * (y1 - y0)) as f32)
}

/// The glare cue's reading of one frame: veto past [`SHARE`], clear below it (a screen seen
/// from an angle without a light behind the camera has no glare either), abstain for a face
/// too small.
pub fn glare(face: &FaceView<'_>) -> Reading {
    match glare_share(face) {
        Some(share) if share >= SHARE => Reading::Veto(share / SHARE),
        Some(_) => Reading::Clear,
        None => Reading::Abstain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 100;

    fn view(pixels: &[u8]) -> FaceView<'_> {
        FaceView::boxed(pixels, W, [10.0, 10.0, 80.0, 80.0])
    }

    fn skin(patch: usize) -> Vec<u8> {
        let mut pixels: Vec<u8> = (0..W * W).map(|i| 120 + (i * 7 % 30) as u8).collect();
        for y in 30..30 + patch {
            for x in 30..30 + patch {
                pixels[y * W + x] = 252;
            }
        }
        pixels
    }

    #[test]
    fn a_large_flat_saturated_patch_vetoes() {
        let pixels = skin(20);
        assert!(matches!(glare(&view(&pixels)), Reading::Veto(_)));
    }

    #[test]
    fn a_highlight_does_not() {
        let pixels = skin(5);
        assert_eq!(glare(&view(&pixels)), Reading::Clear);
    }
}
