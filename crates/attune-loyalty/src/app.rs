//! What every part of the loyalty service works with.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::clock::Clock;
use attune_kit::config::LoyaltyConfig;
use attune_kit::consent::ConsentChecker;
use attune_kit::idempotency::{DataSubject, Outcome, Request};
use attune_kit::peer::Peer;
use attune_kit::secrets::PseudonymKey;
use chrono::Duration;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{REQUESTS, WRITE_LOCK};

/// The loyalty service's state, shared by its APIs and tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Loyalty {
    /// The service's database.
    pub db: DatabaseConnection,
    /// "Now", for every rule about time.
    pub clock: Clock,
    /// Keyed pseudonyms (erasure) and request fingerprints.
    pub key: Arc<PseudonymKey>,
    /// The service's settings.
    pub settings: LoyaltyConfig,
    /// Consent at use (offers, messages).
    pub checker: ConsentChecker,
    /// Profile (traits, zero-party data), when reachable from here.
    pub profile: Option<Peer>,
    /// Recommendation (buy-again), when reachable from here.
    pub recommendation: Option<Peer>,
}

impl Loyalty {
    /// How long available points live.
    pub fn points_lifetime(&self) -> Duration {
        Duration::from_std(self.settings.points_lifetime).unwrap_or(Duration::days(365))
    }

    /// Begins a write holding loyalty's write lock.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, ApiError> {
        Ok(attune_kit::db::begin_write(&self.db, WRITE_LOCK).await?)
    }

    /// The data subject `customer` as loyalty's request log records it.
    pub fn subject(&self, customer: &str) -> DataSubject {
        DataSubject::of(&self.key, customer)
    }

    /// Runs `work` once per `request_id` of `operation` in a write transaction
    /// and commits: a replay answers what the first request answered. For
    /// operations about nobody in particular (rules, the catalogue).
    pub async fn idempotent<T, C>(
        &self,
        operation: &str,
        request_id: &str,
        content: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        self.logged(None, operation, request_id, content, work)
            .await
    }

    /// [`Self::idempotent`] for an operation about `customer`: its answer
    /// names them, so the customer's erasure forgets it and a later retry is
    /// refused (FAILED_PRECONDITION) instead of answered or run again.
    pub async fn idempotent_about<T, C>(
        &self,
        customer: &str,
        operation: &str,
        request_id: &str,
        content: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        let subject = self.subject(customer);
        self.logged(Some(&subject), operation, request_id, content, work)
            .await
    }

    async fn logged<T, C>(
        &self,
        subject: Option<&DataSubject>,
        operation: &str,
        request_id: &str,
        content: &C,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, ApiError>,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        C: Serialize,
    {
        let fingerprint = self.key.fingerprint(content);
        let txn = self.begin_write().await?;
        let now = self.clock.now();
        let request = Request {
            operation,
            request_id,
            fingerprint: &fingerprint,
        };
        let outcome = match subject {
            Some(subject) => {
                REQUESTS
                    .idempotent_about(&txn, request, subject, now, work)
                    .await?
            }
            None => REQUESTS.idempotent(&txn, request, now, work).await?,
        };
        match outcome {
            Outcome::Fresh(value) => {
                txn.commit().await?;
                Ok(value)
            }
            Outcome::Replayed(value) => Ok(value),
        }
    }
}
