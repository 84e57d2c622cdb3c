// SPDX-License-Identifier: MIT OR Apache-2.0
//! The identities sidecar: who each FAISS id is, as a JSON array sorted by id, one person per
//! line, so that a million people cost about 150 bytes each on disk rather than twice that
//! pretty-printed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_LABEL_CHARS, id_problem, text_problem};
use super::manifest::Manifest;
use super::roster::{self, Roster};

/// One entry of the identities sidecar as written; `Identity` is the same with owned fields.
#[derive(Serialize)]
struct StoredIdentity<'a> {
    faiss_id: i64,
    id: &'a str,
    label: &'a str,
    enrolled_at: &'a str,
    model: &'a str,
}

/// One entry as read, borrowing from the file's bytes where it can: a million people then cost
/// no allocations beyond the roster's own.
#[derive(Deserialize)]
struct LoadedIdentity<'a> {
    faiss_id: i64,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    label: Cow<'a, str>,
    #[serde(borrow)]
    enrolled_at: Cow<'a, str>,
    #[serde(borrow)]
    model: Cow<'a, str>,
}

/// The sidecar's bytes for everyone in the roster, all embedded by `model`.
pub(super) fn to_json(roster: &Roster, model: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut people: Vec<roster::Person<'_>> = roster.iter().collect();
    people.sort_unstable_by(|a, b| a.id.cmp(b.id));
    let mut json = Vec::with_capacity(people.len() * 160 + 4);
    json.push(b'[');
    for (position, person) in people.iter().enumerate() {
        json.extend_from_slice(if position == 0 { b"\n" } else { b",\n" });
        let stored = StoredIdentity {
            faiss_id: person.faiss_id,
            id: person.id,
            label: person.label,
            enrolled_at: &rfc3339(person.enrolled_at),
            model,
        };
        serde_json::to_writer(&mut json, &stored)?;
    }
    json.extend_from_slice(b"\n]\n");
    Ok(json)
}

/// Reads the identities sidecar straight into a roster, checking each entry against the manifest.
pub(super) fn load_roster(json: &[u8], manifest: &Manifest) -> Result<Roster, serde_json::Error> {
    let loader = Loader {
        manifest,
        expected_people: json.len() / 150,
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let roster = loader.deserialize(&mut de)?;
    de.end()?;
    Ok(roster)
}

struct Loader<'m> {
    manifest: &'m Manifest,
    /// A guess from the file size, to spare the roster most of its regrowth.
    expected_people: usize,
}

impl<'de> DeserializeSeed<'de> for Loader<'_> {
    type Value = Roster;
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Roster, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Loader<'_> {
    type Value = Roster;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of identities")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Roster, A::Error> {
        let mut roster = Roster::with_capacity(self.expected_people, self.expected_people * 24);
        let mut position = 0;
        while let Some(identity) = seq.next_element::<LoadedIdentity<'de>>()? {
            if let Err(problem) = add_loaded(&mut roster, &identity, self.manifest) {
                return Err(A::Error::custom(format!(
                    "entry {position} ({:?}): {problem}",
                    identity.id
                )));
            }
            position += 1;
        }
        roster
            .finish_unsorted()
            .map_err(|faiss_id| A::Error::custom(format!("faiss_id {faiss_id} listed twice")))?;
        Ok(roster)
    }
}

/// Adds one stored identity to the roster, or says what is wrong with it.
fn add_loaded(
    roster: &mut Roster,
    identity: &LoadedIdentity<'_>,
    manifest: &Manifest,
) -> Result<(), String> {
    if let Some(problem) = id_problem(&identity.id) {
        return Err(problem.to_owned());
    }
    if let Some(problem) = text_problem(&identity.label, MAX_LABEL_CHARS) {
        return Err(format!("label: {problem}"));
    }
    if identity.model != manifest.model {
        return Err(format!(
            "model {:?} differs from manifest.json's {:?}",
            identity.model, manifest.model
        ));
    }
    if !(0..manifest.next_faiss_id).contains(&identity.faiss_id) {
        return Err(format!(
            "faiss_id {} is outside 0..{} (manifest.json's next_faiss_id)",
            identity.faiss_id, manifest.next_faiss_id
        ));
    }
    let enrolled_at = chrono::DateTime::parse_from_rfc3339(&identity.enrolled_at)
        .map_err(|error| format!("enrolled_at {:?}: {error}", identity.enrolled_at))?
        .timestamp();
    roster
        .push_unsorted(
            identity.faiss_id,
            &identity.id,
            &identity.label,
            enrolled_at,
        )
        .map_err(|error| match error {
            roster::RosterError::IdTaken => "id listed twice".to_owned(),
            other => format!("cannot be listed: {other:?}"),
        })
}

pub(super) fn rfc3339(unix_seconds: i64) -> String {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
