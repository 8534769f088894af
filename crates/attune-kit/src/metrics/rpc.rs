//! Every gRPC call a server answers, as one histogram:
//! `attune.rpc.server.duration` (seconds; Prometheus
//! `attune_rpc_server_duration_seconds_{bucket,sum,count}`), labelled
//!
//! - `server`: `gateway` (the public port: it routes elsewhere) or `backend` (a
//!   service's own server, in process or as a pod), so that one process running
//!   both never counts a call twice under one series;
//! - `grpc_service`, `grpc_method`: from the path, when it names a method of a
//!   registered descriptor set; any other path is `unknown`, so a caller cannot
//!   grow the label set;
//! - `grpc_code`: the status name (`OK`, `INVALID_ARGUMENT`, …), from the
//!   `grpc-status` header of a trailers-only answer or from the trailers.
//!
//! The `_count` series is the request count and `grpc_code!="OK"` the errors. A
//! streaming call is recorded when it ends (its duration is the stream's); a call
//! dropped before its status was sent (deadline, client gone) as `CANCELLED`.
//!
//! Per call the layer reads the clock twice, looks the path up once and records
//! once, with the method's attribute set for that code built on first use and
//! kept: no allocation of its own on a server's port. (In process,
//! [`LocalServer`](crate::server::LocalServer) boxes the response body, as its
//! service type requires.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use prost::Message as _;

/// The histogram's name on the meter.
pub const DURATION: &str = "attune.rpc.server.duration";

/// Bucket bounds in seconds, for calls from half a millisecond (a cache hit)
/// to ten seconds (a stalled dependency at its deadline).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `grpc_service` and `grpc_method` of a path no descriptor names.
pub const UNKNOWN: &str = "unknown";

/// gRPC status codes by number, as `grpc_code` names them.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CANCELLED: usize = 1;
const UNKNOWN_CODE: usize = 2;

/// Which kind of server answered a call (the `server` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// The public port, in front of every service.
    Gateway,
    /// A service's own server.
    Backend,
}

impl ServerRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Backend => "backend",
        }
    }
}

/// The process's histogram, on the global meter provider as it is at first use
/// (after [`telemetry::init`](crate::telemetry::init)).
fn global_histogram() -> Histogram<f64> {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    HISTOGRAM
        .get_or_init(|| histogram(&opentelemetry::global::meter("attune")))
        .clone()
}

fn histogram(meter: &Meter) -> Histogram<f64> {
    meter
        .f64_histogram(DURATION)
        .with_description("gRPC calls answered, by server, service, method and status code")
        .with_unit("s")
        .with_boundaries(BUCKETS.to_vec())
        .build()
}

/// Tower layer recording every call of the service it wraps (see the module).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    table: Arc<MethodTable>,
}

impl std::fmt::Debug for RpcMetricsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMetricsLayer")
            .field("server", &self.table.server)
            .field("methods", &self.table.by_path.len())
            .finish()
    }
}

impl RpcMetricsLayer {
    /// Records on the global meter the calls of a `server` answering the methods
    /// of `descriptor_sets` (encoded `FileDescriptorSet`s).
    pub fn new(server: ServerRole, descriptor_sets: &[&'static [u8]]) -> Self {
        Self::with_histogram(server, descriptor_sets, global_histogram())
    }

    /// The same, on `meter` (a test's own provider).
    pub fn on_meter(server: ServerRole, descriptor_sets: &[&'static [u8]], meter: &Meter) -> Self {
        Self::with_histogram(server, descriptor_sets, histogram(meter))
    }

    fn with_histogram(
        server: ServerRole,
        descriptor_sets: &[&'static [u8]],
        duration: Histogram<f64>,
    ) -> Self {
        let mut by_path = HashMap::new();
        let mut methods = Vec::new();
        for set in descriptor_sets {
            for path in method_paths(set).iter() {
                if by_path.contains_key(&*path.path) {
                    continue;
                }
                by_path.insert(path.path.clone(), methods.len());
                methods.push(MethodLabels::new(server, &path.service, &path.method));
            }
        }
        let unknown = MethodLabels::new(server, UNKNOWN, UNKNOWN);
        Self {
            table: Arc::new(MethodTable {
                server,
                by_path,
                methods,
                unknown,
                duration,
            }),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            table: Arc::clone(&self.table),
        }
    }
}

/// The methods a server may answer, each with its attribute sets.
struct MethodTable {
    server: ServerRole,
    by_path: HashMap<Box<str>, usize>,
    methods: Vec<MethodLabels>,
    unknown: MethodLabels,
    duration: Histogram<f64>,
}

impl MethodTable {
    fn method(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    fn record(&self, method: Option<usize>, code: usize, started: Instant) {
        let labels = method
            .and_then(|index| self.methods.get(index))
            .unwrap_or(&self.unknown);
        self.duration
            .record(started.elapsed().as_secs_f64(), labels.for_code(code));
    }
}

/// One method's labels, the attribute set per status code built when first needed.
struct MethodLabels {
    server: &'static str,
    service: opentelemetry::Value,
    method: opentelemetry::Value,
    by_code: [OnceLock<Box<[KeyValue; 4]>>; CODES.len()],
}

impl MethodLabels {
    fn new(server: ServerRole, service: &str, method: &str) -> Self {
        Self {
            server: server.as_str(),
            service: opentelemetry::Value::from(Arc::<str>::from(service)),
            method: opentelemetry::Value::from(Arc::<str>::from(method)),
            by_code: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn for_code(&self, code: usize) -> &[KeyValue] {
        let code = code.min(CODES.len() - 1);
        &self.by_code[code].get_or_init(|| {
            Box::new([
                KeyValue::new("server", self.server),
                KeyValue::new("grpc_service", self.service.clone()),
                KeyValue::new("grpc_method", self.method.clone()),
                KeyValue::new("grpc_code", CODES[code]),
            ])
        })[..]
    }
}

/// `/package.Service/Method`, and its two labels.
struct MethodPath {
    path: Box<str>,
    service: Box<str>,
    method: Box<str>,
}

/// Every method path of an encoded descriptor set, decoded once per process (a
/// process assembles several servers over the same sets).
fn method_paths(set: &'static [u8]) -> Arc<[MethodPath]> {
    type Decoded = Mutex<HashMap<(usize, usize), Arc<[MethodPath]>>>;
    static DECODED: OnceLock<Decoded> = OnceLock::new();
    let key = (set.as_ptr() as usize, set.len());
    let mut decoded = DECODED
        .get_or_init(Decoded::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Arc::clone(
        decoded
            .entry(key)
            .or_insert_with(|| decode_method_paths(set)),
    )
}

fn decode_method_paths(set: &[u8]) -> Arc<[MethodPath]> {
    let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
        // Reflection refuses a malformed set and the server with it; no labels.
        return Arc::from(Vec::new());
    };
    let mut paths = Vec::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let service_name = if package.is_empty() {
                service.name().to_owned()
            } else {
                format!("{package}.{}", service.name())
            };
            for method in &service.method {
                paths.push(MethodPath {
                    path: format!("/{service_name}/{}", method.name()).into(),
                    service: service_name.as_str().into(),
                    method: method.name().into(),
                });
            }
        }
    }
    Arc::from(paths)
}

/// The service [`RpcMetricsLayer`] wraps around a server's routes.
#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    table: Arc<MethodTable>,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Unpin,
{
    type Response = http::Response<RecordingBody<ResBody>>;
    type Error = S::Error;
    type Future = RecordingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            table: Arc::clone(&self.table),
            method: self.table.method(request.uri().path()),
            started: Instant::now(),
        };
        RecordingFuture {
            inner: self.inner.call(request),
            call: Some(call),
        }
    }
}

/// A call not yet recorded.
struct Call {
    table: Arc<MethodTable>,
    method: Option<usize>,
    started: Instant,
}

impl Call {
    fn record(self, code: usize) {
        self.table.record(self.method, code, self.started);
    }
}

/// The status code in a `grpc-status` header or trailer, if there is one.
fn status_code(headers: &http::HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|code| code.parse::<usize>().ok())
            .filter(|code| *code < CODES.len())
            .unwrap_or(UNKNOWN_CODE),
    )
}

/// A call's future: hands its call on to the response body, or records it at
/// once when the answer is trailers-only (the status in the headers).
pub struct RecordingFuture<F> {
    inner: F,
    call: Option<Call>,
}

impl<F, ResBody, E> std::future::Future for RecordingFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<ResBody>, E>> + Unpin,
{
    type Output = Result<http::Response<RecordingBody<ResBody>>, E>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let outcome = ready!(std::pin::Pin::new(&mut this.inner).poll(cx));
        let call = this.call.take();
        Poll::Ready(match outcome {
            Ok(response) => {
                let pending = match (call, status_code(response.headers())) {
                    (Some(call), Some(code)) => {
                        call.record(code);
                        None
                    }
                    (call, _) => call,
                };
                Ok(response.map(|inner| RecordingBody {
                    inner,
                    call: pending,
                }))
            }
            Err(error) => {
                if let Some(call) = call {
                    call.record(UNKNOWN_CODE);
                }
                Err(error)
            }
        })
    }
}

impl<F> Drop for RecordingFuture<F> {
    fn drop(&mut self) {
        // Dropped before answering: the deadline passed or the client left.
        if let Some(call) = self.call.take() {
            call.record(CANCELLED);
        }
    }
}

/// A response body that records its call when the trailers carry the status,
/// when it ends without them, or (as `CANCELLED`) when dropped before either.
pub struct RecordingBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> HttpBody for RecordingBody<B>
where
    B: HttpBody + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx));
        if this.call.is_some() {
            let code = match &frame {
                Some(Ok(frame)) => frame
                    .trailers_ref()
                    .map(|trailers| status_code(trailers).unwrap_or(UNKNOWN_CODE)),
                // A body that ends or breaks without a status.
                None | Some(Err(_)) => Some(UNKNOWN_CODE),
            };
            if let Some(code) = code
                && let Some(call) = this.call.take()
            {
                call.record(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for RecordingBody<B> {
    fn drop(&mut self) {
        // A stream the client left, or the server cut, before its status.
        if let Some(call) = self.call.take() {
            call.record(CANCELLED);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    use tonic::body::Body;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::metrics::Exposition;

    fn layer() -> (RpcMetricsLayer, Exposition, SdkMeterProvider) {
        let exposition = Exposition::new();
        let provider = SdkMeterProvider::builder()
            .with_reader(exposition.reader())
            .build();
        let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "test");
        let layer = RpcMetricsLayer::on_meter(
            ServerRole::Backend,
            &[tonic_health::pb::FILE_DESCRIPTOR_SET],
            &meter,
        );
        (layer, exposition, provider)
    }

    /// Answers every call with `status`, trailers-only or after a message.
    fn answering(status: tonic::Status, trailers_only: bool) -> crate::HttpService {
        crate::HttpService::new(tower::service_fn(move |_request: http::Request<Body>| {
            let status = status.clone();
            async move {
                if trailers_only {
                    return Ok::<_, Infallible>(status.into_http());
                }
                let mut trailers = http::HeaderMap::new();
                status
                    .add_header(&mut trailers)
                    .expect("a status makes headers");
                let frames = futures::stream::iter([
                    Ok::<_, Infallible>(Frame::data(tonic::codegen::Bytes::from_static(
                        b"\0\0\0\0\0",
                    ))),
                    Ok(Frame::trailers(trailers)),
                ]);
                Ok(http::Response::new(Body::new(
                    http_body_util::StreamBody::new(frames),
                )))
            }
        }))
    }

    async fn call(layer: &RpcMetricsLayer, service: crate::HttpService, path: &str) {
        let response = layer
            .layer(service)
            .oneshot(
                http::Request::builder()
                    .uri(path)
                    .body(Body::empty())
                    .expect("valid"),
            )
            .await
            .expect("infallible");
        response.into_body().collect().await.expect("body reads");
    }

    fn count_line(scraped: &str, service: &str, method: &str, code: &str) -> Option<String> {
        let prefix = format!(
            "attune_rpc_server_duration_seconds_count{{grpc_code=\"{code}\",grpc_method=\"{method}\",grpc_service=\"{service}\",server=\"backend\"}} "
        );
        scraped
            .lines()
            .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }

    #[tokio::test]
    async fn each_call_is_counted_by_method_and_status_from_headers_or_trailers() {
        let (layer, exposition, _provider) = layer();
        let check = "/grpc.health.v1.Health/Check";
        call(&layer, answering(tonic::Status::ok(""), false), check).await;
        call(&layer, answering(tonic::Status::ok(""), false), check).await;
        call(
            &layer,
            answering(tonic::Status::invalid_argument("no"), true),
            check,
        )
        .await;
        call(
            &layer,
            answering(tonic::Status::not_found("no"), false),
            check,
        )
        .await;

        let scraped = exposition.scrape().expect("live provider");
        let health = "grpc.health.v1.Health";
        assert_eq!(
            count_line(&scraped, health, "Check", "OK").as_deref(),
            Some("2"),
            "{scraped}"
        );
        assert_eq!(
            count_line(&scraped, health, "Check", "INVALID_ARGUMENT").as_deref(),
            Some("1")
        );
        assert_eq!(
            count_line(&scraped, health, "Check", "NOT_FOUND").as_deref(),
            Some("1")
        );
        let le = format!("le=\"{}\"", BUCKETS[0]);
        assert!(scraped.contains(&le), "{scraped}");
    }

    #[tokio::test]
    async fn paths_no_descriptor_names_share_one_label() {
        let (layer, exposition, _provider) = layer();
        for path in ["/evil.Service/One", "/evil.Service/Two", "/nonsense"] {
            call(
                &layer,
                answering(tonic::Status::unimplemented(""), true),
                path,
            )
            .await;
        }
        let scraped = exposition.scrape().expect("live provider");
        assert_eq!(
            count_line(&scraped, UNKNOWN, UNKNOWN, "UNIMPLEMENTED").as_deref(),
            Some("3"),
            "{scraped}"
        );
        assert!(!scraped.contains("evil"), "{scraped}");
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_status_is_cancelled() {
        let (layer, exposition, _provider) = layer();
        let response = layer
            .layer(answering(tonic::Status::ok(""), false))
            .oneshot(
                http::Request::builder()
                    .uri("/grpc.health.v1.Health/Watch")
                    .body(Body::empty())
                    .expect("valid"),
            )
            .await
            .expect("infallible");
        drop(response);
        let scraped = exposition.scrape().expect("live provider");
        assert_eq!(
            count_line(&scraped, "grpc.health.v1.Health", "Watch", "CANCELLED").as_deref(),
            Some("1"),
            "{scraped}"
        );
    }
}
