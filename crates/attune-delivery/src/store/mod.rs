//! Delivery's tables: the migrations, and what every part of the service shares
//! (the request log, the secrets, the write lock) and small query helpers.

pub mod migration;

use attune_kit::db::WriteLock;
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;
use sea_orm::sea_query::{DeleteStatement, InsertStatement, UpdateStatement};
use sea_orm::{ConnectionTrait, DbErr};

/// Remembered outcomes of delivery's retryable writes.
pub(crate) const REQUESTS: RequestLog = RequestLog::new("delivery_requests");

/// Delivery's generated secrets (the pseudonymisation key in development, from
/// which request fingerprints, quote signatures and the development master key
/// derive).
pub(crate) const SECRETS: SecretStore = SecretStore::new("delivery_secrets");

/// Delivery's write lock: every write holds it from its first statement to its
/// commit, which is what makes "count the live reservations, then insert one"
/// safe under any concurrency on SQLite and PostgreSQL alike.
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(5);

// Every row, or the first row, `query` selects.
pub(crate) use attune_kit::db::{select_all as all, select_one as one};

/// A statement that writes, returning the rows it affected.
pub(crate) trait Write {
    /// Runs it on `db`.
    async fn run(&self, db: &impl ConnectionTrait) -> Result<u64, DbErr>;
}

macro_rules! write_statement {
    ($($ty:ty),*) => {$(
        impl Write for $ty {
            async fn run(&self, db: &impl ConnectionTrait) -> Result<u64, DbErr> {
                Ok(db.execute(self).await?.rows_affected())
            }
        }
    )*};
}
write_statement!(InsertStatement, UpdateStatement, DeleteStatement);
