// SPDX-License-Identifier: MIT OR Apache-2.0
//! Borrowed views of raw video frames in the formats cameras and decoders hand us, with bilinear
//! sampling to RGB. Sampling straight from the source layout lets every stage read camera frames
//! without a colour-conversion pass or an intermediate copy.

use thiserror::Error;

/// The pixel layouts FaceGate reads directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Rgba,
    Bgra,
    I420,
    Nv12,
}

impl PixelFormat {
    /// Byte offsets of R, G and B and the bytes per pixel, for the packed formats.
    fn packed_layout(self) -> Option<([usize; 3], usize)> {
        match self {
            PixelFormat::Rgb => Some(([0, 1, 2], 3)),
            PixelFormat::Bgr => Some(([2, 1, 0], 3)),
            PixelFormat::Rgbx | PixelFormat::Rgba => Some(([0, 1, 2], 4)),
            PixelFormat::Bgrx | PixelFormat::Bgra => Some(([2, 1, 0], 4)),
            PixelFormat::I420 | PixelFormat::Nv12 => None,
        }
    }

    pub fn is_yuv(self) -> bool {
        self.packed_layout().is_none()
    }
}

/// How a YUV frame's samples map to RGB: the matrix and whether luma uses the full 0..255 range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YuvMatrix {
    /// Luma weights of red and blue (BT.601: 0.299 / 0.114, BT.709: 0.2126 / 0.0722).
    pub kr: f32,
    pub kb: f32,
    pub full_range: bool,
}

impl YuvMatrix {
    pub const BT601_FULL: YuvMatrix = YuvMatrix {
        kr: 0.299,
        kb: 0.114,
        full_range: true,
    };
    pub const BT601_LIMITED: YuvMatrix = YuvMatrix {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    pub const BT709_LIMITED: YuvMatrix = YuvMatrix {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };
    pub const BT709_FULL: YuvMatrix = YuvMatrix {
        kr: 0.2126,
        kb: 0.0722,
        full_range: true,
    };

    fn coefficients(self) -> YuvCoefficients {
        let kg = 1.0 - self.kr - self.kb;
        let (y_scale, c_scale, y_offset) = if self.full_range {
            (1.0, 1.0, 0.0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16.0)
        };
        YuvCoefficients {
            y_scale,
            y_offset,
            r_v: 2.0 * (1.0 - self.kr) * c_scale,
            g_u: -2.0 * (1.0 - self.kb) * self.kb / kg * c_scale,
            g_v: -2.0 * (1.0 - self.kr) * self.kr / kg * c_scale,
            b_u: 2.0 * (1.0 - self.kb) * c_scale,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct YuvCoefficients {
    y_scale: f32,
    y_offset: f32,
    r_v: f32,
    g_u: f32,
    g_v: f32,
    b_u: f32,
}

impl YuvCoefficients {
    #[inline(always)]
    fn to_rgb(self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let y = (y - self.y_offset) * self.y_scale;
        let (u, v) = (u - 128.0, v - 128.0);
        [
            (y + self.r_v * v).clamp(0.0, 255.0),
            (y + self.g_u * u + self.g_v * v).clamp(0.0, 255.0),
            (y + self.b_u * u).clamp(0.0, 255.0),
        ]
    }
}

/// Where 4:2:0 chroma samples sit relative to luma, horizontally (vertically they are centred in
/// both common conventions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChromaSiting {
    /// Between two luma columns: JPEG, and what libjpeg's upsampling assumes.
    #[default]
    Centred,
    /// On the even luma columns: MPEG-2, H.264 and most camera streams.
    Cosited,
}

impl ChromaSiting {
    fn horizontal_offset(self) -> f32 {
        match self {
            ChromaSiting::Centred => 0.5,
            ChromaSiting::Cosited => 0.0,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum FrameError {
    #[error("frame size {width}x{height} is empty")]
    Empty { width: usize, height: usize },
    #[error(
        "plane {plane} of a {width}x{height} {format:?} frame needs {needed} bytes (stride {stride}) but has {actual}"
    )]
    PlaneTooSmall {
        format: PixelFormat,
        width: usize,
        height: usize,
        plane: usize,
        stride: usize,
        needed: usize,
        actual: usize,
    },
    #[error("{format:?} needs {needed} planes, got {actual}")]
    PlaneCount {
        format: PixelFormat,
        needed: usize,
        actual: usize,
    },
}

/// A sample position between two source samples along one axis, and its weight toward the second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tap {
    pub first: usize,
    pub second: usize,
    pub weight: f32,
}

impl Tap {
    pub fn new(first: usize, second: usize, weight: f32) -> Self {
        Tap {
            first,
            second,
            weight,
        }
    }
}

/// A sample position along one axis in the luma (or packed) plane and in the chroma planes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleTaps {
    luma: Tap,
    chroma: Tap,
}

/// Bilinear interpolation of one channel (`offset` within `step`-byte pixels) of a plane.
#[inline(always)]
fn bilinear(plane: &[u8], stride: usize, x: Tap, y: Tap, step: usize, offset: usize) -> f32 {
    let at = |column: usize, row: usize| plane[row * stride + column * step + offset] as f32;
    let top = at(x.first, y.first) + (at(x.second, y.first) - at(x.first, y.first)) * x.weight;
    let bottom =
        at(x.first, y.second) + (at(x.second, y.second) - at(x.first, y.second)) * x.weight;
    top + (bottom - top) * y.weight
}

/// A read-only view of one video frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    width: usize,
    height: usize,
    format: PixelFormat,
    planes: [&'a [u8]; 3],
    strides: [usize; 3],
    yuv: YuvCoefficients,
    chroma_offset: f32,
}

impl<'a> Frame<'a> {
    /// Wraps planes with their strides, checking that every row the samplers may touch is there.
    pub fn new(
        width: usize,
        height: usize,
        format: PixelFormat,
        planes: &[&'a [u8]],
        strides: &[usize],
        matrix: YuvMatrix,
    ) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        // (row bytes, rows) per plane
        let needs: &[(usize, usize)] = match format {
            PixelFormat::I420 => &[(width, height), (cw, ch), (cw, ch)],
            PixelFormat::Nv12 => &[(width, height), (cw * 2, ch)],
            packed => &[(width * packed.packed_layout().map_or(0, |l| l.1), height)],
        };
        if planes.len() < needs.len() || strides.len() < needs.len() {
            return Err(FrameError::PlaneCount {
                format,
                needed: needs.len(),
                actual: planes.len().min(strides.len()),
            });
        }
        let mut frame_planes: [&[u8]; 3] = [&[], &[], &[]];
        let mut frame_strides = [0; 3];
        for (plane, &(row_bytes, rows)) in needs.iter().enumerate() {
            let stride = strides[plane];
            let needed = stride * (rows - 1) + row_bytes;
            if stride < row_bytes || planes[plane].len() < needed {
                return Err(FrameError::PlaneTooSmall {
                    format,
                    width,
                    height,
                    plane,
                    stride,
                    needed,
                    actual: planes[plane].len(),
                });
            }
            frame_planes[plane] = planes[plane];
            frame_strides[plane] = stride;
        }
        Ok(Frame {
            width,
            height,
            format,
            planes: frame_planes,
            strides: frame_strides,
            yuv: matrix.coefficients(),
            chroma_offset: ChromaSiting::default().horizontal_offset(),
        })
    }

    /// The frame with its chroma read at `siting` (for YUV formats; centred unless told otherwise).
    pub fn with_chroma_siting(mut self, siting: ChromaSiting) -> Self {
        self.chroma_offset = siting.horizontal_offset();
        self
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

    /// Copies the frame's brightness into `out` (`width × height` bytes, row by row): the luma
    /// plane of a YUV frame as it is, a packed RGB frame weighted as BT.601 luma. Code readers
    /// work on brightness alone.
    pub fn grey_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.width * self.height);
        let (plane, stride) = (self.planes[0], self.strides[0]);
        match self.format.packed_layout() {
            None => {
                for row in plane.chunks(stride).take(self.height) {
                    out.extend_from_slice(&row[..self.width]);
                }
            }
            Some(([r, g, b], bytes)) => {
                for row in plane.chunks(stride).take(self.height) {
                    out.extend(row[..self.width * bytes].chunks_exact(bytes).map(|px| {
                        ((77 * u32::from(px[r]) + 150 * u32::from(px[g]) + 29 * u32::from(px[b]))
                            >> 8) as u8
                    }));
                }
            }
        }
    }

    /// Bilinear RGB sample between pixel columns `x0`/`x1` and rows `y0`/`y1` (all in range)
    /// with weights `fx`, `fy` toward the second.
    #[inline(always)]
    pub fn bilinear_rgb(
        &self,
        x0: usize,
        x1: usize,
        y0: usize,
        y1: usize,
        fx: f32,
        fy: f32,
    ) -> [f32; 3] {
        let column = self.column_taps(Tap::new(x0, x1, fx));
        let row = self.row_taps(Tap::new(y0, y1, fy));
        self.bilinear_rgb_at(&column, &row)
    }

    /// The taps for a sample between two pixel columns, chroma's included. A resampler whose
    /// columns repeat on every row computes these once per column, not once per pixel.
    #[inline(always)]
    pub fn column_taps(&self, luma: Tap) -> SampleTaps {
        let chroma = self.chroma_tap(luma, self.chroma_offset, self.width.div_ceil(2));
        SampleTaps { luma, chroma }
    }

    /// The taps for a sample between two pixel rows, chroma's included (see [`Self::column_taps`]).
    #[inline(always)]
    pub fn row_taps(&self, luma: Tap) -> SampleTaps {
        let chroma = self.chroma_tap(luma, 0.5, self.height.div_ceil(2));
        SampleTaps { luma, chroma }
    }

    /// Chroma at the luma position between the taps, interpolated between the chroma samples
    /// around it at their true siting (as libjpeg's "fancy" upsampling does), not copied from
    /// the 2x2 block: half a chroma sample of misplacement is enough to move landmarks.
    /// `offset` is the luma position chroma sample 0 sits at.
    #[inline(always)]
    fn chroma_tap(&self, luma: Tap, offset: f32, size: usize) -> Tap {
        if !self.format.is_yuv() {
            return luma;
        }
        let position = luma.first as f32 + luma.weight * (luma.second - luma.first) as f32;
        let c = ((position - offset) / 2.0).clamp(0.0, (size - 1) as f32);
        let first = c as usize;
        Tap::new(first, (first + 1).min(size - 1), c - first as f32)
    }

    /// Bilinear RGB sample at precomputed taps (from [`Self::column_taps`] / [`Self::row_taps`]).
    ///
    /// For YUV the planes are interpolated first and converted once: the conversion is affine, so
    /// this equals converting the four corners, at a quarter of the cost.
    #[inline(always)]
    pub fn bilinear_rgb_at(&self, column: &SampleTaps, row: &SampleTaps) -> [f32; 3] {
        let (x, y) = (column.luma, row.luma);
        // (plane, bytes per sample, offset) of U and V.
        let chroma = match self.format {
            PixelFormat::I420 => [(1, 1, 0), (2, 1, 0)],
            PixelFormat::Nv12 => [(1, 2, 0), (1, 2, 1)],
            packed => {
                let (offsets, bpp) = packed.packed_layout().unwrap_or(([0, 1, 2], 3));
                return offsets
                    .map(|offset| bilinear(self.planes[0], self.strides[0], x, y, bpp, offset));
            }
        };
        let luma = bilinear(self.planes[0], self.strides[0], x, y, 1, 0);
        let [u, v] = chroma.map(|(plane, step, offset)| {
            let (cx, cy) = (column.chroma, row.chroma);
            bilinear(
                self.planes[plane],
                self.strides[plane],
                cx,
                cy,
                step,
                offset,
            )
        });
        self.yuv.to_rgb(luma, u, v)
    }

    /// Bilinear RGB sample at a continuous position (pixel centres at integer coordinates), or
    /// `None` outside the frame, where warps use a black border.
    #[inline(always)]
    pub fn sample_rgb(&self, x: f32, y: f32) -> Option<[f32; 3]> {
        if !(x > -1.0 && y > -1.0 && x < self.width as f32 && y < self.height as f32) {
            return None;
        }
        let (fx0, fy0) = (x.floor(), y.floor());
        let (fx, fy) = (x - fx0, y - fy0);
        let (xi, yi) = (fx0 as isize, fy0 as isize);
        let max_x = self.width as isize - 1;
        let max_y = self.height as isize - 1;
        // Taps outside the frame read as black, as OpenCV's warpAffine does with BORDER_CONSTANT 0.
        let inside = |x: isize, y: isize| (0..=max_x).contains(&x) && (0..=max_y).contains(&y);
        if inside(xi, yi) && inside(xi + 1, yi + 1) {
            return Some(self.bilinear_rgb(
                xi as usize,
                xi as usize + 1,
                yi as usize,
                yi as usize + 1,
                fx,
                fy,
            ));
        }
        let corner = |x: isize, y: isize| {
            if inside(x, y) {
                self.bilinear_rgb(x as usize, x as usize, y as usize, y as usize, 0.0, 0.0)
            } else {
                [0.0; 3]
            }
        };
        let (a, b, c, d) = (
            corner(xi, yi),
            corner(xi + 1, yi),
            corner(xi, yi + 1),
            corner(xi + 1, yi + 1),
        );
        let mut rgb = [0.0; 3];
        for ch in 0..3 {
            let top = a[ch] + (b[ch] - a[ch]) * fx;
            let bottom = c[ch] + (d[ch] - c[ch]) * fx;
            rgb[ch] = top + (bottom - top) * fy;
        }
        Some(rgb)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small RGB test image: red rises with x, green with y, blue constant.
    pub(crate) fn gradient_rgb(width: usize, height: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                data.extend_from_slice(&[
                    (x * 255 / (width - 1)) as u8,
                    (y * 255 / (height - 1)) as u8,
                    77,
                ]);
            }
        }
        data
    }

    fn rgb_to_yuv_full(rgb: [u8; 3]) -> [u8; 3] {
        let [r, g, b] = rgb.map(f32::from);
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        let u = (b - y) / 1.772 + 128.0;
        let v = (r - y) / 1.402 + 128.0;
        [y, u, v].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn packed_formats_agree() {
        let (w, h) = (8, 6);
        let rgb = gradient_rgb(w, h);
        let bgrx: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[2], p[1], p[0], 0]).collect();
        let a = Frame::new(
            w,
            h,
            PixelFormat::Rgb,
            &[&rgb],
            &[w * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let b = Frame::new(
            w,
            h,
            PixelFormat::Bgrx,
            &[&bgrx],
            &[w * 4],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        for (x, y) in [(0.0, 0.0), (3.5, 2.25), (6.9, 4.9)] {
            assert_eq!(a.sample_rgb(x, y), b.sample_rgb(x, y));
        }
        let px = a.sample_rgb(7.0, 5.0).unwrap();
        assert_eq!(px, [255.0, 255.0, 77.0]);
    }

    #[test]
    fn yuv_formats_convert_close_to_rgb() {
        let (w, h) = (8, 6);
        // Flat colour blocks so chroma subsampling loses nothing.
        let colour = [200u8, 40, 90];
        let [y, u, v] = rgb_to_yuv_full(colour);
        let luma = vec![y; w * h];
        let us = vec![u; (w / 2) * (h / 2)];
        let vs = vec![v; (w / 2) * (h / 2)];
        let uv: Vec<u8> = us.iter().zip(&vs).flat_map(|(&u, &v)| [u, v]).collect();
        let i420 = Frame::new(
            w,
            h,
            PixelFormat::I420,
            &[&luma, &us, &vs],
            &[w, w / 2, w / 2],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let nv12 = Frame::new(
            w,
            h,
            PixelFormat::Nv12,
            &[&luma, &uv],
            &[w, w],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        for frame in [i420, nv12] {
            let got = frame.sample_rgb(3.3, 2.7).unwrap();
            for (g, want) in got.iter().zip(colour) {
                assert!((g - want as f32).abs() <= 2.0, "{got:?} vs {colour:?}");
            }
        }
    }

    #[test]
    fn chroma_is_interpolated_at_its_siting() {
        // Two chroma columns, V = 100 then 200, on a 4x2 frame of mid grey luma.
        let (w, h) = (4, 2);
        let luma = vec![128u8; w * h];
        let us = vec![128u8; 2];
        let vs = vec![100u8, 200];
        let planes: [&[u8]; 3] = [&luma, &us, &vs];
        let centred = Frame::new(
            w,
            h,
            PixelFormat::I420,
            &planes,
            &[w, 2, 2],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        let cosited = centred.with_chroma_siting(ChromaSiting::Cosited);
        let red = |f: &Frame, x: usize| f.bilinear_rgb(x, x, 0, 0, 0.0, 0.0)[0];
        // Centred: luma column 1 lies a quarter of the way from chroma 0 (at 0.5) to chroma 1 (at 2.5).
        assert!((red(&centred, 1) - (128.0 + 1.402 * (125.0 - 128.0))).abs() < 0.01);
        // Cosited: luma column 2 sits exactly on chroma sample 1.
        assert!((red(&cosited, 2) - (128.0 + 1.402 * 72.0)).abs() < 0.01);
        assert_eq!(
            red(&centred, 0),
            red(&cosited, 0),
            "both clamp to the first sample at the edge"
        );
    }

    #[test]
    fn outside_is_black_and_edges_fade() {
        let (w, h) = (4, 4);
        let data = vec![255u8; w * h * 3];
        let f = Frame::new(
            w,
            h,
            PixelFormat::Rgb,
            &[&data],
            &[w * 3],
            YuvMatrix::BT601_FULL,
        )
        .unwrap();
        assert_eq!(f.sample_rgb(-2.0, 1.0), None);
        assert_eq!(f.sample_rgb(-0.5, 1.0), Some([127.5; 3]));
        assert_eq!(f.sample_rgb(3.5, 3.0), Some([127.5; 3]));
    }

    #[test]
    fn short_planes_are_refused() {
        let data = vec![0u8; 10];
        let err = Frame::new(
            4,
            4,
            PixelFormat::Rgb,
            &[&data],
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
        let err = Frame::new(
            4,
            4,
            PixelFormat::I420,
            &[&data],
            &[4],
            YuvMatrix::BT601_FULL,
        )
        .unwrap_err();
        assert!(matches!(err, FrameError::PlaneCount { needed: 3, .. }));
        assert!(
            Frame::new(
                0,
                4,
                PixelFormat::Rgb,
                &[&data],
                &[0],
                YuvMatrix::BT601_FULL
            )
            .is_err()
        );
    }
}
