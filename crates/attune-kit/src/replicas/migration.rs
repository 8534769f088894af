//! The table every service's change log lives in. Each service that keeps
//! copies in memory adds [`CreateReplicaChanges`] to its own migrator.

use sea_orm_migration::prelude::*;

/// Creates `kit_replica_changes`. In one-process mode several services'
/// migrators share one database and each runs this migration, so it creates
/// the table only if it is missing, and its `down` keeps it (another service
/// may still use it).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateReplicaChanges;

#[derive(DeriveIden)]
pub(super) enum ReplicaChanges {
    #[sea_orm(iden = "kit_replica_changes")]
    Table,
    /// The service whose log the row belongs to.
    Scope,
    /// Unique and increasing within the scope, in commit order.
    Position,
    /// The replica that wrote it.
    Origin,
    Kind,
    Key,
    /// When it was written, in microseconds since the epoch.
    At,
}

impl MigrationName for CreateReplicaChanges {
    fn name(&self) -> &str {
        "kit_m0002_replica_changes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReplicaChanges {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ReplicaChanges::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ReplicaChanges::Scope).string().not_null())
                    .col(
                        ColumnDef::new(ReplicaChanges::Position)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaChanges::Origin)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ReplicaChanges::Kind)
                            .small_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ReplicaChanges::Key).string().not_null())
                    .col(ColumnDef::new(ReplicaChanges::At).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(ReplicaChanges::Scope)
                            .col(ReplicaChanges::Position),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
