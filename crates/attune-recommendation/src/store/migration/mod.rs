//! Recommendation's schema, one migration per change. Never edit a released
//! migration: add a new one.

use sea_orm_migration::prelude::*;

use super::{REQUESTS, SECRETS};

mod m0002_tables;

/// Recommendation's migrations, tracked in their own table because in
/// one-process mode every service's migrator shares one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(REQUESTS.create_table("m0001_create_requests")),
            Box::new(SECRETS.create_table("m0001_create_secrets")),
            // The follower's cursor on profile's feed.
            Box::new(attune_kit::follower::CreateFeedCursors),
            Box::new(m0002_tables::Migration),
            // What one replica tells the others to drop from memory.
            Box::new(attune_kit::replicas::CreateReplicaChanges),
        ]
    }

    fn migration_table_name() -> DynIden {
        "recommendation_migrations".into_iden()
    }
}
