//! The public port's router: every `/attune.<service>.v1.*` call goes to its
//! backend as it arrived (headers, deadline, body frames), with a fresh
//! `traceparent` naming the gateway's span as the backend's parent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use attune_kit::telemetry::TraceContextInterceptor;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor as _;

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
        send_trace_context(&mut request);
        Box::pin(tower::ServiceExt::oneshot(backend.transport(), request))
    }
}

/// Replaces the caller's `traceparent`/`tracestate` by the current span's (the
/// gateway's `grpc.request` span, itself the caller's child), so the backend's
/// span hangs under the gateway's. Without a trace (no OpenTelemetry layer) the
/// caller's context passes on unchanged.
fn send_trace_context(request: &mut http::Request<Body>) {
    let headers = std::mem::take(request.headers_mut());
    let call = tonic::Request::from_parts(
        MetadataMap::from_headers(headers),
        tonic::Extensions::default(),
        (),
    );
    let call = match TraceContextInterceptor.call(call) {
        Ok(call) => call,
        Err(status) => {
            unreachable!("the trace context interceptor never refuses a call: {status}")
        }
    };
    *request.headers_mut() = call.into_parts().0.into_headers();
}
