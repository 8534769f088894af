//! ProfileService over real gRPC on SQLite and PostgreSQL: profiles and
//! identities, field-masked updates, zero-party data with consent and
//! provenance, merges and their redirects, idempotent replays.

#![allow(clippy::unwrap_used)] // panics fail tests

use attune_proto::profile::v1 as pb;
use attune_tests::bad_input::RowCounts;
use attune_tests::profile_people::{
    create_anonymous, create_known, identity, link, mask, merge, set_zero_party, unlink, update,
};
use attune_tests::{TestApp, backend_tests, common_pb, every_page};
use chrono::TimeDelta;
use tonic::Code;

use pb::IdentityType::{CookieId, Email, LoyaltyCard, Phone};

const WEB: common_pb::Channel = common_pb::Channel::Web;
const APP: common_pb::Channel = common_pb::Channel::App;

fn name(preferred_name: &str) -> pb::ZeroPartyData {
    pb::ZeroPartyData {
        preferred_name: preferred_name.into(),
        ..Default::default()
    }
}

fn birthday(month: i32, day: i32) -> pb::ZeroPartyData {
    pb::ZeroPartyData {
        birthday: Some(pb::Birthday { month, day }),
        ..Default::default()
    }
}

async fn row_counts(app: &TestApp) -> RowCounts {
    let db = attune_kit::db::connect(&app.config.database).await.unwrap();
    let counts = RowCounts::read(&db).await;
    db.close().await.unwrap();
    counts
}

backend_tests! {
    async fn profile_is_created_and_found_by_email_in_clear_or_by_its_hash(app) {
        let created = app
            .create_profile(create_known(
                "cust-1",
                vec![identity(Email, " Ada@Example.com "), identity(LoyaltyCard, "C-100")],
            ))
            .await;
        assert_eq!(created.kind, pb::ProfileKind::Known as i32);
        assert_eq!(created.create_channel, WEB as i32);
        // Ordered by type: e-mail (1) before loyalty card (3); the e-mail only hashed.
        let email = &created.identities[0];
        assert!(email.value.starts_with("hmac:") && !email.value.contains("ada"), "{email:?}");
        assert_eq!(created.identities[1].value, "C-100");
        assert_eq!(app.profile("cust-1").await, created);

        let by_clear = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest {
                identity: Some(identity(Email, "ada@example.COM")),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_clear.profile.unwrap().customer_id, "cust-1");
        // A lookup ignores where the identity was seen.
        let mut seen_anywhere = identity(LoyaltyCard, "C-100");
        seen_anywhere.channel = 99;
        let by_card = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest { identity: Some(seen_anywhere) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_card.profile.unwrap().customer_id, "cust-1");
        let by_hash = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest {
                identity: Some(identity(Email, &email.value)),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_hash.profile.unwrap().customer_id, "cust-1");

        let unknown = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest {
                identity: Some(identity(Email, "bob@example.com")),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let missing = app
            .profiles()
            .get_profile(pb::GetProfileRequest { customer_id: "nobody".into() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        // The id, and an identity of another profile, are taken.
        let again = app.profiles().create_profile(create_known("cust-1", vec![])).await;
        assert_eq!(again.unwrap_err().code(), Code::AlreadyExists);
        let taken = app
            .profiles()
            .create_profile(create_known("cust-2", vec![identity(Email, "ADA@example.com")]))
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
        assert_eq!(
            app.profiles().get_profile(pb::GetProfileRequest { customer_id: "cust-2".into() })
                .await.unwrap_err().code(),
            Code::NotFound,
            "a refused creation stores nothing"
        );

        // An anonymous profile may leave its id to Attune.
        let anonymous = app.create_profile(create_anonymous("", vec![identity(CookieId, "ck-1")])).await;
        assert!(anonymous.customer_id.starts_with("anon_"), "{}", anonymous.customer_id);
        assert_eq!(anonymous.kind, pb::ProfileKind::Anonymous as i32);
    }

    async fn identities_are_linked_once_unlinked_and_limited_to_fifty(app) {
        app.create_profile(create_known("cust-1", vec![])).await;
        app.create_profile(create_known("cust-2", vec![identity(LoyaltyCard, "C-2")])).await;
        let linked = app
            .profiles()
            .link_identity(link("cust-1", identity(Phone, "+49 151 1234-5678")))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(linked.identities.len(), 1);
        assert!(linked.identities[0].value.starts_with("hmac:"));
        // Linking it again changes nothing; linking another profile's is refused.
        let again = app
            .profiles()
            .link_identity(link("cust-1", identity(Phone, "+4915112345678")))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(again.identities, linked.identities);
        let elsewhere = app
            .profiles()
            .link_identity(link("cust-1", identity(LoyaltyCard, "C-2")))
            .await
            .unwrap_err();
        assert_eq!(elsewhere.code(), Code::AlreadyExists);

        let unlinked = app
            .profiles()
            .unlink_identity(unlink("cust-1", identity(Phone, "+4915112345678")))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert!(unlinked.identities.is_empty());
        let gone = app
            .profiles()
            .unlink_identity(unlink("cust-1", identity(Phone, "+4915112345678")))
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
        let not_theirs = app
            .profiles()
            .unlink_identity(unlink("cust-1", identity(LoyaltyCard, "C-2")))
            .await
            .unwrap_err();
        assert_eq!(not_theirs.code(), Code::NotFound);
        let lookup = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest {
                identity: Some(identity(Phone, "+4915112345678")),
            })
            .await
            .unwrap_err();
        assert_eq!(lookup.code(), Code::NotFound);

        let fifty = (0..50).map(|i| identity(CookieId, &format!("ck-{i}"))).collect();
        let full = app.create_profile(create_known("cust-3", fifty)).await;
        assert_eq!(full.identities.len(), 50);
        let over = app
            .profiles()
            .link_identity(link("cust-3", identity(CookieId, "ck-50")))
            .await
            .unwrap_err();
        assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
        let fifty_one = (0..51).map(|i| identity(CookieId, &format!("x-{i}"))).collect();
        let refused = app
            .profiles()
            .create_profile(create_known("cust-4", fifty_one))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
    }

    async fn update_changes_populated_or_masked_fields_and_needs_preferences_consent(app) {
        app.create_profile(create_known("cust-1", vec![])).await;
        app.grant("cust-1", &["personalization"]).await;
        let home = pb::Profile { home_store_id: "store-9".into(), ..Default::default() };
        let updated = app
            .profiles()
            .update_profile(update("cust-1", home, &[]))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(updated.home_store_id, "store-9");
        // An empty mask changes only what is populated: the store is kept.
        let attributes = pb::Profile {
            attributes: [("crm_status".to_owned(), "active".to_owned())].into(),
            ..Default::default()
        };
        let updated = app
            .profiles()
            .update_profile(update("cust-1", attributes, &[]))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(updated.home_store_id, "store-9");
        assert_eq!(updated.attributes["crm_status"], "active");
        // A named field left empty is cleared; populated fields not named are ignored.
        let ignored = pb::Profile {
            attributes: [("crm_status".to_owned(), "lapsed".to_owned())].into(),
            ..Default::default()
        };
        let cleared = app
            .profiles()
            .update_profile(update("cust-1", ignored, &["home_store_id"]))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(cleared.home_store_id, "");
        assert_eq!(cleared.attributes["crm_status"], "active");
        for path in ["kind", "identities", "loyalty", "create_time", "home_store_id.x", "*"] {
            let status = app
                .profiles()
                .update_profile(update("cust-1", pb::Profile::default(), &[path]))
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{path}");
        }

        // Without consent for preferences, nothing is stored and the answer says why.
        app.create_profile(create_known("cust-2", vec![])).await;
        let before = app.profile("cust-2").await;
        let home = pb::Profile { home_store_id: "store-1".into(), ..Default::default() };
        let refused = app
            .profiles()
            .update_profile(update("cust-2", home, &[]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let message = refused.message();
        assert!(
            message.contains("preferences") && message.contains("personalization, profiling"),
            "{message}"
        );
        assert_eq!(app.profile("cust-2").await, before);
        let unknown = app
            .profiles()
            .update_profile(update("nobody", pb::Profile::default(), &["home_store_id"]))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }

    async fn zero_party_data_without_consent_is_refused_naming_category_and_purposes(app) {
        app.create_profile(create_known("cust-1", vec![])).await;
        app.grant("cust-1", &["personalization"]).await;
        let before = row_counts(&app).await;
        // Personalization covers preferences but not demographics: the whole
        // request is refused, the preferred name included.
        let mut data = birthday(5, 17);
        data.preferred_name = "Ada".into();
        let refused = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", data, &[], WEB))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let message = refused.message();
        assert!(
            message.contains("birthday") && message.contains("demographics") && message.contains("profiling"),
            "{message}"
        );
        assert_eq!(row_counts(&app).await, before, "a refusal stores nothing");
        assert_eq!(app.zero_party("cust-1").await, pb::ZeroPartyData::default());
        // Clearing needs no consent.
        let cleared = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", pb::ZeroPartyData::default(), &["birthday"], WEB))
            .await
            .unwrap();
        assert_eq!(cleared.into_inner().data.unwrap(), pb::ZeroPartyData::default());
        let unknown = app
            .profiles()
            .set_zero_party_data(set_zero_party("nobody", name("Ada"), &[], WEB))
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }

    async fn zero_party_provenance_keeps_the_first_provide_time_until_cleared(app, clock) {
        app.create_profile(create_known("cust-1", vec![])).await;
        app.grant("cust-1", &["personalization", "profiling"]).await;
        let t0 = attune_kit::types::time::to_proto(clock.clock().now());
        let mut data = birthday(2, 29);
        data.preferred_name = "Ada".into();
        let stored = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", data, &[], WEB))
            .await
            .unwrap()
            .into_inner()
            .data
            .unwrap();
        let name_provenance = &stored.provenance["preferred_name"];
        assert_eq!(name_provenance.first_provide_time, Some(t0));
        assert_eq!(name_provenance.update_time, Some(t0));
        assert_eq!(name_provenance.channel, WEB as i32);
        assert_eq!(name_provenance.data_category, common_pb::DataCategory::Preferences as i32);
        let codes: Vec<(&str, i32)> = name_provenance
            .purposes
            .iter()
            .map(|p| (p.purpose_code.as_str(), p.notice_version))
            .collect();
        assert_eq!(codes, [("personalization", 1), ("profiling", 1)]);
        let birthday_provenance = &stored.provenance["birthday"];
        assert_eq!(birthday_provenance.data_category, common_pb::DataCategory::Demographics as i32);
        assert_eq!(birthday_provenance.purposes.len(), 1);
        assert_eq!(stored.update_time, Some(t0));

        clock.advance(TimeDelta::minutes(5));
        let t1 = attune_kit::types::time::to_proto(clock.clock().now());
        let changed = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", name("Ada L."), &[], APP))
            .await
            .unwrap()
            .into_inner()
            .data
            .unwrap();
        assert_eq!(changed.preferred_name, "Ada L.");
        assert_eq!(changed.birthday, Some(pb::Birthday { month: 2, day: 29 }), "kept");
        let provenance = &changed.provenance["preferred_name"];
        assert_eq!(provenance.first_provide_time, Some(t0));
        assert_eq!(provenance.update_time, Some(t1));
        assert_eq!(provenance.channel, APP as i32);
        assert_eq!(changed.provenance["birthday"].update_time, Some(t0), "untouched");

        // Clearing drops the field and its provenance; sharing again starts anew.
        let cleared = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", pb::ZeroPartyData::default(), &["birthday"], APP))
            .await
            .unwrap()
            .into_inner()
            .data
            .unwrap();
        assert_eq!(cleared.birthday, None);
        assert!(!cleared.provenance.contains_key("birthday"));
        clock.advance(TimeDelta::minutes(5));
        let t2 = attune_kit::types::time::to_proto(clock.clock().now());
        let again = app
            .profiles()
            .set_zero_party_data(set_zero_party("cust-1", birthday(3, 1), &[], WEB))
            .await
            .unwrap()
            .into_inner()
            .data
            .unwrap();
        assert_eq!(again.provenance["birthday"].first_provide_time, Some(t2));
        assert_eq!(app.zero_party("cust-1").await, again);

        // Each change put one entry on the feed, naming fields, never values.
        let entries = app.feed_rows(3).await;
        assert_eq!(entries.len(), 4);
        for (customer, payload) in &entries {
            assert_eq!(customer, "cust-1");
            let text = String::from_utf8_lossy(payload);
            assert!(!text.contains("Ada"), "a feed entry carries a value: {text}");
        }
        // The same value again changes nothing and adds no entry.
        app.profiles()
            .set_zero_party_data(set_zero_party("cust-1", birthday(3, 1), &[], WEB))
            .await
            .unwrap();
        assert_eq!(app.feed_rows(3).await.len(), 4);
    }

    async fn merge_moves_identities_zero_party_data_and_events_and_redirects(app) {
        let anonymous = app
            .create_profile(create_anonymous("anon-1", vec![identity(CookieId, "ck-1")]))
            .await;
        assert_eq!(anonymous.customer_id, "anon-1");
        app.create_profile(create_known("cust-1", vec![identity(Email, "ada@example.com")])).await;
        app.grant("anon-1", &["personalization"]).await;
        app.grant("cust-1", &["personalization"]).await;
        let mut anon_data = name("Visitor");
        anon_data.favourite_brands = vec!["acme".into()];
        app.profiles()
            .set_zero_party_data(set_zero_party("anon-1", anon_data, &[], WEB))
            .await
            .unwrap();
        app.profiles()
            .set_zero_party_data(set_zero_party("cust-1", name("Ada"), &[], APP))
            .await
            .unwrap();
        app.insert_event_row("anon-1", "ev-1").await;
        app.insert_event_row("anon-1", "ev-2").await;
        app.insert_event_row("cust-1", "ev-3").await;

        let request = merge("anon-1", "cust-1");
        let merged = app.profiles().merge_profiles(request.clone()).await.unwrap().into_inner();
        assert_eq!(merged.moved_identity_count, 1);
        assert_eq!(merged.moved_event_count, 2);
        assert_eq!(merged.moved_zero_party_fields, ["favourite_brands"]);
        let survivor = merged.profile.clone().unwrap();
        assert_eq!(survivor.customer_id, "cust-1");
        assert_eq!(survivor.merged_customer_ids, ["anon-1"]);
        assert_eq!(survivor.merged_customer_count, 1);
        assert_eq!(survivor.identities.len(), 2);
        assert!(merged.sequence > 0);

        // The anonymous id now resolves to the survivor everywhere.
        assert_eq!(app.profile("anon-1").await.customer_id, "cust-1");
        let by_cookie = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest { identity: Some(identity(CookieId, "ck-1")) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_cookie.profile.unwrap().customer_id, "cust-1");
        let data = app.zero_party("anon-1").await;
        assert_eq!(data.preferred_name, "Ada", "the target's own value wins");
        assert_eq!(data.favourite_brands, ["acme"]);
        assert_eq!(data.provenance["favourite_brands"].channel, WEB as i32, "provenance moved along");
        let events = app
            .count_sql("SELECT COUNT(*) AS n FROM profile_feed WHERE entry_type = 1 AND customer_id = 'cust-1'")
            .await;
        assert_eq!(events, 3);
        // Writes addressed to the merged id reach the survivor too.
        let relinked = app
            .profiles()
            .link_identity(link("anon-1", identity(CookieId, "ck-2")))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(relinked.customer_id, "cust-1");
        assert_eq!(relinked.identities.len(), 3);
        let merges = app.feed_rows(2).await;
        assert_eq!(merges.len(), 1);
        assert_eq!(merges[0].0, "cust-1");

        // A replay answers the same; merging the merged source into the same
        // target again succeeds and moves nothing.
        let replay = app.profiles().merge_profiles(request).await.unwrap().into_inner();
        assert_eq!(replay, merged);
        let again = app.profiles().merge_profiles(merge("anon-1", "cust-1")).await.unwrap().into_inner();
        assert_eq!(again.sequence, merged.sequence);
        assert_eq!((again.moved_identity_count, again.moved_event_count), (0, 0));
        assert_eq!(app.feed_rows(2).await.len(), 1, "one merge entry");

        // Known sources, a profile into itself, unknown ids are refused.
        app.create_profile(create_known("cust-2", vec![])).await;
        let known = app.profiles().merge_profiles(merge("cust-2", "cust-1")).await.unwrap_err();
        assert_eq!(known.code(), Code::FailedPrecondition);
        app.create_profile(create_anonymous("anon-2", vec![])).await;
        let itself = app.profiles().merge_profiles(merge("anon-2", "anon-2")).await.unwrap_err();
        assert_eq!(itself.code(), Code::FailedPrecondition);
        let elsewhere = app.profiles().merge_profiles(merge("anon-1", "cust-2")).await.unwrap_err();
        assert_eq!(elsewhere.code(), Code::FailedPrecondition);
        let merged_into_itself = app
            .profiles()
            .merge_profiles(merge("anon-1", "anon-1"))
            .await
            .unwrap_err();
        assert_eq!(merged_into_itself.code(), Code::FailedPrecondition);
        let unknown = app.profiles().merge_profiles(merge("anon-9", "cust-1")).await.unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let no_target = app.profiles().merge_profiles(merge("anon-2", "cust-9")).await.unwrap_err();
        assert_eq!(no_target.code(), Code::NotFound);
    }

    async fn merged_ids_are_listed_in_merge_order_and_follow_a_later_merge(app) {
        app.create_profile(create_known("cust-1", vec![])).await;
        for i in 0..5 {
            let id = format!("anon-{i}");
            app.create_profile(create_anonymous(&id, vec![])).await;
            app.profiles().merge_profiles(merge(&id, "cust-1")).await.unwrap();
        }
        // An anonymous profile that absorbed another is merged in turn: both
        // redirect to the survivor, and join the end of its list.
        app.create_profile(create_anonymous("anon-b", vec![])).await;
        app.create_profile(create_anonymous("anon-a", vec![])).await;
        app.profiles().merge_profiles(merge("anon-a", "anon-b")).await.unwrap();
        app.profiles().merge_profiles(merge("anon-b", "cust-1")).await.unwrap();
        assert_eq!(app.profile("anon-a").await.customer_id, "cust-1");

        let listed = every_page(async |page_token| {
            let page = app
                .profiles()
                .list_merged_customer_ids(pb::ListMergedCustomerIdsRequest {
                    customer_id: "anon-3".into(),
                    page_size: 2,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(page.customer_id, "cust-1");
            assert_eq!(page.total_count, 7);
            assert!(page.merged_customers.len() <= 2);
            (page.merged_customers, page.next_page_token)
        })
        .await;
        let ids: Vec<&str> = listed.iter().map(|m| m.customer_id.as_str()).collect();
        assert_eq!(ids, ["anon-0", "anon-1", "anon-2", "anon-3", "anon-4", "anon-a", "anon-b"]);
        assert!(listed.windows(2).all(|w| w[0].sequence <= w[1].sequence));
        let profile = app.profile("cust-1").await;
        assert_eq!(profile.merged_customer_count, 7);
        assert_eq!(profile.merged_customer_ids, ids);

        app.create_profile(create_known("cust-2", vec![])).await;
        let none = app
            .profiles()
            .list_merged_customer_ids(pb::ListMergedCustomerIdsRequest {
                customer_id: "cust-2".into(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(none.merged_customers.is_empty() && none.next_page_token.is_empty());
        assert_eq!(none.total_count, 0);
    }

    async fn a_replayed_request_gets_the_first_answer_and_other_content_is_refused(app, clock) {
        let create = create_known("cust-1", vec![identity(LoyaltyCard, "C-1")]);
        let first = app.profiles().create_profile(create.clone()).await.unwrap().into_inner();
        clock.advance(TimeDelta::seconds(10));
        let replay = app.profiles().create_profile(create.clone()).await.unwrap().into_inner();
        assert_eq!(replay, first);
        let mut other = create.clone();
        other.customer_id = "cust-2".into();
        let reused = app.profiles().create_profile(other).await.unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);

        app.grant("cust-1", &["personalization"]).await;
        let set = set_zero_party("cust-1", name("Ada"), &[], WEB);
        let stored = app.profiles().set_zero_party_data(set.clone()).await.unwrap().into_inner();
        app.profiles()
            .set_zero_party_data(set_zero_party("cust-1", name("Grace"), &[], WEB))
            .await
            .unwrap();
        // The replay answers as first, though the name changed since, and changes nothing.
        let replay = app.profiles().set_zero_party_data(set.clone()).await.unwrap().into_inner();
        assert_eq!(replay, stored);
        assert_eq!(app.zero_party("cust-1").await.preferred_name, "Grace");
        let mut other = set;
        other.channel = APP.into();
        let reused = app.profiles().set_zero_party_data(other).await.unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);

        let link_request = link("cust-1", identity(CookieId, "ck-1"));
        let linked = app.profiles().link_identity(link_request.clone()).await.unwrap().into_inner();
        app.profiles().unlink_identity(unlink("cust-1", identity(CookieId, "ck-1"))).await.unwrap();
        let replay = app.profiles().link_identity(link_request).await.unwrap().into_inner();
        assert_eq!(replay, linked);
        assert_eq!(app.profile("cust-1").await.identities.len(), 1, "the replay linked nothing");

        let home = pb::Profile { home_store_id: "store-1".into(), ..Default::default() };
        let update_request = update("cust-1", home, &[]);
        let updated = app.profiles().update_profile(update_request.clone()).await.unwrap().into_inner();
        let replay = app.profiles().update_profile(update_request.clone()).await.unwrap().into_inner();
        assert_eq!(replay, updated);
        let mut other = update_request;
        other.update_mask = mask(&["home_store_id", "attributes"]);
        assert_eq!(
            app.profiles().update_profile(other).await.unwrap_err().code(),
            Code::AlreadyExists
        );
    }
}

/// `customer`'s tombstone digests, as the lead's erasure writes them: keyed
/// with profile's key, over the customer id and over `<type>:<stored value>`.
async fn tombstone(app: &TestApp, subject: &str) {
    let db = attune_kit::db::connect(&app.config.database).await.unwrap();
    let (key, _) = attune_kit::secrets::SecretStore::new("profile_secrets")
        .pseudonym_key(&db, &app.config.secrets)
        .await
        .unwrap();
    let (domain, value) = subject.split_once('=').unwrap();
    let digest = key.digest(domain, value);
    db.close().await.unwrap();
    app.execute_sql(&format!(
        "INSERT INTO profile_tombstones (subject_hash, erase_time) VALUES ('{digest}', 0)"
    ))
    .await;
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

backend_tests! {
    async fn an_erased_customer_or_identity_cannot_come_back(app) {
        tombstone(&app, "customer=cust-gone").await;
        tombstone(&app, &format!("identity={}:C-GONE", LoyaltyCard as i32)).await;
        let customer = app.profiles().create_profile(create_known("cust-gone", vec![])).await.unwrap_err();
        assert_eq!(customer.code(), Code::FailedPrecondition);
        let card = vec![identity(LoyaltyCard, "C-GONE")];
        let with_card = app.profiles().create_profile(create_known("cust-new", card)).await.unwrap_err();
        assert_eq!(with_card.code(), Code::FailedPrecondition);
        app.create_profile(create_known("cust-new", vec![])).await;
        let linked = app
            .profiles()
            .link_identity(link("cust-new", identity(LoyaltyCard, "C-GONE")))
            .await
            .unwrap_err();
        assert_eq!(linked.code(), Code::FailedPrecondition);
        assert!(app.profile("cust-new").await.identities.is_empty());
    }

    async fn every_rpc_refuses_bad_input_naming_the_field_and_changes_nothing(app) {
        use attune_tests::bad_input::{Cases, assert_each_rejected};
        app.create_profile(create_known("cust-1", vec![identity(LoyaltyCard, "C-1")])).await;
        app.create_profile(create_known("cust-2", vec![identity(LoyaltyCard, "C-2")])).await;
        app.create_profile(create_anonymous("anon-1", vec![])).await;
        app.grant("cust-1", &["personalization"]).await;
        let database = &app.config.database;
        let profiles = app.profiles();

        let cases = Cases::new()
            .invalid("known without id", "customer_id", |r: &mut pb::CreateProfileRequest| r.customer_id.clear())
            .invalid("id with a space", "customer_id", |r| r.customer_id = "a b".into())
            .invalid("over-long id", "customer_id", |r| r.customer_id = long(129))
            .invalid("unspecified kind", "kind", |r| r.kind = 0)
            .invalid("unknown kind", "kind", |r| r.kind = 9)
            .invalid("unspecified identity type", "identities[0].identity_type", |r| r.identities[0].identity_type = 0)
            .invalid("bad e-mail", "identities[0].value", |r| r.identities[0].value = "no-at".into())
            .invalid("bad phone", "identities[0].value", |r| {
                r.identities[0] = identity(Phone, "0151 123");
            })
            .invalid("card with a space", "identities[0].value", |r| {
                r.identities[0] = identity(LoyaltyCard, "C 1");
            })
            .invalid("unknown identity channel", "identities[0].channel", |r| r.identities[0].channel = 99)
            .invalid("the same e-mail twice", "identities[1]", |r| {
                r.identities.push(identity(Email, "NEW@example.com"));
            })
            .invalid("51 identities", "identities", |r| {
                r.identities = (0..51).map(|i| identity(CookieId, &format!("c{i}"))).collect();
            })
            .invalid("unspecified channel", "channel", |r| r.channel = 0)
            .invalid("unknown channel", "channel", |r| r.channel = 99)
            .invalid("no request id", "request_id", |r| r.request_id.clear())
            .refused("existing id", Code::AlreadyExists, |r| r.customer_id = "cust-1".into())
            .refused("identity of another profile", Code::AlreadyExists, |r| {
                r.identities[0] = identity(LoyaltyCard, "C-2");
            });
        assert_each_rejected(
            database,
            || create_known("cust-new", vec![identity(Email, "new@example.com")]),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.create_profile(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::GetProfileRequest| r.customer_id.clear())
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into());
        assert_each_rejected(
            database,
            || pb::GetProfileRequest { customer_id: "cust-1".into() },
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.get_profile(r).await }
            },
        )
        .await;

        let home = || pb::Profile { home_store_id: "store-2".into(), ..Default::default() };
        let cases = Cases::new()
            .invalid("no profile", "profile", |r: &mut pb::UpdateProfileRequest| r.profile = None)
            .invalid("empty id", "profile.customer_id", |r| r.profile.as_mut().unwrap().customer_id.clear())
            .invalid("kind named", "update_mask.paths[0]", |r| r.update_mask = mask(&["kind"]))
            .invalid("loyalty named", "update_mask.paths[0]", |r| r.update_mask = mask(&["loyalty"]))
            .invalid("unknown path", "update_mask.paths[0]", |r| r.update_mask = mask(&["nope"]))
            .invalid("nested path", "update_mask.paths[0]", |r| r.update_mask = mask(&["attributes.x"]))
            .invalid("path twice", "update_mask.paths[1]", |r| {
                r.update_mask = mask(&["home_store_id", "home_store_id"]);
            })
            .invalid("over-long store", "profile.home_store_id", |r| {
                r.profile.as_mut().unwrap().home_store_id = long(65);
            })
            .invalid("bad attribute key", "profile.attributes", |r| {
                r.profile.as_mut().unwrap().attributes.insert("Bad Key".into(), "v".into());
            })
            .invalid("over-long attribute", "profile.attributes", |r| {
                r.profile.as_mut().unwrap().attributes.insert("k".into(), long(257));
            })
            .invalid("51 attributes", "profile.attributes", |r| {
                let profile = r.profile.as_mut().unwrap();
                profile.attributes = (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
            })
            .invalid("nothing to change", "profile", |r| r.profile.as_mut().unwrap().home_store_id.clear())
            .invalid("no request id", "request_id", |r| r.request_id.clear())
            .refused("unknown id", Code::NotFound, |r| r.profile.as_mut().unwrap().customer_id = "nobody".into())
            .refused("no consent", Code::FailedPrecondition, |r| {
                r.profile.as_mut().unwrap().customer_id = "cust-2".into();
            });
        assert_each_rejected(
            database,
            || update("cust-1", home(), &[]),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.update_profile(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::ListMergedCustomerIdsRequest| r.customer_id.clear())
            .invalid("negative page size", "page_size", |r| r.page_size = -1)
            .invalid("page too large", "page_size", |r| r.page_size = 1001)
            .invalid("foreign token", "page_token", |r| r.page_token = "not-a-token".into())
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into());
        assert_each_rejected(
            database,
            || pb::ListMergedCustomerIdsRequest {
                customer_id: "cust-1".into(),
                page_size: 10,
                page_token: String::new(),
            },
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.list_merged_customer_ids(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("no identity", "identity", |r: &mut pb::LookupProfileRequest| r.identity = None)
            .invalid("unspecified type", "identity.identity_type", |r| {
                r.identity.as_mut().unwrap().identity_type = 0;
            })
            .invalid("bad e-mail", "identity.value", |r| r.identity = Some(identity(Email, "a@b@c")))
            .invalid("empty value", "identity.value", |r| r.identity.as_mut().unwrap().value.clear())
            .refused("linked to nobody", Code::NotFound, |r| r.identity = Some(identity(LoyaltyCard, "C-9")));
        assert_each_rejected(
            database,
            || pb::LookupProfileRequest { identity: Some(identity(LoyaltyCard, "C-1")) },
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.lookup_profile(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::LinkIdentityRequest| r.customer_id.clear())
            .invalid("no identity", "identity", |r| r.identity = None)
            .invalid("unknown type", "identity.identity_type", |r| r.identity.as_mut().unwrap().identity_type = 42)
            .invalid("over-long value", "identity.value", |r| r.identity.as_mut().unwrap().value = long(257))
            .invalid("no request id", "request_id", |r| r.request_id.clear())
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into())
            .refused("identity of another profile", Code::AlreadyExists, |r| {
                r.identity = Some(identity(LoyaltyCard, "C-2"));
            });
        assert_each_rejected(
            database,
            || link("cust-1", identity(CookieId, "ck-new")),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.link_identity(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::UnlinkIdentityRequest| r.customer_id.clear())
            .invalid("no identity", "identity", |r| r.identity = None)
            .invalid("bad phone", "identity.value", |r| r.identity = Some(identity(Phone, "12")))
            .invalid("no request id", "request_id", |r| r.request_id = long(65))
            .refused("not theirs", Code::NotFound, |r| r.identity = Some(identity(LoyaltyCard, "C-2")))
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into());
        assert_each_rejected(
            database,
            || unlink("cust-1", identity(LoyaltyCard, "C-1")),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.unlink_identity(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty source", "source_customer_id", |r: &mut pb::MergeProfilesRequest| {
                r.source_customer_id.clear();
            })
            .invalid("bad target", "target_customer_id", |r| r.target_customer_id = "a b".into())
            .invalid("no request id", "request_id", |r| r.request_id.clear())
            .refused("known source", Code::FailedPrecondition, |r| r.source_customer_id = "cust-2".into())
            .refused("into itself", Code::FailedPrecondition, |r| r.target_customer_id = "anon-1".into())
            .refused("unknown source", Code::NotFound, |r| r.source_customer_id = "anon-9".into())
            .refused("unknown target", Code::NotFound, |r| r.target_customer_id = "cust-9".into());
        assert_each_rejected(
            database,
            || merge("anon-1", "cust-1"),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.merge_profiles(r).await }
            },
        )
        .await;

        fn data(r: &mut pb::SetZeroPartyDataRequest) -> &mut pb::ZeroPartyData {
            r.data.as_mut().unwrap()
        }
        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::SetZeroPartyDataRequest| r.customer_id.clear())
            .invalid("nothing to set", "data", |r| r.data = None)
            .invalid("output-only path", "update_mask.paths[0]", |r| r.update_mask = mask(&["provenance"]))
            .invalid("unknown path", "update_mask.paths[0]", |r| r.update_mask = mask(&["shoe_size"]))
            .invalid("nested path", "update_mask.paths[0]", |r| r.update_mask = mask(&["birthday.day"]))
            .invalid("over-long name", "data.preferred_name", |r| data(r).preferred_name = long(101))
            .invalid("size type twice", "data.sizes", |r| {
                let size = pb::SizePreference {
                    size_type: "shoes".into(),
                    value: "42".into(),
                    size_system: "EU".into(),
                };
                data(r).sizes = vec![size.clone(), size];
            })
            .invalid("empty brand", "data.favourite_brands", |r| data(r).favourite_brands = vec![String::new()])
            .invalid("21 categories", "data.favourite_category_ids", |r| {
                data(r).favourite_category_ids = (0..21).map(|i| format!("c{i}")).collect();
            })
            .invalid("unknown age band", "data.age_band", |r| data(r).age_band = 99)
            .invalid("30 February", "data.birthday", |r| data(r).birthday = Some(pb::Birthday { month: 2, day: 30 }))
            .invalid("month 13", "data.birthday", |r| data(r).birthday = Some(pb::Birthday { month: 13, day: 1 }))
            .invalid("over-long gender", "data.gender", |r| data(r).gender = long(65))
            .invalid("unspecified channel", "data.preferred_channels", |r| data(r).preferred_channels = vec![0])
            .invalid("channel twice", "data.preferred_channels", |r| data(r).preferred_channels = vec![1, 1])
            .invalid("bad language", "data.language_code", |r| data(r).language_code = "de DE".into())
            .invalid("bad attribute key", "data.attributes", |r| {
                data(r).attributes.insert("Diet".into(), "vegan".into());
            })
            .invalid("21 adults", "data.household", |r| {
                data(r).household = Some(pb::Household { adults: 21, children: 0, has_pets: false });
            })
            .invalid("diet twice", "data.dietary_preferences", |r| data(r).dietary_preferences = vec![1, 1])
            .invalid("unspecified diet", "data.dietary_preferences", |r| data(r).dietary_preferences = vec![0])
            .invalid("style not snake case", "data.style_preferences", |r| {
                data(r).style_preferences = vec!["Outdoor".into()];
            })
            .invalid("over-long store", "data.preferred_store_id", |r| data(r).preferred_store_id = long(65))
            .invalid("bad time zone", "data.time_zone", |r| data(r).time_zone = "Europe Berlin".into())
            .invalid("unspecified channel", "channel", |r| r.channel = 0)
            .invalid("no request id", "request_id", |r| r.request_id.clear())
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into())
            .refused("demographics without consent", Code::FailedPrecondition, |r| {
                data(r).birthday = Some(pb::Birthday { month: 1, day: 1 });
            });
        assert_each_rejected(
            database,
            || set_zero_party("cust-1", name("Ada"), &[], WEB),
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.set_zero_party_data(r).await }
            },
        )
        .await;

        let cases = Cases::new()
            .invalid("empty id", "customer_id", |r: &mut pb::GetZeroPartyDataRequest| r.customer_id.clear())
            .refused("unknown id", Code::NotFound, |r| r.customer_id = "nobody".into());
        assert_each_rejected(
            database,
            || pb::GetZeroPartyDataRequest { customer_id: "cust-1".into() },
            cases,
            |r| {
                let mut client = profiles.clone();
                async move { client.get_zero_party_data(r).await }
            },
        )
        .await;
    }
}

backend_tests! {
    async fn concurrent_links_of_one_identity_leave_it_with_exactly_one_profile(app) {
        for i in 0..6 {
            app.create_profile(create_known(&format!("cust-{i}"), vec![])).await;
        }
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..6 {
            let mut client = app.profiles();
            calls.spawn(async move {
                let request = link(&format!("cust-{i}"), identity(LoyaltyCard, "C-shared"));
                (i, client.link_identity(request).await.map(|_| ()))
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let (i, answer) = joined.unwrap();
            match answer {
                Ok(()) => winners.push(format!("cust-{i}")),
                Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let owner = app
            .profiles()
            .lookup_profile(pb::LookupProfileRequest {
                identity: Some(identity(LoyaltyCard, "C-shared")),
            })
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        assert_eq!(owner.customer_id, winners[0]);
    }
}
