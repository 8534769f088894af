//! The router alone, in front of a backend that records what reaches it: the
//! call arrives unchanged but for a fresh trace context naming the gateway's
//! span as parent; paths no backend owns are UNIMPLEMENTED.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::sync::{Arc, Mutex};

use attune_gateway::{Backend, Router};
use attune_kit::server::HttpService;
use attune_kit::telemetry::TraceContextLayer;
use tonic::body::Body;
use tower::{Layer as _, ServiceExt as _};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A router (wrapped as the public port wraps it) in front of one backend for
/// `attune.test.v1`, and the requests that reached that backend.
fn gateway() -> (HttpService, Arc<Mutex<Vec<http::Request<Body>>>>) {
    attune_kit::telemetry::init_for_tests();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backend = {
        let seen = Arc::clone(&seen);
        tower::service_fn(move |request: http::Request<Body>| {
            seen.lock().unwrap().push(request);
            std::future::ready(Ok::<_, std::convert::Infallible>(
                tonic::Status::ok("").into_http::<Body>(),
            ))
        })
    };
    let router = Router::new(vec![Backend::new(
        "attune.test.v1",
        &["attune.test.v1.TestService"],
        false,
        HttpService::new(backend),
    )]);
    (HttpService::new(TraceContextLayer.layer(router)), seen)
}

fn call(path: &str) -> http::Request<Body> {
    http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "300m")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("x-custom", "kept")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_routed_call_keeps_its_deadline_and_headers_under_a_fresh_trace_parent() {
    let (gateway, seen) = gateway();
    let response = gateway
        .oneshot(call("/attune.test.v1.TestService/Call"))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "0");
    let seen = seen.lock().unwrap();
    let [forwarded] = seen.as_slice() else {
        panic!("one call reaches the backend, not {}", seen.len())
    };
    assert_eq!(forwarded.uri().path(), "/attune.test.v1.TestService/Call");
    assert_eq!(forwarded.headers()["grpc-timeout"], "300m");
    assert_eq!(forwarded.headers()["x-custom"], "kept");
    let traceparent = forwarded.headers()["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        parts[1], TRACE_ID,
        "the caller's trace goes on: {traceparent}"
    );
    assert_ne!(
        parts[2], CALLER_SPAN,
        "the gateway's span is the parent: {traceparent}"
    );
}

#[tokio::test]
async fn paths_no_backend_owns_are_unimplemented() {
    let (gateway, seen) = gateway();
    for path in [
        "/attune.other.v1.OtherService/Call",
        "/attune.test.v10.TestService/Call",
        "/attune.privacy.v1.DataSubjectService/EraseCustomer",
    ] {
        let response = gateway.clone().oneshot(call(path)).await.unwrap();
        assert_eq!(response.headers()["grpc-status"], "12", "{path}");
    }
    assert!(seen.lock().unwrap().is_empty());
}
