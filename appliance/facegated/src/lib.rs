// SPDX-License-Identifier: MIT OR Apache-2.0
//! facegated, the gate service on the gate's Raspberry Pi: runs the recognition pipeline,
//! decides, journals every passage, drives the gate and reports over D-Bus
//! (docs/GATE-SERVICE.md). `main.rs` is the program; this library is its parts, public where
//! the service's own tests and the development rig (which reads the journal and the simulated
//! gate's record) need them.

pub mod bus;
pub mod config;
mod description;
pub mod fleet;
pub mod gallery;
pub mod gate;
pub mod journal;
pub mod memory;
mod observation;
mod policy;
pub mod service;
mod turnstile;
