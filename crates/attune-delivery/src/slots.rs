//! The slot calendar and its capacity counters.
//!
//! Each slot row carries `reserved`: the number of its reservations whose state
//! is `held` or `confirmed` (a hold past its expire time included, until it is
//! freed). Every change of that number is one guarded statement in the same
//! transaction as the reservation row it accounts for:
//!
//! - a reservation takes a unit with `UPDATE … SET reserved = reserved + 1 WHERE
//!   slot_id = … AND reserved + 1 <= capacity`; zero rows affected means full;
//! - a release, an erasure or the freeing of expired holds moves reservation
//!   rows out of `held`/`confirmed` with a guarded UPDATE or DELETE and gives
//!   back exactly the rows it affected, so each unit is freed once;
//! - these give-backs first lock the slot row (a no-op UPDATE), then the
//!   reservation rows: one lock order, so they never deadlock one another.
//!
//! The statements need no service-wide lock: reservations of different slots
//! commit in parallel on PostgreSQL, and those of one slot queue on its row.
//! SQLite has one writer anyway. A hold stops counting the moment it expires
//! (availability adds back the expired holds not yet freed, read with the
//! clock); a reservation that finds its slot full frees them and tries again.

use attune_kit::ApiError;
use attune_kit::db::micros::to_micros;
use attune_kit::error::{Violations, checked};
use attune_kit::types::{DeliveryMethod, time};
use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Order, Query, SimpleExpr, UnionType};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::app::Delivery;
use crate::mask;
use crate::network::{
    Batch, Upserted, batch_size, count, existing_ids, no_duplicates, pickup_point, to_write,
};
use crate::store::{self, Write};
use crate::validate;

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

/// UpsertSlots. A slot's counter is kept as it is: its capacity may not fall
/// below the units it holds now.
pub async fn upsert_slots(
    delivery: &Delivery,
    request: pb::UpsertSlotsRequest,
) -> Result<Upserted, ApiError> {
    let pb::UpsertSlotsRequest {
        slots: sent,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    batch_size(&mut v, "slots", sent.len());
    let mask = mask::parse(&mut v, update_mask.as_ref(), mask::SLOT_FIELDS);
    for (i, slot) in sent.iter().enumerate() {
        let f = format!("slots[{i}]");
        match mask {
            None => parse_slot(&mut v, &f, slot),
            Some(_) => {
                validate::record_id(&mut v, &format!("{f}.slot_id"), &slot.slot_id);
            }
        }
    }
    no_duplicates(&mut v, "slots", sent.iter().map(|s| s.slot_id.as_str()));
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let command = Batch {
        bodies: sent.iter().map(Message::encode_to_vec).collect(),
        mask: mask.clone().unwrap_or_default(),
    };
    let now = delivery.clock.now();
    Ok(delivery
        .idempotent(
            "UpsertSlots",
            checked(request_id).as_ref(),
            &command,
            async |txn| {
                let slots: Vec<pb::DeliverySlot> = to_write(
                    txn,
                    "delivery_slots",
                    "slot_id",
                    "slots",
                    &sent,
                    |s| s.slot_id.clone(),
                    mask.as_deref(),
                    mask::merge_slot,
                    parse_slot,
                )
                .await?
                .into_iter()
                .map(normalized)
                .collect();
                write_slots(txn, &slots, now).await
            },
        )
        .await?
        .into_inner())
}

/// A slot as stored: no counts (they are live), the cut-off defaulting to the start.
fn normalized(mut slot: pb::DeliverySlot) -> pb::DeliverySlot {
    slot.reserved_count = 0;
    slot.available_count = 0;
    if slot.cutoff_time.is_none() {
        slot.cutoff_time = slot.start_time;
    }
    slot
}

/// Inserts or replaces `slots` (their counters kept), refusing a capacity
/// below the units a slot holds at `now`.
pub(crate) async fn write_slots(
    txn: &impl ConnectionTrait,
    slots: &[pb::DeliverySlot],
    now: DateTime<Utc>,
) -> Result<Upserted, ApiError> {
    let ids: Vec<String> = slots.iter().map(|s| s.slot_id.clone()).collect();
    let existing = existing_ids(txn, "delivery_slots", "slot_id", ids.clone()).await?;
    for slot in slots {
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
    const COLUMNS: [&str; 7] = [
        "method",
        "pickup_point_id",
        "start_time",
        "cutoff_time",
        "capacity",
        "active",
        "body",
    ];
    let mut insert = Query::insert()
        .into_table("delivery_slots")
        .columns(["slot_id", "reserved"].into_iter().chain(COLUMNS))
        .on_conflict(
            OnConflict::column("slot_id")
                .update_columns(COLUMNS)
                .to_owned(),
        )
        .to_owned();
    for slot in slots {
        let method = DeliveryMethod::from_proto(slot.method)
            .map_err(|e| ApiError::invalid("slots.method", e))?;
        let micros = |t: Option<prost_types::Timestamp>| -> Result<i64, ApiError> {
            Ok(to_micros(
                time::from_proto_required(t).map_err(ApiError::internal)?,
            ))
        };
        insert.values_panic([
            slot.slot_id.clone().into(),
            0.into(),
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
    // Checked after the write: the upsert holds the slots' rows now, so no
    // reservation can take a unit between this check and the commit.
    let query = Query::select()
        .column("slot_id")
        .expr_as(available(now), "available")
        .from("delivery_slots")
        .and_where(Expr::col("slot_id").is_in(ids))
        .order_by("slot_id", Order::Asc)
        .to_owned();
    for row in store::all::<AvailableRow>(txn, &query).await? {
        if row.available < 0 {
            return Err(ApiError::FailedPrecondition(format!(
                "slot {} has {} more units reserved than the new capacity",
                row.slot_id, -row.available
            )));
        }
    }
    Ok(count(slots.len(), existing.len()))
}

#[derive(FromQueryResult)]
struct AvailableRow {
    slot_id: String,
    available: i64,
}

/// The units of a slot free at `now`: capacity less the counter, plus the holds
/// that expired but were not freed yet (they still count in `reserved`).
/// Negative only when a capacity was lowered below what is held.
fn available(now: DateTime<Utc>) -> SimpleExpr {
    let expired_holds = Query::select()
        .expr(Expr::col(sea_orm::sea_query::Asterisk).count())
        .from_as("delivery_reservations", "r")
        .and_where(Expr::col(("r", "slot_id")).equals(("delivery_slots", "slot_id")))
        .and_where(Expr::col(("r", "state")).eq("held"))
        .and_where(Expr::col(("r", "expire_time")).lte(to_micros(now)))
        .to_owned();
    // INTEGER - INTEGER + COUNT is a BIGINT on PostgreSQL, an integer on SQLite.
    Expr::col(("delivery_slots", "capacity"))
        .sub(Expr::col(("delivery_slots", "reserved")))
        .add(SimpleExpr::SubQuery(None, Box::new(expired_holds.into())))
}

#[derive(FromQueryResult)]
struct SlotRow {
    body: Vec<u8>,
    available: i64,
}

impl SlotRow {
    fn into_slot(self) -> Result<pb::DeliverySlot, ApiError> {
        let mut slot =
            pb::DeliverySlot::decode(self.body.as_slice()).map_err(ApiError::internal)?;
        let free = self.available.clamp(0, i64::from(slot.capacity));
        slot.available_count = free as i32;
        slot.reserved_count = slot.capacity - slot.available_count;
        Ok(slot)
    }
}

fn select_slots(now: DateTime<Utc>) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column("body")
        .expr_as(available(now), "available")
        .from("delivery_slots")
        .to_owned()
}

/// A stored slot with its availability at `now`.
pub async fn slot(
    db: &impl ConnectionTrait,
    slot_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<pb::DeliverySlot>, ApiError> {
    let query = select_slots(now)
        .and_where(Expr::col("slot_id").eq(slot_id))
        .to_owned();
    store::one::<SlotRow>(db, &query)
        .await?
        .map(SlotRow::into_slot)
        .transpose()
}

/// The first active slot of `method` (at `pickup_point_id` when given) that can
/// still be reserved at `now`: an indexed query ending in LIMIT 1.
fn next_free_query(
    method: DeliveryMethod,
    pickup_point_id: Option<&str>,
    now: DateTime<Utc>,
) -> sea_orm::sea_query::SelectStatement {
    let mut query = select_slots(now)
        .and_where(Expr::col("method").eq(method.as_str()))
        .and_where(Expr::col("active").eq(true))
        .and_where(Expr::col("cutoff_time").gt(to_micros(now)))
        .and_where(available(now).gt(0))
        .order_by("start_time", Order::Asc)
        .order_by("slot_id", Order::Asc)
        .limit(1)
        .to_owned();
    if let Some(point) = pickup_point_id {
        query.and_where(Expr::col("pickup_point_id").eq(point));
    }
    query
}

/// The next free slot of each wanted method (at its pickup point when given),
/// in the order asked, read in ONE statement: each method's LIMIT 1 query is a
/// subquery of a UNION ALL, so a page pays one database round trip for all of
/// them. Each method may be asked for once: rows are told apart by method.
pub async fn next_free_slots(
    db: &impl ConnectionTrait,
    wanted: &[(DeliveryMethod, Option<&str>)],
    now: DateTime<Utc>,
) -> Result<Vec<Option<pb::DeliverySlot>>, ApiError> {
    let mut branches = wanted.iter().enumerate().map(|(i, (method, point))| {
        // Wrapped, because neither SQLite nor UNION allows a bare ORDER BY …
        // LIMIT in a compound member.
        Query::select()
            .column(sea_orm::sea_query::Asterisk)
            .from_subquery(next_free_query(*method, *point, now), format!("next_{i}"))
            .to_owned()
    });
    let Some(mut query) = branches.next() else {
        return Ok(Vec::new());
    };
    for branch in branches {
        query.union(UnionType::All, branch);
    }
    let mut found = store::all::<SlotRow>(db, &query)
        .await?
        .into_iter()
        .map(SlotRow::into_slot)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(wanted
        .iter()
        .map(|(method, _)| {
            let at = found
                .iter()
                .position(|slot| slot.method == i32::from(*method))?;
            Some(found.swap_remove(at))
        })
        .collect())
}

/// Takes one unit of an open slot: false when it is full (or closed).
pub(crate) async fn take_unit(
    txn: &impl ConnectionTrait,
    slot_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let taken = Query::update()
        .table("delivery_slots")
        .value("reserved", Expr::col("reserved").add(1))
        .and_where(Expr::col("slot_id").eq(slot_id))
        .and_where(Expr::col("active").eq(true))
        .and_where(Expr::col("cutoff_time").gt(to_micros(now)))
        .and_where(Expr::col("reserved").add(1).lte(Expr::col("capacity")))
        .to_owned()
        .run(txn)
        .await?;
    Ok(taken == 1)
}

/// Locks a slot's row for the rest of the transaction (a no-op update), so
/// that give-backs of one slot queue in one order: slot first, then its
/// reservations.
pub(crate) async fn lock(txn: &impl ConnectionTrait, slot_id: &str) -> Result<(), DbErr> {
    Query::update()
        .table("delivery_slots")
        .value("reserved", Expr::col("reserved"))
        .and_where(Expr::col("slot_id").eq(slot_id))
        .to_owned()
        .run(txn)
        .await?;
    Ok(())
}

/// Gives `units` back to a locked slot: exactly the reservation rows a guarded
/// statement of the same transaction moved out of `held`/`confirmed`.
pub(crate) async fn give_back(
    txn: &impl ConnectionTrait,
    slot_id: &str,
    units: u64,
) -> Result<(), DbErr> {
    if units == 0 {
        return Ok(());
    }
    Query::update()
        .table("delivery_slots")
        .value("reserved", Expr::col("reserved").sub(units as i64))
        .and_where(Expr::col("slot_id").eq(slot_id))
        .to_owned()
        .run(txn)
        .await?;
    Ok(())
}

/// Frees a slot's holds that expired by `now`: each becomes `expired` and gives
/// its unit back, once (a hold another transaction freed first no longer
/// matches). Returns how many were freed.
pub(crate) async fn free_expired(
    txn: &impl ConnectionTrait,
    slot_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    lock(txn, slot_id).await?;
    let freed = Query::update()
        .table("delivery_reservations")
        .value("state", "expired")
        .and_where(Expr::col("slot_id").eq(slot_id))
        .and_where(Expr::col("state").eq("held"))
        .and_where(Expr::col("expire_time").lte(to_micros(now)))
        .to_owned()
        .run(txn)
        .await?;
    give_back(txn, slot_id, freed).await?;
    Ok(freed)
}

/// The longest time range one ListAvailableSlots call covers.
const MAX_LIST_RANGE: chrono::Duration = chrono::Duration::days(62);

/// ListAvailableSlots: keyset pages over (start time, slot id).
pub async fn list_available(
    delivery: &Delivery,
    request: pb::ListAvailableSlotsRequest,
) -> Result<pb::ListAvailableSlotsResponse, ApiError> {
    let pb::ListAvailableSlotsRequest {
        method,
        pickup_point_id,
        start_time,
        end_time,
        page_size: raw_size,
        page_token,
    } = request;
    let now = delivery.clock.now();
    let mut v = Violations::default();
    match validate::delivery_method(&mut v, "method", method) {
        Some(DeliveryMethod::HomeStandard) => v.add("method", "HOME_STANDARD has no slots"),
        Some(m) if m.is_pickup() => {
            validate::record_id(&mut v, "pickup_point_id", &pickup_point_id);
        }
        Some(_) if !pickup_point_id.is_empty() => {
            v.add("pickup_point_id", "must be empty for home methods");
        }
        _ => {}
    }
    let from = v
        .check("start_time", time::from_proto_optional(start_time))
        .map(|t| t.unwrap_or(now));
    let until = v.check("end_time", time::from_proto_optional(end_time));
    let range = match (from, until) {
        (Some(from), Some(Some(until))) if until <= from || until - from > MAX_LIST_RANGE => {
            v.add(
                "end_time",
                "must be after start_time, at most 62 days later",
            );
            None
        }
        (Some(from), Some(until)) => {
            Some((from, until.unwrap_or(from + chrono::Duration::days(14))))
        }
        _ => None,
    };
    let size = v.check_field(attune_kit::pagination::page_size(
        "page_size",
        raw_size,
        50,
        500,
    ));
    let after = attune_kit::pagination::decode_cursor(&mut v, "page_token", &page_token, |c| {
        let (micros, slot_id) = c.split_once(':')?;
        Some((micros.parse::<i64>().ok()?, slot_id.to_owned()))
    });
    v.finish()?;
    let ((from, until), size) = (checked(range), checked(size));
    let mut query = select_slots(now)
        .column("start_time")
        .column("slot_id")
        .and_where(Expr::col("method").eq(method_name(method)?))
        .and_where(Expr::col("pickup_point_id").eq(pickup_point_id.as_str()))
        .and_where(Expr::col("active").eq(true))
        .and_where(Expr::col("cutoff_time").gt(to_micros(now)))
        .and_where(Expr::col("start_time").gte(to_micros(from)))
        .and_where(Expr::col("start_time").lt(to_micros(until)))
        .and_where(available(now).gt(0))
        .order_by("start_time", Order::Asc)
        .order_by("slot_id", Order::Asc)
        .limit(u64::from(size) + 1)
        .to_owned();
    if let Some((start, slot_id)) = after {
        query.cond_where(
            sea_orm::sea_query::Cond::any()
                .add(Expr::col("start_time").gt(start))
                .add(
                    Expr::col("start_time")
                        .eq(start)
                        .and(Expr::col("slot_id").gt(slot_id)),
                ),
        );
    }
    let rows = store::all::<ListedRow>(&delivery.db, &query).await?;
    let (rows, next_page_token) = attune_kit::pagination::next_page(rows, size, |row| {
        format!("{}:{}", row.start_time, row.slot_id)
    });
    let slots = rows
        .into_iter()
        .map(|row| {
            SlotRow {
                body: row.body,
                available: row.available,
            }
            .into_slot()
        })
        .collect::<Result<_, _>>()?;
    Ok(pb::ListAvailableSlotsResponse {
        slots,
        next_page_token,
    })
}

fn method_name(raw: i32) -> Result<&'static str, ApiError> {
    DeliveryMethod::from_proto(raw)
        .map(DeliveryMethod::as_str)
        .map_err(|e| ApiError::invalid("method", e))
}

#[derive(FromQueryResult)]
struct ListedRow {
    body: Vec<u8>,
    available: i64,
    start_time: i64,
    slot_id: String,
}
