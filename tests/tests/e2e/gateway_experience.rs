//! The gateway's page experience over real gRPC, every service running, on
//! SQLite and PostgreSQL: each part from its service in gateway-owned views,
//! filtered by consent, a stopped and a slow backend degrading only their parts
//! within the caller's deadline, the store associate's view at the till, bad
//! input, and ExplainDataUse.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::time::Duration;

use attune_proto::common::v1 as common_pb;
use attune_proto::common::v1::DeliveryMethod as M;
use attune_proto::gateway::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use attune_tests::bad_input::{Cases, assert_each_rejected};
use attune_tests::delivery::rate;
use attune_tests::gateway_experience::{
    cart_page, slow_backend, state, stopped_backend, store_page,
};
use attune_tests::profile_people::{annas_preferences, create_known, identity};
use attune_tests::recommendation::catalog_item;
use attune_tests::{TestApp, backend_tests, eventually};
use tonic::Code;

/// Until consent's stream has confirmed the gateway's cache, every purpose reads
/// "cannot tell": ask until the page was composed under a confirmed answer.
async fn settled_page(
    app: &TestApp,
    request: pb::GetPageExperienceRequest,
) -> pb::GetPageExperienceResponse {
    page_once(app, request, |page| {
        state(page.profile.as_ref().unwrap().status.as_ref()).1
            != pb::PartReason::ConsentUnavailable
    })
    .await
}

/// Asks for the page until `ready` holds (a change of consent reaches the
/// gateway's cache through consent's stream, within a second).
async fn page_once(
    app: &TestApp,
    request: pb::GetPageExperienceRequest,
    ready: impl Fn(&pb::GetPageExperienceResponse) -> bool,
) -> pb::GetPageExperienceResponse {
    for _ in 0..200 {
        let page = app.page(request.clone()).await;
        if ready(&page) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the page never reflected the consent the test recorded");
}

fn granted(page: &pb::GetPageExperienceResponse, purpose: &str) -> bool {
    page.consents
        .iter()
        .any(|c| c.purpose_code == purpose && c.granted)
}

/// A customer with a name to greet by, 500 points, a catalogue and German
/// delivery rates.
async fn seed(app: &TestApp, customer: &str, purposes: &[&str]) {
    app.create_profile(create_known(
        customer,
        vec![identity(profile_pb::IdentityType::LoyaltyCard, "card-7")],
    ))
    .await;
    app.grant(customer, &["personalization"]).await;
    app.profiles()
        .set_zero_party_data(annas_preferences(customer))
        .await
        .unwrap();
    // The test decides what stays granted.
    if !purposes.contains(&"personalization") {
        app.record_consent(attune_tests::consent_requests::record(
            customer,
            vec![attune_tests::consent_requests::decision(
                "personalization",
                attune_proto::consent::v1::Decision::Withdrawn,
            )],
        ))
        .await;
    }
    let others: Vec<&str> = purposes
        .iter()
        .copied()
        .filter(|p| *p != "personalization")
        .collect();
    if !others.is_empty() {
        app.grant(customer, &others).await;
    }
    app.upsert_items(vec![
        catalog_item("sku-1", &["shoes"], "Trailco", 8000),
        catalog_item("sku-2", &["shoes"], "Trailco", 9000),
        catalog_item("sku-3", &["socks"], "Knit", 1000),
    ])
    .await;
    app.grant_points(customer, 500).await;
    app.upsert_rates(vec![
        rate("de-next", M::HomeNextDay, 490),
        rate("de-std", M::HomeStandard, 290),
    ])
    .await;
}

backend_tests! {
    async fn every_part_comes_from_its_service_as_a_gateway_view(app) {
        seed(&app, "c-1", &["personalization"]).await;
        let page = page_once(&app, cart_page("c-1"), |page| granted(page, "personalization")).await;
        assert_eq!(page.customer_id, "c-1");
        assert!(page.consents.iter().any(|c| c.purpose_code == "personalization" && c.granted));

        let profile = page.profile.unwrap();
        assert_eq!(state(profile.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        let greeting = profile.greeting.unwrap();
        assert_eq!(greeting.text, "Welcome back, Anna");
        assert_eq!(profile.status.as_ref().unwrap().purpose_codes, ["personalization"]);
        assert!(profile.status.as_ref().unwrap().data_categories.contains(&(common_pb::DataCategory::Preferences as i32)));

        assert_eq!(page.recommendations.len(), 1);
        let list = &page.recommendations[0];
        assert_eq!(list.slot_id, "below-cart");
        assert_eq!(state(list.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert!(!list.recommendation_id.is_empty());
        assert!(!list.items.is_empty());
        for item in &list.items {
            assert!(["sku-2", "sku-3"].contains(&item.item_id.as_str()), "{item:?}");
            assert!(item.title.starts_with("Title of"));
        }

        let loyalty = page.loyalty.unwrap();
        assert_eq!(state(loyalty.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert_eq!(loyalty.account.unwrap().available_points, 500);
        assert!(loyalty.status.unwrap().data_categories.contains(&(common_pb::DataCategory::Loyalty as i32)));

        let delivery = page.delivery.unwrap();
        assert_eq!(state(delivery.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        let methods: Vec<i32> = delivery.options.iter().map(|o| o.method).collect();
        assert!(methods.contains(&(M::HomeNextDay as i32)) && methods.contains(&(M::HomeStandard as i32)), "{methods:?}");
        assert!(!delivery.payment_methods.is_empty());

        let store = page.store.unwrap();
        assert_eq!(state(store.status.as_ref()), (pb::PartState::Omitted, pb::PartReason::NotRequested));
    }

    async fn without_consent_nothing_personal_is_shown(app) {
        seed(&app, "c-2", &[]).await;
        let page = settled_page(&app, cart_page("c-2")).await;
        assert!(page.consents.iter().any(|c| c.purpose_code == "personalization" && !c.granted));

        let profile = page.profile.unwrap();
        let status = profile.status.unwrap();
        assert_eq!(state(Some(&status)), (pb::PartState::Omitted, pb::PartReason::NoConsent));
        assert_eq!(status.missing_purpose_codes, ["personalization"]);
        assert_eq!(profile.greeting.unwrap().preferred_name, "");

        // Recommendations are still shown, asked without the customer's id.
        let list = &page.recommendations[0];
        assert_eq!(state(list.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert!(list.status.as_ref().unwrap().purpose_codes.is_empty());
        assert!(list.items.iter().all(|item| item.data_categories.is_empty()));

        // The balance is the customer's own membership; offers need consent.
        let loyalty = page.loyalty.unwrap();
        assert_eq!(state(loyalty.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert!(loyalty.offers.is_empty());
        assert!(loyalty.status.unwrap().purpose_codes.is_empty());
    }

    async fn a_stopped_and_a_slow_backend_degrade_only_their_parts_within_the_deadline(app) {
        seed(&app, "c-3", &["personalization"]).await;
        let slow = slow_backend(app.address, Duration::from_secs(6)).await;
        let gateway = app
            .gateway_in_front(&[("loyalty", stopped_backend().await), ("delivery", slow)])
            .await;
        let mut request = cart_page("c-3");
        // A part may take 5 s, but the caller waits 3 s: the deadline wins.
        request.part_budget = Some(prost_types::Duration { seconds: 5, nanos: 0 });
        let mut page = None;
        for _ in 0..40 {
            let mut call = tonic::Request::new(request.clone());
            call.set_timeout(Duration::from_secs(3));
            // Answered at all means answered within the caller's deadline: the
            // client gives up at 3 s with DEADLINE_EXCEEDED.
            let answer = gateway.gateway().get_page_experience(call).await.unwrap().into_inner();
            let profile = state(answer.profile.as_ref().unwrap().status.as_ref());
            if profile.1 != pb::PartReason::ConsentUnavailable {
                page = Some(answer);
                break;
            }
        }
        let page = page.expect("the gateway's consent checker confirmed its cache");
        assert_eq!(
            state(page.loyalty.unwrap().status.as_ref()),
            (pb::PartState::Degraded, pb::PartReason::ServiceUnavailable)
        );
        let delivery = page.delivery.unwrap();
        assert_eq!(
            state(delivery.status.as_ref()),
            (pb::PartState::Degraded, pb::PartReason::DeadlineExceeded),
            "{delivery:?}"
        );
        assert!(delivery.options.is_empty());
        let profile = page.profile.unwrap();
        assert_eq!(state(profile.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert_eq!(profile.greeting.unwrap().text, "Welcome back, Anna");
        assert_eq!(
            state(page.recommendations[0].status.as_ref()),
            (pb::PartState::Ok, pb::PartReason::Unspecified)
        );
    }

    async fn the_store_associate_sees_only_what_the_customer_allowed(app) {
        seed(&app, "c-4", &["personalization"]).await;
        // Personalization alone does not open the store view.
        let page = page_once(&app, store_page("store-9", "card-7"), |page| granted(page, "personalization")).await;
        assert_eq!(page.customer_id, "c-4");
        let store = page.store.unwrap();
        let status = store.status.unwrap();
        assert_eq!(state(Some(&status)), (pb::PartState::Omitted, pb::PartReason::NoConsent));
        assert_eq!(status.missing_purpose_codes, ["store_visits"]);
        assert!(store.sizes.is_empty() && store.preferred_name.is_empty());

        app.grant("c-4", &["store_visits"]).await;
        let page = page_once(&app, store_page("store-9", "card-7"), |page| granted(page, "store_visits")).await;
        let store = page.store.unwrap();
        assert_eq!(state(store.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert_eq!(store.store_id, "store-9");
        assert_eq!(store.preferred_name, "Anna");
        assert_eq!(store.sizes.len(), 1);
        assert_eq!((store.sizes[0].size_type.as_str(), store.sizes[0].value.as_str()), ("shoes", "39"));
        assert_eq!(store.favourite_brands, ["Trailco"]);
        assert_eq!(store.status.unwrap().purpose_codes, ["personalization", "store_visits"]);
        assert_eq!(page.loyalty.unwrap().account.unwrap().available_points, 500);
        assert_eq!(
            state(page.delivery.unwrap().status.as_ref()),
            (pb::PartState::Omitted, pb::PartReason::NotRequested)
        );

        let unknown = app.gateway().get_page_experience(store_page("store-9", "card-unknown")).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);

        // The request named no customer, yet each view at the till is in the
        // customer's data-access log.
        eventually("the store views are in the customer's data-access log", async || {
            app.page_reads("c-4").await >= 2
        })
        .await;
    }

    async fn bad_page_requests_are_rejected_and_change_nothing(app) {
        let cases = Cases::new()
            .invalid("bad customer id", "customer_id", |r: &mut pb::GetPageExperienceRequest| r.customer_id = "has space".into())
            .invalid("no page type", "page_type", |r| r.page_type = 0)
            .invalid("unknown page type", "page_type", |r| r.page_type = 99)
            .invalid("too many lists", "placements", |r| r.placements = vec![r.placements[0].clone(); 11])
            .invalid("bad slot id", "placements[0].slot_id", |r| r.placements[0].slot_id = "Hero!".into())
            .invalid("duplicate slot id", "placements[1].slot_id", |r| {
                let again = r.placements[0].clone();
                r.placements.push(again);
            })
            .invalid("unknown placement", "placements[0].placement", |r| r.placements[0].placement = 42)
            .invalid("too many items", "placements[0].max_items", |r| r.placements[0].max_items = 51)
            .invalid("negative items", "placements[0].max_items", |r| r.placements[0].max_items = -1)
            .invalid("bad excluded item", "placements[0].filter.exclude_item_ids[0]", |r| {
                r.placements[0].filter.as_mut().unwrap().exclude_item_ids = vec![String::new()]
            })
            .invalid("diversity out of range", "placements[0].filter.max_per_brand", |r| {
                r.placements[0].filter.as_mut().unwrap().max_per_brand = 101
            })
            .invalid("no context", "context.channel", |r| r.context = None)
            .invalid("unknown channel", "context.channel", |r| r.context.as_mut().unwrap().channel = 77)
            .invalid("too many current items", "context.current_item_ids", |r| {
                r.context.as_mut().unwrap().current_item_ids = vec!["x".into(); 21]
            })
            .invalid("long search", "context.search_query", |r| r.context.as_mut().unwrap().search_query = "q".repeat(257))
            .invalid("zero quantity", "context.cart_lines[0].quantity", |r| r.context.as_mut().unwrap().cart_lines[0].quantity = 0)
            .invalid("duplicate cart line", "context.cart_lines[1].item_id", |r| {
                let c = r.context.as_mut().unwrap();
                let again = c.cart_lines[0].clone();
                c.cart_lines.push(again);
            })
            .invalid("negative total", "context.cart_total.amount_minor", |r| r.context.as_mut().unwrap().cart_total.as_mut().unwrap().amount_minor = -1)
            .invalid("bad currency", "context.cart_total.currency_code", |r| r.context.as_mut().unwrap().cart_total.as_mut().unwrap().currency_code = "euro".into())
            .invalid("empty location", "context.location", |r| r.context.as_mut().unwrap().location = Some(pb::DeliveryLocation { value: None }))
            .invalid("latitude off the globe", "context.location.position.point.latitude_microdegrees", |r| {
                r.context.as_mut().unwrap().location = Some(pb::DeliveryLocation {
                    value: Some(pb::delivery_location::Value::Position(pb::GeoPosition {
                        point: Some(common_pb::GeoPoint { latitude_microdegrees: 91_000_000, longitude_microdegrees: 0 }),
                        country_code: "DE".into(),
                    })),
                })
            })
            .invalid("lower-case country", "context.location.postal_area.country_code", |r| {
                r.context.as_mut().unwrap().location = Some(pb::DeliveryLocation {
                    value: Some(pb::delivery_location::Value::PostalArea(pb::PostalArea { country_code: "de".into(), postal_code: "10115".into() })),
                })
            })
            .invalid("address without customer", "context.location.address_id", |r| {
                r.customer_id.clear();
                r.context.as_mut().unwrap().location = Some(pb::DeliveryLocation { value: Some(pb::delivery_location::Value::AddressId("home".into())) })
            })
            .invalid("unknown payment method", "context.accepted_payment_methods[0]", |r| r.context.as_mut().unwrap().accepted_payment_methods = vec![0])
            .invalid("payment method twice", "context.accepted_payment_methods[1]", |r| r.context.as_mut().unwrap().accepted_payment_methods = vec![1, 1])
            .invalid("unknown part", "parts[0]", |r| r.parts = vec![0])
            .invalid("part twice", "parts[1]", |r| r.parts = vec![1, 1])
            .invalid("store part off the store page", "parts[0]", |r| r.parts = vec![pb::PagePart::Store.into()])
            .invalid("budget too long", "part_budget", |r| r.part_budget = Some(prost_types::Duration { seconds: 6, nanos: 0 }))
            .invalid("negative budget", "part_budget", |r| r.part_budget = Some(prost_types::Duration { seconds: -1, nanos: 0 }))
            .invalid("store off the store page", "store", |r| r.store = store_page("s-1", "card").store)
            .invalid("store page without a store", "store", |r| r.page_type = pb::PageType::Store.into())
            .invalid("store page without identification", "store.identification", |r| {
                let mut page = store_page("s-1", "card");
                page.store.as_mut().unwrap().identification = None;
                *r = page;
            })
            .invalid("bad store id", "store.store_id", |r| *r = store_page("", "card"))
            .invalid("bad card", "store.loyalty_card_number", |r| *r = store_page("s-1", "card with space"));
        let gateway = app.gateway();
        assert_each_rejected(&app.config.database, || cart_page("c-1"), cases, |request| {
            let mut gateway = gateway.clone();
            async move { gateway.get_page_experience(request).await }
        })
        .await;

        let explain = Cases::new().invalid("no customer", "customer_id", |r: &mut pb::ExplainDataUseRequest| r.customer_id.clear());
        assert_each_rejected(
            &app.config.database,
            || pb::ExplainDataUseRequest { customer_id: "c-1".into() },
            explain,
            |request| {
                let mut gateway = gateway.clone();
                async move { gateway.explain_data_use(request).await }
            },
        )
        .await;
    }

    async fn explain_data_use_says_what_each_service_holds_and_why(app) {
        seed(&app, "c-5", &["personalization"]).await;
        let mut explanation = None;
        for _ in 0..200 {
            let answer = app.gateway()
                .explain_data_use(pb::ExplainDataUseRequest { customer_id: "c-5".into() })
                .await
                .unwrap()
                .into_inner();
            if answer.purposes.iter().any(|p| p.purpose_code == "personalization" && p.granted) {
                explanation = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let explanation = explanation.expect("the gateway's consent checker confirmed its cache");
        assert_eq!(explanation.customer_id, "c-5");
        let service = |name: &str| explanation.services.iter().find(|s| s.service == name).unwrap_or_else(|| panic!("{name} is explained"));
        for name in ["attune.consent.v1", "attune.profile.v1", "attune.loyalty.v1"] {
            let held = service(name);
            assert!(held.available, "{held:?}");
            assert!(held.record_count > 0, "{held:?}");
            assert!(held.summary.starts_with("We hold"), "{held:?}");
            assert!(!held.r#use.is_empty());
        }
        let personalization = explanation.purposes.iter().find(|p| p.purpose_code == "personalization").unwrap();
        assert_eq!(personalization.status_text, "You allowed this: we use your data for it.");
        let email = explanation.purposes.iter().find(|p| p.purpose_code == "marketing_email").unwrap();
        assert!(!email.granted);
        assert!(email.status_text.starts_with("You have not decided"), "{email:?}");
    }
}
