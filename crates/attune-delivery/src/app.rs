//! What every part of the delivery service works with.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::clock::Clock;
use attune_kit::config::DeliveryConfig;
use attune_kit::consent::ConsentChecker;
use attune_kit::idempotency::{Outcome, Request};
use attune_kit::peer::Peer;
use attune_kit::secrets::PseudonymKey;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crypto::MasterKey;
use crate::snapshot::NetworkCache;
use crate::store::{REQUESTS, WRITE_LOCK};

/// The purpose learned preferences need.
pub const PERSONALIZATION: &str = "personalization";

/// The delivery service's state, shared by its APIs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The service's database.
    pub db: DatabaseConnection,
    /// "Now", for every rule about time.
    pub clock: Clock,
    /// Consent at use (learned preferences).
    pub checker: ConsentChecker,
    /// Loyalty, when this deployment has it.
    pub loyalty: Option<Peer>,
    /// Loyalty's recent answers about customers' tier benefits.
    pub tier_benefits: crate::loyalty::TierBenefitsCache,
    /// Request fingerprints and quote signatures.
    pub key: Arc<PseudonymKey>,
    /// Wraps every customer's data key.
    pub master_key: Arc<MasterKey>,
    /// The delivery network in memory (pickup points by position, rates,
    /// payment rules), rebuilt when the network's version moves.
    pub network: Arc<NetworkCache>,
    /// The service's settings.
    pub settings: DeliveryConfig,
}

impl Delivery {
    /// Begins a write holding delivery's write lock.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, ApiError> {
        Ok(attune_kit::db::begin_write(&self.db, WRITE_LOCK).await?)
    }

    /// Runs `work` in one locked transaction, once per `request_id`: a replay
    /// returns the stored outcome; other content under the same id is
    /// ALREADY_EXISTS. `command` is everything the request says but its id.
    pub async fn idempotent<T, C>(
        &self,
        operation: &str,
        request_id: &str,
        command: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<Outcome<T>, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        let txn = self.begin_write().await?;
        self.once(txn, operation, request_id, command, work).await
    }

    /// [`idempotent`](Self::idempotent) without delivery's write lock, for the
    /// reservation writes: each of their check-then-change steps is one guarded
    /// statement on a slot's counter or a reservation's state, so reservations
    /// of different slots commit in parallel on PostgreSQL (see
    /// `reservations`). The claim on the request id still serializes retries.
    pub async fn idempotent_guarded<T, C>(
        &self,
        operation: &str,
        request_id: &str,
        command: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<Outcome<T>, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        let txn = attune_kit::db::begin_guarded_write(&self.db).await?;
        self.once(txn, operation, request_id, command, work).await
    }

    async fn once<T, C>(
        &self,
        txn: DatabaseTransaction,
        operation: &str,
        request_id: &str,
        command: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<Outcome<T>, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        let now = self.clock.now();
        let fingerprint = self.key.fingerprint(command);
        let outcome = REQUESTS
            .idempotent(
                &txn,
                Request {
                    operation,
                    request_id,
                    fingerprint: &fingerprint,
                },
                now,
                work,
            )
            .await?;
        txn.commit().await?;
        Ok(outcome)
    }
}
