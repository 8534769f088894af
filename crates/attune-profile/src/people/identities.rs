//! Identity rows (`profile_identities`): which profile a channel's id belongs to.
//! The key (type, stored value) makes an identity belong to one profile at a time;
//! e-mail and phone are stored only as keyed hashes ([`StoredIdentity`]).

use attune_kit::db::micros;
use attune_kit::types::time;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, StatementBuilder};

use super::profiles::from_micros;
use crate::identity::StoredIdentity;

/// The identity table.
pub(crate) const TABLE: &str = "profile_identities";

/// At most this many identities per profile (LinkIdentity, CreateProfile).
pub(crate) const MAX_PER_PROFILE: usize = 50;

/// An identity row as stored.
#[derive(Debug, Clone, FromQueryResult)]
pub(crate) struct IdentityRow {
    pub identity_type: i16,
    pub value: String,
    pub customer_id: String,
    /// `Channel` wire number (0: not said).
    pub channel: i16,
    pub link_time: i64,
}

impl IdentityRow {
    pub fn to_wire(&self) -> Result<pb::Identity, DbErr> {
        Ok(pb::Identity {
            identity_type: self.identity_type.into(),
            value: self.value.clone(),
            channel: self.channel.into(),
            link_time: Some(time::to_proto(from_micros(self.link_time)?)),
        })
    }

    #[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
    pub fn stored(&self) -> StoredIdentity {
        StoredIdentity {
            identity_type: self.identity_type.into(),
            value: self.value.clone(),
        }
    }
}

fn select() -> SelectStatement {
    Query::select()
        .columns(
            [
                "identity_type",
                "value",
                "customer_id",
                "channel",
                "link_time",
            ]
            .map(Alias::new),
        )
        .from(Alias::new(TABLE))
        .to_owned()
}

fn key_matches(query: &mut SelectStatement, identity: &StoredIdentity) {
    query
        .and_where(Expr::col(Alias::new("identity_type")).eq(type_column(identity)))
        .and_where(Expr::col(Alias::new("value")).eq(identity.value.as_str()));
}

fn type_column(identity: &StoredIdentity) -> i16 {
    i16::try_from(identity.identity_type).expect("identity types are small wire numbers")
}

/// The customer `identity` is linked to, if any.
pub(crate) async fn owner(
    db: &impl ConnectionTrait,
    identity: &StoredIdentity,
) -> Result<Option<String>, DbErr> {
    let mut query = select();
    key_matches(&mut query, identity);
    let row =
        IdentityRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
            .one(db)
            .await?;
    Ok(row.map(|row| row.customer_id))
}

/// The identities of `customer_id`, by type then value.
pub(crate) async fn of_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<IdentityRow>, DbErr> {
    of_customers(db, &[customer_id.to_owned()]).await
}

/// The identities of every one of `ids`, by type then value.
pub(crate) async fn of_customers(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Vec<IdentityRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let query = select()
        .and_where(Expr::col(Alias::new("customer_id")).is_in(ids.iter().cloned()))
        .order_by(Alias::new("identity_type"), sea_orm::Order::Asc)
        .order_by(Alias::new("value"), sea_orm::Order::Asc)
        .to_owned();
    IdentityRow::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await
}

/// How many identities `customer_id` has.
pub(crate) async fn count(db: &impl ConnectionTrait, customer_id: &str) -> Result<usize, DbErr> {
    let query = Query::select()
        .expr_as(Func::count(Expr::col(Alias::new("value"))), Alias::new("n"))
        .from(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    let n: i64 = match db.query_one(&query).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Links `identity` to `customer_id`.
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    customer_id: &str,
    identity: &StoredIdentity,
    channel: i32,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns(
            [
                "identity_type",
                "value",
                "customer_id",
                "channel",
                "link_time",
            ]
            .map(Alias::new),
        )
        .values_panic([
            type_column(identity).into(),
            identity.value.clone().into(),
            customer_id.into(),
            i16::try_from(channel).unwrap_or(0).into(),
            micros::to_micros(now).into(),
        ])
        .to_owned();
    db.execute(&insert).await?;
    Ok(())
}

/// Unlinks `identity` from `customer_id`; false when it was not theirs.
pub(crate) async fn delete(
    db: &impl ConnectionTrait,
    customer_id: &str,
    identity: &StoredIdentity,
) -> Result<bool, DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("identity_type")).eq(type_column(identity)))
        .and_where(Expr::col(Alias::new("value")).eq(identity.value.as_str()))
        .and_where(Expr::col(Alias::new("customer_id")).eq(customer_id))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected() == 1)
}

/// Moves every identity of `from` to `to`; returns how many.
pub(crate) async fn move_all(
    db: &impl ConnectionTrait,
    from: &str,
    to: &str,
) -> Result<u64, DbErr> {
    let update = Query::update()
        .table(Alias::new(TABLE))
        .value(Alias::new("customer_id"), to)
        .and_where(Expr::col(Alias::new("customer_id")).eq(from))
        .to_owned();
    Ok(db.execute(&update).await?.rows_affected())
}

/// Deletes every identity of `ids`; returns how many.
#[allow(dead_code, reason = "only the data-subject API (subject.rs) uses it")]
pub(crate) async fn delete_of(db: &impl ConnectionTrait, ids: &[String]) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let delete = Query::delete()
        .from_table(Alias::new(TABLE))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(ids.iter().cloned()))
        .to_owned();
    Ok(db.execute(&delete).await?.rows_affected())
}
