//! Data-subject requests keep a status, re-run to completion and resume, on
//! SQLite and PostgreSQL, with every service running: an erasure a stopped
//! service failed shows as partially failed in GetDataSubjectRequest, a re-run
//! asks only the services not done and completes it, a completed one answers
//! its stored receipts, and nothing of the customer is left in any table; each
//! outcome is in consent's audit chain under the keyed pseudonym, and the chain
//! still verifies, an entry consent missed (consent down) being written by the
//! gateway's background retry once consent is back; an export resumed from a
//! message's token yields exactly the records not received, whether the caller
//! stopped reading or a service failed.

#![allow(clippy::unwrap_used)] // panics fail tests

use std::collections::BTreeMap;

use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use attune_proto::delivery::v1 as delivery_pb;
use attune_proto::gateway::v1 as pb;
use attune_proto::profile::v1 as profile_pb;
use attune_tests::delivery::geo;
use attune_tests::gateway_experience::stopped_backend;
use attune_tests::gateway_subject::{gateway_with_stopped, rows_containing_anywhere};
use attune_tests::profile_events::view;
use attune_tests::profile_people::{create_anonymous, create_known, identity, merge};
use attune_tests::{TestApp, backend_tests, eventually};
use chrono::{Duration, Utc};
use tokio_stream::StreamExt as _;
use tonic::Code;

const CUSTOMER: &str = "cust-status-51c2";
const VISITOR: &str = "anon-status-51c2";
const EMAIL: &str = "status.person.51c2@example.com";
const LOYALTY: &str = "attune.loyalty.v1";
const PROFILE: &str = "attune.profile.v1";
const CONSENT: &str = "attune.consent.v1";

/// The customer in consent, profile (an e-mail, a merged visitor, `views`
/// product views), delivery (an address) and the followers of profile's feed.
async fn seed(app: &TestApp, views: usize) {
    for id in [CUSTOMER, VISITOR] {
        app.grant(id, &["personalization"]).await;
    }
    app.create_profile(create_anonymous(VISITOR, vec![])).await;
    app.ingest(vec![view(
        "ev-status-visitor",
        VISITOR,
        Utc::now(),
        "sku-status-1",
    )])
    .await;
    app.create_profile(create_known(
        CUSTOMER,
        vec![identity(profile_pb::IdentityType::Email, EMAIL)],
    ))
    .await;
    app.profiles()
        .merge_profiles(merge(VISITOR, CUSTOMER))
        .await
        .unwrap();
    let start = Utc::now() - Duration::days(1);
    let events: Vec<_> = (0..views)
        .map(|n| {
            view(
                &format!("ev-status-{n}"),
                CUSTOMER,
                start + Duration::seconds(i64::try_from(n).unwrap()),
                "sku-status-1",
            )
        })
        .collect();
    for batch in events.chunks(500) {
        app.ingest(batch.to_vec()).await;
    }
    app.delivery()
        .add_address(delivery_pb::AddAddressRequest {
            customer_id: CUSTOMER.into(),
            address: Some(delivery_pb::Address {
                label: "Home".into(),
                recipient_name: "Stella Status".into(),
                postal_address: Some(delivery_pb::PostalAddress {
                    address_lines: vec!["Chausseestrasse 5".into()],
                    locality: "Berlin".into(),
                    postal_code: "10115".into(),
                    country_code: "DE".into(),
                }),
                location: Some(geo(52.53, 13.38)),
                ..Default::default()
            }),
            request_id: "status-address-1".into(),
        })
        .await
        .unwrap();
}

fn part<'a>(request: &'a pb::DataSubjectRequest, service: &str) -> &'a pb::ServicePart {
    request
        .services
        .iter()
        .find(|part| part.service == service)
        .unwrap_or_else(|| panic!("no part of {service}: {request:?}"))
}

fn receipt<'a>(answer: &'a pb::EraseCustomerResponse, service: &str) -> &'a pb::ServiceReceipt {
    answer
        .receipts
        .iter()
        .find(|receipt| receipt.service == service)
        .unwrap()
}

/// Consent's audit entries about data-subject requests: (subject, detail).
async fn audited_requests(db: &DatabaseConnection) -> Vec<(String, String)> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT subject, detail FROM consent_audit_log WHERE kind = 'data_subject_request' \
         ORDER BY sequence",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| {
        (
            row.try_get::<Option<String>>("", "subject")
                .unwrap()
                .unwrap_or_default(),
            row.try_get("", "detail").unwrap(),
        )
    })
    .collect()
}

/// Listens at `address` (`http://host:port`, where nothing listened) and
/// passes every connection on to `upstream`: a stopped backend come back.
async fn forward(address: &str, upstream: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(address.trim_start_matches("http://"))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// A record as it identifies itself: (service, customer id, kind, id).
type Key = (String, String, String, String);

fn records(messages: &[pb::ExportCustomerResponse]) -> Vec<Key> {
    let mut keys: Vec<Key> = messages
        .iter()
        .flat_map(|message| {
            message.records.iter().map(|record| {
                (
                    message.service.clone(),
                    message.customer_id.clone(),
                    record.kind.clone(),
                    record.id.clone(),
                )
            })
        })
        .collect();
    keys.sort();
    keys
}

/// Each service's receipt: (status, record count).
fn receipts(messages: &[pb::ExportCustomerResponse]) -> BTreeMap<String, (i32, i64)> {
    messages
        .iter()
        .filter_map(|message| message.receipt.as_ref())
        .map(|r| (r.service.clone(), (r.status, r.record_count)))
        .collect()
}

/// Waits until profile's followers (recommendation, loyalty) have caught up,
/// so two exports read the same records.
async fn settled_export(app: &TestApp, request_id: &str) -> Vec<pb::ExportCustomerResponse> {
    let mut attempt = 0;
    let mut previous = Vec::new();
    eventually("two exports in a row read the same records", async || {
        attempt += 1;
        let messages = app
            .export_customer(CUSTOMER, &format!("status-settle-{attempt}"))
            .await;
        let now: Vec<Key> = records(&messages)
            .into_iter()
            .filter(|key| key.0 != attune_gateway::ACCESS_LOG_PACKAGE)
            .collect();
        let same = now == previous;
        previous = now;
        same
    })
    .await;
    app.export_customer(CUSTOMER, request_id).await
}

backend_tests! {
    async fn a_partial_erasure_shows_in_its_status_and_a_re_run_completes_only_what_was_missing(app) {
        seed(&app, 3).await;
        let (partial, pods) = gateway_with_stopped(&app, "loyalty").await;
        let first = partial.erase_customer(CUSTOMER, "status-erase-1").await;
        assert!(!first.complete, "{first:?}");
        drop(partial);
        drop(pods);

        // The status, read through the monolith's port (the same database).
        let status = app.data_subject_request("status-erase-1", CUSTOMER).await.unwrap();
        assert_eq!(status.kind, pb::DataSubjectRequestKind::Erasure as i32);
        assert_eq!(status.state, pb::DataSubjectRequestState::PartiallyFailed as i32, "{status:?}");
        assert!(status.summary.contains(LOYALTY) && status.summary.contains("same request_id"), "{}", status.summary);
        assert_eq!(status.services.len(), attune::data_subject_receipts().len());
        let loyalty = part(&status, LOYALTY);
        assert_eq!(loyalty.state, pb::ServicePartState::Failed as i32);
        assert!(loyalty.reason.contains("could not be reached"), "{}", loyalty.reason);
        let profile = part(&status, PROFILE);
        assert_eq!(profile.state, pb::ServicePartState::Pending as i32);
        assert!(profile.reason.contains("waiting"), "{}", profile.reason);
        let consent = part(&status, CONSENT);
        assert_eq!(consent.state, pb::ServicePartState::Done as i32);
        assert_eq!(consent.receipt.as_ref(), Some(receipt(&first, CONSENT)));
        assert!(consent.reason.is_empty());

        // Only the customer's own status is readable; an unknown id is the same.
        for (request_id, customer) in [("status-erase-1", "someone-else"), ("status-unknown", CUSTOMER)] {
            let refused = app.data_subject_request(request_id, customer).await.unwrap_err();
            assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
        }
        // The request id names this erasure: not another customer's, nor an export.
        let reused = app
            .data_subject_requests()
            .erase_customer(pb::EraseCustomerRequest {
                customer_id: "someone-else".into(),
                request_id: "status-erase-1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
        let reused = app
            .data_subject_requests()
            .export_customer(pb::ExportCustomerRequest {
                customer_id: CUSTOMER.into(),
                request_id: "status-erase-1".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);

        // The re-run asks only the services not done: consent's part is not
        // touched, and its receipt is the one of the first run, time and all.
        let partial_status = status;
        let second = app.erase_customer(CUSTOMER, "status-erase-1").await;
        assert!(second.complete, "{second:?}");
        assert_eq!(second.customer_ids, [CUSTOMER, VISITOR]);
        assert_eq!(receipt(&second, CONSENT), receipt(&first, CONSENT));
        assert!(receipt(&second, PROFILE).record_count > 0, "{second:?}");
        let status = app.data_subject_request("status-erase-1", CUSTOMER).await.unwrap();
        assert_eq!(status.state, pb::DataSubjectRequestState::Completed as i32, "{status:?}");
        assert!(status.services.iter().all(|p| p.state == pb::ServicePartState::Done as i32 && p.reason.is_empty()));
        assert!(status.summary.starts_with("Completed"), "{}", status.summary);
        assert_eq!(part(&status, CONSENT), part(&partial_status, CONSENT));
        assert_ne!(part(&status, LOYALTY).update_time, part(&partial_status, LOYALTY).update_time);

        // Erasing a completed request again is a no-op answering the stored
        // receipts (the merged ids are kept nowhere, so only the id asked for).
        let third = app.erase_customer(CUSTOMER, "status-erase-1").await;
        assert_eq!(third.receipts, second.receipts);
        assert_eq!((third.complete, third.erase_time), (true, second.erase_time));
        assert_eq!(third.customer_ids, [CUSTOMER]);
        let unchanged = app.data_subject_request("status-erase-1", CUSTOMER).await.unwrap();
        assert_eq!(unchanged, status, "a completed erasure asks no service again");

        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        let found = rows_containing_anywhere(&db, &[CUSTOMER, VISITOR, EMAIL]).await;
        assert!(found.is_empty(), "rows still carry the customer: {found:?}");

        // Both outcomes are in consent's chain, under the pseudonym.
        let audited: Vec<_> = audited_requests(&db)
            .await
            .into_iter()
            .filter(|(_, detail)| detail.contains("\"status-erase-1\""))
            .collect();
        assert_eq!(audited.len(), 2, "{audited:?}");
        assert!(audited[0].1.contains("\"partially_failed\"") && audited[0].1.contains(LOYALTY), "{audited:?}");
        assert!(audited[0].1.contains("\"erasure\"") && audited[0].1.contains("development"), "{audited:?}");
        assert!(audited[1].1.contains("\"completed\""), "{audited:?}");
        assert!(audited.iter().all(|(subject, _)| subject.starts_with("hmac-sha256:") && audited[0].0 == *subject));
        let verification = app.verify_audit_log().await;
        assert!(verification.intact, "{verification:?}");
        db.close().await.unwrap();
    }

    async fn an_export_resumes_where_the_caller_stopped_reading(app) {
        // More than one page (1,000 records) at profile.
        seed(&app, 1_100).await;
        let whole = settled_export(&app, "status-export-1").await;
        assert!(whole.iter().filter(|m| m.service == PROFILE && !m.records.is_empty()).count() >= 2);

        // The same request again, read until profile's first page, then dropped.
        let mut stream = app
            .data_subject_requests()
            .export_customer(pb::ExportCustomerRequest {
                customer_id: CUSTOMER.into(),
                request_id: "status-export-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut before = Vec::new();
        while let Some(message) = stream.next().await {
            let message = message.unwrap();
            let cut = message.service == PROFILE && message.receipt.is_none();
            before.push(message);
            if cut {
                break;
            }
        }
        drop(stream);
        let token = before.last().unwrap().resume_token.clone();
        assert!(!token.contains(CUSTOMER));
        let after = app.resume_export(CUSTOMER, "status-export-1", &token).await;
        assert!(after.iter().all(|m| m.service.as_str() >= PROFILE), "services done are skipped");

        let mut resumed = before.clone();
        resumed.extend(after);
        assert_eq!(records(&resumed), records(&whole), "no duplicates, no gaps");
        assert_eq!(receipts(&resumed), receipts(&whole));
        assert_eq!(records(&app.export_customer(CUSTOMER, "status-export-1").await), records(&whole));

        // A token is bound to its request and cannot be altered.
        for (request_id, token) in [("status-export-2", token.clone()), ("status-export-1", format!("x{token}"))] {
            let refused = app
                .data_subject_requests()
                .export_customer(pb::ExportCustomerRequest {
                    customer_id: CUSTOMER.into(),
                    request_id: request_id.into(),
                    resume_token: token,
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument);
            assert_eq!(attune_tests::violated_fields(&refused), ["resume_token"]);
        }
    }

    async fn an_export_a_service_failed_resumes_with_that_service_only(app) {
        seed(&app, 3).await;
        app.grant_points(CUSTOMER, 40).await;
        let (partial, pods) = gateway_with_stopped(&app, "loyalty").await;
        let first = partial.export_customer(CUSTOMER, "status-export-failed").await;
        drop(partial);
        drop(pods);
        let failed = receipts(&first)[LOYALTY];
        assert_eq!(failed.0, pb::ReceiptStatus::Failed as i32, "{first:?}");
        let status = app.data_subject_request("status-export-failed", CUSTOMER).await.unwrap();
        assert_eq!(status.kind, pb::DataSubjectRequestKind::Export as i32);
        assert_eq!(status.state, pb::DataSubjectRequestState::PartiallyFailed as i32, "{status:?}");
        assert_eq!(part(&status, LOYALTY).state, pb::ServicePartState::Failed as i32);
        assert!(status.summary.contains("resume_token"), "{}", status.summary);

        let token = &first.last().unwrap().resume_token;
        let rest = app.resume_export(CUSTOMER, "status-export-failed", token).await;
        assert!(rest.iter().all(|m| m.service == LOYALTY), "{rest:?}");
        assert!(!rest.iter().all(|m| m.records.is_empty()), "loyalty's records come now");
        assert_eq!(receipts(&rest)[LOYALTY].0, pb::ReceiptStatus::Succeeded as i32);
        let status = app.data_subject_request("status-export-failed", CUSTOMER).await.unwrap();
        assert_eq!(status.state, pb::DataSubjectRequestState::Completed as i32, "{status:?}");

        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        let audited: Vec<_> = audited_requests(&db)
            .await
            .into_iter()
            .map(|(_, detail)| detail)
            .filter(|detail| detail.contains("\"status-export-failed\""))
            .collect();
        assert_eq!(audited.len(), 2, "{audited:?}");
        assert!(audited[0].contains("\"export\"") && audited[0].contains("\"partially_failed\""));
        assert!(audited[1].contains("\"completed\""));
        assert!(app.verify_audit_log().await.intact);
        db.close().await.unwrap();
    }

    async fn an_audit_entry_consent_missed_is_written_once_consent_is_back(app) {
        seed(&app, 1).await;
        // A gateway whose consent is down; every other service has its pod.
        let consent_address = stopped_backend().await;
        let mut elsewhere = vec![("consent", consent_address.clone())];
        let mut pods = Vec::new();
        for service in ["profile", "recommendation", "loyalty", "delivery"] {
            let pod = app.pod(service).await;
            elsewhere.push((service, format!("http://{}", pod.address)));
            pods.push(pod);
        }
        let gateway = app.gateway_in_front(&elsewhere).await;
        let first = gateway.erase_customer(CUSTOMER, "status-audit-1").await;
        assert!(!first.complete, "{first:?}");
        assert_eq!(receipt(&first, CONSENT).status, pb::ReceiptStatus::Failed as i32);
        let status = gateway.data_subject_request("status-audit-1", CUSTOMER).await.unwrap();
        assert!(status.summary.contains("audit log is not written yet"), "{}", status.summary);
        let db = attune_kit::db::connect(&app.config.database).await.unwrap();
        let about = |audited: Vec<(String, String)>| -> Vec<(String, String)> {
            audited
                .into_iter()
                .filter(|(_, detail)| detail.contains("\"status-audit-1\""))
                .collect()
        };
        assert!(about(audited_requests(&db).await).is_empty());

        // Consent is back at the address the gateway knows: the entry is
        // written by the gateway's background retry, once.
        let consent = app.pod("consent").await;
        let _forward = forward(&consent_address, consent.address).await;
        eventually("the pending entry is in consent's audit log", async || {
            !about(audited_requests(&db).await).is_empty()
        })
        .await;
        eventually("the status no longer says the entry is pending", async || {
            let status = gateway.data_subject_request("status-audit-1", CUSTOMER).await.unwrap();
            !status.summary.contains("not written yet")
        })
        .await;
        let audited = about(audited_requests(&db).await);
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(
            audited[0].1.contains("\"partially_failed\"") && audited[0].1.contains(CONSENT),
            "{audited:?}"
        );

        // The re-run completes the erasure; its outcome is audited at once, and
        // nothing of the customer is left, the pending entry included.
        let second = gateway.erase_customer(CUSTOMER, "status-audit-1").await;
        assert!(second.complete, "{second:?}");
        let audited = about(audited_requests(&db).await);
        assert_eq!(audited.len(), 2, "{audited:?}");
        assert!(audited[1].1.contains("\"completed\""), "{audited:?}");
        drop(gateway);
        drop(pods);
        let found = rows_containing_anywhere(&db, &[CUSTOMER, VISITOR, EMAIL]).await;
        assert!(found.is_empty(), "rows still carry the customer: {found:?}");
        let verification = app.verify_audit_log().await;
        assert!(verification.intact, "{verification:?}");
        db.close().await.unwrap();
    }
}

fn audit_request() -> attune_proto::consent::v1::AuditDataSubjectRequestRequest {
    use attune_proto::consent::v1 as consent_pb;
    consent_pb::AuditDataSubjectRequestRequest {
        customer_id: CUSTOMER.into(),
        request_id: "status-audit-1".into(),
        kind: consent_pb::DataSubjectRequestKind::Erasure.into(),
        requested_by: "service:crm".into(),
        outcome: consent_pb::DataSubjectRequestOutcome::PartiallyFailed.into(),
        failed_services: vec![LOYALTY.into()],
    }
}

backend_tests! {
    async fn the_status_and_the_audit_refuse_bad_input_and_change_nothing(app) {
        use attune_proto::consent::v1 as consent_pb;
        use attune_tests::bad_input::{Cases, assert_each_rejected};
        let gets = Cases::new()
            .invalid("empty request id", "request_id", |r: &mut pb::GetDataSubjectRequestRequest| r.request_id.clear())
            .invalid("request id with a space", "request_id", |r| r.request_id = "a b".into())
            .invalid("empty customer", "customer_id", |r| r.customer_id.clear())
            .invalid("customer too long", "customer_id", |r| r.customer_id = "c".repeat(129))
            .refused("unknown request", Code::NotFound, |r| r.request_id = "status-none".into());
        let client = app.data_subject_requests();
        assert_each_rejected(
            &app.config.database,
            || pb::GetDataSubjectRequestRequest { request_id: "status-get-1".into(), customer_id: CUSTOMER.into() },
            gets,
            |request| {
                let mut client = client.clone();
                async move { client.get_data_subject_request(request).await }
            },
        )
        .await;

        let exports = Cases::new()
            .invalid("a resume token not from this API", "resume_token", |r: &mut pb::ExportCustomerRequest| r.resume_token = "not-a-token".into())
            .invalid("a resume token of nothing", "resume_token", |r| r.resume_token = "e30".into())
            .invalid("a resume token far too long", "resume_token", |r| r.resume_token = "A".repeat(10_000))
            .invalid("empty customer with a token", "customer_id", |r| { r.customer_id.clear(); r.resume_token = "x".into(); });
        assert_each_rejected(
            &app.config.database,
            || pb::ExportCustomerRequest { customer_id: CUSTOMER.into(), request_id: "status-export-bad".into(), ..Default::default() },
            exports,
            |request| {
                let mut client = client.clone();
                async move { client.export_customer(request).await.map(|_| ()) }
            },
        )
        .await;

        let audits = Cases::new()
            .invalid("empty customer", "customer_id", |r: &mut consent_pb::AuditDataSubjectRequestRequest| r.customer_id.clear())
            .invalid("empty request id", "request_id", |r| r.request_id.clear())
            .invalid("no kind", "kind", |r| r.kind = 0)
            .invalid("unknown kind", "kind", |r| r.kind = 99)
            .invalid("no outcome", "outcome", |r| r.outcome = 0)
            .invalid("unknown outcome", "outcome", |r| r.outcome = 42)
            .invalid("no requester", "requested_by", |r| r.requested_by.clear())
            .invalid("requester with a space", "requested_by", |r| r.requested_by = "a b".into())
            .invalid("requester too long", "requested_by", |r| r.requested_by = "r".repeat(129))
            .invalid("a partial failure naming no service", "failed_services", |r| r.failed_services.clear())
            .invalid("a completion naming a failed service", "failed_services", |r| {
                r.outcome = consent_pb::DataSubjectRequestOutcome::Completed.into();
            })
            .invalid("an empty service name", "failed_services[0]", |r| r.failed_services = vec![String::new()])
            .invalid("too many services", "failed_services", |r| r.failed_services = vec!["s".into(); 33]);
        let consent = app.consent();
        assert_each_rejected(&app.config.database, audit_request, audits, |request| {
            let mut consent = consent.clone();
            async move { consent.audit_data_subject_request(request).await }
        })
        .await;

        // A valid one appends once; its retry appends nothing.
        let before = app.verify_audit_log().await.entry_count;
        let mut consent = app.consent();
        assert!(consent.audit_data_subject_request(audit_request()).await.unwrap().into_inner().appended);
        assert!(!consent.audit_data_subject_request(audit_request()).await.unwrap().into_inner().appended);
        assert_eq!(app.verify_audit_log().await.entry_count, before + 1);
    }
}
