//! The background offer pass over real gRPC with an injected clock: every
//! customer with an account is considered once per period, a bounded batch per
//! step, within the weekly cap and the campaign budgets, and only those who
//! consented get offers.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::time::Duration;

use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{days, loyalty_pb as pb};
use attune_tests::profile_events::{eur, item, purchase};
use attune_tests::{Backend, ManualClock, TestApp, eventually, manual_clock_at_now};
use chrono::{TimeDelta, Timelike, Utc};

const DAY_MICROS: i64 = 86_400_000_000;
const CONSENTING: [&str; 5] = ["cust-1", "cust-2", "cust-3", "cust-4", "cust-5"];
const SILENT: &str = "cust-6";

fn win_back(rule_id: &str, campaign_budget: i64) -> pb::OfferRule {
    pb::OfferRule {
        rule_id: rule_id.into(),
        kind: pb::OfferKind::WinBack.into(),
        active: true,
        title: format!("Offer {rule_id}"),
        discount_basis_points: 1000,
        validity: Some(days(14)),
        channel: pb::MessageChannel::InApp.into(),
        campaign_id: rule_id.into(),
        campaign_budget,
        inactive_days: 30,
        cart_idle_hours: 0,
        recent_days: 0,
        due_within: None,
        store_id: String::new(),
        min_orders: 0,
    }
}

async fn offers(app: &TestApp, customer: &str) -> Vec<pb::Offer> {
    app.offers()
        .list_offers(pb::ListOffersRequest {
            customer_id: customer.into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("listed")
        .into_inner()
        .offers
}

async fn rules_offered(app: &TestApp, customer: &str) -> Vec<String> {
    let mut rules: Vec<_> = offers(app, customer)
        .await
        .into_iter()
        .map(|o| o.rule_id)
        .collect();
    rules.sort();
    rules
}

/// How many accounts the pass has considered in the period `clock` is in.
async fn considered_now(db: &DatabaseConnection, clock: &ManualClock) -> i64 {
    let period = clock
        .clock()
        .now()
        .timestamp_micros()
        .div_euclid(DAY_MICROS);
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_accounts WHERE offer_period = $1"
        }
        _ => "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_accounts WHERE offer_period = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [period.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn wait_for_the_pass(db: &DatabaseConnection, clock: &ManualClock) {
    eventually(
        "the pass considers every account in this period",
        async || considered_now(db, clock).await == 6,
    )
    .await;
}

async fn redeem(app: &TestApp, customer: &str, offer: &pb::Offer) {
    app.offers()
        .update_offer_state(pb::UpdateOfferStateRequest {
            customer_id: customer.into(),
            offer_id: offer.offer_id.clone(),
            state: pb::OfferState::Redeemed.into(),
            request_id: request_id(),
        })
        .await
        .expect("redeemed");
}

async fn the_pass_runs_once_per_period_within_caps_and_budgets(backend: Backend) {
    let clock = manual_clock_at_now();
    let Some(app) = TestApp::spawn_configured_with_clock(backend, &clock, |config| {
        config.loyalty.offer_generation_interval = Duration::from_secs(86_400);
        // Three steps for six customers.
        config.loyalty.offer_generation_batch = 2;
        config.loyalty.maintenance_interval = Duration::from_millis(50);
        config.loyalty.offers_per_week = 2;
    })
    .await
    else {
        return;
    };
    let db = attune_kit::db::connect(&app.config.database).await.unwrap();
    clock.set(Utc::now().with_hour(10).unwrap() - TimeDelta::days(60));
    for rule in [win_back("w_any", 0), win_back("w_few", 2)] {
        app.offers()
            .put_offer_rule(pb::PutOfferRuleRequest {
                rule: Some(rule),
                request_id: request_id(),
            })
            .await
            .expect("stored");
    }
    for customer in CONSENTING.iter().chain([&SILENT]) {
        if *customer != SILENT {
            app.grant(customer, &["personalization"]).await;
        }
        app.grant_points(customer, 10).await;
        let at = clock.clock().now();
        app.ingest(vec![purchase(
            &format!("p-{customer}"),
            customer,
            at,
            vec![item("tea", 1, Some(eur(900)), &["tea"], "b")],
            eur(900),
        )])
        .await;
    }

    // 40 days on, everyone is due a win-back: the pass finds them by itself.
    clock.advance(TimeDelta::days(40));
    wait_for_the_pass(&db, &clock).await;
    assert_eq!(rules_offered(&app, "cust-1").await, ["w_any", "w_few"]);
    assert_eq!(rules_offered(&app, "cust-2").await, ["w_any", "w_few"]);
    for customer in ["cust-3", "cust-4", "cust-5"] {
        assert_eq!(
            rules_offered(&app, customer).await,
            ["w_any"],
            "w_few's budget of 2 is spent: {customer}"
        );
    }
    assert!(
        offers(&app, SILENT).await.is_empty(),
        "no personalization, no offers"
    );

    // Within the period nobody is considered again, even with room for an offer.
    let first = offers(&app, "cust-3").await.remove(0);
    redeem(&app, "cust-3", &first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        offers(&app, "cust-3").await.len(),
        1,
        "considered once per period"
    );

    // The next period: cust-3 has room again; the others hold a live offer of
    // each rule that fits, and w_few's budget stays spent.
    clock.advance(TimeDelta::days(1));
    wait_for_the_pass(&db, &clock).await;
    assert_eq!(rules_offered(&app, "cust-3").await, ["w_any", "w_any"]);
    assert_eq!(rules_offered(&app, "cust-1").await, ["w_any", "w_few"]);
    assert_eq!(rules_offered(&app, "cust-4").await, ["w_any"]);
    assert!(offers(&app, SILENT).await.is_empty());

    // The weekly cap (2) holds against the pass too.
    let newest = offers(&app, "cust-3").await.remove(0);
    assert_eq!(newest.state, pb::OfferState::Issued as i32);
    redeem(&app, "cust-3", &newest).await;
    clock.advance(TimeDelta::days(1));
    wait_for_the_pass(&db, &clock).await;
    assert_eq!(
        offers(&app, "cust-3").await.len(),
        2,
        "two offers this week are the cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pass_runs_once_per_period_within_caps_and_budgets_on_sqlite() {
    the_pass_runs_once_per_period_within_caps_and_budgets(Backend::Sqlite).await;
}

attune_tests::postgres_test! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pass_runs_once_per_period_within_caps_and_budgets_on_postgres() {
        the_pass_runs_once_per_period_within_caps_and_budgets(Backend::Postgres).await;
    }
}
