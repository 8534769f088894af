//! The segment rule language: a typed tree of conditions combined with all / any /
//! not, parsed and validated from the wire once ([`Rule::parse`], every problem a
//! field violation with its full path), then evaluated as a pure function of one
//! customer's [`Facts`] ([`Rule::matches`]).
//!
//! A condition on data whose category no granted purpose covers never matches
//! (so its `not` does): each condition names the categories it reads, checked
//! before it looks at any value.

use std::collections::BTreeSet;

use attune_kit::error::FieldViolation;
use attune_kit::types::{Channel, Currency, DataCategory, Money};
use attune_proto::profile::v1 as pb;
use chrono::{Datelike, NaiveDate, TimeDelta};

use super::facts::Facts;

/// Deepest nesting of a rule: a condition alone is one level.
pub const MAX_DEPTH: usize = 8;
/// Most conditions in one rule.
pub const MAX_CONDITIONS: usize = 50;
/// Most rules in one `all` or `any` group.
pub const MAX_GROUP_RULES: usize = 20;
/// Longest window of a "last N days" condition.
pub const MAX_WINDOW_DAYS: u32 = 400;
/// Most values in one list of a condition (channels, age bands, categories).
const MAX_LIST_VALUES: usize = 50;

/// A parsed, valid segment rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Every rule matches.
    All(Vec<Rule>),
    /// At least one rule matches.
    Any(Vec<Rule>),
    /// The rule does not match.
    Not(Box<Rule>),
    /// One condition.
    Condition(Condition),
}

/// One condition, its bounds checked and defaults applied. Money is in minor
/// units of the reporting currency; `None` bounds are open.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The open cart unchanged for at least `min_idle` (and at most `max_idle`).
    CartAbandoned {
        min_idle: TimeDelta,
        max_idle: Option<TimeDelta>,
        min_cart_value: Option<i64>,
    },
    /// Days since the last purchase within bounds.
    Lapsed {
        min_days: u32,
        max_days: Option<u32>,
    },
    /// At least `min_days` without any event.
    Inactive { min_days: u32 },
    /// Revenue net of returns over the window within bounds.
    Spend {
        min: Option<i64>,
        max: Option<i64>,
        within_days: u32,
    },
    /// Orders over the window within bounds.
    OrderCount {
        min: u32,
        max: Option<u32>,
        within_days: u32,
    },
    /// Average order value over the window within bounds.
    AverageOrderValue {
        min: Option<i64>,
        max: Option<i64>,
        within_days: u32,
    },
    /// Affinity to a category at least `min_score`.
    CategoryAffinity { category_id: String, min_score: f64 },
    /// Events of one kind over the window within bounds.
    EventCount {
        kind: pb::EventKind,
        min: u32,
        max: Option<u32>,
        within_days: u32,
    },
    /// Affinity to a brand at least `min_score`.
    BrandAffinity { brand: String, min_score: f64 },
    /// First event within the last `within_days` days.
    FirstSeen { within_days: u32 },
    /// Share of purchases made in a store within bounds (inclusive).
    PurchaseChannelShare { min: f64, max: f64 },
    /// The preferred channel is one of these.
    PreferredChannel { channels: BTreeSet<Channel> },
    /// The volunteered age band is one of these.
    AgeBand { bands: BTreeSet<i32> },
    /// One of these categories is a volunteered favourite.
    FavouriteCategory { category_ids: BTreeSet<String> },
    /// The birthday falls today or within the next `within_days` days.
    Birthday { within_days: u32 },
}

/// The data categories of behavioural events: a condition on activity of any
/// kind needs at least one of them.
const BEHAVIOURAL: &[DataCategory] = &[
    DataCategory::Browsing,
    DataCategory::Purchases,
    DataCategory::Location,
    DataCategory::Engagement,
];

/// The categories affinities are derived from (views, carts, purchases,
/// recommendation and e-mail clicks).
const AFFINITY_SOURCES: &[DataCategory] = &[
    DataCategory::Browsing,
    DataCategory::Purchases,
    DataCategory::Engagement,
];

/// Which granted categories a condition needs.
enum Needs {
    /// This one.
    One(DataCategory),
    /// Any one of these.
    AnyOf(&'static [DataCategory]),
}

impl Needs {
    fn met_by(&self, granted: &BTreeSet<DataCategory>) -> bool {
        match self {
            Self::One(category) => granted.contains(category),
            Self::AnyOf(categories) => categories.iter().any(|c| granted.contains(c)),
        }
    }
}

impl Rule {
    /// Parses the rule sent as `path` (for example `segment.rule`), with money
    /// bounds required in `currency`: every problem is a violation naming its
    /// field, collected in `violations`; `None` when there was any.
    pub fn parse(
        rule: Option<&pb::SegmentRule>,
        path: &str,
        currency: Currency,
        violations: &mut Vec<FieldViolation>,
    ) -> Option<Self> {
        let before = violations.len();
        let mut conditions = 0;
        let parsed = parse_rule(rule, path, 1, currency, &mut conditions, violations);
        if conditions > MAX_CONDITIONS {
            violations.push(FieldViolation::new(
                path,
                format!("holds {conditions} conditions; at most {MAX_CONDITIONS} are allowed"),
            ));
        }
        parsed.filter(|_| violations.len() == before)
    }

    /// Whether the customer the facts describe matches the rule.
    pub fn matches<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        match self {
            Self::All(rules) => rules.iter().all(|rule| rule.matches(facts)),
            Self::Any(rules) => rules.iter().any(|rule| rule.matches(facts)),
            Self::Not(rule) => !rule.matches(facts),
            Self::Condition(condition) => condition.matches(facts),
        }
    }
}

fn parse_rule(
    rule: Option<&pb::SegmentRule>,
    path: &str,
    depth: usize,
    currency: Currency,
    conditions: &mut usize,
    v: &mut Vec<FieldViolation>,
) -> Option<Rule> {
    use pb::segment_rule::Rule as R;
    let Some(rule) = rule.and_then(|rule| rule.rule.as_ref()) else {
        v.push(FieldViolation::new(
            path,
            "must be set to one of all, any, not or condition",
        ));
        return None;
    };
    if depth > MAX_DEPTH {
        v.push(FieldViolation::new(
            path,
            format!("nests deeper than {MAX_DEPTH} levels"),
        ));
        return None;
    }
    match rule {
        R::All(group) => parse_group(
            group,
            &format!("{path}.all"),
            depth,
            currency,
            conditions,
            v,
        )
        .map(Rule::All),
        R::Any(group) => parse_group(
            group,
            &format!("{path}.any"),
            depth,
            currency,
            conditions,
            v,
        )
        .map(Rule::Any),
        R::Not(inner) => parse_rule(
            Some(inner),
            &format!("{path}.not"),
            depth + 1,
            currency,
            conditions,
            v,
        )
        .map(|inner| Rule::Not(Box::new(inner))),
        R::Condition(condition) => {
            *conditions += 1;
            parse_condition(condition, &format!("{path}.condition"), currency, v)
                .map(Rule::Condition)
        }
    }
}

fn parse_group(
    group: &pb::SegmentRuleGroup,
    path: &str,
    depth: usize,
    currency: Currency,
    conditions: &mut usize,
    v: &mut Vec<FieldViolation>,
) -> Option<Vec<Rule>> {
    let pb::SegmentRuleGroup { rules } = group;
    if rules.is_empty() || rules.len() > MAX_GROUP_RULES {
        v.push(FieldViolation::new(
            format!("{path}.rules"),
            format!("must hold 1 to {MAX_GROUP_RULES} rules"),
        ));
        return None;
    }
    let parsed: Vec<Option<Rule>> = rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            parse_rule(
                Some(rule),
                &format!("{path}.rules[{i}]"),
                depth + 1,
                currency,
                conditions,
                v,
            )
        })
        .collect();
    parsed.into_iter().collect()
}

/// Collects a condition's violations under its path.
struct Checker<'a> {
    path: String,
    currency: Currency,
    v: &'a mut Vec<FieldViolation>,
    before: usize,
}

impl Checker<'_> {
    fn add(&mut self, field: &str, description: impl Into<String>) {
        let field = if field.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{field}", self.path)
        };
        self.v.push(FieldViolation::new(field, description));
    }

    fn ok(&self) -> bool {
        self.v.len() == self.before
    }

    /// A window of 1 to 400 days, `default` for 0.
    fn window(&mut self, field: &str, raw: i32, default: u32) -> u32 {
        match u32::try_from(raw) {
            Ok(0) => default,
            Ok(days) if days <= MAX_WINDOW_DAYS => days,
            _ => {
                self.add(
                    field,
                    format!("must be 1 to {MAX_WINDOW_DAYS} days, or 0 for {default}"),
                );
                default
            }
        }
    }

    /// A count at least `min`.
    fn count(&mut self, field: &str, raw: i32, min: u32) -> u32 {
        match u32::try_from(raw) {
            Ok(n) if n >= min => n,
            _ => {
                self.add(field, format!("must be at least {min}"));
                min
            }
        }
    }

    /// An optional maximum (0: none) not below `min`.
    fn max_count(&mut self, field: &str, raw: i32, min: u32) -> Option<u32> {
        match u32::try_from(raw) {
            Ok(0) => None,
            Ok(max) if max >= min => Some(max),
            _ => {
                self.add(field, format!("must be 0 (no maximum) or at least {min}"));
                None
            }
        }
    }

    /// An optional amount, not negative, in the reporting currency.
    fn money(
        &mut self,
        field: &str,
        money: Option<&attune_proto::common::v1::Money>,
    ) -> Option<i64> {
        let money = money?;
        let path = format!("{}.{field}", self.path);
        match Money::from_proto(&path, money.clone()) {
            Err(violation) => {
                self.v.push(violation);
                None
            }
            Ok(amount) if amount.currency() != self.currency => {
                self.add(
                    &format!("{field}.currency_code"),
                    format!("must be the reporting currency {}", self.currency),
                );
                None
            }
            Ok(amount) if amount.amount_minor() < 0 => {
                self.add(&format!("{field}.amount_minor"), "must not be negative");
                None
            }
            Ok(amount) => Some(amount.amount_minor()),
        }
    }

    /// Two optional amounts, at least one given, the first not above the second.
    fn money_bounds(
        &mut self,
        min_field: &str,
        min: Option<&attune_proto::common::v1::Money>,
        max_field: &str,
        max: Option<&attune_proto::common::v1::Money>,
    ) -> (Option<i64>, Option<i64>) {
        if min.is_none() && max.is_none() {
            self.add(min_field, format!("or {max_field} must be set"));
        }
        let (min, max) = (self.money(min_field, min), self.money(max_field, max));
        if let (Some(low), Some(high)) = (min, max)
            && low > high
        {
            self.add(max_field, format!("must not be below {min_field}"));
        }
        (min, max)
    }

    /// A score greater than 0 and at most 1.
    fn score(&mut self, field: &str, raw: f64) -> f64 {
        if !(raw > 0.0 && raw <= 1.0) {
            self.add(field, "must be greater than 0 and at most 1");
        }
        raw
    }

    /// A share from 0 to 1.
    fn share(&mut self, field: &str, raw: f64) -> f64 {
        if !(0.0..=1.0).contains(&raw) {
            self.add(field, "must be 0 to 1");
        }
        raw
    }

    /// A non-negative duration; `None` when unset.
    fn duration(&mut self, field: &str, raw: Option<&prost_types::Duration>) -> Option<TimeDelta> {
        let prost_types::Duration { seconds, nanos } = *raw?;
        let delta = u32::try_from(nanos)
            .ok()
            .filter(|&nanos| nanos < 1_000_000_000 && seconds >= 0)
            .and_then(|nanos| TimeDelta::new(seconds, nanos));
        if delta.is_none() {
            self.add(field, "must be a non-negative duration");
        }
        delta
    }

    /// A non-empty id of at most `max_len` characters.
    fn text(&mut self, field: &str, raw: &str, max_len: usize) -> String {
        let length = raw.chars().count();
        if raw.trim().is_empty() || length > max_len {
            self.add(field, format!("must be 1 to {max_len} characters"));
        }
        raw.to_owned()
    }

    /// A list of 1 to 50 distinct values, each parsed by `parse`.
    fn set<T: Ord, R>(
        &mut self,
        field: &str,
        raw: &[R],
        mut parse: impl FnMut(&R) -> Result<T, String>,
    ) -> BTreeSet<T> {
        if raw.is_empty() || raw.len() > MAX_LIST_VALUES {
            self.add(field, format!("must hold 1 to {MAX_LIST_VALUES} values"));
            return BTreeSet::new();
        }
        let mut set = BTreeSet::new();
        for (i, value) in raw.iter().enumerate() {
            match parse(value) {
                Ok(value) => {
                    if !set.insert(value) {
                        self.add(&format!("{field}[{i}]"), "repeats an earlier value");
                    }
                }
                Err(problem) => self.add(&format!("{field}[{i}]"), problem),
            }
        }
        set
    }
}

fn parse_condition(
    condition: &pb::SegmentCondition,
    path: &str,
    currency: Currency,
    v: &mut Vec<FieldViolation>,
) -> Option<Condition> {
    use pb::segment_condition::Condition as C;
    let Some(condition) = condition.condition.as_ref() else {
        v.push(FieldViolation::new(path, "must set one condition"));
        return None;
    };
    let kind = match condition {
        C::CartAbandoned(_) => "cart_abandoned",
        C::Lapsed(_) => "lapsed",
        C::Inactive(_) => "inactive",
        C::Spend(_) => "spend",
        C::OrderCount(_) => "order_count",
        C::AverageOrderValue(_) => "average_order_value",
        C::CategoryAffinity(_) => "category_affinity",
        C::EventCount(_) => "event_count",
        C::PreferredChannel(_) => "preferred_channel",
        C::AgeBand(_) => "age_band",
        C::FavouriteCategory(_) => "favourite_category",
        C::Birthday(_) => "birthday",
        C::BrandAffinity(_) => "brand_affinity",
        C::FirstSeen(_) => "first_seen",
        C::PurchaseChannelShare(_) => "purchase_channel_share",
    };
    let before = v.len();
    let mut c = Checker {
        path: format!("{path}.{kind}"),
        currency,
        v,
        before,
    };
    let parsed = match condition {
        C::CartAbandoned(pb::CartAbandonedCondition {
            min_idle,
            max_idle,
            min_cart_value,
        }) => {
            let min_idle = match c.duration("min_idle", min_idle.as_ref()) {
                Some(idle) if idle >= TimeDelta::minutes(1) => idle,
                Some(_) | None => {
                    c.add("min_idle", "must be at least 1 minute");
                    TimeDelta::zero()
                }
            };
            let max_idle = c
                .duration("max_idle", max_idle.as_ref())
                .filter(|max| !max.is_zero());
            if max_idle.is_some_and(|max| max < min_idle) {
                c.add("max_idle", "must be 0 (no maximum) or at least min_idle");
            }
            Condition::CartAbandoned {
                min_idle,
                max_idle,
                min_cart_value: c.money("min_cart_value", min_cart_value.as_ref()),
            }
        }
        C::Lapsed(pb::LapsedCondition {
            min_days_since_purchase,
            max_days_since_purchase,
        }) => {
            let min_days = c.count("min_days_since_purchase", *min_days_since_purchase, 1);
            let max_days = c.max_count(
                "max_days_since_purchase",
                *max_days_since_purchase,
                min_days,
            );
            Condition::Lapsed { min_days, max_days }
        }
        C::Inactive(pb::InactiveCondition { min_days_inactive }) => Condition::Inactive {
            min_days: c.count("min_days_inactive", *min_days_inactive, 1),
        },
        C::Spend(pb::SpendCondition {
            min_total_spend,
            max_total_spend,
            within_days,
        }) => {
            let (min, max) = c.money_bounds(
                "min_total_spend",
                min_total_spend.as_ref(),
                "max_total_spend",
                max_total_spend.as_ref(),
            );
            Condition::Spend {
                min,
                max,
                within_days: c.window("within_days", *within_days, 365),
            }
        }
        C::OrderCount(pb::OrderCountCondition {
            min_orders,
            max_orders,
            within_days,
        }) => {
            let min = c.count("min_orders", *min_orders, 0);
            Condition::OrderCount {
                min,
                max: c.max_count("max_orders", *max_orders, min.max(1)),
                within_days: c.window("within_days", *within_days, 365),
            }
        }
        C::AverageOrderValue(pb::AverageOrderValueCondition {
            min_value,
            max_value,
            within_days,
        }) => {
            let (min, max) = c.money_bounds(
                "min_value",
                min_value.as_ref(),
                "max_value",
                max_value.as_ref(),
            );
            Condition::AverageOrderValue {
                min,
                max,
                within_days: c.window("within_days", *within_days, 365),
            }
        }
        C::CategoryAffinity(pb::CategoryAffinityCondition {
            category_id,
            min_score,
        }) => Condition::CategoryAffinity {
            category_id: c.text("category_id", category_id, 128),
            min_score: c.score("min_score", *min_score),
        },
        C::EventCount(pb::EventCountCondition {
            kind,
            min_count,
            max_count,
            within_days,
        }) => {
            let kind = match pb::EventKind::try_from(*kind) {
                Ok(pb::EventKind::Unspecified) => {
                    c.add("kind", "must be set");
                    pb::EventKind::Unspecified
                }
                Ok(kind) => kind,
                Err(_) => {
                    c.add("kind", format!("{kind} is not a known event kind"));
                    pb::EventKind::Unspecified
                }
            };
            let min = c.count("min_count", *min_count, 1);
            Condition::EventCount {
                kind,
                min,
                max: c.max_count("max_count", *max_count, min),
                within_days: c.window("within_days", *within_days, 30),
            }
        }
        C::BrandAffinity(pb::BrandAffinityCondition { brand, min_score }) => {
            Condition::BrandAffinity {
                brand: c.text("brand", brand, 100),
                min_score: c.score("min_score", *min_score),
            }
        }
        C::FirstSeen(pb::FirstSeenCondition { within_days }) => {
            let within_days = match u32::try_from(*within_days) {
                Ok(days) if (1..=MAX_WINDOW_DAYS).contains(&days) => days,
                _ => {
                    c.add(
                        "within_days",
                        format!("must be 1 to {MAX_WINDOW_DAYS} days"),
                    );
                    1
                }
            };
            Condition::FirstSeen { within_days }
        }
        C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
            min_store_share,
            max_store_share,
        }) => {
            let min = c.share("min_store_share", *min_store_share);
            let max = c.share("max_store_share", max_store_share.unwrap_or(1.0));
            if c.ok() && min > max {
                c.add("max_store_share", "must not be below min_store_share");
            }
            Condition::PurchaseChannelShare { min, max }
        }
        C::PreferredChannel(pb::PreferredChannelCondition { channels }) => {
            Condition::PreferredChannel {
                channels: c.set("channels", channels, |&raw| Channel::from_proto(raw)),
            }
        }
        C::AgeBand(pb::AgeBandCondition { age_bands }) => Condition::AgeBand {
            bands: c.set("age_bands", age_bands, |&raw| {
                match pb::AgeBand::try_from(raw) {
                    Ok(pb::AgeBand::Unspecified) => Err("must be set".to_owned()),
                    Ok(band) => Ok(i32::from(band)),
                    Err(_) => Err(format!("{raw} is not a known age band")),
                }
            }),
        },
        C::FavouriteCategory(pb::FavouriteCategoryCondition { category_ids }) => {
            Condition::FavouriteCategory {
                category_ids: c.set("category_ids", category_ids, |raw: &String| {
                    attune_kit::types::printable_ascii(raw, 128).map(|()| raw.clone())
                }),
            }
        }
        C::Birthday(pb::BirthdayCondition { within_days }) => {
            let within_days = match u32::try_from(*within_days) {
                Ok(days) if days <= 31 => days,
                _ => {
                    c.add("within_days", "must be 0 (today) to 31 days");
                    0
                }
            };
            Condition::Birthday { within_days }
        }
    };
    c.ok().then_some(parsed)
}

/// Whole days of 24 hours in `delta`, rounded down.
fn whole_days(delta: TimeDelta) -> i64 {
    delta.num_days()
}

fn within(value: i64, min: Option<i64>, max: Option<i64>) -> bool {
    min.is_none_or(|min| value >= min) && max.is_none_or(|max| value <= max)
}

fn within_count(value: u32, min: u32, max: Option<u32>) -> bool {
    value >= min && max.is_none_or(|max| value <= max)
}

impl Condition {
    /// The granted categories the condition needs before it reads anything.
    fn needs(&self) -> Needs {
        match self {
            Self::CartAbandoned { .. } => Needs::One(DataCategory::Browsing),
            Self::Lapsed { .. }
            | Self::Spend { .. }
            | Self::OrderCount { .. }
            | Self::AverageOrderValue { .. }
            | Self::PurchaseChannelShare { .. } => Needs::One(DataCategory::Purchases),
            Self::Inactive { .. } | Self::FirstSeen { .. } | Self::PreferredChannel { .. } => {
                Needs::AnyOf(BEHAVIOURAL)
            }
            Self::CategoryAffinity { .. } | Self::BrandAffinity { .. } => {
                Needs::AnyOf(AFFINITY_SOURCES)
            }
            // Parsing refuses the unspecified kind: nothing can match it.
            Self::EventCount { kind, .. } if *kind == pb::EventKind::Unspecified => {
                Needs::AnyOf(&[])
            }
            Self::EventCount { kind, .. } => Needs::One(crate::events::kind_category(*kind)),
            Self::AgeBand { .. } | Self::Birthday { .. } => Needs::One(DataCategory::Demographics),
            Self::FavouriteCategory { .. } => Needs::One(DataCategory::Preferences),
        }
    }

    /// Whether the facts match the condition; never when a category it needs is
    /// not granted.
    pub fn matches<F: Facts + ?Sized>(&self, facts: &F) -> bool {
        if !self.needs().met_by(facts.granted()) {
            return false;
        }
        let traits = facts.traits();
        let now = facts.now();
        match self {
            Self::CartAbandoned {
                min_idle,
                max_idle,
                min_cart_value,
            } => {
                let Some(cart) = traits.open_cart.as_ref().filter(|c| !c.items.is_empty()) else {
                    return false;
                };
                let Some(changed) = cart
                    .last_change_time
                    .and_then(|t| attune_kit::types::time::from_proto(t).ok())
                else {
                    return false;
                };
                let idle = now - changed;
                let value_ok = match min_cart_value {
                    None => true,
                    Some(min) => cart.value.as_ref().is_some_and(|v| v.amount_minor >= *min),
                };
                idle >= *min_idle && max_idle.is_none_or(|max| idle <= max) && value_ok
            }
            Self::Lapsed { min_days, max_days } => traits
                .days_since_last_purchase
                .and_then(|days| u32::try_from(days).ok())
                .is_some_and(|days| within_count(days, *min_days, *max_days)),
            Self::Inactive { min_days } => traits
                .days_inactive
                .and_then(|days| u32::try_from(days).ok())
                .is_some_and(|days| days >= *min_days),
            Self::Spend {
                min,
                max,
                within_days,
            } => {
                let (_, revenue, _) = facts.orders_within(*within_days);
                within(revenue, *min, *max)
            }
            Self::OrderCount {
                min,
                max,
                within_days,
            } => within_count(facts.orders_within(*within_days).0, *min, *max),
            Self::AverageOrderValue {
                min,
                max,
                within_days,
            } => {
                let (orders, _, gross) = facts.orders_within(*within_days);
                orders > 0 && within(gross.div_euclid(i64::from(orders)), *min, *max)
            }
            Self::CategoryAffinity {
                category_id,
                min_score,
            } => affinity_at_least(&traits.category_affinities, category_id, *min_score),
            Self::BrandAffinity { brand, min_score } => {
                affinity_at_least(&traits.brand_affinities, brand, *min_score)
            }
            Self::EventCount {
                kind,
                min,
                max,
                within_days,
            } => within_count(
                facts.events_within(i32::from(*kind), *within_days),
                *min,
                *max,
            ),
            Self::FirstSeen { within_days } => traits
                .first_seen_time
                .and_then(|t| attune_kit::types::time::from_proto(t).ok())
                .is_some_and(|first| whole_days(now - first) < i64::from(*within_days)),
            Self::PurchaseChannelShare { min, max } => traits
                .store_purchase_share
                .is_some_and(|share| share >= *min && share <= *max),
            Self::PreferredChannel { channels } => {
                Channel::from_proto_optional(traits.preferred_channel)
                    .ok()
                    .flatten()
                    .is_some_and(|channel| channels.contains(&channel))
            }
            Self::AgeBand { bands } => facts
                .zero_party()
                .is_some_and(|data| bands.contains(&data.age_band)),
            Self::FavouriteCategory { category_ids } => facts.zero_party().is_some_and(|data| {
                data.favourite_category_ids
                    .iter()
                    .any(|id| category_ids.contains(id))
            }),
            Self::Birthday { within_days } => facts
                .zero_party()
                .and_then(|data| data.birthday.as_ref())
                .and_then(|birthday| days_until_birthday(birthday, now.date_naive()))
                .is_some_and(|days| days <= i64::from(*within_days)),
        }
    }
}

fn affinity_at_least(affinities: &[pb::Affinity], key: &str, min_score: f64) -> bool {
    affinities
        .iter()
        .any(|affinity| affinity.key == key && affinity.score >= min_score)
}

/// Days from `today` to the next occurrence of `birthday` (0: today). A 29
/// February birthday falls on 28 February in years without that day. `None` for
/// a day no calendar has.
fn days_until_birthday(birthday: &pb::Birthday, today: NaiveDate) -> Option<i64> {
    let month = u32::try_from(birthday.month).ok()?;
    let day = u32::try_from(birthday.day).ok()?;
    // Validate against a leap year, where every real birthday exists.
    NaiveDate::from_ymd_opt(2000, month, day)?;
    let in_year = |year: i32| {
        NaiveDate::from_ymd_opt(year, month, day).or_else(|| {
            (month == 2 && day == 29)
                .then(|| NaiveDate::from_ymd_opt(year, 2, 28))
                .flatten()
        })
    };
    let this_year = in_year(today.year())?;
    let next = if this_year >= today {
        this_year
    } else {
        in_year(today.year() + 1)?
    };
    Some((next - today).num_days())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panics fail tests
mod tests;
