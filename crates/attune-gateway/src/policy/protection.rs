//! Protection of the public port: a rate limit per caller and per customer
//! (GCRA buckets from `governor`, answered RESOURCE_EXHAUSTED with
//! `google.rpc.RetryInfo` saying when to come back), and a bound on calls in
//! progress beyond which calls are shed at once rather than queued. Rate
//! limits count authenticated callers; development mode has none.
//!
//! The buckets run on monotonic time (not the business clock): they measure
//! load, not a rule about dates.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use attune_kit::config::ProtectionConfig;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::jwt::KeyError;

type Limiter = DefaultKeyedRateLimiter<String>;

/// Rate limits and load shedding.
pub(crate) struct Protection {
    callers: Limiter,
    customers: Limiter,
    in_flight: Arc<Semaphore>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection").finish_non_exhaustive()
    }
}

impl Protection {
    pub(crate) fn from_config(config: &ProtectionConfig) -> Result<Self, KeyError> {
        let quota = |rate: u32, burst: u32, setting: &'static str| {
            let invalid = || KeyError::Invalid {
                setting,
                reason: "rates and bursts must be at least 1".into(),
            };
            let rate = NonZeroU32::new(rate).ok_or_else(invalid)?;
            let burst = NonZeroU32::new(burst).ok_or_else(invalid)?;
            Ok::<_, KeyError>(Quota::per_second(rate).allow_burst(burst))
        };
        let max_calls = usize::try_from(config.max_concurrent_calls)
            .ok()
            .filter(|max| *max > 0)
            .ok_or(KeyError::Invalid {
                setting: "security.protection.max_concurrent_calls",
                reason: "must be at least 1".into(),
            })?;
        Ok(Self {
            callers: RateLimiter::keyed(quota(
                config.caller_rate,
                config.caller_burst,
                "security.protection.caller_rate",
            )?),
            customers: RateLimiter::keyed(quota(
                config.customer_rate,
                config.customer_burst,
                "security.protection.customer_rate",
            )?),
            in_flight: Arc::new(Semaphore::new(max_calls)),
            clock: DefaultClock::default(),
        })
    }

    /// A place among the calls in progress, held until the call has answered;
    /// none left: RESOURCE_EXHAUSTED at once.
    pub(crate) fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| exhausted("the server is busy; retry", Duration::from_millis(100)))
    }

    /// Counts a call by `caller`.
    pub(crate) fn check_caller(&self, caller: &str) -> Result<(), Status> {
        self.check(
            &self.callers,
            caller,
            "too many calls from this caller; retry later",
        )
    }

    /// Counts a call about `customer`.
    pub(crate) fn check_customer(&self, customer: &str) -> Result<(), Status> {
        self.check(
            &self.customers,
            customer,
            "too many calls about this customer; retry later",
        )
    }

    fn check(&self, limiter: &Limiter, key: &str, message: &str) -> Result<(), Status> {
        // `check_key` takes the key by reference but stores an owned one.
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| exhausted(message, not_until.wait_time_from(self.clock.now())))
    }

    /// Drops the buckets of callers and customers not seen lately.
    pub(crate) fn forget_idle(&self) {
        self.callers.retain_recent();
        self.customers.retain_recent();
        self.callers.shrink_to_fit();
        self.customers.shrink_to_fit();
    }
}

/// RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`.
fn exhausted(message: &str, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        message,
        ErrorDetails::with_retry_info(Some(retry_after.max(Duration::from_millis(1)))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protection(max_concurrent_calls: u32) -> Protection {
        Protection::from_config(&ProtectionConfig {
            caller_rate: 1,
            caller_burst: 1,
            customer_rate: 1,
            customer_burst: 2,
            max_concurrent_calls,
        })
        .unwrap()
    }

    #[test]
    fn calls_beyond_the_bound_are_shed_until_one_ends() {
        let protection = protection(2);
        let first = protection.admit().unwrap();
        let _second = protection.admit().unwrap();
        let shed = protection.admit().unwrap_err();
        assert_eq!(shed.code(), Code::ResourceExhausted);
        assert!(shed.get_details_retry_info().is_some());
        drop(first);
        let _third = protection.admit().unwrap();
    }

    #[test]
    fn each_key_has_its_own_bucket_and_a_refusal_says_when_to_retry() {
        let protection = protection(1);
        protection.check_customer("a").unwrap();
        protection.check_customer("a").unwrap();
        let refused = protection.check_customer("a").unwrap_err();
        let retry = refused
            .get_details_retry_info()
            .and_then(|info| info.retry_delay)
            .unwrap();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(1),
            "{retry:?}"
        );
        protection.check_customer("b").unwrap();
        protection.check_caller("a").unwrap();
    }

    #[test]
    fn a_zero_rate_is_refused_at_start() {
        let config = ProtectionConfig {
            customer_rate: 0,
            ..ProtectionConfig::default()
        };
        assert!(Protection::from_config(&config).is_err());
    }
}
