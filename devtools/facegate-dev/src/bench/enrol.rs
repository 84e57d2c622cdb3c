// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench enrol`: central enrolment's throughput on the corpus's real photos, in one
//! run: photo by photo with the models loaded for each (what a batch did before
//! `PhotoEmbedder`), and the batch as `facegatectl enrol` runs it (models loaded once per core).
//! Results go in docs/BENCHMARKS.md ("Fleet").

use std::io::Write;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use facegate_dev_assets::AssetDir;
use facegatectl::enroll::{self, Request};
use facegatectl::pipeline::Models;
use serde_json::json;

#[derive(Args, Debug)]
pub struct EnrolArgs {
    /// Photos in the batch: the corpus's, repeated as often as needed
    #[arg(long, default_value_t = 400)]
    pub photos: usize,
    /// Photos enrolled one at a time with the models loaded for each (slow: keep it small)
    #[arg(long, default_value_t = 20)]
    pub one_by_one: usize,
}

/// Every photo of the corpus (a folder per person), sorted.
fn corpus_photos() -> anyhow::Result<Vec<std::path::PathBuf>> {
    let corpus = AssetDir::Corpus.path();
    let mut photos = Vec::new();
    for person in std::fs::read_dir(&corpus)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run `make setup`)", corpus.display()))?
    {
        let person = person?.path();
        if !person.is_dir() {
            continue;
        }
        for photo in std::fs::read_dir(&person)? {
            photos.push(photo?.path());
        }
    }
    photos.sort();
    if photos.is_empty() {
        bail!("{}: no photos (run `make setup`)", corpus.display());
    }
    Ok(photos)
}

pub fn run(args: &EnrolArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    facegatectl::init()?;
    let corpus = corpus_photos()?;
    let photos: Vec<_> = corpus.iter().cycle().take(args.photos).cloned().collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    writeln!(
        out,
        "== enrolment: {} photos of the corpus ({} distinct), {cores} cores",
        photos.len(),
        corpus.len()
    )?;

    let start = Instant::now();
    for photo in corpus.iter().cycle().take(args.one_by_one) {
        // Refusals (two faces, too small) cost the same time and are part of a real batch.
        let _ = enroll::embed_photo(photo, models);
    }
    let one_by_one = args.one_by_one as f64 / start.elapsed().as_secs_f64();
    writeln!(
        out,
        "  one by one, models loaded for each photo: {one_by_one:.1} photos/s"
    )?;

    let gallery = tempfile::tempdir()?;
    let requests: Vec<Request> = photos
        .iter()
        .enumerate()
        .map(|(i, photo)| Request::one_photo(format!("p-{i}"), None, photo.clone()))
        .collect();
    let start = Instant::now();
    let report = enroll::enroll_all(
        &gallery.path().join("gallery"),
        requests,
        false,
        models,
        |_| {},
    )?;
    let elapsed = start.elapsed();
    let batch = photos.len() as f64 / elapsed.as_secs_f64();
    writeln!(
        out,
        "  the batch (facegatectl enrol): {batch:.1} photos/s ({} enrolled, {} refused, {:.1} s, one commit)",
        report.outcomes.len() - report.refused(),
        report.refused(),
        elapsed.as_secs_f64()
    )?;
    let hours = 700_000.0 / batch / 3600.0;
    writeln!(out, "  700,000 photos at this rate: {hours:.1} h")?;
    let json = super::results_path(None, "enrol");
    super::write_json(
        &json,
        &json!({
            "cores": cores,
            "photos": photos.len(),
            "distinct_photos": corpus.len(),
            "one_by_one_per_s": one_by_one,
            "batch_per_s": batch,
            "refused": report.refused(),
            "hours_for_700k": hours,
        }),
    )?;
    writeln!(out, "\n(written to {})", json.display())?;
    Ok(())
}
