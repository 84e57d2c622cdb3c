// SPDX-License-Identifier: MIT OR Apache-2.0
//! The enrolment office: the fleet's gallery published as signed changes, snapshots and a lease
//! (facegate-fleet's `gallery` wire), for every gate to follow.
//!
//! The office keeps no database of its own: the changes stream and the latest snapshot are the
//! gallery, and [`Office::gallery`] folds them. A change is published only over the stream's
//! last sequence as read just before (`Nats-Expected-Last-Sequence`), so its generation is the
//! stream's sequence, and two offices at once cannot both take one generation: the second is
//! refused by the broker and tries again over the first one's change.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, object_store::ObjectMetadata};
use chrono::Utc;
use ed25519_dalek::SigningKey;
use facegate_fleet::gallery::{
    Change, FleetGallery, GALLERY_SCHEMA_VERSION, GALLERY_STREAM, GALLERY_SUBJECT, GalleryChange,
    GallerySnapshot, LEASE_BUCKET, LEASE_KEY, Lease, Person, SNAPSHOT_BUCKET, SNAPSHOT_OBJECT,
    TrustedKeys, fetch_snapshot, sign, verify,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Attempts at a change while other offices keep taking the next generation first; between
/// them a pause of up to `attempt` × [`PUBLISH_BACKOFF`], varied by the change's hash, so that
/// two offices racing do not stay in step.
const PUBLISH_ATTEMPTS: u32 = 32;
const PUBLISH_BACKOFF: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    /// The broker did not answer as it should.
    #[error("JetStream: {0}")]
    Broker(String),
    /// The change makes no sense against the gallery as it is.
    #[error("{0}")]
    Refused(String),
}

fn broker(what: &str) -> impl Fn(&dyn std::fmt::Display) -> OfficeError + '_ {
    move |e| OfficeError::Broker(format!("{what}: {e}"))
}

/// The gallery as the office folded it, with the generations it could not read (a message that
/// does not verify, one gone from the stream): they count as changing nobody.
#[derive(Debug)]
pub struct Folded {
    pub gallery: FleetGallery,
    pub unreadable: Vec<(u64, String)>,
}

pub struct Office {
    js: jetstream::Context,
    key: SigningKey,
    own: TrustedKeys,
}

impl Office {
    /// The office on `client`'s broker (prepared by `prepare_broker`), signing with `key`.
    pub fn new(client: async_nats::Client, key: SigningKey) -> Office {
        let own = TrustedKeys::of([key.verifying_key()]);
        Office {
            js: jetstream::new(client),
            key,
            own,
        }
    }

    /// The changes stream, with its first and last sequence as the broker answered for it
    /// (`get_stream` is one STREAM.INFO request, and its answer is the state).
    async fn changes(&self) -> Result<(jetstream::stream::Stream, u64, u64), OfficeError> {
        let stream = self
            .js
            .get_stream(GALLERY_STREAM)
            .await
            .map_err(|e| broker(GALLERY_STREAM)(&e))?;
        let state = &stream.cached_info().state;
        let (first, last) = (state.first_sequence, state.last_sequence);
        Ok((stream, first, last))
    }

    /// The latest snapshot, if there is one.
    pub async fn latest_snapshot(&self) -> Result<Option<GallerySnapshot>, OfficeError> {
        let Some(bytes) = fetch_snapshot(&self.js)
            .await
            .map_err(OfficeError::Broker)?
        else {
            return Ok(None);
        };
        verify::<GallerySnapshot>(&bytes, &self.own)
            .map(Some)
            .map_err(|e| OfficeError::Refused(format!("the latest snapshot: {e}")))
    }

    /// The fleet's gallery now: the latest snapshot and every change after it.
    pub async fn gallery(&self) -> Result<Folded, OfficeError> {
        let mut gallery = self
            .latest_snapshot()
            .await?
            .map(FleetGallery::from_snapshot)
            .unwrap_or_default();
        let (stream, _, last) = self.changes().await?;
        let mut unreadable = Vec::new();
        for generation in gallery.generation() + 1..=last {
            let read = match stream.get_raw_message(generation).await {
                Ok(message) => verify::<GalleryChange>(&message.payload, &self.own)
                    .map_err(|e| e.to_string())
                    .and_then(|change| {
                        if change.generation == generation {
                            Ok(change)
                        } else {
                            Err(format!(
                                "says generation {}, at stream sequence {generation}",
                                change.generation
                            ))
                        }
                    }),
                Err(e) => Err(format!("not in the stream ({e})")),
            };
            match read {
                Ok(change) => gallery
                    .apply(&change)
                    .map_err(|e| OfficeError::Refused(e.to_string()))?,
                Err(why) => {
                    warn!("office: gallery generation {generation} is unreadable: {why}");
                    gallery
                        .pass_over(generation)
                        .map_err(|e| OfficeError::Refused(e.to_string()))?;
                    unreadable.push((generation, why));
                }
            }
        }
        Ok(Folded {
            gallery,
            unreadable,
        })
    }

    /// Publishes `change` as the next generation; returns it.
    async fn publish(&self, change: Change) -> Result<u64, OfficeError> {
        for attempt in 0..PUBLISH_ATTEMPTS {
            let (_, _, last) = self.changes().await?;
            let generation = last + 1;
            let signed = sign(
                &GalleryChange {
                    schema_version: GALLERY_SCHEMA_VERSION,
                    generation,
                    issued_at: Utc::now(),
                    change: change.clone(),
                },
                &self.key,
            );
            // The id names this message's bytes, not its generation: the broker checks for a
            // duplicate before it checks the last sequence, so a generation-named id would have
            // another office's change acknowledged as this one's.
            let digest = Sha256::digest(&signed);
            let id: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            let message = PublishMessage::build()
                .payload(signed.into())
                .expected_last_sequence(last)
                .message_id(id);
            let acked = match self.js.send_publish(GALLERY_SUBJECT, message).await {
                Ok(ack) => ack.await,
                Err(e) => return Err(broker(GALLERY_SUBJECT)(&e)),
            };
            match acked {
                Ok(ack) if ack.sequence == generation => {
                    info!(
                        "office: gallery generation {generation}: {} {}",
                        op(&change),
                        change.id()
                    );
                    return Ok(generation);
                }
                Ok(ack) => {
                    return Err(OfficeError::Broker(format!(
                        "gallery change {generation} was stored at sequence {}: the stream is not the office's alone",
                        ack.sequence
                    )));
                }
                // Another office took this generation first: build on its change.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    let pause = PUBLISH_BACKOFF * (attempt + 1) * u32::from(digest[16]) / 255;
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(broker(GALLERY_SUBJECT)(&e)),
            }
        }
        Err(OfficeError::Broker(format!(
            "{PUBLISH_ATTEMPTS} attempts at the next generation were all taken by other offices"
        )))
    }

    /// Enrols `person` (or replaces their embedding, or enables them again).
    pub async fn enrol(&self, person: Person) -> Result<u64, OfficeError> {
        self.publish(Change::Enrol { person }).await
    }

    /// Removes `id` everywhere; someone the gallery does not hold is refused.
    pub async fn remove(&self, id: &str) -> Result<u64, OfficeError> {
        if self.gallery().await?.gallery.get(id).is_none() {
            return Err(OfficeError::Refused(format!("{id}: not enrolled")));
        }
        self.publish(Change::Remove { id: id.to_owned() }).await
    }

    /// Stops every gate recognising `id`; the office keeps their embedding.
    pub async fn disable(&self, id: &str) -> Result<u64, OfficeError> {
        match self.gallery().await?.gallery.get(id) {
            None => Err(OfficeError::Refused(format!("{id}: not enrolled"))),
            Some(person) if person.disabled => {
                Err(OfficeError::Refused(format!("{id}: disabled already")))
            }
            Some(_) => self.publish(Change::Disable { id: id.to_owned() }).await,
        }
    }

    /// Enables `id` again: their kept embedding is enrolled again.
    pub async fn enable(&self, id: &str) -> Result<u64, OfficeError> {
        match self.gallery().await?.gallery.get(id) {
            None => Err(OfficeError::Refused(format!("{id}: not enrolled"))),
            Some(person) if !person.disabled => {
                Err(OfficeError::Refused(format!("{id}: not disabled")))
            }
            Some(person) => self.enrol(person.person.clone()).await,
        }
    }

    /// Writes a snapshot of the gallery as it is, unless the latest one is of this generation
    /// already, then purges the changes it covers from the stream; returns its generation.
    pub async fn snapshot(&self) -> Result<u64, OfficeError> {
        let folded = self.gallery().await?;
        let generation = folded.gallery.generation();
        let latest = self.latest_snapshot().await?.map(|s| s.generation);
        if latest != Some(generation) {
            let signed = sign(&folded.gallery.snapshot(Utc::now()), &self.key);
            let store = self
                .js
                .get_object_store(SNAPSHOT_BUCKET)
                .await
                .map_err(|e| broker(SNAPSHOT_BUCKET)(&e))?;
            store
                .put(
                    ObjectMetadata {
                        name: SNAPSHOT_OBJECT.into(),
                        ..Default::default()
                    },
                    &mut signed.as_slice(),
                )
                .await
                .map_err(|e| broker(SNAPSHOT_BUCKET)(&e))?;
            info!(
                "office: snapshot of gallery generation {generation} ({} people, {} bytes)",
                folded.gallery.people().count(),
                signed.len()
            );
        }
        // Only what the snapshot holds is purged: a removed person's embedding, in an old
        // enrolment, leaves the broker here.
        let (_, first, _) = self.changes().await?;
        if first <= generation {
            self.js
                .get_stream(GALLERY_STREAM)
                .await
                .map_err(|e| broker(GALLERY_STREAM)(&e))?
                .purge()
                .sequence(generation + 1)
                .await
                .map_err(|e| broker(GALLERY_STREAM)(&e))?;
        }
        Ok(generation)
    }

    /// Signs a lease of `valid_for` at the stream's last generation.
    pub async fn renew_lease(&self, valid_for: Duration) -> Result<Lease, OfficeError> {
        let (_, _, generation) = self.changes().await?;
        let issued_at = Utc::now();
        let lease = Lease {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation,
            issued_at,
            expires_at: issued_at
                + chrono::Duration::from_std(valid_for)
                    .map_err(|e| OfficeError::Refused(format!("lease of {valid_for:?}: {e}")))?,
        };
        let bucket = self
            .js
            .get_key_value(LEASE_BUCKET)
            .await
            .map_err(|e| broker(LEASE_BUCKET)(&e))?;
        bucket
            .put(LEASE_KEY, sign(&lease, &self.key).into())
            .await
            .map_err(|e| broker(LEASE_BUCKET)(&e))?;
        Ok(lease)
    }

    /// Renews the lease every third of `lease` and snapshots every `snapshot_every`, until
    /// `shutdown`. A broker that does not answer is said once per outage and tried again.
    pub async fn run(
        &self,
        lease: Duration,
        snapshot_every: Duration,
        shutdown: CancellationToken,
    ) {
        let renew_every = lease / 3;
        let mut next_snapshot = tokio::time::Instant::now() + snapshot_every;
        let mut failing = false;
        loop {
            let renewed = self.renew_lease(lease).await;
            let snapshot = if tokio::time::Instant::now() >= next_snapshot {
                next_snapshot += snapshot_every;
                self.snapshot().await.map(|_| ())
            } else {
                Ok(())
            };
            match renewed.and(snapshot) {
                Ok(()) if failing => {
                    info!("office: the broker answers again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    warn!("office: {e}; trying again every {renew_every:?}");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(renew_every) => {}
            }
        }
    }
}

fn op(change: &Change) -> &'static str {
    match change {
        Change::Enrol { .. } => "enrol",
        Change::Remove { .. } => "remove",
        Change::Disable { .. } => "disable",
    }
}
