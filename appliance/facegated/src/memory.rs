// SPDX-License-Identifier: MIT OR Apache-2.0
//! The C allocator's settings for a service that rebuilds its pipeline for as long as it runs.
//!
//! Every pipeline build loads the detector and the embedder (ONNX Runtime sessions, about 90 MB
//! of heap at peak) on threads that the pipeline starts and ends: GStreamer's streaming threads
//! and ONNX Runtime's pools. glibc's malloc gives each new thread an arena of its own, up to
//! eight per core, and keeps what was freed in each for reuse instead of returning it, so the
//! resident set grew by 3-14 MB a rebuild although the heap in use went back to about 9 MB
//! after each (docs/RELIABILITY.md, "Memory across pipeline rebuilds"). Two arenas, and the
//! freed memory handed back after each teardown, keep it flat.

/// Arenas glibc's malloc may create; the streaming threads then share them.
const MALLOC_ARENAS: i32 = 2;

/// Limits the allocator's arenas. Call first in `main`, before any thread exists.
pub fn limit_allocator_arenas() {
    // SAFETY: mallopt only sets a tunable; it is called before other threads exist.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    };
}

/// Hands memory that was freed (a torn-down pipeline's) back to the system.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    };
}
