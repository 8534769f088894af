//! Delivery over real gRPC on SQLite and PostgreSQL: slots that never overbook,
//! expiring holds, distances, prices, payment rules, ranking, quotes, and
//! encrypted addresses that erasure makes unreadable.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::sea_orm::{ConnectionTrait, Statement};
use attune_proto::common::v1::{DeliveryMethod as M, NonPersonalizedReason, PaymentMethod as P};
use attune_proto::delivery::v1 as pb;
use attune_tests::delivery::{at, cart, geo, pickup, rate, slot};
use attune_tests::profile_events::{eur, item, purchase};
use attune_tests::{TestApp, backend_tests};
use chrono::{Duration, Timelike, Utc};
use tonic::Code;

fn methods(options: &pb::GetDeliveryOptionsResponse) -> Vec<M> {
    options
        .delivery_options
        .iter()
        .map(|o| M::try_from(o.method).unwrap())
        .collect()
}

fn reasons(option: &pb::DeliveryOption) -> Vec<pb::OptionReasonKind> {
    option
        .reasons
        .iter()
        .map(|r| pb::OptionReasonKind::try_from(r.kind).unwrap())
        .collect()
}

/// A rate arriving from `lead` days on.
fn rate_with_lead(id: &str, method: M, price: i64, lead: i32) -> pb::ShippingRate {
    pb::ShippingRate {
        min_lead_days: lead,
        max_lead_days: lead + 1,
        ..rate(id, method, price)
    }
}

async fn db_rows(app: &TestApp, sql: &str) -> Vec<attune_kit::sea_orm::QueryResult> {
    let db = attune_kit::db::connect(&app.config.database).await.unwrap();
    let backend = db.get_database_backend();
    db.query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
}

backend_tests! {
    async fn reservations_never_overbook_under_concurrency(app) {
        let start = Utc::now() + Duration::days(2);
        app.upsert_slots(vec![slot("s-10", M::HomeScheduled, start, 10)]).await;
        let mut tasks = Vec::new();
        for i in 0..100 {
            let client = app.delivery();
            tasks.push(tokio::spawn(async move {
                let mut client = client;
                // A burst may exhaust the connection pool: UNAVAILABLE means retry,
                // and the same request id makes the retry safe.
                for _ in 0..100 {
                    let answer = client
                        .reserve_slot(pb::ReserveSlotRequest {
                            customer_id: format!("c-{i}"),
                            slot_id: "s-10".into(),
                            request_id: format!("r-{i}"),
                            ..Default::default()
                        })
                        .await;
                    match answer {
                        Err(status) if status.code() == Code::Unavailable => {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        answer => return answer,
                    }
                }
                panic!("reservation {i} stayed unavailable");
            }));
        }
        let mut succeeded = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => succeeded += 1,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
            }
        }
        assert_eq!(succeeded, 10);
        let rows = db_rows(&app, "SELECT reservation_id FROM delivery_reservations").await;
        assert_eq!(rows.len(), 10);
        let full = app.reserve("late", "s-10").await.unwrap_err();
        assert_eq!(full.code(), Code::ResourceExhausted);
    }

    async fn expired_holds_free_their_capacity(app, clock) {
        let start = clock.clock().now() + Duration::days(1);
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, start, 1)]).await;
        let first = app.reserve("c-1", "s-1").await.unwrap().reservation.unwrap();
        assert_eq!(app.reserve("c-2", "s-1").await.unwrap_err().code(), Code::ResourceExhausted);
        clock.advance(Duration::minutes(16));
        let got = app
            .delivery()
            .get_reservation(pb::GetReservationRequest {
                customer_id: "c-1".into(),
                reservation_id: first.reservation_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.reservation.unwrap().state, pb::ReservationState::Expired as i32);
        assert_eq!(got.slot.unwrap().available_count, 1);
        let second = app.reserve("c-2", "s-1").await.unwrap();
        assert_eq!(second.slot.unwrap().available_count, 0);
        let late = app
            .delivery()
            .confirm_reservation(pb::ConfirmReservationRequest {
                customer_id: "c-1".into(),
                reservation_id: first.reservation_id,
                order_id: "o-1".into(),
                request_id: "confirm-1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(late.code(), Code::FailedPrecondition);
        // Confirmed, the second hold outlives its hold time.
        let confirmed = app
            .delivery()
            .confirm_reservation(pb::ConfirmReservationRequest {
                customer_id: "c-2".into(),
                reservation_id: second.reservation.unwrap().reservation_id,
                order_id: "o-2".into(),
                request_id: "confirm-2".into(),
            })
            .await
            .unwrap()
            .into_inner();
        clock.advance(Duration::hours(2));
        assert_eq!(confirmed.reservation.unwrap().state, pb::ReservationState::Confirmed as i32);
        assert_eq!(app.reserve("c-3", "s-1").await.unwrap_err().code(), Code::ResourceExhausted);
    }

    async fn nearest_pickup_points_are_measured_by_great_circle(app) {
        // From the Brandenburg Gate: Alexanderplatz (2483 m by haversine), Potsdamer Platz
        // (740 m) and Hamburg's town hall (253367 m), on a sphere of radius 6371008.8 m.
        app.upsert_pickup_points(vec![
            pickup("alex", pb::PickupPointKind::Locker, 52.521918, 13.413215),
            pickup("potsdamer", pb::PickupPointKind::Counter, 52.509663, 13.376481),
            pickup("hamburg", pb::PickupPointKind::Store, 53.550341, 10.000654),
        ])
        .await;
        let found = app
            .delivery()
            .find_nearest_pickup_points(pb::FindNearestPickupPointsRequest {
                location: Some(geo(52.516275, 13.377704)),
                max_distance_meters: 500_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pickup_points;
        let got: Vec<(String, i32)> = found
            .iter()
            .map(|p| (p.pickup_point.clone().unwrap().pickup_point_id, p.distance_meters))
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "potsdamer");
        assert_eq!(got[0].1, 740, "{got:?}");
        assert_eq!(got[1].0, "alex");
        assert_eq!(got[1].1, 2483, "{got:?}");
        assert_eq!(got[2].0, "hamburg");
        assert_eq!(got[2].1, 253_367, "{got:?}");
        let near = app
            .delivery()
            .find_nearest_pickup_points(pb::FindNearestPickupPointsRequest {
                location: Some(geo(52.516275, 13.377704)),
                kinds: vec![pb::PickupPointKind::Locker.into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .pickup_points;
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].pickup_point.as_ref().unwrap().pickup_point_id, "alex");
    }

    async fn prices_follow_tiers_weights_thresholds_and_cutoffs(app, clock) {
        let now = clock.clock().now();
        let mut standard = rate("std", M::HomeStandard, 499);
        standard.basket_tiers = vec![pb::BasketTier {
            min_basket_value: Some(eur(3000)),
            price: Some(eur(299)),
        }];
        standard.weight_surcharges = vec![pb::WeightSurcharge {
            min_weight_grams: 10_000,
            surcharge: Some(eur(500)),
        }];
        standard.free_above = Some(eur(10_000));
        let mut same_day = rate("same", M::HomeSameDay, 999);
        same_day.min_lead_days = 0;
        same_day.max_lead_days = 0;
        // Local time is noon now (by the rate's offset); the cut-off is 13:00.
        same_day.utc_offset_minutes = 720 - (now.hour() * 60 + now.minute()) as i32;
        same_day.cutoff_minute = Some(780);
        app.upsert_rates(vec![standard, same_day]).await;
        app.upsert_slots(vec![slot("sd", M::HomeSameDay, now + Duration::hours(5), 5)]).await;
        let price_of = |options: &pb::GetDeliveryOptionsResponse, method: M| {
            options
                .delivery_options
                .iter()
                .find(|o| o.method == method as i32)
                .map(|o| o.price.clone().unwrap().amount_minor)
        };
        let small = app.delivery_options("", at(52.5, 13.4), cart(2000, 500)).await;
        assert_eq!(price_of(&small, M::HomeStandard), Some(499));
        let tier = app.delivery_options("", at(52.5, 13.4), cart(5000, 500)).await;
        assert_eq!(price_of(&tier, M::HomeStandard), Some(299));
        let heavy = app.delivery_options("", at(52.5, 13.4), cart(5000, 12_000)).await;
        assert_eq!(price_of(&heavy, M::HomeStandard), Some(799));
        let free = app.delivery_options("", at(52.5, 13.4), cart(12_000, 500)).await;
        let option = free.delivery_options.iter().find(|o| o.method == M::HomeStandard as i32).unwrap();
        assert_eq!(option.price.clone().unwrap().amount_minor, 0);
        assert_eq!(option.original_price.clone().unwrap().amount_minor, 299);
        assert!(reasons(option).contains(&pb::OptionReasonKind::FreeDelivery));
        assert_eq!(price_of(&small, M::HomeSameDay), Some(999));
        clock.advance(Duration::minutes(61));
        let late = app.delivery_options("", at(52.5, 13.4), cart(2000, 500)).await;
        assert_eq!(price_of(&late, M::HomeSameDay), None, "past the cut-off");
        assert_eq!(late.tier_benefits_status, pb::TierBenefitsStatus::NoCustomer as i32);
        assert_eq!(
            late.personalization.unwrap().non_personalized_reason,
            NonPersonalizedReason::NoCustomer as i32
        );
        // Another currency's rates are not offered.
        let mut usd = cart(2000, 500);
        usd.total = Some(attune_proto::common::v1::Money { amount_minor: 2000, currency_code: "USD".into() });
        assert!(app.delivery_options("", at(52.5, 13.4), usd).await.delivery_options.is_empty());
    }

    async fn payment_methods_follow_their_availability_rules(app) {
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499)]).await;
        app.delivery()
            .upsert_payment_method_rules(pb::UpsertPaymentMethodRulesRequest {
                update_mask: None,
                rules: vec![
                    pb::PaymentMethodRule {
                        method: P::BuyNowPayLater.into(),
                        active: true,
                        min_basket_value: Some(eur(5000)),
                        max_basket_value: Some(eur(100_000)),
                        delivery_methods: Vec::new(),
                    },
                    pb::PaymentMethodRule {
                        method: P::CashOnDelivery.into(),
                        active: false,
                        ..Default::default()
                    },
                ],
                request_id: "rules-1".into(),
            })
            .await
            .unwrap();
        let offered = |options: pb::GetDeliveryOptionsResponse| {
            options
                .payment_methods
                .into_iter()
                .map(|p| P::try_from(p.method).unwrap())
                .collect::<Vec<_>>()
        };
        let small = offered(app.delivery_options("", at(52.5, 13.4), cart(2000, 1)).await);
        assert!(!small.contains(&P::BuyNowPayLater));
        assert!(!small.contains(&P::CashOnDelivery));
        assert!(small.contains(&P::Card));
        let mid = offered(app.delivery_options("", at(52.5, 13.4), cart(20_000, 1)).await);
        assert!(mid.contains(&P::BuyNowPayLater));
        let big = offered(app.delivery_options("", at(52.5, 13.4), cart(200_000, 1)).await);
        assert!(!big.contains(&P::BuyNowPayLater));
    }

    async fn ranking_follows_explicit_then_learned_preferences(app) {
        app.upsert_rates(vec![
            rate("std", M::HomeStandard, 499),
            rate("pp", M::PickupPoint, 299),
            rate_with_lead("nd", M::HomeNextDay, 899, 0),
        ])
        .await;
        app.upsert_pickup_points(vec![pickup("locker-1", pb::PickupPointKind::Locker, 52.5005, 13.4)]).await;
        let customer = "c-learned";
        app.grant(customer, &["personalization"]).await;
        // A history: next-day mostly, paid with Apple Pay.
        let now = Utc::now();
        let mut events = Vec::new();
        for (i, method) in [M::HomeNextDay, M::HomeNextDay, M::HomeNextDay, M::HomeStandard].iter().enumerate() {
            let mut event = purchase(
                &format!("e-{i}"),
                customer,
                now - Duration::days(i as i64 + 1),
                vec![item("sku", 1, Some(eur(1000)), &[], "")],
                eur(1000),
            );
            event.delivery_method = (*method).into();
            event.payment_method = P::ApplePay.into();
            events.push(event);
        }
        app.ingest(events).await;
        let mut learned = None;
        for _ in 0..100 {
            let prefs = app
                .delivery()
                .get_delivery_preferences(pb::GetDeliveryPreferencesRequest { customer_id: customer.into() })
                .await
                .unwrap()
                .into_inner();
            if prefs.learned_preferences.as_ref().is_some_and(|l| l.order_count == 4) {
                learned = prefs.learned_preferences;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let learned = learned.expect("the learner follows profile's feed");
        assert_eq!(learned.delivery_methods[0].delivery_method, M::HomeNextDay as i32);
        let options = app.delivery_options(customer, at(52.5, 13.4), cart(2000, 1)).await;
        assert_eq!(methods(&options)[0], M::HomeNextDay, "{options:?}");
        assert_eq!(reasons(&options.delivery_options[0])[0], pb::OptionReasonKind::UsualChoice);
        assert!(options.personalization.as_ref().unwrap().personalized);
        assert_eq!(options.payment_methods[0].method, P::ApplePay as i32);
        let pickup_option = options.delivery_options.iter().find(|o| o.method == M::PickupPoint as i32).unwrap();
        assert_eq!(pickup_option.pickup_point_id, "locker-1");
        assert!((pickup_option.distance_meters - 56).abs() <= 1, "{pickup_option:?}");
        assert!(reasons(pickup_option).contains(&pb::OptionReasonKind::Nearby));
        // Explicit beats learned.
        app.delivery()
            .update_delivery_preferences(pb::UpdateDeliveryPreferencesRequest {
                update_mask: None,
                customer_id: customer.into(),
                preferences: Some(pb::DeliveryPreferences {
                    preferred_delivery_methods: vec![M::PickupPoint.into()],
                    preferred_payment_methods: vec![P::Paypal.into()],
                    ..Default::default()
                }),
                request_id: "prefs-1".into(),
            })
            .await
            .unwrap();
        let options = app.delivery_options(customer, at(52.5, 13.4), cart(2000, 1)).await;
        assert_eq!(methods(&options)[..2], [M::PickupPoint, M::HomeNextDay]);
        assert_eq!(reasons(&options.delivery_options[0])[0], pb::OptionReasonKind::Preferred);
        assert_eq!(options.payment_methods[0].method, P::Paypal as i32);
        assert_eq!(options.payment_methods[1].method, P::ApplePay as i32);
        // Without consent: explicit preferences only, and the answer says so.
        let other = "c-no-consent";
        let options = app.delivery_options(other, at(52.5, 13.4), cart(2000, 1)).await;
        let personalization = options.personalization.clone().unwrap();
        assert!(!personalization.personalized);
        assert_eq!(personalization.non_personalized_reason, NonPersonalizedReason::NoConsent as i32);
        // The default: fastest first (next day), then cheapest.
        assert_eq!(methods(&options)[0], M::HomeNextDay);
        // No loyalty account: no tier benefits, and said so.
        assert_eq!(options.tier_benefits_status, pb::TierBenefitsStatus::NoAccount as i32);
    }

    async fn a_quote_holds_its_price_until_the_slot_is_reserved(app) {
        app.upsert_rates(vec![rate("sched", M::HomeScheduled, 700)]).await;
        let start = Utc::now() + Duration::days(1);
        let mut timed = slot("t-1", M::HomeScheduled, start, 3);
        timed.surcharge = Some(eur(100));
        app.upsert_slots(vec![timed]).await;
        let options = app.delivery_options("c-q", at(52.5, 13.4), cart(2000, 1)).await;
        let option = &options.delivery_options[0];
        assert_eq!(option.next_slot.as_ref().unwrap().slot_id, "t-1");
        let token = option.quote_token.clone();
        app.upsert_rates(vec![rate("sched", M::HomeScheduled, 1500)]).await;
        let reserved = app
            .delivery()
            .reserve_slot(pb::ReserveSlotRequest {
                customer_id: "c-q".into(),
                slot_id: "t-1".into(),
                quote_token: token.clone(),
                request_id: "q-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reserved.reservation.unwrap().price.unwrap().amount_minor, 800);
        let stolen = app
            .delivery()
            .reserve_slot(pb::ReserveSlotRequest {
                customer_id: "someone-else".into(),
                slot_id: "t-1".into(),
                quote_token: token,
                request_id: "q-2".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(stolen.code(), Code::FailedPrecondition);
    }

    async fn each_option_gets_its_own_methods_next_free_slot(app) {
        // All methods' slots are read in one statement: each option must still
        // get the earliest slot of its own method, at its own pickup point.
        app.upsert_pickup_points(vec![
            pickup("locker-near", pb::PickupPointKind::Locker, 52.5005, 13.4),
            pickup("locker-far", pb::PickupPointKind::Locker, 52.6, 13.4),
        ])
        .await;
        app.upsert_rates(vec![
            rate("std", M::HomeStandard, 499),
            rate("nd", M::HomeNextDay, 899),
            rate("sched", M::HomeScheduled, 700),
            rate("pp", M::PickupPoint, 299),
        ])
        .await;
        let day = |n: i64| Utc::now() + Duration::days(n);
        let mut far = slot("pp-far", M::PickupPoint, day(1), 3);
        far.pickup_point_id = "locker-far".into();
        let mut near = slot("pp-near", M::PickupPoint, day(3), 3);
        near.pickup_point_id = "locker-near".into();
        app.upsert_slots(vec![
            slot("sched-late", M::HomeScheduled, day(4), 3),
            slot("sched-early", M::HomeScheduled, day(2), 3),
            slot("nd-1", M::HomeNextDay, day(5), 3),
            far,
            near,
        ])
        .await;
        let options = app.delivery_options("c-slots", at(52.5, 13.4), cart(2000, 1)).await;
        let next_slot_of = |method: M| {
            let option = options
                .delivery_options
                .iter()
                .find(|o| o.method == method as i32)
                .unwrap_or_else(|| panic!("{method:?} is offered: {options:?}"));
            option.next_slot.as_ref().map(|s| s.slot_id.clone())
        };
        assert_eq!(next_slot_of(M::HomeScheduled).as_deref(), Some("sched-early"));
        assert_eq!(next_slot_of(M::HomeNextDay).as_deref(), Some("nd-1"));
        assert_eq!(next_slot_of(M::PickupPoint).as_deref(), Some("pp-near"));
        assert_eq!(next_slot_of(M::HomeStandard), None);
        let scheduled = options
            .delivery_options
            .iter()
            .find(|o| o.method == M::HomeScheduled as i32)
            .unwrap();
        assert_eq!(
            scheduled.earliest_arrival_time.as_ref().map(|t| t.seconds),
            scheduled.next_slot.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.seconds),
            "a scheduled option arrives in its slot"
        );
    }

    async fn addresses_are_encrypted_at_rest_and_unreadable_after_erasure(app) {
        let customer = "c-addr";
        let address = app
            .delivery()
            .add_address(pb::AddAddressRequest {
                customer_id: customer.into(),
                address: Some(pb::Address {
                    label: "Home".into(),
                    recipient_name: "Erika Mustermann".into(),
                    postal_address: Some(pb::PostalAddress {
                        address_lines: vec!["Heidestrasse 17".into()],
                        locality: "Koeln".into(),
                        postal_code: "51147".into(),
                        country_code: "DE".into(),
                    }),
                    phone_number: "+4922112345678".into(),
                    delivery_instructions: "Leave with neighbour".into(),
                    location: Some(geo(50.87, 7.14)),
                    ..Default::default()
                }),
                request_id: "add-1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .address
            .unwrap();
        assert!(address.default_address);
        let rows = db_rows(&app, "SELECT * FROM delivery_addresses").await;
        assert_eq!(rows.len(), 1);
        let sealed: Vec<u8> = rows[0].try_get("", "sealed").unwrap();
        for plain in ["Erika", "Heidestrasse", "Koeln", "51147", "4922112345678", "neighbour"] {
            assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_bytes()), "{plain} in clear");
        }
        // Options to the stored address use its (decrypted) place.
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499)]).await;
        let options = app
            .delivery()
            .get_delivery_options(pb::GetDeliveryOptionsRequest {
                customer_id: customer.into(),
                location: Some(pb::Location {
                    value: Some(pb::location::Value::AddressId(address.address_id.clone())),
                }),
                cart: Some(cart(2000, 1)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(methods(&options), [M::HomeStandard]);
        let exported = app.export_customer(customer, "export-1").await;
        let text = format!("{exported:?}");
        assert!(text.contains("Heidestrasse 17"), "the export is decrypted");
        let erased = app.erase_customer(customer, "erase-1").await;
        assert!(erased.complete, "{erased:?}");
        assert!(db_rows(&app, "SELECT * FROM delivery_data_keys").await.is_empty());
        assert!(db_rows(&app, "SELECT * FROM delivery_addresses").await.is_empty());
        let listed = app
            .delivery()
            .list_addresses(pb::ListAddressesRequest { customer_id: customer.into() })
            .await
            .unwrap()
            .into_inner();
        assert!(listed.addresses.is_empty());
    }

    async fn rates_serve_their_postal_prefixes_and_radius(app) {
        let mut berlin = rate("berlin", M::HomeSameDay, 999);
        berlin.min_lead_days = 0;
        berlin.max_lead_days = 0;
        berlin.service_area = Some(pb::ServiceArea {
            country_code: "DE".into(),
            postal_code_prefixes: vec!["10".into(), "12".into()],
            center: Some(geo(52.520008, 13.404954)),
            radius_meters: 30_000,
        });
        app.upsert_rates(vec![berlin, rate("std", M::HomeStandard, 499)]).await;
        app.upsert_slots(vec![slot("sd", M::HomeSameDay, Utc::now() + Duration::hours(6), 5)]).await;
        let postal = |code: &str| pb::Location {
            value: Some(pb::location::Value::PostalLocation(pb::PostalLocation {
                country_code: "DE".into(),
                postal_code: code.into(),
            })),
        };
        let in_berlin = app.delivery_options("", postal("10117"), cart(2000, 1)).await;
        assert_eq!(methods(&in_berlin), [M::HomeSameDay, M::HomeStandard]);
        let in_munich = app.delivery_options("", postal("80331"), cart(2000, 1)).await;
        assert_eq!(methods(&in_munich), [M::HomeStandard]);
        // Potsdam (about 27 km from the centre) by position, Hamburg not.
        let potsdam = app.delivery_options("", at(52.3906, 13.0645), cart(2000, 1)).await;
        assert_eq!(methods(&potsdam)[0], M::HomeSameDay);
        let hamburg = app.delivery_options("", at(53.550341, 10.000654), cart(2000, 1)).await;
        assert_eq!(methods(&hamburg), [M::HomeStandard]);
        // Another country is served by neither.
        let mut vienna = at(48.2082, 16.3738);
        if let Some(pb::location::Value::GeoLocation(geo)) = vienna.value.as_mut() {
            geo.country_code = "AT".into();
        }
        assert!(app.delivery_options("", vienna, cart(2000, 1)).await.delivery_options.is_empty());
    }

    async fn recent_orders_weigh_more_than_old_ones(app) {
        let customer = "c-recency";
        app.grant(customer, &["personalization"]).await;
        let now = Utc::now();
        let mut events = Vec::new();
        // Three standard deliveries 300 days ago, one next-day delivery last week:
        // with a 90-day half-life the recent one outweighs the three (1 vs 0.30).
        for (i, (method, days)) in [(M::HomeStandard, 300), (M::HomeStandard, 301), (M::HomeStandard, 302), (M::HomeNextDay, 7)]
            .into_iter()
            .enumerate()
        {
            let mut event = purchase(
                &format!("r-{i}"),
                customer,
                now - Duration::days(days),
                vec![item("sku", 1, Some(eur(1000)), &[], "")],
                eur(1000),
            );
            event.delivery_method = method.into();
            events.push(event);
        }
        assert_eq!(app.ingest(events).await.accepted_count, 4);
        for _ in 0..100 {
            let learned = app
                .delivery()
                .get_delivery_preferences(pb::GetDeliveryPreferencesRequest { customer_id: customer.into() })
                .await
                .unwrap()
                .into_inner()
                .learned_preferences
                .unwrap();
            if learned.order_count == 4 {
                let top = &learned.delivery_methods[0];
                assert_eq!(top.delivery_method, M::HomeNextDay as i32, "{learned:?}");
                assert_eq!(top.order_count, 1);
                assert!(top.weight > 0.7 && top.weight < 0.8, "{learned:?}");
                assert_eq!(learned.delivery_methods[1].order_count, 3);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the orders were never learned");
    }
}
