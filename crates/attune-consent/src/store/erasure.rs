//! Erasure's writes to the ledger and the state projection.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entity::{record, state};
use crate::domain::CustomerId;
use crate::error::ConsentError;

/// Replaces the customer id of every ledger record of `customer` by `subject`
/// and clears the proof parts that could identify a person (user agent,
/// capturer). The only rewrite the append-only ledger ever sees. Returns how
/// many records were pseudonymised.
pub async fn pseudonymise_records(
    txn: &impl ConnectionTrait,
    customer: &CustomerId,
    subject: &str,
) -> Result<u64, ConsentError> {
    let updated = record::Entity::update_many()
        .col_expr(record::Column::CustomerId, Expr::value(subject))
        .col_expr(
            record::Column::UserAgent,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            record::Column::CapturedBy,
            Expr::value(Option::<String>::None),
        )
        .filter(record::Column::CustomerId.eq(customer.as_ref()))
        .exec(txn)
        .await?;
    Ok(updated.rows_affected)
}

/// Deletes the customer's current states: an erased customer has no consent.
pub async fn delete_states(
    txn: &impl ConnectionTrait,
    customer: &CustomerId,
) -> Result<u64, ConsentError> {
    let deleted = state::Entity::delete_many()
        .filter(state::Column::CustomerId.eq(customer.as_ref()))
        .exec(txn)
        .await?;
    Ok(deleted.rows_affected)
}
