//! One collection of the SDK's metrics in the Prometheus text exposition format
//! (version 0.0.4), named as the OpenTelemetry specification's Prometheus
//! compatibility section says: `.` and other characters outside `[a-zA-Z0-9_:]`
//! become `_`, the unit becomes a suffix (`s` → `_seconds`), a monotonic sum
//! (counter) ends in `_total`, a histogram becomes cumulative `_bucket{le=..}`
//! series with `_sum` and `_count`, a gauge or a non-monotonic sum a gauge.
//!
//! Metrics of one name are one family however many scopes report them, so a
//! scrape never repeats a `# TYPE` line (Prometheus rejects the whole scrape
//! then); a second metric of the same name and another type is left out.
//! Exponential histograms are left out (nothing in Attune records one).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Histogram, MetricData, ResourceMetrics};

/// The `Content-Type` of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of `metrics` as Prometheus text, families sorted by name.
pub fn encode(metrics: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for metric in metrics.scope_metrics().flat_map(|scope| scope.metrics()) {
        let Some(kind) = Kind::of(metric.data()) else {
            continue;
        };
        let name = family_name(metric.name(), metric.unit(), kind);
        let family = families.entry(name.clone()).or_insert_with(|| Family {
            kind,
            help: metric.description().to_owned(),
            samples: String::new(),
        });
        if family.kind != kind {
            continue;
        }
        match metric.data() {
            AggregatedMetrics::F64(data) => write_data(&mut family.samples, &name, data),
            AggregatedMetrics::I64(data) => write_data(&mut family.samples, &name, data),
            AggregatedMetrics::U64(data) => write_data(&mut family.samples, &name, data),
        }
    }
    let mut out = String::with_capacity(families.values().map(|f| f.samples.len() + 64).sum());
    for (name, family) in &families {
        // A family with no data point (an observable gauge that observed nothing)
        // says nothing worth a HELP line.
        if family.samples.is_empty() {
            continue;
        }
        if !family.help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
        }
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
        out.push_str(&family.samples);
    }
    out
}

/// One metric family: its type, help text and sample lines so far.
struct Family {
    kind: Kind,
    help: String,
    samples: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn of(data: &AggregatedMetrics) -> Option<Self> {
        fn of<T>(data: &MetricData<T>) -> Option<Kind> {
            match data {
                MetricData::Gauge(_) => Some(Kind::Gauge),
                MetricData::Sum(sum) if sum.is_monotonic() => Some(Kind::Counter),
                MetricData::Sum(_) => Some(Kind::Gauge),
                MetricData::Histogram(_) => Some(Kind::Histogram),
                MetricData::ExponentialHistogram(_) => None,
            }
        }
        match data {
            AggregatedMetrics::F64(data) => of(data),
            AggregatedMetrics::I64(data) => of(data),
            AggregatedMetrics::U64(data) => of(data),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// A number as Prometheus reads it.
trait SampleValue: Copy {
    fn write(self, out: &mut String);
}

impl SampleValue for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for i64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write(self, out: &mut String) {
        write_float(self, out);
    }
}

/// Rust writes `inf` and `NaN`; Prometheus reads `+Inf`, `-Inf` and `NaN`.
fn write_float(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

fn write_data<T: SampleValue>(out: &mut String, name: &str, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(gauge) => write_values(
            out,
            name,
            gauge.data_points().map(|p| (p.attributes(), p.value())),
        ),
        MetricData::Sum(sum) => write_values(
            out,
            name,
            sum.data_points().map(|p| (p.attributes(), p.value())),
        ),
        MetricData::Histogram(histogram) => write_histogram(out, name, histogram),
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// One sample per point of a gauge or a sum (their points are different types
/// with the same two parts: attributes and a value).
fn write_values<'a, T: SampleValue, A: Iterator<Item = &'a KeyValue>>(
    out: &mut String,
    name: &str,
    points: impl Iterator<Item = (A, T)>,
) {
    for (attributes, value) in points {
        write_sample(out, name, "", &labels(attributes), None, value);
    }
}

fn write_histogram<T: SampleValue>(out: &mut String, name: &str, histogram: &Histogram<T>) {
    for point in histogram.data_points() {
        let labels = labels(point.attributes());
        // OpenTelemetry counts each bucket alone; Prometheus counts everything at
        // or below each bound, the last bucket (`+Inf`) being the total.
        let mut cumulative = 0_u64;
        let mut counts = point.bucket_counts();
        let mut bound = String::new();
        for upper in point.bounds() {
            cumulative += counts.next().unwrap_or(0);
            bound.clear();
            write_float(upper, &mut bound);
            write_sample(out, name, "_bucket", &labels, Some(&bound), cumulative);
        }
        write_sample(out, name, "_bucket", &labels, Some("+Inf"), point.count());
        write_sample(out, name, "_sum", &labels, None, point.sum());
        write_sample(out, name, "_count", &labels, None, point.count());
    }
}

/// Label names (sanitized) and values of a data point, sorted by name, each name
/// once: Prometheus refuses a scrape holding a series with a repeated label.
fn labels<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    let mut labels: Vec<_> = attributes
        .map(|kv| (sanitize(kv.key.as_str(), false), kv.value.as_str()))
        // `le` is the histogram's own label.
        .filter(|(name, _)| name != "le")
        .collect();
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|a, b| a.0 == b.0);
    labels
}

fn write_sample<T: SampleValue>(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(Cow<'_, str>, Cow<'_, str>)],
    le: Option<&str>,
    value: T,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = labels
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
            .chain(le.map(|le| ("le", le)));
        for (label, value) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(value, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value.write(out);
    out.push('\n');
}

/// The family's name: sanitized, with the unit's suffix and, for a counter, `_total`.
fn family_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut family = sanitize(name, true).into_owned();
    if let Some(suffix) = unit_suffix(unit)
        && !family.ends_with(&format!("_{suffix}"))
    {
        family.push('_');
        family.push_str(suffix);
    }
    if kind == Kind::Counter && !family.ends_with("_total") {
        family.push_str("_total");
    }
    family
}

/// The suffix of a UCUM unit, for the units Attune records; annotations
/// (`{connection}`) and unknown units add none.
fn unit_suffix(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "1" => "ratio",
        _ => return None,
    })
}

/// `name` with every character a Prometheus metric (`colons`) or label name may
/// not hold replaced by `_`, and `_` before a leading digit.
fn sanitize(name: &str, colons: bool) -> Cow<'_, str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
    let leading_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if !leading_digit && !name.is_empty() && name.chars().all(allowed) {
        return Cow::Borrowed(name);
    }
    let mut sanitized = String::with_capacity(name.len() + 1);
    if leading_digit || name.is_empty() {
        sanitized.push('_');
    }
    sanitized.extend(name.chars().map(|c| if allowed(c) { c } else { '_' }));
    Cow::Owned(sanitized)
}

/// A label value between double quotes: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A HELP text: backslash and line feed escaped.
fn escape_help(help: &str) -> Cow<'_, str> {
    if !help.contains(['\\', '\n']) {
        return Cow::Borrowed(help);
    }
    Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

    use super::*;
    use crate::metrics::PullReader;

    /// A provider read by a manual reader, and a function encoding what it holds.
    fn provider() -> (SdkMeterProvider, impl Fn() -> String) {
        let reader = std::sync::Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(PullReader(std::sync::Arc::clone(&reader)))
            .build();
        let scrape = move || {
            let mut metrics = ResourceMetrics::default();
            opentelemetry_sdk::metrics::reader::MetricReader::collect(&*reader, &mut metrics)
                .expect("the provider is live");
            encode(&metrics)
        };
        (provider, scrape)
    }

    #[test]
    fn a_counter_ends_in_total_and_a_gauge_carries_its_unit() {
        let (provider, scrape) = provider();
        let meter = provider.meter("test");
        let counter = meter
            .u64_counter("attune.test.calls")
            .with_description("Calls made")
            .build();
        counter.add(2, &[KeyValue::new("method", "Check")]);
        counter.add(1, &[KeyValue::new("method", "Check")]);
        let gauge = meter
            .f64_gauge("attune.test.lag")
            .with_unit("s")
            .with_description("Lag")
            .build();
        gauge.record(0.25, &[]);
        let up_down = meter.i64_up_down_counter("attune.test.open").build();
        up_down.add(-3, &[]);

        assert_eq!(
            scrape(),
            "# HELP attune_test_calls_total Calls made\n\
             # TYPE attune_test_calls_total counter\n\
             attune_test_calls_total{method=\"Check\"} 3\n\
             # HELP attune_test_lag_seconds Lag\n\
             # TYPE attune_test_lag_seconds gauge\n\
             attune_test_lag_seconds 0.25\n\
             # TYPE attune_test_open gauge\n\
             attune_test_open -3\n"
        );
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_then_sum_and_count() {
        let (provider, scrape) = provider();
        let histogram = provider
            .meter("test")
            .f64_histogram("attune.test.duration")
            .with_unit("s")
            .with_boundaries(vec![0.001, 0.01, 0.1])
            .build();
        // Powers of two, so that the sum is exact.
        for value in [0.000_244_140_625, 0.001_953_125, 0.003_906_25, 0.5] {
            histogram.record(value, &[KeyValue::new("code", "OK")]);
        }
        assert_eq!(
            scrape(),
            "# TYPE attune_test_duration_seconds histogram\n\
             attune_test_duration_seconds_bucket{code=\"OK\",le=\"0.001\"} 1\n\
             attune_test_duration_seconds_bucket{code=\"OK\",le=\"0.01\"} 3\n\
             attune_test_duration_seconds_bucket{code=\"OK\",le=\"0.1\"} 3\n\
             attune_test_duration_seconds_bucket{code=\"OK\",le=\"+Inf\"} 4\n\
             attune_test_duration_seconds_sum{code=\"OK\"} 0.506103515625\n\
             attune_test_duration_seconds_count{code=\"OK\"} 4\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped_and_names_sanitized() {
        let (provider, scrape) = provider();
        let counter = provider
            .meter("test")
            .u64_counter("attune.odd-name/x")
            .with_description("back\\slash\nnew line")
            .build();
        counter.add(
            1,
            &[
                KeyValue::new("path.of", "a\"quoted\"\\path\nnext"),
                KeyValue::new("le", "reserved for histograms"),
            ],
        );
        assert_eq!(
            scrape(),
            "# HELP attune_odd_name_x_total back\\\\slash\\nnew line\n\
             # TYPE attune_odd_name_x_total counter\n\
             attune_odd_name_x_total{path_of=\"a\\\"quoted\\\"\\\\path\\nnext\"} 1\n"
        );
    }

    #[test]
    fn names_prometheus_cannot_start_with_a_digit_get_an_underscore() {
        assert_eq!(sanitize("9lives", true), "_9lives");
        assert_eq!(sanitize("a:b.c", true), "a:b_c");
        assert_eq!(sanitize("a:b.c", false), "a_b_c");
        assert_eq!(sanitize("", false), "_");
    }

    #[test]
    fn one_name_of_two_types_is_written_once() {
        let (provider, scrape) = provider();
        provider
            .meter("one")
            .u64_counter("attune.test.clash")
            .build()
            .add(1, &[]);
        provider
            .meter("two")
            .u64_gauge("attune.test.clash_total")
            .build()
            .record(7, &[]);
        let scraped = scrape();
        // Whichever scope comes first names the type; the other is left out
        // rather than written under a second TYPE line.
        let family = scraped.lines().filter(|line| line.starts_with('#')).count();
        let samples = scraped
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count();
        assert_eq!((family, samples), (1, 1), "{scraped}");
    }

    #[test]
    fn one_name_is_one_family_across_scopes() {
        let (provider, scrape) = provider();
        for scope in ["one", "two"] {
            provider
                .meter(scope)
                .u64_counter("attune.test.shared")
                .build()
                .add(1, &[KeyValue::new("scope", scope)]);
        }
        let scraped = scrape();
        let mut lines: Vec<_> = scraped.lines().collect();
        // Scopes come in no particular order.
        lines[1..].sort_unstable();
        assert_eq!(
            lines,
            [
                "# TYPE attune_test_shared_total counter",
                "attune_test_shared_total{scope=\"one\"} 1",
                "attune_test_shared_total{scope=\"two\"} 1",
            ]
        );
    }

    #[test]
    fn special_floats_are_written_as_prometheus_reads_them() {
        let mut out = String::new();
        for value in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1e-7, 10.0] {
            write_float(value, &mut out);
            out.push(' ');
        }
        assert_eq!(out, "+Inf -Inf NaN 0.0000001 10 ");
    }

    #[test]
    fn an_observable_gauge_that_observed_nothing_writes_nothing() {
        let (provider, scrape) = provider();
        let _gauge = provider
            .meter("test")
            .f64_observable_gauge("attune.test.silent")
            .with_callback(|_| {})
            .build();
        assert_eq!(scrape(), "");
    }
}
