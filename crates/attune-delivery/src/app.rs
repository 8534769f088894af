//! What every part of the delivery service works with.

use std::sync::{Arc, RwLock};

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
use crate::network::PickupIndex;
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
    /// Request fingerprints and quote signatures.
    pub key: Arc<PseudonymKey>,
    /// Wraps every customer's data key.
    pub master_key: Arc<MasterKey>,
    /// The pickup points by position, rebuilt when the network version moves.
    pub pickup_index: Arc<RwLock<Arc<PickupIndex>>>,
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
        let now = self.clock.now();
        let txn = self.begin_write().await?;
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
