//! The rule language: what parsing refuses (with which field path) and how
//! evaluation treats nesting, negation, ungranted data and the edges of windows.

use std::collections::BTreeSet;

use attune_kit::types::{Currency, DataCategory};
use attune_proto::common::v1 as common;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::*;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn money(amount_minor: i64) -> Option<common::Money> {
    Some(common::Money {
        amount_minor,
        currency_code: "EUR".into(),
    })
}

fn cond(condition: pb::segment_condition::Condition) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Condition(pb::SegmentCondition {
            condition: Some(condition),
        })),
    }
}

fn all(rules: Vec<pb::SegmentRule>) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::All(pb::SegmentRuleGroup { rules })),
    }
}

fn any(rules: Vec<pb::SegmentRule>) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Any(pb::SegmentRuleGroup { rules })),
    }
}

fn not(rule: pb::SegmentRule) -> pb::SegmentRule {
    pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Not(Box::new(rule))),
    }
}

use pb::segment_condition::Condition as C;

fn lapsed(min: i32, max: i32) -> pb::SegmentRule {
    cond(C::Lapsed(pb::LapsedCondition {
        min_days_since_purchase: min,
        max_days_since_purchase: max,
    }))
}

fn age_band(bands: &[pb::AgeBand]) -> pb::SegmentRule {
    cond(C::AgeBand(pb::AgeBandCondition {
        age_bands: bands.iter().map(|&b| i32::from(b)).collect(),
    }))
}

fn favourite(ids: &[&str]) -> pb::SegmentRule {
    cond(C::FavouriteCategory(pb::FavouriteCategoryCondition {
        category_ids: ids.iter().map(|&id| id.to_owned()).collect(),
    }))
}

fn birthday(within_days: i32) -> pb::SegmentRule {
    cond(C::Birthday(pb::BirthdayCondition { within_days }))
}

fn parse(rule: &pb::SegmentRule) -> Result<Rule, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    Rule::parse(Some(rule), "segment.rule", eur(), &mut violations).ok_or(violations)
}

fn parsed(rule: &pb::SegmentRule) -> Rule {
    parse(rule).unwrap()
}

fn violated(rule: &pb::SegmentRule) -> Vec<String> {
    parse(rule)
        .unwrap_err()
        .into_iter()
        .map(|violation| violation.field)
        .collect()
}

// ---- parsing ----

#[test]
fn a_missing_rule_is_refused_at_its_path() {
    let mut violations = Vec::new();
    assert!(Rule::parse(None, "segment.rule", eur(), &mut violations).is_none());
    assert_eq!(violations[0].field, "segment.rule");
    assert_eq!(violated(&pb::SegmentRule { rule: None }), ["segment.rule"]);
}

#[test]
fn violations_name_the_nested_field() {
    let rule = all(vec![
        lapsed(60, 0),
        cond(C::Spend(pb::SpendCondition {
            min_total_spend: money(50_000),
            max_total_spend: None,
            within_days: 500,
        })),
        any(vec![]),
        not(cond(C::EventCount(pb::EventCountCondition {
            kind: 0,
            min_count: 1,
            max_count: 0,
            within_days: 0,
        }))),
    ]);
    assert_eq!(
        violated(&rule),
        [
            "segment.rule.all.rules[1].condition.spend.within_days",
            "segment.rule.all.rules[2].any.rules",
            "segment.rule.all.rules[3].not.condition.event_count.kind",
        ]
    );
}

#[test]
fn an_empty_condition_is_refused() {
    let rule = any(vec![pb::SegmentRule {
        rule: Some(pb::segment_rule::Rule::Condition(pb::SegmentCondition {
            condition: None,
        })),
    }]);
    assert_eq!(violated(&rule), ["segment.rule.any.rules[0].condition"]);
}

#[test]
fn eight_levels_are_allowed_and_nine_are_not() {
    let mut rule = lapsed(1, 0);
    for _ in 0..7 {
        rule = not(rule);
    }
    assert!(parse(&rule).is_ok(), "a condition under 7 nots is 8 levels");
    let deeper = all(vec![rule]);
    assert_eq!(
        violated(&deeper),
        [format!("segment.rule.all.rules[0]{}", ".not".repeat(7))]
    );
}

#[test]
fn fifty_conditions_are_allowed_and_fifty_one_are_not() {
    let group = |n: usize| any((0..n).map(|_| lapsed(1, 0)).collect());
    let fifty = all(vec![group(20), group(20), group(10)]);
    assert!(parse(&fifty).is_ok());
    let fifty_one = all(vec![group(20), group(20), group(11)]);
    let violations = parse(&fifty_one).unwrap_err();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "segment.rule");
    assert!(violations[0].description.contains("51"));
}

#[test]
fn a_group_holds_at_most_twenty_rules() {
    let rule = any((0..21).map(|_| lapsed(1, 0)).collect());
    assert_eq!(violated(&rule), ["segment.rule.any.rules"]);
}

#[test]
fn money_bounds_must_be_in_the_reporting_currency_and_not_negative() {
    let rule = all(vec![
        cond(C::Spend(pb::SpendCondition {
            min_total_spend: Some(common::Money {
                amount_minor: 100,
                currency_code: "USD".into(),
            }),
            max_total_spend: None,
            within_days: 0,
        })),
        cond(C::Spend(pb::SpendCondition {
            min_total_spend: None,
            max_total_spend: None,
            within_days: 0,
        })),
        cond(C::AverageOrderValue(pb::AverageOrderValueCondition {
            min_value: money(-1),
            max_value: None,
            within_days: 0,
        })),
        cond(C::AverageOrderValue(pb::AverageOrderValueCondition {
            min_value: money(500),
            max_value: money(100),
            within_days: 0,
        })),
        cond(C::CartAbandoned(pb::CartAbandonedCondition {
            min_idle: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            max_idle: None,
            min_cart_value: Some(common::Money {
                amount_minor: 1,
                currency_code: "eur".into(),
            }),
        })),
    ]);
    assert_eq!(
        violated(&rule),
        [
            "segment.rule.all.rules[0].condition.spend.min_total_spend.currency_code",
            "segment.rule.all.rules[1].condition.spend.min_total_spend",
            "segment.rule.all.rules[2].condition.average_order_value.min_value.amount_minor",
            "segment.rule.all.rules[3].condition.average_order_value.max_value",
            "segment.rule.all.rules[4].condition.cart_abandoned.min_cart_value.currency_code",
        ]
    );
}

#[test]
fn each_condition_checks_its_bounds() {
    let duration = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let cases: Vec<(pb::SegmentRule, &str)> = vec![
        (
            cond(C::CartAbandoned(pb::CartAbandonedCondition {
                min_idle: duration(59),
                max_idle: None,
                min_cart_value: None,
            })),
            "cart_abandoned.min_idle",
        ),
        (
            cond(C::CartAbandoned(pb::CartAbandonedCondition {
                min_idle: duration(3600),
                max_idle: duration(60),
                min_cart_value: None,
            })),
            "cart_abandoned.max_idle",
        ),
        (
            cond(C::CartAbandoned(pb::CartAbandonedCondition {
                min_idle: duration(3600),
                max_idle: duration(-5),
                min_cart_value: None,
            })),
            "cart_abandoned.max_idle",
        ),
        (lapsed(0, 0), "lapsed.min_days_since_purchase"),
        (lapsed(60, 30), "lapsed.max_days_since_purchase"),
        (
            cond(C::Inactive(pb::InactiveCondition {
                min_days_inactive: 0,
            })),
            "inactive.min_days_inactive",
        ),
        (
            cond(C::OrderCount(pb::OrderCountCondition {
                min_orders: -1,
                max_orders: 0,
                within_days: 0,
            })),
            "order_count.min_orders",
        ),
        (
            cond(C::OrderCount(pb::OrderCountCondition {
                min_orders: 3,
                max_orders: 2,
                within_days: 0,
            })),
            "order_count.max_orders",
        ),
        (
            cond(C::OrderCount(pb::OrderCountCondition {
                min_orders: 1,
                max_orders: 0,
                within_days: 401,
            })),
            "order_count.within_days",
        ),
        (
            cond(C::CategoryAffinity(pb::CategoryAffinityCondition {
                category_id: String::new(),
                min_score: 0.5,
            })),
            "category_affinity.category_id",
        ),
        (
            cond(C::CategoryAffinity(pb::CategoryAffinityCondition {
                category_id: "shoes".into(),
                min_score: 0.0,
            })),
            "category_affinity.min_score",
        ),
        (
            cond(C::BrandAffinity(pb::BrandAffinityCondition {
                brand: "b".repeat(101),
                min_score: 0.5,
            })),
            "brand_affinity.brand",
        ),
        (
            cond(C::BrandAffinity(pb::BrandAffinityCondition {
                brand: "acme".into(),
                min_score: f64::NAN,
            })),
            "brand_affinity.min_score",
        ),
        (
            cond(C::EventCount(pb::EventCountCondition {
                kind: 99,
                min_count: 1,
                max_count: 0,
                within_days: 0,
            })),
            "event_count.kind",
        ),
        (
            cond(C::EventCount(pb::EventCountCondition {
                kind: 1,
                min_count: 0,
                max_count: 0,
                within_days: 0,
            })),
            "event_count.min_count",
        ),
        (
            cond(C::FirstSeen(pb::FirstSeenCondition { within_days: 0 })),
            "first_seen.within_days",
        ),
        (
            cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
                min_store_share: 1.5,
                max_store_share: None,
            })),
            "purchase_channel_share.min_store_share",
        ),
        (
            cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
                min_store_share: 0.8,
                max_store_share: Some(0.2),
            })),
            "purchase_channel_share.max_store_share",
        ),
        (
            cond(C::PreferredChannel(pb::PreferredChannelCondition {
                channels: vec![],
            })),
            "preferred_channel.channels",
        ),
        (
            cond(C::PreferredChannel(pb::PreferredChannelCondition {
                channels: vec![0],
            })),
            "preferred_channel.channels[0]",
        ),
        (
            cond(C::PreferredChannel(pb::PreferredChannelCondition {
                channels: vec![1, 1],
            })),
            "preferred_channel.channels[1]",
        ),
        (age_band(&[]), "age_band.age_bands"),
        (
            cond(C::AgeBand(pb::AgeBandCondition {
                age_bands: vec![42],
            })),
            "age_band.age_bands[0]",
        ),
        (
            favourite(&["shoes", "has space"]),
            "favourite_category.category_ids[1]",
        ),
        (birthday(32), "birthday.within_days"),
        (birthday(-1), "birthday.within_days"),
    ];
    for (rule, field) in cases {
        assert_eq!(
            violated(&rule),
            [format!("segment.rule.condition.{field}")],
            "{rule:?}"
        );
    }
}

#[test]
fn defaults_fill_zero_windows_and_open_maximums() {
    let rule = all(vec![
        cond(C::Spend(pb::SpendCondition {
            min_total_spend: money(50_000),
            max_total_spend: None,
            within_days: 0,
        })),
        cond(C::EventCount(pb::EventCountCondition {
            kind: i32::from(pb::EventKind::View),
            min_count: 3,
            max_count: 0,
            within_days: 0,
        })),
        cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
            min_store_share: 1.0,
            max_store_share: None,
        })),
    ]);
    assert_eq!(
        parsed(&rule),
        Rule::All(vec![
            Rule::Condition(Condition::Spend {
                min: Some(50_000),
                max: None,
                within_days: 365
            }),
            Rule::Condition(Condition::EventCount {
                kind: pb::EventKind::View,
                min: 3,
                max: None,
                within_days: 30
            }),
            Rule::Condition(Condition::PurchaseChannelShare { min: 1.0, max: 1.0 }),
        ])
    );
}

// ---- evaluation ----

/// Hand-made facts: orders and events as (days ago, ...) so windows are exact.
struct TestFacts {
    traits: pb::Traits,
    /// (age, net revenue, gross) per order.
    orders: Vec<(TimeDelta, i64, i64)>,
    /// (kind, age) per event.
    events: Vec<(pb::EventKind, TimeDelta)>,
    zero_party: Option<pb::ZeroPartyData>,
    granted: BTreeSet<DataCategory>,
    now: DateTime<Utc>,
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-15T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

impl TestFacts {
    fn new() -> Self {
        Self {
            traits: pb::Traits::default(),
            orders: Vec::new(),
            events: Vec::new(),
            zero_party: None,
            granted: DataCategory::ALL.iter().copied().collect(),
            now: now(),
        }
    }

    fn without(mut self, category: DataCategory) -> Self {
        self.granted.remove(&category);
        self
    }

    fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    fn zero_party(mut self, data: pb::ZeroPartyData) -> Self {
        self.zero_party = Some(data);
        self
    }

    fn ago(&self, age: TimeDelta) -> Option<prost_types::Timestamp> {
        Some(attune_kit::types::time::to_proto(self.now - age))
    }
}

impl Facts for TestFacts {
    fn traits(&self) -> &pb::Traits {
        &self.traits
    }

    fn orders_within(&self, days: u32) -> (u32, i64, i64) {
        let window = TimeDelta::days(i64::from(days));
        self.orders
            .iter()
            .filter(|(age, _, _)| *age < window)
            .fold((0, 0, 0), |(n, net, gross), (_, a, b)| {
                (n + 1, net + a, gross + b)
            })
    }

    fn events_within(&self, kind: i32, days: u32) -> u32 {
        let window = TimeDelta::days(i64::from(days));
        let n = self
            .events
            .iter()
            .filter(|(k, age)| i32::from(*k) == kind && *age < window)
            .count();
        u32::try_from(n).unwrap()
    }

    fn zero_party(&self) -> Option<&pb::ZeroPartyData> {
        self.zero_party.as_ref()
    }

    fn granted(&self) -> &BTreeSet<DataCategory> {
        &self.granted
    }

    fn now(&self) -> DateTime<Utc> {
        self.now
    }
}

fn matches(rule: &pb::SegmentRule, facts: &TestFacts) -> bool {
    parsed(rule).matches(facts)
}

fn adult() -> pb::ZeroPartyData {
    pb::ZeroPartyData {
        age_band: i32::from(pb::AgeBand::From25To34),
        favourite_category_ids: vec!["shoes".into(), "bags".into()],
        ..Default::default()
    }
}

#[test]
fn all_any_and_not_nest() {
    let facts = TestFacts::new().zero_party(adult());
    let young = age_band(&[pb::AgeBand::From18To24]);
    let adult_band = age_band(&[pb::AgeBand::From25To34, pb::AgeBand::From35To44]);
    assert!(matches(&adult_band, &facts));
    assert!(!matches(&young, &facts));
    assert!(matches(&not(young.clone()), &facts));
    assert!(!matches(&not(not(young.clone())), &facts));
    assert!(matches(
        &any(vec![young.clone(), adult_band.clone()]),
        &facts
    ));
    assert!(!matches(
        &all(vec![young.clone(), adult_band.clone()]),
        &facts
    ));
    let nested = all(vec![
        any(vec![young.clone(), favourite(&["bags"])]),
        not(all(vec![young.clone(), adult_band.clone()])),
    ]);
    assert!(matches(&nested, &facts));
    assert!(!matches(&not(nested), &facts));
}

#[test]
fn a_condition_on_ungranted_data_never_matches_and_its_negation_does() {
    let facts = TestFacts::new()
        .zero_party(adult())
        .without(DataCategory::Demographics);
    let adult_band = age_band(&[pb::AgeBand::From25To34]);
    assert!(!matches(&adult_band, &facts));
    assert!(matches(&not(adult_band), &facts));
    // Preferences are still granted.
    assert!(matches(&favourite(&["shoes"]), &facts));

    let mut buyer = TestFacts::new().without(DataCategory::Purchases);
    buyer.orders.push((TimeDelta::days(1), 10_000, 10_000));
    buyer.traits.days_since_last_purchase = Some(90);
    let spend = cond(C::Spend(pb::SpendCondition {
        min_total_spend: money(1),
        max_total_spend: None,
        within_days: 0,
    }));
    assert!(!matches(&spend, &buyer));
    assert!(!matches(&lapsed(60, 0), &buyer));
    assert!(matches(&not(lapsed(60, 0)), &buyer));
}

#[test]
fn event_counts_need_the_kinds_category() {
    let mut facts = TestFacts::new();
    facts
        .events
        .extend([(pb::EventKind::EmailOpen, TimeDelta::days(1)); 3]);
    let opens = cond(C::EventCount(pb::EventCountCondition {
        kind: i32::from(pb::EventKind::EmailOpen),
        min_count: 3,
        max_count: 0,
        within_days: 7,
    }));
    assert!(matches(&opens, &facts));
    assert!(!matches(&opens, &facts.without(DataCategory::Engagement)));
}

#[test]
fn windows_count_what_is_younger_than_n_days() {
    let mut facts = TestFacts::new();
    facts.events.push((pb::EventKind::View, TimeDelta::days(7)));
    facts.events.push((
        pb::EventKind::View,
        TimeDelta::days(7) - TimeDelta::seconds(1),
    ));
    let views = |min, max, within_days| {
        cond(C::EventCount(pb::EventCountCondition {
            kind: i32::from(pb::EventKind::View),
            min_count: min,
            max_count: max,
            within_days,
        }))
    };
    assert!(matches(&views(1, 1, 7), &facts), "one view inside 7 days");
    assert!(!matches(&views(2, 0, 7), &facts), "the other is 7 days old");
    assert!(matches(&views(2, 2, 8), &facts));
    assert!(matches(&views(2, 0, 0), &facts), "0 means 30 days");
}

#[test]
fn spend_order_count_and_average_order_value_read_the_window() {
    let mut facts = TestFacts::new();
    facts.orders = vec![
        (TimeDelta::days(10), 30_000, 30_000),
        (TimeDelta::days(40), 10_000, 20_000),
        (TimeDelta::days(200), 100_000, 100_000),
    ];
    let spend = |min: Option<i64>, max: Option<i64>, within_days| {
        cond(C::Spend(pb::SpendCondition {
            min_total_spend: min.and_then(money),
            max_total_spend: max.and_then(money),
            within_days,
        }))
    };
    assert!(matches(&spend(Some(140_000), None, 0), &facts));
    assert!(!matches(&spend(Some(140_001), None, 0), &facts));
    assert!(matches(&spend(Some(40_000), Some(40_000), 90), &facts));
    assert!(!matches(&spend(None, Some(39_999), 90), &facts));

    let orders = |min, max, within_days| {
        cond(C::OrderCount(pb::OrderCountCondition {
            min_orders: min,
            max_orders: max,
            within_days,
        }))
    };
    assert!(matches(&orders(2, 2, 90), &facts));
    assert!(matches(&orders(3, 0, 365), &facts));
    assert!(!matches(&orders(1, 0, 5), &facts));

    let aov = |min: Option<i64>, max: Option<i64>, within_days| {
        cond(C::AverageOrderValue(pb::AverageOrderValueCondition {
            min_value: min.and_then(money),
            max_value: max.and_then(money),
            within_days,
        }))
    };
    // (30000 + 20000) / 2: the gross paid, before returns.
    assert!(matches(&aov(Some(25_000), Some(25_000), 90), &facts));
    assert!(!matches(&aov(Some(25_001), None, 90), &facts));
}

#[test]
fn customers_without_purchases_match_no_average_and_spend_only_up_to_a_maximum() {
    let facts = TestFacts::new();
    let aov = cond(C::AverageOrderValue(pb::AverageOrderValueCondition {
        min_value: None,
        max_value: money(1_000_000),
        within_days: 0,
    }));
    assert!(!matches(&aov, &facts));
    let low_spender = cond(C::Spend(pb::SpendCondition {
        min_total_spend: None,
        max_total_spend: money(1_000),
        within_days: 0,
    }));
    assert!(matches(&low_spender, &facts));
    assert!(!matches(&lapsed(1, 0), &facts), "lapsed needs a purchase");
    let store_only = cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
        min_store_share: 0.0,
        max_store_share: None,
    }));
    assert!(!matches(&store_only, &facts), "no share without purchases");
}

#[test]
fn lapsed_bounds_are_inclusive() {
    let mut facts = TestFacts::new();
    facts.traits.days_since_last_purchase = Some(60);
    assert!(matches(&lapsed(60, 0), &facts));
    assert!(matches(&lapsed(30, 60), &facts));
    assert!(!matches(&lapsed(61, 0), &facts));
    assert!(!matches(&lapsed(30, 59), &facts));
}

#[test]
fn inactive_and_first_seen_read_the_activity_traits() {
    let mut facts = TestFacts::new();
    let inactive = |days| {
        cond(C::Inactive(pb::InactiveCondition {
            min_days_inactive: days,
        }))
    };
    let first_seen = |days| cond(C::FirstSeen(pb::FirstSeenCondition { within_days: days }));
    assert!(
        !matches(&inactive(1), &facts),
        "never active is not inactive"
    );
    assert!(!matches(&first_seen(30), &facts));
    facts.traits.days_inactive = Some(45);
    facts.traits.first_seen_time = facts.ago(TimeDelta::days(30) - TimeDelta::seconds(1));
    assert!(matches(&inactive(45), &facts));
    assert!(!matches(&inactive(46), &facts));
    assert!(matches(&first_seen(30), &facts), "29 whole days ago");
    facts.traits.first_seen_time = facts.ago(TimeDelta::days(30));
    assert!(!matches(&first_seen(30), &facts), "30 whole days ago");
    // Activity in any behavioural category will do; none granted, no match.
    let none = facts
        .without(DataCategory::Browsing)
        .without(DataCategory::Purchases)
        .without(DataCategory::Location)
        .without(DataCategory::Engagement);
    assert!(!matches(&inactive(45), &none));
}

#[test]
fn cart_idle_bounds_are_inclusive_and_value_is_a_minimum() {
    let duration = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let abandoned = |min_idle, max_idle, min_value: Option<i64>| {
        cond(C::CartAbandoned(pb::CartAbandonedCondition {
            min_idle: duration(min_idle),
            max_idle: duration(max_idle),
            min_cart_value: min_value.and_then(money),
        }))
    };
    let mut facts = TestFacts::new();
    assert!(!matches(&abandoned(60, 0, None), &facts), "no cart");
    facts.traits.open_cart = Some(pb::OpenCart {
        items: vec![pb::EventItem {
            item_id: "sku-1".into(),
            quantity: 1,
            ..Default::default()
        }],
        value: money(4_999),
        last_change_time: facts.ago(TimeDelta::hours(24)),
        age_hours: 24,
    });
    assert!(matches(&abandoned(86_400, 0, None), &facts));
    assert!(!matches(&abandoned(86_401, 0, None), &facts));
    assert!(matches(&abandoned(3_600, 86_400, None), &facts));
    assert!(!matches(&abandoned(3_600, 86_399, None), &facts));
    assert!(matches(&abandoned(3_600, 0, Some(4_999)), &facts));
    assert!(!matches(&abandoned(3_600, 0, Some(5_000)), &facts));
    assert!(!matches(
        &abandoned(3_600, 0, None),
        &facts.without(DataCategory::Browsing)
    ));
}

#[test]
fn store_share_matches_store_only_shoppers() {
    let store_only = cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
        min_store_share: 1.0,
        max_store_share: None,
    }));
    let mostly_online = cond(C::PurchaseChannelShare(pb::PurchaseChannelShareCondition {
        min_store_share: 0.0,
        max_store_share: Some(0.25),
    }));
    let mut facts = TestFacts::new();
    facts.traits.store_purchase_share = Some(1.0);
    assert!(matches(&store_only, &facts));
    assert!(!matches(&mostly_online, &facts));
    facts.traits.store_purchase_share = Some(0.25);
    assert!(!matches(&store_only, &facts));
    assert!(matches(&mostly_online, &facts));
}

#[test]
fn affinities_and_preferred_channel_read_the_traits() {
    let mut facts = TestFacts::new();
    facts.traits.category_affinities = vec![pb::Affinity {
        key: "shoes".into(),
        score: 0.6,
        ..Default::default()
    }];
    facts.traits.brand_affinities = vec![pb::Affinity {
        key: "Acme".into(),
        score: 1.0,
        ..Default::default()
    }];
    facts.traits.preferred_channel = i32::from(common::Channel::Store);
    let category = |id: &str, min_score| {
        cond(C::CategoryAffinity(pb::CategoryAffinityCondition {
            category_id: id.into(),
            min_score,
        }))
    };
    assert!(matches(&category("shoes", 0.6), &facts));
    assert!(!matches(&category("shoes", 0.61), &facts));
    assert!(!matches(&category("bags", 0.1), &facts));
    let brand = cond(C::BrandAffinity(pb::BrandAffinityCondition {
        brand: "Acme".into(),
        min_score: 1.0,
    }));
    assert!(matches(&brand, &facts));
    let channel = |channels: &[common::Channel]| {
        cond(C::PreferredChannel(pb::PreferredChannelCondition {
            channels: channels.iter().map(|&c| i32::from(c)).collect(),
        }))
    };
    assert!(matches(
        &channel(&[common::Channel::Web, common::Channel::Store]),
        &facts
    ));
    assert!(!matches(&channel(&[common::Channel::App]), &facts));
}

fn born(month: i32, day: i32) -> pb::ZeroPartyData {
    pb::ZeroPartyData {
        birthday: Some(pb::Birthday { month, day }),
        ..Default::default()
    }
}

fn noon(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, month, day)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
}

#[test]
fn birthdays_count_days_ahead_across_the_year_end() {
    let facts = TestFacts::new()
        .zero_party(born(1, 2))
        .at(noon(2026, 12, 30));
    assert!(matches(&birthday(3), &facts));
    assert!(!matches(&birthday(2), &facts));
    let today = TestFacts::new()
        .zero_party(born(12, 30))
        .at(noon(2026, 12, 30));
    assert!(matches(&birthday(0), &today));
    let passed = TestFacts::new()
        .zero_party(born(12, 29))
        .at(noon(2026, 12, 30));
    assert!(
        !matches(&birthday(31), &passed),
        "next one is 364 days away"
    );
    assert!(!matches(
        &birthday(31),
        &TestFacts::new().at(noon(2026, 12, 30))
    ));
}

#[test]
fn a_29_february_birthday_falls_on_28_february_in_common_years() {
    let on = |year, month, day| {
        TestFacts::new()
            .zero_party(born(2, 29))
            .at(noon(year, month, day))
    };
    assert!(matches(&birthday(0), &on(2027, 2, 28)));
    assert!(matches(&birthday(1), &on(2027, 2, 27)));
    assert!(!matches(&birthday(0), &on(2027, 2, 27)));
    // A leap year has the day itself.
    assert!(!matches(&birthday(0), &on(2028, 2, 28)));
    assert!(matches(&birthday(1), &on(2028, 2, 28)));
    // After 28 February of a common year, the next is a year away.
    assert!(!matches(&birthday(31), &on(2027, 3, 1)));
    // A stored day no calendar has never matches.
    let impossible = TestFacts::new()
        .zero_party(born(2, 30))
        .at(noon(2027, 2, 27));
    assert!(!matches(&birthday(31), &impossible));
}
