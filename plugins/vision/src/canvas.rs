// SPDX-License-Identifier: MIT OR Apache-2.0
//! Drawing boxes and points into raw frames, in place and in the layouts [`Frame`] reads:
//! what the overlay element uses to mark faces for a kiosk screen or a debugging view.
//!
//! Everything is clipped to the frame: a shape partly or wholly outside draws what is visible, or
//! nothing, and never panics. No draw call allocates. On YUV frames the colour is converted once
//! per call with the frame's matrix; luma is written per pixel and chroma per 2x2 block the shape
//! touches, so thin lines tint the chroma of their neighbours, as any 4:2:0 drawing does.
//!
//! Text is not drawn here: captions in any script need shaping and font fallback, which the
//! overlay element gets from Pango.

use crate::frame::{Frame, FrameError, PixelFormat, YuvMatrix};
use crate::geometry::Rect;

/// An opaque drawing colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colour {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Colour {
    pub const BLACK: Colour = Colour::rgb(0, 0, 0);
    pub const WHITE: Colour = Colour::rgb(255, 255, 255);
    /// Face recognised.
    pub const GREEN: Colour = Colour::rgb(0, 220, 60);
    /// Face seen but not (yet) recognised.
    pub const AMBER: Colour = Colour::rgb(255, 176, 0);

    pub const fn rgb(r: u8, g: u8, b: u8) -> Self {
        Colour { r, g, b }
    }

    /// Y, U and V of this colour under `matrix` (the inverse of what [`Frame`] samples with).
    pub fn to_yuv(self, matrix: YuvMatrix) -> [u8; 3] {
        let (r, g, b) = (self.r as f32, self.g as f32, self.b as f32);
        let kg = 1.0 - matrix.kr - matrix.kb;
        let y = matrix.kr * r + kg * g + matrix.kb * b;
        let u = (b - y) / (2.0 * (1.0 - matrix.kb));
        let v = (r - y) / (2.0 * (1.0 - matrix.kr));
        let (y_scale, y_offset, c_scale) = if matrix.full_range {
            (1.0, 0.0, 1.0)
        } else {
            (219.0 / 255.0, 16.0, 224.0 / 255.0)
        };
        [
            y * y_scale + y_offset,
            u * c_scale + 128.0,
            v * c_scale + 128.0,
        ]
        .map(|c| c.round().clamp(0.0, 255.0) as u8)
    }
}

/// A colour in the frame's own terms, worked out once per draw call.
#[derive(Clone, Copy, Debug)]
enum Ink {
    /// Bytes of one pixel; the first `write` of every `bpp` are written (padding bytes are left).
    Packed {
        pixel: [u8; 4],
        write: usize,
        bpp: usize,
    },
    Yuv {
        y: u8,
        u: u8,
        v: u8,
    },
}

/// A writable view of one video frame to draw on.
pub struct Canvas<'a> {
    width: usize,
    height: usize,
    format: PixelFormat,
    planes: [&'a mut [u8]; 3],
    strides: [usize; 3],
    matrix: YuvMatrix,
}

/// Size and layout only: the pixels would flood a log.
impl std::fmt::Debug for Canvas<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canvas")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("strides", &self.strides)
            .field("matrix", &self.matrix)
            .finish_non_exhaustive()
    }
}

impl<'a> Canvas<'a> {
    /// Wraps planes with their strides, with the same checks as [`Frame::new`]: every row a
    /// shape may touch is there, so drawing never indexes out of bounds.
    pub fn new(
        width: usize,
        height: usize,
        format: PixelFormat,
        planes: &'a mut [&mut [u8]],
        strides: &[usize],
        matrix: YuvMatrix,
    ) -> Result<Self, FrameError> {
        let count = planes.len().min(3);
        let mut views: [&[u8]; 3] = [&[]; 3];
        for (view, plane) in views.iter_mut().zip(planes.iter()) {
            *view = plane;
        }
        Frame::new(width, height, format, &views[..count], strides, matrix)?;
        let mut canvas_planes: [&'a mut [u8]; 3] = Default::default();
        for (slot, plane) in canvas_planes.iter_mut().zip(planes.iter_mut()) {
            *slot = &mut **plane;
        }
        let mut canvas_strides = [0; 3];
        for (slot, &stride) in canvas_strides.iter_mut().zip(strides) {
            *slot = stride;
        }
        Ok(Canvas {
            width,
            height,
            format,
            planes: canvas_planes,
            strides: canvas_strides,
            matrix,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Fills the pixels whose centres lie in `rect` (edges rounded to whole pixels).
    pub fn fill_rect(&mut self, rect: Rect, colour: Colour) {
        let (x0, y0, x1, y1) = pixel_edges(rect);
        let ink = self.ink(colour);
        self.fill(x0, y0, x1, y1, ink);
    }

    /// Draws the border of `rect`, `thickness` pixels wide, inside its edges; a box too small for
    /// two borders is filled.
    pub fn rect_outline(&mut self, rect: Rect, thickness: u32, colour: Colour) {
        let (x0, y0, x1, y1) = pixel_edges(rect);
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let ink = self.ink(colour);
        let t = i64::from(thickness.max(1));
        if x1.saturating_sub(x0) <= 2 * t || y1.saturating_sub(y0) <= 2 * t {
            self.fill(x0, y0, x1, y1, ink);
            return;
        }
        // Edges far outside the frame saturate rather than overflow; clipping does the rest.
        let (inner_x0, inner_x1) = (x0.saturating_add(t), x1.saturating_sub(t));
        let (inner_y0, inner_y1) = (y0.saturating_add(t), y1.saturating_sub(t));
        self.fill(x0, y0, x1, inner_y0, ink);
        self.fill(x0, inner_y1, x1, y1, ink);
        self.fill(x0, inner_y0, inner_x0, inner_y1, ink);
        self.fill(inner_x1, inner_y0, x1, inner_y1, ink);
    }

    /// A filled disc of `radius` pixels around the pixel nearest (`x`, `y`) (pixel centres at
    /// whole coordinates, as in [`Frame::sample_rgb`]); radius 0 is that one pixel.
    pub fn dot(&mut self, x: f32, y: f32, radius: u32, colour: Colour) {
        let (cx, cy) = (x.round() as i64, y.round() as i64);
        let r = i64::from(radius);
        // Only the rows inside the frame, however large the radius.
        let first = cy.saturating_sub(r).max(0);
        let last = cy.saturating_add(r).min(self.height as i64 - 1);
        if first > last {
            return;
        }
        let ink = self.ink(colour);
        let r_squared = (r as f64) * (r as f64);
        for row in first..=last {
            let dy = (row - cy) as f64;
            let half = (r_squared - dy * dy).max(0.0).sqrt().round() as i64;
            self.fill(
                cx.saturating_sub(half),
                row,
                cx.saturating_add(half).saturating_add(1),
                row + 1,
                ink,
            );
        }
    }

    fn ink(&self, colour: Colour) -> Ink {
        let Colour { r, g, b } = colour;
        match self.format {
            PixelFormat::Rgb => Ink::Packed {
                pixel: [r, g, b, 0],
                write: 3,
                bpp: 3,
            },
            PixelFormat::Bgr => Ink::Packed {
                pixel: [b, g, r, 0],
                write: 3,
                bpp: 3,
            },
            PixelFormat::Rgbx => Ink::Packed {
                pixel: [r, g, b, 0],
                write: 3,
                bpp: 4,
            },
            PixelFormat::Bgrx => Ink::Packed {
                pixel: [b, g, r, 0],
                write: 3,
                bpp: 4,
            },
            // Drawn colours are opaque.
            PixelFormat::Rgba => Ink::Packed {
                pixel: [r, g, b, 255],
                write: 4,
                bpp: 4,
            },
            PixelFormat::Bgra => Ink::Packed {
                pixel: [b, g, r, 255],
                write: 4,
                bpp: 4,
            },
            PixelFormat::I420 | PixelFormat::Nv12 => {
                let [y, u, v] = colour.to_yuv(self.matrix);
                Ink::Yuv { y, u, v }
            }
        }
    }

    /// Fills the half-open pixel range [`x0`, `x1`) x [`y0`, `y1`), clipped to the frame.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, ink: Ink) {
        let clip = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
        let (x0, x1) = (clip(x0, self.width), clip(x1, self.width));
        let (y0, y1) = (clip(y0, self.height), clip(y1, self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        match ink {
            Ink::Packed { pixel, write, bpp } => {
                let stride = self.strides[0];
                for row in y0..y1 {
                    let start = row * stride;
                    let span = &mut self.planes[0][start + x0 * bpp..start + x1 * bpp];
                    for px in span.chunks_exact_mut(bpp) {
                        px[..write].copy_from_slice(&pixel[..write]);
                    }
                }
            }
            Ink::Yuv { y, u, v } => {
                let stride = self.strides[0];
                for row in y0..y1 {
                    let start = row * stride;
                    self.planes[0][start + x0..start + x1].fill(y);
                }
                // Every 2x2 chroma block with at least one pixel in the range.
                let (cx0, cx1) = (x0 / 2, x1.div_ceil(2));
                let (cy0, cy1) = (y0 / 2, y1.div_ceil(2));
                if self.format == PixelFormat::I420 {
                    for (plane, value) in [(1, u), (2, v)] {
                        let stride = self.strides[plane];
                        for row in cy0..cy1 {
                            let start = row * stride;
                            self.planes[plane][start + cx0..start + cx1].fill(value);
                        }
                    }
                } else {
                    let stride = self.strides[1];
                    for row in cy0..cy1 {
                        let start = row * stride;
                        let span = &mut self.planes[1][start + 2 * cx0..start + 2 * cx1];
                        for pair in span.chunks_exact_mut(2) {
                            pair[0] = u;
                            pair[1] = v;
                        }
                    }
                }
            }
        }
    }
}

/// Whole-pixel edges of a box: left, top, right and bottom (exclusive). Float-to-int casts
/// saturate and map NaN to 0, so any box gives some range, to be clipped.
fn pixel_edges(rect: Rect) -> (i64, i64, i64, i64) {
    (
        rect.x.round() as i64,
        rect.y.round() as i64,
        (rect.x + rect.w).round() as i64,
        (rect.y + rect.h).round() as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Colour = Colour::rgb(255, 0, 0);

    fn rect(x: f32, y: f32, w: f32, h: f32) -> Rect {
        Rect { x, y, w, h }
    }

    fn rgb_at(data: &[u8], width: usize, x: usize, y: usize) -> [u8; 3] {
        let i = (y * width + x) * 3;
        [data[i], data[i + 1], data[i + 2]]
    }

    #[test]
    fn outline_on_rgb_sets_the_border_only() {
        let (w, h) = (10, 8);
        let mut data = vec![0u8; w * h * 3];
        let mut planes = [data.as_mut_slice()];
        let mut canvas = Canvas::new(
            w,
            h,
            PixelFormat::Rgb,
            &mut planes,
            &[w * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        canvas.rect_outline(rect(2.0, 1.0, 6.0, 5.0), 1, RED);
        for (x, y) in [
            (2, 1),
            (7, 1),
            (2, 5),
            (7, 5),
            (4, 1),
            (2, 3),
            (7, 3),
            (5, 5),
        ] {
            assert_eq!(rgb_at(&data, w, x, y), [255, 0, 0], "border ({x}, {y})");
        }
        for (x, y) in [
            (3, 2),
            (6, 4),
            (1, 1),
            (8, 1),
            (2, 0),
            (2, 6),
            (0, 0),
            (9, 7),
        ] {
            assert_eq!(rgb_at(&data, w, x, y), [0, 0, 0], "not border ({x}, {y})");
        }
    }

    #[test]
    fn packed_layouts_keep_their_byte_order_and_padding() {
        let mut data = vec![7u8; 2 * 4];
        let mut planes = [data.as_mut_slice()];
        let mut canvas = Canvas::new(
            2,
            1,
            PixelFormat::Bgrx,
            &mut planes,
            &[8],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        canvas.fill_rect(rect(0.0, 0.0, 1.0, 1.0), Colour::rgb(1, 2, 3));
        assert_eq!(data, [3, 2, 1, 7, 7, 7, 7, 7]);

        let mut data = vec![0u8; 4];
        let mut planes = [data.as_mut_slice()];
        let mut canvas = Canvas::new(
            1,
            1,
            PixelFormat::Rgba,
            &mut planes,
            &[4],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        canvas.dot(0.0, 0.0, 0, Colour::rgb(1, 2, 3));
        assert_eq!(data, [1, 2, 3, 255]);
    }

    #[test]
    fn colours_convert_to_yuv() {
        assert_eq!(Colour::WHITE.to_yuv(YuvMatrix::BT601_FULL), [255, 128, 128]);
        assert_eq!(
            Colour::WHITE.to_yuv(YuvMatrix::BT709_LIMITED),
            [235, 128, 128]
        );
        assert_eq!(
            Colour::BLACK.to_yuv(YuvMatrix::BT601_LIMITED),
            [16, 128, 128]
        );
        // Pure red: V at the top of its range.
        assert_eq!(RED.to_yuv(YuvMatrix::BT601_FULL), [76, 85, 255]);
    }

    /// Draws a thickness-2 outline of (2, 2)-(12, 12) on a 16x16 frame and checks luma and chroma.
    fn check_yuv_outline(format: PixelFormat) {
        let (w, h) = (16, 16);
        let [y, u, v] = Colour::GREEN.to_yuv(YuvMatrix::BT601_LIMITED);
        let mut luma = vec![16u8; w * h];
        let mut chroma_a = vec![128u8; w * h / 2];
        let mut chroma_b = vec![128u8; w * h / 4];
        {
            let (mut planes, strides): (Vec<&mut [u8]>, Vec<usize>) = match format {
                PixelFormat::I420 => (
                    vec![
                        luma.as_mut_slice(),
                        &mut chroma_a[..w * h / 4],
                        chroma_b.as_mut_slice(),
                    ],
                    vec![w, w / 2, w / 2],
                ),
                _ => (
                    vec![luma.as_mut_slice(), chroma_a.as_mut_slice()],
                    vec![w, w],
                ),
            };
            let mut canvas = Canvas::new(
                w,
                h,
                format,
                &mut planes,
                &strides,
                YuvMatrix::BT601_LIMITED,
            )
            .unwrap();
            canvas.rect_outline(rect(2.0, 2.0, 10.0, 10.0), 2, Colour::GREEN);
        }
        for (px, py) in [(2, 2), (3, 3), (11, 11), (7, 2), (2, 7), (10, 6)] {
            assert_eq!(luma[py * w + px], y, "border luma ({px}, {py})");
        }
        for (px, py) in [(4, 4), (9, 9), (12, 12), (1, 1), (13, 5), (0, 0)] {
            assert_eq!(luma[py * w + px], 16, "luma ({px}, {py})");
        }
        let chroma = |cx: usize, cy: usize| match format {
            PixelFormat::I420 => (chroma_a[cy * w / 2 + cx], chroma_b[cy * w / 2 + cx]),
            _ => (chroma_a[cy * w + 2 * cx], chroma_a[cy * w + 2 * cx + 1]),
        };
        // Blocks (1, 1)..(5, 5) hold the border; (2, 2)..(3, 3) are inside it.
        for (cx, cy) in [(1, 1), (5, 5), (3, 1), (1, 4)] {
            assert_eq!(chroma(cx, cy), (u, v), "border chroma ({cx}, {cy})");
        }
        for (cx, cy) in [(0, 0), (2, 2), (3, 3), (6, 6), (7, 1)] {
            assert_eq!(chroma(cx, cy), (128, 128), "chroma ({cx}, {cy})");
        }
    }

    #[test]
    fn outline_on_i420_sets_luma_and_chroma_blocks() {
        check_yuv_outline(PixelFormat::I420);
    }

    #[test]
    fn outline_on_nv12_sets_luma_and_chroma_blocks() {
        check_yuv_outline(PixelFormat::Nv12);
    }

    #[test]
    fn shapes_outside_the_frame_are_clipped_not_panics() {
        // Odd sizes, so the last chroma block covers a single column and row.
        let (w, h) = (7, 5);
        let (cw, ch) = (4, 3);
        let mut luma = vec![0u8; w * h];
        let mut us = vec![128u8; cw * ch];
        let mut vs = vec![128u8; cw * ch];
        let mut planes = [luma.as_mut_slice(), us.as_mut_slice(), vs.as_mut_slice()];
        let mut canvas = Canvas::new(
            w,
            h,
            PixelFormat::I420,
            &mut planes,
            &[w, cw, cw],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let far = [
            rect(-50.0, -50.0, 10.0, 10.0),
            rect(100.0, 2.0, 10.0, 10.0),
            rect(-3.0, -3.0, 100.0, 100.0),
            rect(5.0, 3.0, 10.0, 10.0),
            rect(f32::NAN, 0.0, f32::INFINITY, f32::NAN),
            rect(f32::NEG_INFINITY, f32::NEG_INFINITY, f32::INFINITY, 3.0),
            rect(f32::MAX, f32::MIN, f32::MAX, f32::MAX),
            rect(3.0, 3.0, -10.0, -10.0),
        ];
        for r in far {
            canvas.rect_outline(r, 3, Colour::WHITE);
            canvas.rect_outline(r, u32::MAX, Colour::WHITE);
            canvas.fill_rect(r, Colour::AMBER);
        }
        for (x, y) in [(-1e9, 3.0), (3.0, 1e30), (f32::NAN, 0.0), (6.9, 4.9)] {
            canvas.dot(x, y, 4, Colour::GREEN);
            canvas.dot(x, y, u32::MAX, Colour::GREEN);
        }

        // A box hanging off the bottom-right corner draws its visible part.
        let mut data = vec![0u8; 6 * 4 * 3];
        let mut planes = [data.as_mut_slice()];
        let mut canvas = Canvas::new(
            6,
            4,
            PixelFormat::Rgb,
            &mut planes,
            &[18],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        canvas.rect_outline(rect(3.0, 2.0, 10.0, 10.0), 1, RED);
        assert_eq!(rgb_at(&data, 6, 3, 2), [255, 0, 0]);
        assert_eq!(rgb_at(&data, 6, 5, 2), [255, 0, 0]);
        assert_eq!(rgb_at(&data, 6, 3, 3), [255, 0, 0]);
        assert_eq!(rgb_at(&data, 6, 4, 3), [0, 0, 0]);
        assert_eq!(rgb_at(&data, 6, 2, 2), [0, 0, 0]);
    }

    #[test]
    fn short_planes_are_refused_like_frames() {
        let mut data = vec![0u8; 10];
        let mut planes = [data.as_mut_slice()];
        let err = Canvas::new(
            4,
            4,
            PixelFormat::Rgb,
            &mut planes,
            &[12],
            YuvMatrix::BT601_FULL,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            FrameError::PlaneTooSmall {
                needed: 48,
                actual: 10,
                ..
            }
        ));
        let err = Canvas::new(
            4,
            4,
            PixelFormat::I420,
            &mut planes,
            &[4],
            YuvMatrix::BT601_FULL,
        )
        .unwrap_err();
        assert!(matches!(err, FrameError::PlaneCount { needed: 3, .. }));
    }
}
