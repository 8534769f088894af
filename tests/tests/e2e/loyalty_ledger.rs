//! The points ledger over real gRPC: no overspending under concurrency, one
//! entry per idempotency key, bulk corrections with a result each, the
//! statement, and the invariant (available = sum of the ledger >= 0) after each.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::sync::Arc;

use attune_tests::backend_tests;
use attune_tests::consent_requests::request_id;
use attune_tests::loyalty::loyalty_pb as pb;
use attune_tests::loyalty::redemption as redeem;
use tonic::Code;

backend_tests! {
    async fn redeem_never_overspends_under_concurrency(app) {
        let app = Arc::new(app);
        app.grant_points("cust-1", 500).await;
        let calls = (0..1000).map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.redeem_retrying(redeem("cust-1", 1, &format!("r-{i}"))).await })
        });
        let results = futures_join(calls).await;
        let succeeded = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(status) if status.code() == Code::FailedPrecondition))
            .count();
        let others: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .filter(|status| status.code() != Code::FailedPrecondition)
            .collect();
        assert_eq!((succeeded, refused), (500, 500), "{others:?}");
        let account = app.assert_ledger_consistent("cust-1").await;
        assert_eq!(account.available_points, 0);
        assert_eq!(app.statement("cust-1").await.len(), 501);
    }

    async fn the_same_key_books_once_and_answers_alike(app) {
        let app = Arc::new(app);
        app.grant_points("cust-1", 100).await;
        let concurrent = (0..50).map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.redeem_retrying(redeem("cust-1", 7, "same-key")).await })
        });
        let mut answers: Vec<_> = futures_join(concurrent)
            .await
            .into_iter()
            .map(|r| r.expect("every replay succeeds").into_inner())
            .collect();
        for _ in 0..50 {
            answers.push(app.loyalty().redeem_points(redeem("cust-1", 7, "same-key")).await.expect("a replay succeeds").into_inner());
        }
        assert_eq!(answers.len(), 100);
        assert!(answers.iter().all(|a| *a == answers[0]), "100 identical answers");
        assert_eq!(answers[0].account.as_ref().map(|a| a.available_points), Some(93));
        let redemptions: Vec<_> = app
            .statement("cust-1")
            .await
            .into_iter()
            .filter(|e| e.kind == pb::EntryKind::Redeem as i32)
            .collect();
        assert_eq!(redemptions.len(), 1, "one entry");
        let other = app.loyalty().redeem_points(redeem("cust-1", 8, "same-key")).await.unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
        assert_eq!(app.assert_ledger_consistent("cust-1").await.available_points, 93);
    }

    async fn redeeming_more_than_available_books_nothing(app) {
        let missing = app.loyalty().redeem_points(redeem("nobody", 1, "r-1")).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        app.grant_points("cust-1", 10).await;
        let error = app.loyalty().redeem_points(redeem("cust-1", 11, "r-2")).await.unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
        let taken = app.loyalty().redeem_points(redeem("cust-1", 10, "r-3")).await.expect("exactly the balance").into_inner();
        assert_eq!(taken.account.expect("account").available_points, 0);
        assert_eq!(app.statement("cust-1").await.len(), 2);
    }

    async fn bulk_adjustments_answer_each_entry_and_replay(app) {
        let mut adjustments: Vec<_> = (0..2000)
            .map(|i| pb::AdjustPointsRequest {
                customer_id: format!("bulk-{}", i % 100),
                points: 10,
                reason_code: pb::ReasonCode::Migration.into(),
                description: "moved from the old programme".into(),
                request_id: format!("bulk-{i}"),
            })
            .collect();
        adjustments.push(pb::AdjustPointsRequest {
            customer_id: "bulk-0".into(),
            points: -1000,
            reason_code: pb::ReasonCode::Fraud.into(),
            description: String::new(),
            request_id: "too-much".into(),
        });
        adjustments.push(pb::AdjustPointsRequest {
            customer_id: "nobody".into(),
            points: -1,
            reason_code: pb::ReasonCode::Correction.into(),
            description: String::new(),
            request_id: "no-account".into(),
        });
        // A credit reusing an earlier request's id for other content: refused
        // before it writes anything.
        let earlier = pb::AdjustPointsRequest {
            customer_id: "bulk-50".into(),
            points: 5,
            reason_code: pb::ReasonCode::Migration.into(),
            description: String::new(),
            request_id: "earlier".into(),
        };
        app.loyalty().adjust_points(earlier.clone()).await.expect("booked");
        adjustments.push(pb::AdjustPointsRequest { points: 6, ..earlier });
        let request = pb::BulkAdjustPointsRequest { adjustments };
        let results = app.loyalty().bulk_adjust_points(request.clone()).await.expect("the batch runs").into_inner().results;
        assert_eq!(results.len(), 2003);
        assert!(results[..2000].iter().all(|r| r.code == 0 && r.entry.is_some()));
        assert_eq!(results[2000].code, Code::FailedPrecondition as i32);
        assert_eq!(results[2001].code, Code::NotFound as i32);
        assert_eq!(results[2002].code, Code::AlreadyExists as i32);
        assert_eq!(app.assert_ledger_consistent("bulk-7").await.available_points, 200);
        let again = app.loyalty().bulk_adjust_points(request).await.expect("the replay runs").into_inner().results;
        assert_eq!(again[..2000], results[..2000], "each entry replays its original result");
        assert_eq!(app.assert_ledger_consistent("bulk-7").await.available_points, 200);
        assert_eq!(app.statement("bulk-0").await.len(), 20);
        assert_eq!(app.assert_ledger_consistent("bulk-50").await.available_points, 205);
    }

    async fn the_statement_pages_newest_first(app) {
        for _ in 0..7 {
            app.grant_points("cust-1", 1).await;
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = app
                .loyalty()
                .list_statement(pb::ListStatementRequest { customer_id: "cust-1".into(), page_size: 3, page_token: token })
                .await
                .expect("a page")
                .into_inner();
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries.iter().map(|e| e.entry_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen.len(), 7);
        assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
        let missing = app
            .loyalty()
            .get_account(pb::GetAccountRequest { customer_id: "nobody".into() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }

    async fn every_upcoming_expiry_is_listed_past_the_first_hundred(app, clock) {
        // 250 lots, each booked a second after the last: 250 expiry times.
        for _ in 0..250 {
            app.grant_points("cust-1", 2).await;
            clock.advance(chrono::TimeDelta::seconds(1));
        }
        // Spending 3 empties the oldest lot and takes 1 from the next.
        app.loyalty().redeem_points(redeem("cust-1", 3, "r-1")).await.expect("covered");
        let account = app.assert_ledger_consistent("cust-1").await;
        assert_eq!(account.available_points, 497);
        assert_eq!(account.upcoming_expiries.len(), 100, "the account shows the first hundred");
        assert!(!account.upcoming_expiries_next_page_token.is_empty());
        let all = app.upcoming_expiries(&account).await;
        assert_eq!(all.len(), 249);
        assert_eq!(all[0].points, 1);
        assert!(all[1..].iter().all(|e| e.points == 2));
        let times: Vec<_> = all.iter().map(|e| e.expire_time.unwrap().seconds).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "soonest first, each once");
        // Paging from the start with a small page gives the same list.
        let mut paged = Vec::new();
        let mut token = String::new();
        loop {
            let page = app
                .loyalty()
                .list_upcoming_expiries(pb::ListUpcomingExpiriesRequest { customer_id: "cust-1".into(), page_size: 7, page_token: token })
                .await
                .expect("a page")
                .into_inner();
            assert!(page.expiries.len() <= 7);
            paged.extend(page.expiries);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(paged, all);
        let missing = app
            .loyalty()
            .list_upcoming_expiries(pb::ListUpcomingExpiriesRequest { customer_id: "nobody".into(), page_size: 0, page_token: String::new() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        // A small account lists all of its expiries itself.
        app.grant_points("cust-2", 5).await;
        let small = app.loyalty_account("cust-2").await;
        assert_eq!(small.upcoming_expiries.len(), 1);
        assert!(small.upcoming_expiries_next_page_token.is_empty());
    }

    async fn an_account_opens_once(app) {
        let open = |id: String| {
            let mut client = app.loyalty();
            async move {
                client
                    .open_account(pb::OpenAccountRequest { customer_id: "cust-9".into(), request_id: id })
                    .await
                    .expect("opened")
                    .into_inner()
                    .account
                    .expect("an account")
            }
        };
        let first = open(request_id()).await;
        let second = open(request_id()).await;
        assert_eq!(first, second, "opening an open account answers it unchanged");
        assert_eq!(first.available_points, 0);
    }
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("the task finishes"));
    }
    out
}
