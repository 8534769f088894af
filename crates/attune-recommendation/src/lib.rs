//! Recommendation: catalogue mirror, session state, models served from memory,
//! explained and consent-aware answers.
//!
//! `app` is the state every part shares; `catalogue` the mirror (in memory
//! and stored); `follow` learns interactions and session state from profile's
//! feed; `training` trains [`model`] snapshots in the background and `served`
//! swaps them in; `answer` turns a request into explained items under consent
//! and the business rules; `api`, `subject` are the gRPC services.

mod answer;
mod api;
pub mod app;
mod audiences;
pub mod catalogue;
mod convert;
mod customer_index;
pub mod domain;
mod experiments;
mod follow;
pub mod idmap;
mod impressions;
pub mod model;
mod replicas;
mod served;
mod sessions;
pub mod store;
mod subject;
mod tastes;
mod training;
mod writes;

use std::sync::Arc;

use attune_kit::consent::ConsentChecker;
use attune_kit::db::DbError;
use attune_kit::follower::Follower;
use attune_kit::profile_feed::ProfileFeedSource;
use attune_kit::replicas::ChangeLog;
use attune_kit::server::GrpcServer;
use attune_kit::service::{MountError, ServiceContext};
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use attune_proto::recommendation::v1::recommendation_service_server::RecommendationServiceServer;
use sea_orm::DatabaseConnection;

pub use app::Recommendation;
pub use store::migration::Migrator;

/// Recommendation as the platform runs it: listed once in the binary's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecommendationService;

/// The public gRPC services of `attune.recommendation.v1`.
const API_SERVICES: &[&str] = &["attune.recommendation.v1.RecommendationService"];

#[tonic::async_trait]
impl attune_kit::Service for RecommendationService {
    fn name(&self) -> &'static str {
        "recommendation"
    }

    fn api_package(&self) -> &'static str {
        "attune.recommendation.v1"
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
        let peers = context.peers.clone();
        let app = open(server, context).await?;
        let limits = &config.limits;
        server.add_service(attune_kit::with_limits!(
            RecommendationServiceServer::new(api::RecommendationApi::new(app.clone())),
            limits
        ));
        server.add_service(attune_kit::with_limits!(
            DataSubjectServiceServer::new(subject::RecommendationPrivacyApi::new(app.clone())),
            limits
        ));
        // Profile's feed; without profile (not configured) recommendation still
        // serves the catalogue and what it learned before, and says so.
        match peers.get("profile") {
            Ok(profile) => {
                let follower = Follower::new(
                    follow::FOLLOWER,
                    app.db.clone(),
                    ProfileFeedSource::new(profile).only(follow::KINDS),
                    follow::Learn::new(app.clone()),
                    &config.feeds,
                );
                server.spawn_background("recommendation-profile-follower", |cancel| {
                    follower.run(cancel)
                });
            }
            Err(missing) => tracing::warn!(
                %missing,
                "recommendation runs without profile's feed: no new interactions are learned"
            ),
        }
        let interval = config.recommendation.train_interval;
        let trainer = app.clone();
        server.spawn_background("recommendation-training", move |cancel| {
            training::run(trainer, interval, cancel)
        });
        Ok(())
    }
}

/// Why recommendation cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Consent is not reachable from here.
    #[error(transparent)]
    Peer(#[from] attune_kit::peer::MissingPeer),
    /// The key cannot be read or generated.
    #[error(transparent)]
    Secrets(#[from] attune_kit::secrets::SecretsError),
    /// The stored catalogue or experiments cannot be read.
    #[error("reading recommendation's tables failed: {0}")]
    Database(#[from] sea_orm::DbErr),
}

/// The service's state over the context's database: the catalogue and the
/// running experiment read into memory, the consent checker following consent.
async fn open(
    server: &mut GrpcServer,
    context: ServiceContext,
) -> Result<Recommendation, StartError> {
    let ServiceContext {
        db,
        config,
        clock,
        peers,
        ..
    } = context;
    let consent = peers.get("consent")?;
    let (key, _) = store::SECRETS.pseudonym_key(&db, &config.secrets).await?;
    let key = Arc::new(key);
    let names = replicas::Pseudonyms::new(Arc::clone(&key));
    let checker = ConsentChecker::new(consent, &config.consent_checker).with_clock(clock.clone());
    server.spawn_background("recommendation-consent-checker", |cancel| {
        checker.clone().follow(cancel)
    });
    let (impressions, queued) = impressions::ImpressionLog::new();
    let changes = ChangeLog::new("recommendation", config.recommendation.replica_refresh);
    // Read before the catalogue and the experiment: a change another replica
    // makes meanwhile is handed over again.
    let watch = changes.watch_from_now(&db).await?;
    let catalogue = Arc::new(catalogue::CatalogueCell::default());
    catalogue.replace(catalogue::Catalogue::new(store::items::all(&db).await?));
    let app = Recommendation {
        db,
        clock,
        consent: checker,
        key,
        catalogue,
        served: Arc::new(served::Served::new(names.clone())),
        sessions: Arc::new(sessions::Sessions::new(
            config.recommendation.session_cache_customers,
            names.clone(),
        )),
        // Without profile (not configured) the content fallback reads the
        // session alone.
        tastes: Arc::new(tastes::ProfileTastes::new(
            peers.get("profile").ok(),
            names.clone(),
        )),
        experiments: Arc::new(experiments::Experiments::default()),
        impressions: Arc::new(impressions),
        trainer: Arc::new(training::Trainer::default()),
        model_config: model::ModelConfig::default(),
        changes,
        names,
    };
    writes::load_experiments(&app).await?;
    let handler = replicas::Replicas(app.clone());
    server.spawn_background("recommendation-replica-changes", move |cancel| {
        watch.run(handler, cancel)
    });
    let writer = app.clone();
    server.spawn_background("recommendation-impressions", move |cancel| {
        impressions::write(writer, queued, cancel)
    });
    Ok(app)
}
