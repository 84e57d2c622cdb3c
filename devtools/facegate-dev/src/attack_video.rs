// SPDX-License-Identifier: MIT OR Apache-2.0
//! Presentation-attack frames: a photo of an enrolled passenger held up to the gate's camera on
//! a phone's screen or as a paper print, on walkup_video's dark grey scene, for measuring a
//! presentation-attack detector. The hand brings the face from afar over the genuine approach's
//! sizes and frames, then holds it at the gate, trembling and turning the phone or the sheet out
//! of its plane, so the face moves as a flat surface seen in perspective does. Each frame is the
//! flat presentation rendered on its own (the phone's screen at its own pixel resolution, with
//! stripe subpixels, bezel and glare; the print's paper, ink and grain) and then photographed:
//! a projective warp sampled several times per camera pixel, a little lens blur, sensor noise.
//!
//! These are a lower bound of real attacks, not a sample of them: the attacks are idealised (no
//! fingers over the edge, no reflection of the attacker, no screen flicker, one paper, one phone,
//! one light), so a detector that misses these misses real ones, but one that catches these may
//! still miss a careful attacker with a better screen or a better print.

use image::{Rgb, RgbImage, imageops};

use crate::walkup_video::{
    APPROACH_FRAMES, APPROACH_HEIGHTS, BACKGROUND, FACE_CENTRE_X, FACE_CENTRE_Y, FPS, HEIGHT, WIDTH,
};

/// Frames the hand holds the face at the gate after the approach (whose sizes and length are
/// the genuine walk-up's): long enough for a detector that fuses a track's frames.
const HELD_FRAMES: u64 = 18;
/// Frames of one attack: the approach, then the face held.
pub const ATTACK_FRAMES: u64 = APPROACH_FRAMES + HELD_FRAMES;

/// The camera's focal length in pixels (a 640-pixel-wide view about 60° across): with the
/// projected face's size it sets how close the phone or the sheet is, hence how strongly the
/// tilt foreshortens it.
const FOCAL_PX: f64 = 560.0;
/// The turn about the vertical axis (degrees) at the first frame, its side drawn per attack, and
/// at the last, turned the other way: a hand turning the presentation to face the camera and past.
const YAW_START_DEG: (f64, f64) = (15.0, 22.0);
const YAW_END_DEG: (f64, f64) = (6.0, 12.0);
/// The tilt about the horizontal axis (degrees), first and last frame, likewise.
const PITCH_START_DEG: (f64, f64) = (8.0, 14.0);
const PITCH_END_DEG: (f64, f64) = (2.0, 6.0);
/// A hand never holds a phone quite upright: the in-plane angle (degrees) drawn per attack.
const ROLL_BASE_DEG: f64 = 3.0;
/// The hand's tremor: in-plane wobble (degrees), out-of-plane wobble (degrees) and the shift of
/// the face (pixels), each at most this much, all low-frequency (between these Hz).
const TREMOR_ROLL_DEG: f64 = 3.0;
const TREMOR_TILT_DEG: f64 = 1.5;
const TREMOR_SHIFT_PX: f64 = 2.5;
const TREMOR_HZ: (f64, f64) = (0.4, 2.5);
/// Sinusoids summed in each tremor signal: enough that it does not look periodic.
const TREMOR_COMPONENTS: usize = 3;
/// Samples per camera pixel along each axis: the sensor integrates over a pixel, so a screen's
/// pixel grid finer than the camera's aliases into moire instead of vanishing.
const SUPERSAMPLES: u32 = 3;
/// What the lens spreads a point over on the sensor (pixels): each sample integrates that much
/// more of the presentation, which weakens a screen's moire as a real lens does, without
/// erasing it.
const LENS_SPREAD_PX: f64 = 0.35;
/// The camera's blur after that (Gaussian sigma, pixels): softens, but keeps the moire.
const CAMERA_BLUR_SIGMA: f32 = 0.5;
/// The sensor's noise (standard deviation, 8-bit levels), drawn anew for every frame.
const SENSOR_NOISE: f32 = 1.5;

/// The phone's screen is this many face widths across, and 9:19 (portrait) as phones are.
const SCREEN_FACE_WIDTHS: f64 = 1.6;
const SCREEN_ASPECT: f64 = 9.0 / 19.0;
/// The face centre's height on the screen (fraction of the screen's height): the upper middle,
/// where a photo viewer shows a portrait.
const SCREEN_FACE_Y: f64 = 0.32;
/// Camera pixels per screen pixel when the face is held at the gate: a screen pixel a little
/// larger than a camera pixel, which is what makes moire at a typical phone's distance.
const CAMERA_PX_PER_SCREEN_PX: f64 = 1.5;
/// The lit part of a screen pixel, across (within each of its three stripes) and down; the rest
/// is the dark matrix between pixels. Together about 75 %.
const SUBPIXEL_FILL: (f64, f64) = (0.84, 0.9);
/// The bezel's width in face heights: 9 pixels when the face is 240 high.
const BEZEL_FACE_HEIGHTS: f64 = 0.0375;
/// The bezel's outer corner radius in screen widths.
const PHONE_CORNER: f64 = 0.11;
/// The bezel: near black glass over black plastic.
const BEZEL: [f32; 3] = [13.0, 13.0, 16.0];
/// What the camera sees of the screen showing black (the backlight's leak, bluish) and white
/// (a cool white point, near full exposure).
const SCREEN_BLACK: [f32; 3] = [18.0, 20.0, 26.0];
const SCREEN_WHITE: [f32; 3] = [236.0, 241.0, 255.0];
/// A display's gamut and tone curve against a camera's: more saturated, a brighter midtone.
const SCREEN_SATURATION: f32 = 1.15;
const SCREEN_GAMMA: f32 = 0.85;
/// The glare of a ceiling light on the screen's glass: this fraction of the face's area, this
/// elongated, its flat core this fraction of its radius, at this offset from the face centre (face
/// widths and heights, sideways drawn per attack), moving this many face sizes per radian of tilt.
const GLARE_FACE_AREA: f64 = 0.18;
const GLARE_ELONGATION: f64 = 2.8;
const GLARE_CORE: f64 = 0.55;
const GLARE_OFFSET: (f64, f64) = (0.3, -0.2);
const GLARE_SHIFT_PER_RAD: f64 = 0.8;
/// The glare's orientation (degrees from horizontal), drawn per attack: a diagonal streak.
const GLARE_ANGLE_DEG: (f64, f64) = (-55.0, -25.0);
/// The glare's colour and its opacity in the core: nearly saturated.
const GLARE_WHITE: f32 = 254.0;
const GLARE_OPACITY: f32 = 0.97;

/// The printed sheet is this many face heights high and this wide for its height; the face
/// centre at this fraction of its height: a portrait printed and trimmed around the face.
const SHEET_FACE_HEIGHTS: f64 = 2.5;
const SHEET_ASPECT: f64 = 0.8;
const SHEET_FACE_Y: f64 = 0.45;
/// The white margin around the printed image (fraction of the sheet's height, on every side);
/// where the photo runs out the paper stays white.
const SHEET_MARGIN: f64 = 0.07;
/// Paper pixels per face height: about one and a half per camera pixel when held at the gate.
const PRINT_TEXELS_PER_FACE: f64 = 400.0;
/// Matte paper's white, and what the ink achieves: a limited white (the paper under a thin
/// coat) and a grey black (ink on matte paper never reaches black).
const PAPER_WHITE: [f32; 3] = [232.0, 228.0, 218.0];
const PRINT_WHITE: [f32; 3] = [221.0, 217.0, 207.0];
const INK_BLACK: [f32; 3] = [46.0, 44.0, 47.0];
/// A printer's gamut against the photo's: less saturated, darker midtones (dot gain).
const PRINT_SATURATION: f32 = 0.7;
const PRINT_GAMMA: f32 = 1.12;
/// Ink spreading into the paper (Gaussian sigma, paper pixels).
const DOT_GAIN_SIGMA: f32 = 0.9;
/// The paper's grain per paper pixel (standard deviation, relative to its brightness: about 5
/// levels on white) and its fibres' mottling (amplitude, relative), over blotches this large
/// (paper pixels across and down: fibres lie along the sheet).
const PAPER_GRAIN: f32 = 0.022;
const PAPER_MOTTLE: f32 = 0.018;
const MOTTLE_CELLS: [(f64, f64); 2] = [(60.0, 24.0), (18.0, 8.0)];
/// The light on the matte sheet: from above and in front (camera coordinates, y down, pointing
/// to the light), partly ambient, and falling off down the sheet by this fraction.
const LIGHT_TOWARDS: [f64; 3] = [0.0, -0.55, -0.83];
const LIGHT_AMBIENT: f64 = 0.55;
const LIGHT_FALLOFF: f32 = 0.06;

/// Salts that keep the paper's grain and the sensor's noise apart from the hand's draws.
const PAPER_SALT: u64 = 0x0070_6170_6572;
const SENSOR_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// How the photo is presented to the camera (named in kebab case in reports and file names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::Display, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Presentation {
    /// On a phone's screen: pixel grid, bezel, glare, a display's colours.
    Phone,
    /// Printed on matte paper: white margin, low contrast, paper grain.
    Print,
}

impl Presentation {
    pub const ALL: [Presentation; 2] = [Presentation::Phone, Presentation::Print];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Frame `index` (0..ATTACK_FRAMES) of an attack with `photo` (face box `face` in photo pixels),
/// `seed` varies tremor/tilt per attack; the scene is 640x480 with BACKGROUND.
pub fn attack_frame(
    photo: &RgbImage,
    face: (u32, u32, u32, u32),
    presentation: Presentation,
    index: u64,
    seed: u64,
) -> RgbImage {
    let pose = Pose::at(index, seed);
    let mut frame = vec![background(); (WIDTH * HEIGHT) as usize];
    match presentation {
        Presentation::Phone => {
            let phone = Phone::new(photo, face, &pose);
            photograph(
                &mut frame,
                &pose.homography(&phone.flat),
                &phone.flat,
                |u, v, patch| phone.texel(u, v, patch),
            );
        }
        Presentation::Print => {
            let print = Print::new(photo, face, seed);
            let shade = pose.shade();
            photograph(
                &mut frame,
                &pose.homography(&print.flat),
                &print.flat,
                |u, v, _| print.texel(u, v, shade),
            );
        }
    }
    develop(&frame, seed, index)
}

fn background() -> [f32; 3] {
    BACKGROUND.0.map(f32::from)
}

/// Where the hand holds the presentation in one frame.
#[derive(Clone, Copy, Debug)]
struct Pose {
    /// The face box's height in frame pixels, were the presentation facing the camera.
    face_height: f64,
    /// Where the face centre lands in the frame.
    centre: (f64, f64),
    /// Radians: about the vertical axis, the horizontal one, and in the plane.
    yaw: f64,
    pitch: f64,
    roll: f64,
    /// Which side of the face the glare falls (+1 or -1), and its angle (radians).
    glare_side: f64,
    glare_angle: f64,
}

/// A flat presentation in its own pixels: the face box's height and centre, and the extent of
/// what is drawn (left, top, right, bottom).
struct Flat {
    face_height: f64,
    face_centre: (f64, f64),
    extent: (f64, f64, f64, f64),
}

fn between(rng: &mut fastrand::Rng, range: (f64, f64)) -> f64 {
    range.0 + (range.1 - range.0) * rng.f64()
}

fn sign(rng: &mut fastrand::Rng) -> f64 {
    if rng.bool() { 1.0 } else { -1.0 }
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A low-frequency tremor of at most `amplitude` at `time` seconds, its sinusoids drawn from `rng`.
fn tremor(rng: &mut fastrand::Rng, time: f64, amplitude: f64) -> f64 {
    let mut sum = 0.0;
    let mut weights = 0.0;
    for _ in 0..TREMOR_COMPONENTS {
        let hz = between(rng, TREMOR_HZ);
        let phase = std::f64::consts::TAU * rng.f64();
        let weight = 0.5 + rng.f64();
        sum += weight * (std::f64::consts::TAU * hz * time + phase).sin();
        weights += weight;
    }
    amplitude * sum / weights
}

impl Pose {
    fn at(index: u64, seed: u64) -> Pose {
        let mut rng = fastrand::Rng::with_seed(seed);
        let frame = index.min(ATTACK_FRAMES - 1) as f64;
        // The hand slows as it arrives.
        let approach = (frame / (APPROACH_FRAMES - 1) as f64).min(1.0);
        let eased = approach * (2.0 - approach);
        let face_height = APPROACH_HEIGHTS.0 + (APPROACH_HEIGHTS.1 - APPROACH_HEIGHTS.0) * eased;
        // The turn goes on over the whole attack, held frames included.
        let turn = smoothstep(0.0, 1.0, frame / (ATTACK_FRAMES - 1) as f64);
        let side = sign(&mut rng);
        let yaw = side
            * (between(&mut rng, YAW_START_DEG) * (1.0 - turn)
                - between(&mut rng, YAW_END_DEG) * turn);
        let nod = sign(&mut rng);
        let pitch = nod
            * (between(&mut rng, PITCH_START_DEG) * (1.0 - turn)
                - between(&mut rng, PITCH_END_DEG) * turn);
        let roll = between(&mut rng, (-ROLL_BASE_DEG, ROLL_BASE_DEG));
        let centre_x = between(&mut rng, (FACE_CENTRE_X[0], FACE_CENTRE_X[1]));
        let glare_side = sign(&mut rng);
        let glare_angle = between(&mut rng, GLARE_ANGLE_DEG).to_radians();
        let time = frame / FPS as f64;
        let shake_x = tremor(&mut rng, time, TREMOR_SHIFT_PX);
        let shake_y = tremor(&mut rng, time, TREMOR_SHIFT_PX);
        let wobble = tremor(&mut rng, time, TREMOR_ROLL_DEG);
        let wobble_yaw = tremor(&mut rng, time, TREMOR_TILT_DEG);
        let wobble_pitch = tremor(&mut rng, time, TREMOR_TILT_DEG);
        Pose {
            face_height,
            centre: (centre_x + shake_x, FACE_CENTRE_Y + shake_y),
            yaw: (yaw + wobble_yaw).to_radians(),
            pitch: (pitch + wobble_pitch).to_radians(),
            roll: (roll + wobble).to_radians(),
            glare_side,
            glare_angle,
        }
    }

    /// The presentation's orientation in camera coordinates (x right, y down, z forward).
    fn rotation(&self) -> [[f64; 3]; 3] {
        let (sy, cy) = self.yaw.sin_cos();
        let (sp, cp) = self.pitch.sin_cos();
        let (sr, cr) = self.roll.sin_cos();
        let yaw = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
        let pitch = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
        let roll = [[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]];
        multiply(&multiply(&yaw, &pitch), &roll)
    }

    /// The projective map from `flat`'s pixels to the frame's: the plane turned about its face
    /// centre, placed so that the face is `face_height` high at `centre` when facing the camera.
    fn homography(&self, flat: &Flat) -> [[f64; 3]; 3] {
        let r = self.rotation();
        let depth = FOCAL_PX * flat.face_height / self.face_height;
        let principal = (f64::from(WIDTH) / 2.0, f64::from(HEIGHT) / 2.0);
        let centre = [
            (self.centre.0 - principal.0) * depth / FOCAL_PX,
            (self.centre.1 - principal.1) * depth / FOCAL_PX,
            depth,
        ];
        let (fu, fv) = flat.face_centre;
        let mut columns = [[0.0; 3]; 3];
        for row in 0..3 {
            columns[row] = [
                r[row][0],
                r[row][1],
                centre[row] - fu * r[row][0] - fv * r[row][1],
            ];
        }
        let camera = [
            [FOCAL_PX, 0.0, principal.0],
            [0.0, FOCAL_PX, principal.1],
            [0.0, 0.0, 1.0],
        ];
        multiply(&camera, &columns)
    }

    /// The matte sheet's brightness under the light, relative to facing the camera.
    fn shade(&self) -> f32 {
        let r = self.rotation();
        let normal = [-r[0][2], -r[1][2], -r[2][2]];
        let norm = LIGHT_TOWARDS.iter().map(|l| l * l).sum::<f64>().sqrt();
        let lit = |n: [f64; 3]| {
            let cosine = (0..3).map(|i| n[i] * LIGHT_TOWARDS[i]).sum::<f64>() / norm;
            LIGHT_AMBIENT + (1.0 - LIGHT_AMBIENT) * cosine.max(0.0)
        };
        (lit(normal) / lit([0.0, 0.0, -1.0])) as f32
    }
}

fn multiply(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

fn invert(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let cofactor =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let adjugate = [
        [
            cofactor(1, 2, 1, 2),
            -cofactor(0, 2, 1, 2),
            cofactor(0, 1, 1, 2),
        ],
        [
            -cofactor(1, 2, 0, 2),
            cofactor(0, 2, 0, 2),
            -cofactor(0, 1, 0, 2),
        ],
        [
            cofactor(1, 2, 0, 1),
            -cofactor(0, 2, 0, 1),
            cofactor(0, 1, 0, 1),
        ],
    ];
    let det = (0..3).map(|k| m[0][k] * adjugate[k][0]).sum::<f64>();
    if det.abs() < 1e-12 {
        return None;
    }
    Some(adjugate.map(|row| row.map(|x| x / det)))
}

/// `(x, y)` through `h`, and the depth it lands at (negative: behind the camera).
fn apply(h: &[[f64; 3]; 3], x: f64, y: f64) -> (f64, f64, f64) {
    let w = h[2][0] * x + h[2][1] * y + h[2][2];
    let px = h[0][0] * x + h[0][1] * y + h[0][2];
    let py = h[1][0] * x + h[1][1] * y + h[1][2];
    (px / w, py / w, w)
}

/// Photographs the flat presentation `texel` (`None` off it) through `homography` into `frame`:
/// every camera pixel the plane covers is the mean of [`SUPERSAMPLES`]² points mapped back, each
/// standing for the patch of the presentation it covers (half-sizes passed to `texel`).
fn photograph(
    frame: &mut [[f32; 3]],
    homography: &[[f64; 3]; 3],
    flat: &Flat,
    texel: impl Fn(f64, f64, (f64, f64)) -> Option<[f32; 3]>,
) {
    let Some(inverse) = invert(homography) else {
        return;
    };
    let (left, top, right, bottom) = flat.extent;
    let corners = [(left, top), (right, top), (left, bottom), (right, bottom)];
    let mut bounds = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (u, v) in corners {
        let (x, y, w) = apply(homography, u, v);
        if w <= 0.0 {
            bounds = (0.0, 0.0, f64::from(WIDTH), f64::from(HEIGHT));
            break;
        }
        bounds = (
            bounds.0.min(x),
            bounds.1.min(y),
            bounds.2.max(x),
            bounds.3.max(y),
        );
    }
    let clamp_x = |x: f64| x.clamp(0.0, f64::from(WIDTH)) as u32;
    let clamp_y = |y: f64| y.clamp(0.0, f64::from(HEIGHT)) as u32;
    let (x0, y0) = (clamp_x(bounds.0.floor()), clamp_y(bounds.1.floor()));
    let (x1, y1) = (
        clamp_x(bounds.2.ceil() + 1.0),
        clamp_y(bounds.3.ceil() + 1.0),
    );
    let step = 1.0 / f64::from(SUPERSAMPLES);
    let samples = (SUPERSAMPLES * SUPERSAMPLES) as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            // The patch one sample covers, from the map's local derivatives.
            let centre = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            let (u, v, _) = apply(&inverse, centre.0, centre.1);
            let (ux, vx, _) = apply(&inverse, centre.0 + step, centre.1);
            let (uy, vy, _) = apply(&inverse, centre.0, centre.1 + step);
            let spread = (step + LENS_SPREAD_PX) / step / 2.0;
            let patch = (
                ((ux - u).abs() + (uy - u).abs()) * spread,
                ((vx - v).abs() + (vy - v).abs()) * spread,
            );
            let mut sum = [0.0f32; 3];
            let mut covered = false;
            for sy in 0..SUPERSAMPLES {
                for sx in 0..SUPERSAMPLES {
                    let px = f64::from(x) + (f64::from(sx) + 0.5) * step;
                    let py = f64::from(y) + (f64::from(sy) + 0.5) * step;
                    let (u, v, w) = apply(&inverse, px, py);
                    let colour = if w > 0.0 { texel(u, v, patch) } else { None };
                    covered |= colour.is_some();
                    let colour = colour.unwrap_or_else(background);
                    for c in 0..3 {
                        sum[c] += colour[c];
                    }
                }
            }
            if covered {
                frame[(y * WIDTH + x) as usize] = sum.map(|s| s / samples);
            }
        }
    }
}

/// The fraction of `from - half..from + half` lit by a pattern, repeating every unit, lit on
/// `start..start + width` of each: what a camera pixel's patch integrates of a screen's stripes.
fn lit_fraction(from: f64, half: f64, start: f64, width: f64) -> f64 {
    let lit_below = |x: f64| {
        let x = x - start;
        x.floor() * width + (x - x.floor()).min(width)
    };
    if half <= 1e-9 {
        let x = from - start;
        return if x - x.floor() < width { 1.0 } else { 0.0 };
    }
    (lit_below(from + half) - lit_below(from - half)) / (2.0 * half)
}

/// The camera's lens blur and sensor noise on the photographed `frame`.
fn develop(frame: &[[f32; 3]], seed: u64, index: u64) -> RgbImage {
    let mut image = RgbImage::new(WIDTH, HEIGHT);
    for (pixel, colour) in image.pixels_mut().zip(frame) {
        *pixel = Rgb(colour.map(|c| c.round().clamp(0.0, 255.0) as u8));
    }
    let mut image = imageops::blur(&image, CAMERA_BLUR_SIGMA);
    let mut rng = fastrand::Rng::with_seed(seed ^ SENSOR_SALT.wrapping_mul(index + 1));
    for pixel in image.pixels_mut() {
        let noise = gaussian(&mut rng) * SENSOR_NOISE;
        for c in &mut pixel.0 {
            *c = (f32::from(*c) + noise).round().clamp(0.0, 255.0) as u8;
        }
    }
    image
}

/// A roughly normal draw of standard deviation 1 (three uniform draws summed).
fn gaussian(rng: &mut fastrand::Rng) -> f32 {
    (rng.f32() + rng.f32() + rng.f32() - 1.5) * 2.0
}

fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// `photo` around its face box scaled so the face is `face_height` pixels high, as a `size`
/// image whose face centre is at `at`; `None` where the photo does not reach.
fn crop_around_face(
    photo: &RgbImage,
    face: (u32, u32, u32, u32),
    face_height: f64,
    size: (u32, u32),
    at: (f64, f64),
) -> Vec<Option<[f32; 3]>> {
    let (x, y, w, h) = face;
    let scale = face_height / f64::from(h.max(1));
    let mut out = vec![None; (size.0 * size.1) as usize];
    if photo.width() == 0 || photo.height() == 0 {
        return out;
    }
    let scaled = imageops::resize(
        photo,
        ((f64::from(photo.width()) * scale).round() as u32).max(1),
        ((f64::from(photo.height()) * scale).round() as u32).max(1),
        imageops::FilterType::Triangle,
    );
    let left = (at.0 - (f64::from(x) + f64::from(w) / 2.0) * scale).round() as i64;
    let top = (at.1 - (f64::from(y) + f64::from(h) / 2.0) * scale).round() as i64;
    for row in 0..size.1 {
        for col in 0..size.0 {
            let (sx, sy) = (i64::from(col) - left, i64::from(row) - top);
            if (0..i64::from(scaled.width())).contains(&sx)
                && (0..i64::from(scaled.height())).contains(&sy)
            {
                let pixel = scaled.get_pixel(sx as u32, sy as u32);
                out[(row * size.0 + col) as usize] = Some(pixel.0.map(|c| f32::from(c) / 255.0));
            }
        }
    }
    out
}

fn saturate(c: [f32; 3], factor: f32) -> [f32; 3] {
    let y = luma(c);
    c.map(|v| (y + factor * (v - y)).clamp(0.0, 1.0))
}

/// Whether `(u, v)` is inside the rectangle `(left, top, right, bottom)` with corners of `radius`.
fn inside_rounded(u: f64, v: f64, rect: (f64, f64, f64, f64), radius: f64) -> bool {
    let (left, top, right, bottom) = rect;
    if u < left || u > right || v < top || v > bottom {
        return false;
    }
    let dx = (left + radius - u).max(u - (right - radius)).max(0.0);
    let dy = (top + radius - v).max(v - (bottom - radius)).max(0.0);
    dx * dx + dy * dy <= radius * radius
}

/// The phone, in screen pixels (the screen spans `0..cols` by `0..rows`).
struct Phone {
    flat: Flat,
    cols: u32,
    rows: u32,
    /// Per screen pixel, each stripe's light above the black level where it is lit.
    stripes: Vec<[f32; 3]>,
    bezel: f64,
    corner: f64,
    /// The glare's centre, half-axes and angle (radians).
    glare_centre: (f64, f64),
    glare_axes: (f64, f64),
    glare_angle: f64,
}

impl Phone {
    fn new(photo: &RgbImage, face: (u32, u32, u32, u32), pose: &Pose) -> Phone {
        let aspect = f64::from(face.2.max(1)) / f64::from(face.3.max(1));
        let held_face_width = APPROACH_HEIGHTS.1 * aspect;
        let cols = (SCREEN_FACE_WIDTHS * held_face_width / CAMERA_PX_PER_SCREEN_PX)
            .round()
            .max(8.0);
        let rows = (cols / SCREEN_ASPECT).round();
        let face_width = cols / SCREEN_FACE_WIDTHS;
        let face_height = face_width / aspect;
        let face_centre = (cols / 2.0, rows * SCREEN_FACE_Y);
        let (cols, rows) = (cols as u32, rows as u32);
        let content = crop_around_face(photo, face, face_height, (cols, rows), face_centre);
        let fill = (SUBPIXEL_FILL.0 * SUBPIXEL_FILL.1) as f32;
        let stripes = content
            .into_iter()
            .map(|pixel| {
                // A photo viewer shows black where the photo ends.
                let drive = saturate(pixel.unwrap_or([0.0; 3]), SCREEN_SATURATION)
                    .map(|c| c.powf(SCREEN_GAMMA));
                // Each stripe lights a third of the pixel's lit area: that much brighter.
                std::array::from_fn(|c| (SCREEN_WHITE[c] - SCREEN_BLACK[c]) * drive[c] * 3.0 / fill)
            })
            .collect();
        let bezel = BEZEL_FACE_HEIGHTS * face_height;
        let corner = PHONE_CORNER * (cols as f64 + 2.0 * bezel);
        let glare_b = (GLARE_FACE_AREA * face_width * face_height
            / (std::f64::consts::PI * GLARE_ELONGATION))
            .sqrt();
        let glare_centre = (
            face_centre.0
                + face_width * pose.glare_side * (GLARE_OFFSET.0 + GLARE_SHIFT_PER_RAD * pose.yaw),
            face_centre.1 + face_height * (GLARE_OFFSET.1 + GLARE_SHIFT_PER_RAD * pose.pitch),
        );
        Phone {
            flat: Flat {
                face_height,
                face_centre,
                extent: (-bezel, -bezel, cols as f64 + bezel, rows as f64 + bezel),
            },
            cols,
            rows,
            stripes,
            bezel,
            corner,
            glare_centre,
            glare_axes: (glare_b * GLARE_ELONGATION, glare_b),
            glare_angle: pose.glare_angle * pose.glare_side,
        }
    }

    /// The phone at `(u, v)`, its pixel grid averaged over the patch of half-sizes `patch`.
    fn texel(&self, u: f64, v: f64, patch: (f64, f64)) -> Option<[f32; 3]> {
        let (cols, rows) = (f64::from(self.cols), f64::from(self.rows));
        let outer = (
            -self.bezel,
            -self.bezel,
            cols + self.bezel,
            rows + self.bezel,
        );
        if !inside_rounded(u, v, outer, self.corner) {
            return None;
        }
        let inner = (0.0, 0.0, cols, rows);
        let mut colour = if inside_rounded(u, v, inner, (self.corner - self.bezel).max(0.0)) {
            let (col, row) = (u.floor() as u32, v.floor() as u32);
            let index = row.min(self.rows - 1) * self.cols + col.min(self.cols - 1);
            let light = self.stripes[index as usize];
            let down = lit_fraction(v, patch.1, 0.0, SUBPIXEL_FILL.1);
            std::array::from_fn(|c| {
                let across = lit_fraction(u, patch.0, c as f64 / 3.0, SUBPIXEL_FILL.0 / 3.0);
                SCREEN_BLACK[c] + light[c] * (across * down) as f32
            })
        } else {
            BEZEL
        };
        let (du, dv) = (u - self.glare_centre.0, v - self.glare_centre.1);
        let (sin, cos) = self.glare_angle.sin_cos();
        let along = (du * cos + dv * sin) / self.glare_axes.0;
        let across = (-du * sin + dv * cos) / self.glare_axes.1;
        let radius = (along * along + across * across).sqrt();
        if radius < 1.0 {
            let opacity = GLARE_OPACITY * (1.0 - smoothstep(GLARE_CORE, 1.0, radius)) as f32;
            colour = colour.map(|c| c + (GLARE_WHITE - c) * opacity);
        }
        Some(colour)
    }
}

/// The printed sheet, in paper pixels (`0..cols` by `0..rows`).
struct Print {
    flat: Flat,
    cols: u32,
    rows: u32,
    paper: Vec<[f32; 3]>,
}

impl Print {
    fn new(photo: &RgbImage, face: (u32, u32, u32, u32), seed: u64) -> Print {
        let rows = (SHEET_FACE_HEIGHTS * PRINT_TEXELS_PER_FACE).round() as u32;
        let cols = (f64::from(rows) * SHEET_ASPECT).round() as u32;
        let face_centre = (f64::from(cols) / 2.0, f64::from(rows) * SHEET_FACE_Y);
        let image = crop_around_face(
            photo,
            face,
            PRINT_TEXELS_PER_FACE,
            (cols, rows),
            face_centre,
        );
        let margin = (SHEET_MARGIN * f64::from(rows)).round() as u32;
        let printed = |col: u32, row: u32| {
            (margin..cols - margin).contains(&col) && (margin..rows - margin).contains(&row)
        };
        // The ink, spread a little into the paper; paper white where none was laid.
        let mut ink = RgbImage::from_pixel(cols, rows, Rgb([255, 255, 255]));
        let mut laid = vec![false; (cols * rows) as usize];
        for (index, pixel) in image.iter().enumerate() {
            let (col, row) = (index as u32 % cols, index as u32 / cols);
            if let (Some(c), true) = (pixel, printed(col, row)) {
                ink.put_pixel(col, row, Rgb(c.map(|v| (v * 255.0).round() as u8)));
                laid[index] = true;
            }
        }
        let ink = imageops::blur(&ink, DOT_GAIN_SIGMA);
        let mut rng = fastrand::Rng::with_seed(seed ^ PAPER_SALT);
        let mottle = MOTTLE_CELLS.map(|cell| ValueNoise::new(&mut rng, (cols, rows), cell));
        // The printer's tone curve, per channel and 8-bit level.
        let tone: Vec<[f32; 3]> = (0..=255u8)
            .map(|level| {
                let c = (f32::from(level) / 255.0).powf(PRINT_GAMMA);
                std::array::from_fn(|k| INK_BLACK[k] + (PRINT_WHITE[k] - INK_BLACK[k]) * c)
            })
            .collect();
        let paper = ink
            .pixels()
            .zip(&laid)
            .enumerate()
            .map(|(index, (pixel, &laid))| {
                let (col, row) = (index as u32 % cols, index as u32 / cols);
                let base = if laid {
                    let c = saturate(pixel.0.map(|v| f32::from(v) / 255.0), PRINT_SATURATION);
                    std::array::from_fn(|k| tone[(c[k] * 255.0).round() as usize][k])
                } else {
                    PAPER_WHITE
                };
                let fibres: f32 = mottle
                    .iter()
                    .map(|noise| noise.at(f64::from(col), f64::from(row)))
                    .sum::<f32>()
                    / mottle.len() as f32;
                let texture = 1.0 + PAPER_GRAIN * gaussian(&mut rng) + PAPER_MOTTLE * fibres;
                base.map(|c| c * texture)
            })
            .collect();
        Print {
            flat: Flat {
                face_height: PRINT_TEXELS_PER_FACE,
                face_centre,
                extent: (0.0, 0.0, f64::from(cols), f64::from(rows)),
            },
            cols,
            rows,
            paper,
        }
    }

    /// The sheet at `(u, v)`, bilinearly, lit by `shade` and falling off down the sheet.
    fn texel(&self, u: f64, v: f64, shade: f32) -> Option<[f32; 3]> {
        let (cols, rows) = (f64::from(self.cols), f64::from(self.rows));
        if !(0.0..cols).contains(&u) || !(0.0..rows).contains(&v) {
            return None;
        }
        let (x, y) = ((u - 0.5).max(0.0), (v - 0.5).max(0.0));
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(self.cols - 1), (y0 + 1).min(self.rows - 1));
        let (fx, fy) = ((x - x.floor()) as f32, (y - y.floor()) as f32);
        let at = |col: u32, row: u32| self.paper[(row * self.cols + col) as usize];
        let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
        let light = shade * (1.0 + LIGHT_FALLOFF * (0.5 - (v / rows) as f32));
        Some(std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            (top + (bottom - top) * fy) * light
        }))
    }
}

/// Smooth noise in -1..1 over cells of `cell` paper pixels: the paper's mottling.
struct ValueNoise {
    cell: (f64, f64),
    columns: usize,
    values: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut fastrand::Rng, size: (u32, u32), cell: (f64, f64)) -> ValueNoise {
        let columns = (f64::from(size.0) / cell.0).ceil() as usize + 2;
        let rows = (f64::from(size.1) / cell.1).ceil() as usize + 2;
        let values = (0..columns * rows).map(|_| rng.f32() * 2.0 - 1.0).collect();
        ValueNoise {
            cell,
            columns,
            values,
        }
    }

    fn at(&self, x: f64, y: f64) -> f32 {
        let (gx, gy) = (x / self.cell.0, y / self.cell.1);
        let (i, j) = (gx.floor() as usize, gy.floor() as usize);
        let ease = |t: f64| smoothstep(0.0, 1.0, t) as f32;
        let (fx, fy) = (ease(gx - gx.floor()), ease(gy - gy.floor()));
        let at = |i: usize, j: usize| self.values[j * self.columns + i];
        let top = at(i, j) + (at(i + 1, j) - at(i, j)) * fx;
        let bottom = at(i, j + 1) + (at(i + 1, j + 1) - at(i, j + 1)) * fx;
        top + (bottom - top) * fy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 200x250 "photo": a mid-grey face box at (50, 60) 100 high on black and white halves.
    fn photo() -> (RgbImage, (u32, u32, u32, u32)) {
        let photo = RgbImage::from_fn(200, 250, |x, y| {
            if (50..150).contains(&x) && (60..160).contains(&y) {
                Rgb([150, 120, 100])
            } else if x < 100 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        (photo, (50, 60, 100, 100))
    }

    fn frame_luma(frame: &RgbImage, (x, y): (f64, f64)) -> f32 {
        let pixel = frame.get_pixel(x.round() as u32, y.round() as u32);
        luma(pixel.0.map(f32::from))
    }

    #[test]
    fn the_face_grows_then_is_held_at_the_gate() {
        let heights: Vec<f64> = (0..ATTACK_FRAMES)
            .map(|i| Pose::at(i, 7).face_height)
            .collect();
        assert!((heights[0] - APPROACH_HEIGHTS.0).abs() < 1.0);
        assert!(heights.windows(2).all(|pair| pair[1] >= pair[0]));
        assert!(
            heights[APPROACH_FRAMES as usize..]
                .iter()
                .all(|&h| h == APPROACH_HEIGHTS.1)
        );
        let (first, last) = (Pose::at(0, 7), Pose::at(ATTACK_FRAMES - 1, 7));
        assert!(first.yaw.to_degrees().abs() > 10.0 && first.yaw * last.yaw < 0.0);
    }

    #[test]
    fn the_phone_has_a_dark_bezel_around_its_screen_and_glare() {
        let (photo, face) = photo();
        let index = ATTACK_FRAMES - 1;
        let pose = Pose::at(index, 3);
        let frame = attack_frame(&photo, face, Presentation::Phone, index, 3);
        let phone = Phone::new(&photo, face, &pose);
        let h = pose.homography(&phone.flat);
        let v = phone.flat.face_centre.1;
        for u in [
            -phone.bezel / 2.0,
            f64::from(phone.cols) + phone.bezel / 2.0,
        ] {
            let (x, y, _) = apply(&h, u, v);
            assert!(frame_luma(&frame, (x, y)) < 28.0, "bezel at {x:.0},{y:.0}");
            // Beyond it, the scene.
            let (x, y, _) = apply(&h, u + (u - f64::from(phone.cols) / 2.0).signum() * 40.0, v);
            assert!((frame_luma(&frame, (x, y)) - 64.0).abs() < 8.0);
        }
        let glaring = frame
            .pixels()
            .filter(|p| luma(p.0.map(f32::from)) >= 245.0)
            .count();
        let face_area = pose.face_height * pose.face_height;
        assert!(
            glaring as f64 > 0.05 * face_area,
            "{glaring} glaring pixels"
        );
    }

    #[test]
    fn the_print_has_low_contrast_and_a_paper_margin() {
        let (photo, face) = photo();
        let index = ATTACK_FRAMES - 1;
        let pose = Pose::at(index, 5);
        let frame = attack_frame(&photo, face, Presentation::Print, index, 5);
        let print = Print::new(&photo, face, 5);
        let h = pose.homography(&print.flat);
        let (fu, fv) = print.flat.face_centre;
        let half = PRINT_TEXELS_PER_FACE * 0.75;
        // The photo's black and white, either side of the face: ink black, paper-limited white.
        let (x, y, _) = apply(&h, fu - half, fv);
        let black = frame_luma(&frame, (x, y));
        let (x, y, _) = apply(&h, fu + half, fv);
        let white = frame_luma(&frame, (x, y));
        assert!((30.0..60.0).contains(&black), "black {black}");
        assert!((195.0..235.0).contains(&white), "white {white}");
        // The margin is bare paper, whiter than the print's white.
        let (x, y, _) = apply(&h, SHEET_MARGIN * f64::from(print.rows) / 2.0, fv);
        assert!(frame_luma(&frame, (x, y)) > white + 3.0);
    }

    #[test]
    fn frames_are_deterministic_and_move() {
        let (photo, face) = photo();
        for presentation in Presentation::ALL {
            let frame = |index| attack_frame(&photo, face, presentation, index, 1);
            let first = frame(20);
            assert_eq!(first, frame(20), "{presentation}");
            assert_ne!(first, frame(21), "{presentation}");
        }
        // Another seed, another hand.
        let (one, two) = (Pose::at(20, 1), Pose::at(20, 2));
        assert!(one.yaw != two.yaw && one.centre != two.centre);
    }
}
