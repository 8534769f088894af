//! Earning from profile's feed over real gRPC: pending points released when the
//! return window closes, returns taking back their lines' points (debt when
//! they were spent, paid by the next credit), each order earning exactly once
//! across follower restarts and rewinds, zero-party bonuses once per field, and
//! Simulate.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::sea_orm::{ConnectionTrait, Statement};
use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{eur_rule, loyalty_pb as pb};
use attune_tests::profile_events::{eur, event, item, purchase};
use attune_tests::profile_pb;
use chrono::TimeDelta;

fn returned(
    event_id: &str,
    customer: &str,
    at: chrono::DateTime<chrono::Utc>,
    order: &str,
    items: Vec<profile_pb::EventItem>,
    refund: i64,
) -> profile_pb::Event {
    profile_pb::Event {
        order_id: order.into(),
        items,
        amount: Some(eur(refund)),
        ..event(profile_pb::EventKind::Return, event_id, customer, at)
    }
}

async fn run_scheduled(app: &attune_tests::TestApp) -> pb::RunScheduledWorkResponse {
    app.loyalty()
        .run_scheduled_work(pb::RunScheduledWorkRequest {
            request_id: request_id(),
        })
        .await
        .expect("the scheduled work runs")
        .into_inner()
}

backend_tests! {
    async fn pending_points_release_after_the_return_window_and_returns_take_back(app, clock) {
        app.put_earn_rule(eur_rule("base_eur", 1, 14)).await;
        app.grant("cust-1", &["personalization"]).await;
        let now = clock.clock().now();
        // 30 EUR of shoes and 20 EUR of socks: 50 points, pending 14 days.
        app.ingest(vec![purchase(
            "p-1",
            "cust-1",
            now,
            vec![item("shoes", 1, Some(eur(3000)), &["shoes"], "acme"), item("socks", 2, Some(eur(1000)), &["socks"], "acme")],
            eur(5000),
        )])
        .await;
        let account = app.wait_for_account("cust-1", |a| a.pending_points == 50).await;
        assert_eq!(account.available_points, 0);
        assert_eq!(run_scheduled(&app).await.released_points, 0, "the window is open");
        // One pair of socks comes back inside the window: its 10 points leave pending.
        app.ingest(vec![returned("r-1", "cust-1", now, "order-p-1", vec![item("socks", 1, Some(eur(1000)), &["socks"], "acme")], 1000)]).await;
        app.wait_for_account("cust-1", |a| a.pending_points == 40).await;
        clock.advance(TimeDelta::days(15));
        assert_eq!(run_scheduled(&app).await.released_points, 40);
        let account = app.assert_ledger_consistent("cust-1").await;
        assert_eq!((account.available_points, account.pending_points), (40, 0));
        // 35 are spent; then the shoes come back: 30 points, of which 5 are there.
        app.loyalty()
            .redeem_points(pb::RedeemPointsRequest { customer_id: "cust-1".into(), points: 35, order_id: String::new(), description: String::new(), request_id: request_id() })
            .await
            .expect("redeemed");
        let at = clock.clock().now();
        app.ingest(vec![returned("r-2", "cust-1", at, "order-p-1", vec![item("shoes", 1, Some(eur(3000)), &["shoes"], "acme")], 3000)]).await;
        let account = app.wait_for_account("cust-1", |a| a.debt_points > 0).await;
        assert_eq!((account.available_points, account.debt_points), (0, 25));
        app.assert_ledger_consistent("cust-1").await;
        // The next credit pays the debt first.
        app.grant_points("cust-1", 40).await;
        let account = app.assert_ledger_consistent("cust-1").await;
        assert_eq!((account.available_points, account.debt_points), (15, 0));
        let kinds: Vec<i32> = app.statement("cust-1").await.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&(pb::EntryKind::Debt as i32)) && kinds.contains(&(pb::EntryKind::DebtPayment as i32)), "{kinds:?}");
        let purchase_entry = app.statement("cust-1").await.into_iter().find(|e| e.kind == pb::EntryKind::Pending as i32).expect("the purchase's entry");
        assert_eq!((purchase_entry.rule_id.as_str(), purchase_entry.rule_version), ("base_eur", 1), "each entry names its rule version");
    }

    async fn each_purchase_earns_exactly_once_across_follower_rewinds(app) {
        app.put_earn_rule(eur_rule("base_eur", 1, 0)).await;
        let customers = ["c-a", "c-b", "c-c"];
        for customer in customers {
            app.grant(customer, &["personalization"]).await;
        }
        let db = attune_kit::db::connect(&app.config.database).await.expect("a second connection");
        let now = chrono::Utc::now();
        let mut expected = std::collections::BTreeMap::new();
        for batch in 0..10 {
            let events: Vec<_> = (0..20)
                .map(|i| {
                    let n = batch * 20 + i;
                    let customer = customers[n % customers.len()];
                    *expected.entry(customer).or_insert(0) += 10 + n as i64;
                    purchase(&format!("e-{n}"), customer, now, vec![item("x", 1, Some(eur((10 + n as i64) * 100)), &["c"], "b")], eur((10 + n as i64) * 100))
                })
                .collect();
            app.ingest(events.clone()).await;
            // The same orders again under new event ids: profile stores them,
            // loyalty must not earn twice.
            let again: Vec<_> = events.into_iter().map(|mut e| { e.event_id = format!("{}-again", e.event_id); e }).collect();
            app.ingest(again).await;
            // A crash that loses the cursor: the follower reads everything again.
            if batch % 3 == 0 {
                db.execute_raw(Statement::from_string(
                    db.get_database_backend(),
                    "UPDATE feed_cursors SET position = 0 WHERE name = 'loyalty:profile'",
                ))
                .await
                .expect("the cursor is rewound");
            }
        }
        for customer in customers {
            let want = expected[customer];
            app.wait_for_account(customer, |a| a.available_points >= want).await;
        }
        // Give a late duplicate every chance to show up.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for customer in customers {
            let account = app.assert_ledger_consistent(customer).await;
            assert_eq!(account.available_points, expected[customer], "{customer}");
            let earns = app.statement(customer).await.into_iter().filter(|e| e.kind == pb::EntryKind::Earn as i32).count();
            assert_eq!(earns, (0..200).filter(|n| customers[n % customers.len()] == customer).count());
        }
    }

    async fn zero_party_fields_earn_their_bonus_once(app) {
        app.put_earn_rule(pb::EarnRule {
            rule_id: "thanks".into(),
            version: 0,
            active: true,
            earning: Some(pb::earn_rule::Earning::ZeroParty(pb::ZeroPartyBonuses {
                bonuses: vec![pb::ZeroPartyBonus { field: "preferred_name".into(), points: 25 }],
            })),
            create_time: None,
        })
        .await;
        app.grant("cust-z", &["personalization"]).await;
        app.create_profile(attune_tests::profile_people::create_known("cust-z", vec![])).await;
        for name in ["Ana", "", "Anna"] {
            app.profiles()
                .set_zero_party_data(profile_pb::SetZeroPartyDataRequest {
                    customer_id: "cust-z".into(),
                    data: Some(profile_pb::ZeroPartyData { preferred_name: name.into(), ..Default::default() }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["preferred_name".into()] }),
                    channel: attune_tests::common_pb::Channel::Web.into(),
                    request_id: request_id(),
                })
                .await
                .expect("stored");
        }
        app.wait_for_account("cust-z", |a| a.available_points == 25).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(app.assert_ledger_consistent("cust-z").await.available_points, 25, "volunteering again earns nothing");
    }

    async fn simulate_earns_nothing_and_names_reachable_rewards(app) {
        let mut rule = eur_rule("base_eur", 2, 0);
        if let Some(pb::earn_rule::Earning::Purchase(p)) = rule.earning.as_mut() {
            p.category_multipliers.push(pb::CategoryMultiplier { category_id: "coffee".into(), multiplier_basis_points: 30_000 });
        }
        let stored = app.put_earn_rule(rule.clone()).await;
        assert_eq!(stored.version, 1);
        assert_eq!(app.put_earn_rule(rule).await.version, 2, "a change is a new version");
        app.grant_points("cust-s", 90).await;
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(attune_tests::loyalty::reward("mug", 100, Some(5))), request_id: request_id() })
            .await
            .expect("stored");
        let simulated = app
            .loyalty()
            .simulate(pb::SimulateRequest {
                customer_id: "cust-s".into(),
                lines: vec![
                    pb::CartLine { item_id: "beans".into(), category_path: vec!["food".into(), "coffee".into()], amount: Some(eur(1000)) },
                    pb::CartLine { item_id: "cup".into(), category_path: vec![], amount: Some(eur(550)) },
                ],
            })
            .await
            .expect("simulated")
            .into_inner();
        assert_eq!(simulated.points, 60 + 11);
        assert_eq!((simulated.rule_id.as_str(), simulated.rule_version, simulated.pending), ("base_eur", 2, false));
        assert_eq!(simulated.unlocked_reward_ids, ["mug"]);
        assert_eq!(app.statement("cust-s").await.len(), 1, "nothing was booked");
    }
}

/// Purchases flow into profile while loyalty's pod (and with it its follower)
/// is stopped mid-stream and started again: every purchase earns exactly once.
async fn the_follower_stopped_mid_stream(backend: attune_tests::Backend) {
    use attune_proto::profile::v1::event_service_client::EventServiceClient;
    let Some(mut pods) = attune_tests::loyalty::LoyaltyPods::spawn(backend).await else {
        return;
    };
    pods.loyalty()
        .put_earn_rule(eur_rule("base_eur", 1, 0))
        .await;
    // Fewer than 100 purchases each: an account lists its first 100 expiries.
    let customers = ["k-a", "k-b", "k-c", "k-d", "k-e", "k-f"];
    for customer in customers {
        pods.consent.grant(customer, &["personalization"]).await;
    }
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 10;
    let points = |n: usize| 10 + n as i64;
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..BATCHES * PER_BATCH {
        *expected.entry(customers[n % customers.len()]).or_insert(0) += points(n);
    }
    let mut events = EventServiceClient::new(pods.profile.channel.clone());
    let producer = tokio::spawn(async move {
        let now = chrono::Utc::now();
        for batch in 0..BATCHES {
            let purchases = (0..PER_BATCH)
                .map(|i| {
                    let n = batch * PER_BATCH + i;
                    let amount = eur(points(n) * 100);
                    purchase(
                        &format!("k-{n}"),
                        customers[n % customers.len()],
                        now,
                        vec![item("x", 1, Some(amount.clone()), &["c"], "b")],
                        amount,
                    )
                })
                .collect();
            events
                .ingest_events(attune_tests::profile_pb::IngestEventsRequest {
                    events: purchases,
                    ..Default::default()
                })
                .await
                .expect("profile takes the purchases");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    });
    // Stop loyalty once it has earned something, while purchases still flow.
    pods.loyalty()
        .wait_for_account("k-a", |a| a.available_points > 0)
        .await;
    pods.stop_loyalty().await;
    assert!(!producer.is_finished(), "the stop came mid-stream");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    pods.start_loyalty().await;
    producer.await.expect("the producer finishes");
    for customer in customers {
        let want = expected[customer];
        pods.loyalty()
            .wait_for_account(customer, |a| a.available_points >= want)
            .await;
    }
    // Give a late duplicate every chance to show up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for customer in customers {
        let account = pods.loyalty().assert_ledger_consistent(customer).await;
        assert_eq!(account.available_points, expected[customer], "{customer}");
        let mut per_order = std::collections::BTreeMap::new();
        for entry in pods.loyalty().statement(customer).await {
            if entry.kind == pb::EntryKind::Earn as i32 {
                *per_order.entry(entry.order_id).or_insert(0) += 1;
            }
        }
        assert_eq!(
            per_order.len(),
            (0..BATCHES * PER_BATCH)
                .filter(|n| customers[n % customers.len()] == customer)
                .count()
        );
        assert!(
            per_order.values().all(|&earns| earns == 1),
            "{customer}: {per_order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_purchase_earns_exactly_once_when_the_follower_is_stopped_mid_stream_on_sqlite() {
    the_follower_stopped_mid_stream(attune_tests::Backend::Sqlite).await;
}

attune_tests::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_purchase_earns_exactly_once_when_the_follower_is_stopped_mid_stream_on_postgres() {
        the_follower_stopped_mid_stream(attune_tests::Backend::Postgres).await;
    }
}
