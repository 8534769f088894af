//! The cached consent checker against the real server, as two other services
//! would use it: each with its own connection, cache and change stream.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::{Duration, Instant};

use attune_kit::consent::{ConsentChecker, ConsentStatus, Reason};
use attune_tests::consent_requests::{decision, record as record_request, request_id};
use attune_tests::{TestApp, backend_tests, consent_pb as pb};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

const PURPOSE: &str = "personalization";

/// The promise: a withdrawal is enforced by every checker within this long.
const WITHDRAWAL_DEADLINE: Duration = Duration::from_secs(1);

/// A checker following the test server's change stream over its own connection.
struct Follower {
    checker: ConsentChecker,
    _stop: tokio_util::sync::DropGuard,
}

impl Follower {
    fn start(app: &TestApp) -> Self {
        let channel = Endpoint::from_shared(format!("http://{}", app.config.listen))
            .unwrap()
            .connect_lazy();
        let checker = ConsentChecker::new(channel, &app.config.consent_checker);
        let stop = CancellationToken::new();
        tokio::spawn(checker.clone().follow(stop.clone()));
        Self {
            checker,
            _stop: stop.drop_guard(),
        }
    }
}

async fn record(app: &TestApp, customer: &str, outcome: pb::Decision) {
    app.record_consent(record_request(customer, vec![decision(PURPOSE, outcome)]))
        .await;
}

/// Waits (5s at most) until every follower answers "granted": each needs its
/// stream's first response before it answers at all.
async fn wait_until_granted(followers: &[&Follower], customer: &str) {
    for _ in 0..250 {
        let mut all = true;
        for follower in followers {
            all &= follower.checker.is_granted(customer, PURPOSE).await;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the checkers did not report the grant within 5 seconds");
}

backend_tests! {
    async fn every_cached_consent_checker_enforces_a_withdrawal_within_one_second(app) {
        let (a, b) = (Follower::start(&app), Follower::start(&app));
        record(&app, "cust-1", pb::Decision::Granted).await;
        wait_until_granted(&[&a, &b], "cust-1").await;

        record(&app, "cust-1", pb::Decision::Withdrawn).await;
        let recorded = Instant::now();
        loop {
            let granted_a = a.checker.is_granted("cust-1", PURPOSE).await;
            let granted_b = b.checker.is_granted("cust-1", PURPOSE).await;
            if !granted_a && !granted_b {
                break;
            }
            assert!(
                recorded.elapsed() <= WITHDRAWAL_DEADLINE,
                "still granted {:?} after the withdrawal (a: {granted_a}, b: {granted_b})",
                recorded.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        for follower in [&a, &b] {
            let verdict = &follower.checker.check("cust-1", &[PURPOSE]).await[0];
            assert_eq!(verdict.reason, Reason::Status(ConsentStatus::Withdrawn));
            // Learnt from the stream, not by loading the customer again.
            assert_eq!(follower.checker.metrics().misses, 1);
        }
    }

    async fn cached_consent_checkers_forget_an_erased_customer(app) {
        let (a, b) = (Follower::start(&app), Follower::start(&app));
        record(&app, "cust-3", pb::Decision::Granted).await;
        record(&app, "cust-4", pb::Decision::Granted).await;
        wait_until_granted(&[&a, &b], "cust-3").await;
        wait_until_granted(&[&a, &b], "cust-4").await;

        let answer = app.erase_customer("cust-3", &request_id()).await;
        assert!(answer.complete, "{answer:?}");
        let erased = Instant::now();
        loop {
            let granted_a = a.checker.is_granted("cust-3", PURPOSE).await;
            let granted_b = b.checker.is_granted("cust-3", PURPOSE).await;
            if !granted_a && !granted_b {
                break;
            }
            assert!(
                erased.elapsed() <= WITHDRAWAL_DEADLINE,
                "still granted {:?} after the erasure (a: {granted_a}, b: {granted_b})",
                erased.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        for follower in [&a, &b] {
            let verdict = &follower.checker.check("cust-3", &[PURPOSE]).await[0];
            assert_eq!(verdict.reason, Reason::Status(ConsentStatus::NotGiven));
            // The erasure named nobody: every customer is loaded again, and the
            // others' consent is intact.
            assert!(follower.checker.is_granted("cust-4", PURPOSE).await);
            assert_eq!(follower.checker.metrics().erasures, 1);
        }
    }

    async fn cached_consent_checkers_fail_closed_once_consent_is_gone(app) {
        let mut app = app;
        let (a, b) = (Follower::start(&app), Follower::start(&app));
        record(&app, "cust-2", pb::Decision::Granted).await;
        wait_until_granted(&[&a, &b], "cust-2").await;

        app.begin_shutdown();
        app.join().await.unwrap();
        tokio::time::sleep(app.config.consent_checker.freshness_bound + Duration::from_millis(200))
            .await;

        for follower in [&a, &b] {
            let verdict = &follower.checker.check("cust-2", &[PURPOSE]).await[0];
            assert!(!verdict.granted);
            assert_eq!(verdict.reason, Reason::FreshnessUnconfirmed);
        }
    }
}

backend_tests! {
    async fn consent_reads_its_own_writes_while_others_check_the_same_customer(app) {
        // The server answers CheckConsent from its own cached checker: each answer
        // must still reflect every write that returned before the check began,
        // while concurrent checks keep loading the customer into that cache.
        let customer = "own-writes-1";
        record(&app, customer, pb::Decision::Granted).await;
        let stop = CancellationToken::new();
        let hammer = {
            let (app_channel, stop) = (app.channel.clone(), stop.clone());
            tokio::spawn(async move {
                let mut consent =
                    attune_proto::consent::v1::consent_service_client::ConsentServiceClient::new(
                        app_channel,
                    );
                while !stop.is_cancelled() {
                    consent
                        .check_consent(pb::CheckConsentRequest {
                            customer_id: customer.into(),
                            purpose_codes: vec![PURPOSE.into()],
                        })
                        .await
                        .unwrap();
                }
            })
        };
        // Let the server's checker start following its stream.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for round in 0..40 {
            let outcome = if round % 2 == 0 {
                pb::Decision::Withdrawn
            } else {
                pb::Decision::Granted
            };
            record(&app, customer, outcome).await;
            let check = app.check_consent(customer, &[PURPOSE]).await.remove(0);
            assert_eq!(
                check.granted,
                outcome == pb::Decision::Granted,
                "round {round}: the check after a {outcome:?} says {check:?}"
            );
        }
        stop.cancel();
        hammer.await.unwrap();
    }
}
