//! Loyalty after a customer's erasure: the request log keeps no answer that
//! names them, and a retry of one of their old requests is refused without
//! writing anything (it must neither re-run the work nor read the old answer).

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{loyalty_pb as pb, reward};
use tonic::{Code, Status};

const ERASED: &str = "cust-erased";
const KEPT: &str = "cust-kept";

fn adjust(customer: &str, points: i64, request_id: &str) -> pb::AdjustPointsRequest {
    pb::AdjustPointsRequest {
        customer_id: customer.into(),
        points,
        reason_code: pb::ReasonCode::Promotion.into(),
        description: format!("welcome {customer}"),
        request_id: request_id.into(),
    }
}

fn redeem_reward(customer: &str, request_id: &str) -> pb::RedeemRewardRequest {
    pb::RedeemRewardRequest {
        customer_id: customer.into(),
        reward_id: "mug".into(),
        request_id: request_id.into(),
    }
}

fn redeem_points(customer: &str, request_id: &str) -> pb::RedeemPointsRequest {
    pb::RedeemPointsRequest {
        customer_id: customer.into(),
        points: 10,
        order_id: format!("order-of-{customer}"),
        description: String::new(),
        request_id: request_id.into(),
    }
}

/// How many rows of loyalty's tables exist, table by table.
async fn row_counts(db: &DatabaseConnection) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in [
        "loyalty_entries",
        "loyalty_accounts",
        "loyalty_vouchers",
        "loyalty_requests",
    ] {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        counts.push((table, row.try_get::<i64>("", "n").unwrap()));
    }
    counts
}

/// Rows of loyalty's request log whose stored answer names `customer`.
async fn answers_naming(db: &DatabaseConnection, customer: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                attune_kit::sea_orm::DbBackend::Postgres => {
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_requests WHERE outcome LIKE $1"
                }
                _ => "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM loyalty_requests WHERE outcome LIKE ?",
            },
            [format!("%{customer}%").into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

fn assert_refused_as_erased<T: std::fmt::Debug>(answer: Result<T, Status>, what: &str) {
    let status = answer.expect_err(what);
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{what}: {status:?}"
    );
    assert!(status.message().contains("erased"), "{what}: {status:?}");
    assert!(
        !status.message().contains(ERASED),
        "the refusal names nobody"
    );
}

backend_tests! {
    async fn retries_of_an_erased_customers_requests_are_refused_and_write_nothing(app) {
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(reward("mug", 40, None)), request_id: request_id() })
            .await
            .expect("stored");
        let mut loyalty = app.loyalty();
        let granted = loyalty.adjust_points(adjust(ERASED, 100, "adj-erased")).await.expect("granted").into_inner();
        loyalty.redeem_reward(redeem_reward(ERASED, "rr-erased")).await.expect("redeemed");
        loyalty.redeem_points(redeem_points(ERASED, "rp-erased")).await.expect("spent");
        loyalty
            .open_account(pb::OpenAccountRequest { customer_id: ERASED.into(), request_id: "open-erased".into() })
            .await
            .expect("open");
        let kept = loyalty.adjust_points(adjust(KEPT, 100, "adj-kept")).await.expect("granted").into_inner();
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        assert!(answers_naming(&db, ERASED).await > 0, "the answers name the customer before the erasure");

        app.erase_customer(ERASED, &request_id()).await;
        assert_eq!(answers_naming(&db, ERASED).await, 0, "no stored answer names the erased customer");
        let after_erasure = row_counts(&db).await;

        assert_refused_as_erased(loyalty.adjust_points(adjust(ERASED, 100, "adj-erased")).await, "AdjustPoints");
        assert_refused_as_erased(loyalty.redeem_reward(redeem_reward(ERASED, "rr-erased")).await, "RedeemReward");
        assert_refused_as_erased(loyalty.redeem_points(redeem_points(ERASED, "rp-erased")).await, "RedeemPoints");
        assert_refused_as_erased(
            loyalty.open_account(pb::OpenAccountRequest { customer_id: ERASED.into(), request_id: "open-erased".into() }).await,
            "OpenAccount",
        );
        let bulk = loyalty
            .bulk_adjust_points(pb::BulkAdjustPointsRequest { adjustments: vec![adjust(ERASED, 100, "adj-erased")] })
            .await
            .expect("the batch runs")
            .into_inner()
            .results;
        assert_eq!(bulk[0].code, Code::FailedPrecondition as i32, "{bulk:?}");
        assert!(bulk[0].entry.is_none());
        // The same id with other content is still another request.
        let reused = loyalty.adjust_points(adjust(ERASED, 5, "adj-erased")).await.unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);

        assert_eq!(row_counts(&db).await, after_erasure, "the refused retries wrote nothing");
        assert_eq!(
            loyalty.get_account(pb::GetAccountRequest { customer_id: ERASED.into() }).await.unwrap_err().code(),
            Code::NotFound,
            "no account came back"
        );
        assert_eq!(answers_naming(&db, ERASED).await, 0);

        // Another customer's request still replays its answer.
        let replayed = loyalty.adjust_points(adjust(KEPT, 100, "adj-kept")).await.expect("replayed").into_inner();
        assert_eq!(replayed, kept);
        assert_eq!(app.assert_ledger_consistent(KEPT).await.available_points, 100);
        // The erased customer may come back as new: a new request runs.
        let again = loyalty.adjust_points(adjust(ERASED, 100, "adj-erased-2")).await.expect("a new grant").into_inner();
        assert_ne!(again.entry.unwrap().entry_id, granted.entry.unwrap().entry_id);
        assert_eq!(app.assert_ledger_consistent(ERASED).await.available_points, 100);
    }
}
