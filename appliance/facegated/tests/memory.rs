// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's memory across pipeline rebuilds: the real service on a short walk-up clip with
//! exit_on_eos = false, so that every end of stream tears the pipeline down and builds a new one
//! (models loaded again). The resident set is sampled at each rebuild, as `make soak`
//! (scripts/soak-rebuilds.py) does for longer runs.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use facegate_devtools::gate_rig::{GateRig, RigFiles, enrolled};

/// Rebuilds sampled; the first few are the warm-up the comparison starts after.
const REBUILDS: usize = 12;
/// Resident set growth allowed between rebuilds 2-4 and 10-12. Before the allocator's arenas
/// were limited and freed memory returned after each teardown it grew by 3-14 MB a rebuild
/// (over 100 MB between the two windows); since, samples vary within a few MB.
const ALLOWED_GROWTH_KIB: u64 = 24 * 1024;

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

#[test]
fn rebuilding_the_file_pipeline_does_not_grow_the_resident_set() {
    let mut files = RigFiles::repository_defaults().expect("repository files");
    files.facegated = env!("CARGO_BIN_EXE_facegated").into();
    files.video = files.video.with_file_name("walkup_person_b.avi");
    assert!(
        files.video.exists(),
        "{} is missing: run `make setup`",
        files.video.display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut rig = GateRig::new(files, scratch.path(), &enrolled()).expect("rig starts");
    for (name, value) in [
        ("FACEGATE_PIPELINE__EXIT_ON_EOS", "false"),
        ("FACEGATE_PIPELINE__RESTART_MIN_MS", "100"),
        ("FACEGATE_PIPELINE__RESTART_MAX_MS", "200"),
    ] {
        rig.extra_env.push((name.into(), value.into()));
    }
    let mut service = rig.spawn().unwrap();
    let pid = service.id();

    let mut log = BufReader::new(std::fs::File::open(&rig.log).unwrap());
    let mut samples = Vec::new();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30 * REBUILDS as u64);
    while samples.len() < REBUILDS {
        assert!(
            service.try_wait().unwrap().is_none(),
            "facegated exited after {} rebuilds; log: {}",
            samples.len(),
            std::fs::read_to_string(&rig.log).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "only {} rebuilds in time",
            samples.len()
        );
        // read_line appends: a line still being written is completed by the next read.
        if log.read_line(&mut line).unwrap() == 0 || !line.ends_with('\n') {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        if line.contains("stream ended; restarting") {
            samples.push(resident_kib(pid));
        }
        line.clear();
    }
    let _ = service.kill();
    let early = median(&samples[1..4]);
    let late = median(&samples[REBUILDS - 3..]);
    assert!(
        late <= early + ALLOWED_GROWTH_KIB,
        "resident set grew from {early} KiB to {late} KiB over {REBUILDS} rebuilds: {samples:?}"
    );
}
