//! A customer's segment memberships for the data-subject API (the lead's
//! export and erasure call these with the customer's ids and the ids merged into
//! it).

// Called by the data-subject API, which the lead adds at merge.
#![allow(dead_code)]

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

const MEMBERS: &str = "profile_segment_members";
const SEGMENTS: &str = "profile_segments";

#[derive(FromQueryResult)]
struct Membership {
    segment_id: String,
    customer_id: String,
    join_time: i64,
}

/// Every membership of `customer_ids` as JSON: segment id, customer id and join
/// time (RFC 3339).
pub(crate) async fn export(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<serde_json::Value, DbErr> {
    if customer_ids.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    let query = Query::select()
        .columns(["segment_id", "customer_id", "join_time"].map(Alias::new))
        .from(Alias::new(MEMBERS))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
        .order_by(Alias::new("customer_id"), sea_orm::Order::Asc)
        .order_by(Alias::new("segment_id"), sea_orm::Order::Asc)
        .to_owned();
    let rows =
        Membership::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .all(db)
            .await?;
    rows.into_iter()
        .map(|row| {
            let join_time = attune_kit::db::micros::from_micros(row.join_time)
                .map_err(|error| DbErr::Custom(format!("membership time: {error}")))?;
            Ok(serde_json::json!({
                "segment_id": row.segment_id,
                "customer_id": row.customer_id,
                "join_time": join_time.to_rfc3339(),
            }))
        })
        .collect::<Result<Vec<_>, DbErr>>()
        .map(serde_json::Value::Array)
}

/// Deletes every membership of `customer_ids` and lowers the member counts,
/// without feed entries (an erasure leaves no row naming the customer; the
/// erasure's own feed entry tells followers); returns the rows deleted.
pub(crate) async fn erase(
    txn: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<u64, DbErr> {
    if customer_ids.is_empty() {
        return Ok(0);
    }
    let in_ids = || Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned());
    // Each segment loses as many members as it has rows of these customers.
    let query = Query::select()
        .columns(["segment_id", "customer_id", "join_time"].map(Alias::new))
        .from(Alias::new(MEMBERS))
        .and_where(in_ids())
        .to_owned();
    let rows =
        Membership::find_by_statement(StatementBuilder::build(&query, &txn.get_database_backend()))
            .all(txn)
            .await?;
    let mut lost: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows {
        *lost.entry(row.segment_id).or_default() += 1;
    }
    for (segment_id, count) in lost {
        let update = Query::update()
            .table(Alias::new(SEGMENTS))
            .value(
                Alias::new("member_count"),
                Expr::col(Alias::new("member_count")).sub(count),
            )
            .and_where(Expr::col(Alias::new("segment_id")).eq(segment_id))
            .to_owned();
        txn.execute(&update).await?;
    }
    let delete = Query::delete()
        .from_table(Alias::new(MEMBERS))
        .and_where(in_ids())
        .to_owned();
    Ok(txn.execute(&delete).await?.rows_affected())
}
