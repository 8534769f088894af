//! What every part of the profile service works with: its database, clock,
//! consent gate, feed, key and settings.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::clock::Clock;
use attune_kit::config::ProfileConfig;
use attune_kit::secrets::PseudonymKey;
use attune_kit::types::Currency;
use sea_orm::{DatabaseConnection, DatabaseTransaction};

use crate::collection::Collection;
use crate::feed::ProfileFeed;
use crate::store::WRITE_LOCK;

/// The profile service's state, shared by its APIs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The service's database.
    pub db: DatabaseConnection,
    /// "Now", for every rule about time.
    pub clock: Clock,
    /// Consent at collection (and the cached checker for use).
    pub collection: Collection,
    /// The feed of this process: wake it after a commit that appended rows.
    pub feed: Arc<ProfileFeed>,
    /// Keyed hashes of identities and tombstones; request fingerprints.
    pub key: Arc<PseudonymKey>,
    /// The currency of money traits and segment bounds.
    pub reporting_currency: Currency,
    /// The service's settings.
    pub settings: ProfileConfig,
}

impl Profile {
    /// Begins a write: a transaction holding profile's write lock, so that feed
    /// sequences taken in it follow commit order.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, ApiError> {
        Ok(attune_kit::db::begin_write(&self.db, WRITE_LOCK).await?)
    }

    /// Tells the feed's watchers that a commit appended rows.
    pub fn committed(&self) {
        self.feed.committed();
    }
}
