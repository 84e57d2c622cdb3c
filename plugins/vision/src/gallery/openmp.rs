// SPDX-License-Identifier: MIT OR Apache-2.0
//! FAISS's OpenMP threads, for calls on one query or one enrolment.
//!
//! Such calls gain nothing from a second thread (FAISS parallelises over queries, and measured
//! single-query latency is the same with one or two), but each parallel region they enter waits
//! for every thread of the team. On a busy machine one of them is often descheduled, and the
//! region then lasts a scheduler time slice: on a loaded two-core machine the crash tests
//! (thousands of single enrolments) took 268 s with two threads and 3.6 s with one, and query
//! p99 at 100k people went from 12 to 69 ms. The gate's cores are busy with inference, so its
//! searches run on the calling thread alone; commits, which train and add in bulk, keep the team.

use std::ffi::c_int;

// libgomp: faiss-sys links it for FAISS's own use. Both act on the calling thread's OpenMP
// setting only (`nthreads-var` is per thread), so other threads' FAISS calls are unaffected.
unsafe extern "C" {
    safe fn omp_get_max_threads() -> c_int;
    safe fn omp_set_num_threads(threads: c_int);
}

/// Keeps FAISS on the calling thread while it lives, then restores the previous setting.
pub(super) struct OneThread {
    previous: c_int,
}

impl OneThread {
    pub fn new() -> OneThread {
        let previous = omp_get_max_threads();
        omp_set_num_threads(1);
        OneThread { previous }
    }
}

impl Drop for OneThread {
    fn drop(&mut self) {
        omp_set_num_threads(self.previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restores_the_previous_setting() {
        let before = omp_get_max_threads();
        {
            let _one = OneThread::new();
            assert_eq!(omp_get_max_threads(), 1);
        }
        assert_eq!(omp_get_max_threads(), before);
    }
}
