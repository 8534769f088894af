//! A withdrawal always takes effect: a decision counts from when it was made, but
//! never from later than when the server received it. A grant stamped ahead of
//! the server's clock (allowed, within a minute, for clock skew) keeps its stated
//! time in the ledger but cannot outrank a withdrawal received after it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_tests::consent_requests::{self as requests, timestamp};
use attune_tests::{TestApp, backend_tests, consent_pb as pb};
use chrono::{DateTime, Duration, Utc};

const PURPOSE: &str = "personalization";

async fn decide(
    app: &TestApp,
    customer: &str,
    decision: pb::Decision,
    decide_time: Option<DateTime<Utc>>,
    expire_time: Option<DateTime<Utc>>,
) -> pb::ConsentRecord {
    let mut request = requests::record(customer, vec![requests::decision(PURPOSE, decision)]);
    request.decide_time = decide_time.map(timestamp);
    request.expire_time = expire_time.map(timestamp);
    app.record_consent(request).await.pop().unwrap()
}

async fn status(app: &TestApp, customer: &str) -> pb::ConsentStatus {
    let answer = app.check_consent(customer, &[PURPOSE]).await;
    answer[0].status()
}

async fn current_record_id(app: &TestApp, customer: &str) -> i64 {
    let state = app
        .consent()
        .get_consent_state(pb::GetConsentStateRequest {
            customer_id: customer.into(),
            purpose_codes: vec![PURPOSE.into()],
        })
        .await
        .unwrap()
        .into_inner();
    state.states[0].latest.as_ref().unwrap().record_id
}

backend_tests! {
    async fn a_withdrawal_after_a_grant_stamped_in_the_future_takes_effect(app) {
        let stated = Utc::now() + Duration::seconds(50);
        let grant = decide(
            &app, "cust-skew", pb::Decision::Granted, Some(stated),
            Some(stated + Duration::days(30)),
        )
        .await;
        assert_eq!(status(&app, "cust-skew").await, pb::ConsentStatus::Granted);
        // The ledger keeps the time as the client stated it, and when it arrived.
        let (decide_time, record_time) = (grant.decide_time.unwrap(), grant.record_time.unwrap());
        assert_eq!(decide_time, timestamp(stated));
        assert!(record_time.seconds < decide_time.seconds);

        // Withdrawn on receipt, seconds later but before the grant's stated time.
        let withdrawal = decide(&app, "cust-skew", pb::Decision::Withdrawn, None, None).await;
        assert_eq!(status(&app, "cust-skew").await, pb::ConsentStatus::Withdrawn);
        assert_eq!(current_record_id(&app, "cust-skew").await, withdrawal.record_id);
        let expiring = app
            .consent()
            .list_expiring_consents(pb::ListExpiringConsentsRequest {
                within_days: 60,
                purpose_code: PURPOSE.into(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(expiring.consents.is_empty(), "the withdrawn grant is not in force");
    }

    async fn a_withdrawal_stamped_before_a_future_grants_stated_time_still_wins(app) {
        let now = Utc::now();
        decide(&app, "cust-skew-2", pb::Decision::Granted, Some(now + Duration::seconds(55)), None)
            .await;
        // The withdrawal's own stated time is earlier than the grant's, but later
        // than the grant's receipt: the grant took effect on receipt.
        let withdrawal = decide(
            &app, "cust-skew-2", pb::Decision::Withdrawn, Some(now + Duration::seconds(1)), None,
        )
        .await;
        assert_eq!(status(&app, "cust-skew-2").await, pb::ConsentStatus::Withdrawn);
        assert_eq!(current_record_id(&app, "cust-skew-2").await, withdrawal.record_id);

        // A grant made after the withdrawal counts again: the rule is "the later
        // effective time wins", not "withdrawals win".
        let regrant = decide(&app, "cust-skew-2", pb::Decision::Granted, None, None).await;
        assert_eq!(status(&app, "cust-skew-2").await, pb::ConsentStatus::Granted);
        assert_eq!(current_record_id(&app, "cust-skew-2").await, regrant.record_id);
    }
}
