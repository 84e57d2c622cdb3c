// SPDX-License-Identifier: MIT OR Apache-2.0
//! The paper-texture cue: a print's ink cannot reach a face's contrast (paper reflects even
//! where the ink is darkest, and its white is the paper's), and the paper's grain lies under
//! the whole picture. So a print's grain is strong against its own contrast. The grain is the
//! median absolute Laplacian over the face's middle (robust: skin is mostly smooth, so the
//! median sees the fine texture, not the features' edges), the contrast the spread between its
//! 5th and 95th brightness percentiles; their ratio is scale-free.
//!
//! A camera's own noise in poor light raises the ratio too: the threshold holds for the noise of
//! a lit gate, and the ratio is in fglive's debug log for tuning on a real camera.

use super::{FaceView, Reading};

/// The ratio of grain to contrast at which a face reads as a print: a coarse, grainy print.
/// At a gate camera's resolution the grain of matte paper is finer than a pixel and averaged
/// away, so the repository's prints read 0.03 to 0.07, among live faces (0.02 to 0.18, a sharp
/// face in soft light at the top): no threshold separates them there, which is why the cue is
/// off by default (docs/ACCURACY.md, "Presentation attacks").
const RATIO: f32 = 0.12;
/// The face's middle: the box shrunk by this share on every side.
const INSET: f32 = 0.15;
/// The smallest contrast judged (0..255): a face in the dark tells nothing.
const MIN_CONTRAST: f32 = 40.0;

/// The grain-to-contrast ratio of the face's middle; `None` for a face too small or too dark.
pub fn grain_ratio(face: &FaceView<'_>) -> Option<f32> {
    let grey = face.grey;
    let (x0, y0, x1, y1) = grey.inner(&face.bbox, INSET, 16)?;
    let mut brightness = [0u32; 256];
    let mut grain = [0u32; 256];
    for y in y0..y1 {
        for x in x0..x1 {
            let centre = i32::from(grey.at(x, y));
            brightness[centre as usize] += 1;
            let laplacian = 4 * centre
                - i32::from(grey.at(x - 1, y))
                - i32::from(grey.at(x + 1, y))
                - i32::from(grey.at(x, y - 1))
                - i32::from(grey.at(x, y + 1));
            grain[laplacian.unsigned_abs().min(255) as usize] += 1;
        }
    }
    let count = ((x1 - x0) * (y1 - y0)) as u32;
    let percentile = |histogram: &[u32; 256], share: f32| {
        let wanted = (share * count as f32).ceil() as u32;
        let mut seen = 0;
        for (value, n) in histogram.iter().enumerate() {
            seen += n;
            if seen >= wanted.max(1) {
                return value as f32;
            }
        }
        255.0
    };
    let contrast = percentile(&brightness, 0.95) - percentile(&brightness, 0.05);
    if contrast < MIN_CONTRAST {
        return None;
    }
    Some(percentile(&grain, 0.5) / contrast)
}

/// The paper-texture cue's reading of one frame: veto past [`RATIO`], clear below it (a smooth
/// glossy print gives no grain either), abstain for a face too small or too dark.
pub fn paper_texture(face: &FaceView<'_>) -> Reading {
    match grain_ratio(face) {
        Some(ratio) if ratio >= RATIO => Reading::Veto(ratio / RATIO),
        Some(_) => Reading::Clear,
        None => Reading::Abstain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 120;

    fn view(pixels: &[u8]) -> FaceView<'_> {
        FaceView::boxed(pixels, W, [10.0, 10.0, 100.0, 100.0])
    }

    /// A smooth face: a brightness ramp from `dark` to `light`, plus `grain` of noise.
    fn face(dark: f32, light: f32, grain: f32) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..W * W)
            .map(|i| {
                let t = (i % W) as f32 / W as f32;
                let noise = (rng.f32() - 0.5) * 2.0 * grain;
                (dark + (light - dark) * t + noise).clamp(0.0, 255.0) as u8
            })
            .collect()
    }

    #[test]
    fn grain_on_faded_ink_is_a_print() {
        let pixels = face(70.0, 200.0, 9.0);
        assert!(matches!(paper_texture(&view(&pixels)), Reading::Veto(_)));
    }

    #[test]
    fn a_smooth_face_with_full_contrast_is_not() {
        let pixels = face(20.0, 230.0, 1.0);
        assert_eq!(paper_texture(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_flat_dark_face_tells_nothing() {
        let pixels = face(30.0, 50.0, 9.0);
        assert_eq!(grain_ratio(&view(&pixels)), None);
        assert_eq!(paper_texture(&view(&pixels)), Reading::Abstain);
    }
}
