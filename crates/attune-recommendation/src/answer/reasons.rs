//! Typed reasons: what the model says about an item (`Because`) in the words
//! of the answer (`Reason`), knowing which items came from the request's
//! context and which from the customer's history, and the data categories each
//! reason used.

use crate::idmap::IdSet as HashSet;

use attune_proto::common::v1::DataCategory;
use attune_proto::recommendation::v1 as pb;

use crate::answer::filter::History;
use crate::catalogue::Catalogue;
use crate::model::Because;
use crate::served::Snapshot;

/// How long after its launch an item is a new arrival (micros): 30 days.
const NEW_ARRIVAL: i64 = 30 * 24 * 3600 * 1_000_000;

/// Where the items an answer started from came from.
#[derive(Debug, Default)]
pub struct Origins {
    /// On screen or in the cart as the request says: no personal data.
    pub context: HashSet<String>,
    /// Viewed or clicked lately (session): browsing data.
    pub viewed: HashSet<String>,
    /// In the session's cart: browsing data.
    pub cart: HashSet<String>,
    /// Bought in the session: purchase data.
    pub bought: HashSet<String>,
    /// The customer's purchases in the models: purchase data.
    pub purchases: Option<History>,
    /// Whether the customer's history shaped the ranking (personalized).
    pub personal: bool,
    /// The categories of that history: browsing for a session of views and
    /// cart changes, purchases too once the customer bought (in the session or
    /// the models).
    pub history: Vec<DataCategory>,
    /// The categories of the tastes profile gave for a customer the models do
    /// not know (preferences for what they told us, browsing and purchases
    /// for what their events show); empty when none were read.
    pub tastes: Vec<DataCategory>,
    /// Whether those tastes hold what the customer told us.
    pub declared: bool,
}

impl Origins {
    /// Whether the customer bought `item_id` (session or models).
    pub fn has_bought(&self, item_id: &str) -> bool {
        self.bought.contains(item_id)
            || self
                .purchases
                .as_ref()
                .is_some_and(|h| h.last_purchase(item_id).is_some())
    }
}

/// A reason and the data categories it used.
pub struct Explained {
    pub reason: pb::Reason,
    pub categories: Vec<DataCategory>,
}

fn title(catalogue: &Catalogue, item_id: &str) -> String {
    catalogue
        .get(item_id)
        .map_or_else(|| item_id.to_owned(), |item| item.title.clone())
}

fn reason(kind: pb::ReasonKind, text: String, item: &str, category: &str) -> pb::Reason {
    pb::Reason {
        kind: kind.into(),
        text: text.chars().take(200).collect(),
        ref_item_id: item.to_owned(),
        ref_category_id: category.to_owned(),
    }
}

/// The reason for an item related to `related` (`kind` names how).
fn related(
    origins: &Origins,
    catalogue: &Catalogue,
    related: &str,
    together: pb::ReasonKind,
) -> Explained {
    use pb::ReasonKind as K;
    let name = title(catalogue, related);
    if origins.context.contains(related) {
        let (kind, text) = match together {
            K::BoughtTogether => (
                K::BoughtTogether,
                format!("Often bought together with {name}"),
            ),
            _ => (K::Similar, format!("Similar to {name}")),
        };
        return Explained {
            reason: reason(kind, text, related, ""),
            categories: Vec::new(),
        };
    }
    if origins.has_bought(related) {
        return Explained {
            reason: reason(
                K::Purchased,
                format!("Because you bought {name}"),
                related,
                "",
            ),
            categories: vec![DataCategory::Purchases],
        };
    }
    if origins.viewed.contains(related) || origins.cart.contains(related) {
        return Explained {
            reason: reason(K::Viewed, format!("Because you viewed {name}"), related, ""),
            categories: vec![DataCategory::Browsing],
        };
    }
    // From the customer's history in the models (personal) or the catalogue's
    // neighbours alone.
    let categories = if origins.personal {
        origins.history.clone()
    } else {
        Vec::new()
    };
    let (kind, text) = match together {
        K::BoughtTogether => (
            K::BoughtTogether,
            format!("Often bought together with {name}"),
        ),
        _ => (K::Similar, format!("Similar to {name}")),
    };
    Explained {
        reason: reason(kind, text, related, ""),
        categories,
    }
}

/// The primary reason for `item_id` scored because of `because`.
pub fn explain(
    because: Because,
    item_id: &str,
    snapshot: Option<&Snapshot>,
    catalogue: &Catalogue,
    origins: &Origins,
    favourite_categories: &HashSet<String>,
) -> Explained {
    use pb::ReasonKind as K;
    let item_of = |ix| {
        snapshot
            .and_then(|s| s.item_id(ix))
            .unwrap_or_default()
            .to_owned()
    };
    let category_of = |ix| {
        snapshot
            .and_then(|s| s.category_id(ix))
            .unwrap_or_default()
            .to_owned()
    };
    let category_name = |id: &str| {
        catalogue
            .get(item_id)
            .and_then(|item| item.category_path.iter().find(|c| c.category_id == id))
            .map(|c| {
                if c.display_name.is_empty() {
                    c.category_id.clone()
                } else {
                    c.display_name.clone()
                }
            })
            .unwrap_or_else(|| id.to_owned())
    };
    match because {
        Because::OwnHistory { purchases } => Explained {
            reason: reason(
                K::Purchased,
                format!(
                    "You bought this {purchases} time{}",
                    if purchases == 1 { "" } else { "s" }
                ),
                item_id,
                "",
            ),
            categories: vec![DataCategory::Purchases],
        },
        Because::Personal => Explained {
            reason: reason(K::PersonalTaste, "Picked for you".to_owned(), "", ""),
            categories: origins.history.clone(),
        },
        Because::SimilarTo(ix) => related(origins, catalogue, &item_of(ix), K::Similar),
        Because::ViewedTogether(ix) => related(origins, catalogue, &item_of(ix), K::Viewed),
        Because::BoughtTogether(ix) => related(origins, catalogue, &item_of(ix), K::BoughtTogether),
        Because::Popular => Explained {
            reason: reason(K::Popular, "Popular right now".to_owned(), "", ""),
            categories: Vec::new(),
        },
        Because::PopularIn(ix) => {
            let category = category_of(ix);
            let name = category_name(&category);
            if origins.personal && favourite_categories.contains(&category) {
                Explained {
                    reason: reason(
                        K::FavouriteCategory,
                        format!("Popular in your favourite category {name}"),
                        "",
                        &category,
                    ),
                    categories: vec![DataCategory::Browsing],
                }
            } else {
                Explained {
                    reason: reason(
                        K::PopularInCategory,
                        format!("Popular in {name}"),
                        "",
                        &category,
                    ),
                    categories: Vec::new(),
                }
            }
        }
        Because::Content { category, .. } => {
            let category = category.map(category_of).unwrap_or_default();
            if origins.personal {
                let text = if origins.declared {
                    "Matches what you told us"
                } else {
                    "Matches what you like"
                };
                // The session's items, profile's tastes, or both.
                let mut categories = Vec::new();
                if origins.tastes.is_empty()
                    || !origins.viewed.is_empty()
                    || !origins.cart.is_empty()
                {
                    categories.push(DataCategory::Browsing);
                }
                categories.extend(origins.tastes.iter().copied());
                Explained {
                    reason: reason(K::PreferenceMatch, text.to_owned(), "", &category),
                    categories,
                }
            } else {
                let name = category_name(&category);
                Explained {
                    reason: reason(
                        K::PopularInCategory,
                        format!("Popular in {name}"),
                        "",
                        &category,
                    ),
                    categories: Vec::new(),
                }
            }
        }
    }
}

/// Further reasons that hold for the item besides the primary one: still in
/// the cart, recently viewed, a new arrival.
pub fn further(
    item: &pb::CatalogItem,
    primary: &pb::Reason,
    origins: &Origins,
    now: i64,
) -> Vec<Explained> {
    use pb::ReasonKind as K;
    let mut more = Vec::new();
    let id = item.item_id.as_str();
    if origins.cart.contains(id) && primary.kind != K::InCart as i32 {
        more.push(Explained {
            reason: reason(K::InCart, "Still in your cart".to_owned(), id, ""),
            categories: vec![DataCategory::Browsing],
        });
    }
    if origins.viewed.contains(id) && primary.kind != K::RecentlyViewed as i32 {
        more.push(Explained {
            reason: reason(
                K::RecentlyViewed,
                "You recently looked at this".to_owned(),
                id,
                "",
            ),
            categories: vec![DataCategory::Browsing],
        });
    }
    let launched = item
        .launch_time
        .and_then(|t| attune_kit::types::time::from_proto(t).ok())
        .map(|t| t.timestamp_micros());
    if launched.is_some_and(|at| at <= now && now - at <= NEW_ARRIVAL)
        && primary.kind != K::NewArrival as i32
    {
        more.push(Explained {
            reason: reason(K::NewArrival, "New arrival".to_owned(), "", ""),
            categories: Vec::new(),
        });
    }
    more.truncate(3);
    more
}

/// The reason of an item the catalogue alone suggests (no models yet, or an
/// item newer than them): sharing a category with an item on screen, or new.
pub fn from_catalogue(related_to: Option<(&str, &str)>) -> Explained {
    use pb::ReasonKind as K;
    match related_to {
        Some((item_id, name)) => Explained {
            reason: reason(K::Similar, format!("Similar to {name}"), item_id, ""),
            categories: Vec::new(),
        },
        None => Explained {
            reason: reason(K::NewArrival, "New arrival".to_owned(), "", ""),
            categories: Vec::new(),
        },
    }
}
