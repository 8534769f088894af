//! What recommendation learns from profile's feed, over real gRPC: a merge
//! moves a visitor's session and history to the customer, a return cancels its
//! purchase signal, and retargeting audiences form from session state as time
//! passes, with consent.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::recommendation::v1 as pb;
use attune_tests::profile_events::{cart, eur, event, item, purchase, view};
use attune_tests::profile_people::merge;
use attune_tests::recommendation::catalog_item;
use attune_tests::{TestApp, backend_tests, common_pb, profile_pb};
use chrono::TimeDelta;

async fn buy_again(app: &TestApp, customer: &str) -> Vec<(String, i32)> {
    app.recommendation()
        .get_buy_again(pb::GetBuyAgainRequest {
            customer_id: customer.into(),
            filter: None,
            max_results: 10,
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .into_iter()
        .map(|i| (i.item.unwrap().item_id, i.purchase_count))
        .collect()
}

async fn members(
    app: &TestApp,
    audience: &str,
    min_idle_days: Option<i64>,
) -> Vec<pb::AudienceMember> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .recommendation()
            .list_audience_members(pb::ListAudienceMembersRequest {
                audience_id: audience.into(),
                page_size: 1,
                page_token: token,
                min_idle: min_idle_days.map(|days| prost_types::Duration {
                    seconds: days * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.members);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

backend_tests! {
    async fn a_merge_moves_the_visitors_session_and_history_to_the_customer(app, clock) {
        app.upsert_items(vec![catalog_item("shoe", &["shoes"], "acme", 5000), catalog_item("bag", &["bags"], "acme", 3000)]).await;
        let (visitor, customer) = ("anon-7", "known-7");
        app.grant(visitor, &["personalization"]).await;
        app.grant(customer, &["personalization"]).await;
        let now = clock.clock().now();
        let mut visits = vec![
            purchase("m-o1", visitor, now - TimeDelta::days(3), vec![item("shoe", 1, Some(eur(5000)), &["shoes"], "acme")], eur(5000)),
            cart(profile_pb::EventKind::AddToCart, "m-c1", visitor, now, vec![item("bag", 1, None, &["bags"], "acme")]),
        ];
        for event in &mut visits {
            event.new_profile_kind = profile_pb::ProfileKind::Anonymous.into();
        }
        app.ingest(visits).await;
        app.ingest(vec![purchase("m-o2", customer, now - TimeDelta::days(1), vec![item("shoe", 1, Some(eur(5000)), &["shoes"], "acme")], eur(5000))]).await;
        app.profiles().merge_profiles(merge(visitor, customer)).await.unwrap();
        // The visitor's cart is the customer's now.
        let no_cart = pb::GetRecommendationsRequest {
            customer_id: customer.into(),
            placement: pb::Placement::Home.into(),
            filter: Some(pb::RecommendationFilter { exclude_in_cart: true, ..Default::default() }),
            ..Default::default()
        };
        let answer = app.recommendations_until(no_cart, |a| a.personalization.as_ref().unwrap().personalized && !a.items.iter().any(|i| i.item_id == "bag")).await;
        assert!(answer.items.iter().all(|i| i.item_id != "bag"));
        // Both purchases of the shoe are the customer's in the next model.
        app.train_until(3).await;
        assert_eq!(buy_again(&app, customer).await, [("shoe".to_owned(), 2)]);
        let exported = app.export_customer(visitor, &attune_tests::recommendation::request_id()).await;
        assert!(exported.iter().filter(|m| m.service == "attune.recommendation.v1").all(|m| m.records.is_empty()), "{exported:?}");
    }

    async fn a_return_cancels_its_purchase_signal(app, clock) {
        app.upsert_items(vec![catalog_item("tv", &["electronics"], "acme", 50_000), catalog_item("cable", &["electronics"], "acme", 1000)]).await;
        let c = "ret-1";
        app.grant(c, &["personalization"]).await;
        let now = clock.clock().now();
        let lines = vec![item("tv", 1, Some(eur(50_000)), &["electronics"], "acme"), item("cable", 1, Some(eur(1000)), &["electronics"], "acme")];
        app.ingest(vec![purchase("ret-o1", c, now - TimeDelta::days(5), lines, eur(51_000))]).await;
        app.train_until(2).await;
        assert_eq!(buy_again(&app, c).await.len(), 2);
        let refund = profile_pb::Event {
            order_id: "order-ret-o1".into(),
            items: vec![item("tv", 1, Some(eur(50_000)), &["electronics"], "acme")],
            amount: Some(eur(50_000)),
            ..event(profile_pb::EventKind::Return, "ret-r1", c, now - TimeDelta::days(1))
        };
        app.ingest(vec![refund]).await;
        app.train_until(1).await;
        assert_eq!(buy_again(&app, c).await, [("cable".to_owned(), 1)]);
    }

    async fn audiences_form_from_idle_sessions_with_consent(app, clock) {
        app.upsert_items(vec![catalog_item("bag", &["bags"], "acme", 3000), catalog_item("hat", &["hats"], "acme", 2000)]).await;
        let now = clock.clock().now();
        for c in ["aud-1", "aud-2", "aud-3"] {
            app.grant(c, &["personalization", "marketing_email"]).await;
        }
        app.grant("aud-silent", &["personalization"]).await;
        let add = |id: &str, c: &str| cart(profile_pb::EventKind::AddToCart, id, c, now, vec![item("bag", 2, None, &["bags"], "acme")]);
        app.ingest(vec![
            add("aud-c1", "aud-1"),
            add("aud-c2", "aud-2"),
            add("aud-c9", "aud-silent"),
            view("aud-v3", "aud-3", now, "hat"),
        ]).await;
        // Wait until the follower has the sessions (the silent one without consent never shows).
        clock.advance(TimeDelta::hours(25));
        let mut carts = Vec::new();
        for _ in 0..200 {
            carts = members(&app, "abandoned_cart_24h", None).await;
            if carts.len() == 2 { break; }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(carts.iter().map(|m| m.customer_id.as_str()).collect::<Vec<_>>(), ["aud-1", "aud-2"], "by id, with consent only, a page at a time");
        assert_eq!(carts[0].cart_value, Some(eur(6000)));
        assert_eq!(carts[0].items[0].item_id, "bag");
        assert_eq!(carts[0].items[0].reason.as_ref().unwrap().kind, pb::ReasonKind::InCart as i32);
        assert_eq!(carts[0].items[0].data_categories, [common_pb::DataCategory::Browsing as i32]);
        let viewed = members(&app, "viewed_not_bought_24h", None).await;
        assert_eq!(viewed.iter().map(|m| m.customer_id.as_str()).collect::<Vec<_>>(), ["aud-3"]);
        assert_eq!(viewed[0].items[0].item_id, "hat");
        // Inactive for N days, N per request.
        assert!(members(&app, "inactive_30d", None).await.is_empty());
        assert_eq!(members(&app, "inactive_30d", Some(1)).await.len(), 3);
        clock.advance(TimeDelta::days(7));
        assert!(members(&app, "abandoned_cart_24h", None).await.is_empty(), "idle past the audience's maximum");
        let listed = app.recommendation().list_retargeting_audiences(pb::ListRetargetingAudiencesRequest::default()).await.unwrap().into_inner();
        let counts: Vec<_> = listed.audiences.iter().map(|a| (a.audience_id.as_str(), a.member_count)).collect();
        assert_eq!(counts, [("abandoned_cart_24h", 0), ("inactive_30d", 0), ("viewed_not_bought_24h", 1)]);
    }
}
