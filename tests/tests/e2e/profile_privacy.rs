//! The data subject's rights over profile's data, over real gRPC through the
//! gateway: an export covers the customer and the anonymous profile merged into
//! it; an erasure leaves no row in any profile table that carries one of their
//! ids or identities (the whole schema is scanned), and a tombstone refuses a
//! later replay of their events and identities.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_kit::db;
use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use attune_proto::profile::v1 as pb;
use attune_proto::profile::v1::event_service_client::EventServiceClient;
use attune_proto::profile::v1::profile_service_client::ProfileServiceClient;
use attune_tests::consent_requests::{decision, record, request_id, timestamp};
use attune_tests::{TestApp, backend_tests, common_pb, consent_pb, every_page, privacy_pb};
use chrono::{Duration, Utc};
use tonic::Code;

const CUSTOMER: &str = "privacy-cust-1";
const VISITOR: &str = "privacy-anon-1";
const EMAIL: &str = "Ada.Lovelace@Example.com";
const CARD: &str = "CARD-PRIVACY-77";
const COOKIE: &str = "cookie-privacy-42";

async fn grant_everything(app: &TestApp, customer: &str) {
    let decisions = ["personalization", "profiling", "store_visits"]
        .into_iter()
        .map(|code| decision(code, consent_pb::Decision::Granted))
        .collect();
    app.record_consent(record(customer, decisions)).await;
}

fn profiles(app: &TestApp) -> ProfileServiceClient<tonic::transport::Channel> {
    ProfileServiceClient::new(app.channel.clone())
}

fn events(app: &TestApp) -> EventServiceClient<tonic::transport::Channel> {
    EventServiceClient::new(app.channel.clone())
}

fn identity(kind: pb::IdentityType, value: &str) -> pb::Identity {
    pb::Identity {
        identity_type: kind as i32,
        value: value.into(),
        channel: common_pb::Channel::Web as i32,
        link_time: None,
    }
}

fn money(amount_minor: i64) -> common_pb::Money {
    common_pb::Money {
        amount_minor,
        currency_code: "EUR".into(),
    }
}

fn view(event_id: &str, customer: &str, minutes_ago: i64) -> pb::Event {
    pb::Event {
        event_id: event_id.into(),
        customer_id: customer.into(),
        kind: pb::EventKind::View as i32,
        occur_time: Some(timestamp(Utc::now() - Duration::minutes(minutes_ago))),
        channel: common_pb::Channel::Web as i32,
        items: vec![pb::EventItem {
            item_id: "sku-1".into(),
            quantity: 1,
            category_path: vec!["shoes".into()],
            ..Default::default()
        }],
        new_profile_kind: pb::ProfileKind::Anonymous as i32,
        ..Default::default()
    }
}

fn purchase(event_id: &str, customer: &str, minutes_ago: i64) -> pb::Event {
    pb::Event {
        event_id: event_id.into(),
        customer_id: customer.into(),
        kind: pb::EventKind::Purchase as i32,
        occur_time: Some(timestamp(Utc::now() - Duration::minutes(minutes_ago))),
        channel: common_pb::Channel::Store as i32,
        order_id: "order-privacy-1".into(),
        amount: Some(money(4_990)),
        items: vec![pb::EventItem {
            item_id: "sku-2".into(),
            quantity: 1,
            unit_price: Some(money(4_990)),
            category_path: vec!["shoes".into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn ingest(app: &TestApp, events_sent: Vec<pb::Event>) -> pb::IngestEventsResponse {
    events(app)
        .ingest_events(pb::IngestEventsRequest {
            events: events_sent,
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A visitor browses, signs up as a known customer with an e-mail and a loyalty
/// card, buys, shares zero-party data, and the visitor is merged into them.
/// Seeds the customer and the visitor merged into it; answers the customer's
/// zero-party data request, to replay after an erasure.
async fn customer_with_history(app: &TestApp) -> pb::SetZeroPartyDataRequest {
    grant_everything(app, VISITOR).await;
    grant_everything(app, CUSTOMER).await;
    profiles(app)
        .create_profile(pb::CreateProfileRequest {
            customer_id: VISITOR.into(),
            kind: pb::ProfileKind::Anonymous as i32,
            identities: vec![identity(pb::IdentityType::CookieId, COOKIE)],
            channel: common_pb::Channel::Web as i32,
            request_id: request_id(),
        })
        .await
        .unwrap();
    let stored = ingest(app, vec![view("ev-privacy-1", VISITOR, 30)]).await;
    assert_eq!(stored.accepted_count, 1, "{stored:?}");
    profiles(app)
        .create_profile(pb::CreateProfileRequest {
            customer_id: CUSTOMER.into(),
            kind: pb::ProfileKind::Known as i32,
            identities: vec![
                identity(pb::IdentityType::Email, EMAIL),
                identity(pb::IdentityType::LoyaltyCard, CARD),
            ],
            channel: common_pb::Channel::Web as i32,
            request_id: request_id(),
        })
        .await
        .unwrap();
    let stored = ingest(app, vec![purchase("ev-privacy-2", CUSTOMER, 20)]).await;
    assert_eq!(stored.accepted_count, 1, "{stored:?}");
    let zero_party = pb::SetZeroPartyDataRequest {
        customer_id: CUSTOMER.into(),
        data: Some(pb::ZeroPartyData {
            favourite_brands: vec!["Lovelace Shoes".into()],
            ..Default::default()
        }),
        update_mask: None,
        channel: common_pb::Channel::App as i32,
        request_id: request_id(),
    };
    profiles(app)
        .set_zero_party_data(zero_party.clone())
        .await
        .unwrap();
    profiles(app)
        .merge_profiles(pb::MergeProfilesRequest {
            source_customer_id: VISITOR.into(),
            target_customer_id: CUSTOMER.into(),
            request_id: request_id(),
        })
        .await
        .unwrap();
    zero_party
}

/// Every (table, column, count) of a profile table whose text or bytes contain
/// one of `needles`.
async fn rows_containing(db: &DatabaseConnection, needles: &[&str]) -> Vec<(String, String, i64)> {
    let backend = db.get_database_backend();
    let columns_sql = match backend {
        DbBackend::Sqlite => {
            "SELECT m.name AS table_name, p.name AS column_name FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name LIKE 'profile_%'"
        }
        _ => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name LIKE 'profile_%'"
        }
    };
    let columns = db
        .query_all_raw(Statement::from_string(backend, columns_sql))
        .await
        .unwrap();
    let mut found = Vec::new();
    for column in columns {
        let table: String = column.try_get("", "table_name").unwrap();
        let name: String = column.try_get("", "column_name").unwrap();
        for needle in needles {
            // Text, numbers and bytes alike: bytes (encoded payloads) hold ids
            // as UTF-8.
            let sql = match backend {
                DbBackend::Sqlite => format!(
                    "SELECT COUNT(*) AS n FROM \"{table}\" WHERE instr(CAST(\"{name}\" AS BLOB), CAST('{needle}' AS BLOB)) > 0"
                ),
                _ => format!(
                    "SELECT COUNT(*) AS n FROM \"{table}\" WHERE position(convert_to('{needle}', 'UTF8') in \
                     (CASE WHEN pg_typeof(\"{name}\")::text = 'bytea' THEN \"{name}\"::text::bytea ELSE convert_to(\"{name}\"::text, 'UTF8') END)) > 0"
                ),
            };
            let row = db
                .query_one_raw(Statement::from_string(backend, sql))
                .await
                .unwrap()
                .unwrap();
            let count: i64 = row.try_get("", "n").unwrap();
            if count > 0 {
                found.push((table.clone(), name.clone(), count));
            }
        }
    }
    found
}

backend_tests! {
    async fn export_covers_the_customer_and_the_merged_visitor(app) {
        customer_with_history(&app).await;
        let messages = app.export_customer(CUSTOMER, &request_id()).await;
        let profile_messages: Vec<_> = messages
            .iter()
            .filter(|m| m.service == "attune.profile.v1")
            .collect();
        let records: Vec<_> = profile_messages.iter().flat_map(|m| &m.records).collect();
        let kinds: Vec<_> = records.iter().map(|r| r.kind.as_str()).collect();
        let event_ids: Vec<_> = records
            .iter()
            .filter(|r| r.kind == "event")
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(event_ids, ["ev-privacy-1", "ev-privacy-2"], "{kinds:?}");
        assert!(kinds.contains(&"profile") || kinds.iter().any(|k| k.contains("profile")), "{kinds:?}");
        assert!(kinds.iter().any(|k| k.contains("identit")), "{kinds:?}");
        assert!(kinds.iter().any(|k| k.contains("zero_party")), "{kinds:?}");
        let receipt = profile_messages.last().unwrap().receipt.as_ref().unwrap();
        assert_eq!(receipt.status, attune_tests::gateway_pb::ReceiptStatus::Succeeded as i32);
        // The e-mail is never exported in clear: profile never had it.
        let text = format!("{records:?}");
        assert!(!text.to_lowercase().contains("ada.lovelace"), "{text}");
    }

    async fn erasure_leaves_no_trace_and_refuses_a_replay(app) {
        let zero_party = customer_with_history(&app).await;
        let db = db::connect(&app.config.database).await.unwrap();
        // The identities as stored (the e-mail only as its keyed hash).
        let stored = profiles(&app)
            .get_profile(pb::GetProfileRequest { customer_id: CUSTOMER.into() })
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        let email_hash = stored
            .identities
            .iter()
            .find(|i| i.identity_type == pb::IdentityType::Email as i32)
            .unwrap()
            .value
            .clone();
        // Stored answers are hex-encoded protobuf: the ids' bytes, hex-encoded.
        let plain = [CUSTOMER, VISITOR, CARD, COOKIE, email_hash.as_str()];
        let encoded: Vec<String> = plain.iter().map(hex::encode).collect();
        let needles: Vec<&str> = plain.into_iter().chain(encoded.iter().map(String::as_str)).collect();
        assert!(!rows_containing(&db, &needles).await.is_empty(), "the scan finds data before");

        let answer = app.erase_customer(CUSTOMER, &request_id()).await;
        assert!(answer.complete, "{answer:?}");
        assert_eq!(answer.customer_ids, [CUSTOMER, VISITOR]);
        let left = rows_containing(&db, &needles).await;
        assert!(left.is_empty(), "rows still carry the customer's ids: {left:?}");

        // A replay of an event that happened before the erasure is refused...
        let replay = ingest(&app, vec![purchase("ev-privacy-2", CUSTOMER, 20)]).await;
        assert_eq!(replay.results[0].status, pb::IngestStatus::SkippedErased as i32, "{replay:?}");
        let replay = ingest(&app, vec![view("ev-privacy-1", VISITOR, 30)]).await;
        assert_eq!(replay.results[0].status, pb::IngestStatus::SkippedErased as i32, "{replay:?}");
        // ...so is a retry of a write made before: its answer is not kept...
        let retry = profiles(&app).set_zero_party_data(zero_party).await.unwrap_err();
        assert_eq!(retry.code(), Code::FailedPrecondition, "{retry:?}");
        assert!(retry.message().contains("erased"), "{retry:?}");
        // ...and so is the identity.
        let again = profiles(&app)
            .create_profile(pb::CreateProfileRequest {
                customer_id: "someone-else".into(),
                kind: pb::ProfileKind::Known as i32,
                identities: vec![identity(pb::IdentityType::Email, EMAIL)],
                channel: common_pb::Channel::Web as i32,
                request_id: request_id(),
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
        assert!(rows_containing(&db, &needles).await.is_empty());
        // The profile is gone.
        let gone = profiles(&app)
            .get_profile(pb::GetProfileRequest { customer_id: CUSTOMER.into() })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }

    async fn profiles_own_data_subject_api_pages_links_and_refuses_bad_input(app) {
        customer_with_history(&app).await;
        let pod = app.pod("profile").await;
        let mut api = pod.internal_data_subject();
        let linked = api
            .list_linked_customer_ids(privacy_pb::ListLinkedCustomerIdsRequest {
                customer_id: CUSTOMER.into(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(linked.customer_ids, [VISITOR]);
        assert!(linked.next_page_token.is_empty());

        // Two records a page, one request id for the whole export.
        let export_id = request_id();
        let paged = every_page(async |page_token| {
            let page = api
                .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                    customer_id: CUSTOMER.into(),
                    request_id: export_id.clone(),
                    page_token,
                    page_size: 2,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.records.len() <= 2);
            (page.records, page.next_page_token)
        })
        .await;
        let whole = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: CUSTOMER.into(),
                request_id: export_id.clone(),
                page_token: String::new(),
                page_size: 1000,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(whole.next_page_token.is_empty());
        assert_eq!(paged, whole.records, "paging neither skips nor repeats");
        // A merged id's data is exported with its survivor, not again.
        let visitor = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: VISITOR.into(),
                request_id: request_id(),
                page_token: String::new(),
                page_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(visitor.records.is_empty());

        // The same request id for another customer is another request.
        let reused = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: "someone-else".into(),
                request_id: export_id,
                page_token: String::new(),
                page_size: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
        for bad in [
            privacy_pb::EraseCustomerRequest { customer_id: String::new(), request_id: request_id() },
            privacy_pb::EraseCustomerRequest { customer_id: "has space".into(), request_id: request_id() },
            privacy_pb::EraseCustomerRequest { customer_id: CUSTOMER.into(), request_id: String::new() },
        ] {
            let error = api.erase_customer(bad).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        }
        let bad_page = api
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: CUSTOMER.into(),
                request_id: request_id(),
                page_token: "not-a-token".into(),
                page_size: 5000,
            })
            .await
            .unwrap_err();
        assert_eq!(bad_page.code(), Code::InvalidArgument, "{bad_page:?}");
        // The refused erasures erased nothing.
        assert!(profiles(&app)
            .get_profile(pb::GetProfileRequest { customer_id: CUSTOMER.into() })
            .await
            .is_ok());
    }
}
