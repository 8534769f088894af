//! Session state as stored: one row per customer or visitor, the session as JSON.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr};

use crate::domain::Session;

const TABLE: &str = "recommendation_sessions";
const CUSTOMER_ID: &str = "customer_id";
const STATE: &str = "state";
const UPDATE_TIME: &str = "update_time";

/// The stored session of `customer_id`, if any.
pub async fn get(db: &impl ConnectionTrait, customer_id: &str) -> Result<Option<Session>, DbErr> {
    let select = Query::select()
        .column(STATE)
        .from(TABLE)
        .and_where(Expr::col(CUSTOMER_ID).eq(customer_id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    let state: String = row.try_get("", STATE)?;
    serde_json::from_str(&state)
        .map(Some)
        .map_err(|e| DbErr::Custom(format!("stored session unreadable: {e}")))
}

/// Stores `session` for `customer_id`.
pub async fn put(
    db: &impl ConnectionTrait,
    customer_id: &str,
    session: &Session,
    update_time: i64,
) -> Result<(), DbErr> {
    let state = serde_json::to_string(session)
        .map_err(|e| DbErr::Custom(format!("session not encodable: {e}")))?;
    let insert = Query::insert()
        .into_table(TABLE)
        .columns([CUSTOMER_ID, STATE, UPDATE_TIME])
        .values_panic([customer_id.into(), state.into(), update_time.into()])
        .on_conflict(
            OnConflict::column(CUSTOMER_ID)
                .update_columns([STATE, UPDATE_TIME])
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}

/// Deletes the session of `customer_id`; returns how many rows went (0 or 1).
pub async fn delete(db: &impl ConnectionTrait, customer_id: &str) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(TABLE)
        .and_where(Expr::col(CUSTOMER_ID).eq(customer_id))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

/// Every stored session, for retargeting audiences: (customer, session), in
/// customer order, after `after` (exclusive), at most `limit`.
pub async fn page(
    db: &impl ConnectionTrait,
    after: &str,
    limit: u64,
) -> Result<Vec<(String, Session)>, DbErr> {
    let select = Query::select()
        .columns([CUSTOMER_ID, STATE])
        .from(TABLE)
        .and_where(Expr::col(CUSTOMER_ID).gt(after))
        .order_by(CUSTOMER_ID, sea_orm::sea_query::Order::Asc)
        .limit(limit)
        .to_owned();
    db.query_all(&select)
        .await?
        .into_iter()
        .map(|row| {
            let state: String = row.try_get("", STATE)?;
            let session = serde_json::from_str(&state)
                .map_err(|e| DbErr::Custom(format!("stored session unreadable: {e}")))?;
            Ok((row.try_get("", CUSTOMER_ID)?, session))
        })
        .collect()
}
