//! The cached consent checker: what every service asks before it uses personal
//! data, instead of calling consent's `CheckConsent` on every request.
//!
//! It answers from memory for the customers it has seen, loads a customer it has
//! not seen with one `GetConsentState` call, and follows `WatchConsentChanges` to
//! keep what it holds current (see [`ConsentChecker::follow`]). It fails closed:
//! while the stream has not confirmed the cache within the freshness bound, or when
//! consent cannot be reached, every purpose is "not granted", so a withdrawal takes
//! effect within the bound even when the stream breaks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::OnceCell;

use super::cache::{ConsentCache, CustomerEntry};
use super::freshness::Freshness;
use super::journal::Unreconciled;
use super::metrics::{self, CheckerMetrics, Counters, MetricsSource};
use super::rule::ConsentStatus;
use super::source::{ConsentSource, GrpcConsentSource, LoadError};
use crate::clock::Clock;
use crate::config::ConsentCheckerConfig;
use crate::peer::Peer;

/// How many times a miss loads a customer whose state cannot be reconciled with
/// the stream (see [`super::journal`]) before answering "unavailable". A second
/// load reads past the stream's cursor and succeeds unless a burst of changes
/// (or an erasure) lands during each call.
const MAX_FILL_ATTEMPTS: usize = 3;

/// Why a purpose is or is not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The customer's consent as known: granted only for [`ConsentStatus::Granted`].
    Status(ConsentStatus),
    /// The change stream has not confirmed the cache within the freshness bound
    /// (or has not started): the checker cannot know of a recent withdrawal, so
    /// it answers "not granted" whatever it holds.
    FreshnessUnconfirmed,
    /// The customer had to be loaded from consent, which could not be reached or
    /// answered something unreadable: "not granted".
    Unavailable,
}

/// The answer for one purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeVerdict {
    /// The purpose asked about.
    pub purpose: String,
    /// Whether the purpose may be used now.
    pub granted: bool,
    /// Why it may or may not be.
    pub reason: Reason,
    /// The notice version of the decision the answer derives from; `None` when
    /// there is none or the checker could not tell.
    pub notice_version: Option<i32>,
}

/// The answer for one purpose without its name (see [`ConsentChecker::answers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Whether the purpose may be used now.
    pub granted: bool,
    /// Why it may or may not be.
    pub reason: Reason,
    /// The notice version of the decision the answer derives from; `None` when
    /// there is none or the checker could not tell.
    pub notice_version: Option<i32>,
}

impl Answer {
    fn failed(reason: Reason) -> Self {
        Self {
            granted: false,
            reason,
            notice_version: None,
        }
    }

    fn from_entry(purpose: &str, entry: &CustomerEntry, now: chrono::DateTime<Utc>) -> Self {
        let current = entry.current(purpose);
        let status = ConsentStatus::at(current, now);
        Self {
            granted: status.is_granted(),
            reason: Reason::Status(status),
            notice_version: current.map(|current| current.notice_version),
        }
    }

    /// The customer's consent status, when the checker knows it (the reason is
    /// [`Reason::Status`]).
    pub fn status(&self) -> Option<ConsentStatus> {
        match self.reason {
            Reason::Status(status) => Some(status),
            Reason::FreshnessUnconfirmed | Reason::Unavailable => None,
        }
    }
}

/// Answers "may purpose P be used for customer C?" from memory, kept current by
/// consent's change stream. Cheap to clone: clones share one cache.
///
/// ```ignore
/// let checker = ConsentChecker::new(channel, &config.consent_checker);
/// server.spawn_background("consent-checker", |cancel| checker.clone().follow(cancel));
/// if checker.is_granted(customer_id, "personalization").await { /* use the data */ }
/// ```
#[derive(Debug, Clone)]
pub struct ConsentChecker {
    inner: Arc<Inner>,
    /// What time it is when a grant's expiry is judged (see [`Self::with_clock`]).
    clock: Clock,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) source: Arc<dyn ConsentSource>,
    pub(crate) cache: ConsentCache,
    pub(crate) freshness: Freshness,
    pub(crate) counters: Counters,
    /// The loads in flight, per customer: concurrent misses for one customer
    /// (a page asking for several slots at once) share one `GetConsentState`.
    loading: Loading,
}

/// One load of a customer, awaited by every miss that joined it.
type Load = OnceCell<Result<Arc<CustomerEntry>, Reason>>;

/// The loads in flight, keyed by customer id; `Debug` shows no ids.
#[derive(Default)]
struct Loading(Mutex<HashMap<String, Arc<Load>>>);

impl std::fmt::Debug for Loading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loading(..)")
    }
}

impl MetricsSource for Inner {
    fn metrics(&self) -> CheckerMetrics {
        CheckerMetrics {
            cached_customers: self.cache.entry_count(),
            position: self.cache.cursor(),
            since_last_response: self.freshness.since_confirmed(),
            ..self.counters.snapshot()
        }
    }

    fn staleness(&self) -> Duration {
        self.freshness.staleness()
    }
}

impl ConsentChecker {
    /// A checker asking consent over `channel` (see [`GrpcConsentSource`]), with
    /// an empty cache. It answers "not granted" (freshness unconfirmed) until
    /// [`follow`](Self::follow) runs and the stream's first response arrives.
    pub fn new(peer: impl Into<Peer>, config: &ConsentCheckerConfig) -> Self {
        Self::with_source(Arc::new(GrpcConsentSource::new(peer)), config)
    }

    /// A checker reading consent from `source`, with an empty cache.
    pub fn with_source(source: Arc<dyn ConsentSource>, config: &ConsentCheckerConfig) -> Self {
        let inner = Arc::new(Inner {
            source,
            cache: ConsentCache::new(config.max_customers),
            freshness: Freshness::new(config.freshness_bound),
            counters: Counters::default(),
            loading: Loading::default(),
        });
        let source: Weak<dyn MetricsSource> = Arc::downgrade(&inner) as Weak<Inner>;
        metrics::register(source);
        Self {
            inner,
            clock: Clock::system(),
        }
    }

    /// This checker judging expiry by `clock` (the system clock by default): a
    /// service hands it the clock it was mounted with, so that a test's
    /// [`ManualClock`](crate::clock::ManualClock) decides when a cached grant
    /// expires. Set it before cloning the checker: clones made earlier keep
    /// their clock. Freshness stays measured in real time: a stream that stops
    /// answering is stale however the clock moves.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Whether each of `purposes` may be used for the customer now, in the order
    /// asked. Never an error: whatever goes wrong is "not granted" with its reason.
    /// An empty customer id has granted nothing.
    pub async fn check(&self, customer_id: &str, purposes: &[&str]) -> Vec<PurposeVerdict> {
        self.answers(customer_id, purposes)
            .await
            .into_iter()
            .zip(purposes)
            .map(|(answer, purpose)| PurposeVerdict {
                purpose: (*purpose).to_owned(),
                granted: answer.granted,
                reason: answer.reason,
                notice_version: answer.notice_version,
            })
            .collect()
    }

    /// [`check`](Self::check) without the purposes' names in the answers: one per
    /// purpose, in the order asked. For a caller holding the names already (the
    /// consent service's own `CheckConsent`), it copies no string.
    pub async fn answers(&self, customer_id: &str, purposes: &[&str]) -> Vec<Answer> {
        let answer = |entry: &CustomerEntry| {
            let now = self.clock.now();
            purposes
                .iter()
                .map(|purpose| Answer::from_entry(purpose, entry, now))
                .collect()
        };
        let fail = |reason: Reason| -> Vec<Answer> { vec![Answer::failed(reason); purposes.len()] };
        let inner = &self.inner;
        if purposes.is_empty() {
            return Vec::new();
        }
        if customer_id.is_empty() {
            return fail(Reason::Status(ConsentStatus::NotGiven));
        }
        if !inner.freshness.is_fresh() {
            Counters::bump(&inner.counters.fail_closed);
            return fail(Reason::FreshnessUnconfirmed);
        }
        if let Some(entry) = inner.cache.get(customer_id) {
            Counters::bump(&inner.counters.hits);
            return answer(&entry);
        }
        Counters::bump(&inner.counters.misses);
        match self.shared_fill(customer_id).await {
            Ok(entry) => answer(&entry),
            Err(Reason::Status(status)) => fail(Reason::Status(status)),
            Err(reason) => {
                Counters::bump(&inner.counters.fail_closed);
                fail(reason)
            }
        }
    }

    /// Whether one purpose may be used for the customer now.
    pub async fn is_granted(&self, customer_id: &str, purpose: &str) -> bool {
        self.answers(customer_id, &[purpose])
            .await
            .first()
            .is_some_and(|answer| answer.granted)
    }

    /// Forgets a customer at once, so the next check reads consent again. For the
    /// consent service itself, after it committed a change for the customer: its
    /// own next check must see it, without waiting for the stream. Loads of this
    /// customer in flight are refused (fetched again); other customers' loads are
    /// not disturbed. Other services never need this; the stream brings them every
    /// change.
    pub fn forget(&self, customer_id: &str) {
        // A check that starts from now on must not join a load begun before.
        self.loading().remove(customer_id);
        self.inner.cache.forget(customer_id);
    }

    /// The checker's counters now.
    pub fn metrics(&self) -> CheckerMetrics {
        self.inner.metrics()
    }

    /// [`fill`](Self::fill), shared by the misses for one customer that overlap.
    /// A miss joins a load still in flight, never a finished one: a finished
    /// load may predate a change this miss must see; the cache holds its result.
    async fn shared_fill(&self, customer_id: &str) -> Result<Arc<CustomerEntry>, Reason> {
        let load = {
            let mut loading = self.loading();
            let load = loading.entry(customer_id.to_owned()).or_default();
            if load.initialized() {
                *load = Arc::default();
            }
            Arc::clone(load)
        };
        let result = load.get_or_init(|| self.fill(customer_id)).await.clone();
        let mut loading = self.loading();
        if loading
            .get(customer_id)
            .is_some_and(|current| Arc::ptr_eq(current, &load))
        {
            loading.remove(customer_id);
        }
        result
    }

    fn loading(&self) -> MutexGuard<'_, HashMap<String, Arc<Load>>> {
        // Nothing panics while holding it; a poisoned map is still a valid map.
        self.inner
            .loading
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads a customer into the cache: one load from the source, brought up to
    /// the stream's cursor, fetched again when that is impossible. The error is the
    /// reason every purpose is answered "not granted".
    async fn fill(&self, customer_id: &str) -> Result<Arc<CustomerEntry>, Reason> {
        let inner = &self.inner;
        for attempt in 1..=MAX_FILL_ATTEMPTS {
            let ticket = inner.cache.fill_ticket();
            let state = self.load(customer_id).await?;
            match inner.cache.insert_fill(customer_id, state, ticket) {
                Ok(entry) => return Ok(entry),
                Err(Unreconciled::NoCursor) => return Err(Reason::FreshnessUnconfirmed),
                Err(
                    why @ (Unreconciled::Stale | Unreconciled::Reset | Unreconciled::Unreadable),
                ) => {
                    tracing::debug!(
                        ?why,
                        attempt,
                        "consent fill not reconcilable with the stream"
                    );
                    Counters::bump(&inner.counters.fills_unreconciled);
                }
            }
            // A reset between the attempts stops the checker answering until the
            // stream restarts: say so rather than load in vain.
            if !inner.freshness.is_fresh() {
                return Err(Reason::FreshnessUnconfirmed);
            }
        }
        tracing::warn!(
            attempts = MAX_FILL_ATTEMPTS,
            "consent fill could not be reconciled with the stream; answering unavailable"
        );
        Err(Reason::Unavailable)
    }

    /// The customer's state from the source.
    async fn load(&self, customer_id: &str) -> Result<super::source::CustomerState, Reason> {
        self.inner
            .source
            .load(customer_id)
            .await
            .map_err(|error| match error {
                // Such a customer has granted nothing, which is no outage.
                LoadError::InvalidCustomer => Reason::Status(ConsentStatus::NotGiven),
                LoadError::Unavailable => Reason::Unavailable,
            })
    }
}
