//! The time services read "now" from: the system clock in production, a clock a
//! test sets and advances in tests, so that rules about expiry and clock skew
//! are tested without sleeping. The platform hands each service its clock in its
//! [`ServiceContext`](crate::service::ServiceContext); `attune::serve_with_clock`
//! runs the real server on a test's [`ManualClock`].

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// Where a service reads the current time. Cheap to clone; clones share the
/// source. Times are truncated to microseconds, the precision Attune stores
/// (see [`crate::db::micros`]), so an answer and its replay from storage agree.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    /// The system's clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The current time, to the microsecond.
    pub fn now(&self) -> DateTime<Utc> {
        let now = match &self.manual {
            None => Utc::now(),
            Some(manual) => *manual.lock().unwrap_or_else(PoisonError::into_inner),
        };
        now.trunc_subsecs(6)
    }
}

/// A clock that stands still until the test moves it: hand [`ManualClock::clock`]
/// to the service under test, then [`advance`](ManualClock::advance) it.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// The [`Clock`] that reads this one.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(Arc::clone(&self.now)),
        }
    }

    /// Moves the clock forward (or back, with a negative `by`).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `time`.
    pub fn set(&self, time: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = time;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let start = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap();
        let manual = ManualClock::starting_at(start);
        let clock = manual.clock();
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        manual.advance(TimeDelta::seconds(90));
        assert_eq!(copy.now(), start + TimeDelta::seconds(90));
        manual.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn the_system_clock_keeps_microseconds_only() {
        let now = Clock::system().now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000, 0);
        assert!((Utc::now() - now).num_seconds().abs() < 5);
    }
}
