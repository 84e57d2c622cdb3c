// SPDX-License-Identifier: MIT OR Apache-2.0
//! Presentation-attack detection (PAD): is the face at the gate a live person, or a photo of
//! one shown on a phone or on paper? fglive runs this per tracked face.
//!
//! Each frame, every cue looks at the face and either **vetoes** (it sees an attack), **confirms**
//! (it sees something only a live face does), is **clear** (it judged and saw neither) or
//! **abstains** (it cannot judge this frame: the face is too small, or at the frame's edge):
//!
//! | cue | kind | what it looks for |
//! |---|---|---|
//! | [`Cue::Bezel`] | veto | a device's dark frame: straight dark bands on both sides of the face ([`screen`]) |
//! | [`Cue::Moire`] | veto | isolated peaks in the face's spectrum: a pixel grid or halftone resampled by the camera ([`spectrum`]) |
//! | [`Cue::Glare`] | veto | a large flat saturated patch over the face: light reflected by glass ([`glare`]) |
//! | [`Cue::PaperMargin`] | veto | a sheet's unprinted edge: straight bright flat bands on both sides of the face ([`sheet`]) |
//! | [`Cue::PaperTexture`] | veto | grain that is strong against the face's own contrast: paper under a faded print ([`texture`]) |
//! | [`Cue::PlanarMotion`] / [`Cue::DepthMotion`] | veto / confirm | whether the five landmarks move as one plane under perspective ([`motion`]) |
//! | [`Cue::Model`] | veto / confirm | an opt-in passive PAD classifier ([`model`]) |
//!
//! A track's [`Evidence`] turns the frames into a [`Verdict`]: `attack` as soon as one cue has
//! vetoed on [`LivenessConfig::veto_frames`] frames and on at least
//! [`LivenessConfig::veto_share`] of the frames it judged (and from then on: an attacker cannot
//! hide the phone again and pass). Frames a cue abstained on do not count for it, so frames
//! from far away, where a phone's moire cannot be seen yet, do not dilute its vetoes once it
//! can. `live` once cues judged the track on [`LivenessConfig::min_frames`] frames, no cue's
//! vetoes reach that share and no cue vetoed the latest frame it judged (that veto keeps the
//! track `undecided` until the next frame repeats or clears it); `undecided` before. Confirm
//! cues only add to the score, never overrule a veto.
//!
//! These cues are what a single ordinary camera offers. They stop the attacks the repository
//! can make (docs/ACCURACY.md, "Presentation attacks"); a better-made attack (a borderless
//! display held close, a print trimmed to its picture) is what an infrared or depth sensor is
//! for.

pub mod glare;
pub mod model;
pub mod motion;
pub mod screen;
pub mod sheet;
pub mod spectrum;
pub mod texture;

use std::collections::HashMap;

use crate::frame::Frame;
use crate::geometry::Rect;
use crate::runtime::InferenceError;

/// A frame's brightness, row by row, `width × height` bytes (what [`crate::Frame::grey_into`]
/// fills).
#[derive(Clone, Copy, Debug)]
pub struct Grey<'a> {
    pub pixels: &'a [u8],
    pub width: usize,
    pub height: usize,
}

impl Grey<'_> {
    /// The brightness at (`x`, `y`), which must be inside the frame.
    #[inline(always)]
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// The face box's pixels that lie in the frame: `(x0, y0, x1, y1)`, ends exclusive; `None`
    /// when fewer than `min_side` pixels of either side remain.
    pub fn clip(&self, rect: &Rect, min_side: usize) -> Option<(usize, usize, usize, usize)> {
        let x0 = rect.x.max(0.0).round() as usize;
        let y0 = rect.y.max(0.0).round() as usize;
        let x1 = ((rect.x + rect.w).round().max(0.0) as usize).min(self.width);
        let y1 = ((rect.y + rect.h).round().max(0.0) as usize).min(self.height);
        (x1 >= x0 + min_side && y1 >= y0 + min_side).then_some((x0, y0, x1, y1))
    }

    /// The face box shrunk by `inset` (a share of its size) on every side, clipped as [`clip`]
    /// does and kept one pixel inside the frame, for cues that read each pixel's four
    /// neighbours; `None` when nothing is left.
    ///
    /// [`clip`]: Grey::clip
    pub fn inner(
        &self,
        rect: &Rect,
        inset: f32,
        min_side: usize,
    ) -> Option<(usize, usize, usize, usize)> {
        let inner = Rect {
            x: rect.x + inset * rect.w,
            y: rect.y + inset * rect.h,
            w: rect.w * (1.0 - 2.0 * inset),
            h: rect.h * (1.0 - 2.0 * inset),
        };
        let (x0, y0, x1, y1) = self.clip(&inner, min_side)?;
        let (x0, y0) = (x0.max(1), y0.max(1));
        let (x1, y1) = (x1.min(self.width - 1), y1.min(self.height - 1));
        (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
    }
}

/// One face on one frame, as the cues see it.
#[derive(Clone, Copy, Debug)]
pub struct FaceView<'a> {
    pub grey: Grey<'a>,
    pub bbox: Rect,
    /// Right eye, left eye, nose tip, right and left mouth corners (image order).
    pub landmarks: [[f32; 2]; 5],
}

#[cfg(test)]
impl<'a> FaceView<'a> {
    /// The face box `[x, y, w, h]` on a grey frame `width` pixels wide, its landmarks all at the
    /// box's centre: the one face the single-frame cues' tests need.
    pub(crate) fn boxed(pixels: &'a [u8], width: usize, [x, y, w, h]: [f32; 4]) -> Self {
        FaceView {
            grey: Grey {
                pixels,
                width,
                height: pixels.len() / width,
            },
            bbox: Rect { x, y, w, h },
            landmarks: [[x + w / 2.0, y + h / 2.0]; 5],
        }
    }
}

/// Where a pixel of a [`framed_scene`] lies.
#[cfg(test)]
#[derive(Clone, Copy)]
pub(crate) enum ScenePart {
    Picture,
    /// The band around the picture: a device's bezel, a sheet's margin.
    Frame,
    Scene,
}

/// A grey `width × height` frame holding a rectangle `[x0, x1, y0, y1]` (ends exclusive) whose
/// outer `frame` pixels are a band around its picture, each row shifted right by `shift(y)` (a
/// hand's slant), each pixel's value what `paint` gives its part and position: what the frame
/// cues' tests show them.
#[cfg(test)]
pub(crate) fn framed_scene(
    (width, height): (usize, usize),
    [x0, x1, y0, y1]: [i32; 4],
    frame: i32,
    shift: impl Fn(i32) -> i32,
    paint: impl Fn(ScenePart, i32, i32) -> u8,
) -> Vec<u8> {
    let mut pixels = vec![0u8; width * height];
    for y in 0..height as i32 {
        let (l, r) = (x0 + shift(y), x1 + shift(y));
        for x in 0..width as i32 {
            let outer = x >= l && x < r && y >= y0 && y < y1;
            let picture = x >= l + frame && x < r - frame && y >= y0 + frame && y < y1 - frame;
            let part = if picture {
                ScenePart::Picture
            } else if outer {
                ScenePart::Frame
            } else {
                ScenePart::Scene
            };
            pixels[y as usize * width + x as usize] = paint(part, x, y);
        }
    }
    pixels
}

/// What decided a verdict, or what the strongest evidence was (its kebab-case name is the
/// `facegate-liveness` param's `cue`: facegate-meta's `LivenessCue`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum Cue {
    Bezel,
    Moire,
    Glare,
    PaperMargin,
    PaperTexture,
    PlanarMotion,
    DepthMotion,
    Model,
    /// No cue vetoed (a `live` verdict without any confirmation, or `undecided`).
    None,
}

impl Cue {
    /// The cue whose tally a reading under this name counts in: the motion cue is one cue,
    /// named by what it saw.
    fn tally_key(self) -> Cue {
        match self {
            Cue::DepthMotion => Cue::PlanarMotion,
            cue => cue,
        }
    }

    /// The name of a cue's confirmations.
    fn confirming(self) -> Cue {
        match self {
            Cue::PlanarMotion => Cue::DepthMotion,
            cue => cue,
        }
    }
}

/// One cue's reading of one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// An attack; the strength (how far past the cue's threshold, 1 = at it).
    Veto(f32),
    /// Live; the strength as for a veto.
    Confirm(f32),
    /// Judged: no sign of an attack, nor proof of life.
    Clear,
    /// This frame does not tell.
    Abstain,
}

/// A track's verdict (its kebab-case name is the `facegate-liveness` param's `verdict`:
/// facegate-meta's `LivenessVerdict`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "kebab-case")]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Live,
    Attack,
    /// Not judged on enough frames yet, or a veto waits to be repeated or cleared.
    Undecided,
}

/// The verdict with its score (1 = surely live, 0 = surely an attack) and the cue that decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub score: f64,
    pub cue: Cue,
}

pub const DEFAULT_SCREEN: bool = true;
/// Off: at a gate camera's resolution paper grain is averaged away, and what the cue measures
/// then is a photo's own sharpness against its contrast, which denied live faces in the demo and
/// caught none of the repository's prints (docs/ACCURACY.md, "Presentation attacks"). It is for
/// a camera close enough to resolve the paper.
pub const DEFAULT_PRINT: bool = false;
/// On: without it every print of an enrolled passenger opens the gate. What it takes for a
/// print is a picture with a margin of its own: a photo cut from a collage, its white gutter
/// along two edges (docs/ACCURACY.md, "Presentation attacks").
pub const DEFAULT_PAPER_MARGIN: bool = true;
pub const DEFAULT_MOTION: bool = true;
pub const DEFAULT_MIN_FRAMES: u32 = 5;
pub const DEFAULT_VETO_FRAMES: u32 = 3;
pub const DEFAULT_VETO_SHARE: f32 = 0.5;

/// Which cues run and how a track's frames become a verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LivenessConfig {
    /// A device's bezel, moire and glare (the screen cues).
    pub screen: bool,
    /// A sheet's unprinted margin around the picture.
    pub paper_margin: bool,
    /// Paper grain against the face's contrast.
    pub print: bool,
    /// Planar against 3-D landmark motion.
    pub motion: bool,
    /// Frames the cues must have judged a track on before it can be `live`: the frames they
    /// need to catch an attack before a grant. At least `veto_frames`.
    pub min_frames: u32,
    /// Frames a veto cue must veto on to decide `attack`: one frame can be a fluke.
    pub veto_frames: u32,
    /// And the share of the frames that cue judged (vetoed, confirmed or was clear on).
    pub veto_share: f32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            screen: DEFAULT_SCREEN,
            paper_margin: DEFAULT_PAPER_MARGIN,
            print: DEFAULT_PRINT,
            motion: DEFAULT_MOTION,
            min_frames: DEFAULT_MIN_FRAMES,
            veto_frames: DEFAULT_VETO_FRAMES,
            veto_share: DEFAULT_VETO_SHARE,
        }
    }
}

/// How one cue has read one track so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    vetoes: u32,
    confirms: u32,
    /// Frames it did not abstain on.
    judged: u32,
    /// Whether the last frame it judged was a veto.
    last_vetoed: bool,
}

impl Tally {
    fn share(&self, count: u32) -> f64 {
        f64::from(count) / f64::from(self.judged.max(1))
    }

    /// Whether its vetoes reach `config.veto_share` of its judged frames: an attack once
    /// there are `config.veto_frames` of them, a reason to wait before.
    fn leans_attack(&self, config: &LivenessConfig) -> bool {
        self.vetoes > 0 && self.vetoes as f32 >= config.veto_share * self.judged as f32
    }

    /// Whether it keeps the track from being live now: it leans to an attack, or its latest
    /// reading was a veto, which the next frame either repeats or clears. A sheet's margin
    /// seen on two of a far face's first five frames is no fluke to grant on.
    fn holds(&self, config: &LivenessConfig) -> bool {
        self.last_vetoed || self.leans_attack(config)
    }
}

/// What one track has shown the cues so far.
#[derive(Debug, Default)]
pub struct Evidence {
    frames: u32,
    /// Frames on which at least one cue judged (every frame when no cue runs).
    judged_frames: u32,
    tallies: HashMap<Cue, Tally>,
    /// Set once, never cleared: an attack seen stays an attack for the track.
    attack: Option<Cue>,
    motion: motion::LandmarkHistory,
}

impl Evidence {
    /// Adds one frame's readings.
    pub fn add(&mut self, readings: &[(Cue, Reading)], config: &LivenessConfig) {
        self.frames = self.frames.saturating_add(1);
        // With every cue off there is nothing to wait for: each frame counts as judged.
        if readings.is_empty() || readings.iter().any(|(_, r)| *r != Reading::Abstain) {
            self.judged_frames = self.judged_frames.saturating_add(1);
        }
        for &(cue, reading) in readings {
            let tally = self.tallies.entry(cue.tally_key()).or_default();
            match reading {
                Reading::Veto(_) => tally.vetoes += 1,
                Reading::Confirm(_) => tally.confirms += 1,
                Reading::Clear => {}
                Reading::Abstain => continue,
            }
            tally.judged += 1;
            tally.last_vetoed = matches!(reading, Reading::Veto(_));
        }
        if self.attack.is_none() {
            self.attack = self
                .tallies
                .iter()
                .filter(|(_, t)| t.vetoes >= config.veto_frames && t.leans_attack(config))
                .max_by_key(|(_, t)| t.vetoes)
                .map(|(cue, _)| *cue);
        }
    }

    /// Frames seen.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Frames on which at least one cue judged.
    pub fn judged_frames(&self) -> u32 {
        self.judged_frames
    }

    /// The track's verdict now.
    pub fn judgement(&self, config: &LivenessConfig) -> Judgement {
        if let Some(cue) = self.attack {
            let vetoed = self.tallies.get(&cue).map_or(1.0, |t| t.share(t.vetoes));
            return Judgement {
                verdict: Verdict::Attack,
                score: (1.0 - vetoed).clamp(0.0, 0.5),
                cue,
            };
        }
        let strongest = |count: fn(&Tally) -> u32| {
            self.tallies
                .iter()
                .filter(|(_, t)| count(t) > 0)
                .map(|(cue, t)| (*cue, t.share(count(t))))
                .fold(
                    (Cue::None, 0.0),
                    |best, next| {
                        if next.1 > best.1 { next } else { best }
                    },
                )
        };
        // The most frequent veto drags the score down; a confirming cue lifts it.
        let (worst_cue, worst) = strongest(|t| t.vetoes);
        let (confirm_cue, confirmed) = strongest(|t| t.confirms);
        let score = (0.75 * (1.0 - worst) + 0.25 * confirmed).clamp(0.0, 1.0);
        let pending = self.tallies.values().any(|t| t.holds(config));
        Judgement {
            verdict: if self.judged_frames >= config.min_frames && !pending {
                Verdict::Live
            } else {
                Verdict::Undecided
            },
            score,
            cue: if worst > 0.0 {
                worst_cue
            } else {
                confirm_cue.confirming()
            },
        }
    }
}

/// The raw measures behind the paper-texture, moire and glare cues (`None`: the cue cannot
/// judge this face).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measures {
    pub grain_ratio: Option<f32>,
    pub moire_peak: Option<f32>,
    pub glare_share: Option<f32>,
}

/// The cues, with the buffers they reuse from frame to frame and the optional model.
#[derive(Default)]
pub struct Cues {
    spectrum: spectrum::MoireMeter,
    model: Option<model::PadModel>,
}

impl Cues {
    /// The model-free cues, and `model`'s when one is given.
    pub fn new(model: Option<model::PadModel>) -> Self {
        Cues {
            spectrum: spectrum::MoireMeter::default(),
            model,
        }
    }

    pub fn model(&self) -> Option<&model::PadModel> {
        self.model.as_ref()
    }

    /// What the thresholded cues measure on `face`, whether they veto or not: for tuning on a
    /// real camera (fglive logs it at the trace level).
    pub fn measures(&mut self, face: &FaceView<'_>) -> Measures {
        Measures {
            grain_ratio: texture::grain_ratio(face),
            moire_peak: self.spectrum.peak(face),
            glare_share: glare::glare_share(face),
        }
    }

    /// Every enabled cue's reading of `face` (on `frame`, which the model reads in colour),
    /// appended to `out`; the motion cue reads the landmarks against `evidence`'s history.
    pub fn read(
        &mut self,
        frame: &Frame<'_>,
        face: &FaceView<'_>,
        evidence: &mut Evidence,
        config: &LivenessConfig,
        out: &mut Vec<(Cue, Reading)>,
    ) -> Result<(), InferenceError> {
        if config.screen {
            out.push((Cue::Bezel, screen::bezel(face)));
            out.push((Cue::Moire, self.spectrum.read(face)));
            out.push((Cue::Glare, glare::glare(face)));
        }
        if config.paper_margin {
            out.push((Cue::PaperMargin, sheet::paper_margin(face)));
        }
        if config.print {
            out.push((Cue::PaperTexture, texture::paper_texture(face)));
        }
        if config.motion {
            let reading = evidence.motion.read(&face.landmarks);
            let cue = match reading {
                Reading::Confirm(_) => Cue::DepthMotion,
                _ => Cue::PlanarMotion,
            };
            out.push((cue, reading));
        }
        if let Some(model) = &mut self.model {
            let live = model.live_probability(frame, &face.bbox)?;
            out.push((Cue::Model, model::PadModel::reading(live)));
        }
        Ok(())
    }
}

/// Every track's evidence, forgetting tracks no longer seen.
#[derive(Default)]
pub struct LivenessTracks {
    tracks: HashMap<u64, (u64, Evidence)>,
}

impl LivenessTracks {
    pub fn new() -> Self {
        Self::default()
    }

    /// The evidence of `track`, seen on `frame` (a frame counter).
    pub fn evidence(&mut self, track: u64, frame: u64) -> &mut Evidence {
        let entry = self.tracks.entry(track).or_default();
        entry.0 = frame;
        &mut entry.1
    }

    /// Drops the tracks not seen since `oldest`.
    pub fn forget_before(&mut self, oldest: u64) {
        self.tracks.retain(|_, (seen, _)| *seen >= oldest);
    }

    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(evidence: &mut Evidence, readings: &[(Cue, Reading)], config: &LivenessConfig) {
        evidence.add(readings, config);
    }

    #[test]
    fn a_track_is_undecided_until_judged_on_min_frames_then_live() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        // Frames no cue could judge (the face too small) do not count.
        for _ in 0..20 {
            run(&mut evidence, &[(Cue::Bezel, Reading::Abstain)], &config);
            assert_eq!(evidence.judgement(&config).verdict, Verdict::Undecided);
        }
        for _ in 0..config.min_frames - 1 {
            run(
                &mut evidence,
                &[(Cue::Bezel, Reading::Clear), (Cue::Moire, Reading::Abstain)],
                &config,
            );
            assert_eq!(evidence.judgement(&config).verdict, Verdict::Undecided);
        }
        run(&mut evidence, &[(Cue::Bezel, Reading::Clear)], &config);
        let judgement = evidence.judgement(&config);
        assert_eq!(judgement.verdict, Verdict::Live);
        assert_eq!(judgement.cue, Cue::None);
        assert_eq!(evidence.judged_frames(), config.min_frames);
    }

    #[test]
    fn with_every_cue_off_frames_count_as_judged() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        for _ in 0..config.min_frames {
            run(&mut evidence, &[], &config);
        }
        assert_eq!(evidence.judgement(&config).verdict, Verdict::Live);
    }

    #[test]
    fn frames_a_cue_could_not_judge_do_not_dilute_its_vetoes() {
        // A phone walked up from afar: the moire window does not fit the face for many frames,
        // while the glare cue already judges; then the screen's grid shows.
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        for _ in 0..40 {
            run(
                &mut evidence,
                &[(Cue::Glare, Reading::Clear), (Cue::Moire, Reading::Abstain)],
                &config,
            );
        }
        assert_eq!(evidence.judgement(&config).verdict, Verdict::Live);
        let near = [
            (Cue::Glare, Reading::Clear),
            (Cue::Moire, Reading::Veto(20.0)),
        ];
        run(&mut evidence, &near, &config);
        // One veto is not yet an attack, but no longer live either: the gate waits.
        assert_eq!(evidence.judgement(&config).verdict, Verdict::Undecided);
        for _ in 1..config.veto_frames {
            run(&mut evidence, &near, &config);
        }
        let judgement = evidence.judgement(&config);
        assert_eq!(
            (judgement.verdict, judgement.cue),
            (Verdict::Attack, Cue::Moire)
        );
    }

    #[test]
    fn a_veto_not_repeated_is_cleared_by_the_frames_after_it() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        run(&mut evidence, &[(Cue::Glare, Reading::Veto(1.2))], &config);
        let mut frames_to_live = None;
        for frame in 1..20 {
            run(&mut evidence, &[(Cue::Glare, Reading::Clear)], &config);
            if evidence.judgement(&config).verdict == Verdict::Live {
                frames_to_live = Some(frame);
                break;
            }
        }
        // Live once min_frames are judged, the veto then a fifth of them.
        assert_eq!(frames_to_live, Some(config.min_frames - 1));
    }

    #[test]
    fn the_motion_cue_is_one_cue_whether_it_saw_a_plane_or_depth() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        for frame in 0..12 {
            let reading = if frame % 3 == 0 {
                (Cue::PlanarMotion, Reading::Veto(1.1))
            } else {
                (Cue::DepthMotion, Reading::Confirm(1.5))
            };
            run(&mut evidence, &[reading], &config);
        }
        // Four planar readings among twelve judged: jitter on a turning head, not a photo.
        let judgement = evidence.judgement(&config);
        assert_eq!(judgement.verdict, Verdict::Live, "{judgement:?}");
        assert_eq!(judgement.cue, Cue::PlanarMotion);

        let mut turning = Evidence::default();
        for _ in 0..config.min_frames {
            run(
                &mut turning,
                &[(Cue::DepthMotion, Reading::Confirm(1.5))],
                &config,
            );
        }
        let judgement = turning.judgement(&config);
        assert_eq!(
            (judgement.verdict, judgement.cue),
            (Verdict::Live, Cue::DepthMotion)
        );
        assert!(judgement.score > 0.99, "{judgement:?}");
    }

    #[test]
    fn two_vetoes_may_be_flukes_three_decide_and_the_attack_stays() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        for _ in 1..config.veto_frames {
            run(&mut evidence, &[(Cue::Moire, Reading::Veto(2.0))], &config);
            assert_eq!(evidence.judgement(&config).verdict, Verdict::Undecided);
        }
        run(&mut evidence, &[(Cue::Moire, Reading::Veto(2.0))], &config);
        let judgement = evidence.judgement(&config);
        assert_eq!(
            (judgement.verdict, judgement.cue),
            (Verdict::Attack, Cue::Moire)
        );
        // Frames without the phone do not take it back.
        for _ in 0..20 {
            run(
                &mut evidence,
                &[(Cue::Moire, Reading::Confirm(1.0))],
                &config,
            );
        }
        assert_eq!(evidence.judgement(&config).verdict, Verdict::Attack);
    }

    #[test]
    fn a_track_is_not_live_on_a_frame_that_was_vetoed() {
        // A far print: its margin seen on the first frame, lost on three, seen again on the
        // fifth. Two vetoes of five are below the share that decides, but the fifth frame
        // waits for the sixth, which repeats the veto.
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        let margin = [(Cue::PaperMargin, Reading::Veto(1.0))];
        let none = [(Cue::PaperMargin, Reading::Clear)];
        for frame in [&margin, &none, &none, &none, &margin] {
            run(&mut evidence, frame, &config);
            assert_eq!(evidence.judgement(&config).verdict, Verdict::Undecided);
        }
        run(&mut evidence, &margin, &config);
        let judgement = evidence.judgement(&config);
        assert_eq!(
            (judgement.verdict, judgement.cue),
            (Verdict::Attack, Cue::PaperMargin)
        );

        // Had the sixth frame been clear, the veto was a fluke: two of six.
        let mut fluke = Evidence::default();
        for frame in [&margin, &none, &none, &none, &margin, &none] {
            run(&mut fluke, frame, &config);
        }
        assert_eq!(fluke.judgement(&config).verdict, Verdict::Live);
    }

    #[test]
    fn rare_vetoes_among_many_judged_frames_do_not_decide() {
        let config = LivenessConfig::default();
        let mut evidence = Evidence::default();
        for frame in 0..40 {
            let reading = if frame % 10 == 5 {
                Reading::Veto(1.1)
            } else {
                Reading::Clear
            };
            run(&mut evidence, &[(Cue::Glare, reading)], &config);
        }
        let judgement = evidence.judgement(&config);
        assert_eq!(judgement.verdict, Verdict::Live);
        assert_eq!(judgement.cue, Cue::Glare);
        assert!(judgement.score < 0.75, "{judgement:?}");
    }

    #[test]
    fn names_are_the_documented_ones() {
        assert_eq!(Verdict::Undecided.to_string(), "undecided");
        assert_eq!(Cue::PaperTexture.to_string(), "paper-texture");
        assert_eq!(Cue::PaperMargin.to_string(), "paper-margin");
        assert_eq!("planar-motion".parse::<Cue>().unwrap(), Cue::PlanarMotion);
    }
}
