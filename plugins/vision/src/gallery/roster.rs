// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who is enrolled, held compactly: at a million people the gate keeps this beside the index, so
//! a struct of four `String`s per person (about 400 bytes with its map entries and allocations)
//! would outweigh a compressed index tenfold. Here a person costs a 24-byte record, the bytes of
//! their id and label, and a 4-byte slot in a hash table.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// One person: the record points into the shared text instead of owning strings.
#[derive(Clone, Copy, Debug)]
struct Record {
    faiss_id: i64,
    /// Unix seconds, UTC.
    enrolled_at: i64,
    /// Where the id starts in `Roster::text`; the label follows it.
    text_start: u32,
    /// 0 marks a removed person (ids are never empty) until `compact` drops the record.
    id_len: u8,
    label_len: u16,
}

/// A person as the roster stores them, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Person<'a> {
    /// Where the record is: the position of the person's rescoring code, which is kept in step
    /// with the records (removed ones included, until `compact`).
    pub position: usize,
    pub faiss_id: i64,
    pub id: &'a str,
    pub label: &'a str,
    pub enrolled_at: i64,
}

/// Why a person cannot join the roster.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RosterError {
    IdTaken,
    /// FAISS ids only grow, which keeps the records sorted by them.
    FaissIdNotIncreasing,
    /// Ids longer than 255 bytes, labels longer than 65535 or more than 4 GiB of text in all;
    /// the gallery's own limits are far below the first two.
    TooLarge,
}

#[derive(Default)]
pub(super) struct Roster {
    /// Sorted by FAISS id, so a search hit is found by binary search without a second map.
    records: Vec<Record>,
    /// Every id and label back to back; removed people's bytes stay until `compact`.
    text: String,
    /// Indexes into `records` of the people present, hashed by person id.
    by_id: HashTable<u32>,
    hasher: RandomState,
    removed: usize,
}

impl Roster {
    pub fn with_capacity(people: usize, text_bytes: usize) -> Roster {
        Roster {
            records: Vec::with_capacity(people),
            text: String::with_capacity(text_bytes),
            by_id: HashTable::with_capacity(people),
            ..Roster::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether `push` has room for this id and label (the shared text is indexed by u32).
    pub fn has_room_for(&self, id: &str, label: &str) -> bool {
        let end = self.text.len() + id.len() + label.len();
        u32::try_from(end).is_ok() && u32::try_from(self.records.len()).is_ok()
    }

    /// Appends a person whose FAISS id is above every one given before.
    pub fn push(
        &mut self,
        faiss_id: i64,
        id: &str,
        label: &str,
        enrolled_at: i64,
    ) -> Result<(), RosterError> {
        if self
            .records
            .last()
            .is_some_and(|last| last.faiss_id >= faiss_id)
        {
            return Err(RosterError::FaissIdNotIncreasing);
        }
        self.push_unsorted(faiss_id, id, label, enrolled_at)
    }

    /// Appends in any FAISS id order; `finish_unsorted` must follow before any lookup by FAISS id.
    pub fn push_unsorted(
        &mut self,
        faiss_id: i64,
        id: &str,
        label: &str,
        enrolled_at: i64,
    ) -> Result<(), RosterError> {
        let id_len = u8::try_from(id.len()).map_err(|_| RosterError::TooLarge)?;
        let label_len = u16::try_from(label.len()).map_err(|_| RosterError::TooLarge)?;
        let text_start = u32::try_from(self.text.len()).map_err(|_| RosterError::TooLarge)?;
        let end = self.text.len() + id.len() + label.len();
        let index = u32::try_from(self.records.len()).map_err(|_| RosterError::TooLarge)?;
        if u32::try_from(end).is_err() || id_len == 0 {
            return Err(RosterError::TooLarge);
        }
        let hash = self.hasher.hash_one(id);
        let (records, text) = (&self.records, &self.text);
        if self
            .by_id
            .find(hash, |&i| id_of(records, text, i) == id)
            .is_some()
        {
            return Err(RosterError::IdTaken);
        }
        self.text.push_str(id);
        self.text.push_str(label);
        self.records.push(Record {
            faiss_id,
            enrolled_at,
            text_start,
            id_len,
            label_len,
        });
        let (records, text, hasher) = (&self.records, &self.text, &self.hasher);
        self.by_id
            .insert_unique(hash, index, |&i| hasher.hash_one(id_of(records, text, i)));
        Ok(())
    }

    /// Sorts records pushed out of FAISS id order; `Err` names a FAISS id given twice.
    pub fn finish_unsorted(&mut self) -> Result<(), i64> {
        self.records.sort_unstable_by_key(|record| record.faiss_id);
        if let Some(pair) = self
            .records
            .windows(2)
            .find(|pair| pair[0].faiss_id == pair[1].faiss_id)
        {
            return Err(pair[0].faiss_id);
        }
        self.records.shrink_to_fit();
        self.text.shrink_to_fit();
        self.rebuild_by_id();
        Ok(())
    }

    /// Removes a person; returns their FAISS id.
    pub fn remove(&mut self, id: &str) -> Option<i64> {
        let hash = self.hasher.hash_one(id);
        let (records, text) = (&self.records, &self.text);
        let entry = self
            .by_id
            .find_entry(hash, |&i| id_of(records, text, i) == id)
            .ok()?;
        let (index, _) = entry.remove();
        let record = &mut self.records[index as usize];
        record.id_len = 0;
        self.removed += 1;
        Some(record.faiss_id)
    }

    pub fn faiss_id_of(&self, id: &str) -> Option<i64> {
        let hash = self.hasher.hash_one(id);
        self.by_id
            .find(hash, |&i| id_of(&self.records, &self.text, i) == id)
            .map(|&i| self.records[i as usize].faiss_id)
    }

    pub fn by_faiss_id(&self, faiss_id: i64) -> Option<Person<'_>> {
        let index = self
            .records
            .binary_search_by_key(&faiss_id, |record| record.faiss_id)
            .ok()?;
        self.person(index)
    }

    pub fn contains_faiss_id(&self, faiss_id: i64) -> bool {
        self.by_faiss_id(faiss_id).is_some()
    }

    /// Everyone present, in FAISS id order (the order of enrolment).
    pub fn iter(&self) -> impl Iterator<Item = Person<'_>> {
        (0..self.records.len()).filter_map(|index| self.person(index))
    }

    /// Records in all, removed ones included: the next `push` lands at this position.
    pub fn positions(&self) -> usize {
        self.records.len()
    }

    /// Positions of removed people's records, which `compact` will drop.
    pub fn removed_positions(&self) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&index| self.records[index].id_len == 0)
            .collect()
    }

    /// Drops removed people's records and text, and returns spare capacity. Lookups are
    /// unaffected; only memory changes.
    pub fn compact(&mut self) {
        let mut text = String::with_capacity(self.text.len());
        let mut records = Vec::with_capacity(self.len());
        for record in &self.records {
            if record.id_len == 0 {
                continue;
            }
            let start = record.text_start as usize;
            let end = start + usize::from(record.id_len) + usize::from(record.label_len);
            let text_start =
                u32::try_from(text.len()).expect("compacted text is no longer than before");
            text.push_str(&self.text[start..end]);
            records.push(Record {
                text_start,
                ..*record
            });
        }
        text.shrink_to_fit();
        self.text = text;
        self.records = records;
        self.removed = 0;
        self.rebuild_by_id();
    }

    /// Whether `compact` would drop anything.
    pub fn has_removed(&self) -> bool {
        self.removed > 0
    }

    fn rebuild_by_id(&mut self) {
        let (records, text, hasher) = (&self.records, &self.text, &self.hasher);
        let mut by_id = HashTable::with_capacity(records.len() - self.removed);
        for (index, record) in records.iter().enumerate() {
            if record.id_len == 0 {
                continue;
            }
            let index = index as u32;
            by_id.insert_unique(hasher.hash_one(id_of(records, text, index)), index, |&i| {
                hasher.hash_one(id_of(records, text, i))
            });
        }
        self.by_id = by_id;
    }

    fn person(&self, position: usize) -> Option<Person<'_>> {
        let record = &self.records[position];
        if record.id_len == 0 {
            return None;
        }
        let start = record.text_start as usize;
        let label_start = start + usize::from(record.id_len);
        Some(Person {
            position,
            faiss_id: record.faiss_id,
            id: &self.text[start..label_start],
            label: &self.text[label_start..label_start + usize::from(record.label_len)],
            enrolled_at: record.enrolled_at,
        })
    }
}

fn id_of<'a>(records: &[Record], text: &'a str, index: u32) -> &'a str {
    let record = &records[index as usize];
    let start = record.text_start as usize;
    &text[start..start + usize::from(record.id_len)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_people_by_id_and_faiss_id_across_removal_and_compaction() {
        let mut roster = Roster::default();
        roster.push(3, "p-1", "Ada", 10).unwrap();
        roster.push(5, "p-2", "", 20).unwrap();
        roster.push(9, "p-3", "Cy", 30).unwrap();
        assert_eq!(
            roster.push(9, "p-4", "", 0),
            Err(RosterError::FaissIdNotIncreasing)
        );
        assert_eq!(roster.push(10, "p-1", "", 0), Err(RosterError::IdTaken));
        assert_eq!(roster.push(10, "", "", 0), Err(RosterError::TooLarge));

        assert_eq!(roster.remove("p-2"), Some(5));
        assert_eq!(roster.remove("p-2"), None);
        assert_eq!(roster.len(), 2);
        assert!(!roster.contains_faiss_id(5));
        roster.push(11, "p-2", "Bo", 40).unwrap();

        for compacted in [false, true] {
            if compacted {
                assert_eq!(roster.removed_positions(), [1]);
                roster.compact();
                assert!(!roster.has_removed());
                assert_eq!(roster.positions(), 3);
            }
            assert_eq!(roster.faiss_id_of("p-2"), Some(11), "compacted {compacted}");
            assert_eq!(roster.faiss_id_of("nobody"), None);
            let third = roster.by_faiss_id(9).unwrap();
            assert_eq!(
                (third.id, third.label, third.enrolled_at),
                ("p-3", "Cy", 30)
            );
            assert_eq!(third.position, if compacted { 1 } else { 2 });
            let ids: Vec<_> = roster.iter().map(|p| (p.faiss_id, p.id, p.label)).collect();
            assert_eq!(
                ids,
                [(3, "p-1", "Ada"), (9, "p-3", "Cy"), (11, "p-2", "Bo")]
            );
        }
    }

    #[test]
    fn unsorted_loading_sorts_and_refuses_a_faiss_id_twice() {
        let mut roster = Roster::with_capacity(3, 16);
        roster.push_unsorted(7, "b", "", 0).unwrap();
        roster.push_unsorted(2, "a", "", 0).unwrap();
        roster.finish_unsorted().unwrap();
        assert_eq!(roster.by_faiss_id(7).unwrap().id, "b");
        assert_eq!(roster.faiss_id_of("a"), Some(2));
        roster.push_unsorted(7, "c", "", 0).unwrap();
        assert_eq!(roster.finish_unsorted(), Err(7));
    }
}
