//! The retailer's delivery network (admin API): pickup points and stores,
//! shipping rates, slots and payment method rules. A record is stored with its
//! searchable columns plain and the whole validated wire message in `body`; an
//! upsert replaces a record whole.

use std::sync::Arc;

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::error::{Violations, checked};
use attune_kit::pagination::{decode_cursor, next_page, page_size};
use attune_kit::types::{DeliveryMethod, time};
use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::app::Delivery;
use crate::geo::{Point, PointIndex};
use crate::store::{self, Write};
use crate::validate;

/// Most records in one upsert.
const MAX_BATCH: usize = 500;

/// The active pickup points by position, with the network version it reflects.
#[derive(Debug, Default)]
pub struct PickupIndex {
    /// The version of `delivery_network_versions` it was built at.
    pub version: i64,
    /// The points.
    pub points: PointIndex<pb::PickupPoint>,
}

/// What an upsert did, as remembered for its retries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Upserted {
    /// Records that did not exist.
    pub created: i32,
    /// Records replaced.
    pub updated: i32,
}

#[derive(Serialize)]
struct Batch {
    bodies: Vec<Vec<u8>>,
}

fn batch_size(v: &mut Violations, field: &str, len: usize) {
    if len == 0 || len > MAX_BATCH {
        v.add(field, format!("must have 1 to {MAX_BATCH} entries"));
    }
}

fn no_duplicates<'a>(v: &mut Violations, field: &str, ids: impl Iterator<Item = &'a str>) {
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

async fn existing_ids(
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
        pickup_points,
        request_id,
    } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "pickup_points", pickup_points.len());
    for (i, point) in pickup_points.iter().enumerate() {
        parse_pickup_point(&mut v, &format!("pickup_points[{i}]"), point);
    }
    no_duplicates(
        &mut v,
        "pickup_points",
        pickup_points.iter().map(|p| p.pickup_point_id.as_str()),
    );
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: pickup_points.iter().map(Message::encode_to_vec).collect(),
    };
    let upserted = delivery
        .idempotent(
            "UpsertPickupPoints",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
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
                bump_version(txn, "pickup_points").await?;
                Ok(count(pickup_points.len(), existing.len()))
            },
        )
        .await?
        .into_inner();
    Ok(upserted)
}

fn count(total: usize, existing: usize) -> Upserted {
    Upserted {
        created: (total - existing) as i32,
        updated: existing as i32,
    }
}

#[derive(FromQueryResult)]
struct VersionRow {
    version: i64,
}

async fn bump_version(db: &impl ConnectionTrait, name: &str) -> Result<(), DbErr> {
    let next = network_version(db, name).await? + 1;
    Query::insert()
        .into_table("delivery_network_versions")
        .columns(["name", "version"])
        .values_panic([name.into(), next.into()])
        .on_conflict(
            OnConflict::column("name")
                .update_column("version")
                .to_owned(),
        )
        .to_owned()
        .run(db)
        .await?;
    Ok(())
}

async fn network_version(db: &impl ConnectionTrait, name: &str) -> Result<i64, DbErr> {
    let query = Query::select()
        .column("version")
        .from("delivery_network_versions")
        .and_where(Expr::col("name").eq(name))
        .to_owned();
    Ok(store::one::<VersionRow>(db, &query)
        .await?
        .map_or(0, |row| row.version))
}

#[derive(FromQueryResult)]
struct BodyRow {
    body: Vec<u8>,
}

/// The pickup index as of the network's current version: one small read, and a
/// rebuild (then shared by every request) only when an upsert moved it, in this
/// process or another.
pub async fn pickup_index(delivery: &Delivery) -> Result<Arc<PickupIndex>, ApiError> {
    let version = network_version(&delivery.db, "pickup_points").await?;
    {
        let current = delivery
            .pickup_index
            .read()
            .expect("the index lock is never poisoned: nothing panics holding it");
        if current.version == version {
            return Ok(Arc::clone(&current));
        }
    }
    let query = Query::select()
        .column("body")
        .from("delivery_pickup_points")
        .and_where(Expr::col("active").eq(true))
        .to_owned();
    let mut points = Vec::new();
    for row in store::all::<BodyRow>(&delivery.db, &query).await? {
        let point = pb::PickupPoint::decode(row.body.as_slice()).map_err(ApiError::internal)?;
        let at = point
            .location
            .as_ref()
            .and_then(|p| Point::parse(p.latitude_microdegrees, p.longitude_microdegrees).ok())
            .ok_or_else(|| ApiError::internal("a stored pickup point has no valid location"))?;
        points.push((at, point));
    }
    let index = Arc::new(PickupIndex {
        version,
        points: PointIndex::build(points),
    });
    *delivery
        .pickup_index
        .write()
        .expect("the index lock is never poisoned: nothing panics holding it") = Arc::clone(&index);
    Ok(index)
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
    let pb::UpsertShippingRatesRequest { rates, request_id } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "rates", rates.len());
    for (i, rate) in rates.iter().enumerate() {
        parse_rate(&mut v, &format!("rates[{i}]"), rate);
    }
    no_duplicates(&mut v, "rates", rates.iter().map(|r| r.rate_id.as_str()));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: rates.iter().map(Message::encode_to_vec).collect(),
    };
    Ok(delivery
        .idempotent(
            "UpsertShippingRates",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
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
                Ok(count(rates.len(), existing.len()))
            },
        )
        .await?
        .into_inner())
}

/// The active rates of a country.
pub async fn rates_of(
    db: &impl ConnectionTrait,
    country_code: &str,
) -> Result<Vec<pb::ShippingRate>, ApiError> {
    let query = Query::select()
        .column("body")
        .from("delivery_rates")
        .and_where(Expr::col("country_code").eq(country_code))
        .and_where(Expr::col("active").eq(true))
        .order_by("rate_id", Order::Asc)
        .to_owned();
    store::all::<BodyRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| pb::ShippingRate::decode(row.body.as_slice()).map_err(ApiError::internal))
        .collect()
}

// ---------------------------------------------------------------- slots

fn parse_slot(v: &mut Violations, f: &str, slot: &pb::DeliverySlot) {
    let pb::DeliverySlot {
        slot_id,
        method,
        pickup_point_id,
        start_time,
        end_time,
        cutoff_time,
        capacity,
        reserved_count: _,
        available_count: _,
        surcharge,
        active: _,
        utc_offset_minutes,
    } = slot;
    validate::record_id(v, &format!("{f}.slot_id"), slot_id);
    match validate::delivery_method(v, &format!("{f}.method"), *method) {
        Some(DeliveryMethod::HomeStandard) => {
            v.add(format!("{f}.method"), "HOME_STANDARD has no slots");
        }
        Some(m) if m.is_pickup() => {
            validate::record_id(v, &format!("{f}.pickup_point_id"), pickup_point_id);
        }
        Some(_) if !pickup_point_id.is_empty() => {
            v.add(
                format!("{f}.pickup_point_id"),
                "must be empty for home methods",
            );
        }
        _ => {}
    }
    let start = v.check(
        format!("{f}.start_time"),
        time::from_proto_required(*start_time),
    );
    let end = v.check(
        format!("{f}.end_time"),
        time::from_proto_required(*end_time),
    );
    if let (Some(start), Some(end)) = (start, end)
        && (end <= start || end - start > chrono::Duration::hours(24))
    {
        v.add(
            format!("{f}.end_time"),
            "must be after start_time, at most 24 hours later",
        );
    }
    if let Some(cutoff) = v.check(
        format!("{f}.cutoff_time"),
        time::from_proto_optional(*cutoff_time),
    ) && let (Some(cutoff), Some(start)) = (cutoff, start)
        && cutoff > start
    {
        v.add(format!("{f}.cutoff_time"), "must not be after start_time");
    }
    if !(0..=100_000).contains(capacity) {
        v.add(format!("{f}.capacity"), "must be 0 to 100000");
    }
    validate::optional_price(v, &format!("{f}.surcharge"), surcharge.as_ref());
    validate::utc_offset(v, &format!("{f}.utc_offset_minutes"), *utc_offset_minutes);
}

/// UpsertSlots.
pub async fn upsert_slots(
    delivery: &Delivery,
    request: pb::UpsertSlotsRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertSlotsRequest { slots, request_id } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "slots", slots.len());
    for (i, slot) in slots.iter().enumerate() {
        parse_slot(&mut v, &format!("slots[{i}]"), slot);
    }
    no_duplicates(&mut v, "slots", slots.iter().map(|s| s.slot_id.as_str()));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let slots: Vec<pb::DeliverySlot> = slots
        .into_iter()
        .map(|mut slot| {
            slot.reserved_count = 0;
            slot.available_count = 0;
            if slot.cutoff_time.is_none() {
                slot.cutoff_time = slot.start_time;
            }
            slot
        })
        .collect();
    let command = Batch {
        bodies: slots.iter().map(Message::encode_to_vec).collect(),
    };
    let now = delivery.clock.now();
    Ok(delivery
        .idempotent(
            "UpsertSlots",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
                let ids = slots.iter().map(|s| s.slot_id.clone()).collect();
                let existing = existing_ids(txn, "delivery_slots", "slot_id", ids).await?;
                for slot in &slots {
                    if slot.pickup_point_id.is_empty() {
                        continue;
                    }
                    if pickup_point(txn, &slot.pickup_point_id).await?.is_none() {
                        return Err(ApiError::NotFound(format!(
                            "pickup point {} not found",
                            slot.pickup_point_id
                        )));
                    }
                }
                for slot in slots.iter().filter(|s| existing.contains(&s.slot_id)) {
                    let reserved = live_count(txn, &slot.slot_id, now).await?;
                    if i64::from(slot.capacity) < reserved {
                        return Err(ApiError::FailedPrecondition(format!(
                            "slot {} has {reserved} units reserved, more than the new capacity",
                            slot.slot_id
                        )));
                    }
                }
                let mut insert = Query::insert()
                    .into_table("delivery_slots")
                    .columns([
                        "slot_id",
                        "method",
                        "pickup_point_id",
                        "start_time",
                        "cutoff_time",
                        "capacity",
                        "active",
                        "body",
                    ])
                    .on_conflict(
                        OnConflict::column("slot_id")
                            .update_columns([
                                "method",
                                "pickup_point_id",
                                "start_time",
                                "cutoff_time",
                                "capacity",
                                "active",
                                "body",
                            ])
                            .to_owned(),
                    )
                    .to_owned();
                for slot in &slots {
                    let method = DeliveryMethod::from_proto(slot.method)
                        .map_err(|e| ApiError::invalid("slots.method", e))?;
                    let micros = |t: Option<prost_types::Timestamp>| -> Result<i64, ApiError> {
                        Ok(to_micros(
                            time::from_proto_required(t).map_err(ApiError::internal)?,
                        ))
                    };
                    insert.values_panic([
                        slot.slot_id.clone().into(),
                        method.as_str().into(),
                        slot.pickup_point_id.clone().into(),
                        micros(slot.start_time)?.into(),
                        micros(slot.cutoff_time)?.into(),
                        slot.capacity.into(),
                        slot.active.into(),
                        slot.encode_to_vec().into(),
                    ]);
                }
                insert.run(txn).await?;
                Ok(count(slots.len(), existing.len()))
            },
        )
        .await?
        .into_inner())
}

#[derive(FromQueryResult)]
struct CountRow {
    n: i64,
}

/// Units of a slot held (unexpired) or confirmed at `now`.
pub async fn live_count(
    db: &impl ConnectionTrait,
    slot_id: &str,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let query = Query::select()
        .expr_as(Expr::col("reservation_id").count(), "n")
        .from("delivery_reservations")
        .and_where(Expr::col("slot_id").eq(slot_id))
        .cond_where(
            sea_orm::sea_query::Cond::any()
                .add(Expr::col("state").eq("confirmed"))
                .add(
                    Expr::col("state")
                        .eq("held")
                        .and(Expr::col("expire_time").gt(to_micros(now))),
                ),
        )
        .to_owned();
    Ok(store::one::<CountRow>(db, &query).await?.map_or(0, |r| r.n))
}

/// A stored slot with its availability at `now`.
pub async fn slot(
    db: &impl ConnectionTrait,
    slot_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<pb::DeliverySlot>, ApiError> {
    let query = Query::select()
        .column("body")
        .from("delivery_slots")
        .and_where(Expr::col("slot_id").eq(slot_id))
        .to_owned();
    let Some(row) = store::one::<BodyRow>(db, &query).await? else {
        return Ok(None);
    };
    let mut slot = pb::DeliverySlot::decode(row.body.as_slice()).map_err(ApiError::internal)?;
    with_availability(db, &mut slot, now).await?;
    Ok(Some(slot))
}

async fn with_availability(
    db: &impl ConnectionTrait,
    slot: &mut pb::DeliverySlot,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let reserved = live_count(db, &slot.slot_id, now).await?;
    slot.reserved_count = reserved as i32;
    slot.available_count = Ord::max(i64::from(slot.capacity) - reserved, 0) as i32;
    Ok(())
}

/// The first active slot of `method` (at `pickup_point_id` when given) that can
/// still be reserved at `now`, looking at most 200 slots ahead.
pub async fn next_free_slot(
    db: &impl ConnectionTrait,
    method: DeliveryMethod,
    pickup_point_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<pb::DeliverySlot>, ApiError> {
    let mut query = Query::select()
        .column("body")
        .from("delivery_slots")
        .and_where(Expr::col("method").eq(method.as_str()))
        .and_where(Expr::col("active").eq(true))
        .and_where(Expr::col("cutoff_time").gt(to_micros(now)))
        .and_where(Expr::col("capacity").gt(0))
        .order_by("start_time", Order::Asc)
        .order_by("slot_id", Order::Asc)
        .limit(200)
        .to_owned();
    if let Some(point) = pickup_point_id {
        query.and_where(Expr::col("pickup_point_id").eq(point));
    }
    for row in store::all::<BodyRow>(db, &query).await? {
        let mut slot = pb::DeliverySlot::decode(row.body.as_slice()).map_err(ApiError::internal)?;
        with_availability(db, &mut slot, now).await?;
        if slot.available_count > 0 {
            return Ok(Some(slot));
        }
    }
    Ok(None)
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

/// UpsertPaymentMethodRules.
pub async fn upsert_payment_rules(
    delivery: &Delivery,
    request: pb::UpsertPaymentMethodRulesRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertPaymentMethodRulesRequest { rules, request_id } = request;
    let mut v = Violations::default();
    if rules.is_empty() || rules.len() > 20 {
        v.add("rules", "must have 1 to 20 entries");
    }
    for (i, rule) in rules.iter().enumerate() {
        parse_payment_rule(&mut v, &format!("rules[{i}]"), rule);
    }
    let keys: Vec<String> = rules.iter().map(|r| r.method.to_string()).collect();
    no_duplicates(&mut v, "rules", keys.iter().map(String::as_str));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: rules.iter().map(Message::encode_to_vec).collect(),
    };
    Ok(delivery
        .idempotent(
            "UpsertPaymentMethodRules",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
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
                Ok(count(rules.len(), existing.len()))
            },
        )
        .await?
        .into_inner())
}

/// Every payment method rule.
pub async fn payment_rules(
    db: &impl ConnectionTrait,
) -> Result<Vec<pb::PaymentMethodRule>, ApiError> {
    let query = Query::select()
        .column("body")
        .from("delivery_payment_rules")
        .to_owned();
    store::all::<BodyRow>(db, &query)
        .await?
        .into_iter()
        .map(|row| pb::PaymentMethodRule::decode(row.body.as_slice()).map_err(ApiError::internal))
        .collect()
}
