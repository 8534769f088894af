//! Vouchers used at checkout: exactly once per voucher under concurrency,
//! idempotent by request and by order, given back when the order is cancelled,
//! over real gRPC on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::{loyalty_pb as pb, reward};
use tonic::Code;

fn use_request(customer: &str, code: &str, order: &str, id: &str) -> pb::UseVoucherRequest {
    pb::UseVoucherRequest {
        customer_id: customer.into(),
        voucher_code: code.into(),
        order_id: order.into(),
        request_id: id.into(),
    }
}

backend_tests! {
    async fn a_voucher_is_used_once_and_released_when_its_order_is_cancelled(app) {
        app.loyalty()
            .put_reward(pb::PutRewardRequest { reward: Some(reward("tote", 30, None)), request_id: request_id() })
            .await
            .unwrap();
        app.grant_points("cust-v", 100).await;
        let voucher = app
            .loyalty()
            .redeem_reward(pb::RedeemRewardRequest { customer_id: "cust-v".into(), reward_id: "tote".into(), request_id: request_id() })
            .await
            .unwrap()
            .into_inner()
            .voucher
            .unwrap();
        let code = voucher.voucher_code.clone();
        // 20 checkouts race to use it, each for its own order: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let mut client = app.loyalty();
            let code = code.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let answer = client
                        .use_voucher(use_request("cust-v", &code, &format!("order-{i}"), &format!("use-{i}")))
                        .await;
                    match answer {
                        Err(status) if status.code() == Code::Unavailable => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        answer => return answer.map(tonic::Response::into_inner),
                    }
                }
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(used) => winners.push(used.voucher.unwrap()),
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
            }
        }
        assert_eq!(winners.len(), 1);
        let used = winners.remove(0);
        assert_eq!(used.state, pb::VoucherState::Used as i32);
        assert!(used.use_time.is_some());
        let order = used.order_id.clone();
        // The checkout retries: with its request id, or a new one for the same order.
        let index: usize = order.trim_start_matches("order-").parse().unwrap();
        let replay = app.loyalty().use_voucher(use_request("cust-v", &code, &order, &format!("use-{index}"))).await.unwrap().into_inner();
        assert_eq!(replay.voucher.unwrap(), used);
        let again = app.loyalty().use_voucher(use_request("cust-v", &code, &order, "use-again")).await.unwrap().into_inner();
        assert_eq!(again.voucher.unwrap().order_id, order);
        // A used voucher cannot be cancelled (refunded) before it is released.
        let cancel = app
            .loyalty()
            .cancel_redemption(pb::CancelRedemptionRequest { customer_id: "cust-v".into(), voucher_code: code.clone(), request_id: request_id() })
            .await
            .unwrap_err();
        assert_eq!(cancel.code(), Code::FailedPrecondition);
        // Another customer does not see it; another order cannot release it.
        let foreign = app.loyalty().use_voucher(use_request("cust-w", &code, "order-x", "use-w")).await.unwrap_err();
        assert_eq!(foreign.code(), Code::NotFound);
        let release = |order: &str, id: &str| pb::ReleaseVoucherRequest {
            customer_id: "cust-v".into(),
            voucher_code: code.clone(),
            order_id: order.into(),
            request_id: id.into(),
        };
        let wrong = app.loyalty().release_voucher(release("order-other", "rel-0")).await.unwrap_err();
        assert_eq!(wrong.code(), Code::FailedPrecondition);
        // The order is cancelled: the voucher is usable again, for a new order.
        let released = app.loyalty().release_voucher(release(&order, "rel-1")).await.unwrap().into_inner().voucher.unwrap();
        assert_eq!(released.state, pb::VoucherState::Issued as i32);
        assert!(released.order_id.is_empty() && released.use_time.is_none());
        let reused = app.loyalty().use_voucher(use_request("cust-v", &code, "order-new", "use-new")).await.unwrap().into_inner();
        assert_eq!(reused.voucher.unwrap().order_id, "order-new");
        // The points were spent once: 100 - 30, and the ledger agrees.
        let account = app.assert_ledger_consistent("cust-v").await;
        assert_eq!(account.available_points, 70);
    }
}
