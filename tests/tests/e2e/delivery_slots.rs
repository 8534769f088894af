//! Delivery's slot counters, the available-slots listing, choices recorded at
//! checkout and the in-memory network across replicas, over real gRPC on SQLite
//! and PostgreSQL.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_kit::types::time;
use attune_proto::common::v1::{DeliveryMethod as M, NonPersonalizedReason, PaymentMethod as P};
use attune_proto::delivery::v1 as pb;
use attune_tests::delivery::{assert_counters_agree, at, cart, pickup, rate, slot};
use attune_tests::{TestApp, backend_tests, every_page};
use chrono::{Duration, Utc};
use tonic::Code;

async fn release(app: &TestApp, customer: &str, reservation_id: &str, request_id: &str) {
    app.delivery()
        .release_reservation(pb::ReleaseReservationRequest {
            customer_id: customer.into(),
            reservation_id: reservation_id.into(),
            request_id: request_id.into(),
        })
        .await
        .unwrap();
}

async fn list(
    app: &TestApp,
    method: M,
    point: &str,
    from: chrono::DateTime<Utc>,
    page_size: i32,
) -> Vec<pb::DeliverySlot> {
    every_page(async |page_token| {
        let page = app
            .delivery()
            .list_available_slots(pb::ListAvailableSlotsRequest {
                method: method.into(),
                pickup_point_id: point.into(),
                start_time: Some(time::to_proto(from)),
                end_time: Some(time::to_proto(from + Duration::days(7))),
                page_size,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        (page.slots, page.next_page_token)
    })
    .await
}

async fn record_choice(
    app: &TestApp,
    request: pb::RecordOrderChoiceRequest,
) -> pb::RecordOrderChoiceResponse {
    app.delivery()
        .record_order_choice(request)
        .await
        .unwrap()
        .into_inner()
}

backend_tests! {
    async fn expired_holds_are_freed_exactly_once_under_concurrency(app, clock) {
        let start = clock.clock().now() + Duration::days(1);
        app.upsert_slots(vec![slot("s-3", M::HomeScheduled, start, 3)]).await;
        let mut held = Vec::new();
        for customer in ["c-1", "c-2", "c-3"] {
            held.push(app.reserve(customer, "s-3").await.unwrap().reservation.unwrap());
        }
        assert_eq!(app.reserve("c-4", "s-3").await.unwrap_err().code(), Code::ResourceExhausted);
        // One hold confirmed, one released: its unit is free at once, and a
        // second release gives nothing back twice.
        app.delivery()
            .confirm_reservation(pb::ConfirmReservationRequest {
                customer_id: "c-1".into(),
                reservation_id: held[0].reservation_id.clone(),
                order_id: "o-1".into(),
                request_id: "confirm-1".into(),
            })
            .await
            .unwrap();
        release(&app, "c-2", &held[1].reservation_id, "release-1").await;
        release(&app, "c-2", &held[1].reservation_id, "release-2").await;
        assert_counters_agree(&app).await;
        // The third hold expires; then 20 customers race for what is free: the
        // released unit and the expired one, exactly 2.
        clock.advance(Duration::minutes(16));
        release(&app, "c-3", &held[2].reservation_id, "release-expired").await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let client = app.delivery();
            tasks.push(tokio::spawn(async move {
                let mut client = client;
                loop {
                    let answer = client
                        .reserve_slot(pb::ReserveSlotRequest {
                            customer_id: format!("racer-{i}"),
                            slot_id: "s-3".into(),
                            request_id: format!("race-{i}"),
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
            }));
        }
        let mut succeeded = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => succeeded += 1,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
            }
        }
        assert_eq!(succeeded, 2);
        assert_counters_agree(&app).await;
        let expired = app
            .delivery()
            .get_reservation(pb::GetReservationRequest {
                customer_id: "c-3".into(),
                reservation_id: held[2].reservation_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(expired.reservation.unwrap().state, pb::ReservationState::Expired as i32);
        assert_eq!(expired.slot.unwrap().available_count, 0);
        // Lowering the capacity below what is held is refused; to it, accepted.
        let lower = app
            .delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                update_mask: None,
                slots: vec![slot("s-3", M::HomeScheduled, start, 2)],
                request_id: "lower-2".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(lower.code(), Code::FailedPrecondition);
        app.upsert_slots(vec![slot("s-3", M::HomeScheduled, start, 3)]).await;
        assert_counters_agree(&app).await;
    }

    async fn erasure_gives_the_customers_units_back(app) {
        let start = Utc::now() + Duration::days(1);
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, start, 1)]).await;
        app.reserve("c-gone", "s-1").await.unwrap();
        assert_eq!(app.reserve("c-other", "s-1").await.unwrap_err().code(), Code::ResourceExhausted);
        let pod = app.pod("delivery").await;
        pod.internal_data_subject()
            .erase_customer(attune_proto::privacy::v1::EraseCustomerRequest {
                customer_id: "c-gone".into(),
                request_id: "erase-1".into(),
            })
            .await
            .unwrap();
        assert_counters_agree(&app).await;
        app.reserve("c-other", "s-1").await.unwrap();
    }

    async fn available_slots_are_listed_soonest_first_and_paged(app) {
        let start = Utc::now() + Duration::days(1);
        app.upsert_pickup_points(vec![pickup("locker-1", pb::PickupPointKind::Locker, 52.5, 13.4)]).await;
        let mut slots: Vec<pb::DeliverySlot> = (0..7)
            .map(|h| slot(&format!("home-{h}"), M::HomeScheduled, start + Duration::hours(h), 1))
            .collect();
        // Same start as home-3: the slot id breaks the tie.
        slots.push(slot("home-3b", M::HomeScheduled, start + Duration::hours(3), 1));
        slots.push(pb::DeliverySlot {
            active: false,
            ..slot("home-off", M::HomeScheduled, start, 5)
        });
        slots.push(slot("far-away", M::HomeScheduled, start + Duration::days(30), 5));
        slots.push(pb::DeliverySlot {
            pickup_point_id: "locker-1".into(),
            ..slot("locker-slot", M::PickupPoint, start, 5)
        });
        app.upsert_slots(slots).await;
        app.reserve("c-1", "home-2").await.unwrap();
        let listed = list(&app, M::HomeScheduled, "", Utc::now(), 3).await;
        let ids: Vec<&str> = listed.iter().map(|s| s.slot_id.as_str()).collect();
        assert_eq!(ids, ["home-0", "home-1", "home-3", "home-3b", "home-4", "home-5", "home-6"]);
        assert!(listed.iter().all(|s| s.available_count == 1 && s.reserved_count == 0));
        let later = list(&app, M::HomeScheduled, "", start + Duration::hours(5), 50).await;
        assert_eq!(later.iter().map(|s| s.slot_id.as_str()).collect::<Vec<_>>(), ["home-5", "home-6"]);
        let at_locker = list(&app, M::PickupPoint, "locker-1", Utc::now(), 0).await;
        assert_eq!(at_locker.len(), 1);
        assert_eq!(at_locker[0].available_count, 5);
        let missing_point = app
            .delivery()
            .list_available_slots(pb::ListAvailableSlotsRequest {
                method: M::PickupPoint.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing_point.code(), Code::InvalidArgument);
    }

    async fn choices_recorded_at_checkout_teach_only_with_consent(app) {
        let start = Utc::now() + Duration::days(1);
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499), rate("sched", M::HomeScheduled, 699)]).await;
        app.upsert_slots(vec![slot("eve", M::HomeScheduled, start, 5)]).await;
        let choice = |customer: &str, order: &str, request: &str| pb::RecordOrderChoiceRequest {
            customer_id: customer.into(),
            order_id: order.into(),
            delivery_method: M::HomeScheduled.into(),
            payment_method: P::BuyNowPayLater.into(),
            slot_id: "eve".into(),
            request_id: request.into(),
            ..Default::default()
        };
        // Without personalization nothing is kept, and the answer says why.
        let refused = record_choice(&app, choice("c-none", "o-1", "choice-none")).await;
        assert!(!refused.recorded);
        assert_eq!(refused.not_recorded_reason, NonPersonalizedReason::NoConsent as i32);
        let customer = "c-chooser";
        app.grant(customer, &["personalization"]).await;
        for i in 0..3 {
            let answer = record_choice(&app, choice(customer, &format!("o-{i}"), &format!("choice-{i}"))).await;
            assert!(answer.recorded);
        }
        // A replay is the same answer and no second row; other content under
        // the same id is ALREADY_EXISTS.
        assert!(record_choice(&app, choice(customer, "o-0", "choice-0")).await.recorded);
        let reused = app
            .delivery()
            .record_order_choice(choice(customer, "o-9", "choice-0"))
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
        let prefs = app
            .delivery()
            .get_delivery_preferences(pb::GetDeliveryPreferencesRequest { customer_id: customer.into() })
            .await
            .unwrap()
            .into_inner();
        let learned = prefs.learned_preferences.unwrap();
        assert_eq!(learned.order_count, 3);
        assert_eq!(learned.delivery_methods[0].delivery_method, M::HomeScheduled as i32);
        assert_eq!(learned.payment_methods[0].payment_method, P::BuyNowPayLater as i32);
        assert_eq!(learned.usual_time_windows.len(), 1, "{learned:?}");
        let options = app.delivery_options(customer, at(52.5, 13.4), cart(2000, 1)).await;
        assert_eq!(options.delivery_options[0].method, M::HomeScheduled as i32);
        assert_eq!(options.payment_methods[0].method, P::BuyNowPayLater as i32);
        // A slot of another method, or one that does not exist, is refused.
        let wrong = app
            .delivery()
            .record_order_choice(pb::RecordOrderChoiceRequest {
                delivery_method: M::HomeSameDay.into(),
                ..choice(customer, "o-7", "choice-7")
            })
            .await
            .unwrap_err();
        assert_eq!(wrong.code(), Code::FailedPrecondition);
        let unknown = app
            .delivery()
            .record_order_choice(pb::RecordOrderChoiceRequest {
                slot_id: "nope".into(),
                ..choice(customer, "o-8", "choice-8")
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }

    async fn an_admin_change_reaches_every_replica(app) {
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499)]).await;
        let replica = app.pod("delivery").await;
        let price = |options: &pb::GetDeliveryOptionsResponse| {
            options.delivery_options[0].price.as_ref().unwrap().amount_minor
        };
        assert_eq!(price(&replica.delivery_options("", at(52.5, 13.4), cart(2000, 1)).await), 499);
        // Through the monolith: it serves its own change at once...
        app.upsert_rates(vec![rate("std", M::HomeStandard, 599)]).await;
        assert_eq!(price(&app.delivery_options("", at(52.5, 13.4), cart(2000, 1)).await), 599);
        // ...and the replica within its refresh interval (1 s by default).
        let mut seen = None;
        for _ in 0..100 {
            let now = price(&replica.delivery_options("", at(52.5, 13.4), cart(2000, 1)).await);
            if now == 599 {
                seen = Some(now);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(seen, Some(599), "the replica never served the new rate");
        // A new pickup point, too.
        app.upsert_pickup_points(vec![pickup("locker-new", pb::PickupPointKind::Locker, 52.5, 13.4)]).await;
        let mut found = false;
        for _ in 0..100 {
            let nearest = replica
                .delivery()
                .find_nearest_pickup_points(pb::FindNearestPickupPointsRequest {
                    location: Some(attune_tests::delivery::geo(52.5, 13.4)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if !nearest.pickup_points.is_empty() {
                found = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(found, "the replica never served the new pickup point");
    }

    async fn partial_updates_change_only_the_named_fields(app) {
        let start = Utc::now() + Duration::days(1);
        app.upsert_rates(vec![rate("std", M::HomeStandard, 499)]).await;
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, start, 5)]).await;
        let mask = |paths: &[&str]| Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() });
        // A slot's capacity alone: the window and the rest are kept.
        app.delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                slots: vec![pb::DeliverySlot { slot_id: "s-1".into(), capacity: 8, ..Default::default() }],
                request_id: "capacity-8".into(),
                update_mask: mask(&["capacity"]),
            })
            .await
            .unwrap();
        let listed = list(&app, M::HomeScheduled, "", Utc::now(), 0).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].capacity, 8);
        assert_eq!(listed[0].start_time, Some(time::to_proto(start)));
        // Clearing a required field through the mask is refused, and changes nothing.
        let cleared = app
            .delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                slots: vec![pb::DeliverySlot { slot_id: "s-1".into(), ..Default::default() }],
                request_id: "clear-end".into(),
                update_mask: mask(&["end_time"]),
            })
            .await
            .unwrap_err();
        assert_eq!(cleared.code(), Code::InvalidArgument);
        assert_eq!(attune_tests::violated_fields(&cleared), ["slots[0].end_time"]);
        let unknown = app
            .delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                slots: vec![pb::DeliverySlot { slot_id: "s-1".into(), ..Default::default() }],
                request_id: "bad-path".into(),
                update_mask: mask(&["reserved_count"]),
            })
            .await
            .unwrap_err();
        assert_eq!(attune_tests::violated_fields(&unknown), ["update_mask.paths[0]"]);
        assert_eq!(list(&app, M::HomeScheduled, "", Utc::now(), 0).await[0].capacity, 8);
        // Deactivated through the mask: no longer listed.
        app.delivery()
            .upsert_slots(pb::UpsertSlotsRequest {
                slots: vec![pb::DeliverySlot { slot_id: "s-1".into(), active: false, ..Default::default() }],
                request_id: "off".into(),
                update_mask: mask(&["active"]),
            })
            .await
            .unwrap();
        assert!(list(&app, M::HomeScheduled, "", Utc::now(), 0).await.is_empty());
        // A rate's price alone: its service area is kept, so it still serves.
        app.delivery()
            .upsert_shipping_rates(pb::UpsertShippingRatesRequest {
                rates: vec![pb::ShippingRate {
                    rate_id: "std".into(),
                    price: Some(attune_tests::profile_events::eur(599)),
                    ..Default::default()
                }],
                request_id: "price-599".into(),
                update_mask: mask(&["price"]),
            })
            .await
            .unwrap();
        let options = app.delivery_options("", at(52.5, 13.4), cart(2000, 1)).await;
        assert_eq!(options.delivery_options[0].price.as_ref().unwrap().amount_minor, 599);
        // A pickup point's name alone.
        app.upsert_pickup_points(vec![pickup("locker-1", pb::PickupPointKind::Locker, 52.5, 13.4)]).await;
        app.delivery()
            .upsert_pickup_points(pb::UpsertPickupPointsRequest {
                pickup_points: vec![pb::PickupPoint {
                    pickup_point_id: "locker-1".into(),
                    display_name: "Locker at the station".into(),
                    ..Default::default()
                }],
                request_id: "rename".into(),
                update_mask: mask(&["display_name"]),
            })
            .await
            .unwrap();
        let points = app
            .delivery()
            .list_pickup_points(pb::ListPickupPointsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .pickup_points;
        assert_eq!(points[0].display_name, "Locker at the station");
        assert!(points[0].location.is_some() && points[0].active);
        // Preferences: one field changes, the others stay.
        let customer = "c-prefs";
        let update = |preferences: pb::DeliveryPreferences, paths: Option<prost_types::FieldMask>, id: &str| {
            pb::UpdateDeliveryPreferencesRequest {
                customer_id: customer.into(),
                preferences: Some(preferences),
                request_id: id.into(),
                update_mask: paths,
            }
        };
        app.delivery()
            .update_delivery_preferences(update(
                pb::DeliveryPreferences {
                    preferred_delivery_methods: vec![M::PickupPoint.into()],
                    delivery_instructions: "Leave it with the neighbour".into(),
                    ..Default::default()
                },
                None,
                "prefs-whole",
            ))
            .await
            .unwrap();
        let changed = app
            .delivery()
            .update_delivery_preferences(update(
                pb::DeliveryPreferences { contactless_delivery: true, ..Default::default() },
                mask(&["contactless_delivery"]),
                "prefs-contactless",
            ))
            .await
            .unwrap()
            .into_inner()
            .preferences
            .unwrap();
        assert!(changed.contactless_delivery);
        assert_eq!(changed.preferred_delivery_methods, vec![M::PickupPoint as i32]);
        assert_eq!(changed.delivery_instructions, "Leave it with the neighbour");
    }
}
