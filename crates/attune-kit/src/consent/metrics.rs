//! What the consent checker counts, for tests ([`CheckerMetrics`]) and for
//! OpenTelemetry (observable instruments over the same atomics).
//!
//! The instruments are registered once per process, on the global meter provider
//! as it is when the first checker starts (install an exporter before that), and
//! sum over every live checker: a process may hold several (one per service in
//! `attune serve`, several in a test) without registering the names twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use opentelemetry::metrics::Meter;

/// A snapshot of one checker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckerMetrics {
    /// Checks answered from the cache.
    pub hits: u64,
    /// Checks that had to load the customer (one `GetConsentState` call each, or
    /// more when a fill had to be fetched again).
    pub misses: u64,
    /// Checks answered "not granted" because freshness was unconfirmed or consent
    /// was unavailable, whatever the customer decided.
    pub fail_closed: u64,
    /// Loads that could not be reconciled with the stream: each was followed by
    /// another load, or, after the last attempt, by "unavailable".
    pub fills_unreconciled: u64,
    /// Times the change stream was opened again after it ended or broke.
    pub reconnects: u64,
    /// Times the cache was reset because the stream's cursor was out of range.
    pub resets: u64,
    /// Changes applied from the stream (for cached customers or not).
    pub changes_applied: u64,
    /// Erasures applied, each of which emptied the cache.
    pub erasures: u64,
    /// Customers in the cache (approximate).
    pub cached_customers: u64,
    /// The stream position the cache reflects; `None` before the stream started.
    pub position: Option<i64>,
    /// Time since the stream last confirmed the cache; `None` before it ever did.
    pub since_last_response: Option<Duration>,
}

/// The counters a checker updates, all atomics so that checks never lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fail_closed: AtomicU64,
    pub(crate) fills_unreconciled: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) changes_applied: AtomicU64,
    pub(crate) erasures: AtomicU64,
}

impl Counters {
    /// Adds one to a counter; relaxed, as counters order nothing.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Fills the counters' part of a snapshot.
    pub(crate) fn snapshot(&self) -> CheckerMetrics {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CheckerMetrics {
            hits: read(&self.hits),
            misses: read(&self.misses),
            fail_closed: read(&self.fail_closed),
            fills_unreconciled: read(&self.fills_unreconciled),
            reconnects: read(&self.reconnects),
            resets: read(&self.resets),
            changes_applied: read(&self.changes_applied),
            erasures: read(&self.erasures),
            ..CheckerMetrics::default()
        }
    }
}

/// Something that can report a checker's metrics: a live checker.
pub(crate) trait MetricsSource: Send + Sync {
    /// The checker's metrics now.
    fn metrics(&self) -> CheckerMetrics;
    /// Time since the stream last confirmed the cache, or since the checker started.
    fn staleness(&self) -> Duration;
}

type Sources = Mutex<Vec<Weak<dyn MetricsSource>>>;

/// The checkers the instruments report on; registering the instruments once.
static SOURCES: OnceLock<Sources> = OnceLock::new();

/// Adds a checker to what the `attune.consent_checker.*` instruments report.
/// Dropped checkers fall out by themselves.
pub(crate) fn register(source: Weak<dyn MetricsSource>) {
    let sources = SOURCES.get_or_init(|| {
        register_instruments(&opentelemetry::global::meter("attune"));
        Mutex::new(Vec::new())
    });
    let mut sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
    sources.retain(|source| source.strong_count() > 0);
    sources.push(source);
}

/// Every live checker's metrics and staleness, at export time only.
fn live() -> Vec<(CheckerMetrics, Duration)> {
    let Some(sources) = SOURCES.get() else {
        return Vec::new();
    };
    let sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
    sources
        .iter()
        .filter_map(Weak::upgrade)
        .map(|source| (source.metrics(), source.staleness()))
        .collect()
}

/// A counter's name (after `attune.consent_checker.`), description and reading.
type CounterInstrument = (&'static str, &'static str, fn(&CheckerMetrics) -> u64);

fn register_instruments(meter: &Meter) {
    let counters: [CounterInstrument; 8] = [
        ("hits", "Consent checks answered from the cache", |m| m.hits),
        (
            "misses",
            "Consent checks that loaded the customer from consent",
            |m| m.misses,
        ),
        (
            "fail_closed",
            "Consent checks answered not granted because freshness was unconfirmed or consent unavailable",
            |m| m.fail_closed,
        ),
        (
            "fills_unreconciled",
            "Customer loads that could not be reconciled with the change stream",
            |m| m.fills_unreconciled,
        ),
        (
            "reconnects",
            "Times the consent change stream was reopened",
            |m| m.reconnects,
        ),
        (
            "resets",
            "Times the consent cache was emptied because the stream cursor was out of range",
            |m| m.resets,
        ),
        (
            "changes_applied",
            "Consent changes applied from the stream",
            |m| m.changes_applied,
        ),
        (
            "erasures",
            "Customer erasures applied, each emptying the cache",
            |m| m.erasures,
        ),
    ];
    for (name, description, read) in counters {
        meter
            .u64_observable_counter(format!("attune.consent_checker.{name}"))
            .with_description(description)
            .with_callback(move |observer| {
                let total = live().iter().map(|(metrics, _)| read(metrics)).sum();
                observer.observe(total, &[]);
            })
            .build();
    }
    meter
        .u64_observable_gauge("attune.consent_checker.cached_customers")
        .with_description("Customers held in the consent cache")
        .with_callback(|observer| {
            let total = live()
                .iter()
                .map(|(metrics, _)| metrics.cached_customers)
                .sum();
            observer.observe(total, &[]);
        })
        .build();
    meter
        .i64_observable_gauge("attune.consent_checker.position")
        .with_description("The consent stream position the cache reflects")
        .with_callback(|observer| {
            if let Some(position) = live().iter().filter_map(|(m, _)| m.position).max() {
                observer.observe(position, &[]);
            }
        })
        .build();
    meter
        .f64_observable_gauge("attune.consent_checker.lag")
        .with_description("Seconds since the consent change stream last confirmed the cache")
        .with_unit("s")
        .with_callback(|observer| {
            // The stalest checker is the one that fails closed first.
            if let Some(lag) = live().iter().map(|(_, staleness)| *staleness).max() {
                observer.observe(lag.as_secs_f64(), &[]);
            }
        })
        .build();
}
