//! Idempotency by request id: the first write with an id does the work and leaves
//! its outcome; a retry with the same id and content gets that outcome back.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entity::request;
use crate::error::ConsentError;

/// What claiming a request id found.
pub enum Claim {
    /// The id is new and now held by this transaction: do the work, then `complete`.
    Fresh,
    /// The same request was done before; here is its outcome.
    Replay(String),
}

/// Claims `request_id` for `operation` inside the caller's write transaction.
///
/// The claim is the transaction's first write, so concurrent retries serialize on
/// it: on PostgreSQL the second insert waits for the first transaction and then
/// sees its row; on SQLite the write lock was taken at BEGIN.
pub async fn claim(
    txn: &impl ConnectionTrait,
    operation: &str,
    request_id: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Claim, ConsentError> {
    let row = request::ActiveModel {
        operation: Set(operation.to_owned()),
        request_id: Set(request_id.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        outcome: Set(String::new()),
        create_time: Set(super::time::to_micros(now)),
    };
    let inserted = request::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([request::Column::Operation, request::Column::RequestId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let earlier = request::Entity::find_by_id((operation.to_owned(), request_id.to_owned()))
        .one(txn)
        .await?
        .ok_or_else(|| ConsentError::Corrupt(format!("claim on {operation} vanished")))?;
    if earlier.fingerprint != fingerprint {
        return Err(ConsentError::RequestIdReused(request_id.to_owned()));
    }
    Ok(Claim::Replay(earlier.outcome))
}

/// Records the outcome of a fresh claim, in the same transaction as the work.
pub async fn complete(
    txn: &impl ConnectionTrait,
    operation: &str,
    request_id: &str,
    outcome: String,
) -> Result<(), ConsentError> {
    request::Entity::update_many()
        .col_expr(request::Column::Outcome, Expr::value(outcome))
        .filter(request::Column::Operation.eq(operation))
        .filter(request::Column::RequestId.eq(request_id))
        .exec(txn)
        .await?;
    Ok(())
}
