// SPDX-License-Identifier: MIT OR Apache-2.0
//! The moire cue: a screen's pixel grid (or a print's halftone) sampled by the camera's own
//! pixel grid aliases into a few strong, isolated frequencies, which skin does not have. The
//! power spectrum of a window at the face's centre, at the camera's own resolution (resampling
//! would hide the aliasing), is searched for a peak that stands far above the rest of its ring
//! (same frequency, every orientation) and above the same orientation a little nearer and
//! farther out: an edge in the face (an eyelid, glasses) is strong along one orientation at
//! every frequency, so it fails the second test.

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use super::{FaceView, Reading};

/// The window's side in pixels: a power of two the smallest face at the gate covers.
const N: usize = 64;
/// The frequency band searched, in cycles per window: above the face's own structure, below
/// the band edge where demosaicing leaves its own traces.
const RADIUS: (f32, f32) = (9.0, 30.0);
/// How much a peak must exceed its ring's median, and the same orientation `RADIAL_STEP`
/// cycles nearer and farther out.
const RING_RATIO: f32 = 25.0;
const RADIAL_RATIO: f32 = 4.0;
const RADIAL_STEP: f32 = 3.0;
/// The peak strength (1 at both thresholds) that vetoes. Resized JPEG photos of live faces
/// leave isolated peaks up to about 3 (their blocks resampled off the 8x8 grid); a phone's pixel
/// grid seen by the camera reaches 50 to 1000 (docs/ACCURACY.md, "Presentation attacks").
const VETO_STRENGTH: f32 = 5.0;
/// JPEG's 8x8 blocks put power exactly on multiples of N/8 in both axes: never a moire peak.
const BLOCK: i32 = (N / 8) as i32;

/// The cue, with its FFT plan and buffers.
pub struct MoireMeter {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    grid: Vec<Complex32>,
    column: Vec<Complex32>,
    power: Vec<f32>,
    ring: Vec<f32>,
}

impl Default for MoireMeter {
    fn default() -> Self {
        let fft = FftPlanner::new().plan_fft_forward(N);
        let window = (0..N)
            .map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / N as f32).cos())
            .collect();
        MoireMeter {
            fft,
            window,
            grid: vec![Complex32::default(); N * N],
            column: vec![Complex32::default(); N],
            power: vec![0.0; N * N],
            ring: Vec::with_capacity(4 * N),
        }
    }
}

/// Frequency index `i` (0..N) as a signed frequency.
fn signed(i: usize) -> i32 {
    if i < N / 2 {
        i as i32
    } else {
        i as i32 - N as i32
    }
}

fn index(fu: i32, fv: i32) -> usize {
    let wrap = |f: i32| f.rem_euclid(N as i32) as usize;
    wrap(fv) * N + wrap(fu)
}

impl MoireMeter {
    /// The strongest isolated peak's strength, 1 at the thresholds; `None` when the face is
    /// too small for the window.
    pub fn peak(&mut self, face: &FaceView<'_>) -> Option<f32> {
        let grey = face.grey;
        let b = face.bbox;
        if b.w < N as f32 || b.h < N as f32 {
            return None;
        }
        let centre = face
            .landmarks
            .iter()
            .fold([0.0f32; 2], |c, p| [c[0] + p[0] / 5.0, c[1] + p[1] / 5.0]);
        let x0 = (centre[0] - N as f32 / 2.0).round();
        let y0 = (centre[1] - N as f32 / 2.0).round();
        if x0 < 0.0 || y0 < 0.0 {
            return None;
        }
        let (x0, y0) = (x0 as usize, y0 as usize);
        if x0 + N > grey.width || y0 + N > grey.height {
            return None;
        }
        let mut sum = 0.0f32;
        for y in 0..N {
            for x in 0..N {
                sum += f32::from(grey.at(x0 + x, y0 + y));
            }
        }
        let mean = sum / (N * N) as f32;
        for y in 0..N {
            for x in 0..N {
                let value =
                    (f32::from(grey.at(x0 + x, y0 + y)) - mean) * self.window[x] * self.window[y];
                self.grid[y * N + x] = Complex32::new(value, 0.0);
            }
        }
        for row in self.grid.chunks_exact_mut(N) {
            self.fft.process(row);
        }
        for x in 0..N {
            for y in 0..N {
                self.column[y] = self.grid[y * N + x];
            }
            self.fft.process(&mut self.column);
            for y in 0..N {
                self.power[y * N + x] = self.column[y].norm_sqr();
            }
        }
        Some(self.strongest_peak())
    }

    fn strongest_peak(&mut self) -> f32 {
        let radius = |fu: i32, fv: i32| ((fu * fu + fv * fv) as f32).sqrt();
        let mut best = 0.0f32;
        // Rings one cycle wide; conjugate symmetry: the upper half-plane suffices.
        let (low, high) = (RADIUS.0.floor() as i32, RADIUS.1.ceil() as i32);
        for ring in low..=high {
            self.ring.clear();
            for v in 0..=N / 2 {
                for u in 0..N {
                    let (fu, fv) = (signed(u), v as i32);
                    if radius(fu, fv).round() as i32 == ring {
                        self.ring.push(self.power[index(fu, fv)]);
                    }
                }
            }
            if self.ring.len() < 8 {
                continue;
            }
            let middle = self.ring.len() / 2;
            let median = (*self.ring.select_nth_unstable_by(middle, f32::total_cmp).1)
                .max(f32::MIN_POSITIVE);
            for v in 0..=N / 2 {
                for u in 0..N {
                    let (fu, fv) = (signed(u), v as i32);
                    let r = radius(fu, fv);
                    if r.round() as i32 != ring || (fu % BLOCK == 0 && fv % BLOCK == 0) {
                        continue;
                    }
                    if !(RADIUS.0..=RADIUS.1).contains(&r) {
                        continue;
                    }
                    let p = self.power[index(fu, fv)];
                    let ring_ratio = p / median;
                    if ring_ratio < RING_RATIO {
                        continue;
                    }
                    let along = |step: f32| {
                        let k = (r + step) / r;
                        let (su, sv) = (
                            (fu as f32 * k).round() as i32,
                            (fv as f32 * k).round() as i32,
                        );
                        self.power[index(su, sv)]
                    };
                    let neighbour = along(-RADIAL_STEP)
                        .max(along(RADIAL_STEP))
                        .max(f32::MIN_POSITIVE);
                    let radial_ratio = p / neighbour;
                    if radial_ratio < RADIAL_RATIO {
                        continue;
                    }
                    best = best.max((ring_ratio / RING_RATIO).min(radial_ratio / RADIAL_RATIO));
                }
            }
        }
        best
    }

    /// The moire cue's reading of one frame: veto on a peak of [`VETO_STRENGTH`], clear below
    /// it (which proves nothing: an ordinary camera cannot see a fine enough grid on every
    /// screen), abstain for a face the window does not fit.
    pub fn read(&mut self, face: &FaceView<'_>) -> Reading {
        match self.peak(face) {
            Some(strength) if strength >= VETO_STRENGTH => Reading::Veto(strength / VETO_STRENGTH),
            Some(_) => Reading::Clear,
            None => Reading::Abstain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 160;
    const H: usize = 160;

    fn view(pixels: &[u8]) -> FaceView<'_> {
        FaceView::boxed(pixels, W, [30.0, 30.0, 100.0, 100.0])
    }

    /// A smooth "face": a bright disc with soft shading and one dark straight edge.
    fn face(grid: bool) -> Vec<u8> {
        let mut pixels = vec![0u8; W * H];
        for y in 0..H {
            for x in 0..W {
                let (dx, dy) = (x as f32 - 80.0, y as f32 - 80.0);
                let mut value = 180.0 - 0.01 * (dx * dx + dy * dy);
                if (70..74).contains(&y) {
                    value -= 60.0;
                }
                if grid {
                    // A pixel grid of pitch 1.45 camera pixels, aliased by the sampling.
                    let phase = (x as f32 / 1.45).fract() * (y as f32 / 1.45).fract();
                    value += if phase < 0.25 { -25.0 } else { 0.0 };
                }
                pixels[y * W + x] = value.clamp(0.0, 255.0) as u8;
            }
        }
        pixels
    }

    #[test]
    fn a_resampled_pixel_grid_is_vetoed() {
        let pixels = face(true);
        let reading = MoireMeter::default().read(&view(&pixels));
        assert!(matches!(reading, Reading::Veto(_)), "{reading:?}");
    }

    #[test]
    fn a_smooth_face_with_an_edge_is_not() {
        let pixels = face(false);
        let mut meter = MoireMeter::default();
        let peak = meter.peak(&view(&pixels)).unwrap();
        assert!(peak < 1.0, "{peak}");
        assert_eq!(meter.read(&view(&pixels)), Reading::Clear);
    }

    #[test]
    fn a_face_smaller_than_the_window_abstains() {
        let pixels = face(true);
        let mut small = view(&pixels);
        small.bbox.w = 40.0;
        assert_eq!(MoireMeter::default().read(&small), Reading::Abstain);
    }
}
