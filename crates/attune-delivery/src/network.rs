//! The retailer's delivery network (admin API): pickup points and stores,
//! shipping rates, slots and payment method rules. A record is stored with its
//! searchable columns plain and the whole validated wire message in `body`; an
//! upsert replaces a record whole. Slots live in `slots`.

use attune_kit::ApiError;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};

use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::app::Delivery;
use crate::store::{self, Write};
use crate::{mask, validate};

/// Most records in one upsert.
const MAX_BATCH: usize = 500;

/// What an upsert did, as remembered for its retries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Upserted {
    /// Records that did not exist.
    pub created: i32,
    /// Records replaced.
    pub updated: i32,
}

#[derive(Serialize)]
pub(crate) struct Batch {
    pub(crate) bodies: Vec<Vec<u8>>,
    /// The update mask's paths; empty replaces whole.
    pub(crate) mask: Vec<&'static str>,
}

pub(crate) fn batch_size(v: &mut Violations, field: &str, len: usize) {
    if len == 0 || len > MAX_BATCH {
        v.add(field, format!("must have 1 to {MAX_BATCH} entries"));
    }
}

pub(crate) fn no_duplicates<'a>(
    v: &mut Violations,
    field: &str,
    ids: impl Iterator<Item = &'a str>,
) {
    let mut seen = std::collections::HashSet::new();
    for (i, id) in ids.enumerate() {
        if !id.is_empty() && !seen.insert(id) {
            v.add(format!("{field}[{i}]"), "is a duplicate id in this batch");
        }
    }
}

#[derive(FromQueryResult)]
struct IdRow {
    id: String,
}

pub(crate) async fn existing_ids(
    db: &impl ConnectionTrait,
    table: &str,
    id_column: &str,
    ids: Vec<String>,
) -> Result<std::collections::HashSet<String>, DbErr> {
    let query = Query::select()
        .expr_as(Expr::col(id_column.to_owned()), "id")
        .from(table.to_owned())
        .and_where(Expr::col(id_column.to_owned()).is_in(ids))
        .to_owned();
    Ok(store::all::<IdRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect())
}

#[derive(FromQueryResult)]
struct StoredRow {
    id: String,
    body: Vec<u8>,
}

/// The records an upsert writes: those sent; or, under an update mask, each
/// stored one merged with the named fields of its sent record (one not stored
/// yet taken as sent), every result checked whole again with `check`, so a
/// partial update cannot leave a record invalid.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn to_write<T: Message + Default + Clone>(
    txn: &impl ConnectionTrait,
    table: &str,
    id_column: &str,
    field: &str,
    sent: &[T],
    id_of: impl Fn(&T) -> String,
    mask: Option<&[&'static str]>,
    merge: fn(&T, &T, &[&str]) -> T,
    check: impl Fn(&mut Violations, &str, &T),
) -> Result<Vec<T>, ApiError> {
    let Some(paths) = mask else {
        return Ok(sent.to_vec());
    };
    let query = Query::select()
        .expr_as(Expr::col(id_column.to_owned()), "id")
        .column("body")
        .from(table.to_owned())
        .and_where(Expr::col(id_column.to_owned()).is_in(sent.iter().map(&id_of)))
        .to_owned();
    let mut stored = std::collections::HashMap::new();
    for row in store::all::<StoredRow>(txn, &query).await? {
        stored.insert(
            row.id,
            T::decode(row.body.as_slice()).map_err(ApiError::internal)?,
        );
    }
    let mut v = Violations::default();
    let mut records = Vec::with_capacity(sent.len());
    for (i, record) in sent.iter().enumerate() {
        let merged = match stored.get(&id_of(record)) {
            Some(old) => merge(old, record, paths),
            None => record.clone(),
        };
        check(&mut v, &format!("{field}[{i}]"), &merged);
        records.push(merged);
    }
    v.finish()?;
    Ok(records)
}

// ---------------------------------------------------------------- pickup points

fn parse_pickup_point(v: &mut Violations, f: &str, point: &pb::PickupPoint) {
    let pb::PickupPoint {
        pickup_point_id,
        kind,
        display_name,
        country_code,
        location,
        utc_offset_minutes,
        opening_hours,
        closed_dates,
        active: _,
    } = point;
    validate::record_id(v, &format!("{f}.pickup_point_id"), pickup_point_id);
    if !matches!(
        pb::PickupPointKind::try_from(*kind),
        Ok(pb::PickupPointKind::Store | pb::PickupPointKind::Counter | pb::PickupPointKind::Locker)
    ) {
        v.add(format!("{f}.kind"), "must be STORE, COUNTER or LOCKER");
    }
    validate::text(v, &format!("{f}.display_name"), display_name, 1, 200);
    validate::country(v, &format!("{f}.country_code"), country_code);
    validate::point(v, &format!("{f}.location"), location.as_ref());
    validate::utc_offset(v, &format!("{f}.utc_offset_minutes"), *utc_offset_minutes);
    if opening_hours.len() > 14 {
        v.add(format!("{f}.opening_hours"), "must have at most 14 entries");
    }
    for (i, hours) in opening_hours.iter().enumerate() {
        let h = format!("{f}.opening_hours[{i}]");
        v.check(
            format!("{h}.day_of_week"),
            attune_kit::types::DayOfWeek::from_proto(hours.day_of_week),
        );
        if !(0..1440).contains(&hours.open_minute) {
            v.add(format!("{h}.open_minute"), "must be 0 to 1439");
        } else if hours.close_minute <= hours.open_minute || hours.close_minute > 1440 {
            v.add(
                format!("{h}.close_minute"),
                "must be after open_minute, at most 1440",
            );
        }
    }
    if closed_dates.len() > 100 {
        v.add(format!("{f}.closed_dates"), "must have at most 100 entries");
    }
    let mut seen = std::collections::HashSet::new();
    for (i, date) in closed_dates.iter().enumerate() {
        if NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() || date.len() != 10 {
            v.add(
                format!("{f}.closed_dates[{i}]"),
                "must be a date as YYYY-MM-DD",
            );
        } else if !seen.insert(date) {
            v.add(format!("{f}.closed_dates[{i}]"), "is a duplicate");
        }
    }
}

/// UpsertPickupPoints.
pub async fn upsert_pickup_points(
    delivery: &Delivery,
    request: pb::UpsertPickupPointsRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertPickupPointsRequest {
        pickup_points: sent,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "pickup_points", sent.len());
    let mask = mask::parse(&mut v, update_mask.as_ref(), mask::PICKUP_POINT_FIELDS);
    for (i, point) in sent.iter().enumerate() {
        let f = format!("pickup_points[{i}]");
        match mask {
            None => parse_pickup_point(&mut v, &f, point),
            Some(_) => {
                validate::record_id(
                    &mut v,
                    &format!("{f}.pickup_point_id"),
                    &point.pickup_point_id,
                );
            }
        }
    }
    no_duplicates(
        &mut v,
        "pickup_points",
        sent.iter().map(|p| p.pickup_point_id.as_str()),
    );
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: sent.iter().map(Message::encode_to_vec).collect(),
        mask: mask.clone().unwrap_or_default(),
    };
    let upserted = delivery
        .idempotent(
            "UpsertPickupPoints",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
                let pickup_points = to_write(
                    txn,
                    "delivery_pickup_points",
                    "pickup_point_id",
                    "pickup_points",
                    &sent,
                    |p| p.pickup_point_id.clone(),
                    mask.as_deref(),
                    mask::merge_pickup_point,
                    parse_pickup_point,
                )
                .await?;
                let ids = pickup_points
                    .iter()
                    .map(|p| p.pickup_point_id.clone())
                    .collect();
                let existing =
                    existing_ids(txn, "delivery_pickup_points", "pickup_point_id", ids).await?;
                let mut insert = Query::insert()
                    .into_table("delivery_pickup_points")
                    .columns(["pickup_point_id", "active", "body"])
                    .on_conflict(
                        OnConflict::column("pickup_point_id")
                            .update_columns(["active", "body"])
                            .to_owned(),
                    )
                    .to_owned();
                for point in &pickup_points {
                    insert.values_panic([
                        point.pickup_point_id.clone().into(),
                        point.active.into(),
                        point.encode_to_vec().into(),
                    ]);
                }
                insert.run(txn).await?;
                crate::snapshot::bump_version(txn).await?;
                Ok(count(pickup_points.len(), existing.len()))
            },
        )
        .await?
        .into_inner();
    delivery.network.refresh(&delivery.db).await?;
    Ok(upserted)
}

pub(crate) fn count(total: usize, existing: usize) -> Upserted {
    Upserted {
        created: (total - existing) as i32,
        updated: existing as i32,
    }
}

#[derive(FromQueryResult)]
pub(crate) struct BodyRow {
    pub(crate) body: Vec<u8>,
}

/// One stored pickup point, active or not.
pub async fn pickup_point(
    db: &impl ConnectionTrait,
    pickup_point_id: &str,
) -> Result<Option<pb::PickupPoint>, ApiError> {
    let query = Query::select()
        .column("body")
        .from("delivery_pickup_points")
        .and_where(Expr::col("pickup_point_id").eq(pickup_point_id))
        .to_owned();
    store::one::<BodyRow>(db, &query)
        .await?
        .map(|row| pb::PickupPoint::decode(row.body.as_slice()).map_err(ApiError::internal))
        .transpose()
}

/// ListPickupPoints.
pub async fn list_pickup_points(
    delivery: &Delivery,
    request: pb::ListPickupPointsRequest,
) -> Result<pb::ListPickupPointsResponse, ApiError> {
    let pb::ListPickupPointsRequest {
        page_size: raw_size,
        page_token,
    } = request;
    let mut v = Violations::default();
    let size = v.check_field(page_size("page_size", raw_size, 100, 1000));
    let after = decode_cursor(&mut v, "page_token", &page_token, |c| Some(c.to_owned()));
    v.finish()?;
    let size = checked(size);
    let mut query = Query::select()
        .columns(["pickup_point_id", "body"])
        .from("delivery_pickup_points")
        .order_by("pickup_point_id", Order::Asc)
        .limit(u64::from(size) + 1)
        .to_owned();
    if let Some(after) = after {
        query.and_where(Expr::col("pickup_point_id").gt(after));
    }
    let rows = store::all::<BodyRow>(&delivery.db, &query).await?;
    let points = rows
        .into_iter()
        .map(|row| pb::PickupPoint::decode(row.body.as_slice()).map_err(ApiError::internal))
        .collect::<Result<Vec<_>, _>>()?;
    let (pickup_points, next_page_token) = next_page(points, size, |p| p.pickup_point_id.clone());
    Ok(pb::ListPickupPointsResponse {
        pickup_points,
        next_page_token,
    })
}

/// Whether a pickup point is open at `now` (its opening hours, not a closed date).
pub fn open_at(point: &pb::PickupPoint, now: DateTime<Utc>) -> bool {
    let local = now + chrono::Duration::minutes(i64::from(point.utc_offset_minutes));
    let date = local.format("%Y-%m-%d").to_string();
    if point.closed_dates.contains(&date) {
        return false;
    }
    if point.opening_hours.is_empty() {
        return true;
    }
    use chrono::{Datelike, Timelike};
    let day = local.weekday().number_from_monday() as i32;
    let minute = (local.hour() * 60 + local.minute()) as i32;
    point
        .opening_hours
        .iter()
        .any(|h| h.day_of_week == day && h.open_minute <= minute && minute < h.close_minute)
}

// ---------------------------------------------------------------- shipping rates

fn parse_area(v: &mut Violations, f: &str, area: Option<&pb::ServiceArea>) {
    let Some(area) = area else {
        v.add(f, "is required");
        return;
    };
    let pb::ServiceArea {
        country_code,
        postal_code_prefixes,
        center,
        radius_meters,
    } = area;
    validate::country(v, &format!("{f}.country_code"), country_code);
    if postal_code_prefixes.len() > 1000 {
        v.add(
            format!("{f}.postal_code_prefixes"),
            "must have at most 1000 entries",
        );
    }
    for (i, prefix) in postal_code_prefixes.iter().enumerate() {
        validate::postal_code(v, &format!("{f}.postal_code_prefixes[{i}]"), prefix);
    }
    if !(0..=500_000).contains(radius_meters) {
        v.add(format!("{f}.radius_meters"), "must be 0 to 500000");
    } else if *radius_meters > 0 {
        validate::point(v, &format!("{f}.center"), center.as_ref());
    } else {
        validate::optional_point(v, &format!("{f}.center"), center.as_ref());
    }
}

fn parse_rate(v: &mut Violations, f: &str, rate: &pb::ShippingRate) {
    let pb::ShippingRate {
        rate_id,
        method,
        service_area,
        price,
        basket_tiers,
        weight_surcharges,
        max_weight_grams,
        free_above,
        min_lead_days,
        max_lead_days,
        cutoff_minute,
        utc_offset_minutes,
        active: _,
    } = rate;
    validate::record_id(v, &format!("{f}.rate_id"), rate_id);
    validate::delivery_method(v, &format!("{f}.method"), *method);
    parse_area(v, &format!("{f}.service_area"), service_area.as_ref());
    let base = validate::price(v, &format!("{f}.price"), price.as_ref());
    let currency = base.map(|m| m.currency());
    let same_currency =
        |v: &mut Violations, field: String, money: Option<attune_kit::types::Money>| {
            if let (Some(money), Some(currency)) = (money, currency)
                && money.currency() != currency
            {
                v.add(field, "must be in the currency of price");
            }
        };
    if basket_tiers.len() > 20 {
        v.add(format!("{f}.basket_tiers"), "must have at most 20 entries");
    }
    let mut values = std::collections::HashSet::new();
    for (i, tier) in basket_tiers.iter().enumerate() {
        let t = format!("{f}.basket_tiers[{i}]");
        let min = validate::price(
            v,
            &format!("{t}.min_basket_value"),
            tier.min_basket_value.as_ref(),
        );
        same_currency(v, format!("{t}.min_basket_value"), min);
        if let Some(min) = min
            && !values.insert(min.amount_minor())
        {
            v.add(format!("{t}.min_basket_value"), "is a duplicate");
        }
        let price = validate::price(v, &format!("{t}.price"), tier.price.as_ref());
        same_currency(v, format!("{t}.price"), price);
    }
    if weight_surcharges.len() > 20 {
        v.add(
            format!("{f}.weight_surcharges"),
            "must have at most 20 entries",
        );
    }
    let mut weights = std::collections::HashSet::new();
    for (i, step) in weight_surcharges.iter().enumerate() {
        let s = format!("{f}.weight_surcharges[{i}]");
        if step.min_weight_grams < 1 {
            v.add(format!("{s}.min_weight_grams"), "must be at least 1");
        } else if !weights.insert(step.min_weight_grams) {
            v.add(format!("{s}.min_weight_grams"), "is a duplicate");
        }
        let surcharge = validate::price(v, &format!("{s}.surcharge"), step.surcharge.as_ref());
        same_currency(v, format!("{s}.surcharge"), surcharge);
    }
    if *max_weight_grams < 0 {
        v.add(format!("{f}.max_weight_grams"), "must not be negative");
    }
    let free = validate::optional_price(v, &format!("{f}.free_above"), free_above.as_ref());
    same_currency(v, format!("{f}.free_above"), free);
    if !(0..=60).contains(min_lead_days) {
        v.add(format!("{f}.min_lead_days"), "must be 0 to 60");
    } else if *max_lead_days < *min_lead_days || *max_lead_days > 60 {
        v.add(format!("{f}.max_lead_days"), "must be min_lead_days to 60");
    }
    if let Some(cutoff) = cutoff_minute
        && !(0..1440).contains(cutoff)
    {
        v.add(format!("{f}.cutoff_minute"), "must be 0 to 1439");
    }
    validate::utc_offset(v, &format!("{f}.utc_offset_minutes"), *utc_offset_minutes);
}

/// UpsertShippingRates.
pub async fn upsert_rates(
    delivery: &Delivery,
    request: pb::UpsertShippingRatesRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertShippingRatesRequest {
        rates: sent,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "rates", sent.len());
    let mask = mask::parse(&mut v, update_mask.as_ref(), mask::RATE_FIELDS);
    for (i, rate) in sent.iter().enumerate() {
        let f = format!("rates[{i}]");
        match mask {
            None => parse_rate(&mut v, &f, rate),
            Some(_) => {
                validate::record_id(&mut v, &format!("{f}.rate_id"), &rate.rate_id);
            }
        }
    }
    no_duplicates(&mut v, "rates", sent.iter().map(|r| r.rate_id.as_str()));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: sent.iter().map(Message::encode_to_vec).collect(),
        mask: mask.clone().unwrap_or_default(),
    };
    let upserted = delivery
        .idempotent(
            "UpsertShippingRates",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
                let rates = to_write(
                    txn,
                    "delivery_rates",
                    "rate_id",
                    "rates",
                    &sent,
                    |r| r.rate_id.clone(),
                    mask.as_deref(),
                    mask::merge_rate,
                    parse_rate,
                )
                .await?;
                let ids = rates.iter().map(|r| r.rate_id.clone()).collect();
                let existing = existing_ids(txn, "delivery_rates", "rate_id", ids).await?;
                let mut insert = Query::insert()
                    .into_table("delivery_rates")
                    .columns(["rate_id", "country_code", "active", "body"])
                    .on_conflict(
                        OnConflict::column("rate_id")
                            .update_columns(["country_code", "active", "body"])
                            .to_owned(),
                    )
                    .to_owned();
                for rate in &rates {
                    let country = rate
                        .service_area
                        .as_ref()
                        .map(|a| a.country_code.clone())
                        .unwrap_or_default();
                    insert.values_panic([
                        rate.rate_id.clone().into(),
                        country.into(),
                        rate.active.into(),
                        rate.encode_to_vec().into(),
                    ]);
                }
                insert.run(txn).await?;
                crate::snapshot::bump_version(txn).await?;
                Ok(count(rates.len(), existing.len()))
            },
        )
        .await?
        .into_inner();
    delivery.network.refresh(&delivery.db).await?;
    Ok(upserted)
}

// ---------------------------------------------------------------- payment rules

fn parse_payment_rule(v: &mut Violations, f: &str, rule: &pb::PaymentMethodRule) {
    let pb::PaymentMethodRule {
        method,
        active: _,
        min_basket_value,
        max_basket_value,
        delivery_methods,
    } = rule;
    validate::payment_method(v, &format!("{f}.method"), *method);
    let min = validate::optional_price(
        v,
        &format!("{f}.min_basket_value"),
        min_basket_value.as_ref(),
    );
    let max = validate::optional_price(
        v,
        &format!("{f}.max_basket_value"),
        max_basket_value.as_ref(),
    );
    if let (Some(min), Some(max)) = (min, max) {
        if min.currency() != max.currency() {
            v.add(
                format!("{f}.max_basket_value"),
                "must be in the currency of min_basket_value",
            );
        } else if max.amount_minor() < min.amount_minor() {
            v.add(
                format!("{f}.max_basket_value"),
                "must not be below min_basket_value",
            );
        }
    }
    validate::delivery_methods(v, &format!("{f}.delivery_methods"), delivery_methods, 6);
}

/// A payment rule's stored key: its method's name.
fn payment_rule_key(rule: &pb::PaymentMethodRule) -> String {
    attune_kit::types::PaymentMethod::from_proto(rule.method)
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default()
}

/// UpsertPaymentMethodRules.
pub async fn upsert_payment_rules(
    delivery: &Delivery,
    request: pb::UpsertPaymentMethodRulesRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertPaymentMethodRulesRequest {
        rules: sent,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    if sent.is_empty() || sent.len() > 20 {
        v.add("rules", "must have 1 to 20 entries");
    }
    let mask = mask::parse(&mut v, update_mask.as_ref(), mask::PAYMENT_RULE_FIELDS);
    for (i, rule) in sent.iter().enumerate() {
        let f = format!("rules[{i}]");
        match mask {
            None => parse_payment_rule(&mut v, &f, rule),
            Some(_) => {
                validate::payment_method(&mut v, &format!("{f}.method"), rule.method);
            }
        }
    }
    let keys: Vec<String> = sent.iter().map(|r| r.method.to_string()).collect();
    no_duplicates(&mut v, "rules", keys.iter().map(String::as_str));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: sent.iter().map(Message::encode_to_vec).collect(),
        mask: mask.clone().unwrap_or_default(),
    };
    let upserted = delivery
        .idempotent(
            "UpsertPaymentMethodRules",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
                let rules = to_write(
                    txn,
                    "delivery_payment_rules",
                    "method",
                    "rules",
                    &sent,
                    payment_rule_key,
                    mask.as_deref(),
                    mask::merge_payment_rule,
                    parse_payment_rule,
                )
                .await?;
                let names: Vec<String> = rules
                    .iter()
                    .filter_map(|r| attune_kit::types::PaymentMethod::from_proto(r.method).ok())
                    .map(|m| m.as_str().to_owned())
                    .collect();
                let existing =
                    existing_ids(txn, "delivery_payment_rules", "method", names.clone()).await?;
                let mut insert = Query::insert()
                    .into_table("delivery_payment_rules")
                    .columns(["method", "body"])
                    .on_conflict(
                        OnConflict::column("method")
                            .update_column("body")
                            .to_owned(),
                    )
                    .to_owned();
                for (rule, name) in rules.iter().zip(&names) {
                    insert.values_panic([name.clone().into(), rule.encode_to_vec().into()]);
                }
                insert.run(txn).await?;
                crate::snapshot::bump_version(txn).await?;
                Ok(count(rules.len(), existing.len()))
            },
        )
        .await?
        .into_inner();
    delivery.network.refresh(&delivery.db).await?;
    Ok(upserted)
}
