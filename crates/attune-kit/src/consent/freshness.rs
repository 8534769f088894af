//! How recently the consent change stream confirmed the cache. The cache may only
//! answer while the stream is known to be alive: a withdrawal it has not heard of
//! must never be answered "granted" for longer than the freshness bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The arrival time of the stream's last response, readable without a lock.
#[derive(Debug)]
pub(crate) struct Freshness {
    /// Monotonic reference point; times are stored as nanoseconds after it.
    origin: Instant,
    /// Nanoseconds after `origin` at which the last response arrived, plus one, so
    /// that 0 can mean "nothing arrived since the (re)start".
    last_confirmed: AtomicU64,
    bound: Duration,
}

impl Freshness {
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            origin: Instant::now(),
            last_confirmed: AtomicU64::new(0),
            bound,
        }
    }

    /// How long the cache may go unconfirmed before checks fail closed.
    pub(crate) fn bound(&self) -> Duration {
        self.bound
    }

    /// Records that a response (changes or heartbeat) has just arrived and been applied.
    pub(crate) fn confirm(&self) {
        let now = self.elapsed_nanos().saturating_add(1);
        self.last_confirmed.store(now, Ordering::Release);
    }

    /// Forgets every confirmation: after a reset the cache must wait for the new
    /// stream's first response before answering again.
    pub(crate) fn forget(&self) {
        self.last_confirmed.store(0, Ordering::Release);
    }

    /// Whether the last confirmation is at most the bound old.
    pub(crate) fn is_fresh(&self) -> bool {
        self.since_confirmed()
            .is_some_and(|silence| silence <= self.bound)
    }

    /// How long ago the last response arrived; `None` before the first one.
    pub(crate) fn since_confirmed(&self) -> Option<Duration> {
        match self.last_confirmed.load(Ordering::Acquire) {
            0 => None,
            confirmed => Some(Duration::from_nanos(
                self.elapsed_nanos()
                    .saturating_add(1)
                    .saturating_sub(confirmed),
            )),
        }
    }

    /// How long the cache has gone unconfirmed: since the last response, or since
    /// the checker started when nothing has arrived yet (for the lag gauge).
    pub(crate) fn staleness(&self) -> Duration {
        self.since_confirmed()
            .unwrap_or_else(|| self.origin.elapsed())
    }

    fn elapsed_nanos(&self) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than wrap beyond that.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfirmed_until_the_first_response_and_stale_past_the_bound() {
        let freshness = Freshness::new(Duration::from_millis(30));
        assert!(!freshness.is_fresh());
        assert_eq!(freshness.since_confirmed(), None);

        freshness.confirm();
        assert!(freshness.is_fresh());

        std::thread::sleep(Duration::from_millis(40));
        assert!(!freshness.is_fresh());

        freshness.confirm();
        assert!(freshness.is_fresh());
        freshness.forget();
        assert!(!freshness.is_fresh());
    }
}
