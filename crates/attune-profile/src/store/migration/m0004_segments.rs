//! Segment definitions and their memberships.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProfileSegments {
    Table,
    SegmentId,
    DisplayName,
    Description,
    Rule,
    Version,
    MemberCount,
    CreateTime,
    UpdateTime,
    EvaluateTime,
}

#[derive(DeriveIden)]
enum ProfileSegmentMembers {
    Table,
    SegmentId,
    CustomerId,
    JoinTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProfileSegments::Table)
                    .col(
                        ColumnDef::new(ProfileSegments::SegmentId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegments::DisplayName)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegments::Description)
                            .text()
                            .not_null(),
                    )
                    // The prost-encoded SegmentRule, validated before it was stored.
                    .col(ColumnDef::new(ProfileSegments::Rule).binary().not_null())
                    .col(
                        ColumnDef::new(ProfileSegments::Version)
                            .integer()
                            .not_null(),
                    )
                    // Kept with every membership change, so reads need no COUNT.
                    .col(
                        ColumnDef::new(ProfileSegments::MemberCount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegments::CreateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegments::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegments::EvaluateTime)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileSegmentMembers::Table)
                    .col(
                        ColumnDef::new(ProfileSegmentMembers::SegmentId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegmentMembers::CustomerId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileSegmentMembers::JoinTime)
                            .big_integer()
                            .not_null(),
                    )
                    // A segment's members in customer id order (ListSegmentMembers).
                    .primary_key(
                        Index::create()
                            .col(ProfileSegmentMembers::SegmentId)
                            .col(ProfileSegmentMembers::CustomerId),
                    )
                    .to_owned(),
            )
            .await?;
        // A customer's segments (ListCustomerSegments, re-evaluation, erasure).
        manager
            .create_index(
                Index::create()
                    .name("profile_segment_members_customer")
                    .table(ProfileSegmentMembers::Table)
                    .col(ProfileSegmentMembers::CustomerId)
                    .col(ProfileSegmentMembers::SegmentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProfileSegmentMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ProfileSegments::Table).to_owned())
            .await
    }
}
