//! The catalogue mirror, interactions, session state, experiments and the
//! answers served under them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RecommendationItems {
    Table,
    ItemId,
    Data,
    SourceVersion,
    UpdateTime,
}

#[derive(DeriveIden)]
enum RecommendationInteractions {
    Table,
    Id,
    CustomerId,
    ItemId,
    Signal,
    OccurTime,
    OrderId,
    Quantity,
    RevenueMinor,
    CurrencyCode,
    RecommendationId,
}

#[derive(DeriveIden)]
enum RecommendationSessions {
    Table,
    CustomerId,
    State,
    UpdateTime,
}

#[derive(DeriveIden)]
enum RecommendationExperiments {
    Table,
    ExperimentId,
    Data,
    Running,
    UpdateTime,
}

#[derive(DeriveIden)]
enum RecommendationImpressions {
    Table,
    RecommendationId,
    ExperimentId,
    Variant,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RecommendationItems::Table)
                    .col(
                        ColumnDef::new(RecommendationItems::ItemId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // The encoded attune.recommendation.v1.CatalogItem.
                    .col(
                        ColumnDef::new(RecommendationItems::Data)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationItems::SourceVersion)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationItems::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecommendationInteractions::Table)
                    .col(
                        ColumnDef::new(RecommendationInteractions::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::CustomerId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::ItemId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::Signal)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::OccurTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::OrderId)
                            .string()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::Quantity)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::RevenueMinor)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::CurrencyCode)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationInteractions::RecommendationId)
                            .string()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recommendation_interactions_by_customer")
                    .table(RecommendationInteractions::Table)
                    .col(RecommendationInteractions::CustomerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recommendation_interactions_by_recommendation")
                    .table(RecommendationInteractions::Table)
                    .col(RecommendationInteractions::RecommendationId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecommendationSessions::Table)
                    .col(
                        ColumnDef::new(RecommendationSessions::CustomerId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // The session as JSON (session::Session).
                    .col(
                        ColumnDef::new(RecommendationSessions::State)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationSessions::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecommendationExperiments::Table)
                    .col(
                        ColumnDef::new(RecommendationExperiments::ExperimentId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // The encoded attune.recommendation.v1.Experiment.
                    .col(
                        ColumnDef::new(RecommendationExperiments::Data)
                            .binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationExperiments::Running)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationExperiments::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Answers served under an experiment: no customer id, only which
        // variant produced which recommendation id, for attribution.
        manager
            .create_table(
                Table::create()
                    .table(RecommendationImpressions::Table)
                    .col(
                        ColumnDef::new(RecommendationImpressions::RecommendationId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RecommendationImpressions::ExperimentId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationImpressions::Variant)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RecommendationImpressions::CreateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recommendation_impressions_by_experiment")
                    .table(RecommendationImpressions::Table)
                    .col(RecommendationImpressions::ExperimentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RecommendationImpressions::Table.into_iden(),
            RecommendationExperiments::Table.into_iden(),
            RecommendationSessions::Table.into_iden(),
            RecommendationInteractions::Table.into_iden(),
            RecommendationItems::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
