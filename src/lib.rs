// SPDX-License-Identifier: MIT OR Apache-2.0
//! End-to-end tests for FaceGate live in `tests/`; this crate only gives them a home.
