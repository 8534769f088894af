//! Tiers, expiry, rewards and the data-subject API of loyalty, over real gRPC
//! with an injected clock.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{loyalty_pb as pb, reward};
use attune_tests::privacy_pb;
use chrono::TimeDelta;
use tonic::Code;

fn ladder() -> pb::PutTiersRequest {
    let tier = |id: &str, threshold: i64, benefits: pb::TierBenefits| pb::Tier {
        tier_id: id.into(),
        display_name: id.to_uppercase(),
        threshold,
        benefits: Some(benefits),
    };
    pb::PutTiersRequest {
        tiers: vec![
            tier("base", 0, pb::TierBenefits::default()),
            tier(
                "silver",
                100,
                pb::TierBenefits {
                    earn_multiplier_basis_points: 12_500,
                    free_shipping: None,
                    early_access: false,
                },
            ),
            tier(
                "gold",
                500,
                pb::TierBenefits {
                    earn_multiplier_basis_points: 15_000,
                    free_shipping: Some(pb::FreeShipping {
                        delivery_methods: vec![],
                    }),
                    early_access: true,
                },
            ),
        ],
        basis: pb::TierBasis::Points.into(),
        spend_currency_code: String::new(),
        request_id: request_id(),
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
    async fn tiers_go_up_at_once_and_down_only_when_the_period_ends(app, clock) {
        use attune_tests::profile_events::{eur, item, purchase};
        app.loyalty().put_tiers(ladder()).await.expect("the ladder is stored");
        app.put_earn_rule(attune_tests::loyalty::eur_rule("base_eur", 1, 0)).await;
        app.grant("cust-t", &["personalization"]).await;
        let start = clock.clock().now();
        app.ingest(vec![purchase("p-1", "cust-t", start, vec![item("tv", 1, Some(eur(60_000)), &["tv"], "b")], eur(60_000))]).await;
        let gold = app.wait_for_account("cust-t", |a| a.tier_id == "gold").await;
        let benefits = gold.tier_benefits.clone().expect("typed benefits");
        assert_eq!(benefits.earn_multiplier_basis_points, 15_000);
        assert!(benefits.free_shipping.is_some() && benefits.early_access);
        // Ten months on the 600 points still count: gold.
        clock.advance(TimeDelta::days(300));
        run_scheduled(&app).await;
        assert_eq!(app.loyalty_account("cust-t").await.tier_id, "gold");
        // After 12 months the purchase leaves the window, but the period has not
        // ended yet (it started when the customer reached gold).
        clock.advance(TimeDelta::days(64));
        app.ingest(vec![purchase("p-2", "cust-t", clock.clock().now(), vec![item("cable", 1, Some(eur(10_000)), &["tv"], "b")], eur(10_000))]).await;
        // The first purchase still qualifies on its own here, so wait for the
        // second one's 150 points to be booked (at gold's 1.5x), not for a value.
        let account = app
            .wait_for_account("cust-t", |a| a.available_points + a.pending_points >= 750)
            .await;
        assert_eq!(account.tier_id, "gold", "gold until the period ends");
        // At the period's end: the 150 points of the second purchase (at 1.5x) make silver.
        clock.advance(TimeDelta::days(2));
        // The background maintenance may review the account first; either way
        // the review has happened once this call returns.
        run_scheduled(&app).await;
        let account = app.loyalty_account("cust-t").await;
        assert_eq!(account.tier_id, "silver", "{account:?}");
        assert_eq!(account.qualifying_value, 150);
        assert!(account.tier_benefits.expect("benefits").free_shipping.is_none());
    }

    async fn points_expire_oldest_first_and_every_expiry_is_listed(app, clock) {
        app.grant_points("cust-e", 100).await;
        clock.advance(TimeDelta::days(100));
        app.grant_points("cust-e", 50).await;
        let account = app.assert_ledger_consistent("cust-e").await;
        assert_eq!(account.upcoming_expiries.len(), 2, "every upcoming expiry, not just the next");
        // Spending takes the oldest points first: 100 from the first grant, 20 from the second.
        app.loyalty()
            .redeem_points(pb::RedeemPointsRequest { customer_id: "cust-e".into(), points: 120, order_id: String::new(), description: String::new(), request_id: request_id() })
            .await
            .expect("redeemed");
        let account = app.assert_ledger_consistent("cust-e").await;
        assert_eq!(account.upcoming_expiries.iter().map(|e| e.points).collect::<Vec<_>>(), [30]);
        clock.advance(TimeDelta::days(270));
        assert_eq!(run_scheduled(&app).await.expired_points, 0, "the first grant was spent");
        clock.advance(TimeDelta::days(100));
        assert_eq!(run_scheduled(&app).await.expired_points, 30);
        let account = app.assert_ledger_consistent("cust-e").await;
        assert_eq!(account.available_points, 0);
        assert!(account.upcoming_expiries.is_empty());
        assert_eq!(run_scheduled(&app).await.expired_points, 0, "points expire once");
    }

    async fn rewards_redeem_within_stock_and_cancel_gives_back(app) {
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(reward("mug", 40, Some(1))), request_id: request_id() })
            .await
            .expect("stored");
        app.grant_points("cust-r", 100).await;
        app.grant_points("cust-q", 100).await;
        let redeem = |customer: &str, id: &str| pb::RedeemRewardRequest { customer_id: customer.into(), reward_id: "mug".into(), request_id: id.into() };
        let first = app.loyalty().redeem_reward(redeem("cust-r", "rr-1")).await.expect("redeemed").into_inner();
        let voucher = first.voucher.clone().expect("a voucher");
        assert_eq!(voucher.voucher_code.len(), 16);
        assert_eq!(voucher.state, pb::VoucherState::Issued as i32);
        assert_eq!(first.account.expect("account").available_points, 60);
        assert_eq!(app.loyalty().redeem_reward(redeem("cust-r", "rr-1")).await.expect("replayed").into_inner().voucher, Some(voucher.clone()));
        let sold_out = app.loyalty().redeem_reward(redeem("cust-q", "rr-2")).await.unwrap_err();
        assert_eq!(sold_out.code(), Code::ResourceExhausted, "{sold_out:?}");
        assert_eq!(app.assert_ledger_consistent("cust-q").await.available_points, 100, "nothing was spent");
        let vouchers = app.loyalty().list_vouchers(pb::ListVouchersRequest { customer_id: "cust-r".into(), page_size: 0, page_token: String::new() }).await.expect("listed").into_inner();
        assert_eq!(vouchers.vouchers, std::slice::from_ref(&voucher));
        let other = app
            .loyalty()
            .cancel_redemption(pb::CancelRedemptionRequest { customer_id: "cust-q".into(), voucher_code: voucher.voucher_code.clone(), request_id: request_id() })
            .await
            .unwrap_err();
        assert_eq!(other.code(), Code::NotFound, "another customer's voucher");
        let cancelled = app
            .loyalty()
            .cancel_redemption(pb::CancelRedemptionRequest { customer_id: "cust-r".into(), voucher_code: voucher.voucher_code.clone(), request_id: request_id() })
            .await
            .expect("cancelled")
            .into_inner();
        assert_eq!(cancelled.voucher.expect("voucher").state, pb::VoucherState::Cancelled as i32);
        assert_eq!(app.assert_ledger_consistent("cust-r").await.available_points, 100);
        app.loyalty().redeem_reward(redeem("cust-q", "rr-3")).await.expect("the unit is back in stock");
        app.assert_ledger_consistent("cust-q").await;
    }

    async fn export_and_erasure_cover_account_ledger_and_vouchers(app) {
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(reward("mug", 40, None)), request_id: request_id() })
            .await
            .expect("stored");
        app.grant_points("cust-x", 100).await;
        app.loyalty()
            .redeem_reward(pb::RedeemRewardRequest { customer_id: "cust-x".into(), reward_id: "mug".into(), request_id: request_id() })
            .await
            .expect("redeemed");
        let pod = app.pod("loyalty").await;
        let mut subject = pod.internal_data_subject();
        let export_id = request_id();
        let mut kinds = Vec::new();
        let mut token = String::new();
        loop {
            let page = subject
                .export_customer_data(privacy_pb::ExportCustomerDataRequest { customer_id: "cust-x".into(), request_id: export_id.clone(), page_token: token, page_size: 2 })
                .await
                .expect("exported")
                .into_inner();
            assert_eq!(page.service, "attune.loyalty.v1");
            kinds.extend(page.records.into_iter().map(|r| r.kind));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(kinds, ["account", "voucher", "ledger_entry", "ledger_entry"]);
        let erase = privacy_pb::EraseCustomerRequest { customer_id: "cust-x".into(), request_id: request_id() };
        let receipt = subject.erase_customer(erase.clone()).await.expect("erased").into_inner();
        assert_eq!(
            receipt.erased_record_count,
            6,
            "2 entries and 1 voucher pseudonymised, 1 account deleted, the answers of 2 requests forgotten"
        );
        assert!(!receipt.retained.is_empty());
        assert_eq!(subject.erase_customer(erase).await.expect("replayed").into_inner(), receipt);
        let missing = app.loyalty().get_account(pb::GetAccountRequest { customer_id: "cust-x".into() }).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let after = subject
            .export_customer_data(privacy_pb::ExportCustomerDataRequest { customer_id: "cust-x".into(), request_id: request_id(), page_token: String::new(), page_size: 0 })
            .await
            .expect("exported")
            .into_inner();
        assert!(after.records.is_empty(), "{after:?}");
        // Amounts stay for the retailer's accounts: the entries are still there, under a pseudonym.
        let db = attune_kit::db::connect(&app.config.database).await.expect("connect");
        use attune_kit::sea_orm::{ConnectionTrait, Statement};
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT CAST(SUM(points) AS BIGINT) AS n, CAST(COUNT(*) AS BIGINT) AS c FROM loyalty_entries WHERE customer_id LIKE 'hmac-sha256:%'"))
            .await
            .expect("readable")
            .expect("a row");
        assert_eq!(row.try_get::<i64>("", "n").expect("n"), 60);
        assert_eq!(row.try_get::<i64>("", "c").expect("c"), 2);
    }
}
