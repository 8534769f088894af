//! Delivery: how a customer wants to receive and pay for an order. Encrypted
//! addresses (envelope encryption, `crypto`), the retailer's delivery network
//! (`network`), slot reservations that never overbook (`reservations`), quotes
//! that hold their price (`quote`), explicit and learned preferences
//! (`preferences`, learning from profile's feed), ranked options with typed
//! reasons and the nearest pickup points through a spatial index (`options`,
//! `geo`), loyalty's free shipping (`loyalty`), and the data-subject API
//! (`subject`).

pub mod addresses;
mod api;
pub mod app;
pub mod choices;
pub mod crypto;
pub mod geo;
pub mod loyalty;
mod mask;
pub mod network;
pub mod options;
pub mod preferences;
pub mod quote;
pub mod reservations;
pub mod slots;
pub mod snapshot;
pub mod store;
mod subject;
mod validate;

use std::sync::Arc;

use attune_kit::consent::ConsentChecker;
use attune_kit::db::DbError;
use attune_kit::follower::Follower;
use attune_kit::profile_feed::ProfileFeedSource;
use attune_kit::server::GrpcServer;
use attune_kit::service::{MountError, ServiceContext};
use attune_proto::delivery::v1::delivery_service_server::DeliveryServiceServer;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use attune_proto::profile::v1 as profile_pb;
use sea_orm::DatabaseConnection;

pub use app::Delivery;
pub use store::migration::Migrator;

/// Delivery as the platform runs it: listed once in the binary's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryService;

/// The public gRPC services of `attune.delivery.v1`.
const API_SERVICES: &[&str] = &["attune.delivery.v1.DeliveryService"];

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Consent or profile is not reachable from here.
    #[error(transparent)]
    Peer(#[from] attune_kit::peer::MissingPeer),
    /// The pseudonymisation key cannot be read or generated.
    #[error(transparent)]
    Secrets(#[from] attune_kit::secrets::SecretsError),
    /// The master key is unusable.
    #[error(transparent)]
    MasterKey(#[from] crypto::CryptoError),
    /// The delivery network cannot be read.
    #[error("the delivery network cannot be read: {0:?}")]
    Network(attune_kit::ApiError),
}

#[tonic::async_trait]
impl attune_kit::Service for DeliveryService {
    fn name(&self) -> &'static str {
        "delivery"
    }

    fn api_package(&self) -> &'static str {
        "attune.delivery.v1"
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
        let delivery = open(server, context).await?;
        let limits = &config.limits;
        server.add_service(attune_kit::with_limits!(
            DeliveryServiceServer::new(api::DeliveryApi::new(delivery.clone())),
            limits
        ));
        server.add_service(attune_kit::with_limits!(
            DataSubjectServiceServer::new(subject::DeliveryPrivacyApi::new(delivery)),
            limits
        ));
        Ok(())
    }
}

/// Delivery's state over the context's database, with its background tasks
/// (the consent checker's stream, the learner on profile's feed) on `server`.
async fn open(server: &mut GrpcServer, context: ServiceContext) -> Result<Delivery, StartError> {
    let ServiceContext {
        db,
        config,
        clock,
        peers,
        ..
    } = context;
    let consent = peers.get("consent")?;
    let profile = peers.get("profile")?;
    // Loyalty is optional: without it tier benefits are ignored, and answers say so.
    let loyalty = peers.get("loyalty").ok();
    let (key, _) = store::SECRETS.pseudonym_key(&db, &config.secrets).await?;
    let (master_key, source) =
        crypto::MasterKey::load(config.delivery.master_key_file.as_deref(), &key)?;
    match source {
        crypto::MasterKeySource::File => tracing::info!("delivery master key loaded from its file"),
        crypto::MasterKeySource::DerivedDevelopmentDefault => tracing::warn!(
            "delivery.master_key_file is not set: addresses are encrypted under a key derived \
             from the pseudonymisation key (development default); set a master key kept apart \
             from the database in production"
        ),
    }
    let checker = ConsentChecker::new(consent, &config.consent_checker).with_clock(clock.clone());
    server.spawn_background("delivery-consent-checker", |cancel| {
        checker.clone().follow(cancel)
    });
    let learner = Follower::new(
        preferences::FOLLOWER,
        db.clone(),
        ProfileFeedSource::new(profile).only([profile_pb::EventKind::Purchase]),
        preferences::Learn,
        &config.feeds,
    );
    server.spawn_background("delivery-learner", |cancel| learner.run(cancel));
    let network = Arc::new(snapshot::NetworkCache::default());
    network.refresh(&db).await.map_err(StartError::Network)?;
    let (cache, reader, every) = (
        Arc::clone(&network),
        db.clone(),
        config.delivery.network_refresh,
    );
    server.spawn_background("delivery-network-refresh", move |cancel| {
        cache.follow(reader, every, cancel)
    });
    Ok(Delivery {
        db,
        clock,
        checker,
        loyalty,
        tier_benefits: crate::loyalty::TierBenefitsCache::default(),
        key: Arc::new(key),
        master_key: Arc::new(master_key),
        network,
        settings: config.delivery,
    })
}
