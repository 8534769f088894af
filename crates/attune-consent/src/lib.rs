//! Consent: the purposes catalogue, the append-only consent ledger and the check
//! every other Attune service runs before it touches personal data.
//!
//! `api` is the gRPC face, `convert` translates between wire and domain, `service`
//! runs the operations, `domain` holds the rules (no tonic, no sea-orm), `store`
//! the entities, migrations and queries.

mod api;
mod convert;
pub mod domain;
mod error;
mod local_source;
mod privacy_api;
mod request_audit;
mod service;
pub mod store;
mod subject_rights;
mod watch;

use std::sync::Arc;

use attune_kit::consent::ConsentChecker;
use attune_kit::db::DbError;
use attune_kit::server::GrpcServer;
use attune_kit::service::{MountError, ServiceContext};
use attune_proto::consent::v1::consent_service_server::ConsentServiceServer;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use sea_orm::DatabaseConnection;
use tonic::server::NamedService;

pub use api::ConsentApi;
pub use domain::{AuditProblem, AuditProblemKind, AuditVerification};
pub use error::ConsentError;
pub use privacy_api::ConsentPrivacyApi;
pub use service::Consent;
pub use store::migration::Migrator;
pub use watch::{ChangeFeed, change_feed};

/// Consent as the platform runs it: listed once in the binary's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsentService;

#[tonic::async_trait]
impl attune_kit::Service for ConsentService {
    fn name(&self) -> &'static str {
        "consent"
    }

    fn api_package(&self) -> &'static str {
        "attune.consent.v1"
    }

    fn api_services(&self) -> &'static [&'static str] {
        &[<ConsentServiceServer<ConsentApi> as NamedService>::NAME]
    }

    fn holds_personal_data(&self) -> bool {
        true
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbError> {
        attune_kit::db::migrate::<Migrator>(db).await
    }

    async fn mount(
        &self,
        server: &mut GrpcServer,
        context: ServiceContext,
    ) -> Result<(), MountError> {
        Ok(mount(server, context).await?)
    }
}

/// Mounts consent on `server`, its own backend server, over the context's
/// database (migrated with [`Migrator`]) and on its clock: the consent API; consent's data-subject API (internal: the
/// gateway's data-subject requests reach it, the public port does not route it);
/// the change feed's poller; and the cached checker that answers checks,
/// reading this service's store and feed directly.
async fn mount(server: &mut GrpcServer, context: ServiceContext) -> Result<(), ConsentError> {
    let ServiceContext {
        db, config, clock, ..
    } = context;
    let feed = watch::change_feed(db.clone(), config.feeds.clone(), server.shutdown_token());
    server.spawn_background("consent-change-feed", |cancel| {
        Arc::clone(&feed).follow_database(cancel)
    });
    // Checks answer from the cached checker every other service uses, with the
    // same cache, journal and freshness rules; only its source differs: this
    // service's store and feed, with no gRPC hop to itself.
    let source = local_source::LocalSource::new(db.clone(), Arc::clone(&feed));
    // The service and its cache judge expiry by one clock, so an answer from
    // the cache and one from the database agree on when a grant stops counting.
    let cache = ConsentChecker::with_source(Arc::new(source), &config.consent_checker)
        .with_clock(clock.clone());
    server.spawn_background("consent-check-cache", |cancel| cache.clone().follow(cancel));
    let consent = Consent::open(db, feed, cache, &config.secrets, clock).await?;
    let api = ConsentApi::new(consent.clone());
    server.add_service(attune_kit::with_limits!(
        ConsentServiceServer::new(api),
        &config.limits
    ));
    server.add_service(attune_kit::with_limits!(
        DataSubjectServiceServer::new(ConsentPrivacyApi::new(consent)),
        &config.limits
    ));
    Ok(())
}

/// Verifies the privacy audit log in `db` without a running server (for `attune
/// audit verify`): every entry present, unaltered and chained to the one before.
/// [`store::audit::exists`] tells first whether the database holds the log at all.
pub async fn verify_audit_log(db: &DatabaseConnection) -> Result<AuditVerification, ConsentError> {
    store::audit::verify(db).await
}
