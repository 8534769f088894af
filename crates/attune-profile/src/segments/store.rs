//! The segment tables: definitions (`profile_segments`, the rule prost-encoded)
//! and memberships (`profile_segment_members`), read and written with sea-query.
//!
//! Writers call these inside [`crate::app::Profile::begin_write`]: a membership
//! row and its count change in the same transaction as the feed entry that
//! announces it.

use attune_kit::db::micros;
use attune_kit::types::time;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Func, JoinType, OnConflict, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

const SEGMENTS: &str = "profile_segments";
const MEMBERS: &str = "profile_segment_members";
const PROFILES: &str = "profile_profiles";

fn col(name: &str) -> Alias {
    Alias::new(name)
}

use attune_kit::db::select_all as select;

/// A stored definition.
#[derive(Debug, Clone, FromQueryResult)]
pub struct SegmentRow {
    pub segment_id: String,
    pub display_name: String,
    pub description: String,
    /// The prost-encoded `SegmentRule`.
    pub rule: Vec<u8>,
    pub version: i32,
    pub member_count: i64,
    pub create_time: i64,
    pub update_time: i64,
    pub evaluate_time: Option<i64>,
}

fn stored_time(micros: i64) -> Result<DateTime<Utc>, DbErr> {
    micros::from_micros(micros).map_err(|error| DbErr::Custom(format!("segment time: {error}")))
}

impl SegmentRow {
    /// The wire rule.
    pub fn decode_rule(&self) -> Result<pb::SegmentRule, DbErr> {
        pb::SegmentRule::decode(self.rule.as_slice()).map_err(|error| {
            DbErr::Custom(format!(
                "unreadable rule of segment {}: {error}",
                self.segment_id
            ))
        })
    }

    /// The wire segment.
    pub fn into_proto(self) -> Result<pb::Segment, DbErr> {
        let rule = self.decode_rule()?;
        Ok(pb::Segment {
            segment_id: self.segment_id,
            display_name: self.display_name,
            description: self.description,
            rule: Some(rule),
            version: self.version,
            member_count: self.member_count,
            create_time: Some(time::to_proto(stored_time(self.create_time)?)),
            update_time: Some(time::to_proto(stored_time(self.update_time)?)),
            evaluate_time: self
                .evaluate_time
                .map(stored_time)
                .transpose()?
                .map(time::to_proto),
        })
    }
}

fn segment_columns() -> [Alias; 9] {
    [
        "segment_id",
        "display_name",
        "description",
        "rule",
        "version",
        "member_count",
        "create_time",
        "update_time",
        "evaluate_time",
    ]
    .map(col)
}

/// A definition as written.
#[derive(Debug, Clone)]
pub struct Definition<'a> {
    pub segment_id: &'a str,
    pub display_name: &'a str,
    pub description: &'a str,
    pub rule: &'a pb::SegmentRule,
}

/// Inserts a new definition at version 1 with no members; false when the id is
/// taken.
pub async fn insert(
    txn: &impl ConnectionTrait,
    definition: &Definition<'_>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let now = micros::to_micros(now);
    let insert = Query::insert()
        .into_table(col(SEGMENTS))
        .columns(segment_columns())
        .values_panic([
            definition.segment_id.into(),
            definition.display_name.into(),
            definition.description.into(),
            definition.rule.encode_to_vec().into(),
            1_i32.into(),
            0_i64.into(),
            now.into(),
            now.into(),
            Option::<i64>::None.into(),
        ])
        .on_conflict(
            OnConflict::column(col("segment_id"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    Ok(txn.execute(&insert).await?.rows_affected() == 1)
}

/// Replaces a definition and bumps its version; the new version, or `None` for
/// an unknown id.
pub async fn replace(
    txn: &impl ConnectionTrait,
    definition: &Definition<'_>,
    now: DateTime<Utc>,
) -> Result<Option<i32>, DbErr> {
    let update = Query::update()
        .table(col(SEGMENTS))
        .value(col("display_name"), definition.display_name)
        .value(col("description"), definition.description)
        .value(col("rule"), definition.rule.encode_to_vec())
        .value(col("version"), Expr::col(col("version")).add(1))
        .value(col("update_time"), micros::to_micros(now))
        .and_where(Expr::col(col("segment_id")).eq(definition.segment_id))
        .to_owned();
    if txn.execute(&update).await?.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(get(txn, definition.segment_id)
        .await?
        .map(|segment| segment.version))
}

/// One definition.
pub async fn get(db: &impl ConnectionTrait, segment_id: &str) -> Result<Option<SegmentRow>, DbErr> {
    let query = Query::select()
        .columns(segment_columns())
        .from(col(SEGMENTS))
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .to_owned();
    Ok(select(db, &query).await?.pop())
}

/// Up to `limit` definitions after `after`, by id.
pub async fn list(
    db: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<SegmentRow>, DbErr> {
    let mut query = Query::select()
        .columns(segment_columns())
        .from(col(SEGMENTS))
        .order_by(col("segment_id"), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(after) = after {
        query.and_where(Expr::col(col("segment_id")).gt(after));
    }
    select(db, &query).await
}

/// Every definition, by id (segments are few: the retailer's own list).
pub async fn all(db: &impl ConnectionTrait) -> Result<Vec<SegmentRow>, DbErr> {
    let query = Query::select()
        .columns(segment_columns())
        .from(col(SEGMENTS))
        .order_by(col("segment_id"), sea_orm::Order::Asc)
        .to_owned();
    select(db, &query).await
}

/// Deletes a definition (its members first removed by the caller); false for an
/// unknown id.
pub async fn delete(txn: &impl ConnectionTrait, segment_id: &str) -> Result<bool, DbErr> {
    let delete = Query::delete()
        .from_table(col(SEGMENTS))
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .to_owned();
    Ok(txn.execute(&delete).await?.rows_affected() == 1)
}

/// Records that `segment_id` at `version` was evaluated for every customer at
/// `time` (unless it changed since: its own evaluation then follows).
pub async fn mark_evaluated(
    txn: &impl ConnectionTrait,
    segment_id: &str,
    version: i32,
    time: DateTime<Utc>,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(col(SEGMENTS))
        .value(col("evaluate_time"), micros::to_micros(time))
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .and_where(Expr::col(col("version")).eq(version))
        .to_owned();
    txn.execute(&update).await?;
    Ok(())
}

/// Adds `delta` to a segment's member count.
pub async fn add_to_count(
    txn: &impl ConnectionTrait,
    segment_id: &str,
    delta: i64,
) -> Result<(), DbErr> {
    let update = Query::update()
        .table(col(SEGMENTS))
        .value(
            col("member_count"),
            Expr::col(col("member_count")).add(delta),
        )
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .to_owned();
    txn.execute(&update).await?;
    Ok(())
}

/// Sets every segment's member count to its number of membership rows: the
/// sweep's repair for rows deleted without adjusting the count (an erasure that
/// deleted the table's rows generically).
pub async fn recount(txn: &impl ConnectionTrait) -> Result<(), DbErr> {
    let update = Query::update()
        .table(col(SEGMENTS))
        .value(
            col("member_count"),
            Expr::cust(
                "(SELECT COUNT(*) FROM profile_segment_members \
                 WHERE profile_segment_members.segment_id = profile_segments.segment_id)",
            ),
        )
        .to_owned();
    txn.execute(&update).await?;
    Ok(())
}

/// One membership.
#[derive(Debug, Clone, FromQueryResult)]
pub struct MemberRow {
    pub segment_id: String,
    pub customer_id: String,
    pub join_time: i64,
}

impl MemberRow {
    /// The wire membership, with the segment's display name.
    pub fn into_proto(self, display_name: String) -> Result<pb::SegmentMembership, DbErr> {
        Ok(pb::SegmentMembership {
            segment_id: self.segment_id,
            display_name,
            customer_id: self.customer_id,
            join_time: Some(time::to_proto(stored_time(self.join_time)?)),
        })
    }
}

/// The memberships of `customer_ids` in `segment_ids`.
pub async fn memberships_of(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
    segment_ids: &[String],
) -> Result<Vec<MemberRow>, DbErr> {
    if customer_ids.is_empty() || segment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let query = Query::select()
        .columns(["segment_id", "customer_id", "join_time"].map(col))
        .from(col(MEMBERS))
        .and_where(Expr::col(col("customer_id")).is_in(customer_ids.iter().cloned()))
        .and_where(Expr::col(col("segment_id")).is_in(segment_ids.iter().cloned()))
        .to_owned();
    select(db, &query).await
}

/// Up to `limit` members of a segment after customer `after`, by customer id.
pub async fn members(
    db: &impl ConnectionTrait,
    segment_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<MemberRow>, DbErr> {
    let mut query = Query::select()
        .columns(["segment_id", "customer_id", "join_time"].map(col))
        .from(col(MEMBERS))
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .order_by(col("customer_id"), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(after) = after {
        query.and_where(Expr::col(col("customer_id")).gt(after));
    }
    select(db, &query).await
}

/// A customer's membership with its segment's display name.
#[derive(Debug, Clone, FromQueryResult)]
pub struct CustomerMembershipRow {
    pub segment_id: String,
    pub display_name: String,
    pub customer_id: String,
    pub join_time: i64,
}

/// The segment columns of a [`CustomerMembershipRow`], absent on the one row
/// that says a customer is in no segment.
#[derive(Debug, FromQueryResult)]
struct ResolvedMembershipRow {
    segment_id: Option<String>,
    display_name: Option<String>,
    customer_id: Option<String>,
    join_time: Option<i64>,
}

/// Up to `limit` of the memberships of the profile `customer_id` names (itself,
/// or the survivor it was merged into) after segment `after`, by segment id;
/// `None` when no profile has the id. One statement, as ListCustomerSegments
/// runs on every page: the id's row, left-joined to the survivor's memberships
/// of segments that exist, so a customer in no segment is one row of nulls.
pub async fn customer_memberships(
    db: &impl ConnectionTrait,
    customer_id: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Option<Vec<CustomerMembershipRow>>, DbErr> {
    let (asked, member, segment) = (col("a"), col("m"), col("s"));
    let mut joined = Condition::all()
        .add(
            Expr::col((member.clone(), col("customer_id"))).eq(Func::coalesce([
                Expr::col((asked.clone(), col("merged_into"))),
                Expr::col((asked.clone(), col("customer_id"))),
            ])),
        )
        .add(
            Expr::col((member.clone(), col("segment_id"))).in_subquery(
                Query::select()
                    .column(col("segment_id"))
                    .from(col(SEGMENTS))
                    .to_owned(),
            ),
        );
    if let Some(after) = after {
        joined = joined.add(Expr::col((member.clone(), col("segment_id"))).gt(after));
    }
    let query = Query::select()
        .expr_as(
            Expr::col((member.clone(), col("segment_id"))),
            col("segment_id"),
        )
        .expr_as(
            Expr::col((segment.clone(), col("display_name"))),
            col("display_name"),
        )
        .expr_as(
            Expr::col((member.clone(), col("customer_id"))),
            col("customer_id"),
        )
        .expr_as(
            Expr::col((member.clone(), col("join_time"))),
            col("join_time"),
        )
        .from_as(col(PROFILES), asked.clone())
        .join_as(JoinType::LeftJoin, col(MEMBERS), member.clone(), joined)
        .join_as(
            JoinType::LeftJoin,
            col(SEGMENTS),
            segment.clone(),
            Expr::col((segment, col("segment_id"))).equals((member.clone(), col("segment_id"))),
        )
        .and_where(Expr::col((asked, col("customer_id"))).eq(customer_id))
        .order_by((member, col("segment_id")), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    let rows: Vec<ResolvedMembershipRow> = select(db, &query).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|row| {
                Some(CustomerMembershipRow {
                    segment_id: row.segment_id?,
                    display_name: row.display_name?,
                    customer_id: row.customer_id?,
                    join_time: row.join_time?,
                })
            })
            .collect(),
    ))
}

/// Adds memberships joined at `now`.
pub async fn add_members(
    txn: &impl ConnectionTrait,
    rows: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    // 3 values a row: well inside SQLite's 32766 bound values a statement.
    for chunk in rows.chunks(1000) {
        let mut insert = Query::insert()
            .into_table(col(MEMBERS))
            .columns(["segment_id", "customer_id", "join_time"].map(col))
            .to_owned();
        for (segment_id, customer_id) in chunk {
            insert.values_panic([
                segment_id.as_str().into(),
                customer_id.as_str().into(),
                micros::to_micros(now).into(),
            ]);
        }
        txn.execute(&insert).await?;
    }
    Ok(())
}

/// Removes one membership.
pub async fn remove_member(
    txn: &impl ConnectionTrait,
    segment_id: &str,
    customer_id: &str,
) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(col(MEMBERS))
        .and_where(Expr::col(col("segment_id")).eq(segment_id))
        .and_where(Expr::col(col("customer_id")).eq(customer_id))
        .to_owned();
    txn.execute(&delete).await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct CustomerRow {
    customer_id: String,
}

/// Up to `limit` members (of any segment) who are no longer live customers
/// (merged away, or their profile is gone), distinct and by id.
pub async fn stale_members(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<String>, DbErr> {
    let query = Query::select()
        .distinct()
        .expr_as(
            Expr::col((col(MEMBERS), col("customer_id"))),
            col("customer_id"),
        )
        .from(col(MEMBERS))
        .left_join(
            col(PROFILES),
            Expr::col((col(PROFILES), col("customer_id")))
                .equals((col(MEMBERS), col("customer_id"))),
        )
        .cond_where(
            Expr::col((col(PROFILES), col("customer_id")))
                .is_null()
                .or(Expr::col((col(PROFILES), col("merged_into"))).is_not_null()),
        )
        .order_by((col(MEMBERS), col("customer_id")), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    Ok(select::<CustomerRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| row.customer_id)
        .collect())
}
