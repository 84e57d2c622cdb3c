// SPDX-License-Identifier: MIT OR Apache-2.0
//! What ships on a gate knows nothing of the machine it was built on.

#[test]
fn facegated_carries_no_build_machine_path() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_facegated"));
    let found = facegate_dev_assets::build_paths_in(binary).unwrap();
    assert!(found.is_empty(), "{} names {found:?}", binary.display());
}

#[test]
fn the_service_depends_on_no_development_code() {
    let tree = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            "facegated",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        tree.status.success(),
        "{}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let tree = String::from_utf8_lossy(&tree.stdout);
    assert!(tree.contains("facegate-dbus"), "{tree}");
    // The demo rig, the benchmarks and their helpers, and the test assets' table.
    for development in [
        "facegate-devtools",
        "facegate-dev-assets",
        "hdrhistogram",
        "procfs",
    ] {
        assert!(
            !tree.contains(development),
            "facegated depends on {development}:\n{tree}"
        );
    }
}
