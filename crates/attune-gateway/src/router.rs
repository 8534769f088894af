//! The public port's router: every `/attune.<service>.v1.*` call goes to its
//! backend as it arrived (headers, deadline, body frames), with a fresh
//! `traceparent` naming the gateway's span as the backend's parent when the
//! backend is another process (one in this process runs inside that span).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use attune_kit::telemetry::inject_current_span;
use tonic::body::Body;

use crate::backend::Backend;

/// Forwards each call to the backend whose API package its path is under;
/// anything else is UNIMPLEMENTED, as from any gRPC server.
#[derive(Clone, Debug)]
pub struct Router {
    backends: Arc<[Backend]>,
}

impl Router {
    /// A router over `backends`, whose packages must differ.
    pub fn new(backends: Vec<Backend>) -> Self {
        Self {
            backends: backends.into(),
        }
    }
}

impl tower::Service<http::Request<Body>> for Router {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call goes through `oneshot` on its backend, which awaits readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let Some(backend) = self.backends.iter().find(|backend| backend.routes(path)) else {
            return Box::pin(std::future::ready(Ok(
                tonic::Status::unimplemented("").into_http()
            )));
        };
        if !backend.runs_in_process() {
            send_trace_context(&mut request);
        }
        Box::pin(tower::ServiceExt::oneshot(backend.transport(), request))
    }
}

/// Replaces the caller's `traceparent`/`tracestate` by the current span's (the
/// gateway's `grpc.request` span, itself the caller's child), so the backend's
/// span hangs under the gateway's. Without a trace (no OpenTelemetry layer) the
/// caller's context passes on unchanged.
fn send_trace_context(request: &mut http::Request<Body>) {
    // Straight into the headers: rebuilding them as a tonic request to run the
    // client interceptor cost two header-map copies per routed call.
    inject_current_span(request.headers_mut());
}
