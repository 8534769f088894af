//! How the gateway reaches one service: a tower service taking the caller's
//! HTTP/2 request as it is. In one process that is the service's
//! [`LocalServer`] itself (no socket, no re-encoding); across processes the
//! service's [`Replicas`]: its pods, taking calls in turn.

use std::convert::Infallible;
use std::sync::Arc;

use attune_kit::config::ReplicasConfig;
use attune_kit::peer::Replicas;
use attune_kit::server::{HttpService, LocalServer};
use attune_kit::service::{Service, route_prefix};
use tonic::body::Body;

/// Why a backend address cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid address {address:?} for the {service} backend: {reason}")]
pub struct BackendAddressError {
    service: &'static str,
    address: String,
    reason: String,
}

/// One service as the gateway routes to it.
#[derive(Clone)]
pub struct Backend {
    package: &'static str,
    services: &'static [&'static str],
    holds_personal_data: bool,
    prefix: Arc<str>,
    transport: HttpService,
    in_process: bool,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("package", &self.package)
            .field("services", &self.services)
            .field("holds_personal_data", &self.holds_personal_data)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend reached through `transport`, serving `package`'s `services`
    /// (and `attune.privacy.v1.DataSubjectService` when it holds personal data).
    pub fn new(
        package: &'static str,
        services: &'static [&'static str],
        holds_personal_data: bool,
        transport: HttpService,
    ) -> Self {
        Self {
            package,
            services,
            holds_personal_data,
            prefix: route_prefix(package).into(),
            transport,
            in_process: false,
        }
    }

    /// `service` running in this process on `server`: called directly.
    pub fn in_process(service: &dyn Service, server: &LocalServer) -> Self {
        Self {
            in_process: true,
            ..Self::new(
                service.api_package(),
                service.api_services(),
                service.holds_personal_data(),
                server.service(),
            )
        }
    }

    /// Data of the gateway's own under `package` (its data-access log), served
    /// by `server` in this process: a backend of data-subject requests only,
    /// with no public services of its own.
    pub(crate) fn own(package: &'static str, server: &LocalServer) -> Self {
        Self {
            in_process: true,
            ..Self::new(package, &[], true, server.service())
        }
    }

    /// `service` running in other processes at `addresses` (`http://consent:50051`,
    /// or several replicas: see [`Replicas`]). Connects lazily and reconnects by
    /// itself: a backend that is down makes its calls UNAVAILABLE and its health
    /// NOT_SERVING, never the gateway fail.
    pub fn remote(
        service: &dyn Service,
        addresses: &str,
        settings: &ReplicasConfig,
    ) -> Result<Self, BackendAddressError> {
        let replicas = Replicas::new(addresses, settings).map_err(|error| BackendAddressError {
            service: service.name(),
            address: error.address,
            reason: error.reason,
        })?;
        Ok(Self::new(
            service.api_package(),
            service.api_services(),
            service.holds_personal_data(),
            remote_transport(service.api_package(), replicas),
        ))
    }

    /// The API package routed to this backend, e.g. `attune.consent.v1`; also the
    /// name its data-subject receipts carry.
    pub fn package(&self) -> &'static str {
        self.package
    }

    /// The public gRPC services of this backend.
    pub fn services(&self) -> &'static [&'static str] {
        self.services
    }

    /// Whether data-subject requests fan out to this backend.
    pub fn holds_personal_data(&self) -> bool {
        self.holds_personal_data
    }

    /// Whether a call to `path` belongs to this backend.
    pub(crate) fn routes(&self, path: &str) -> bool {
        path.starts_with(&*self.prefix)
    }

    /// Whether calls run in this process, inside the caller's span (see
    /// [`LocalServer::service`]): they need no `traceparent`.
    pub(crate) fn runs_in_process(&self) -> bool {
        self.in_process
    }

    /// The transport, for a call of its own (a tonic client takes it as its channel).
    pub(crate) fn transport(&self) -> HttpService {
        self.transport.clone()
    }
}

/// A backend in another process. A transport error (connection refused, reset)
/// becomes an UNAVAILABLE answer, as a client talking to the pod would see.
fn remote_transport(package: &'static str, replicas: Replicas) -> HttpService {
    HttpService::new(tower::service_fn(move |request: http::Request<Body>| {
        let replicas = replicas.clone();
        async move {
            match tower::ServiceExt::oneshot(replicas, request).await {
                Ok(response) => Ok::<_, Infallible>(response),
                Err(error) => {
                    tracing::warn!(backend = package, %error, "backend unreachable");
                    Ok(
                        tonic::Status::unavailable(format!("{package} is unreachable; retry"))
                            .into_http(),
                    )
                }
            }
        }
    }))
}
