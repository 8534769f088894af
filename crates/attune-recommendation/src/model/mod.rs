//! The models, pure and in memory: trained from interactions, served from an
//! immutable snapshot, and evaluated offline by `attune eval` through the same code.
//!
//! **Architecture Invariant**: nothing here knows tonic, sea-orm or tokio. The
//! serving side maps customer and item ids to the dense indexes below, trains a
//! [`Models`] snapshot off the request path and swaps it in; `attune eval` maps a
//! CSV the same way and calls the very same [`Models::recommend`].
//!
//! Layout: [`history`] (each customer's own items: buy-again and the personal
//! vector), [`cooccurrence`] (item-to-item neighbours: bought together, viewed
//! together, similar), [`popularity`] (trending, global and per category),
//! [`content`] (category and brand affinities for new customers and new items),
//! [`blend`] (the one ranking), [`snapshot`] (training and the [`Models`] API).

mod blend;
mod config;
mod content;
mod cooccurrence;
mod ease;
mod history;
mod ixmap;
mod popularity;
mod snapshot;
mod time;
mod topk;

pub use config::{Collaborative, MAX_EASE_HEAD, ModelConfig, SignalWeights};
pub(crate) use ixmap::{IxMap, IxSet};
pub use snapshot::{MemoryUse, Models};

/// Dense item index, assigned by the caller (serving or eval).
pub type ItemIx = u32;
/// Dense customer index, assigned by the caller.
pub type UserIx = u32;
/// Dense category index, assigned by the caller.
pub type CategoryIx = u32;
/// Dense brand index, assigned by the caller.
pub type BrandIx = u32;

/// What a customer did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    View,
    CartAdd,
    CartRemove,
    Purchase,
    /// Cancels one purchase of the item (the customer did not want it after all).
    Return,
    RecommendationClick,
}

/// One event of the interaction matrix.
#[derive(Clone, Copy, Debug)]
pub struct Interaction {
    pub user: UserIx,
    pub item: ItemIx,
    pub signal: Signal,
    /// Microseconds since the epoch.
    pub time: i64,
    /// The user's order ordinal (1, 2, ...) for purchases; 0 otherwise (a
    /// purchase with 0 is grouped into a basket by its time).
    pub basket: u32,
    pub quantity: u32,
}

/// What the catalogue says about an item.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemFacts {
    /// The category path, root first.
    pub categories: Vec<CategoryIx>,
    pub brand: Option<BrandIx>,
    /// Microseconds since the epoch.
    pub launch: Option<i64>,
    /// Inactive items (delisted) are never recommended, though their history
    /// still links the items around them.
    pub active: bool,
}

/// Everything one training reads.
#[derive(Clone, Debug, Default)]
pub struct TrainingData {
    /// Customers are `0..users`.
    pub users: u32,
    /// Indexed by [`ItemIx`].
    pub items: Vec<ItemFacts>,
    /// In any order.
    pub interactions: Vec<Interaction>,
    /// The training's clock (microseconds since the epoch): decays are measured from it.
    pub now: i64,
}

/// Why training refused its data (the previous snapshot stays in service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingError(pub String);

impl std::fmt::Display for TrainingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrainingError {}

/// Why an item scored: the serving side turns it into a typed Reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Because {
    /// The customer bought it before, this many times.
    OwnHistory {
        purchases: u32,
    },
    /// The customer's own interest (viewed, carted, clicked) without a purchase.
    Personal,
    /// Customers who liked this item (one the customer interacted with) liked it too.
    SimilarTo(ItemIx),
    BoughtTogether(ItemIx),
    ViewedTogether(ItemIx),
    Popular,
    PopularIn(CategoryIx),
    Content {
        category: Option<CategoryIx>,
        brand: Option<BrandIx>,
    },
}

/// A recommended item, best first in every list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub item: ItemIx,
    pub score: f32,
    pub because: Because,
}

/// One item the customer buys again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuyAgain {
    pub item: ItemIx,
    pub score: f32,
    pub purchases: u32,
    /// Microseconds since the epoch (day resolution: the start of that UTC day).
    pub last: i64,
    /// Mean time between purchases in microseconds, from two purchases on.
    pub interval: Option<i64>,
    /// `last + interval`.
    pub expected_next: Option<i64>,
}

/// What a ranking is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// The next order: items bought before count (most of a grocery basket).
    NextBasket,
    /// Something new: never an item the customer bought before.
    Discovery,
}
