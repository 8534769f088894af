//! A request with many mistakes still reads as INVALID_ARGUMENT through a client
//! that keeps the default 8 KiB limit on received metadata (grpcio's, many
//! proxies'): the server bounds the violations it sends, and says how many more
//! there were.

use attune_kit::error::MAX_VIOLATIONS;
use attune_tests::consent_requests::{decision, record};
use attune_tests::{backend_tests, consent_pb, violated_fields};
use consent_pb::consent_service_client::ConsentServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// What a client with default limits accepts as headers or trailers.
const DEFAULT_CLIENT_METADATA_LIMIT: u32 = 8 * 1024;

/// A consent client on a connection of its own that refuses more than
/// [`DEFAULT_CLIENT_METADATA_LIMIT`] of headers or trailers.
async fn strict_client(app: &attune_tests::TestApp) -> ConsentServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", app.config.listen))
        .expect("a socket address is a valid URI")
        .http2_max_header_list_size(DEFAULT_CLIENT_METADATA_LIMIT)
        .connect()
        .await
        .expect("the test server accepts connections");
    ConsentServiceClient::new(channel)
}

/// Checks that `status` is a bounded INVALID_ARGUMENT that counts the rest.
fn assert_bounded(status: &tonic::Status, first_field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let fields = violated_fields(status);
    assert_eq!(fields.len(), MAX_VIOLATIONS, "{fields:?}");
    assert_eq!(fields[0], first_field);
    assert!(
        status.message().contains(" more violations"),
        "the message says how many were left out: {}",
        status.message()
    );
}

backend_tests! {
    async fn fifty_bad_purpose_codes_in_one_check_read_as_invalid_argument(app) {
        let codes: Vec<String> = (0..50)
            .map(|i| format!("Not-A-Purpose-Code-{i:02}-{}", "X".repeat(40)))
            .collect();
        let status = strict_client(&app)
            .await
            .check_consent(consent_pb::CheckConsentRequest {
                customer_id: "cust-violations".into(),
                purpose_codes: codes,
            })
            .await
            .expect_err("every purpose code is malformed");
        assert_bounded(&status, "purpose_codes[0]");
    }

    async fn fifty_bad_decisions_in_one_record_read_as_invalid_argument_and_write_nothing(app) {
        let customer = "cust-violations";
        let decisions = (0..50)
            .map(|i| consent_pb::PurposeDecision {
                notice_version: -1,
                ..decision(
                    &format!("Bad Code {i} {}", "y".repeat(40)),
                    consent_pb::Decision::Unspecified,
                )
            })
            .collect();
        let status = strict_client(&app)
            .await
            .record_consent(record(customer, decisions))
            .await
            .expect_err("every decision is malformed");
        assert_bounded(&status, "decisions[0].purpose_code");
        assert!(
            app.consent_history(customer, "").await.is_empty(),
            "a rejected request records nothing"
        );
    }
}
