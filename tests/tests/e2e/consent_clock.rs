//! Consent reads "now" from the clock the platform mounts it with
//! (`attune_kit::clock`), and so does the cached checker that answers its checks:
//! the real monolith runs on a `ManualClock` (`TestApp::spawn_with_clock`), and
//! rules about time are tested through the gateway's public port by moving the
//! clock rather than by sleeping.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_kit::sea_orm::ConnectionTrait;
use attune_tests::consent_requests::{decision, record, timestamp};
use attune_tests::{TestApp, backend_tests, consent_pb as pb};
use chrono::{DateTime, Duration, Utc};

const PURPOSE: &str = "analytics";

/// CheckConsent's answer for `customer` on [`PURPOSE`], and when it was computed.
async fn check(app: &TestApp, customer: &str) -> (pb::ConsentStatus, prost_types::Timestamp) {
    let answer = app
        .consent()
        .check_consent(pb::CheckConsentRequest {
            customer_id: customer.into(),
            purpose_codes: vec![PURPOSE.into()],
        })
        .await
        .unwrap()
        .into_inner();
    (answer.checks[0].status(), answer.check_time.unwrap())
}

async fn status(app: &TestApp, customer: &str) -> pb::ConsentStatus {
    check(app, customer).await.0
}

/// How many grants ListExpiringConsents lists as expiring within a day.
async fn expiring(app: &TestApp) -> usize {
    let listed = app
        .consent()
        .list_expiring_consents(pb::ListExpiringConsentsRequest {
            within_days: 1,
            purpose_code: String::new(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    listed.consents.len()
}

/// Grants [`PURPOSE`] to `customer` on receipt, expiring at `expire_time`.
async fn grant_until(app: &TestApp, customer: &str, expire_time: DateTime<Utc>) {
    let mut grant = record(customer, vec![decision(PURPOSE, pb::Decision::Granted)]);
    grant.expire_time = Some(timestamp(expire_time));
    app.record_consent(grant).await;
}

/// Sets every current decision's expiry in the database behind the server's back
/// (`None`: never expires). No change is written to the feed, so a customer the
/// server's cache holds keeps the expiry it had: what the database says and what
/// the cache says differ, and an answer shows which of them gave it.
async fn overwrite_stored_expiries(app: &TestApp, expire_time: Option<DateTime<Utc>>) {
    let db = attune_kit::db::connect(&app.config.database).await.unwrap();
    let value = expire_time.map_or_else(|| "NULL".to_owned(), |t| t.timestamp_micros().to_string());
    db.execute_unprepared(&format!("UPDATE consent_states SET expire_time = {value}"))
        .await
        .unwrap();
    db.close().await.unwrap();
}

backend_tests! {
    async fn a_grant_expires_when_the_clock_reaches_its_expiry(app, clock) {
        let start = clock.clock().now();
        let expire_time = start + Duration::hours(2);
        let mut grant = record("cust-clock", vec![decision(PURPOSE, pb::Decision::Granted)]);
        grant.expire_time = Some(timestamp(expire_time));
        let recorded = app.record_consent(grant).await;
        // Decided on receipt: receipt is the clock's time, not the system's.
        assert_eq!(recorded[0].decide_time, Some(timestamp(start)));
        assert_eq!(check(&app, "cust-clock").await, (pb::ConsentStatus::Granted, timestamp(start)));
        assert_eq!(expiring(&app).await, 1);

        clock.advance(Duration::hours(2) - Duration::microseconds(1));
        assert_eq!(status(&app, "cust-clock").await, pb::ConsentStatus::Granted);
        // At its expiry instant exactly, the grant no longer counts.
        clock.advance(Duration::microseconds(1));
        assert_eq!(check(&app, "cust-clock").await, (pb::ConsentStatus::Expired, timestamp(expire_time)));
        assert_eq!(expiring(&app).await, 0);

        // The skew rule reads the same clock: a minute ahead of it is the limit.
        let mut ahead = record("cust-clock", vec![decision(PURPOSE, pb::Decision::Granted)]);
        ahead.decide_time = Some(timestamp(clock.clock().now() + Duration::minutes(2)));
        let status = app.consent().record_consent(ahead).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    async fn a_check_answered_from_the_cache_expires_exactly_when_the_clock_passes_expiry(app, clock) {
        let start = clock.clock().now();
        let expire_time = start + Duration::hours(2);
        // Consent's cache answers once its change stream has confirmed it and it
        // has loaded the customer. Until a check proves it holds one, grant a new
        // customer, check (loading it when the cache is live), make the database
        // say the grant expired an hour ago, and check again: only the cache still
        // says granted.
        let mut cached = None;
        for attempt in 0..250 {
            let customer = format!("cust-cached-{attempt}");
            grant_until(&app, &customer, expire_time).await;
            assert_eq!(status(&app, &customer).await, pb::ConsentStatus::Granted);
            overwrite_stored_expiries(&app, Some(start - Duration::hours(1))).await;
            if status(&app, &customer).await == pb::ConsentStatus::Granted {
                cached = Some(customer);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let customer = cached.expect("consent's cache answered a check within 5 seconds");

        // Now the database says the grant never expires; the cache still holds
        // its expiry, judged by the server's clock.
        overwrite_stored_expiries(&app, None).await;
        clock.set(expire_time - Duration::microseconds(1));
        assert_eq!(status(&app, &customer).await, pb::ConsentStatus::Granted);
        clock.set(expire_time);
        // Only the cache can answer "expired": the database says "never expires".
        assert_eq!(
            check(&app, &customer).await,
            (pb::ConsentStatus::Expired, timestamp(expire_time))
        );
        // Moving the clock back brings the grant back: the cache keeps no verdict,
        // it judges each check at the clock's time.
        clock.set(expire_time - Duration::seconds(1));
        assert_eq!(status(&app, &customer).await, pb::ConsentStatus::Granted);
    }
}
