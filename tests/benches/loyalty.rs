//! Loyalty's throughput through a real `attune serve` in another process (run by
//! scripts/bench-loyalty): redemptions per second (concurrent one-point
//! redemptions against funded accounts, each idempotent by its own key) and earn
//! events per second (purchases ingested through profile until the follower has
//! booked every one), then the ledger invariant for every account: available =
//! sum of the statement, never negative, and the expected totals.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a benchmark reports on stdout

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::loyalty::v1 as pb;
use attune_proto::loyalty::v1::loyalty_service_client::LoyaltyServiceClient;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_tests::consent_pb;
use attune_tests::consent_requests::{decision, record};
use attune_tests::loyalty::eur_rule;
use attune_tests::profile_events::{eur, item, purchase};
use tonic::transport::Channel;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let address =
        std::env::var("LOYALTY_BENCH_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50181".into());
    let customers = env("LOYALTY_BENCH_CUSTOMERS", 200);
    let redemptions = env("LOYALTY_BENCH_REDEMPTIONS", 20_000);
    let purchases = env("LOYALTY_BENCH_PURCHASES", 20_000);
    let concurrency = env("LOYALTY_BENCH_CONCURRENCY", 64);
    let channel = Channel::from_shared(address)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut loyalty = LoyaltyServiceClient::new(channel.clone());
    let mut consent = ConsentServiceClient::new(channel.clone());
    let mut events = EventServiceClient::new(channel.clone());
    let customer = |i: u64| format!("bench-{i}");

    loyalty
        .put_earn_rule(pb::PutEarnRuleRequest {
            rule: Some(eur_rule("bench_eur", 1, 0)),
            request_id: "bench-rule".into(),
        })
        .await
        .unwrap();
    // Every customer gets exactly the points the redemptions will take, in bulk.
    let per_customer = redemptions / customers;
    let grants: Vec<_> = (0..customers)
        .map(|i| pb::AdjustPointsRequest {
            customer_id: customer(i),
            points: i64::try_from(per_customer).unwrap(),
            reason_code: pb::ReasonCode::Promotion.into(),
            description: String::new(),
            request_id: format!("bench-grant-{i}"),
        })
        .collect();
    loyalty
        .bulk_adjust_points(pb::BulkAdjustPointsRequest {
            adjustments: grants,
        })
        .await
        .unwrap();
    for i in 0..customers {
        consent
            .record_consent(record(
                &customer(i),
                vec![decision("personalization", consent_pb::Decision::Granted)],
            ))
            .await
            .unwrap();
    }

    // Redemptions: `concurrency` workers, one point each, round robin over customers.
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, refused, mut client) =
                (Arc::clone(&next), Arc::clone(&refused), loyalty.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= per_customer * customers {
                        return;
                    }
                    let request = pb::RedeemPointsRequest {
                        customer_id: format!("bench-{}", n % customers),
                        points: 1,
                        order_id: String::new(),
                        description: String::new(),
                        request_id: format!("bench-redeem-{n}"),
                    };
                    loop {
                        match client.redeem_points(request.clone()).await {
                            Ok(_) => break,
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let done = per_customer * customers;
    println!(
        "redemptions: {done} in {:.2}s = {:.0}/s (concurrency {concurrency}, refused {})",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        refused.load(Ordering::Relaxed)
    );

    // Earning: purchases of 1 EUR each, in batches of 500, until every point is booked.
    let now = chrono::Utc::now();
    let started = Instant::now();
    let batch: Vec<_> = (0..purchases).collect();
    for chunk in batch.chunks(500) {
        let evs = chunk
            .iter()
            .map(|n| {
                purchase(
                    &format!("bench-p-{n}"),
                    &customer(n % customers),
                    now,
                    vec![item("x", 1, Some(eur(100)), &["c"], "b")],
                    eur(100),
                )
            })
            .collect();
        events
            .ingest_events(attune_proto::profile::v1::IngestEventsRequest {
                events: evs,
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let ingested = started.elapsed();
    let expected_total = i64::try_from(purchases).unwrap();
    loop {
        let mut total = 0;
        for i in 0..customers {
            let account = loyalty
                .get_account(pb::GetAccountRequest {
                    customer_id: customer(i),
                })
                .await
                .unwrap()
                .into_inner()
                .account
                .unwrap();
            total += account.available_points;
        }
        if total >= expected_total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "earning never caught up: {total} of {expected_total}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "earning: {purchases} purchase events booked in {:.2}s = {:.0}/s (ingest alone {:.2}s)",
        elapsed.as_secs_f64(),
        purchases as f64 / elapsed.as_secs_f64(),
        ingested.as_secs_f64()
    );

    // The invariant, account by account.
    let mut violations = 0;
    let mut total = 0;
    for i in 0..customers {
        let account = loyalty
            .get_account(pb::GetAccountRequest {
                customer_id: customer(i),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        let mut sum = 0;
        let mut token = String::new();
        loop {
            let page = loyalty
                .list_statement(pb::ListStatementRequest {
                    customer_id: customer(i),
                    page_size: 500,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            sum += page.entries.iter().map(|e| e.points).sum::<i64>();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        total += account.available_points;
        if sum != account.available_points || account.available_points < 0 {
            violations += 1;
        }
    }
    println!(
        "invariant: {customers} accounts, {violations} violations, total {total} (expected {expected_total})"
    );
    assert_eq!(violations, 0, "the ledger invariant holds after the run");
    assert_eq!(
        total, expected_total,
        "every redemption took exactly one point and every purchase earned once"
    );
}
