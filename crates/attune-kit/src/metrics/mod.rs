//! Prometheus metrics: what every process exposes on `telemetry.metrics_listen`.
//!
//! Every instrument lives on the global OpenTelemetry meter provider, which
//! [`telemetry::init`](crate::telemetry::init) installs when OTLP export or this
//! endpoint is configured. The endpoint is one more reader of that provider, a
//! pull reader ([`Exposition`]) next to the optional OTLP periodic one: a scrape
//! collects every instrument at that moment and [`encode`] writes it as
//! Prometheus text. The instruments' code knows neither reader.
//!
//! - [`rpc`]: every call on every server, by gRPC service, method and status code.
//! - [`pool`]: each database pool's connections in use, idle and allowed.
//! - The consent checker's counters and freshness (`attune.consent_checker.*`,
//!   [`crate::consent`]) and each feed follower's lag and position
//!   (`attune.feed_follower.*`, [`crate::follower`]) register themselves.
//! - [`endpoint`]: `GET /metrics` over plain HTTP/1.
//!
//! A scrape writes in the text format, built here over the SDK's manual reader
//! rather than with `opentelemetry-prometheus`: that exporter brings the
//! `prometheus` crate (its registry, its own protobuf model of a metric family)
//! to do what [`encode`] does in a few hundred lines.

pub mod encode;
pub mod endpoint;
pub mod pool;
pub mod rpc;

use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

pub use encode::encode;

/// The pull reader of the process's meter provider: [`scrape`](Self::scrape)
/// collects and encodes every instrument now. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Exposition {
    reader: Arc<ManualReader>,
}

impl Exposition {
    /// A reader not yet attached to a provider: pass [`reader`](Self::reader) to
    /// `SdkMeterProvider::builder().with_reader(..)`. Cumulative, as Prometheus
    /// expects.
    pub(crate) fn new() -> Self {
        Self {
            reader: Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Cumulative)
                    .build(),
            ),
        }
    }

    /// The reader to register with the meter provider.
    pub(crate) fn reader(&self) -> impl MetricReader + use<> {
        PullReader(Arc::clone(&self.reader))
    }

    /// Every instrument's current value in the Prometheus text format; fails once
    /// the provider is shut down.
    pub fn scrape(&self) -> Result<String, OTelSdkError> {
        let mut metrics = ResourceMetrics::default();
        self.reader.collect(&mut metrics)?;
        Ok(encode(&metrics))
    }
}

/// A manual reader shared between the provider (which owns its reader) and the
/// endpoint (which collects through it).
#[derive(Debug)]
pub(crate) struct PullReader(pub(crate) Arc<ManualReader>);

impl MetricReader for PullReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, metrics: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(metrics)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
