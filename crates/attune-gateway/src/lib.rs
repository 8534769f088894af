//! The gateway: Attune's public port. The only data it owns is the access log
//! and the status of data-subject requests, and it knows no service by name
//! but consent, whose audit log records each data-subject request: it is given
//! [`Backend`]s (from the binary's service registry) and
//!
//! - forwards every call under a backend's API package (`/attune.consent.v1.*`)
//!   to it unchanged ([`Router`]): in one process a direct call of the
//!   backend's server, across processes an HTTP/2 channel to its pod; the
//!   caller's deadline (`grpc-timeout`) travels with the call, and a fresh
//!   `traceparent` makes the gateway's span the backend's parent;
//! - lists every routed service in reflection, and in health with its backend's
//!   own status (NOT_SERVING while the backend is down);
//! - serves `attune.gateway.v1.DataSubjectRequestService`, whose export and
//!   erasure fan out to every backend holding personal data, one receipt per
//!   service, each request's status stored as it progresses
//!   (`GetDataSubjectRequest`), an erasure re-run to completion, an export
//!   resumed from a token. Each backend's `attune.privacy.v1.DataSubjectService`
//!   stays internal: the public port does not route `attune.privacy.v1`;
//! - keeps the data-access log ([`AccessLog`], `attune.gateway.v1.DataAccessService`),
//!   the only data the gateway owns; it takes part in data-subject requests as
//!   `attune.gateway.v1`.
//! - serves `attune.gateway.v1.GatewayService` ([`Experience`], mounted by
//!   [`mount_experience`]): one page's whole experience from every service in
//!   one call, each part within its budget and filtered by consent, and what
//!   Attune holds about a customer and why.
//!
//! Anything else is UNIMPLEMENTED, as from any gRPC server.

mod access_log;
mod backend;
mod data_subject;
mod experience;
mod health;
pub mod policy;
mod router;

use attune_kit::clock::Clock;
use attune_kit::config::{ConsentCheckerConfig, Limits};
use attune_kit::server::{GrpcServer, HttpService, ServerError};
use attune_proto::gateway::v1::data_subject_request_service_server::DataSubjectRequestServiceServer;
use attune_proto::gateway::v1::gateway_service_server::GatewayServiceServer;
use tonic_health::ServingStatus;

pub use access_log::{
    Access, AccessLog, AccessLogWriter, Caller, Migrator, NOT_RECORDED,
    PACKAGE as ACCESS_LOG_PACKAGE, READS, Read, read_of,
};
pub use backend::{Backend, BackendAddressError};
pub use data_subject::DataSubjectRequests;
pub use experience::Experience;
pub use policy::{Policy, PolicyError, PolicySettings, Principal};
pub use router::Router;

/// Mounts the gateway on `server`, the public port, in front of `backends`
/// (whose API packages must differ), keeping its data-access log in `access_log`.
pub async fn mount(
    server: &mut GrpcServer,
    backends: Vec<Backend>,
    access_log: &AccessLog,
    limits: &Limits,
) -> Result<(), ServerError> {
    let reporter = server.health_reporter();
    for backend in &backends {
        for &service in backend.services() {
            // Unknown until the backend has answered the first watch.
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
            let (backend, reporter) = (backend.clone(), reporter.clone());
            server.spawn_background("gateway-health-mirror", move |cancel| {
                health::mirror(backend, service, reporter, cancel)
            });
        }
        server.list_routed(backend.services().iter().copied());
    }
    // The log's own data is covered like a backend's, but it routes nothing.
    let mut holding = backends.clone();
    holding.push(access_log.backend(limits).await?);
    let requests = DataSubjectRequests::new(&holding).recording_in(access_log.clone());
    let audits = requests.clone();
    server.spawn_background("gateway-pending-audits", move |cancel| {
        audits.send_pending_audits(cancel)
    });
    server.add_service(attune_kit::with_limits!(
        DataSubjectRequestServiceServer::new(requests),
        limits
    ));
    access_log.mount_api(server, limits);
    server.route_elsewhere(HttpService::new(Router::new(backends)));
    Ok(())
}

/// Mounts `attune.gateway.v1.GatewayService` on `server` over `backends`, with
/// the cached consent checker it composes pages under following consent's
/// change stream in the background, recording in `access_log` the pages of
/// customers a request did not name (see [`Experience::recording_reads`]).
pub fn mount_experience(
    server: &mut GrpcServer,
    backends: &[Backend],
    access_log: &AccessLog,
    checker: &ConsentCheckerConfig,
    limits: &Limits,
    clock: Clock,
) {
    let experience = Experience::new(backends, checker, clock).recording_reads(access_log.clone());
    if let Some(checker) = experience.consent_checker() {
        server.spawn_background("gateway-consent-checker", move |cancel| {
            checker.follow(cancel)
        });
    }
    server.add_service(attune_kit::with_limits!(
        GatewayServiceServer::new(experience),
        limits
    ));
}
