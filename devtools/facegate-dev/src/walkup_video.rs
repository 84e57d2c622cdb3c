// SPDX-License-Identifier: MIT OR Apache-2.0
//! Walk-up videos from any photos whose face box is known: what scripts/make-videos.sh does for
//! the six pinned dev photos (whose boxes it lists), for photos found at run time, such as the
//! face corpus. Each walk-up is the photo on the dark grey scene, its face approaching in two
//! steps and then held, after an empty gap longer than fgtrack's `max-age`, so that every
//! walk-up is a track of its own. Output: MJPEG in AVI, 640x480 at 30 fps, and the timeline
//! beside it (`NAME.timeline.json`, read by [`Timeline::for_video`]).
//!
//! [`Motion::Approach`] moves the face as a walker does instead: growing frame by frame, swaying
//! and bobbing with the steps, now and then blurred by the motion and lit a little differently,
//! so that no two frames are alike (what fusing a track's frames is measured on).
//! [`Motion::Presented`] shows the photo on a phone or as a print held up by a hand instead
//! ([`crate::attack_video`]): what presentation-attack detection is measured on.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gst::prelude::*;
use image::{Rgb, RgbImage, imageops};

use crate::attack_video::{self, ATTACK_FRAMES, Presentation};
use crate::gate_rig::{Timeline, Walkup};

pub(crate) const WIDTH: u32 = 640;
pub(crate) const HEIGHT: u32 = 480;
pub(crate) const FPS: u64 = 30;
/// Frames of empty scene before each walk-up and once at the end: more than fgtrack's default
/// `max-age` (15), so the next face is never taken for the last one.
const GAP_FRAMES: u64 = 18;
/// (face-box height in pixels, frames) of each step; the last is the face held at the gate.
const STEPS: [(u32, u64); 2] = [(180, 6), (240, 18)];
/// The face centre's height in the frame; its sideways position alternates per walk-up.
pub(crate) const FACE_CENTRE_Y: f64 = 230.0;
pub(crate) const FACE_CENTRE_X: [f64; 2] = [300.0, 340.0];
pub(crate) const BACKGROUND: Rgb<u8> = Rgb([0x40, 0x40, 0x40]);
/// [`Motion::Approach`]: the face-box height at the first and the last frame, over this many.
pub(crate) const APPROACH_HEIGHTS: (f64, f64) = (120.0, 260.0);
pub(crate) const APPROACH_FRAMES: u64 = 36;
/// Sideways sway and vertical bob of the steps (pixels), and steps per walk-up.
const APPROACH_SWAY: f64 = 10.0;
const APPROACH_BOB: f64 = 6.0;
const APPROACH_STEPS: f64 = 4.0;
/// Every this many frames one is blurred by the motion (Gaussian sigma in pixels).
const APPROACH_BLUR_EVERY: u64 = 4;
const APPROACH_BLUR_SIGMA: f32 = 1.6;
/// The exposure wanders by up to this much (added to each channel).
const APPROACH_EXPOSURE: f64 = 12.0;

/// How the face moves in a walk-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Motion {
    /// Two sizes, each held: every frame of a step is the same picture.
    #[default]
    Steps,
    /// A continuous approach with sway, bob, motion blur and exposure changes.
    Approach,
    /// Not the person but their photo, held up to the camera on a phone or as a print
    /// ([`attack_video`]): a presentation attack.
    Presented(Presentation),
}

/// One walk-up: a photo and its face's box `(x, y, width, height)` in the photo's pixels.
#[derive(Clone, Debug)]
pub struct WalkupPhoto {
    pub photo: PathBuf,
    pub face: (u32, u32, u32, u32),
    /// What the timeline calls it.
    pub name: String,
}

/// The scene with `photo` scaled so its face is `face_height` high and centred at `centre`.
fn frame_with_face(
    photo: &RgbImage,
    face: (u32, u32, u32, u32),
    face_height: u32,
    centre: (f64, f64),
) -> RgbImage {
    let (x, y, w, h) = face;
    let scale = f64::from(face_height) / f64::from(h.max(1));
    let scaled = imageops::resize(
        photo,
        ((f64::from(photo.width()) * scale).round() as u32).max(1),
        ((f64::from(photo.height()) * scale).round() as u32).max(1),
        imageops::FilterType::Triangle,
    );
    let left = centre.0 - (f64::from(x) + f64::from(w) / 2.0) * scale;
    let top = centre.1 - (f64::from(y) + f64::from(h) / 2.0) * scale;
    let mut frame = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
    imageops::overlay(&mut frame, &scaled, left.round() as i64, top.round() as i64);
    frame
}

/// Encodes the frames it is given, in order, into an MJPEG AVI.
struct Encoder {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    frames: u64,
}

impl Encoder {
    fn new(out: &Path) -> anyhow::Result<Encoder> {
        let description = format!(
            "appsrc name=frames format=time caps=video/x-raw,format=RGB,width={WIDTH},\
             height={HEIGHT},framerate={FPS}/1,pixel-aspect-ratio=1/1 \
             ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=90 ! avimux \
             ! filesink location=\"{}\"",
            out.display()
        );
        let pipeline = gst::parse::launch(&description)
            .context("the encoding pipeline (gstreamer1.0-plugins-good: jpegenc, avimux)")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("the encoding description is not a pipeline"))?;
        let source = pipeline
            .by_name("frames")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .context("the encoding pipeline has no appsrc")?;
        // Frames are pushed as fast as they are made; the AVI carries their timestamps.
        source.set_block(true);
        source.set_max_bytes(u64::from(WIDTH * HEIGHT * 3) * 8);
        pipeline.set_state(gst::State::Playing)?;
        Ok(Encoder {
            pipeline,
            source,
            frames: 0,
        })
    }

    fn push(&mut self, frame: &RgbImage, count: u64) -> anyhow::Result<()> {
        for _ in 0..count {
            let mut buffer = gst::Buffer::from_slice(frame.as_raw().clone());
            {
                let buffer = buffer.get_mut().context("a fresh buffer is writable")?;
                buffer.set_pts(gst::ClockTime::from_nseconds(
                    self.frames * 1_000_000_000 / FPS,
                ));
                buffer.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / FPS));
            }
            self.source
                .push_buffer(buffer)
                .map_err(|flow| anyhow::anyhow!("encoding frame {}: {flow:?}", self.frames))?;
            self.frames += 1;
        }
        Ok(())
    }

    /// Ends the stream and waits for the file to be complete.
    fn finish(self) -> anyhow::Result<u64> {
        self.source
            .end_of_stream()
            .map_err(|flow| anyhow::anyhow!("ending the video: {flow:?}"))?;
        let bus = self
            .pipeline
            .bus()
            .context("the encoding pipeline has no bus")?;
        let outcome = match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(message) => match message.view() {
                gst::MessageView::Error(err) => Err(anyhow::anyhow!(
                    "encoding failed: {} ({:?})",
                    err.error(),
                    err.debug()
                )),
                _ => Ok(self.frames),
            },
            None => Err(anyhow::anyhow!("encoding did not finish within 2 minutes")),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        outcome
    }
}

/// Writes `out` (an `.avi`) with one walk-up per entry of `walkups`, in order, and its timeline
/// beside it; returns the timeline. GStreamer must be initialised.
pub fn write(out: &Path, walkups: &[WalkupPhoto]) -> anyhow::Result<Timeline> {
    write_with(out, walkups, Motion::Steps)
}

/// Frame `index` of [`Motion::Approach`]'s walk-up `walkup`.
fn approach_frame(
    photo: &RgbImage,
    walkup: &WalkupPhoto,
    walkup_index: usize,
    index: u64,
) -> RgbImage {
    let t = index as f64 / (APPROACH_FRAMES - 1) as f64;
    let (near, far) = (APPROACH_HEIGHTS.1, APPROACH_HEIGHTS.0);
    let height = far + (near - far) * t;
    let phase = std::f64::consts::TAU * APPROACH_STEPS * t;
    let centre = (
        FACE_CENTRE_X[walkup_index % 2] + APPROACH_SWAY * (phase / 2.0).sin(),
        FACE_CENTRE_Y + APPROACH_BOB * phase.sin(),
    );
    let mut frame = frame_with_face(photo, walkup.face, height.round() as u32, centre);
    if index % APPROACH_BLUR_EVERY == APPROACH_BLUR_EVERY - 1 {
        frame = imageops::blur(&frame, APPROACH_BLUR_SIGMA);
    }
    let exposure = (APPROACH_EXPOSURE * (phase * 0.37 + walkup_index as f64).sin()).round();
    imageops::colorops::brighten(&frame, exposure as i32)
}

/// [`write`] with the face moving as `motion` says.
pub fn write_with(out: &Path, walkups: &[WalkupPhoto], motion: Motion) -> anyhow::Result<Timeline> {
    if walkups.is_empty() {
        bail!(
            "{}: a walk-up video needs at least one photo",
            out.display()
        );
    }
    let empty = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
    let mut encoder = Encoder::new(out)?;
    let mut timeline = Timeline {
        fps: FPS,
        frames: 0,
        walkups: Vec::with_capacity(walkups.len()),
    };
    for (index, walkup) in walkups.iter().enumerate() {
        let photo = image::open(&walkup.photo)
            .with_context(|| format!("{}: cannot decode the photo", walkup.photo.display()))?
            .to_rgb8();
        encoder.push(&empty, GAP_FRAMES)?;
        let first_frame = encoder.frames;
        match motion {
            Motion::Steps => {
                let centre = (FACE_CENTRE_X[index % 2], FACE_CENTRE_Y);
                for (face_height, frames) in STEPS {
                    let frame = frame_with_face(&photo, walkup.face, face_height, centre);
                    encoder.push(&frame, frames)?;
                }
            }
            Motion::Approach => {
                for frame in 0..APPROACH_FRAMES {
                    encoder.push(&approach_frame(&photo, walkup, index, frame), 1)?;
                }
            }
            Motion::Presented(presentation) => {
                for frame in 0..ATTACK_FRAMES {
                    let picture = attack_video::attack_frame(
                        &photo,
                        walkup.face,
                        presentation,
                        frame,
                        index as u64,
                    );
                    encoder.push(&picture, 1)?;
                }
            }
        }
        timeline.walkups.push(Walkup {
            photo: walkup.name.clone(),
            first_frame,
            last_frame: encoder.frames - 1,
        });
    }
    encoder.push(&empty, GAP_FRAMES)?;
    timeline.frames = encoder.finish()?;
    let file = out.with_extension("timeline.json");
    std::fs::write(&file, serde_json::to_string_pretty(&timeline)?)
        .with_context(|| format!("{}: cannot write the timeline", file.display()))?;
    Ok(timeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_lands_at_the_centre_and_height_asked_for() {
        // A 100x100 "photo": grey, with a white 20x40 face box at (30, 10).
        let mut photo = RgbImage::from_pixel(100, 100, Rgb([128, 128, 128]));
        for y in 10..50 {
            for x in 30..50 {
                photo.put_pixel(x, y, Rgb([255, 255, 255]));
            }
        }
        let frame = frame_with_face(&photo, (30, 10, 20, 40), 200, (320.0, 240.0));
        // Scaled 5x: the face is 100x200 centred at (320, 240).
        let white = |x: u32, y: u32| frame.get_pixel(x, y).0 == [255, 255, 255];
        assert!(white(320, 240) && white(275, 145) && white(365, 335));
        assert!(!white(265, 240) && !white(375, 240) && !white(320, 130));
        // Outside the photo (scaled to 500x500, placed at (120, 90)) is the scene.
        assert_eq!(frame.get_pixel(100, 240), &BACKGROUND);
    }
}
