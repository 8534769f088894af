//! Consent's schema, one migration per change. Never edit a released migration:
//! add a new one.

use sea_orm_migration::prelude::*;

mod m0001_create_tables;
mod m0002_seed_default_catalogue;
mod m0003_changes_audit_secrets;
mod m0004_json_outcomes_effective_time;
mod m0005_store_visits_purpose;

/// Consent's migrations, tracked in their own table because in one-process mode
/// every service's migrator shares one database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_create_tables::Migration),
            Box::new(m0002_seed_default_catalogue::Migration),
            Box::new(m0003_changes_audit_secrets::Migration),
            Box::new(m0004_json_outcomes_effective_time::Migration),
            Box::new(m0005_store_visits_purpose::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "consent_migrations".into_iden()
    }
}
