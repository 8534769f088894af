//! The page experience for an anonymous id that profile merged into a customer
//! (the visitor signed in): the page answers for the surviving customer, with
//! the customer's consent, greeting and points, on SQLite and PostgreSQL. With
//! authentication, a customer's token naming a visitor merged into it gets its
//! own page, a service's key gets the survivor's, and the visitor's old token
//! is never redirected to the customer it was merged into. The page's read is
//! in the survivor's data-access log.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::time::Duration;

use attune_proto::common::v1 as common_pb;
use attune_proto::gateway::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use attune_tests::gateway_experience::{cart_page, state};
use attune_tests::gateway_policy::{
    Credential, OPS_KEY, customer_token, secured_app, with_credential,
};
use attune_tests::profile_people::{create_anonymous, create_known, merge, set_zero_party};
use attune_tests::{Backend, TestApp, backend_tests, eventually};

/// A new anonymous visitor's id, as profile made it.
async fn visitor(app: &TestApp, credential: &Credential) -> String {
    app.profiles()
        .create_profile(with_credential(create_anonymous("", vec![]), credential))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
        .customer_id
}

/// Asks for `request`'s page until consent's stream has confirmed the
/// gateway's cache for the customer the page is for.
async fn settled_page(
    app: &TestApp,
    request: pb::GetPageExperienceRequest,
) -> pb::GetPageExperienceResponse {
    for _ in 0..200 {
        let page = app.page(request.clone()).await;
        let profile = state(page.profile.as_ref().unwrap().status.as_ref());
        if profile.1 != pb::PartReason::ConsentUnavailable {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the page never reflected the consent the test recorded");
}

async fn page_as(
    app: &TestApp,
    customer: &str,
    credential: &Credential,
) -> pb::GetPageExperienceResponse {
    app.gateway()
        .get_page_experience(with_credential(cart_page(customer), credential))
        .await
        .unwrap()
        .into_inner()
}

backend_tests! {
    async fn a_merged_visitors_page_is_the_surviving_customers(app) {
        app.create_profile(create_known("m-anna", vec![])).await;
        app.grant("m-anna", &["personalization"]).await;
        app.profiles()
            .set_zero_party_data(set_zero_party(
                "m-anna",
                profile_pb::ZeroPartyData { preferred_name: "Anna".into(), ..Default::default() },
                &["preferred_name"],
                common_pb::Channel::Web,
            ))
            .await
            .unwrap();
        app.grant_points("m-anna", 500).await;
        let visitor = visitor(&app, &Credential::None).await;
        app.profiles().merge_profiles(merge(&visitor, "m-anna")).await.unwrap();

        let page = settled_page(&app, cart_page(&visitor)).await;
        assert_eq!(page.customer_id, "m-anna");
        assert!(page.consents.iter().any(|c| c.purpose_code == "personalization" && c.granted));
        let profile = page.profile.unwrap();
        assert_eq!(state(profile.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert_eq!(profile.greeting.unwrap().text, "Welcome back, Anna");
        let loyalty = page.loyalty.unwrap();
        assert_eq!(state(loyalty.status.as_ref()), (pb::PartState::Ok, pb::PartReason::Unspecified));
        assert_eq!(loyalty.account.unwrap().available_points, 500);

        // The page read the customer's data: it is in the customer's
        // data-access log, though the request named the visitor.
        eventually("the page is in the survivor's data-access log", async || {
            app.page_reads("m-anna").await >= 1
        })
        .await;

        // A live customer and an id profile never saw are their own pages.
        assert_eq!(app.page(cart_page("m-anna")).await.customer_id, "m-anna");
        assert_eq!(app.page(cart_page("m-never-seen")).await.customer_id, "m-never-seen");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_visitor_is_resolved_for_the_customer_and_services_but_not_for_its_old_token() {
    let app = secured_app(Backend::Sqlite, |_| {}).await.unwrap();
    let ops = Credential::ApiKey(OPS_KEY);
    app.profiles()
        .create_profile(with_credential(create_known("pm-alice", vec![]), &ops))
        .await
        .unwrap();
    let visitor = visitor(&app, &ops).await;
    app.profiles()
        .merge_profiles(with_credential(merge(&visitor, "pm-alice"), &ops))
        .await
        .unwrap();

    let alice = Credential::Bearer(customer_token("pm-alice"));
    assert_eq!(
        page_as(&app, &visitor, &alice).await.customer_id,
        "pm-alice"
    );
    assert_eq!(page_as(&app, &visitor, &ops).await.customer_id, "pm-alice");
    // The visitor's token from before the sign-in reaches no more than the
    // visitor's own (now empty) page.
    let old = Credential::Bearer(customer_token(&visitor));
    assert_eq!(page_as(&app, &visitor, &old).await.customer_id, visitor);
}
