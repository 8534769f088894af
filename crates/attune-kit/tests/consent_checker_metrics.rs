//! The consent checker's OpenTelemetry instruments report what it counted.
//!
//! Its own binary, hence its own process: the instruments bind once per process to
//! the global meter provider and sum over every live checker, so this file installs
//! an SDK provider before any checker exists and holds one test only.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

mod support;

use attune_proto::consent::v1 as pb;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};

use support::{ADS, FRESHNESS_BOUND, Setup};

/// An SDK meter provider, installed globally, whose exports the test reads.
fn install_meter_provider() -> (SdkMeterProvider, InMemoryMetricExporter) {
    // Cumulative, as the OTLP exporter sends by default.
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Cumulative)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    (provider, exporter)
}

/// What instrument `attune.consent_checker.<name>` reported in an export.
fn reported<'a>(export: &'a ResourceMetrics, name: &str) -> Option<&'a AggregatedMetrics> {
    let name = format!("attune.consent_checker.{name}");
    export
        .scope_metrics()
        .flat_map(|scope| scope.metrics())
        .find(|metric| metric.name() == name)
        .map(|metric| metric.data())
}

/// The value of an observable counter (a sum with one data point).
fn counter(export: &ResourceMetrics, name: &str) -> u64 {
    match reported(export, name) {
        Some(AggregatedMetrics::U64(MetricData::Sum(sum))) => {
            let points: Vec<u64> = sum.data_points().map(|point| point.value()).collect();
            assert_eq!(points.len(), 1, "{name}: one series, no attributes");
            points[0]
        }
        other => panic!("{name} is not a u64 sum: {other:?}"),
    }
}

/// The value of an observable gauge, if it reported one.
fn gauge<T: Copy>(
    export: &ResourceMetrics,
    name: &str,
    of: fn(&AggregatedMetrics) -> Option<&MetricData<T>>,
) -> Option<T> {
    match reported(export, name).and_then(of)? {
        MetricData::Gauge(gauge) => gauge.data_points().next().map(|point| point.value()),
        _ => panic!("{name} is not a gauge"),
    }
}

#[tokio::test]
async fn the_checkers_instruments_report_its_hits_misses_and_lag() {
    let (provider, exporter) = install_meter_provider();
    let setup = Setup::new().await.following().await;
    setup
        .fake
        .answer_state("c1", 100, Some(pb::Decision::Granted));

    // One load, then two answers from the cache.
    for _ in 0..3 {
        assert!(setup.checker.is_granted("c1", ADS).await);
    }
    let counted = setup.checker.metrics();
    assert_eq!((counted.misses, counted.hits), (1, 2));

    // Collects every instrument's callback and exports, synchronously.
    provider.force_flush().unwrap();
    let exports = exporter.get_finished_metrics().unwrap();
    let export = exports.last().expect("the flush exported");

    assert_eq!(counter(export, "misses"), 1);
    assert_eq!(counter(export, "hits"), 2);
    assert_eq!(counter(export, "fail_closed"), 0);
    assert_eq!(counter(export, "reconnects"), 0);
    let position = gauge(export, "position", |data| match data {
        AggregatedMetrics::I64(data) => Some(data),
        _ => None,
    });
    assert_eq!(position, Some(100));
    let lag = gauge(export, "lag", |data| match data {
        AggregatedMetrics::F64(data) => Some(data),
        _ => None,
    })
    .expect("a following checker reports its lag");
    // Seconds, and the stream confirmed the cache recently (heartbeats every 50ms).
    assert!(
        (0.0..10.0 * FRESHNESS_BOUND.as_secs_f64()).contains(&lag),
        "lag {lag}s"
    );

    drop(setup);
    provider.shutdown().unwrap();
}
