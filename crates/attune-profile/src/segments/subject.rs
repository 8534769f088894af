//! A customer's segment memberships for profile's data-subject API (`crate::subject`):
//! export them, erase them.

// Called by the data-subject API once it is mounted (the lead wires it at merge).

use std::collections::BTreeMap;

use attune_proto::privacy::v1 as privacy_pb;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};
use serde_json::json;

const MEMBERS: &str = "profile_segment_members";
const SEGMENTS: &str = "profile_segments";

#[derive(FromQueryResult)]
struct Membership {
    segment_id: String,
    display_name: String,
    customer_id: String,
    join_time: i64,
}

/// Every membership of `customer_ids` as export records (`segment_membership`,
/// id `<segment_id>/<customer_id>`), by customer then segment.
pub(crate) async fn export(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<Vec<privacy_pb::DataRecord>, DbErr> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    let member = |column: &str| Expr::col((Alias::new(MEMBERS), Alias::new(column)));
    let query = Query::select()
        .expr_as(member("segment_id"), Alias::new("segment_id"))
        .expr_as(
            Expr::col((Alias::new(SEGMENTS), Alias::new("display_name"))),
            Alias::new("display_name"),
        )
        .expr_as(member("customer_id"), Alias::new("customer_id"))
        .expr_as(member("join_time"), Alias::new("join_time"))
        .from(Alias::new(MEMBERS))
        .inner_join(
            Alias::new(SEGMENTS),
            Expr::col((Alias::new(SEGMENTS), Alias::new("segment_id")))
                .equals((Alias::new(MEMBERS), Alias::new("segment_id"))),
        )
        .and_where(member("customer_id").is_in(customer_ids.iter().cloned()))
        .order_by(
            (Alias::new(MEMBERS), Alias::new("customer_id")),
            sea_orm::Order::Asc,
        )
        .order_by(
            (Alias::new(MEMBERS), Alias::new("segment_id")),
            sea_orm::Order::Asc,
        )
        .to_owned();
    let rows =
        Membership::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .all(db)
            .await?;
    rows.into_iter()
        .map(|row| {
            let join_time = attune_kit::db::micros::from_micros(row.join_time)
                .map_err(|error| DbErr::Custom(format!("membership time: {error}")))?;
            let data = json!({
                "segment_id": row.segment_id,
                "segment_display_name": row.display_name,
                "customer_id": row.customer_id,
                "join_time": join_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            });
            Ok(privacy_pb::DataRecord {
                kind: "segment_membership".to_owned(),
                id: format!("{}/{}", row.segment_id, row.customer_id),
                update_time: Some(attune_kit::types::time::to_proto(join_time)),
                data: Some(attune_kit::privacy::struct_from_json(data)),
            })
        })
        .collect()
}

#[derive(FromQueryResult)]
struct SegmentOf {
    segment_id: String,
}

/// Deletes every membership of `customer_ids` and lowers the member counts to
/// match, without feed entries (an erasure leaves no row naming the customer;
/// the erasure's own feed entry tells followers); returns the rows deleted. Call
/// it in the erasure's transaction before any generic delete of the table, or
/// the counts are only corrected by the next sweep.
pub(crate) async fn erase(
    txn: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<u64, DbErr> {
    if customer_ids.is_empty() {
        return Ok(0);
    }
    let in_ids = || Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned());
    let query = Query::select()
        .column(Alias::new("segment_id"))
        .from(Alias::new(MEMBERS))
        .and_where(in_ids())
        .to_owned();
    let rows =
        SegmentOf::find_by_statement(StatementBuilder::build(&query, &txn.get_database_backend()))
            .all(txn)
            .await?;
    // Each segment loses as many members as it has rows of these customers.
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
