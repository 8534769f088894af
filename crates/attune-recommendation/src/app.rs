//! `Recommendation`, what every part of the service shares: the database, the
//! clock, the consent checker, the catalogue and the models served from memory,
//! session state, tastes read from profile, experiments and their impression log, the trainer.

use std::sync::Arc;

use attune_kit::clock::Clock;
use attune_kit::consent::ConsentChecker;
use attune_kit::replicas::ChangeLog;
use attune_kit::secrets::PseudonymKey;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::catalogue::CatalogueCell;
use crate::experiments::Experiments;
use crate::impressions::ImpressionLog;
use crate::model::ModelConfig;
use crate::replicas::Pseudonyms;
use crate::served::Served;
use crate::sessions::Sessions;
use crate::store::WRITE_LOCK;
use crate::tastes::ProfileTastes;
use crate::training::Trainer;

/// The service's state; cheap to clone (everything shared is behind an `Arc`).
#[derive(Clone)]
pub struct Recommendation {
    pub db: DatabaseConnection,
    pub clock: Clock,
    pub consent: ConsentChecker,
    pub key: Arc<PseudonymKey>,
    pub catalogue: Arc<CatalogueCell>,
    pub served: Arc<Served>,
    pub sessions: Arc<Sessions>,
    pub tastes: Arc<ProfileTastes>,
    pub experiments: Arc<Experiments>,
    pub impressions: Arc<ImpressionLog>,
    pub trainer: Arc<Trainer>,
    pub model_config: ModelConfig,
    /// What this replica tells the others to drop from memory.
    pub changes: ChangeLog,
    /// How the change log and the caches name customers.
    pub names: Pseudonyms,
}

impl Recommendation {
    /// Begins a write: the service's one write path (write lock 3).
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        attune_kit::db::begin_write(&self.db, WRITE_LOCK).await
    }
}
