// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fleet's gallery, office → gates: who may be recognised, and for how long a gate may go on
//! recognising anyone without hearing from the office.
//!
//! - **Changes** ([`GalleryChange`]: enrol, remove, disable) go on the stream [`GALLERY_STREAM`],
//!   one subject, in the order of a fleet-wide generation. The office publishes generation `g`
//!   only over a stream whose last message is `g - 1`, so the generation is the stream sequence
//!   and two offices racing cannot both take one number.
//! - **Snapshots** ([`GallerySnapshot`]) of the whole gallery at a generation go to the object
//!   store [`SNAPSHOT_BUCKET`]: a gate too far behind for the stream's changes starts from one.
//! - **The lease** ([`Lease`]) in the key-value bucket [`LEASE_BUCKET`]: until when a gate may
//!   match, and the generation it must hold to do so. A gate cut off from the office stops 1:N
//!   matching when its lease runs out, so nobody removed at the office stays recognisable on a
//!   gate that never heard of the removal; back online, it matches again only once it holds
//!   the generation the new lease names.
//!
//! Each is signed with the office's Ed25519 key (the keys of `facegate-token`) inside a
//! [`sign`]ed envelope whose signature covers the kind too, so one kind's signature is never
//! taken for another's. A gate refuses anything unsigned, signed by a key it does not trust,
//! altered, of another schema version, or out of order.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
pub use facegate_token::{KeyId, TrustedKeys};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The JetStream stream of gallery changes; its sequence is the fleet's gallery generation.
pub const GALLERY_STREAM: &str = "FACEGATE_GALLERY";
/// The one subject of [`GALLERY_STREAM`]: one subject keeps one order.
pub const GALLERY_SUBJECT: &str = "facegate.gallery.changes";
/// The object store holding the latest [`GallerySnapshot`] as [`SNAPSHOT_OBJECT`].
pub const SNAPSHOT_BUCKET: &str = "facegate_gallery";
pub const SNAPSHOT_OBJECT: &str = "snapshot";
/// The key-value bucket holding the office's [`Lease`] as [`LEASE_KEY`].
pub const LEASE_BUCKET: &str = "facegate_lease";
pub const LEASE_KEY: &str = "lease";
/// The version of the changes', snapshots' and leases' fields.
pub const GALLERY_SCHEMA_VERSION: u32 = 1;
/// A signed message larger than this is refused unread; a snapshot of a million people at 128
/// dimensions is about 700 MB, so snapshots are read with [`MAX_SNAPSHOT_BYTES`] instead.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_SNAPSHOT_BYTES: usize = 2 << 30;

/// What a signed message is; its signature covers this too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Change,
    Snapshot,
    Lease,
}

impl Kind {
    fn context(self) -> &'static [u8] {
        match self {
            Kind::Change => b"facegate gallery-change v1\n",
            Kind::Snapshot => b"facegate gallery-snapshot v1\n",
            Kind::Lease => b"facegate lease v1\n",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Change => "gallery change",
            Kind::Snapshot => "gallery snapshot",
            Kind::Lease => "lease",
        })
    }
}

/// Why a gallery message was refused; one line each.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GalleryWireError {
    #[error("{kind}: not a signed envelope: {problem}")]
    Envelope { kind: Kind, problem: String },
    #[error("{kind}: signed by key {key}, which is not among the trusted keys")]
    UntrustedKey { kind: Kind, key: String },
    #[error("{kind}: the signature does not verify: altered, or not signed by key {key}")]
    BadSignature { kind: Kind, key: String },
    #[error("{kind}: {problem}")]
    Payload { kind: Kind, problem: String },
    #[error("{kind}: schema version {found}, but version {GALLERY_SCHEMA_VERSION} is read here")]
    Version { kind: Kind, found: u32 },
    #[error("gallery change {found}: already applied (generation {held} is held)")]
    Replayed { held: u64, found: u64 },
    #[error("gallery change {found}: generations {} to {} are missing (generation {held} is held)", held + 1, found - 1)]
    Gap { held: u64, found: u64 },
}

/// A message the office signs.
pub trait Signed: Serialize + DeserializeOwned {
    const KIND: Kind;
    fn schema_version(&self) -> u32;
}

/// A face embedding, on the wire as base64 of its little-endian f32 values (a third of the
/// size of JSON numbers, and exact).
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Serialize for Embedding {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.0.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_str(&BASE64.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for Embedding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Embedding, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(deserializer)?;
        let bytes = BASE64
            .decode(text)
            .map_err(|e| D::Error::custom(format!("embedding: not base64: {e}")))?;
        if bytes.len() % 4 != 0 || bytes.is_empty() {
            return Err(D::Error::custom(format!(
                "embedding: {} bytes is not a whole number of f32 values",
                bytes.len()
            )));
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(D::Error::custom(
                "embedding: holds a value that is not finite",
            ));
        }
        Ok(Embedding(values))
    }
}

/// Someone the office enrolled: what a gate's gallery needs of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub id: String,
    pub label: String,
    /// The embedder's model id (facegate-vision's model identity), which the gate's must equal.
    pub model: String,
    pub embedding: Embedding,
}

/// One change to the fleet's gallery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// Enrols someone, or replaces their embedding, or enables them again.
    Enrol { person: Person },
    /// Removes someone for good: a gate deletes their embedding.
    Remove { id: String },
    /// Stops recognising someone (a blocked account). A gate deletes their embedding as for a
    /// removal; the office keeps it, so that an enrolment can bring them back without a photo.
    Disable { id: String },
}

impl Change {
    pub fn id(&self) -> &str {
        match self {
            Change::Enrol { person } => &person.id,
            Change::Remove { id } | Change::Disable { id } => id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GalleryChange {
    pub schema_version: u32,
    /// The fleet's gallery generation this change makes: the previous one plus one.
    pub generation: u64,
    pub issued_at: DateTime<Utc>,
    pub change: Change,
}

impl Signed for GalleryChange {
    const KIND: Kind = Kind::Change;
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

/// Someone in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPerson {
    pub person: Person,
    /// Disabled people are kept by the office, never matched by a gate.
    pub disabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GallerySnapshot {
    pub schema_version: u32,
    /// The generation whose gallery this is: changes up to it are in.
    pub generation: u64,
    pub taken_at: DateTime<Utc>,
    pub people: Vec<SnapshotPerson>,
}

impl Signed for GallerySnapshot {
    const KIND: Kind = Kind::Snapshot;
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub schema_version: u32,
    /// A gate may match only while it holds this generation or a later one.
    pub generation: u64,
    pub issued_at: DateTime<Utc>,
    /// After this a gate stops 1:N matching until a new lease comes.
    pub expires_at: DateTime<Utc>,
}

impl Signed for Lease {
    const KIND: Kind = Kind::Lease;
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl Lease {
    /// Why a gate holding `held` may not match at `now`, if it may not.
    pub fn refusal(&self, held: u64, now: DateTime<Utc>) -> Option<String> {
        if now > self.expires_at {
            Some(format!(
                "the office's lease ran out at {}",
                self.expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
        } else if held < self.generation {
            Some(format!(
                "the lease requires gallery generation {}, this gate holds {held}",
                self.generation
            ))
        } else {
            None
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    /// The signing key's id (hex): which trusted key to verify with.
    key: String,
    /// The signed JSON, verbatim.
    payload: String,
    /// Base64 of the Ed25519 signature over the kind's context and the payload.
    signature: String,
}

fn signed_bytes(kind: Kind, payload: &str) -> Vec<u8> {
    [kind.context(), payload.as_bytes()].concat()
}

/// `value` signed with `key`, as the bytes that go on the wire.
pub fn sign<T: Signed>(value: &T, key: &SigningKey) -> Vec<u8> {
    let payload = serde_json::to_string(value).expect("gallery messages serialise");
    let signature = key.sign(&signed_bytes(T::KIND, &payload));
    let envelope = Envelope {
        key: KeyId::of(&key.verifying_key()).to_string(),
        payload,
        signature: BASE64.encode(signature.to_bytes()),
    };
    serde_json::to_vec(&envelope).expect("envelopes serialise")
}

/// The message in `bytes` if a trusted key signed it and it is of this schema version.
pub fn verify<T: Signed>(bytes: &[u8], trusted: &TrustedKeys) -> Result<T, GalleryWireError> {
    let kind = T::KIND;
    let limit = match kind {
        Kind::Snapshot => MAX_SNAPSHOT_BYTES,
        Kind::Change | Kind::Lease => MAX_MESSAGE_BYTES,
    };
    let envelope_error = |problem: String| GalleryWireError::Envelope { kind, problem };
    if bytes.len() > limit {
        return Err(envelope_error(format!(
            "{} bytes, more than the {limit} allowed",
            bytes.len()
        )));
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| envelope_error(e.to_string()))?;
    let key_id = parse_key_id(&envelope.key)
        .ok_or_else(|| envelope_error(format!("key {:?} is not a key id", envelope.key)))?;
    let key = trusted
        .get(&key_id)
        .ok_or_else(|| GalleryWireError::UntrustedKey {
            kind,
            key: envelope.key.clone(),
        })?;
    let bad_signature = || GalleryWireError::BadSignature {
        kind,
        key: envelope.key.clone(),
    };
    let signature = BASE64
        .decode(&envelope.signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or_else(bad_signature)?;
    key.verify(&signed_bytes(kind, &envelope.payload), &signature)
        .map_err(|_| bad_signature())?;
    // Signed, so the office wrote it; a version this gate does not know is refused before its
    // fields are read, so that it says so rather than naming a field.
    let version: VersionOnly =
        serde_json::from_str(&envelope.payload).map_err(|e| GalleryWireError::Payload {
            kind,
            problem: e.to_string(),
        })?;
    if version.schema_version != GALLERY_SCHEMA_VERSION {
        return Err(GalleryWireError::Version {
            kind,
            found: version.schema_version,
        });
    }
    let value: T =
        serde_json::from_str(&envelope.payload).map_err(|e| GalleryWireError::Payload {
            kind,
            problem: e.to_string(),
        })?;
    debug_assert_eq!(value.schema_version(), GALLERY_SCHEMA_VERSION);
    Ok(value)
}

#[derive(Deserialize)]
struct VersionOnly {
    schema_version: u32,
}

fn parse_key_id(text: &str) -> Option<KeyId> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 8];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(KeyId(id))
}

/// The latest snapshot's signed bytes from [`SNAPSHOT_BUCKET`] (`None` before the first), as the
/// office and every gate read it; [`verify`] them.
pub async fn fetch_snapshot(
    js: &async_nats::jetstream::Context,
) -> Result<Option<Vec<u8>>, String> {
    use async_nats::jetstream::object_store::GetErrorKind;
    use tokio::io::AsyncReadExt;
    let store = js
        .get_object_store(SNAPSHOT_BUCKET)
        .await
        .map_err(|e| format!("object store {SNAPSHOT_BUCKET}: {e}"))?;
    let mut object = match store.get(SNAPSHOT_OBJECT).await {
        Ok(object) => object,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("snapshot in {SNAPSHOT_BUCKET}: {e}")),
    };
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("snapshot in {SNAPSHOT_BUCKET}: {e}"))?;
    Ok(Some(bytes))
}

/// Whether a change to `found` comes right after `held`: changes apply strictly in order.
pub fn check_order(held: u64, found: u64) -> Result<(), GalleryWireError> {
    match found.checked_sub(held) {
        Some(1) => Ok(()),
        Some(0) | None => Err(GalleryWireError::Replayed { held, found }),
        Some(_) => Err(GalleryWireError::Gap { held, found }),
    }
}

/// Someone in the office's gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct OfficePerson {
    pub person: Person,
    pub disabled: bool,
}

/// The fleet's gallery as the office knows it: a snapshot with the changes after it applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetGallery {
    generation: u64,
    people: BTreeMap<String, OfficePerson>,
}

impl FleetGallery {
    pub fn from_snapshot(snapshot: GallerySnapshot) -> FleetGallery {
        FleetGallery {
            generation: snapshot.generation,
            people: snapshot
                .people
                .into_iter()
                .map(|p| {
                    (
                        p.person.id.clone(),
                        OfficePerson {
                            person: p.person,
                            disabled: p.disabled,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, id: &str) -> Option<&OfficePerson> {
        self.people.get(id)
    }

    pub fn people(&self) -> impl Iterator<Item = &OfficePerson> {
        self.people.values()
    }

    /// Everyone a gate matches.
    pub fn active(&self) -> impl Iterator<Item = &Person> {
        self.people
            .values()
            .filter(|p| !p.disabled)
            .map(|p| &p.person)
    }

    /// Applies the next change; refuses one out of order.
    pub fn apply(&mut self, change: &GalleryChange) -> Result<(), GalleryWireError> {
        check_order(self.generation, change.generation)?;
        match &change.change {
            Change::Enrol { person } => {
                self.people.insert(
                    person.id.clone(),
                    OfficePerson {
                        person: person.clone(),
                        disabled: false,
                    },
                );
            }
            Change::Remove { id } => {
                self.people.remove(id);
            }
            Change::Disable { id } => {
                if let Some(person) = self.people.get_mut(id) {
                    person.disabled = true;
                }
            }
        }
        self.generation = change.generation;
        Ok(())
    }

    /// Counts `generation` as changing nobody: the office's answer to a change it cannot read
    /// (one that does not verify); the next snapshot then carries the gates past it.
    pub fn pass_over(&mut self, generation: u64) -> Result<(), GalleryWireError> {
        check_order(self.generation, generation)?;
        self.generation = generation;
        Ok(())
    }

    pub fn snapshot(&self, taken_at: DateTime<Utc>) -> GallerySnapshot {
        GallerySnapshot {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation: self.generation,
            taken_at,
            people: self
                .people
                .values()
                .map(|p| SnapshotPerson {
                    person: p.person.clone(),
                    disabled: p.disabled,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn person(id: &str) -> Person {
        Person {
            id: id.to_owned(),
            label: format!("Person {id}"),
            model: "sface-test".to_owned(),
            embedding: Embedding(vec![0.6, 0.8, 0.0, -0.0]),
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

    #[test]
    fn a_signed_change_verifies_with_the_trusted_key_and_round_trips() {
        let office = key(1);
        let sent = change(
            1,
            Change::Enrol {
                person: person("p-1"),
            },
        );
        let wire = sign(&sent, &office);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        assert_eq!(verify::<GalleryChange>(&wire, &trusted), Ok(sent));
    }

    #[test]
    fn an_altered_change_an_untrusted_key_and_another_kind_are_refused() {
        let office = key(1);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let wire = sign(&change(1, Change::Remove { id: "p-1".into() }), &office);

        let altered = String::from_utf8(wire.clone())
            .unwrap()
            .replace("p-1", "p-2");
        assert!(matches!(
            verify::<GalleryChange>(altered.as_bytes(), &trusted),
            Err(GalleryWireError::BadSignature { .. })
        ));

        let stranger = sign(&change(1, Change::Remove { id: "p-1".into() }), &key(2));
        let refused = verify::<GalleryChange>(&stranger, &trusted).unwrap_err();
        assert!(matches!(refused, GalleryWireError::UntrustedKey { .. }));
        assert!(refused.to_string().contains("not among the trusted keys"));

        // A change's signature does not make it a lease, even if the fields were to fit.
        assert!(matches!(
            verify::<Lease>(&wire, &trusted),
            Err(GalleryWireError::BadSignature { .. })
        ));
        assert!(matches!(
            verify::<GalleryChange>(b"{\"op\":\"remove\"}", &trusted),
            Err(GalleryWireError::Envelope { .. })
        ));
    }

    #[test]
    fn another_schema_version_is_refused_by_name() {
        let office = key(1);
        let mut future = change(1, Change::Remove { id: "p-1".into() });
        future.schema_version = 2;
        let trusted = TrustedKeys::of([office.verifying_key()]);
        assert_eq!(
            verify::<GalleryChange>(&sign(&future, &office), &trusted),
            Err(GalleryWireError::Version {
                kind: Kind::Change,
                found: 2
            })
        );
    }

    #[test]
    fn changes_apply_strictly_in_order() {
        assert_eq!(check_order(4, 5), Ok(()));
        assert_eq!(
            check_order(4, 4),
            Err(GalleryWireError::Replayed { held: 4, found: 4 })
        );
        assert_eq!(
            check_order(4, 2),
            Err(GalleryWireError::Replayed { held: 4, found: 2 })
        );
        let gap = check_order(4, 7).unwrap_err();
        assert_eq!(
            gap.to_string(),
            "gallery change 7: generations 5 to 6 are missing (generation 4 is held)"
        );
    }

    #[test]
    fn the_office_gallery_folds_changes_and_snapshots_round_trip() {
        let mut gallery = FleetGallery::default();
        gallery
            .apply(&change(
                1,
                Change::Enrol {
                    person: person("p-1"),
                },
            ))
            .unwrap();
        gallery
            .apply(&change(
                2,
                Change::Enrol {
                    person: person("p-2"),
                },
            ))
            .unwrap();
        gallery
            .apply(&change(3, Change::Disable { id: "p-1".into() }))
            .unwrap();
        gallery
            .apply(&change(
                4,
                Change::Enrol {
                    person: person("p-3"),
                },
            ))
            .unwrap();
        gallery
            .apply(&change(5, Change::Remove { id: "p-3".into() }))
            .unwrap();
        assert!(
            gallery
                .apply(&change(7, Change::Remove { id: "p-2".into() }))
                .is_err()
        );
        assert_eq!(gallery.generation(), 5);
        let active: Vec<&str> = gallery.active().map(|p| p.id.as_str()).collect();
        assert_eq!(active, ["p-2"]);
        assert!(gallery.get("p-1").unwrap().disabled);

        let office = key(1);
        let trusted = TrustedKeys::of([office.verifying_key()]);
        let snapshot = gallery.snapshot(DateTime::from_timestamp(1_800_000_100, 0).unwrap());
        let read: GallerySnapshot = verify(&sign(&snapshot, &office), &trusted).unwrap();
        assert_eq!(FleetGallery::from_snapshot(read), gallery);
    }

    #[test]
    fn a_lease_allows_matching_until_it_runs_out_and_only_at_its_generation() {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
        let lease = Lease {
            schema_version: GALLERY_SCHEMA_VERSION,
            generation: 9,
            issued_at: at(0),
            expires_at: at(300),
        };
        assert_eq!(lease.refusal(9, at(100)), None);
        assert_eq!(lease.refusal(12, at(300)), None);
        assert!(
            lease
                .refusal(8, at(100))
                .unwrap()
                .contains("requires gallery generation 9")
        );
        assert!(lease.refusal(9, at(301)).unwrap().contains("ran out"));
    }

    #[test]
    fn embeddings_that_are_not_whole_finite_values_are_refused() {
        let parse = |text: &str| serde_json::from_str::<Embedding>(text);
        assert!(parse("\"AAAA\"").is_err()); // 3 bytes
        let nan = BASE64.encode(f32::NAN.to_le_bytes());
        assert!(
            parse(&format!("\"{nan}\""))
                .unwrap_err()
                .to_string()
                .contains("not finite")
        );
        let one = BASE64.encode(1.0f32.to_le_bytes());
        assert_eq!(parse(&format!("\"{one}\"")).unwrap(), Embedding(vec![1.0]));
    }
}
