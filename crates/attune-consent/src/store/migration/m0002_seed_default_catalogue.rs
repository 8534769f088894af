use sea_orm_migration::prelude::*;

use crate::domain::default_catalogue;
use crate::store::purposes;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Seeds the default purposes once, on the first start against an empty database;
/// a retailer's later edits are never overwritten.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let now = chrono::Utc::now();
        for purpose in default_catalogue() {
            purposes::insert_new(db, &purpose, now).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The seeded purposes may have notices and decisions by now: keep them.
        Ok(())
    }
}
