//! Logs, traces, and W3C trace context across gRPC calls.
//!
//! Logs go to stderr (human or JSON) filtered by `log_filter` (`RUST_LOG` wins).
//! Every `tracing` span also gets an OpenTelemetry context, whether or not spans are
//! exported, so that a process without a collector still passes its callers' trace
//! on to the services it calls; with `otlp_endpoint` set, spans are exported over
//! OTLP/gRPC in batches. The trace filter is independent of the log filter: quiet
//! logs (`warn`) do not break traces.
//!
//! Across gRPC: [`TraceContextLayer`] (server, installed by
//! [`GrpcServer`](crate::server::GrpcServer)) opens a `grpc.request` span whose
//! parent is the caller's `traceparent`; [`TraceContextInterceptor`] (client) sends
//! the current span's context along.

use std::future::Future;
use std::sync::{Arc, Once};
use std::task::{Context as TaskContext, Poll};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `log_filter` (or `RUST_LOG`) is not valid filter syntax.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built (e.g. a malformed endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The exporter's runtime could not start.
    #[error("cannot start the OTLP export runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Keeps telemetry running; dropping it flushes pending spans and shuts the
/// exporter down. Hold it in `main` until the server has stopped.
#[must_use = "dropping the guard shuts trace export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "trace export did not shut down cleanly");
        }
        // `shutdown_background` never blocks, so dropping the guard inside an async
        // context (a test, `main`) cannot panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Installs the global subscriber (logs + OpenTelemetry) and the W3C propagator.
///
/// Safe to call more than once: when a subscriber is already installed (another
/// test got there first), it is left in place and the returned guard holds nothing.
pub fn init(config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());

    let log_filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.log_filter)?,
    };
    let endpoint = config
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let (provider, runtime) = match endpoint {
        Some(endpoint) => {
            let (provider, runtime) = exporting_provider(endpoint, &config.service_name)?;
            (provider, Some(runtime))
        }
        None => (local_provider(&config.service_name), None),
    };

    let fmt_layer = match config.log_format {
        LogFormat::Human => fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed(),
    };
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("attune"))
        .with_filter(trace_filter());

    let installed = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    if installed.is_err() {
        // Another subscriber won; this one's provider would export nothing.
        let _ = provider.shutdown();
        return Ok(TelemetryGuard {
            provider: None,
            runtime,
        });
    }
    global::set_tracer_provider(provider.clone());
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP/gRPC");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
        runtime,
    })
}

/// A quiet subscriber for tests: `warn` (or `RUST_LOG`), through the test writer so
/// output shows only for failing tests, with OpenTelemetry contexts so trace
/// propagation can be tested. Installs once; later calls do nothing.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        let provider = local_provider("attune-test");
        let _ = tracing_subscriber::registry()
            .with(fmt::layer().with_test_writer().with_filter(filter))
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("attune"))
                    .with_filter(trace_filter()),
            )
            .try_init();
    });
}

/// Spans worth a trace: Attune's at info and above, never the transport's own
/// (which would also trace the exporter's calls to the collector).
fn trace_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

/// Gives spans OpenTelemetry ids and exports nothing.
fn local_provider(service_name: &str) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_resource(resource(service_name))
        .build()
}

/// Batch-exports spans over OTLP/gRPC. The SDK's batch processor runs on its own
/// thread, where tonic finds no Tokio reactor; so the exporter's channel and every
/// export run on a small runtime owned by the guard, whatever runtime (if any) the
/// application uses.
fn exporting_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), TelemetryError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("attune-otlp")
        .enable_all()
        .build()
        .map_err(TelemetryError::Runtime)?;
    let exporter = {
        let _in_runtime = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?
    };
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        runtime: runtime.handle().clone(),
    };
    let provider = SdkTracerProvider::builder()
        .with_resource(resource(service_name))
        .with_batch_exporter(exporter)
        .build();
    Ok((provider, runtime))
}

/// Runs an exporter's futures on a given Tokio runtime.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let inner = Arc::clone(&self.inner);
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await.unwrap_or_else(|err| {
                Err(OTelSdkError::InternalFailure(format!(
                    "span export task failed: {err}"
                )))
            })
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any export shares the Arc.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The OpenTelemetry context a caller sent in `traceparent`/`tracestate` headers.
/// Uses the W3C propagator directly, so it works even if [`init`] never ran.
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `cx` into gRPC metadata as `traceparent`/`tracestate`.
pub fn inject_context(cx: &Context, metadata: &mut MetadataMap) {
    TraceContextPropagator::new().inject_context(cx, &mut MetadataInjector(metadata));
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes ASCII header names and values; skip anything else.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Opens a `grpc.request` span per request, child of the caller's trace.
fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = path,
    );
    let parent = extract_context(request.headers());
    // Without a remote parent the span starts its own trace.
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is no trace.
        let _ = span.set_parent(parent);
    }
    span
}

/// Server-side tower layer: each request runs inside a `grpc.request` span
/// (`rpc.method` = the path) whose OpenTelemetry parent is the caller's W3C
/// `traceparent`, so one trace spans gateway and services.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextLayer;

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

/// The service [`TraceContextLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = request_span(&request);
        let future = {
            // Work the inner service does before returning its future is traced too.
            let _entered = span.enter();
            self.inner.call(request)
        };
        future.instrument(span)
    }
}

/// Client-side interceptor sending the current span's trace context in
/// `traceparent`/`tracestate` metadata:
/// `XClient::with_interceptor(channel, TraceContextInterceptor)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        inject_context(&cx, request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceId;
    use tonic::service::Interceptor as _;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = local_provider("test");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn traced_request() -> http::Request<()> {
        http::Request::builder()
            .uri("/attune.consent.v1.ConsentService/CheckConsent")
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .body(())
            .expect("static request is valid")
    }

    fn outgoing_headers() -> http::HeaderMap {
        let request = TraceContextInterceptor
            .call(tonic::Request::new(()))
            .expect("the interceptor never refuses");
        request.metadata().clone().into_headers()
    }

    #[test]
    fn server_span_joins_callers_trace_and_client_passes_it_on() {
        with_otel(|| {
            let span = request_span(&traced_request());
            let _entered = span.enter();
            let headers = outgoing_headers();

            let forwarded = extract_context(&headers);
            let forwarded = forwarded.span();
            let forwarded = forwarded.span_context();
            assert_eq!(
                forwarded.trace_id(),
                TraceId::from_hex(TRACE_ID).expect("valid hex")
            );
            // The child carries its own span id, not the caller's.
            assert_ne!(forwarded.span_id().to_string(), "00f067aa0ba902b7");
        });
    }

    #[test]
    fn inject_then_extract_round_trips_a_fresh_trace() {
        with_otel(|| {
            let span = tracing::info_span!("work");
            let expected = span.context().span().span_context().trace_id();
            assert_ne!(expected, TraceId::INVALID);
            let _entered = span.enter();
            let headers = outgoing_headers();
            let extracted = extract_context(&headers);
            assert_eq!(extracted.span().span_context().trace_id(), expected);
        });
    }

    #[test]
    fn no_trace_no_header() {
        // Outside any span there is nothing to propagate.
        assert!(outgoing_headers().get("traceparent").is_none());
    }

    #[test]
    fn init_twice_does_not_panic() {
        let config = TelemetryConfig {
            log_filter: "warn".into(),
            ..TelemetryConfig::default()
        };
        let first = init(&config).expect("valid config initialises");
        let second = init(&config).expect("second init tolerates the installed subscriber");
        drop((first, second));
        init_for_tests();
        init_for_tests();
    }

    #[test]
    fn bad_filter_is_reported() {
        if std::env::var_os("RUST_LOG").is_some() {
            return; // RUST_LOG would win over the bad filter.
        }
        let config = TelemetryConfig {
            log_filter: "info,[".into(),
            ..TelemetryConfig::default()
        };
        assert!(matches!(init(&config), Err(TelemetryError::Filter(_))));
    }

    #[tokio::test]
    async fn otlp_guard_drops_cleanly_without_a_collector() {
        // Nothing listens on port 9 on loopback: export fails quietly, drop stays bounded.
        let (provider, runtime) =
            exporting_provider("http://127.0.0.1:9", "test").expect("exporter builds lazily");
        let guard = TelemetryGuard {
            provider: Some(provider),
            runtime: Some(runtime),
        };
        drop(guard);
    }
}
