//! Traits as `GetTraits` answers them: computed from a [`TraitState`] at a time,
//! from only the data categories consent covers then.

use std::collections::{BTreeMap, BTreeSet};

use attune_kit::db::micros;
use attune_kit::types::{Currency, DataCategory, time};
use attune_proto::common::v1 as common_pb;
use attune_proto::profile::v1 as pb;

use super::state::{DAY_MICROS, Decayed, KindStats, Tally, TraitState};
use crate::events::kind_category;

/// The windows of `Traits.windows`, in days.
pub const WINDOWS: [u32; 3] = [30, 90, 365];

/// Most affinities listed per trait.
const MAX_AFFINITIES: usize = 20;

use pb::EventKind as K;

const PURCHASE_KINDS: &[K] = &[K::Purchase, K::Return];
const AFFINITY_KINDS: &[K] = &[
    K::View,
    K::AddToCart,
    K::Purchase,
    K::EmailClick,
    K::RecommendationClick,
];
const CART_KINDS: &[K] = &[K::AddToCart, K::RemoveFromCart, K::Purchase];

/// Which traits read which event kinds; `None` means every kind.
const SOURCES: &[(&str, Option<&[K]>)] = &[
    ("brand_affinities", Some(AFFINITY_KINDS)),
    ("category_affinities", Some(AFFINITY_KINDS)),
    ("days_inactive", None),
    ("days_since_last_purchase", Some(&[K::Purchase])),
    ("first_seen_time", None),
    ("last_purchase_time", Some(&[K::Purchase])),
    ("last_seen_time", None),
    ("lifetime_order_count", Some(&[K::Purchase])),
    ("online_purchase_share", Some(&[K::Purchase])),
    ("open_cart", Some(CART_KINDS)),
    ("preferred_channel", None),
    ("rfm", Some(PURCHASE_KINDS)),
    ("store_purchase_share", Some(&[K::Purchase])),
    ("store_visit_count", Some(&[K::StoreVisit])),
    ("unconverted_order_count", Some(&[K::Purchase])),
    ("usual_delivery_method", Some(&[K::Purchase])),
    ("usual_payment_method", Some(&[K::Purchase])),
    ("usual_pickup_point_id", Some(&[K::Purchase])),
    ("windows", Some(PURCHASE_KINDS)),
];

/// Every event kind but UNSPECIFIED, in wire order.
fn all_kinds() -> impl Iterator<Item = K> {
    (1..=13).filter_map(|raw| K::try_from(raw).ok())
}

impl TraitState {
    /// The traits of `customer_id` at `now`, from the data of `granted`
    /// categories only; amounts in `reporting`.
    pub fn traits(
        &self,
        customer_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        reporting: Currency,
        granted: &BTreeSet<DataCategory>,
    ) -> pb::Traits {
        let at = micros::to_micros(now);
        let allowed = |kind: K| granted.contains(&kind_category(kind));
        let purchases = granted.contains(&DataCategory::Purchases);
        let mut traits = pb::Traits {
            customer_id: customer_id.to_owned(),
            compute_time: Some(time::to_proto(now)),
            ..pb::Traits::default()
        };
        let seen: Vec<&KindStats> = self
            .kinds
            .iter()
            .filter(|(kind, _)| K::try_from(**kind).is_ok_and(allowed))
            .map(|(_, stats)| stats)
            .collect();
        if let (Some(first), Some(last)) = (
            seen.iter().map(|s| s.first).min(),
            seen.iter().map(|s| s.last).max(),
        ) {
            traits.first_seen_time = Some(to_proto(first));
            traits.last_seen_time = Some(to_proto(last));
            traits.days_inactive = Some(whole_days(at - last));
        }
        if purchases {
            self.purchase_traits(&mut traits, at, reporting);
        }
        let categories: Vec<i32> = granted.iter().map(|c| i32::from(*c)).collect();
        traits.category_affinities = affinities(&self.categories, &categories, at);
        traits.brand_affinities = affinities(&self.brands, &categories, at);
        if granted.contains(&DataCategory::Browsing) {
            traits.open_cart = self.open_cart(at, reporting);
        }
        traits.preferred_channel = most_used(
            self.channels
                .iter()
                .filter(|(category, _)| categories.contains(category))
                .flat_map(|(_, channels)| channels.iter().map(|(c, t)| (*c, *t))),
        )
        .unwrap_or(0);
        if granted.contains(&DataCategory::Location) {
            traits.store_visit_count = clamp(self.store_visits);
        }
        traits.sources = SOURCES
            .iter()
            .filter_map(|(name, kinds)| {
                let kinds: Vec<K> = match kinds {
                    Some(kinds) => kinds.iter().copied().filter(|k| allowed(*k)).collect(),
                    None => all_kinds().filter(|k| allowed(*k)).collect(),
                };
                if kinds.is_empty() {
                    return None;
                }
                let mut data_categories: Vec<i32> =
                    kinds.iter().map(|k| i32::from(kind_category(*k))).collect();
                data_categories.sort_unstable();
                data_categories.dedup();
                let event_count = kinds
                    .iter()
                    .filter_map(|k| self.kinds.get(&(*k as i32)))
                    .map(|stats| i64::try_from(stats.count).unwrap_or(i64::MAX))
                    .sum();
                Some(pb::TraitSource {
                    r#trait: (*name).to_owned(),
                    event_kinds: kinds.iter().map(|k| *k as i32).collect(),
                    data_categories,
                    event_count,
                })
            })
            .collect();
        traits.data_categories = all_kinds()
            .map(kind_category)
            .filter(|category| granted.contains(category))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(i32::from)
            .collect();
        traits
    }

    fn purchase_traits(&self, traits: &mut pb::Traits, at: i64, reporting: Currency) {
        let money = |amount_minor: i64| common_pb::Money {
            amount_minor,
            currency_code: reporting.to_string(),
        };
        if let Some(last) = self.last_purchase {
            traits.last_purchase_time = Some(to_proto(last));
            traits.days_since_last_purchase = Some(whole_days(at - last));
        }
        traits.windows = WINDOWS
            .iter()
            .map(|days| {
                let (orders, revenue, paid) = self.orders_within_micros(*days, at);
                pb::WindowTotals {
                    days: i32::try_from(*days).unwrap_or(i32::MAX),
                    order_count: clamp(orders),
                    revenue: Some(money(revenue)),
                    return_count: clamp(self.returns_within(*days, at)),
                    average_order_value: (orders > 0).then(|| money(paid / i64::from(orders))),
                }
            })
            .collect();
        traits.lifetime_order_count = clamp(self.lifetime_orders);
        traits.unconverted_order_count = clamp(self.unconverted_orders);
        if self.lifetime_orders > 0 {
            let (orders, revenue, _) = self.orders_within_micros(365, at);
            let major = 10_i64.pow(u32::from(reporting.minor_unit_digits()));
            let days = self
                .last_purchase
                .map_or(i32::MAX, |last| whole_days(at - last));
            traits.rfm = Some(pb::RfmScores {
                recency: score(i64::from(days), &[30, 90, 180, 365], true),
                frequency: score(i64::from(orders), &[12, 6, 3, 2], false),
                monetary: score(
                    revenue,
                    &[1000 * major, 500 * major, 200 * major, 50 * major],
                    false,
                ),
            });
            let total = f64::from(self.lifetime_orders);
            traits.online_purchase_share = Some(f64::from(self.online_purchases) / total);
            traits.store_purchase_share = Some(f64::from(self.store_purchases) / total);
        }
        traits.usual_delivery_method =
            most_used(self.delivery.iter().map(|(m, t)| (*m, *t))).unwrap_or(0);
        traits.usual_payment_method =
            most_used(self.payment.iter().map(|(m, t)| (*m, *t))).unwrap_or(0);
        traits.usual_pickup_point_id =
            most_used(self.pickup.iter().map(|(p, t)| (p.clone(), *t))).unwrap_or_default();
    }

    fn open_cart(&self, at: i64, reporting: Currency) -> Option<pb::OpenCart> {
        let change = self.cart_change?;
        if self.cart.is_empty() {
            return None;
        }
        let value = self
            .cart
            .iter()
            .filter_map(|line| match &line.unit_price {
                Some((amount, currency)) if currency == reporting.as_ref() => {
                    Some(amount * line.quantity)
                }
                _ => None,
            })
            .sum();
        Some(pb::OpenCart {
            items: self
                .cart
                .iter()
                .map(|line| pb::EventItem {
                    item_id: line.item_id.clone(),
                    quantity: i32::try_from(line.quantity).unwrap_or(i32::MAX),
                    unit_price: line
                        .unit_price
                        .as_ref()
                        .map(|(amount_minor, currency_code)| common_pb::Money {
                            amount_minor: *amount_minor,
                            currency_code: currency_code.clone(),
                        }),
                    category_path: line.category_path.clone(),
                    brand: line.brand.clone(),
                })
                .collect(),
            value: Some(common_pb::Money {
                amount_minor: value,
                currency_code: reporting.to_string(),
            }),
            last_change_time: Some(to_proto(change)),
            age_hours: i32::try_from((at - change).max(0) / 3_600_000_000).unwrap_or(i32::MAX),
        })
    }
}

/// Score 5 down to 2 for the first threshold met (`at_most`: value <= threshold,
/// else value >= threshold), otherwise 1.
fn score(value: i64, thresholds: &[i64; 4], at_most: bool) -> i32 {
    thresholds
        .iter()
        .position(|t| if at_most { value <= *t } else { value >= *t })
        .map_or(1, |i| 5 - i32::try_from(i).unwrap_or(3))
}

/// The key used most (ties: the most recent), tallies of one key summed.
fn most_used<T: Ord>(tallies: impl Iterator<Item = (T, Tally)>) -> Option<T> {
    let mut merged: BTreeMap<T, Tally> = BTreeMap::new();
    for (key, tally) in tallies {
        let entry = merged.entry(key).or_default();
        entry.count += tally.count;
        entry.last = entry.last.max(tally.last);
    }
    merged
        .into_iter()
        .fold(None::<(T, Tally)>, |best, (key, tally)| match best {
            Some((_, b)) if (b.count, b.last) >= (tally.count, tally.last) => best,
            _ => Some((key, tally)),
        })
        .map(|(key, _)| key)
}

/// The affinities of the granted `categories`, summed, scored relative to the
/// strongest, strongest first (ties by key), at most [`MAX_AFFINITIES`].
fn affinities(
    by_category: &BTreeMap<i32, BTreeMap<String, Decayed>>,
    categories: &[i32],
    at: i64,
) -> Vec<pb::Affinity> {
    let mut merged: BTreeMap<&str, (f64, u32, i64)> = BTreeMap::new();
    for (category, keys) in by_category {
        if !categories.contains(category) {
            continue;
        }
        for (key, decayed) in keys {
            let entry = merged.entry(key).or_default();
            entry.0 += decayed.at(at);
            entry.1 += decayed.count;
            entry.2 = entry.2.max(decayed.last);
        }
    }
    let strongest = merged.values().map(|v| v.0).fold(0.0_f64, f64::max);
    if strongest <= 0.0 {
        return Vec::new();
    }
    let mut list: Vec<pb::Affinity> = merged
        .into_iter()
        .map(|(key, (value, count, last))| pb::Affinity {
            key: key.to_owned(),
            score: value / strongest,
            event_count: clamp(count),
            last_event_time: Some(to_proto(last)),
        })
        .collect();
    list.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
    list.truncate(MAX_AFFINITIES);
    list
}

/// Whole days of 24 hours in `elapsed` microseconds, rounded down, never negative.
fn whole_days(elapsed: i64) -> i32 {
    i32::try_from(elapsed.max(0) / DAY_MICROS).unwrap_or(i32::MAX)
}

fn clamp(count: u32) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn to_proto(at: i64) -> prost_types::Timestamp {
    micros::from_micros(at).map_or_else(|_| prost_types::Timestamp::default(), time::to_proto)
}
