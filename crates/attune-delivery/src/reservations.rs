//! Slot reservations. A reservation takes a unit of its slot's counter with one
//! guarded statement and inserts its row in the same transaction, without
//! delivery's write lock (see `slots` for the counter's rules): a slot is never
//! overbooked on SQLite or PostgreSQL, in one process or many, and reservations
//! of different slots do not wait for each other. A hold past its
//! `expire_time` stops counting at once (read with the clock); its unit returns
//! to the counter when a reservation of its slot finds the slot full, once.

use attune_kit::ApiError;
use attune_kit::db::micros::{from_micros, to_micros};
use attune_kit::error::{Violations, checked};
use attune_kit::types::{DeliveryMethod, Money, time};
use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::Serialize;

use crate::app::Delivery;
use crate::quote::Quote;
use crate::slots;
use crate::store::{self, Write};
use crate::validate;

#[derive(FromQueryResult)]
struct Row {
    reservation_id: String,
    slot_id: String,
    customer_id: String,
    state: String,
    order_id: Option<String>,
    reserve_time: i64,
    expire_time: i64,
    confirm_time: Option<i64>,
    release_time: Option<i64>,
    price_minor: Option<i64>,
    price_currency: Option<String>,
}

fn ts(micros: i64) -> Option<prost_types::Timestamp> {
    from_micros(micros).ok().map(time::to_proto)
}

impl Row {
    fn state_at(&self, now: DateTime<Utc>) -> pb::ReservationState {
        match self.state.as_str() {
            "confirmed" => pb::ReservationState::Confirmed,
            "released" => pb::ReservationState::Released,
            "expired" => pb::ReservationState::Expired,
            _ if self.expire_time <= to_micros(now) => pb::ReservationState::Expired,
            _ => pb::ReservationState::Held,
        }
    }

    fn to_proto(&self, now: DateTime<Utc>) -> pb::Reservation {
        let state = self.state_at(now);
        pb::Reservation {
            reservation_id: self.reservation_id.clone(),
            slot_id: self.slot_id.clone(),
            customer_id: self.customer_id.clone(),
            state: state.into(),
            order_id: self.order_id.clone().unwrap_or_default(),
            reserve_time: ts(self.reserve_time),
            expire_time: ts(self.expire_time),
            confirm_time: self.confirm_time.and_then(ts),
            release_time: match state {
                pb::ReservationState::Expired => ts(self.expire_time),
                _ => self.release_time.and_then(ts),
            },
            price: match (self.price_minor, &self.price_currency) {
                (Some(amount), Some(currency)) => {
                    Money::parse(amount, currency).ok().map(Money::to_proto)
                }
                _ => None,
            },
        }
    }
}

const COLUMNS: [&str; 11] = [
    "reservation_id",
    "slot_id",
    "customer_id",
    "state",
    "order_id",
    "reserve_time",
    "expire_time",
    "confirm_time",
    "release_time",
    "price_minor",
    "price_currency",
];

async fn find(
    db: &impl ConnectionTrait,
    customer_id: &str,
    reservation_id: &str,
) -> Result<Row, ApiError> {
    let query = Query::select()
        .columns(COLUMNS)
        .from("delivery_reservations")
        .and_where(Expr::col("reservation_id").eq(reservation_id))
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    store::one::<Row>(db, &query)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("reservation {reservation_id} not found")))
}

/// A customer's reservations, for export.
pub async fn of_customer(
    db: &impl ConnectionTrait,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<pb::Reservation>, ApiError> {
    let query = Query::select()
        .columns(COLUMNS)
        .from("delivery_reservations")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .order_by("reserve_time", sea_orm::sea_query::Order::Asc)
        .to_owned();
    Ok(store::all::<Row>(db, &query)
        .await?
        .iter()
        .map(|row| row.to_proto(now))
        .collect())
}

#[derive(Serialize)]
struct ReserveCommand<'a> {
    customer_id: &'a str,
    slot_id: &'a str,
    hold_micros: i64,
    quote_token: &'a str,
}

/// ReserveSlot.
pub async fn reserve(
    delivery: &Delivery,
    request: pb::ReserveSlotRequest,
) -> Result<pb::ReserveSlotResponse, ApiError> {
    let pb::ReserveSlotRequest {
        customer_id,
        slot_id,
        hold_duration,
        quote_token,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let slot_id = validate::record_id(&mut v, "slot_id", &slot_id);
    let hold = match hold_duration {
        None => Some(chrono::Duration::minutes(15)),
        Some(d) => {
            let hold = chrono::Duration::seconds(d.seconds)
                + chrono::Duration::nanoseconds(i64::from(d.nanos));
            if d.nanos < 0
                || d.nanos >= 1_000_000_000
                || hold < chrono::Duration::minutes(1)
                || hold > chrono::Duration::hours(24)
            {
                v.add("hold_duration", "must be 1 minute to 24 hours");
                None
            } else {
                Some(hold)
            }
        }
    };
    let quote = if quote_token.is_empty() {
        None
    } else {
        v.check("quote_token", Quote::verify(&delivery.key, &quote_token))
    };
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, slot_id, hold, request_id) = (
        checked(customer),
        checked(slot_id),
        checked(hold),
        checked(request_id),
    );
    let command = ReserveCommand {
        customer_id: customer.as_ref(),
        slot_id: &slot_id,
        hold_micros: hold.num_microseconds().unwrap_or(i64::MAX),
        quote_token: &quote_token,
    };
    let now = delivery.clock.now();
    let reservation_id = delivery
        .idempotent_guarded("ReserveSlot", request_id.as_ref(), &command, async |txn| {
            let Some(slot) = slots::slot(txn, &slot_id, now).await? else {
                return Err(ApiError::NotFound(format!("slot {slot_id} not found")));
            };
            let cutoff = time::from_proto_required(slot.cutoff_time).map_err(ApiError::internal)?;
            if !slot.active || cutoff <= now {
                return Err(ApiError::FailedPrecondition(format!(
                    "slot {slot_id} is not open for reservations"
                )));
            }
            let price = match &quote {
                None => None,
                Some(quote) => Some(quote.price_for(customer.as_ref(), &slot, now)?),
            };
            if !slots::take_unit(txn, &slot_id, now).await?
                && (slots::free_expired(txn, &slot_id, now).await? == 0
                    || !slots::take_unit(txn, &slot_id, now).await?)
            {
                return Err(ApiError::ResourceExhausted {
                    message: format!("slot {slot_id} is full"),
                    retry_after: None,
                });
            }
            let reservation_id = format!("rsv-{}", uuid::Uuid::new_v4().simple());
            Query::insert()
                .into_table("delivery_reservations")
                .columns(COLUMNS)
                .values_panic([
                    reservation_id.clone().into(),
                    slot_id.clone().into(),
                    customer.as_ref().into(),
                    "held".into(),
                    Option::<String>::None.into(),
                    to_micros(now).into(),
                    to_micros(now + hold).into(),
                    Option::<i64>::None.into(),
                    Option::<i64>::None.into(),
                    price.map(|p: Money| p.amount_minor()).into(),
                    price.map(|p| p.currency().as_ref().to_owned()).into(),
                ])
                .to_owned()
                .run(txn)
                .await?;
            Ok(reservation_id)
        })
        .await?
        .into_inner();
    let (reservation, slot) = get_in(delivery, customer.as_ref(), &reservation_id).await?;
    Ok(pb::ReserveSlotResponse {
        reservation: Some(reservation),
        slot,
    })
}

async fn get_in(
    delivery: &Delivery,
    customer_id: &str,
    reservation_id: &str,
) -> Result<(pb::Reservation, Option<pb::DeliverySlot>), ApiError> {
    let now = delivery.clock.now();
    let row = find(&delivery.db, customer_id, reservation_id).await?;
    let slot = slots::slot(&delivery.db, &row.slot_id, now).await?;
    Ok((row.to_proto(now), slot))
}

#[derive(Serialize)]
struct ChangeCommand<'a> {
    customer_id: &'a str,
    reservation_id: &'a str,
    order_id: &'a str,
}

/// ConfirmReservation.
pub async fn confirm(
    delivery: &Delivery,
    request: pb::ConfirmReservationRequest,
) -> Result<pb::Reservation, ApiError> {
    let pb::ConfirmReservationRequest {
        customer_id,
        reservation_id,
        order_id,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let reservation = validate::record_id(&mut v, "reservation_id", &reservation_id);
    v.check(
        "order_id",
        attune_kit::types::printable_ascii(&order_id, 128),
    );
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, reservation, request_id) =
        (checked(customer), checked(reservation), checked(request_id));
    let command = ChangeCommand {
        customer_id: customer.as_ref(),
        reservation_id: &reservation,
        order_id: &order_id,
    };
    let now = delivery.clock.now();
    delivery
        .idempotent_guarded(
            "ConfirmReservation",
            request_id.as_ref(),
            &command,
            async |txn| {
                // Guarded: a hold freed as expired meanwhile is not confirmed.
                let confirmed = Query::update()
                    .table("delivery_reservations")
                    .value("state", "confirmed")
                    .value("order_id", order_id.clone())
                    .value("confirm_time", to_micros(now))
                    .and_where(Expr::col("reservation_id").eq(reservation.as_str()))
                    .and_where(Expr::col("customer_id").eq(customer.as_ref()))
                    .and_where(Expr::col("state").eq("held"))
                    .and_where(Expr::col("expire_time").gt(to_micros(now)))
                    .to_owned()
                    .run(txn)
                    .await?;
                if confirmed == 1 {
                    return Ok(());
                }
                let row = find(txn, customer.as_ref(), &reservation).await?;
                match row.state_at(now) {
                    pb::ReservationState::Confirmed
                        if row.order_id.as_deref() == Some(&order_id) =>
                    {
                        Ok(())
                    }
                    state => Err(ApiError::FailedPrecondition(format!(
                        "reservation {reservation} is {}; reserve again",
                        state.as_str_name()
                    ))),
                }
            },
        )
        .await?;
    Ok(get_in(delivery, customer.as_ref(), &reservation).await?.0)
}

/// ReleaseReservation.
pub async fn release(
    delivery: &Delivery,
    request: pb::ReleaseReservationRequest,
) -> Result<pb::Reservation, ApiError> {
    let pb::ReleaseReservationRequest {
        customer_id,
        reservation_id,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let reservation = validate::record_id(&mut v, "reservation_id", &reservation_id);
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, reservation, request_id) =
        (checked(customer), checked(reservation), checked(request_id));
    let command = ChangeCommand {
        customer_id: customer.as_ref(),
        reservation_id: &reservation,
        order_id: "",
    };
    let now = delivery.clock.now();
    delivery
        .idempotent_guarded(
            "ReleaseReservation",
            request_id.as_ref(),
            &command,
            async |txn| {
                let row = find(txn, customer.as_ref(), &reservation).await?;
                if matches!(
                    row.state_at(now),
                    pb::ReservationState::Held | pb::ReservationState::Confirmed
                ) {
                    slots::lock(txn, &row.slot_id).await?;
                    // Guarded: a hold freed as expired meanwhile gives nothing back twice.
                    let released = Query::update()
                        .table("delivery_reservations")
                        .value("state", "released")
                        .value("release_time", to_micros(now))
                        .and_where(Expr::col("reservation_id").eq(reservation.as_str()))
                        .cond_where(live_at(now))
                        .to_owned()
                        .run(txn)
                        .await?;
                    slots::give_back(txn, &row.slot_id, released).await?;
                }
                Ok(())
            },
        )
        .await?;
    Ok(get_in(delivery, customer.as_ref(), &reservation).await?.0)
}

/// Rows that hold a unit of their slot and count at `now`: confirmed, or held
/// and not expired.
fn live_at(now: DateTime<Utc>) -> sea_orm::sea_query::Condition {
    sea_orm::sea_query::Cond::any()
        .add(Expr::col("state").eq("confirmed"))
        .add(
            Expr::col("state")
                .eq("held")
                .and(Expr::col("expire_time").gt(to_micros(now))),
        )
}

/// Deletes a customer's reservations (erasure), giving back the units of those
/// still held or confirmed, slot by slot. Returns the rows deleted.
pub async fn erase(txn: &impl ConnectionTrait, customer_id: &str) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct SlotRow {
        slot_id: String,
    }
    let holding = Query::select()
        .distinct()
        .column("slot_id")
        .from("delivery_reservations")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .and_where(Expr::col("state").is_in(["held", "confirmed"]))
        .order_by("slot_id", sea_orm::sea_query::Order::Asc)
        .to_owned();
    let mut deleted = 0;
    for row in store::all::<SlotRow>(txn, &holding).await? {
        slots::lock(txn, &row.slot_id).await?;
        let units = Query::delete()
            .from_table("delivery_reservations")
            .and_where(Expr::col("customer_id").eq(customer_id))
            .and_where(Expr::col("slot_id").eq(row.slot_id.as_str()))
            .and_where(Expr::col("state").is_in(["held", "confirmed"]))
            .to_owned()
            .run(txn)
            .await?;
        slots::give_back(txn, &row.slot_id, units).await?;
        deleted += units;
    }
    deleted += Query::delete()
        .from_table("delivery_reservations")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned()
        .run(txn)
        .await?;
    Ok(deleted)
}

/// GetReservation.
pub async fn get(
    delivery: &Delivery,
    request: pb::GetReservationRequest,
) -> Result<pb::GetReservationResponse, ApiError> {
    let pb::GetReservationRequest {
        customer_id,
        reservation_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let reservation = validate::record_id(&mut v, "reservation_id", &reservation_id);
    v.finish()?;
    let (reservation, slot) =
        get_in(delivery, checked(customer).as_ref(), &checked(reservation)).await?;
    Ok(pb::GetReservationResponse {
        reservation: Some(reservation),
        slot,
    })
}

/// The local windows (day 1-7, start minute, end minute) of the home slots
/// among the encoded slots a customer chose, for learned preferences.
pub fn home_windows(
    chosen: impl IntoIterator<Item = Vec<u8>>,
) -> Result<Vec<(i32, i32, i32)>, ApiError> {
    let mut windows = Vec::new();
    for body in chosen {
        let slot = pb::DeliverySlot::decode(body.as_slice()).map_err(ApiError::internal)?;
        if DeliveryMethod::from_proto(slot.method).is_ok_and(DeliveryMethod::is_pickup) {
            continue;
        }
        windows.push(crate::preferences::local_window(&slot));
    }
    Ok(windows)
}
