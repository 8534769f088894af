//! What a replica drops or reloads when another replica changed it (see
//! `attune_kit::replicas`): the replicas of recommendation share one database,
//! but each holds the catalogue, the running experiment, sessions, tastes and
//! its trained models in memory.

use std::sync::Arc;

use attune_kit::replicas::{Change, ChangeHandler};
use attune_kit::secrets::PseudonymKey;
use sea_orm::DbErr;

use crate::app::Recommendation;
use crate::catalogue::Catalogue;
use crate::store;
use crate::writes;

/// The domain of [`Pseudonyms`]' digests.
const PSEUDONYM_DOMAIN: &str = "recommendation.in-memory";

/// Customers as the change log and the in-memory caches name them: the
/// service's keyed digest of the id, so no change row names a customer in
/// clear (they outlive an erasure by up to ten minutes) and a replica can drop
/// a customer it only knows by that name. Every replica of the service reads
/// the same key from the shared database.
#[derive(Clone)]
pub struct Pseudonyms(Arc<PseudonymKey>);

impl Pseudonyms {
    pub fn new(key: Arc<PseudonymKey>) -> Self {
        Self(key)
    }

    /// The name of `customer_id`.
    pub fn of(&self, customer_id: &str) -> String {
        self.0.digest(PSEUDONYM_DOMAIN, customer_id)
    }
}

/// A customer's session was written (an event folded in, a merge moved it).
pub const SESSION: i16 = 1;
/// A customer was erased: forget their session and tastes, and stop serving
/// them from the trained models at once. Keys of customers are [`Pseudonyms`].
pub const ERASED: i16 = 2;
/// Catalogue items were upserted or deleted.
pub const ITEMS: i16 = 3;
/// An experiment was defined, started or stopped.
pub const EXPERIMENT: i16 = 4;
/// A training was asked for.
pub const TRAIN: i16 = 5;

/// Recommendation's [`ChangeHandler`].
pub struct Replicas(pub Recommendation);

impl ChangeHandler for Replicas {
    async fn apply(&self, changes: &[Change]) -> Result<(), DbErr> {
        let app = &self.0;
        let mut items = Vec::new();
        let mut experiment = false;
        let mut train = false;
        for change in changes {
            match change.kind {
                SESSION => app.sessions.forget_named(&change.key),
                ERASED => {
                    app.served.erased().add(change.key.clone());
                    app.sessions.forget_named(&change.key);
                    app.tastes.forget_named(&change.key);
                }
                ITEMS => items.push(change.key.clone()),
                EXPERIMENT => experiment = true,
                TRAIN => train = true,
                unknown => tracing::warn!(kind = unknown, "unknown replica change ignored"),
            }
        }
        if !items.is_empty() {
            let stored = store::items::get_many(&app.db, &items).await?;
            let gone: Vec<String> = items
                .into_iter()
                .filter(|id| !stored.iter().any(|item| &item.item_id == id))
                .collect();
            app.catalogue.apply(&stored, &gone);
        }
        if experiment {
            writes::load_experiments(app).await?;
        }
        // Last: a training asked after other changes starts once they are in.
        if train {
            app.trainer.request();
        }
        Ok(())
    }

    async fn lost(&self) -> Result<(), DbErr> {
        // Erasures among the lost changes are not known: a training now
        // rebuilds the models from what the database still holds.
        let app = &self.0;
        app.sessions.forget_all();
        app.tastes.forget_all();
        reload_catalogue(app).await?;
        writes::load_experiments(app).await?;
        app.trainer.request();
        Ok(())
    }
}

/// Reads the whole catalogue again, unless this replica's own upserts keep
/// landing while it reads.
async fn reload_catalogue(app: &Recommendation) -> Result<(), DbErr> {
    for _ in 0..3 {
        let applied = app.catalogue.applied();
        let stored = store::items::all(&app.db).await?;
        if app
            .catalogue
            .replace_unless_changed(applied, Catalogue::new(stored))
        {
            return Ok(());
        }
    }
    // Tried again at the next interval.
    Err(DbErr::Custom(
        "the catalogue kept changing while it was reloaded".to_owned(),
    ))
}
