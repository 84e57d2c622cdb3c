// SPDX-License-Identifier: MIT OR Apache-2.0
//! Index files crafted to pass the manifest's checksums (rewritten to match) but not to be what
//! the manifest says: each is refused before FAISS reads it.

use super::*;

/// Offsets in an `IDMap2,Flat` file: the outer header's metric type, the inner flat index's
/// dimension and value count.
const OUTER_METRIC: usize = 33;
const INNER_DIM: usize = 41;
const FLAT_COUNT: usize = 74;

/// An exact gallery of three people at generation 1, and its index file's path and bytes.
fn exact_gallery() -> (TempDir, PathBuf, PathBuf, Vec<u8>) {
    let (temp, mut gallery) = new_gallery();
    for seed in 1..=3 {
        enroll_seeded(&mut gallery, &format!("p-{seed:03}"), seed);
    }
    gallery.commit().unwrap();
    let dir = gallery.dir().to_path_buf();
    let index = dir.join("index-1.faiss");
    let bytes = fs::read(&index).unwrap();
    (temp, dir, index, bytes)
}

/// Writes `bytes` as the index, makes the manifest agree, and expects `open` to refuse it as
/// corrupt with a message naming the index file and containing `problem`.
fn assert_refused(dir: &Path, file: &Path, bytes: &[u8], problem: &str) {
    fs::write(file, bytes).unwrap();
    rewrite_checksums(dir);
    let error = Gallery::open(dir).unwrap_err();
    assert!(matches!(error, GalleryError::Corrupt { .. }), "{error}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert_one_line_naming(&error, name);
    assert!(error.to_string().contains(problem), "{error}");
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn an_unknown_metric_type_is_refused() {
    // L1, with the metric argument FAISS then reads: FAISS loads it, and the Rust binding
    // panics on a metric it does not know.
    let (_temp, dir, index, mut bytes) = exact_gallery();
    bytes[OUTER_METRIC..OUTER_METRIC + 4].copy_from_slice(&2i32.to_le_bytes());
    bytes.splice(OUTER_METRIC + 4..OUTER_METRIC + 4, 0f32.to_le_bytes());
    assert_refused(&dir, &index, &bytes, "metric type 2");
}

#[test]
fn an_id_map_shorter_than_the_index_is_refused() {
    // FAISS does not compare them; a search would read past the id map.
    let (_temp, dir, index, mut bytes) = exact_gallery();
    let at = FLAT_COUNT + 8 + 3 * DIM as usize * 4;
    assert_eq!(get_u64(&bytes, at), 3);
    put_u64(&mut bytes, at, 2);
    bytes.truncate(bytes.len() - 8);
    assert_refused(&dir, &index, &bytes, "the id map holds 2 ids for 3 vectors");
}

#[test]
fn a_count_beyond_the_file_is_refused_before_anything_is_allocated() {
    // FAISS would allocate 1 TiB for it before finding the file too short.
    let (_temp, dir, index, mut bytes) = exact_gallery();
    put_u64(&mut bytes, FLAT_COUNT, 1 << 38);
    assert_refused(&dir, &index, &bytes, "would not fit");
}

#[test]
fn an_inner_index_of_another_dimension_is_refused() {
    let (_temp, dir, index, mut bytes) = exact_gallery();
    bytes[INNER_DIM..INNER_DIM + 4].copy_from_slice(&64i32.to_le_bytes());
    assert_refused(&dir, &index, &bytes, "64 dimensions");
}

#[test]
fn ids_the_identities_do_not_list_are_refused() {
    let (_temp, dir, index, mut bytes) = exact_gallery();
    let last = bytes.len() - 8;
    put_u64(&mut bytes, last, 77);
    assert_refused(&dir, &index, &bytes, "other FAISS ids");
}

#[test]
fn trailing_bytes_are_refused() {
    let (_temp, dir, index, mut bytes) = exact_gallery();
    bytes.extend_from_slice(&[0; 5]);
    assert_refused(&dir, &index, &bytes, "5 bytes follow the index");
}

/// A compressed gallery (fast-scan PQ, 700 people) at generation 1.
fn compressed_gallery() -> (TempDir, PathBuf) {
    let (temp, mut gallery) = new_gallery();
    gallery.set_index_policy(small_policy());
    enroll_fillers(&mut gallery, 0..SMALL_THRESHOLD);
    assert_eq!(gallery.commit().unwrap(), 1);
    assert!(!gallery.is_exact());
    (temp, gallery.dir().to_path_buf())
}

#[test]
fn an_inverted_list_with_too_few_codes_is_refused() {
    // FAISS reads each list's ids and codes without comparing them; a search of that list
    // would read past its codes.
    let (_temp, dir) = compressed_gallery();
    let index = dir.join("index-1.faiss");
    let mut bytes = fs::read(&index).unwrap();
    let lists = bytes.windows(4).position(|w| w == b"ilbl").unwrap() + 4;
    let block_bytes = get_u64(&bytes, lists + 24) as usize;
    let ids = get_u64(&bytes, lists + 32) as usize;
    let codes_at = lists + 40 + 8 * ids;
    let codes = get_u64(&bytes, codes_at) as usize;
    assert!(
        ids > 0 && codes >= block_bytes,
        "list 0: {ids} ids, {codes} code bytes"
    );
    put_u64(&mut bytes, codes_at, (codes - block_bytes) as u64);
    bytes.drain(codes_at + 8..codes_at + 8 + block_bytes);
    assert_refused(&dir, &index, &bytes, "inverted list 0 holds");
}

#[test]
fn a_rescoring_stage_with_too_few_codes_is_refused() {
    let (_temp, dir) = compressed_gallery();
    let rescore = dir.join("rescore-1.faiss");
    let mut bytes = fs::read(&rescore).unwrap();
    let code_size = (DIM as usize * 6).div_ceil(8);
    let count_at = bytes.len() - SMALL_THRESHOLD * code_size - 8;
    assert_eq!(
        get_u64(&bytes, count_at) as usize,
        SMALL_THRESHOLD * code_size
    );
    put_u64(
        &mut bytes,
        count_at,
        ((SMALL_THRESHOLD - 1) * code_size) as u64,
    );
    bytes.truncate(bytes.len() - code_size);
    assert_refused(&dir, &rescore, &bytes, "code bytes for 700 vectors");
}

#[test]
fn an_index_type_this_build_does_not_write_is_refused() {
    let (_temp, dir) = compressed_gallery();
    for index_type in [
        "IVF16,PQ32x4fs",
        "IVF016,PQ32x4fs,Refine(SQ6)",
        "IVF16,PQ16x4fs,Refine(SQ6)",
        "IVF99999,PQ32x4fs,Refine(SQ6)",
        "HNSW32",
    ] {
        let mut manifest = manifest_json(&dir);
        manifest["index_type"] = index_type.into();
        fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
        let error = Gallery::open(&dir).unwrap_err();
        assert_one_line_naming(&error, "manifest.json");
        assert!(
            error.to_string().contains("not an index this build writes"),
            "{error}"
        );
    }
}

#[test]
fn an_nprobe_beyond_the_cells_is_refused() {
    let (_temp, dir) = compressed_gallery();
    let mut manifest = manifest_json(&dir);
    manifest["search"]["nprobe"] = 17.into();
    fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let error = Gallery::open(&dir).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("search.nprobe 17 is outside 1..=16"),
        "{error}"
    );
}

#[test]
fn open_matching_refuses_another_model_before_reading_the_index() {
    let (_temp, dir, index, _) = exact_gallery();
    fs::write(&index, b"not an index").unwrap();
    let error = Gallery::open_matching(&dir, "arcface-w600k", DIM).unwrap_err();
    assert!(
        matches!(error, GalleryError::ModelMismatch { .. }),
        "{error}"
    );
    let error = Gallery::open_matching(&dir, MODEL, 512).unwrap_err();
    assert!(matches!(error, GalleryError::DimMismatch { .. }), "{error}");
    assert!(
        Gallery::open_matching(&dir, MODEL, DIM).is_err(),
        "the index is checked"
    );
}

#[test]
fn a_compressed_gallery_of_scalar_codes_round_trips() {
    // 12 dimensions: a quarter is odd, so the first stage is IVF with 4-bit scalar codes.
    let temp = TempDir::new().unwrap();
    let mut gallery = Gallery::create(&temp.path().join("gallery"), MODEL, 12).unwrap();
    gallery.set_index_policy(small_policy());
    let vector = |seed: u64| {
        let mut random = fastrand::Rng::with_seed(seed);
        let mut values: Vec<f32> = (0..12).map(|_| random.f32() * 2.0 - 1.0).collect();
        assert!(normalise(&mut values));
        values
    };
    for n in 0..SMALL_THRESHOLD as u64 {
        let id = format!("s-{n:04}");
        gallery.enroll(&id, "", MODEL, &vector(n), false).unwrap();
    }
    gallery.commit().unwrap();
    assert_eq!(gallery.index_type(), "IVF16,SQ4,Refine(SQ6)");
    let mut reopened = Gallery::open(gallery.dir()).unwrap();
    let best = &reopened.search(&vector(5), 1).unwrap()[0];
    assert_eq!(best.id, "s-0005");
    assert!((best.similarity - 1.0).abs() < 0.02, "{best:?}");

    // And its array lists are checked as the block lists are.
    let index = gallery.dir().join("index-1.faiss");
    let mut bytes = fs::read(&index).unwrap();
    bytes.truncate(bytes.len() - 8);
    assert_refused(gallery.dir(), &index, &bytes, "index-1.faiss");
}
