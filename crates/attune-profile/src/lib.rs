//! Profile: who a customer is across channels (profiles and identities), what
//! they volunteered (zero-party data), what they did (events, consent-gated at
//! collection), what that says about them (traits, segments), and the feed every
//! other service learns from.
//!
//! `app` is the state every API shares, `collection` consent at collection,
//! `feed` the ordered table of everything stored; each API lives in its own
//! module with its domain rules and storage.

pub mod app;
pub mod collection;
pub mod events;
pub mod feed;
pub mod identity;
mod people;
pub mod segments;
pub mod store;
mod subject;
mod tombstone;

use std::sync::Arc;

use attune_kit::consent::ConsentChecker;
use attune_kit::db::DbError;
use attune_kit::server::GrpcServer;
use attune_kit::service::{MountError, ServiceContext};
use attune_kit::types::Currency;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use attune_proto::profile::v1::event_service_server::EventServiceServer;
use attune_proto::profile::v1::profile_service_server::ProfileServiceServer;
use sea_orm::DatabaseConnection;

pub use app::Profile;
pub use store::migration::Migrator;

/// Profile as the platform runs it: listed once in the binary's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProfileService;

/// The public gRPC services of `attune.profile.v1`.
const API_SERVICES: &[&str] = &[
    "attune.profile.v1.ProfileService",
    "attune.profile.v1.EventService",
    "attune.profile.v1.SegmentService",
];

#[tonic::async_trait]
impl attune_kit::Service for ProfileService {
    fn name(&self) -> &'static str {
        "profile"
    }

    fn api_package(&self) -> &'static str {
        "attune.profile.v1"
    }

    fn api_services(&self) -> &'static [&'static str] {
        API_SERVICES
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
        let config = context.config.clone();
        let profile = open(server, context).await?;
        mount_apis(server, profile, &config);
        Ok(())
    }
}

/// Why profile cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Consent is not reachable from here.
    #[error(transparent)]
    Peer(#[from] attune_kit::peer::MissingPeer),
    /// The configuration is unusable.
    #[error("profile.reporting_currency: {0}")]
    Currency(String),
    /// The key cannot be read or generated.
    #[error(transparent)]
    Secrets(#[from] attune_kit::secrets::SecretsError),
}

/// Profile's state over the context's database, with its background tasks (the
/// feed's poller, the consent checker's stream, the catalogue refresh) started
/// on `server`.
async fn open(server: &mut GrpcServer, context: ServiceContext) -> Result<Profile, StartError> {
    let ServiceContext {
        db,
        config,
        clock,
        peers,
        ..
    } = context;
    let consent = peers.get("consent")?;
    let reporting_currency =
        Currency::parse(&config.profile.reporting_currency).map_err(StartError::Currency)?;
    let (key, _) = store::SECRETS.pseudonym_key(&db, &config.secrets).await?;
    let feed = feed::profile_feed(db.clone(), config.feeds.clone(), server.shutdown_token());
    server.spawn_background("profile-feed", |cancel| {
        Arc::clone(&feed).follow_database(cancel)
    });
    let checker =
        ConsentChecker::new(consent.clone(), &config.consent_checker).with_clock(clock.clone());
    server.spawn_background("profile-consent-checker", |cancel| {
        checker.clone().follow(cancel)
    });
    let collection = collection::Collection::new(checker, consent);
    let refresh = config.profile.catalogue_refresh;
    let gate = collection.clone();
    server.spawn_background("profile-consent-catalogue", move |cancel| {
        gate.keep_catalogue_fresh(refresh, cancel)
    });
    Ok(Profile {
        db,
        clock,
        collection,
        feed,
        key: Arc::new(key),
        reporting_currency,
        settings: config.profile,
    })
}

/// Adds profile's gRPC services, each with the platform's limits, and their
/// background tasks. The data-subject API is internal: the gateway's
/// data-subject requests reach it, the public port does not route it.
fn mount_apis(server: &mut GrpcServer, profile: Profile, config: &attune_kit::config::Config) {
    let limits = &config.limits;
    server.add_service(attune_kit::with_limits!(
        ProfileServiceServer::new(people::ProfileApi::new(profile.clone())),
        limits
    ));
    server.add_service(attune_kit::with_limits!(
        EventServiceServer::new(events::EventApi::new(profile.clone())),
        limits
    ));
    server.add_service(attune_kit::with_limits!(
        DataSubjectServiceServer::new(subject::ProfilePrivacyApi::new(profile.clone())),
        limits
    ));
    segments::mount(server, &profile, config);
}
