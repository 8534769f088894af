//! One event's rules (the proto's, per kind): a broken event gets its own
//! REJECTED_INVALID naming the field, and the rest of its batch goes on.

use attune_kit::secrets::PseudonymKey;
use attune_kit::types::{
    Channel, CustomerId, DataCategory, DeliveryMethod, PaymentMethod, printable_ascii, time,
};
use attune_proto::common::v1 as common_pb;
use attune_proto::profile::v1 as pb;
use chrono::{DateTime, TimeDelta, Utc};
use prost::Message;
use sha2::{Digest, Sha256};

use super::kind_category;
use crate::identity::StoredIdentity;

/// Furthest an event may lie in the future (clients' clocks drift).
const MAX_SKEW: TimeDelta = TimeDelta::minutes(5);
/// Oldest an event may be.
const MAX_AGE: TimeDelta = TimeDelta::days(400);

/// Whom an event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    /// A customer id (maybe merged, maybe without a profile yet).
    Customer(String),
    /// A linked identity, as stored.
    Identity(StoredIdentity),
}

/// An event that passed its rules.
#[derive(Debug, Clone)]
pub(crate) struct ValidEvent {
    /// The event as sent, output fields cleared.
    pub event: pb::Event,
    /// Its kind.
    pub kind: pb::EventKind,
    /// The data category consent must cover.
    pub category: DataCategory,
    /// When it occurred.
    pub occur_time: DateTime<Utc>,
    /// Whom it names.
    pub subject: Subject,
    /// SHA-256 of the event as sent (input fields only).
    pub fingerprint: Vec<u8>,
}

/// Checks `event` at `now`; the error is "field: problem".
pub(crate) fn validate(
    mut event: pb::Event,
    key: &PseudonymKey,
    now: DateTime<Utc>,
) -> Result<ValidEvent, String> {
    // Output fields are ignored on input, and so kept out of the fingerprint.
    event.sequence = 0;
    event.resolved_customer_id.clear();
    event.data_category = 0;
    event.purposes.clear();
    event.ingest_time = None;
    let fingerprint = Sha256::digest(event.encode_to_vec()).to_vec();
    let field = |name: &str, result: Result<(), String>| {
        result.map_err(|problem| format!("{name}: {problem}"))
    };
    field("event_id", printable_ascii(&event.event_id, 64))?;
    let subject = match (&event.customer_id, &event.identity) {
        (id, None) if !id.is_empty() => {
            CustomerId::parse(id).map_err(|p| format!("customer_id: {p}"))?;
            Subject::Customer(id.clone())
        }
        (id, Some(identity)) if id.is_empty() => Subject::Identity(
            StoredIdentity::parse(key, identity.identity_type, &identity.value)
                .map_err(|p| format!("identity.{p}"))?,
        ),
        (id, _) if id.is_empty() => {
            return Err("customer_id: one of customer_id and identity must be set".into());
        }
        _ => return Err("identity: must be unset when customer_id is set".into()),
    };
    let kind = pb::EventKind::try_from(event.kind)
        .ok()
        .filter(|kind| *kind != pb::EventKind::Unspecified)
        .ok_or_else(|| "kind: must be a known event kind".to_owned())?;
    let occur_time =
        time::from_proto_required(event.occur_time).map_err(|p| format!("occur_time: {p}"))?;
    if occur_time > now + MAX_SKEW {
        return Err("occur_time: must be at most 5 minutes in the future".into());
    }
    if occur_time < now - MAX_AGE {
        return Err("occur_time: must be at most 400 days in the past".into());
    }
    field("channel", Channel::from_proto(event.channel).map(|_| ()))?;
    items(&event, kind)?;
    per_kind(&event, kind)?;
    optional_text("session_id", &event.session_id, 128)?;
    attributes(&event)?;
    if pb::ProfileKind::try_from(event.new_profile_kind).is_err() {
        return Err("new_profile_kind: must be a known profile kind".into());
    }
    Ok(ValidEvent {
        kind,
        category: kind_category(kind),
        occur_time,
        subject,
        fingerprint,
        event,
    })
}

fn items(event: &pb::Event, kind: pb::EventKind) -> Result<(), String> {
    use pb::EventKind as K;
    if event.items.len() > 100 {
        return Err("items: at most 100".into());
    }
    let priced = matches!(kind, K::Purchase | K::Return);
    for (i, item) in event.items.iter().enumerate() {
        let at = |name: &str| format!("items[{i}].{name}");
        printable_ascii(&item.item_id, 128).map_err(|p| format!("{}: {p}", at("item_id")))?;
        if !(0..=10_000).contains(&item.quantity) {
            return Err(format!(
                "{}: must be 1 to 10000 (0 means 1)",
                at("quantity")
            ));
        }
        match &item.unit_price {
            Some(price) => money(&at("unit_price"), price)?,
            None if priced => return Err(format!("{}: must be set", at("unit_price"))),
            None => {}
        }
        if item.category_path.len() > 8 {
            return Err(format!("{}: at most 8 categories", at("category_path")));
        }
        for (j, category) in item.category_path.iter().enumerate() {
            if category.is_empty() || category.len() > 128 {
                return Err(format!(
                    "{}[{j}]: must be 1 to 128 characters",
                    at("category_path")
                ));
            }
        }
        if item.brand.len() > 100 {
            return Err(format!("{}: must be at most 100 characters", at("brand")));
        }
    }
    let needed = match kind {
        K::View | K::RecommendationClick if event.items.len() != 1 => Some("exactly one item"),
        K::AddToCart | K::RemoveFromCart | K::Purchase | K::Return if event.items.is_empty() => {
            Some("at least one item")
        }
        _ => None,
    };
    match needed {
        Some(needed) => Err(format!("items: {kind:?} needs {needed}")),
        None => Ok(()),
    }
}

fn per_kind(event: &pb::Event, kind: pb::EventKind) -> Result<(), String> {
    use pb::EventKind as K;
    let required = |name: &str, value: &str, max: usize, needed: bool| -> Result<(), String> {
        if needed && value.is_empty() {
            return Err(format!("{name}: required for this kind"));
        }
        optional_text(name, value, max)
    };
    required(
        "order_id",
        &event.order_id,
        128,
        matches!(kind, K::Purchase | K::Return),
    )?;
    required("search_query", &event.search_query, 256, kind == K::Search)?;
    required("store_id", &event.store_id, 64, kind == K::StoreVisit)?;
    required(
        "campaign_id",
        &event.campaign_id,
        128,
        matches!(kind, K::EmailOpen | K::EmailClick | K::PushOpen),
    )?;
    required("offer_id", &event.offer_id, 128, kind == K::OfferSeen)?;
    required(
        "recommendation_id",
        &event.recommendation_id,
        128,
        kind == K::RecommendationClick,
    )?;
    match (&event.amount, kind) {
        (None, K::Purchase | K::Return) => return Err("amount: required for this kind".into()),
        (Some(amount), K::Purchase | K::Return) => {
            money("amount", amount)?;
            if kind == K::Return && amount.amount_minor == 0 {
                return Err("amount: a refund must be positive".into());
            }
            if let Some(item) = event.items.iter().position(|item| {
                item.unit_price
                    .as_ref()
                    .is_some_and(|price| price.currency_code != amount.currency_code)
            }) {
                return Err(format!(
                    "items[{item}].unit_price.currency_code: must be the amount's currency"
                ));
            }
        }
        (Some(_), _) => return Err("amount: only PURCHASE and RETURN carry an amount".into()),
        (None, _) => {}
    }
    let purchase = kind == K::Purchase;
    DeliveryMethod::from_proto_optional(event.delivery_method)
        .map_err(|p| format!("delivery_method: {p}"))?;
    PaymentMethod::from_proto_optional(event.payment_method)
        .map_err(|p| format!("payment_method: {p}"))?;
    if !purchase && event.delivery_method != 0 {
        return Err("delivery_method: only a PURCHASE names one".into());
    }
    if !purchase && event.payment_method != 0 {
        return Err("payment_method: only a PURCHASE names one".into());
    }
    if !purchase && !event.pickup_point_id.is_empty() {
        return Err("pickup_point_id: only a PURCHASE names one".into());
    }
    optional_text("pickup_point_id", &event.pickup_point_id, 64)?;
    if let Some(discount) = &event.discount {
        if !purchase {
            return Err("discount: only a PURCHASE carries one".into());
        }
        money("discount", discount)?;
        if event
            .amount
            .as_ref()
            .is_some_and(|amount| amount.currency_code != discount.currency_code)
        {
            return Err("discount.currency_code: must be the amount's currency".into());
        }
    }
    if let Some(visit) = &event.store_visit {
        if kind != K::StoreVisit {
            return Err("store_visit: only a STORE_VISIT carries one".into());
        }
        store_visit(visit)?;
    }
    Ok(())
}

fn store_visit(visit: &pb::StoreVisit) -> Result<(), String> {
    let entry = time::from_proto_optional(visit.entry_time)
        .map_err(|p| format!("store_visit.entry_time: {p}"))?;
    let exit = time::from_proto_optional(visit.exit_time)
        .map_err(|p| format!("store_visit.exit_time: {p}"))?;
    if let (Some(entry), Some(exit)) = (entry, exit)
        && entry > exit
    {
        return Err("store_visit.entry_time: must be at or before exit_time".into());
    }
    if visit.zone_ids.len() > 50 {
        return Err("store_visit.zone_ids: at most 50".into());
    }
    for (i, zone) in visit.zone_ids.iter().enumerate() {
        if zone.is_empty() || zone.len() > 64 {
            return Err(format!(
                "store_visit.zone_ids[{i}]: must be 1 to 64 characters"
            ));
        }
    }
    Ok(())
}

fn attributes(event: &pb::Event) -> Result<(), String> {
    if event.attributes.len() > 20 {
        return Err("attributes: at most 20 entries".into());
    }
    for (key, value) in &event.attributes {
        let snake = !key.is_empty()
            && key.len() <= 64
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !snake {
            return Err("attributes: keys must be lower snake case, 1 to 64 characters".into());
        }
        if value.len() > 256 {
            return Err(format!("attributes[{key}]: must be at most 256 characters"));
        }
    }
    Ok(())
}

/// A valid currency and an amount not negative.
fn money(name: &str, money: &common_pb::Money) -> Result<(), String> {
    attune_kit::types::Currency::parse(&money.currency_code)
        .map_err(|p| format!("{name}.currency_code: {p}"))?;
    if money.amount_minor < 0 {
        return Err(format!("{name}.amount_minor: must not be negative"));
    }
    Ok(())
}

fn optional_text(name: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{name}: must be at most {max} characters"));
    }
    Ok(())
}
