//! Adds the purposes the default catalogue gained after its first release (issue
//! 9: `store_visits`, covering location, so that profile can store store visits,
//! a preferred store and a time zone once a customer agrees). A retailer who
//! already has a purpose with the same code keeps theirs.

use sea_orm_migration::prelude::*;

use crate::domain::added_purposes;
use crate::store::purposes;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let now = chrono::Utc::now();
        for purpose in added_purposes() {
            purposes::insert_new(db, &purpose, now).await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The purposes may have decisions by now: keep them.
        Ok(())
    }
}
