//! Logs, traces, metrics, and W3C trace context across gRPC calls.
//!
//! Logs go to stderr (human or JSON) filtered by `log_filter` (`RUST_LOG` wins).
//! With `otlp_endpoint` set, every `tracing` span also gets an OpenTelemetry
//! context and spans are exported over OTLP/gRPC in batches; the trace filter is
//! independent of the log filter: quiet logs (`warn`) do not break traces.
//! Without an endpoint no span is recorded (each would be built and dropped at
//! every request), yet a process without a collector still passes its callers'
//! trace on to the services it calls: the W3C context a request came with is
//! current while it is served, and is sent on unchanged.
//!
//! Metrics: with `otlp_endpoint` or `metrics_listen` set, [`init`] also installs
//! the global meter provider. Every instrument on
//! `opentelemetry::global::meter(..)` (the consent checker's
//! `attune.consent_checker.*`, for one) is then pushed over OTLP/gRPC every
//! [`METRIC_EXPORT_INTERVAL`] by a periodic reader, and/or read at each scrape by
//! a pull reader ([`TelemetryGuard::exposition`], served by
//! [`crate::metrics::endpoint`]): both readers of one provider see the same
//! instruments, and the instruments' code knows neither. With neither set the
//! no-op provider stays and instruments cost nothing. Instruments bind to the
//! global provider as it is when they are created, so `init` runs before any
//! service starts.
//!
//! Database: with an endpoint set, [`crate::db::connect`] gives every statement a
//! request runs a `db.query` client span under the request's span (see
//! `db/spans.rs`); without one, statements are not timed at all.
//!
//! JSON log lines carry `trace_id` and `span_id` when they are written inside
//! a trace ([`WithTraceIds`]): the current span's ids when spans are exported,
//! else the ids the caller sent in `traceparent` (this process records no span
//! of its own then, so the caller's span is the one the line belongs to).
//!
//! Across gRPC: [`TraceContextLayer`] (server, installed by
//! [`GrpcServer`](crate::server::GrpcServer)) opens a `grpc.request` span whose
//! parent is the caller's `traceparent` (target [`REQUEST_SPAN_TARGET`], at
//! debug: always traced, in log lines only when asked for); [`TraceContextInterceptor`] (client) sends
//! the current span's context along.

use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::{LogFormat, TelemetryConfig};
use crate::metrics::Exposition;

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

/// How often the metrics reader pushes every instrument's value to the collector.
pub const METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps telemetry running; dropping it exports the last metrics, flushes pending
/// spans and shuts the exporters down. Hold it in `main` until the server has
/// stopped.
#[must_use = "dropping the guard shuts trace and metric export down"]
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
    exposition: Option<Exposition>,
}

impl TelemetryGuard {
    /// The pull reader for the Prometheus endpoint, when `metrics_listen` is set
    /// and this `init` installed the meter provider.
    pub fn exposition(&self) -> Option<Exposition> {
        self.exposition.clone()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Metrics first: shutting the reader down exports once more, on the runtime.
        if let Some(provider) = self.meter_provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "metric export did not shut down cleanly");
        }
        if let Some(provider) = self.tracer_provider.take()
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

/// Installs the global subscriber (logs + OpenTelemetry), the W3C propagator and,
/// with `otlp_endpoint` or `metrics_listen` set, the global meter provider.
///
/// Safe to call more than once: when a subscriber is already installed (another
/// test got there first), it is left in place, no meter provider is installed, and
/// the returned guard holds nothing.
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
    // The scrape endpoint's reader, next to the OTLP one or alone.
    let exposition = config.metrics_listen.map(|_| Exposition::new());
    // Without a collector no span is recorded at all: a request's span is then
    // disabled (unless logs ask for it) and its caller's trace context passes
    // through to the services it calls (see `traced_call`).
    let (provider, meter_provider, runtime) = match endpoint {
        Some(endpoint) => {
            let exporting = Exporting::start(endpoint, &config.service_name, exposition.as_ref())?;
            (
                Some(exporting.tracer_provider),
                Some(exporting.meter_provider),
                Some(exporting.runtime),
            )
        }
        None => (
            None,
            exposition.as_ref().map(|exposition| {
                SdkMeterProvider::builder()
                    .with_resource(resource(&config.service_name))
                    .with_reader(exposition.reader())
                    .build()
            }),
            None,
        ),
    };

    let fmt_layer = match config.log_format {
        LogFormat::Human => fmt::layer()
            // Colour codes only for a person at a terminal, never into a file or a
            // log collector.
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .map_event_format(WithTraceIds)
            .with_writer(std::io::stderr)
            .with_filter(log_filter)
            .boxed(),
    };
    let otel_layer = provider.as_ref().map(otel_layer);

    let installed = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    if installed.is_err() {
        // Another subscriber won; this one's providers would export nothing (or
        // replace the metrics of whoever got there first).
        if let Some(meter_provider) = meter_provider {
            let _ = meter_provider.shutdown();
        }
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Ok(TelemetryGuard {
            tracer_provider: None,
            meter_provider: None,
            runtime,
            exposition: None,
        });
    }
    if let Some(provider) = &provider {
        global::set_tracer_provider(provider.clone());
        TRACES_EXPORTED.store(true, Ordering::Release);
    }
    if let Some(meter_provider) = &meter_provider {
        global::set_meter_provider(meter_provider.clone());
    }
    if let Some(endpoint) = endpoint {
        tracing::info!(%endpoint, "exporting traces and metrics over OTLP/gRPC");
    }
    Ok(TelemetryGuard {
        tracer_provider: provider,
        meter_provider,
        runtime,
        exposition,
    })
}

/// Set once [`init`] has installed an exporting tracer provider.
static TRACES_EXPORTED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (an OTLP endpoint is configured and
/// [`init`] installed it): what is only worth its cost when someone reads the
/// spans (a span per database statement) checks this first.
pub fn exports_traces() -> bool {
    TRACES_EXPORTED.load(Ordering::Acquire)
}

/// A JSON log line's format with `"trace_id"` and `"span_id"` first when the
/// line is written inside a trace (see [`current_context`]): the inner format
/// writes the line, and the ids go in after its opening brace. Outside a trace
/// the line is the inner format's, unchanged and uncopied.
#[derive(Debug, Clone)]
pub struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
    FormattedFields<N>: 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let cx = current_context();
        let span = cx.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id(),
                ids.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
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
            .with(otel_layer(&provider))
            .try_init();
    });
}

/// The layer giving `tracing` spans OpenTelemetry contexts, as cheap per span as
/// Attune's traces allow.
fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Busy/idle times (a clock read at every enter and exit) and thread attributes
    // are per-span costs on every request that no Attune trace uses. Nor does
    // anything read `opentelemetry::Context::current()`: trace context is always
    // taken from the `tracing` span (`OpenTelemetrySpanExt::context`), so the
    // context is not attached at every poll of every traced future.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("attune"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false)
        .with_filter(trace_filter())
}

/// Spans worth a trace: Attune's at info and above and every request's
/// (`grpc.request`, at debug), never the transport's own
/// (which would also trace the exporter's calls to the collector).
fn trace_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target(REQUEST_SPAN_TARGET, LevelFilter::DEBUG)
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

/// Export over OTLP/gRPC: spans in batches, metrics every [`METRIC_EXPORT_INTERVAL`].
///
/// The SDK's batch processor and periodic reader each run on a thread of their
/// own, where tonic finds no Tokio reactor; so the exporters' channels and every
/// export run on a small runtime owned by the guard, whatever runtime (if any) the
/// application uses.
struct Exporting {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    runtime: tokio::runtime::Runtime,
}

impl Exporting {
    fn start(
        endpoint: &str,
        service_name: &str,
        scrape: Option<&Exposition>,
    ) -> Result<Self, TelemetryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("attune-otlp")
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let exporters = {
            let _in_runtime = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .and_then(|spans| {
                    let metrics = opentelemetry_otlp::MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .build()?;
                    Ok((spans, metrics))
                })
        };
        let (span_exporter, metric_exporter) = match exporters {
            Ok(exporters) => exporters,
            Err(err) => {
                // Dropping a runtime waits for it, which panics in an async `main`.
                runtime.shutdown_background();
                return Err(err.into());
            }
        };
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource(service_name))
            .with_batch_exporter(OnRuntime::new(span_exporter, &runtime))
            .build();
        let reader = PeriodicReader::builder(OnRuntime::new(metric_exporter, &runtime))
            .with_interval(METRIC_EXPORT_INTERVAL)
            .build();
        let mut meter_provider = SdkMeterProvider::builder()
            .with_resource(resource(service_name))
            .with_reader(reader);
        if let Some(scrape) = scrape {
            meter_provider = meter_provider.with_reader(scrape.reader());
        }
        let meter_provider = meter_provider.build();
        Ok(Self {
            tracer_provider,
            meter_provider,
            runtime,
        })
    }
}

/// Runs an exporter's futures on a given Tokio runtime.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E> OnRuntime<E> {
    fn new(inner: E, runtime: &tokio::runtime::Runtime) -> Self {
        Self {
            inner: Arc::new(inner),
            runtime: runtime.handle().clone(),
        }
    }
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

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
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

impl<E: PushMetricExporter> PushMetricExporter for OnRuntime<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        // Metrics are lent, not given, so the export cannot move to a task as spans
        // do. It is polled where the reader awaits it, but inside the runtime's
        // context: whatever timers and tasks it creates belong to the runtime, whose
        // worker drives the connection and wakes the reader.
        let export = {
            let _in_runtime = self.runtime.enter();
            self.inner.export(metrics)
        };
        let mut export = pin!(export);
        std::future::poll_fn(|cx| {
            let _in_runtime = self.runtime.enter();
            export.as_mut().poll(cx)
        })
        .await
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
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

/// Writes the current span's context into HTTP headers as
/// `traceparent`/`tracestate`, replacing the caller's: a proxy's way, without
/// rebuilding the request as gRPC metadata. Outside any trace the headers stay as
/// they are.
pub fn inject_current_span(headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&current_context(), &mut HeaderInjector(headers));
}

/// The trace context a database statement run now belongs to: the current
/// request's span (`grpc.request`, or in one process the gateway's span a
/// backend runs in) when it is recorded and sampled; `None` outside requests
/// (background tasks) and in traces not sampled.
pub(crate) fn request_context() -> Option<Context> {
    let span = tracing::Span::current();
    let in_request = span.metadata().is_some_and(|metadata| {
        metadata.name() == REQUEST_SPAN_NAME && metadata.target() == REQUEST_SPAN_TARGET
    });
    if !in_request {
        return None;
    }
    let cx = span.context();
    let sampled = cx.span().span_context().is_sampled();
    sampled.then_some(cx)
}

/// The trace context to send on: the current span's or, where no span is
/// recorded, the one the request being served passed through with.
fn current_context() -> Context {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        cx
    } else {
        Context::current()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes ASCII header names and values; skip anything else.
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
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

/// The target of the per-request `grpc.request` span. Traces always get it; logs
/// show it as the context of a request's log lines from `debug` on
/// (`RUST_LOG=info,attune::grpc=debug`).
pub const REQUEST_SPAN_TARGET: &str = "attune::grpc";

/// The name of the per-request span.
pub const REQUEST_SPAN_NAME: &str = "grpc.request";

/// Opens a `grpc.request` span per request, child of the caller's trace `parent`.
fn request_span<B>(request: &http::Request<B>, parent: &Context) -> tracing::Span {
    let path = request.uri().path();
    // At `debug`, so that the log layer (at its default `info`) never sees it:
    // formatting its fields into every request's span cost the log layer more
    // than the call's own validation and cache lookup. The trace filter takes it
    // at any log level. As fields (not `set_attribute`) the attributes cost no
    // lookup of the span's OpenTelemetry data; Display, not Debug, copies the path
    // instead of escaping it character by character.
    let span = tracing::span!(
        target: REQUEST_SPAN_TARGET,
        tracing::Level::DEBUG,
        REQUEST_SPAN_NAME,
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %path,
    );
    // Without a remote parent the span starts its own trace.
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then no span is
        // recorded and the caller's context passes through (see `traced_call`).
        let _ = span.set_parent(parent.clone());
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
        TraceContextService {
            inner,
            joins_current_span: false,
        }
    }
}

/// The service [`TraceContextLayer`] (or [`InProcessTraceLayer`]) wraps around a
/// server's routes.
#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
    /// In process ([`InProcessTraceLayer`]): a call made inside a recorded span
    /// stays in it instead of opening its own.
    joins_current_span: bool,
}

impl<S, B> tower::Service<http::Request<B>> for TraceContextService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.joins_current_span || tracing::Span::current().is_none() {
            return traced_call(&mut self.inner, request);
        }
        // The caller's span is entered whenever this future is polled.
        self.inner
            .call(request)
            .with_context(Context::new())
            .instrument(tracing::Span::none())
    }
}

/// A request's future, inside its span and, where no span is recorded, with the
/// caller's trace context current (see [`TraceContextLayer`]).
pub type RequestFuture<F> = tracing::instrument::Instrumented<WithContext<F>>;

/// Calls `inner` in a new `grpc.request` span, child of the caller's trace.
///
/// The caller's context is also made current while the call runs: where no
/// OpenTelemetry layer is installed (no OTLP endpoint) no span of this process
/// exists for callees to hang under, and [`TraceContextInterceptor`] and
/// [`inject_current_span`] then pass the caller's trace on unchanged, as a proxy
/// that does not trace should. With no layer at all wanting the span (logs below
/// debug too) it is disabled and costs next to nothing.
fn traced_call<S, B>(inner: &mut S, request: http::Request<B>) -> RequestFuture<S::Future>
where
    S: tower::Service<http::Request<B>>,
{
    let parent = extract_context(request.headers());
    let span = request_span(&request, &parent);
    let future = {
        // Work the inner service does before returning its future is traced too.
        let _entered = span.enter();
        let _parent = parent.clone().attach();
        inner.call(request)
    };
    future.with_context(parent).instrument(span)
}

/// In-process variant of [`TraceContextLayer`], for a server the gateway calls
/// directly ([`LocalServer`](crate::server::LocalServer)): the call already runs
/// in the gateway's `grpc.request` span, in the same task, so it stays there
/// rather than open a second span per call (each costs as much as the backend's
/// own work on a cache hit). Called from outside any recorded span, it does what
/// [`TraceContextLayer`] does.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessTraceLayer;

impl<S> tower::Layer<S> for InProcessTraceLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService {
            inner,
            joins_current_span: true,
        }
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
        inject_context(&current_context(), request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::TraceId;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::TcpListenerStream;
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
            let request = traced_request();
            let span = request_span(&request, &extract_context(request.headers()));
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

    /// The trace id and span id current when an in-process server's service runs.
    fn in_process_call_context() -> (TraceId, opentelemetry::trace::SpanId) {
        use tower::{Layer as _, Service as _};
        let seen = Arc::new(std::sync::Mutex::new(None));
        let inner = {
            let seen = Arc::clone(&seen);
            tower::service_fn(move |_request: http::Request<()>| {
                let cx = tracing::Span::current().context();
                let span = cx.span();
                let ids = (
                    span.span_context().trace_id(),
                    span.span_context().span_id(),
                );
                *seen.lock().expect("not poisoned") = Some(ids);
                std::future::ready(Ok::<_, std::convert::Infallible>(()))
            })
        };
        drop(InProcessTraceLayer.layer(inner).call(traced_request()));
        let ids = seen.lock().expect("not poisoned").take();
        ids.expect("the inner service was called")
    }

    #[test]
    fn an_in_process_call_runs_in_its_callers_span() {
        with_otel(|| {
            let gateway = tracing::info_span!("gateway");
            let expected = gateway.context().span().span_context().clone();
            let _entered = gateway.enter();
            // No second span, and the caller's headers are not read again.
            assert_eq!(
                in_process_call_context(),
                (expected.trace_id(), expected.span_id())
            );
        });
    }

    #[test]
    fn an_in_process_call_outside_any_span_joins_the_trace_it_was_sent() {
        with_otel(|| {
            let (trace_id, span_id) = in_process_call_context();
            assert_eq!(trace_id, TraceId::from_hex(TRACE_ID).expect("valid hex"));
            assert_ne!(span_id.to_string(), "00f067aa0ba902b7");
        });
    }

    #[test]
    fn headers_get_the_current_span_and_lose_the_callers() {
        with_otel(|| {
            let mut headers = traced_request().headers().clone();
            let span = tracing::info_span!("gateway");
            let expected = span.context().span().span_context().span_id();
            let _entered = span.enter();
            inject_current_span(&mut headers);
            let sent = extract_context(&headers);
            assert_eq!(sent.span().span_context().span_id(), expected);
            assert_eq!(headers.get_all("traceparent").iter().count(), 1);
        });
    }

    #[test]
    fn without_an_otel_layer_the_callers_trace_passes_through_unchanged() {
        use tower::{Layer as _, Service as _};
        // A process without an OTLP endpoint: logs only, no span recorded.
        let subscriber = tracing_subscriber::registry().with(fmt::layer().with_test_writer());
        let sent = tracing::subscriber::with_default(subscriber, || {
            let mut service = TraceContextLayer.layer(tower::service_fn(|_request| {
                // What a handler sends on, when called and when its future runs.
                let at_call = outgoing_headers();
                async move { Ok::<_, std::convert::Infallible>((at_call, outgoing_headers())) }
            }));
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime starts")
                .block_on(service.call(traced_request()))
                .expect("infallible")
        });
        let caller = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
        for headers in [sent.0, sent.1] {
            assert_eq!(headers["traceparent"], caller.as_str());
        }
        // Once the call is over, its trace is no longer current.
        assert!(outgoing_headers().get("traceparent").is_none());
    }

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_written_in_a_callers_trace_names_it_first() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .json()
                .map_event_format(WithTraceIds)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any call");
            // What `traced_call` makes current while a call is served without
            // an exporter.
            let _call = extract_context(traced_request().headers()).attach();
            tracing::info!(count = 2, "while serving");
        });
        let output = String::from_utf8(captured.0.lock().expect("not poisoned").clone())
            .expect("JSON is UTF-8");
        let lines: Vec<_> = output.lines().collect();
        assert_eq!(lines.len(), 2, "{output}");
        assert!(!lines[0].contains("trace_id"), "{}", lines[0]);
        let prefix = format!("{{\"trace_id\":\"{TRACE_ID}\",\"span_id\":\"00f067aa0ba902b7\",");
        assert!(lines[1].starts_with(&prefix), "{}", lines[1]);
        let line: serde_json::Value =
            serde_json::from_str(lines[1]).expect("still one JSON object");
        assert_eq!(line["fields"]["count"], 2);
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

    fn guard(exporting: Exporting) -> TelemetryGuard {
        TelemetryGuard {
            tracer_provider: Some(exporting.tracer_provider),
            meter_provider: Some(exporting.meter_provider),
            runtime: Some(exporting.runtime),
            exposition: None,
        }
    }

    #[tokio::test]
    async fn otlp_guard_drops_cleanly_without_a_collector() {
        // Nothing listens on port 9 on loopback: export fails quietly, drop stays bounded.
        let exporting =
            Exporting::start("http://127.0.0.1:9", "test", None).expect("exporters build lazily");
        let counter = exporting
            .meter_provider
            .meter("test")
            .u64_counter("test.unexported")
            .build();
        counter.add(1, &[]);
        drop(guard(exporting));
    }

    #[tokio::test]
    async fn a_malformed_endpoint_is_reported_without_panicking() {
        // Inside a runtime, as in `main`: the export runtime must not be dropped here.
        let err = Exporting::start("http://[::1", "test", None).err();
        assert!(matches!(err, Some(TelemetryError::Exporter(_))), "{err:?}");
    }

    /// A collector that hands every metrics export it receives to the test.
    struct Collector(mpsc::UnboundedSender<ExportMetricsServiceRequest>);

    #[tonic::async_trait]
    impl MetricsService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportMetricsServiceResponse {
                partial_success: None,
            }))
        }
    }

    /// The value of sum `name` in an export, if it holds one.
    fn sum_value(export: &ExportMetricsServiceRequest, name: &str) -> Option<i64> {
        export
            .resource_metrics
            .iter()
            .flat_map(|resource| &resource.scope_metrics)
            .flat_map(|scope| &scope.metrics)
            .filter(|metric| metric.name == name)
            .find_map(|metric| match &metric.data {
                Some(metric::Data::Sum(sum)) => sum.data_points.first(),
                _ => None,
            })
            .and_then(|point| match point.value {
                Some(number_data_point::Value::AsInt(value)) => Some(value),
                _ => None,
            })
    }

    #[tokio::test]
    async fn metrics_reach_the_collector_from_the_readers_own_thread() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback binds");
        let address = listener
            .local_addr()
            .expect("bound listener has an address");
        let (sender, mut exports) = mpsc::unbounded_channel();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MetricsServiceServer::new(Collector(sender)))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );

        let exporting = Exporting::start(&format!("http://{address}"), "test", None)
            .expect("exporters build lazily");
        let counter = exporting
            .meter_provider
            .meter("test")
            .u64_counter("test.exported")
            .build();
        counter.add(3, &[]);
        // Flushing blocks until the reader's thread has exported, and the collector
        // runs on this test's runtime: block elsewhere.
        let flushed = tokio::task::spawn_blocking(move || {
            let flushed = exporting.meter_provider.force_flush();
            drop(guard(exporting));
            flushed
        })
        .await
        .expect("flush does not panic");
        flushed.expect("the collector accepted the export");

        let export = exports.recv().await.expect("the collector got an export");
        assert_eq!(sum_value(&export, "test.exported"), Some(3));
        let service = export.resource_metrics[0]
            .resource
            .as_ref()
            .and_then(|resource| {
                resource
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
            })
            .and_then(|kv| kv.value.as_ref())
            .and_then(|value| value.value.clone());
        assert_eq!(service, Some(any_value::Value::StringValue("test".into())));
    }
}
