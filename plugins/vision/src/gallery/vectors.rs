// SPDX-License-Identifier: MIT OR Apache-2.0
//! The enrolled embeddings as they were given, kept on disk beside a compressed index. The index
//! holds only lossy codes, and retraining it for a larger gallery (or going back to exact search)
//! needs the originals. Only writers read this file; the gate never loads it.
//!
//! Layout: a 16-byte header (magic, dim as u32 LE, 4 reserved zero bytes), then one record per
//! person in FAISS id order: the id as i64 LE and `dim` f32 LE.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::GalleryError;
use super::files::{self, FileEntry};

const MAGIC: &[u8; 8] = b"FGVECS01";
const HEADER_BYTES: u64 = 16;
const BUFFER_BYTES: usize = 1 << 20;

fn record_bytes(dim: u32) -> u64 {
    8 + 4 * u64::from(dim)
}

fn header(dim: u32) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&dim.to_le_bytes());
    header
}

/// Writes a vectors file, hashing as it goes so the manifest entry needs no second read.
pub(super) struct VectorsWriter {
    path: PathBuf,
    name: String,
    file: BufWriter<File>,
    hasher: Sha256,
    bytes: u64,
    record: Vec<u8>,
}

impl VectorsWriter {
    pub fn create(dir: &Path, name: String, dim: u32) -> Result<VectorsWriter, GalleryError> {
        let path = dir.join(&name);
        let file = File::create(&path).map_err(files::io_error(&path, "create"))?;
        let mut writer = VectorsWriter {
            path,
            name,
            file: BufWriter::with_capacity(BUFFER_BYTES, file),
            hasher: Sha256::new(),
            bytes: 0,
            record: Vec::with_capacity(record_bytes(dim) as usize),
        };
        writer.write(&header(dim))?;
        Ok(writer)
    }

    pub fn push(&mut self, faiss_id: i64, vector: &[f32]) -> Result<(), GalleryError> {
        let mut record = std::mem::take(&mut self.record);
        record.clear();
        record.extend_from_slice(&faiss_id.to_le_bytes());
        for value in vector {
            record.extend_from_slice(&value.to_le_bytes());
        }
        let written = self.write(&record);
        self.record = record;
        written
    }

    /// Flushes and fsyncs; the entry is what the manifest records.
    pub fn finish(self) -> Result<FileEntry, GalleryError> {
        let file = self
            .file
            .into_inner()
            .map_err(|error| files::io_error(&self.path, "write")(error.into_error()))?;
        file.sync_all()
            .map_err(files::io_error(&self.path, "fsync"))?;
        Ok(FileEntry {
            name: self.name,
            sha256: format!("{:x}", self.hasher.finalize()),
            bytes: self.bytes,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), GalleryError> {
        self.file
            .write_all(bytes)
            .map_err(files::io_error(&self.path, "write"))?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

/// Reads a vectors file named by the manifest in chunks. The checksum can only be checked at the
/// end, so callers build nothing visible from the data before `next_chunk` has returned 0: the
/// commit that reads it switches the manifest only after that.
pub(super) struct VectorsReader {
    path: PathBuf,
    entry: FileEntry,
    file: BufReader<File>,
    hasher: Sha256,
    dim: usize,
    remaining: u64,
    record: Vec<u8>,
}

impl VectorsReader {
    pub fn open(dir: &Path, entry: &FileEntry, dim: u32) -> Result<VectorsReader, GalleryError> {
        let path = dir.join(&entry.name);
        let corrupt = |problem: String| GalleryError::Corrupt {
            path: path.clone(),
            problem,
        };
        let file = files::open_listed(&path, entry)?;
        let actual = entry.bytes;
        let body = actual.checked_sub(HEADER_BYTES).unwrap_or(u64::MAX);
        if !body.is_multiple_of(record_bytes(dim)) {
            return Err(corrupt(format!(
                "{actual} bytes is not a header and whole {dim}-dimensional records"
            )));
        }
        let mut reader = VectorsReader {
            path: path.clone(),
            entry: entry.clone(),
            file: BufReader::with_capacity(BUFFER_BYTES, file),
            hasher: Sha256::new(),
            dim: dim as usize,
            remaining: body / record_bytes(dim),
            record: vec![0; record_bytes(dim) as usize],
        };
        let mut found = [0; HEADER_BYTES as usize];
        reader.read(&mut found)?;
        if found != header(dim) {
            return Err(corrupt(format!(
                "not a vectors file of {dim} dimensions (bad header)"
            )));
        }
        Ok(reader)
    }

    /// Appends up to `max` records to `ids` and `vectors` and returns how many; 0 at the end,
    /// which is when the checksum is verified.
    pub fn next_chunk(
        &mut self,
        max: usize,
        ids: &mut Vec<i64>,
        vectors: &mut Vec<f32>,
    ) -> Result<usize, GalleryError> {
        if self.remaining == 0 {
            let actual = format!("{:x}", self.hasher.clone().finalize());
            files::check_sha256(&self.path, &self.entry, &actual)?;
            return Ok(0);
        }
        let count = max.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut record = std::mem::take(&mut self.record);
        for _ in 0..count {
            if let Err(error) = self.read(&mut record) {
                self.record = record;
                return Err(error);
            }
            let (id, values) = record.split_at(8);
            ids.push(i64::from_le_bytes(id.try_into().expect("8 bytes")));
            vectors.extend(
                values
                    .chunks_exact(4)
                    .map(|v| f32::from_le_bytes(v.try_into().expect("4 bytes"))),
            );
        }
        self.record = record;
        self.remaining -= count as u64;
        debug_assert_eq!(vectors.len() % self.dim, 0);
        Ok(count)
    }

    fn read(&mut self, buffer: &mut [u8]) -> Result<(), GalleryError> {
        self.file
            .read_exact(buffer)
            .map_err(files::io_error(&self.path, "read"))?;
        self.hasher.update(&*buffer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = VectorsWriter::create(dir.path(), files::VECTORS_FILE.name(3), 2).unwrap();
        for id in 0..5 {
            writer.push(id * 10, &[id as f32, -0.5]).unwrap();
        }
        let entry = writer.finish().unwrap();
        assert_eq!(entry.bytes, 16 + 5 * 16);

        let mut reader = VectorsReader::open(dir.path(), &entry, 2).unwrap();
        let (mut ids, mut vectors) = (Vec::new(), Vec::new());
        while reader.next_chunk(2, &mut ids, &mut vectors).unwrap() > 0 {}
        assert_eq!(ids, [0, 10, 20, 30, 40]);
        assert_eq!(&vectors[6..8], [3.0, -0.5]);

        assert!(
            VectorsReader::open(dir.path(), &entry, 3).is_err(),
            "wrong dim"
        );
        let path = dir.path().join(&entry.name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let mut reader = VectorsReader::open(dir.path(), &entry, 2).unwrap();
        let error = loop {
            match reader.next_chunk(2, &mut ids, &mut vectors) {
                Ok(0) => panic!("a changed byte went unnoticed"),
                Ok(_) => {}
                Err(error) => break error,
            }
        };
        assert!(error.to_string().contains("vectors-3.f32"), "{error}");
        assert!(error.to_string().contains("sha256"), "{error}");
    }
}
