//! Loyalty's tables: the migrations, the kit's write path instances, and a thin
//! layer for the plain SQL the service writes (the same text on SQLite and
//! PostgreSQL: `?` placeholders are numbered for PostgreSQL here).

pub mod migration;

use attune_kit::db::WriteLock;
use attune_kit::idempotency::RequestLog;
use attune_kit::secrets::SecretStore;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, ExecResult, FromQueryResult, Statement, Value};

/// Remembered outcomes of loyalty's retryable writes.
pub(crate) const REQUESTS: RequestLog = RequestLog::new("loyalty_requests");

/// Loyalty's generated secrets (the pseudonymisation key in development).
pub(crate) const SECRETS: SecretStore = SecretStore::new("loyalty_secrets");

/// Loyalty's write lock: every write that books entries holds it from its first
/// statement to its commit, so a balance checked is the balance changed (no
/// overspending on SQLite, which has no row locks, nor on PostgreSQL).
pub(crate) const WRITE_LOCK: WriteLock = WriteLock::for_service(4);

/// `sql` with `?` placeholders, numbered `$1..` on PostgreSQL.
pub(crate) fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Runs a statement.
pub(crate) async fn exec(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<ExecResult, DbErr> {
    db.execute_raw(statement(db.get_database_backend(), sql, values))
        .await
}

/// Every row of a query.
pub(crate) async fn all<T: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<T>, DbErr> {
    T::find_by_statement(statement(db.get_database_backend(), sql, values))
        .all(db)
        .await
}

/// The first row of a query, if any.
pub(crate) async fn one<T: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<T>, DbErr> {
    T::find_by_statement(statement(db.get_database_backend(), sql, values))
        .one(db)
        .await
}

/// One `i64` column of one row (`SELECT CAST(... AS BIGINT) AS n`).
#[derive(Debug, FromQueryResult)]
pub(crate) struct Number {
    pub n: i64,
}

/// The value of a `SELECT ... AS n` returning one number (0 when no row).
pub(crate) async fn number(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<i64, DbErr> {
    Ok(one::<Number>(db, sql, values).await?.map_or(0, |row| row.n))
}
