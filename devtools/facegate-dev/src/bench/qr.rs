// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench qr`: reading passengers' tokens in the video, per decoder. Token walk-ups
//! (token_scene: a passenger's photo beside a phone showing their QR code, tilted as a hand
//! holds it) are played through each reader alone:
//!
//! - `fgqr decoder=zbar`, `decoder=quircs` and `decoder=rqrr`: a frame counts as read when its buffer
//!   carries a `qr-code` region whose text is the token shown;
//! - Debian's `zbar` element (gst-plugins-bad), when installed: when it posts a `barcode`
//!   message with that text for the frame.
//!
//! The decode rate is frames read / frames showing a code; the cost per frame is the time a
//! buffer spends in the reader (pad probes on either side of it, the element runs in place).
//! Results go in docs/BENCHMARKS.md ("Passenger tokens").

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use gst::prelude::*;
use serde_json::json;

use super::{Stats, ms};
use crate::gate_rig::RigFiles;
use crate::token_scene::{self, Segment};

#[derive(Args, Debug)]
pub struct QrArgs {
    /// Tilts of the phone, degrees
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 6.0, 12.0, 20.0])]
    pub tilts: Vec<f32>,
    /// Frames per walk-up
    #[arg(long, default_value_t = 25)]
    pub frames: u32,
    /// Machine-readable results (default: docs/bench/qr.json in the repository)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The development photos whose passengers get a token.
const PASSENGERS: [&str; 5] = [
    "person_a_1.jpg",
    "person_b_1.jpg",
    "obama.jpg",
    "biden.jpg",
    "impostor_1.jpg",
];

/// One reader's results over all walk-ups of one tilt.
struct Read {
    frames_shown: u64,
    frames_read: u64,
    cost: Vec<Duration>,
}

pub fn run(args: &QrArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    facegatectl::init()?;
    let files = RigFiles::repository_defaults()?;
    let dir = tempfile::Builder::new()
        .prefix("facegate-bench-qr")
        .tempdir()?;
    let (key, _, _) = facegate_token::generate_key(dir.path(), "office")?;
    let mut tokens = Vec::new();
    for (index, photo) in PASSENGERS.iter().enumerate() {
        let png = dir.path().join(format!("token-{index}.png"));
        let issued = facegatectl::token::issue(
            &key,
            &format!("P-{index}"),
            &files.photos.join(photo),
            30,
            &png,
            &files.models(),
        )?;
        let text = std::fs::read_to_string(&issued.text)?.trim().to_owned();
        tokens.push((photo, png, text, issued));
    }
    let zbar = gst::ElementFactory::find("zbar").is_some();
    writeln!(
        out,
        "== qr: {} tokens (payload {} bytes, QR version {}), {} frames a walk-up, tilts {:?}; zbar {}",
        tokens.len(),
        tokens[0].3.payload_bytes,
        tokens[0].3.qr_version,
        args.frames,
        args.tilts,
        if zbar {
            "installed"
        } else {
            "not installed (Debian: gstreamer1.0-plugins-bad)"
        }
    )?;
    let mut readers = vec![
        "fgqr decoder=zbar",
        "fgqr decoder=quircs",
        "fgqr decoder=rqrr",
    ];
    if zbar {
        readers.push("zbar cache=false message=true");
    }
    let mut results = Vec::new();
    for &tilt in &args.tilts {
        let mut segments = Vec::new();
        let mut shown = Vec::new();
        for (index, (photo, png, text, _)) in tokens.iter().enumerate() {
            let panel = dir.path().join(format!("phone-{index}-{tilt}.png"));
            token_scene::phone_panel(png, &panel, tilt)?;
            segments.push(Segment {
                face: Some(files.photos.join(photo)),
                code: Some(panel),
                frames: args.frames,
            });
            shown.extend(std::iter::repeat_n(text.clone(), args.frames as usize));
        }
        for reader in &readers {
            let read = play(&token_scene::sources(&segments), reader, &shown)?;
            let cost = Stats::of(read.cost.clone()).context("no frames")?;
            let rate = read.frames_read as f64 / read.frames_shown as f64;
            writeln!(
                out,
                "tilt {tilt:>4.1}°  {reader:<30} read {:>3}/{:<3} frames ({:>5.1} %)  cost per frame median {:.2} ms p99 {:.2} ms",
                read.frames_read,
                read.frames_shown,
                100.0 * rate,
                ms(cost.median),
                ms(cost.p99)
            )?;
            results.push(json!({
                "tilt_degrees": tilt,
                "reader": reader,
                "frames_shown": read.frames_shown,
                "frames_read": read.frames_read,
                "decode_rate": rate,
                "cost_median_ms": ms(cost.median),
                "cost_p99_ms": ms(cost.p99),
            }));
        }
    }
    let path = super::results_path(args.json.as_deref(), "qr");
    super::write_json(
        &path,
        &json!({
            "frame": [token_scene::WIDTH, token_scene::HEIGHT],
            "payload_bytes": tokens[0].3.payload_bytes,
            "qr_version": tokens[0].3.qr_version,
            "results": results,
        }),
    )?;
    writeln!(out, "results: {}", path.display())?;
    Ok(())
}

/// Plays `sources` through `reader` as fast as it goes; `shown[i]` is the text frame `i` shows.
fn play(sources: &str, reader: &str, shown: &[String]) -> anyhow::Result<Read> {
    let description = format!("{sources} ! {reader} name=reader ! appsink name=out sync=false");
    let pipeline = gst::parse::launch(&description)
        .with_context(|| format!("the bench pipeline: {description}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let element = pipeline.by_name("reader").context("no reader")?;
    let entered: Arc<Mutex<Option<Instant>>> = Arc::default();
    let cost: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stamp = Arc::clone(&entered);
    element
        .static_pad("sink")
        .context("no sink pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *stamp.lock().unwrap() = Some(Instant::now());
            gst::PadProbeReturn::Ok
        });
    let (stamp, costs) = (Arc::clone(&entered), Arc::clone(&cost));
    element.static_pad("src").context("no src pad")?.add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            if let Some(start) = stamp.lock().unwrap().take() {
                costs.lock().unwrap().push(start.elapsed());
            }
            gst::PadProbeReturn::Ok
        },
    );
    let sink = pipeline
        .by_name("out")
        .context("no appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    pipeline.set_state(gst::State::Playing)?;
    let mut read_by_meta = 0u64;
    let mut frame = 0usize;
    while let Ok(sample) = sink.pull_sample() {
        if let (Some(buffer), Some(text)) = (sample.buffer(), shown.get(frame))
            && facegate_meta::codes(buffer)
                .flatten()
                .any(|code| &code == text)
        {
            read_by_meta += 1;
        }
        frame += 1;
    }
    // zbar reports on the bus: one `barcode` message per symbol and frame, with its timestamp.
    let bus = pipeline.bus().context("no bus")?;
    let mut read_by_message = HashSet::new();
    while let Some(message) = bus.pop() {
        match message.view() {
            gst::MessageView::Element(element) => {
                let Some(s) = element.structure().filter(|s| s.name() == "barcode") else {
                    continue;
                };
                let (Ok(symbol), Ok(timestamp)) =
                    (s.get::<&str>("symbol"), s.get::<u64>("timestamp"))
                else {
                    continue;
                };
                let index = (timestamp / (1_000_000_000 / u64::from(token_scene::FPS))) as usize;
                if shown.get(index).is_some_and(|text| text == symbol) {
                    read_by_message.insert(index);
                }
            }
            gst::MessageView::Error(e) => anyhow::bail!("{reader}: {}", e.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    let cost = std::mem::take(&mut *cost.lock().unwrap());
    Ok(Read {
        frames_shown: shown.len() as u64,
        frames_read: read_by_meta.max(read_by_message.len() as u64),
        cost,
    })
}
