//! The gateway on the public port: routing to each service unchanged, deadlines
//! kept, reflection and health for every routed service, the internal
//! data-subject APIs hidden, and data-subject requests fanned out with a receipt
//! per service; in one process and with consent as a separate server.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use attune_tests::consent_requests::{decision, record, request_id};
use attune_tests::{
    Backend, TestApp, backend_tests, consent_pb as pb, gateway_pb, privacy_pb, violated_fields,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1;

const CONSENT: &str = "attune.consent.v1.ConsentService";
const DATA_SUBJECT_REQUESTS: &str = "attune.gateway.v1.DataSubjectRequestService";
const INTERNAL_DATA_SUBJECT: &str = "attune.privacy.v1.DataSubjectService";

/// The services reflection lists on `app`'s port, as `grpcurl list` shows them.
async fn listed_services(app: &TestApp) -> Vec<String> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a service list, got {response:?}");
    };
    list.service
        .into_iter()
        .map(|service| service.name)
        .collect()
}

/// Grants analytics and personalization to `customer` through `app`.
async fn grant_two(app: &TestApp, customer: &str) {
    app.record_consent(record(
        customer,
        vec![
            decision("analytics", pb::Decision::Granted),
            decision("personalization", pb::Decision::Granted),
        ],
    ))
    .await;
}

/// Exports and erases `customer` (holding two grants) through `gateway`,
/// checking consent's receipts and that the erasure took effect.
async fn export_then_erase_through(gateway: &TestApp, customer: &str) {
    let messages = gateway.export_customer(customer, &request_id()).await;
    let records = |service: &str| -> Vec<_> {
        messages
            .iter()
            .filter(|m| m.service == service)
            .flat_map(|m| m.records.clone())
            .collect()
    };
    // Consent holds the grants, and the gateway's access log this export (a
    // read of the customer's data); profile knows no such customer.
    let (decisions, accesses) = (records(CONSENT_PACKAGE), records(ACCESS_LOG));
    assert_eq!(decisions.len(), 2, "{messages:?}");
    assert!(decisions.iter().all(|r| r.kind == "consent_decision"));
    // The export itself is among the reads, and every read of the customer
    // (consent checks through the gateway too) is there.
    assert!(
        accesses.iter().all(|r| r.kind == "data_access"),
        "{accesses:?}"
    );
    let rpc = |record: &attune_proto::privacy::v1::DataRecord| {
        record
            .data
            .as_ref()
            .and_then(|data| data.fields.get("rpc").cloned())
    };
    assert!(
        accesses.iter().any(|r| rpc(r)
            == Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(EXPORT_RPC.into()))
            })),
        "{accesses:?}"
    );
    let logged = i64::try_from(accesses.len()).unwrap();
    assert!(messages.iter().all(|m| m.customer_id == customer));
    let receipts: Vec<_> = messages
        .iter()
        .filter_map(|m| m.receipt.as_ref().map(|r| (m.service.as_str(), r)))
        .collect();
    let services: Vec<_> = receipts.iter().map(|(service, _)| *service).collect();
    assert_eq!(
        services,
        data_holding_services(),
        "one receipt per data-holding service, in service order"
    );
    for (service, receipt) in &receipts {
        assert_eq!(receipt.status, gateway_pb::ReceiptStatus::Succeeded as i32);
        let expected = match *service {
            CONSENT_PACKAGE => 2,
            ACCESS_LOG => logged,
            _ => 0,
        };
        assert_eq!(receipt.record_count, expected, "{service}");
    }

    let id = request_id();
    let erased = gateway.erase_customer(customer, &id).await;
    assert!(erased.complete, "{erased:?}");
    assert!(erased.erase_time.is_some());
    assert_eq!(erased.customer_ids, [customer]);
    let receipt = erased.receipts[0].clone();
    assert_eq!(receipt.service, CONSENT_PACKAGE);
    for other in &erased.receipts[1..] {
        let expected = if other.service == ACCESS_LOG {
            logged
        } else {
            0
        };
        assert_eq!(other.record_count, expected, "{}", other.service);
    }
    assert_eq!(receipt.status, gateway_pb::ReceiptStatus::Succeeded as i32);
    // Consent counts its ledger records and the rows derived from them.
    assert!(receipt.record_count >= 2, "{receipt:?}");
    assert!(!receipt.retained.is_empty());
    assert_eq!(
        gateway.erase_customer(customer, &id).await,
        erased,
        "a retry returns the original receipts"
    );
    assert!(!gateway.check_consent(customer, &["analytics"]).await[0].granted);
    // Nothing is left but the access log's record of the reads since (the
    // consent check above and this very export).
    let after = gateway.export_customer(customer, &request_id()).await;
    assert!(
        after
            .iter()
            .all(|m| m.records.is_empty() || m.service == ACCESS_LOG),
        "{after:?}"
    );
    let since: usize = after.iter().map(|m| m.records.len()).sum();
    assert_eq!(since, 2, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_port_lists_the_gateway_and_every_routed_service_but_no_internal_api() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let services = listed_services(&app).await;
    assert!(services.iter().any(|s| s == CONSENT), "{services:?}");
    assert!(
        services.iter().any(|s| s == DATA_SUBJECT_REQUESTS),
        "{services:?}"
    );
    assert!(
        !services.iter().any(|s| s == INTERNAL_DATA_SUBJECT),
        "{services:?}"
    );
    assert_eq!(app.health(CONSENT).await, Some(ServingStatus::Serving));
    assert_eq!(
        app.health(DATA_SUBJECT_REQUESTS).await,
        Some(ServingStatus::Serving)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_serves_its_internal_data_subject_api_and_no_gateway() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let pod = app.pod("consent").await;
    let services = listed_services(&pod).await;
    assert!(services.iter().any(|s| s == CONSENT), "{services:?}");
    assert!(
        services.iter().any(|s| s == INTERNAL_DATA_SUBJECT),
        "{services:?}"
    );
    assert!(
        !services.iter().any(|s| s == DATA_SUBJECT_REQUESTS),
        "{services:?}"
    );
    assert_eq!(
        pod.health(INTERNAL_DATA_SUBJECT).await,
        Some(ServingStatus::Serving)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_and_unknown_services_are_unimplemented_on_the_public_port() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    grant_two(&app, "hidden-1").await;
    let internal = app
        .internal_data_subject()
        .erase_customer(privacy_pb::EraseCustomerRequest {
            customer_id: "hidden-1".into(),
            request_id: request_id(),
        })
        .await
        .unwrap_err();
    assert_eq!(internal.code(), Code::Unimplemented, "{internal:?}");
    assert!(
        app.check_consent("hidden-1", &["analytics"]).await[0].granted,
        "nothing was erased"
    );

    // A package no service owns, and a method consent does not have.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    for path in [
        "/attune.nosuch.v1.NoService/Call",
        "/attune.consent.v1.ConsentService/NoSuchMethod",
    ] {
        grpc.ready().await.unwrap();
        let error = grpc
            .unary::<_, pb::ListPurposesResponse, _>(
                tonic::Request::new(pb::ListPurposesRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unimplemented, "{path}: {error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_subject_requests_reject_bad_ids_and_ask_no_service() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    grant_two(&app, "dsr-valid").await;
    let before = app.verify_audit_log().await.entry_count;
    let long_customer = "c".repeat(129);
    let long_request = "r".repeat(65);
    let cases = [
        ("", "r-1", vec!["customer_id"]),
        ("has space", "r-1", vec!["customer_id"]),
        (long_customer.as_str(), "r-1", vec!["customer_id"]),
        ("dsr-valid", "", vec!["request_id"]),
        ("dsr-valid", long_request.as_str(), vec!["request_id"]),
        ("dsr-valid", "a/b", vec!["request_id"]),
        ("", "", vec!["customer_id", "request_id"]),
    ];
    for (customer, request, fields) in cases {
        let erase = app
            .data_subject_requests()
            .erase_customer(gateway_pb::EraseCustomerRequest {
                customer_id: customer.into(),
                request_id: request.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            erase.code(),
            Code::InvalidArgument,
            "{customer:?}/{request:?}"
        );
        assert_eq!(violated_fields(&erase), fields, "{erase:?}");
        let export = app
            .data_subject_requests()
            .export_customer(gateway_pb::ExportCustomerRequest {
                customer_id: customer.into(),
                request_id: request.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            export.code(),
            Code::InvalidArgument,
            "{customer:?}/{request:?}"
        );
        assert_eq!(violated_fields(&export), fields, "{export:?}");
    }
    assert!(app.check_consent("dsr-valid", &["analytics"]).await[0].granted);
    assert_eq!(
        app.verify_audit_log().await.entry_count,
        before,
        "no service was asked"
    );
}

backend_tests! {
    async fn export_and_erasure_through_the_gateway_give_a_receipt_per_service(app) {
        grant_two(&app, "dsr-gw-1").await;
        export_then_erase_through(&app, "dsr-gw-1").await;
    }

    async fn the_callers_deadline_bounds_a_routed_call(app) {
        let held = app.hold_consent_write_path("deadline-1").await;
        let mut request = tonic::Request::new(record(
            "deadline-cust",
            vec![decision("analytics", pb::Decision::Granted)],
        ));
        request.get_mut().request_id = "deadline-1".into();
        request.set_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let error = app.consent().record_consent(request).await.unwrap_err();
        // tonic's server answers an expired grpc-timeout with CANCELLED.
        assert!(
            matches!(error.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        held.rollback().await.unwrap();
    }
}

/// Consent and the gateway as two servers on two ports, the gateway reaching
/// consent over HTTP/2: consent's API and data-subject requests through the
/// gateway; when consent stops, the gateway reports it NOT_SERVING, its calls
/// UNAVAILABLE and its receipt FAILED.
async fn consent_and_gateway_as_two_servers(backend: Backend) {
    let Some((gateway, mut consent)) = TestApp::spawn_split(backend).await else {
        return;
    };
    assert_eq!(gateway.health(CONSENT).await, Some(ServingStatus::Serving));
    let services = listed_services(&gateway).await;
    assert!(services.iter().any(|s| s == CONSENT), "{services:?}");
    assert!(
        !services.iter().any(|s| s == INTERNAL_DATA_SUBJECT),
        "{services:?}"
    );

    grant_two(&gateway, "split-1").await;
    assert!(gateway.check_consent("split-1", &["analytics"]).await[0].granted);
    export_then_erase_through(&gateway, "split-1").await;

    consent.begin_shutdown();
    consent.join().await.unwrap();
    let mut down = false;
    for _ in 0..300 {
        if gateway.health(CONSENT).await == Some(ServingStatus::NotServing) {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(down, "the gateway reports a stopped backend NOT_SERVING");
    assert_eq!(gateway.health("").await, Some(ServingStatus::Serving));
    let error = gateway
        .consent()
        .list_purposes(pb::ListPurposesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let erased = gateway.erase_customer("split-2", &request_id()).await;
    assert!(!erased.complete, "{erased:?}");
    assert!(erased.erase_time.is_none());
    let receipt = erased.receipts[0].clone();
    let profile_receipt = erased
        .receipts
        .iter()
        .find(|r| r.service == "attune.profile.v1")
        .unwrap()
        .clone();
    assert_eq!(receipt.service, "attune.consent.v1");
    assert_eq!(receipt.status, gateway_pb::ReceiptStatus::Failed as i32);
    assert_eq!(receipt.error_code, Code::Unavailable as i32);
    assert_eq!(
        profile_receipt.status,
        gateway_pb::ReceiptStatus::Succeeded as i32,
        "the profile pod still answers"
    );
    let exported = gateway.export_customer("split-2", &request_id()).await;
    let consent_messages: Vec<_> = exported
        .into_iter()
        .filter(|m| m.service == "attune.consent.v1")
        .collect();
    let [message] = <[_; 1]>::try_from(consent_messages).unwrap();
    assert_eq!(
        message.receipt.unwrap().status,
        gateway_pb::ReceiptStatus::Failed as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_and_gateway_run_as_two_servers_on_sqlite() {
    consent_and_gateway_as_two_servers(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn consent_and_gateway_run_as_two_servers_on_postgres() {
    consent_and_gateway_as_two_servers(Backend::Postgres).await;
}

/// Consent's receipts name it so.
const CONSENT_PACKAGE: &str = "attune.consent.v1";

/// How the access log names an export.
const EXPORT_RPC: &str = "attune.gateway.v1.DataSubjectRequestService/ExportCustomer";

/// The gateway's data-access log, as its receipts name it.
const ACCESS_LOG: &str = attune_gateway::ACCESS_LOG_PACKAGE;

/// The names on every receipt, in the order the gateway lists them.
fn data_holding_services() -> Vec<&'static str> {
    attune::data_subject_receipts()
}
