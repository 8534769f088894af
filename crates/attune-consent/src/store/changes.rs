//! The change stream's table: one row per recorded decision, naming the decision
//! that counts after it, and one row per erasure, naming nobody.
//!
//! Rows are written inside the write transaction that makes the change, under the
//! service's write lock, so positions are handed out in commit order and a reader
//! that has seen position N has seen every position before it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::{change, record, state};
use super::ledger;
use crate::domain::{Change, ChangeKind, CustomerId};
use crate::error::ConsentError;
use attune_kit::db::micros::{from_micros, to_micros};

/// The kind stored for a recorded decision.
pub const DECISION: &str = "decision";
/// The kind stored for an erasure.
pub const ERASURE: &str = "erasure";

/// Appends the change made by ledger record `stored`, with the decision that
/// counts for its customer and purpose now that it is recorded.
pub async fn record_decision(
    txn: &impl ConnectionTrait,
    stored: &record::Model,
    now: DateTime<Utc>,
) -> Result<(), ConsentError> {
    let current =
        state::Entity::find_by_id((stored.customer_id.clone(), stored.purpose_code.clone()))
            .one(txn)
            .await?
            .ok_or_else(|| ConsentError::Corrupt(format!("no state after record {}", stored.id)))?;
    change::Entity::insert(change::ActiveModel {
        position: NotSet,
        kind: Set(DECISION.to_owned()),
        customer_id: Set(Some(stored.customer_id.clone())),
        purpose_code: Set(Some(stored.purpose_code.clone())),
        record_id: Set(Some(stored.id)),
        current_record_id: Set(Some(current.record_id)),
        change_time: Set(to_micros(now)),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Replaces a customer's changes by one erasure change that names nobody.
/// Returns how many changes were deleted.
pub async fn erase_customer(
    txn: &impl ConnectionTrait,
    customer: &CustomerId,
    now: DateTime<Utc>,
) -> Result<u64, ConsentError> {
    let deleted = change::Entity::delete_many()
        .filter(change::Column::CustomerId.eq(customer.as_ref()))
        .exec(txn)
        .await?
        .rows_affected;
    change::Entity::insert(change::ActiveModel {
        position: NotSet,
        kind: Set(ERASURE.to_owned()),
        customer_id: Set(None),
        purpose_code: Set(None),
        record_id: Set(None),
        current_record_id: Set(None),
        change_time: Set(to_micros(now)),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(deleted)
}

/// The newest position, or 0 while the stream is empty.
pub async fn newest_position(db: &impl ConnectionTrait) -> Result<i64, ConsentError> {
    let newest: Option<Option<i64>> = change::Entity::find()
        .select_only()
        .column_as(change::Column::Position.max(), "newest")
        .into_tuple()
        .one(db)
        .await?;
    Ok(newest.flatten().unwrap_or(0))
}

/// Up to `limit` changes after position `after`, in position order, with the
/// ledger records they name.
pub async fn after(
    db: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<Change>, ConsentError> {
    let rows = change::Entity::find()
        .filter(change::Column::Position.gt(after))
        .order_by_asc(change::Column::Position)
        .limit(limit)
        .all(db)
        .await?;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|row| [row.record_id, row.current_record_id])
        .flatten()
        .collect();
    let records = ledger::records_by_id(db, &ids).await?;
    rows.into_iter()
        .map(|row| {
            let corrupt =
                |what: &str| ConsentError::Corrupt(format!("change {}: {what}", row.position));
            let kind = match row.kind.as_str() {
                DECISION => {
                    let find = |id: Option<i64>| {
                        id.and_then(|id| records.get(&id).cloned().map(Box::new))
                            .ok_or_else(|| corrupt("missing ledger record"))
                    };
                    ChangeKind::Decision {
                        recorded: find(row.record_id)?,
                        current: find(row.current_record_id)?,
                    }
                }
                ERASURE => ChangeKind::Erasure,
                _ => return Err(corrupt("unknown kind")),
            };
            Ok(Change {
                position: row.position,
                change_time: from_micros(row.change_time)?,
                kind,
            })
        })
        .collect()
}
