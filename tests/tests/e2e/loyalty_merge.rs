//! A visitor merged into a customer brings their loyalty along: balance,
//! ledger entries, vouchers and debt, applied from profile's merge entry, over
//! real gRPC on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{eur_rule, loyalty_pb as pb, reward};
use attune_tests::profile_events::{eur, event, item, purchase};
use attune_tests::profile_pb;
use attune_tests::profile_people::{create_anonymous, create_known, merge};
use chrono::Utc;
use tonic::Code;

backend_tests! {
    async fn a_merged_visitors_points_vouchers_and_debt_move_to_the_customer(app) {
        app.put_earn_rule(eur_rule("base_eur", 1, 0)).await;
        app.create_profile(create_anonymous("anon-m", vec![])).await;
        app.create_profile(create_known("cust-m", vec![])).await;
        app.grant("anon-m", &["personalization"]).await;
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(reward("pen", 10, None)), request_id: request_id() })
            .await
            .unwrap();
        // The visitor earns 50, spends 10 on a voucher and 30 more, then returns
        // the shoes, whose line earned the 50: 10 points were left, 40 become debt.
        let now = Utc::now();
        app.ingest(vec![purchase("p-m", "anon-m", now, vec![item("shoes", 1, Some(eur(5000)), &["shoes"], "acme")], eur(5000))]).await;
        app.wait_for_account("anon-m", |a| a.available_points == 50).await;
        let voucher = app
            .loyalty()
            .redeem_reward(pb::RedeemRewardRequest { customer_id: "anon-m".into(), reward_id: "pen".into(), request_id: request_id() })
            .await
            .unwrap()
            .into_inner()
            .voucher
            .unwrap();
        app.loyalty()
            .redeem_points(pb::RedeemPointsRequest { customer_id: "anon-m".into(), points: 30, order_id: String::new(), description: String::new(), request_id: request_id() })
            .await
            .unwrap();
        app.ingest(vec![profile_pb::Event {
            order_id: "order-p-m".into(),
            items: vec![item("shoes", 1, Some(eur(3000)), &["shoes"], "acme")],
            amount: Some(eur(3000)),
            ..event(profile_pb::EventKind::Return, "r-m", "anon-m", now)
        }])
        .await;
        let visitor = app.wait_for_account("anon-m", |a| a.debt_points > 0).await;
        assert_eq!((visitor.available_points, visitor.debt_points), (0, 40));
        let visitor_entries = app.statement("anon-m").await.len();
        // The customer has 100 of their own; then the visitor signs in.
        app.grant_points("cust-m", 100).await;
        let customer_entries = app.statement("cust-m").await.len();
        app.profiles().merge_profiles(merge("anon-m", "cust-m")).await.unwrap();
        // The debt is paid from the customer's points at once: 100 - 40.
        let account = app.wait_for_account("cust-m", |a| a.debt_points == 0 && a.available_points == 60).await;
        assert_eq!(account.pending_points, 0);
        let account = app.assert_ledger_consistent("cust-m").await;
        assert_eq!(account.available_points, 60);
        let statement = app.statement("cust-m").await;
        // Every entry of both, plus the one debt payment of the merge.
        assert_eq!(statement.len(), visitor_entries + customer_entries + 1, "{statement:?}");
        assert_eq!(statement.iter().filter(|e| e.kind == pb::EntryKind::DebtPayment as i32).count(), 1);
        let gone = app.loyalty().get_account(pb::GetAccountRequest { customer_id: "anon-m".into() }).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        // The visitor's voucher is the customer's now.
        let vouchers = app
            .loyalty()
            .list_vouchers(pb::ListVouchersRequest { customer_id: "cust-m".into(), page_size: 0, page_token: String::new() })
            .await
            .unwrap()
            .into_inner()
            .vouchers;
        assert_eq!(vouchers.iter().map(|v| v.voucher_code.as_str()).collect::<Vec<_>>(), [voucher.voucher_code.as_str()]);
    }

    async fn a_visitor_without_the_customer_having_an_account_hands_theirs_over(app) {
        app.create_profile(create_anonymous("anon-n", vec![])).await;
        app.create_profile(create_known("cust-n", vec![])).await;
        app.grant_points("anon-n", 25).await;
        app.profiles().merge_profiles(merge("anon-n", "cust-n")).await.unwrap();
        let account = app.wait_for_account("cust-n", |a| a.available_points == 25).await;
        assert_eq!(account.debt_points, 0);
        app.assert_ledger_consistent("cust-n").await;
        let gone = app.loyalty().get_account(pb::GetAccountRequest { customer_id: "anon-n".into() }).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
}
