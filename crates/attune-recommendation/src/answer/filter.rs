//! Business rules: which catalogue items may appear in an answer (filters and
//! exclusions), how rules move their scores (boost / bury), and how many of one
//! category or brand an answer holds (diversity).

use crate::idmap::{IdMap as HashMap, IdSet as HashSet};
use std::sync::Arc;

use attune_kit::types::Money;
use attune_proto::recommendation::v1 as pb;

use crate::catalogue;
use crate::model::UserIx;
use crate::served::Snapshot;

/// A boost or bury rule, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRule {
    pub brand: Option<String>,
    pub category: Option<String>,
    pub attribute: Option<(String, String)>,
    pub factor: f64,
}

impl ScoreRule {
    fn matches(&self, item: &pb::CatalogItem) -> bool {
        self.brand.as_ref().is_none_or(|brand| item.brand == *brand)
            && self
                .category
                .as_ref()
                .is_none_or(|category| catalogue::in_category(item, category))
            && self
                .attribute
                .as_ref()
                .is_none_or(|(key, value)| item.attributes.get(key) == Some(value))
    }
}

/// The request's filters, parsed.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub in_stock_only: bool,
    pub categories: Vec<String>,
    pub exclude_categories: Vec<String>,
    pub brands: Vec<String>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    pub exclude_purchased: bool,
    /// Micros; `None` means all time.
    pub purchased_lookback: Option<i64>,
    pub repurchasable: Vec<String>,
    pub exclude_in_cart: bool,
    pub max_per_category: usize,
    pub max_per_brand: usize,
    pub exclude_items: HashSet<String>,
    pub attributes: Vec<(String, String)>,
    pub rules: Vec<ScoreRule>,
}

/// The customer's history in the served models, asked item by item: a
/// customer may have bought thousands of items, and an answer judges a few
/// dozen candidates, so nothing of it is copied per answer.
#[derive(Clone)]
pub struct History {
    pub snapshot: Arc<Snapshot>,
    pub user: UserIx,
}

impl History {
    /// When the customer last bought `item_id`, unless never.
    pub fn last_purchase(&self, item_id: &str) -> Option<i64> {
        let item = self.snapshot.item(item_id)?;
        self.snapshot.models.last_purchase(self.user, item)
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History(..)")
    }
}

/// What the answer must leave out besides the filter's own rules: the
/// customer's purchases and cart (when asked to and allowed to know them), the
/// items on screen.
#[derive(Debug, Default)]
pub struct Known {
    /// Items bought in the session, with the last purchase time (micros).
    pub bought: HashMap<String, i64>,
    /// The customer's purchases in the models.
    pub history: Option<History>,
    /// Items in the cart (the request's and, personalized, the session's).
    pub cart: HashSet<String>,
    /// Items never to return (the item asked about, the cart of a complements
    /// request).
    pub never: HashSet<String>,
}

impl Known {
    /// When the customer last bought `item_id` (session or models), if ever.
    pub fn last_bought(&self, item_id: &str) -> Option<i64> {
        let session = self.bought.get(item_id).copied();
        let history = self.history.as_ref().and_then(|h| h.last_purchase(item_id));
        session.max(history)
    }
}

/// Whether an item is active and in stock: what every filter asks of every
/// candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Availability {
    pub active: bool,
    pub in_stock: bool,
}

impl Availability {
    pub fn of(item: &pb::CatalogItem) -> Self {
        Self {
            active: catalogue::is_active(item),
            in_stock: catalogue::is_in_stock(item),
        }
    }
}

impl Filter {
    /// Whether `item` passes every rule, at `now` (micros).
    pub fn admits(&self, item: &pb::CatalogItem, known: &Known, now: i64) -> bool {
        self.admits_available(item, Availability::of(item), known, now)
    }

    /// [`Filter::admits`] with the item's availability already known (the
    /// item table keeps it densely). Every other rule reads the item only when
    /// the request sets it, so a request without them judges its candidates
    /// without touching their catalogue entries: for the few dozen candidates
    /// of every answer, each entry read was a cache miss.
    pub fn admits_available(
        &self,
        item: &pb::CatalogItem,
        availability: Availability,
        known: &Known,
        now: i64,
    ) -> bool {
        if !availability.active {
            return false;
        }
        if self.in_stock_only && !availability.in_stock {
            return false;
        }
        if known.never.contains(&item.item_id) || self.exclude_items.contains(&item.item_id) {
            return false;
        }
        if !self.categories.is_empty()
            && !self
                .categories
                .iter()
                .any(|c| catalogue::in_category(item, c))
        {
            return false;
        }
        if self
            .exclude_categories
            .iter()
            .any(|c| catalogue::in_category(item, c))
        {
            return false;
        }
        if !self.brands.is_empty() && !self.brands.contains(&item.brand) {
            return false;
        }
        if !self.price_fits(item) {
            return false;
        }
        if !self
            .attributes
            .iter()
            .all(|(key, value)| item.attributes.get(key) == Some(value))
        {
            return false;
        }
        if self.exclude_in_cart && known.cart.contains(&item.item_id) {
            return false;
        }
        if self.exclude_purchased
            && let Some(last) = known.last_bought(&item.item_id)
        {
            let within = self
                .purchased_lookback
                .is_none_or(|lookback| now.saturating_sub(last) <= lookback);
            let repurchasable = self
                .repurchasable
                .iter()
                .any(|c| catalogue::in_category(item, c));
            if within && !repurchasable {
                return false;
            }
        }
        true
    }

    fn price_fits(&self, item: &pb::CatalogItem) -> bool {
        if self.min_price.is_none() && self.max_price.is_none() {
            return true;
        }
        let Some(price) = item
            .price
            .as_ref()
            .and_then(|p| Money::parse(p.amount_minor, &p.currency_code).ok())
        else {
            return false;
        };
        let fits = |bound: &Option<Money>, ok: fn(i64, i64) -> bool| {
            bound.is_none_or(|bound| {
                bound.currency() == price.currency()
                    && ok(price.amount_minor(), bound.amount_minor())
            })
        };
        fits(&self.min_price, |p, b| p >= b) && fits(&self.max_price, |p, b| p <= b)
    }

    /// The product of the factors of every rule `item` matches (`extra` are a
    /// variant's rules, applied after the request's).
    pub fn factor(&self, item: &pb::CatalogItem, extra: &[ScoreRule]) -> f64 {
        self.rules
            .iter()
            .chain(extra)
            .filter(|rule| rule.matches(item))
            .map(|rule| rule.factor)
            .product()
    }
}

/// Counts per leaf category and brand, for the diversity caps.
#[derive(Debug, Default)]
pub struct Diversity {
    categories: HashMap<String, usize>,
    brands: HashMap<String, usize>,
}

impl Diversity {
    /// Takes `item` if the caps leave room for it. Only a capped dimension is
    /// counted: most requests set no cap, and counting copies each name.
    pub fn admit(&mut self, filter: &Filter, item: &pb::CatalogItem) -> bool {
        let category = catalogue::leaf_category(item).unwrap_or_default();
        let capped_brand = filter.max_per_brand > 0 && !item.brand.is_empty();
        if filter.max_per_category > 0
            && self.categories.get(category).copied().unwrap_or(0) >= filter.max_per_category
        {
            return false;
        }
        if capped_brand
            && self.brands.get(&item.brand).copied().unwrap_or(0) >= filter.max_per_brand
        {
            return false;
        }
        if filter.max_per_category > 0 {
            *self.categories.entry(category.to_owned()).or_default() += 1;
        }
        if capped_brand {
            *self.brands.entry(item.brand.clone()).or_default() += 1;
        }
        true
    }
}
