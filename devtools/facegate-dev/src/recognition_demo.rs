// SPDX-License-Identifier: MIT OR Apache-2.0
//! The recognition demo: enrol some development people, then identify every face in the
//! development photos and in a generated video of people walking up to the camera.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use facegate_meta::FaceRecord;

use facegatectl::enroll::{self, Request};
use facegatectl::identify::{self, Options};
use facegatectl::pipeline::Models;

use crate::gate_rig::enrolled;

/// Frame rate of the generated videos, for turning frame numbers into seconds.
const VIDEO_FPS: f64 = 30.0;

pub struct DemoPaths {
    pub photos: PathBuf,
    pub videos: PathBuf,
    pub gallery: PathBuf,
}

/// One track's story in a video.
#[derive(Debug, Default)]
pub struct TrackSummary {
    pub first_frame: usize,
    pub last_frame: usize,
    pub frames: usize,
    /// Matched frames per (id, label), and the best similarity seen.
    pub matches: BTreeMap<(String, String), (usize, f64)>,
}

impl TrackSummary {
    /// The identity matched on most frames, if any.
    pub fn identity(&self) -> Option<(&str, &str, f64)> {
        self.matches
            .iter()
            .max_by_key(|(_, (frames, _))| *frames)
            .map(|((id, label), (_, best))| (id.as_str(), label.as_str(), *best))
    }
}

/// Groups a video's face records by track id.
pub fn summarise_tracks(frames: &[Vec<FaceRecord>]) -> BTreeMap<u64, TrackSummary> {
    let mut tracks: BTreeMap<u64, TrackSummary> = BTreeMap::new();
    for (index, faces) in frames.iter().enumerate() {
        for face in faces {
            let Some(track) = face.track else { continue };
            let summary = tracks.entry(track.id).or_insert_with(|| TrackSummary {
                first_frame: index,
                ..Default::default()
            });
            summary.last_frame = index;
            summary.frames += 1;
            if let Some(m) = &face.matched {
                let entry = summary
                    .matches
                    .entry((m.id.clone(), m.label.clone()))
                    .or_insert((0, f64::MIN));
                entry.0 += 1;
                entry.1 = entry.1.max(m.similarity);
            }
        }
    }
    tracks
}

pub fn run(paths: &DemoPaths, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    let requests: Vec<Request> = enrolled()
        .into_iter()
        .map(|(id, label, photo)| {
            Request::one_photo(id, Some((*label).into()), paths.photos.join(photo))
        })
        .collect();
    writeln!(
        out,
        "== enrolling {} people into {}",
        requests.len(),
        paths.gallery.display()
    )?;
    let report = enroll::enroll_all(&paths.gallery, requests, true, models, |outcome| {
        let _ = writeln!(out, "   {outcome}");
    })?;
    if report.refused() > 0 {
        bail!("{} development photos were refused", report.refused());
    }

    let options = Options {
        gallery: Some(paths.gallery.clone()),
        models: models.clone(),
        max_false_grant_rate: None,
    };
    writeln!(out, "== identifying the development photos")?;
    let mut photos: Vec<PathBuf> = enroll::requests_from_dir(&paths.photos)
        .with_context(|| format!("reading {}", paths.photos.display()))?
        .into_iter()
        .flat_map(|r| r.photos)
        .collect();
    photos.sort();
    let (mut recognised, mut strangers) = (0, 0);
    for photo in &photos {
        let frames = identify::records(photo, &options)?;
        let name = photo
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for face in frames.first().into_iter().flatten() {
            match &face.matched {
                Some(m) => {
                    recognised += 1;
                    writeln!(
                        out,
                        "   {name:<16} {} ({}), similarity {:.2}",
                        m.label, m.id, m.similarity
                    )?;
                }
                None => {
                    strangers += 1;
                    writeln!(out, "   {name:<16} not enrolled")?;
                }
            }
        }
    }

    let video = paths.videos.join("demo_walkups.avi");
    writeln!(out, "== identifying {}", video.display())?;
    let frames = identify::records(&video, &options)?;
    let tracks = summarise_tracks(&frames);
    for (id, track) in &tracks {
        let span = format!(
            "{:5.2} s to {:5.2} s",
            track.first_frame as f64 / VIDEO_FPS,
            track.last_frame as f64 / VIDEO_FPS
        );
        match track.identity() {
            Some((person, label, best)) => writeln!(
                out,
                "   track {id:<3} {span}: {label} ({person}), best similarity {best:.2}"
            )?,
            None => writeln!(
                out,
                "   track {id:<3} {span}: not enrolled ({} frames)",
                track.frames
            )?,
        }
    }
    writeln!(
        out,
        "== done: {} enrolled; photos: {recognised} faces recognised, {strangers} not enrolled; video: {} frames, {} tracks, {} recognised",
        report.gallery_size,
        frames.len(),
        tracks.len(),
        tracks.values().filter(|t| t.identity().is_some()).count()
    )?;
    Ok(())
}
