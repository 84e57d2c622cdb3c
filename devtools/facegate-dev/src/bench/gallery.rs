// SPDX-License-Identifier: MIT OR Apache-2.0
//! `facegatectl bench gallery`: galleries of 10k to 1M identities, built as `facegatectl enroll`
//! builds them and searched as the gate searches them, with the real development faces planted
//! among synthetic people drawn from a model fitted to the face corpus
//! ([`super::distractors`], validated by the KS statistic against real strangers' scores). Per
//! size: the index type the gallery chose, build time, memory, single-query latency, recall@1
//! against exact search, and the false grants per stranger passage (FPIR) at the threshold the
//! gate's rule sets for that size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use facegate_vision::calibration::Calibration;
use facegate_vision::gallery::{Gallery, IndexPolicy, Match};
use facegate_vision::match_rule::{self, Judgement, MatchRule};
use serde_json::json;

use super::distractors::{DistractorModel, Validation};
use super::{Stats, measure, ms, synthetic_embedding, write_json};
use facegate_dev_assets::{AssetDir, DEV_PEOPLE};
use facegatectl::enroll::embed_photo;
use facegatectl::evaluate::embed_corpus;
use facegatectl::pipeline::Models;

#[derive(Args, Debug)]
pub struct GalleryArgs {
    /// Gallery sizes (people, the planted real ones included)
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sizes: Vec<usize>,
    /// Synthetic queries per size: planted synthetic people seen again at cosine 0.6-0.85
    #[arg(long, default_value_t = 3000)]
    pub queries: usize,
    /// Stranger passages per size: new synthetic people, enrolled nowhere, judged by the gate's rule
    #[arg(long, default_value_t = 20_000)]
    pub strangers: usize,
    /// The development photos (default: $FACEGATE_PHOTO_DIR)
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// The face corpus the synthetic people are modelled on (default: $FACEGATE_CORPUS_DIR)
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Where to build the galleries (default: a temporary directory, removed afterwards)
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Machine-readable results, for scripts/plot-benchmarks.py
    #[arg(long, value_name = "FILE", default_value = "docs/bench/gallery.json")]
    pub json: PathBuf,
    /// Internal: open the gallery in DIR and print the resident memory it added, as JSON. The
    /// benchmark runs this in a child process so that no memory freed by building is reused.
    #[arg(long, value_name = "DIR", hide = true)]
    pub measure_open: Option<PathBuf>,
}

/// Same-person cosine for SFace on real photos (0.60-0.85 on the development photos): what a
/// synthetic query is given.
const QUERY_COSINE: (f32, f32) = (0.6, 0.85);
/// Synthetic people of the validation (per half of the corpus).
const VALIDATION_PEOPLE: u64 = 2_000;
/// Where the strangers' seeds start: apart from the enrolled people's (1..=size).
const STRANGER_SEEDS: u64 = 1 << 62;

/// A query and the person it shows.
struct Query {
    person: String,
    embedding: Vec<f32>,
}

/// The real faces: enrolled embeddings and queries, by the gate's own elements.
struct RealFaces {
    model: String,
    enrolled: Vec<(String, Vec<f32>)>,
    queries: Vec<Query>,
}

fn embed_real_faces(photos: &Path, models: &Models) -> anyhow::Result<RealFaces> {
    let mut model = String::new();
    let mut enrolled = Vec::new();
    let mut queries = Vec::new();
    for person in DEV_PEOPLE {
        for (n, file) in person.photos.iter().enumerate() {
            let path = photos.join(file);
            let face = embed_photo(&path, models)
                .map_err(|refusal| anyhow::anyhow!("{}: {refusal}", path.display()))?;
            model = face.model;
            let id = format!("real-{}", person.id);
            if n == 0 {
                enrolled.push((id, face.embedding));
            } else {
                queries.push(Query {
                    person: id,
                    embedding: face.embedding,
                });
            }
        }
    }
    Ok(RealFaces {
        model,
        enrolled,
        queries,
    })
}

/// What every synthetic person's id starts with.
const SYNTHETIC_PREFIX: &str = "s-";

fn synthetic_id(n: u64) -> String {
    format!("{SYNTHETIC_PREFIX}{n:07}")
}

/// `enrolled` seen again at cosine `cosine`: the enrolled vector plus an orthogonal unit
/// direction, mixed so that the result is unit length.
fn seen_again(enrolled: &[f32], direction: &[f32], cosine: f32) -> Vec<f32> {
    let along: f32 = direction.iter().zip(enrolled).map(|(d, e)| d * e).sum();
    let mut orthogonal: Vec<f32> = direction
        .iter()
        .zip(enrolled)
        .map(|(d, e)| d - along * e)
        .collect();
    facegate_vision::embedder::normalise(&mut orthogonal);
    let sine = (1.0 - cosine * cosine).sqrt();
    enrolled
        .iter()
        .zip(&orthogonal)
        .map(|(e, o)| cosine * e + sine * o)
        .collect()
}

fn synthetic_queries(
    people: &DistractorModel,
    size: usize,
    count: usize,
    planted: usize,
) -> Vec<Query> {
    let dim = people.dim();
    // Seeded: the benchmark's queries are the same on every run.
    let mut random = fastrand::Rng::with_seed(size as u64);
    let synthetic = (size - planted) as u64;
    (0..count)
        .map(|_| {
            let n = random.u64(1..=synthetic);
            let cosine = QUERY_COSINE.0 + (QUERY_COSINE.1 - QUERY_COSINE.0) * random.f32();
            let direction = synthetic_embedding(random.u64(..) | 1 << 63, dim);
            Query {
                person: synthetic_id(n),
                embedding: seen_again(&people.person(n), &direction, cosine),
            }
        })
        .collect()
}

/// Everyone: the real faces first, then synthetic people `s-0000001`... up to `size`.
fn enroll_everyone(
    gallery: &mut Gallery,
    real: &RealFaces,
    people: &DistractorModel,
    size: usize,
) -> anyhow::Result<()> {
    for (id, embedding) in &real.enrolled {
        gallery.enroll(id, id, &real.model, embedding, false)?;
    }
    for n in 1..=(size - real.enrolled.len()) as u64 {
        let id = synthetic_id(n);
        gallery.enroll(&id, "", &real.model, &people.person(n), false)?;
    }
    Ok(())
}

/// What the corpus gives the benchmark: the model of its people, and its faces as strangers.
struct Distractors {
    people: DistractorModel,
    validation: Validation,
    /// How many people's templates the model was fitted to.
    people_fitted: usize,
    /// Every usable corpus face: none is of a synthetic person.
    corpus_faces: Vec<Vec<f32>>,
}

fn model_distractors(corpus: &Path, models: &Models, model: &str) -> anyhow::Result<Distractors> {
    let embedded = embed_corpus(corpus, models, |_, _| {})?;
    if embedded.input.model != model {
        bail!(
            "the corpus was embedded by {}, the development photos by {model}",
            embedded.input.model
        );
    }
    let identities = &embedded.input.identities;
    let corpus_faces: Vec<Vec<f32>> = identities
        .iter()
        .flat_map(|identity| identity.embeddings.iter().cloned())
        .collect();
    let people = super::distractors::templates(identities)?;
    let people: Vec<&[f32]> = people.iter().map(Vec::as_slice).collect();
    Ok(Distractors {
        people: DistractorModel::fit(&people)?,
        validation: super::distractors::validate(identities, VALIDATION_PEOPLE)?,
        people_fitted: people.len(),
        corpus_faces,
    })
}

/// False grants among stranger passages, judged as the gate judges them.
#[derive(Default)]
struct StrangerGrants {
    passages: usize,
    granted: usize,
    ambiguous: usize,
}

impl StrangerGrants {
    fn rate(&self) -> f64 {
        self.granted as f64 / self.passages.max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        json!({ "passages": self.passages, "granted": self.granted, "ambiguous": self.ambiguous, "fpir": self.rate() })
    }
}

/// Searches `gallery` for each stranger and judges the result at `threshold` with the default
/// margin; a grant to anyone is false, since no stranger is enrolled.  Faces of a planted real
/// person may truly be that person (the corpus shares photos with the development set), so only
/// grants to synthetic people count for `count_synthetic_only`.
fn stranger_grants(
    gallery: &mut Gallery,
    strangers: &[Vec<f32>],
    threshold: f64,
    count_synthetic_only: bool,
) -> anyhow::Result<StrangerGrants> {
    let mut grants = StrangerGrants::default();
    for stranger in strangers {
        let found = gallery.search(stranger, 2)?;
        let best = found.first();
        if count_synthetic_only && best.is_some_and(|m| !m.id.starts_with(SYNTHETIC_PREFIX)) {
            continue;
        }
        grants.passages += 1;
        let judgement = match_rule::judge(
            best.map(|m| f64::from(m.similarity)),
            found.get(1).map(|m| f64::from(m.similarity)),
            threshold,
            match_rule::DEFAULT_MIN_MARGIN,
        );
        match judgement {
            Judgement::Matched => grants.granted += 1,
            Judgement::Ambiguous => grants.ambiguous += 1,
            Judgement::NoMatch => {}
        }
    }
    Ok(grants)
}

/// The process's resident memory in bytes.
fn resident_bytes() -> anyhow::Result<u64> {
    let (kib, _) = super::memory_kib(&procfs::process::Process::myself()?)?;
    Ok(kib * 1024)
}

/// The child's side of the memory measurement.
fn measure_open(dir: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let before = resident_bytes()?;
    let start = Instant::now();
    let gallery = Gallery::open(dir)?;
    let open_s = start.elapsed().as_secs_f64();
    let after = resident_bytes()?;
    writeln!(
        out,
        "{}",
        json!({ "people": gallery.len(), "rss_added": after.saturating_sub(before), "open_s": open_s })
    )?;
    Ok(())
}

/// Runs `measure_open` in a fresh process: memory freed while building or searching is kept by
/// the allocator, and a gallery opened in this process would reuse it unseen.
fn rss_of_open(dir: &Path) -> anyhow::Result<(u64, f64)> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "gallery", "--measure-open"])
        .arg(dir)
        .output()
        .context("cannot run facegatectl to measure the gallery's memory")?;
    if !output.status.success() {
        bail!(
            "measuring the memory of {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "unexpected output: {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let rss = result["rss_added"].as_u64().context("no rss_added")?;
    let open_s = result["open_s"].as_f64().context("no open_s")?;
    Ok((rss, open_s))
}

/// How a set of queries fared against exact search.
#[derive(Default)]
struct Agreement {
    queries: usize,
    /// The gallery's best match is exact search's best match.
    same_best: usize,
    /// The gallery's best match is the person the query shows.
    found_person: usize,
    /// |similarity reported - exact similarity| of the best match, summed and at most.
    similarity_error_sum: f64,
    similarity_error_max: f64,
}

impl Agreement {
    fn add(&mut self, query: &Query, found: Option<&Match>, exact: Option<&Match>) {
        self.queries += 1;
        let (Some(found), Some(exact)) = (found, exact) else {
            return;
        };
        self.found_person += usize::from(found.id == query.person);
        if found.id == exact.id {
            self.same_best += 1;
            let error = f64::from((found.similarity - exact.similarity).abs());
            self.similarity_error_sum += error;
            self.similarity_error_max = self.similarity_error_max.max(error);
        }
    }

    fn recall(&self) -> f64 {
        self.same_best as f64 / self.queries.max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "queries": self.queries,
            "recall_at_1": self.recall(),
            "found_person": self.found_person,
            "similarity_error_mean": self.similarity_error_sum / self.same_best.max(1) as f64,
            "similarity_error_max": self.similarity_error_max,
        })
    }
}

struct SizeResult {
    size: usize,
    index_type: String,
    build_s: f64,
    enrol_s: f64,
    commit_s: f64,
    open_s: f64,
    rss_per_person: f64,
    gate_file_bytes_per_person: f64,
    vectors_bytes_per_person: f64,
    latency: Stats,
    synthetic: Agreement,
    real: Agreement,
    /// The gate's threshold for this size, and the FPIR the calibration expects there.
    threshold: f64,
    expected_fpir: Option<f64>,
    /// New synthetic people passing, and the corpus's real faces (grants to distractors only).
    strangers: StrangerGrants,
    corpus_strangers: StrangerGrants,
}

fn bench_size(
    size: usize,
    real: &RealFaces,
    distractors: &Distractors,
    calibration: &Calibration,
    args: &GalleryArgs,
    scratch: &Path,
    out: &mut impl Write,
) -> anyhow::Result<SizeResult> {
    let dim = real.enrolled[0].1.len();
    if size <= real.enrolled.len() {
        bail!("gallery size {size} leaves no room for synthetic people");
    }
    let dir = scratch.join(format!("gallery-{size}"));
    writeln!(out, "size {size}: enrolling...")?;
    let start = Instant::now();
    let mut gallery = Gallery::create(&dir, &real.model, dim as u32)?;
    enroll_everyone(&mut gallery, real, &distractors.people, size)?;
    let enrol_s = start.elapsed().as_secs_f64();
    let committed = Instant::now();
    gallery.commit()?;
    let commit_s = committed.elapsed().as_secs_f64();
    let build_s = start.elapsed().as_secs_f64();
    let files = gallery.files();
    drop(gallery);
    let bytes_per_person = |read_on_open: bool| {
        files
            .iter()
            .filter(|file| file.read_on_open == read_on_open)
            .map(|file| file.bytes)
            .sum::<u64>() as f64
            / size as f64
    };
    let (rss, open_s) = rss_of_open(&dir)?;

    // The gallery as the gate holds it, and exact search over the same people.
    let mut gallery = Gallery::open(&dir)?;
    let mut exact = Gallery::create(
        &scratch.join(format!("exact-{size}")),
        &real.model,
        dim as u32,
    )?;
    exact.set_index_policy(IndexPolicy {
        compress_at: usize::MAX,
        ..IndexPolicy::default()
    });
    // Staged, never committed: searched in memory only.
    enroll_everyone(&mut exact, real, &distractors.people, size)?;

    let queries = synthetic_queries(&distractors.people, size, args.queries, real.enrolled.len());
    let mut next = 0;
    let latency = measure(queries.len(), || {
        let query = &queries[next % queries.len()];
        next += 1;
        gallery.search(&query.embedding, 1)?;
        Ok(())
    })?;
    let mut agreement = |queries: &[Query]| -> anyhow::Result<Agreement> {
        let mut agreement = Agreement::default();
        for query in queries {
            let found = gallery.search(&query.embedding, 1)?;
            let best = exact.search(&query.embedding, 1)?;
            agreement.add(query, found.first(), best.first());
        }
        Ok(agreement)
    };
    let synthetic = agreement(&queries)?;
    let real_agreement = agreement(&real.queries)?;
    for query in &real.queries {
        let found = gallery.search(&query.embedding, 1)?;
        let best = exact.search(&query.embedding, 1)?;
        let show = |found: Option<&Match>| {
            found.map_or("nothing".to_owned(), |m| {
                format!("{} {:.3}", m.id, m.similarity)
            })
        };
        writeln!(
            out,
            "  real query of {}: found {}, exact {}",
            query.person,
            show(found.first()),
            show(best.first())
        )?;
    }
    let standing = MatchRule::default().standing(calibration, size as u64)?;
    let strangers: Vec<Vec<f32>> = (0..args.strangers as u64)
        .map(|n| distractors.people.person(STRANGER_SEEDS + n))
        .collect();
    let stranger_result = stranger_grants(&mut gallery, &strangers, standing.threshold, false)?;
    let corpus_result = stranger_grants(
        &mut gallery,
        &distractors.corpus_faces,
        standing.threshold,
        true,
    )?;
    let result = SizeResult {
        size,
        threshold: standing.threshold,
        expected_fpir: standing.expected_false_grant_rate,
        strangers: stranger_result,
        corpus_strangers: corpus_result,
        index_type: gallery.index_type().to_owned(),
        build_s,
        enrol_s,
        commit_s,
        open_s,
        rss_per_person: rss as f64 / size as f64,
        gate_file_bytes_per_person: bytes_per_person(true),
        vectors_bytes_per_person: bytes_per_person(false),
        latency,
        synthetic,
        real: real_agreement,
    };
    drop(gallery);
    drop(exact);
    std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    let exact_dir = scratch.join(format!("exact-{size}"));
    std::fs::remove_dir_all(&exact_dir)
        .with_context(|| format!("{}: cannot remove", exact_dir.display()))?;
    Ok(result)
}

/// OpenMP's thread count for FAISS's bulk work (training and adding at commit); single queries
/// and enrolments always run on one thread (see the gallery's openmp module).
fn openmp_threads() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("OMP_NUM_THREADS") {
        Ok(threads) => format!("{threads} (OMP_NUM_THREADS)"),
        Err(_) => format!("{cores} (OpenMP's default: one per core)"),
    }
}

pub fn run(args: &GalleryArgs, models: &Models, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(dir) = &args.measure_open {
        return measure_open(dir, out);
    }
    let photos = args
        .photos
        .clone()
        .unwrap_or_else(|| AssetDir::Photos.path());
    let real = embed_real_faces(&photos, models)?;
    let corpus = args
        .corpus
        .clone()
        .unwrap_or_else(|| AssetDir::Corpus.path());
    let distractors = model_distractors(&corpus, models, &real.model)?;
    let calibration = match_rule::find_calibration(&match_rule::calibration_dir(), &real.model)?;
    let temporary = tempfile::tempdir()?;
    let scratch = args.scratch.as_deref().unwrap_or(temporary.path());
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("{}: cannot create", scratch.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = openmp_threads();
    writeln!(
        out,
        "facegatectl bench gallery: {} real people planted ({} real queries, photos in {}), {} synthetic queries per size at cosine {}-{}; {cores} cores; FAISS threads: 1 per query (the gallery's choice), {threads} for building\n",
        real.enrolled.len(),
        real.queries.len(),
        photos.display(),
        args.queries,
        QUERY_COSINE.0,
        QUERY_COSINE.1
    )?;
    let v = &distractors.validation;
    writeln!(
        out,
        "synthetic people: a Gaussian fitted to the templates of the {} people of {} (Ledoit-Wolf shrinkage {:.3}); out of sample (fitted on half the identities, scored against the other half), real strangers score mean {:.4} sd {:.4} p99 {:.4} max {:.4} ({:.2} % >= 0.30, {} pairs), model people mean {:.4} sd {:.4} p99 {:.4} max {:.4} ({:.2} % >= 0.30): KS D = {:.4} (p {:.2e}); model people among themselves mean {:.4} sd {:.4} p99 {:.4} max {:.4} ({:.2} % >= 0.30): KS D = {:.4}; random unit vectors mean {:.4} sd {:.4}: KS D = {:.4}\n",
        distractors.people_fitted,
        corpus.display(),
        distractors.people.shrinkage,
        v.real.mean,
        v.real.sd,
        v.real.p99,
        v.real.max,
        100.0 * v.real.at_least_030,
        v.real.pairs,
        v.model.mean,
        v.model.sd,
        v.model.p99,
        v.model.max,
        100.0 * v.model.at_least_030,
        v.model_ks.statistic,
        v.model_ks.p_value,
        v.model_pairs.mean,
        v.model_pairs.sd,
        v.model_pairs.p99,
        v.model_pairs.max,
        100.0 * v.model_pairs.at_least_030,
        v.model_pairs_ks.statistic,
        v.random.mean,
        v.random.sd,
        v.random_ks.statistic,
    )?;

    let mut results = Vec::new();
    for &size in &args.sizes {
        let result = bench_size(size, &real, &distractors, &calibration, args, scratch, out)?;
        writeln!(
            out,
            "size {size}: {} built in {:.1} s, {:.0} B a person in memory, p99 {:.3} ms, recall@1 {:.4}; threshold {:.4}: {} of {} strangers granted",
            result.index_type,
            result.build_s,
            result.rss_per_person,
            ms(result.latency.p99),
            result.synthetic.recall(),
            result.threshold,
            result.strangers.granted,
            result.strangers.passages,
        )?;
        results.push(result);
    }

    writeln!(
        out,
        "\n| people | index type | build s (enrol + commit) | memory B/person (RSS) | gate files B/person | vectors file B/person | query median ms | query p99 ms | recall@1 synthetic | recall@1 real | similarity error mean / max |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for r in &results {
        writeln!(
            out,
            "| {} | {} | {:.1} ({:.1} + {:.1}) | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.4} ({}/{}) | {:.2} ({}/{}) | {:.4} / {:.4} |",
            r.size,
            r.index_type,
            r.build_s,
            r.enrol_s,
            r.commit_s,
            r.rss_per_person,
            r.gate_file_bytes_per_person,
            r.vectors_bytes_per_person,
            ms(r.latency.median),
            ms(r.latency.p99),
            r.synthetic.recall(),
            r.synthetic.same_best,
            r.synthetic.queries,
            r.real.recall(),
            r.real.same_best,
            r.real.queries,
            r.synthetic.similarity_error_sum / r.synthetic.same_best.max(1) as f64,
            r.synthetic.similarity_error_max,
        )?;
    }

    writeln!(
        out,
        "\n| people | threshold (the gate's rule) | expected FPIR (calibration) | synthetic strangers granted | FPIR | ambiguous | corpus faces granted to a distractor |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for r in &results {
        writeln!(
            out,
            "| {} | {:.4} | {} | {} / {} | {:.1e} | {} | {} / {} |",
            r.size,
            r.threshold,
            r.expected_fpir.map_or("-".into(), |f| format!("{f:.1e}")),
            r.strangers.granted,
            r.strangers.passages,
            r.strangers.rate(),
            r.strangers.ambiguous,
            r.corpus_strangers.granted,
            r.corpus_strangers.passages,
        )?;
    }

    let json = json!({
        "benchmark": "gallery",
        "cores": cores,
        "faiss_threads_query": 1,
        "faiss_threads_build": threads,
        "query_cosine": [QUERY_COSINE.0, QUERY_COSINE.1],
        "real_people": real.enrolled.len(),
        "distractors": {
            "model": "gaussian-ledoit-wolf",
            "fitted_people": distractors.people_fitted,
            "shrinkage": distractors.people.shrinkage,
            "validation": distractors.validation,
        },
        "results": results.iter().map(|r| json!({
            "people": r.size,
            "index_type": r.index_type,
            "build_s": r.build_s,
            "enrol_s": r.enrol_s,
            "commit_s": r.commit_s,
            "open_s": r.open_s,
            "memory_bytes_per_person": r.rss_per_person,
            "gate_file_bytes_per_person": r.gate_file_bytes_per_person,
            "vectors_file_bytes_per_person": r.vectors_bytes_per_person,
            "query_ms": { "median": ms(r.latency.median), "p99": ms(r.latency.p99) },
            "synthetic": r.synthetic.json(),
            "real": r.real.json(),
            "threshold": r.threshold,
            "expected_fpir": r.expected_fpir,
            "strangers": r.strangers.json(),
            "corpus_strangers": r.corpus_strangers.json(),
        })).collect::<Vec<_>>(),
    });
    write_json(&args.json, &json)?;
    writeln!(out, "\nwrote {}", args.json.display())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synthetic_query_has_the_cosine_it_was_given() {
        let enrolled = synthetic_embedding(5, 128);
        let query = seen_again(&enrolled, &synthetic_embedding(6, 128), 0.7);
        let norm: f32 = query.iter().map(|v| v * v).sum::<f32>().sqrt();
        let cosine: f32 = query.iter().zip(&enrolled).map(|(q, e)| q * e).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert!((cosine - 0.7).abs() < 1e-4, "{cosine}");
    }

    #[test]
    fn queries_pick_synthetic_people_only_and_cosines_in_range() {
        let faces: Vec<Vec<f32>> = (100..140)
            .map(|seed| synthetic_embedding(seed, 16))
            .collect();
        let refs: Vec<&[f32]> = faces.iter().map(Vec::as_slice).collect();
        let people = DistractorModel::fit(&refs).unwrap();
        let queries = synthetic_queries(&people, 1000, 200, 6);
        for query in &queries {
            let n: u64 = query
                .person
                .trim_start_matches(SYNTHETIC_PREFIX)
                .parse()
                .unwrap();
            assert!((1..=994).contains(&n), "{}", query.person);
            let cosine: f32 = query
                .embedding
                .iter()
                .zip(&people.person(n))
                .map(|(q, e)| q * e)
                .sum();
            assert!((0.6 - 1e-4..=0.85 + 1e-4).contains(&cosine), "{cosine}");
        }
    }
}
