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

    /// Bilinear RGB sample between pixel columns `x0`/`x1` and rows `y0`/`y1` (all in range)
    /// with weights `fx`, `fy` toward the second.
    ///
    /// For YUV the planes are interpolated first and converted once: the conversion is affine, so
    /// this equals converting the four corners, at a quarter of the cost.
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
        let lerp2 = |a: f32, b: f32, c: f32, d: f32| {
            let top = a + (b - a) * fx;
            let bottom = c + (d - c) * fx;
            top + (bottom - top) * fy
        };
        match self.format {
            PixelFormat::I420 | PixelFormat::Nv12 => {
                let luma = |x: usize, y: usize| self.planes[0][y * self.strides[0] + x] as f32;
                let y = lerp2(luma(x0, y0), luma(x1, y0), luma(x0, y1), luma(x1, y1));
                let (u, v) = self.chroma_bilinear(x0, x1, y0, y1, fx, fy);
                self.yuv.to_rgb(y, u, v)
            }
            packed => {
                let (offsets, bpp) = packed.packed_layout().unwrap_or(([0, 1, 2], 3));
                let plane = self.planes[0];
                let stride = self.strides[0];
                let (r0, r1) = (y0 * stride, y1 * stride);
                let (c0, c1) = (x0 * bpp, x1 * bpp);
                let mut rgb = [0.0; 3];
                for (channel, &offset) in offsets.iter().enumerate() {
                    rgb[channel] = lerp2(
                        plane[r0 + c0 + offset] as f32,
                        plane[r0 + c1 + offset] as f32,
                        plane[r1 + c0 + offset] as f32,
                        plane[r1 + c1 + offset] as f32,
                    );
                }
                rgb
            }
        }
    }

    /// Chroma at the luma position between the taps, interpolated between the chroma samples
    /// around it at their true siting (as libjpeg's "fancy" upsampling does), not copied from
    /// the 2x2 block: half a chroma sample of misplacement is enough to move landmarks.
    #[inline(always)]
    fn chroma_bilinear(
        &self,
        x0: usize,
        x1: usize,
        y0: usize,
        y1: usize,
        fx: f32,
        fy: f32,
    ) -> (f32, f32) {
        let x = x0 as f32 + fx * (x1 - x0) as f32;
        let y = y0 as f32 + fy * (y1 - y0) as f32;
        let (chroma_width, chroma_height) = (self.width.div_ceil(2), self.height.div_ceil(2));
        let locate = |luma: f32, offset: f32, size: usize| {
            let c = ((luma - offset) / 2.0).clamp(0.0, (size - 1) as f32);
            let first = c as usize;
            (first, (first + 1).min(size - 1), c - first as f32)
        };
        let (cx0, cx1, wx) = locate(x, self.chroma_offset, chroma_width);
        let (cy0, cy1, wy) = locate(y, 0.5, chroma_height);
        let lerp2 = |a: f32, b: f32, c: f32, d: f32| {
            let top = a + (b - a) * wx;
            let bottom = c + (d - c) * wx;
            top + (bottom - top) * wy
        };
        match self.format {
            PixelFormat::I420 => {
                let sample = |plane: usize, x: usize, y: usize| {
                    self.planes[plane][y * self.strides[plane] + x] as f32
                };
                let u = lerp2(
                    sample(1, cx0, cy0),
                    sample(1, cx1, cy0),
                    sample(1, cx0, cy1),
                    sample(1, cx1, cy1),
                );
                let v = lerp2(
                    sample(2, cx0, cy0),
                    sample(2, cx1, cy0),
                    sample(2, cx0, cy1),
                    sample(2, cx1, cy1),
                );
                (u, v)
            }
            _ => {
                let sample = |x: usize, y: usize, c: usize| {
                    self.planes[1][y * self.strides[1] + 2 * x + c] as f32
                };
                let u = lerp2(
                    sample(cx0, cy0, 0),
                    sample(cx1, cy0, 0),
                    sample(cx0, cy1, 0),
                    sample(cx1, cy1, 0),
                );
                let v = lerp2(
                    sample(cx0, cy0, 1),
                    sample(cx1, cy0, 1),
                    sample(cx0, cy1, 1),
                    sample(cx1, cy1, 1),
                );
                (u, v)
            }
        }
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
