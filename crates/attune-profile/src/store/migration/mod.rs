//! Profile's schema, one migration per change. Never edit a released migration:
//! add a new one.

use sea_orm_migration::prelude::*;

use super::{REQUESTS, SECRETS};

mod m0002_feed_and_tombstones;
mod m0003_profiles_and_identities;
mod m0004_segments;
mod m0005_traits;

/// Profile's migrations, tracked in their own table because in one-process mode
/// every service's migrator shares one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(REQUESTS.create_table("m0001_create_requests")),
            Box::new(SECRETS.create_table("m0001_create_secrets")),
            Box::new(m0002_feed_and_tombstones::Migration),
            Box::new(m0003_profiles_and_identities::Migration),
            Box::new(m0004_segments::Migration),
            // The segment evaluator's cursor on profile's own feed.
            Box::new(attune_kit::follower::CreateFeedCursors),
            Box::new(m0005_traits::Migration),
            // Whom each request was about, so an erasure forgets its answer.
            Box::new(REQUESTS.add_subject_column("m0006_request_subject")),
        ]
    }

    fn migration_table_name() -> DynIden {
        "profile_migrations".into_iden()
    }
}
