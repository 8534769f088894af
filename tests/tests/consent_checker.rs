//! The cached consent checker against the real server, as two other services
//! would use it: each with its own connection, cache and change stream.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::{Duration, Instant};

use attune_kit::consent::{ConsentChecker, Reason};
use attune_tests::{TestApp, backend_tests, common_pb, consent_pb as pb};
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

async fn record(app: &TestApp, customer: &str, decision: pb::Decision) {
    app.consent()
        .record_consent(pb::RecordConsentRequest {
            customer_id: customer.into(),
            decisions: vec![pb::PurposeDecision {
                purpose_code: PURPOSE.into(),
                decision: decision.into(),
                notice_version: 1,
            }],
            channel: common_pb::Channel::Web.into(),
            proof: None,
            decide_time: None,
            expire_time: None,
            request_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap();
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
            assert_eq!(
                verdict.reason,
                Reason::Status(attune_kit::consent::ConsentStatus::Withdrawn)
            );
            // Learnt from the stream, not by loading the customer again.
            assert_eq!(follower.checker.metrics().misses, 1);
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
