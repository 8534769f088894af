//! Traits kept at ingestion: one row per customer with its encoded trait state.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProfileTraits {
    Table,
    CustomerId,
    State,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProfileTraits::Table)
                    .col(
                        ColumnDef::new(ProfileTraits::CustomerId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // The encoded TraitState (events::traits).
                    .col(ColumnDef::new(ProfileTraits::State).binary().not_null())
                    .col(
                        ColumnDef::new(ProfileTraits::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProfileTraits::Table).to_owned())
            .await
    }
}
