//! Every delivery RPC refuses bad input with the right code, names the field,
//! and changes nothing (`attune_tests::bad_input` compares every table's row
//! count).

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::common::v1::{DeliveryMethod as M, PaymentMethod as P};
use attune_proto::delivery::v1 as pb;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::delivery::{at, cart, geo, pickup, rate, slot};
use attune_tests::profile_events::eur;
use attune_tests::{TestApp, backend_tests};
use chrono::{Duration, Utc};
use tonic::Code;

fn address() -> pb::Address {
    pb::Address {
        label: "Home".into(),
        recipient_name: "Erika Mustermann".into(),
        postal_address: Some(pb::PostalAddress {
            address_lines: vec!["Heidestrasse 17".into()],
            locality: "Koeln".into(),
            postal_code: "51147".into(),
            country_code: "DE".into(),
        }),
        phone_number: "+4922112345678".into(),
        location: Some(geo(50.87, 7.14)),
        ..Default::default()
    }
}

fn add_address() -> pb::AddAddressRequest {
    pb::AddAddressRequest {
        customer_id: "c-1".into(),
        address: Some(address()),
        request_id: "add-new".into(),
    }
}

/// A network with one locker, one rate and one slot, a customer with one address
/// and a held reservation; returns the address and reservation ids.
async fn seed(app: &TestApp) -> (String, String) {
    app.upsert_pickup_points(vec![pickup(
        "locker-1",
        pb::PickupPointKind::Locker,
        52.5,
        13.4,
    )])
    .await;
    app.upsert_rates(vec![rate("std", M::HomeStandard, 499)])
        .await;
    app.upsert_slots(vec![slot(
        "s-1",
        M::HomeScheduled,
        Utc::now() + Duration::days(1),
        5,
    )])
    .await;
    let address = app
        .delivery()
        .add_address(pb::AddAddressRequest {
            request_id: "seed-address".into(),
            ..add_address()
        })
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap();
    let reservation = app
        .reserve("c-1", "s-1")
        .await
        .unwrap()
        .reservation
        .unwrap();
    (address.address_id, reservation.reservation_id)
}

backend_tests! {
    async fn customer_rpcs_reject_each_bad_field(app) {
        let (address_id, reservation_id) = seed(&app).await;
        let client = app.delivery();
        let db = &app.config.database;

        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::AddAddressRequest| r.customer_id.clear())
            .invalid("customer with a space", "customer_id", |r| r.customer_id = "c 1".into())
            .invalid("no address", "address", |r| r.address = None)
            .invalid("no recipient", "address.recipient_name", |r| {
                r.address.as_mut().unwrap().recipient_name.clear()
            })
            .invalid("long label", "address.label", |r| r.address.as_mut().unwrap().label = "l".repeat(51))
            .invalid("no postal address", "address.postal_address", |r| {
                r.address.as_mut().unwrap().postal_address = None
            })
            .invalid("no lines", "address.postal_address.address_lines", |r| {
                r.address.as_mut().unwrap().postal_address.as_mut().unwrap().address_lines.clear()
            })
            .invalid("lower-case country", "address.postal_address.country_code", |r| {
                r.address.as_mut().unwrap().postal_address.as_mut().unwrap().country_code = "de".into()
            })
            .invalid("bad postal code", "address.postal_address.postal_code", |r| {
                r.address.as_mut().unwrap().postal_address.as_mut().unwrap().postal_code = "51147!".into()
            })
            .invalid("bad phone", "address.phone_number", |r| {
                r.address.as_mut().unwrap().phone_number = "0221 123".into()
            })
            .invalid("latitude out of range", "address.location", |r| {
                r.address.as_mut().unwrap().location = Some(geo(91.0, 0.0))
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("request id reused for another address", Code::AlreadyExists, |r| {
                r.request_id = "seed-address".into();
                r.address.as_mut().unwrap().label = "Office".into();
            });
        assert_each_rejected(db, add_address, cases, |r| {
            let mut c = client.clone();
            async move { c.add_address(r).await }
        })
        .await;

        let valid_delete = || pb::DeleteAddressRequest {
            customer_id: "c-1".into(),
            address_id: "unknown".into(),
            request_id: "delete-1".into(),
        };
        let seeded = address_id.clone();
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::DeleteAddressRequest| r.customer_id.clear())
            .invalid("empty address", "address_id", |r| r.address_id.clear())
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown address", Code::NotFound, |_| {})
            .refused("another customer's address", Code::NotFound, move |r| {
                r.customer_id = "c-2".into();
                r.address_id = seeded.clone();
            });
        assert_each_rejected(db, valid_delete, cases, |r| {
            let mut c = client.clone();
            async move { c.delete_address(r).await }
        })
        .await;

        let cases = Cases::new().invalid("empty customer", "customer_id", |r: &mut pb::ListAddressesRequest| {
            r.customer_id.clear()
        });
        assert_each_rejected(db, || pb::ListAddressesRequest { customer_id: "c-1".into() }, cases, |r| {
            let mut c = client.clone();
            async move { c.list_addresses(r).await }
        })
        .await;

        let valid_reserve = || pb::ReserveSlotRequest {
            customer_id: "c-1".into(),
            slot_id: "s-1".into(),
            request_id: "reserve-new".into(),
            ..Default::default()
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ReserveSlotRequest| r.customer_id.clear())
            .invalid("empty slot", "slot_id", |r| r.slot_id.clear())
            .invalid("hold too short", "hold_duration", |r| {
                r.hold_duration = Some(prost_types::Duration { seconds: 30, nanos: 0 })
            })
            .invalid("hold too long", "hold_duration", |r| {
                r.hold_duration = Some(prost_types::Duration { seconds: 90_000, nanos: 0 })
            })
            .invalid("forged quote", "quote_token", |r| r.quote_token = "abc.def".into())
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown slot", Code::NotFound, |r| r.slot_id = "nope".into());
        assert_each_rejected(db, valid_reserve, cases, |r| {
            let mut c = client.clone();
            async move { c.reserve_slot(r).await }
        })
        .await;

        let held = reservation_id.clone();
        let valid_confirm = move || pb::ConfirmReservationRequest {
            customer_id: "c-1".into(),
            reservation_id: held.clone(),
            order_id: "o-1".into(),
            request_id: "confirm-1".into(),
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ConfirmReservationRequest| r.customer_id.clear())
            .invalid("empty reservation", "reservation_id", |r| r.reservation_id.clear())
            .invalid("empty order", "order_id", |r| r.order_id.clear())
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("another customer", Code::NotFound, |r| r.customer_id = "c-2".into());
        assert_each_rejected(db, valid_confirm, cases, |r| {
            let mut c = client.clone();
            async move { c.confirm_reservation(r).await }
        })
        .await;

        let held = reservation_id.clone();
        let valid_release = move || pb::ReleaseReservationRequest {
            customer_id: "c-1".into(),
            reservation_id: held.clone(),
            request_id: "release-1".into(),
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::ReleaseReservationRequest| r.customer_id.clear())
            .invalid("empty reservation", "reservation_id", |r| r.reservation_id.clear())
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown reservation", Code::NotFound, |r| r.reservation_id = "rsv-none".into());
        assert_each_rejected(db, valid_release, cases, |r| {
            let mut c = client.clone();
            async move { c.release_reservation(r).await }
        })
        .await;

        let held = reservation_id.clone();
        let valid_get = move || pb::GetReservationRequest {
            customer_id: "c-1".into(),
            reservation_id: held.clone(),
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::GetReservationRequest| r.customer_id.clear())
            .invalid("empty reservation", "reservation_id", |r| r.reservation_id.clear())
            .refused("another customer", Code::NotFound, |r| r.customer_id = "c-2".into());
        assert_each_rejected(db, valid_get, cases, |r| {
            let mut c = client.clone();
            async move { c.get_reservation(r).await }
        })
        .await;

        let cases = Cases::new().invalid("empty customer", "customer_id", |r: &mut pb::GetDeliveryPreferencesRequest| {
            r.customer_id.clear()
        });
        assert_each_rejected(db, || pb::GetDeliveryPreferencesRequest { customer_id: "c-1".into() }, cases, |r| {
            let mut c = client.clone();
            async move { c.get_delivery_preferences(r).await }
        })
        .await;

        let valid_prefs = || pb::UpdateDeliveryPreferencesRequest {
            update_mask: None,
            customer_id: "c-1".into(),
            preferences: Some(pb::DeliveryPreferences {
                preferred_delivery_methods: vec![M::PickupPoint.into()],
                preferred_payment_methods: vec![P::Card.into()],
                preferred_pickup_point_id: "locker-1".into(),
                preferred_time_windows: vec![pb::TimeWindow { days: vec![1, 2], start_minute: 1080, end_minute: 1260 }],
                ..Default::default()
            }),
            request_id: "prefs-1".into(),
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::UpdateDeliveryPreferencesRequest| r.customer_id.clear())
            .invalid("mask naming the id", "update_mask.paths[0]", |r| {
                r.update_mask = Some(prost_types::FieldMask { paths: vec!["update_time".into()] })
            })
            .invalid("empty mask", "update_mask.paths", |r| r.update_mask = Some(prost_types::FieldMask::default()))
            .invalid("no preferences", "preferences", |r| r.preferences = None)
            .invalid("unknown method", "preferences.preferred_delivery_methods[0]", |r| {
                r.preferences.as_mut().unwrap().preferred_delivery_methods = vec![99]
            })
            .invalid("duplicate payment", "preferences.preferred_payment_methods[1]", |r| {
                r.preferences.as_mut().unwrap().preferred_payment_methods = vec![1, 1]
            })
            .invalid("window ends before it starts", "preferences.preferred_time_windows[0].end_minute", |r| {
                r.preferences.as_mut().unwrap().preferred_time_windows[0].end_minute = 60
            })
            .invalid("window without days", "preferences.preferred_time_windows[0].days", |r| {
                r.preferences.as_mut().unwrap().preferred_time_windows[0].days.clear()
            })
            .invalid("long instructions", "preferences.delivery_instructions", |r| {
                r.preferences.as_mut().unwrap().delivery_instructions = "i".repeat(501)
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown pickup point", Code::NotFound, |r| {
                r.preferences.as_mut().unwrap().preferred_pickup_point_id = "nope".into()
            })
            .refused("unknown address", Code::NotFound, |r| {
                r.preferences.as_mut().unwrap().preferred_address_id = "adr-nope".into()
            });
        assert_each_rejected(db, valid_prefs, cases, |r| {
            let mut c = client.clone();
            async move { c.update_delivery_preferences(r).await }
        })
        .await;

        let valid_options = || pb::GetDeliveryOptionsRequest {
            customer_id: "c-1".into(),
            location: Some(at(52.5, 13.4)),
            cart: Some(cart(2000, 500)),
            ..Default::default()
        };
        let cases = Cases::new()
            .invalid("bad customer", "customer_id", |r: &mut pb::GetDeliveryOptionsRequest| r.customer_id = "c 1".into())
            .invalid("no location", "location", |r| r.location = None)
            .invalid("longitude out of range", "location.geo_location.point", |r| {
                r.location = Some(pb::Location {
                    value: Some(pb::location::Value::GeoLocation(pb::GeoLocation {
                        point: Some(geo(0.0, 181.0)),
                        country_code: "DE".into(),
                    })),
                })
            })
            .invalid("address without customer", "location.address_id", |r| {
                r.customer_id.clear();
                r.location = Some(pb::Location { value: Some(pb::location::Value::AddressId("adr-1".into())) });
            })
            .invalid("no cart", "cart", |r| r.cart = None)
            .invalid("empty cart", "cart.items", |r| r.cart.as_mut().unwrap().items.clear())
            .invalid("negative total", "cart.total", |r| r.cart.as_mut().unwrap().total = Some(eur(-1)))
            .invalid("zero quantity", "cart.items[0].quantity", |r| r.cart.as_mut().unwrap().items[0].quantity = 0)
            .invalid("too many pickup points", "max_pickup_points", |r| r.max_pickup_points = 21)
            .invalid("unknown payment method", "available_payment_methods[0]", |r| {
                r.available_payment_methods = vec![42]
            })
            .refused("another customer's address", Code::NotFound, move |r| {
                r.customer_id = "c-2".into();
                r.location = Some(pb::Location { value: Some(pb::location::Value::AddressId(address_id.clone())) });
            });
        assert_each_rejected(db, valid_options, cases, |r| {
            let mut c = client.clone();
            async move { c.get_delivery_options(r).await }
        })
        .await;
    }

    async fn network_rpcs_reject_each_bad_field(app) {
        let client = app.delivery();
        let db = &app.config.database;

        let valid_points = || pb::UpsertPickupPointsRequest {
            update_mask: None,
            pickup_points: vec![pickup("p-1", pb::PickupPointKind::Store, 52.5, 13.4)],
            request_id: "points-1".into(),
        };
        let cases = Cases::new()
            .invalid("no points", "pickup_points", |r: &mut pb::UpsertPickupPointsRequest| r.pickup_points.clear())
            .invalid("mask naming the id", "update_mask.paths[0]", |r| {
                r.update_mask = Some(prost_types::FieldMask { paths: vec!["pickup_point_id".into()] })
            })
            .invalid("empty mask", "update_mask.paths", |r| r.update_mask = Some(prost_types::FieldMask::default()))
            .invalid("empty id", "pickup_points[0].pickup_point_id", |r| r.pickup_points[0].pickup_point_id.clear())
            .invalid("no kind", "pickup_points[0].kind", |r| r.pickup_points[0].kind = 0)
            .invalid("no name", "pickup_points[0].display_name", |r| r.pickup_points[0].display_name.clear())
            .invalid("no location", "pickup_points[0].location", |r| r.pickup_points[0].location = None)
            .invalid("latitude out of range", "pickup_points[0].location", |r| {
                r.pickup_points[0].location = Some(geo(-90.5, 0.0))
            })
            .invalid("offset out of range", "pickup_points[0].utc_offset_minutes", |r| {
                r.pickup_points[0].utc_offset_minutes = 900
            })
            .invalid("closing before opening", "pickup_points[0].opening_hours[0].close_minute", |r| {
                r.pickup_points[0].opening_hours = vec![pb::OpeningHours { day_of_week: 1, open_minute: 600, close_minute: 500 }]
            })
            .invalid("bad holiday", "pickup_points[0].closed_dates[0]", |r| {
                r.pickup_points[0].closed_dates = vec!["2026-02-30".into()]
            })
            .invalid("duplicate id", "pickup_points[1]", |r| {
                let again = r.pickup_points[0].clone();
                r.pickup_points.push(again);
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear());
        assert_each_rejected(db, valid_points, cases, |r| {
            let mut c = client.clone();
            async move { c.upsert_pickup_points(r).await }
        })
        .await;

        let cases = Cases::new()
            .invalid("negative page size", "page_size", |r: &mut pb::ListPickupPointsRequest| r.page_size = -1)
            .invalid("foreign token", "page_token", |r| r.page_token = "garbage".into());
        assert_each_rejected(db, pb::ListPickupPointsRequest::default, cases, |r| {
            let mut c = client.clone();
            async move { c.list_pickup_points(r).await }
        })
        .await;

        let valid_nearest = || pb::FindNearestPickupPointsRequest {
            location: Some(geo(52.5, 13.4)),
            ..Default::default()
        };
        let cases = Cases::new()
            .invalid("no location", "location", |r: &mut pb::FindNearestPickupPointsRequest| r.location = None)
            .invalid("latitude out of range", "location", |r| r.location = Some(geo(95.0, 0.0)))
            .invalid("unknown kind", "kinds[0]", |r| r.kinds = vec![9])
            .invalid("too many results", "max_results", |r| r.max_results = 51)
            .invalid("too far", "max_distance_meters", |r| r.max_distance_meters = 500_001);
        assert_each_rejected(db, valid_nearest, cases, |r| {
            let mut c = client.clone();
            async move { c.find_nearest_pickup_points(r).await }
        })
        .await;

        let valid_rates = || pb::UpsertShippingRatesRequest {
            update_mask: None,
            rates: vec![rate("r-1", M::HomeStandard, 499)],
            request_id: "rates-1".into(),
        };
        let cases = Cases::new()
            .invalid("no rates", "rates", |r: &mut pb::UpsertShippingRatesRequest| r.rates.clear())
            .invalid("mask naming the id", "update_mask.paths[0]", |r| {
                r.update_mask = Some(prost_types::FieldMask { paths: vec!["rate_id".into()] })
            })
            .invalid("empty mask", "update_mask.paths", |r| r.update_mask = Some(prost_types::FieldMask::default()))
            .invalid("unknown method", "rates[0].method", |r| r.rates[0].method = 42)
            .invalid("no area", "rates[0].service_area", |r| r.rates[0].service_area = None)
            .invalid("radius without centre", "rates[0].service_area.center", |r| {
                r.rates[0].service_area.as_mut().unwrap().radius_meters = 1000
            })
            .invalid("no price", "rates[0].price", |r| r.rates[0].price = None)
            .invalid("negative price", "rates[0].price", |r| r.rates[0].price = Some(eur(-1)))
            .invalid("tier in another currency", "rates[0].basket_tiers[0].price", |r| {
                r.rates[0].basket_tiers = vec![pb::BasketTier {
                    min_basket_value: Some(eur(1000)),
                    price: Some(attune_proto::common::v1::Money { amount_minor: 1, currency_code: "USD".into() }),
                }]
            })
            .invalid("zero weight step", "rates[0].weight_surcharges[0].min_weight_grams", |r| {
                r.rates[0].weight_surcharges = vec![pb::WeightSurcharge { min_weight_grams: 0, surcharge: Some(eur(1)) }]
            })
            .invalid("lead days reversed", "rates[0].max_lead_days", |r| r.rates[0].max_lead_days = 0)
            .invalid("cut-off out of range", "rates[0].cutoff_minute", |r| r.rates[0].cutoff_minute = Some(1440))
            .invalid("empty request id", "request_id", |r| r.request_id.clear());
        assert_each_rejected(db, valid_rates, cases, |r| {
            let mut c = client.clone();
            async move { c.upsert_shipping_rates(r).await }
        })
        .await;

        let start = Utc::now() + Duration::days(1);
        let valid_slots = move || pb::UpsertSlotsRequest {
            update_mask: None,
            slots: vec![slot("s-1", M::HomeScheduled, start, 5)],
            request_id: "slots-1".into(),
        };
        let cases = Cases::new()
            .invalid("no slots", "slots", |r: &mut pb::UpsertSlotsRequest| r.slots.clear())
            .invalid("mask naming the id", "update_mask.paths[0]", |r| {
                r.update_mask = Some(prost_types::FieldMask { paths: vec!["slot_id".into()] })
            })
            .invalid("empty mask", "update_mask.paths", |r| r.update_mask = Some(prost_types::FieldMask::default()))
            .invalid("standard has no slots", "slots[0].method", |r| r.slots[0].method = M::HomeStandard.into())
            .invalid("pickup without point", "slots[0].pickup_point_id", |r| r.slots[0].method = M::StorePickup.into())
            .invalid("no start", "slots[0].start_time", |r| r.slots[0].start_time = None)
            .invalid("ends before it starts", "slots[0].end_time", |r| r.slots[0].end_time = r.slots[0].start_time)
            .invalid("negative capacity", "slots[0].capacity", |r| r.slots[0].capacity = -1)
            .invalid("cut-off after start", "slots[0].cutoff_time", |r| r.slots[0].cutoff_time = r.slots[0].end_time)
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown pickup point", Code::NotFound, |r| {
                r.slots[0].method = M::StorePickup.into();
                r.slots[0].pickup_point_id = "nope".into();
            });
        assert_each_rejected(db, valid_slots, cases, |r| {
            let mut c = client.clone();
            async move { c.upsert_slots(r).await }
        })
        .await;

        let valid_rules = || pb::UpsertPaymentMethodRulesRequest {
            update_mask: None,
            rules: vec![pb::PaymentMethodRule {
                method: P::BuyNowPayLater.into(),
                active: true,
                min_basket_value: Some(eur(5000)),
                max_basket_value: Some(eur(100_000)),
                delivery_methods: Vec::new(),
            }],
            request_id: "rules-1".into(),
        };
        let cases = Cases::new()
            .invalid("no rules", "rules", |r: &mut pb::UpsertPaymentMethodRulesRequest| r.rules.clear())
            .invalid("mask naming the id", "update_mask.paths[0]", |r| {
                r.update_mask = Some(prost_types::FieldMask { paths: vec!["method".into()] })
            })
            .invalid("empty mask", "update_mask.paths", |r| r.update_mask = Some(prost_types::FieldMask::default()))
            .invalid("no method", "rules[0].method", |r| r.rules[0].method = 0)
            .invalid("max below min", "rules[0].max_basket_value", |r| r.rules[0].max_basket_value = Some(eur(10)))
            .invalid("bad delivery method", "rules[0].delivery_methods[0]", |r| r.rules[0].delivery_methods = vec![0])
            .invalid("duplicate method", "rules[1]", |r| {
                let again = r.rules[0].clone();
                r.rules.push(again);
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear());
        assert_each_rejected(db, valid_rules, cases, |r| {
            let mut c = client.clone();
            async move { c.upsert_payment_method_rules(r).await }
        })
        .await;
    }

    async fn checkout_rpcs_reject_each_bad_field(app) {
        seed(&app).await;
        app.grant("c-1", &["personalization"]).await;
        let client = app.delivery();
        let db = &app.config.database;
        let valid_list = || pb::ListAvailableSlotsRequest {
            method: M::HomeScheduled.into(),
            ..Default::default()
        };
        let cases = Cases::new()
            .invalid("no method", "method", |r: &mut pb::ListAvailableSlotsRequest| r.method = 0)
            .invalid("unknown method", "method", |r| r.method = 99)
            .invalid("standard has no slots", "method", |r| r.method = M::HomeStandard.into())
            .invalid("pickup without its point", "pickup_point_id", |r| r.method = M::PickupPoint.into())
            .invalid("home with a point", "pickup_point_id", |r| r.pickup_point_id = "locker-1".into())
            .invalid("end before start", "end_time", |r| {
                r.start_time = Some(attune_kit::types::time::to_proto(Utc::now()));
                r.end_time = Some(attune_kit::types::time::to_proto(Utc::now() - Duration::hours(1)));
            })
            .invalid("range too long", "end_time", |r| {
                r.start_time = Some(attune_kit::types::time::to_proto(Utc::now()));
                r.end_time = Some(attune_kit::types::time::to_proto(Utc::now() + Duration::days(90)));
            })
            .invalid("bad timestamp", "start_time", |r| {
                r.start_time = Some(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 })
            })
            .invalid("negative page size", "page_size", |r| r.page_size = -1)
            .invalid("page too large", "page_size", |r| r.page_size = 501)
            .invalid("foreign page token", "page_token", |r| r.page_token = "garbage!".into());
        assert_each_rejected(db, valid_list, cases, |r| {
            let mut c = client.clone();
            async move { c.list_available_slots(r).await }
        })
        .await;

        let valid_choice = || pb::RecordOrderChoiceRequest {
            customer_id: "c-1".into(),
            order_id: "o-1".into(),
            delivery_method: M::HomeScheduled.into(),
            payment_method: P::Card.into(),
            slot_id: "s-1".into(),
            request_id: "choice-1".into(),
            ..Default::default()
        };
        let cases = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut pb::RecordOrderChoiceRequest| r.customer_id.clear())
            .invalid("empty order", "order_id", |r| r.order_id.clear())
            .invalid("order with a control character", "order_id", |r| r.order_id = "o\n1".into())
            .invalid("unknown method", "delivery_method", |r| r.delivery_method = 99)
            .invalid("unknown payment", "payment_method", |r| r.payment_method = 99)
            .invalid("nothing chosen", "delivery_method", |r| {
                r.delivery_method = 0;
                r.payment_method = 0;
                r.slot_id.clear();
            })
            .invalid("slot without method", "slot_id", |r| r.delivery_method = 0)
            .invalid("home method with a point", "pickup_point_id", |r| r.pickup_point_id = "locker-1".into())
            .invalid("future order", "order_time", |r| {
                r.order_time = Some(attune_kit::types::time::to_proto(Utc::now() + Duration::days(1)))
            })
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .refused("unknown slot", Code::NotFound, |r| r.slot_id = "s-none".into())
            .refused("unknown pickup point", Code::NotFound, |r| {
                r.delivery_method = M::PickupPoint.into();
                r.slot_id.clear();
                r.pickup_point_id = "locker-none".into();
            })
            .refused("slot of another method", Code::FailedPrecondition, |r| r.delivery_method = M::HomeSameDay.into());
        assert_each_rejected(db, valid_choice, cases, |r| {
            let mut c = client.clone();
            async move { c.record_order_choice(r).await }
        })
        .await;
    }

    async fn lowering_capacity_below_what_is_reserved_is_refused(app) {
        let start = Utc::now() + Duration::days(1);
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, start, 3)]).await;
        app.reserve("c-1", "s-1").await.unwrap();
        app.reserve("c-2", "s-1").await.unwrap();
        let error = app
            .delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                update_mask: None,
                slots: vec![slot("s-1", M::HomeScheduled, start, 1)],
                request_id: "shrink".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, start, 2)]).await;
        assert_eq!(app.reserve("c-3", "s-1").await.unwrap_err().code(), Code::ResourceExhausted);
    }
}
