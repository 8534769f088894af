//! The gateway's schema: the data-access log, and the status of data-subject
//! requests (its migration lives with them, in `data_subject::status`). Never edit a released
//! migration: add a new one.

use sea_orm_migration::prelude::*;

use super::store::{REQUESTS, SECRETS, TABLE};

/// The gateway's migrations, tracked in their own table (in one process every
/// service's migrator shares one database).
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(REQUESTS.create_table("m0001_create_requests")),
            Box::new(SECRETS.create_table("m0001_create_secrets")),
            Box::new(CreateDataAccess),
            Box::new(crate::data_subject::CreateDataSubjectRequests),
            Box::new(crate::data_subject::CreatePendingAudits),
        ]
    }

    fn migration_table_name() -> DynIden {
        "gateway_migrations".into_iden()
    }
}

#[derive(DeriveMigrationName)]
struct CreateDataAccess;

#[async_trait::async_trait]
impl MigrationTrait for CreateDataAccess {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let text = |name: &'static str| ColumnDef::new(name).string().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(TABLE)
                    .col(
                        ColumnDef::new("id")
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text("customer_id"))
                    .col(ColumnDef::new("access_micros").big_integer().not_null())
                    .col(ColumnDef::new("caller_kind").integer().not_null())
                    .col(text("caller_name"))
                    .col(text("store_id"))
                    .col(text("rpc"))
                    .col(text("purpose_codes"))
                    .col(text("data_categories"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("gateway_data_access_by_customer")
                    .table(TABLE)
                    .col("customer_id")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TABLE).to_owned())
            .await
    }
}
