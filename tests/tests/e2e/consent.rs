//! Consent over real gRPC: catalogue, ledger, state, history and the check.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_tests::consent_requests::{
    TEST_FORM_HASH, decision, new_purpose, record, request_id, timestamp,
};
use attune_tests::{backend_tests, common_pb, consent_pb as pb, every_page};
use chrono::{Duration, Utc};
use tonic::Code;

backend_tests! {
    async fn default_catalogue_is_seeded_on_first_start(app) {
        let listed = app
            .consent()
            .list_purposes(pb::ListPurposesRequest { page_size: 0, page_token: String::new() })
            .await
            .unwrap()
            .into_inner();
        let codes: Vec<_> = listed.purposes.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(
            codes,
            ["analytics", "marketing_email", "marketing_sms", "personalization", "profiling", "sale_or_share", "store_visits"]
        );
        assert!(listed.purposes.iter().all(|p| p.notice_version == 1 && !p.data_categories.is_empty()));
        assert!(listed.next_page_token.is_empty());
    }

    async fn purposes_are_created_versioned_and_listed_in_pages(app) {
        let mut client = app.consent();
        let created = client.create_purpose(new_purpose("birthday")).await.unwrap().into_inner();
        let created = created.purpose.unwrap();
        assert_eq!((created.code.as_str(), created.notice_version), ("birthday", 1));

        let updated = client
            .update_purpose(pb::UpdatePurposeRequest {
                code: "birthday".into(),
                display_name: "Birthday gifts".into(),
                description: "We use your birthday and favourite categories to pick a gift.".into(),
                legal_basis: pb::LegalBasis::Consent.into(),
                data_categories: vec![
                    common_pb::DataCategory::Demographics.into(),
                    common_pb::DataCategory::Preferences.into(),
                ],
                request_id: request_id(),
            })
            .await
            .unwrap()
            .into_inner()
            .purpose
            .unwrap();
        assert_eq!(updated.notice_version, 2);

        let current = client
            .get_purpose(pb::GetPurposeRequest { code: "birthday".into(), notice_version: 0 })
            .await
            .unwrap()
            .into_inner()
            .purpose
            .unwrap();
        assert_eq!((current.notice_version, current.display_name.as_str()), (2, "Birthday gifts"));
        let first = client
            .get_purpose(pb::GetPurposeRequest { code: "birthday".into(), notice_version: 1 })
            .await
            .unwrap()
            .into_inner()
            .purpose
            .unwrap();
        assert_eq!(first.display_name, "Birthday surprises");

        let seen = every_page(async |page_token| {
            let page = client
                .list_purposes(pb::ListPurposesRequest { page_size: 3, page_token })
                .await
                .unwrap()
                .into_inner();
            assert!(page.purposes.len() <= 3);
            (page.purposes.into_iter().map(|p| p.code).collect(), page.next_page_token)
        })
        .await;
        assert_eq!(seen.len(), 8);
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "ordered by code: {seen:?}");
    }

    async fn an_unchanged_notice_keeps_its_version(app) {
        let mut client = app.consent();
        let create = new_purpose("birthday");
        client.create_purpose(create.clone()).await.unwrap();
        let same = client
            .update_purpose(pb::UpdatePurposeRequest {
                code: create.code,
                display_name: create.display_name,
                description: create.description,
                legal_basis: create.legal_basis,
                data_categories: create.data_categories,
                request_id: request_id(),
            })
            .await
            .unwrap()
            .into_inner()
            .purpose
            .unwrap();
        assert_eq!(same.notice_version, 1);
    }

    async fn creating_is_idempotent_and_an_existing_code_is_refused(app) {
        let mut client = app.consent();
        let create = new_purpose("birthday");
        let first = client.create_purpose(create.clone()).await.unwrap().into_inner();
        let replay = client.create_purpose(create.clone()).await.unwrap().into_inner();
        assert_eq!(first, replay);

        let mut again = create.clone();
        again.request_id = request_id();
        let err = client.create_purpose(again).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

        let mut reused = create;
        reused.display_name = "Something else".into();
        let err = client.create_purpose(reused).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        assert!(err.message().contains("request_id"), "{}", err.message());
    }

    async fn a_grant_is_recorded_checked_and_kept_in_history(app) {
        let mut client = app.consent();
        let recorded = client
            .record_consent(record(
                "cust-1",
                vec![
                    decision("personalization", pb::Decision::Granted),
                    decision("marketing_email", pb::Decision::Denied),
                ],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(recorded.records.len(), 2);
        let first = &recorded.records[0];
        assert_eq!(first.customer_id, "cust-1");
        assert_eq!(first.decision, pb::Decision::Granted as i32);
        assert_eq!(first.channel, common_pb::Channel::Web as i32);
        assert_eq!(first.proof.as_ref().unwrap().form_hash, TEST_FORM_HASH);
        assert!(recorded.records[1].record_id > first.record_id);

        let checks = app.check_consent("cust-1", &["personalization", "marketing_email", "analytics"]).await;
        let answers: Vec<_> = checks.iter().map(|c| (c.purpose_code.as_str(), c.granted, c.status)).collect();
        assert_eq!(
            answers,
            [
                ("personalization", true, pb::ConsentStatus::Granted as i32),
                ("marketing_email", false, pb::ConsentStatus::Denied as i32),
                ("analytics", false, pb::ConsentStatus::NotGiven as i32),
            ]
        );
        assert_eq!(checks[0].notice_version, 1);

        client
            .record_consent(record("cust-1", vec![decision("personalization", pb::Decision::Withdrawn)]))
            .await
            .unwrap();
        let checks = app.check_consent("cust-1", &["personalization"]).await;
        assert_eq!((checks[0].granted, checks[0].status), (false, pb::ConsentStatus::Withdrawn as i32));

        let state = client
            .get_consent_state(pb::GetConsentStateRequest { customer_id: "cust-1".into(), purpose_codes: vec![] })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(state.states.len(), 7, "every consent-based purpose is reported");
        let personalization = state.states.iter().find(|s| s.purpose_code == "personalization").unwrap();
        assert_eq!(personalization.status, pb::ConsentStatus::Withdrawn as i32);
        assert_eq!(personalization.latest.as_ref().unwrap().decision, pb::Decision::Withdrawn as i32);
        let analytics = state.states.iter().find(|s| s.purpose_code == "analytics").unwrap();
        assert_eq!((analytics.status, analytics.latest.is_none()), (pb::ConsentStatus::NotGiven as i32, true));

        let history = app.consent_history_paged("cust-1", "", 2).await;
        let decisions: Vec<_> = history.iter().map(|r| (r.purpose_code.as_str(), r.decision)).collect();
        assert_eq!(
            decisions,
            [
                ("personalization", pb::Decision::Granted as i32),
                ("marketing_email", pb::Decision::Denied as i32),
                ("personalization", pb::Decision::Withdrawn as i32),
            ]
        );
        let only_email = app.consent_history("cust-1", "marketing_email").await;
        assert_eq!(only_email.len(), 1);
    }

    async fn a_replayed_record_returns_the_original_and_writes_nothing(app) {
        let mut client = app.consent();
        let request = record("cust-2", vec![decision("analytics", pb::Decision::Granted)]);
        let first = client.record_consent(request.clone()).await.unwrap().into_inner();
        let replay = client.record_consent(request.clone()).await.unwrap().into_inner();
        assert_eq!(first, replay);

        let mut changed = request;
        changed.decisions[0].decision = pb::Decision::Denied.into();
        let err = client.record_consent(changed).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists);

        let history = app.consent_history("cust-2", "").await;
        assert_eq!(history.len(), 1);
        assert!(app.check_consent("cust-2", &["analytics"]).await[0].granted);
    }

    async fn a_retry_after_its_grant_expired_returns_the_original(app, clock) {
        let mut client = app.consent();
        let mut request = record("cust-late", vec![decision("analytics", pb::Decision::Granted)]);
        request.expire_time = Some(timestamp(clock.clock().now() + Duration::hours(1)));
        let first = client.record_consent(request.clone()).await.unwrap().into_inner();
        clock.advance(Duration::hours(1) + Duration::microseconds(1));

        // The client never saw the answer and retries after the expiry: it gets
        // the original, not a complaint about an expiry now in the past.
        let retry = client.record_consent(request.clone()).await.unwrap().into_inner();
        assert_eq!(first, retry);
        // A new request with that expiry is refused and records nothing, even
        // when it carries a GPC signal.
        request.request_id = request_id();
        let mut late = tonic::Request::new(request);
        late.metadata_mut().insert("sec-gpc", "1".parse().unwrap());
        let refused = client.record_consent(late).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains("expire_time"), "{refused:?}");
        assert_eq!(app.consent_history("cust-late", "").await.len(), 1);
    }

    async fn concurrent_replays_record_once(app) {
        let request = record("cust-3", vec![decision("profiling", pb::Decision::Granted)]);
        let calls = (0..8).map(|_| {
            let mut client = app.consent();
            let request = request.clone();
            tokio::spawn(async move { client.record_consent(request).await.map(|r| r.into_inner()) })
        });
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap().expect("every replay succeeds"));
        }
        assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
        let history = app.consent_history("cust-3", "").await;
        assert_eq!(history.len(), 1);
    }

    async fn unknown_customers_and_purposes_are_not_granted(app) {
        let checks = app.check_consent("nobody-knows-me", &["personalization", "no_such_purpose"]).await;
        for answer in checks {
            assert!(!answer.granted);
            assert_eq!(answer.status, pb::ConsentStatus::NotGiven as i32);
            assert_eq!(answer.notice_version, 0);
        }
    }

    async fn an_expired_grant_is_not_granted(app) {
        let mut request = record("cust-4", vec![decision("marketing_sms", pb::Decision::Granted)]);
        request.decide_time = Some(timestamp(Utc::now() - Duration::days(30)));
        request.expire_time = Some(timestamp(Utc::now() - Duration::days(1)));
        app.consent().record_consent(request).await.unwrap();
        let answer = &app.check_consent("cust-4", &["marketing_sms"]).await[0];
        assert_eq!((answer.granted, answer.status), (false, pb::ConsentStatus::Expired as i32));

        let mut live = record("cust-4", vec![decision("analytics", pb::Decision::Granted)]);
        live.expire_time = Some(timestamp(Utc::now() + Duration::days(365)));
        app.consent().record_consent(live).await.unwrap();
        assert!(app.check_consent("cust-4", &["analytics"]).await[0].granted);
    }

    async fn the_latest_decision_wins_and_withdrawal_wins_a_tie(app) {
        let mut client = app.consent();
        let now = Utc::now();
        // The web grant happened after the store withdrawal, but the store syncs late.
        let mut web = record("cust-5", vec![decision("personalization", pb::Decision::Granted)]);
        web.decide_time = Some(timestamp(now - Duration::hours(1)));
        client.record_consent(web).await.unwrap();
        let mut store = record("cust-5", vec![decision("personalization", pb::Decision::Withdrawn)]);
        store.channel = common_pb::Channel::Store.into();
        store.decide_time = Some(timestamp(now - Duration::hours(2)));
        client.record_consent(store).await.unwrap();
        assert!(app.check_consent("cust-5", &["personalization"]).await[0].granted);

        // At the same instant, a withdrawal beats a grant whatever the recording order.
        let tie = timestamp(now - Duration::minutes(30));
        let mut withdraw = record("cust-5", vec![decision("personalization", pb::Decision::Withdrawn)]);
        withdraw.decide_time = Some(tie);
        client.record_consent(withdraw).await.unwrap();
        let mut grant = record("cust-5", vec![decision("personalization", pb::Decision::Granted)]);
        grant.decide_time = Some(tie);
        client.record_consent(grant).await.unwrap();
        let answer = &app.check_consent("cust-5", &["personalization"]).await[0];
        assert_eq!((answer.granted, answer.status), (false, pb::ConsentStatus::Withdrawn as i32));
    }

    async fn decisions_need_a_consent_based_purpose_and_a_published_notice(app) {
        let mut client = app.consent();
        let mut contract = new_purpose("order_delivery");
        contract.legal_basis = pb::LegalBasis::Contract.into();
        client.create_purpose(contract).await.unwrap();

        let err = client
            .record_consent(record("cust-6", vec![decision("order_delivery", pb::Decision::Granted)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

        let mut unpublished = decision("analytics", pb::Decision::Granted);
        unpublished.notice_version = 9;
        let err = client.record_consent(record("cust-6", vec![unpublished])).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");

        let err = client
            .record_consent(record(
                "cust-6",
                vec![decision("analytics", pb::Decision::Granted), decision("no_such_purpose", pb::Decision::Granted)],
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        // All or nothing: the valid first decision was not kept either.
        assert!(!app.check_consent("cust-6", &["analytics"]).await[0].granted);
        let history = app.consent_history("cust-6", "").await;
        assert!(history.is_empty());
    }
}
