//! Consent's storage: entities, migrations and the queries the service runs, the
//! same on SQLite and PostgreSQL.

pub mod entity;
pub(crate) mod ledger;
pub mod migration;
pub(crate) mod purposes;
mod requests;
mod time;

use sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

pub use requests::Claim;

/// Begins a transaction that will write. On SQLite it takes the write lock at
/// BEGIN (IMMEDIATE), so the busy timeout applies there rather than failing later
/// when a reader tries to upgrade; PostgreSQL ignores the SQLite mode.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: Some(AccessMode::ReadWrite),
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

pub(crate) use requests::{claim, complete};
