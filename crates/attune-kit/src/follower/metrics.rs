//! The follower's instruments on the global meter: `attune.feed_follower.lag`
//! (seconds since the follower was last caught up with its feed) and
//! `attune.feed_follower.position` (its stored cursor), each with a `feed`
//! attribute, reported by the replica holding the lease (the others apply nothing,
//! so they have no lag of their own).
//!
//! Registered once per process, like the consent checker's instruments, and read
//! from every live follower at export time.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

/// What one follower reports, all atomics: the follower writes, the exporter reads.
#[derive(Debug)]
pub(crate) struct FollowerState {
    pub(crate) name: String,
    origin: Instant,
    holding: AtomicBool,
    position: AtomicI64,
    /// Nanoseconds after `origin` when the follower was last caught up, plus one
    /// (0: never).
    caught_up: AtomicU64,
    applied: AtomicU64,
}

impl FollowerState {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            origin: Instant::now(),
            holding: AtomicBool::new(false),
            position: AtomicI64::new(0),
            caught_up: AtomicU64::new(0),
            applied: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::Relaxed);
    }

    pub(crate) fn is_holding(&self) -> bool {
        self.holding.load(Ordering::Relaxed)
    }

    /// The cursor is now `position`; `caught_up` when the source had nothing newer.
    pub(crate) fn at(&self, position: i64, caught_up: bool) {
        self.position.store(position, Ordering::Relaxed);
        if caught_up {
            let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.caught_up
                .store(now.saturating_add(1), Ordering::Relaxed);
        }
    }

    pub(crate) fn applied(&self, items: u64) {
        self.applied.fetch_add(items, Ordering::Relaxed);
    }

    pub(crate) fn position(&self) -> i64 {
        self.position.load(Ordering::Relaxed)
    }

    pub(crate) fn applied_items(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Time since the follower was last caught up, or since it started.
    pub(crate) fn lag(&self) -> Duration {
        match self.caught_up.load(Ordering::Relaxed) {
            0 => self.origin.elapsed(),
            at => self
                .origin
                .elapsed()
                .saturating_sub(Duration::from_nanos(at - 1)),
        }
    }
}

type Followers = Mutex<Vec<Weak<FollowerState>>>;

static FOLLOWERS: OnceLock<Followers> = OnceLock::new();

/// Adds a follower to what the instruments report; dropped ones fall out.
pub(crate) fn register(state: Weak<FollowerState>) {
    let followers = FOLLOWERS.get_or_init(|| {
        register_instruments(&opentelemetry::global::meter("attune"));
        Mutex::new(Vec::new())
    });
    let mut followers = followers.lock().unwrap_or_else(PoisonError::into_inner);
    followers.retain(|follower| follower.strong_count() > 0);
    followers.push(state);
}

/// `(feed, lag, position)` of every live follower holding its lease.
fn holding() -> Vec<(String, Duration, i64)> {
    let Some(followers) = FOLLOWERS.get() else {
        return Vec::new();
    };
    let followers = followers.lock().unwrap_or_else(PoisonError::into_inner);
    followers
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|state| state.is_holding())
        .map(|state| (state.name.clone(), state.lag(), state.position()))
        .collect()
}

fn register_instruments(meter: &opentelemetry::metrics::Meter) {
    meter
        .f64_observable_gauge("attune.feed_follower.lag")
        .with_description("Seconds since the follower of a feed was last caught up with it")
        .with_unit("s")
        .with_callback(|observer| {
            for (feed, lag, _) in holding() {
                observer.observe(lag.as_secs_f64(), &[KeyValue::new("feed", feed)]);
            }
        })
        .build();
    meter
        .i64_observable_gauge("attune.feed_follower.position")
        .with_description("The feed position up to which the follower has applied")
        .with_callback(|observer| {
            for (feed, _, position) in holding() {
                observer.observe(position, &[KeyValue::new("feed", feed)]);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{
        InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    };

    use super::*;

    /// The gauges' data points for `feed`, from one export of a local provider.
    fn exported(feed: &str) -> (Option<f64>, Option<i64>) {
        let exporter = InMemoryMetricExporterBuilder::new().build();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        register_instruments(&provider.meter("test"));
        provider.force_flush().unwrap();
        let exports = exporter.get_finished_metrics().unwrap();
        provider.shutdown().unwrap();
        // Nothing observed, nothing exported.
        let Some(export) = exports.last() else {
            return (None, None);
        };
        let of_feed = |attributes: Vec<&KeyValue>| {
            attributes
                .iter()
                .any(|kv| kv.key.as_str() == "feed" && kv.value.as_str() == feed)
        };
        let (mut lag, mut position) = (None, None);
        for metric in export.scope_metrics().flat_map(|scope| scope.metrics()) {
            match (metric.name(), metric.data()) {
                ("attune.feed_follower.lag", AggregatedMetrics::F64(MetricData::Gauge(g))) => {
                    lag = g
                        .data_points()
                        .find(|p| of_feed(p.attributes().collect()))
                        .map(|p| p.value());
                }
                ("attune.feed_follower.position", AggregatedMetrics::I64(MetricData::Gauge(g))) => {
                    position = g
                        .data_points()
                        .find(|p| of_feed(p.attributes().collect()))
                        .map(|p| p.value());
                }
                _ => {}
            }
        }
        (lag, position)
    }

    #[test]
    fn the_holder_reports_its_lag_and_position_per_feed() {
        let state = Arc::new(FollowerState::new("metrics-test-feed".to_owned()));
        register(Arc::downgrade(&state));
        // A replica that does not hold the lease applies nothing: no series.
        assert_eq!(exported("metrics-test-feed"), (None, None));

        state.set_holding(true);
        std::thread::sleep(Duration::from_millis(30));
        state.at(42, false);
        let (lag, position) = exported("metrics-test-feed");
        assert_eq!(position, Some(42));
        assert!(
            lag.is_some_and(|lag| lag >= 0.03),
            "behind since start: {lag:?}"
        );

        state.at(43, true);
        let (lag, _) = exported("metrics-test-feed");
        assert!(lag.is_some_and(|lag| lag < 0.03), "caught up: {lag:?}");
    }
}
