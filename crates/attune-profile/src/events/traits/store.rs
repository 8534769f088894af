//! The `profile_traits` table: one row per customer, the encoded [`TraitState`].

use std::collections::HashMap;

use attune_kit::db::micros;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

use super::state::TraitState;

/// The traits table.
pub(crate) const TABLE: &str = "profile_traits";

/// Rows per insert statement (3 values a row).
const ROWS_PER_STATEMENT: usize = 1000;

#[derive(FromQueryResult)]
struct StateRow {
    customer_id: String,
    state: Vec<u8>,
}

/// The states of `customer_ids` that have one, in one query (per 1000 ids).
pub async fn load_states(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<HashMap<String, TraitState>, DbErr> {
    let mut states = HashMap::with_capacity(customer_ids.len());
    for chunk in customer_ids.chunks(ROWS_PER_STATEMENT) {
        let query = Query::select()
            .columns([Alias::new("customer_id"), Alias::new("state")])
            .from(Alias::new(TABLE))
            .and_where(Expr::col(Alias::new("customer_id")).is_in(chunk.iter().cloned()))
            .to_owned();
        let rows = StateRow::find_by_statement(StatementBuilder::build(
            &query,
            &db.get_database_backend(),
        ))
        .all(db)
        .await?;
        for row in rows {
            states.insert(row.customer_id, decode(&row.state)?);
        }
    }
    Ok(states)
}

/// Writes `states` back (inserted or replaced), in one statement per 1000.
pub async fn save_states(
    db: &impl ConnectionTrait,
    states: &[(&str, &TraitState)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let update_time = micros::to_micros(now);
    for chunk in states.chunks(ROWS_PER_STATEMENT) {
        let mut insert = Query::insert()
            .into_table(Alias::new(TABLE))
            .columns([
                Alias::new("customer_id"),
                Alias::new("state"),
                Alias::new("update_time"),
            ])
            .on_conflict(
                OnConflict::column(Alias::new("customer_id"))
                    .update_columns([Alias::new("state"), Alias::new("update_time")])
                    .to_owned(),
            )
            .to_owned();
        for (customer_id, state) in chunk {
            insert.values_panic([
                (*customer_id).to_owned().into(),
                encode(state)?.into(),
                update_time.into(),
            ]);
        }
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Deletes the states of `customer_ids`; returns how many there were.
pub async fn delete_states(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}

fn encode(state: &TraitState) -> Result<Vec<u8>, DbErr> {
    serde_json::to_vec(state).map_err(|error| DbErr::Custom(format!("trait state: {error}")))
}

fn decode(bytes: &[u8]) -> Result<TraitState, DbErr> {
    serde_json::from_slice(bytes)
        .map_err(|error| DbErr::Custom(format!("unreadable trait state: {error}")))
}
