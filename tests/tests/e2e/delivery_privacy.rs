//! Delivery's own data-subject API (export paging, decrypted addresses, erasure
//! by request id), retries of its writes, and what merges do to learned
//! preferences.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::common::v1::{DeliveryMethod as M, PaymentMethod as P};
use attune_proto::delivery::v1 as pb;
use attune_tests::delivery::{geo, slot};
use attune_tests::profile_events::{eur, item, purchase};
use attune_tests::{TestApp, backend_tests, privacy_pb, profile_pb};
use chrono::{Duration, Utc};
use tonic::Code;

fn address(line: &str) -> pb::Address {
    pb::Address {
        recipient_name: "Grace Hopper".into(),
        postal_address: Some(pb::PostalAddress {
            address_lines: vec![line.into()],
            locality: "Hamburg".into(),
            postal_code: "20095".into(),
            country_code: "DE".into(),
        }),
        location: Some(geo(53.55, 10.0)),
        ..Default::default()
    }
}

async fn add(app: &TestApp, customer: &str, line: &str, request_id: &str) -> pb::Address {
    app.delivery()
        .add_address(pb::AddAddressRequest {
            customer_id: customer.into(),
            address: Some(address(line)),
            request_id: request_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap()
}

async fn learned(app: &TestApp, customer: &str, orders: i32) -> pb::LearnedPreferences {
    for _ in 0..100 {
        let prefs = app
            .delivery()
            .get_delivery_preferences(pb::GetDeliveryPreferencesRequest {
                customer_id: customer.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let learned = prefs.learned_preferences.unwrap();
        if learned.order_count == orders {
            return learned;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{customer} never had {orders} orders learned");
}

backend_tests! {
    async fn the_export_pages_through_decrypted_addresses_and_reservations(app) {
        let customer = "c-export";
        add(&app, customer, "Jungfernstieg 1", "a-1").await;
        add(&app, customer, "Moenckebergstrasse 2", "a-2").await;
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, Utc::now() + Duration::days(1), 2)])
            .await;
        app.reserve(customer, "s-1").await.unwrap();
        let pod = app.pod("delivery").await;
        let mut api = pod.internal_data_subject();
        let mut records = Vec::new();
        let mut token = String::new();
        loop {
            let page = api
                .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                    customer_id: customer.into(),
                    request_id: "export-1".into(),
                    page_token: token.clone(),
                    page_size: 2,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.records.len() <= 2);
            records.extend(page.records);
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds, ["address", "address", "reservation"]);
        let text = format!("{records:?}");
        assert!(text.contains("Jungfernstieg 1") && text.contains("Moenckebergstrasse 2"));
        // The same export id for another customer is refused.
        let reused = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: "c-other".into(),
                request_id: "export-1".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
        // Erasure is idempotent by request id: a retry answers the same count.
        let erase = || privacy_pb::EraseCustomerRequest {
            customer_id: customer.into(),
            request_id: "erase-1".into(),
        };
        let first = api.erase_customer(erase()).await.unwrap().into_inner();
        assert_eq!(first.erased_record_count, 4, "{first:?}");
        let again = api.erase_customer(erase()).await.unwrap().into_inner();
        assert_eq!(again.erased_record_count, 4);
        let after = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: customer.into(),
                request_id: "export-2".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(after.records.is_empty());
        let linked = api
            .list_linked_customer_ids(privacy_pb::ListLinkedCustomerIdsRequest {
                customer_id: customer.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(linked.customer_ids.is_empty());
    }

    async fn retried_writes_answer_the_original_and_write_once(app) {
        let first = add(&app, "c-retry", "Jungfernstieg 1", "same-id").await;
        let again = add(&app, "c-retry", "Jungfernstieg 1", "same-id").await;
        assert_eq!(first.address_id, again.address_id);
        let listed = app
            .delivery()
            .list_addresses(pb::ListAddressesRequest { customer_id: "c-retry".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.addresses.len(), 1);
        app.upsert_slots(vec![slot("s-1", M::HomeScheduled, Utc::now() + Duration::days(1), 1)])
            .await;
        let reserve = || pb::ReserveSlotRequest {
            customer_id: "c-retry".into(),
            slot_id: "s-1".into(),
            request_id: "reserve-once".into(),
            ..Default::default()
        };
        let held = app.delivery().reserve_slot(reserve()).await.unwrap().into_inner();
        // The slot is full now, yet the retry gets the original reservation.
        let retried = app.delivery().reserve_slot(reserve()).await.unwrap().into_inner();
        assert_eq!(
            held.reservation.unwrap().reservation_id,
            retried.reservation.unwrap().reservation_id
        );
        assert_eq!(retried.slot.unwrap().available_count, 0);
    }

    async fn a_merged_visitors_orders_teach_the_surviving_customer(app) {
        let (visitor, customer) = ("visitor-1", "c-merge");
        for id in [visitor, customer] {
            app.grant(id, &["personalization"]).await;
        }
        let now = Utc::now();
        let mut events = Vec::new();
        for (i, who) in [visitor, visitor, customer].iter().enumerate() {
            let mut event = purchase(
                &format!("m-{i}"),
                who,
                now - Duration::days(1),
                vec![item("sku", 1, Some(eur(500)), &[], "")],
                eur(500),
            );
            event.delivery_method = M::PickupPoint.into();
            event.payment_method = P::GooglePay.into();
            event.pickup_point_id = "locker-9".into();
            if *who == visitor {
                event.new_profile_kind = profile_pb::ProfileKind::Anonymous.into();
            }
            events.push(event);
        }
        let ingested = app.ingest(events).await;
        assert_eq!(ingested.accepted_count, 3, "{ingested:?}");
        learned(&app, visitor, 2).await;
        app.profiles()
            .merge_profiles(profile_pb::MergeProfilesRequest {
                source_customer_id: visitor.into(),
                target_customer_id: customer.into(),
                request_id: "merge-1".into(),
            })
            .await
            .unwrap();
        let merged = learned(&app, customer, 3).await;
        assert_eq!(merged.pickup_points[0].pickup_point_id, "locker-9");
        assert_eq!(merged.pickup_points[0].order_count, 3);
        assert_eq!(merged.payment_methods[0].payment_method, P::GooglePay as i32);
        assert_eq!(learned(&app, visitor, 0).await.order_count, 0);
    }
}
