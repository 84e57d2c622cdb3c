// SPDX-License-Identifier: MIT OR Apache-2.0
//! Whether the gate may match faces against the fleet's gallery now: only under a lease from
//! the office that has not run out, and only holding the gallery generation the lease names.
//! A gate cut off from the office therefore stops recognising anyone within `lease` of its last
//! renewal, and once back, matches again only after it has applied every change the office
//! made meanwhile, removals first among them.
//!
//! The gate's clock decides when a lease has run out, so gates keep time (NTP, as the journal's
//! timestamps need anyway); a gate clock running slow by as much as the lease keeps matching
//! that much longer.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use facegate_fleet::gallery::Lease;
use tracing::{info, warn};

/// Shared by the gallery follower (which renews it and records each generation applied) and
/// the decider (which asks it before every decision). A gate outside a fleet's gallery has
/// no lease to keep: it always may match.
#[derive(Clone, Debug, Default)]
pub struct GalleryLease(Option<Arc<Mutex<Held>>>);

#[derive(Debug, Default)]
struct Held {
    lease: Option<Lease>,
    generation: u64,
    /// The last answer given, so that a change of it is logged once.
    refused: Option<String>,
}

impl GalleryLease {
    /// For a gate whose gallery is its own.
    pub fn island() -> GalleryLease {
        GalleryLease(None)
    }

    /// For a gate following the fleet's gallery: no matching until a lease comes.
    pub fn required() -> GalleryLease {
        GalleryLease(Some(Arc::new(Mutex::new(Held {
            refused: Some(String::new()),
            ..Held::default()
        }))))
    }

    /// Why the gate may not match at `now`, or `None` if it may; a change of answer is logged.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<String> {
        let held = self.0.as_ref()?;
        let Ok(mut held) = held.lock() else {
            return Some("the lease's lock is poisoned".into());
        };
        let refused = match &held.lease {
            None => Some("no lease from the office yet".to_owned()),
            Some(lease) => lease.refusal(held.generation, now),
        };
        if refused != held.refused {
            match &refused {
                Some(why) => {
                    warn!("fleet: 1:N matching stops: {why}; faces are denied gallery-stale")
                }
                None => info!(
                    "fleet: 1:N matching under the office's lease, gallery generation {}",
                    held.generation
                ),
            }
            held.refused = refused.clone();
        }
        refused
    }

    /// A verified lease from the office; an older one than held (a redelivery) is ignored.
    pub(crate) fn renew(&self, lease: Lease) {
        let Some(Ok(mut held)) = self.0.as_ref().map(|h| h.lock()) else {
            return;
        };
        if held
            .lease
            .as_ref()
            .is_none_or(|current| lease.issued_at >= current.issued_at)
        {
            held.lease = Some(lease);
        }
    }

    /// The office's lease held now, if any (for the heartbeat).
    pub fn lease(&self) -> Option<Lease> {
        let held = self.0.as_ref()?.lock().ok()?;
        held.lease.clone()
    }

    /// The fleet generation the local gallery holds; `None` for an island.
    pub fn generation(&self) -> Option<u64> {
        let held = self.0.as_ref()?.lock().ok()?;
        Some(held.generation)
    }

    /// The fleet generation the local gallery now holds.
    pub(crate) fn holds(&self, generation: u64) {
        if let Some(Ok(mut held)) = self.0.as_ref().map(|h| h.lock()) {
            held.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_fleet::gallery::GALLERY_SCHEMA_VERSION;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn lease(generation: u64, issued: i64, expires: i64) -> Lease {
        Lease {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation,
            issued_at: at(issued),
            expires_at: at(expires),
        }
    }

    #[test]
    fn an_island_always_matches_a_fleet_gate_only_under_a_live_lease_at_its_generation() {
        assert_eq!(GalleryLease::island().refusal(at(0)), None);

        let gate = GalleryLease::required();
        assert!(gate.refusal(at(0)).unwrap().contains("no lease"));
        gate.holds(4);
        gate.renew(lease(5, 0, 300));
        assert!(
            gate.refusal(at(10))
                .unwrap()
                .contains("requires gallery generation 5")
        );
        gate.holds(5);
        assert_eq!(gate.refusal(at(10)), None);
        // An older lease delivered late does not replace the newer one.
        gate.renew(lease(1, -100, 200));
        assert_eq!(gate.refusal(at(250)), None);
        assert!(gate.refusal(at(301)).unwrap().contains("ran out"));
        gate.renew(lease(5, 290, 590));
        assert_eq!(gate.refusal(at(301)), None);
        assert_eq!(gate.lease(), Some(lease(5, 290, 590)));
        assert_eq!(gate.generation(), Some(5));
        assert_eq!(GalleryLease::island().lease(), None);
        assert_eq!(GalleryLease::island().generation(), None);
    }
}
