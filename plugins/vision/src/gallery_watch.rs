// SPDX-License-Identifier: MIT OR Apache-2.0
//! Following a gallery directory from a background thread, so the video thread switches to a new
//! generation without ever waiting for it to load.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::gallery::{Gallery, GalleryError};

/// What the watcher thread is asked between two polls.
#[derive(Debug, Default)]
struct Asked {
    stop: bool,
    /// Look at the directory now rather than at the end of the poll interval.
    check: bool,
}

type StopFlag = Arc<(Mutex<Asked>, Condvar)>;

/// Polls a gallery's generation and loads each new one off the caller's thread.
pub struct GalleryWatcher {
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
    updates: Receiver<Result<Gallery, GalleryError>>,
}

/// What every generation the watcher loads must be: of the model and dimension of the one the
/// caller started with, so that a gallery swapped for another model's is refused, not searched.
#[derive(Clone, Debug)]
struct Requirement {
    model: String,
    dim: u32,
}

impl GalleryWatcher {
    /// Follows the directory of `gallery`, which the caller has open, every `poll`; a new
    /// generation of another model or dimension is refused (reported, and the caller keeps its
    /// gallery) before its index is read.
    pub fn follow(gallery: &Gallery, poll: Duration) -> std::io::Result<Self> {
        let requirement = Requirement {
            model: gallery.model().to_owned(),
            dim: gallery.dim(),
        };
        Self::start(
            gallery.dir().to_path_buf(),
            gallery.generation(),
            poll,
            Some(requirement),
        )
    }

    /// Watches `dir`, which currently holds `generation`, every `poll`. Every new generation is
    /// checked as `Gallery::open` checks it, but may be of any model; `follow` also requires the
    /// caller's.
    pub fn spawn(dir: PathBuf, generation: u64, poll: Duration) -> std::io::Result<Self> {
        Self::start(dir, generation, poll, None)
    }

    fn start(
        dir: PathBuf,
        generation: u64,
        poll: Duration,
        requirement: Option<Requirement>,
    ) -> std::io::Result<Self> {
        let stop: StopFlag = Arc::new((Mutex::new(Asked::default()), Condvar::new()));
        // One pending update at most: a newer one is loaded again once the caller has taken it.
        let (sender, updates) = sync_channel(1);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fg-gallery-watch".into())
            .spawn(move || {
                watch(
                    &dir,
                    generation,
                    poll,
                    requirement.as_ref(),
                    &thread_stop,
                    &sender,
                )
            })?;
        Ok(GalleryWatcher {
            stop,
            thread: Some(thread),
            updates,
        })
    }

    /// A newly loaded generation, or the reason the newest one could not be loaded, if any.
    pub fn try_update(&self) -> Option<Result<Gallery, GalleryError>> {
        self.updates.try_recv().ok()
    }

    /// Looks at the directory now instead of at the end of the current poll interval (staff
    /// who just committed a generation); what it finds arrives through [`Self::try_update`].
    pub fn check_now(&self) {
        let (asked, wake) = &*self.stop;
        asked.lock().unwrap_or_else(|e| e.into_inner()).check = true;
        wake.notify_all();
    }
}

impl Drop for GalleryWatcher {
    fn drop(&mut self) {
        let (asked, wake) = &*self.stop;
        asked.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(
    dir: &Path,
    mut current: u64,
    poll: Duration,
    requirement: Option<&Requirement>,
    stop: &StopFlag,
    sender: &SyncSender<Result<Gallery, GalleryError>>,
) {
    let mut reported_failure: Option<u64> = None;
    // The first look is at once: a generation committed between the caller's open and this
    // thread's start is not left for a whole interval.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let (asked, wake) = &**stop;
            let guard = asked.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = wake
                .wait_timeout_while(guard, poll, |asked| !asked.stop && !asked.check)
                .unwrap_or_else(|e| e.into_inner());
            if guard.stop {
                return;
            }
            guard.check = false;
        }
        let (generation, update) = match Gallery::read_generation(dir) {
            Ok(generation) if generation == current => continue,
            Ok(generation) => (generation, open(dir, requirement)),
            // A commit in progress can make a read fail once; it is reported as failing
            // "generation" u64::MAX, once, and retried quietly.
            Err(error) => (u64::MAX, Err(error)),
        };
        if update.is_err() && reported_failure == Some(generation) {
            continue;
        }
        let loaded = update.as_ref().map(Gallery::generation).ok();
        // The caller's gallery stays in use whatever happens here; what is not delivered now
        // (one pending update at most) is loaded again once the caller has taken the last.
        match sender.try_send(update) {
            Ok(()) => match loaded {
                Some(loaded) => {
                    current = loaded;
                    reported_failure = None;
                }
                None => reported_failure = Some(generation),
            },
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

fn open(dir: &Path, requirement: Option<&Requirement>) -> Result<Gallery, GalleryError> {
    match requirement {
        Some(required) => Gallery::open_matching(dir, &required.model, required.dim),
        None => Gallery::open(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn unit(seed: usize, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim)
            .map(|i| ((i * 7 + seed * 13) % 17) as f32 - 8.0)
            .collect();
        crate::embedder::normalise(&mut v);
        v
    }

    fn wait_for_update(watcher: &GalleryWatcher) -> Result<Gallery, GalleryError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(update) = watcher.try_update() {
                return update;
            }
            assert!(
                Instant::now() < deadline,
                "no update from the watcher within 5 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn check_now_looks_at_once_instead_of_at_the_end_of_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut gallery = Gallery::create(dir.path(), "m", 8).unwrap();
        let watcher =
            GalleryWatcher::spawn(dir.path().to_path_buf(), 0, Duration::from_secs(3600)).unwrap();
        gallery
            .enroll("p-1", "One", "m", &unit(1, 8), false)
            .unwrap();
        let generation = gallery.commit().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(watcher.try_update().is_none(), "not before the hour is up");
        watcher.check_now();
        let loaded = wait_for_update(&watcher).unwrap();
        assert_eq!(loaded.generation(), generation);
    }

    #[test]
    fn delivers_each_new_generation_and_reports_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut gallery = Gallery::create(dir.path(), "m", 8).unwrap();
        let watcher =
            GalleryWatcher::spawn(dir.path().to_path_buf(), 0, Duration::from_millis(10)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(watcher.try_update().is_none(), "nothing changed yet");

        gallery
            .enroll("p-1", "One", "m", &unit(1, 8), false)
            .unwrap();
        let generation = gallery.commit().unwrap();
        let loaded = wait_for_update(&watcher).unwrap();
        assert_eq!((loaded.generation(), loaded.len()), (generation, 1));

        std::fs::write(dir.path().join("manifest.json"), b"{ not json").unwrap();
        let error = wait_for_update(&watcher).unwrap_err();
        assert!(error.to_string().contains("manifest.json"), "{error}");
        std::thread::sleep(Duration::from_millis(50));
        assert!(watcher.try_update().is_none(), "a failure is reported once");
    }

    /// Enrols `id` and commits, then crafts the new index file (with checksums to match) so
    /// that FAISS's Rust binding would panic on it: an unknown metric type (L1, and the metric
    /// argument FAISS then reads).
    fn commit_crafted(gallery: &mut Gallery, id: &str, seed: usize) -> u64 {
        gallery.enroll(id, "", "m", &unit(seed, 8), false).unwrap();
        let generation = gallery.commit().unwrap();
        let index = gallery.dir().join(format!("index-{generation}.faiss"));
        let mut bytes = std::fs::read(&index).unwrap();
        bytes[33..37].copy_from_slice(&2i32.to_le_bytes());
        bytes.splice(37..37, 0f32.to_le_bytes());
        std::fs::write(&index, bytes).unwrap();
        crate::gallery::tests::rewrite_checksums(gallery.dir());
        generation
    }

    #[test]
    fn a_refused_generation_is_reported_and_the_next_good_one_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let mut gallery = Gallery::create(dir.path(), "m", 8).unwrap();
        // Crafted before the watcher starts (following generation 0), so that it never sees
        // the honest generation the crafted one was made from.
        let crafted = commit_crafted(&mut gallery, "p-1", 1);
        let watcher =
            GalleryWatcher::spawn(dir.path().to_path_buf(), 0, Duration::from_millis(10)).unwrap();
        let error = wait_for_update(&watcher).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("index-{crafted}.faiss"))
                && message.contains("metric type 2"),
            "{message}"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(watcher.try_update().is_none(), "a refusal is reported once");

        gallery.enroll("p-2", "", "m", &unit(2, 8), false).unwrap();
        let good = gallery.commit().unwrap();
        let loaded = wait_for_update(&watcher).unwrap();
        assert_eq!((loaded.generation(), loaded.len()), (good, 2));
    }

    #[test]
    fn follow_refuses_a_generation_of_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let gallery = Gallery::create(dir.path(), "m", 8).unwrap();
        let watcher = GalleryWatcher::follow(&gallery, Duration::from_millis(10)).unwrap();
        // Another model's generation 1 swapped in, its manifest last, as a commit would.
        let elsewhere = tempfile::tempdir().unwrap();
        let mut other = Gallery::create(elsewhere.path(), "other-model", 8).unwrap();
        other
            .enroll("p-1", "", "other-model", &unit(1, 8), false)
            .unwrap();
        other.commit().unwrap();
        for name in ["index-1.faiss", "identities-1.json", "manifest.json"] {
            std::fs::rename(elsewhere.path().join(name), dir.path().join(name)).unwrap();
        }
        let error = wait_for_update(&watcher).unwrap_err();
        assert!(
            matches!(error, GalleryError::ModelMismatch { .. }),
            "{error}"
        );
    }
}
