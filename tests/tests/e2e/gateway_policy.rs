//! The gateway's policy on the public port, over real gRPC with every service
//! running: the authorization matrix generated from the policy table (two
//! customers and a store device against every method naming customers), tokens
//! that prove nothing, scopes, unknown methods, API keys, merged anonymous ids,
//! a store device limited to the customer at its till, and development mode's
//! refusal to bind a non-loopback address.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_gateway::policy::request_naming;
use attune_gateway::policy::table::{Access, RULES};
use attune_proto::gateway::v1 as gateway_pb;
use attune_tests::gateway_experience::store_page;
use attune_tests::gateway_policy::{
    CHECKOUT_KEY, Credential, OPS_KEY, call_raw, check_consent, customer_claims, customer_token,
    es256, hs256, hs256_with_rs256_public_key, now, rs256, rs256_unknown_key, secured_app,
    signed_with_kid, streaming, tampered, unsigned, with_credential,
};
use attune_tests::profile_people::{create_anonymous, create_known, identity, merge};
use attune_tests::{Backend, TestApp, eventually, profile_pb};
use serde_json::json;
use tonic::{Code, Status};

fn bearer(token: String) -> Credential {
    Credential::Bearer(token)
}

/// A store associate's device at the till of `store_id`, granted `scopes`.
fn staff_token(store_id: &str, scopes: &[&str]) -> Credential {
    bearer(rs256(&json!({
        "sub": "till-7", "iss": attune_tests::gateway_policy::ISSUER,
        "aud": attune_tests::gateway_policy::AUDIENCE, "exp": now() + 600,
        "store_id": store_id, "scope": scopes.join(" "),
    })))
}

async fn page(
    app: &TestApp,
    request: gateway_pb::GetPageExperienceRequest,
    credential: &Credential,
) -> Result<gateway_pb::GetPageExperienceResponse, Status> {
    app.gateway()
        .get_page_experience(with_credential(request, credential))
        .await
        .map(tonic::Response::into_inner)
}

fn assert_code(result: Result<(), Status>, code: Code, what: &str) {
    match result {
        Ok(()) => panic!("{what}: succeeded, expected {code:?}"),
        Err(status) => assert_eq!(status.code(), code, "{what}: {status:?}"),
    }
}

/// Passed the policy: whatever the service then answered, it was not the
/// policy refusing.
fn assert_passes_policy(result: Result<(), Status>, what: &str) {
    if let Err(status) = result {
        assert!(
            !matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated | Code::ResourceExhausted
            ),
            "{what}: {status:?}"
        );
    }
}

attune_tests::secured_tests! {
    async fn authorization_matrix_lets_each_customer_reach_only_its_own_data(app) {
        let customers = ["matrix-alice", "matrix-bob"];
        let mut checked = 0;
        for rule in RULES {
            let Some(own) = request_naming(rule.method, "x") else { continue };
            drop(own);
            for (index, customer) in customers.iter().enumerate() {
                let other = customers[1 - index];
                let token = bearer(customer_token(customer));
                let own = request_naming(rule.method, customer).unwrap();
                let others = request_naming(rule.method, other).unwrap();
                // The other customer's id first: an own-data call may erase.
                let what = format!("{} by {customer} about {other}", rule.method);
                assert_code(
                    call_raw(&app, rule.method, others, &token).await,
                    Code::PermissionDenied,
                    &what,
                );
                let what = format!("{} by {customer} about itself", rule.method);
                let result = call_raw(&app, rule.method, own, &token).await;
                match rule.access {
                    Access::Customer { .. } if streaming(rule.method).0 => {
                        // Customers send events in IngestEvents, not a stream.
                        assert_code(result, Code::PermissionDenied, &what);
                    }
                    Access::Customer { visitors, .. } => {
                        assert_passes_policy(result, &what);
                        if !visitors {
                            assert_code(
                                call_raw(&app, rule.method, Vec::new(), &token).await,
                                Code::PermissionDenied,
                                &format!("{} by {customer} naming no one", rule.method),
                            );
                        }
                    }
                    Access::Operator { .. } => {
                        assert_code(result, Code::PermissionDenied, &what);
                    }
                    Access::Open | Access::Catalogue { .. } => unreachable!("no ids"),
                }
            }
            checked += 1;
        }
        assert!(checked > 50, "every method naming customers is covered: {checked}");

        // A store device holding only its own scope names no customer by id,
        // on any method.
        let staff = staff_token("store-12", &["store.clienteling"]);
        for rule in RULES {
            let Some(naming) = request_naming(rule.method, customers[0]) else { continue };
            assert_code(
                call_raw(&app, rule.method, naming, &staff).await,
                Code::PermissionDenied,
                &format!("{} by a store device", rule.method),
            );
        }
    }

    async fn a_store_device_sees_only_the_customer_at_its_till(app) {
        let ops = Credential::ApiKey(OPS_KEY);
        app.profiles()
            .create_profile(with_credential(
                create_known(
                    "till-alice",
                    vec![identity(profile_pb::IdentityType::LoyaltyCard, "card-till-1")],
                ),
                &ops,
            ))
            .await
            .unwrap();
        let staff = staff_token("store-12", &["store.clienteling"]);
        // The customer who showed her card at this store's till.
        let view = page(&app, store_page("store-12", "card-till-1"), &staff).await.unwrap();
        assert_eq!(view.customer_id, "till-alice");
        // Not another store's till, not by id, not another page, not the
        // profile behind the card.
        let mut by_id = store_page("store-12", "card-till-1");
        by_id.customer_id = "till-alice".into();
        by_id.store.as_mut().unwrap().identification = None;
        let mut home = store_page("store-12", "card-till-1");
        home.page_type = gateway_pb::PageType::Home.into();
        for (what, request) in [
            ("another store", store_page("store-13", "card-till-1")),
            ("by customer id", by_id),
            ("another page", home),
        ] {
            let refused = page(&app, request, &staff).await.unwrap_err();
            assert_eq!(refused.code(), Code::PermissionDenied, "{what}: {refused:?}");
            assert!(refused.message().contains("store device"), "{what}: {refused:?}");
        }
        assert_code(
            app.profiles()
                .lookup_profile(with_credential(
                    profile_pb::LookupProfileRequest {
                        identity: Some(identity(profile_pb::IdentityType::LoyaltyCard, "card-till-1")),
                    },
                    &staff,
                ))
                .await
                .map(drop),
            Code::PermissionDenied,
            "LookupProfile at the till",
        );
        // A customer may not identify someone else by a card.
        let bob = bearer(customer_token("till-bob"));
        assert_code(
            page(&app, store_page("store-12", "card-till-1"), &bob).await.map(drop),
            Code::PermissionDenied,
            "a customer showing another's card",
        );
        // A device granted more may do more, as its scopes say.
        let reader = staff_token("store-12", &["store.clienteling", "profile.read"]);
        assert_passes_policy(
            app.profiles()
                .get_profile(with_credential(
                    profile_pb::GetProfileRequest { customer_id: "till-alice".into() },
                    &reader,
                ))
                .await
                .map(drop),
            "GetProfile with profile.read",
        );
        // The view at the till is in the customer's data-access log, as the
        // store's device.
        eventually("the till's view is in the data-access log", async || {
            app.data_access()
                .list_data_access(with_credential(
                    gateway_pb::ListDataAccessRequest {
                        customer_id: "till-alice".into(),
                        page_size: 100,
                        page_token: String::new(),
                    },
                    &ops,
                ))
                .await
                .unwrap()
                .into_inner()
                .accesses
                .iter()
                .any(|access| {
                    access.caller_kind == gateway_pb::CallerKind::StoreStaff as i32
                        && access.caller_name == "till-7"
                        && access.store_id == "store-12"
                        && access.rpc.ends_with("/GetPageExperience")
                })
        })
        .await;
    }

    async fn a_customer_reaches_the_anonymous_ids_merged_into_it(app) {
        let ops = Credential::ApiKey(OPS_KEY);
        let mut profiles = app.profiles();
        profiles
            .create_profile(with_credential(create_known("merge-alice", vec![]), &ops))
            .await
            .unwrap();
        let visitor = profiles
            .create_profile(with_credential(create_anonymous("", vec![]), &ops))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap()
            .customer_id;
        let alice = bearer(customer_token("merge-alice"));
        let get = |customer: &str| profile_pb::GetProfileRequest {
            customer_id: customer.into(),
        };
        // Not yet merged: the visitor's profile is someone else's.
        assert_code(
            profiles.get_profile(with_credential(get(&visitor), &alice)).await.map(drop),
            Code::PermissionDenied,
            "before the merge",
        );
        profiles
            .merge_profiles(with_credential(merge(&visitor, "merge-alice"), &ops))
            .await
            .unwrap();
        assert_passes_policy(
            profiles.get_profile(with_credential(get(&visitor), &alice)).await.map(drop),
            "alice reads the visitor merged into her",
        );
        assert_code(
            profiles
                .get_profile(with_credential(get(&visitor), &bearer(customer_token("merge-bob"))))
                .await
                .map(drop),
            Code::PermissionDenied,
            "bob reads the visitor merged into alice",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_keys_that_prove_nothing_are_unauthenticated_alike() {
    let app = secured_app(Backend::Sqlite, |_| {}).await.unwrap();
    let customer = "auth-alice";
    let valid = customer_claims(customer, &["consent.read"]);
    let with = |change: serde_json::Value| {
        let mut claims = valid.clone();
        for (key, value) in change.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    // Beyond the 30 s leeway either way.
    let refused = [
        ("expired", rs256(&with(json!({"exp": now() - 120})))),
        ("not yet valid", rs256(&with(json!({"nbf": now() + 120})))),
        (
            "wrong audience",
            rs256(&with(json!({"aud": "another-api"}))),
        ),
        (
            "wrong issuer",
            rs256(&with(json!({"iss": "https://evil.test"}))),
        ),
        (
            "no expiry",
            rs256(
                &json!({"sub": customer, "iss": valid["iss"], "aud": valid["aud"], "scope": "consent.read"}),
            ),
        ),
        ("alg none", unsigned(&valid)),
        ("signed by an unknown key", rs256_unknown_key(&valid)),
        (
            "tampered",
            tampered(
                &rs256(&customer_claims("auth-mallory", &["consent.read"])),
                &valid,
            ),
        ),
        (
            "HS256 with the RS256 public key",
            hs256_with_rs256_public_key(&valid),
        ),
        ("not a token", "not.a.token".to_owned()),
        (
            "a JWKS kid, signed by another key",
            signed_with_kid("rs256-private.pem", "rotated-rsa-1", &valid),
        ),
        (
            "an unknown kid",
            signed_with_kid("other-rs256-private.pem", "rotated-rsa-9", &valid),
        ),
    ];
    let mut messages = Vec::new();
    for (what, token) in refused {
        let status = check_consent(&app, customer, &bearer(token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        messages.push(status.message().to_owned());
    }
    for (what, credential) in [
        ("no credentials", Credential::None),
        (
            "a wrong API key",
            Credential::ApiKey("test-only-not-a-configured-key"),
        ),
    ] {
        let status = check_consent(&app, customer, &credential)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        messages.push(status.message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one generic message: {messages:?}");

    // Each configured key, and each API key, proves its caller.
    for (what, token) in [
        ("RS256", rs256(&valid)),
        ("ES256", es256(&valid)),
        ("HS256", hs256(&valid)),
        (
            "JWKS RS256 by kid",
            signed_with_kid("other-rs256-private.pem", "rotated-rsa-1", &valid),
        ),
        (
            "JWKS ES256 by kid",
            signed_with_kid("es256-private.pem", "es-1", &valid),
        ),
        // Within the leeway.
        ("just expired", rs256(&with(json!({"exp": now() - 5})))),
    ] {
        check_consent(&app, customer, &bearer(token))
            .await
            .unwrap_or_else(|status| panic!("{what}: {status:?}"));
    }
    check_consent(&app, customer, &Credential::ApiKey(OPS_KEY))
        .await
        .unwrap();
    check_consent(&app, customer, &Credential::ApiKey(CHECKOUT_KEY))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_decide_and_a_method_without_a_rule_is_refused() {
    let app = secured_app(Backend::Sqlite, |_| {}).await.unwrap();
    let reader = bearer(rs256(&customer_claims("scope-alice", &["consent.read"])));
    check_consent(&app, "scope-alice", &reader).await.unwrap();
    assert_code(
        app.consent()
            .record_consent(with_credential(
                attune_tests::consent_requests::record("scope-alice", vec![]),
                &reader,
            ))
            .await
            .map(drop),
        Code::PermissionDenied,
        "RecordConsent without consent.write",
    );
    // `admin` in a customer's token opens no operator method.
    let customer_admin = bearer(rs256(&customer_claims("scope-alice", &["admin"])));
    assert_code(
        call_raw(
            &app,
            "attune.consent.v1.ConsentService/VerifyAuditLog",
            Vec::new(),
            &customer_admin,
        )
        .await,
        Code::PermissionDenied,
        "an operator method for a customer",
    );
    // A service key holds only its scopes; the operator's holds all.
    let checkout = Credential::ApiKey(CHECKOUT_KEY);
    let ops = Credential::ApiKey(OPS_KEY);
    assert_code(
        call_raw(
            &app,
            "attune.consent.v1.ConsentService/VerifyAuditLog",
            Vec::new(),
            &checkout,
        )
        .await,
        Code::PermissionDenied,
        "VerifyAuditLog by checkout",
    );
    call_raw(
        &app,
        "attune.consent.v1.ConsentService/VerifyAuditLog",
        Vec::new(),
        &ops,
    )
    .await
    .unwrap();
    // A staff device at the till reads consent only through the STORE page.
    let staff = staff_token("store-12", &["store.clienteling"]);
    assert_code(
        check_consent(&app, "scope-alice", &staff).await,
        Code::PermissionDenied,
        "CheckConsent at the till",
    );
    // Methods no rule names: refused before anything else, even to an operator.
    for path in [
        "attune.consent.v1.ConsentService/NoSuchMethod",
        "attune.nosuch.v1.NoService/Call",
        "attune.privacy.v1.DataSubjectService/EraseCustomer",
    ] {
        assert_code(
            call_raw_unchecked(&app, path, &ops).await,
            Code::PermissionDenied,
            path,
        );
    }
}

/// A call to `path` (which the contracts may not have) with an empty request.
async fn call_raw_unchecked(
    app: &TestApp,
    path: &str,
    credential: &Credential,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary(
        with_credential(Vec::new(), credential),
        format!("/{path}").parse().unwrap(),
        attune_tests::gateway_policy::RawCodec,
    )
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_only_loopback_is_served() {
    attune_kit::telemetry::init_for_tests();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = attune::serve(
        attune_kit::config::Config::default(),
        attune::Role::All,
        listener,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("without authentication"),
        "{error:#}"
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = attune::serve(
        attune_kit::config::Config::default(),
        attune::Role::Gateway,
        listener,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("without authentication"),
        "{error:#}"
    );
}
