//! Protection of the public port: a rate limit per caller and per customer
//! (GCRA buckets from `governor`, answered RESOURCE_EXHAUSTED with
//! `google.rpc.RetryInfo` saying when to come back), and a bound on calls in
//! progress beyond which calls are shed at once rather than queued.
//!
//! Every call counts against a caller's bucket: an authenticated caller's
//! under its identity, any other (development mode, health and reflection,
//! credentials refused) under its network address, so that no caller is
//! unlimited for want of credentials.
//!
//! A call holds its place among the calls in progress until its answer has
//! been sent, a stream's last message included (see [`Permitted`]).
//! Long-lived streams (watches, feeds) hold a place of their own kind: they may
//! stay open for hours, and a pool of them full must not refuse a unary call.
//!
//! The buckets run on monotonic time (not the business clock): they measure
//! load, not a rule about dates.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use attune_kit::config::ProtectionConfig;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::jwt::KeyError;

type Limiter<K = String> = DefaultKeyedRateLimiter<K>;

/// Rate limits and load shedding.
pub(crate) struct Protection {
    callers: Limiter,
    addresses: Limiter<IpAddr>,
    customers: Limiter,
    in_flight: Arc<Semaphore>,
    long_lived: Arc<Semaphore>,
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
        let at_least_one = |max: u32, setting: &'static str| {
            usize::try_from(max)
                .ok()
                .filter(|max| *max > 0)
                .ok_or(KeyError::Invalid {
                    setting,
                    reason: "must be at least 1".into(),
                })
        };
        let max_calls = at_least_one(
            config.max_concurrent_calls,
            "security.protection.max_concurrent_calls",
        )?;
        let max_long_lived = at_least_one(
            config.max_long_lived_streams,
            "security.protection.max_long_lived_streams",
        )?;
        Ok(Self {
            callers: RateLimiter::keyed(quota(
                config.caller_rate,
                config.caller_burst,
                "security.protection.caller_rate",
            )?),
            addresses: RateLimiter::keyed(quota(
                config.address_rate,
                config.address_burst,
                "security.protection.address_rate",
            )?),
            customers: RateLimiter::keyed(quota(
                config.customer_rate,
                config.customer_burst,
                "security.protection.customer_rate",
            )?),
            in_flight: Arc::new(Semaphore::new(max_calls)),
            long_lived: Arc::new(Semaphore::new(max_long_lived)),
            clock: DefaultClock::default(),
        })
    }

    /// A place among the calls in progress (among the long-lived streams for
    /// one), to be held until the call has answered ([`Permitted`]); none
    /// left: RESOURCE_EXHAUSTED at once.
    pub(crate) fn admit(&self, long_lived: bool) -> Result<OwnedSemaphorePermit, Status> {
        if long_lived {
            return Arc::clone(&self.long_lived)
                .try_acquire_owned()
                .map_err(|_| {
                    exhausted(
                        "too many streams are open; retry later",
                        Duration::from_secs(1),
                    )
                });
        }
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

    /// Counts a call by a caller without credentials, from `address`.
    pub(crate) fn check_address(&self, address: IpAddr) -> Result<(), Status> {
        self.addresses.check_key(&address).map_err(|not_until| {
            exhausted(
                "too many calls from this address; retry later",
                not_until.wait_time_from(self.clock.now()),
            )
        })
    }

    fn check(&self, limiter: &Limiter, key: &str, message: &str) -> Result<(), Status> {
        // `check_key` takes the key by reference but stores an owned one.
        limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| exhausted(message, not_until.wait_time_from(self.clock.now())))
    }

    /// Drops the buckets of callers, addresses and customers not seen lately.
    pub(crate) fn forget_idle(&self) {
        self.callers.retain_recent();
        self.addresses.retain_recent();
        self.customers.retain_recent();
        self.callers.shrink_to_fit();
        self.addresses.shrink_to_fit();
        self.customers.shrink_to_fit();
    }
}

/// An answer's body holding the call's place among the calls in progress
/// until its last frame is sent, or until the body is dropped (the caller went
/// away): a streaming answer counts for as long as it streams, not only until
/// its headers.
pub(crate) struct Permitted {
    body: Body,
    permit: Option<OwnedSemaphorePermit>,
}

impl Permitted {
    /// `response` with its body holding `permit`.
    pub(crate) fn hold(
        response: http::Response<Body>,
        permit: OwnedSemaphorePermit,
    ) -> http::Response<Body> {
        response.map(|body| {
            Body::new(Self {
                permit: (!body.is_end_stream()).then_some(permit),
                body,
            })
        })
    }
}

impl http_body::Body for Permitted {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            // The answer is complete: the place is free before hyper gets
            // round to dropping the body.
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
            address_rate: 1,
            address_burst: 1,
            max_concurrent_calls,
            max_long_lived_streams: 1,
        })
        .unwrap()
    }

    #[test]
    fn calls_beyond_the_bound_are_shed_until_one_ends() {
        let protection = protection(2);
        let first = protection.admit(false).unwrap();
        let _second = protection.admit(false).unwrap();
        let shed = protection.admit(false).unwrap_err();
        assert_eq!(shed.code(), Code::ResourceExhausted);
        assert!(shed.get_details_retry_info().is_some());
        drop(first);
        let _third = protection.admit(false).unwrap();
    }

    #[test]
    fn long_lived_streams_have_places_of_their_own() {
        let protection = protection(1);
        let _watch = protection.admit(true).unwrap();
        assert_eq!(
            protection.admit(true).unwrap_err().code(),
            Code::ResourceExhausted
        );
        let _unary = protection.admit(false).unwrap();
    }

    #[test]
    fn callers_without_credentials_are_limited_by_address() {
        let protection = protection(1);
        let here: IpAddr = [127, 0, 0, 1].into();
        protection.check_address(here).unwrap();
        let refused = protection.check_address(here).unwrap_err();
        assert!(refused.get_details_retry_info().is_some());
        protection.check_address([127, 0, 0, 2].into()).unwrap();
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
