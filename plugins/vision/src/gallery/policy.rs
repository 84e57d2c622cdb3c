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

/// The compressed index for a given size: its factory strings and search parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CompressedLayout {
    /// The first stage, which finds candidates.
    pub factory: String,
    pub nlist: u32,
    pub nprobe: u32,
}

impl CompressedLayout {
    /// What the manifest records: FAISS's own notation for an index with a rescoring stage.
    pub fn index_type(&self) -> String {
        format!("{},Refine({RESCORE_INDEX})", self.factory)
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
            factory: format!("IVF{nlist},{}", codes_factory(dim)),
            nlist,
            nprobe,
        }
    }
}

/// The first stage's codes: 4-bit product quantisation of every 4 dimensions, dim/8 bytes a face
/// (16 for SFace's 128), scanned with SIMD table look-ups. Its sub-quantiser count must be even;
/// a dimension that does not allow that, which no face embedder has, falls back to 4-bit scalar
/// quantisation.
fn codes_factory(dim: u32) -> String {
    if dim.is_multiple_of(8) {
        format!("PQ{}x4fs", dim / 4)
    } else {
        "SQ4".to_owned()
    }
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
