//! Zero-party rows (`profile_zero_party`): one encoded `ZeroPartyData` per
//! customer, provenance included.

use attune_kit::db::micros;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, JoinType, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

/// The zero-party table.
pub(crate) const TABLE: &str = "profile_zero_party";

#[derive(Debug, FromQueryResult)]
struct Row {
    customer_id: String,
    data: Vec<u8>,
}

fn decode(row: Row) -> Result<(String, pb::ZeroPartyData), DbErr> {
    let data = pb::ZeroPartyData::decode(row.data.as_slice())
        .map_err(|error| DbErr::Custom(format!("unreadable zero-party data: {error}")))?;
    Ok((row.customer_id, data))
}

/// The records of `ids` that exist, by customer id.
pub(crate) async fn load_all(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<(String, pb::ZeroPartyData)>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let query = Query::select()
        .columns(["customer_id", "data"].map(Alias::new))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(ids.iter().cloned()))
        .order_by(Alias::new("customer_id"), sea_orm::Order::Asc)
        .to_owned();
    Row::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// The record of `customer_id`, empty when they shared nothing.
pub(crate) async fn load(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<pb::ZeroPartyData, DbErr> {
    let mut found = load_all(db, &[customer_id.to_owned()]).await?;
    Ok(found.pop().map(|(_, data)| data).unwrap_or_default())
}

#[derive(Debug, FromQueryResult)]
struct ResolvedRow {
    data: Option<Vec<u8>>,
}

/// The record of the profile `customer_id` names (itself, or the survivor it
/// was merged into), empty when they shared nothing; `None` when no profile has
/// the id. One statement, as GetZeroPartyData runs on every page: the id's row,
/// its survivor's row (a redirect names the final survivor, so one hop) and the
/// record, where the same reads in turn cost three round trips.
pub(crate) async fn load_resolved(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<pb::ZeroPartyData>, DbErr> {
    let (asked, profile, record) = (Alias::new("a"), Alias::new("p"), Alias::new("z"));
    let query = Query::select()
        .expr_as(
            Expr::col((record.clone(), Alias::new("data"))),
            Alias::new("data"),
        )
        .from_as(Alias::new(super::profiles::TABLE), asked.clone())
        .join_as(
            JoinType::InnerJoin,
            Alias::new(super::profiles::TABLE),
            profile.clone(),
            Expr::col((profile.clone(), Alias::new("customer_id"))).eq(Func::coalesce([
                Expr::col((asked.clone(), Alias::new("merged_into"))),
                Expr::col((asked.clone(), Alias::new("customer_id"))),
            ])),
        )
        .join_as(
            JoinType::LeftJoin,
            Alias::new(TABLE),
            record.clone(),
            Expr::col((record, Alias::new("customer_id")))
                .equals((profile, Alias::new("customer_id"))),
        )
        .and_where(Expr::col((asked, Alias::new("customer_id"))).eq(customer_id))
        .to_owned();
    let Some(row) =
        ResolvedRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .one(db)
            .await?
    else {
        return Ok(None);
    };
    row.data
        .map(|data| {
            pb::ZeroPartyData::decode(data.as_slice())
                .map_err(|error| DbErr::Custom(format!("unreadable zero-party data: {error}")))
        })
        .transpose()
        .map(|data| Some(data.unwrap_or_default()))
}

/// Stores the record of `customer_id`, replacing the one before.
pub(crate) async fn save(
    db: &impl ConnectionTrait,
    customer_id: &str,
    data: &pb::ZeroPartyData,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns(["customer_id", "data", "update_time"].map(Alias::new))
        .values_panic([
            customer_id.into(),
            data.encode_to_vec().into(),
            micros::to_micros(now).into(),
        ])
        .on_conflict(
            OnConflict::column(Alias::new("customer_id"))
                .update_columns(["data", "update_time"].map(Alias::new))
                .to_owned(),
        )
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}

/// Deletes the records of `ids`; returns how many.
pub(crate) async fn delete(db: &impl ConnectionTrait, ids: &[String]) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let delete = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(ids.iter().cloned()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}
