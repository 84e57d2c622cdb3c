// SPDX-License-Identifier: MIT OR Apache-2.0
//! Boxes, detected faces and non-maximum suppression.

/// An axis-aligned box in pixels: top-left corner and size.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &Rect) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// The part of the box inside a `width` x `height` frame.
    pub fn clamped(&self, width: f32, height: f32) -> Rect {
        let x0 = self.x.clamp(0.0, width);
        let y0 = self.y.clamp(0.0, height);
        let x1 = (self.x + self.w).clamp(0.0, width);
        let y1 = (self.y + self.h).clamp(0.0, height);
        Rect {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }
}

/// Number of facial landmarks YuNet gives and SFace's alignment uses.
pub const LANDMARKS: usize = 5;

/// One detected face in frame pixel coordinates.
///
/// Landmarks are in image order: right eye, left eye, nose tip, right mouth corner, left mouth
/// corner (the subject's right eye is the left-most eye in the picture).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Face {
    pub bbox: Rect,
    pub score: f32,
    pub landmarks: [[f32; 2]; LANDMARKS],
}

impl Face {
    /// The face with every point (box corners, landmarks) moved by `to`, a map that scales and
    /// translates (as between network and frame pixels).
    pub fn mapped(&self, to: impl Fn([f32; 2]) -> [f32; 2]) -> Face {
        let [x0, y0] = to([self.bbox.x, self.bbox.y]);
        let [x1, y1] = to([self.bbox.x + self.bbox.w, self.bbox.y + self.bbox.h]);
        Face {
            bbox: Rect {
                x: x0,
                y: y0,
                w: x1 - x0,
                h: y1 - y0,
            },
            score: self.score,
            landmarks: self.landmarks.map(&to),
        }
    }

    /// Distance between the eyes: the size measure enrolment uses to refuse faces too small to embed well.
    pub fn eye_distance(&self) -> f32 {
        let [[rx, ry], [lx, ly], ..] = self.landmarks;
        ((lx - rx).powi(2) + (ly - ry).powi(2)).sqrt()
    }
}

/// Greedy non-maximum suppression in place: sorts `faces` by score and drops every face that
/// overlaps a better one by more than `iou_threshold`, keeping at most `max_faces`.
pub fn non_max_suppression(faces: &mut Vec<Face>, iou_threshold: f32, max_faces: usize) {
    // Stable, like OpenCV's NMSBoxes: equal scores keep decode order (finest stride first).
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..faces.len() {
        if kept == max_faces {
            break;
        }
        let candidate = faces[i];
        if faces[..kept]
            .iter()
            .all(|k| k.bbox.iou(&candidate.bbox) <= iou_threshold)
        {
            faces[kept] = candidate;
            kept += 1;
        }
    }
    faces.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, size: f32, score: f32) -> Face {
        Face {
            bbox: Rect {
                x,
                y,
                w: size,
                h: size,
            },
            score,
            ..Face::default()
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = Rect {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        let b = Rect {
            x: 5.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        let far = Rect {
            x: 20.0,
            y: 20.0,
            w: 5.0,
            h: 5.0,
        };
        assert_eq!(a.iou(&far), 0.0);
        assert_eq!(a.iou(&Rect::default()), 0.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let mut faces = vec![
            face(0.0, 0.0, 10.0, 0.7),
            face(1.0, 1.0, 10.0, 0.9),
            face(50.0, 50.0, 10.0, 0.8),
            face(2.0, 0.0, 10.0, 0.95),
        ];
        non_max_suppression(&mut faces, 0.3, 10);
        let scores: Vec<f32> = faces.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.95, 0.8]);
    }

    #[test]
    fn nms_respects_max_faces() {
        let mut faces: Vec<Face> = (0..5)
            .map(|i| face(i as f32 * 20.0, 0.0, 10.0, 0.5 + i as f32 / 10.0))
            .collect();
        non_max_suppression(&mut faces, 0.3, 2);
        assert_eq!(faces.len(), 2);
        assert!((faces[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn clamping_and_scaling() {
        let r = Rect {
            x: -5.0,
            y: 2.0,
            w: 20.0,
            h: 10.0,
        }
        .clamped(10.0, 10.0);
        assert_eq!(
            r,
            Rect {
                x: 0.0,
                y: 2.0,
                w: 10.0,
                h: 8.0
            }
        );
        // Network to frame pixels: scaled by 2, then moved by the crop's origin (10, 20).
        let f = face(2.0, 4.0, 6.0, 1.0).mapped(|[x, y]| [10.0 + 2.0 * x, 20.0 + 2.0 * y]);
        assert_eq!(
            f.bbox,
            Rect {
                x: 14.0,
                y: 28.0,
                w: 12.0,
                h: 12.0
            }
        );
        assert_eq!(f.landmarks[0], [10.0, 20.0], "landmarks move with the box");
    }
}
