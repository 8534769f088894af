//! A merge brings a visitor's history into the customer's over real gRPC, and
//! counts nothing twice: after MergeProfiles, the customer's traits equal those of
//! one profile that had every event of both from the start.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_tests::consent_requests::request_id;
use attune_tests::profile_events::{cart, eur, item, purchase, view};
use attune_tests::{TestApp, backend_tests, common_pb, profile_pb as pb};
use chrono::{DateTime, TimeDelta, Utc};

/// The events of one shopper's history, under `customer`, with ids prefixed by
/// `prefix`: half of them as a visitor would send them (`visitor`), half as the
/// signed-in customer.
fn history(prefix: &str, visitor: &str, customer: &str, now: DateTime<Utc>) -> Vec<pb::Event> {
    let ago = |days: i64| now - TimeDelta::days(days);
    let id = |n: &str| format!("{prefix}-{n}");
    let shoes = |quantity| item("sku-shoe", quantity, Some(eur(5_000)), &["shoes"], "Acme");
    let bag = item("sku-bag", 1, Some(eur(2_000)), &["bags"], "Bagco");
    let mut visitor_events = vec![
        view(&id("v1"), visitor, ago(12), "sku-shoe"),
        purchase(&id("o1"), visitor, ago(10), vec![shoes(1)], eur(5_000)),
        cart(
            pb::EventKind::AddToCart,
            &id("c1"),
            visitor,
            ago(2),
            vec![bag.clone()],
        ),
    ];
    for event in &mut visitor_events {
        event.new_profile_kind = pb::ProfileKind::Anonymous.into();
    }
    let mut customer_events = vec![
        purchase(&id("o2"), customer, ago(40), vec![shoes(2)], eur(10_000)),
        view(&id("v2"), customer, ago(1), "sku-bag"),
    ];
    customer_events[0].channel = common_pb::Channel::Store.into();
    visitor_events.append(&mut customer_events);
    visitor_events
}

/// The traits with what differs between two customers blanked: the id.
fn comparable(mut traits: pb::Traits) -> pb::Traits {
    traits.customer_id.clear();
    traits
}

async fn grant(app: &TestApp, customer: &str) {
    app.grant(customer, &["personalization"]).await;
}

backend_tests! {
    async fn merged_traits_equal_those_of_one_profile_with_the_whole_history(app, clock) {
        let now = clock.clock().now();
        for customer in ["merge-anon", "merge-cust", "merge-whole"] {
            grant(&app, customer).await;
        }
        let split = app.ingest(history("split", "merge-anon", "merge-cust", now)).await;
        assert_eq!(split.accepted_count, 5, "{split:?}");
        let whole = app.ingest(history("whole", "merge-whole", "merge-whole", now)).await;
        assert_eq!(whole.accepted_count, 5, "{whole:?}");

        let merged = app
            .profiles()
            .merge_profiles(pb::MergeProfilesRequest {
                source_customer_id: "merge-anon".into(),
                target_customer_id: "merge-cust".into(),
                request_id: request_id(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(merged.moved_event_count, 3);

        let after_merge = app.traits("merge-cust").await;
        assert_eq!(after_merge.windows[2].order_count, 2, "both orders, once each: {after_merge:?}");
        assert_eq!(comparable(after_merge), comparable(app.traits("merge-whole").await));
        // The visitor's id reads the survivor's traits.
        assert_eq!(app.traits("merge-anon").await.customer_id, "merge-cust");
        // A retry of the merge changes nothing.
        let before_retry = app.traits("merge-cust").await;
        app.profiles()
            .merge_profiles(pb::MergeProfilesRequest {
                source_customer_id: "merge-anon".into(),
                target_customer_id: "merge-cust".into(),
                request_id: request_id(),
            })
            .await
            .unwrap();
        assert_eq!(app.traits("merge-cust").await, before_retry);
    }
}
