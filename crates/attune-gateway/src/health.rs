//! The public port's health for every routed service mirrors its backend's own
//! `grpc.health.v1` status: one `Watch` per service (a direct call in one
//! process, a stream over HTTP/2 to a pod), re-opened with backoff when it
//! breaks. While a backend cannot be reached its services are NOT_SERVING here.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;

use crate::backend::Backend;

/// First wait before watching again after a break; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between attempts: a backend that comes back is SERVING here
/// within about this long.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Mirrors `service`'s status at `backend` into `reporter` until `cancel`.
pub(crate) async fn mirror(
    backend: Backend,
    service: &'static str,
    reporter: HealthReporter,
    cancel: CancellationToken,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut client = HealthClient::new(backend.transport());
        let watched = tokio::select! {
            () = cancel.cancelled() => return,
            watched = client.watch(HealthCheckRequest {
                service: service.to_owned(),
            }) => watched,
        };
        if let Ok(stream) = watched {
            let mut stream = stream.into_inner();
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return,
                    next = stream.message() => next,
                };
                let Ok(Some(response)) = next else { break };
                let status = if response.status == WireStatus::Serving as i32 {
                    backoff = FIRST_BACKOFF;
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(service, status).await;
            }
        }
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
