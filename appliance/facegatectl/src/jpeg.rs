// SPDX-License-Identifier: MIT OR Apache-2.0
//! A JPEG cut short still decodes: libjpeg fills the missing rows with grey and only says so in
//! GStreamer's debug log, so a truncated photo would be enrolled or identified from what is left.
//! A complete JPEG ends with its end-of-image marker; this looks for it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const START_OF_IMAGE: [u8; 3] = [0xFF, 0xD8, 0xFF];
const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];
/// What is wrong with a file [`is_truncated`] finds.
pub const TRUNCATED: &str =
    "the JPEG ends before its end-of-image marker (truncated, or data appended after it)";
/// Writers may pad a file after its end-of-image marker; this much padding is looked through.
const TAIL_BYTES: u64 = 4096;

/// Whether `path` is a JPEG whose data stops before its end-of-image marker (zero padding after
/// the marker is allowed). Any other file is not a truncated JPEG.
pub fn is_truncated(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut start = [0u8; 3];
    if file.read(&mut start)? < start.len() || start != START_OF_IMAGE {
        return Ok(false);
    }
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let end = tail
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |i| i + 1);
    Ok(!tail[..end].ends_with(&END_OF_IMAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        let cut = written(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46]);
        assert!(is_truncated(cut.path()).unwrap());
    }

    #[test]
    fn a_complete_or_padded_jpeg_and_other_files_are_not() {
        let whole = written(&[0xFF, 0xD8, 0xFF, 0xE0, 0x12, 0xFF, 0xD9]);
        let padded = written(&[0xFF, 0xD8, 0xFF, 0xE0, 0x12, 0xFF, 0xD9, 0, 0, 0]);
        let png = written(b"\x89PNG\r\n\x1a\n....");
        for file in [&whole, &padded, &png] {
            assert!(!is_truncated(file.path()).unwrap());
        }
    }
}
