//! What every Attune server offers whatever services it runs: health, reflection
//! for grpcurl (v1 and v1alpha), and a graceful shutdown that finishes in-flight calls.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use attune_tests::{Backend, TestApp, backend_tests, common_pb, consent_pb as pb};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

const CONSENT: &str = "attune.consent.v1.ConsentService";

async fn health(app: &TestApp, service: &str) -> i32 {
    HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_service_serving() {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    assert_eq!(health(&app, "").await, ServingStatus::Serving as i32);
    assert_eq!(health(&app, CONSENT).await, ServingStatus::Serving as i32);
    let unknown = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

/// Sends one v1 reflection request and returns what the server answers to it.
async fn reflect_v1(
    app: &TestApp,
    request: v1::server_reflection_request::MessageRequest,
) -> Option<v1::server_reflection_response::MessageResponse> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    responses.next().await.unwrap().unwrap().message_response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_lists_the_attune_services() {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let response = reflect_v1(
        &app,
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await;
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response
    else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == CONSENT), "{names:?}");
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_describes_the_consent_service() {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                CONSENT.into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("expected file descriptors, got {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

backend_tests! {
    async fn shutdown_finishes_calls_in_flight(app) {
        let mut app = app;
        let request = pb::RecordConsentRequest {
            customer_id: "cust-shutdown".into(),
            decisions: vec![pb::PurposeDecision {
                purpose_code: "analytics".into(),
                decision: pb::Decision::Granted.into(),
                notice_version: 1,
            }],
            channel: common_pb::Channel::Web.into(),
            proof: None,
            decide_time: None,
            expire_time: None,
            request_id: "in-flight".into(),
        };
        let held = app.hold_consent_write_path("in-flight").await;
        let mut client = app.consent();
        let call = tokio::spawn(async move { client.record_consent(request).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!call.is_finished(), "the call waits for the held write path");

        app.begin_shutdown();
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.rollback().await.unwrap();

        let answer = call.await.unwrap().expect("the in-flight call completes");
        assert_eq!(answer.into_inner().records.len(), 1);
        app.join().await.expect("the server stops cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_describes_error_details_so_grpcurl_can_show_field_violations() {
    let app = TestApp::spawn(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let response = reflect_v1(
        &app,
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "google.rpc.BadRequest".into(),
        ),
    )
    .await;
    assert!(
        matches!(
            response,
            Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "{response:?}"
    );
}
