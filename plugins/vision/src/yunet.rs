// SPDX-License-Identifier: MIT OR Apache-2.0
//! Decoding YuNet's per-stride outputs into faces, as OpenCV's FaceDetectorYN does.

use crate::geometry::{Face, LANDMARKS, Rect};

/// The strides YuNet predicts at, coarsest last.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// Output names per stride: class score, objectness, box, landmarks.
pub const OUTPUT_NAMES: [[&str; 4]; 3] = [
    ["cls_8", "obj_8", "bbox_8", "kps_8"],
    ["cls_16", "obj_16", "bbox_16", "kps_16"],
    ["cls_32", "obj_32", "bbox_32", "kps_32"],
];

/// One stride's raw outputs, each a row per grid cell (`cls` and `obj` one value, `bbox` four, `kps` ten).
pub struct StrideOutputs<'a> {
    pub stride: usize,
    pub cls: &'a [f32],
    pub obj: &'a [f32],
    pub bbox: &'a [f32],
    pub kps: &'a [f32],
}

/// Appends every cell of a `net_width` x `net_height` input scoring at least `score_threshold`
/// to `faces`, in network pixel coordinates. Returns the number of cells the outputs were short by
/// (0 when the shapes agree), so a mismatched model shows up as an error rather than garbage.
pub fn decode_stride(
    outputs: &StrideOutputs,
    net_width: usize,
    net_height: usize,
    score_threshold: f32,
    faces: &mut Vec<Face>,
) -> usize {
    let s = outputs.stride;
    let (cols, rows) = (net_width / s, net_height / s);
    let cells = cols * rows;
    let available = outputs
        .cls
        .len()
        .min(outputs.obj.len())
        .min(outputs.bbox.len() / 4)
        .min(outputs.kps.len() / (2 * LANDMARKS));
    if available < cells {
        return cells - available;
    }
    let stride = s as f32;
    for index in 0..cells {
        let score =
            (outputs.cls[index].clamp(0.0, 1.0) * outputs.obj[index].clamp(0.0, 1.0)).sqrt();
        if score < score_threshold {
            continue;
        }
        let (r, c) = ((index / cols) as f32, (index % cols) as f32);
        let b = &outputs.bbox[index * 4..index * 4 + 4];
        let (cx, cy) = ((c + b[0]) * stride, (r + b[1]) * stride);
        let (w, h) = (b[2].exp() * stride, b[3].exp() * stride);
        let k = &outputs.kps[index * 2 * LANDMARKS..(index + 1) * 2 * LANDMARKS];
        let mut landmarks = [[0.0; 2]; LANDMARKS];
        for (n, point) in landmarks.iter_mut().enumerate() {
            *point = [(k[2 * n] + c) * stride, (k[2 * n + 1] + r) * stride];
        }
        faces.push(Face {
            bbox: Rect {
                x: cx - w / 2.0,
                y: cy - h / 2.0,
                w,
                h,
            },
            score,
            landmarks,
        });
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_cell_like_opencv() {
        // A 64x32 input at stride 32 has 2 columns and 1 row; put a face in cell (0, 1).
        let cls = [0.0, 0.81];
        let obj = [0.9, 1.0];
        let bbox = [0.0, 0.0, 0.0, 0.0, 0.5, 0.25, 0.0, (2.0f32).ln()];
        let mut kps = [0.0; 20];
        kps[10..].copy_from_slice(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.1, 0.7, 0.3, 0.7]);
        let outputs = StrideOutputs {
            stride: 32,
            cls: &cls,
            obj: &obj,
            bbox: &bbox,
            kps: &kps,
        };
        let mut faces = Vec::new();
        assert_eq!(decode_stride(&outputs, 64, 32, 0.6, &mut faces), 0);
        assert_eq!(faces.len(), 1);
        let face = faces[0];
        assert!((face.score - 0.9).abs() < 1e-6);
        // centre (1.5*32, 0.25*32) = (48, 8), size 32 x 64
        assert_eq!(
            face.bbox,
            Rect {
                x: 32.0,
                y: -24.0,
                w: 32.0,
                h: 64.0
            }
        );
        assert_eq!(face.landmarks[0], [(1.1) * 32.0, 0.2 * 32.0]);
    }

    #[test]
    fn short_outputs_are_reported() {
        let outputs = StrideOutputs {
            stride: 8,
            cls: &[0.0; 4],
            obj: &[0.0; 4],
            bbox: &[0.0; 16],
            kps: &[0.0; 40],
        };
        let mut faces = Vec::new();
        assert_eq!(decode_stride(&outputs, 32, 16, 0.5, &mut faces), 4);
        assert!(faces.is_empty());
    }
}
