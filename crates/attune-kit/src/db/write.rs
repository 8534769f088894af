//! The one write path every service takes: a transaction that holds the
//! service's write lock until it ends, and a read-only snapshot.

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    IsolationLevel, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

/// A service's write lock: one PostgreSQL advisory lock key per service, so the
/// services of one database (or one process) never wait on each other's writes.
/// On SQLite the key is unused: the database has one write lock for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteLock(i64);

impl WriteLock {
    /// "attune" in ASCII, then the service's number in the low 16 bits, so that
    /// Attune's keys are unlikely to collide with another application's.
    const ATTUNE: i64 = 0x6174_7475_6e65_0000;

    /// The lock of the service numbered `service` (consent is 1). Numbers are
    /// assigned once per service and never reused.
    pub const fn for_service(service: u16) -> Self {
        Self(Self::ATTUNE | service as i64)
    }

    /// The PostgreSQL advisory lock key.
    pub const fn key(self) -> i64 {
        self.0
    }
}

/// Begins a transaction that will write, holding `lock` until it ends. On SQLite
/// that is the database's write lock, taken at BEGIN (IMMEDIATE) so the busy
/// timeout applies there rather than failing at the first write; on PostgreSQL a
/// transaction advisory lock on the service's key.
///
/// One writer per service at a time is what makes positions in a change feed
/// follow commit order (a reader never sees position N+1 before N) and lets a
/// hash-chained log read the entry before it. Writes are rare next to reads in
/// Attune's services, so serializing them costs little. Dropping the transaction
/// without committing rolls it back and releases the lock.
pub async fn begin_write(
    db: &DatabaseConnection,
    lock: WriteLock,
) -> Result<DatabaseTransaction, DbErr> {
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
            [lock.key().into()],
        ))
        .await?;
    }
    Ok(txn)
}

/// Begins a transaction that will write WITHOUT the service's write lock, for
/// writes where every check-then-change is one guarded statement (`UPDATE …
/// SET n = n + 1 WHERE … AND n + 1 <= cap`, judged by its affected rows), so
/// that writes to different rows run in parallel on PostgreSQL (the row locks
/// of the guarded statements are all the serialization they need). SQLite still
/// begins IMMEDIATE: it has one writer whatever the statements, and taking the
/// lock at BEGIN lets the busy timeout apply. Writes that append to an ordered
/// feed or read-then-decide across rows need [`begin_write`] instead.
pub async fn begin_guarded_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    db.begin_with_options(TransactionOptions {
        isolation_level: None,
        access_mode: postgres.then_some(AccessMode::ReadWrite),
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// Begins a read-only transaction whose reads all see one snapshot. SQLite's
/// read transactions do so already; PostgreSQL needs REPEATABLE READ (its
/// default, READ COMMITTED, takes a new snapshot per statement).
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let postgres = db.get_database_backend() == DbBackend::Postgres;
    db.begin_with_options(TransactionOptions {
        isolation_level: postgres.then_some(IsolationLevel::RepeatableRead),
        access_mode: postgres.then_some(AccessMode::ReadOnly),
        sqlite_transaction_mode: None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_its_own_key_in_attunes_range() {
        let consent = WriteLock::for_service(1);
        let profile = WriteLock::for_service(2);
        assert_ne!(consent, profile);
        // Consent's key before the move to the kit: existing deployments keep it.
        assert_eq!(consent.key(), 0x6174_7475_6e65_0001);
        assert_eq!(profile.key() >> 16, consent.key() >> 16);
    }
}
