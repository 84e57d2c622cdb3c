// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which index a gallery of a given size gets: exact search while small, a trained, compressed
//! IVF index with a rescoring stage from `COMPRESS_AT` people on, retrained as it grows.

/// Exact search: every query is compared with every enrolled face.
pub(super) const EXACT_INDEX: &str = "IDMap2,Flat";

/// From this many people on, `commit` trains a compressed index. Below it exact search is cheap
/// enough to keep, and loses no recall: measured (`facegatectl bench gallery`) at about 9 ns per
/// person per query with AVX2 (18 ns without; so 0.45 to 0.9 ms at 50,000) and 670 bytes per
/// person in memory (33 MB). Both grow linearly, to 9-18 ms and 670 MB at a million, against
/// 0.5 ms (with AVX2) and 165 bytes for the compressed index.
pub const COMPRESS_AT: usize = 50_000;

/// A compressed index is retrained once the gallery is this many times larger, or smaller, than
/// the size it was trained for. Its cell count was chosen for that size, and new people are
/// encoded with codebooks that stay valid (they were trained on the same kind of embeddings), so
/// only the per-cell scan length drifts, and by 4x it is worth a rebuild.
pub const RETRAIN_FACTOR: usize = 4;

/// IVF cells per square root of the people trained for: 1M people get 256 cells of about 4,000,
/// 4M get 512. Few, long cells suit the 4-bit fast-scan codes, which are scanned in SIMD blocks of
/// 32 and pay a per-cell set-up cost; measured at 1M on uniform synthetic embeddings (the worst
/// case for IVF), 256 cells with half of them probed were faster than 1,024 or 4,096 cells at the
/// same recall.
const LISTS_PER_SQRT_PEOPLE: f64 = 0.25;
/// Smaller galleries still get 256 cells: at a given share probed, more cells find more (100k
/// people, half probed: 64 cells 98.7 %, 256 cells 99.7 %), and below 1M every query is cheap.
const MIN_LISTS: u32 = 256;
pub(super) const MAX_LISTS: u32 = 4096;
/// k-means wants this many training points per cell (FAISS warns below it), which caps the cells
/// of the smallest compressed galleries (tests lower the threshold to a few hundred people).
const MIN_POINTS_PER_LIST: usize = 39;

/// The share of IVF cells searched per query. A face seen at the gate has cosine 0.6 to 0.85 with
/// its enrolment photo, far enough that its nearest cells are often not the enrolment's: among 1M
/// uniform embeddings in 256 cells, probing 3/8 of them found exact search's best match 98.6 % of
/// the time and probing 1/2 of them 99.5 %. Real embeddings cluster, which only helps.
const PROBE_SHARE: f64 = 0.5;

/// The rescoring stage: 96 bytes a face for SFace. 8 bits (128 bytes) would take a million-person
/// gallery from 165 to about 200 bytes a person, for an error of 0.001 rather than 0.002 that no
/// threshold needs.
pub(super) const RESCORE_INDEX: &str = "SQ6";

/// When a gallery switches index type and retrains: `COMPRESS_AT` and `RETRAIN_FACTOR` by
/// default; tests lower the threshold to exercise compressed galleries quickly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPolicy {
    /// From this many people on, the gallery uses a trained, compressed index.
    pub compress_at: usize,
    /// A compressed index is retrained once the gallery is this many times larger or smaller
    /// than the size it was trained for.
    pub retrain_factor: usize,
}

impl Default for IndexPolicy {
    fn default() -> Self {
        IndexPolicy {
            compress_at: COMPRESS_AT,
            retrain_factor: RETRAIN_FACTOR,
        }
    }
}

/// What a compressed gallery's manifest says about its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Trained {
    /// People when the index was trained; 0 if a manifest did not say.
    pub people: u64,
    pub nprobe: Option<u32>,
}

/// The compressed index for a given size: its cells, its codes and how many cells a query probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CompressedLayout {
    pub nlist: u32,
    pub nprobe: u32,
    pub codes: Codes,
}

impl CompressedLayout {
    /// The first stage, which finds candidates, in FAISS's factory notation.
    pub fn factory(&self) -> String {
        format!("IVF{},{}", self.nlist, self.codes.factory())
    }

    /// What the manifest records: FAISS's own notation for an index with a rescoring stage.
    pub fn index_type(&self) -> String {
        IndexKind::Compressed {
            nlist: self.nlist,
            codes: self.codes,
        }
        .index_type()
    }

    pub fn for_size(dim: u32, people: usize) -> CompressedLayout {
        let wanted = (people as f64).sqrt() * LISTS_PER_SQRT_PEOPLE;
        // Powers of two keep the sizes few and the factory strings recognisable.
        let by_size = 2f64
            .powf(wanted.max(1.0).log2().round())
            .clamp(f64::from(MIN_LISTS), f64::from(MAX_LISTS)) as u32;
        let trainable = (people / MIN_POINTS_PER_LIST).max(1);
        let nlist = by_size.min(1 << trainable.ilog2());
        let nprobe = ((f64::from(nlist) * PROBE_SHARE).round() as u32).clamp(1, nlist);
        CompressedLayout {
            nlist,
            nprobe,
            codes: Codes::for_dim(dim),
        }
    }
}

/// The first stage's codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Codes {
    /// 4-bit product quantisation of every 4 dimensions: dim/8 bytes a face (16 for SFace's
    /// 128), scanned with SIMD table look-ups; `m` sub-quantisers.
    FastScanPq { m: u32 },
    /// 4-bit scalar quantisation, for a dimension whose quarter is odd (fast-scan needs an even
    /// sub-quantiser count), which no face embedder has.
    Sq4,
}

impl Codes {
    pub fn for_dim(dim: u32) -> Codes {
        if dim.is_multiple_of(8) {
            Codes::FastScanPq { m: dim / 4 }
        } else {
            Codes::Sq4
        }
    }

    fn factory(self) -> String {
        match self {
            Codes::FastScanPq { m } => format!("PQ{m}x4fs"),
            Codes::Sq4 => "SQ4".to_owned(),
        }
    }

    fn parse(text: &str) -> Option<Codes> {
        if text == "SQ4" {
            return Some(Codes::Sq4);
        }
        let m = parse_exact(text.strip_prefix("PQ")?.strip_suffix("x4fs")?)?;
        Some(Codes::FastScanPq { m })
    }
}

/// The kind of index a manifest's `index_type` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IndexKind {
    Exact,
    /// An IVF index of `nlist` cells with `codes`, rescored from a separate SQ6 stage.
    Compressed {
        nlist: u32,
        codes: Codes,
    },
}

impl IndexKind {
    pub fn index_type(self) -> String {
        match self {
            IndexKind::Exact => EXACT_INDEX.to_owned(),
            IndexKind::Compressed { nlist, codes } => {
                format!("IVF{nlist},{},Refine({RESCORE_INDEX})", codes.factory())
            }
        }
    }

    /// The kind an `index_type` names, if this build writes such an index for `dim`
    /// dimensions; the text must be exactly as this build writes it.
    pub fn parse(index_type: &str, dim: u32) -> Option<IndexKind> {
        if index_type == EXACT_INDEX {
            return Some(IndexKind::Exact);
        }
        let first_stage = index_type.strip_suffix(&format!(",Refine({RESCORE_INDEX})"))?;
        let (cells, codes) = first_stage.strip_prefix("IVF")?.split_once(',')?;
        let nlist = parse_exact(cells)?;
        let codes = Codes::parse(codes)?;
        let is_ours = (1..=MAX_LISTS).contains(&nlist) && codes == Codes::for_dim(dim);
        is_ours.then_some(IndexKind::Compressed { nlist, codes })
    }
}

/// A number written exactly as `format!` writes it (no sign, no leading zeros).
fn parse_exact(text: &str) -> Option<u32> {
    let number: u32 = text.parse().ok()?;
    (number.to_string() == text).then_some(number)
}

/// The index the next generation should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Rebuild {
    /// The one in memory, as it is.
    Keep,
    /// An exact index, for a compressed gallery that has shrunk below the threshold.
    Exact,
    /// A newly trained compressed index.
    Compressed(CompressedLayout),
}

impl IndexPolicy {
    /// What a gallery of `people` whose index is `trained` (or exact) should have next.
    pub(super) fn rebuild(&self, trained: Option<Trained>, people: usize, dim: u32) -> Rebuild {
        let want_compressed = people >= self.compress_at;
        match (trained, want_compressed) {
            (None, false) => Rebuild::Keep,
            (Some(_), false) => Rebuild::Exact,
            (None, true) => Rebuild::Compressed(CompressedLayout::for_size(dim, people)),
            (Some(trained), true) => {
                let factor = self.retrain_factor.max(1) as u64;
                let (now, then) = (people as u64, trained.people);
                let outgrown =
                    now > then.saturating_mul(factor) || now.saturating_mul(factor) < then;
                if outgrown {
                    Rebuild::Compressed(CompressedLayout::for_size(dim, people))
                } else {
                    Rebuild::Keep
                }
            }
        }
    }
}
