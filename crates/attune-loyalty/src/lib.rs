//! Loyalty: an exact points ledger (accounts, append-only entries, pending
//! points, debt), earning from profile's purchase feed by versioned rules,
//! tiers with typed benefits, FIFO expiry, rewards and vouchers, personalized
//! offers and the next-best message.
//!
//! `app` is the state every part shares; `ledger` the accounts and entries
//! (every write under loyalty's write lock); `points` the operations on them;
//! `earn` the follower of profile's feed; `offers_schedule` the background
//! offer pass; `messages` the next-best message; `rewards` the catalogue and vouchers;
//! `rules` the stored definitions; `domain` the pure rules; `api` and `subject`
//! the gRPC services.

mod api;
pub mod app;
mod convert;
pub mod domain;
mod earn;
mod ledger;
#[cfg(test)]
mod ledger_model;
mod messages;
mod offers;
mod offers_api;
mod offers_schedule;
mod points;
mod rewards;
mod rules;
pub mod store;
mod subject;
mod zone;

use std::time::Duration;

use attune_kit::consent::ConsentChecker;
use attune_kit::db::DbError;
use attune_kit::follower::{Backoff, Follower};
use attune_kit::profile_feed::ProfileFeedSource;
use attune_kit::server::GrpcServer;
use attune_kit::service::{MountError, ServiceContext};
use attune_proto::loyalty::v1::loyalty_service_server::LoyaltyServiceServer;
use attune_proto::loyalty::v1::offer_service_server::OfferServiceServer;
use attune_proto::privacy::v1::data_subject_service_server::DataSubjectServiceServer;
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub use app::Loyalty;
pub use store::migration::Migrator;

/// Loyalty as the platform runs it: listed once in the binary's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoyaltyService;

/// The public gRPC services of `attune.loyalty.v1`.
const API_SERVICES: &[&str] = &[
    "attune.loyalty.v1.LoyaltyService",
    "attune.loyalty.v1.OfferService",
];

#[tonic::async_trait]
impl attune_kit::Service for LoyaltyService {
    fn name(&self) -> &'static str {
        "loyalty"
    }

    fn api_package(&self) -> &'static str {
        "attune.loyalty.v1"
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
        let ServiceContext {
            db,
            config,
            clock,
            peers,
            ..
        } = context;
        let consent = peers.get("consent")?;
        let (key, _) = store::SECRETS.pseudonym_key(&db, &config.secrets).await?;
        let checker =
            ConsentChecker::new(consent, &config.consent_checker).with_clock(clock.clone());
        server.spawn_background("loyalty-consent-checker", {
            let checker = checker.clone();
            |cancel| checker.follow(cancel)
        });
        let loyalty = Loyalty {
            db: db.clone(),
            clock,
            key: Arc::new(key),
            settings: config.loyalty.clone(),
            checker,
            profile: peers.get("profile").ok(),
            recommendation: peers.get("recommendation").ok(),
        };
        match &loyalty.profile {
            Some(profile) => {
                let source = ProfileFeedSource::new(profile.clone()).only(earn::KINDS);
                let follower = Follower::new(
                    earn::FOLLOWER,
                    db,
                    source,
                    earn::EarnFromFeed::new(loyalty.clone()),
                    &config.feeds,
                );
                server.spawn_background("loyalty-profile-feed", |cancel| follower.run(cancel));
            }
            // As a pod without `peers.profile`: nothing earns from purchases, the
            // rest of the programme works.
            None => {
                tracing::warn!("profile is not reachable: loyalty earns nothing from purchases")
            }
        }
        let interval = config.loyalty.maintenance_interval;
        server.spawn_background("loyalty-scheduled-work", {
            let loyalty = loyalty.clone();
            move |cancel| scheduled_work(loyalty, interval, cancel)
        });
        server.spawn_background("loyalty-offer-generation", {
            let loyalty = loyalty.clone();
            move |cancel| offers_schedule::run(loyalty, interval, cancel)
        });
        let limits = &config.limits;
        server.add_service(attune_kit::with_limits!(
            LoyaltyServiceServer::new(api::LoyaltyApi::new(loyalty.clone())),
            limits
        ));
        server.add_service(attune_kit::with_limits!(
            OfferServiceServer::new(offers_api::OfferApi::new(loyalty.clone())),
            limits
        ));
        server.add_service(attune_kit::with_limits!(
            DataSubjectServiceServer::new(subject::LoyaltyPrivacyApi::new(loyalty)),
            limits
        ));
        Ok(())
    }
}

/// Releases pending points, expires due points and reviews tiers every
/// `interval` until `cancel`; a failed run is retried with backoff.
async fn scheduled_work(loyalty: Loyalty, interval: Duration, cancel: CancellationToken) {
    let mut retry = Backoff::new(Duration::from_millis(100), interval);
    loop {
        let wait = match loyalty.run_scheduled(None).await {
            Ok(_) => {
                retry.reset();
                interval
            }
            Err(error) => {
                let wait = retry.next_wait();
                tracing::warn!(%error, retry_in = ?wait, "loyalty scheduled work failed; retrying");
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
