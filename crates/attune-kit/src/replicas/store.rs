//! `kit_replica_changes`: the rows of every service's change log.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::db::{select_all, select_one};

use super::migration::ReplicaChanges as T;

/// Rows per INSERT: six values each, far below either backend's limit of
/// bound values per statement.
const ROWS_PER_INSERT: usize = 500;

/// One stored change.
#[derive(Debug, FromQueryResult)]
pub(super) struct Row {
    pub position: i64,
    pub origin: i64,
    pub kind: i16,
    pub key: String,
}

/// The newest position of `scope`, or 0.
pub(super) async fn newest(db: &impl ConnectionTrait, scope: &str) -> Result<i64, DbErr> {
    #[derive(FromQueryResult)]
    struct Newest {
        newest: Option<i64>,
    }
    let query = Query::select()
        .expr_as(Func::max(Expr::col(T::Position)), Alias::new("newest"))
        .from(T::Table)
        .and_where(Expr::col(T::Scope).eq(scope))
        .to_owned();
    let newest = select_one::<Newest>(db, &query)
        .await?
        .and_then(|row| row.newest);
    Ok(newest.unwrap_or(0))
}

/// Appends one row per key after the newest position. The caller holds the
/// service's write lock until it commits, so positions are taken in commit
/// order.
pub(super) async fn append(
    txn: &impl ConnectionTrait,
    scope: &str,
    origin: i64,
    kind: i16,
    keys: &[String],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut position = newest(txn, scope).await?;
    let at = now.timestamp_micros();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut insert = Query::insert()
            .into_table(T::Table)
            .columns([T::Scope, T::Position, T::Origin, T::Kind, T::Key, T::At])
            .to_owned();
        for key in chunk {
            position += 1;
            insert.values_panic([
                scope.into(),
                position.into(),
                origin.into(),
                kind.into(),
                key.as_str().into(),
                at.into(),
            ]);
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// Up to `limit` rows of `scope` after `cursor`, in position order.
pub(super) async fn after(
    db: &impl ConnectionTrait,
    scope: &str,
    cursor: i64,
    limit: u64,
) -> Result<Vec<Row>, DbErr> {
    let query = Query::select()
        .columns([T::Position, T::Origin, T::Kind, T::Key])
        .from(T::Table)
        .and_where(Expr::col(T::Scope).eq(scope))
        .and_where(Expr::col(T::Position).gt(cursor))
        .order_by(T::Position, Order::Asc)
        .limit(limit)
        .to_owned();
    select_all(db, &query).await
}

/// Deletes the rows of `scope` written before `cutoff`, except the newest,
/// whose position the next writer continues from.
pub(super) async fn prune(
    db: &impl ConnectionTrait,
    scope: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    // Rows only ever get newer positions, so the newest read first stays
    // older than or equal to whatever a writer appends meanwhile.
    let newest = newest(db, scope).await?;
    let delete = Query::delete()
        .from_table(T::Table)
        .and_where(Expr::col(T::Scope).eq(scope))
        .and_where(Expr::col(T::At).lt(cutoff.timestamp_micros()))
        .and_where(Expr::col(T::Position).lt(newest))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}
