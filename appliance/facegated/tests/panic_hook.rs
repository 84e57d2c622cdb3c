// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated's panic hook: a panic in any thread puts the gate's outputs in their safe state, is
//! logged, and ends the process (so systemd restarts it, rather than a service with a dead thread
//! answering D-Bus as if it ran). The hook aborts whatever process installs it, so the test runs
//! it in a child: this same test binary, started again with an environment variable set.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use facegated::gate::{self, Cause, GateConfig, Level, Output};

/// Set in the child: the directory for its gate's action log.
const CHILD_DIR: &str = "FACEGATE_PANIC_HOOK_TEST_DIR";
const TEST_NAME: &str = "a_panic_in_a_thread_holding_the_gate_releases_the_relay_and_aborts";

fn config(dir: &Path) -> GateConfig {
    GateConfig {
        actions_log: dir.join("gate-actions.jsonl"),
        pulse_ms: 10_000,
        ..GateConfig::default()
    }
}

/// The child: a gate with the hook installed, a grant's pulse running, and a thread that panics
/// while it holds the gate (as the decider does while it drives it).
fn panic_with_the_relay_on(dir: &Path) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let gate = gate::open(&config(dir)).unwrap();
    facegated::service::fail_safe_on_panic(gate.safe_state_handle());
    let gate = Arc::new(Mutex::new(gate));
    let decider = Arc::clone(&gate);
    let thread = std::thread::spawn(move || {
        let mut gate = decider.lock().unwrap();
        gate.grant().unwrap();
        panic!("the decider broke while holding the gate");
    });
    let _ = thread.join();
    // Reached only if the hook did not end the process.
    std::process::exit(0);
}

#[test]
fn a_panic_in_a_thread_holding_the_gate_releases_the_relay_and_aborts() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        panic_with_the_relay_on(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(nix::sys::signal::Signal::SIGABRT as i32),
        "the process aborts ({:?}): {stderr}",
        output.status
    );
    assert!(
        stderr.contains("the decider broke while holding the gate"),
        "{stderr}"
    );
    assert!(stderr.contains("the gate is in its safe state"), "{stderr}");
    let actions = gate::read_actions(&config(dir.path()).actions_log).unwrap();
    let relay: Vec<_> = actions
        .iter()
        .filter(|a| a.output == Output::Relay)
        .map(|a| (a.level, a.cause))
        .collect();
    assert_eq!(
        relay,
        [
            (Level::Off, Cause::SafeState),
            (Level::On, Cause::Grant),
            (Level::Off, Cause::SafeState),
        ],
        "open, grant, then the hook's safe state: {actions:?}"
    );
}
