//! What `attune.privacy.v1` promises about its numbers and ids, checked against
//! consent, the first service that implements it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_tests::consent_requests::{decision, record, request_id};
use attune_tests::{TestApp, backend_tests, consent_pb as pb, privacy_pb};

/// Consent's own erasure (its internal data-subject API, which its pod serves).
async fn erase(consent: &TestApp, customer: &str, request_id: &str) -> i64 {
    consent
        .internal_data_subject()
        .erase_customer(privacy_pb::EraseCustomerRequest {
            customer_id: customer.into(),
            request_id: request_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .erased_record_count
}

backend_tests! {
    async fn erased_record_count_counts_each_row_that_identified_the_customer(app) {
        let customer = "cust-counted";
        // Three ledger records on two purposes: three records and three change-stream
        // rows name the customer, and two current-state rows.
        app.record_consent(record(customer, vec![
            decision("analytics", pb::Decision::Granted),
            decision("personalization", pb::Decision::Granted),
        ]))
        .await;
        app.record_consent(record(customer, vec![decision("analytics", pb::Decision::Withdrawn)]))
            .await;
        // Another customer's rows are not counted.
        app.record_consent(record("cust-other", vec![decision("analytics", pb::Decision::Granted)]))
            .await;

        let consent = app.pod("consent").await;
        let first = request_id();
        assert_eq!(erase(&consent, customer, &first).await, 3 + 3 + 2);
        assert_eq!(erase(&consent, customer, &first).await, 3 + 3 + 2, "a retry returns the original count");
        assert_eq!(erase(&consent, customer, &request_id()).await, 0, "an erased customer has nothing left to erase");
    }
}
