//! Every consent RPC refuses bad input with the right code, names the field, and
//! changes nothing (`attune_tests::bad_input` compares every table's row count).

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_tests::bad_input::{Cases, RowCounts, assert_each_rejected};
use attune_tests::consent_requests::{decision, new_purpose, record, timestamp};
use attune_tests::{TestApp, backend_tests, consent_pb as pb};
use chrono::{Duration, Utc};
use prost_types::Timestamp;
use tonic::Code;

/// A request that would be recorded, for a case to spoil one field of.
fn valid_record() -> pb::RecordConsentRequest {
    record("cust-1", vec![decision("analytics", pb::Decision::Granted)])
}

/// A decision or expiry time `offset` from now.
fn at(offset: Duration) -> Option<Timestamp> {
    Some(timestamp(Utc::now() + offset))
}

/// A proof with only its user agent and form hash set.
fn proof(user_agent: String, form_hash: &str) -> Option<pb::ConsentProof> {
    Some(pb::ConsentProof {
        form_hash: form_hash.into(),
        user_agent,
        captured_by: String::new(),
    })
}

/// A bad-purpose case: its name, the field it must name, and the change to a valid
/// new purpose.
type PurposeCase = (
    &'static str,
    &'static str,
    fn(&mut pb::CreatePurposeRequest),
);

/// Each way to spoil a purpose, shared by CreatePurpose and UpdatePurpose.
const PURPOSE_CASES: [PurposeCase; 13] = [
    ("empty code", "code", |r| r.code.clear()),
    ("upper-case code", "code", |r| r.code = "Birthday".into()),
    ("over-long code", "code", |r| r.code = "b".repeat(65)),
    ("empty name", "display_name", |r| {
        r.display_name = "  ".into()
    }),
    ("over-long name", "display_name", |r| {
        r.display_name = "n".repeat(201)
    }),
    ("over-long description", "description", |r| {
        r.description = "d".repeat(4001)
    }),
    ("unspecified basis", "legal_basis", |r| r.legal_basis = 0),
    ("unknown basis", "legal_basis", |r| r.legal_basis = 77),
    ("no categories", "data_categories", |r| {
        r.data_categories.clear()
    }),
    ("unspecified category", "data_categories[0]", |r| {
        r.data_categories = vec![0]
    }),
    ("unknown category", "data_categories[0]", |r| {
        r.data_categories = vec![500]
    }),
    ("duplicate category", "data_categories", |r| {
        r.data_categories = vec![3, 3]
    }),
    ("empty request id", "request_id", |r| r.request_id.clear()),
];

/// `purpose` as an update of `code`.
fn as_update(code: String, purpose: pb::CreatePurposeRequest) -> pb::UpdatePurposeRequest {
    let pb::CreatePurposeRequest {
        code: _,
        display_name,
        description,
        legal_basis,
        data_categories,
        request_id,
    } = purpose;
    pb::UpdatePurposeRequest {
        code,
        display_name,
        description,
        legal_basis,
        data_categories,
        request_id,
    }
}

/// An update may rewrite a purpose in place, which row counts would not see: the
/// catalogue still holds the seven default purposes under their first notice.
async fn catalogue_unchanged(app: &TestApp) {
    let purposes = app
        .consent()
        .list_purposes(pb::ListPurposesRequest {
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .purposes;
    assert_eq!(purposes.len(), 7, "the catalogue is unchanged");
    assert!(
        purposes.iter().all(|p| p.notice_version == 1),
        "{purposes:?}"
    );
}

backend_tests! {
    async fn record_consent_rejects_each_bad_field(app) {
        let client = app.consent();
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::RecordConsentRequest| r.customer_id.clear())
            .invalid("customer with space", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("over-long customer", "customer_id", |r| r.customer_id = "c".repeat(129))
            .invalid("no decisions", "decisions", |r| r.decisions.clear())
            .invalid("too many decisions", "decisions", |r| {
                r.decisions = (0..51).map(|i| decision(&format!("purpose_{i}"), pb::Decision::Granted)).collect();
            })
            .invalid("malformed purpose", "decisions[0].purpose_code", |r| r.decisions[0].purpose_code = "Not A Code".into())
            .invalid("unspecified decision", "decisions[0].decision", |r| r.decisions[0].decision = 0)
            .invalid("unknown decision", "decisions[0].decision", |r| r.decisions[0].decision = 42)
            .invalid("missing notice version", "decisions[0].notice_version", |r| r.decisions[0].notice_version = 0)
            .invalid("unspecified channel", "channel", |r| r.channel = 0)
            .invalid("unknown channel", "channel", |r| r.channel = 99)
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .invalid("over-long request id", "request_id", |r| r.request_id = "r".repeat(65))
            .invalid("over-long user agent", "proof.user_agent", |r| r.proof = proof("u".repeat(513), ""))
            .invalid("control character in form hash", "proof.form_hash", |r| {
                r.proof = proof(String::new(), "sha256:\u{7}");
            })
            .invalid("future decision", "decide_time", |r| r.decide_time = at(Duration::hours(1)))
            .invalid("expiry before decision", "expire_time", |r| r.expire_time = at(Duration::hours(-1)))
            .invalid("invalid timestamp", "decide_time", |r| r.decide_time = Some(Timestamp { seconds: 0, nanos: -5 }))
            .invalid("same purpose twice", "decisions[1].purpose_code", |r| {
                let again = r.decisions[0].clone();
                r.decisions.push(again);
            })
            .refused("unknown purpose", Code::NotFound, |r| {
                r.decisions = vec![decision("no_such_purpose", pb::Decision::Granted)];
            });
        assert_each_rejected(&app.config.database, valid_record, cases, |request| {
            let mut client = client.clone();
            async move { client.record_consent(request).await }
        })
        .await;
    }

    async fn purpose_writes_reject_each_bad_field(app) {
        let client = app.consent();
        let creates = PURPOSE_CASES
            .into_iter()
            .fold(Cases::new(), |cases, (case, field, spoil)| cases.invalid(case, field, spoil));
        assert_each_rejected(&app.config.database, || new_purpose("birthday"), creates, |request| {
            let mut client = client.clone();
            async move { client.create_purpose(request).await }
        })
        .await;

        // An update names an existing purpose, unless the case spoils the code.
        let updates = PURPOSE_CASES
            .into_iter()
            .fold(Cases::new(), |cases, (case, field, spoil)| {
                cases.invalid(case, field, move |r: &mut pb::UpdatePurposeRequest| {
                    let mut purpose = new_purpose("birthday");
                    spoil(&mut purpose);
                    let code = if field == "code" { purpose.code.clone() } else { r.code.clone() };
                    *r = as_update(code, purpose);
                })
            })
            .refused("unknown purpose", Code::NotFound, |r| r.code = "no_such_purpose".into());
        let valid_update = || as_update("analytics".into(), new_purpose("birthday"));
        assert_each_rejected(&app.config.database, valid_update, updates, |request| {
            let mut client = client.clone();
            async move { client.update_purpose(request).await }
        })
        .await;
        catalogue_unchanged(&app).await;
    }

    async fn purpose_reads_reject_each_bad_field(app) {
        let client = app.consent();
        let get = Cases::new()
            .invalid("empty code", "code", |r: &mut pb::GetPurposeRequest| r.code.clear())
            .invalid("negative version", "notice_version", |r| r.notice_version = -1)
            .refused("unknown purpose", Code::NotFound, |r| r.code = "no_such_purpose".into())
            .refused("unknown version", Code::NotFound, |r| r.notice_version = 7);
        let valid_get = || pb::GetPurposeRequest { code: "analytics".into(), notice_version: 0 };
        assert_each_rejected(&app.config.database, valid_get, get, |request| {
            let mut client = client.clone();
            async move { client.get_purpose(request).await }
        })
        .await;

        let list = Cases::new()
            .invalid("oversized page", "page_size", |r: &mut pb::ListPurposesRequest| r.page_size = 501)
            .invalid("negative page", "page_size", |r| r.page_size = -1)
            .invalid("garbage token", "page_token", |r| r.page_token = "garbage!".into());
        let valid_list = || pb::ListPurposesRequest { page_size: 0, page_token: String::new() };
        assert_each_rejected(&app.config.database, valid_list, list, |request| {
            let mut client = client.clone();
            async move { client.list_purposes(request).await }
        })
        .await;
    }

    async fn consent_reads_reject_each_bad_field(app) {
        let client = app.consent();
        let history = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ListConsentHistoryRequest| r.customer_id.clear())
            .invalid("bad purpose", "purpose_code", |r| r.purpose_code = "BAD".into())
            .invalid("oversized page", "page_size", |r| r.page_size = 1001)
            .invalid("garbage token", "page_token", |r| r.page_token = "%%%".into());
        let valid_history = || pb::ListConsentHistoryRequest {
            customer_id: "c".into(),
            purpose_code: String::new(),
            page_size: 0,
            page_token: String::new(),
        };
        assert_each_rejected(&app.config.database, valid_history, history, |request| {
            let mut client = client.clone();
            async move { client.list_consent_history(request).await }
        })
        .await;

        let state = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::GetConsentStateRequest| r.customer_id.clear())
            .invalid("bad purpose", "purpose_codes[1]", |r| r.purpose_codes.push("Bad Code".into()));
        let valid_state = || pb::GetConsentStateRequest {
            customer_id: "c".into(),
            purpose_codes: vec!["analytics".into()],
        };
        assert_each_rejected(&app.config.database, valid_state, state, |request| {
            let mut client = client.clone();
            async move { client.get_consent_state(request).await }
        })
        .await;

        let check = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::CheckConsentRequest| r.customer_id.clear())
            .invalid("no purposes", "purpose_codes", |r| r.purpose_codes.clear())
            .invalid("too many purposes", "purpose_codes", |r| {
                r.purpose_codes = (0..51).map(|i| format!("p_{i}")).collect();
            })
            .invalid("short code", "purpose_codes[0]", |r| r.purpose_codes = vec!["x".into()]);
        let valid_check = || pb::CheckConsentRequest {
            customer_id: "c".into(),
            purpose_codes: vec!["analytics".into()],
        };
        assert_each_rejected(&app.config.database, valid_check, check, |request| {
            let mut client = client.clone();
            async move { client.check_consent(request).await }
        })
        .await;
    }

    async fn an_oversized_message_is_refused(app) {
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        let before = RowCounts::read(&db).await;
        let mut request = valid_record();
        request.proof = proof("u".repeat(app.config.limits.max_message_bytes + 1), "");
        let status = app.consent().record_consent(request).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{status:?}"
        );
        assert_eq!(RowCounts::read(&db).await, before, "nothing was written");
    }
}
