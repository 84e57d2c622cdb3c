// SPDX-License-Identifier: MIT OR Apache-2.0
//! FaceGate's development tools, never shipped on a gate: the gate demo and the rig it runs on
//! (facegated on a private D-Bus with a simulated gate, fed a walk-up video), the recognition
//! demo and the benchmarks behind docs/BENCHMARKS.md. They know the repository they were built
//! from (its configs, pipelines, scripts and `.assets`); the gate software does not.

pub mod attack_video;
pub mod bench;
pub mod corpus_cast;
pub mod gate_rig;
pub mod pad_trial;
pub mod private_bus;
pub mod recognition_demo;
pub mod token_scene;
pub mod walkup_video;
