//! Traits over real gRPC, each checked against a hand-computed example on a
//! manual clock: recency, windows, scores, affinities with decay, the open cart,
//! channels and methods, and what consent leaves out.

#![allow(clippy::unwrap_used, clippy::float_cmp)] // panics fail tests

use attune_tests::profile_events::{cart, eur, event, item, purchase, statuses};
use attune_tests::{backend_tests, common_pb, profile_pb as pb};
use chrono::TimeDelta;

use pb::EventKind as K;

/// What one weight is worth `days` days later (half-life 30 days).
fn decayed(weight: f64, days: f64) -> f64 {
    weight * 0.5_f64.powf(days / 30.0)
}

fn money(minor: i64) -> Option<common_pb::Money> {
    Some(eur(minor))
}

fn on(channel: common_pb::Channel, mut event: pb::Event) -> pb::Event {
    event.channel = channel.into();
    event
}

backend_tests! {
    async fn traits_match_a_hand_computed_example(app, clock) {
        let c = "cust-t";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        let ago = |days: i64| now - TimeDelta::days(days);
        let shoe_a = item("A", 2, money(5000), &["shoes", "running"], "Nike");
        let mut o1 = purchase("o1", c, ago(40), vec![item("C", 1, money(10_000), &["shoes"], "Nike")], eur(10_000));
        o1.channel = common_pb::Channel::Store.into();
        o1.delivery_method = common_pb::DeliveryMethod::StorePickup.into();
        o1.payment_method = common_pb::PaymentMethod::Card.into();
        o1.pickup_point_id = "store-1".into();
        let mut o2 = purchase("o2", c, ago(100), vec![item("D", 1, money(3000), &["bags"], "Nike")], eur(3000));
        o2.payment_method = common_pb::PaymentMethod::Card.into();
        o2.delivery_method = common_pb::DeliveryMethod::HomeStandard.into();
        let usd = common_pb::Money { amount_minor: 5000, currency_code: "USD".into() };
        let mut o3 = purchase("o3", c, ago(5), vec![item("E", 1, Some(usd.clone()), &["shoes"], "Adidas")], usd);
        o3.channel = common_pb::Channel::Web.into();
        let refund = pb::Event {
            order_id: "o1".into(),
            items: vec![item("C", 1, money(2500), &["shoes"], "Nike")],
            amount: money(2500),
            ..on(common_pb::Channel::Store, event(K::Return, "r1", c, ago(20)))
        };
        let visit = pb::Event {
            store_id: "store-1".into(),
            ..on(common_pb::Channel::Store, event(K::StoreVisit, "sv1", c, ago(3)))
        };
        let view_a = pb::Event { items: vec![item("A", 1, None, &["shoes", "running"], "Nike")], ..event(K::View, "v1", c, ago(10)) };
        // The older history first, then the recent cart: traits are kept across batches.
        let first = app.ingest(vec![o1, refund, view_a, o2, visit]).await;
        assert_eq!(
            statuses(&first.results),
            [pb::IngestStatus::Accepted, pb::IngestStatus::Accepted, pb::IngestStatus::Accepted, pb::IngestStatus::Accepted, pb::IngestStatus::SkippedNoConsent],
            "personalization does not cover store visits (location)"
        );
        let second = app
            .ingest(vec![
                cart(K::AddToCart, "a1", c, ago(2), vec![shoe_a.clone()]),
                o3,
                on(common_pb::Channel::App, cart(K::AddToCart, "a2", c, ago(1), vec![item("B", 1, money(2000), &["socks"], "Puma")])),
                cart(K::RemoveFromCart, "x1", c, ago(1) + TimeDelta::hours(1), vec![item("A", 1, None, &[], "")]),
            ])
            .await;
        assert_eq!(second.accepted_count, 4);

        let traits = app.traits(c).await;
        let ts = |t: chrono::DateTime<chrono::Utc>| Some(attune_kit::types::time::to_proto(t));
        assert_eq!(traits.customer_id, c);
        assert_eq!(traits.first_seen_time, ts(ago(100)));
        assert_eq!(traits.last_seen_time, ts(ago(1) + TimeDelta::hours(1)));
        assert_eq!(traits.days_inactive, Some(0), "23 hours are no whole day");
        assert_eq!(traits.last_purchase_time, ts(ago(5)));
        assert_eq!(traits.days_since_last_purchase, Some(5));
        let window = |days, orders, revenue, returns, aov: Option<i64>| pb::WindowTotals {
            days,
            order_count: orders,
            revenue: money(revenue),
            return_count: returns,
            average_order_value: aov.map(eur),
        };
        assert_eq!(
            traits.windows,
            vec![
                // The refund of an older order makes the 30 days negative.
                window(30, 0, -2500, 1, None),
                window(90, 1, 7500, 1, Some(10_000)),
                // o3 is in USD: kept apart, never converted.
                window(365, 2, 10_500, 1, Some(6500)),
            ]
        );
        assert_eq!((traits.lifetime_order_count, traits.unconverted_order_count), (3, 1));
        // 5 days (<= 30): 5; 2 orders in 365 days: 2; 105.00 EUR (>= 50): 2.
        assert_eq!(traits.rfm, Some(pb::RfmScores { recency: 5, frequency: 2, monetary: 2 }));
        assert_eq!(traits.online_purchase_share, Some(2.0 / 3.0));
        assert_eq!(traits.store_purchase_share, Some(1.0 / 3.0));
        // One pickup and one home delivery: the most recent wins the tie.
        assert_eq!(traits.usual_delivery_method, common_pb::DeliveryMethod::StorePickup as i32);
        assert_eq!(traits.usual_payment_method, common_pb::PaymentMethod::Card as i32);
        assert_eq!(traits.usual_pickup_point_id, "store-1");
        // Web: view, add, remove, o2, o3; store: o1, the refund; app: one add.
        assert_eq!(traits.preferred_channel, common_pb::Channel::Web as i32);
        assert_eq!(traits.store_visit_count, 0);

        // Views weigh 1, cart additions 3, purchases 5, halving every 30 days.
        let shoes = decayed(1.0, 10.0) + decayed(3.0, 2.0) + decayed(5.0, 40.0) + decayed(5.0, 5.0);
        let running = decayed(1.0, 10.0) + decayed(3.0, 2.0);
        let socks = decayed(3.0, 1.0);
        let bags = decayed(5.0, 100.0);
        let expected = [("shoes", shoes, 4), ("running", running, 2), ("socks", socks, 1), ("bags", bags, 1)];
        assert_eq!(traits.category_affinities.len(), expected.len());
        for (affinity, (key, value, count)) in traits.category_affinities.iter().zip(expected) {
            assert_eq!((affinity.key.as_str(), affinity.event_count), (key, count));
            assert!((affinity.score - value / shoes).abs() < 1e-9, "{key}: {} vs {}", affinity.score, value / shoes);
        }
        assert_eq!(traits.category_affinities[0].last_event_time, ts(ago(2)));
        let brands: Vec<&str> = traits.brand_affinities.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(brands, ["Nike", "Adidas", "Puma"]);
        let nike = decayed(1.0, 10.0) + decayed(3.0, 2.0) + decayed(5.0, 40.0) + decayed(5.0, 100.0);
        assert!((traits.brand_affinities[1].score - decayed(5.0, 5.0) / nike).abs() < 1e-9);

        // The cart: B (added last) first, then A with 2 - 1 units; o3 emptied it before.
        let open = traits.open_cart.clone().unwrap();
        assert_eq!(
            open.items.iter().map(|i| (i.item_id.as_str(), i.quantity)).collect::<Vec<_>>(),
            [("B", 1), ("A", 1)]
        );
        assert_eq!(open.value, money(5000 + 2000));
        assert_eq!(open.last_change_time, ts(ago(1) + TimeDelta::hours(1)));
        assert_eq!(open.age_hours, 23);

        let source = |name: &str| traits.sources.iter().find(|s| s.r#trait == name).cloned();
        let windows = source("windows").unwrap();
        assert_eq!(windows.event_kinds, [K::Purchase as i32, K::Return as i32]);
        assert_eq!(windows.data_categories, [common_pb::DataCategory::Purchases as i32]);
        assert_eq!(windows.event_count, 4);
        assert_eq!(source("category_affinities").unwrap().event_count, 1 + 2 + 3);
        assert!(source("store_visit_count").is_none(), "location is not covered");
        let names: Vec<&str> = traits.sources.iter().map(|s| s.r#trait.as_str()).collect();
        assert!(names.is_sorted(), "{names:?}");
        assert_eq!(
            traits.data_categories,
            [common_pb::DataCategory::Browsing as i32, common_pb::DataCategory::Purchases as i32]
        );
        assert_eq!(traits.compute_time, ts(now));

        // A month later, without new events.
        clock.advance(TimeDelta::days(31));
        let later = app.traits(c).await;
        assert_eq!(later.days_inactive, Some(31));
        assert_eq!(later.days_since_last_purchase, Some(36));
        assert_eq!(later.windows[0], window(30, 0, 0, 0, None));
        assert_eq!(later.windows[1], window(90, 1, 7500, 1, Some(10_000)));
        assert_eq!(later.open_cart.unwrap().age_hours, 31 * 24 + 23);
        assert_eq!(later.rfm.unwrap().recency, 4, "36 days since the last purchase");
    }

    async fn a_known_customer_without_events_has_empty_traits(app) {
        app.grant("cust-empty", &["marketing_email"]).await;
        // A refused event creates no profile: traits are NOT_FOUND until one is stored.
        let refused = app.ingest(vec![event(K::CheckoutStarted, "e-1", "cust-empty", chrono::Utc::now())]).await;
        assert_eq!(refused.skipped_count, 1);
        let missing = app.events().get_traits(pb::GetTraitsRequest { customer_id: "cust-empty".into() }).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let stored = app
            .ingest(vec![pb::Event { campaign_id: "spring".into(), ..event(K::EmailOpen, "e-2", "cust-empty", chrono::Utc::now()) }])
            .await;
        assert_eq!(stored.accepted_count, 1);
        let traits = app.traits("cust-empty").await;
        assert!(traits.windows.is_empty() && traits.rfm.is_none() && traits.open_cart.is_none());
        assert_eq!(traits.data_categories, [common_pb::DataCategory::Engagement as i32]);
        assert_eq!(traits.days_inactive, Some(0));
        assert_eq!(traits.preferred_channel, common_pb::Channel::Web as i32);
    }

    async fn a_rebuild_after_a_merge_counts_nothing_twice(app, clock) {
        for customer in ["cust-all", "cust-known", "anon-visitor"] {
            app.grant(customer, &["personalization"]).await;
        }
        let now = clock.clock().now();
        let ago = |hours: i64| now - TimeDelta::hours(hours);
        // The same history, once under one customer, once split in two.
        let history = |prefix: &str, first: &str, second: &str| {
            vec![
                pb::Event { items: vec![item("A", 1, None, &["shoes"], "Nike")], ..event(K::View, &format!("{prefix}-1"), first, ago(50)) },
                cart(K::AddToCart, &format!("{prefix}-2"), first, ago(40), vec![item("A", 2, money(5000), &["shoes"], "Nike")]),
                purchase(&format!("{prefix}-3"), second, ago(30), vec![item("A", 2, money(5000), &["shoes"], "Nike")], eur(10_000)),
                cart(K::AddToCart, &format!("{prefix}-4"), second, ago(20), vec![item("B", 1, money(700), &["socks"], "Puma")]),
                cart(K::AddToCart, &format!("{prefix}-5"), first, ago(10), vec![item("C", 1, money(300), &["socks"], "Puma")]),
            ]
        };
        assert_eq!(app.ingest(history("all", "cust-all", "cust-all")).await.accepted_count, 5);
        assert_eq!(app.ingest(history("split", "anon-visitor", "cust-known")).await.accepted_count, 5);

        // What a merge does to events and traits: re-attribute the rows, then
        // rebuild both states from the stored events.
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        use sea_orm::{ConnectionTrait, TransactionTrait};
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared("UPDATE profile_feed SET customer_id = 'cust-known' WHERE customer_id = 'anon-visitor'")
            .await
            .unwrap();
        let eur_currency = attune_kit::types::Currency::parse("EUR").unwrap();
        for customer in ["cust-known", "anon-visitor"] {
            attune_profile::events::traits::rebuild_at(&txn, eur_currency, now, customer).await.unwrap();
        }
        txn.commit().await.unwrap();

        let mut merged = app.traits("cust-known").await;
        let single = app.traits("cust-all").await;
        merged.customer_id = single.customer_id.clone();
        assert_eq!(merged, single);
        assert_eq!(single.lifetime_order_count, 1);
        assert_eq!(single.open_cart.unwrap().items.len(), 2);
        // The merged-away id keeps no state of its own.
        let rows = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM profile_traits WHERE customer_id = 'anon-visitor'",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rows.try_get::<i64>("", "n").unwrap(), 0);
    }
}
