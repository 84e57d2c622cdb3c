// SPDX-License-Identifier: MIT OR Apache-2.0
//! Token walk-ups made with GStreamer's compositor: a passenger's photo on the left of a
//! 640x480 frame and, beside the face, the QR code of their token on a phone held up to the
//! camera (the code's PNG turned into a phone screen: a dark bezel, a few degrees of tilt and
//! a camera's blur). Segments follow one another (concat), each a fresh walk-up; nothing is
//! written but the phone panels. The tests and `demo --token` ([`run_demo`]) play them through
//! the gate's real pipeline.

use std::fmt::Write as _;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use facegate_meta::Identification;

use crate::gate_rig::{GateRig, RigFiles, follow, print_decision};

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

/// An enrolment office: its key pair, for issuing tokens and signing revocation lists.
pub struct Office {
    pub key: SigningKey,
    pub key_file: PathBuf,
    pub public: PathBuf,
}

impl Office {
    /// A new key pair `NAME.key.pem` / `NAME.pub.pem` in `dir`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Office> {
        let (key_file, public, _) = facegate_token::generate_key(dir, name)?;
        Ok(Office {
            key: facegate_token::load_signing_key(&key_file)?,
            key_file,
            public,
        })
    }

    /// Puts the office's public key into a gate's `trusted` directory.
    pub fn trust(&self, trusted: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(trusted)?;
        let name = self.public.file_name().context("a key file name")?;
        std::fs::copy(&self.public, trusted.join(name))?;
        Ok(())
    }

    /// Issues `passenger`'s token from `photo` as `facegatectl token issue` does (the gate's
    /// elements enrol it; files in `dir`); returns its text.
    pub fn issue(
        &self,
        passenger: &str,
        photo: &Path,
        dir: &Path,
        files: &RigFiles,
    ) -> anyhow::Result<String> {
        facegatectl::init()?;
        let key = self
            .public
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let png = dir.join(format!("{passenger}-{key}.png"));
        let issued =
            facegatectl::token::issue(&self.key_file, passenger, photo, 30, &png, &files.models())?;
        Ok(std::fs::read_to_string(&issued.text)?.trim().to_owned())
    }
}

/// `text` as a QR code on a phone held up to the camera, tilted 6 degrees (files in `dir`).
pub fn phone(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let code = dir.join(format!("{name}-code.png"));
    facegatectl::token::write_code_png(text, &code)?;
    let panel = dir.join(format!("{name}-phone.png"));
    phone_panel(&code, &panel, 6.0)?;
    Ok(panel)
}

/// The demo's file source in pipelines/demo.pipeline, which a token scene takes the place of.
const DEMO_SOURCE: &str = "filesrc location=${video}\n  ! decodebin\n";

/// The gate's own pipeline (`demo`, the rig's pipelines/demo.pipeline, every `${…}` left for
/// the service to fill) with the scene of `segments` in place of its video file.
pub fn pipeline(demo: &Path, segments: &[Segment]) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(demo).with_context(|| format!("reading {}", demo.display()))?;
    if !text.contains(DEMO_SOURCE) {
        bail!(
            "{}: no `{DEMO_SOURCE:?}` to put the scene in place of",
            demo.display()
        );
    }
    Ok(text.replacen(DEMO_SOURCE, &format!("{}\n", sources(segments)), 1))
}

/// The rig in `identification` (a token mode), playing `segments`, trusting the keys in
/// `trusted`, a token counting `window_s` seconds, with `enrolled` (id, label, photo) in its
/// gallery (opened only by `token-or-gallery`); the revocation list is `scratch/revoked-tokens`.
pub fn token_rig(
    files: RigFiles,
    scratch: &Path,
    segments: &[Segment],
    trusted: &Path,
    window_s: u64,
    identification: Identification,
    enrolled: &[(&str, &str, &str)],
) -> anyhow::Result<GateRig> {
    let mut rig = GateRig::new(files, scratch, enrolled)?;
    let file = scratch.join("token-walkups.pipeline");
    std::fs::write(&file, pipeline(&rig.files.pipeline, segments)?)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    rig.extra_env.extend([
        ("FACEGATE_PIPELINE__FILE".into(), path(&file)),
        (
            "FACEGATE_POLICY__IDENTIFICATION".into(),
            identification.to_string(),
        ),
        (
            "FACEGATE_POLICY__TOKEN_WINDOW_S".into(),
            window_s.to_string(),
        ),
        ("FACEGATE_TOKENS__TRUSTED_KEYS".into(), path(trusted)),
        (
            "FACEGATE_TOKENS__REVOCATIONS".into(),
            path(&scratch.join("revoked-tokens")),
        ),
    ]);
    Ok(rig)
}

/// A [`walkup`]: two seconds of a passenger, then two of nobody (longer than the token window
/// the demo and the tests use, so each walk-up has only its own token).
pub const WALKUP_FRAMES: u32 = 4 * FPS;

/// A walk-up of [`WALKUP_FRAMES`].
pub fn walkup(face: Option<PathBuf>, code: Option<PathBuf>) -> Vec<Segment> {
    vec![
        Segment {
            face,
            code,
            frames: WALKUP_FRAMES / 2,
        },
        Segment {
            face: None,
            code: None,
            frames: WALKUP_FRAMES / 2,
        },
    ]
}

/// `facegatectl demo --token`: passengers hold up their tokens on a phone; the gate keeps no
/// gallery and compares each face with the token shown.
pub fn run_demo(out: &mut impl Write) -> anyhow::Result<()> {
    let files = RigFiles::repository_defaults()?;
    let scratch = tempfile::Builder::new()
        .prefix("facegate-token-demo")
        .tempdir()?;
    let dir = scratch.path();
    let office = Office::new(dir, "office")?;
    let trusted = dir.join("trusted-keys");
    office.trust(&trusted)?;
    let photo = |name: &str| files.photos.join(name);
    writeln!(
        out,
        "== the office issues tokens (its key {}); the gate trusts {}",
        office.key_file.display(),
        trusted.display()
    )?;
    let mut tokens = Vec::new();
    for (passenger, from) in [
        ("P-A", "person_a_1.jpg"),
        ("P-B", "person_b_1.jpg"),
        ("P-OBAMA", "obama.jpg"),
    ] {
        tokens.push(office.issue(passenger, &photo(from), dir, &files)?);
        writeln!(out, "   {passenger:<8} from {from}")?;
    }
    let walkups = [
        ("person_a_2.jpg", Some(0), "P-A with their token"),
        ("person_b_2.jpg", Some(1), "P-B with their token"),
        ("impostor_1.jpg", Some(0), "a stranger with P-A's token"),
        ("obama2.jpg", Some(2), "P-OBAMA with their token"),
        ("biden.jpg", None, "a face without a token"),
        ("obama.jpg", Some(2), "P-OBAMA again, the same token"),
    ];
    let mut segments = Vec::new();
    for (index, (face, token, what)) in walkups.iter().enumerate() {
        let code = match token {
            Some(t) => Some(phone(dir, &format!("walkup-{index}"), &tokens[*t])?),
            None => None,
        };
        segments.extend(walkup(Some(photo(face)), code));
        writeln!(out, "   walk-up {}: {what} ({face})", index + 1)?;
    }
    let rig = token_rig(
        files,
        dir,
        &segments,
        &trusted,
        1,
        Identification::Token,
        &[],
    )?;
    writeln!(out, "== private D-Bus at {}", rig.bus.address())?;
    let mut child = rig.spawn()?;
    let started = Instant::now();
    writeln!(
        out,
        "== facegated in token mode, no gallery; the walk-ups play in real time"
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let followed = runtime.block_on(follow(&rig, &mut child, |decision| {
        print_decision(out, started, decision)?;
        Ok(ControlFlow::Continue(()))
    }))?;
    if !followed.status.success() {
        bail!(
            "facegated failed ({}); its log: {}",
            followed.status,
            rig.log_text()
        );
    }
    writeln!(out, "== journal ({}):", rig.journal.display())?;
    let passages = rig.passages()?;
    // A walk-up begins every WALKUP_FRAMES of video; a grant's latency runs from its first
    // frame on the wall clock (the stream's start as the gate announced it) to the journal's
    // row, written just before the relay moves.
    let period_ns = u64::from(WALKUP_FRAMES) * 1_000_000_000 / u64::from(FPS);
    let mut latencies = Vec::new();
    for passage in passages.iter().filter(|p| p.granted) {
        if let (Some(video_ns), true) = (passage.video_time_ns, followed.stream_start_unix_ns > 0) {
            let walkup_start = followed.stream_start_unix_ns + video_ns / period_ns * period_ns;
            let written = passage.time.timestamp_nanos_opt().unwrap_or_default() as u64;
            latencies.push(written.saturating_sub(walkup_start) / 1_000_000);
        }
    }
    for passage in &passages {
        writeln!(
            out,
            "   {}  {:<22} passenger {:<8} token {}",
            passage.time.format("%H:%M:%S%.3f"),
            if passage.granted {
                "granted".to_owned()
            } else {
                format!("denied: {}", passage.reason.as_deref().unwrap_or("?"))
            },
            passage.identity.as_deref().unwrap_or("-"),
            passage.token.as_deref().unwrap_or("-")
        )?;
    }
    if let (Some(median), Some(worst)) = (
        crate::bench::percentile(&latencies, 0.5),
        latencies.iter().max(),
    ) {
        writeln!(
            out,
            "== face and token visible to grant: median {median} ms, worst {worst} ms over {} grants",
            latencies.len()
        )?;
    }
    Ok(())
}
