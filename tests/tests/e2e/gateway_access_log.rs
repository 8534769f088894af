//! Who used my data: the gateway records reads of a customer's data and lists
//! them (`attune.gateway.v1.DataAccessService`), newest first and paged; the log
//! takes part in data-subject requests as `attune.gateway.v1`, so an export
//! holds it and an erasure deletes it (a retry replays the receipt).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_proto::gateway::v1 as pb;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::consent_requests::{decision, record, request_id};
use attune_tests::gateway_policy::{Credential, customer_token, secured_app, with_credential};
use attune_tests::{Backend, TestApp, backend_tests, consent_pb, eventually, every_page};
use tonic::Code;

const ACCESS_LOG: &str = attune_gateway::ACCESS_LOG_PACKAGE;
const EXPORT_RPC: &str = "attune.gateway.v1.DataSubjectRequestService/ExportCustomer";

async fn accesses(app: &TestApp, customer: &str, page_size: i32) -> Vec<pb::DataAccess> {
    every_page(async |page_token| {
        let page = app
            .data_access()
            .list_data_access(pb::ListDataAccessRequest {
                customer_id: customer.into(),
                page_size,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        (page.accesses, page.next_page_token)
    })
    .await
}

async fn wait_for_accesses(app: &TestApp, customer: &str, count: usize) {
    eventually("the access log's writer stores the entries", async || {
        accesses(app, customer, 0).await.len() == count
    })
    .await;
}

async fn grant(app: &TestApp, customer: &str) {
    app.record_consent(record(
        customer,
        vec![decision("analytics", consent_pb::Decision::Granted)],
    ))
    .await;
}

/// Asks consent for `customer`'s state through the gateway.
async fn consent_state(app: &TestApp, customer: &str, credential: &Credential) {
    app.consent()
        .get_consent_state(with_credential(
            consent_pb::GetConsentStateRequest {
                customer_id: customer.into(),
                ..Default::default()
            },
            credential,
        ))
        .await
        .unwrap();
}

backend_tests! {
    async fn a_routed_read_is_recorded_and_a_write_is_not(app) {
        grant(&app, "log-5").await;
        consent_state(&app, "log-5", &Credential::None).await;
        wait_for_accesses(&app, "log-5", 1).await;
        let listed = accesses(&app, "log-5", 0).await;
        assert_eq!(listed[0].rpc, "attune.consent.v1.ConsentService/GetConsentState");
        assert_eq!(listed[0].purpose_codes, ["consent_management"]);
        assert_eq!(listed[0].caller_kind(), pb::CallerKind::Development);
        // Neither the grant (a write) nor listing the log adds an entry: the
        // next read is the second.
        accesses(&app, "log-5", 0).await;
        consent_state(&app, "log-5", &Credential::None).await;
        wait_for_accesses(&app, "log-5", 2).await;
    }

    async fn each_export_is_recorded_and_listed_newest_first_in_pages(app) {
        grant(&app, "log-1").await;
        assert!(accesses(&app, "log-1", 0).await.is_empty());
        for _ in 0..3 {
            app.export_customer("log-1", &request_id()).await;
        }
        wait_for_accesses(&app, "log-1", 3).await;

        let listed = accesses(&app, "log-1", 0).await;
        let paged = accesses(&app, "log-1", 1).await;
        assert_eq!(paged, listed, "pages of one repeat nothing and miss nothing");
        let times: Vec<_> = listed
            .iter()
            .map(|access| access.access_time.unwrap().seconds)
            .collect();
        assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {times:?}");
        for access in &listed {
            assert_eq!(access.rpc, EXPORT_RPC);
            assert_eq!(access.customer_id, "log-1");
            assert_eq!(access.caller_kind(), pb::CallerKind::Development);
            assert_eq!(access.purpose_codes, ["data_subject_request"]);
            assert_eq!(
                access.data_categories.len(),
                attune_kit::types::DataCategory::ALL.len(),
                "an export reads every category"
            );
        }
        assert!(accesses(&app, "someone-else", 0).await.is_empty());
    }

    async fn the_log_is_exported_and_erased_with_the_customer(app) {
        grant(&app, "log-2").await;
        app.export_customer("log-2", &request_id()).await;
        // The second export holds the first one's entry and its own.
        let exported = app.export_customer("log-2", &request_id()).await;
        let logged: Vec<_> = exported
            .iter()
            .filter(|message| message.service == ACCESS_LOG)
            .flat_map(|message| message.records.clone())
            .collect();
        assert_eq!(logged.len(), 2, "{exported:?}");
        assert!(logged.iter().all(|r| r.kind == "data_access" && r.update_time.is_some()));
        let data = logged[0].data.as_ref().unwrap();
        assert!(data.fields.contains_key("rpc"), "{data:?}");
        assert!(!data.fields.contains_key("customer_id"), "the export names its customer once");

        let id = request_id();
        let erased = app.erase_customer("log-2", &id).await;
        assert!(erased.complete, "{erased:?}");
        let receipt = erased
            .receipts
            .iter()
            .find(|receipt| receipt.service == ACCESS_LOG)
            .unwrap();
        assert_eq!(receipt.record_count, 2, "{receipt:?}");
        assert!(receipt.retained.is_empty(), "the log keeps nothing");
        assert!(accesses(&app, "log-2", 0).await.is_empty());
        assert_eq!(app.erase_customer("log-2", &id).await, erased, "a retry replays the receipts");
    }

    async fn listing_refuses_bad_input_and_writes_nothing(app) {
        let valid = || pb::ListDataAccessRequest {
            customer_id: "log-3".into(),
            page_size: 10,
            page_token: String::new(),
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ListDataAccessRequest| {
                r.customer_id.clear()
            })
            .invalid("customer with a space", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("customer too long", "customer_id", |r| r.customer_id = "x".repeat(129))
            .invalid("negative page size", "page_size", |r| r.page_size = -1)
            .invalid("page size above 500", "page_size", |r| r.page_size = 501)
            .invalid("foreign page token", "page_token", |r| r.page_token = "bm90LW91cnM".into());
        let client = app.data_access();
        assert_each_rejected(&app.config.database, valid, cases, |request| {
            let mut client = client.clone();
            async move { client.list_data_access(request).await }
        })
        .await;
        let error = app
            .data_access()
            .list_data_access(pb::ListDataAccessRequest::default())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
    }
}

/// With authentication configured, the entry names the kind of caller, never
/// the customer's token: here the customer reading its own consent state.
async fn a_customers_own_read_names_the_customer_as_caller(backend: Backend) {
    let Some(app) = secured_app(backend, |_| {}).await else {
        return;
    };
    let me = Credential::Bearer(customer_token("log-6"));
    consent_state(&app, "log-6", &me).await;
    let list = |page_token: String| {
        let mut client = app.data_access();
        let me = me.clone();
        async move {
            client
                .list_data_access(with_credential(
                    pb::ListDataAccessRequest {
                        customer_id: "log-6".into(),
                        page_size: 0,
                        page_token,
                    },
                    &me,
                ))
                .await
                .unwrap()
                .into_inner()
                .accesses
        }
    };
    eventually("the read is stored", async || {
        list(String::new()).await.len() == 1
    })
    .await;
    let entry = &list(String::new()).await[0];
    assert_eq!(entry.caller_kind(), pb::CallerKind::Customer);
    assert_eq!(entry.caller_name, "customer");
    // Another customer may not read it.
    let error = app
        .data_access()
        .list_data_access(with_credential(
            pb::ListDataAccessRequest {
                customer_id: "log-6".into(),
                ..Default::default()
            },
            &Credential::Bearer(customer_token("log-7")),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_own_read_names_the_customer_as_caller_on_sqlite() {
    a_customers_own_read_names_the_customer_as_caller(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_customers_own_read_names_the_customer_as_caller_on_postgres() {
    a_customers_own_read_names_the_customer_as_caller(Backend::Postgres).await;
}
