//! What a service tells the platform about itself, so the binary lists each
//! service once and the gateway routes it without knowing it.
//!
//! A service crate implements [`Service`] on a unit struct; `crates/attune`
//! lists it in its registry. From that one entry the binary migrates the
//! service's schema, mounts it on its own backend [`GrpcServer`] (in one process
//! or as its own pod), and the gateway routes every path under
//! [`Service::api_package`] to it, mirrors the health of its
//! [`Service::api_services`], lists them in reflection, and, when
//! [`Service::holds_personal_data`], includes it in every data-subject request.

use sea_orm::DatabaseConnection;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::DbError;
use crate::peer::Peers;
use crate::server::GrpcServer;

/// Why a service could not be mounted (its own error type, boxed).
pub type MountError = Box<dyn std::error::Error + Send + Sync>;

/// One Attune service as the platform runs it.
///
/// Object safe, so a registry is a plain `&[&dyn Service]`.
#[tonic::async_trait]
pub trait Service: Send + Sync + 'static {
    /// Short lower-case name: `--service NAME`, configuration keys
    /// (`gateway.backends.NAME`), logs. For example `"consent"`.
    fn name(&self) -> &'static str;

    /// The proto package of the public API, for example `"attune.consent.v1"`:
    /// the gateway forwards every path under `/attune.consent.v1.` to this service.
    fn api_package(&self) -> &'static str;

    /// Fully qualified names of the public gRPC services in [`api_package`](Self::api_package),
    /// for example `["attune.consent.v1.ConsentService"]`: what the public port
    /// lists in reflection and reports in health.
    fn api_services(&self) -> &'static [&'static str];

    /// Whether the service holds personal data. Then it serves
    /// `attune.privacy.v1.DataSubjectService` on its own backend server (never on
    /// the public port), and the gateway's data-subject requests fan out to it.
    fn holds_personal_data(&self) -> bool;

    /// Brings the service's tables up to date in `db` (its own migration history).
    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbError>;

    /// Mounts the service's gRPC APIs (public, and `DataSubjectService` when it
    /// holds personal data) and its background tasks onto `server`, its own
    /// backend server, with what `context` gives it (its database, already
    /// migrated, its configuration and its clock).
    async fn mount(
        &self,
        server: &mut GrpcServer,
        context: ServiceContext,
    ) -> Result<(), MountError>;
}

/// What the platform hands a service when it mounts it. A service takes
/// everything outside itself from here, so that a test can run the real server
/// on a test database and a [`ManualClock`](crate::clock::ManualClock).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceContext {
    /// The service's database, its schema already migrated.
    pub db: DatabaseConnection,
    /// The whole configuration (a service reads its own sections).
    pub config: Config,
    /// Where the service reads "now": every rule about time (expiry, clock
    /// skew, receipt times) and every consent check it runs use this clock.
    pub clock: Clock,
    /// The other services it may call (consent, for every service that checks
    /// consent): in one process their backend servers, as a pod their addresses.
    pub peers: Peers,
}

impl ServiceContext {
    /// The context of a service running over `db`, configured by `config`, on
    /// `clock`, calling other services through `peers`.
    pub fn new(db: DatabaseConnection, config: Config, clock: Clock, peers: Peers) -> Self {
        Self {
            db,
            config,
            clock,
            peers,
        }
    }
}

impl std::fmt::Debug for dyn Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The path prefix the gateway routes to a service whose API package is
/// `package`: `/attune.consent.v1.` (the dot keeps `attune.consent.v10` apart).
pub fn route_prefix(package: &str) -> String {
    format!("/{package}.")
}

#[cfg(test)]
mod tests {
    use super::route_prefix;

    #[test]
    fn a_route_prefix_matches_its_package_only() {
        let prefix = route_prefix("attune.consent.v1");
        assert!("/attune.consent.v1.ConsentService/CheckConsent".starts_with(&prefix));
        assert!(!"/attune.consent.v10.ConsentService/CheckConsent".starts_with(&prefix));
        assert!(!"/attune.privacy.v1.DataSubjectService/EraseCustomer".starts_with(&prefix));
    }
}
