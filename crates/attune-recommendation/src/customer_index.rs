//! The served snapshot's map from customer id to the customer's dense index,
//! held compactly: it has a row per customer the models know, so it is part
//! of the snapshot's memory per million customers.
//!
//! A `HashMap<String, u32>` spent about 70 bytes per customer there (a 24-byte
//! `String` and its own heap allocation per id, plus the table's slack). Here
//! every id lives in one text, each index is 4 bytes of offset, and the table
//! holds only the 4-byte indexes, hashing an id's text again to compare: about
//! the id's length plus 14 bytes per customer.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Customer ids by dense index, and the index of an id.
#[derive(Default)]
pub struct CustomerIndex {
    /// Every id, one after another, in index order.
    text: String,
    /// Where id `i` ends in `text` (it starts where id `i - 1` ends).
    ends: Vec<u32>,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for CustomerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the ids: they are personal data.
        f.debug_struct("CustomerIndex")
            .field("customers", &self.ends.len())
            .finish_non_exhaustive()
    }
}

impl CustomerIndex {
    /// The index of `ids`: id `ids[i]` gets index `i`. Fails when the ids'
    /// text passes 4 GiB (offsets are 32-bit) or an id repeats.
    pub fn new(ids: &[String]) -> Result<Self, String> {
        let length: usize = ids.iter().map(String::len).sum();
        if u32::try_from(length).is_err() || u32::try_from(ids.len()).is_err() {
            return Err("too many customer ids to index".into());
        }
        let mut index = CustomerIndex {
            text: String::with_capacity(length),
            ends: Vec::with_capacity(ids.len()),
            table: HashTable::with_capacity(ids.len()),
            hasher: foldhash::fast::RandomState::default(),
        };
        for (ix, id) in (0u32..).zip(ids) {
            if index.get(id).is_some() {
                return Err("a customer id is listed twice".into());
            }
            index.text.push_str(id);
            index
                .ends
                .push(u32::try_from(index.text.len()).unwrap_or(u32::MAX));
            let hash = index.hasher.hash_one(id.as_str());
            let (text, ends, hasher) = (&index.text, &index.ends, &index.hasher);
            index
                .table
                .insert_unique(hash, ix, |&other| hasher.hash_one(id_at(text, ends, other)));
        }
        Ok(index)
    }

    /// The dense index of customer `id`, if the snapshot knows them.
    pub fn get(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |&ix| id_at(&self.text, &self.ends, ix) == id)
            .copied()
    }

    /// Resident size estimate, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4 + self.table.allocation_size()
    }
}

/// Id `ix` of `text` cut at `ends`.
fn id_at<'a>(text: &'a str, ends: &[u32], ix: u32) -> &'a str {
    let ix = ix as usize;
    let start = if ix == 0 { 0 } else { ends[ix - 1] as usize };
    &text[start..ends[ix] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_id_at_its_position_and_nothing_else() {
        let ids: Vec<String> = (0..5000).map(|n| format!("customer-{n}")).collect();
        let index = CustomerIndex::new(&ids).unwrap();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some(u32::try_from(n).unwrap()));
        }
        assert_eq!(index.get("customer-5000"), None);
        assert_eq!(index.get("customer-1"), Some(1));
        assert_eq!(index.get("customer-"), None);
        assert_eq!(index.get(""), None);
    }

    #[test]
    fn an_id_may_be_the_start_of_another() {
        let ids = ["a", "ab", "abc", "b"].map(String::from);
        let index = CustomerIndex::new(&ids).unwrap();
        assert_eq!(index.get("ab"), Some(1));
        assert_eq!(index.get("abc"), Some(2));
        assert_eq!(index.get("b"), Some(3));
        assert_eq!(index.get("bc"), None);
    }

    #[test]
    fn refuses_a_repeated_id() {
        let ids = ["a", "b", "a"].map(String::from);
        assert!(CustomerIndex::new(&ids).is_err());
    }

    #[test]
    fn takes_far_less_than_a_map_of_strings() {
        let ids: Vec<String> = (0..100_000).map(|n| format!("bench-{n:07}")).collect();
        let index = CustomerIndex::new(&ids).unwrap();
        let per_customer = index.memory_bytes() as f64 / ids.len() as f64;
        // 13 bytes of id, 4 of offset, a table of 4-byte slots at most 8/7 full.
        assert!(
            per_customer < 13.0 + 4.0 + 12.0,
            "{per_customer} bytes per customer"
        );
    }
}
