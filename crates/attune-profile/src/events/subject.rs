//! Events and traits in data-subject requests: what an export shows of them,
//! and what an erasure deletes.

// The data-subject API (another part of the service) calls these.

use attune_proto::profile::v1 as pb;
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, StatementBuilder};
use serde_json::{Value, json};

use super::traits::{self, delete_states};
use crate::feed::{self, EntryType, Row};

/// Up to `limit` stored events of `customer_ids` after feed sequence `after`,
/// in sequence order, as `(sequence, JSON)`: an export reads them page by
/// page, never the whole history at once.
pub(crate) async fn events_after(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
    after: i64,
    limit: u64,
) -> Result<Vec<(i64, Value)>, DbErr> {
    let query = Query::select()
        .columns([
            Alias::new("sequence"),
            Alias::new("customer_id"),
            Alias::new("commit_time"),
            Alias::new("payload"),
        ])
        .from(Alias::new(feed::TABLE))
        .and_where(Expr::col(Alias::new("entry_type")).eq(EntryType::Event as i16))
        .and_where(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
        .and_where(Expr::col(Alias::new("sequence")).gt(after))
        .order_by(Alias::new("sequence"), sea_orm::Order::Asc)
        .limit(limit)
        .to_owned();
    let rows = Row::find_by_statement(StatementBuilder::build(&query, &db.get_database_backend()))
        .all(db)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let sequence = row.sequence;
        if let Some(pb::feed_entry::Change::Event(event)) = row.into_entry()?.change {
            events.push((sequence, event_json(event)));
        }
    }
    Ok(events)
}

/// The trait states of `customer_ids` as JSON, by customer id.
pub(crate) async fn traits_export(
    db: &impl ConnectionTrait,
    customer_ids: &[String],
) -> Result<Value, DbErr> {
    let states = traits::load_states(db, customer_ids).await?;
    let traits: serde_json::Map<String, Value> = states
        .into_iter()
        .map(|(customer, state)| serde_json::to_value(state).map(|state| (customer, state)))
        .collect::<Result<_, _>>()
        .map_err(|error| DbErr::Custom(format!("trait state: {error}")))?;
    Ok(json!({ "traits": traits }))
}

/// Deletes every feed row about `customer_ids` (as customer or merge source)
/// and their trait states; returns the rows deleted.
pub(crate) async fn erase(
    txn: &DatabaseTransaction,
    customer_ids: &[String],
) -> Result<u64, DbErr> {
    let delete = Query::delete()
        .from_table(Alias::new(feed::TABLE))
        .cond_where(
            Cond::any()
                .add(Expr::col(Alias::new("customer_id")).is_in(customer_ids.iter().cloned()))
                .add(
                    Expr::col(Alias::new("other_customer_id")).is_in(customer_ids.iter().cloned()),
                ),
        )
        .to_owned();
    let events = txn.execute(&delete).await?.rows_affected();
    Ok(events + delete_states(txn, customer_ids).await?)
}

/// One event as an export shows it: every field, enums by name, times RFC 3339.
fn event_json(event: pb::Event) -> Value {
    let pb::Event {
        event_id,
        customer_id,
        identity,
        kind,
        occur_time,
        channel,
        items,
        amount,
        order_id,
        search_query,
        store_id,
        campaign_id,
        session_id,
        attributes,
        sequence,
        resolved_customer_id,
        data_category,
        purposes,
        ingest_time,
        new_profile_kind: _,
        delivery_method,
        payment_method,
        pickup_point_id,
        discount,
        store_visit,
        offer_id,
        recommendation_id,
    } = event;
    json!({
        "event_id": event_id,
        "customer_id": customer_id,
        "identity": identity.map(|identity| json!({
            "identity_type": name(pb::IdentityType::try_from(identity.identity_type).map(|k| k.as_str_name())),
            "value": identity.value,
        })),
        "kind": name(pb::EventKind::try_from(kind).map(|k| k.as_str_name())),
        "occur_time": time(occur_time),
        "channel": name(attune_proto::common::v1::Channel::try_from(channel).map(|c| c.as_str_name())),
        "items": items.into_iter().map(|item| json!({
            "item_id": item.item_id,
            "quantity": item.quantity,
            "unit_price": item.unit_price.map(money),
            "category_path": item.category_path,
            "brand": item.brand,
        })).collect::<Vec<_>>(),
        "amount": amount.map(money),
        "order_id": order_id,
        "search_query": search_query,
        "store_id": store_id,
        "campaign_id": campaign_id,
        "session_id": session_id,
        "attributes": attributes,
        "sequence": sequence,
        "resolved_customer_id": resolved_customer_id,
        "data_category": name(attune_proto::common::v1::DataCategory::try_from(data_category).map(|c| c.as_str_name())),
        "purposes": purposes.into_iter().map(|p| json!({
            "purpose_code": p.purpose_code,
            "notice_version": p.notice_version,
        })).collect::<Vec<_>>(),
        "ingest_time": time(ingest_time),
        "delivery_method": name(attune_proto::common::v1::DeliveryMethod::try_from(delivery_method).map(|m| m.as_str_name())),
        "payment_method": name(attune_proto::common::v1::PaymentMethod::try_from(payment_method).map(|m| m.as_str_name())),
        "pickup_point_id": pickup_point_id,
        "discount": discount.map(money),
        "store_visit": store_visit.map(|visit| json!({
            "entry_time": time(visit.entry_time),
            "exit_time": time(visit.exit_time),
            "zone_ids": visit.zone_ids,
            "ended_in_purchase": visit.ended_in_purchase,
            "staff_assisted": visit.staff_assisted,
        })),
        "offer_id": offer_id,
        "recommendation_id": recommendation_id,
    })
}

fn name<E>(name: Result<&'static str, E>) -> &'static str {
    name.unwrap_or("UNKNOWN")
}

fn money(money: attune_proto::common::v1::Money) -> Value {
    json!({ "amount_minor": money.amount_minor, "currency_code": money.currency_code })
}

fn time(timestamp: Option<prost_types::Timestamp>) -> Value {
    timestamp
        .and_then(|t| attune_kit::types::time::from_proto(t).ok())
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}
