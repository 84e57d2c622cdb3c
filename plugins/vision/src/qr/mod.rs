// SPDX-License-Identifier: MIT OR Apache-2.0
//! QR codes in video frames: what a passenger's phone shows the gate camera (a signed token,
//! crate facegate-token). Plain Rust over a [`Frame`]'s brightness, no GStreamer.
//!
//! Three decoders behind one [`QrReader`]: [`QrDecoder::Zbar`] (Debian's libzbar, the default:
//! it read every frame of the token walk-ups, tilted or not), and two pure-Rust ones,
//! [`QrDecoder::Quircs`] (a port of the C library quirc) and [`QrDecoder::Rqrr`], which missed
//! some codes altogether. `facegate-dev bench qr` measures them (docs/BENCHMARKS.md).

mod zbar;

use crate::frame::Frame;

/// Which decoder reads the codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum QrDecoder {
    #[default]
    Zbar,
    Quircs,
    Rqrr,
}

/// One decoded code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrCode {
    /// The code's text (a token's `FGT1:…`); codes whose bytes are not UTF-8 are not returned.
    pub text: String,
    /// The code's bounding box in frame pixels: x, y, width, height.
    pub bbox: (i32, i32, i32, i32),
}

/// Reads QR codes frame after frame, reusing its buffers.
#[derive(Default)]
pub struct QrReader {
    decoder: QrDecoder,
    grey: Vec<u8>,
    quirc: quircs::Quirc,
    /// Made at the first frame ZBar reads (`None` until then, or if ZBar could not make one).
    zbar: Option<zbar::ZbarScanner>,
}

impl std::fmt::Debug for QrReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrReader")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl QrReader {
    pub fn new(decoder: QrDecoder) -> QrReader {
        QrReader {
            decoder,
            ..QrReader::default()
        }
    }

    pub fn decoder(&self) -> QrDecoder {
        self.decoder
    }

    /// Every code found in `frame` that decodes to text; codes found but unreadable (damaged,
    /// blurred, cut off by the frame's edge) are counted in the second value.
    pub fn read(&mut self, frame: &Frame) -> (Vec<QrCode>, usize) {
        frame.grey_into(&mut self.grey);
        let (width, height) = (frame.width(), frame.height());
        self.read_grey(width, height)
    }

    fn read_grey(&mut self, width: usize, height: usize) -> (Vec<QrCode>, usize) {
        let mut codes = Vec::new();
        let mut unreadable = 0;
        match self.decoder {
            QrDecoder::Zbar => {
                if self.zbar.is_none() {
                    self.zbar = zbar::ZbarScanner::new();
                }
                let Some(scanner) = self.zbar.as_mut() else {
                    return (codes, 1);
                };
                scanner.scan(
                    &self.grey,
                    width,
                    height,
                    |bytes, corners| match std::str::from_utf8(bytes) {
                        Ok(text) => codes.push(QrCode {
                            text: text.to_owned(),
                            bbox: bounding_box(corners.iter().copied()),
                        }),
                        Err(_) => unreadable += 1,
                    },
                );
            }
            QrDecoder::Quircs => {
                for found in self.quirc.identify(width, height, &self.grey) {
                    let text = found
                        .ok()
                        .and_then(|code| {
                            let bbox = bounding_box(code.corners.iter().map(|p| (p.x, p.y)));
                            code.decode().ok().map(|data| (data.payload, bbox))
                        })
                        .and_then(|(bytes, bbox)| String::from_utf8(bytes).ok().map(|t| (t, bbox)));
                    match text {
                        Some((text, bbox)) => codes.push(QrCode { text, bbox }),
                        None => unreadable += 1,
                    }
                }
            }
            QrDecoder::Rqrr => {
                let grey = &self.grey;
                let mut prepared =
                    rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
                        grey[y * width + x]
                    });
                for grid in prepared.detect_grids() {
                    let bbox = bounding_box(grid.bounds.iter().map(|p| (p.x, p.y)));
                    match grid.decode() {
                        Ok((_, text)) => codes.push(QrCode { text, bbox }),
                        Err(_) => unreadable += 1,
                    }
                }
            }
        }
        (codes, unreadable)
    }
}

fn bounding_box(corners: impl Iterator<Item = (i32, i32)>) -> (i32, i32, i32, i32) {
    let (mut x0, mut y0, mut x1, mut y1) = (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
    for (x, y) in corners {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (x0, y0, (x1 - x0).max(0), (y1 - y0).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, YuvMatrix};

    /// A code drawn into a grey frame: `modules` as rows of booleans (dark = true), `px` pixels a
    /// module, a white quiet zone, placed at (left, top) of a `w × h` frame.
    fn draw(
        modules: &[Vec<bool>],
        px: usize,
        left: usize,
        top: usize,
        w: usize,
        h: usize,
    ) -> Vec<u8> {
        let mut grey = vec![255u8; w * h];
        for (my, row) in modules.iter().enumerate() {
            for (mx, &dark) in row.iter().enumerate() {
                if dark {
                    for y in top + my * px..top + (my + 1) * px {
                        grey[y * w + left + mx * px..y * w + left + (mx + 1) * px].fill(0);
                    }
                }
            }
        }
        grey
    }

    fn modules(text: &str) -> Vec<Vec<bool>> {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let width = code.width();
        code.to_colors()
            .chunks(width)
            .map(|row| row.iter().map(|c| *c == qrcode::Color::Dark).collect())
            .collect()
    }

    #[test]
    fn both_decoders_read_a_code_in_a_yuv_and_a_packed_frame() {
        let text = "FGT1:HELLO GATE 0123456789";
        let (w, h) = (320, 240);
        let grey = draw(&modules(text), 4, 60, 40, w, h);
        let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
        let chroma = vec![128; w * h / 2];
        for decoder in [QrDecoder::Zbar, QrDecoder::Quircs, QrDecoder::Rqrr] {
            let mut reader = QrReader::new(decoder);
            let luma = Frame::new(
                w,
                h,
                PixelFormat::Nv12,
                &[&grey, &chroma],
                &[w, w],
                YuvMatrix::BT601_LIMITED,
            )
            .unwrap();
            let packed = Frame::new(
                w,
                h,
                PixelFormat::Rgb,
                &[&rgb],
                &[3 * w],
                YuvMatrix::BT601_LIMITED,
            )
            .unwrap();
            for frame in [luma, packed] {
                let (codes, unreadable) = reader.read(&frame);
                assert_eq!(unreadable, 0, "{decoder}");
                assert_eq!(codes.len(), 1, "{decoder}");
                assert_eq!(codes[0].text, text, "{decoder}");
                let (x, y, bw, bh) = codes[0].bbox;
                assert!(
                    (58..=64).contains(&x) && (38..=44).contains(&y),
                    "{decoder}: {:?}",
                    codes[0].bbox
                );
                assert!(bw > 60 && bh > 60, "{decoder}: {:?}", codes[0].bbox);
            }
        }
    }

    #[test]
    fn a_frame_without_a_code_reads_nothing() {
        let (w, h) = (64, 48);
        let grey: Vec<u8> = (0..w * h).map(|i| (i * 37 % 251) as u8).collect();
        for decoder in [QrDecoder::Zbar, QrDecoder::Quircs, QrDecoder::Rqrr] {
            let frame = Frame::new(
                w,
                h,
                PixelFormat::I420,
                &[&grey, &[128; 32 * 24], &[128; 32 * 24]],
                &[w, 32, 32],
                YuvMatrix::BT601_LIMITED,
            )
            .unwrap();
            assert_eq!(QrReader::new(decoder).read(&frame).0, vec![], "{decoder}");
        }
    }
}
