//! The change stream, the privacy audit log and the service's secrets (issue 4).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConsentChanges {
    Table,
    Position,
    Kind,
    CustomerId,
    PurposeCode,
    RecordId,
    CurrentRecordId,
    ChangeTime,
}

#[derive(DeriveIden)]
enum ConsentAuditLog {
    Table,
    Sequence,
    Kind,
    Subject,
    Detail,
    OccurTime,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum ConsentSecrets {
    Table,
    Name,
    Value,
}

#[derive(DeriveIden)]
enum ConsentStates {
    Table,
    Decision,
    ExpireTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Positions are handed out in commit order: every consent write holds the
        // service's write lock (see `store::begin_write`) from before it takes a
        // position until it commits.
        manager
            .create_table(
                Table::create()
                    .table(ConsentChanges::Table)
                    .col(
                        ColumnDef::new(ConsentChanges::Position)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::CustomerId)
                            .string_len(128)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::PurposeCode)
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::RecordId)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::CurrentRecordId)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ConsentChanges::ChangeTime)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Erasure deletes one customer's changes.
        manager
            .create_index(
                Index::create()
                    .name("consent_changes_by_customer")
                    .table(ConsentChanges::Table)
                    .col(ConsentChanges::CustomerId)
                    .to_owned(),
            )
            .await?;
        // The sequence is not auto-incremented: each entry takes the previous
        // sequence plus one under the write lock, so a gap always means a deletion.
        manager
            .create_table(
                Table::create()
                    .table(ConsentAuditLog::Table)
                    .col(
                        ColumnDef::new(ConsentAuditLog::Sequence)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConsentAuditLog::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsentAuditLog::Subject)
                            .string_len(96)
                            .null(),
                    )
                    .col(ColumnDef::new(ConsentAuditLog::Detail).text().not_null())
                    .col(
                        ColumnDef::new(ConsentAuditLog::OccurTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsentAuditLog::PrevHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsentAuditLog::Hash)
                            .string_len(64)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ConsentSecrets::Table)
                    .col(
                        ColumnDef::new(ConsentSecrets::Name)
                            .string_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConsentSecrets::Value)
                            .string_len(128)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Expiring grants are listed by expiry time.
        manager
            .create_index(
                Index::create()
                    .name("consent_states_by_expiry")
                    .table(ConsentStates::Table)
                    .col(ConsentStates::ExpireTime)
                    .col(ConsentStates::Decision)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("consent_states_by_expiry")
                    .table(ConsentStates::Table)
                    .to_owned(),
            )
            .await?;
        for table in [
            ConsentSecrets::Table.into_iden(),
            ConsentAuditLog::Table.into_iden(),
            ConsentChanges::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
