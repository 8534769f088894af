//! Profile rows (`profile_profiles`): one per customer id, a merged one kept as a
//! redirect whose `merged_into` names the final survivor (a later merge of the
//! survivor moves every redirect along), so resolving an id is one hop.

use std::collections::BTreeMap;

use attune_kit::db::micros;
use attune_kit::types::time;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

use super::identities;

/// The profile table.
pub(crate) const TABLE: &str = "profile_profiles";

/// How many merged ids a profile shows; ListMergedCustomerIds reads them all.
const SHOWN_MERGES: u64 = 100;

const COLUMNS: [&str; 11] = [
    "customer_id",
    "kind",
    "create_channel",
    "create_time",
    "update_time",
    "last_event_time",
    "home_store_id",
    "attributes",
    "merged_into",
    "merge_time",
    "merge_sequence",
];

/// A profile row as stored.
#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct ProfileRow {
    pub customer_id: String,
    /// `ProfileKind` wire number.
    pub kind: i16,
    /// `Channel` wire number.
    pub create_channel: i16,
    pub create_time: i64,
    pub update_time: i64,
    pub last_event_time: Option<i64>,
    pub home_store_id: Option<String>,
    /// JSON object of the retailer's own fields.
    pub attributes: String,
    pub merged_into: Option<String>,
    #[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
    pub merge_time: Option<i64>,
    pub merge_sequence: Option<i64>,
}

impl ProfileRow {
    /// The retailer's own fields.
    pub fn attributes(&self) -> Result<BTreeMap<String, String>, DbErr> {
        serde_json::from_str(&self.attributes)
            .map_err(|error| DbErr::Custom(format!("unreadable profile attributes: {error}")))
    }

    pub fn is_anonymous(&self) -> bool {
        i32::from(self.kind) == pb::ProfileKind::Anonymous as i32
    }
}

/// A new profile.
#[derive(Debug, Clone)]
pub(crate) struct NewProfile<'a> {
    pub customer_id: &'a str,
    pub kind: pb::ProfileKind,
    pub create_channel: i32,
    pub now: DateTime<Utc>,
}

fn select() -> SelectStatement {
    Query::select()
        .columns(COLUMNS.map(Alias::new))
        .from(Alias::new(TABLE))
        .to_owned()
}

async fn one(
    db: &impl ConnectionTrait,
    query: &SelectStatement,
) -> Result<Option<ProfileRow>, DbErr> {
    ProfileRow::find_by_statement(StatementBuilder::build(query, &db.get_database_backend()))
        .one(db)
        .await
}

/// The row of `customer_id` itself, redirect or not.
pub(crate) async fn find(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<ProfileRow>, DbErr> {
    let query = select()
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    one(db, &query).await
}

/// The profile `customer_id` names: its own row, or the survivor it was merged
/// into. `None` for an unknown (or erased) id.
pub(crate) async fn resolve(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<ProfileRow>, DbErr> {
    match find(db, customer_id).await? {
        Some(ProfileRow {
            merged_into: Some(survivor),
            ..
        }) => find(db, &survivor).await,
        found => Ok(found),
    }
}

/// Inserts a new profile.
pub(crate) async fn insert(db: &impl ConnectionTrait, new: &NewProfile<'_>) -> Result<(), DbErr> {
    let now = micros::to_micros(new.now);
    let insert = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns(
            [
                "customer_id",
                "kind",
                "create_channel",
                "create_time",
                "update_time",
                "attributes",
            ]
            .map(Alias::new),
        )
        .values_panic([
            new.customer_id.into(),
            (new.kind as i16).into(),
            i16::try_from(new.create_channel).unwrap_or(0).into(),
            now.into(),
            now.into(),
            "{}".into(),
        ])
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}

/// Records that the profile, its identities or its zero-party data changed.
pub(crate) async fn touch(
    db: &impl ConnectionTrait,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("update_time"), micros::to_micros(now))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// Stores the writable fields.
pub(crate) async fn set_writable(
    db: &impl ConnectionTrait,
    customer_id: &str,
    home_store_id: Option<&str>,
    attributes: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let attributes = serde_json::to_string(attributes)
        .map_err(|error| DbErr::Custom(format!("profile attributes: {error}")))?;
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(
            Alias::new("home_store_id"),
            home_store_id.map(str::to_owned),
        )
        .value(Alias::new("attributes"), attributes)
        .value(Alias::new("update_time"), micros::to_micros(now))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// Turns `source` into a redirect to `target`, merged at `now` by the feed entry
/// `sequence`; its own fields are cleared (the survivor holds them now).
pub(crate) async fn redirect(
    db: &impl ConnectionTrait,
    source: &str,
    target: &str,
    now: DateTime<Utc>,
    sequence: i64,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("merged_into"), target)
        .value(Alias::new("merge_time"), micros::to_micros(now))
        .value(Alias::new("merge_sequence"), sequence)
        .value(Alias::new("home_store_id"), Option::<String>::None)
        .value(Alias::new("attributes"), "{}")
        .value(Alias::new("update_time"), micros::to_micros(now))
        .and_where(Expr::col(Alias::new("customer_id")).eq(source))
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// Moves every redirect to `from` over to `to`, as merged by `sequence` (so
/// they join the end of `to`'s merge order and paging it never skips one).
pub(crate) async fn move_redirects(
    db: &impl ConnectionTrait,
    from: &str,
    to: &str,
    sequence: i64,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("merged_into"), to)
        .value(Alias::new("merge_sequence"), sequence)
        .and_where(Expr::col(Alias::new("merged_into")).eq(from))
        .to_owned();
    Ok(db.execute(&update).await?.rows_affected())
}

/// Sets the time of the most recent event to the later of the two.
pub(crate) async fn keep_latest_event_time(
    db: &impl ConnectionTrait,
    customer_id: &str,
    event_time: Option<i64>,
) -> Result<(), DbErr> {
    let Some(event_time) = event_time else {
        return Ok(());
    };
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("last_event_time"), event_time)
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .and_where(
            Expr::col(Alias::new("last_event_time"))
                .is_null()
                .or(Expr::col(Alias::new("last_event_time")).lt(event_time)),
        )
        .to_owned();
    db.execute(&update).await?;
    Ok(())
}

/// One id merged into a survivor.
#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct MergedRow {
    pub customer_id: String,
    pub merge_time: i64,
    pub merge_sequence: i64,
}

impl MergedRow {
    /// The page cursor after this row: merge order, then id (redirects moved by
    /// one merge share its sequence).
    pub fn cursor(&self) -> String {
        format!("{}:{}", self.merge_sequence, self.customer_id)
    }

    /// Reads a cursor back.
    pub fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
        let (sequence, customer_id) = cursor.split_once(':')?;
        Some((sequence.parse().ok()?, customer_id.to_owned()))
    }

    pub fn to_wire(&self) -> Result<pb::MergedCustomer, DbErr> {
        Ok(pb::MergedCustomer {
            customer_id: self.customer_id.clone(),
            merge_time: Some(time::to_proto(from_micros(self.merge_time)?)),
            sequence: self.merge_sequence,
        })
    }
}

fn merged_select(survivor: &str) -> SelectStatement {
    Query::select()
        .columns(["customer_id", "merge_time", "merge_sequence"].map(Alias::new))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("merged_into")).eq(survivor))
        .to_owned()
}

/// Up to `limit` ids merged into `survivor` after `after`, in merge order.
pub(crate) async fn merged_after(
    db: &impl ConnectionTrait,
    survivor: &str,
    after: Option<&(i64, String)>,
    limit: u64,
) -> Result<Vec<MergedRow>, DbErr> {
    let mut query = merged_select(survivor);
    if let Some((sequence, customer_id)) = after {
        query.and_where(
            Expr::col(Alias::new("merge_sequence"))
                .gt(*sequence)
                .or(Expr::col(Alias::new("merge_sequence"))
                    .eq(*sequence)
                    .and(Expr::col(Alias::new("customer_id")).gt(customer_id.as_str()))),
        );
    }
    query
        .order_by(Alias::new("merge_sequence"), sea_orm::Order::Asc)
        .order_by(Alias::new("customer_id"), sea_orm::Order::Asc)
        .limit(limit);
    MergedRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await
}

/// Every id merged into `survivor`, in merge order.
#[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
pub(crate) async fn merged_ids(
    db: &impl ConnectionTrait,
    survivor: &str,
) -> Result<Vec<String>, DbErr> {
    let mut query = merged_select(survivor);
    query
        .order_by(Alias::new("merge_sequence"), sea_orm::Order::Asc)
        .order_by(Alias::new("customer_id"), sea_orm::Order::Asc);
    let rows =
        MergedRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .all(db)
            .await?;
    Ok(rows.into_iter().map(|row| row.customer_id).collect())
}

/// How many ids were merged into `survivor`.
pub(crate) async fn merged_count(db: &impl ConnectionTrait, survivor: &str) -> Result<i64, DbErr> {
    let query = Query::select()
        .expr_as(
            Func::count(Expr::col(Alias::new("customer_id"))),
            Alias::new("n"),
        )
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("merged_into")).eq(survivor))
        .to_owned();
    match db.query_one(&query).await? {
        Some(row) => row.try_get("", "n"),
        None => Ok(0),
    }
}

/// The most recent merges into `survivor` (at most [`SHOWN_MERGES`]), oldest first.
async fn recent_merges(db: &impl ConnectionTrait, survivor: &str) -> Result<Vec<String>, DbErr> {
    let mut query = merged_select(survivor);
    query
        .order_by(Alias::new("merge_sequence"), sea_orm::Order::Desc)
        .order_by(Alias::new("customer_id"), sea_orm::Order::Desc)
        .limit(SHOWN_MERGES);
    let rows =
        MergedRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .all(db)
            .await?;
    Ok(rows.into_iter().rev().map(|row| row.customer_id).collect())
}

pub(crate) fn from_micros(value: i64) -> Result<DateTime<Utc>, DbErr> {
    micros::from_micros(value).map_err(|error| DbErr::Custom(format!("stored time: {error}")))
}

/// The profile as the API shows it, with its identities and merges.
pub(crate) async fn to_wire(
    db: &impl ConnectionTrait,
    row: &ProfileRow,
) -> Result<pb::Profile, DbErr> {
    let identities = identities::of_customer(db, &row.customer_id)
        .await?
        .into_iter()
        .map(|identity| identity.to_wire())
        .collect::<Result<_, _>>()?;
    Ok(pb::Profile {
        customer_id: row.customer_id.clone(),
        kind: row.kind.into(),
        identities,
        merged_customer_ids: recent_merges(db, &row.customer_id).await?,
        create_channel: row.create_channel.into(),
        create_time: Some(time::to_proto(from_micros(row.create_time)?)),
        update_time: Some(time::to_proto(from_micros(row.update_time)?)),
        last_event_time: row
            .last_event_time
            .map(from_micros)
            .transpose()?
            .map(time::to_proto),
        merged_customer_count: merged_count(db, &row.customer_id).await?,
        home_store_id: row.home_store_id.clone().unwrap_or_default(),
        attributes: row.attributes()?.into_iter().collect(),
    })
}

/// The profile of `customer_id` as the API shows it, read again (after a write).
pub(crate) async fn wire_of(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<pb::Profile, DbErr> {
    let row = find(db, customer_id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the profile just written".into()))?;
    to_wire(db, &row).await
}

/// Every row of `ids`, for export.
#[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
pub(crate) async fn rows_of(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<ProfileRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let query = select()
        .and_where(Expr::col(Alias::new("customer_id")).is_in(ids.iter().cloned()))
        .order_by(Alias::new("customer_id"), sea_orm::Order::Asc)
        .to_owned();
    ProfileRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await
}

/// Deletes the rows of `ids`; returns how many.
#[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
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
