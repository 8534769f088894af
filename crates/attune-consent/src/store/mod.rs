//! Consent's storage: entities, migrations and the queries the service runs, the
//! same on SQLite and PostgreSQL.

pub mod audit;
pub(crate) mod changes;
pub mod entity;
pub(crate) mod erasure;
pub(crate) mod expiring;
pub(crate) mod ledger;
pub mod migration;
pub(crate) mod purposes;
mod requests;
pub(crate) mod secrets;
mod time;

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    IsolationLevel, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

pub use requests::Claim;

/// The PostgreSQL advisory lock every consent write holds until it commits
/// ("attune" in ASCII, then the service's number).
const WRITE_LOCK: i64 = 0x6174_7475_6e65_0001;

/// Begins a transaction that will write, holding consent's one write lock until
/// it ends. On SQLite that is the database's write lock, taken at BEGIN
/// (IMMEDIATE) so the busy timeout applies there; on PostgreSQL a transaction
/// advisory lock. One writer at a time is what makes change-stream positions
/// follow commit order (a reader never sees position N+1 before N) and lets each
/// audit entry read the hash before it. Consent writes are rare next to checks,
/// so serializing them costs little.
pub(crate) async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    let txn = db
        .begin_with_options(TransactionOptions {
            isolation_level: None,
            // SQLite has no access modes (sea-orm would warn on every write).
            access_mode: postgres.then_some(AccessMode::ReadWrite),
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        })
        .await?;
    if postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [WRITE_LOCK.into()],
        ))
        .await?;
    }
    Ok(txn)
}

/// Begins a read-only transaction whose reads all see one snapshot. SQLite's
/// read transactions do so already; PostgreSQL needs REPEATABLE READ (its
/// default, READ COMMITTED, takes a new snapshot per statement).
pub(crate) async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    db.begin_with_options(TransactionOptions {
        isolation_level: postgres.then_some(IsolationLevel::RepeatableRead),
        access_mode: postgres.then_some(AccessMode::ReadOnly),
        sqlite_transaction_mode: None,
    })
    .await
}

pub(crate) use requests::{claim, complete};
