// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl evaluate`: the embedder's open-set accuracy on a corpus of real faces.
//!
//! Every photo goes through the gate's enrolment path ([`enroll::embed_photo`]: fgdetect !
//! fgembed, one face of enrolment size, or the photo is listed and skipped); the embeddings go to
//! [`facegate_vision::open_set::evaluate`], which scores every same-person (genuine) and
//! different-person (impostor) pair.  The report, as text or JSON, can be drawn as a DET plot and
//! written as the embedder's [`Calibration`].

pub mod corpus;
pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use facegate_vision::calibration::{
    CalibratedModel, Calibration, CalibrationError, CorpusProvenance,
};
use facegate_vision::model_card::ModelCard;
use facegate_vision::open_set::{
    self, BootstrapConfig, EvaluationConfig, EvaluationInput, GalleryLimit, IdentityEmbeddings,
    Method, OpenSetError, PairScores, Report, ScoreSummary, det_curve,
};
use serde::Serialize;

use crate::enroll::{self, Refusal};
use crate::pipeline::Models;

/// The gallery sizes the DET plot marks.
const PLOT_MARKED_SIZES: [u64; 3] = [100, 10_000, 700_000];
/// The target FPIR the DET plot's marks are for: the gate's default false-grant budget.
const PLOT_TARGET_FPIR: f64 = 1e-4;

/// `facegatectl evaluate`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Folder with one folder per person (the folder name is the identity), photos inside
    #[arg(long, value_name = "DIR")]
    pub corpus: PathBuf,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Draw the DET curve (FNMR against FMR, log axes) into this PNG file
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Write the embedder's calibration (thresholds per gallery size and target) to this TOML file
    #[arg(long, value_name = "FILE")]
    pub write_calibration: Option<PathBuf>,
    /// What the corpus is, as the calibration records it (default: the folder's name)
    #[arg(long, value_name = "TEXT", requires = "write_calibration")]
    pub corpus_name: Option<String>,
    /// Bootstrap replicates for the thresholds' upper confidence bounds (0: no bounds)
    #[arg(long, value_name = "N", default_value_t = open_set::bootstrap::DEFAULT_RESAMPLES)]
    pub resamples: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("{0}")]
    Corpus(#[from] corpus::CorpusError),
    /// The models could not run: nothing can be evaluated.
    #[error("{0}")]
    Setup(String),
    #[error("corpus {corpus}: {source}")]
    Evaluation {
        corpus: PathBuf,
        source: OpenSetError,
    },
    #[error("{0}")]
    Calibration(#[from] CalibrationError),
    #[error("{0}")]
    Plot(#[from] plot::PlotError),
    #[error("corpus {path}: {source}")]
    Digest {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A photo that was not used, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkippedPhoto {
    /// `identity/file`.
    pub photo: String,
    pub reason: String,
}

/// The embeddings of a corpus.
#[derive(Debug)]
pub struct Embedded {
    pub input: EvaluationInput,
    pub skipped: Vec<SkippedPhoto>,
    /// The photos used, with their identity.
    pub used: Vec<(String, PathBuf)>,
}

/// Embeds every photo of the corpus at `dir` as enrolment would; `progress` hears of each.
pub fn embed_corpus(
    dir: &Path,
    models: &Models,
    mut progress: impl FnMut(&str, Result<(), &Refusal>),
) -> Result<Embedded, EvaluateError> {
    let mut model = None;
    let mut identities = Vec::new();
    let mut skipped = Vec::new();
    let mut used = Vec::new();
    for identity in corpus::read(dir)? {
        let mut embeddings = Vec::new();
        for photo in &identity.photos {
            let name = corpus::display_name(&identity.name, photo);
            match enroll::embed_photo(photo, models) {
                Ok(face) => {
                    progress(&name, Ok(()));
                    model.get_or_insert(face.model);
                    embeddings.push(face.embedding);
                    used.push((identity.name.clone(), photo.clone()));
                }
                Err(Refusal::Setup(message)) => return Err(EvaluateError::Setup(message)),
                Err(refusal) => {
                    progress(&name, Err(&refusal));
                    skipped.push(SkippedPhoto {
                        photo: name,
                        reason: refusal.to_string(),
                    });
                }
            }
        }
        identities.push(IdentityEmbeddings {
            identity: identity.name,
            embeddings,
        });
    }
    Ok(Embedded {
        input: EvaluationInput {
            model: model.unwrap_or_default(),
            identities,
            skipped: skipped.len(),
        },
        skipped,
        used,
    })
}

/// What `evaluate --json` prints: the report, the model's licence and the photos it left out.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    #[serde(flatten)]
    pub report: Report,
    pub licence: ModelLicence,
    pub skipped_photos: Vec<SkippedPhoto>,
}

/// The terms of the evaluated model, from its card: a report must not let a non-commercial
/// model pass for a gate's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelLicence {
    pub terms: String,
    pub commercial_use: bool,
}

/// The whole command: embed, evaluate, print, and draw or write what was asked for.
pub fn command(args: &EvaluateArgs, models: &Models) -> Result<(), EvaluateError> {
    let card = ModelCard::load(&models.embedder_path())
        .map_err(|e| EvaluateError::Setup(e.to_string()))?;
    let licence = ModelLicence {
        terms: card.model.licence,
        commercial_use: card.model.commercial_use,
    };
    let embedded = embed_corpus(&args.corpus, models, |photo, result| {
        if let Err(refusal) = result {
            eprintln!("skipped {photo}: {refusal}");
        } else {
            tracing::info!(photo, "embedded");
        }
    })?;
    let bootstrap = BootstrapConfig {
        resamples: args.resamples,
        ..BootstrapConfig::default()
    };
    let evaluation_error = |source| EvaluateError::Evaluation {
        corpus: args.corpus.clone(),
        source,
    };
    let config = EvaluationConfig {
        bootstrap: bootstrap.clone(),
        ..EvaluationConfig::default()
    };
    let report = open_set::evaluate(&embedded.input, &config).map_err(evaluation_error)?;
    if let Some(path) = &args.plot {
        let scores =
            PairScores::from_identities(&embedded.input.identities).map_err(evaluation_error)?;
        let impostor = scores.impostor();
        let last_counted = impostor
            .len()
            .checked_sub(open_set::RULE_OF_THREE as usize)
            .map_or(1.0, |i| f64::from(impostor[i]));
        plot::DetPlot {
            model: &report.model,
            measured: &det_curve(scores.genuine(), impostor),
            genuine: scores.genuine(),
            tail: report.tail_model.as_ref(),
            last_counted,
            marked_sizes: &PLOT_MARKED_SIZES,
            target_fpir: PLOT_TARGET_FPIR,
        }
        .draw(path)?;
    }
    if let Some(path) = &args.write_calibration {
        let calibration = calibrate(args, models, &embedded, &report, bootstrap)?;
        calibration.save(path)?;
        eprintln!("calibration written to {}", path.display());
    }
    let evaluation = Evaluation {
        report,
        licence,
        skipped_photos: embedded.skipped,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&evaluation).expect("a report serialises")
        );
    } else {
        print!("{}", format_evaluation(&evaluation));
    }
    Ok(())
}

fn calibrate(
    args: &EvaluateArgs,
    models: &Models,
    embedded: &Embedded,
    report: &Report,
    bootstrap: BootstrapConfig,
) -> Result<Calibration, EvaluateError> {
    let model = CalibratedModel::of_file(&models.embedder_path(), &report.model)?;
    let digest = corpus::digest(&embedded.used).map_err(|source| EvaluateError::Digest {
        path: args.corpus.clone(),
        source,
    })?;
    let name = args.corpus_name.clone().unwrap_or_else(|| {
        args.corpus
            .file_name()
            .map_or_else(|| "corpus".into(), |n| n.to_string_lossy().into_owned())
    });
    let provenance = CorpusProvenance {
        name,
        digest,
        identities: report.identities,
        images: report.images,
        skipped: report.skipped,
        genuine_pairs: report.genuine.pairs,
        impostor_pairs: report.impostor.pairs,
    };
    Calibration::measure(&embedded.input, bootstrap, model, provenance).map_err(Into::into)
}

/// The report as text, for an operator.
pub fn format_evaluation(evaluation: &Evaluation) -> String {
    let report = &evaluation.report;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model {}: {} identities, {} images, {} skipped",
        report.model, report.identities, report.images, report.skipped
    );
    let licence = &evaluation.licence;
    let use_ = if licence.commercial_use {
        "commercial use allowed"
    } else {
        "NOT for commercial use: evaluation only, never on a gate that charges fares"
    };
    let _ = writeln!(out, "licence: {} ({use_})", licence.terms);
    for skipped in &evaluation.skipped_photos {
        let _ = writeln!(out, "  skipped {}: {}", skipped.photo, skipped.reason);
    }
    let _ = writeln!(out);
    summary(&mut out, "genuine pairs ", &report.genuine);
    summary(&mut out, "impostor pairs", &report.impostor);
    let _ = writeln!(out, "\nthreshold      FMR     FNMR");
    for row in &report.rates {
        let _ = writeln!(
            out,
            "     {:.2}  {:>8}  {:>7.4}",
            row.threshold,
            rate(row.fmr),
            row.fnmr
        );
    }
    match &report.tail_model {
        Some(tail) => {
            let endpoint = tail
                .endpoint
                .map_or_else(|| "none".to_owned(), |e| format!("{e:.3}"));
            let held = match tail.fitted_shape {
                Some(fitted) if fitted < tail.shape => {
                    format!(" (held at 0: maximum likelihood gives {fitted:.4}, a tail that ends)")
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "\nimpostor tail model: {} over u = {:.4} ({} highest scores, {:.1} %), shape {:.4}{held}, \
                 scale {:.4}, endpoint {endpoint}.\nAssumed: the top scores are in the \
                 generalized-Pareto limit, with a tail that does not end, and the pairs \
                 exchangeable; bounds: {} bootstrap replicates over identities, {:.0} % upper.",
                tail.model,
                tail.u,
                tail.exceedances,
                100.0 * tail.exceedance_rate,
                tail.shape,
                tail.scale,
                report.confidence.resamples,
                100.0 * report.confidence.level
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nimpostor tail model: none (too few impostor pairs); thresholds beyond the pairs are unknown"
            );
        }
    }
    let _ = writeln!(
        out,
        "\ngallery    target FPIR  threshold   FNMR  method      upper bound  FNMR there"
    );
    for p in &report.operating_points {
        let method = match p.method {
            Method::Empirical => "empirical",
            Method::TailModel => "tail-model",
        };
        let _ = writeln!(
            out,
            "{:>9}  {:>11}  {:>9}  {:>5}  {:<10}  {:>11}  {:>10}",
            p.gallery_size,
            rate(p.target_fpir),
            threshold(p.threshold),
            share(p.fnmr),
            method,
            threshold(p.threshold_upper),
            share(p.fnmr_at_upper)
        );
    }
    let _ = writeln!(out);
    for safe in &report.safe_gallery_sizes {
        let limit = match safe.limit {
            GalleryLimit::Unbounded => "any size".to_owned(),
            GalleryLimit::AtMost(n) => format!("at most {n} people"),
        };
        let _ = writeln!(
            out,
            "safe gallery at FPIR {} with FNMR <= {:.0} %: {limit}",
            rate(safe.target_fpir),
            100.0 * safe.max_fnmr
        );
    }
    templates(&mut out, &report.templates);
    out
}

/// Enrolment templates of k photos against one: the genuine gain and what it costs in FMR.
fn templates(out: &mut String, gains: &[open_set::TemplateGain]) {
    let Some(first) = gains.first() else {
        let _ = writeln!(
            out,
            "\nenrolment templates: no identity has enough photos to compare them"
        );
        return;
    };
    let _ = writeln!(
        out,
        "\nenrolment templates ({} identities with more than {} photos; a photo against the \
         mean of k others)",
        first.identities,
        gains.iter().map(|g| g.photos).max().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "  k  genuine mean  per identity  impostor max  FNMR@0.40  FNMR@0.45  FMR@0.40  FMR@0.45"
    );
    for gain in gains {
        let at = |t: f64| gain.rates.iter().find(|r| (r.threshold - t).abs() < 1e-9);
        let _ = writeln!(
            out,
            "{:>3}  {:>12.4}  {:>12.4}  {:>12.4}  {:>9}  {:>9}  {:>8}  {:>8}",
            gain.photos,
            gain.genuine.mean,
            gain.mean_per_identity,
            gain.impostor.max,
            share(at(0.40).map(|r| r.fnmr)),
            share(at(0.45).map(|r| r.fnmr)),
            at(0.40).map_or_else(|| "-".into(), |r| rate(r.fmr)),
            at(0.45).map_or_else(|| "-".into(), |r| rate(r.fmr)),
        );
    }
}

fn summary(out: &mut String, name: &str, s: &ScoreSummary) {
    let q = |p: f64| {
        s.quantiles
            .iter()
            .find(|q| q.p == p)
            .map_or(f64::NAN, |q| q.value)
    };
    let _ = writeln!(
        out,
        "{name} {:>7}  mean {:.4}  sd {:.4}  min {:.4}  p5 {:.4}  p50 {:.4}  p95 {:.4}  p99 {:.4}  max {:.4}",
        s.pairs,
        s.mean,
        s.sd,
        s.min,
        q(0.05),
        q(0.5),
        q(0.95),
        q(0.99),
        s.max
    );
}

fn rate(value: f64) -> String {
    if value == 0.0 {
        "0".into()
    } else {
        format!("{value:.2e}")
    }
}

fn threshold(value: Option<f64>) -> String {
    match value {
        Some(t) if t > 1.0 => "none".into(), // no cosine meets the target
        Some(t) => format!("{t:.4}"),
        None => "-".into(),
    }
}

fn share(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |f| format!("{f:.3}"))
}
