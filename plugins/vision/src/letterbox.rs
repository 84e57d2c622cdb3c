// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scaling a frame into a detector's input tensor: aspect kept, anchored top-left, zero padding
//! to a multiple of the network's largest stride.

use crate::frame::{Frame, Tap};

/// The network's coarsest stride; input sides must be multiples of it.
pub const STRIDE_ALIGN: usize = 32;

/// The source taps of each destination column or row, as `cv2.resize(INTER_LINEAR)` finds them.
fn taps(source: usize, destination: usize) -> Vec<Tap> {
    let ratio = source as f32 / destination as f32;
    (0..destination)
        .map(|d| {
            let s = ((d as f32 + 0.5) * ratio - 0.5).max(0.0);
            let first = s.floor() as usize;
            if first + 1 >= source {
                // Past the last pixel centre: hold the edge, as OpenCV does.
                return Tap::new(source - 1, source - 1, 0.0);
            }
            Tap::new(first, first + 1, s - first as f32)
        })
        .collect()
}

/// How frames of one size map into the network input: computed once per caps, reused per frame.
#[derive(Clone, Debug)]
pub struct Letterbox {
    frame_width: usize,
    frame_height: usize,
    input_size: usize,
    /// The top-left corner of the part of the frame the plan scales (0, 0 for a whole frame).
    origin: (usize, usize),
    scaled_width: usize,
    net_width: usize,
    net_height: usize,
    columns: Vec<Tap>,
    rows: Vec<Tap>,
}

impl Letterbox {
    /// `input_size` is the network input's longer side; the shorter follows the frame's aspect,
    /// rounded up to a multiple of [`STRIDE_ALIGN`] so no compute is spent on padding rows.
    pub fn new(frame_width: usize, frame_height: usize, input_size: usize) -> Self {
        let scale = input_size as f64 / frame_width.max(frame_height).max(1) as f64;
        let align = |v: f64| ((v.round() as usize).max(1)).div_ceil(STRIDE_ALIGN) * STRIDE_ALIGN;
        let net = (
            align(frame_width as f64 * scale),
            align(frame_height as f64 * scale),
        );
        Self::with_scale(frame_width, frame_height, input_size, scale, net)
    }

    /// For a model exported with a fixed input: the frame is fitted inside `net_width` x `net_height`.
    pub fn fixed(
        frame_width: usize,
        frame_height: usize,
        net_width: usize,
        net_height: usize,
    ) -> Self {
        let scale = (net_width as f64 / frame_width.max(1) as f64)
            .min(net_height as f64 / frame_height.max(1) as f64);
        Self::with_scale(
            frame_width,
            frame_height,
            net_width,
            scale,
            (net_width, net_height),
        )
    }

    fn with_scale(
        frame_width: usize,
        frame_height: usize,
        input_size: usize,
        scale: f64,
        net: (usize, usize),
    ) -> Self {
        let scaled_width = ((frame_width as f64 * scale).round() as usize).clamp(1, net.0);
        let scaled_height = ((frame_height as f64 * scale).round() as usize).clamp(1, net.1);
        Letterbox {
            frame_width,
            frame_height,
            input_size,
            origin: (0, 0),
            scaled_width,
            net_width: net.0,
            net_height: net.1,
            columns: taps(frame_width, scaled_width),
            rows: taps(frame_height, scaled_height),
        }
    }

    /// A plan for the `width` x `height` part of a frame whose top-left corner is at `origin`,
    /// scaled by `scale` (the network input follows that part's aspect).  The part must lie
    /// inside the frame.
    pub fn region(origin: (usize, usize), width: usize, height: usize, scale: f64) -> Self {
        let align = |v: f64| ((v.round() as usize).max(1)).div_ceil(STRIDE_ALIGN) * STRIDE_ALIGN;
        let net = (align(width as f64 * scale), align(height as f64 * scale));
        let mut plan = Self::with_scale(width, height, net.0.max(net.1), scale, net);
        let offset = |taps: &mut Vec<Tap>, by: usize| {
            for tap in taps.iter_mut() {
                *tap = Tap::new(tap.first + by, tap.second + by, tap.weight);
            }
        };
        offset(&mut plan.columns, origin.0);
        offset(&mut plan.rows, origin.1);
        plan.origin = origin;
        plan
    }

    /// Where a point of the network input lies in the frame.
    pub fn to_frame(&self, [x, y]: [f32; 2]) -> [f32; 2] {
        let back = self.inverse_scale();
        [
            self.origin.0 as f32 + x * back,
            self.origin.1 as f32 + y * back,
        ]
    }

    pub fn fits(&self, frame_width: usize, frame_height: usize, input_size: usize) -> bool {
        (self.frame_width, self.frame_height, self.input_size)
            == (frame_width, frame_height, input_size)
    }

    /// Network input width and height.
    pub fn net_size(&self) -> (usize, usize) {
        (self.net_width, self.net_height)
    }

    /// Factor from network coordinates back to frame coordinates.
    pub fn inverse_scale(&self) -> f32 {
        self.frame_width as f32 / self.scaled_width as f32
    }

    pub fn tensor_len(&self) -> usize {
        3 * self.net_width * self.net_height
    }

    /// Writes the frame as planar BGR, raw 0..255, into `tensor` (length [`Self::tensor_len`]),
    /// which must hold zeros in the padding: it is never written, so zero it once per plan.
    pub fn fill_bgr_planar(&self, frame: &Frame, tensor: &mut [f32]) {
        let plane = self.net_width * self.net_height;
        let (blue, rest) = tensor.split_at_mut(plane);
        let (green, red) = rest.split_at_mut(plane);
        // The taps repeat on every row and column: resolve them (chroma's too) once per frame.
        let columns: Vec<_> = self.columns.iter().map(|&t| frame.column_taps(t)).collect();
        for (y, &row) in self.rows.iter().enumerate() {
            let row = frame.row_taps(row);
            let line = y * self.net_width;
            for (x, column) in columns.iter().enumerate() {
                let [r, g, b] = frame.bilinear_rgb_at(column, &row);
                blue[line + x] = b;
                green[line + x] = g;
                red[line + x] = r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::gradient_rgb;
    use crate::frame::{PixelFormat, YuvMatrix};

    #[test]
    fn a_region_plan_reads_its_part_of_the_frame_and_maps_back_into_it() {
        let (width, height) = (400, 300);
        let data = gradient_rgb(width, height);
        let frame = Frame::new(
            width,
            height,
            PixelFormat::Rgb,
            &[&data],
            &[width * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        // At scale 1 the network sees the region's pixels as they are.
        let plan = Letterbox::region((100, 50), 200, 100, 1.0);
        assert_eq!(plan.net_size(), (224, 128));
        let mut tensor = vec![0.0; plan.tensor_len()];
        plan.fill_bgr_planar(&frame, &mut tensor);
        let plane = 224 * 128;
        for (x, y) in [(0, 0), (37, 11), (199, 99)] {
            let pixel = ((50 + y) * width + 100 + x) * 3;
            let at = y * 224 + x;
            assert_eq!(
                tensor[2 * plane + at],
                f32::from(data[pixel]),
                "red at {x},{y}"
            );
            assert_eq!(
                tensor[plane + at],
                f32::from(data[pixel + 1]),
                "green at {x},{y}"
            );
        }
        assert_eq!(tensor[200], 0.0, "padding right of the region stays zero");
        assert_eq!(plan.to_frame([0.0, 0.0]), [100.0, 50.0]);
        // Scaled by a half, network pixel (50, 25) is 100 frame pixels into the region.
        let half = Letterbox::region((100, 50), 200, 100, 0.5);
        assert_eq!(half.net_size(), (128, 64));
        assert_eq!(half.to_frame([50.0, 25.0]), [200.0, 100.0]);
    }

    #[test]
    fn plan_keeps_aspect_and_aligns() {
        let plan = Letterbox::new(640, 480, 640);
        assert_eq!(plan.net_size(), (640, 480));
        let plan = Letterbox::new(1280, 720, 320);
        assert_eq!((plan.scaled_width, plan.rows.len()), (320, 180));
        assert_eq!(plan.net_size(), (320, 192));
        assert!((plan.inverse_scale() - 4.0).abs() < 1e-6);
        let portrait = Letterbox::new(722, 899, 640);
        assert_eq!(portrait.net_size(), (544, 640));
        let fixed = Letterbox::fixed(640, 480, 640, 640);
        assert_eq!(
            (fixed.scaled_width, fixed.rows.len(), fixed.net_size()),
            (640, 480, (640, 640))
        );
    }

    #[test]
    fn taps_match_opencv_linear_rule() {
        // Downscale 2:1: destination 0 samples source 0.5, between pixels 0 and 1.
        assert_eq!(
            taps(4, 2)[0],
            Tap {
                first: 0,
                second: 1,
                weight: 0.5
            }
        );
        // Upscale clamps at the border instead of reading outside.
        let up = taps(2, 4);
        assert_eq!(
            up[0],
            Tap {
                first: 0,
                second: 1,
                weight: 0.0
            }
        );
        assert_eq!(
            up[3],
            Tap {
                first: 1,
                second: 1,
                weight: 0.0
            }
        );
    }

    #[test]
    fn fills_bgr_planes_and_leaves_padding() {
        let (w, h) = (64, 40);
        let rgb = gradient_rgb(w, h);
        let frame = Frame::new(
            w,
            h,
            PixelFormat::Rgb,
            &[&rgb],
            &[w * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let plan = Letterbox::new(w, h, 64);
        assert_eq!(plan.net_size(), (64, 64));
        let mut tensor = vec![0.0; plan.tensor_len()];
        plan.fill_bgr_planar(&frame, &mut tensor);
        let plane = 64 * 64;
        // Same size: a straight copy, blue plane first.
        assert_eq!(tensor[0], 77.0);
        assert_eq!(tensor[2 * plane + 63], 255.0);
        assert_eq!(tensor[plane + 39 * 64], 255.0);
        // Rows below the frame stay zero.
        assert!(tensor[40 * 64..plane].iter().all(|&v| v == 0.0));
    }
}
