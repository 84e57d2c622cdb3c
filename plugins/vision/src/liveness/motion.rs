// SPDX-License-Identifier: MIT OR Apache-2.0
//! The motion cue: a photo, however it is held, is one plane, so its five landmarks move by one
//! homography; a real head's nose stands out of the plane of its eyes and mouth, so when the
//! head turns, the nose leaves the homography the other four points define. Each frame is
//! compared with the track's first one large enough to measure: only when the landmarks moved
//! in a way a similarity (shift, turn, scale in the image) cannot explain, that is when the face
//! turned out of the image plane, does the cue judge. Then a nose that follows the plane vetoes,
//! one well out of it confirms, and one in between is clear (judged, proving nothing); a face
//! that only walked closer gives no out-of-plane motion and the cue abstains.

use super::Reading;

/// Least out-of-plane change judged: the similarity fit's RMS residual over the five points,
/// in eye distances. Below it, the detector's landmark jitter decides: YuNet's five points on
/// a photo that is only scaled and shifted already move by up to 0.09 eye distances as the face
/// grows, as much as a 40-degree turn of a flat photo does, so only larger turns are judged
/// (about 45 degrees for a photo, 30 for a head, whose nose adds to the residual).
const MIN_CHANGE: f32 = 0.12;
/// A nose within this many eye distances of the plane's prediction follows the plane.
const PLANAR_MAX: f32 = 0.025;
/// A nose this far from it is out of the plane.
const DEPTH_MIN: f32 = 0.08;
/// The eye distance below which landmarks are too coarse to compare (pixels).
const MIN_EYE_DISTANCE: f32 = 20.0;

const NOSE: usize = 2;
const PLANE_POINTS: [usize; 4] = [0, 1, 3, 4];

/// The landmarks of a track's first frame with eyes [`MIN_EYE_DISTANCE`] apart, against which
/// later frames are read.
#[derive(Debug, Default)]
pub struct LandmarkHistory {
    reference: Option<[[f32; 2]; 5]>,
}

fn eye_distance(points: &[[f32; 2]; 5]) -> f32 {
    let (a, b) = (points[0], points[1]);
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The least-squares similarity from `from` to `to` (as a complex map z -> a z + b); returns
/// the RMS residual.
fn similarity_residual(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> f32 {
    let mean = |p: &[[f32; 2]; 5]| {
        p.iter()
            .fold([0.0f32; 2], |m, q| [m[0] + q[0] / 5.0, m[1] + q[1] / 5.0])
    };
    let (mf, mt) = (mean(from), mean(to));
    let (mut num_re, mut num_im, mut den) = (0.0f32, 0.0f32, 0.0f32);
    for (p, q) in from.iter().zip(to) {
        let (x, y) = (p[0] - mf[0], p[1] - mf[1]);
        let (u, v) = (q[0] - mt[0], q[1] - mt[1]);
        // a = sum(conj(z) w) / sum(|z|^2)
        num_re += x * u + y * v;
        num_im += x * v - y * u;
        den += x * x + y * y;
    }
    if den <= 0.0 {
        return 0.0;
    }
    let (a_re, a_im) = (num_re / den, num_im / den);
    let squared: f32 = from
        .iter()
        .zip(to)
        .map(|(p, q)| {
            let (x, y) = (p[0] - mf[0], p[1] - mf[1]);
            let (px, py) = (a_re * x - a_im * y + mt[0], a_im * x + a_re * y + mt[1]);
            (px - q[0]).powi(2) + (py - q[1]).powi(2)
        })
        .sum();
    (squared / 5.0).sqrt()
}

/// The homography taking four points `from` to `to` (row-major 3x3 with h33 = 1), by solving
/// the 8x8 linear system; `None` when the points are degenerate.
fn homography(from: [[f32; 2]; 4], to: [[f32; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (f64::from(from[i][0]), f64::from(from[i][1]));
        let (u, v) = (f64::from(to[i][0]), f64::from(to[i][1]));
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting on the augmented matrix.
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (index, row) in a.iter_mut().enumerate() {
            if index != col {
                let factor = row[col] / pivot_row[col];
                for (value, pivot_value) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *value -= factor * pivot_value;
                }
            }
        }
    }
    let mut h = [0.0f64; 9];
    for i in 0..8 {
        h[i] = a[i][8] / a[i][i];
    }
    h[8] = 1.0;
    Some(h)
}

fn apply(h: &[f64; 9], [x, y]: [f32; 2]) -> Option<[f32; 2]> {
    let (x, y) = (f64::from(x), f64::from(y));
    let w = h[6] * x + h[7] * y + h[8];
    if w.abs() < 1e-9 {
        return None;
    }
    Some([
        ((h[0] * x + h[1] * y + h[2]) / w) as f32,
        ((h[3] * x + h[4] * y + h[5]) / w) as f32,
    ])
}

/// How `to` differs from `from`: (out-of-plane change, nose's distance from the plane), both
/// in eye distances of `to`; `None` when the points cannot be compared.
pub fn planarity(from: &[[f32; 2]; 5], to: &[[f32; 2]; 5]) -> Option<(f32, f32)> {
    let scale = eye_distance(to);
    if scale < MIN_EYE_DISTANCE || eye_distance(from) < MIN_EYE_DISTANCE {
        return None;
    }
    let change = similarity_residual(from, to) / scale;
    let h = homography(PLANE_POINTS.map(|i| from[i]), PLANE_POINTS.map(|i| to[i]))?;
    let predicted = apply(&h, from[NOSE])?;
    let nose = to[NOSE];
    let off = ((predicted[0] - nose[0]).powi(2) + (predicted[1] - nose[1]).powi(2)).sqrt() / scale;
    Some((change, off))
}

impl LandmarkHistory {
    /// This frame's reading against the reference (which the first frame large enough to
    /// measure becomes: a face first seen far away keeps the cue for when it comes closer).
    pub fn read(&mut self, landmarks: &[[f32; 2]; 5]) -> Reading {
        let Some(reference) = &self.reference else {
            if eye_distance(landmarks) >= MIN_EYE_DISTANCE {
                self.reference = Some(*landmarks);
            }
            return Reading::Abstain;
        };
        match planarity(reference, landmarks) {
            Some((change, _)) if change < MIN_CHANGE => Reading::Abstain,
            Some((change, off)) if off <= PLANAR_MAX => Reading::Veto(change / MIN_CHANGE),
            Some((_, off)) if off >= DEPTH_MIN => Reading::Confirm(off / DEPTH_MIN),
            Some(_) => Reading::Clear,
            None => Reading::Abstain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face model in millimetres: eyes, nose tip (standing `nose_depth` out) and mouth corners.
    fn project(yaw_degrees: f32, nose_depth: f32) -> [[f32; 2]; 5] {
        let points = [
            [-32.0, -30.0, 0.0],
            [32.0, -30.0, 0.0],
            [0.0, 5.0, -nose_depth],
            [-25.0, 35.0, 0.0],
            [25.0, 35.0, 0.0],
        ];
        let (s, c) = yaw_degrees.to_radians().sin_cos();
        let (focal, distance) = (600.0, 500.0);
        points.map(|[x, y, z]| {
            let (xr, zr) = (c * x + s * z, -s * x + c * z);
            let depth = distance + zr;
            [320.0 + focal * xr / depth, 240.0 + focal * y / depth]
        })
    }

    #[test]
    fn a_photo_turned_away_follows_its_plane() {
        let (change, off) = planarity(&project(0.0, 0.0), &project(55.0, 0.0)).unwrap();
        assert!(change >= MIN_CHANGE, "{change}");
        assert!(off < 1e-3, "{off}");
        let mut history = LandmarkHistory::default();
        assert_eq!(history.read(&project(0.0, 0.0)), Reading::Abstain);
        assert!(matches!(
            history.read(&project(55.0, 0.0)),
            Reading::Veto(_)
        ));
    }

    #[test]
    fn a_head_turning_moves_its_nose_out_of_the_plane() {
        let mut history = LandmarkHistory::default();
        history.read(&project(0.0, 30.0));
        let reading = history.read(&project(45.0, 30.0));
        assert!(matches!(reading, Reading::Confirm(_)), "{reading:?}");
    }

    #[test]
    fn a_face_first_seen_too_small_is_measured_once_it_is_large_enough() {
        let far =
            project(0.0, 0.0).map(|[x, y]| [320.0 + 0.2 * (x - 320.0), 240.0 + 0.2 * (y - 240.0)]);
        assert!(eye_distance(&far) < MIN_EYE_DISTANCE);
        let mut history = LandmarkHistory::default();
        assert_eq!(history.read(&far), Reading::Abstain);
        assert_eq!(history.read(&project(0.0, 0.0)), Reading::Abstain);
        assert!(matches!(
            history.read(&project(55.0, 0.0)),
            Reading::Veto(_)
        ));
    }

    #[test]
    fn a_face_that_only_comes_closer_is_not_judged() {
        let near =
            project(0.0, 30.0).map(|[x, y]| [320.0 + 1.8 * (x - 320.0), 240.0 + 1.8 * (y - 240.0)]);
        let mut history = LandmarkHistory::default();
        history.read(&project(0.0, 30.0));
        assert_eq!(history.read(&near), Reading::Abstain);
    }
}
