//! Consent over time: a grant stops counting at its expiry instant, grants about to
//! expire can be listed page by page for re-consent campaigns, and conflicting
//! decisions resolve to the most recent one, a withdrawal winning a tie.

#![allow(clippy::unwrap_used, clippy::type_complexity)] // panics fail tests; case tables hold closures

use std::collections::HashSet;

use attune_tests::consent_requests::{self as requests, timestamp};
use attune_tests::{
    TestApp, backend_tests, common_pb, consent_pb as pb, every_page, violated_fields,
};
use chrono::{DateTime, Duration, Utc};
use tonic::Code;

/// Records one decision per purpose for `customer`, at `decide_time` (or on
/// receipt), on `channel`, expiring at `expire_time` (grants only); returns the
/// ledger records.
async fn record(
    app: &TestApp,
    customer: &str,
    purposes: &[&str],
    decision: pb::Decision,
    channel: common_pb::Channel,
    decide_time: Option<DateTime<Utc>>,
    expire_time: Option<DateTime<Utc>>,
) -> Vec<pb::ConsentRecord> {
    let decisions = purposes
        .iter()
        .map(|code| requests::decision(code, decision))
        .collect();
    let mut request = requests::record(customer, decisions);
    request.channel = channel.into();
    request.decide_time = decide_time.map(timestamp);
    request.expire_time = expire_time.map(timestamp);
    app.record_consent(request).await
}

/// A web grant of `purposes` decided now, expiring at `expire_time`.
async fn grant(
    app: &TestApp,
    customer: &str,
    purposes: &[&str],
    expire_time: Option<DateTime<Utc>>,
) -> Vec<pb::ConsentRecord> {
    let web = common_pb::Channel::Web;
    record(
        app,
        customer,
        purposes,
        pb::Decision::Granted,
        web,
        None,
        expire_time,
    )
    .await
}

fn list_request(
    within_days: i32,
    purpose: &str,
    page_size: i32,
) -> pb::ListExpiringConsentsRequest {
    pb::ListExpiringConsentsRequest {
        within_days,
        purpose_code: purpose.into(),
        page_size,
        page_token: String::new(),
    }
}

/// Every page of a listing, checking each page's size and that nothing repeats.
async fn list_all(
    app: &TestApp,
    request: pb::ListExpiringConsentsRequest,
) -> Vec<pb::ExpiringConsent> {
    let mut client = app.consent();
    let listed = every_page(async |page_token| {
        let page = client
            .list_expiring_consents(pb::ListExpiringConsentsRequest {
                page_token,
                ..request.clone()
            })
            .await
            .unwrap()
            .into_inner();
        if request.page_size > 0 {
            assert!(
                page.consents.len() <= request.page_size as usize,
                "page larger than asked"
            );
        }
        (page.consents, page.next_page_token)
    })
    .await;
    let keys: HashSet<_> = listed.iter().map(key).collect();
    assert_eq!(
        keys.len(),
        listed.len(),
        "no grant is listed twice: {:?}",
        keys_of(&listed)
    );
    listed
}

fn key(consent: &pb::ExpiringConsent) -> (String, String) {
    (consent.customer_id.clone(), consent.purpose_code.clone())
}

fn keys_of(listed: &[pb::ExpiringConsent]) -> Vec<(String, String)> {
    listed.iter().map(key).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(c, p)| ((*c).to_owned(), (*p).to_owned()))
        .collect()
}

async fn check(app: &TestApp, customer: &str, purpose: &str) -> (bool, pb::ConsentStatus) {
    let check = &app.check_consent(customer, &[purpose]).await[0];
    (check.granted, check.status())
}

async fn state(app: &TestApp, customer: &str, purpose: &str) -> pb::PurposeState {
    app.consent()
        .get_consent_state(pb::GetConsentStateRequest {
            customer_id: customer.into(),
            purpose_codes: vec![purpose.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .states
        .remove(0)
}

/// The mix of states the listing must sort through; returns the time the expiries
/// are counted from and the record of cust-02's analytics grant.
async fn seed(app: &TestApp) -> (DateTime<Utc>, pb::ConsentRecord) {
    use pb::Decision::{Denied, Granted, Withdrawn};
    let now = Utc::now();
    let (in_1, in_5, in_40) = (
        now + Duration::days(1),
        now + Duration::days(5),
        now + Duration::days(40),
    );
    // Three grants expiring at the same instant: ordered by customer, then purpose.
    let cust_02 = grant(
        app,
        "cust-02",
        &["marketing_email", "analytics"],
        Some(in_1),
    )
    .await;
    grant(app, "cust-03", &["personalization"], Some(in_1)).await;
    grant(app, "cust-01", &["analytics"], Some(in_5)).await;
    grant(app, "cust-01", &["personalization"], Some(in_40)).await;
    grant(app, "cust-04", &["analytics"], Some(in_40)).await;
    let (two_days_ago, yesterday) = (now - Duration::days(2), now - Duration::days(1));
    // (customer, decision on analytics, decide time, expire time), in this order.
    let analytics_decisions = [
        // Not in force: already expired, denied, withdrawn after the grant.
        ("cust-05", Granted, Some(two_days_ago), Some(yesterday)),
        ("cust-06", Denied, None, None),
        ("cust-07", Granted, Some(two_days_ago), Some(in_5)),
        ("cust-07", Withdrawn, Some(yesterday), None),
        // In force but not expiring: no expiry, or renewed by a later grant.
        ("cust-08", Granted, None, None),
        ("cust-09", Granted, Some(two_days_ago), Some(in_5)),
        ("cust-09", Granted, None, Some(now + Duration::days(200))),
    ];
    let web = common_pb::Channel::Web;
    for (customer, decision, decide_time, expire_time) in analytics_decisions {
        record(
            app,
            customer,
            &["analytics"],
            decision,
            web,
            decide_time,
            expire_time,
        )
        .await;
    }
    let analytics = cust_02
        .into_iter()
        .find(|r| r.purpose_code == "analytics")
        .unwrap();
    (now, analytics)
}

/// The grants `seed` makes that expire within 7 days, in listing order.
const WITHIN_A_WEEK: [(&str, &str); 4] = [
    ("cust-02", "analytics"),
    ("cust-02", "marketing_email"),
    ("cust-03", "personalization"),
    ("cust-01", "analytics"),
];

/// The grants `seed` makes that expire within 60 days, in listing order.
const WITHIN_60_DAYS: [(&str, &str); 6] = [
    ("cust-02", "analytics"),
    ("cust-02", "marketing_email"),
    ("cust-03", "personalization"),
    ("cust-01", "analytics"),
    ("cust-01", "personalization"),
    ("cust-04", "analytics"),
];

backend_tests! {
    async fn grants_expiring_within_the_window_are_listed_in_expiry_order(app) {
        let (now, cust_02_analytics) = seed(&app).await;

        let week = list_all(&app, list_request(7, "", 0)).await;
        assert_eq!(keys_of(&week), pairs(&WITHIN_A_WEEK));
        let first = &week[0];
        let grant = first.grant.as_ref().unwrap();
        assert_eq!(grant.record_id, cust_02_analytics.record_id);
        assert_eq!(grant.decision(), pb::Decision::Granted);
        assert_eq!(grant.notice_version, 1);
        assert_eq!(grant.decide_time, cust_02_analytics.decide_time);
        assert_eq!(grant.expire_time, Some(timestamp(now + Duration::days(1))));

        let two_months = list_all(&app, list_request(60, "", 0)).await;
        assert_eq!(keys_of(&two_months), pairs(&WITHIN_60_DAYS));
        let whole_year = list_all(&app, list_request(366, "", 0)).await;
        assert_eq!(whole_year.len(), 7, "the renewed grant expiring in 200 days is listed once");
        assert_eq!(key(&whole_year[6]), ("cust-09".to_owned(), "analytics".to_owned()));
        let none = list_all(&app, list_request(1, "marketing_sms", 0)).await;
        assert!(none.is_empty());
    }

    async fn pages_of_expiring_grants_neither_skip_nor_repeat(app) {
        seed(&app).await;
        for page_size in [1, 2, 4, 5, 1000] {
            let paged = list_all(&app, list_request(60, "", page_size)).await;
            assert_eq!(keys_of(&paged), pairs(&WITHIN_60_DAYS), "page_size {page_size}");
        }
        let one_purpose = list_all(&app, list_request(60, "analytics", 1)).await;
        assert_eq!(
            keys_of(&one_purpose),
            pairs(&[("cust-02", "analytics"), ("cust-01", "analytics"), ("cust-04", "analytics")])
        );
        let weekly = list_all(&app, list_request(7, "personalization", 0)).await;
        assert_eq!(keys_of(&weekly), pairs(&[("cust-03", "personalization")]));
    }

    async fn later_pages_keep_the_first_pages_window(app) {
        seed(&app).await;
        let mut client = app.consent();
        let first = client.list_expiring_consents(list_request(7, "", 3)).await.unwrap().into_inner();
        assert_eq!(keys_of(&first.consents), pairs(&WITHIN_A_WEEK[..3]));
        assert!(!first.next_page_token.is_empty());
        // Asking for a wider window with the token changes nothing: the first
        // page fixed it. A grant recorded meanwhile sorting before the cursor is
        // not listed; one after it is.
        grant(&app, "cust-00", &["analytics"], Some(Utc::now() + Duration::hours(1))).await;
        grant(&app, "cust-10", &["analytics"], Some(Utc::now() + Duration::days(6))).await;
        let mut rest = list_request(366, "", 3);
        rest.page_token = first.next_page_token;
        let second = client.list_expiring_consents(rest).await.unwrap().into_inner();
        assert_eq!(keys_of(&second.consents), pairs(&[("cust-01", "analytics"), ("cust-10", "analytics")]));
        assert!(second.next_page_token.is_empty());
    }

    async fn a_grant_past_its_expiry_is_expired_and_not_listed(app) {
        let now = Utc::now();
        let web = common_pb::Channel::Web;
        let expired = record(
            &app, "cust-11", &["marketing_sms"], pb::Decision::Granted, web,
            Some(now - Duration::days(30)), Some(now - Duration::seconds(1)),
        )
        .await;
        assert_eq!(check(&app, "cust-11", "marketing_sms").await, (false, pb::ConsentStatus::Expired));
        let state = state(&app, "cust-11", "marketing_sms").await;
        assert_eq!(state.status(), pb::ConsentStatus::Expired);
        assert_eq!(state.latest.unwrap().record_id, expired[0].record_id);
        assert!(list_all(&app, list_request(366, "", 0)).await.is_empty());
    }

    async fn a_grant_stops_counting_at_its_expiry_instant(app, clock) {
        // The server runs on `clock`: time moves when the test says, not by sleeping.
        let expire_time = clock.clock().now() + Duration::hours(2);
        grant(&app, "cust-12", &["analytics"], Some(expire_time)).await;
        assert_eq!(check(&app, "cust-12", "analytics").await, (true, pb::ConsentStatus::Granted));
        assert_eq!(keys_of(&list_all(&app, list_request(1, "", 0)).await), pairs(&[("cust-12", "analytics")]));

        clock.set(expire_time - Duration::microseconds(1));
        assert_eq!(check(&app, "cust-12", "analytics").await, (true, pb::ConsentStatus::Granted));
        assert_eq!(state(&app, "cust-12", "analytics").await.status(), pb::ConsentStatus::Granted);
        assert_eq!(keys_of(&list_all(&app, list_request(1, "", 0)).await), pairs(&[("cust-12", "analytics")]));

        clock.set(expire_time);
        assert_eq!(check(&app, "cust-12", "analytics").await, (false, pb::ConsentStatus::Expired));
        assert_eq!(state(&app, "cust-12", "analytics").await.status(), pb::ConsentStatus::Expired);
        assert!(list_all(&app, list_request(1, "", 0)).await.is_empty());
    }

    async fn a_withdrawal_at_the_same_instant_as_a_grant_wins_in_either_order(app) {
        let tie = Utc::now() - Duration::hours(3);
        let expiry = Some(Utc::now() + Duration::days(3));
        let (web, store) = (common_pb::Channel::Web, common_pb::Channel::Store);
        // Grant first, withdrawal second.
        record(&app, "cust-21", &["personalization"], pb::Decision::Granted, web, Some(tie), expiry).await;
        let withdrawal_21 =
            record(&app, "cust-21", &["personalization"], pb::Decision::Withdrawn, store, Some(tie), None).await;
        // Withdrawal first, grant second.
        let withdrawal_22 =
            record(&app, "cust-22", &["personalization"], pb::Decision::Withdrawn, store, Some(tie), None).await;
        record(&app, "cust-22", &["personalization"], pb::Decision::Granted, web, Some(tie), expiry).await;
        for (customer, withdrawal) in [("cust-21", &withdrawal_21), ("cust-22", &withdrawal_22)] {
            assert_eq!(check(&app, customer, "personalization").await, (false, pb::ConsentStatus::Withdrawn), "{customer}");
            let state = state(&app, customer, "personalization").await;
            assert_eq!(state.status(), pb::ConsentStatus::Withdrawn, "{customer}");
            assert_eq!(state.latest.unwrap().record_id, withdrawal[0].record_id, "{customer}");
        }
        assert!(list_all(&app, list_request(7, "", 0)).await.is_empty(), "a withdrawn grant is not listed");
    }

    async fn the_most_recent_decision_wins_even_when_an_older_one_arrives_late(app) {
        let now = Utc::now();
        let (web, store) = (common_pb::Channel::Web, common_pb::Channel::Store);
        let tie = now - Duration::hours(3);
        record(&app, "cust-31", &["personalization"], pb::Decision::Granted, web, Some(tie), None).await;
        record(&app, "cust-31", &["personalization"], pb::Decision::Withdrawn, store, Some(tie), None).await;
        assert_eq!(check(&app, "cust-31", "personalization").await, (false, pb::ConsentStatus::Withdrawn));

        // A later-dated grant wins over the tie's withdrawal.
        let renewed = record(
            &app, "cust-31", &["personalization"], pb::Decision::Granted, web,
            Some(now - Duration::hours(1)), Some(now + Duration::days(2)),
        )
        .await;
        assert_eq!(check(&app, "cust-31", "personalization").await, (true, pb::ConsentStatus::Granted));

        // The store was offline: its withdrawal, made two hours ago, syncs now. It
        // is older than the grant, so the ledger keeps it but the grant still counts.
        let late = record(
            &app, "cust-31", &["personalization"], pb::Decision::Withdrawn, store,
            Some(now - Duration::hours(2)), None,
        )
        .await;
        assert!(late[0].record_id > renewed[0].record_id);
        assert_eq!(check(&app, "cust-31", "personalization").await, (true, pb::ConsentStatus::Granted));
        let state = state(&app, "cust-31", "personalization").await;
        assert_eq!(state.latest.unwrap().record_id, renewed[0].record_id);
        assert_eq!(app.consent_history("cust-31", "personalization").await.len(), 4);
        let listed = list_all(&app, list_request(7, "", 0)).await;
        assert_eq!(keys_of(&listed), pairs(&[("cust-31", "personalization")]));
        assert_eq!(listed[0].grant.as_ref().unwrap().record_id, renewed[0].record_id);
    }

    async fn list_expiring_consents_rejects_each_bad_field(app) {
        let mut client = app.consent();
        let foreign_token = attune_kit::pagination::encode_page_token("42");
        let cases: Vec<(&str, &str, Box<dyn Fn(&mut pb::ListExpiringConsentsRequest)>)> = vec![
            ("no window", "within_days", Box::new(|r| r.within_days = 0)),
            ("negative window", "within_days", Box::new(|r| r.within_days = -1)),
            ("window over a year", "within_days", Box::new(|r| r.within_days = 367)),
            ("malformed purpose", "purpose_code", Box::new(|r| r.purpose_code = "Not A Code".into())),
            ("negative page size", "page_size", Box::new(|r| r.page_size = -1)),
            ("page size over 1000", "page_size", Box::new(|r| r.page_size = 1001)),
            ("garbage page token", "page_token", Box::new(|r| r.page_token = "garbage!".into())),
            ("another list's page token", "page_token", Box::new(move |r| r.page_token = foreign_token.clone())),
        ];
        for (case, field, mutate) in cases {
            let mut request = list_request(7, "", 0);
            mutate(&mut request);
            let status = client.list_expiring_consents(request).await.expect_err(case);
            assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
            assert_eq!(violated_fields(&status), [field], "{case}: {status:?}");
        }

        let status = client
            .list_expiring_consents(pb::ListExpiringConsentsRequest {
                within_days: 0,
                purpose_code: "X".into(),
                page_size: -5,
                page_token: "%%%".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            violated_fields(&status),
            ["within_days", "purpose_code", "page_size", "page_token"],
            "every problem is reported at once"
        );

        for within_days in [1, 366] {
            let listed = client.list_expiring_consents(list_request(within_days, "no_such_purpose", 1000)).await;
            assert!(listed.unwrap().into_inner().consents.is_empty(), "{within_days}");
        }
    }
}
