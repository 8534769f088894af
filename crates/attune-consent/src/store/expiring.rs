//! Grants in force that expire soon, read from the current states (not the
//! ledger): a grant since withdrawn or replaced no longer counts, so it is not listed.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::state;
use crate::domain::{CustomerId, Decision, ExpiringGrant, ExpiryCursor, PurposeCode};
use crate::error::ConsentError;
use attune_kit::db::micros::{from_micros, to_micros};

/// Up to `limit` current grants with `now < expire_time < window_end`, optionally
/// of one purpose, ordered by (expire time, customer id, purpose code) and
/// starting strictly after `after`'s key. A grant at its expiry instant has
/// already expired (`ConsentStatus::at`), hence the strict lower bound.
pub async fn list(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    window_end: DateTime<Utc>,
    purpose: Option<&PurposeCode>,
    after: Option<&ExpiryCursor>,
    limit: u64,
) -> Result<Vec<ExpiringGrant>, ConsentError> {
    let mut query = state::Entity::find()
        .filter(state::Column::Decision.eq(Decision::Granted.as_str()))
        .filter(state::Column::ExpireTime.gt(to_micros(now)))
        .filter(state::Column::ExpireTime.lt(to_micros(window_end)))
        .order_by_asc(state::Column::ExpireTime)
        .order_by_asc(state::Column::CustomerId)
        .order_by_asc(state::Column::PurposeCode)
        .limit(limit);
    if let Some(purpose) = purpose {
        query = query.filter(state::Column::PurposeCode.eq(purpose.as_ref()));
    }
    if let Some(after) = after {
        let (expire, customer, purpose) = (
            to_micros(after.expire_time),
            after.customer.as_ref(),
            after.purpose.as_ref(),
        );
        // The key comparison spelt out rather than as a row value, with the
        // redundant `>=` first so both backends range-scan the expiry index.
        query = query.filter(state::Column::ExpireTime.gte(expire)).filter(
            Condition::any()
                .add(state::Column::ExpireTime.gt(expire))
                .add(
                    Condition::all()
                        .add(state::Column::ExpireTime.eq(expire))
                        .add(state::Column::CustomerId.gt(customer)),
                )
                .add(
                    Condition::all()
                        .add(state::Column::ExpireTime.eq(expire))
                        .add(state::Column::CustomerId.eq(customer))
                        .add(state::Column::PurposeCode.gt(purpose)),
                ),
        );
    }
    query.all(db).await?.into_iter().map(to_domain).collect()
}

fn to_domain(row: state::Model) -> Result<ExpiringGrant, ConsentError> {
    let corrupt =
        |what: &str| ConsentError::Corrupt(format!("state of record {}: {what}", row.record_id));
    let expire_time = row.expire_time.ok_or_else(|| corrupt("no expiry"))?;
    Ok(ExpiringGrant {
        customer: CustomerId::parse(&row.customer_id).map_err(|_| corrupt("customer id"))?,
        purpose: PurposeCode::parse(&row.purpose_code).map_err(|_| corrupt("purpose code"))?,
        record_id: row.record_id,
        notice_version: row.notice_version,
        decide_time: from_micros(row.decide_time)?,
        expire_time: from_micros(expire_time)?,
    })
}
