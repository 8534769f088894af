//! One customer's events, most recent first, paginated: read from the feed
//! rows under the customer's id (a merge re-attributes the merged profile's
//! rows, so they are included).

use attune_kit::ApiError;
use attune_kit::db::micros;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, FromQueryResult, StatementBuilder};

use crate::feed::{self, EntryType, Row};

/// What `ListEvents` asks, validated.
#[derive(Debug, Clone)]
pub(crate) struct EventQuery {
    pub customer_id: String,
    pub kinds: Vec<i32>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub page_size: u32,
    /// After this (occur time, sequence), in descending order.
    pub after: Option<(i64, i64)>,
}

/// One page of the customer's events (the id already resolved) and the cursor
/// of the next page.
pub(crate) async fn list(
    db: &impl ConnectionTrait,
    query: &EventQuery,
) -> Result<(Vec<pb::Event>, Option<(i64, i64)>), ApiError> {
    let mut select = Query::select()
        .columns([
            Alias::new("sequence"),
            Alias::new("customer_id"),
            Alias::new("commit_time"),
            Alias::new("payload"),
        ])
        .from(Alias::new(feed::TABLE))
        .and_where(Expr::col(Alias::new("entry_type")).eq(EntryType::Event as i16))
        .and_where(Expr::col(Alias::new("customer_id")).eq(query.customer_id.as_str()))
        .order_by(Alias::new("occur_time"), sea_orm::Order::Desc)
        .order_by(Alias::new("sequence"), sea_orm::Order::Desc)
        .limit(u64::from(query.page_size) + 1)
        .to_owned();
    if !query.kinds.is_empty() {
        select.and_where(Expr::col(Alias::new("event_kind")).is_in(query.kinds.iter().copied()));
    }
    if let Some(start) = query.start {
        select.and_where(Expr::col(Alias::new("occur_time")).gte(micros::to_micros(start)));
    }
    if let Some(end) = query.end {
        select.and_where(Expr::col(Alias::new("occur_time")).lt(micros::to_micros(end)));
    }
    if let Some((occur, sequence)) = query.after {
        select.cond_where(
            Cond::any()
                .add(Expr::col(Alias::new("occur_time")).lt(occur))
                .add(
                    Cond::all()
                        .add(Expr::col(Alias::new("occur_time")).eq(occur))
                        .add(Expr::col(Alias::new("sequence")).lt(sequence)),
                ),
        );
    }
    let rows = Row::find_by_statement(StatementBuilder::build(&select, &db.get_database_backend()))
        .all(db)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(pb::feed_entry::Change::Event(event)) = row.into_entry()?.change {
            events.push(event);
        }
    }
    let more = events.len() > query.page_size as usize;
    events.truncate(query.page_size as usize);
    let next = if more {
        events.last().and_then(|last| {
            let occur = attune_kit::types::time::from_proto_required(last.occur_time).ok()?;
            Some((micros::to_micros(occur), last.sequence))
        })
    } else {
        None
    };
    Ok((events, next))
}
