//! Fail fast while the database is unreachable, and say so in `grpc.health.v1`.
//!
//! Without this, every call to a service whose database is down waits out the
//! pool's acquire timeout before it fails, and health keeps answering SERVING, so
//! a load balancer keeps sending traffic. [`watch`] probes the database in the
//! background; once a probe fails it marks the [`Availability`] down, which makes
//! every [`Gated`] service answer UNAVAILABLE at once (no database round trip,
//! no pool wait), and reports NOT_SERVING for the overall status and each
//! service. The first probe that succeeds again reverses both: recovery needs no
//! restart.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, Ready, ready};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::DatabaseConfig;

/// What a caller of a gated service reads while the database is down.
pub const UNAVAILABLE_MESSAGE: &str = "database unavailable, retry later";

/// Whether the database answered its last probe; cloned handles share one state.
/// Starts available: a server starts after connecting and migrating.
#[derive(Debug, Clone)]
pub struct Availability(Arc<AtomicBool>);

impl Default for Availability {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Availability {
    /// True unless the last probe failed.
    pub fn is_available(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Records a probe's outcome; true when that changed the state.
    fn set(&self, available: bool) -> bool {
        self.0.swap(available, Ordering::AcqRel) != available
    }
}

/// How often and how patiently the database is probed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Time between two probes (and so the longest a new outage goes unnoticed,
    /// plus `timeout`).
    pub interval: Duration,
    /// A probe that has not answered within this has failed.
    pub timeout: Duration,
}

impl From<&DatabaseConfig> for ProbeSettings {
    /// Every `health_interval`; a probe may wait `acquire_timeout` for a pooled
    /// connection, as a call would, so a busy pool is not mistaken for an outage.
    fn from(config: &DatabaseConfig) -> Self {
        Self {
            interval: config.health_interval,
            timeout: config.acquire_timeout,
        }
    }
}

/// Probes `db` every `settings.interval` until `cancel`: sets `availability` and
/// flips the overall status (`""`) and each of `services` between SERVING and
/// NOT_SERVING in `health` when the database goes away or comes back.
pub async fn watch(
    db: DatabaseConnection,
    availability: Availability,
    health: HealthReporter,
    services: Vec<&'static str>,
    settings: ProbeSettings,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; the server has just connected
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let available = tokio::select! {
            () = cancel.cancelled() => return,
            probed = tokio::time::timeout(settings.timeout, db.ping()) => {
                matches!(probed, Ok(Ok(())))
            }
        };
        if !availability.set(available) {
            continue;
        }
        let status = if available {
            tracing::info!("database reachable again; reporting SERVING");
            ServingStatus::Serving
        } else {
            tracing::warn!("database unreachable; failing calls fast and reporting NOT_SERVING");
            ServingStatus::NotServing
        };
        for name in std::iter::once("").chain(services.iter().copied()) {
            health.set_service_status(name, status).await;
        }
    }
}

/// A gRPC service that answers UNAVAILABLE at once while its database is down,
/// instead of letting each call wait on the connection pool.
#[derive(Debug, Clone)]
pub struct Gated<S> {
    inner: S,
    availability: Availability,
}

impl<S> Gated<S> {
    /// `inner`, refused while `availability` says the database is down.
    pub fn new(inner: S, availability: Availability) -> Self {
        Self {
            inner,
            availability,
        }
    }
}

impl<S: NamedService> NamedService for Gated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Gated<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if self.availability.is_available() {
            Either::Left(self.inner.call(request))
        } else {
            Either::Right(ready(Ok(
                tonic::Status::unavailable(UNAVAILABLE_MESSAGE).into_http()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health as _;
    use tonic_health::server::HealthService;
    use tower::Service as _;

    /// Answers every call with an empty OK response.
    #[derive(Clone)]
    struct Ok200;

    impl tower::Service<http::Request<Body>> for Ok200 {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Ready<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
            ready(Ok(http::Response::new(Body::empty())))
        }
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_gated_service_answers_unavailable_only_while_the_database_is_down() {
        let availability = Availability::default();
        let mut gated = Gated::new(Ok200, availability.clone());
        let up = gated
            .call(http::Request::new(Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(grpc_status(&up), None, "passed through to the service");

        assert!(availability.set(false));
        let down = gated
            .call(http::Request::new(Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(grpc_status(&down), Some("14")); // UNAVAILABLE

        assert!(availability.set(true));
        assert!(!availability.set(true), "no change, nothing to report");
    }

    #[tokio::test]
    async fn a_failed_probe_reports_not_serving_for_the_server_and_each_service() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = DatabaseConfig {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display()),
            ..DatabaseConfig::default()
        };
        let db = crate::db::connect(&config).await.expect("sqlite opens");
        let (reporter, service) = (HealthReporter::new(), "attune.test.v1.TestService");
        for name in ["", service] {
            reporter
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let availability = Availability::default();
        let cancel = CancellationToken::new();
        let settings = ProbeSettings {
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(100),
        };
        let watching = tokio::spawn(watch(
            db.clone(),
            availability.clone(),
            reporter.clone(),
            vec![service],
            settings,
            cancel.clone(),
        ));
        // A closed pool fails every probe, as an unreachable server does.
        db.close().await.expect("pool closes");
        for _ in 0..200 {
            if !availability.is_available() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!availability.is_available(), "the failed probe was noticed");

        let health = HealthService::from_health_reporter(reporter);
        for name in ["", service] {
            let status = health
                .check(tonic::Request::new(HealthCheckRequest {
                    service: name.to_owned(),
                }))
                .await
                .expect("the status is known")
                .into_inner()
                .status;
            let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing;
            assert_eq!(status, not_serving as i32, "`{name}`");
        }
        cancel.cancel();
        watching.await.expect("the watch ends when cancelled");
    }
}
