// SPDX-License-Identifier: MIT OR Apache-2.0
//! Face alignment: a similarity transform from the five landmarks onto the ArcFace template,
//! then a bilinear warp into the embedder's 112x112 input, normalised as its model card says.

use crate::frame::Frame;
use crate::geometry::LANDMARKS;
use crate::model_card::{ColourOrder, Normalisation};

/// Side of the aligned face crop.
pub const ALIGNED_SIZE: usize = 112;

/// Where the five landmarks land in a 112x112 crop (the ArcFace template SFace was trained on).
pub const TEMPLATE: [[f32; 2]; LANDMARKS] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A similarity transform `[a -b tx; b a ty]` (rotation, uniform scale, translation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// The least-squares similarity taking `from` onto `to` (Umeyama's estimate without
    /// reflection, in its closed 2-D form). `None` when the source points coincide.
    pub fn estimate(
        from: &[[f32; 2]; LANDMARKS],
        to: &[[f32; 2]; LANDMARKS],
    ) -> Option<Similarity> {
        let n = LANDMARKS as f64;
        let mean = |pts: &[[f32; 2]; LANDMARKS]| {
            let (sx, sy) = pts.iter().fold((0.0, 0.0), |(sx, sy), p| {
                (sx + p[0] as f64, sy + p[1] as f64)
            });
            (sx / n, sy / n)
        };
        let (fx, fy) = mean(from);
        let (tx, ty) = mean(to);
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for (f, t) in from.iter().zip(to) {
            let (sx, sy) = (f[0] as f64 - fx, f[1] as f64 - fy);
            let (dx, dy) = (t[0] as f64 - tx, t[1] as f64 - ty);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            norm += sx * sx + sy * sy;
        }
        if norm.is_nan() || norm <= 1e-9 {
            return None;
        }
        let (a, b) = (dot / norm, cross / norm);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: (tx - (a * fx - b * fy)) as f32,
            ty: (ty - (b * fx + a * fy)) as f32,
        })
    }

    pub fn apply(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        [
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        ]
    }

    pub fn inverse(&self) -> Similarity {
        let det = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / det, -self.b / det);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }
}

/// Warps the face with these landmarks into `tensor`, three planes of
/// [`ALIGNED_SIZE`]² values each, normalised by `normalisation`; pixels outside the frame are
/// black (before normalisation).  False if the landmarks are degenerate.
pub fn align_planar(
    frame: &Frame,
    landmarks: &[[f32; 2]; LANDMARKS],
    normalisation: &Normalisation,
    tensor: &mut [f32],
) -> bool {
    let Some(to_crop) = Similarity::estimate(landmarks, &TEMPLATE) else {
        return false;
    };
    let to_frame = to_crop.inverse();
    let plane = ALIGNED_SIZE * ALIGNED_SIZE;
    let (first, rest) = tensor[..3 * plane].split_at_mut(plane);
    let (second, third) = rest.split_at_mut(plane);
    let Normalisation {
        colour,
        mean,
        inverse_std,
    } = *normalisation;
    for v in 0..ALIGNED_SIZE {
        for u in 0..ALIGNED_SIZE {
            let [x, y] = to_frame.apply([u as f32, v as f32]);
            let [r, g, b] = frame.sample_rgb(x, y).unwrap_or([0.0; 3]);
            let pixel = match colour {
                ColourOrder::Rgb => [r, g, b],
                ColourOrder::Bgr => [b, g, r],
            };
            let i = v * ALIGNED_SIZE + u;
            first[i] = (pixel[0] - mean[0]) * inverse_std[0];
            second[i] = (pixel[1] - mean[1]) * inverse_std[1];
            third[i] = (pixel[2] - mean[2]) * inverse_std[2];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 12.0,
            ty: -7.0,
        };
        let to = TEMPLATE.map(|p| truth.apply(p));
        let estimate = Similarity::estimate(&TEMPLATE, &to).unwrap();
        for (got, want) in [estimate.a, estimate.b, estimate.tx, estimate.ty]
            .iter()
            .zip([0.8, 0.3, 12.0, -7.0])
        {
            assert!((got - want).abs() < 1e-4, "{estimate:?}");
        }
    }

    #[test]
    fn inverse_round_trips() {
        let s = Similarity {
            a: 1.5,
            b: -0.4,
            tx: 3.0,
            ty: 9.0,
        };
        let p = s.inverse().apply(s.apply([10.0, -4.0]));
        assert!((p[0] - 10.0).abs() < 1e-4 && (p[1] + 4.0).abs() < 1e-4);
    }

    #[test]
    fn degenerate_landmarks_are_refused() {
        assert!(Similarity::estimate(&[[5.0, 5.0]; LANDMARKS], &TEMPLATE).is_none());
    }

    #[test]
    fn template_landmarks_align_to_themselves() {
        use crate::frame::{PixelFormat, YuvMatrix};
        let data: Vec<u8> = (0..ALIGNED_SIZE * ALIGNED_SIZE)
            .flat_map(|i| [(i % 251) as u8, 10, 200])
            .collect();
        let frame = Frame::new(
            ALIGNED_SIZE,
            ALIGNED_SIZE,
            PixelFormat::Rgb,
            &[&data],
            &[ALIGNED_SIZE * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let mut tensor = vec![0.0; 3 * ALIGNED_SIZE * ALIGNED_SIZE];
        assert!(align_planar(
            &frame,
            &TEMPLATE,
            &Normalisation::RAW_RGB,
            &mut tensor
        ));
        let plane = ALIGNED_SIZE * ALIGNED_SIZE;
        for i in [0, 777, plane - 1] {
            assert!((tensor[i] - data[i * 3] as f32).abs() < 0.01);
            assert!((tensor[2 * plane + i] - 200.0).abs() < 0.01);
        }

        // InsightFace's way: BGR planes, (pixel - 127.5) / 127.5.
        let insightface = Normalisation {
            colour: ColourOrder::Bgr,
            mean: [127.5; 3],
            inverse_std: [1.0 / 127.5; 3],
        };
        assert!(align_planar(&frame, &TEMPLATE, &insightface, &mut tensor));
        for i in [0, 777, plane - 1] {
            let red = (data[i * 3] as f32 - 127.5) / 127.5;
            assert!((tensor[2 * plane + i] - red).abs() < 1e-4);
            assert!((tensor[i] - (200.0 - 127.5) / 127.5).abs() < 1e-4);
            assert!((tensor[plane + i] - (10.0 - 127.5) / 127.5).abs() < 1e-4);
        }
    }
}
