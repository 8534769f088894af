//! Every consent RPC refuses bad input with the right code, names the field, and
//! changes nothing.

#![allow(clippy::unwrap_used, clippy::type_complexity)] // panics fail tests; case tables hold closures

use attune_tests::consent_requests::{decision, new_purpose, record, timestamp};
use attune_tests::{TestApp, backend_tests, common_pb, consent_pb as pb, violated_fields};
use chrono::{Duration, Utc};
use prost_types::Timestamp;
use tonic::{Code, Status};

/// A request that would be recorded, for a case to spoil one field of.
fn valid_record() -> pb::RecordConsentRequest {
    record("cust-1", vec![decision("analytics", pb::Decision::Granted)])
}

/// A decision or expiry time `offset` from now.
fn at(offset: Duration) -> Option<Timestamp> {
    Some(timestamp(Utc::now() + offset))
}

fn expect_invalid(result: Result<impl std::fmt::Debug, Status>, field: &str, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    assert_eq!(
        violated_fields(&status).first().map(String::as_str),
        Some(field),
        "{case}: {status:?}"
    );
}

async fn nothing_written(app: &TestApp) {
    let mut client = app.consent();
    let purposes = client
        .list_purposes(pb::ListPurposesRequest {
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .purposes;
    assert_eq!(purposes.len(), 6, "the catalogue is unchanged");
    assert!(purposes.iter().all(|p| p.notice_version == 1));
    let history = app.consent_history("cust-1", "").await;
    assert!(history.is_empty(), "no decision was recorded");
}

backend_tests! {
    async fn record_consent_rejects_each_bad_field(app) {
        let mut client = app.consent();
        let cases: Vec<(&str, &str, Box<dyn Fn(&mut pb::RecordConsentRequest)>)> = vec![
            ("empty customer", "customer_id", Box::new(|r| r.customer_id.clear())),
            ("customer with space", "customer_id", Box::new(|r| r.customer_id = "a b".into())),
            ("over-long customer", "customer_id", Box::new(|r| r.customer_id = "c".repeat(129))),
            ("no decisions", "decisions", Box::new(|r| r.decisions.clear())),
            ("too many decisions", "decisions", Box::new(|r| {
                r.decisions = (0..51).map(|i| decision(&format!("purpose_{i}"), pb::Decision::Granted)).collect();
            })),
            ("malformed purpose", "decisions[0].purpose_code", Box::new(|r| r.decisions[0].purpose_code = "Not A Code".into())),
            ("unspecified decision", "decisions[0].decision", Box::new(|r| r.decisions[0].decision = 0)),
            ("unknown decision", "decisions[0].decision", Box::new(|r| r.decisions[0].decision = 42)),
            ("missing notice version", "decisions[0].notice_version", Box::new(|r| r.decisions[0].notice_version = 0)),
            ("unspecified channel", "channel", Box::new(|r| r.channel = 0)),
            ("unknown channel", "channel", Box::new(|r| r.channel = 99)),
            ("empty request id", "request_id", Box::new(|r| r.request_id.clear())),
            ("over-long request id", "request_id", Box::new(|r| r.request_id = "r".repeat(65))),
            ("over-long user agent", "proof.user_agent", Box::new(|r| r.proof = Some(pb::ConsentProof {
                form_hash: String::new(),
                user_agent: "u".repeat(513),
                captured_by: String::new(),
            }))),
            ("control character in form hash", "proof.form_hash", Box::new(|r| r.proof = Some(pb::ConsentProof {
                form_hash: "sha256:\u{7}".into(),
                user_agent: String::new(),
                captured_by: String::new(),
            }))),
            ("future decision", "decide_time", Box::new(|r| r.decide_time = at(Duration::hours(1)))),
            ("expiry before decision", "expire_time", Box::new(|r| r.expire_time = at(Duration::hours(-1)))),
            ("invalid timestamp", "decide_time", Box::new(|r| r.decide_time = Some(Timestamp { seconds: 0, nanos: -5 }))),
            ("same purpose twice", "decisions[1].purpose_code", Box::new(|r| {
                let again = r.decisions[0].clone();
                r.decisions.push(again);
            })),
        ];
        for (case, field, mutate) in cases {
            let mut request = valid_record();
            mutate(&mut request);
            expect_invalid(client.record_consent(request).await, field, case);
        }
        let err = client
            .record_consent(pb::RecordConsentRequest {
                decisions: vec![decision("no_such_purpose", pb::Decision::Granted)],
                ..valid_record()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        nothing_written(&app).await;
    }

    async fn purpose_writes_reject_each_bad_field(app) {
        let mut client = app.consent();
        let cases: Vec<(&str, &str, Box<dyn Fn(&mut pb::CreatePurposeRequest)>)> = vec![
            ("empty code", "code", Box::new(|r| r.code.clear())),
            ("upper-case code", "code", Box::new(|r| r.code = "Birthday".into())),
            ("over-long code", "code", Box::new(|r| r.code = "b".repeat(65))),
            ("empty name", "display_name", Box::new(|r| r.display_name = "  ".into())),
            ("over-long name", "display_name", Box::new(|r| r.display_name = "n".repeat(201))),
            ("over-long description", "description", Box::new(|r| r.description = "d".repeat(4001))),
            ("unspecified basis", "legal_basis", Box::new(|r| r.legal_basis = 0)),
            ("unknown basis", "legal_basis", Box::new(|r| r.legal_basis = 77)),
            ("no categories", "data_categories", Box::new(|r| r.data_categories.clear())),
            ("unspecified category", "data_categories[0]", Box::new(|r| r.data_categories = vec![0])),
            ("unknown category", "data_categories[0]", Box::new(|r| r.data_categories = vec![500])),
            ("duplicate category", "data_categories", Box::new(|r| r.data_categories = vec![3, 3])),
            ("empty request id", "request_id", Box::new(|r| r.request_id.clear())),
        ];
        for (case, field, mutate) in &cases {
            let mut request = new_purpose("birthday");
            mutate(&mut request);
            expect_invalid(client.create_purpose(request.clone()).await, field, case);
            let update = pb::UpdatePurposeRequest {
                code: if *field == "code" { request.code } else { "analytics".into() },
                display_name: request.display_name,
                description: request.description,
                legal_basis: request.legal_basis,
                data_categories: request.data_categories,
                request_id: request.request_id,
            };
            expect_invalid(client.update_purpose(update).await, field, case);
        }
        let err = client
            .update_purpose(pb::UpdatePurposeRequest {
                code: "no_such_purpose".into(),
                display_name: "X".into(),
                description: "Y".into(),
                legal_basis: pb::LegalBasis::Consent.into(),
                data_categories: vec![common_pb::DataCategory::Contact.into()],
                request_id: "req-3".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        nothing_written(&app).await;
    }

    async fn reads_reject_each_bad_field(app) {
        let mut client = app.consent();
        expect_invalid(
            client.get_purpose(pb::GetPurposeRequest { code: String::new(), notice_version: 0 }).await,
            "code",
            "empty code",
        );
        expect_invalid(
            client.get_purpose(pb::GetPurposeRequest { code: "analytics".into(), notice_version: -1 }).await,
            "notice_version",
            "negative version",
        );
        let missing = client
            .get_purpose(pb::GetPurposeRequest { code: "no_such_purpose".into(), notice_version: 0 })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        let missing_version = client
            .get_purpose(pb::GetPurposeRequest { code: "analytics".into(), notice_version: 7 })
            .await
            .unwrap_err();
        assert_eq!(missing_version.code(), Code::NotFound);

        expect_invalid(
            client.list_purposes(pb::ListPurposesRequest { page_size: 501, page_token: String::new() }).await,
            "page_size",
            "oversized page",
        );
        expect_invalid(
            client.list_purposes(pb::ListPurposesRequest { page_size: -1, page_token: String::new() }).await,
            "page_size",
            "negative page",
        );
        expect_invalid(
            client.list_purposes(pb::ListPurposesRequest { page_size: 0, page_token: "garbage!".into() }).await,
            "page_token",
            "garbage token",
        );

        let history = |customer_id: &str, purpose_code: &str, page_size: i32, page_token: &str| pb::ListConsentHistoryRequest {
            customer_id: customer_id.into(),
            purpose_code: purpose_code.into(),
            page_size,
            page_token: page_token.into(),
        };
        expect_invalid(client.list_consent_history(history("", "", 0, "")).await, "customer_id", "empty customer");
        expect_invalid(client.list_consent_history(history("c", "BAD", 0, "")).await, "purpose_code", "bad purpose");
        expect_invalid(client.list_consent_history(history("c", "", 1001, "")).await, "page_size", "oversized page");
        expect_invalid(client.list_consent_history(history("c", "", 0, "%%%")).await, "page_token", "garbage token");

        expect_invalid(
            client.get_consent_state(pb::GetConsentStateRequest { customer_id: String::new(), purpose_codes: vec![] }).await,
            "customer_id",
            "empty customer",
        );
        expect_invalid(
            client
                .get_consent_state(pb::GetConsentStateRequest {
                    customer_id: "c".into(),
                    purpose_codes: vec!["analytics".into(), "Bad Code".into()],
                })
                .await,
            "purpose_codes[1]",
            "bad purpose",
        );

        let check = |customer_id: &str, codes: Vec<String>| pb::CheckConsentRequest {
            customer_id: customer_id.into(),
            purpose_codes: codes,
        };
        expect_invalid(client.check_consent(check("", vec!["analytics".into()])).await, "customer_id", "empty customer");
        expect_invalid(client.check_consent(check("c", vec![])).await, "purpose_codes", "no purposes");
        expect_invalid(
            client.check_consent(check("c", (0..51).map(|i| format!("p_{i}")).collect())).await,
            "purpose_codes",
            "too many purposes",
        );
        expect_invalid(client.check_consent(check("c", vec!["x".into()])).await, "purpose_codes[0]", "short code");
        nothing_written(&app).await;
    }

    async fn an_oversized_message_is_refused(app) {
        let mut request = valid_record();
        request.proof = Some(pb::ConsentProof {
            form_hash: String::new(),
            user_agent: "u".repeat(app.config.limits.max_message_bytes + 1),
            captured_by: String::new(),
        });
        let status = app.consent().record_consent(request).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{status:?}"
        );
        nothing_written(&app).await;
    }
}
