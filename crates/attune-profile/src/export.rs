//! Events as a person reads them in an export: field names, enum names and
//! RFC 3339 times instead of wire numbers.

use attune_proto::common::v1 as common;
use attune_proto::profile::v1 as pb;
use serde_json::{Value, json};

/// A wire time as RFC 3339 (microseconds), or null.
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> Value {
    timestamp
        .and_then(|t| attune_kit::types::time::from_proto(*t).ok())
        .map_or(Value::Null, |t| {
            Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        })
}

/// Money as `{"amount_minor": .., "currency": ..}`, or null.
pub fn money(money: Option<&common::Money>) -> Value {
    money.map_or(Value::Null, |m| {
        json!({"amount_minor": m.amount_minor, "currency": m.currency_code})
    })
}

fn enum_name<E: TryFrom<i32>>(raw: i32, name: impl Fn(E) -> &'static str) -> Value {
    E::try_from(raw).map_or(Value::Null, |value| Value::String(name(value).to_owned()))
}

/// One stored event.
pub fn event(event: &pb::Event) -> Value {
    json!({
        "event_id": event.event_id,
        "customer_id": event.resolved_customer_id,
        "kind": enum_name(event.kind, |k: pb::EventKind| k.as_str_name()),
        "occur_time": time(event.occur_time.as_ref()),
        "ingest_time": time(event.ingest_time.as_ref()),
        "channel": enum_name(event.channel, |c: common::Channel| c.as_str_name()),
        "items": event.items.iter().map(|item| json!({
            "item_id": item.item_id,
            "quantity": item.quantity,
            "unit_price": money(item.unit_price.as_ref()),
            "category_path": item.category_path,
            "brand": item.brand,
        })).collect::<Vec<_>>(),
        "amount": money(event.amount.as_ref()),
        "discount": money(event.discount.as_ref()),
        "order_id": event.order_id,
        "search_query": event.search_query,
        "store_id": event.store_id,
        "campaign_id": event.campaign_id,
        "session_id": event.session_id,
        "offer_id": event.offer_id,
        "recommendation_id": event.recommendation_id,
        "pickup_point_id": event.pickup_point_id,
        "delivery_method": enum_name(event.delivery_method, |m: common::DeliveryMethod| m.as_str_name()),
        "payment_method": enum_name(event.payment_method, |m: common::PaymentMethod| m.as_str_name()),
        "store_visit": event.store_visit.as_ref().map(|visit| json!({
            "entry_time": time(visit.entry_time.as_ref()),
            "exit_time": time(visit.exit_time.as_ref()),
            "zone_ids": visit.zone_ids,
            "ended_in_purchase": visit.ended_in_purchase,
            "staff_assisted": visit.staff_assisted,
        })),
        "attributes": event.attributes,
        "sequence": event.sequence,
        "data_category": enum_name(event.data_category, |c: common::DataCategory| c.as_str_name()),
        "allowed_by": event.purposes.iter().map(|p| json!({
            "purpose_code": p.purpose_code,
            "notice_version": p.notice_version,
        })).collect::<Vec<_>>(),
    })
}
