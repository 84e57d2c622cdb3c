// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's gallery on the gate: the office's signed changes applied strictly in order, each
//! as a new local gallery generation (the switch fgmatch and the service already follow), with
//! the fleet generation it brings written in the same switch; a snapshot when the changes needed
//! are gone from the stream, or when one was refused; and the office's lease renewed.
//!
//! Anything unsigned, signed by a key not in `fleet.gallery_keys`, altered, of another schema
//! version or out of order is refused in one line and the gallery stays as it was. A refused
//! change stops the gate at its generation until a snapshot past it comes; meanwhile the
//! office's next lease names a generation the gate does not hold, so it stops matching rather
//! than match with a gallery the office has moved on from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, kv};
use facegate_fleet::gallery::{
    Change, GALLERY_STREAM, GalleryChange, GallerySnapshot, GalleryWireError, LEASE_BUCKET,
    LEASE_KEY, Lease, TrustedKeys, check_order, fetch_snapshot, verify,
};
use facegate_vision::gallery::{Gallery, GalleryError};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::FleetConfig;
use super::lease::GalleryLease;
use crate::gallery::FollowedGallery;

/// Back-off while the broker, the stream or a snapshot is not there.
const RETRY: Duration = Duration::from_secs(2);
/// A consumer silent this long is checked against the stream: one that stopped delivering (a
/// reconnection it did not survive) is replaced when the stream holds changes it has not given.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Why a change or a snapshot was not applied; the gallery is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Wire(#[from] GalleryWireError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("gallery snapshot {found}: not past generation {held}, which is held")]
    OldSnapshot { held: u64, found: u64 },
}

/// The fleet generation the gallery in `dir` holds (0 before the first change).
pub fn held_generation(dir: &Path) -> Result<u64, GalleryError> {
    Ok(Gallery::open(dir)?.upstream_generation().unwrap_or(0))
}

/// Applies the next change to the gallery in `dir` as one new generation; returns the fleet
/// generation now held. A disabled person's embedding is deleted as a removed one's is: the
/// office keeps it.
pub fn apply_change(dir: &Path, change: &GalleryChange) -> Result<u64, ApplyError> {
    let mut gallery = Gallery::open_for_write(dir)?;
    check_order(
        gallery.upstream_generation().unwrap_or(0),
        change.generation,
    )?;
    match &change.change {
        Change::Enrol { person } => gallery.enroll(
            &person.id,
            &person.label,
            &person.model,
            &person.embedding.0,
            true,
        )?,
        Change::Remove { id } | Change::Disable { id } => {
            gallery.remove(id)?;
        }
    }
    gallery.set_upstream_generation(change.generation)?;
    gallery.commit()?;
    Ok(change.generation)
}

/// Makes the gallery in `dir` the snapshot's, in one new generation: everyone not active in it
/// removed, everyone active enrolled with the snapshot's embedding.
pub fn apply_snapshot(dir: &Path, snapshot: &GallerySnapshot) -> Result<u64, ApplyError> {
    let mut gallery = Gallery::open_for_write(dir)?;
    let held = gallery.upstream_generation().unwrap_or(0);
    if snapshot.generation <= held {
        return Err(ApplyError::OldSnapshot {
            held,
            found: snapshot.generation,
        });
    }
    let active: std::collections::HashSet<&str> = snapshot
        .people
        .iter()
        .filter(|p| !p.disabled)
        .map(|p| p.person.id.as_str())
        .collect();
    let gone: Vec<String> = gallery
        .identities()
        .filter(|identity| !active.contains(identity.id.as_str()))
        .map(|identity| identity.id.clone())
        .collect();
    for id in gone {
        gallery.remove(&id)?;
    }
    for person in snapshot.people.iter().filter(|p| !p.disabled) {
        let person = &person.person;
        gallery.enroll(
            &person.id,
            &person.label,
            &person.model,
            &person.embedding.0,
            true,
        )?;
    }
    gallery.set_upstream_generation(snapshot.generation)?;
    gallery.commit()?;
    Ok(snapshot.generation)
}

/// Follows the office's gallery and lease until `stopping` turns true. Each refusal is said in
/// one line; the gate keeps deciding meanwhile (under the lease it holds).
pub async fn follow_gallery(
    config: FleetConfig,
    trusted: TrustedKeys,
    dir: PathBuf,
    lease: GalleryLease,
    matching: Option<Arc<FollowedGallery>>,
    mut stopping: watch::Receiver<bool>,
) {
    let Some(gate) = config.gate_id.clone() else {
        return;
    };
    let client = match super::connect(&config, &gate).await {
        Ok(client) => client,
        Err(e) => {
            error!("fleet: {e}: the gallery is not followed, and nothing is matched");
            return;
        }
    };
    let js = jetstream::new(client);
    let follower = Follower {
        js: js.clone(),
        trusted: trusted.clone(),
        dir,
        lease: lease.clone(),
        matching,
    };
    let leases = tokio::spawn(follow_lease(js, trusted, lease));
    tokio::select! {
        () = follower.run() => {}
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    leases.abort();
}

struct Follower {
    js: jetstream::Context,
    trusted: TrustedKeys,
    dir: PathBuf,
    lease: GalleryLease,
    /// The running pipeline's gallery, whose fgmatch are told of each new generation at once
    /// (a removal takes effect now, not at their next poll).
    matching: Option<Arc<FollowedGallery>>,
}

impl Follower {
    /// The local gallery now holds fleet generation `generation`.
    fn applied(&self, generation: u64) {
        if let Some(matching) = &self.matching {
            matching.nudge();
        }
        self.lease.holds(generation);
    }

    async fn run(self) {
        let mut held = match self.blocking(|dir| held_generation(&dir)).await {
            Ok(held) => held,
            Err(e) => {
                error!("fleet: the gallery cannot be followed: {e}");
                return;
            }
        };
        self.lease.holds(held);
        info!("fleet: following the office's gallery from generation {held}");
        // Set when a change was refused: only a snapshot past it moves the gate on.
        let mut stuck = false;
        let mut outage = Outage::default();
        loop {
            outage.report("gallery", self.follow_once(&mut held, &mut stuck).await);
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One pass: a snapshot if needed, then the changes after it until the consumer ends.
    async fn follow_once(&self, held: &mut u64, stuck: &mut bool) -> Result<(), String> {
        // get_stream's answer is the stream's state: one request.
        let mut stream = self
            .js
            .get_stream(GALLERY_STREAM)
            .await
            .map_err(|e| format!("stream {GALLERY_STREAM}: {e}"))?;
        let state = stream.cached_info().state.clone();
        let behind_the_stream = state.last_sequence > *held && *held + 1 < state.first_sequence;
        if *stuck || behind_the_stream {
            match self.catch_up(*held).await? {
                Some(generation) => {
                    *held = generation;
                    *stuck = false;
                    self.applied(generation);
                }
                None if behind_the_stream => {
                    return Err(format!(
                        "changes {} to {} are gone from the stream and no snapshot covers them",
                        *held + 1,
                        state.first_sequence - 1
                    ));
                }
                // Stuck behind a refused change, and no snapshot past it yet.
                None => return Ok(()),
            }
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: *held + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| format!("consumer on {GALLERY_STREAM}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("consumer on {GALLERY_STREAM}: {e}"))?;
        loop {
            let message = match tokio::time::timeout(IDLE_CHECK, messages.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(_) => {
                    let last = stream
                        .info()
                        .await
                        .map_err(|e| format!("stream {GALLERY_STREAM}: {e}"))?
                        .state
                        .last_sequence;
                    if last > *held {
                        return Err(format!(
                            "the consumer gave nothing for {IDLE_CHECK:?} while the stream holds generation {last}"
                        ));
                    }
                    continue;
                }
            };
            let message = message.map_err(|e| format!("reading {GALLERY_STREAM}: {e}"))?;
            let change = verify::<GalleryChange>(&message.payload, &self.trusted);
            let applied = match change {
                Ok(change) => self.blocking(move |dir| apply_change(&dir, &change)).await,
                Err(e) => Err(ApplyError::Wire(e)),
            };
            match applied {
                Ok(generation) => {
                    *held = generation;
                    self.applied(generation);
                    info!("fleet: gallery generation {generation} applied");
                }
                Err(e) => {
                    let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                    error!(
                        "fleet: gallery change at stream sequence {sequence} refused: {e}; the gallery stays at generation {held} until a snapshot past it"
                    );
                    *stuck = true;
                    return Ok(());
                }
            }
        }
    }

    /// The office's snapshot, applied if it is past `held`; `None` if there is none past it.
    async fn catch_up(&self, held: u64) -> Result<Option<u64>, String> {
        let Some(bytes) = fetch_snapshot(&self.js).await? else {
            return Ok(None);
        };
        let snapshot = match verify::<GallerySnapshot>(&bytes, &self.trusted) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                error!("fleet: snapshot refused: {e}; the gallery stays at generation {held}");
                return Ok(None);
            }
        };
        if snapshot.generation <= held {
            return Ok(None);
        }
        let people = snapshot.people.len();
        match self
            .blocking(move |dir| apply_snapshot(&dir, &snapshot))
            .await
        {
            Ok(generation) => {
                info!(
                    "fleet: gallery snapshot of generation {generation} applied ({people} people)"
                );
                Ok(Some(generation))
            }
            Err(e) => {
                error!("fleet: snapshot refused: {e}; the gallery stays at generation {held}");
                Ok(None)
            }
        }
    }

    /// Gallery work (FAISS, fsyncs) off the runtime's threads.
    async fn blocking<T: Send + 'static, E: From<GalleryError> + Send + 'static>(
        &self,
        work: impl FnOnce(PathBuf) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let dir = self.dir.clone();
        match tokio::task::spawn_blocking(move || work(dir)).await {
            Ok(result) => result,
            Err(e) => Err(E::from(GalleryError::InvalidArgument {
                dir: self.dir.clone(),
                problem: format!("the gallery task failed: {e}"),
            })),
        }
    }
}

/// The office's lease, verified, into `lease` as it is renewed.
async fn follow_lease(js: jetstream::Context, trusted: TrustedKeys, lease: GalleryLease) {
    let mut outage = Outage::default();
    loop {
        outage.report("lease", watch_lease(&js, &trusted, &lease).await);
        tokio::time::sleep(RETRY).await;
    }
}

/// A broker that does not answer is said once when it stops and once when it answers again,
/// not at every retry.
#[derive(Default)]
struct Outage {
    since: Option<String>,
}

impl Outage {
    fn report(&mut self, what: &str, pass: Result<(), String>) {
        match (pass, self.since.is_some()) {
            (Err(e), false) => {
                warn!("fleet: {what}: {e}; trying again every {RETRY:?}");
                self.since = Some(e);
            }
            (Ok(()), true) => {
                info!("fleet: {what}: the broker answers again");
                self.since = None;
            }
            _ => {}
        }
    }
}

async fn watch_lease(
    js: &jetstream::Context,
    trusted: &TrustedKeys,
    lease: &GalleryLease,
) -> Result<(), String> {
    let bucket = js
        .get_key_value(LEASE_BUCKET)
        .await
        .map_err(|e| format!("bucket {LEASE_BUCKET}: {e}"))?;
    let mut entries = bucket
        .watch_with_history(LEASE_KEY)
        .await
        .map_err(|e| format!("bucket {LEASE_BUCKET}: {e}"))?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| format!("bucket {LEASE_BUCKET}: {e}"))?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        match verify::<Lease>(&entry.value, trusted) {
            Ok(renewed) => lease.renew(renewed),
            Err(e) => error!("fleet: lease refused: {e}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use ed25519_dalek::SigningKey;
    use facegate_fleet::gallery::{
        Embedding, GALLERY_SCHEMA_VERSION, Person, SnapshotPerson, sign,
    };

    const MODEL: &str = "test-embedder";

    fn person(id: &str, direction: usize) -> Person {
        let mut embedding = vec![0.0; 4];
        embedding[direction] = 1.0;
        Person {
            id: id.into(),
            label: format!("Person {id}"),
            model: MODEL.into(),
            embedding: Embedding(embedding),
        }
    }

    fn change(generation: u64, change: Change) -> GalleryChange {
        GalleryChange {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation,
            issued_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            change,
        }
    }

    fn enrol(generation: u64, id: &str, direction: usize) -> GalleryChange {
        let person = person(id, direction);
        change(generation, Change::Enrol { person })
    }

    fn gallery() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        Gallery::create(dir.path(), MODEL, 4).unwrap();
        dir
    }

    fn ids(dir: &Path) -> Vec<String> {
        Gallery::open(dir)
            .unwrap()
            .identities()
            .map(|i| i.id.clone())
            .collect()
    }

    #[test]
    fn changes_apply_in_order_each_as_one_generation_with_the_fleet_generation_in_it() {
        let dir = gallery();
        assert_eq!(apply_change(dir.path(), &enrol(1, "p-1", 0)).unwrap(), 1);
        assert_eq!(apply_change(dir.path(), &enrol(2, "p-2", 1)).unwrap(), 2);
        apply_change(dir.path(), &change(3, Change::Disable { id: "p-1".into() })).unwrap();
        // Removing someone this gate never held still moves it on.
        apply_change(dir.path(), &change(4, Change::Remove { id: "p-9".into() })).unwrap();
        assert_eq!(ids(dir.path()), ["p-2"]);
        assert_eq!(held_generation(dir.path()).unwrap(), 4);
        assert_eq!(Gallery::open(dir.path()).unwrap().generation(), 4);
    }

    #[test]
    fn a_replayed_change_a_gap_and_another_model_are_refused_and_the_gallery_is_unchanged() {
        let dir = gallery();
        apply_change(dir.path(), &enrol(1, "p-1", 0)).unwrap();
        let local = Gallery::open(dir.path()).unwrap().generation();

        let replayed = apply_change(dir.path(), &enrol(1, "p-1", 2)).unwrap_err();
        assert_eq!(
            replayed.to_string(),
            "gallery change 1: already applied (generation 1 is held)"
        );
        let gap = apply_change(dir.path(), &enrol(3, "p-3", 2)).unwrap_err();
        assert!(
            gap.to_string().contains("generations 2 to 2 are missing"),
            "{gap}"
        );
        let mut foreign = person("p-4", 3);
        foreign.model = "another-embedder".into();
        let refused =
            apply_change(dir.path(), &change(2, Change::Enrol { person: foreign })).unwrap_err();
        assert!(matches!(refused, ApplyError::Gallery(_)), "{refused}");

        assert_eq!(ids(dir.path()), ["p-1"]);
        assert_eq!(held_generation(dir.path()).unwrap(), 1);
        assert_eq!(Gallery::open(dir.path()).unwrap().generation(), local);
        // The next change in order still applies.
        apply_change(dir.path(), &enrol(2, "p-2", 1)).unwrap();
        assert_eq!(ids(dir.path()), ["p-1", "p-2"]);
    }

    #[test]
    fn a_snapshot_replaces_the_gallery_and_an_old_one_is_refused() {
        let dir = gallery();
        apply_change(dir.path(), &enrol(1, "p-1", 0)).unwrap();
        apply_change(dir.path(), &enrol(2, "p-2", 1)).unwrap();
        let snapshot = GallerySnapshot {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation: 9,
            taken_at: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
            people: vec![
                SnapshotPerson {
                    person: person("p-2", 1),
                    disabled: false,
                },
                SnapshotPerson {
                    person: person("p-3", 2),
                    disabled: false,
                },
                SnapshotPerson {
                    person: person("p-4", 3),
                    disabled: true,
                },
            ],
        };
        assert_eq!(apply_snapshot(dir.path(), &snapshot).unwrap(), 9);
        assert_eq!(ids(dir.path()), ["p-2", "p-3"]);
        assert_eq!(held_generation(dir.path()).unwrap(), 9);
        assert!(matches!(
            apply_snapshot(dir.path(), &snapshot),
            Err(ApplyError::OldSnapshot { held: 9, found: 9 })
        ));
        // After the snapshot, changes go on from its generation.
        apply_change(dir.path(), &change(10, Change::Remove { id: "p-2".into() })).unwrap();
        assert_eq!(ids(dir.path()), ["p-3"]);
    }

    #[test]
    fn what_the_gate_verifies_is_refused_when_tampered_or_signed_by_another_key() {
        let office = SigningKey::from_bytes(&[7; 32]);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let wire = sign(&change(1, Change::Remove { id: "p-1".into() }), &office);
        assert!(verify::<GalleryChange>(&wire, &trusted).is_ok());
        let mut tampered = wire.clone();
        let at = tampered.iter().position(|&b| b == b'1').unwrap();
        tampered[at] = b'2';
        let refused = verify::<GalleryChange>(&tampered, &trusted).unwrap_err();
        assert!(
            refused.to_string().starts_with("gallery change: "),
            "{refused}"
        );
        let forged = sign(
            &change(1, Change::Remove { id: "p-1".into() }),
            &SigningKey::from_bytes(&[8; 32]),
        );
        assert!(matches!(
            verify::<GalleryChange>(&forged, &trusted),
            Err(GalleryWireError::UntrustedKey { .. })
        ));
    }
}
