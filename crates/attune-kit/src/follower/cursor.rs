//! A follower's row in `feed_cursors`: its cursor, and the lease that lets one
//! replica at a time apply the feed.
//!
//! The lease is a holder and an expiry, taken when free or expired and renewed
//! while applying, so it works alike on SQLite and PostgreSQL. It is not what
//! keeps applying exactly-once: every batch moves the cursor with a
//! compare-and-set (`WHERE holder = me AND position = cursor`) inside the batch's
//! own transaction, so a replica that lost its lease unnoticed (paused past the
//! expiry) finds nothing to update and rolls its batch back.

use std::time::Duration;

use chrono::Utc;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, Condition, ConnectionTrait};

/// One follower's row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "feed_cursors")]
pub struct Model {
    /// The follower's name, unique among the consumers sharing the database.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Every item up to this position is applied.
    pub position: i64,
    /// The replica holding the lease, if any.
    pub holder: Option<String>,
    /// When the lease ends unless renewed, in microseconds since the epoch.
    pub lease_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Creates the follower's row at position 0 unless it exists.
pub(crate) async fn ensure(db: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    let row = ActiveModel {
        name: Set(name.to_owned()),
        position: Set(0),
        holder: Set(None),
        lease_until: Set(0),
    };
    Entity::insert(row)
        .on_conflict(OnConflict::column(Column::Name).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Takes the lease for `holder` if it is free, expired or already `holder`'s.
pub(crate) async fn acquire(
    db: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let now = now_micros();
    let taken = Entity::update_many()
        .col_expr(Column::Holder, Expr::value(holder))
        .col_expr(
            Column::LeaseUntil,
            Expr::value(now.saturating_add(micros(lease))),
        )
        .filter(Column::Name.eq(name))
        .filter(
            Condition::any()
                .add(Column::Holder.is_null())
                .add(Column::Holder.eq(holder))
                .add(Column::LeaseUntil.lt(now)),
        )
        .exec(db)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// Extends `holder`'s lease; false when another replica holds it now.
pub(crate) async fn renew(
    db: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    lease: Duration,
) -> Result<bool, DbErr> {
    let until = now_micros().saturating_add(micros(lease));
    let renewed = Entity::update_many()
        .col_expr(Column::LeaseUntil, Expr::value(until))
        .filter(Column::Name.eq(name))
        .filter(Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(renewed.rows_affected == 1)
}

/// Gives the lease up, so another replica takes over at once.
pub(crate) async fn release(
    db: &impl ConnectionTrait,
    name: &str,
    holder: &str,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Holder, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseUntil, Expr::value(0_i64))
        .filter(Column::Name.eq(name))
        .filter(Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}

/// The stored cursor.
pub(crate) async fn position(db: &impl ConnectionTrait, name: &str) -> Result<i64, DbErr> {
    Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map(|row| row.position)
        .ok_or_else(|| DbErr::RecordNotFound(format!("feed cursor {name}")))
}

/// Moves the cursor from `from` to `to` and renews the lease, only while `holder`
/// holds it and nobody moved the cursor since: false otherwise. Run it first in
/// the batch's transaction: on PostgreSQL the row lock it takes also serialises a
/// racing replica behind this one.
pub(crate) async fn advance(
    txn: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    lease: Duration,
    from: i64,
    to: i64,
) -> Result<bool, DbErr> {
    let until = now_micros().saturating_add(micros(lease));
    let moved = Entity::update_many()
        .col_expr(Column::Position, Expr::value(to))
        .col_expr(Column::LeaseUntil, Expr::value(until))
        .filter(Column::Name.eq(name))
        .filter(Column::Holder.eq(holder))
        .filter(Column::Position.eq(from))
        .exec(txn)
        .await?;
    Ok(moved.rows_affected == 1)
}
