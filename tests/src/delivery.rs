//! Delivery's helpers: a typed client, builders of the network's records, and
//! the slot counters' invariant.

use attune_kit::sea_orm::{ConnectionTrait, Statement};
use attune_kit::types::time;
use attune_proto::common::v1 as common_pb;
use attune_proto::delivery::v1 as pb;
use attune_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use chrono::{DateTime, Utc};
use tonic::transport::Channel;

use crate::TestApp;
use crate::profile_events::eur;

/// A position from degrees.
pub fn geo(lat: f64, lon: f64) -> common_pb::GeoPoint {
    common_pb::GeoPoint {
        latitude_microdegrees: (lat * 1e6).round() as i32,
        longitude_microdegrees: (lon * 1e6).round() as i32,
    }
}

/// An always-open pickup point of `kind` at (lat, lon) in Germany.
pub fn pickup(id: &str, kind: pb::PickupPointKind, lat: f64, lon: f64) -> pb::PickupPoint {
    pb::PickupPoint {
        pickup_point_id: id.into(),
        kind: kind.into(),
        display_name: format!("Point {id}"),
        country_code: "DE".into(),
        location: Some(geo(lat, lon)),
        utc_offset_minutes: 0,
        opening_hours: Vec::new(),
        closed_dates: Vec::new(),
        active: true,
    }
}

/// A country-wide German rate for `method` at `price` cents, 1 to 3 days.
pub fn rate(id: &str, method: common_pb::DeliveryMethod, price: i64) -> pb::ShippingRate {
    pb::ShippingRate {
        rate_id: id.into(),
        method: method.into(),
        service_area: Some(pb::ServiceArea {
            country_code: "DE".into(),
            ..Default::default()
        }),
        price: Some(eur(price)),
        min_lead_days: 1,
        max_lead_days: 3,
        active: true,
        ..Default::default()
    }
}

/// A home slot of `method` starting at `start`, two hours long.
pub fn slot(
    id: &str,
    method: common_pb::DeliveryMethod,
    start: DateTime<Utc>,
    capacity: i32,
) -> pb::DeliverySlot {
    pb::DeliverySlot {
        slot_id: id.into(),
        method: method.into(),
        start_time: Some(time::to_proto(start)),
        end_time: Some(time::to_proto(start + chrono::Duration::hours(2))),
        capacity,
        active: true,
        ..Default::default()
    }
}

/// A cart of one item worth `total` cents weighing `grams`.
pub fn cart(total: i64, grams: i64) -> pb::Cart {
    pb::Cart {
        total: Some(eur(total)),
        items: vec![pb::CartItem {
            item_id: "sku-1".into(),
            quantity: 1,
            unit_weight_grams: grams,
        }],
    }
}

/// A location at (lat, lon) in Germany.
pub fn at(lat: f64, lon: f64) -> pb::Location {
    pb::Location {
        value: Some(pb::location::Value::GeoLocation(pb::GeoLocation {
            point: Some(geo(lat, lon)),
            country_code: "DE".into(),
        })),
    }
}

impl TestApp {
    /// A delivery client on the shared connection.
    pub fn delivery(&self) -> DeliveryServiceClient<Channel> {
        DeliveryServiceClient::new(self.channel.clone())
    }

    /// Stores pickup points.
    pub async fn upsert_pickup_points(&self, points: Vec<pb::PickupPoint>) {
        self.delivery()
            .upsert_pickup_points(pb::UpsertPickupPointsRequest {
                update_mask: None,
                pickup_points: points,
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .expect("valid pickup points are stored");
    }

    /// Stores shipping rates.
    pub async fn upsert_rates(&self, rates: Vec<pb::ShippingRate>) {
        self.delivery()
            .upsert_shipping_rates(pb::UpsertShippingRatesRequest {
                update_mask: None,
                rates,
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .expect("valid rates are stored");
    }

    /// Stores slots.
    pub async fn upsert_slots(&self, slots: Vec<pb::DeliverySlot>) {
        self.delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                update_mask: None,
                slots,
                request_id: uuid::Uuid::new_v4().to_string(),
            })
            .await
            .expect("valid slots are stored");
    }

    /// The options for `customer` at `location` with `cart`.
    pub async fn delivery_options(
        &self,
        customer: &str,
        location: pb::Location,
        cart: pb::Cart,
    ) -> pb::GetDeliveryOptionsResponse {
        self.delivery()
            .get_delivery_options(pb::GetDeliveryOptionsRequest {
                customer_id: customer.into(),
                location: Some(location),
                cart: Some(cart),
                ..Default::default()
            })
            .await
            .expect("options are answered")
            .into_inner()
    }

    /// Reserves `slot` for `customer`.
    pub async fn reserve(
        &self,
        customer: &str,
        slot: &str,
    ) -> Result<pb::ReserveSlotResponse, tonic::Status> {
        self.delivery()
            .reserve_slot(pb::ReserveSlotRequest {
                customer_id: customer.into(),
                slot_id: slot.into(),
                request_id: uuid::Uuid::new_v4().to_string(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Each slot's counter beside the reservations that hold a unit of it, read
/// from the database of `app` (its `config.database`): they must always agree
/// (the counter's invariant).
pub async fn counters(app: &TestApp) -> Vec<(String, i64, i64)> {
    let db = attune_kit::db::connect(&app.config.database)
        .await
        .expect("delivery's database is reachable");
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT s.slot_id, CAST(s.reserved AS BIGINT) AS reserved, \
             (SELECT COUNT(*) FROM delivery_reservations r WHERE r.slot_id = s.slot_id \
              AND r.state IN ('held', 'confirmed')) AS holding \
             FROM delivery_slots s ORDER BY s.slot_id",
        ))
        .await
        .expect("the counters are readable");
    rows.iter()
        .map(|row| {
            (
                row.try_get("", "slot_id").expect("a slot id"),
                row.try_get("", "reserved").expect("a counter"),
                row.try_get("", "holding").expect("a count"),
            )
        })
        .collect()
}

/// Asserts that every slot's counter equals the reservations holding it.
pub async fn assert_counters_agree(app: &TestApp) {
    for (slot_id, reserved, holding) in counters(app).await {
        assert_eq!(
            reserved, holding,
            "slot {slot_id}: counter and rows disagree"
        );
    }
}
