// SPDX-License-Identifier: MIT OR Apache-2.0
//! Token walk-ups made with GStreamer's compositor: a passenger's photo on the left of a
//! 640x480 frame and, beside the face, the QR code of their token on a phone held up to the
//! camera (the code's PNG turned into a phone screen: a dark bezel, a few degrees of tilt and
//! a camera's blur). Segments follow one another (concat), each a fresh walk-up; nothing is
//! written but the phone panels. The tests and `demo --token` play them through the gate's
//! real pipeline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Frame size and rate of the scene.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
pub const FPS: u32 = 25;
/// The passenger's photo fills the left of the frame.
const FACE_WIDTH: u32 = 340;
/// The phone panel, its top-left corner in the frame: a phone held at arm's length beside the
/// face covers about half the frame's height.
const PHONE_SIDE: u32 = 300;
const PHONE_AT: (u32, u32) = (340, 90);

/// One walk-up: a photo, a phone panel (from [`phone_panel`]), both or neither, for `frames`.
#[derive(Clone, Debug)]
pub struct Segment {
    pub face: Option<PathBuf>,
    pub code: Option<PathBuf>,
    pub frames: u32,
}

/// The gst-launch description of the scene's sources, ending in its raw 640x480 I420 frames at
/// 25 fps, to be followed by `! <the analysis>`.
pub fn sources(segments: &[Segment]) -> String {
    let raw =
        |w: u32, h: u32| format!("video/x-raw,format=I420,width={w},height={h},framerate={FPS}/1");
    let blank = |w: u32, h: u32, frames: u32| {
        format!(
            "videotestsrc pattern=white num-buffers={frames} ! {}",
            raw(w, h)
        )
    };
    let still = |decoder: &str, path: &Path, w: u32, h: u32, frames: u32| {
        format!(
            "filesrc location=\"{}\" ! {decoder} ! videoconvert ! videoscale ! video/x-raw,format=I420,width={w},height={h} \
             ! imagefreeze num-buffers={frames} ! {}",
            path.display(),
            raw(w, h)
        )
    };
    let (px, py) = PHONE_AT;
    let mut text = format!(
        "compositor name=mix background=white sink_0::xpos=0 sink_0::ypos=0 \
         sink_1::xpos={px} sink_1::ypos={py} \
         concat name=faces ! mix.sink_0 concat name=codes ! mix.sink_1 "
    );
    for segment in segments {
        let face = match &segment.face {
            Some(photo) => still("jpegdec", photo, FACE_WIDTH, HEIGHT, segment.frames),
            None => blank(FACE_WIDTH, HEIGHT, segment.frames),
        };
        let code = match &segment.code {
            Some(panel) => still("pngdec", panel, PHONE_SIDE, PHONE_SIDE, segment.frames),
            None => blank(PHONE_SIDE, PHONE_SIDE, segment.frames),
        };
        let _ = write!(text, "{face} ! faces. {code} ! codes. ");
    }
    text + &format!("mix. ! {}", raw(WIDTH, HEIGHT))
}

/// A phone showing the QR code in `code_png` (as `facegatectl token issue` writes it), as a
/// gate camera sees one held up: a dark bezel around the screen, tilted by `tilt_degrees`,
/// blurred over a 3x3 box; written as a greyscale PNG to `out`.
pub fn phone_panel(code_png: &Path, out: &Path, tilt_degrees: f32) -> anyhow::Result<()> {
    let (code, side) = read_grey_png(code_png)?;
    // The screen holds the code; the bezel is a tenth of the side on each edge.
    let bezel = side / 10;
    let panel = side + 2 * bezel;
    let (sin, cos) = tilt_degrees.to_radians().sin_cos();
    let centre = panel as f32 / 2.0;
    let mut tilted = vec![255u8; panel * panel];
    for y in 0..panel {
        for x in 0..panel {
            // Where this output pixel comes from on the upright phone.
            let (dx, dy) = (x as f32 - centre, y as f32 - centre);
            let (sx, sy) = (cos * dx + sin * dy + centre, -sin * dx + cos * dy + centre);
            if sx < 0.0 || sy < 0.0 || sx >= panel as f32 || sy >= panel as f32 {
                continue;
            }
            let (ux, uy) = (sx as usize, sy as usize);
            let on_screen =
                (bezel..bezel + side).contains(&ux) && (bezel..bezel + side).contains(&uy);
            tilted[y * panel + x] = if on_screen {
                // A screen is never paper white nor ink black.
                24 + (u32::from(code[(uy - bezel) * side + ux - bezel]) * 200 / 255) as u8
            } else {
                20
            };
        }
    }
    let mut blurred = tilted.clone();
    for y in 1..panel - 1 {
        for x in 1..panel - 1 {
            let sum: u32 = (y - 1..=y + 1)
                .flat_map(|yy| (x - 1..=x + 1).map(move |xx| (xx, yy)))
                .map(|(xx, yy)| u32::from(tilted[yy * panel + xx]))
                .sum();
            blurred[y * panel + x] = (sum / 9) as u8;
        }
    }
    write_grey_png(out, panel, &blurred)
}

fn read_grey_png(path: &Path) -> anyhow::Result<(Vec<u8>, usize)> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{}", path.display()))?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels)?;
    anyhow::ensure!(
        frame.color_type == png::ColorType::Grayscale && frame.width == frame.height,
        "{}: not a square greyscale QR code PNG",
        path.display()
    );
    pixels.truncate(frame.buffer_size());
    Ok((pixels, frame.width as usize))
}

fn write_grey_png(path: &Path, side: usize, pixels: &[u8]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(pixels)?;
    Ok(())
}
