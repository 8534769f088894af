//! The table where consuming services keep their followers' cursors and leases.
//! Each consuming service adds [`CreateFeedCursors`] to its own migrator.

use sea_orm_migration::prelude::*;

/// Creates `feed_cursors`: one row per follower (`name`), with its cursor and its
/// lease. In one-process mode several services' migrators share one database and
/// each runs this migration, so it creates the table only if it is missing, and
/// its `down` keeps the table (another service's followers may still use it).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateFeedCursors;

#[derive(DeriveIden)]
enum FeedCursors {
    Table,
    Name,
    Position,
    Holder,
    LeaseUntil,
}

impl MigrationName for CreateFeedCursors {
    fn name(&self) -> &str {
        "kit_m0001_feed_cursors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateFeedCursors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FeedCursors::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(FeedCursors::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(FeedCursors::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(FeedCursors::Holder).string().null())
                    // Microseconds since the epoch, like every stored time.
                    .col(
                        ColumnDef::new(FeedCursors::LeaseUntil)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
