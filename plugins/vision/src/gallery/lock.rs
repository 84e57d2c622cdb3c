// SPDX-License-Identifier: MIT OR Apache-2.0
//! One writer at a time per gallery: an exclusive `flock` on a lock file in its directory, taken
//! before a writer reads the generation it changes and held until that change is committed, so
//! that no commit is ever based on a generation another writer has already replaced.
//!
//! The lock is `std::fs::File::try_lock`, which is `flock(2)` on Linux: it belongs to the open
//! file, so it is released when the holder closes it or dies, and a crashed writer never leaves
//! the gallery locked. The holder writes its pid into the file so that a writer that gives up
//! can say who is in the way. The file is never deleted: deleting a lock file races with a
//! writer that has just opened it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::GalleryError;
use super::files::io_error;

pub(super) const LOCK_NAME: &str = "writer.lock";

/// How long a writer waits for another to commit before refusing: long enough for a commit that
/// retrains a large gallery to finish, short enough that an operator is told rather than left
/// waiting on a writer that is itself waiting for input.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// How often a waiting writer tries again; a commit of a small gallery takes milliseconds.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Held while it lives; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Takes the lock of the gallery in `dir`, waiting up to `wait` for another writer.
    pub fn acquire(dir: &Path, wait: Duration) -> Result<WriteLock, GalleryError> {
        let path = dir.join(LOCK_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path, "open the lock file"))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(error)) => return Err(io_error(&path, "lock")(error)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GalleryError::Busy {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                    waited: wait,
                });
            }
            std::thread::sleep(RETRY_EVERY.min(deadline - now));
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(io_error(&path, "write the lock file"))?;
        Ok(WriteLock { _file: file })
    }
}

impl WriteLock {
    /// A second handle on the same lock: the lock is held until both are dropped (they share one
    /// open file, which is what `flock` locks).
    pub fn try_clone(&self) -> Result<WriteLock, GalleryError> {
        Ok(WriteLock {
            _file: self._file.try_clone().map_err(io_error(
                Path::new(LOCK_NAME),
                "duplicate the lock file's handle",
            ))?,
        })
    }
}

/// The pid the current holder wrote, if it has written it yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
