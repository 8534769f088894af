//! Preferences: explicit ones the customer set (sealed under their data key,
//! since instructions are free text), and learned ones from the orders profile's
//! feed reports (method, payment, pickup point) and the slots the customer
//! confirmed (time windows), each order weighing 0.5^(age / half-life).
//! Learned preferences are read only with the personalization grant.

use std::collections::HashMap;
use std::future::Future;

use attune_kit::ApiError;
use attune_kit::db::micros::{from_micros, to_micros};
use attune_kit::error::{Violations, checked};
use attune_kit::follower::{Apply, ApplyError};
use attune_kit::types::{DeliveryMethod, PaymentMethod, time};
use attune_proto::delivery::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use chrono::{DateTime, Datelike, Timelike, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, JoinType, OnConflict, Query, UnionType};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, FromQueryResult};
use serde::Serialize;

use crate::addresses;
use crate::app::Delivery;
use crate::network;
use crate::store::{self, WRITE_LOCK, Write};
use crate::validate;

const CONTEXT: &str = "preferences";

#[derive(FromQueryResult)]
struct SealedRow {
    sealed: Vec<u8>,
    update_time: i64,
}

/// A customer's explicit preferences (empty when never set).
pub async fn explicit(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<pb::DeliveryPreferences, ApiError> {
    let query = Query::select()
        .columns(["sealed", "update_time"])
        .from("delivery_preferences")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    let Some(row) = store::one::<SealedRow>(db, &query).await? else {
        return Ok(pb::DeliveryPreferences::default());
    };
    let Some(key) = addresses::data_key(delivery, db, customer_id).await? else {
        return Err(ApiError::internal("preferences without a data key"));
    };
    let plain = key.open(CONTEXT, &row.sealed).map_err(ApiError::internal)?;
    let mut prefs =
        pb::DeliveryPreferences::decode(plain.as_slice()).map_err(ApiError::internal)?;
    prefs.update_time = from_micros(row.update_time).ok().map(time::to_proto);
    Ok(prefs)
}

fn parse_preferences(
    v: &mut Violations,
    raw: Option<pb::DeliveryPreferences>,
) -> pb::DeliveryPreferences {
    let prefs = raw.unwrap_or_default();
    let pb::DeliveryPreferences {
        preferred_delivery_methods,
        preferred_payment_methods,
        preferred_pickup_point_id,
        preferred_address_id,
        preferred_time_windows,
        contactless_delivery,
        delivery_instructions,
        update_time: _,
    } = prefs;
    validate::delivery_methods(
        v,
        "preferences.preferred_delivery_methods",
        &preferred_delivery_methods,
        6,
    );
    validate::payment_methods(
        v,
        "preferences.preferred_payment_methods",
        &preferred_payment_methods,
        9,
    );
    if !preferred_pickup_point_id.is_empty() {
        validate::record_id(
            v,
            "preferences.preferred_pickup_point_id",
            &preferred_pickup_point_id,
        );
    }
    if !preferred_address_id.is_empty() {
        validate::record_id(v, "preferences.preferred_address_id", &preferred_address_id);
    }
    if preferred_time_windows.len() > 10 {
        v.add(
            "preferences.preferred_time_windows",
            "must have at most 10 entries",
        );
    }
    for (i, window) in preferred_time_windows.iter().enumerate() {
        let f = format!("preferences.preferred_time_windows[{i}]");
        if window.days.is_empty() {
            v.add(format!("{f}.days"), "must have 1 to 7 days");
        }
        let mut days = Vec::new();
        for (d, day) in window.days.iter().enumerate() {
            if let Some(day) = v.check(
                format!("{f}.days[{d}]"),
                attune_kit::types::DayOfWeek::from_proto(*day),
            ) {
                if days.contains(&day) {
                    v.add(format!("{f}.days[{d}]"), "is a duplicate");
                }
                days.push(day);
            }
        }
        if !(0..1440).contains(&window.start_minute) {
            v.add(format!("{f}.start_minute"), "must be 0 to 1439");
        } else if window.end_minute <= window.start_minute || window.end_minute > 1440 {
            v.add(
                format!("{f}.end_minute"),
                "must be after start_minute, at most 1440",
            );
        }
    }
    validate::text(
        v,
        "preferences.delivery_instructions",
        &delivery_instructions,
        0,
        500,
    );
    pb::DeliveryPreferences {
        preferred_delivery_methods,
        preferred_payment_methods,
        preferred_pickup_point_id,
        preferred_address_id,
        preferred_time_windows,
        contactless_delivery,
        delivery_instructions,
        update_time: None,
    }
}

#[derive(Serialize)]
struct UpdateCommand<'a> {
    customer_id: &'a str,
    preferences: Vec<u8>,
    /// The update mask's paths; empty replaces whole.
    mask: Vec<&'static str>,
}

/// UpdateDeliveryPreferences.
pub async fn update(
    delivery: &Delivery,
    request: pb::UpdateDeliveryPreferencesRequest,
) -> Result<pb::DeliveryPreferences, ApiError> {
    let pb::UpdateDeliveryPreferencesRequest {
        customer_id,
        preferences,
        request_id,
        update_mask,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    if preferences.is_none() {
        v.add("preferences", "is required");
    }
    // Every field is optional, so the sent message is checked whole even under
    // a mask; only the named fields are then taken from it.
    let sent = parse_preferences(&mut v, preferences);
    let mask = crate::mask::parse(&mut v, update_mask.as_ref(), crate::mask::PREFERENCE_FIELDS);
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, request_id) = (checked(customer), checked(request_id));
    let command = UpdateCommand {
        customer_id: customer.as_ref(),
        preferences: sent.encode_to_vec(),
        mask: mask.clone().unwrap_or_default(),
    };
    let now = delivery.clock.now();
    delivery
        .idempotent(
            "UpdateDeliveryPreferences",
            request_id.as_ref(),
            &command,
            async |txn| {
                let prefs = match &mask {
                    None => sent.clone(),
                    Some(paths) => {
                        let mut stored = explicit(delivery, txn, customer.as_ref()).await?;
                        stored.update_time = None;
                        crate::mask::merge_preferences(&stored, &sent, paths)
                    }
                };
                if !prefs.preferred_pickup_point_id.is_empty()
                    && network::pickup_point(txn, &prefs.preferred_pickup_point_id)
                        .await?
                        .is_none()
                {
                    return Err(ApiError::NotFound(format!(
                        "pickup point {} not found",
                        prefs.preferred_pickup_point_id
                    )));
                }
                if !prefs.preferred_address_id.is_empty() {
                    addresses::get(
                        delivery,
                        txn,
                        customer.as_ref(),
                        &prefs.preferred_address_id,
                    )
                    .await?;
                }
                let key = addresses::data_key_or_new(delivery, txn, customer.as_ref(), now).await?;
                let sealed = key
                    .seal(CONTEXT, &prefs.encode_to_vec())
                    .map_err(ApiError::internal)?;
                Query::insert()
                    .into_table("delivery_preferences")
                    .columns(["customer_id", "sealed", "update_time"])
                    .values_panic([
                        customer.as_ref().into(),
                        sealed.into(),
                        to_micros(now).into(),
                    ])
                    .on_conflict(
                        OnConflict::column("customer_id")
                            .update_columns(["sealed", "update_time"])
                            .to_owned(),
                    )
                    .to_owned()
                    .run(txn)
                    .await?;
                Ok(())
            },
        )
        .await?;
    explicit(delivery, &delivery.db, customer.as_ref()).await
}

// ---------------------------------------------------------------- learned

#[derive(FromQueryResult)]
struct ChoiceRow {
    order_id: String,
    delivery_method: Option<String>,
    payment_method: Option<String>,
    pickup_point_id: Option<String>,
    order_time: i64,
}

/// One recorded order choice, for export.
pub async fn choices_json(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<serde_json::Value>, ApiError> {
    Ok(choices(db, customer_id)
        .await?
        .into_iter()
        .map(|c| {
            serde_json::json!({
                "order_id": c.order_id,
                "delivery_method": c.delivery_method,
                "payment_method": c.payment_method,
                "pickup_point_id": c.pickup_point_id,
                "order_time": from_micros(c.order_time).ok().map(|t| t.to_rfc3339()),
            })
        })
        .collect())
}

async fn choices(db: &impl ConnectionTrait, customer_id: &str) -> Result<Vec<ChoiceRow>, DbErr> {
    let query = Query::select()
        .columns([
            "order_id",
            "delivery_method",
            "payment_method",
            "pickup_point_id",
            "order_time",
        ])
        .from("delivery_order_choices")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .order_by("order_time", sea_orm::sea_query::Order::Asc)
        .to_owned();
    store::all::<ChoiceRow>(db, &query).await
}

/// One row of [`history`]: a recorded choice (source 1, with the body of the
/// slot it chose, if any) or a confirmed reservation's slot (source 0).
#[derive(FromQueryResult)]
struct HistoryRow {
    source: i32,
    order_id: String,
    delivery_method: Option<String>,
    payment_method: Option<String>,
    pickup_point_id: Option<String>,
    order_time: Option<i64>,
    body: Option<Vec<u8>>,
}

/// The customer's recorded choices (oldest first) and the local windows of the
/// home slots they chose (each order once, from the choice recorded at
/// checkout, else from the reservation confirmed for it), in one statement:
/// learned preferences are read on every page with delivery.
async fn history(
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<(Vec<ChoiceRow>, Vec<(i32, i32, i32)>), ApiError> {
    let mut choices = Query::select()
        .expr_as(Expr::cust("1"), "source")
        .column(("c", "order_id"))
        .column(("c", "delivery_method"))
        .column(("c", "payment_method"))
        .column(("c", "pickup_point_id"))
        .column(("c", "order_time"))
        .column(("s", "body"))
        .from_as("delivery_order_choices", "c")
        .join_as(
            JoinType::LeftJoin,
            "delivery_slots",
            "s",
            Expr::col(("s", "slot_id")).equals(("c", "slot_id")),
        )
        .and_where(Expr::col(("c", "customer_id")).eq(customer_id))
        .to_owned();
    let reservations = Query::select()
        .expr_as(Expr::cust("0"), "source")
        .column(("r", "order_id"))
        .expr_as(Expr::cust("NULL"), "delivery_method")
        .expr_as(Expr::cust("NULL"), "payment_method")
        .expr_as(Expr::cust("NULL"), "pickup_point_id")
        .expr_as(Expr::cust("NULL"), "order_time")
        .column(("s", "body"))
        .from_as("delivery_reservations", "r")
        .join_as(
            JoinType::InnerJoin,
            "delivery_slots",
            "s",
            Expr::col(("s", "slot_id")).equals(("r", "slot_id")),
        )
        .and_where(Expr::col(("r", "customer_id")).eq(customer_id))
        .and_where(Expr::col(("r", "order_id")).is_not_null())
        .and_where(Expr::col(("r", "state")).eq("confirmed"))
        .to_owned();
    let query = choices.union(UnionType::All, reservations).to_owned();
    let mut rows = store::all::<HistoryRow>(db, &query).await?;
    // Reservations first, so that an order's recorded choice replaces them.
    rows.sort_by_key(|row| row.source);
    let mut slots = std::collections::BTreeMap::new();
    let mut choices = Vec::new();
    for row in rows {
        if let Some(body) = row.body {
            slots.insert(row.order_id.clone(), body);
        }
        if let (1, Some(order_time)) = (row.source, row.order_time) {
            choices.push(ChoiceRow {
                order_id: row.order_id,
                delivery_method: row.delivery_method,
                payment_method: row.payment_method,
                pickup_point_id: row.pickup_point_id,
                order_time,
            });
        }
    }
    choices.sort_by_key(|choice| choice.order_time);
    let windows = crate::reservations::home_windows(slots.into_values())?;
    Ok((choices, windows))
}

#[derive(Default)]
struct Tally {
    count: i32,
    weight: f64,
    last: i64,
}

fn ranked<K: Clone + Ord>(tallies: HashMap<K, Tally>, total: f64) -> Vec<(K, i32, f64, i64)> {
    let mut out: Vec<(K, i32, f64, i64)> = tallies
        .into_iter()
        .map(|(k, t)| {
            (
                k,
                t.count,
                if total > 0.0 { t.weight / total } else { 0.0 },
                t.last,
            )
        })
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

/// What a customer's orders say, weighted by recency at `now`.
pub async fn learned(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<pb::LearnedPreferences, ApiError> {
    let (rows, windows) = history(db, customer_id).await?;
    let half_life = delivery.settings.learned_half_life.as_secs_f64().max(1.0);
    let mut methods: HashMap<DeliveryMethod, Tally> = HashMap::new();
    let mut payments: HashMap<PaymentMethod, Tally> = HashMap::new();
    let mut points: HashMap<String, Tally> = HashMap::new();
    let (mut method_total, mut payment_total, mut point_total) = (0.0, 0.0, 0.0);
    for row in &rows {
        let age = (Ord::max(to_micros(now) - row.order_time, 0) as f64) / 1e6;
        let weight = 0.5_f64.powf(age / half_life);
        let add = |tally: &mut Tally| {
            tally.count += 1;
            tally.weight += weight;
            tally.last = Ord::max(tally.last, row.order_time);
        };
        if let Some(m) = row
            .delivery_method
            .as_deref()
            .and_then(DeliveryMethod::from_stored)
        {
            add(methods.entry(m).or_default());
            method_total += weight;
        }
        if let Some(p) = row
            .payment_method
            .as_deref()
            .and_then(PaymentMethod::from_stored)
        {
            add(payments.entry(p).or_default());
            payment_total += weight;
        }
        if let Some(point) = row.pickup_point_id.clone().filter(|p| !p.is_empty()) {
            add(points.entry(point).or_default());
            point_total += weight;
        }
    }
    let when = |micros: i64| from_micros(micros).ok().map(time::to_proto);
    let mut window_counts: HashMap<(i32, i32, i32), i32> = HashMap::new();
    for window in windows {
        *window_counts.entry(window).or_default() += 1;
    }
    let windows = window_counts;
    let mut windows: Vec<((i32, i32, i32), i32)> = windows.into_iter().collect();
    windows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(pb::LearnedPreferences {
        order_count: rows.len() as i32,
        delivery_methods: ranked(methods, method_total)
            .into_iter()
            .map(|(m, count, weight, last)| pb::LearnedChoice {
                delivery_method: m.into(),
                order_count: count,
                weight,
                last_use_time: when(last),
                ..Default::default()
            })
            .collect(),
        payment_methods: ranked(payments, payment_total)
            .into_iter()
            .map(|(p, count, weight, last)| pb::LearnedChoice {
                payment_method: p.into(),
                order_count: count,
                weight,
                last_use_time: when(last),
                ..Default::default()
            })
            .collect(),
        pickup_points: ranked(points, point_total)
            .into_iter()
            .map(|(p, count, weight, last)| pb::LearnedChoice {
                pickup_point_id: p,
                order_count: count,
                weight,
                last_use_time: when(last),
                ..Default::default()
            })
            .collect(),
        usual_time_windows: windows
            .into_iter()
            .take(5)
            .map(|((day, start, end), _)| pb::TimeWindow {
                days: vec![day],
                start_minute: start,
                end_minute: end,
            })
            .collect(),
    })
}

/// A slot's local window: its day (1-7) and whole hours around it.
pub fn local_window(slot: &pb::DeliverySlot) -> (i32, i32, i32) {
    let offset = chrono::Duration::minutes(i64::from(slot.utc_offset_minutes));
    let start = time::from_proto_required(slot.start_time).unwrap_or_default() + offset;
    let end = time::from_proto_required(slot.end_time).unwrap_or_default() + offset;
    let start_minute = (start.hour() * 60) as i32;
    let end_minute = if end.date_naive() != start.date_naive() {
        1440
    } else {
        ((end.hour() * 60 + end.minute()).div_ceil(60) * 60) as i32
    };
    (
        start.weekday().number_from_monday() as i32,
        start_minute,
        Ord::min(Ord::max(end_minute, start_minute + 60), 1440),
    )
}

/// Whether a slot lies inside one of `windows` (local time).
pub fn in_windows(slot: &pb::DeliverySlot, windows: &[pb::TimeWindow]) -> bool {
    let offset = chrono::Duration::minutes(i64::from(slot.utc_offset_minutes));
    let (Ok(start), Ok(end)) = (
        time::from_proto_required(slot.start_time),
        time::from_proto_required(slot.end_time),
    ) else {
        return false;
    };
    let (start, end) = (start + offset, end + offset);
    let day = start.weekday().number_from_monday() as i32;
    let from = (start.hour() * 60 + start.minute()) as i32;
    let until = if end.date_naive() != start.date_naive() {
        1440
    } else {
        (end.hour() * 60 + end.minute()) as i32
    };
    windows
        .iter()
        .any(|w| w.days.contains(&day) && w.start_minute <= from && until <= w.end_minute)
}

/// GetDeliveryPreferences.
pub async fn get(
    delivery: &Delivery,
    request: pb::GetDeliveryPreferencesRequest,
) -> Result<pb::GetDeliveryPreferencesResponse, ApiError> {
    let pb::GetDeliveryPreferencesRequest { customer_id } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    v.finish()?;
    let customer = checked(customer);
    let now = delivery.clock.now();
    let explicit_preferences = explicit(delivery, &delivery.db, customer.as_ref()).await?;
    let consent = crate::options::consent_of(delivery, customer.as_ref()).await;
    let learned_preferences = if consent.granted {
        learned(delivery, &delivery.db, customer.as_ref(), now).await?
    } else {
        pb::LearnedPreferences::default()
    };
    Ok(pb::GetDeliveryPreferencesResponse {
        explicit_preferences: Some(explicit_preferences),
        personalization: Some(consent.personalization(learned_preferences.order_count)),
        learned_preferences: Some(learned_preferences),
    })
}

// ---------------------------------------------------------------- the learner

/// The follower's name in `feed_cursors`.
pub const FOLLOWER: &str = "delivery:profile";

/// Records each purchase's delivery and payment choice from profile's feed, and
/// moves a merged anonymous profile's choices to the survivor.
pub struct Learn;

impl Apply<profile_pb::FeedEntry> for Learn {
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        attune_kit::db::begin_write(db, WRITE_LOCK)
    }

    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[profile_pb::FeedEntry],
    ) -> Result<(), ApplyError> {
        use profile_pb::feed_entry::Change;
        for entry in items {
            match &entry.change {
                Some(Change::Event(event))
                    if event.kind == i32::from(profile_pb::EventKind::Purchase) =>
                {
                    record(txn, event).await?;
                }
                Some(Change::Merge(merge)) => {
                    merge_choices(txn, &merge.source_customer_id, &merge.target_customer_id)
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

async fn record(txn: &DatabaseTransaction, event: &profile_pb::Event) -> Result<(), DbErr> {
    let method = DeliveryMethod::from_proto_optional(event.delivery_method)
        .ok()
        .flatten()
        .map(|m| m.as_str().to_owned());
    let payment = PaymentMethod::from_proto_optional(event.payment_method)
        .ok()
        .flatten()
        .map(|p| p.as_str().to_owned());
    let point = Some(event.pickup_point_id.clone()).filter(|p| !p.is_empty());
    let Ok(order_time) = time::from_proto_required(event.occur_time) else {
        return Ok(());
    };
    if event.resolved_customer_id.is_empty()
        || (method.is_none() && payment.is_none() && point.is_none())
    {
        return Ok(());
    }
    let order_id = if event.order_id.is_empty() {
        event.event_id.clone()
    } else {
        event.order_id.clone()
    };
    Query::insert()
        .into_table("delivery_order_choices")
        .columns([
            "customer_id",
            "order_id",
            "delivery_method",
            "payment_method",
            "pickup_point_id",
            "order_time",
        ])
        .values_panic([
            event.resolved_customer_id.clone().into(),
            order_id.into(),
            method.into(),
            payment.into(),
            point.into(),
            to_micros(order_time).into(),
        ])
        .on_conflict(
            OnConflict::columns(["customer_id", "order_id"])
                .update_columns([
                    "delivery_method",
                    "payment_method",
                    "pickup_point_id",
                    "order_time",
                ])
                .to_owned(),
        )
        .to_owned()
        .run(txn)
        .await?;
    Ok(())
}

async fn merge_choices(txn: &DatabaseTransaction, source: &str, target: &str) -> Result<(), DbErr> {
    if source.is_empty() || target.is_empty() || source == target {
        return Ok(());
    }
    // An order both profiles recorded keeps the survivor's row.
    let target_orders = Query::select()
        .column("order_id")
        .from("delivery_order_choices")
        .and_where(Expr::col("customer_id").eq(target))
        .to_owned();
    Query::delete()
        .from_table("delivery_order_choices")
        .and_where(Expr::col("customer_id").eq(source))
        .and_where(Expr::col("order_id").in_subquery(target_orders))
        .to_owned()
        .run(txn)
        .await?;
    Query::update()
        .table("delivery_order_choices")
        .value("customer_id", target)
        .and_where(Expr::col("customer_id").eq(source))
        .to_owned()
        .run(txn)
        .await?;
    Ok(())
}
