//! The paths between services, over real gRPC in one app: loyalty's
//! replenishment offer reads what recommendation learned from profile's feed,
//! and delivery ships free for the customer's loyalty tier.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::common::v1::{DataCategory, DeliveryMethod as M};
use attune_proto::delivery::v1 as delivery_pb;
use attune_tests::consent_requests::request_id;
use attune_tests::delivery::{at, cart, rate};
use attune_tests::loyalty::{days, eur_rule, loyalty_pb as pb};
use attune_tests::profile_events::{eur, item, purchase};
use attune_tests::recommendation::catalog_item;
use attune_tests::{TestApp, backend_tests};
use chrono::{DateTime, TimeDelta, Timelike, Utc};

fn refill_rule() -> pb::OfferRule {
    pb::OfferRule {
        rule_id: "refill".into(),
        kind: pb::OfferKind::Replenishment.into(),
        active: true,
        title: "Stock up".into(),
        discount_basis_points: 1000,
        validity: Some(days(14)),
        channel: pb::MessageChannel::InApp.into(),
        campaign_id: "refills".into(),
        campaign_budget: 0,
        inactive_days: 0,
        cart_idle_hours: 0,
        recent_days: 0,
        due_within: Some(days(7)),
        store_id: String::new(),
        min_orders: 0,
    }
}

async fn generate(app: &TestApp, customer: &str) -> pb::GenerateOffersResponse {
    app.offers()
        .generate_offers(pb::GenerateOffersRequest {
            customer_id: customer.into(),
            request_id: request_id(),
        })
        .await
        .expect("generated")
        .into_inner()
}

fn skipped(answer: &pb::GenerateOffersResponse, rule_id: &str) -> Option<pb::SkipReason> {
    answer
        .skipped
        .iter()
        .find(|s| s.rule_id == rule_id)
        .map(|s| pb::SkipReason::try_from(s.reason).unwrap())
}

/// Coffee every ten days, the last ten days before `now`: due again now.
async fn buy_coffee_every_ten_days(app: &TestApp, customer: &str, now: DateTime<Utc>) {
    let events = (1..=3)
        .map(|n| {
            purchase(
                &format!("{customer}-{n}"),
                customer,
                now - TimeDelta::days(40 - 10 * n),
                vec![item("coffee", 1, Some(eur(900)), &["food"], "roastery")],
                eur(900),
            )
        })
        .collect();
    app.ingest(events).await;
}

fn option_for(
    options: &delivery_pb::GetDeliveryOptionsResponse,
    method: M,
) -> &delivery_pb::DeliveryOption {
    options
        .delivery_options
        .iter()
        .find(|o| o.method == method as i32)
        .unwrap_or_else(|| panic!("{method:?} is offered: {options:?}"))
}

fn reasons(option: &delivery_pb::DeliveryOption) -> Vec<delivery_pb::OptionReasonKind> {
    option
        .reasons
        .iter()
        .map(|r| delivery_pb::OptionReasonKind::try_from(r.kind).unwrap())
        .collect()
}

backend_tests! {
    async fn loyalty_offers_a_refill_of_what_recommendation_learned_is_due(app, clock) {
        // Daytime in UTC, so that nothing depends on when the test runs.
        clock.set(Utc::now().with_hour(10).unwrap() - TimeDelta::days(1));
        let now = clock.clock().now();
        app.upsert_items(vec![catalog_item("coffee", &["food"], "roastery", 900)]).await;
        app.offers().put_offer_rule(pb::PutOfferRuleRequest { rule: Some(refill_rule()), request_id: request_id() }).await.expect("stored");
        app.grant("regular", &["personalization"]).await;
        buy_coffee_every_ten_days(&app, "regular", now).await;
        // Bought once only: no cadence, nothing due.
        app.grant("once", &["personalization"]).await;
        app.ingest(vec![purchase("once-1", "once", now - TimeDelta::days(10), vec![item("coffee", 1, Some(eur(900)), &["food"], "roastery")], eur(900))]).await;
        app.train_until(4).await;
        let once = generate(&app, "once").await;
        assert!(once.issued.is_empty(), "{once:?}");
        assert_eq!(skipped(&once, "refill"), Some(pb::SkipReason::NotEligible));

        let offered = generate(&app, "regular").await;
        assert_eq!(offered.issued.len(), 1, "{offered:?}");
        let offer = &offered.issued[0];
        assert_eq!(offer.rule_id, "refill");
        assert_eq!(offer.kind, pb::OfferKind::Replenishment as i32);
        assert_eq!(offer.item_ids, ["coffee"]);
        assert_eq!(offer.data_categories, [DataCategory::Purchases as i32]);
        assert!(!offer.reason.is_empty(), "{offer:?}");

        // Without personalization: not issued, and said why.
        buy_coffee_every_ten_days(&app, "silent", now).await;
        let silent = generate(&app, "silent").await;
        assert!(silent.issued.is_empty(), "{silent:?}");
        assert_eq!(skipped(&silent, "refill"), Some(pb::SkipReason::NoConsent));

    }

    async fn without_recommendation_the_refill_offer_is_skipped_not_faked(app) {
        app.offers().put_offer_rule(pb::PutOfferRuleRequest { rule: Some(refill_rule()), request_id: request_id() }).await.expect("stored");
        app.grant("regular", &["personalization"]).await;
        // Loyalty alone, whose recommendation peer does not answer.
        let loyalty = app.pod_with_peer_at("loyalty", "recommendation", "http://127.0.0.1:9").await;
        // The new pod's first consent check can time out on a loaded machine
        // (and then fails closed, NO_CONSENT): ask until consent has answered.
        let mut answer = generate(&loyalty, "regular").await;
        for _ in 0..50 {
            if skipped(&answer, "refill") != Some(pb::SkipReason::NoConsent) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            answer = generate(&loyalty, "regular").await;
        }
        assert!(answer.issued.is_empty(), "{answer:?}");
        assert_eq!(skipped(&answer, "refill"), Some(pb::SkipReason::SourceUnavailable));
        // The same app with recommendation served: asked, and nothing is due.
        assert_eq!(skipped(&generate(&app, "regular").await, "refill"), Some(pb::SkipReason::NotEligible));
    }

    async fn delivery_ships_free_for_the_customers_loyalty_tier(app) {
        let tier = |id: &str, threshold: i64, free_shipping: Option<pb::FreeShipping>| pb::Tier {
            tier_id: id.into(),
            display_name: id.to_uppercase(),
            threshold,
            benefits: Some(pb::TierBenefits { earn_multiplier_basis_points: 0, free_shipping, early_access: false }),
        };
        app.loyalty().put_tiers(pb::PutTiersRequest {
            tiers: vec![
                tier("base", 0, None),
                tier("gold", 100, Some(pb::FreeShipping { delivery_methods: vec![M::HomeStandard.into()] })),
            ],
            basis: pb::TierBasis::Points.into(),
            spend_currency_code: String::new(),
            request_id: request_id(),
        }).await.expect("the ladder is stored");
        app.put_earn_rule(eur_rule("base_eur", 1, 0)).await;
        app.grant("gold-1", &["personalization"]).await;
        app.ingest(vec![purchase("g-1", "gold-1", Utc::now(), vec![item("tv", 1, Some(eur(30_000)), &["tv"], "b")], eur(30_000))]).await;
        app.wait_for_account("gold-1", |a| a.tier_id == "gold").await;
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499), rate("next", M::HomeNextDay, 999)]).await;

        let gold = app.delivery_options("gold-1", at(52.5, 13.4), cart(2000, 500)).await;
        assert_eq!(gold.tier_benefits_status, delivery_pb::TierBenefitsStatus::Applied as i32, "{gold:?}");
        let standard = option_for(&gold, M::HomeStandard);
        assert_eq!(standard.price.as_ref().unwrap().amount_minor, 0, "{standard:?}");
        assert!(reasons(standard).contains(&delivery_pb::OptionReasonKind::FreeForTier), "{standard:?}");
        let next_day = option_for(&gold, M::HomeNextDay);
        assert_eq!(next_day.price.as_ref().unwrap().amount_minor, 999, "not covered by the tier");
        assert!(!reasons(next_day).contains(&delivery_pb::OptionReasonKind::FreeForTier));

        // No loyalty account: normal prices, and the answer says so.
        let stranger = app.delivery_options("no-account", at(52.5, 13.4), cart(2000, 500)).await;
        assert_eq!(stranger.tier_benefits_status, delivery_pb::TierBenefitsStatus::NoAccount as i32, "{stranger:?}");
        let standard = option_for(&stranger, M::HomeStandard);
        assert_eq!(standard.price.as_ref().unwrap().amount_minor, 499);
        assert!(!reasons(standard).contains(&delivery_pb::OptionReasonKind::FreeForTier));
    }
}
