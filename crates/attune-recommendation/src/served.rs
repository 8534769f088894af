//! The models served: an immutable snapshot of the trained [`model::Models`]
//! with the maps from ids to their dense indexes, swapped atomically when a
//! training succeeds (readers never lock and keep the snapshot they loaded).
//!
//! Erasure cannot wait for the next training: erased customers are listed in
//! [`Erased`], which serving consults before using a customer's index, until a
//! training that started after the erasure (and so no longer holds the
//! customer) is swapped in.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use attune_proto::recommendation::v1 as pb;
use chrono::{DateTime, Utc};

use crate::answer::filter::Availability;
use crate::catalogue::Catalogue;
use crate::customer_index::CustomerIndex;
use crate::idmap::IdMap;
use crate::model::{self, BrandIx, CategoryIx, ItemIx, UserIx};
use crate::replicas::Pseudonyms;

/// The dense indexes one training assigned.
#[derive(Debug, Default)]
pub struct Indexes {
    /// Item ids by index, in id order: a training numbers the catalogue's
    /// items as it iterates them, by id. Answers rely on it to break score
    /// ties by index instead of reading ids.
    pub items: Vec<String>,
    pub item_ix: IdMap<String, ItemIx>,
    /// Customers the models know, compactly (a row per customer).
    pub user_ix: CustomerIndex,
    /// Category ids by index.
    pub categories: Vec<String>,
    pub category_ix: IdMap<String, CategoryIx>,
    /// Brands by index.
    pub brands: Vec<String>,
    pub brand_ix: IdMap<String, BrandIx>,
}

/// One trained snapshot.
pub struct Snapshot {
    pub models: model::Models,
    pub indexes: Indexes,
    pub train_time: DateTime<Utc>,
    pub train_duration: std::time::Duration,
    pub interaction_count: u64,
}

impl Snapshot {
    /// The index of item `id`, if the snapshot knows it.
    pub fn item(&self, id: &str) -> Option<ItemIx> {
        self.indexes.item_ix.get(id).copied()
    }

    /// The id of item `ix`.
    pub fn item_id(&self, ix: ItemIx) -> Option<&str> {
        self.indexes.items.get(ix as usize).map(String::as_str)
    }

    /// Resident size estimate of the models and their indexes, in bytes.
    pub fn memory_use(&self) -> model::MemoryUse {
        let models = self.models.memory_use();
        let indexes = &self.indexes;
        model::MemoryUse {
            customers: models.customers + indexes.user_ix.memory_bytes(),
            items: models.items
                + ids_bytes(&indexes.items, &indexes.item_ix)
                + ids_bytes(&indexes.categories, &indexes.category_ix)
                + ids_bytes(&indexes.brands, &indexes.brand_ix),
        }
    }

    /// The id of category `ix`.
    pub fn category_id(&self, ix: CategoryIx) -> Option<&str> {
        self.indexes.categories.get(ix as usize).map(String::as_str)
    }
}

/// An id list and its map back to indexes: each id held twice (list and
/// key), each with its `String`, plus the map's slots and control bytes.
fn ids_bytes<V>(ids: &[String], ix: &IdMap<String, V>) -> usize {
    let text: usize = ids.iter().map(String::capacity).sum();
    2 * text + std::mem::size_of_val(ids) + ix.capacity() * (std::mem::size_of::<(String, V)>() + 1)
}

/// The catalogue's items by one snapshot's item indexes, for that snapshot
/// and one catalogue: an answer reads the item of every candidate the models
/// propose, and a lookup here is an index where the catalogue's is a hash of
/// the id and a comparison.
pub struct ItemsByIx {
    snapshot: Arc<Snapshot>,
    catalogue: Arc<Catalogue>,
    entries: Vec<Option<Entry>>,
    leaf_names: Vec<String>,
}

/// What an answer reads of one catalogue item, by the snapshot's index. The
/// leaf category and availability are copied out of the item: favourite
/// categories are counted over a customer's fifty strongest items and the
/// filter judges every candidate, on every answer, and reading the items
/// themselves was a cache miss each.
struct Entry {
    item: Arc<pb::CatalogItem>,
    /// The leaf category as a position in `leaf_names`; [`NO_LEAF`] for none.
    leaf: u32,
    /// For the filter (`Filter::admits_available`).
    availability: Availability,
}

const NO_LEAF: u32 = u32::MAX;

impl ItemsByIx {
    /// Looks every item of `snapshot` up in `catalogue` once.
    pub fn build(snapshot: Arc<Snapshot>, catalogue: Arc<Catalogue>) -> Self {
        let mut leaf_names = Vec::new();
        let mut leaf_ix: IdMap<&str, u32> = IdMap::default();
        let entries = snapshot
            .indexes
            .items
            .iter()
            .map(|id| {
                let item = catalogue.get(id)?;
                let leaf = crate::catalogue::leaf_category(item).map_or(NO_LEAF, |leaf| {
                    *leaf_ix.entry(leaf).or_insert_with(|| {
                        leaf_names.push(leaf.to_owned());
                        u32::try_from(leaf_names.len() - 1).unwrap_or(NO_LEAF)
                    })
                });
                Some(Entry {
                    item: Arc::clone(item),
                    leaf,
                    availability: Availability::of(item),
                })
            })
            .collect();
        Self {
            snapshot,
            catalogue,
            entries,
            leaf_names,
        }
    }

    /// Whether this table is the one of `snapshot` and `catalogue`.
    pub fn is_for(&self, snapshot: &Arc<Snapshot>, catalogue: &Arc<Catalogue>) -> bool {
        Arc::ptr_eq(&self.snapshot, snapshot) && Arc::ptr_eq(&self.catalogue, catalogue)
    }

    fn entry(&self, ix: ItemIx) -> Option<&Entry> {
        self.entries.get(ix as usize)?.as_ref()
    }

    /// The catalogue's item at index `ix` of the snapshot, if it has one.
    pub fn get(&self, ix: ItemIx) -> Option<&Arc<pb::CatalogItem>> {
        self.entry(ix).map(|entry| &entry.item)
    }

    /// The availability of the catalogue's item at index `ix`, if it has one.
    pub fn availability(&self, ix: ItemIx) -> Option<Availability> {
        self.entry(ix).map(|entry| entry.availability)
    }

    /// The leaf category of the catalogue's item at index `ix`, if any.
    pub fn leaf_category(&self, ix: ItemIx) -> Option<&str> {
        let leaf = self.entry(ix)?.leaf;
        self.leaf_names.get(leaf as usize).map(String::as_str)
    }
}

/// The [`ItemsByIx`] table of the snapshot and catalogue served now, built
/// off the request path whenever either changed.
#[derive(Default)]
struct ItemTable {
    current: ArcSwapOption<ItemsByIx>,
    building: AtomicBool,
}

/// The models served now, if a training succeeded yet.
pub struct Served {
    current: ArcSwap<Option<Arc<Snapshot>>>,
    erased: Erased,
    names: Pseudonyms,
    items: Arc<ItemTable>,
}

impl Served {
    /// Nothing served yet.
    pub fn new(names: Pseudonyms) -> Self {
        Self {
            current: ArcSwap::default(),
            erased: Erased::default(),
            names,
            items: Arc::default(),
        }
    }

    /// The item table of `snapshot` and `catalogue` when it is built. When it
    /// is not (either changed since), one is built on a blocking thread and
    /// this answer goes without: its caller looks ids up in the catalogue,
    /// which gives the same items.
    pub fn items_by_ix(
        &self,
        snapshot: &Arc<Snapshot>,
        catalogue: &Arc<Catalogue>,
    ) -> Option<Arc<ItemsByIx>> {
        let table = self.items.current.load_full();
        if let Some(table) = table.as_ref().filter(|t| t.is_for(snapshot, catalogue)) {
            return Some(Arc::clone(table));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return None;
        };
        if !self.items.building.swap(true, Ordering::AcqRel) {
            let (cell, snapshot, catalogue) = (
                Arc::clone(&self.items),
                Arc::clone(snapshot),
                Arc::clone(catalogue),
            );
            runtime.spawn_blocking(move || {
                cell.current
                    .store(Some(Arc::new(ItemsByIx::build(snapshot, catalogue))));
                cell.building.store(false, Ordering::Release);
            });
        }
        None
    }

    /// Stops serving `customer_id` from the snapshot at once.
    pub fn erase(&self, customer_id: &str) {
        self.erased.add(self.names.of(customer_id));
    }

    /// The snapshot served now.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load().as_ref().clone()
    }

    /// Serves `snapshot` from now on; its training read the data at erasure
    /// generation `generation`, so erasures before it are in the data no more.
    pub fn swap(&self, snapshot: Snapshot, generation: u64) {
        self.current.store(Arc::new(Some(Arc::new(snapshot))));
        self.erased.forget_before(generation);
    }

    /// The customer's index in `snapshot`, unless erased since it was trained.
    pub fn user(&self, snapshot: &Snapshot, customer_id: &str) -> Option<UserIx> {
        if !self.erased.is_empty() && self.erased.contains(&self.names.of(customer_id)) {
            return None;
        }
        snapshot.indexes.user_ix.get(customer_id)
    }

    /// The erasures.
    pub fn erased(&self) -> &Erased {
        &self.erased
    }
}

/// Customers erased since the data of the served snapshot was read, each with
/// the erasure's generation.
#[derive(Default)]
pub struct Erased {
    customers: ArcSwap<HashMap<String, u64>>,
    generation: AtomicU64,
}

impl Erased {
    /// Stops serving the customer named `name` (a [`Pseudonyms`] name) from
    /// the snapshot at once.
    pub fn add(&self, name: String) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.customers.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(name.clone(), generation);
            next
        });
    }

    fn is_empty(&self) -> bool {
        self.customers.load().is_empty()
    }

    /// The generation a training about to read its data records.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn contains(&self, name: &str) -> bool {
        self.customers.load().contains_key(name)
    }

    fn forget_before(&self, generation: u64) {
        self.customers.rcu(|current| {
            current
                .iter()
                .filter(|(_, erased_at)| **erased_at > generation)
                .map(|(id, at)| (id.clone(), *at))
                .collect::<HashMap<_, _>>()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ItemFacts, ModelConfig, TrainingData};

    fn snapshot(items: &[&str]) -> Arc<Snapshot> {
        let data = TrainingData {
            users: 0,
            items: items
                .iter()
                .map(|_| ItemFacts {
                    categories: Vec::new(),
                    brand: None,
                    launch: None,
                    active: true,
                })
                .collect(),
            interactions: Vec::new(),
            now: 0,
        };
        let indexes = Indexes {
            items: items.iter().map(|&id| id.to_owned()).collect(),
            item_ix: (0u32..)
                .zip(items)
                .map(|(ix, &id)| (id.to_owned(), ix))
                .collect(),
            ..Indexes::default()
        };
        Arc::new(Snapshot {
            models: model::Models::train(&data, &ModelConfig::default()).unwrap(),
            indexes,
            train_time: DateTime::<Utc>::default(),
            train_duration: std::time::Duration::ZERO,
            interaction_count: 0,
        })
    }

    fn catalogue(ids: &[&str]) -> Arc<Catalogue> {
        Arc::new(Catalogue::new(ids.iter().map(|&id| pb::CatalogItem {
            item_id: id.to_owned(),
            ..Default::default()
        })))
    }

    fn in_category(id: &str, path: &[&str]) -> pb::CatalogItem {
        pb::CatalogItem {
            item_id: id.to_owned(),
            category_path: path
                .iter()
                .map(|&c| pb::CategoryRef {
                    category_id: c.to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_item_table_holds_what_the_catalogue_holds_by_the_snapshots_indexes() {
        let snapshot = snapshot(&["tea", "jam", "gone"]);
        let shop = catalogue(&["jam", "tea", "new"]);
        let table = ItemsByIx::build(Arc::clone(&snapshot), Arc::clone(&shop));
        let id = |ix| table.get(ix).map(|item| item.item_id.as_str());
        assert_eq!(
            (id(0), id(1), id(2), id(3)),
            (Some("tea"), Some("jam"), None, None)
        );
        assert!(Arc::ptr_eq(table.get(0).unwrap(), shop.get("tea").unwrap()));
        assert!(table.is_for(&snapshot, &shop));
        // The same items in another catalogue (a change, even an empty one)
        // or another snapshot: the table is not theirs.
        assert!(!table.is_for(&snapshot, &catalogue(&["jam", "tea", "new"])));
        assert!(!table.is_for(&self::snapshot(&["tea", "jam", "gone"]), &shop));
    }

    #[test]
    fn the_item_table_tells_each_items_leaf_category() {
        let snapshot = snapshot(&["tea", "jam", "honey", "plain", "gone"]);
        let shop = Arc::new(Catalogue::new([
            in_category("tea", &["drinks", "hot"]),
            in_category("jam", &["food", "spreads"]),
            in_category("honey", &["spreads"]),
            in_category("plain", &[]),
        ]));
        let table = ItemsByIx::build(snapshot, shop);
        let leaves: Vec<Option<&str>> = (0..6).map(|ix| table.leaf_category(ix)).collect();
        assert_eq!(
            leaves,
            [
                Some("hot"),
                Some("spreads"),
                Some("spreads"),
                None,
                None,
                None
            ]
        );
        assert_eq!(table.leaf_names, ["hot", "spreads"], "each name once");
    }

    #[test]
    fn the_item_table_tells_each_items_availability() {
        let snapshot = snapshot(&["tea", "jam", "honey", "gone"]);
        let stocked = |id: &str, active, in_stock| pb::CatalogItem {
            item_id: id.to_owned(),
            active,
            in_stock,
            ..Default::default()
        };
        let shop = Arc::new(Catalogue::new([
            stocked("tea", None, None),
            stocked("jam", Some(true), Some(false)),
            stocked("honey", Some(false), Some(true)),
        ]));
        let table = ItemsByIx::build(snapshot, Arc::clone(&shop));
        for (ix, id) in [(0, "tea"), (1, "jam"), (2, "honey")] {
            assert_eq!(
                table.availability(ix),
                Some(Availability::of(shop.get(id).unwrap())),
                "{id}"
            );
        }
        let available = |active, in_stock| Some(Availability { active, in_stock });
        assert_eq!(
            (0..3).map(|ix| table.availability(ix)).collect::<Vec<_>>(),
            [
                available(true, true),
                available(true, false),
                available(false, true)
            ]
        );
        assert_eq!(table.availability(3), None, "not in the catalogue");
        assert_eq!(table.availability(4), None, "not in the snapshot");
    }

    #[tokio::test]
    async fn a_table_is_built_off_the_request_path_for_the_pair_served_now() {
        let served = Served::new(Pseudonyms::new(Arc::new(
            attune_kit::secrets::PseudonymKey::new([7u8; 32]),
        )));
        let (snapshot, shop) = (snapshot(&["tea"]), catalogue(&["tea"]));
        assert!(
            served.items_by_ix(&snapshot, &shop).is_none(),
            "not built yet"
        );
        let mut table = None;
        for _ in 0..500 {
            table = served.items_by_ix(&snapshot, &shop);
            if table.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let table = table.expect("built within a second");
        assert_eq!(table.get(0).unwrap().item_id, "tea");
        // A changed catalogue goes without until its own table is built.
        let changed = catalogue(&["tea", "jam"]);
        assert!(served.items_by_ix(&snapshot, &changed).is_none());
    }
}
