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
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

use crate::customer_index::CustomerIndex;
use crate::idmap::IdMap;
use crate::model::{self, BrandIx, CategoryIx, ItemIx, UserIx};
use crate::replicas::Pseudonyms;

/// The dense indexes one training assigned.
#[derive(Debug, Default)]
pub struct Indexes {
    /// Item ids by index.
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

/// The models served now, if a training succeeded yet.
pub struct Served {
    current: ArcSwap<Option<Arc<Snapshot>>>,
    erased: Erased,
    names: Pseudonyms,
}

impl Served {
    /// Nothing served yet.
    pub fn new(names: Pseudonyms) -> Self {
        Self {
            current: ArcSwap::default(),
            erased: Erased::default(),
            names,
        }
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
