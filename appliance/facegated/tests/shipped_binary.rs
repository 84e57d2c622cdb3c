// SPDX-License-Identifier: MIT OR Apache-2.0
//! What ships on a gate knows nothing of the machine it was built on.

#[test]
fn facegated_carries_no_build_machine_path() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_facegated"));
    let found = facegate_dev_assets::build_paths_in(binary).unwrap();
    assert!(found.is_empty(), "{} names {found:?}", binary.display());
}
