//! Profiles, their identities and zero-party data.
//!
//! A merged profile keeps its row as a redirect (`merged_into`, always the final
//! survivor: a later merge of the survivor moves every redirect along), so an id
//! that was merged keeps resolving without a chain walk.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProfileProfiles {
    Table,
    CustomerId,
    Kind,
    CreateChannel,
    CreateTime,
    UpdateTime,
    LastEventTime,
    HomeStoreId,
    Attributes,
    MergedInto,
    MergeTime,
    MergeSequence,
}

#[derive(DeriveIden)]
enum ProfileIdentities {
    Table,
    IdentityType,
    Value,
    CustomerId,
    Channel,
    LinkTime,
}

#[derive(DeriveIden)]
enum ProfileZeroParty {
    Table,
    CustomerId,
    Data,
    UpdateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProfileProfiles::Table)
                    .col(
                        ColumnDef::new(ProfileProfiles::CustomerId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::Kind)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::CreateChannel)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::CreateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::LastEventTime)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(ProfileProfiles::HomeStoreId).string().null())
                    // JSON object of the retailer's own fields.
                    .col(
                        ColumnDef::new(ProfileProfiles::Attributes)
                            .text()
                            .not_null()
                            .default("{}"),
                    )
                    .col(ColumnDef::new(ProfileProfiles::MergedInto).string().null())
                    .col(
                        ColumnDef::new(ProfileProfiles::MergeTime)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ProfileProfiles::MergeSequence)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // A survivor's merged ids in merge order.
        manager
            .create_index(
                Index::create()
                    .name("profile_profiles_merged_into")
                    .table(ProfileProfiles::Table)
                    .col(ProfileProfiles::MergedInto)
                    .col(ProfileProfiles::MergeSequence)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileIdentities::Table)
                    .col(
                        ColumnDef::new(ProfileIdentities::IdentityType)
                            .small_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProfileIdentities::Value).string().not_null())
                    .col(
                        ColumnDef::new(ProfileIdentities::CustomerId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileIdentities::Channel)
                            .small_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ProfileIdentities::LinkTime)
                            .big_integer()
                            .not_null(),
                    )
                    // An identity belongs to one profile at a time.
                    .primary_key(
                        Index::create()
                            .col(ProfileIdentities::IdentityType)
                            .col(ProfileIdentities::Value),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_identities_customer")
                    .table(ProfileIdentities::Table)
                    .col(ProfileIdentities::CustomerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileZeroParty::Table)
                    .col(
                        ColumnDef::new(ProfileZeroParty::CustomerId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    // The encoded ZeroPartyData, provenance included.
                    .col(ColumnDef::new(ProfileZeroParty::Data).binary().not_null())
                    .col(
                        ColumnDef::new(ProfileZeroParty::UpdateTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ProfileZeroParty::Table.into_iden(),
            ProfileIdentities::Table.into_iden(),
            ProfileProfiles::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
