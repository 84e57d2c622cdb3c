//! Following a gallery directory from a background thread, so the video thread switches to a new
//! generation without ever waiting for it to load.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::gallery::{Gallery, GalleryError};

type StopFlag = Arc<(Mutex<bool>, Condvar)>;

/// Polls a gallery's generation and loads each new one off the caller's thread.
pub struct GalleryWatcher {
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
    updates: Receiver<Result<Gallery, GalleryError>>,
}

impl GalleryWatcher {
    /// Watches `dir`, which currently holds `generation`, every `poll`.
    pub fn spawn(dir: PathBuf, generation: u64, poll: Duration) -> std::io::Result<Self> {
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        // One pending update at most: a newer one is loaded again once the caller has taken it.
        let (sender, updates) = sync_channel(1);
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("fg-gallery-watch".into())
            .spawn(move || watch(&dir, generation, poll, &thread_stop, &sender))?;
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
}

impl Drop for GalleryWatcher {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(
    dir: &std::path::Path,
    mut current: u64,
    poll: Duration,
    stop: &StopFlag,
    sender: &SyncSender<Result<Gallery, GalleryError>>,
) {
    let mut reported_failure: Option<u64> = None;
    loop {
        {
            let (stopped, wake) = &**stop;
            let guard = stopped.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = wake
                .wait_timeout_while(guard, poll, |stopped| !*stopped)
                .unwrap_or_else(|e| e.into_inner());
            if *guard {
                return;
            }
        }
        let update = match Gallery::read_generation(dir) {
            Ok(generation) if generation == current => continue,
            Ok(generation) => Gallery::open(dir).map(|gallery| (generation, gallery)),
            Err(e) => Err(e),
        };
        let message = match update {
            Ok((generation, gallery)) => {
                current = generation;
                reported_failure = None;
                Ok(gallery)
            }
            // A commit in progress can make a read fail once; report each failing generation
            // once and keep retrying quietly.
            Err(e) => {
                let failing = Gallery::read_generation(dir).unwrap_or(u64::MAX);
                if reported_failure == Some(failing) {
                    continue;
                }
                reported_failure = Some(failing);
                Err(e)
            }
        };
        match sender.try_send(message) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
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
}
