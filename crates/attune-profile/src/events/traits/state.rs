//! A customer's trait state: everything the traits need, folded event by event
//! at ingestion, so that reading traits never scans the customer's history.
//!
//! Times are microseconds since the epoch (as stored). Windows count whole UTC
//! days: the window of `d` days holds today and the `d - 1` days before, so the
//! daily buckets of the last 400 days answer every window without the events.
//! Affinities decay (half-life 30 days) from the time each event occurred, which
//! makes folding them order-independent; the open cart follows cart events in
//! occurrence order, and a cart event older than the cart's last change (a late
//! arrival) is ignored.

use std::collections::BTreeMap;

use attune_kit::db::micros;
use attune_kit::types::{Currency, DataCategory};
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::kind_category;

/// Microseconds in a day.
pub(crate) const DAY_MICROS: i64 = 86_400_000_000;

/// Daily buckets older than this many days (before the newest time folded) are
/// dropped: events are at most 400 days old, windows at most 365 days long.
const KEPT_DAYS: i64 = 400;

/// Weight of one event kind in category and brand affinities (the proto's).
pub(crate) fn affinity_weight(kind: pb::EventKind) -> Option<f64> {
    match kind {
        pb::EventKind::Purchase => Some(5.0),
        pb::EventKind::AddToCart => Some(3.0),
        pb::EventKind::RecommendationClick => Some(2.0),
        pb::EventKind::View | pb::EventKind::EmailClick => Some(1.0),
        _ => None,
    }
}

/// How often one event kind occurred, and when first and last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KindStats {
    /// Events of the kind.
    #[serde(rename = "n")]
    pub count: u64,
    /// When the earliest occurred.
    #[serde(rename = "f")]
    pub first: i64,
    /// When the latest occurred.
    #[serde(rename = "l")]
    pub last: i64,
}

/// One UTC day's orders, revenue (reporting currency) and events per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DayBucket {
    /// Purchases in the reporting currency.
    #[serde(rename = "o", default, skip_serializing_if = "is_zero")]
    pub orders: u32,
    /// Total paid for them, in minor units.
    #[serde(rename = "p", default, skip_serializing_if = "is_zero_i64")]
    pub paid: i64,
    /// Returns in the reporting currency.
    #[serde(rename = "r", default, skip_serializing_if = "is_zero")]
    pub returns: u32,
    /// Total refunded for them, in minor units.
    #[serde(rename = "f", default, skip_serializing_if = "is_zero_i64")]
    pub refunded: i64,
    /// Events per kind (any currency).
    #[serde(rename = "k", default)]
    pub kinds: BTreeMap<i32, u32>,
}

/// A decayed affinity: its value as of a time, and what fed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Decayed {
    /// The weight sum, decayed to `as_of`.
    #[serde(rename = "v")]
    pub value: f64,
    /// When `value` holds.
    #[serde(rename = "a")]
    pub as_of: i64,
    /// Events that involved the key.
    #[serde(rename = "n")]
    pub count: u32,
    /// When the latest of them occurred.
    #[serde(rename = "l")]
    pub last: i64,
}

impl Decayed {
    /// Adds `weight` for an event at `time`; the result does not depend on the
    /// order events arrive in.
    fn add(&mut self, weight: f64, time: i64) {
        if self.count == 0 {
            self.value = weight;
            self.as_of = time;
        } else if time >= self.as_of {
            self.value = self.value * decay(time - self.as_of) + weight;
            self.as_of = time;
        } else {
            self.value += weight * decay(self.as_of - time);
        }
        self.count += 1;
        self.last = self.last.max(time);
    }

    /// The value decayed to `now`.
    pub fn at(&self, now: i64) -> f64 {
        self.value * decay(now - self.as_of)
    }
}

/// The factor a value keeps after `elapsed` microseconds (half-life 30 days).
fn decay(elapsed: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // days to a fraction, far below 2^52
    let days = elapsed as f64 / DAY_MICROS as f64;
    0.5_f64.powf(days / 30.0)
}

/// How often something was used, and when last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Uses.
    #[serde(rename = "n")]
    pub count: u32,
    /// When the latest occurred.
    #[serde(rename = "l")]
    pub last: i64,
}

impl Tally {
    fn add(&mut self, time: i64) {
        self.count += 1;
        self.last = self.last.max(time);
    }
}

/// An item in the open cart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CartLine {
    /// The catalogue item.
    #[serde(rename = "i")]
    pub item_id: String,
    /// Units in the cart.
    #[serde(rename = "q")]
    pub quantity: i64,
    /// Price of one unit in minor units and its currency, when known.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<(i64, String)>,
    /// Category path, as last sent.
    #[serde(rename = "c", default, skip_serializing_if = "Vec::is_empty")]
    pub category_path: Vec<String>,
    /// Brand, as last sent.
    #[serde(rename = "b", default, skip_serializing_if = "String::is_empty")]
    pub brand: String,
}

/// Serde's test for counters left out of the stored state while zero.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(count: &u32) -> bool {
    *count == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero_i64(amount: &i64) -> bool {
    *amount == 0
}

/// Everything the traits of one customer are computed from. Stored as JSON
/// with short keys and without empty fields: every batch rewrites the state of
/// each customer it touches, so its size is most of ingestion's writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraitState {
    /// Per event kind: count, first and last occurrence.
    #[serde(rename = "k", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kinds: BTreeMap<i32, KindStats>,
    /// Per UTC day number (days since the epoch): orders, revenue, events.
    #[serde(rename = "d", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<i64, DayBucket>,
    /// When the latest purchase (any currency) occurred.
    #[serde(rename = "lp", default, skip_serializing_if = "Option::is_none")]
    pub last_purchase: Option<i64>,
    /// Purchases ever, any currency.
    #[serde(rename = "lo", default, skip_serializing_if = "is_zero")]
    pub lifetime_orders: u32,
    /// Purchases in another currency than the reporting one.
    #[serde(rename = "uo", default, skip_serializing_if = "is_zero")]
    pub unconverted_orders: u32,
    /// Category affinities, per data category of the events that fed them (so a
    /// read combines only the categories consent covers).
    #[serde(rename = "c", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<i32, BTreeMap<String, Decayed>>,
    /// Brand affinities, likewise.
    #[serde(rename = "b", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brands: BTreeMap<i32, BTreeMap<String, Decayed>>,
    /// The open cart, most recently added first.
    #[serde(rename = "ct", default, skip_serializing_if = "Vec::is_empty")]
    pub cart: Vec<CartLine>,
    /// When the cart last changed.
    #[serde(rename = "cc", default, skip_serializing_if = "Option::is_none")]
    pub cart_change: Option<i64>,
    /// Events per channel, per data category of the events.
    #[serde(rename = "ch", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<i32, BTreeMap<i32, Tally>>,
    /// Purchases made on the web or in the app.
    #[serde(rename = "on", default, skip_serializing_if = "is_zero")]
    pub online_purchases: u32,
    /// Purchases made in a store.
    #[serde(rename = "sp", default, skip_serializing_if = "is_zero")]
    pub store_purchases: u32,
    /// Purchases per delivery method named.
    #[serde(rename = "dm", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delivery: BTreeMap<i32, Tally>,
    /// Purchases per payment method named.
    #[serde(rename = "pm", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub payment: BTreeMap<i32, Tally>,
    /// Purchases per pickup point named.
    #[serde(rename = "pp", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pickup: BTreeMap<String, Tally>,
    /// Store visits.
    #[serde(rename = "sv", default, skip_serializing_if = "is_zero")]
    pub store_visits: u32,
}

impl TraitState {
    /// Folds one stored event in: `now` decides which daily buckets are too old
    /// to keep, `reporting` which amounts count as revenue.
    pub fn apply(&mut self, event: &pb::Event, reporting: Currency, now: i64) {
        let Ok(kind) = pb::EventKind::try_from(event.kind) else {
            return;
        };
        let Some(time) = event
            .occur_time
            .and_then(|t| attune_kit::types::time::from_proto(t).ok())
            .map(micros::to_micros)
        else {
            return;
        };
        let category = i32::from(kind_category(kind));
        let stats = self.kinds.entry(event.kind).or_insert(KindStats {
            count: 0,
            first: time,
            last: time,
        });
        stats.count += 1;
        stats.first = stats.first.min(time);
        stats.last = stats.last.max(time);
        self.channels
            .entry(category)
            .or_default()
            .entry(event.channel)
            .or_default()
            .add(time);
        let day = time.div_euclid(DAY_MICROS);
        *self
            .days
            .entry(day)
            .or_default()
            .kinds
            .entry(event.kind)
            .or_default() += 1;
        if let Some(weight) = affinity_weight(kind) {
            self.add_affinities(category, event, weight, time);
        }
        match kind {
            pb::EventKind::Purchase => self.purchase(event, reporting, day, time),
            pb::EventKind::Return => {
                if let Some(amount) = reporting_amount(event.amount.as_ref(), reporting) {
                    let bucket = self.days.entry(day).or_default();
                    bucket.returns += 1;
                    bucket.refunded += amount;
                }
            }
            pb::EventKind::AddToCart => self.change_cart(event, time, 1),
            pb::EventKind::RemoveFromCart => self.change_cart(event, time, -1),
            pb::EventKind::StoreVisit => self.store_visits += 1,
            _ => {}
        }
        let oldest = now.div_euclid(DAY_MICROS) - KEPT_DAYS;
        self.days.retain(|day, _| *day >= oldest);
    }

    fn purchase(&mut self, event: &pb::Event, reporting: Currency, day: i64, time: i64) {
        self.lifetime_orders += 1;
        self.last_purchase = Some(self.last_purchase.map_or(time, |last| last.max(time)));
        match reporting_amount(event.amount.as_ref(), reporting) {
            Some(amount) => {
                let bucket = self.days.entry(day).or_default();
                bucket.orders += 1;
                bucket.paid += amount;
            }
            None => self.unconverted_orders += 1,
        }
        match attune_kit::types::Channel::from_proto(event.channel) {
            Ok(attune_kit::types::Channel::Web | attune_kit::types::Channel::App) => {
                self.online_purchases += 1;
            }
            Ok(attune_kit::types::Channel::Store) => self.store_purchases += 1,
            _ => {}
        }
        if event.delivery_method != 0 {
            self.delivery
                .entry(event.delivery_method)
                .or_default()
                .add(time);
        }
        if event.payment_method != 0 {
            self.payment
                .entry(event.payment_method)
                .or_default()
                .add(time);
        }
        if !event.pickup_point_id.is_empty() {
            self.pickup
                .entry(event.pickup_point_id.clone())
                .or_default()
                .add(time);
        }
        // A purchase empties the cart, unless the cart changed after it.
        if self.cart_change.is_none_or(|change| change <= time) {
            self.cart.clear();
            self.cart_change = Some(time);
        }
    }

    fn change_cart(&mut self, event: &pb::Event, time: i64, sign: i64) {
        if self.cart_change.is_some_and(|change| change > time) {
            return;
        }
        self.cart_change = Some(time);
        for item in &event.items {
            let quantity = i64::from(item.quantity.max(1));
            let position = self
                .cart
                .iter()
                .position(|line| line.item_id == item.item_id);
            if sign > 0 {
                let mut line =
                    position
                        .map(|at| self.cart.remove(at))
                        .unwrap_or_else(|| CartLine {
                            item_id: item.item_id.clone(),
                            ..CartLine::default()
                        });
                line.quantity += quantity;
                if let Some(price) = &item.unit_price {
                    line.unit_price = Some((price.amount_minor, price.currency_code.clone()));
                }
                if !item.category_path.is_empty() {
                    line.category_path.clone_from(&item.category_path);
                }
                if !item.brand.is_empty() {
                    line.brand.clone_from(&item.brand);
                }
                self.cart.insert(0, line);
            } else if let Some(at) = position {
                self.cart[at].quantity -= quantity;
                if self.cart[at].quantity <= 0 {
                    self.cart.remove(at);
                }
            }
        }
    }

    fn add_affinities(&mut self, category: i32, event: &pb::Event, weight: f64, time: i64) {
        // Each key counts once per event, however many of its items carry it.
        let mut categories: Vec<&str> = event
            .items
            .iter()
            .flat_map(|item| item.category_path.iter().map(String::as_str))
            .collect();
        categories.sort_unstable();
        categories.dedup();
        let mut brands: Vec<&str> = event
            .items
            .iter()
            .map(|item| item.brand.as_str())
            .filter(|brand| !brand.is_empty())
            .collect();
        brands.sort_unstable();
        brands.dedup();
        let by_category = self.categories.entry(category).or_default();
        for key in categories {
            by_category
                .entry(key.to_owned())
                .or_default()
                .add(weight, time);
        }
        let by_brand = self.brands.entry(category).or_default();
        for key in brands {
            by_brand
                .entry(key.to_owned())
                .or_default()
                .add(weight, time);
        }
    }

    /// Purchases in the reporting currency that occurred in the window of `days`
    /// days ending at `now`: (orders, revenue net of the window's returns, total
    /// paid before returns), amounts in minor units.
    pub fn orders_within(&self, days: u32, now: DateTime<Utc>) -> (u32, i64, i64) {
        self.orders_within_micros(days, micros::to_micros(now))
    }

    /// [`Self::orders_within`] with `now` in microseconds.
    pub(crate) fn orders_within_micros(&self, days: u32, now: i64) -> (u32, i64, i64) {
        let (mut orders, mut paid, mut refunded) = (0, 0, 0);
        for bucket in self.window(days, now) {
            orders += bucket.orders;
            paid += bucket.paid;
            refunded += bucket.refunded;
        }
        (orders, paid - refunded, paid)
    }

    /// Returns in the reporting currency in the window of `days` days ending at `now`.
    pub(crate) fn returns_within(&self, days: u32, now: i64) -> u32 {
        self.window(days, now).map(|bucket| bucket.returns).sum()
    }

    /// Events of `kind` (its wire number) in the window of `days` days ending at `now`.
    pub fn events_within(&self, kind: i32, days: u32, now: DateTime<Utc>) -> u32 {
        let now = micros::to_micros(now);
        self.window(days, now)
            .filter_map(|bucket| bucket.kinds.get(&kind))
            .sum()
    }

    fn window(&self, days: u32, now: i64) -> impl Iterator<Item = &DayBucket> {
        let first = now.div_euclid(DAY_MICROS) - i64::from(days) + 1;
        self.days.range(first..).map(|(_, bucket)| bucket)
    }

    /// Whether any event was folded in.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Events folded in whose kind has `category`.
    pub fn events_of(&self, category: DataCategory) -> u64 {
        self.kinds
            .iter()
            .filter(|(kind, _)| {
                pb::EventKind::try_from(**kind).is_ok_and(|kind| kind_category(kind) == category)
            })
            .map(|(_, stats)| stats.count)
            .sum()
    }
}

/// The amount in minor units when it is in the reporting currency.
fn reporting_amount(
    amount: Option<&attune_proto::common::v1::Money>,
    reporting: Currency,
) -> Option<i64> {
    amount
        .filter(|money| money.currency_code == reporting.as_ref())
        .map(|money| money.amount_minor)
}

#[cfg(test)]
mod tests {
    use attune_proto::common::v1 as common_pb;
    use chrono::TimeDelta;

    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn event(kind: pb::EventKind, at: DateTime<Utc>, amount: Option<i64>) -> pb::Event {
        pb::Event {
            kind: kind.into(),
            occur_time: Some(attune_kit::types::time::to_proto(at)),
            channel: common_pb::Channel::Web.into(),
            items: vec![pb::EventItem {
                item_id: "sku".into(),
                quantity: 1,
                category_path: vec!["shoes".into()],
                ..Default::default()
            }],
            amount: amount.map(|amount_minor| common_pb::Money {
                amount_minor,
                currency_code: "EUR".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn windows_count_whole_utc_days_ending_today() {
        let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        let mut state = TraitState::default();
        for (days_ago, kind, amount) in [
            (0, pb::EventKind::Purchase, Some(1000)),
            (29, pb::EventKind::Purchase, Some(500)),
            (31, pb::EventKind::Purchase, Some(200)),
            (10, pb::EventKind::Return, Some(300)),
            (3, pb::EventKind::View, None),
        ] {
            let at = now - TimeDelta::days(days_ago);
            state.apply(&event(kind, at, amount), eur(), micros::to_micros(now));
        }
        assert_eq!(state.orders_within(30, now), (2, 1500 - 300, 1500));
        assert_eq!(state.orders_within(90, now), (3, 1700 - 300, 1700));
        assert_eq!(state.events_within(pb::EventKind::View as i32, 7, now), 1);
        assert_eq!(state.events_within(pb::EventKind::View as i32, 3, now), 0);
    }

    #[test]
    fn a_state_survives_its_stored_form_and_leaves_empty_fields_out() {
        let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        let empty = serde_json::to_vec(&TraitState::default()).unwrap();
        assert_eq!(empty, b"{}");
        let mut state = TraitState::default();
        state.apply(
            &event(pb::EventKind::Purchase, now, Some(1000)),
            eur(),
            micros::to_micros(now),
        );
        let mut add = event(pb::EventKind::AddToCart, now, None);
        add.items[0].unit_price = Some(common_pb::Money {
            amount_minor: 250,
            currency_code: "EUR".into(),
        });
        state.apply(&add, eur(), micros::to_micros(now));
        let stored = serde_json::to_vec(&state).unwrap();
        assert_eq!(
            serde_json::from_slice::<TraitState>(&stored).unwrap(),
            state
        );
    }

    #[test]
    fn affinities_do_not_depend_on_the_order_events_arrive_in() {
        let now = DateTime::from_timestamp(1_750_000_000, 0).unwrap();
        let events: Vec<pb::Event> = [40, 2, 17, 0]
            .iter()
            .map(|days| event(pb::EventKind::View, now - TimeDelta::days(*days), None))
            .collect();
        let fold = |order: &[usize]| {
            let mut state = TraitState::default();
            for i in order {
                state.apply(&events[*i], eur(), micros::to_micros(now));
            }
            state.categories[&i32::from(DataCategory::Browsing)]["shoes"].at(micros::to_micros(now))
        };
        let expected: f64 = [40.0, 2.0, 17.0, 0.0]
            .iter()
            .map(|days: &f64| 0.5_f64.powf(days / 30.0))
            .sum();
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            assert!((fold(&order) - expected).abs() < 1e-12, "{order:?}");
        }
    }
}
