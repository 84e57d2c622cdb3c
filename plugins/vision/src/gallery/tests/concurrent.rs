// SPDX-License-Identifier: MIT OR Apache-2.0
//! Writers racing on one gallery directory, as threads (each with its own handles, so the lock
//! is contended exactly as between processes) and as child processes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::*;

/// A gallery holding `people` ("p-001"...), committed; its directory is `temp/gallery`.
fn gallery_of(people: u64) -> (TempDir, PathBuf) {
    let (temp, mut gallery) = new_gallery();
    for seed in 1..=people {
        enroll_seeded(&mut gallery, &format!("p-{seed:03}"), seed);
    }
    gallery.commit().unwrap();
    (temp, gallery.dir().to_path_buf())
}

/// A change one writer makes to the gallery it opened.
type Job = Box<dyn FnOnce(&mut Gallery) + Send>;

/// Runs each job on its own thread, all having opened the gallery (at the same generation)
/// before any of them changes it: the read-modify-write race at its widest.
fn race(dir: &Path, jobs: Vec<Job>) {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let threads: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (dir, barrier) = (dir.to_path_buf(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut gallery = Gallery::open(&dir).unwrap();
                barrier.wait();
                job(&mut gallery);
                gallery.commit().unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

const TRIALS: usize = 5;

#[test]
fn concurrent_enrolments_are_all_kept() {
    const WRITERS: u64 = 8;
    for trial in 0..TRIALS {
        let (_temp, dir) = gallery_of(1);
        let jobs = (0..WRITERS)
            .map(|n| {
                Box::new(move |gallery: &mut Gallery| {
                    enroll_seeded(gallery, &format!("p-{:03}", 100 + n), 100 + n)
                }) as Job
            })
            .collect();
        race(&dir, jobs);
        let mut after = Gallery::open(&dir).unwrap();
        assert_eq!(
            after.len() as u64,
            1 + WRITERS,
            "trial {trial}: {:?}",
            ids(&after)
        );
        assert_eq!(
            after.generation(),
            1 + WRITERS,
            "trial {trial}: one generation each"
        );
        assert_everyone_found(&mut after, 1e-4, &format!("trial {trial}"));
    }
}

#[test]
fn a_removal_is_never_undone_by_a_concurrent_enrolment() {
    for trial in 0..TRIALS {
        let (_temp, dir) = gallery_of(2);
        race(
            &dir,
            vec![
                Box::new(|gallery: &mut Gallery| assert!(gallery.remove("p-001").unwrap())),
                Box::new(|gallery: &mut Gallery| enroll_seeded(gallery, "p-003", 3)),
            ],
        );
        let after = Gallery::open(&dir).unwrap();
        assert_eq!(ids(&after), ["p-002", "p-003"], "trial {trial}");
    }
}

#[test]
fn twelve_concurrent_removals_leave_a_gallery_that_opens() {
    for trial in 0..TRIALS {
        let (_temp, dir) = gallery_of(13);
        let jobs = (1..=12)
            .map(|n| {
                Box::new(move |gallery: &mut Gallery| {
                    assert!(gallery.remove(&format!("p-{n:03}")).unwrap())
                }) as Job
            })
            .collect();
        race(&dir, jobs);
        let after = Gallery::open(&dir).unwrap_or_else(|error| panic!("trial {trial}: {error}"));
        assert_eq!(ids(&after), ["p-013"], "trial {trial}");
        assert_eq!(after.generation(), 13, "trial {trial}");
        let expected: BTreeSet<String> = [
            "identities-12.json",
            "identities-13.json",
            "index-12.faiss",
            "index-13.faiss",
            "manifest.json",
            "writer.lock",
        ]
        .map(String::from)
        .into();
        assert_eq!(file_names(&dir), expected, "trial {trial}");
    }
}

/// The child process's part of `a_writer_in_another_process_is_waited_for_or_named`: it stages
/// an enrolment (taking the lock), says so, holds it for the time given, then commits.
#[test]
#[ignore = "run as a child process by a_writer_in_another_process_is_waited_for_or_named"]
fn child_writer() {
    let dir = PathBuf::from(std::env::var_os("FACEGATE_TEST_GALLERY").expect("gallery dir"));
    let hold: u64 = std::env::var("FACEGATE_TEST_HOLD_MS")
        .unwrap()
        .parse()
        .unwrap();
    let mut gallery = Gallery::open(&dir).unwrap();
    enroll_seeded(&mut gallery, "p-050", 50);
    println!("staged");
    std::thread::sleep(Duration::from_millis(hold));
    gallery.commit().unwrap();
}

#[test]
fn a_writer_in_another_process_is_waited_for_or_named() {
    let (_temp, dir) = gallery_of(2);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gallery::tests::concurrent::child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FACEGATE_TEST_GALLERY", &dir)
        .env("FACEGATE_TEST_HOLD_MS", "1500")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|line| line.unwrap().contains("staged")),
        "the child never staged its enrolment"
    );

    // Opened while the child holds the lock: a short wait gives up with one line naming it.
    let mut gallery = Gallery::open(&dir).unwrap();
    gallery.set_lock_wait(Duration::from_millis(100));
    let error = gallery.remove("p-001").unwrap_err();
    let expected = format!(
        "gallery {} is being changed by another process (pid {})",
        dir.display(),
        child.id()
    );
    assert!(
        matches!(error, GalleryError::Busy { .. }) && error.to_string().starts_with(&expected),
        "{error}"
    );
    assert_one_line_naming(&error, &dir.display().to_string());
    assert!(gallery.contains("p-001"), "nothing was staged");

    // A longer wait outlasts the child's commit, and the removal is made to what it committed.
    gallery.set_lock_wait(Duration::from_secs(30));
    let started = Instant::now();
    assert!(gallery.remove("p-001").unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "did not wait"
    );
    gallery.commit().unwrap();
    assert!(child.wait().unwrap().success());
    let after = Gallery::open(&dir).unwrap();
    assert_eq!(ids(&after), ["p-002", "p-050"]);
    assert_eq!(after.generation(), 3);
}

#[test]
fn open_for_write_holds_the_lock_until_commit() {
    let (_temp, dir) = gallery_of(1);
    let mut writer = Gallery::open_for_write(&dir).unwrap();
    let mut other = Gallery::open(&dir).unwrap();
    other.set_lock_wait(Duration::from_millis(50));
    assert!(matches!(
        other.remove("p-001"),
        Err(GalleryError::Busy { pid: Some(_), .. })
    ));
    enroll_seeded(&mut writer, "p-002", 2);
    writer.commit().unwrap();
    assert!(
        other.remove("p-001").unwrap(),
        "the lock is free after the commit"
    );
    other.commit().unwrap();
    assert_eq!(ids(&Gallery::open(&dir).unwrap()), ["p-002"]);
}
