// SPDX-License-Identifier: MIT OR Apache-2.0
//! FAISS index files, checked by this crate before FAISS reads them.
//!
//! FAISS trusts its files: a metric type it does not know panics in the Rust binding, a code
//! array shorter than its count makes a search read past it, and every count it reads is
//! allowed up to 2^40 elements before it allocates. So each file is walked here first, in the
//! layout `faiss/impl/index_read.cpp` reads, for exactly the index types this build writes,
//! with every field checked against the manifest and every count bounded by the bytes left in
//! the file. The same pass checks the size and checksum the manifest records, and the file is
//! handed to FAISS through the handle that was checked.
//!
//! The layout (all little-endian, as FAISS writes it on the platforms the gate runs on):
//! a fourcc, then the index header (d: i32, ntotal: i64, two unused i64, is_trained: u8,
//! metric_type: i32), then the fields of the type. Vectors are a u64 element count and the
//! elements; a flat index's count is of floats.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::GalleryError;
use super::files::{self, FileEntry};
use super::policy::{Codes, IndexKind};

/// FAISS's `METRIC_INNER_PRODUCT`.
const METRIC_INNER_PRODUCT: i32 = 0;
/// Fast-scan codes are packed in blocks of this many vectors (FAISS's `bbs` default).
const FAST_SCAN_BLOCK: u64 = 32;
/// `ScalarQuantizer::QT_4bit` and `QT_6bit`.
const QT_4BIT: u32 = 1;
const QT_6BIT: u32 = 6;
/// `ScalarQuantizer::RangeStat` has four values.
const RANGE_STATS: u32 = 4;
const READ_BUFFER_BYTES: usize = 1 << 16;

/// Which file of a generation is being checked, and what it must hold.
#[derive(Clone, Copy, Debug)]
pub(super) enum Expected {
    /// The index searched first: `kind` as the manifest names it.
    Main { kind: IndexKind },
    /// A compressed gallery's SQ6 rescoring stage.
    Rescore,
}

/// A file that passed: its handle, for FAISS to read, and the FAISS ids it holds, sorted.
pub(super) struct CheckedIndex {
    file: File,
    path: PathBuf,
    pub ids: Vec<i64>,
}

impl CheckedIndex {
    /// A path for FAISS that names the very file checked, even if the name was replaced since.
    pub fn faiss_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        let by_handle = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        if by_handle.exists() {
            by_handle
        } else {
            self.path.clone()
        }
    }
}

/// Checks an index file named by the manifest against it: size, checksum and layout, `dim`
/// dimensions and `people` vectors.
pub(super) fn check(
    dir: &Path,
    entry: &FileEntry,
    expected: Expected,
    dim: u32,
    people: u64,
) -> Result<CheckedIndex, GalleryError> {
    let path = dir.join(&entry.name);
    let file = files::open_listed(&path, entry)?;
    let mut walker = Walker {
        reader: BufReader::with_capacity(
            READ_BUFFER_BYTES,
            file.try_clone().map_err(files::io_error(&path, "open"))?,
        ),
        hasher: Sha256::new(),
        left: entry.bytes,
        dim,
        people,
        ids: Vec::new(),
    };
    let walked = walker.walk(expected);
    // A file that is not what the manifest says is reported as such, whatever its layout.
    walker.drain().map_err(files::io_error(&path, "read"))?;
    let sha256 = format!("{:x}", walker.hasher.finalize());
    files::check_sha256(&path, entry, &sha256)?;
    match walked {
        Ok(()) => {}
        Err(Fault::Io(error)) => return Err(files::io_error(&path, "read")(error)),
        Err(Fault::Bad(problem)) => return Err(files::corrupt(&path, problem)),
    }
    let mut ids = walker.ids;
    ids.sort_unstable();
    Ok(CheckedIndex { file, path, ids })
}

enum Fault {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Fault {
    fn from(error: io::Error) -> Fault {
        Fault::Io(error)
    }
}

fn bad<T>(problem: impl Into<String>) -> Result<T, Fault> {
    Err(Fault::Bad(problem.into()))
}

struct Walker {
    reader: BufReader<File>,
    hasher: Sha256,
    /// Bytes of the file not read yet; nothing is read, or sized, beyond them.
    left: u64,
    dim: u32,
    people: u64,
    /// FAISS ids found, in file order.
    ids: Vec<i64>,
}

impl Walker {
    fn walk(&mut self, expected: Expected) -> Result<(), Fault> {
        match expected {
            Expected::Main {
                kind: IndexKind::Exact,
            } => self.exact()?,
            Expected::Main {
                kind: IndexKind::Compressed { nlist, codes },
            } => self.compressed(nlist, codes)?,
            Expected::Rescore => self.rescore()?,
        }
        if self.left != 0 {
            return bad(format!("{} bytes follow the index", self.left));
        }
        Ok(())
    }

    /// `IDMap2,Flat`: an `IxM2` around an `IxFI`, then the id map.
    fn exact(&mut self) -> Result<(), Fault> {
        self.fourcc(b"IxM2", "an IDMap2 index")?;
        self.header("the index", self.people)?;
        self.flat("the flat index", self.people)?;
        let count = self.count(8, "the id map")?;
        if count != self.people {
            return bad(format!(
                "the id map holds {count} ids for {} vectors",
                self.people
            ));
        }
        self.read_ids(count)
    }

    /// An `IxFI` (inner-product flat index) of `vectors` vectors.
    fn flat(&mut self, what: &str, vectors: u64) -> Result<(), Fault> {
        self.fourcc(b"IxFI", "an inner-product flat index")?;
        self.header(what, vectors)?;
        let floats = self.count(4, what)?;
        if Some(floats) != vectors.checked_mul(u64::from(self.dim)) {
            return bad(format!(
                "{what} holds {floats} values for {vectors} vectors of {} dimensions",
                self.dim
            ));
        }
        self.skip(floats * 4)
    }

    /// An IVF index: `IwPf` (fast-scan PQ, block lists) or `IwSq` (SQ4, array lists).
    fn compressed(&mut self, nlist: u32, codes: Codes) -> Result<(), Fault> {
        match codes {
            Codes::FastScanPq { m } => {
                self.fourcc(b"IwPf", "an IVF fast-scan PQ index")?;
                self.ivf_header(nlist)?;
                self.fast_scan_fields(m)?;
                self.block_lists(nlist, u64::from(m) / 2)
            }
            Codes::Sq4 => {
                self.fourcc(b"IwSq", "an IVF scalar-quantiser index")?;
                self.ivf_header(nlist)?;
                let code_size = self.scalar_quantizer(QT_4BIT, 4)?;
                self.expect_u64(code_size, "the IVF code size")?;
                self.boolean("by_residual")?;
                self.array_lists(nlist, code_size)
            }
        }
    }

    /// The header every IVF index starts with: nlist, nprobe, the quantiser (a flat index of
    /// one centroid per cell) and an empty direct map.
    fn ivf_header(&mut self, nlist: u32) -> Result<(), Fault> {
        self.header("the index", self.people)?;
        self.expect_u64(u64::from(nlist), "nlist")?;
        let nprobe = self.u64()?;
        if !(1..=u64::from(nlist)).contains(&nprobe) {
            return bad(format!("nprobe {nprobe} is outside 1..={nlist}"));
        }
        self.flat("the IVF quantiser", u64::from(nlist))?;
        let direct_map = self.u8()?;
        if direct_map != 0 {
            return bad(format!(
                "direct map type {direct_map}, but none was written"
            ));
        }
        let mapped = self.count(8, "the direct map")?;
        if mapped != 0 {
            return bad(format!(
                "a direct map of {mapped} entries, but none was written"
            ));
        }
        Ok(())
    }

    /// `IwPf`'s own fields and its product quantiser: `m` sub-quantisers of 4 bits.
    fn fast_scan_fields(&mut self, m: u32) -> Result<(), Fault> {
        let m = u64::from(m);
        self.boolean("by_residual")?;
        self.expect_u64(m / 2, "the code size")?;
        self.expect_i32(FAST_SCAN_BLOCK as i32, "the fast-scan block size")?;
        self.expect_u64(m, "M2")?;
        self.expect_i32(0, "the fast-scan implementation")?;
        self.expect_u64(0, "qbs2")?;
        self.expect_u64(u64::from(self.dim), "the product quantiser's d")?;
        self.expect_u64(m, "the product quantiser's M")?;
        self.expect_u64(4, "the product quantiser's nbits")?;
        let centroids = self.count(4, "the product quantiser's centroids")?;
        if centroids != 16 * u64::from(self.dim) {
            return bad(format!(
                "the product quantiser holds {centroids} centroid values, not {}",
                16 * u64::from(self.dim)
            ));
        }
        self.skip(centroids * 4)
    }

    /// `ilbl`: each list's ids, then its codes in whole blocks of 32.
    fn block_lists(&mut self, nlist: u32, code_size: u64) -> Result<(), Fault> {
        self.fourcc(b"ilbl", "block inverted lists")?;
        self.expect_u64(u64::from(nlist), "the inverted lists' nlist")?;
        // Block lists have no per-vector code size: FAISS writes `INVALID_CODE_SIZE`.
        self.expect_u64(u64::MAX, "the inverted lists' code size")?;
        self.expect_u64(FAST_SCAN_BLOCK, "the vectors per block")?;
        let block_bytes = FAST_SCAN_BLOCK * code_size;
        self.expect_u64(block_bytes, "the block size")?;
        let mut total = 0u64;
        for list in 0..nlist {
            let entries = self.count(8, "an inverted list's ids")?;
            self.read_ids(entries)?;
            let bytes = self.count(1, "an inverted list's codes")?;
            let blocks = entries.div_ceil(FAST_SCAN_BLOCK);
            if bytes != blocks * block_bytes {
                return bad(format!(
                    "inverted list {list} holds {bytes} code bytes for {entries} vectors"
                ));
            }
            self.skip(bytes)?;
            total += entries;
        }
        self.expect_total(total)
    }

    /// `ilar`: the list sizes (all of them, or the non-empty ones), then each non-empty list's
    /// codes and ids.
    fn array_lists(&mut self, nlist: u32, code_size: u64) -> Result<(), Fault> {
        self.fourcc(b"ilar", "array inverted lists")?;
        self.expect_u64(u64::from(nlist), "the inverted lists' nlist")?;
        self.expect_u64(code_size, "the inverted lists' code size")?;
        let mut sizes = vec![0u64; nlist as usize];
        match &self.bytes::<4>()? {
            b"full" => {
                self.expect_u64(u64::from(nlist), "the count of list sizes")?;
                for size in &mut sizes {
                    *size = self.u64()?;
                }
            }
            b"sprs" => {
                let values = self.count(8, "the list sizes")?;
                if values % 2 != 0 {
                    return bad("the sparse list sizes are not (list, size) pairs");
                }
                for _ in 0..values / 2 {
                    let (list, size) = (self.u64()?, self.u64()?);
                    let Some(slot) = usize::try_from(list).ok().and_then(|l| sizes.get_mut(l))
                    else {
                        return bad(format!("list {list} is outside 0..{nlist}"));
                    };
                    *slot = size;
                }
            }
            other => {
                return bad(format!(
                    "unknown list type {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
        }
        for &entries in &sizes {
            let bytes = entries
                .checked_mul(code_size + 8)
                .filter(|&bytes| bytes <= self.left);
            if bytes.is_none() {
                return bad(format!(
                    "a list of {entries} vectors is larger than the file"
                ));
            }
            self.skip(entries * code_size)?;
            self.read_ids(entries)?;
        }
        self.expect_total(sizes.iter().sum())
    }

    /// `SQ6` rescoring stage: an `IxSQ` with one code per person.
    fn rescore(&mut self) -> Result<(), Fault> {
        self.fourcc(b"IxSQ", "a scalar-quantiser index")?;
        self.header("the rescoring stage", self.people)?;
        let code_size = self.scalar_quantizer(QT_6BIT, 6)?;
        let bytes = self.count(1, "the rescoring codes")?;
        if Some(bytes) != self.people.checked_mul(code_size) {
            return bad(format!(
                "the rescoring stage holds {bytes} code bytes for {} vectors",
                self.people
            ));
        }
        self.skip(bytes)
    }

    /// A `ScalarQuantizer` of type `qtype`, `bits` a value; returns its code size.
    fn scalar_quantizer(&mut self, qtype: u32, bits: u64) -> Result<u64, Fault> {
        let found = self.u32()?;
        if found != qtype {
            return bad(format!("scalar quantiser type {found}, expected {qtype}"));
        }
        let range_stat = self.u32()?;
        if range_stat >= RANGE_STATS {
            return bad(format!(
                "unknown scalar quantiser range statistic {range_stat}"
            ));
        }
        self.skip(4)?;
        let dim = u64::from(self.dim);
        self.expect_u64(dim, "the scalar quantiser's d")?;
        let code_size = (dim * bits).div_ceil(8);
        self.expect_u64(code_size, "the scalar quantiser's code size")?;
        // A minimum and a range per dimension.
        let trained = self.count(4, "the scalar quantiser's ranges")?;
        if trained != 2 * dim {
            return bad(format!(
                "the scalar quantiser holds {trained} range values, not {}",
                2 * dim
            ));
        }
        self.skip(trained * 4)?;
        Ok(code_size)
    }

    /// The index header, for an index of `self.dim` dimensions holding `ntotal` vectors.
    fn header(&mut self, what: &str, ntotal: u64) -> Result<(), Fault> {
        let d = self.i32()?;
        if i64::from(d) != i64::from(self.dim) {
            return bad(format!(
                "{what} has {d} dimensions, manifest.json says {}",
                self.dim
            ));
        }
        let found = self.i64()?;
        if u64::try_from(found).ok() != Some(ntotal) {
            return bad(format!(
                "{what} holds {found} vectors, where {ntotal} are listed"
            ));
        }
        self.skip(16)?;
        if self.u8()? != 1 {
            return bad(format!("{what} is not trained"));
        }
        let metric = self.i32()?;
        if metric != METRIC_INNER_PRODUCT {
            return bad(format!(
                "{what} uses metric type {metric}, not inner product (0)"
            ));
        }
        Ok(())
    }

    fn expect_total(&self, total: u64) -> Result<(), Fault> {
        if total != self.people {
            return bad(format!(
                "the inverted lists hold {total} vectors, where {} are listed",
                self.people
            ));
        }
        Ok(())
    }

    fn fourcc(&mut self, code: &[u8; 4], what: &str) -> Result<(), Fault> {
        let found = self.bytes::<4>()?;
        if &found != code {
            return bad(format!(
                "not {what}: found {:?} where {:?} belongs",
                String::from_utf8_lossy(&found),
                String::from_utf8_lossy(code)
            ));
        }
        Ok(())
    }

    /// A vector's element count, refused when its elements would not fit in what is left.
    fn count(&mut self, element_bytes: u64, what: &str) -> Result<u64, Fault> {
        let count = self.u64()?;
        match count.checked_mul(element_bytes) {
            Some(bytes) if bytes <= self.left => Ok(count),
            _ => bad(format!(
                "{what}: {count} elements would not fit in the {} bytes left",
                self.left
            )),
        }
    }

    fn read_ids(&mut self, count: u64) -> Result<(), Fault> {
        if count.saturating_mul(8) > self.left {
            return bad(format!(
                "{count} ids would not fit in the {} bytes left",
                self.left
            ));
        }
        self.ids.reserve(count as usize);
        for _ in 0..count {
            let id = self.i64()?;
            self.ids.push(id);
        }
        Ok(())
    }

    fn expect_u64(&mut self, expected: u64, what: &str) -> Result<(), Fault> {
        let found = self.u64()?;
        if found != expected {
            return bad(format!("{what} is {found}, expected {expected}"));
        }
        Ok(())
    }

    fn expect_i32(&mut self, expected: i32, what: &str) -> Result<(), Fault> {
        let found = self.i32()?;
        if found != expected {
            return bad(format!("{what} is {found}, expected {expected}"));
        }
        Ok(())
    }

    /// A C++ `bool`, which must be 0 or 1 for FAISS to read it without undefined behaviour.
    fn boolean(&mut self, what: &str) -> Result<(), Fault> {
        match self.u8()? {
            0 | 1 => Ok(()),
            other => bad(format!("{what} is {other}, not a boolean")),
        }
    }

    fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn i32(&mut self) -> Result<i32, Fault> {
        Ok(i32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Fault> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn i64(&mut self) -> Result<i64, Fault> {
        Ok(i64::from_le_bytes(self.bytes()?))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        if (N as u64) > self.left {
            return bad("ends in the middle of the index");
        }
        let mut bytes = [0; N];
        self.reader.read_exact(&mut bytes)?;
        self.hasher.update(bytes);
        self.left -= N as u64;
        Ok(bytes)
    }

    fn skip(&mut self, count: u64) -> Result<(), Fault> {
        if count > self.left {
            return bad("ends in the middle of the index");
        }
        self.consume(count)?;
        Ok(())
    }

    /// Reads what is left, for the checksum.
    fn drain(&mut self) -> io::Result<()> {
        self.consume(self.left)
    }

    fn consume(&mut self, mut count: u64) -> io::Result<()> {
        let mut buffer = [0u8; 8192];
        while count > 0 {
            let chunk = count.min(buffer.len() as u64) as usize;
            self.reader.read_exact(&mut buffer[..chunk])?;
            self.hasher.update(&buffer[..chunk]);
            self.left -= chunk as u64;
            count -= chunk as u64;
        }
        Ok(())
    }
}
