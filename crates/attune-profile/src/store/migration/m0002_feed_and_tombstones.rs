//! The feed (every stored event, merge, zero-party change, segment membership
//! change and erasure, in commit order) and the erasure tombstones.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ProfileFeed {
    Table,
    Sequence,
    EntryType,
    CustomerId,
    OtherCustomerId,
    EventId,
    EventKind,
    OccurTime,
    CommitTime,
    Fingerprint,
    Payload,
}

#[derive(DeriveIden)]
enum ProfileTombstones {
    Table,
    SubjectHash,
    EraseTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Sequences are handed out in commit order: every profile write holds the
        // service's write lock from before it takes a sequence until it commits.
        manager
            .create_table(
                Table::create()
                    .table(ProfileFeed::Table)
                    .col(
                        ColumnDef::new(ProfileFeed::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProfileFeed::EntryType)
                            .small_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProfileFeed::CustomerId).string().not_null())
                    .col(ColumnDef::new(ProfileFeed::OtherCustomerId).string().null())
                    .col(ColumnDef::new(ProfileFeed::EventId).string().null())
                    .col(
                        ColumnDef::new(ProfileFeed::EventKind)
                            .small_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(ProfileFeed::OccurTime).big_integer().null())
                    .col(
                        ColumnDef::new(ProfileFeed::CommitTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProfileFeed::Fingerprint).binary().null())
                    .col(ColumnDef::new(ProfileFeed::Payload).binary().not_null())
                    .to_owned(),
            )
            .await?;
        // Idempotency by event id; NULLs (entries that are not events) never clash.
        manager
            .create_index(
                Index::create()
                    .name("profile_feed_event_id")
                    .table(ProfileFeed::Table)
                    .col(ProfileFeed::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // One customer's events, newest first (ListEvents, merges, erasure).
        manager
            .create_index(
                Index::create()
                    .name("profile_feed_customer")
                    .table(ProfileFeed::Table)
                    .col(ProfileFeed::CustomerId)
                    .col(ProfileFeed::OccurTime)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_feed_other_customer")
                    .table(ProfileFeed::Table)
                    .col(ProfileFeed::OtherCustomerId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileTombstones::Table)
                    .col(
                        ColumnDef::new(ProfileTombstones::SubjectHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ProfileTombstones::EraseTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProfileTombstones::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ProfileFeed::Table).to_owned())
            .await
    }
}
